//! Building blocks shared by the architectures: linear layers that are either quantized or
//! dequantized, rotary tables indexed by per-token positions, attention over packed sequences,
//! and the LM head with log-softmax applied to the scored rows only.

use std::ops::Range;

use anyhow::{bail, Result};
use candle_core::quantized::{GgmlDType, QMatMul, QStorage, QTensor};
use candle_core::{DType, Device, Module, Tensor, D};

use super::checkpoint::Checkpoint;
pub use super::cpu_ops::GateActivation;
use super::{cpu_attention, cpu_ops, PackedBatch, RowScore};

/// How weights are kept in memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
pub enum WeightMode {
    /// Dequantized to f32 at load: the fastest path on CPU with candle's kernels.
    F32,
    /// Kept quantized and multiplied with candle's `QMatMul` kernels (formats without a fast
    /// kernel are requantized at load to a finer one that has it).
    Quantized,
}

/// A weight matrix `[out, in]`, applied as `x · Wᵀ`.
pub struct Linear {
    parts: Vec<QMatMul>,
}

impl Linear {
    /// One matrix whose output rows are the rows of `parts` stacked in order (e.g. Q, K and V),
    /// so that one large matmul replaces several small ones.
    pub fn stacked(parts: Vec<QTensor>, mode: WeightMode) -> Result<Self> {
        let parts = match mode {
            WeightMode::F32 => parts,
            WeightMode::Quantized => parts
                .into_iter()
                .map(with_fast_kernel)
                .collect::<Result<Vec<_>>>()?,
        };
        let same_dtype = parts.windows(2).all(|w| w[0].dtype() == w[1].dtype());
        match mode {
            WeightMode::F32 => {
                let dense = parts
                    .iter()
                    .map(|p| p.dequantize(&Device::Cpu))
                    .collect::<candle_core::Result<Vec<_>>>()?;
                let w = Tensor::cat(&dense, 0)?;
                Ok(Self {
                    parts: vec![QMatMul::Tensor(w)],
                })
            }
            WeightMode::Quantized if same_dtype && parts.len() > 1 => {
                let (_, cols) = parts[0].shape().dims2()?;
                let mut rows = 0;
                let mut bytes = Vec::new();
                for p in &parts {
                    let (r, c) = p.shape().dims2()?;
                    if c != cols {
                        bail!("cannot stack weights of {cols} and {c} columns");
                    }
                    rows += r;
                    bytes.extend_from_slice(&p.data()?);
                }
                let storage = QStorage::from_data(bytes.into(), &Device::Cpu, parts[0].dtype())?;
                let q = QTensor::new(storage, (rows, cols))?;
                Ok(Self {
                    parts: vec![QMatMul::from_qtensor(q)?],
                })
            }
            WeightMode::Quantized => Ok(Self {
                parts: parts
                    .into_iter()
                    .map(QMatMul::from_qtensor)
                    .collect::<candle_core::Result<_>>()?,
            }),
        }
    }

    pub fn new(weight: QTensor, mode: WeightMode) -> Result<Self> {
        Self::stacked(vec![weight], mode)
    }

    /// A dense f32 matrix (e.g. a tied embedding table used as LM head).
    pub fn dense(weight: Tensor) -> Self {
        Self {
            parts: vec![QMatMul::Tensor(weight)],
        }
    }

    /// `x: [rows, in]` → `[rows, out]`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if self.parts.len() == 1 {
            return Ok(self.parts[0].forward(x)?);
        }
        let outs = self
            .parts
            .iter()
            .map(|p| p.forward(x))
            .collect::<candle_core::Result<Vec<_>>>()?;
        Ok(Tensor::cat(&outs, D::Minus1)?)
    }
}

/// The LM head: the file's `output.weight`, or the embedding table when the two are tied (kept
/// quantized in quantized mode, the already dequantized `embeddings` in f32 mode).
pub fn lm_head(
    checkpoint: &mut Checkpoint,
    embeddings_q: QTensor,
    embeddings: &Tensor,
    mode: WeightMode,
) -> Result<Linear> {
    if checkpoint.has_tensor("output.weight") {
        return Linear::new(checkpoint.tensor("output.weight")?, mode);
    }
    match mode {
        WeightMode::F32 => Ok(Linear::dense(embeddings.clone())),
        WeightMode::Quantized => Linear::new(embeddings_q, mode),
    }
}

