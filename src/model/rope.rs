//! Rotary frequencies: a head's inverse frequencies from the RoPE base, and the scalings of them
//! that config.json files name (`linear`, `llama3`, `dynamic`) or that GGUF files store (the
//! linear factor, or llama3's as per-pair divisors in `rope_freqs.weight`), computed as
//! transformers computes them.

use anyhow::{bail, Result};
use candle_core::Device;
use serde_json::{json, Value as Json};

use super::formats::checkpoint::Checkpoint;

/// The GGUF tensor in which llama.cpp's converter stores llama3 scaling, as one divisor per
/// rotary pair.
pub const ROPE_FREQS_TENSOR: &str = "rope_freqs.weight";
/// The GGUF tensors of longrope's per-pair divisors (Phi-3), within and beyond the original
/// context.
pub const ROPE_FACTORS_SHORT_TENSOR: &str = "rope_factors_short.weight";
pub const ROPE_FACTORS_LONG_TENSOR: &str = "rope_factors_long.weight";

/// How a model scales its rotary frequencies.
#[derive(Debug, Clone, PartialEq)]
pub enum RopeScaling {
    None,
    /// Positions divided by `factor`.
    Linear {
        factor: f32,
    },
    /// Llama 3.1's: low frequencies divided by `factor`, high ones kept, the band between
    /// interpolated (transformers' `_compute_llama3_parameters`).
    Llama3 {
        factor: f32,
        low_freq_factor: f32,
        high_freq_factor: f32,
        original_context: f32,
    },
    /// Frequency `i` divided by `divisors[i]` (a GGUF's `rope_freqs.weight`).
    Divisors(Vec<f32>),
    /// Phi-3's longrope (alias `su`): frequency `i` divided by `short[i]` for inputs up to
    /// `original_context` tokens and by `long[i]` beyond, cos and sin multiplied by
    /// `attention_factor` (transformers' `_compute_longrope_parameters`).
    LongRope {
        short: Vec<f32>,
        long: Vec<f32>,
        original_context: usize,
        attention_factor: f32,
    },
}

/// Each frequency divided by its pair's divisor.
fn divide(base: &[f32], divisors: &[f32]) -> Result<Vec<f32>> {
    if divisors.len() != base.len() {
        bail!(
            "the RoPE scaling has {} factors for {} rotary pairs",
            divisors.len(),
            base.len()
        );
    }
    Ok(base.iter().zip(divisors).map(|(f, d)| f / d).collect())
}

/// longrope's default attention factor: √(1 + ln(context / original) / ln original), 1 when the
/// context is not longer than the original.
pub fn longrope_attention_factor(context: usize, original: usize) -> f32 {
    let scale = context as f64 / original as f64;
    match scale > 1.0 {
        true => (1.0 + scale.ln() / (original as f64).ln()).sqrt() as f32,
        false => 1.0,
    }
}

/// The unscaled inverse frequencies of a head: θ^(−2i/d), in f32 as transformers computes them.
pub fn base_inv_freq(rotary_dim: usize, theta: f32) -> Vec<f32> {
    (0..rotary_dim / 2)
        .map(|i| 1f32 / theta.powf(2.0 * i as f32 / rotary_dim as f32))
        .collect()
}

impl RopeScaling {
    /// The scaled inverse frequencies of a head.
    pub fn inv_freq(&self, rotary_dim: usize, theta: f32) -> Result<Vec<f32>> {
        let base = base_inv_freq(rotary_dim, theta);
        Ok(match self {
            RopeScaling::None => base,
            RopeScaling::Linear { factor } => base.iter().map(|f| f / factor).collect(),
            RopeScaling::Llama3 {
                factor,
                low_freq_factor,
                high_freq_factor,
                original_context,
            } => {
                let low_freq_wavelen = original_context / low_freq_factor;
                let high_freq_wavelen = original_context / high_freq_factor;
                base.iter()
                    .map(|&f| {
                        let wavelen = 2.0 * std::f32::consts::PI / f;
                        if wavelen < high_freq_wavelen {
                            f
                        } else if wavelen > low_freq_wavelen {
                            f / factor
                        } else {
                            let smooth = (original_context / wavelen - low_freq_factor)
                                / (high_freq_factor - low_freq_factor);
                            (1.0 - smooth) * f / factor + smooth * f
                        }
                    })
                    .collect()
            }
            RopeScaling::Divisors(divisors)
            | RopeScaling::LongRope {
                short: divisors, ..
            } => divide(&base, divisors)?,
        })
    }

