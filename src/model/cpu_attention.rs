//! Attention over packed, tree-shaped segments on the CPU, written against `gemm` directly.
//!
//! candle's generic path computes the full score matrix, masks it, and runs a separate
//! softmax pass; for the long prompts valuelens scores that made attention cost more than all
//! linear layers together. Here each (segment, head, block of queries) is one task on the rayon
//! pool: scores against the ancestors' keys and the block's visible own keys only (the causal
//! triangle is skipped block-wise), softmax in place, then `P · V` accumulated straight into
//! the output rows.

use std::ops::Range;

use anyhow::{bail, Result};
use candle_core::{Device, Storage, Tensor};
use gemm::{gemm, Parallelism};
use rayon::prelude::*;

use super::Segment;

/// Query rows per task: large enough for efficient gemm calls, small enough to skip most of
/// the masked triangle and to spread work over the cores.
const QUERY_BLOCK: usize = 64;

/// `q: [n_head, T, d]`, `k`, `v: [n_kv, T, d]` (contiguous f32 on the CPU) → `[T, n_head·d]`.
pub fn tree_attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    segments: &[Segment],
    scale: f32,
) -> Result<Tensor> {
    let (n_head, n_tokens, head_dim) = q.dims3()?;
    let n_kv = k.dim(0)?;
    if n_head % n_kv != 0 {
        bail!("{n_head} query heads cannot share {n_kv} key/value heads");
    }
    let rep = n_head / n_kv;
    let mut out = vec![0f32; n_tokens * n_head * head_dim];
    {
        let (q_storage, q_layout) = q.storage_and_layout();
        let (k_storage, k_layout) = k.storage_and_layout();
        let (v_storage, v_layout) = v.storage_and_layout();
        let (q, k, v) = match (&*q_storage, &*k_storage, &*v_storage) {
            (Storage::Cpu(q), Storage::Cpu(k), Storage::Cpu(v)) => (
                slice_of(q.as_slice::<f32>()?, q_layout)?,
                slice_of(k.as_slice::<f32>()?, k_layout)?,
                slice_of(v.as_slice::<f32>()?, v_layout)?,
            ),
            _ => bail!("cpu attention needs CPU tensors"),
        };
        let tasks: Vec<(usize, &Segment, Range<usize>)> = segments
            .iter()
            .flat_map(|seg| {
                (0..n_head).flat_map(move |h| {
                    let len = seg.range.len();
                    (0..len)
                        .step_by(QUERY_BLOCK)
                        .map(move |s| (h, seg, s..(s + QUERY_BLOCK).min(len)))
                })
            })
            .collect();
        let out_ptr = SharedOut(out.as_mut_ptr());
        let row_stride = n_head * head_dim;
        tasks
            .par_iter()
            .for_each_init(Vec::new, |scores, (h, seg, block)| {
                let g = h / rep;
                let start = seg.range.start;
                let context: usize = seg.ancestors.iter().map(|r| r.len()).sum();
                let own = start..start + block.end;
                let key_ranges = || {
                    seg.ancestors
                        .iter()
                        .cloned()
                        .chain(std::iter::once(own.clone()))
                };
                let n_keys = context + block.end;
                let rows = block.len();
                scores.clear();
                scores.resize(rows * n_keys, 0f32);
                let q_blk = &q[(h * n_tokens + start + block.start) * head_dim..];
                let mut column = 0;
                for keys in key_ranges() {
                    let k_rows = &k[(g * n_tokens + keys.start) * head_dim..];
                    // SAFETY: `q_blk` holds `rows` rows of `head_dim`, `k_rows` holds `keys.len()`
                    // rows, and the destination columns `column..column + keys.len()` of each of
                    // the `rows` score rows lie inside `scores` (`rows × n_keys`).
                    unsafe {
                        gemm(
                            rows,
                            keys.len(),
                            head_dim,
                            scores.as_mut_ptr().add(column),
                            1,
                            n_keys as isize,
                            false,
                            q_blk.as_ptr(),
                            1,
                            head_dim as isize,
                            k_rows.as_ptr(),
                            head_dim as isize,
                            1,
                            0.0,
                            scale,
                            false,
                            false,
                            false,
                            Parallelism::None,
                        );
                    }
                    column += keys.len();
                }
                for (i, row) in scores.chunks_mut(n_keys).enumerate() {
                    let visible = context + block.start + i + 1;
                    let (seen, hidden) = row.split_at_mut(visible);
                    let max = seen.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x));
                    let mut sum = 0f32;
                    for x in seen.iter_mut() {
                        *x = (*x - max).exp();
                        sum += *x;
                    }
                    let inv = 1.0 / sum;
                    seen.iter_mut().for_each(|x| *x *= inv);
                    hidden.fill(0.0);
                }
                let mut column = 0;
                for (j, keys) in key_ranges().enumerate() {
                    let v_rows = &v[(g * n_tokens + keys.start) * head_dim..];
                    // SAFETY: each task writes the rows `block` of its own segment and the columns
                    // of its own head only, so no two tasks write the same element; the reads are
                    // in-bounds as above.
                    unsafe {
                        let dst = out_ptr
                            .get()
                            .add((start + block.start) * row_stride + h * head_dim);
                        gemm(
                            rows,
                            head_dim,
                            keys.len(),
                            dst,
                            1,
                            row_stride as isize,
                            j > 0,
                            scores.as_ptr().add(column),
                            1,
                            n_keys as isize,
                            v_rows.as_ptr(),
                            1,
                            head_dim as isize,
                            1.0,
                            1.0,
                            false,
                            false,
                            false,
                            Parallelism::None,
                        );
                    }
                    column += keys.len();
                }
            });
    }
    Ok(Tensor::from_vec(
        out,
        (n_tokens, n_head * head_dim),
        &Device::Cpu,
    )?)
}

fn slice_of<'a>(data: &'a [f32], layout: &candle_core::Layout) -> Result<&'a [f32]> {
    match layout.contiguous_offsets() {
        Some((start, end)) => Ok(&data[start..end]),
        None => bail!("cpu attention needs contiguous tensors"),
    }
}

/// The output buffer, shared by tasks that write disjoint parts of it.
#[derive(Clone, Copy)]
struct SharedOut(*mut f32);

impl SharedOut {
    fn get(self) -> *mut f32 {
        self.0
    }
}

// SAFETY: tasks only write disjoint elements (see `tree_attention`).
unsafe impl Send for SharedOut {}
unsafe impl Sync for SharedOut {}
