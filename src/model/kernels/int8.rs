//! The int8 matrix product `y = x · Wᵀ` of `--dtype int8`: weights quantized once at load to
//! 8 bits per block of 16 inputs (each block with its own f32 scale, as GGUF's Q8_0 does per
//! 32: blocks of 16 halve the error of activations with outliers at no measurable cost), the
//! activations quantized the same way per row at each call, integer dot products per block,
//! and f32 accumulation of the blocks.
//!
//! Every path computes exactly the same numbers: the block dot products are integers (exact
//! on any instruction set), and the blocks are accumulated in one order with the same fused
//! multiply-adds. So this product does not depend on the CPU it runs on (the f32 layers around
//! it do, slightly, where candle's gemm has AVX-512: see `kernel_arithmetic`).
//!
//! Weights are packed at load into panels of 32 output columns, blocks of 16 inputs within a
//! panel, and within a block 4 groups of 4 consecutive inputs for each column: the layout in
//! which one AVX-512 VNNI instruction (`vpdpbusd`) multiplies 4 inputs of one row, broadcast,
//! with those 4 inputs of 16 columns. VNNI multiplies unsigned by signed bytes, so activations
//! are stored offset by 128 (`u = q + 128`) and each block's weight sum times 128 is taken back
//! out, which the packing precomputes.

use rayon::prelude::*;

use super::common::{tiled_product, PANEL};
use super::features::CpuFeatures;

/// What this kernel computes, for resume identities: changed whenever its numbers change.
pub const ARITHMETIC: &str =
    "int8 v2: blocks of 16, half to even; feed-forward only (attention and LM head f32)";

/// Inputs per quantization block.
pub const BLOCK: usize = 16;
/// Rows of `x` per kernel tile.
const TILE_ROWS: usize = 4;
/// Input groups of 4 per block (one VNNI step each).
const GROUPS: usize = BLOCK / 4;
/// Bytes of one packed (panel, block).
const PACKED_BLOCK: usize = BLOCK * PANEL;

/// The instruction sets the int8 product can run on, fastest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Int8Path {
    /// AVX-512 with VNNI: 64 multiply-adds per instruction.
    Avx512Vnni,
    /// AVX2: `vpmaddubsw` on |w| and x·sign(w), then `vpmaddwd` into 32 bits (no overflow:
    /// both operands are within ±127); for CPUs without AVX-512 VNNI.
    Avx2,
    /// Plain Rust on any CPU: the reference every other path equals.
    Portable,
}

impl Int8Path {
    /// The name reports and `VALUELENS_INT8_PATH` use.
    pub fn name(self) -> &'static str {
        match self {
            Int8Path::Avx512Vnni => "avx512_vnni",
            Int8Path::Avx2 => "avx2",
            Int8Path::Portable => "portable",
        }
    }

    /// The paths the CPU can run, fastest first (always ending with the portable one).
    pub fn available(features: &CpuFeatures) -> Vec<Int8Path> {
        let mut paths = Vec::new();
        if features.avx512f && features.avx512bw && features.avx512vnni {
            paths.push(Int8Path::Avx512Vnni);
        }
        if features.avx2 && features.fma {
            paths.push(Int8Path::Avx2);
        }
        paths.push(Int8Path::Portable);
        paths
    }

    /// The fastest path this CPU has, unless `VALUELENS_INT8_PATH` names another one it has
    /// (to measure a slower path on a faster machine).
    pub fn select(features: &CpuFeatures) -> anyhow::Result<Int8Path> {
        super::common::select_path(
            "VALUELENS_INT8_PATH",
            &Self::available(features),
            Self::name,
        )
    }
}

/// A weight matrix `[n, k]` quantized and packed for the int8 kernels.
pub struct Int8Matrix {
    n: usize,
    k: usize,
    blocks: usize,
    /// `[panel][block][group][column][4]` signed 8-bit weights (zero beyond `n` and `k`).
    weights: Vec<i8>,
    /// `[panel][block][column]` the scale of each column's block.
    scales: Vec<f32>,
    /// `[panel][block][column]` −128 × the sum of the column's quantized block.
    offsets: Vec<i32>,
    path: Int8Path,
}

