//! `--model synthetic:<arch>-<size>[@tokenizer]`: a real model's shapes with random weights from
//! a fixed seed, for measuring throughput where real weights cannot travel and for comparing
//! devices on identical weights. The scores mean nothing; the work per token is the real
//! model's.
//!
//! `synthetic:<shape>+<format>` (e.g. `+q8_0`) stores the weight matrices in a GGUF quantized
//! format, as a quantized GGUF file would, so that quantized kernels can be compared across
//! devices on identical weights.
//!
//! The tokenizer (and chat template) is the default registry model's, or, after `@`, a folder
//! holding a `tokenizer.json` (and `tokenizer_config.json`), such as one `valuelens export`
//! wrote — about 2 MB, so it travels where weights do not. The loader adds it (`open.rs`).

use std::collections::HashMap;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use candle_core::quantized::gguf_file::Value;
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor};
use rayon::prelude::*;

use super::{Metadata, TensorSource};
use crate::random::splitmix64;

/// Weights are uniform with this standard deviation (as initialisers use) …
const WEIGHT_STD: f32 = 0.02;
/// … and norm weights 1 plus uniform noise of this standard deviation (not all 1, so that a
/// norm read in the wrong place changes the scores).
const NORM_STD: f32 = 0.1;
const SEED: u64 = 0x005e_ed0f_7a1e_u64;

/// The shapes of a llama-architecture model.
#[derive(Debug, Clone, Copy, PartialEq)]
struct LlamaShape {
    name: &'static str,
    hidden: usize,
    layers: usize,
    heads: usize,
    kv_heads: usize,
    ffn: usize,
    vocab: usize,
    rope_theta: f32,
    tied: bool,
}

const SHAPES: &[LlamaShape] = &[
    // SmolLM2-135M
    LlamaShape {
        name: "llama-135m",
        hidden: 576,
        layers: 30,
        heads: 9,
        kv_heads: 3,
        ffn: 1536,
        vocab: 49_152,
        rope_theta: 100_000.0,
        tied: true,
    },
    // Llama-3.2-1B
    LlamaShape {
        name: "llama-1b",
        hidden: 2048,
        layers: 16,
        heads: 32,
        kv_heads: 8,
        ffn: 8192,
        vocab: 128_256,
        rope_theta: 500_000.0,
        tied: true,
    },
    // Llama-3.1-8B
    LlamaShape {
        name: "llama-8b",
        hidden: 4096,
        layers: 32,
        heads: 32,
        kv_heads: 8,
        ffn: 14_336,
        vocab: 128_256,
        rope_theta: 500_000.0,
        tied: false,
    },
];

/// A parsed `synthetic:<shape>[+<format>][@tokenizer folder]`.
#[derive(Debug, Clone, PartialEq)]
pub struct SyntheticSpec {
    /// The spec as given, which names the model in reports and messages.
    pub text: String,
    shape: LlamaShape,
    /// The quantized format of the weight matrices (norms stay f32); `None`: f32.
    format: Option<GgmlDType>,
    /// A folder with the `tokenizer.json` (and `tokenizer_config.json`) to use; `None`: the
    /// default registry model's tokenizer.
    pub tokenizer_dir: Option<PathBuf>,
}

impl SyntheticSpec {
    /// Whether a `--model` argument names a synthetic model.
    pub fn is_synthetic(spec: &str) -> bool {
        spec.starts_with("synthetic:")
    }

    pub fn parse(spec: &str) -> Result<Self> {
        let rest = spec.strip_prefix("synthetic:").unwrap_or(spec);
        let (shape_name, tokenizer_dir) = match rest.split_once('@') {
            Some((shape, dir)) => (shape, Some(PathBuf::from(dir))),
            None => (rest, None),
        };
        let (shape_name, format) = match shape_name.split_once('+') {
            Some((shape, format)) => (shape, Some(parse_format(spec, format)?)),
            None => (shape_name, None),
        };
        let Some(shape) = SHAPES.iter().find(|s| s.name == shape_name).copied() else {
            bail!(
                "'{spec}': unknown synthetic shape '{shape_name}' (known: {})",
                SHAPES.iter().map(|s| s.name).collect::<Vec<_>>().join(", ")
            );
        };
        if let Some(dir) = &tokenizer_dir {
            if !dir.join("tokenizer.json").is_file() {
                bail!(
                    "'{spec}': {} has no tokenizer.json (`valuelens export` writes one)",
                    dir.display()
                );
            }
        }
        Ok(Self {
            text: spec.to_string(),
            shape,
            format,
            tokenizer_dir,
        })
    }
}

