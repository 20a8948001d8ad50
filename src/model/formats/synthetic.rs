//! `--model synthetic:<arch>-<size>[@tokenizer]`: a real model's shapes (its GGUF metadata and
//! tensor layout: llama, Llama 3.1 with its RoPE scaling, Mistral, Qwen3, Gemma 2, Phi-3) with
//! random weights from a fixed seed, for measuring throughput where real weights cannot travel and for comparing
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
use candle_core::quantized::ggml_file::qtensor_from_ggml;
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

/// How a GGUF of an architecture lays out its layers' tensors.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Layout {
    /// Q, K, V, O; gate, up, down; two norms (llama, mistral, qwen2).
    Llama,
    /// llama's, with a norm on each head of Q and K (qwen3).
    QkNorm,
    /// Q, K and V in one `attn_qkv`, gate and up in one `ffn_up` (phi3).
    Fused,
    /// norms before and after attention and the feed-forward (gemma2) …
    Gemma,
    /// … and on each head of Q and K (gemma3).
    GemmaQkNorm,
}

/// The shapes of a real model, as its GGUF file's metadata states them.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Shape {
    name: &'static str,
    /// `general.architecture`.
    architecture: &'static str,
    layout: Layout,
    hidden: usize,
    layers: usize,
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
    ffn: usize,
    vocab: usize,
    context: usize,
    rope_theta: f32,
    tied: bool,
    /// Every layer's window (mistral, phi3), or gemma's sliding layers'.
    sliding_window: Option<usize>,
    /// Llama 3.1's RoPE scaling: (factor, low, high, original context).
    llama3_rope: Option<(f32, f32, f32, f32)>,
    /// Gemma 2's attention and final-logit caps.
    softcaps: Option<(f32, f32)>,
}

const fn llama(name: &'static str, hidden: usize, layers: usize, heads: usize) -> Shape {
    Shape {
        name,
        architecture: "llama",
        layout: Layout::Llama,
        hidden,
        layers,
        heads,
        kv_heads: heads,
        head_dim: hidden / heads,
        ffn: 4 * hidden,
        vocab: 32_000,
        context: 8192,
        rope_theta: 10_000.0,
        tied: false,
        sliding_window: None,
        llama3_rope: None,
        softcaps: None,
    }
}

const SHAPES: &[Shape] = &[
    // Two tiny layers with SmolLM2's vocabulary: with the default model's tokenizer it asks
    // and plans exactly SmolLM2's tokens at almost no cost, to count what a run computes.
    Shape {
        kv_heads: 2,
        ffn: 128,
        vocab: 49_152,
        tied: true,
        ..llama("llama-tiny", 64, 2, 4)
    },
    // SmolLM2-135M
    Shape {
        kv_heads: 3,
        ffn: 1536,
        vocab: 49_152,
        rope_theta: 100_000.0,
        tied: true,
        ..llama("llama-135m", 576, 30, 9)
    },
    // Llama-3.2-1B (its RoPE scaling left out, as before the scaling was supported)
    Shape {
        kv_heads: 8,
        ffn: 8192,
        vocab: 128_256,
        rope_theta: 500_000.0,
        tied: true,
        ..llama("llama-1b", 2048, 16, 32)
    },
    // Llama-3.1-8B without its RoPE scaling (the shape measured before it was supported)
    Shape {
        kv_heads: 8,
        ffn: 14_336,
        vocab: 128_256,
        rope_theta: 500_000.0,
        ..llama("llama-8b", 4096, 32, 32)
    },
    // Llama-3.1-8B(-Instruct), with its llama3 RoPE scaling
    Shape {
        kv_heads: 8,
        ffn: 14_336,
        vocab: 128_256,
        context: 131_072,
        rope_theta: 500_000.0,
        llama3_rope: Some((8.0, 1.0, 4.0, 8192.0)),
        ..llama("llama-3.1-8b", 4096, 32, 32)
    },
    // Mistral-7B-Instruct-v0.1 (sliding window 4,096)
    Shape {
        kv_heads: 8,
        ffn: 14_336,
        vocab: 32_000,
        context: 32_768,
        sliding_window: Some(4096),
        ..llama("mistral-7b", 4096, 32, 32)
    },
    // Qwen3-8B
    Shape {
        architecture: "qwen3",
        layout: Layout::QkNorm,
        kv_heads: 8,
        head_dim: 128,
        ffn: 12_288,
        vocab: 151_936,
        context: 40_960,
        rope_theta: 1_000_000.0,
        ..llama("qwen3-8b", 4096, 36, 32)
    },
    // gemma-2-9b(-it)
    Shape {
        architecture: "gemma2",
        layout: Layout::Gemma,
        kv_heads: 8,
        head_dim: 256,
        ffn: 14_336,
        vocab: 256_000,
        tied: true,
        sliding_window: Some(4096),
        softcaps: Some((50.0, 30.0)),
        ..llama("gemma2-9b", 3584, 42, 16)
    },
    // gemma-3-270m
    Shape {
        architecture: "gemma3",
        layout: Layout::GemmaQkNorm,
        kv_heads: 1,
        head_dim: 256,
        ffn: 2048,
        vocab: 262_144,
        context: 32_768,
        rope_theta: 1_000_000.0,
        tied: true,
        sliding_window: Some(512),
        ..llama("gemma3-270m", 640, 18, 4)
    },
    // Phi-3-mini-4k-instruct
    Shape {
        architecture: "phi3",
        layout: Layout::Fused,
        ffn: 8192,
        vocab: 32_064,
        context: 4096,
        sliding_window: Some(2047),
        ..llama("phi3-mini", 3072, 32, 32)
    },
    // llama-tiny with Llama 3.1's RoPE scaling (exports write it as llama.cpp does)
    Shape {
        kv_heads: 2,
        ffn: 128,
        vocab: 49_152,
        tied: true,
        context: 131_072,
        llama3_rope: Some((8.0, 1.0, 4.0, 8192.0)),
        ..llama("llama3-tiny", 64, 2, 4)
    },
];

