//! What the kernels share: the driver that cuts a product into (chunk of rows, panel of
//! columns) tasks over threads and writes each task's tiles into the output, the choice of a
//! path by the CPU (or by an environment variable), and, for tests, random matrices and the
//! models' shapes.

use rayon::prelude::*;

/// Output columns per packed panel, in every kernel.
pub(super) const PANEL: usize = 32;

/// Rows of `x` one task multiplies with one panel (a multiple of every kernel's tile height), so
/// that a task's activations stay in cache while it goes through the panel's weights.
const CHUNK_ROWS: usize = 64;

/// A raw pointer to output rows that several threads write, each its own elements.
#[derive(Clone, Copy)]
struct SharedOut(*mut f32);
// SAFETY: the kernels write disjoint elements through it, and the buffer outlives the threads.
unsafe impl Send for SharedOut {}
unsafe impl Sync for SharedOut {}

impl SharedOut {
    /// The element `offset` of the buffer (a method, so that closures capture the whole
    /// `Send + Sync` value rather than its raw pointer field).
    ///
    /// # Safety
    /// `offset` is within the buffer.
    unsafe fn at(self, offset: usize) -> *mut f32 {
        // SAFETY: the caller keeps `offset` within the buffer.
        unsafe { self.0.add(offset) }
    }
}

/// `[rows, n]` row-major, computed tile by tile: `tile(first_row, panel, out)` fills (writes
/// every element of) the `TILE_ROWS × PANEL` tile of rows `first_row..` and the panel's columns
/// (rows past `rows` and columns past `n` are computed and dropped). Tasks of one chunk of rows × one panel run on
/// rayon's threads.
pub(super) fn tiled_product<const TILE_ROWS: usize>(
    rows: usize,
    n: usize,
    tile: impl Fn(usize, usize, &mut [[f32; PANEL]; TILE_ROWS]) + Sync,
) -> Vec<f32> {
    tiled_product_in_chunks::<TILE_ROWS>(rows, n, CHUNK_ROWS, tile)
}

/// [`tiled_product`] with `chunk_rows` rows per task (a multiple of `TILE_ROWS`): more rows
/// per task read each panel's weights from memory fewer times, for weights too large for the
/// caches (a model's matrices of billions of parameters).
pub(super) fn tiled_product_in_chunks<const TILE_ROWS: usize>(
    rows: usize,
    n: usize,
    chunk_rows: usize,
    tile: impl Fn(usize, usize, &mut [[f32; PANEL]; TILE_ROWS]) + Sync,
) -> Vec<f32> {
    debug_assert_eq!(chunk_rows % TILE_ROWS, 0);
    // Not zeroed first: the tasks below write every element, and zeroing a forward's outputs
    // (a batch's rows × the widest layer) took a tenth of a forward's time (perf).
    let mut out: Vec<f32> = Vec::with_capacity(rows * n);
    if rows == 0 || n == 0 {
        return out;
    }
    let panels = n.div_ceil(PANEL);
    let chunks = rows.div_ceil(chunk_rows);
    let shared = SharedOut(out.as_mut_ptr());
    (0..chunks * panels).into_par_iter().for_each(|task| {
        let (chunk, panel) = (task / panels, task % panels);
        let first_row = chunk * chunk_rows;
        let last_row = (first_row + chunk_rows).min(rows);
        let columns = PANEL.min(n - panel * PANEL);
        // One tile's values per task, not per tile: every kernel writes all of them, and
        // zeroing 4 KiB per AMX tile took a twelfth of a bf16 forward (perf).
        let mut values = [[0f32; PANEL]; TILE_ROWS];
        for row in (first_row..last_row).step_by(TILE_ROWS) {
            tile(row, panel, &mut values);
            for (r, tile_row) in values.iter().enumerate().take(last_row - row) {
                // SAFETY: row + r < rows and the panel's columns < n; each task writes its own
                // (rows, columns) block of `out`, which outlives the tasks.
                unsafe {
                    let dst = shared.at((row + r) * n + panel * PANEL);
                    std::ptr::copy_nonoverlapping(tile_row.as_ptr(), dst, columns);
                }
            }
        }
    });
    // SAFETY: the tasks covered every (chunk of rows, panel) pair, and each wrote all of its
    // rows (`first_row..last_row`) × columns (`panel · PANEL..` + `columns`): every one of the
    // `rows · n` elements is initialized.
    unsafe { out.set_len(rows * n) };
    out
}

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
