//! Attention over packed, tree-shaped segments on the CPU, written against `gemm` directly.
//!
//! candle's generic path computes the full score matrix, masks it, and runs a separate
//! softmax pass; for the long prompts valuelens scores that made attention cost more than all
//! linear layers together. Here each (segment, head, block of queries) is one task on the rayon
//! pool: scores against the ancestors' keys and the block's visible own keys only (the causal
//! triangle is skipped block-wise), softmax in place, then `P · V` accumulated straight into
//! the output rows. Every sum runs in an order fixed by key position, so a token's output is
//! the same whichever requests share its batch and however they split its prefix.

use std::ops::Range;

use anyhow::{bail, Result};
use candle_core::{Device, Storage, Tensor};
use gemm::{gemm, Parallelism};
use rayon::prelude::*;

use super::spec::AttentionSpec;
use crate::model::batch::{Keys, Segment};
use crate::model::cpu_ops::{slice_of, softmax_window};

/// Query rows per task: large enough for efficient gemm calls, small enough to skip most of
/// the masked triangle and to spread work over the cores.
const QUERY_BLOCK: usize = 64;

/// Keys per `P · V` product: sums over keys are taken in chunks starting at multiples of
/// this position, whatever the segments (so that a score does not depend on its batch).
const KEY_CHUNK: usize = 64;