/// The model's metadata (its shapes; no tokenizer) and its generated tensors.
pub fn open(spec: &SyntheticSpec) -> (Metadata, SyntheticTensors) {
    (
        shape_metadata(&spec.shape),
        SyntheticTensors::new(&spec.text, &spec.shape, spec.format),
    )
}

fn shape_metadata(shape: &LlamaShape) -> Metadata {
    let mut m = Metadata::new();
    m.insert("general.architecture".into(), Value::String("llama".into()));
    let mut int = |k: &str, v: usize| {
        m.insert(format!("llama.{k}"), Value::U64(v as u64));
    };
    int("embedding_length", shape.hidden);
    int("block_count", shape.layers);
    int("attention.head_count", shape.heads);
    int("attention.head_count_kv", shape.kv_heads);
    int("feed_forward_length", shape.ffn);
    int("context_length", 8192);
    int("rope.dimension_count", shape.hidden / shape.heads);
    m.insert("llama.rope.freq_base".into(), Value::F32(shape.rope_theta));
    m.insert(
        "llama.attention.layer_norm_rms_epsilon".into(),
        Value::F32(1e-5),
    );
    m
}

/// The tensors of a synthetic model, generated on read from the seed and the tensor's name,
/// so they do not depend on the order of reads or on the device.
pub struct SyntheticTensors {
    /// The spec, named in errors.
    origin: String,
    shapes: HashMap<String, Vec<usize>>,
    /// The quantized format of the weight matrices (norms stay f32); `None`: f32.
    format: Option<GgmlDType>,
}

/// The quantized formats `+<format>` accepts, by their GGUF names.
const FORMATS: &[(&str, GgmlDType)] = &[
    ("q4_0", GgmlDType::Q4_0),
    ("q4_1", GgmlDType::Q4_1),
    ("q5_0", GgmlDType::Q5_0),
    ("q5_1", GgmlDType::Q5_1),
    ("q8_0", GgmlDType::Q8_0),
    ("q4_k", GgmlDType::Q4K),
    ("q5_k", GgmlDType::Q5K),
    ("q6_k", GgmlDType::Q6K),
    ("f16", GgmlDType::F16),
];

