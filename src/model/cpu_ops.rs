//! Element-wise CPU kernels of the forward pass, vectorized for AVX2/FMA where the CPU has them:
//! the masked (optionally soft-capped) softmax of attention rows and the gated activations of
//! the feed-forward layers (SwiGLU, GeGLU), all on a fast `exp`; and the view of a contiguous
//! CPU tensor as a slice.

use anyhow::{bail, Result};
use candle_core::{Device, Storage, Tensor};
use rayon::prelude::*;

/// Whether this CPU has AVX2 and FMA (checked once per process by std, then a load).
#[inline(always)]
fn has_avx2_fma() -> bool {
    #[cfg(target_arch = "x86_64")]
    return is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma");
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// The elements of a contiguous CPU tensor's storage, in order.
pub fn slice_of<'a>(data: &'a [f32], layout: &candle_core::Layout) -> Result<&'a [f32]> {
    match layout.contiguous_offsets() {
        Some((start, end)) => Ok(&data[start..end]),
        None => bail!("CPU kernels need contiguous tensors"),
    }
}

/// Softmax over the entries `visible` of a score row (a causal, possibly sliding window), each
/// first soft-capped to `cap · tanh(x / cap)` when `softcap` is given; the rest become 0.
///
/// The body is compiled twice, for AVX2/FMA and for any CPU, and picked at run time: each copy
/// is a named function with the body inlined into it (a closure passed to a function compiled
/// for AVX2 would stay a separate function compiled without it).
pub fn softmax_window(row: &mut [f32], visible: std::ops::Range<usize>, softcap: Option<f32>) {
    #[cfg(target_arch = "x86_64")]
    if has_avx2_fma() {
        #[target_feature(enable = "avx2,fma")]
        unsafe fn with_avx2(row: &mut [f32], visible: std::ops::Range<usize>, cap: Option<f32>) {
            softmax_window_inline(row, visible, cap)
        }
        // SAFETY: the CPU supports the features the function is compiled for.
        return unsafe { with_avx2(row, visible, softcap) };
    }
    softmax_window_inline(row, visible, softcap)
}

#[inline(always)]
fn softmax_window_inline(row: &mut [f32], visible: std::ops::Range<usize>, softcap: Option<f32>) {
    let (before, rest) = row.split_at_mut(visible.start);
    let (seen, after) = rest.split_at_mut(visible.len());
    before.fill(0.0);
    after.fill(0.0);
    if let Some(cap) = softcap {
        let inv = 1.0 / cap;
        seen.iter_mut().for_each(|x| *x = cap * tanh(*x * inv));
    }
    let max = max_of(seen);
    let inv = 1.0 / exp_in_place(seen, max);
    seen.iter_mut().for_each(|x| *x *= inv);
}

/// The first index of a row's largest value, that value, and `ln Σ e^(x − max)` — what a
/// log-softmax and an argmax need — with the exponentials in f32 (the fast `exp`, relative
/// error ~1e-7) summed in f64 lanes. A vocabulary row of a scored position costs ~50 µs here
/// against ~1 ms with libm's f64 `exp` per entry.
pub fn row_summary(row: &[f32]) -> (usize, f32, f64) {
    #[cfg(target_arch = "x86_64")]
    if has_avx2_fma() {
        #[target_feature(enable = "avx2,fma")]
        unsafe fn with_avx2(row: &[f32]) -> (usize, f32, f64) {
            row_summary_inline(row)
        }
        // SAFETY: the CPU supports the features the function is compiled for.
        return unsafe { with_avx2(row) };
    }
    row_summary_inline(row)
}

#[inline(always)]
fn row_summary_inline(row: &[f32]) -> (usize, f32, f64) {
    let max = max_of(row);
    let argmax = row.iter().position(|&x| x == max).unwrap_or(0);
    let mut lanes = [0f64; LANES];
    let mut chunks = row.chunks_exact(LANES);
    for chunk in &mut chunks {
        for (lane, &x) in lanes.iter_mut().zip(chunk) {
            *lane += exp_nonpositive(x - max) as f64;
        }
    }
    let tail: f64 = chunks
        .remainder()
        .iter()
        .map(|&x| exp_nonpositive(x - max) as f64)
        .sum();
    let sum = lanes.iter().sum::<f64>() + tail;
    (argmax, max, sum.ln())
}