/// Quantizes up to `BLOCK` values to integers in −127..=127 with one scale (the largest
/// magnitude maps to 127), rounding halves to even (one instruction on every CPU, unlike
/// halves away from zero), writing `q + 128` into `out`; returns the scale. Values beyond
/// `values.len()` are zero.
#[inline(always)]
fn quantize_block(values: &[f32], out: &mut [u8]) -> f32 {
    let amax = values.iter().fold(0f32, |m, v| m.max(v.abs()));
    let scale = amax / 127.0;
    let inverse = if scale > 0.0 { 1.0 / scale } else { 0.0 };
    for (i, o) in out.iter_mut().enumerate().take(BLOCK) {
        let q = values.get(i).map_or(0.0, |v| {
            (v * inverse).round_ties_even().clamp(-127.0, 127.0)
        });
        *o = (q as i32 + 128) as u8;
    }
    scale
}

/// One row quantized per block into `bytes` (`q + 128`) and `scales`: whole blocks with AVX2
/// where the CPU has it (the same numbers as [`quantize_block`]: the same products, the same
/// rounding), the rest — and everything on other CPUs — with [`quantize_block`].
fn quantize_row(row: &[f32], bytes: &mut [u8], scales: &mut [f32]) {
    let mut whole = row.len() / BLOCK;
    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2; the function reads `whole` blocks of `row` and writes as
        // many of `bytes` and `scales`, all in bounds.
        unsafe { quantize_blocks_avx2(&row[..whole * BLOCK], bytes, scales) };
    } else {
        whole = 0;
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        whole = 0;
    }
    for (b, (out, scale)) in bytes
        .chunks_mut(BLOCK)
        .zip(scales.iter_mut())
        .enumerate()
        .skip(whole)
    {
        let end = ((b + 1) * BLOCK).min(row.len());
        *scale = quantize_block(&row[(b * BLOCK).min(end)..end], out);
    }
}

/// [`quantize_block`] on the whole blocks of `row`, 16 values in two registers at a time.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn quantize_blocks_avx2(row: &[f32], bytes: &mut [u8], scales: &mut [f32]) {
    use std::arch::x86_64::*;
    const _: () = assert!(BLOCK == 16);
    let blocks = row.len() / BLOCK;
    assert!(bytes.len() >= blocks * BLOCK && scales.len() >= blocks);
    let magnitude = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fff_ffff));
    let (low, high) = (_mm256_set1_ps(-127.0), _mm256_set1_ps(127.0));
    let offset = _mm256_set1_epi32(128);
    for b in 0..blocks {
        // SAFETY (loads and stores): `b < blocks`, bounded by the assert above.
        let at = row.as_ptr().add(b * BLOCK);
        let (v0, v1) = (_mm256_loadu_ps(at), _mm256_loadu_ps(at.add(8)));
        let m = _mm256_max_ps(_mm256_and_ps(v0, magnitude), _mm256_and_ps(v1, magnitude));
        let m = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
        let m = _mm_max_ps(m, _mm_movehl_ps(m, m));
        let m = _mm_max_ss(m, _mm_shuffle_ps(m, m, 1));
        let amax = _mm_cvtss_f32(m);
        let scale = amax / 127.0;
        let inverse = _mm256_set1_ps(if scale > 0.0 { 1.0 / scale } else { 0.0 });
        let quantize = |v| {
            const NEAREST: i32 = _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC;
            let q = _mm256_round_ps::<NEAREST>(_mm256_mul_ps(v, inverse));
            let q = _mm256_min_ps(_mm256_max_ps(q, low), high);
            _mm256_add_epi32(_mm256_cvtps_epi32(q), offset)
        };
        // 32-bit lanes → 16 → 8 bits (both packs saturate, no value needs it), then the
        // lane-crossing order of the packs undone.
        let words = _mm256_packs_epi32(quantize(v0), quantize(v1));
        let packed = _mm256_packus_epi16(words, words);
        let ordered =
            _mm256_permutevar8x32_epi32(packed, _mm256_setr_epi32(0, 4, 1, 5, 0, 0, 0, 0));
        _mm_storeu_si128(
            bytes.as_mut_ptr().add(b * BLOCK) as *mut __m128i,
            _mm256_castsi256_si128(ordered),
        );
        *scales.get_unchecked_mut(b) = scale;
    }
}

