//! The bf16 matrix product `y = x · Wᵀ`: weights rounded once at load to bf16, activations
//! rounded to bf16 at each call, products of two bf16 values (exact in f32) accumulated in
//! f32 — what AVX-512 BF16's `vdpbf16ps` computes, 32 multiply-adds per instruction.
//!
//! Every path computes exactly the same numbers. `vdpbf16ps` adds the two products of a pair
//! to its f32 accumulator one after the other, the odd element's first, each addition rounded
//! to nearest even, with bf16 denormals read as zero. Since each product is exact, a fused
//! multiply-add per element in that order is the same arithmetic, which the AVX2 and portable
//! paths do; and the conversions flush bf16 denormals to zero themselves, so that no path ever
//! sees one. (The instruction also flushes denormal *sums* to zero; with the magnitudes of a
//! model's weights and activations no sum comes near 1e-38, and the tests would show one.)
//!
//! Weights are packed at load into panels of 32 output columns; within a panel, for each pair
//! of inputs, one 32-bit word per column holding the pair (even input in the low half): the
//! layout in which one `vdpbf16ps` multiplies a row's pair, broadcast, with 16 columns.

use rayon::prelude::*;

use super::common::{tiled_product, PANEL};
use super::features::CpuFeatures;

/// What this kernel computes, for resume identities: changed whenever its numbers change.
pub const ARITHMETIC: &str = "bf16 v1: pairs in f32, odd first; every linear layer and LM head";

/// [`ARITHMETIC`] on the AMX path, whose sums are its own.
pub const ARITHMETIC_AMX: &str = "bf16 v1 amx: tdpbf16ps sums; every linear layer and LM head";

/// Rows of `x` per kernel tile.
const TILE_ROWS: usize = 8;
/// Rows of `x` per AMX tile: two tiles of 16 rows (a multiple of `TILE_ROWS`).
const AMX_ROWS: usize = 32;
/// Input pairs per AMX tile product: a tile row of 64 bytes.
const AMX_PAIRS: usize = 16;

/// The instruction sets the bf16 product can run on, fastest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Bf16Path {
    /// AMX: `tdpbf16ps`, a 16 × 32 by 32 × 16 product per instruction, the 32 × 32 outputs of a
    /// tile kept in tile registers over all inputs (matrices whose inputs are a multiple of 32;
    /// others as on the AVX-512 BF16 path).
    Amx,
    /// AVX-512 BF16: `vdpbf16ps`, 32 multiply-adds per instruction.
    Avx512Bf16,
    /// AVX2 with FMA: the bf16 values widened to f32 (exactly), one fused multiply-add each.
    Avx2,
    /// Plain Rust on any CPU: the reference every other path equals.
    Portable,
}

impl Bf16Path {
    /// The name reports and `VALUELENS_BF16_PATH` use.
    pub fn name(self) -> &'static str {
        match self {
            Bf16Path::Amx => "amx_bf16",
            Bf16Path::Avx512Bf16 => "avx512_bf16",
            Bf16Path::Avx2 => "avx2",
            Bf16Path::Portable => "portable",
        }
    }

    /// The paths the CPU can run, fastest first (always ending with the portable one).
    pub fn available(features: &CpuFeatures) -> Vec<Bf16Path> {
        let mut paths = Vec::new();
        let avx512_bf16 = features.avx512f && features.avx512bf16;
        if avx512_bf16 && features.amx_bf16 && super::amx::permitted() {
            paths.push(Bf16Path::Amx);
        }
        if avx512_bf16 {
            paths.push(Bf16Path::Avx512Bf16);
        }
        if features.avx2 && features.fma {
            paths.push(Bf16Path::Avx2);
        }
        paths.push(Bf16Path::Portable);
        paths
    }

    /// The fastest path this CPU has, unless `VALUELENS_BF16_PATH` names another one it has.
    pub fn select(features: &CpuFeatures) -> anyhow::Result<Bf16Path> {
        super::common::select_path(
            "VALUELENS_BF16_PATH",
            &Self::available(features),
            Self::name,
        )
    }
}

