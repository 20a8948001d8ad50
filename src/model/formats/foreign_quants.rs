//! GGUF tensor types that candle 0.11 cannot read — the i-quants (IQ1_S … IQ4_XS), the ternary
//! TQ1_0 / TQ2_0 and MXFP4 — dequantized to f32 here so that models published in them still
//! load (as f32 weights).
//!
//! Each block decoder is a line-by-line port of llama.cpp's `dequantize_row_*` in
//! `ggml/src/ggml-quants.c` (llama-cpp-python 0.3.36's vendored copy), over the block layouts of
//! `ggml/src/ggml-common.h`. The float arithmetic is kept in ggml's order — same operands, same
//! multiplication order, f16 widened exactly with `half`, e8m0 built bit by bit as ggml builds
//! it — and Rust never fuses a multiply and an add on its own, so every value equals llama.cpp's
//! to the bit; the tests hold it to gguf-py's reference decoders, which agree with ggml's to the
//! bit.
//!
//! Malformed data cannot make a decoder index out of bounds: every codebook index is built from
//! masked bits that cannot exceed its table's length, and a block is handed over as an array of
//! exactly its type's size. Odd scales (NaN, infinity) give odd floats, as in ggml, not a panic.

mod tables;

use half::f16;

use tables::{
    IQ1S_GRID, IQ2S_GRID, IQ2XS_GRID, IQ2XXS_GRID, IQ3S_GRID, IQ3XXS_GRID, KMASK_IQ2XS,
    KSIGNS_IQ2XS, KVALUES_IQ4NL, KVALUES_MXFP4,
};

/// Values in a super-block: ggml's `QK_K`.
const QK_K: usize = 256;
/// Values in an IQ4_NL block: ggml's `QK4_NL`.
const QK4_NL: usize = 32;
/// Values in an MXFP4 block: ggml's `QK_MXFP4`.
const QK_MXFP4: usize = 32;
/// The shift added to (or, with the sign bit, taken from) IQ1_S / IQ1_M grid values: ggml's
/// `IQ1S_DELTA` (`dequantize_row_iq1_m` uses it too, not the equal `IQ1M_DELTA`).
const IQ1S_DELTA: f32 = 0.125;

// Bytes per block, spelt as the `static_assert`s of ggml-common.h spell the structs' sizes, so a
// reader can check each against its struct.
/// `block_iq2_xxs`: `d`, `qs[QK_K/8]` (u16).
const IQ2_XXS_SIZE: usize = 2 + QK_K / 8 * 2;
/// `block_iq2_xs`: `d`, `qs[QK_K/8]` (u16), `scales[QK_K/32]`.
const IQ2_XS_SIZE: usize = 2 + QK_K / 8 * 2 + QK_K / 32;
/// `block_iq2_s`: `d`, `qs[QK_K/4]` (grid indices, then signs), `qh[QK_K/32]`, `scales[QK_K/32]`.
const IQ2_S_SIZE: usize = 2 + QK_K / 4 + QK_K / 16;
/// `block_iq3_xxs`: `d`, `qs[3*QK_K/8]` (grid indices, then scales and signs).
const IQ3_XXS_SIZE: usize = 2 + 3 * (QK_K / 8);
/// `block_iq3_s`: `d`, `qs[QK_K/4]`, `qh[QK_K/32]`, `signs[QK_K/8]`, `scales[QK_K/64]`.
const IQ3_S_SIZE: usize = 2 + 13 * (QK_K / 32) + QK_K / 64;
/// `block_iq1_s`: `d`, `qs[QK_K/8]`, `qh[QK_K/32]` (u16).
const IQ1_S_SIZE: usize = 2 + QK_K / 8 + QK_K / 16;
/// `block_iq1_m`: `qs[QK_K/8]`, `qh[QK_K/16]`, `scales[QK_K/32]` (the f16 scale hides in these).
const IQ1_M_SIZE: usize = QK_K / 8 + QK_K / 16 + QK_K / 32;
/// `block_iq4_nl`: `d`, `qs[QK4_NL/2]`.
const IQ4_NL_SIZE: usize = 2 + QK4_NL / 2;
/// `block_iq4_xs`: `d`, `scales_h` (u16), `scales_l[QK_K/64]`, `qs[QK_K/2]`.
const IQ4_XS_SIZE: usize = 2 + 2 + QK_K / 64 + QK_K / 2;
/// `block_tq1_0`: `qs[(QK_K - 4*QK_K/64)/5]`, `qh[QK_K/64]`, `d`.
const TQ1_0_SIZE: usize = 2 + QK_K / 64 + (QK_K - 4 * QK_K / 64) / 5;
/// `block_tq2_0`: `qs[QK_K/4]`, `d`.
const TQ2_0_SIZE: usize = 2 + QK_K / 4;
/// `block_mxfp4`: `e` (e8m0), `qs[QK_MXFP4/2]`.
const MXFP4_SIZE: usize = 1 + QK_MXFP4 / 2;

