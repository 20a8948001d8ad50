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
    pub fn attend(&self, q: &Tensor, k: &Tensor, v: &Tensor) -> Result<Tensor> {
        match self {
            Self::Tree { segments, spec } => tree::tree_attention(q, k, v, segments, spec),
            Self::Blocked { spec, blocks } => blocks.attend(q, k, v, spec),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::batch::Segment;

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
}