/// `x` rounded to the nearest bf16 (ties to even), as the upper 16 bits of an f32; denormals
/// become zero of the same sign, NaN stays NaN.
#[inline(always)]
pub fn to_bf16(x: f32) -> u16 {
    let bits = x.to_bits();
    if x.is_nan() {
        return ((bits >> 16) | 0x40) as u16;
    }
    if bits & 0x7f80_0000 == 0 {
        return ((bits >> 16) & 0x8000) as u16;
    }
    let rounded = bits.wrapping_add(0x7fff + ((bits >> 16) & 1));
    (rounded >> 16) as u16
}

/// The f32 of a bf16 value (exact).
#[inline(always)]
pub fn from_bf16(b: u16) -> f32 {
    f32::from_bits((b as u32) << 16)
}

/// A pair of bf16 values as `vdpbf16ps` reads it: the even input in the low half.
#[inline(always)]
fn pair_word(even: f32, odd: f32) -> u32 {
    to_bf16(even) as u32 | (to_bf16(odd) as u32) << 16
}

/// A weight matrix `[n, k]` rounded to bf16 and packed for the kernels.
pub struct Bf16Matrix {
    n: usize,
    k: usize,
    pairs: usize,
    /// `[panel][pair][column]` the column's two weights of the pair (zero beyond `n`, `k`).
    weights: Vec<u32>,
    path: Bf16Path,
}

/// Rows of activations rounded to bf16, `[rows][pairs]` words (padded with zero rows to a
/// multiple of `AMX_ROWS`, itself a multiple of `TILE_ROWS`).
struct Bf16Rows {
    words: Vec<u32>,
    pairs: usize,
}

impl Bf16Rows {
    fn new(x: &[f32], rows: usize, k: usize) -> Self {
        let pairs = k.div_ceil(2);
        let padded = rows.div_ceil(AMX_ROWS) * AMX_ROWS;
        let mut words = vec![0u32; padded * pairs];
        words
            .par_chunks_mut(pairs)
            .take(rows)
            .enumerate()
            .for_each(|(r, out)| convert_row(&x[r * k..(r + 1) * k], out));
        Self { words, pairs }
    }
}

/// One row of f32 into bf16 pair words: whole groups of 32 values with AVX-512 BF16's
/// `vcvtne2ps2bf16` where the CPU has it (round to nearest even, denormals to zero, NaN kept
/// quiet: [`to_bf16`]'s numbers, tested), the rest compiled for AVX2 where the CPU has it, so
/// that the integer rounding vectorizes (the same numbers).
fn convert_row(row: &[f32], out: &mut [u32]) {
    #[cfg(target_arch = "x86_64")]
    if row.len() >= 32 && std::arch::is_x86_feature_detected!("avx512bf16") {
        let whole = row.len() / 32 * 32;
        // SAFETY: the CPU has AVX-512 BF16 (and so AVX-512 F); the function reads `whole`
        // values and writes `whole / 2` words, within both slices.
        unsafe { convert_avx512_bf16(&row[..whole], &mut out[..whole / 2]) };
        convert_rest(&row[whole..], &mut out[whole / 2..]);
        return;
    }
    convert_rest(row, out)
}

/// [`convert_row`] for a multiple of 32 values, 32 per instruction.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bf16")]
unsafe fn convert_avx512_bf16(row: &[f32], out: &mut [u32]) {
    use std::arch::x86_64::*;
    assert!(row.len().is_multiple_of(32) && out.len() * 2 >= row.len());
    for (i, chunk) in row.chunks_exact(32).enumerate() {
        // SAFETY: 32 values read from `chunk`, 16 words written at `16 i` of `out`.
        let low = _mm512_loadu_ps(chunk.as_ptr());
        let high = _mm512_loadu_ps(chunk.as_ptr().add(16));
        let words = std::mem::transmute::<__m512bh, __m512i>(_mm512_cvtne2ps_pbh(high, low));
        _mm512_storeu_si512(out.as_mut_ptr().add(16 * i) as *mut _, words);
    }
}