    /// The inverse frequencies for inputs longer than the original context, where they differ.
    pub fn long_inv_freq(&self, rotary_dim: usize, theta: f32) -> Result<Option<Vec<f32>>> {
        match self {
            RopeScaling::LongRope { long, .. } => {
                Ok(Some(divide(&base_inv_freq(rotary_dim, theta), long)?))
            }
            _ => Ok(None),
        }
    }

    /// The longest input that takes the short frequencies, where the length chooses.
    pub fn original_context(&self) -> Option<usize> {
        match self {
            RopeScaling::LongRope {
                original_context, ..
            } => Some(*original_context),
            _ => None,
        }
    }

    /// The factor on cos and sin (1 but for longrope).
    pub fn attention_factor(&self) -> f32 {
        match self {
            RopeScaling::LongRope {
                attention_factor, ..
            } => *attention_factor,
            _ => 1.0,
        }
    }

    /// The scaling of a checkpoint under `prefix.`: `rope_freqs.weight` when the file has it,
    /// else `rope.scaling.*` (what llama.cpp writes for linear scaling, and what a safetensors
    /// folder's config.json was translated into).
    pub fn from_checkpoint(checkpoint: &mut Checkpoint, prefix: &str) -> Result<Self> {
        if checkpoint.has_tensor(ROPE_FACTORS_SHORT_TENSOR) {
            let mut read = |name: &str| -> Result<Vec<f32>> {
                Ok(checkpoint
                    .tensor(name)?
                    .dequantize(&Device::Cpu)?
                    .flatten_all()?
                    .to_vec1::<f32>()?)
            };
            let (short, long) = (
                read(ROPE_FACTORS_SHORT_TENSOR)?,
                read(ROPE_FACTORS_LONG_TENSOR)?,
            );
            return longrope(checkpoint, prefix, short, long);
        }
        if checkpoint.has_tensor(ROPE_FREQS_TENSOR) {
            let divisors = checkpoint
                .tensor(ROPE_FREQS_TENSOR)?
                .dequantize(&Device::Cpu)?
                .flatten_all()?
                .to_vec1::<f32>()?;
            return Ok(RopeScaling::Divisors(divisors));
        }
        Self::from_metadata(checkpoint, prefix)
    }

    /// The scaling the metadata keys `prefix.rope.scaling.*` name.
    fn from_metadata(checkpoint: &Checkpoint, prefix: &str) -> Result<Self> {
        let key = |k: &str| format!("{prefix}.rope.scaling.{k}");
        if !checkpoint.has(&key("type")) {
            return Ok(RopeScaling::None);
        }
        Ok(match checkpoint.string(&key("type"))?.as_str() {
            "none" => RopeScaling::None,
            "linear" => RopeScaling::Linear {
                factor: checkpoint.f32(&key("factor"))?,
            },
            "llama3" => RopeScaling::Llama3 {
                factor: checkpoint.f32(&key("factor"))?,
                low_freq_factor: checkpoint.f32(&key("low_freq_factor"))?,
                high_freq_factor: checkpoint.f32(&key("high_freq_factor"))?,
                original_context: checkpoint.f32(&key("original_context_length"))?,
            },
            "longrope" => longrope(
                checkpoint,
                prefix,
                checkpoint.f32s(&key("short_factor"))?,
                checkpoint.f32s(&key("long_factor"))?,
            )?,
            other => bail!(
                "{}: RoPE scaling '{other}' is not supported",
                checkpoint.origin
            ),
        })
    }
}

