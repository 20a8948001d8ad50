//! Building blocks shared by the architectures: linear layers that are either quantized or
//! dequantized, rotary tables indexed by per-token positions, attention over packed sequences,
//! and the LM head with log-softmax applied to the scored rows only.

use std::ops::Range;

use anyhow::{bail, Result};
use candle_core::quantized::{GgmlDType, QMatMul, QStorage, QTensor};
use candle_core::{DType, Device, Module, Tensor, D};

use super::checkpoint::Checkpoint;
pub use super::cpu_ops::GateActivation;
use super::device::is_float_format;
pub use super::device::{Placement, WeightMode};
use super::{cpu_attention, cpu_ops, PackedBatch, RowScore, Segment};

/// A weight matrix `[out, in]`, applied as `x · Wᵀ`.
pub struct Linear {
    parts: Vec<QMatMul>,
}

impl Linear {
    /// One matrix whose output rows are the rows of `parts` stacked in order (e.g. Q, K and V),
    /// so that one large matmul replaces several small ones; placed as `placement` says.
    pub fn stacked(parts: Vec<QTensor>, placement: &Placement) -> Result<Self> {
        let quantized = placement.mode == WeightMode::Quantized
            && parts.iter().all(|p| !is_float_format(p.dtype()));
        if !quantized {
            let dense = parts
                .iter()
                .map(|p| p.dequantize(&Device::Cpu))
                .collect::<candle_core::Result<Vec<_>>>()?;
            let dtype = match placement.mode {
                // Float-format weights of a quantized file compute in f32, as its activations do.
                WeightMode::Quantized => DType::F32,
                _ => placement.dtype(),
            };
            let w = Tensor::cat(&dense, 0)?
                .to_dtype(dtype)?
                .to_device(&placement.device)?;
            return Ok(Self {
                parts: vec![QMatMul::Tensor(w)],
            });
        }
        let parts = if placement.device.is_cpu() {
            parts
                .into_iter()
                .map(with_fast_kernel)
                .collect::<Result<Vec<_>>>()?
        } else {
            parts
        };
        let same_dtype = parts.windows(2).all(|w| w[0].dtype() == w[1].dtype());
        let parts = if same_dtype && parts.len() > 1 {
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
            vec![QTensor::new(storage, (rows, cols))?]
        } else {
            parts
        };
        Ok(Self {
            parts: parts
                .into_iter()
                .map(|p| Ok(QMatMul::from_qtensor(placement.quantized(p)?)?))
                .collect::<Result<_>>()?,
        })
    }

    pub fn new(weight: QTensor, placement: &Placement) -> Result<Self> {
        Self::stacked(vec![weight], placement)
    }