/// [`convert_row`] in plain Rust, compiled for AVX2 where the CPU has it.
fn convert_rest(row: &[f32], out: &mut [u32]) {
    #[inline(always)]
    fn words(row: &[f32], out: &mut [u32]) {
        let mut pairs = row.chunks_exact(2);
        for (o, pair) in out.iter_mut().zip(&mut pairs) {
            *o = pair_word(pair[0], pair[1]);
        }
        if let [last] = pairs.remainder() {
            out[row.len() / 2] = pair_word(*last, 0.0);
        }
    }
    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("avx2") {
        #[target_feature(enable = "avx2")]
        unsafe fn with_avx2(row: &[f32], out: &mut [u32]) {
            words(row, out)
        }
        // SAFETY: the CPU supports the features the function is compiled for.
        unsafe { with_avx2(row, out) };
        return;
    }
    words(row, out)
}

impl Bf16Matrix {
    /// Rounds and packs `w: [n, k]` (row-major f32) for `path`.
    pub fn new(w: &[f32], n: usize, k: usize, path: Bf16Path) -> Self {
        assert_eq!(w.len(), n * k, "weight of {n}×{k} needs {} values", n * k);
        let pairs = k.div_ceil(2);
        let panels = n.div_ceil(PANEL);
        let mut weights = vec![0u32; panels * pairs * PANEL];
        weights
            .par_chunks_mut(pairs * PANEL)
            .enumerate()
            .for_each(|(p, panel)| {
                let mut row_words = vec![0u32; pairs];
                for c in 0..PANEL.min(n - p * PANEL) {
                    let column = p * PANEL + c;
                    convert_row(&w[column * k..(column + 1) * k], &mut row_words);
                    for (pair, &word) in row_words.iter().enumerate() {
                        panel[pair * PANEL + c] = word;
                    }
                }
            });
        Self {
            n,
            k,
            pairs,
            weights,
            path,
        }
    }

    pub fn rows(&self) -> usize {
        self.n
    }

    pub fn cols(&self) -> usize {
        self.k
    }

    pub fn path(&self) -> Bf16Path {
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
        let x = Bf16Rows::new(x, rows, self.k);
        #[cfg(target_arch = "x86_64")]
        if self.path == Bf16Path::Amx && self.pairs.is_multiple_of(AMX_PAIRS) {
            return tiled_product::<AMX_ROWS>(rows, self.n, |row, panel, tile| {
                let operands = Operands {
                    x: &x.words[row * x.pairs..(row + AMX_ROWS) * x.pairs],
                    pairs: self.pairs,
                    weights: &self.weights[panel * self.pairs * PANEL..][..self.pairs * PANEL],
                };
                // SAFETY: the path is offered only where the CPU has AMX and the kernel
                // permits it; the operands cover `AMX_ROWS` rows and one panel.
                unsafe { tile_amx(&operands, tile) }
            });
        }
        tiled_product::<TILE_ROWS>(rows, self.n, |row, panel, tile| {
            let operands = Operands {
                x: &x.words[row * x.pairs..(row + TILE_ROWS) * x.pairs],
                pairs: self.pairs,
                weights: &self.weights[panel * self.pairs * PANEL..][..self.pairs * PANEL],
            };
            match self.path {
                #[cfg(target_arch = "x86_64")]
                // SAFETY: the path was chosen among those the CPU supports (AMX's implies
                // AVX-512 BF16).
                Bf16Path::Amx | Bf16Path::Avx512Bf16 => unsafe {
                    tile_avx512_bf16(&operands, tile)
                },
                #[cfg(target_arch = "x86_64")]
                // SAFETY: as above.
                Bf16Path::Avx2 => unsafe { tile_avx2(&operands, tile) },
                #[cfg(not(target_arch = "x86_64"))]
                Bf16Path::Amx | Bf16Path::Avx512Bf16 | Bf16Path::Avx2 => {
                    unreachable!("x86_64 paths")
                }
                Bf16Path::Portable => tile_portable(&operands, tile),
            }
        })
    }
}