/// The legacy 4/5-bit formats (Q4_0, Q4_1, Q5_0, Q5_1) have only scalar `vec_dot` kernels in
/// candle 0.11.1: measured here at 512×576×960, Q4_1 runs at 4.7 GFLOP/s against 20 for Q8_0
/// (`cargo bench --bench kernels`). Such weights are requantized to Q8_0 at load: 4–5× faster,
/// and Q8_0 is finer than the source grid (SmolLM2 fixtures: mean |Δ| per token vs the f32
/// reference 0.078 instead of 0.069). Q6_K would be faster still where rows are a multiple of
/// 256 (132 GFLOP/s at 512×1536×576) but doubled the error (0.128), so it is not used.
fn with_fast_kernel(weight: QTensor) -> Result<QTensor> {
    match weight.dtype() {
        GgmlDType::Q4_0 | GgmlDType::Q4_1 | GgmlDType::Q5_0 | GgmlDType::Q5_1 => {
            let dense = weight.dequantize(&Device::Cpu)?;
            Ok(QTensor::quantize(&dense, GgmlDType::Q8_0)?)
        }
        _ => Ok(weight),
    }
}

/// cos/sin tables of rotary position embeddings, `[max_positions, rotary_dim / 2]`.
pub struct RopeTables {
    cos: Tensor,
    sin: Tensor,
}

impl RopeTables {
    pub fn new(rotary_dim: usize, theta: f32, max_positions: usize) -> Result<Self> {
        Self::linearly_scaled(rotary_dim, theta, 1.0, max_positions)
    }

    /// Tables for positions divided by `factor` (linear RoPE scaling, as gemma 3's global layers
    /// use beyond 270M).
    pub fn linearly_scaled(
        rotary_dim: usize,
        theta: f32,
        factor: f32,
        max_positions: usize,
    ) -> Result<Self> {
        let half = rotary_dim / 2;
        let inv_freq: Vec<f32> = (0..half)
            .map(|i| 1f32 / theta.powf(2.0 * i as f32 / rotary_dim as f32) / factor)
            .collect();
        let mut cos = Vec::with_capacity(max_positions * half);
        let mut sin = Vec::with_capacity(max_positions * half);
        for p in 0..max_positions {
            for f in &inv_freq {
                let angle = p as f32 * f;
                cos.push(angle.cos());
                sin.push(angle.sin());
            }
        }
        Ok(Self {
            cos: Tensor::from_vec(cos, (max_positions, half), &Device::Cpu)?,
            sin: Tensor::from_vec(sin, (max_positions, half), &Device::Cpu)?,
        })
    }

    /// Rows of the tables for each token's own position: `([T, d/2], [T, d/2])`.
    pub fn at(&self, positions: &Tensor) -> Result<(Tensor, Tensor)> {
        Ok((
            self.cos.index_select(positions, 0)?,
            self.sin.index_select(positions, 0)?,
        ))
    }
}

/// Per-forward tensors derived from the batch once and shared by every layer.
pub struct BatchTensors {
    pub ids: Tensor,
    pub cos: Tensor,
    pub sin: Tensor,
}

impl BatchTensors {
    pub fn new(batch: &PackedBatch, rope: &RopeTables) -> Result<Self> {
        let device = Device::Cpu;
        let ids = Tensor::new(batch.tokens.as_slice(), &device)?;
        let positions = Tensor::new(batch.positions.as_slice(), &device)?;
        let (cos, sin) = rope.at(&positions)?;
        Ok(Self { ids, cos, sin })
    }
}

/// How the attention of one layer turns query·key products into weights.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AttentionSpec {
    /// Factor on q·k (usually 1/√head_dim).
    pub scale: f32,
    /// A query at position p sees keys at positions p − window < j ≤ p only (sliding-window
    /// layers); `None` is plain causal attention.
    pub window: Option<usize>,
    /// Scaled scores are capped to `cap · tanh(s / cap)` before the softmax (gemma 2).
    pub softcap: Option<f32>,
}

impl AttentionSpec {
    pub fn causal(scale: f32) -> Self {
        Self {
            scale,
            window: None,
            softcap: None,
        }
    }

    /// The key positions a query at `position` attends to.
    pub fn visible_keys(&self, position: usize) -> Range<usize> {
        let end = position + 1;
        let start = self.window.map_or(0, |w| end.saturating_sub(w));
        start..end
    }
}

/// How rotary embeddings pair up the dimensions of a head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RopeStyle {
    /// Adjacent pairs (2i, 2i + 1): llama's GGUF layout.
    Interleaved,
    /// The two halves (i, i + d/2): the NEOX layout of qwen2 and gemma.
    Halves,
}