/// A GGUF tensor type that candle does not read, dequantized here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForeignType {
    /// `GGML_TYPE_IQ2_XXS`: 2.06 bits a weight, an 8-value grid of magnitudes and 7 sign bits.
    Iq2Xxs,
    /// `GGML_TYPE_IQ2_XS`: 2.31 bits a weight, a larger grid than IQ2_XXS and 4-bit scales.
    Iq2Xs,
    /// `GGML_TYPE_IQ3_XXS`: 3.06 bits a weight, 4-value grid rows.
    Iq3Xxs,
    /// `GGML_TYPE_IQ1_S`: 1.56 bits a weight, ternary grid rows shifted by ±1/8.
    Iq1S,
    /// `GGML_TYPE_IQ4_NL`: 4 bits a weight on a non-linear scale, blocks of 32.
    Iq4Nl,
    /// `GGML_TYPE_IQ3_S`: 3.44 bits a weight, a 512-row grid and explicit sign bits.
    Iq3S,
    /// `GGML_TYPE_IQ2_S`: 2.56 bits a weight, a 1024-row grid and explicit sign bits.
    Iq2S,
    /// `GGML_TYPE_IQ4_XS`: IQ4_NL's levels in super-blocks of 256 with 6-bit scales.
    Iq4Xs,
    /// `GGML_TYPE_IQ1_M`: 1.75 bits a weight, IQ1_S's grid with per-16 scales and per-8 shifts.
    Iq1M,
    /// `GGML_TYPE_TQ1_0`: ternary weights, five to a byte in base 3.
    Tq1_0,
    /// `GGML_TYPE_TQ2_0`: ternary weights, four 2-bit codes to a byte.
    Tq2_0,
    /// `GGML_TYPE_MXFP4`: OCP microscaling FP4 (E2M1 values, an E8M0 scale per 32).
    Mxfp4,
}

impl ForeignType {
    /// Every type, in the order of their ggml ids.
    pub const ALL: [ForeignType; 12] = [
        ForeignType::Iq2Xxs,
        ForeignType::Iq2Xs,
        ForeignType::Iq3Xxs,
        ForeignType::Iq1S,
        ForeignType::Iq4Nl,
        ForeignType::Iq3S,
        ForeignType::Iq2S,
        ForeignType::Iq4Xs,
        ForeignType::Iq1M,
        ForeignType::Tq1_0,
        ForeignType::Tq2_0,
        ForeignType::Mxfp4,
    ];