/// What a kernel tile reads: `TILE_ROWS` rows of pair words and one panel.
struct Operands<'a> {
    x: &'a [u32],
    pairs: usize,
    weights: &'a [u32],
}

/// The two f32 values of a pair word: (even, odd).
#[inline(always)]
fn unpack(word: u32) -> (f32, f32) {
    (
        f32::from_bits(word << 16),
        f32::from_bits(word & 0xffff_0000),
    )
}

/// The reference tile, in plain Rust: per pair, the odd product then the even one, each added
/// with one rounding.
fn tile_portable(o: &Operands, tile: &mut [[f32; PANEL]; TILE_ROWS]) {
    for (r, tile_row) in tile.iter_mut().enumerate() {
        for (c, out) in tile_row.iter_mut().enumerate() {
            let mut acc = 0f32;
            for p in 0..o.pairs {
                let (x_even, x_odd) = unpack(o.x[r * o.pairs + p]);
                let (w_even, w_odd) = unpack(o.weights[p * PANEL + c]);
                acc = w_odd.mul_add(x_odd, acc);
                acc = w_even.mul_add(x_even, acc);
            }
            *out = acc;
        }
    }
}

/// The AVX-512 BF16 tile: 8 rows × 32 columns in 16 accumulators, one `vdpbf16ps` per row,
/// pair and half panel.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bf16")]
unsafe fn tile_avx512_bf16(o: &Operands, tile: &mut [[f32; PANEL]; TILE_ROWS]) {
    use std::arch::x86_64::*;
    assert!(o.x.len() >= TILE_ROWS * o.pairs && o.weights.len() >= o.pairs * PANEL);
    let mut acc = [[_mm512_setzero_ps(); 2]; TILE_ROWS];
    let x = o.x.as_ptr();
    let w = o.weights.as_ptr();
    for p in 0..o.pairs {
        // SAFETY (all loads): bounded by the assert above.
        let w_low: __m512bh = std::mem::transmute(_mm512_loadu_si512(w.add(p * PANEL) as *const _));
        let w_high: __m512bh =
            std::mem::transmute(_mm512_loadu_si512(w.add(p * PANEL + 16) as *const _));
        for (r, acc) in acc.iter_mut().enumerate() {
            let pair: __m512bh =
                std::mem::transmute(_mm512_set1_epi32(*x.add(r * o.pairs + p) as i32));
            acc[0] = _mm512_dpbf16_ps(acc[0], w_low, pair);
            acc[1] = _mm512_dpbf16_ps(acc[1], w_high, pair);
        }
    }
    for (row, acc) in tile.iter_mut().zip(acc.iter()) {
        _mm512_storeu_ps(row.as_mut_ptr(), acc[0]);
        _mm512_storeu_ps(row.as_mut_ptr().add(16), acc[1]);
    }
}

/// The tile shapes of [`tile_amx`]: `tmm0`, `tmm1` the activations (rows 0–15 and 16–31, 16
/// pairs), `tmm2`, `tmm3` the weights (16 pairs × columns 0–15 and 16–31), `tmm4` … `tmm7`
/// the four 16 × 16 f32 sums.
#[cfg(target_arch = "x86_64")]
const AMX_CONFIG: super::amx::TileConfig = super::amx::TileConfig::new()
    .tile(0, 16, 64)
    .tile(1, 16, 64)
    .tile(2, 16, 64)
    .tile(3, 16, 64)
    .tile(4, 16, 64)
    .tile(5, 16, 64)
    .tile(6, 16, 64)
    .tile(7, 16, 64);

