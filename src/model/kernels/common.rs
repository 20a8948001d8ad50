//! What the kernels share: the pointer through which their threads write disjoint parts of one
//! output, the choice of a path by the CPU (or by an environment variable), and, for tests,
//! random matrices and the models' shapes.

/// A raw pointer to output rows that several threads write, each its own elements.
#[derive(Clone, Copy)]
pub(super) struct SharedOut(pub(super) *mut f32);
// SAFETY: the kernels write disjoint elements through it, and the buffer outlives the threads.
unsafe impl Send for SharedOut {}
unsafe impl Sync for SharedOut {}

/// The first of a kernel's `available` paths (fastest first), unless the environment variable
/// `variable` names another one of them (to measure a slower path on a faster machine).
pub(super) fn select_path<P: Copy>(
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