    /// The type stored under a GGUF tensor type id (`enum ggml_type` in ggml.h); `None` for the
    /// ids candle reads itself and for ids not handled here.
    pub fn from_id(id: u32) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.id() == id)
    }

    /// The type's id in `enum ggml_type` (ggml.h), as GGUF files store it.
    pub fn id(self) -> u32 {
        match self {
            ForeignType::Iq2Xxs => 16,
            ForeignType::Iq2Xs => 17,
            ForeignType::Iq3Xxs => 18,
            ForeignType::Iq1S => 19,
            ForeignType::Iq4Nl => 20,
            ForeignType::Iq3S => 21,
            ForeignType::Iq2S => 22,
            ForeignType::Iq4Xs => 23,
            ForeignType::Iq1M => 29,
            ForeignType::Tq1_0 => 34,
            ForeignType::Tq2_0 => 35,
            ForeignType::Mxfp4 => 39,
        }
    }

    /// The type's name as ggml's enum (and gguf-py, and llama.cpp's file-type names) spell it,
    /// `GGML_TYPE_` left off: "IQ2_XXS", "IQ4_XS", "TQ1_0", "MXFP4", ….
    pub fn name(self) -> &'static str {
        match self {
            ForeignType::Iq2Xxs => "IQ2_XXS",
            ForeignType::Iq2Xs => "IQ2_XS",
            ForeignType::Iq3Xxs => "IQ3_XXS",
            ForeignType::Iq1S => "IQ1_S",
            ForeignType::Iq4Nl => "IQ4_NL",
            ForeignType::Iq3S => "IQ3_S",
            ForeignType::Iq2S => "IQ2_S",
            ForeignType::Iq4Xs => "IQ4_XS",
            ForeignType::Iq1M => "IQ1_M",
            ForeignType::Tq1_0 => "TQ1_0",
            ForeignType::Tq2_0 => "TQ2_0",
            ForeignType::Mxfp4 => "MXFP4",
        }
    }

    /// Values per block (ggml's `blck_size`): a tensor row's length is a multiple of it.
    pub fn block_size(self) -> usize {
        match self {
            ForeignType::Iq4Nl => QK4_NL,
            ForeignType::Mxfp4 => QK_MXFP4,
            _ => QK_K,
        }
    }

    /// Bytes per block (ggml's `type_size`, the block struct's `sizeof`).
    pub fn type_size(self) -> usize {
        match self {
            ForeignType::Iq2Xxs => IQ2_XXS_SIZE,
            ForeignType::Iq2Xs => IQ2_XS_SIZE,
            ForeignType::Iq3Xxs => IQ3_XXS_SIZE,
            ForeignType::Iq1S => IQ1_S_SIZE,
            ForeignType::Iq4Nl => IQ4_NL_SIZE,
            ForeignType::Iq3S => IQ3_S_SIZE,
            ForeignType::Iq2S => IQ2_S_SIZE,
            ForeignType::Iq4Xs => IQ4_XS_SIZE,
            ForeignType::Iq1M => IQ1_M_SIZE,
            ForeignType::Tq1_0 => TQ1_0_SIZE,
            ForeignType::Tq2_0 => TQ2_0_SIZE,
            ForeignType::Mxfp4 => MXFP4_SIZE,
        }
    }

    /// Dequantizes whole blocks: `bytes.len()` is a multiple of type_size,
    /// out.len() == blocks * block_size.
    ///
    /// Panics when the lengths disagree (callers size both from the tensor's shape, so that is a
    /// bug); any byte values are accepted.
    pub fn dequantize(self, bytes: &[u8], out: &mut [f32]) {
        let (block_size, type_size) = (self.block_size(), self.type_size());
        assert!(
            bytes.len().is_multiple_of(type_size),
            "{} data of {} bytes is not a whole number of {type_size}-byte blocks",
            self.name(),
            bytes.len()
        );
        let blocks = bytes.len() / type_size;
        assert!(
            out.len() == blocks * block_size,
            "{blocks} {} blocks hold {} values, not the {} the output has room for",
            self.name(),
            blocks * block_size,
            out.len()
        );
        match self {
            ForeignType::Iq2Xxs => each_block(bytes, out, iq2_xxs),
            ForeignType::Iq2Xs => each_block(bytes, out, iq2_xs),
            ForeignType::Iq3Xxs => each_block(bytes, out, iq3_xxs),
            ForeignType::Iq1S => each_block(bytes, out, iq1_s),
            ForeignType::Iq4Nl => each_block(bytes, out, iq4_nl),
            ForeignType::Iq3S => each_block(bytes, out, iq3_s),
            ForeignType::Iq2S => each_block(bytes, out, iq2_s),
            ForeignType::Iq4Xs => each_block(bytes, out, iq4_xs),
            ForeignType::Iq1M => each_block(bytes, out, iq1_m),
            ForeignType::Tq1_0 => each_block(bytes, out, tq1_0),
            ForeignType::Tq2_0 => each_block(bytes, out, tq2_0),
            ForeignType::Mxfp4 => each_block(bytes, out, mxfp4),
        }
    }
}

/// Runs a block decoder over matching blocks. Blocks go in as fixed-size arrays so that each
/// decoder's constant offsets are checked once, by the compiler, instead of per value.
fn each_block<const TS: usize, const BS: usize>(
    bytes: &[u8],
    out: &mut [f32],
    decode: impl Fn(&[u8; TS], &mut [f32; BS]),
) {
    let (blocks, _) = bytes.as_chunks::<TS>();
    let (values, _) = out.as_chunks_mut::<BS>();
    for (x, y) in blocks.iter().zip(values) {
        decode(x, y);
    }
}

/// The little-endian f16 at `at`, widened exactly (as `GGML_FP16_TO_FP32`).
fn f16_at(x: &[u8], at: usize) -> f32 {
    f16::from_bits(u16_at(x, at)).to_f32()
}