/// The AMX tile: 32 rows × the panel's 32 columns summed in four tile registers over all inputs,
/// 16 pairs at a time (the packed panel is the layout `tdpbf16ps` reads: a pair's 64 bytes for
/// 16 columns, 128 bytes apart), then stored once.
#[cfg(target_arch = "x86_64")]
unsafe fn tile_amx(o: &Operands, tile: &mut [[f32; PANEL]; AMX_ROWS]) {
    assert!(o.pairs.is_multiple_of(AMX_PAIRS));
    assert!(o.x.len() >= AMX_ROWS * o.pairs && o.weights.len() >= o.pairs * PANEL);
    super::amx::load_once(&AMX_CONFIG);
    // SAFETY: AMX is usable (`load_once` checks); every tile load reads 16 rows of 64 bytes
    // within the slices the asserts bound (rows `4 · pairs` bytes apart for the activations,
    // 128 for the panel), and the stores write the 32 × 32 floats of `tile`.
    unsafe {
        std::arch::asm!(
            "tilezero tmm4",
            "tilezero tmm5",
            "tilezero tmm6",
            "tilezero tmm7",
            options(nostack, nomem)
        );
        for step in 0..o.pairs / AMX_PAIRS {
            std::arch::asm!(
                "tileloadd tmm0, [{x} + {row_bytes}*1]",
                "tileloadd tmm1, [{x_low} + {row_bytes}*1]",
                "tileloadd tmm2, [{w} + {pair_bytes}*1]",
                "tileloadd tmm3, [{w} + {pair_bytes}*1 + 64]",
                "tdpbf16ps tmm4, tmm0, tmm2",
                "tdpbf16ps tmm5, tmm0, tmm3",
                "tdpbf16ps tmm6, tmm1, tmm2",
                "tdpbf16ps tmm7, tmm1, tmm3",
                x = in(reg) o.x.as_ptr().add(step * AMX_PAIRS),
                x_low = in(reg) o.x.as_ptr().add(16 * o.pairs + step * AMX_PAIRS),
                row_bytes = in(reg) 4 * o.pairs,
                w = in(reg) o.weights.as_ptr().add(step * AMX_PAIRS * PANEL),
                pair_bytes = in(reg) 4 * PANEL,
                options(nostack, readonly),
            );
        }
        std::arch::asm!(
            "tilestored [{high} + {row_bytes}*1], tmm4",
            "tilestored [{high} + {row_bytes}*1 + 64], tmm5",
            "tilestored [{low} + {row_bytes}*1], tmm6",
            "tilestored [{low} + {row_bytes}*1 + 64], tmm7",
            high = in(reg) tile[0].as_mut_ptr(),
            low = in(reg) tile[16].as_mut_ptr(),
            row_bytes = in(reg) 4 * PANEL,
            options(nostack),
        );
    }
}