/// Rows of activations quantized per block: `bytes` holds `q + 128`, `[rows][blocks · BLOCK]`.
struct QuantizedRows {
    bytes: Vec<u8>,
    scales: Vec<f32>,
    stride: usize,
    blocks: usize,
}

impl QuantizedRows {
    /// `x: [rows, k]` row-major; rows are padded with zeros to a multiple of `TILE_ROWS`.
    fn new(x: &[f32], rows: usize, k: usize) -> Self {
        let blocks = k.div_ceil(BLOCK);
        let stride = blocks * BLOCK;
        let padded = rows.div_ceil(TILE_ROWS) * TILE_ROWS;
        let mut bytes = vec![128u8; padded * stride];
        let mut scales = vec![0f32; padded * blocks];
        bytes
            .par_chunks_mut(stride)
            .zip(scales.par_chunks_mut(blocks))
            .take(rows)
            .enumerate()
            .for_each(|(r, (row_bytes, row_scales))| {
                quantize_row(&x[r * k..(r + 1) * k], row_bytes, row_scales);
            });
        Self {
            bytes,
            scales,
            stride,
            blocks,
        }
    }
}

impl Int8Matrix {
    /// Quantizes and packs `w: [n, k]` (row-major f32) for `path`.
    pub fn new(w: &[f32], n: usize, k: usize, path: Int8Path) -> Self {
        assert_eq!(w.len(), n * k, "weight of {n}×{k} needs {} values", n * k);
        let blocks = k.div_ceil(BLOCK);
        let panels = n.div_ceil(PANEL);
        let mut weights = vec![0i8; panels * blocks * PACKED_BLOCK];
        let mut scales = vec![0f32; panels * blocks * PANEL];
        let mut offsets = vec![0i32; panels * blocks * PANEL];
        weights
            .par_chunks_mut(blocks * PACKED_BLOCK)
            .zip(scales.par_chunks_mut(blocks * PANEL))
            .zip(offsets.par_chunks_mut(blocks * PANEL))
            .enumerate()
            .for_each(|(p, ((panel_w, panel_s), panel_o))| {
                let mut bytes = vec![0u8; blocks * BLOCK];
                let mut row_scales = vec![0f32; blocks];
                for c in 0..PANEL.min(n - p * PANEL) {
                    let row = &w[(p * PANEL + c) * k..(p * PANEL + c + 1) * k];
                    quantize_row(row, &mut bytes, &mut row_scales);
                    for (b, q) in bytes.chunks(BLOCK).enumerate() {
                        panel_s[b * PANEL + c] = row_scales[b];
                        let mut sum = 0i32;
                        for (i, &u) in q.iter().enumerate() {
                            let v = u as i32 - 128;
                            sum += v;
                            let at = b * PACKED_BLOCK + (i / 4) * PANEL * 4 + c * 4 + i % 4;
                            panel_w[at] = v as i8;
                        }
                        panel_o[b * PANEL + c] = -128 * sum;
                    }
                }
            });
        Self {
            n,
            k,
            blocks,
            weights,
            scales,
            offsets,
            path,
        }
    }

    pub fn rows(&self) -> usize {
        self.n
    }

    pub fn cols(&self) -> usize {
        self.k
    }

    pub fn path(&self) -> Int8Path {
        self.path
    }