/// Lanes of the reductions below: partial results in a fixed-width array, so that the loops
/// vectorize (a single running sum is a chain the compiler may not reorder), combined in a
/// fixed order, so that a row's result depends on its values only.
const LANES: usize = 16;

/// The largest of `xs` (−∞ for none).
#[inline(always)]
fn max_of(xs: &[f32]) -> f32 {
    let mut lanes = [f32::NEG_INFINITY; LANES];
    let mut chunks = xs.chunks_exact(LANES);
    for chunk in &mut chunks {
        for (lane, &x) in lanes.iter_mut().zip(chunk) {
            *lane = lane.max(x);
        }
    }
    let tail = chunks
        .remainder()
        .iter()
        .fold(f32::NEG_INFINITY, |m, &x| m.max(x));
    lanes.iter().fold(tail, |m, &x| m.max(x))
}

/// Replaces each `x` of `xs` by `e^(x − max)` and returns their sum.
#[inline(always)]
fn exp_in_place(xs: &mut [f32], max: f32) -> f32 {
    let mut lanes = [0f32; LANES];
    let mut chunks = xs.chunks_exact_mut(LANES);
    for chunk in &mut chunks {
        for (lane, x) in lanes.iter_mut().zip(chunk) {
            *x = exp_nonpositive(*x - max);
            *lane += *x;
        }
    }
    let mut tail = 0f32;
    for x in chunks.into_remainder() {
        *x = exp_nonpositive(*x - max);
        tail += *x;
    }
    let mut width = LANES;
    while width > 1 {
        width /= 2;
        for i in 0..width {
            lanes[i] += lanes[i + width];
        }
    }
    lanes[0] + tail
}

/// `tanh(x) = sign(x) · (1 − e^{−2|x|}) / (1 + e^{−2|x|})`, on the fast `exp`.
#[inline(always)]
fn tanh(x: f32) -> f32 {
    let e = exp_nonpositive(-2.0 * x.abs());
    ((1.0 - e) / (1.0 + e)).copysign(x)
}

/// `e^x` for `x ≤ 0` (a score minus its row's maximum), branch-free so that it vectorizes:
/// Cephes' `expf` (range reduction by ln 2, degree-5 polynomial, exponent bits), relative error
/// ~1e-7 — libm's `expf` was 8 % of a forward as a scalar call per score.
#[inline(always)]
fn exp_nonpositive(x: f32) -> f32 {
    const ROUND: f32 = 12_582_912.0; // 1.5 · 2^23: adding and subtracting rounds to an integer
    let x = x.max(-87.0);
    let shifted = x * std::f32::consts::LOG2_E + ROUND;
    let n = shifted - ROUND;
    let r = x - n * 0.693_359_4 + n * 2.121_944_4e-4;
    let p = ((((1.987_569_1e-4 * r + 1.398_199_9e-3) * r + 8.333_452e-3) * r + 4.166_579_6e-2) * r
        + 1.666_666_5e-1)
        * r
        + 0.5;
    let e = p * r * r + r + 1.0;
    // 2^n from the integer in `shifted`'s low mantissa bits: integer arithmetic that
    // vectorizes, where `n as i32` (a saturating conversion) compiled to scalar code.
    let n_bits = shifted.to_bits().wrapping_sub(ROUND.to_bits());
    e * f32::from_bits(n_bits.wrapping_add(127) << 23)
}

/// The activation applied to the gate half of a gated feed-forward layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GateActivation {
    /// `x · sigmoid(x)` (SwiGLU: llama, qwen2).
    Silu,
    /// GELU with the tanh approximation (GeGLU: gemma).
    GeluTanh,
}