/// `n` heads of `head_dim` starting at column `offset` of the projections `x: [T, ·]`, as
/// `[T, n, head_dim]`.
pub fn heads(x: &Tensor, offset: usize, n: usize, head_dim: usize) -> Result<Tensor> {
    let tokens = x.dim(0)?;
    Ok(x.narrow(1, offset, n * head_dim)?
        .reshape((tokens, n, head_dim))?)
}

/// `[T, n, head_dim]` → head-major `[n, T, head_dim]` with rotary embeddings applied at the
/// tokens' positions (`cos`, `sin` from [`BatchTensors`]), or without when `rope` is `None`.
pub fn head_major(t: &Tensor, rope: Option<(&Tensor, &Tensor, RopeStyle)>) -> Result<Tensor> {
    let t = t.transpose(0, 1)?.contiguous()?;
    let Some((cos, sin, style)) = rope else {
        return Ok(t);
    };
    let t = t.unsqueeze(0)?;
    let rotated = match style {
        RopeStyle::Interleaved => candle_nn::rotary_emb::rope_i(&t, cos, sin)?,
        RopeStyle::Halves => candle_nn::rotary_emb::rope(&t, cos, sin)?,
    };
    Ok(rotated.squeeze(0)?)
}

/// Attention of every packed segment to its ancestors and (causally) to itself.
///
/// `q: [n_head, T, head_dim]`, `k`, `v: [n_kv_head, T, head_dim]` (RoPE applied); returns
/// `[T, n_head * head_dim]`.
pub fn packed_attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    batch: &PackedBatch,
    spec: &AttentionSpec,
) -> Result<Tensor> {
    if q.device().is_cpu() && q.dtype() == DType::F32 {
        return cpu_attention::tree_attention(q, k, v, &batch.segments, spec);
    }
    packed_attention_generic(q, k, v, batch, spec)
}

/// The same attention from candle tensor ops, for devices without a dedicated kernel: per
/// segment, keys are gathered from its ancestors and itself, and query heads that share a
/// key/value head are folded into one matmul (`[n_kv, rep·L, d] × [n_kv, d, keys]`).
pub fn packed_attention_generic(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    batch: &PackedBatch,
    spec: &AttentionSpec,
) -> Result<Tensor> {
    let (n_head, _, head_dim) = q.dims3()?;
    let n_kv = k.dim(0)?;
    let rep = n_head / n_kv;
    let mut outs = Vec::with_capacity(batch.segments.len());
    for seg in &batch.segments {
        let len = seg.range.len();
        let context: usize = seg.ancestors.iter().map(|r| r.len()).sum();
        let n_keys = context + len;
        let key_rows: Vec<u32> = seg
            .ancestors
            .iter()
            .chain(std::iter::once(&seg.range))
            .flat_map(|r| r.start as u32..r.end as u32)
            .collect();
        let key_rows = Tensor::new(key_rows.as_slice(), q.device())?;
        let mask: Vec<f32> = (0..len * n_keys)
            .map(|i| {
                let (row, key) = (i / n_keys, i % n_keys);
                if spec.visible_keys(context + row).contains(&key) {
                    0.0
                } else {
                    f32::NEG_INFINITY
                }
            })
            .collect();
        let mask = Tensor::from_vec(mask, (len, n_keys), q.device())?.to_dtype(q.dtype())?;
        let q = q.narrow(1, seg.range.start, len)?.contiguous()?.reshape((
            n_kv,
            rep * len,
            head_dim,
        ))?;
        let k = k.index_select(&key_rows, 1)?;
        let v = v.index_select(&key_rows, 1)?;
        let mut scores =
            (q.matmul(&k.t()?)? * spec.scale as f64)?.reshape((n_kv, rep, len, n_keys))?;
        if let Some(cap) = spec.softcap {
            scores = ((scores / cap as f64)?.tanh()? * cap as f64)?;
        }
        let scores = scores.broadcast_add(&mask)?;
        let probs =
            candle_nn::ops::softmax_last_dim(&scores)?.reshape((n_kv, rep * len, n_keys))?;
        let out = probs.matmul(&v)?.reshape((n_head, len, head_dim))?;
        outs.push(out);
    }
    let out = Tensor::cat(&outs, 1)?;
    Ok(out.transpose(0, 1)?.reshape(((), n_head * head_dim))?)
}

/// `act(gate) ⊙ up` for `gate_up = [gate | up]` (`[T, 2F]` → `[T, F]`).
pub fn gated(gate_up: &Tensor, activation: GateActivation) -> Result<Tensor> {
    if gate_up.device().is_cpu() && gate_up.dtype() == DType::F32 && gate_up.is_contiguous() {
        return cpu_ops::gated(gate_up, activation);
    }
    let ffn = gate_up.dim(1)? / 2;
    let gate = gate_up.narrow(1, 0, ffn)?;
    let gate = match activation {
        GateActivation::Silu => candle_nn::ops::silu(&gate)?,
        GateActivation::GeluTanh => gate.gelu()?,
    };
    Ok((gate * gate_up.narrow(1, ffn, ffn)?)?)
}

