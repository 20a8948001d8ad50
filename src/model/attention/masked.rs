//! Attention as dense, masked blocks: the path for GPUs and for non-f32 precisions. Each block
//! of query rows attends to the contiguous span of keys from its earliest ancestor to its own
//! last row, and a 0 / −∞ mask per block (built once per forward) encodes the prefix tree, the
//! causal order and the window.

use std::ops::Range;

use anyhow::{bail, Result};
use candle_core::{DType, Device, Tensor};

use super::spec::AttentionSpec;
use crate::model::batch::{Keys, PackedBatch};

/// The blocks of one forward under one spec.
pub struct MaskedBlocks(Vec<MaskedBlock>);

/// One block of query rows.
pub struct MaskedBlock {
    queries: Range<usize>,
    /// Where the block's keys start in `[past | batch]`; they end at its last query's row.
    keys_start: usize,
    /// Past rows before the batch's in the key numbering.
    past: usize,
    /// `[queries, keys_start..queries.end]`, f32: 0 where the query sees the key, else −∞.
    mask: Tensor,
}

impl MaskedBlocks {
    /// Blocks of `block_rows` query rows, whatever the device.
    pub fn new(
        batch: &PackedBatch,
        spec: AttentionSpec,
        device: &Device,
        block_rows: usize,
    ) -> Result<Self> {
        let n_tokens = batch.tokens.len();
        // Keys are numbered past rows first, then the forward's rows: `[past | batch]`.
        let past = batch.past_len;
        let key_index = |keys: &Keys| match keys {
            Keys::Past(r) => r.clone(),
            Keys::Batch(r) => past + r.start..past + r.end,
        };
        let mut segment_of = vec![0usize; n_tokens];
        for (i, seg) in batch.segments.iter().enumerate() {
            segment_of[seg.range.clone()].fill(i);
        }
        let mut blocks = Vec::new();
        for block_start in (0..n_tokens).step_by(block_rows.max(1)) {
            let queries = block_start..(block_start + block_rows).min(n_tokens);
            let seg_first = |t: usize| {
                let seg = &batch.segments[segment_of[t]];
                seg.ancestors
                    .iter()
                    .map(|a| key_index(a).start)
                    .min()
                    .unwrap_or(past + seg.range.start)
                    .min(past + seg.range.start)
            };
            let keys_start = queries
                .clone()
                .map(seg_first)
                .min()
                .unwrap_or(past + block_start);
            let n_keys = past + queries.end - keys_start;
            let mut mask = vec![f32::NEG_INFINITY; queries.len() * n_keys];
            for (row, t) in queries.clone().enumerate() {
                let seg = &batch.segments[segment_of[t]];
                let visible = spec.visible_keys(batch.positions[t] as usize);
                let own = Keys::Batch(seg.range.start..t + 1);
                // A key's position is its offset along the query's chain of ancestors.
                let mut position = 0;
                for keys in seg.ancestors.iter().chain(std::iter::once(&own)) {
                    for key in key_index(keys) {
                        if visible.contains(&position) {
                            mask[row * n_keys + key - keys_start] = 0.0;
                        }
                        position += 1;
                    }
                }
            }
            let mask =
                Tensor::from_vec(mask, (queries.len(), n_keys), &Device::Cpu)?.to_device(device)?;
            blocks.push(MaskedBlock {
                queries,
                keys_start,
                past,
                mask,
            });
        }
        Ok(Self(blocks))
    }

    /// `q: [n_head, T, d]`, `k`, `v: [n_kv_head, T, d]` → `[T, n_head·d]`; `past` holds the
    /// keys and values `[n_kv_head, P, d]` of the batch's past rows.
    pub fn attend(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        past: Option<(&Tensor, &Tensor)>,
        spec: &AttentionSpec,
    ) -> Result<Tensor> {
        match past {
            Some((pk, pv)) => {
                let k = Tensor::cat(&[&pk.to_dtype(k.dtype())?, k], 1)?;
                let v = Tensor::cat(&[&pv.to_dtype(v.dtype())?, v], 1)?;
                masked_attention(q, &k, &v, spec, &self.0)
            }
            None => masked_attention(q, k, v, spec, &self.0),
        }
    }
}

/// Per block, query heads that share a key/value head are folded
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
        let n_keys = block.past + block.queries.end - block.keys_start;
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
