//! Matrix kernels of the CPU linear layers that candle does not have, each picked at run time
//! by the features of the CPU it runs on (never assumed at compile time), each with a portable
//! fallback that every other path must equal: the CPU features that matter here (`features`),
//! the int8 kernel (`int8`) and the bf16 kernel (`bf16`).

pub mod bf16;
pub mod features;
pub mod int8;

pub use features::CpuFeatures;

use super::device::{Placement, Precision};

/// Which kernels multiply a model's matrices in `precision` on the CPU (`on_cpu`) or a GPU,
/// in words for reports (`valuelens bench`, `run.json`).
pub fn matmul_kernels(precision: Precision, on_cpu: bool) -> anyhow::Result<String> {
    Ok(match (precision, on_cpu) {
        (Precision::Int8, _) => format!(
            "int8 {} (feed-forward); f32 candle gemm (attention projections, LM head)",
            int8::Int8Path::select(&CpuFeatures::detect())?.name()
        ),
        (Precision::Bf16, true) => format!(
            "bf16 {} (every linear layer and the LM head; f32 between them)",
            bf16::Bf16Path::select(&CpuFeatures::detect())?.name()
        ),
        (Precision::Quantized, _) => "candle QMatMul (GGUF blocks; Q4/Q5 as Q8_0)".into(),
        (p, true) => format!("{} candle gemm", p.name()),
        (p, false) => format!("{} candle cuBLAS", p.name()),
    })
}

/// The arithmetic of valuelens's own kernels where `placement` uses them, for a run's resume
/// identity (see `RunConfig::kernels`); `None` where candle's kernels compute.
pub fn kernel_arithmetic(placement: &Placement) -> Option<&'static str> {
    match placement.precision {
        Precision::Int8 => Some(int8::ARITHMETIC),
        Precision::Bf16 if placement.cpu_bf16_kernel() => Some(bf16::ARITHMETIC),
        _ => None,
    }
}

/// A raw pointer to output rows that several threads write, each its own elements.
#[derive(Clone, Copy)]
struct SharedOut(*mut f32);
// SAFETY: the kernels write disjoint elements through it, and the buffer outlives the threads.
unsafe impl Send for SharedOut {}
unsafe impl Sync for SharedOut {}

/// The first of a kernel's `available` paths (fastest first), unless the environment variable
/// `variable` names another one of them (to measure a slower path on a faster machine).
fn select_path<P: Copy>(
    variable: &str,
    available: &[P],
    name: fn(P) -> &'static str,
) -> anyhow::Result<P> {
    match std::env::var(variable) {
        Ok(wanted) if !wanted.is_empty() => available
            .iter()
            .copied()
            .find(|&p| name(p) == wanted)
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "{variable}={wanted} is not a path this CPU can run; it can run: {}",
                    available
                        .iter()
                        .map(|&p| name(p))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            }),
        _ => Ok(available[0]),
    }
}

#[cfg(test)]
pub(crate) mod test_support {
    use crate::random::splitmix64;

    /// (n, k) of the linear layers of SmolLM2-135M, gemma-3-270m and Qwen2.5-0.5B: fused QKV,
    /// attention output, fused gate/up, down projections.
    pub const MODEL_SHAPES: [(usize, usize); 12] = [
        (960, 576),
        (576, 576),
        (3072, 576),
        (576, 1536),
        (1536, 640),
        (640, 1024),
        (4096, 640),
        (640, 2048),
        (1152, 896),
        (896, 896),
        (9728, 896),
        (896, 4864),
    ];

    /// Uniform values in (−spread, spread), stream `seed`.
    pub fn random_matrix(seed: u64, len: usize, spread: f32) -> Vec<f32> {
        (0..len as u64)
            .map(|i| {
                let unit = (splitmix64(seed.wrapping_mul(1 << 40).wrapping_add(i)) >> 40) as f32
                    / (1u64 << 24) as f32;
                (unit * 2.0 - 1.0) * spread
            })
            .collect()
    }
}