/// `q: [n_head, T, d]`, `k`, `v: [n_kv, T, d]` (contiguous f32 on the CPU) → `[T, n_head·d]`;
/// `past` holds the keys and values `[n_kv, P, d]` that [`Keys::Past`] ranges refer to.
pub fn tree_attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    past: Option<(&Tensor, &Tensor)>,
    segments: &[Segment],
    spec: &AttentionSpec,
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
        let past_storage = match past {
            Some((pk, pv)) => Some((pk.dim(1)?, pk.storage_and_layout(), pv.storage_and_layout())),
            None => None,
        };
        let (n_past, past_k, past_v): (usize, &[f32], &[f32]) = match &past_storage {
            Some((n, (pk, pk_layout), (pv, pv_layout))) => match (&**pk, &**pv) {
                (Storage::Cpu(pk), Storage::Cpu(pv)) => (
                    *n,
                    slice_of(pk.as_slice::<f32>()?, pk_layout)?,
                    slice_of(pv.as_slice::<f32>()?, pv_layout)?,
                ),
                _ => bail!("cpu attention needs CPU tensors"),
            },
            None => (0, &[], &[]),
        };
        let needed = segments
            .iter()
            .flat_map(|s| &s.ancestors)
            .filter_map(|a| match a {
                Keys::Past(r) => Some(r.end),
                Keys::Batch(_) => None,
            })
            .max()
            .unwrap_or(0);
        if needed > n_past {
            bail!("the batch refers to {needed} past keys, but {n_past} were given");
        }
        // Where an ancestor's rows of key/value group `g` start, in `k`/`v` or in the past.
        let rows_of = |keys: &Keys, g: usize| -> (&[f32], &[f32]) {
            let (k, v, n, start) = match keys {
                Keys::Batch(r) => (k, v, n_tokens, r.start),
                Keys::Past(r) => (past_k, past_v, n_past, r.start),
            };
            let first = (g * n + start) * head_dim;
            (&k[first..], &v[first..first + keys.len() * head_dim])
        };
        let tasks = plan_tasks(segments, n_kv);
        let out_ptr = SharedOut(out.as_mut_ptr());
        let row_stride = n_head * head_dim;
        tasks
            .par_iter()
            .for_each_init(Scratch::default, |scratch, task| {
                let g = task.group;
                let context: usize = task.ancestors.iter().map(|r| r.len()).sum();
                // Rows are stacked piece by piece, and within a piece head by head: the
                // `rep` query heads that share the group's keys go through each product
                // together (one packing of the keys, `rep` times the rows).
                let rows = rep * task.pieces.iter().map(|p| p.block.len()).sum::<usize>();
                let own_max = task.pieces.iter().map(|p| p.block.end).max().unwrap_or(0);
                // Score rows are padded to whole key chunks (with zeros past the visible keys).
                let n_keys = (context + own_max).next_multiple_of(KEY_CHUNK);
                let Scratch {
                    q_columns,
                    scores,
                    out_rows,
                    v_context,
                    v_tail,
                } = scratch;
                // Queries stored column-major (`head_dim × rows`): with a row stride of 1 and a
                // column stride of `rows`, gemm takes its packed kernel for every shape, so a
                // score is the same dot product in every batch (its small-shape paths reduce
                // in another order).
                q_columns.clear();
                q_columns.resize(rows * head_dim, 0f32);
                let mut row = 0;
                for piece in &task.pieces {
                    for head in g * rep..(g + 1) * rep {
                        for t in piece.block.clone() {
                            let first = (head * n_tokens + piece.start + t) * head_dim;
                            for (d, &x) in q[first..first + head_dim].iter().enumerate() {
                                q_columns[d * rows + row] = x;
                            }
                            row += 1;
                        }
                    }
                }
                scores.clear();
                scores.resize(rows * n_keys, 0f32);
                out_rows.clear();
                out_rows.resize(rows * head_dim, 0f32);
                let mut column = 0;
                for keys in task.ancestors {
                    let (k_rows, _) = rows_of(keys, g);
                    // SAFETY: `q_columns` holds `rows` columns of `head_dim`, `k_rows` at least
                    // `keys.len()` rows, and columns `column..column + keys.len()` of every
                    // score row lie inside `scores` (`rows × n_keys`).
                    unsafe {
                        matmul_into(
                            (rows, keys.len(), head_dim),
                            scores.as_mut_ptr().add(column),
                            n_keys,
                            (q_columns.as_ptr(), 1, rows as isize),
                            (k_rows.as_ptr(), 1, head_dim as isize),
                            spec.scale,
                            false,
                        );
                    }
                    column += keys.len();
                }
                let mut row = 0;
                for piece in &task.pieces {
                    let piece_rows = rep * piece.block.len();
                    let k_rows = &k[(g * n_tokens + piece.start) * head_dim..];
                    // SAFETY: as above, for the piece's rows and its `block.end` own keys.
                    unsafe {
                        matmul_into(
                            (piece_rows, piece.block.end, head_dim),
                            scores.as_mut_ptr().add(row * n_keys + context),
                            n_keys,
                            (q_columns.as_ptr().add(row), 1, rows as isize),
                            (k_rows.as_ptr(), 1, head_dim as isize),
                            spec.scale,
                            false,
                        );
                    }
                    for r in 0..piece_rows {
                        // Keys are numbered by position along the query's ancestor chain.
                        let position = context + piece.block.start + r % piece.block.len();
                        softmax_window(
                            &mut scores[(row + r) * n_keys..(row + r + 1) * n_keys],
                            spec.visible_keys(position),
                            spec.softcap,
                        );
                    }
                    row += piece_rows;
                }
                // `P · V` in chunks of KEY_CHUNK keys at fixed positions (0, 64, 128, …), each
                // summed from zero and added in order: a row's output depends on its own
                // scores and values only, not on how the batch split its keys into segments.
                // Chunks inside the ancestors are shared by all rows; the chunks from there
                // on hold each piece's own keys.
                v_context.clear();
                for keys in task.ancestors {
                    v_context.extend_from_slice(rows_of(keys, g).1);
                }
                let shared_end = context / KEY_CHUNK * KEY_CHUNK;
                for chunk in (0..shared_end).step_by(KEY_CHUNK) {
                    // SAFETY: columns `chunk..chunk + KEY_CHUNK` lie inside every score row,
                    // and `v_context` holds `context ≥ chunk + KEY_CHUNK` rows.
                    unsafe {
                        matmul_into(
                            (rows, head_dim, KEY_CHUNK),
                            out_rows.as_mut_ptr(),
                            head_dim,
                            (scores.as_ptr().add(chunk), n_keys as isize, 1),
                            (
                                v_context.as_ptr().add(chunk * head_dim),
                                head_dim as isize,
                                1,
                            ),
                            1.0,
                            chunk > 0,
                        );
                    }
                }
                let mut row = 0;
                for piece in &task.pieces {
                    let piece_rows = rep * piece.block.len();
                    let end = (context + piece.block.end).next_multiple_of(KEY_CHUNK);
                    let own = (g * n_tokens + piece.start) * head_dim;
                    v_tail.clear();
                    v_tail.extend_from_slice(&v_context[shared_end * head_dim..]);
                    v_tail.extend_from_slice(&v[own..own + piece.block.end * head_dim]);
                    v_tail.resize((end - shared_end) * head_dim, 0f32);
                    for chunk in (shared_end..end).step_by(KEY_CHUNK) {
                        // SAFETY: the piece's rows of `scores` have `n_keys ≥ end` columns,
                        // `v_tail` holds `end - shared_end` rows, `out_rows` the piece's rows.
                        unsafe {
                            matmul_into(
                                (piece_rows, head_dim, KEY_CHUNK),
                                out_rows.as_mut_ptr().add(row * head_dim),
                                head_dim,
                                (
                                    scores.as_ptr().add(row * n_keys + chunk),
                                    n_keys as isize,
                                    1,
                                ),
                                (
                                    v_tail.as_ptr().add((chunk - shared_end) * head_dim),
                                    head_dim as isize,
                                    1,
                                ),
                                1.0,
                                chunk > 0,
                            );
                        }
                    }
                    for r in 0..piece_rows {
                        let head = g * rep + r / piece.block.len();
                        let token = piece.start + piece.block.start + r % piece.block.len();
                        let src = &out_rows[(row + r) * head_dim..(row + r + 1) * head_dim];
                        // SAFETY: each (token, head) output slot belongs to exactly one task.
                        unsafe {
                            let dst = out_ptr.get().add(token * row_stride + head * head_dim);
                            std::ptr::copy_nonoverlapping(src.as_ptr(), dst, head_dim);
                        }
                    }
                    row += piece_rows;
                }
            });
    }
    Ok(Tensor::from_vec(
        out,
        (n_tokens, n_head * head_dim),
        &Device::Cpu,
    )?)
}