/// The little-endian u16 at `at` (ggml reads its u16 fields in place on little-endian hosts).
fn u16_at(x: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([x[at], x[at + 1]])
}

/// The little-endian u32 at `at` (as ggml's `memcpy` into a `uint32_t`).
fn u32_at(x: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([x[at], x[at + 1], x[at + 2], x[at + 3]])
}

/// ggml's `(signs & kmask_iq2xs[j] ? -1.f : 1.f)`: bit `j` of a sign byte as a factor.
fn sign(signs: u8, j: usize) -> f32 {
    if signs & KMASK_IQ2XS[j] != 0 {
        -1.0
    } else {
        1.0
    }
}

/// ggml's `ggml_e8m0_to_fp32_half` (ggml-impl.h): half of 2^(x-127), built from its bits, the two
/// smallest exponents as subnormals. MXFP4 uses the half because its E2M1 table is doubled.
fn e8m0_to_fp32_half(x: u8) -> f32 {
    let bits = if x < 2 {
        0x0020_0000u32 << x
    } else {
        u32::from(x - 1) << 23
    };
    f32::from_bits(bits)
}

/// `dequantize_row_iq2_xxs`: per 32 values, 4 grid indices (bytes) and a u32 holding four 7-bit
/// sign indices and a 4-bit scale.
fn iq2_xxs(x: &[u8; IQ2_XXS_SIZE], y: &mut [f32; QK_K]) {
    let d = f16_at(x, 0);
    for (ib32, y) in y.chunks_exact_mut(32).enumerate() {
        let at = 2 + 8 * ib32;
        let aux1 = u32_at(x, at + 4);
        let db = d * (0.5 + (aux1 >> 28) as f32) * 0.25;
        for (l, y) in y.chunks_exact_mut(8).enumerate() {
            let grid = IQ2XXS_GRID[usize::from(x[at + l])].to_le_bytes();
            let signs = KSIGNS_IQ2XS[((aux1 >> (7 * l)) & 127) as usize];
            for (j, (v, &g)) in y.iter_mut().zip(&grid).enumerate() {
                *v = db * f32::from(g) * sign(signs, j);
            }
        }
    }
}

/// `dequantize_row_iq2_xs`: u16 codes of a 9-bit grid index and a 7-bit sign index; two 4-bit
/// scales per 32 values.
fn iq2_xs(x: &[u8; IQ2_XS_SIZE], y: &mut [f32; QK_K]) {
    let d = f16_at(x, 0);
    let scales = &x[2 + QK_K / 4..];
    for (ib32, y) in y.chunks_exact_mut(32).enumerate() {
        let db = [
            d * (0.5 + f32::from(scales[ib32] & 0xf)) * 0.25,
            d * (0.5 + f32::from(scales[ib32] >> 4)) * 0.25,
        ];
        for (l, y) in y.chunks_exact_mut(8).enumerate() {
            let q = u16_at(x, 2 + 2 * (4 * ib32 + l));
            let grid = IQ2XS_GRID[usize::from(q & 511)].to_le_bytes();
            let signs = KSIGNS_IQ2XS[usize::from(q >> 9)];
            for (j, (v, &g)) in y.iter_mut().zip(&grid).enumerate() {
                *v = db[l / 2] * f32::from(g) * sign(signs, j);
            }
        }
    }
}

/// `dequantize_row_iq2_s`: 10-bit grid indices (8 bits in `qs`, 2 in `qh`), explicit sign
/// bytes, two 4-bit scales per 32 values.
fn iq2_s(x: &[u8; IQ2_S_SIZE], y: &mut [f32; QK_K]) {
    let d = f16_at(x, 0);
    let qs = &x[2..2 + QK_K / 8];
    let signs = &x[2 + QK_K / 8..2 + QK_K / 4];
    let qh = &x[2 + QK_K / 4..2 + QK_K / 4 + QK_K / 32];
    let scales = &x[2 + QK_K / 4 + QK_K / 32..];
    for (ib32, y) in y.chunks_exact_mut(32).enumerate() {
        let db = [
            d * (0.5 + f32::from(scales[ib32] & 0xf)) * 0.25,
            d * (0.5 + f32::from(scales[ib32] >> 4)) * 0.25,
        ];
        for (l, y) in y.chunks_exact_mut(8).enumerate() {
            let dl = db[l / 2];
            let high = (usize::from(qh[ib32]) << (8 - 2 * l)) & 0x300;
            let grid = IQ2S_GRID[usize::from(qs[4 * ib32 + l]) | high].to_le_bytes();
            let s = signs[4 * ib32 + l];
            for (j, (v, &g)) in y.iter_mut().zip(&grid).enumerate() {
                *v = dl * f32::from(g) * sign(s, j);
            }
        }
    }
}

