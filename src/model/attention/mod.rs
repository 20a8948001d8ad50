//! Attention over packed, tree-shaped segments: each segment attends to its ancestors and,
//! causally, to itself. Two ways to compute it: the CPU tree kernel (`tree`, f32), and dense
//! masked blocks (`masked`) for GPUs and half precisions. [`AttentionPlan`] picks one per forward.

mod masked;
mod spec;
mod tree;

use anyhow::Result;
use candle_core::{DType, Device, Tensor};

use crate::model::batch::{PackedBatch, Segment};
use masked::MaskedBlocks;
pub use spec::AttentionSpec;

/// Query rows of one masked block: large enough that a forward is a few large kernels, small
/// enough that a block's scores (`heads × rows × keys` in f32) stay well under a GiB for
/// 8B-sized models at the default batch size.
const MASKED_BLOCK_ROWS: usize = 1024;

/// How one forward computes attention under one [`AttentionSpec`]: prepared once per forward
/// and shared by every layer with that spec.
pub enum AttentionPlan<'a> {
    /// The CPU kernel (f32), which walks the segments directly.
    Tree {
        segments: &'a [Segment],
        spec: AttentionSpec,
    },
    /// Dense attention in blocks of query rows, masked (see `masked.rs`). Segments are packed
    /// depth first, so a block's span of keys holds little besides its ancestors. A handful of
    /// large tensor ops per block and layer.
    Blocked {
        spec: AttentionSpec,
        blocks: MaskedBlocks,
    },
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
        Ok(Self::Blocked {
            spec,
            blocks: MaskedBlocks::new(batch, spec, device, block_rows)?,
        })
    }

    /// Attention of every packed segment to its ancestors and (causally) to itself.
    ///
    /// `q: [n_head, T, head_dim]`, `k`, `v: [n_kv_head, T, head_dim]` (RoPE applied); returns
    /// `[T, n_head * head_dim]`.
    /// `past` holds the keys and values `[n_kv_head, P, head_dim]` that the batch's
    /// [`Keys::Past`](crate::model::batch::Keys) ranges refer to.
    pub fn attend(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        past: Option<(&Tensor, &Tensor)>,
    ) -> Result<Tensor> {
        match self {
            Self::Tree { segments, spec } => tree::tree_attention(q, k, v, past, segments, spec),
            Self::Blocked { spec, blocks } => blocks.attend(q, k, v, past, spec),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::batch::{Keys, Segment};
    use std::ops::Range;

    /// Rows given as past, rows computed, and the batch of the computed rows.
    type Case = (Vec<Range<usize>>, Vec<Range<usize>>, PackedBatch);

    fn specs() -> [AttentionSpec; 3] {
        [
            AttentionSpec::causal(0.25),
            AttentionSpec {
                scale: 0.25,
                window: Some(50),
                softcap: None,
            },
            AttentionSpec {
                scale: 0.25,
                window: Some(50),
                softcap: Some(2.0),
            },
        ]
    }

    /// Rows `rows` of `[heads, T, d]`, as `[heads, rows, d]`.
    fn rows_of(t: &Tensor, rows: &[Range<usize>]) -> Tensor {
        let parts: Vec<Tensor> = rows
            .iter()
            .map(|r| t.narrow(1, r.start, r.len()).unwrap())
            .collect();
        Tensor::cat(&parts, 1).unwrap().contiguous().unwrap()
    }

    fn max_difference(a: &Tensor, b: &Tensor) -> f32 {
        (a - b)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap()
    }

    fn bits(t: &Tensor) -> Vec<u32> {
        t.flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap()
            .iter()
            .map(|x| x.to_bits())
            .collect()
    }

    /// A tree computed in one forward, and again with some of its segments given as past
    /// keys and values (what a prefix cache hands a later forward): the tree kernel's outputs
    /// for the computed rows are equal bit for bit, whether the past is the trunk, the trunk
    /// and a branch, or a branch below a trunk that is computed again; the masked blocks
    /// agree with it.
    #[test]
    fn past_keys_give_the_outputs_of_computing_them_in_the_batch() {
        let (n_head, n_kv, d) = (6, 2, 16);
        let tokens = |n: usize| vec![0u32; n];
        let mut whole = PackedBatch::default();
        let trunk = whole.push_segment(&tokens(70), vec![]);
        let long = whole.push_segment(&tokens(150), vec![trunk.clone()]);
        let short = whole.push_segment(&tokens(3), vec![trunk.clone()]);
        let leaf = whole.push_segment(&tokens(5), vec![trunk.clone(), short.clone()]);
        let alone = whole.push_segment(&tokens(40), vec![]);
        let n = whole.tokens.len();
        let q = Tensor::randn(0f32, 1.0, (n_head, n, d), &Device::Cpu).unwrap();
        let k = Tensor::randn(0f32, 1.0, (n_kv, n, d), &Device::Cpu).unwrap();
        let v = Tensor::randn(0f32, 1.0, (n_kv, n, d), &Device::Cpu).unwrap();

        let mut cases: Vec<Case> = Vec::new();
        // The trunk is past.
        let mut b = PackedBatch::default();
        let p = b.push_past(70);
        b.push_segment_below(&tokens(150), vec![Keys::Past(p.clone())]);
        let s = b.push_segment_below(&tokens(3), vec![Keys::Past(p.clone())]);
        b.push_segment_below(&tokens(5), vec![Keys::Past(p), Keys::Batch(s)]);
        b.push_segment(&tokens(40), vec![]);
        cases.push((
            vec![trunk.clone()],
            vec![long.clone(), short.clone(), leaf.clone(), alone.clone()],
            b,
        ));
        // The trunk and the short branch are past; only the leaf and the unrelated rows run.
        let mut b = PackedBatch::default();
        let p = b.push_past(70);
        let s = b.push_past(3);
        b.push_segment_below(&tokens(5), vec![Keys::Past(p), Keys::Past(s)]);
        b.push_segment(&tokens(40), vec![]);
        cases.push((
            vec![trunk.clone(), short.clone()],
            vec![leaf.clone(), alone.clone()],
            b,
        ));
        // The trunk is computed again, the short branch below it is past.
        let mut b = PackedBatch::default();
        let s = b.push_past(3);
        let t = b.push_segment(&tokens(70), vec![]);
        b.push_segment_below(&tokens(5), vec![Keys::Batch(t), Keys::Past(s)]);
        cases.push((vec![short.clone()], vec![trunk.clone(), leaf.clone()], b));

        for spec in specs() {
            let reference = AttentionPlan::new(&whole, spec, &Device::Cpu, DType::F32)
                .unwrap()
                .attend(&q, &k, &v, None)
                .unwrap()
                .reshape((n, n_head, d))
                .unwrap()
                .transpose(0, 1)
                .unwrap();
            for (past_rows, rows, batch) in &cases {
                let past = (rows_of(&k, past_rows), rows_of(&v, past_rows));
                let (q, k, v) = (rows_of(&q, rows), rows_of(&k, rows), rows_of(&v, rows));
                let past = Some((&past.0, &past.1));
                let plan = AttentionPlan::new(batch, spec, &Device::Cpu, DType::F32).unwrap();
                let out = plan.attend(&q, &k, &v, past).unwrap();
                let m = batch.tokens.len();
                let heads_first = out
                    .reshape((m, n_head, d))
                    .unwrap()
                    .transpose(0, 1)
                    .unwrap();
                assert_eq!(
                    bits(&heads_first),
                    bits(&rows_of(&reference, rows)),
                    "{spec:?}, past {past_rows:?}"
                );
                let blocked = AttentionPlan::blocked(batch, spec, &Device::Cpu, 64).unwrap();
                let generic = blocked.attend(&q, &k, &v, past).unwrap();
                let diff = max_difference(&out, &generic);
                assert!(
                    diff < 1e-5,
                    "{spec:?}, past {past_rows:?}: masked differs by {diff}"
                );
            }
        }
    }

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
            let fast = tree.attend(&q, &k, &v, None).unwrap();
            // Blocks of 64 rows: spans that start at a trunk, a root or mid-segment.
            let blocked = AttentionPlan::blocked(&batch, spec, &Device::Cpu, 64).unwrap();
            let generic = blocked.attend(&q, &k, &v, None).unwrap();
            let diff = max_difference(&fast, &generic);
            assert!(diff < 1e-5, "{spec:?}: max difference {diff}");
        }
        assert_eq!(
            batch.segments[3],
            Segment {
                range: 223..228,
                ancestors: vec![Keys::Batch(0..70), Keys::Batch(220..223)]
            }
        );
        assert_eq!(batch.positions[223], 73);
    }
}