/// Rows of one segment computed by a task: `block` is relative to the segment start.
struct Piece {
    start: usize,
    block: Range<usize>,
}

/// Queries of the heads of one key/value group that see the same ancestors: blocks of a long
/// segment, or many short sibling segments (e.g. the branches after one shared prompt) batched
/// into one set of gemm calls against the shared keys.
struct Task<'a> {
    group: usize,
    ancestors: &'a [Keys],
    pieces: Vec<Piece>,
}

/// Most query rows in one task of grouped short segments.
const GROUP_ROWS: usize = 256;

fn plan_tasks(segments: &[Segment], n_kv: usize) -> Vec<Task<'_>> {
    let mut groups: Vec<(&[Keys], Vec<Piece>)> = Vec::new();
    for seg in segments {
        let len = seg.range.len();
        if len > QUERY_BLOCK {
            for s in (0..len).step_by(QUERY_BLOCK) {
                let block = s..(s + QUERY_BLOCK).min(len);
                groups.push((
                    &seg.ancestors,
                    vec![Piece {
                        start: seg.range.start,
                        block,
                    }],
                ));
            }
            continue;
        }
        let piece = Piece {
            start: seg.range.start,
            block: 0..len,
        };
        match groups.last_mut() {
            Some((ancestors, pieces))
                if *ancestors == seg.ancestors.as_slice()
                    && pieces.iter().map(|p| p.block.len()).sum::<usize>() + len <= GROUP_ROWS =>
            {
                pieces.push(piece)
            }
            _ => groups.push((&seg.ancestors, vec![piece])),
        }
    }
    (0..n_kv)
        .flat_map(|group| {
            groups.iter().map(move |(ancestors, pieces)| Task {
                group,
                ancestors,
                pieces: pieces
                    .iter()
                    .map(|p| Piece {
                        start: p.start,
                        block: p.block.clone(),
                    })
                    .collect(),
            })
        })
        .collect()
}

#[derive(Default)]
struct Scratch {
    q_columns: Vec<f32>,
    scores: Vec<f32>,
    out_rows: Vec<f32>,
    v_context: Vec<f32>,
    v_tail: Vec<f32>,
}

/// `dst[m × n] (row stride dst_rs) (+)= alpha · lhs[m × k] · rhs[k × n]`, single-threaded;
/// `lhs` and `rhs` are given as (pointer, row stride, column stride).
///
/// # Safety
/// All pointers must address the described matrices in bounds.
unsafe fn matmul_into(
    (m, n, k): (usize, usize, usize),
    dst: *mut f32,
    dst_rs: usize,
    lhs: (*const f32, isize, isize),
    rhs: (*const f32, isize, isize),
    alpha: f32,
    accumulate: bool,
) {
    if m == 0 || n == 0 {
        return;
    }
    gemm(
        m,
        n,
        k,
        dst,
        1,
        dst_rs as isize,
        accumulate,
        lhs.0,
        lhs.2,
        lhs.1,
        rhs.0,
        rhs.2,
        rhs.1,
        1.0,
        alpha,
        false,
        false,
        false,
        Parallelism::None,
    );
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