/// `dequantize_row_iq3_xxs`: byte indices into a 4-value grid, and per 32 values a u32 of four
/// 7-bit sign indices and a 4-bit scale.
fn iq3_xxs(x: &[u8; IQ3_XXS_SIZE], y: &mut [f32; QK_K]) {
    let d = f16_at(x, 0);
    let qs = &x[2..2 + QK_K / 4];
    for (ib32, y) in y.chunks_exact_mut(32).enumerate() {
        let aux32 = u32_at(x, 2 + QK_K / 4 + 4 * ib32);
        let db = d * (0.5 + (aux32 >> 28) as f32) * 0.5;
        for (l, y) in y.chunks_exact_mut(8).enumerate() {
            let signs = KSIGNS_IQ2XS[((aux32 >> (7 * l)) & 127) as usize];
            let grid1 = IQ3XXS_GRID[usize::from(qs[8 * ib32 + 2 * l])].to_le_bytes();
            let grid2 = IQ3XXS_GRID[usize::from(qs[8 * ib32 + 2 * l + 1])].to_le_bytes();
            for j in 0..4 {
                y[j] = db * f32::from(grid1[j]) * sign(signs, j);
                y[j + 4] = db * f32::from(grid2[j]) * sign(signs, j + 4);
            }
        }
    }
}

/// `dequantize_row_iq3_s`: 9-bit indices into a 4-value grid (the ninth bit in `qh`), explicit
/// sign bytes, one 4-bit odd scale per 32 values.
fn iq3_s(x: &[u8; IQ3_S_SIZE], y: &mut [f32; QK_K]) {
    let d = f16_at(x, 0);
    let qs = &x[2..2 + QK_K / 4];
    let qh = &x[2 + QK_K / 4..2 + QK_K / 4 + QK_K / 32];
    let signs = &x[2 + QK_K / 4 + QK_K / 32..2 + QK_K / 4 + QK_K / 32 + QK_K / 8];
    let scales = &x[2 + QK_K / 4 + QK_K / 32 + QK_K / 8..];
    // ggml walks pairs of 32 that share a scale byte; `ib32` here is one 32, `ib32 / 2` its pair.
    for (ib32, y) in y.chunks_exact_mut(32).enumerate() {
        let scale = (scales[ib32 / 2] >> (4 * (ib32 % 2))) & 0xf;
        let db = d * f32::from(1 + 2 * scale);
        let qs = &qs[8 * ib32..8 * ib32 + 8];
        let qh = usize::from(qh[ib32]);
        for (l, y) in y.chunks_exact_mut(8).enumerate() {
            let grid1 = IQ3S_GRID[usize::from(qs[2 * l]) | ((qh << (8 - 2 * l)) & 256)];
            let grid2 = IQ3S_GRID[usize::from(qs[2 * l + 1]) | ((qh << (7 - 2 * l)) & 256)];
            let (grid1, grid2) = (grid1.to_le_bytes(), grid2.to_le_bytes());
            let s = signs[4 * ib32 + l];
            for j in 0..4 {
                y[j] = db * f32::from(grid1[j]) * sign(s, j);
                y[j + 4] = db * f32::from(grid2[j]) * sign(s, j + 4);
            }
        }
    }
}

/// `dequantize_row_iq1_s`: 11-bit indices into a ternary grid (3 high bits per index in `qh`),
/// and per 32 values a 3-bit scale and the sign of the ±1/8 shift.
fn iq1_s(x: &[u8; IQ1_S_SIZE], y: &mut [f32; QK_K]) {
    let d = f16_at(x, 0);
    let qs = &x[2..2 + QK_K / 8];
    for (ib, y) in y.chunks_exact_mut(32).enumerate() {
        let qh = u16_at(x, 2 + QK_K / 8 + 2 * ib);
        let dl = d * f32::from(2 * ((qh >> 12) & 7) + 1);
        let delta = if qh & 0x8000 != 0 {
            -IQ1S_DELTA
        } else {
            IQ1S_DELTA
        };
        for (l, y) in y.chunks_exact_mut(8).enumerate() {
            let index = usize::from(qs[4 * ib + l]) | (usize::from((qh >> (3 * l)) & 7) << 8);
            let grid = IQ1S_GRID[index].to_le_bytes();
            for (v, &g) in y.iter_mut().zip(&grid) {
                // The grid's bytes are int8 (-1, 0, 1).
                *v = dl * (f32::from(g as i8) + delta);
            }
        }
    }
}