/// `act(gate) ⊙ up` for `gate_up = [gate | up]` of shape `[T, 2F]` (contiguous f32 on the CPU)
/// → `[T, F]`, in one pass instead of candle's three (activation, strided copy, multiply).
pub fn gated(gate_up: &Tensor, activation: GateActivation) -> Result<Tensor> {
    let (rows, width) = gate_up.dims2()?;
    if width % 2 != 0 {
        bail!("a gated activation needs an even width, got {width}");
    }
    let ffn = width / 2;
    let mut out = vec![0f32; rows * ffn];
    {
        let (storage, layout) = gate_up.storage_and_layout();
        let Storage::Cpu(cpu) = &*storage else {
            bail!("cpu gated activation needs a CPU tensor");
        };
        let input = slice_of(cpu.as_slice::<f32>()?, layout)?;
        out.par_chunks_mut(ffn)
            .zip(input.par_chunks(width))
            .for_each(|(out, row)| gated_row(out, row, activation));
    }
    Ok(Tensor::from_vec(out, (rows, ffn), &Device::Cpu)?)
}

/// One row of [`gated`]: `out = act(gate) ⊙ up` for `row = [gate | up]`, compiled for
/// AVX2/FMA where the CPU has them (as [`softmax_window`] is).
fn gated_row(out: &mut [f32], row: &[f32], activation: GateActivation) {
    #[inline(always)]
    fn body(out: &mut [f32], row: &[f32], activation: GateActivation) {
        let (gate, up) = row.split_at(out.len());
        let pairs = out.iter_mut().zip(gate).zip(up);
        match activation {
            GateActivation::Silu => pairs.for_each(|((o, &g), &u)| *o = silu(g) * u),
            GateActivation::GeluTanh => pairs.for_each(|((o, &g), &u)| *o = gelu_tanh(g) * u),
        }
    }
    #[cfg(target_arch = "x86_64")]
    if has_avx2_fma() {
        #[target_feature(enable = "avx2,fma")]
        unsafe fn with_avx2(out: &mut [f32], row: &[f32], activation: GateActivation) {
            body(out, row, activation)
        }
        // SAFETY: the CPU supports the features the function is compiled for.
        return unsafe { with_avx2(out, row, activation) };
    }
    body(out, row, activation)
}

/// `0.5 · x · (1 + tanh(√(2/π) · (x + 0.044715 x³)))`, PyTorch's `gelu(approximate="tanh")`.
#[inline(always)]
fn gelu_tanh(x: f32) -> f32 {
    const SQRT_2_OVER_PI: f32 = 0.797_884_6;
    0.5 * x * (1.0 + tanh(SQRT_2_OVER_PI * (x + 0.044_715 * x * x * x)))
}