    /// `x: [rows, k]` row-major → `[rows, n]` row-major.
    pub fn matmul(&self, x: &[f32], rows: usize) -> Vec<f32> {
        assert_eq!(
            x.len(),
            rows * self.k,
            "input of {rows}×{} expected",
            self.k
        );
        let x = QuantizedRows::new(x, rows, self.k);
        let panel_bytes = self.blocks * PACKED_BLOCK;
        let panel_values = self.blocks * PANEL;
        tiled_product::<TILE_ROWS>(rows, self.n, |row, panel, tile| {
            let operands = Operands {
                x: &x.bytes[row * x.stride..(row + TILE_ROWS) * x.stride],
                x_scales: &x.scales[row * x.blocks..(row + TILE_ROWS) * x.blocks],
                stride: x.stride,
                blocks: self.blocks,
                weights: &self.weights[panel * panel_bytes..][..panel_bytes],
                scales: &self.scales[panel * panel_values..][..panel_values],
                offsets: &self.offsets[panel * panel_values..][..panel_values],
            };
            match self.path {
                #[cfg(target_arch = "x86_64")]
                // SAFETY: the path was chosen among those the CPU supports.
                Int8Path::Avx512Vnni => unsafe { tile_avx512_vnni(&operands, tile) },
                #[cfg(target_arch = "x86_64")]
                // SAFETY: as above.
                Int8Path::Avx2 => unsafe { tile_avx2(&operands, tile) },
                #[cfg(not(target_arch = "x86_64"))]
                Int8Path::Avx512Vnni | Int8Path::Avx2 => unreachable!("x86_64 paths"),
                Int8Path::Portable => tile_portable(&operands, tile),
            }
        })
    }
}

/// What a kernel tile reads: `TILE_ROWS` quantized rows and one panel.
struct Operands<'a> {
    x: &'a [u8],
    x_scales: &'a [f32],
    stride: usize,
    blocks: usize,
    weights: &'a [i8],
    scales: &'a [f32],
    offsets: &'a [i32],
}

/// The reference tile: `TILE_ROWS` × `PANEL` outputs, in plain Rust.
fn tile_portable(o: &Operands, tile: &mut [[f32; PANEL]; TILE_ROWS]) {
    for (r, tile_row) in tile.iter_mut().enumerate() {
        for (c, out) in tile_row.iter_mut().enumerate() {
            let mut acc = 0f32;
            for b in 0..o.blocks {
                let mut dot = o.offsets[b * PANEL + c];
                for i in 0..BLOCK {
                    let u = o.x[r * o.stride + b * BLOCK + i] as i32;
                    let w = o.weights[b * PACKED_BLOCK + (i / 4) * PANEL * 4 + c * 4 + i % 4];
                    dot += u * w as i32;
                }
                let t = dot as f32 * o.x_scales[r * o.blocks + b];
                acc = t.mul_add(o.scales[b * PANEL + c], acc);
            }
            *out = acc;
        }
    }
}