/// `dequantize_row_iq1_m`: IQ1_S's grid with a 3-bit scale per 16 values and a shift sign per 8;
/// the block's f16 scale is spread over the top nibbles of the four u16 scale words.
fn iq1_m(x: &[u8; IQ1_M_SIZE], y: &mut [f32; QK_K]) {
    let qs = &x[..QK_K / 8];
    let qh = &x[QK_K / 8..QK_K / 8 + QK_K / 16];
    let sc: [u16; 4] = std::array::from_fn(|k| u16_at(x, QK_K / 8 + QK_K / 16 + 2 * k));
    let scale =
        (sc[0] >> 12) | ((sc[1] >> 8) & 0x00f0) | ((sc[2] >> 4) & 0x0f00) | (sc[3] & 0xf000);
    let d = f16::from_bits(scale).to_f32();
    for (ib, y) in y.chunks_exact_mut(32).enumerate() {
        let s = sc[ib / 2];
        let shift = 6 * (ib % 2);
        let dl1 = d * f32::from(2 * ((s >> shift) & 0x7) + 1);
        let dl2 = d * f32::from(2 * ((s >> (shift + 3)) & 0x7) + 1);
        let (q, h) = (
            &qs[4 * ib..4 * ib + 4],
            [usize::from(qh[2 * ib]), usize::from(qh[2 * ib + 1])],
        );
        let index = [
            usize::from(q[0]) | ((h[0] << 8) & 0x700),
            usize::from(q[1]) | ((h[0] << 4) & 0x700),
            usize::from(q[2]) | ((h[1] << 8) & 0x700),
            usize::from(q[3]) | ((h[1] << 4) & 0x700),
        ];
        let delta = [h[0] & 0x08, h[0] & 0x80, h[1] & 0x08, h[1] & 0x80].map(|bit| {
            if bit != 0 {
                -IQ1S_DELTA
            } else {
                IQ1S_DELTA
            }
        });
        for (l, y) in y.chunks_exact_mut(8).enumerate() {
            let dl = if l < 2 { dl1 } else { dl2 };
            let grid = IQ1S_GRID[index[l]].to_le_bytes();
            for (v, &g) in y.iter_mut().zip(&grid) {
                *v = dl * (f32::from(g as i8) + delta[l]);
            }
        }
    }
}

/// `dequantize_row_iq4_nl`: 4-bit indices into a non-linear table, low nibbles first.
fn iq4_nl(x: &[u8; IQ4_NL_SIZE], y: &mut [f32; QK4_NL]) {
    let d = f16_at(x, 0);
    for (j, &q) in x[2..].iter().enumerate() {
        y[j] = d * f32::from(KVALUES_IQ4NL[usize::from(q & 0xf)]);
        y[j + QK4_NL / 2] = d * f32::from(KVALUES_IQ4NL[usize::from(q >> 4)]);
    }
}

/// `dequantize_row_iq4_xs`: IQ4_NL's table with a 6-bit scale (4 low bits in `scales_l`, 2 high
/// in `scales_h`) per 32 values.
fn iq4_xs(x: &[u8; IQ4_XS_SIZE], y: &mut [f32; QK_K]) {
    let d = f16_at(x, 0);
    let scales_h = u16_at(x, 2);
    let scales_l = &x[4..4 + QK_K / 64];
    let qs = &x[4 + QK_K / 64..];
    for (ib, y) in y.chunks_exact_mut(32).enumerate() {
        let low = i32::from((scales_l[ib / 2] >> (4 * (ib % 2))) & 0xf);
        let high = i32::from((scales_h >> (2 * ib)) & 3);
        let ls = low | (high << 4);
        let dl = d * (ls - 32) as f32;
        for (j, &q) in qs[16 * ib..16 * ib + 16].iter().enumerate() {
            y[j] = dl * f32::from(KVALUES_IQ4NL[usize::from(q & 0xf)]);
            y[j + 16] = dl * f32::from(KVALUES_IQ4NL[usize::from(q >> 4)]);
        }
    }
}