/// `x · sigmoid(x)`, with `exp` taken of `−|x|` only so that it never overflows.
#[inline(always)]
fn silu(x: f32) -> f32 {
    let e = exp_nonpositive(-x.abs());
    let sigmoid = if x >= 0.0 {
        1.0 / (1.0 + e)
    } else {
        e / (1.0 + e)
    };
    x * sigmoid
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_exp_matches_libm() {
        let mut x = -90.0f32;
        while x <= 0.0 {
            let (got, want) = (exp_nonpositive(x), x.exp());
            // Below e^-87 both are negligible next to the row maximum (e^0 = 1).
            assert!(
                (got - want).abs() <= 2e-7 * want + 2e-38,
                "{x}: {got} vs {want}"
            );
            x += 0.001;
        }
    }

    #[test]
    fn row_summary_matches_an_f64_log_sum_exp() {
        for len in [1usize, 15, 16, 17, 1000, 49_152] {
            let row: Vec<f32> = (0..len)
                .map(|i| {
                    ((i * 7919 % 1013) as f32 / 37.0 - 12.0) * if i % 3 == 0 { -1.0 } else { 1.0 }
                })
                .collect();
            let (argmax, max, log_sum) = row_summary(&row);
            let want_max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            assert_eq!(max, want_max);
            assert_eq!(argmax, row.iter().position(|&x| x == want_max).unwrap());
            let want: f64 = row
                .iter()
                .map(|&x| ((x - max) as f64).exp())
                .sum::<f64>()
                .ln();
            assert!((log_sum - want).abs() <= 1e-6, "{len}: {log_sum} vs {want}");
        }
    }

    #[test]
    fn silu_matches_its_definition() {
        for x in [-100.0f32, -20.0, -3.5, -0.1, 0.0, 0.1, 2.0, 30.0, 100.0] {
            let want = x / (1.0 + (-x).exp());
            assert!((silu(x) - want).abs() <= 1e-6 * want.abs().max(1.0), "{x}");
        }
    }

    #[test]
    fn gelu_tanh_and_tanh_match_their_definitions() {
        for x in [
            -30.0f32, -4.0, -1.0, -0.3, -1e-3, 0.0, 1e-3, 0.7, 2.5, 9.0, 40.0,
        ] {
            assert!((tanh(x) - x.tanh()).abs() <= 2e-7, "tanh {x}");
            let inner =
                (2.0f64 / std::f64::consts::PI).sqrt() * (x as f64 + 0.044715 * (x as f64).powi(3));
            let want = 0.5 * x as f64 * (1.0 + inner.tanh());
            assert!(
                (gelu_tanh(x) as f64 - want).abs() <= 1e-6 * want.abs().max(1.0),
                "gelu {x}"
            );
        }
    }

    #[test]
    fn softmax_window_caps_then_normalises_the_window_only() {
        let mut row = vec![5.0, 1.0, 2.0, 60.0, 9.0];
        softmax_window(&mut row, 1..4, Some(30.0));
        let capped: Vec<f32> = [1.0f32, 2.0, 60.0]
            .iter()
            .map(|x| 30.0 * (x / 30.0).tanh())
            .collect();
        let max = capped.iter().cloned().fold(f32::MIN, f32::max);
        let e: Vec<f32> = capped.iter().map(|x| (x - max).exp()).collect();
        let sum: f32 = e.iter().sum();
        assert_eq!((row[0], row[4]), (0.0, 0.0));
        for (got, want) in row[1..4].iter().zip(e.iter().map(|x| x / sum)) {
            assert!((got - want).abs() < 1e-6, "{got} vs {want}");
        }
    }

    #[test]
    fn swiglu_multiplies_silu_of_the_gate_half_with_the_up_half() {
        let t = Tensor::new(
            &[[1f32, -2.0, 3.0, 4.0], [0.5, 0.0, -1.0, 2.0]],
            &Device::Cpu,
        )
        .unwrap();
        let got = gated(&t, GateActivation::Silu)
            .unwrap()
            .to_vec2::<f32>()
            .unwrap();
        let want = [[silu(1.0) * 3.0, silu(-2.0) * 4.0], [-silu(0.5), 0.0]];
        for (g, w) in got.iter().flatten().zip(want.iter().flatten()) {
            assert!((g - w).abs() < 1e-6);
        }
    }

    /// Rows longer than the lanes, with a tail, a window and a cap: the f64 softmax.
    #[test]
    fn softmax_of_long_rows_matches_the_f64_softmax() {
        for (len, visible, cap) in [
            (1000, 0..1000, None),
            (77, 5..70, Some(30.0)),
            (17, 0..17, None),
        ] {
            let mut row: Vec<f32> = (0..len)
                .map(|i| ((i * 37 % 101) as f32 - 50.0) * 0.3)
                .collect();
            let original = row.clone();
            softmax_window(&mut row, visible.clone(), cap);
            let capped =
                |x: f32| cap.map_or(x as f64, |c: f32| c as f64 * (x as f64 / c as f64).tanh());
            let seen: Vec<f64> = original[visible.clone()]
                .iter()
                .map(|&x| capped(x))
                .collect();
            let max = seen.iter().cloned().fold(f64::MIN, f64::max);
            let sum: f64 = seen.iter().map(|x| (x - max).exp()).sum();
            for (i, &got) in row.iter().enumerate() {
                let want = if visible.contains(&i) {
                    (seen[i - visible.start] - max).exp() / sum
                } else {
                    0.0
                };
                assert!(
                    (got as f64 - want).abs() < 1e-6,
                    "{len} {i}: {got} vs {want}"
                );
            }
        }
    }

    #[test]
    fn softmax_prefix_normalises_the_visible_part() {
        let mut row = vec![1.0, 2.0, 3.0, 9.0];
        softmax_window(&mut row, 0..3, None);
        let e: Vec<f32> = [1.0f32, 2.0, 3.0].iter().map(|x| (x - 3.0).exp()).collect();
        let sum: f32 = e.iter().sum();
        for (got, want) in row.iter().zip(e.iter().map(|x| x / sum)) {
            assert!((got - want).abs() < 1e-6);
        }
        assert_eq!(row[3], 0.0);
    }
}