/// The AVX2 tile, as halves of 4 rows × 16 columns (8 accumulators): per pair, the columns'
/// words split into their odd and even values (a mask and a shift: exact), the row's two
/// values broadcast, and one FMA each, odd first.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn tile_avx2(o: &Operands, tile: &mut [[f32; PANEL]; TILE_ROWS]) {
    use std::arch::x86_64::*;
    assert!(o.x.len() >= TILE_ROWS * o.pairs && o.weights.len() >= o.pairs * PANEL);
    let high_half = _mm256_set1_epi32(0xffff_0000u32 as i32);
    let x = o.x.as_ptr();
    let w = o.weights.as_ptr();
    for rows in (0..TILE_ROWS).step_by(4) {
        for half in 0..2 {
            let mut acc = [[_mm256_setzero_ps(); 2]; 4];
            for p in 0..o.pairs {
                // SAFETY (all loads): bounded by the assert above.
                let at = w.add(p * PANEL + half * 16);
                let words = [
                    _mm256_loadu_si256(at as *const _),
                    _mm256_loadu_si256(at.add(8) as *const _),
                ];
                let odd = words.map(|v| _mm256_castsi256_ps(_mm256_and_si256(v, high_half)));
                let even = words.map(|v| _mm256_castsi256_ps(_mm256_slli_epi32(v, 16)));
                for (r, acc) in acc.iter_mut().enumerate() {
                    let (x_even, x_odd) = unpack(*x.add((rows + r) * o.pairs + p));
                    let (x_even, x_odd) = (_mm256_set1_ps(x_even), _mm256_set1_ps(x_odd));
                    for v in 0..2 {
                        acc[v] = _mm256_fmadd_ps(odd[v], x_odd, acc[v]);
                        acc[v] = _mm256_fmadd_ps(even[v], x_even, acc[v]);
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

/// `y = x · Wᵀ` in plain scalar arithmetic on the bf16-rounded values, in the order every path
/// accumulates (per pair of inputs, the odd one first): what every path must equal, for tests.
pub fn reference(w: &[f32], x: &[f32], n: usize, k: usize, rows: usize) -> Vec<f32> {
    let round = |v: f32| from_bf16(to_bf16(v));
    let mut y = vec![0f32; rows * n];
    for r in 0..rows {
        for c in 0..n {
            let mut acc = 0f32;
            for p in 0..k.div_ceil(2) {
                let at = |m: &[f32], row: usize, i: usize| {
                    if i < k {
                        round(m[row * k + i])
                    } else {
                        0.0
                    }
                };
                acc = at(w, c, 2 * p + 1).mul_add(at(x, r, 2 * p + 1), acc);
                acc = at(w, c, 2 * p).mul_add(at(x, r, 2 * p), acc);
            }
            y[r * n + c] = acc;
        }
    }
    y
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::kernels::common::test_support::random_matrix;

    /// Every path this CPU has equals the reference bit for bit; paths it lacks are named.
    fn check_shape(rows: usize, n: usize, k: usize) {
        let seed = (rows * 31 + n * 7 + k) as u64;
        let mut w = random_matrix(seed, n * k, 0.05);
        let mut x = random_matrix(seed + 1, rows * k, 1.0);
        if k > 40 {
            for r in 0..rows {
                x[r * k + 3] = 60.0;
            }
            w[..16].fill(0.0);
        }
        let expected = reference(&w, &x, n, k, rows);
        let features = CpuFeatures::detect();
        let available = Bf16Path::available(&features);
        for &path in &available {
            let got = Bf16Matrix::new(&w, n, k, path).matmul(&x, rows);
            assert_eq!(got.len(), expected.len());
            if path == Bf16Path::Amx {
                assert_within_sum_rounding(&got, &w, &x, (n, k, rows), &expected);
                continue;
            }
            for (i, (g, e)) in got.iter().zip(&expected).enumerate() {
                assert!(
                    g.to_bits() == e.to_bits(),
                    "{} at {rows}×{n}×{k}, output {i}: {g} ≠ {e}",
                    path.name()
                );
            }
        }
        if !available.contains(&Bf16Path::Amx) {
            println!("skipped the amx_bf16 bf16 path: this CPU or kernel does not allow AMX");
        }
        if !available.contains(&Bf16Path::Avx512Bf16) {
            println!("skipped the avx512_bf16 bf16 path: this CPU lacks avx512_bf16");
        }
        if !available.contains(&Bf16Path::Avx2) {
            println!("skipped the avx2 bf16 path: this CPU lacks avx2");
        }
    }

    /// AMX's sums against the reference's: the same bf16 products, summed in another order
    /// and rounding, so each output within a few roundings of f32 of the sum of the products'
    /// magnitudes (at most `k` roundings of 2⁻²⁴ each; a wrong product, input or column is off
    /// by far more).
    fn assert_within_sum_rounding(
        got: &[f32],
        w: &[f32],
        x: &[f32],
        (n, k, rows): (usize, usize, usize),
        expected: &[f32],
    ) {
        let round = |v: f32| from_bf16(to_bf16(v)) as f64;
        for r in 0..rows {
            for c in 0..n {
                let magnitude: f64 = (0..k)
                    .map(|i| (round(w[c * k + i]) * round(x[r * k + i])).abs())
                    .sum();
                let (g, e) = (got[r * n + c], expected[r * n + c]);
                let bound = magnitude * k as f64 * f32::EPSILON as f64 / 2.0;
                assert!(
                    ((g - e) as f64).abs() <= bound,
                    "amx_bf16 at {rows}×{n}×{k}, output ({r}, {c}): {g} vs {e} (bound {bound})"
                );
            }
        }
    }

    #[test]
    fn every_path_equals_the_reference_at_odd_sizes() {
        for (rows, n, k) in [
            (1, 1, 1),
            (1, 33, 31),
            (3, 32, 32),
            (33, 65, 64),
            (3, 65, 101),
            (5, 47, 257),
            (1000, 40, 70),
        ] {
            check_shape(rows, n, k);
        }
    }

    #[test]
    fn every_path_equals_the_reference_at_the_models_shapes() {
        for (n, k) in crate::model::kernels::common::test_support::MODEL_SHAPES {
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

    /// The vectorized conversion gives `to_bf16`'s words: ties, denormals, infinities, NaN and
    /// a tail past the last group of 32.
    #[test]
    fn rows_convert_as_the_scalar_rounding_does() {
        let mut row = random_matrix(9, 101, 3.0);
        let special = [
            1.0 + 1.0 / 256.0,
            1.0 + 3.0 / 256.0,
            -1e-40,
            1e-39,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::NAN,
            f32::MAX,
            -0.0,
        ];
        row[..special.len()].copy_from_slice(&special);
        row[40..40 + special.len()].copy_from_slice(&special);
        let mut got = vec![0u32; 51];
        convert_row(&row, &mut got);
        for (p, &word) in got.iter().enumerate() {
            let odd = row.get(2 * p + 1).copied().unwrap_or(0.0);
            let want = pair_word(row[2 * p], odd);
            assert_eq!(
                word,
                want,
                "pair {p}: {:?}",
                &row[2 * p..(2 * p + 2).min(101)]
            );
        }
        if !CpuFeatures::detect().avx512bf16 {
            println!("skipped the avx512_bf16 conversion: this CPU lacks avx512_bf16");
        }
    }

    #[test]
    fn rounding_is_to_nearest_even_with_denormals_flushed() {
        assert_eq!(to_bf16(1.0), 0x3f80);
        // 1 + 2⁻⁸ is halfway between two bf16 values: ties go to the even one (1.0).
        assert_eq!(to_bf16(1.0 + 1.0 / 256.0), 0x3f80);
        assert_eq!(to_bf16(1.0 + 3.0 / 256.0), 0x3f82);
        assert_eq!(to_bf16(-1e-40), 0x8000);
        assert!(from_bf16(to_bf16(f32::NAN)).is_nan());
        assert_eq!(from_bf16(to_bf16(f32::INFINITY)), f32::INFINITY);
        let x = 0.123_456_79f32;
        assert!((from_bf16(to_bf16(x)) - x).abs() <= x * (1.0 / 256.0));
    }

    #[test]
    fn the_product_is_close_to_the_float_product() {
        let (rows, n, k) = (8, 64, 576);
        let w = random_matrix(5, n * k, 0.05);
        let x = random_matrix(6, rows * k, 1.0);
        let got = Bf16Matrix::new(&w, n, k, Bf16Path::Portable).matmul(&x, rows);
        for r in 0..rows {
            for c in 0..n {
                let exact: f32 = (0..k).map(|i| x[r * k + i] * w[c * k + i]).sum();
                // Two roundings to 8 significant bits per product.
                assert!((got[r * n + c] - exact).abs() < 0.02);
            }
        }
    }
}