/// `dequantize_row_tq1_0`: five ternary digits per byte, read as the top digit of
/// `byte * 3^n` in a fixed-point fraction; 32-byte runs, then 16-byte runs, then `qh`.
fn tq1_0(x: &[u8; TQ1_0_SIZE], y: &mut [f32; QK_K]) {
    const POW3: [u8; 6] = [1, 3, 9, 27, 81, 243];
    const QS: usize = (QK_K - 4 * QK_K / 64) / 5;
    let d = f16_at(x, TQ1_0_SIZE - 2);
    let trit = |byte: u8, n: usize| -> f32 {
        // ggml's uint8_t product wraps; the digit is the top of (q * 3) in 16 bits.
        let q = byte.wrapping_mul(POW3[n]);
        let xi = ((u16::from(q) * 3) >> 8) as i16;
        f32::from(xi - 1) * d
    };
    let mut out = y.iter_mut();
    let full = QS - QS % 32;
    for run in x[..full]
        .chunks_exact(32)
        .chain(x[full..QS].chunks_exact(16))
    {
        for n in 0..5 {
            // The finite side leads the zip, so that it never takes an output slot it won't fill.
            for (&byte, v) in run.iter().zip(out.by_ref()) {
                *v = trit(byte, n);
            }
        }
    }
    let qh = &x[QS..QS + QK_K / 64];
    for n in 0..4 {
        for (&byte, v) in qh.iter().zip(out.by_ref()) {
            *v = trit(byte, n);
        }
    }
}

/// `dequantize_row_tq2_0`: four 2-bit codes (value + 1) per byte, in 32-byte runs.
fn tq2_0(x: &[u8; TQ2_0_SIZE], y: &mut [f32; QK_K]) {
    let d = f16_at(x, TQ2_0_SIZE - 2);
    let mut out = y.iter_mut();
    for run in x[..QK_K / 4].chunks_exact(32) {
        for l in 0..4 {
            for (&byte, v) in run.iter().zip(out.by_ref()) {
                let q = ((byte >> (l * 2)) & 3) as i8;
                *v = f32::from(q - 1) * d;
            }
        }
    }
}