fn parse_format(spec: &str, name: &str) -> Result<GgmlDType> {
    match FORMATS.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)) {
        Some(&(_, format)) => Ok(format),
        None => bail!(
            "'{spec}': unknown weight format '{name}' (known: {})",
            FORMATS
                .iter()
                .map(|(n, _)| *n)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

impl SyntheticTensors {
    fn new(origin: &str, shape: &LlamaShape, format: Option<GgmlDType>) -> Self {
        let head_dim = shape.hidden / shape.heads;
        let (q, kv, h, f) = (
            shape.heads * head_dim,
            shape.kv_heads * head_dim,
            shape.hidden,
            shape.ffn,
        );
        let mut shapes = HashMap::new();
        shapes.insert("token_embd.weight".to_string(), vec![shape.vocab, h]);
        shapes.insert("output_norm.weight".to_string(), vec![h]);
        if !shape.tied {
            shapes.insert("output.weight".to_string(), vec![shape.vocab, h]);
        }
        for i in 0..shape.layers {
            for (name, dims) in [
                ("attn_norm", vec![h]),
                ("attn_q", vec![q, h]),
                ("attn_k", vec![kv, h]),
                ("attn_v", vec![kv, h]),
                ("attn_output", vec![h, q]),
                ("ffn_norm", vec![h]),
                ("ffn_gate", vec![f, h]),
                ("ffn_up", vec![f, h]),
                ("ffn_down", vec![h, f]),
            ] {
                shapes.insert(format!("blk.{i}.{name}.weight"), dims);
            }
        }
        Self {
            origin: origin.to_string(),
            shapes,
            format,
        }
    }
}

impl TensorSource for SyntheticTensors {
    fn has(&self, name: &str) -> bool {
        self.shapes.contains_key(name)
    }

    fn names(&self) -> Vec<String> {
        self.shapes.keys().cloned().collect()
    }

    fn dims(&self, name: &str) -> Option<Vec<usize>> {
        self.shapes.get(name).cloned()
    }

    fn read(&mut self, name: &str) -> Result<QTensor> {
        let origin = &self.origin;
        let dims = self
            .shapes
            .get(name)
            .with_context(|| format!("{origin}: no tensor '{name}'"))?;
        let count: usize = dims.iter().product();
        let is_norm = name.ends_with("norm.weight");
        let values = if is_norm {
            let mut values = random_uniform(tensor_seed(name), count, NORM_STD);
            values.iter_mut().for_each(|v| *v += 1.0);
            values
        } else {
            random_uniform(tensor_seed(name), count, WEIGHT_STD)
        };
        let tensor = Tensor::from_vec(values, dims.as_slice(), &Device::Cpu)?;
        let format = match self.format {
            Some(format) if !is_norm => format,
            _ => GgmlDType::F32,
        };
        QTensor::quantize(&tensor, format).with_context(|| {
            format!(
                "{origin}: cannot store '{name}' {dims:?} as {format:?} (K formats need rows of a \
                 multiple of 256 values)"
            )
        })
    }
}

/// FNV-1a of the name, mixed with the global seed.
fn tensor_seed(name: &str) -> u64 {
    let hash = name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    hash ^ SEED
}

/// `count` values uniform on [−√3·std, √3·std) (standard deviation `std`), in parallel.
fn random_uniform(seed: u64, count: usize, std: f32) -> Vec<f32> {
    let half_width = std * 3f32.sqrt();
    let mut out = vec![0f32; count];
    out.par_chunks_mut(1 << 16)
        .enumerate()
        .for_each(|(chunk, values)| {
            let first = (chunk << 16) as u64;
            for (i, v) in values.iter_mut().enumerate() {
                let bits = splitmix64(seed.wrapping_add(first + i as u64));
                // The top 24 bits as a fraction in [0, 1).
                let unit = (bits >> 40) as f32 / (1u64 << 24) as f32;
                *v = (2.0 * unit - 1.0) * half_width;
            }
        });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_are_reproducible_and_have_the_intended_spread() {
        let a = random_uniform(tensor_seed("blk.0.attn_q.weight"), 200_000, 0.02);
        let b = random_uniform(tensor_seed("blk.0.attn_q.weight"), 200_000, 0.02);
        let c = random_uniform(tensor_seed("blk.0.attn_k.weight"), 200_000, 0.02);
        assert_eq!(a, b);
        assert_ne!(a[..100], c[..100]);
        let mean = a.iter().map(|&x| x as f64).sum::<f64>() / a.len() as f64;
        let var = a.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / a.len() as f64;
        assert!(mean.abs() < 2e-4, "mean {mean}");
        assert!((var.sqrt() - 0.02).abs() < 2e-4, "std {}", var.sqrt());
    }

    #[test]
    fn quantized_formats_store_the_weight_matrices_only() {
        let origin = "synthetic:llama-135m+q8_0";
        let mut tensors = SyntheticTensors::new(origin, &SHAPES[0], Some(GgmlDType::Q8_0));
        let q = tensors.read("blk.0.attn_q.weight").unwrap();
        assert_eq!(q.dtype(), GgmlDType::Q8_0);
        let norm = tensors.read("blk.0.attn_norm.weight").unwrap();
        assert_eq!(norm.dtype(), GgmlDType::F32);
        let err = SyntheticSpec::parse("synthetic:llama-135m+q3")
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("q8_0"), "{err}");
        // 576-wide rows are not whole 256-value K blocks.
        let mut tensors = SyntheticTensors::new(origin, &SHAPES[0], Some(GgmlDType::Q4K));
        let err = format!("{:#}", tensors.read("blk.0.attn_q.weight").unwrap_err());
        assert!(err.contains("multiple of 256"), "{err}");
    }

    #[test]
    fn unknown_shapes_are_named_with_the_known_ones() {
        let err = SyntheticSpec::parse("synthetic:llama-3b")
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("llama-135m") && err.contains("llama-8b"),
            "{err}"
        );
    }
}