/// The AVX-512 VNNI tile: per block, 4 steps of `vpdpbusd` into integer accumulators that
/// start at the block's offsets, then one scale-and-accumulate in f32.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
unsafe fn tile_avx512_vnni(o: &Operands, tile: &mut [[f32; PANEL]; TILE_ROWS]) {
    use std::arch::x86_64::*;
    assert!(o.x.len() >= TILE_ROWS * o.stride && o.weights.len() >= o.blocks * PACKED_BLOCK);
    assert!(o.scales.len() >= o.blocks * PANEL && o.offsets.len() >= o.blocks * PANEL);
    assert!(o.x_scales.len() >= TILE_ROWS * o.blocks);
    let mut acc = [[_mm512_setzero_ps(); 2]; TILE_ROWS];
    let x = o.x.as_ptr();
    let w = o.weights.as_ptr();
    for b in 0..o.blocks {
        // SAFETY (all loads below): the asserts above bound every offset.
        let offsets = o.offsets.as_ptr().add(b * PANEL);
        let low = _mm512_loadu_si512(offsets as *const _);
        let high = _mm512_loadu_si512(offsets.add(16) as *const _);
        let mut dots = [[low, high]; TILE_ROWS];
        let block = w.add(b * PACKED_BLOCK);
        for g in 0..GROUPS {
            let w_low = _mm512_loadu_si512(block.add(g * PANEL * 4) as *const _);
            let w_high = _mm512_loadu_si512(block.add(g * PANEL * 4 + 64) as *const _);
            for (r, dot) in dots.iter_mut().enumerate() {
                let four = (x.add(r * o.stride + b * BLOCK + g * 4) as *const i32).read_unaligned();
                let inputs = _mm512_set1_epi32(four);
                dot[0] = _mm512_dpbusd_epi32(dot[0], inputs, w_low);
                dot[1] = _mm512_dpbusd_epi32(dot[1], inputs, w_high);
            }
        }
        let scales = o.scales.as_ptr().add(b * PANEL);
        let s_low = _mm512_loadu_ps(scales);
        let s_high = _mm512_loadu_ps(scales.add(16));
        for (r, (dot, acc)) in dots.iter().zip(acc.iter_mut()).enumerate() {
            let x_scale = _mm512_set1_ps(*o.x_scales.get_unchecked(r * o.blocks + b));
            let t_low = _mm512_mul_ps(_mm512_cvtepi32_ps(dot[0]), x_scale);
            let t_high = _mm512_mul_ps(_mm512_cvtepi32_ps(dot[1]), x_scale);
            acc[0] = _mm512_fmadd_ps(t_low, s_low, acc[0]);
            acc[1] = _mm512_fmadd_ps(t_high, s_high, acc[1]);
        }
    }
    for (row, acc) in tile.iter_mut().zip(acc.iter()) {
        _mm512_storeu_ps(row.as_mut_ptr(), acc[0]);
        _mm512_storeu_ps(row.as_mut_ptr().add(16), acc[1]);
    }
}

/// The AVX2 tile, as pairs of rows × halves of the panel (16 columns, two registers of 8):
/// per block, 4 steps of `vpmaddubsw(|w|, x·sign(w))` and `vpmaddwd` by ones into integer
/// accumulators, then the same scale-and-accumulate in f32 as every path. The activations'
/// stored `q + 128` turn back into `q` by flipping the top bit, so no offset is needed.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn tile_avx2(o: &Operands, tile: &mut [[f32; PANEL]; TILE_ROWS]) {
    use std::arch::x86_64::*;
    assert!(o.x.len() >= TILE_ROWS * o.stride && o.weights.len() >= o.blocks * PACKED_BLOCK);
    assert!(o.scales.len() >= o.blocks * PANEL && o.x_scales.len() >= TILE_ROWS * o.blocks);
    let ones = _mm256_set1_epi16(1);
    let top_bit = _mm256_set1_epi8(-128);
    let x = o.x.as_ptr();
    let w = o.weights.as_ptr();
    for rows in (0..TILE_ROWS).step_by(2) {
        for half in 0..2 {
            let mut acc = [[_mm256_setzero_ps(); 2]; 2];
            for b in 0..o.blocks {
                let mut dots = [[_mm256_setzero_si256(); 2]; 2];
                // SAFETY (all loads below): the asserts above bound every offset.
                let block = w.add(b * PACKED_BLOCK + half * 64);
                for g in 0..GROUPS {
                    let w0 = _mm256_loadu_si256(block.add(g * PANEL * 4) as *const _);
                    let w1 = _mm256_loadu_si256(block.add(g * PANEL * 4 + 32) as *const _);
                    let (a0, a1) = (_mm256_sign_epi8(w0, w0), _mm256_sign_epi8(w1, w1));
                    for (r, dot) in dots.iter_mut().enumerate() {
                        let at = (rows + r) * o.stride + b * BLOCK + g * 4;
                        let four = (x.add(at) as *const i32).read_unaligned();
                        let q = _mm256_xor_si256(_mm256_set1_epi32(four), top_bit);
                        let p0 = _mm256_maddubs_epi16(a0, _mm256_sign_epi8(q, w0));
                        let p1 = _mm256_maddubs_epi16(a1, _mm256_sign_epi8(q, w1));
                        dot[0] = _mm256_add_epi32(dot[0], _mm256_madd_epi16(p0, ones));
                        dot[1] = _mm256_add_epi32(dot[1], _mm256_madd_epi16(p1, ones));
                    }
                }
                let scales = o.scales.as_ptr().add(b * PANEL + half * 16);
                let s = [_mm256_loadu_ps(scales), _mm256_loadu_ps(scales.add(8))];
                for (r, (dot, acc)) in dots.iter().zip(acc.iter_mut()).enumerate() {
                    let x_scale =
                        _mm256_set1_ps(*o.x_scales.get_unchecked((rows + r) * o.blocks + b));
                    for v in 0..2 {
                        let t = _mm256_mul_ps(_mm256_cvtepi32_ps(dot[v]), x_scale);
                        acc[v] = _mm256_fmadd_ps(t, s[v], acc[v]);
                    }
                }
            }
            for (r, acc) in acc.iter().enumerate() {
                let out = tile[rows + r].as_mut_ptr().add(half * 16);
                _mm256_storeu_ps(out, acc[0]);
                _mm256_storeu_ps(out.add(8), acc[1]);
            }
        }
    }
}