/// The LM head on the batch's scored rows only: final norm, projection, log-softmax, targets.
pub fn score_rows(
    hidden: &Tensor,
    batch: &PackedBatch,
    final_norm: &Tensor,
    rms_eps: f32,
    lm_head: &Linear,
    softcap: Option<f32>,
) -> Result<Vec<RowScore>> {
    let rows = Tensor::new(batch.score_rows.as_slice(), hidden.device())?;
    let h = candle_nn::ops::rms_norm(&hidden.index_select(&rows, 0)?, final_norm, rms_eps)?;
    score_logits(&lm_head.forward(&h)?, &batch.targets, softcap)
}

/// Log-probability of each target and whether it is its row's argmax, from the logits
/// `[R, V]` of the scored rows (soft-capped to `cap · tanh(x / cap)` first when `softcap` is
/// given); `targets` are (row, token) pairs.
pub fn score_logits(
    logits: &Tensor,
    targets: &[(u32, u32)],
    softcap: Option<f32>,
) -> Result<Vec<RowScore>> {
    let logits = match softcap {
        Some(cap) => ((logits.to_dtype(DType::F32)? / cap as f64)?.tanh()? * cap as f64)?,
        None => logits.to_dtype(DType::F32)?,
    };
    let logits = logits.to_vec2::<f32>()?;
    let summaries: Vec<(usize, f32, f64)> = logits
        .iter()
        .map(|row| {
            let (mut argmax, mut max) = (0usize, f32::NEG_INFINITY);
            for (i, &x) in row.iter().enumerate() {
                if x > max {
                    max = x;
                    argmax = i;
                }
            }
            let sum: f64 = row.iter().map(|&x| ((x - max) as f64).exp()).sum();
            (argmax, max, sum.ln())
        })
        .collect();
    targets
        .iter()
        .map(|&(row, target)| {
            let (row, target) = (row as usize, target as usize);
            let logits = &logits[row];
            if target >= logits.len() {
                bail!(
                    "token id {target} is outside the model's vocabulary of {}",
                    logits.len()
                );
            }
            let (argmax, max, log_sum) = summaries[row];
            Ok(RowScore {
                logprob: (logits[target] - max) as f64 - log_sum,
                is_argmax: argmax == target,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Segment;

    /// The CPU kernel and the generic tensor-op path agree on a tree: a shared trunk, two
    /// branches below it (one long enough to span several query blocks), a grandchild, and an
    /// unrelated sequence.
    #[test]
    fn cpu_kernel_and_generic_attention_agree_on_a_tree() {
        let (n_head, n_kv, d) = (6, 2, 16);
        let mut batch = PackedBatch::default();
        let tokens = |n: usize| vec![0u32; n];
        let trunk = batch.push_segment(&tokens(70), vec![]);
        let long = batch.push_segment(&tokens(150), vec![trunk.clone()]);
        let short = batch.push_segment(&tokens(3), vec![trunk.clone()]);
        batch.push_segment(&tokens(5), vec![trunk.clone(), short.clone()]);
        batch.push_segment(&tokens(40), vec![]);
        let n = batch.tokens.len();
        let _ = long;
        let q = Tensor::randn(0f32, 1.0, (n_head, n, d), &Device::Cpu).unwrap();
        let k = Tensor::randn(0f32, 1.0, (n_kv, n, d), &Device::Cpu).unwrap();
        let v = Tensor::randn(0f32, 1.0, (n_kv, n, d), &Device::Cpu).unwrap();
        for spec in [
            AttentionSpec::causal(0.25),
            AttentionSpec {
                scale: 0.25,
                window: Some(50),
                softcap: Some(2.0),
            },
        ] {
            let fast = packed_attention(&q, &k, &v, &batch, &spec).unwrap();
            let generic = packed_attention_generic(&q, &k, &v, &batch, &spec).unwrap();
            let diff = (fast - generic)
                .unwrap()
                .abs()
                .unwrap()
                .max_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap();
            assert!(diff < 1e-5, "{spec:?}: max difference {diff}");
        }
        assert_eq!(
            batch.segments[3],
            Segment {
                range: 223..228,
                ancestors: vec![0..70, 220..223]
            }
        );
        assert_eq!(batch.positions[223], 73);
    }
}
