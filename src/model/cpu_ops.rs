//! Element-wise CPU kernels of the forward pass, vectorized through runtime AVX2/FMA dispatch:
//! the masked (optionally soft-capped) softmax of attention rows and the gated activations of
//! the feed-forward layers (SwiGLU, GeGLU), all on a fast `exp`; and the view of a contiguous
//! CPU tensor as a slice.

use anyhow::{bail, Result};
use candle_core::{Device, Storage, Tensor};
use rayon::prelude::*;

/// Runs `f` compiled for AVX2/FMA when the CPU has them, so that its loops vectorize.
#[inline(always)]
fn dispatch(f: impl FnOnce()) {
    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
        #[target_feature(enable = "avx2,fma")]
        unsafe fn with_avx2(f: impl FnOnce()) {
            f()
        }
        // SAFETY: the CPU supports the features the function is compiled for.
        unsafe { with_avx2(f) };
        return;
    }
    f()
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
pub fn softmax_window(row: &mut [f32], visible: std::ops::Range<usize>, softcap: Option<f32>) {
    dispatch(|| softmax_window_inline(row, visible, softcap))
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
    let max = seen.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x));
    let mut sum = 0f32;
    for x in seen.iter_mut() {
        *x = exp_nonpositive(*x - max);
        sum += *x;
    }
    let inv = 1.0 / sum;
    seen.iter_mut().for_each(|x| *x *= inv);
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
    let n = (x * std::f32::consts::LOG2_E + ROUND) - ROUND;
    let r = x - n * 0.693_359_4 + n * 2.121_944_4e-4;
    let p = ((((1.987_569_1e-4 * r + 1.398_199_9e-3) * r + 8.333_452e-3) * r + 4.166_579_6e-2) * r
        + 1.666_666_5e-1)
        * r
        + 0.5;
    let e = p * r * r + r + 1.0;
    e * f32::from_bits(((n as i32 + 127) << 23) as u32)
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
            .for_each(|(out, row)| {
                dispatch(|| {
                    let (gate, up) = row.split_at(ffn);
                    let pairs = out.iter_mut().zip(gate).zip(up);
                    match activation {
                        GateActivation::Silu => {
                            pairs.for_each(|((o, &g), &u)| *o = silu(g) * u);
                        }
                        GateActivation::GeluTanh => {
                            pairs.for_each(|((o, &g), &u)| *o = gelu_tanh(g) * u);
                        }
                    }
                })
            });
    }
    Ok(Tensor::from_vec(out, (rows, ffn), &Device::Cpu)?)
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