    /// A dense matrix already in place (e.g. a tied embedding table used as LM head).
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
/// quantized in quantized mode, else the already placed dense `embeddings`).
pub fn lm_head(
    checkpoint: &mut Checkpoint,
    embeddings_q: QTensor,
    embeddings: &Tensor,
    placement: &Placement,
) -> Result<Linear> {
    if checkpoint.has_tensor("output.weight") {
        return Linear::new(checkpoint.tensor("output.weight")?, placement);
    }
    match placement.mode {
        WeightMode::Quantized => Linear::new(embeddings_q, placement),
        _ => Ok(Linear::dense(embeddings.clone())),
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
    pub fn new(
        rotary_dim: usize,
        theta: f32,
        max_positions: usize,
        placement: &Placement,
    ) -> Result<Self> {
        Self::linearly_scaled(rotary_dim, theta, 1.0, max_positions, placement)
    }

    /// Tables for positions divided by `factor` (linear RoPE scaling, as gemma 3's global layers
    /// use beyond 270M). Computed in f32, kept in the activation dtype (as transformers does).
    pub fn linearly_scaled(
        rotary_dim: usize,
        theta: f32,
        factor: f32,
        max_positions: usize,
        placement: &Placement,
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
            cos: placement.put(&Tensor::from_vec(cos, (max_positions, half), &Device::Cpu)?)?,
            sin: placement.put(&Tensor::from_vec(sin, (max_positions, half), &Device::Cpu)?)?,
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
        let device = rope.cos.device();
        let ids = Tensor::new(batch.tokens.as_slice(), device)?;
        let positions = Tensor::new(batch.positions.as_slice(), device)?;
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

/// Query rows of one block of [`AttentionPlan::Blocked`]: large enough that a forward is a few
/// large kernels, small enough that a block's scores (`heads × rows × keys` in f32) stay well
/// under a GiB for 8B-sized models at the default batch size.
const MASKED_BLOCK_ROWS: usize = 1024;

/// How one forward computes attention under one [`AttentionSpec`]: prepared once per forward
/// and shared by every layer with that spec.
pub enum AttentionPlan<'a> {
    /// The CPU kernel (f32), which walks the segments directly.
    Tree {
        segments: &'a [Segment],
        spec: AttentionSpec,
    },
    /// Dense attention in blocks of query rows, masked: each block attends to the contiguous
    /// span of keys from its earliest ancestor to its own last row, and a 0 / −∞ mask per block
    /// (built once per forward) encodes the tree, the causal order and the window. Segments are
    /// packed depth first, so a block's span holds little besides its ancestors. A handful of
    /// large tensor ops per block and layer: the path for GPUs and for non-f32 precisions.
    Blocked {
        spec: AttentionSpec,
        blocks: Vec<MaskedBlock>,
    },
}

/// One block of query rows of a [`AttentionPlan::Blocked`] forward.
pub struct MaskedBlock {
    queries: Range<usize>,
    keys_start: usize,
    /// `[queries, keys_start..queries.end]`, f32: 0 where the query sees the key, else −∞.
    mask: Tensor,
}

impl<'a> AttentionPlan<'a> {
    /// The CPU kernel for f32 on the CPU; masked blocks otherwise.
    pub fn new(
        batch: &'a PackedBatch,
        spec: AttentionSpec,
        device: &Device,
        dtype: DType,
    ) -> Result<Self> {
        if device.is_cpu() && dtype == DType::F32 {
            return Ok(Self::Tree {
                segments: &batch.segments,
                spec,
            });
        }
        Self::blocked(batch, spec, device, MASKED_BLOCK_ROWS)
    }

    /// Masked blocks of `block_rows` query rows, whatever the device.
    pub fn blocked(
        batch: &PackedBatch,
        spec: AttentionSpec,
        device: &Device,
        block_rows: usize,
    ) -> Result<Self> {
        let n_tokens = batch.tokens.len();
        let mut segment_of = vec![0usize; n_tokens];
        for (i, seg) in batch.segments.iter().enumerate() {
            segment_of[seg.range.clone()].fill(i);
        }
        let mut blocks = Vec::new();
        for block_start in (0..n_tokens).step_by(block_rows.max(1)) {
            let queries = block_start..(block_start + block_rows).min(n_tokens);
            let seg_first = |t: usize| {
                let seg = &batch.segments[segment_of[t]];
                seg.ancestors.first().map_or(seg.range.start, |r| r.start)
            };
            let keys_start = queries.clone().map(seg_first).min().unwrap_or(block_start);
            let n_keys = queries.end - keys_start;
            let mut mask = vec![f32::NEG_INFINITY; queries.len() * n_keys];
            for (row, t) in queries.clone().enumerate() {
                let seg = &batch.segments[segment_of[t]];
                let visible = spec.visible_keys(batch.positions[t] as usize);
                let own = seg.range.start..t + 1;
                for range in seg.ancestors.iter().chain(std::iter::once(&own)) {
                    for key in range.clone() {
                        if visible.contains(&(batch.positions[key] as usize)) {
                            mask[row * n_keys + key - keys_start] = 0.0;
                        }
                    }
                }
            }
            let mask =
                Tensor::from_vec(mask, (queries.len(), n_keys), &Device::Cpu)?.to_device(device)?;
            blocks.push(MaskedBlock {
                queries,
                keys_start,
                mask,
            });
        }
        Ok(Self::Blocked { spec, blocks })
    }

    /// Attention of every packed segment to its ancestors and (causally) to itself.
    ///
    /// `q: [n_head, T, head_dim]`, `k`, `v: [n_kv_head, T, head_dim]` (RoPE applied); returns
    /// `[T, n_head * head_dim]`.
    pub fn attend(&self, q: &Tensor, k: &Tensor, v: &Tensor) -> Result<Tensor> {
        match self {
            Self::Tree { segments, spec } => cpu_attention::tree_attention(q, k, v, segments, spec),
            Self::Blocked { spec, blocks } => masked_attention(q, k, v, spec, blocks),
        }
    }
}

/// [`AttentionPlan::Blocked`]: per block, query heads that share a key/value head are folded
/// into one matmul (`[n_kv, rep·L, d] × [n_kv, d, K]`); scores, mask and softmax in f32.
fn masked_attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    spec: &AttentionSpec,
    blocks: &[MaskedBlock],
) -> Result<Tensor> {
    let (n_head, _, head_dim) = q.dims3()?;
    let n_kv = k.dim(0)?;
    if n_head % n_kv != 0 {
        bail!("{n_head} query heads cannot share {n_kv} key/value heads");
    }
    let rep = n_head / n_kv;
    let mut outs = Vec::with_capacity(blocks.len());
    for block in blocks {
        let (rows, start) = (block.queries.len(), block.queries.start);
        let n_keys = block.queries.end - block.keys_start;
        let q = q
            .narrow(1, start, rows)?
            .contiguous()?
            .reshape((n_kv, rep * rows, head_dim))?;
        let k = k.narrow(1, block.keys_start, n_keys)?.contiguous()?;
        let v = v.narrow(1, block.keys_start, n_keys)?.contiguous()?;
        let mut scores = (q.matmul(&k.t()?)?.to_dtype(DType::F32)? * spec.scale as f64)?;
        if let Some(cap) = spec.softcap {
            scores = ((scores / cap as f64)?.tanh()? * cap as f64)?;
        }
        let scores = scores
            .reshape((n_kv, rep, rows, n_keys))?
            .broadcast_add(&block.mask)?;
        let probs = candle_nn::ops::softmax_last_dim(&scores)?
            .to_dtype(v.dtype())?
            .reshape((n_kv, rep * rows, n_keys))?;
        outs.push(probs.matmul(&v)?.reshape((n_head, rows, head_dim))?);
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
/// given); `targets` are (row, token) pairs. On the CPU the rows are summed in f64; on other
/// devices the log-softmax runs there (in f32) and only R + 2·targets numbers come back.
pub fn score_logits(
    logits: &Tensor,
    targets: &[(u32, u32)],
    softcap: Option<f32>,
) -> Result<Vec<RowScore>> {
    let logits = match softcap {
        Some(cap) => ((logits.to_dtype(DType::F32)? / cap as f64)?.tanh()? * cap as f64)?,
        None => logits.to_dtype(DType::F32)?,
    };
    let vocab = logits.dim(1)?;
    if let Some(&(_, target)) = targets.iter().find(|&&(_, t)| t as usize >= vocab) {
        bail!("token id {target} is outside the model's vocabulary of {vocab}");
    }
    if !logits.device().is_cpu() {
        return score_logits_on_device(&logits, targets);
    }
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
            let (argmax, max, log_sum) = summaries[row];
            Ok(RowScore {
                logprob: (logits[target] - max) as f64 - log_sum,
                is_argmax: argmax == target,
            })
        })
        .collect()
}

/// [`score_logits`] for f32 logits on a GPU: max, log-sum-exp and argmax per row, and the
/// targets' logits gathered from the flattened matrix, all on the device.
fn score_logits_on_device(logits: &Tensor, targets: &[(u32, u32)]) -> Result<Vec<RowScore>> {
    let (rows, vocab) = logits.dims2()?;
    let device = logits.device();
    let max = logits.max_keepdim(1)?;
    let log_sum_exp = (logits.broadcast_sub(&max)?.exp()?.sum_keepdim(1)?.log()? + &max)?
        .flatten_all()?
        .to_vec1::<f32>()?;
    let argmax = logits.argmax_keepdim(1)?.flatten_all()?.to_vec1::<u32>()?;
    let flat: Vec<i64> = targets
        .iter()
        .map(|&(row, target)| row as i64 * vocab as i64 + target as i64)
        .collect();
    let picked = logits
        .reshape(rows * vocab)?
        .index_select(&Tensor::new(flat.as_slice(), device)?, 0)?
        .to_vec1::<f32>()?;
    Ok(targets
        .iter()
        .zip(picked)
        .map(|(&(row, target), logit)| RowScore {
            logprob: (logit - log_sum_exp[row as usize]) as f64,
            is_argmax: argmax[row as usize] == target,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The CPU kernel and the masked-block path agree on a tree: a shared trunk, two
    /// branches below it (one long enough to span several query blocks), a grandchild, and an
    /// unrelated sequence.
    #[test]
    fn cpu_kernel_and_masked_blocks_agree_on_a_tree() {
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
            let tree = AttentionPlan::new(&batch, spec, &Device::Cpu, DType::F32).unwrap();
            assert!(matches!(tree, AttentionPlan::Tree { .. }));
            let fast = tree.attend(&q, &k, &v).unwrap();
            // Blocks of 64 rows: spans that start at a trunk, a root or mid-segment.
            let blocked = AttentionPlan::blocked(&batch, spec, &Device::Cpu, 64).unwrap();
            let generic = blocked.attend(&q, &k, &v).unwrap();
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

    /// The GPU path of `score_logits` (run here on CPU tensors) gives what the CPU path gives.
    #[test]
    fn device_scoring_matches_the_cpu_path() {
        let logits = Tensor::randn(0f32, 3.0, (5, 1000), &Device::Cpu).unwrap();
        let targets = [(0, 7), (0, 999), (1, 0), (3, 500), (4, 42)];
        let argmax_of_2 = logits.get(2).unwrap().argmax(0).unwrap();
        let targets: Vec<(u32, u32)> = targets
            .into_iter()
            .chain([(2, argmax_of_2.to_scalar::<u32>().unwrap())])
            .collect();
        let cpu = score_logits(&logits, &targets, None).unwrap();
        let device = score_logits_on_device(&logits, &targets).unwrap();
        for (a, b) in cpu.iter().zip(&device) {
            assert!((a.logprob - b.logprob).abs() < 1e-5, "{a:?} vs {b:?}");
            assert_eq!(a.is_argmax, b.is_argmax);
        }
        assert!(device.last().unwrap().is_argmax);
        let err = score_logits(&logits, &[(0, 1000)], None).unwrap_err();
        assert!(err.to_string().contains("outside the model's vocabulary"));
    }
}