/// longrope from its factors and the metadata's original context and attention factor.
fn longrope(
    checkpoint: &Checkpoint,
    prefix: &str,
    short: Vec<f32>,
    long: Vec<f32>,
) -> Result<RopeScaling> {
    let key = |k: &str| format!("{prefix}.{k}");
    let original_context = checkpoint.usize(&key("rope.scaling.original_context_length"))?;
    let attention_factor = match checkpoint.optional_f32(&key("rope.scaling.attn_factor"))? {
        Some(factor) => factor,
        None => {
            longrope_attention_factor(checkpoint.usize(&key("context_length"))?, original_context)
        }
    };
    Ok(RopeScaling::LongRope {
        short,
        long,
        original_context,
        attention_factor,
    })
}

/// The config.json `rope_scaling` of a checkpoint's scaling, for export; `None` without one. A
/// GGUF's per-pair divisors have no config.json form, so they are refused.
pub fn scaling_to_config(checkpoint: &Checkpoint, prefix: &str) -> Result<Option<Json>> {
    for tensor in [ROPE_FREQS_TENSOR, ROPE_FACTORS_SHORT_TENSOR] {
        if checkpoint.has_tensor(tensor) {
            bail!(
                "{}: its RoPE scaling is stored as per-frequency factors ({tensor}), which \
                 valuelens does not export; export the model from its safetensors folder instead",
                checkpoint.origin
            );
        }
    }
    Ok(match RopeScaling::from_metadata(checkpoint, prefix)? {
        RopeScaling::None => None,
        RopeScaling::Linear { factor } => Some(json!({"rope_type": "linear", "factor": factor})),
        RopeScaling::Llama3 {
            factor,
            low_freq_factor,
            high_freq_factor,
            original_context,
        } => Some(json!({
            "rope_type": "llama3",
            "factor": factor,
            "low_freq_factor": low_freq_factor,
            "high_freq_factor": high_freq_factor,
            "original_max_position_embeddings": original_context as u64,
        })),
        RopeScaling::LongRope {
            short,
            long,
            original_context,
            attention_factor,
        } => Some(json!({
            "rope_type": "longrope",
            "short_factor": short,
            "long_factor": long,
            "original_max_position_embeddings": original_context,
            "attention_factor": attention_factor,
        })),
        RopeScaling::Divisors(_) => unreachable!("divisors come from the tensor only"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// llama.cpp's converter turns llama3 scaling into per-pair divisors; both give the same
    /// frequencies.
    #[test]
    fn llama3_scaling_equals_the_converters_divisors() {
        let (dim, theta) = (16, 500_000.0);
        let (factor, low, high, original) = (8.0f32, 1.0f32, 4.0f32, 64.0f32);
        let scaled = RopeScaling::Llama3 {
            factor,
            low_freq_factor: low,
            high_freq_factor: high,
            original_context: original,
        }
        .inv_freq(dim, theta)
        .unwrap();
        // convert_hf_to_gguf.py's LlamaModel.generate_extra_tensors, in f64.
        let divisors: Vec<f32> = base_inv_freq(dim, theta)
            .iter()
            .map(|&f| {
                let wavelen = 2.0 * std::f64::consts::PI / f as f64;
                let (low_wavelen, high_wavelen) =
                    (original as f64 / low as f64, original as f64 / high as f64);
                if wavelen < high_wavelen {
                    1.0
                } else if wavelen > low_wavelen {
                    factor
                } else {
                    let smooth = (original as f64 / wavelen - low as f64) / (high - low) as f64;
                    (1.0 / ((1.0 - smooth) / factor as f64 + smooth)) as f32
                }
            })
            .collect();
        assert!(
            divisors.contains(&1.0) && divisors.contains(&factor),
            "{divisors:?}"
        );
        assert!(
            divisors.iter().any(|&d| d > 1.0 && d < factor),
            "a medium band"
        );
        let from_divisors = RopeScaling::Divisors(divisors)
            .inv_freq(dim, theta)
            .unwrap();
        for (a, b) in scaled.iter().zip(&from_divisors) {
            assert!((a - b).abs() <= 1e-6 * a.abs(), "{a} vs {b}");
        }
        let linear = RopeScaling::Linear { factor: 4.0 }
            .inv_freq(dim, theta)
            .unwrap();
        assert_eq!(linear[0], 0.25);
    }
}