/// A parsed `synthetic:<shape>[+<format>][@tokenizer folder]`.
#[derive(Debug, Clone, PartialEq)]
pub struct SyntheticSpec {
    /// The spec as given, which names the model in reports and messages.
    pub text: String,
    shape: Shape,
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

fn shape_metadata(shape: &Shape) -> Metadata {
    let mut m = Metadata::new();
    let arch = shape.architecture;
    m.insert(
        "general.architecture".into(),
        Value::String(arch.to_string()),
    );
    let mut set = |k: &str, v: Value| {
        m.insert(format!("{arch}.{k}"), v);
    };
    let int = |v: usize| crate::model::architectures::architecture::gguf_uint(v as u64);
    set("embedding_length", int(shape.hidden));
    set("block_count", int(shape.layers));
    set("attention.head_count", int(shape.heads));
    set("attention.head_count_kv", int(shape.kv_heads));
    set("feed_forward_length", int(shape.ffn));
    set("context_length", int(shape.context));
    set("attention.key_length", int(shape.head_dim));
    set("attention.value_length", int(shape.head_dim));
    if !matches!(shape.layout, Layout::Gemma | Layout::GemmaQkNorm) {
        set("rope.dimension_count", int(shape.head_dim));
    }
    set("rope.freq_base", Value::F32(shape.rope_theta));
    set("attention.layer_norm_rms_epsilon", Value::F32(1e-5));
    if let Some(window) = shape.sliding_window {
        set("attention.sliding_window", int(window));
    }
    if let Some((factor, low, high, original)) = shape.llama3_rope {
        set("rope.scaling.type", Value::String("llama3".into()));
        set("rope.scaling.factor", Value::F32(factor));
        set("rope.scaling.low_freq_factor", Value::F32(low));
        set("rope.scaling.high_freq_factor", Value::F32(high));
        set(
            "rope.scaling.original_context_length",
            int(original as usize),
        );
    }
    if let Some((attention, last)) = shape.softcaps {
        set("attn_logit_softcapping", Value::F32(attention));
        set("final_logit_softcapping", Value::F32(last));
    }
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
    ("q2_k", GgmlDType::Q2K),
    ("q3_k", GgmlDType::Q3K),
    ("q4_k", GgmlDType::Q4K),
    ("q5_k", GgmlDType::Q5K),
    ("q6_k", GgmlDType::Q6K),
    ("f16", GgmlDType::F16),
];

/// The GGUF storage format called `name` (`q4_k`, `q8_0`, …); `spec` is what to name in errors.
pub fn parse_format(spec: &str, name: &str) -> Result<GgmlDType> {
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
    fn new(origin: &str, shape: &Shape, format: Option<GgmlDType>) -> Self {
        let (q, kv, h, f, d) = (
            shape.heads * shape.head_dim,
            shape.kv_heads * shape.head_dim,
            shape.hidden,
            shape.ffn,
            shape.head_dim,
        );
        let mut shapes = HashMap::new();
        shapes.insert("token_embd.weight".to_string(), vec![shape.vocab, h]);
        shapes.insert("output_norm.weight".to_string(), vec![h]);
        if !shape.tied {
            shapes.insert("output.weight".to_string(), vec![shape.vocab, h]);
        }
        let mut layer: Vec<(&str, Vec<usize>)> = vec![
            ("attn_norm", vec![h]),
            ("attn_output", vec![h, q]),
            ("ffn_norm", vec![h]),
            ("ffn_down", vec![h, f]),
        ];
        match shape.layout {
            Layout::Fused => {
                layer.push(("attn_qkv", vec![q + 2 * kv, h]));
                layer.push(("ffn_up", vec![2 * f, h]));
            }
            _ => {
                layer.push(("attn_q", vec![q, h]));
                layer.push(("attn_k", vec![kv, h]));
                layer.push(("attn_v", vec![kv, h]));
                layer.push(("ffn_gate", vec![f, h]));
                layer.push(("ffn_up", vec![f, h]));
            }
        }
        if matches!(shape.layout, Layout::QkNorm | Layout::GemmaQkNorm) {
            layer.push(("attn_q_norm", vec![d]));
            layer.push(("attn_k_norm", vec![d]));
        }
        if matches!(shape.layout, Layout::Gemma | Layout::GemmaQkNorm) {
            layer.push(("post_attention_norm", vec![h]));
            layer.push(("post_ffw_norm", vec![h]));
        }
        for i in 0..shape.layers {
            for (name, dims) in &layer {
                shapes.insert(format!("blk.{i}.{name}.weight"), dims.clone());
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

    fn dtype(&self, name: &str) -> Option<GgmlDType> {
        let dims = self.shapes.get(name)?;
        match self.format {
            Some(format) if !name.ends_with("norm.weight") && dims.len() == 2 => Some(format),
            _ => Some(GgmlDType::F32),
        }
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
        quantize_rows_in_parallel(&tensor, format).with_context(|| {
            format!(
                "{origin}: cannot store '{name}' {dims:?} as {format:?} (K formats need rows of a \
                 multiple of 256 values)"
            )
        })
    }
}

/// `QTensor::quantize`, its rows cut into chunks quantized on all threads (GGUF's blocks never
/// span two rows, so the bytes are those of one call; candle quantizes on one thread, which
/// took an 8B shape's k-quants minutes).
pub fn quantize_rows_in_parallel(tensor: &Tensor, format: GgmlDType) -> Result<QTensor> {
    let dims = tensor.dims().to_vec();
    let row_len = dims.last().copied().unwrap_or(1).max(1);
    let values = tensor.flatten_all()?.to_vec1::<f32>()?;
    let rows = values.len() / row_len;
    let chunk_rows = rows
        .div_ceil(4 * rayon::current_num_threads())
        .clamp(1, 1024);
    if format == GgmlDType::F32 || rows <= chunk_rows {
        return Ok(QTensor::quantize(tensor, format)?);
    }
    let parts = values
        .par_chunks(chunk_rows * row_len)
        .map(|chunk| {
            let rows = Tensor::from_slice(chunk, (chunk.len() / row_len, row_len), &Device::Cpu)?;
            Ok(QTensor::quantize(&rows, format)?.data()?.to_vec())
        })
        .collect::<Result<Vec<Vec<u8>>>>()?;
    Ok(qtensor_from_ggml(
        format,
        &parts.concat(),
        dims,
        &Device::Cpu,
    )?)
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
        let mut tensors = SyntheticTensors::new(origin, &SHAPES[1], Some(GgmlDType::Q8_0));
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
        let mut tensors = SyntheticTensors::new(origin, &SHAPES[1], Some(GgmlDType::Q4K));
        let err = format!("{:#}", tensors.read("blk.0.attn_q.weight").unwrap_err());
        assert!(err.contains("multiple of 256"), "{err}");
    }

    #[test]
    fn rows_quantized_in_parallel_give_the_bytes_of_one_call() {
        let values = random_uniform(5, 700 * 512, WEIGHT_STD);
        let tensor = Tensor::from_vec(values, (700, 512), &Device::Cpu).unwrap();
        for format in [GgmlDType::Q4K, GgmlDType::Q8_0, GgmlDType::Q5_0] {
            let one = QTensor::quantize(&tensor, format).unwrap();
            let parallel = quantize_rows_in_parallel(&tensor, format).unwrap();
            assert_eq!(parallel.shape(), one.shape());
            assert!(
                parallel.data().unwrap() == one.data().unwrap(),
                "{format:?}"
            );
        }
    }

    #[test]
    fn unknown_shapes_are_named_with_the_known_ones() {
        let err = SyntheticSpec::parse("synthetic:llama-3b")
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("llama-135m") && err.contains("gemma2-9b") && err.contains("phi3-mini"),
            "{err}"
        );
    }
}