/// `y = x · Wᵀ` with plain f32 arithmetic on the same quantized values as the kernels (the
/// weights and activations rounded exactly as they round them, each block's integer dot
/// product then scaled): what every path must equal, for tests.
pub fn reference(w: &[f32], x: &[f32], n: usize, k: usize, rows: usize) -> Vec<f32> {
    let blocks = k.div_ceil(BLOCK);
    let quantize = |row: &[f32]| -> Vec<(Vec<i32>, f32)> {
        (0..blocks)
            .map(|b| {
                let mut q = [0u8; BLOCK];
                let scale = quantize_block(&row[b * BLOCK..((b + 1) * BLOCK).min(k)], &mut q);
                (q.iter().map(|&u| u as i32 - 128).collect(), scale)
            })
            .collect()
    };
    let wq: Vec<_> = (0..n).map(|c| quantize(&w[c * k..(c + 1) * k])).collect();
    let mut y = vec![0f32; rows * n];
    for r in 0..rows {
        let xq = quantize(&x[r * k..(r + 1) * k]);
        for c in 0..n {
            let mut acc = 0f32;
            for ((xb, xs), (wb, ws)) in xq.iter().zip(&wq[c]) {
                let dot: i32 = xb.iter().zip(wb).map(|(a, b)| a * b).sum();
                acc = (dot as f32 * xs).mul_add(*ws, acc);
            }
            y[r * n + c] = acc;
        }
    }
    y
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::kernels::common::test_support::{random_matrix, MODEL_SHAPES};

    /// Every path this CPU has equals the reference bit for bit; paths it lacks are named.
    fn check_shape(rows: usize, n: usize, k: usize) {
        let seed = (rows * 31 + n * 7 + k) as u64;
        let mut w = random_matrix(seed, n * k, 0.05);
        let mut x = random_matrix(seed + 1, rows * k, 1.0);
        // An outlier channel, as real activations have, and an all-zero block.
        if k > 40 {
            for r in 0..rows {
                x[r * k + 3] = 60.0;
                x[r * k + BLOCK..r * k + (2 * BLOCK).min(k)].fill(0.0);
            }
            w[..BLOCK.min(k)].fill(0.0);
        }
        let expected = reference(&w, &x, n, k, rows);
        let features = CpuFeatures::detect();
        for path in Int8Path::available(&features) {
            let got = Int8Matrix::new(&w, n, k, path).matmul(&x, rows);
            assert_eq!(got.len(), expected.len());
            for (i, (g, e)) in got.iter().zip(&expected).enumerate() {
                assert!(
                    g.to_bits() == e.to_bits(),
                    "{} at {rows}×{n}×{k}, output {i}: {g} ≠ {e}",
                    path.name()
                );
            }
        }
        let available = Int8Path::available(&features);
        if !available.contains(&Int8Path::Avx512Vnni) {
            println!("skipped the avx512_vnni int8 path: this CPU lacks avx512_vnni");
        }
        if !available.contains(&Int8Path::Avx2) {
            println!("skipped the avx2 int8 path: this CPU lacks avx2");
        }
    }

    #[test]
    fn every_path_equals_the_reference_at_odd_sizes() {
        for (rows, n, k) in [
            (1, 1, 1),
            (1, 33, 31),
            (3, 32, 32),
            (3, 65, 100),
            (5, 47, 257),
            (1000, 40, 70),
        ] {
            check_shape(rows, n, k);
        }
    }

    #[test]
    fn every_path_equals_the_reference_at_the_models_shapes() {
        for (n, k) in MODEL_SHAPES {
            for rows in [1, 3] {
                check_shape(rows, n, k);
            }
        }
        check_shape(1000, 960, 576);
    }

    #[test]
    fn the_language_model_heads_shapes_too() {
        for (n, k) in [(49152, 576), (262144, 640), (151936, 896)] {
            check_shape(1, n, k);
        }
    }

    #[test]
    fn quantization_is_close_to_the_float_product() {
        let (rows, n, k) = (8, 64, 576);
        let w = random_matrix(5, n * k, 0.05);
        let x = random_matrix(6, rows * k, 1.0);
        let got = Int8Matrix::new(&w, n, k, Int8Path::Portable).matmul(&x, rows);
        for r in 0..rows {
            for c in 0..n {
                let exact: f32 = (0..k).map(|i| x[r * k + i] * w[c * k + i]).sum();
                let g = got[r * n + c];
                // Two 8-bit roundings per product: relative error ≈ 2 · 2⁻⁸ of the terms.
                assert!((g - exact).abs() < 0.02, "{g} vs {exact}");
            }
        }
    }

    /// The vectorized row quantizer equals the scalar blocks, ties and tails included.
    #[test]
    fn rows_quantize_as_the_scalar_blocks_do() {
        for k in [1, 15, 16, 17, 576, 1000] {
            let mut row = random_matrix(k as u64, k, 3.0);
            // Exact ties after scaling: with a block maximum of 127 the scale is 1.
            for (i, v) in row.iter_mut().enumerate().take(16.min(k)) {
                *v = if i == 0 { 127.0 } else { i as f32 - 7.5 };
            }
            let blocks = k.div_ceil(BLOCK);
            let (mut bytes, mut scales) = (vec![0u8; blocks * BLOCK], vec![0f32; blocks]);
            quantize_row(&row, &mut bytes, &mut scales);
            for b in 0..blocks {
                let mut want = [0u8; BLOCK];
                let scale = quantize_block(&row[b * BLOCK..((b + 1) * BLOCK).min(k)], &mut want);
                assert_eq!(scales[b].to_bits(), scale.to_bits(), "k {k} block {b}");
                assert_eq!(&bytes[b * BLOCK..(b + 1) * BLOCK], &want, "k {k} block {b}");
            }
        }
        if !CpuFeatures::detect().avx2 {
            println!("skipped the avx2 row quantizer: this CPU lacks avx2");
        }
    }

    #[test]
    fn quantized_blocks_round_to_nearest_with_the_largest_at_127() {
        let mut out = [0u8; BLOCK];
        let scale = quantize_block(&[1.0, -2.0, 0.5, 0.0], &mut out);
        assert_eq!(scale, 2.0 / 127.0);
        assert_eq!(out[1] as i32 - 128, -127);
        assert_eq!(out[0] as i32 - 128, 64); // 63.5 rounds to even
        assert!(out[3..].iter().all(|&u| u == 128));
        assert_eq!(quantize_block(&[0.0; 3], &mut out), 0.0);
    }
}