/// `dequantize_row_mxfp4`: 4-bit E2M1 codes (doubled values) and a shared e8m0 scale (halved).
fn mxfp4(x: &[u8; MXFP4_SIZE], y: &mut [f32; QK_MXFP4]) {
    let d = e8m0_to_fp32_half(x[0]);
    for (j, &q) in x[1..].iter().enumerate() {
        let x0 = KVALUES_MXFP4[usize::from(q & 0x0f)];
        let x1 = KVALUES_MXFP4[usize::from(q >> 4)];
        y[j] = f32::from(x0) * d;
        y[j + QK_MXFP4 / 2] = f32::from(x1) * d;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn unhex(s: &str) -> Vec<u8> {
        assert!(s.len().is_multiple_of(2), "odd-length hex");
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex digit"))
            .collect()
    }

    /// Every type against gguf-py's decoders (which matched llama.cpp's compiled C on these
    /// blocks when the fixture was made). All twelve are required to match to the bit: gguf-py
    /// does the same f32 operations in the same order as the C code, so no ulp allowance is
    /// needed for any of them.
    #[test]
    fn matches_gguf_py_to_the_bit() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/foreign_quants/blocks.json"
        );
        let text = std::fs::read_to_string(path).expect("fixture");
        let fixture: Value = serde_json::from_str(&text).expect("fixture JSON");
        assert!(fixture["source"]
            .as_str()
            .is_some_and(|s| s.contains("gguf-py")));
        let mut seen = Vec::new();
        for entry in fixture["types"].as_array().expect("types") {
            let id = entry["id"].as_u64().expect("id") as u32;
            let ty = ForeignType::from_id(id).expect("a foreign type id");
            assert_eq!(entry["name"].as_str(), Some(ty.name()));
            assert_eq!(entry["block_size"].as_u64(), Some(ty.block_size() as u64));
            assert_eq!(entry["type_size"].as_u64(), Some(ty.type_size() as u64));
            let bytes: Vec<u8> = entry["blocks"]
                .as_array()
                .expect("blocks")
                .iter()
                .flat_map(|b| unhex(b.as_str().expect("hex block")))
                .collect();
            let expected: Vec<f32> = entry["values"]
                .as_array()
                .expect("values")
                .iter()
                .map(|v| {
                    let wide = v.as_f64().expect("number");
                    let narrow = wide as f32;
                    // The fixture holds f32 values written exactly as f64.
                    assert_eq!(
                        f64::from(narrow).to_bits(),
                        wide.to_bits(),
                        "{wide} is not an f32"
                    );
                    narrow
                })
                .collect();
            assert_eq!(bytes.len() / ty.type_size(), 3, "{}", ty.name());
            let mut out = vec![f32::NAN; expected.len()];
            ty.dequantize(&bytes, &mut out);
            for (i, (got, want)) in out.iter().zip(&expected).enumerate() {
                assert_eq!(
                    got.to_bits(),
                    want.to_bits(),
                    "{} value {i}: {got:e} against gguf-py's {want:e}",
                    ty.name()
                );
            }
            seen.push(ty);
        }
        assert_eq!(
            seen,
            ForeignType::ALL.to_vec(),
            "the fixture covers every type, in id order"
        );
    }

    /// Ids (ggml.h's `enum ggml_type`), names, and block and type sizes (ggml.c's type traits,
    /// ggml-common.h's struct sizes), written out from those sources.
    #[test]
    fn ids_names_and_sizes_are_ggmls() {
        let expected: [(u32, &str, usize, usize); 12] = [
            (16, "IQ2_XXS", 256, 66),
            (17, "IQ2_XS", 256, 74),
            (18, "IQ3_XXS", 256, 98),
            (19, "IQ1_S", 256, 50),
            (20, "IQ4_NL", 32, 18),
            (21, "IQ3_S", 256, 110),
            (22, "IQ2_S", 256, 82),
            (23, "IQ4_XS", 256, 136),
            (29, "IQ1_M", 256, 56),
            (34, "TQ1_0", 256, 54),
            (35, "TQ2_0", 256, 66),
            (39, "MXFP4", 32, 17),
        ];
        for (ty, (id, name, block_size, type_size)) in ForeignType::ALL.into_iter().zip(expected) {
            assert_eq!(ty.id(), id, "{ty:?}");
            assert_eq!(ty.name(), name, "{ty:?}");
            assert_eq!(ty.block_size(), block_size, "{ty:?}");
            assert_eq!(ty.type_size(), type_size, "{ty:?}");
            assert_eq!(ForeignType::from_id(id), Some(ty));
        }
        // Everything else — candle's own types, removed ids, types newer than this module — is
        // not foreign here.
        for id in (0..=64).filter(|id| !expected.iter().any(|e| e.0 == *id)) {
            assert_eq!(ForeignType::from_id(id), None, "id {id}");
        }
        assert_eq!(ForeignType::from_id(u32::MAX), None);
    }

    #[test]
    fn e8m0_half_is_ggmls() {
        assert_eq!(e8m0_to_fp32_half(0), 2f32.powi(-128));
        assert_eq!(e8m0_to_fp32_half(1), 2f32.powi(-127));
        assert_eq!(e8m0_to_fp32_half(2), 2f32.powi(-126));
        assert_eq!(e8m0_to_fp32_half(127), 0.5);
        assert_eq!(e8m0_to_fp32_half(128), 1.0);
        assert_eq!(e8m0_to_fp32_half(255), 2f32.powi(127));
    }

    /// Any bytes decode without a panic — all zeros, all ones (NaN scales, every index at its
    /// maximum) and pseudo-random blocks — and fill every output value.
    #[test]
    fn any_bytes_decode_without_panic() {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut random = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        };
        for ty in ForeignType::ALL {
            let blocks = 64;
            let mut inputs = vec![
                vec![0u8; blocks * ty.type_size()],
                vec![0xffu8; blocks * ty.type_size()],
            ];
            inputs.push((0..blocks * ty.type_size()).map(|_| random()).collect());
            for bytes in inputs {
                let mut out = vec![f32::from_bits(0x7fc0_1234); blocks * ty.block_size()];
                ty.dequantize(&bytes, &mut out);
                assert!(
                    out.iter().all(|v| v.to_bits() != 0x7fc0_1234),
                    "{} left a value unwritten",
                    ty.name()
                );
            }
        }
        let mut empty: [f32; 0] = [];
        ForeignType::Iq1M.dequantize(&[], &mut empty);
    }

    #[test]
    #[should_panic(expected = "not a whole number")]
    fn partial_block_is_refused() {
        let mut out = vec![0.0; 256];
        ForeignType::Iq2Xxs.dequantize(&[0; 65], &mut out);
    }

    #[test]
    #[should_panic(expected = "room for")]
    fn wrong_output_length_is_refused() {
        let mut out = vec![0.0; 255];
        ForeignType::Iq2Xxs.dequantize(&[0; 66], &mut out);
    }
}
