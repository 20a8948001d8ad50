//! GGUF's quantized formats multiplied as the file stores them (`--dtype quantized` on the
//! CPU): `y = x · Wᵀ` with `W` kept at its own bit width, repacked once at load into panels of
//! 32 interleaved rows, and the activations quantized to 8 bits per block of the format at each
//! call, so that every block's dot product is an integer (VNNI `vpdpbusd`, AVX2 `vpmaddubsw`,
//! or portable code, picked at run time; every path gives the same numbers to the bit).
//!
//! Every format covered here is one scheme: a weight is `D · sc · (u − off) + M · mn`, with
//! `u` an unsigned integer of 2 to 6 or of 8 bits, `D` and `M` floats per super-block (32 inputs
//! for the legacy formats, 256 for the k-quants), and `sc`, `mn` small integers per sub-block
//! (16 or 32 inputs; 1 for the legacy formats). With `x ≈ sx · q` per activation block (the
//! super-block) and `S` the sum of `q` over a sub-block, a super-block contributes
//! `sx · (D · Σ sc · (Σ u·q − off·S) + M · Σ mn · S)`: the sums are integers and exact on every
//! instruction set, and the two float steps run in one order with fused multiply-adds.
//!
//! Repacked layout, per panel of 32 rows and super-block: the low 4 bits of `u` as nibbles
//! (two groups of 4 inputs per 128 bytes: `[column][input]`, group `2j` in the low nibbles,
//! `2j + 1` in the high ones), then the bits above 4 (1 for Q5, 2 for Q6_K) as bit planes of
//! 128-byte units; Q8_0 keeps whole bytes, and Q2_K's and Q3_K's values sit in the low
//! nibbles alone. One 64-byte load is then 4 inputs of 16 rows, the
//! operand of one `vpdpbusd`. The planes hold what the file holds (4.75 bits per weight for
//! Q4_K's 4.5, 6.6 for Q6_K's 6.56), so a model needs about its file's size in memory.

use candle_core::quantized::GgmlDType;
use rayon::prelude::*;

use crate::model::device::ActivationLevels;

use super::common::{tiled_product_in_chunks, PANEL};
use super::features::CpuFeatures;

/// What this kernel computes, for resume identities: changed whenever its numbers change.
pub const ARITHMETIC: &str = "stored v1: GGUF blocks as stored, activations 8-bit per format \
                              block (32; 256 for k-quants), half to even";

/// [`ARITHMETIC`] with two levels of activations (`--dtype quantized-a16`).
pub const ARITHMETIC_A16: &str = "stored v1: GGUF blocks as stored, activations 8-bit per \
                                  format block (32; 256 for k-quants), half to even, and their \
                                  rounding error again so, the two products summed";

/// [`ARITHMETIC`], with the choices of near ties scored again as [`ARITHMETIC_A16`]
/// (`--dtype quantized-tiebreak`).
pub const ARITHMETIC_TIEBREAK: &str = "stored v1: GGUF blocks as stored, activations 8-bit per \
                                       format block (32; 256 for k-quants), half to even; \
                                       questions whose best two choices lie within 0.25 nats \
                                       scored again with the rounding error quantized too";

/// Rows of `x` per kernel tile.
const TILE_ROWS: usize = 8;
/// Rows of `x` per task: a panel's weights are read from memory once per chunk of rows.
const CHUNK_ROWS: usize = 256;
/// Bytes of one unit of a panel: 4 inputs (or a plane of them) of 32 rows.
const UNIT: usize = 128;

/// The formats multiplied as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum StoredFormat {
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q8_0,
    Q2K,
    Q3K,
    Q4K,
    Q5K,
    Q6K,
}

/// What stays of a format in the repacked layout.
#[derive(Debug, Clone, Copy)]
struct Scheme {
    /// Inputs per super-block (one `D`, `M` and activation scale).
    super_block: usize,
    /// Inputs per sub-block (one `sc`, `mn` and activation sum).
    sub_block: usize,
    /// Bits of `u` above the low 4 (8: whole bytes).
    high_bits: usize,
    /// What `u` is offset by.
    offset: i32,
    /// Whether the format has the `M · mn` term.
    min: bool,
    /// Whether the format has integer sub-block scales (`sc`, `mn`).
    sub_scales: bool,
}

impl StoredFormat {
    /// The format of a GGUF tensor type, when it is multiplied as stored.
    pub fn of(dtype: GgmlDType) -> Option<Self> {
        Some(match dtype {
            GgmlDType::Q4_0 => Self::Q4_0,
            GgmlDType::Q4_1 => Self::Q4_1,
            GgmlDType::Q5_0 => Self::Q5_0,
            GgmlDType::Q5_1 => Self::Q5_1,
            GgmlDType::Q8_0 => Self::Q8_0,
            GgmlDType::Q2K => Self::Q2K,
            GgmlDType::Q3K => Self::Q3K,
            GgmlDType::Q4K => Self::Q4K,
            GgmlDType::Q5K => Self::Q5K,
            GgmlDType::Q6K => Self::Q6K,
            _ => return None,
        })
    }

    /// The GGUF tensor type of the format.
    pub fn ggml_dtype(self) -> GgmlDType {
        match self {
            Self::Q4_0 => GgmlDType::Q4_0,
            Self::Q4_1 => GgmlDType::Q4_1,
            Self::Q5_0 => GgmlDType::Q5_0,
            Self::Q5_1 => GgmlDType::Q5_1,
            Self::Q8_0 => GgmlDType::Q8_0,
            Self::Q2K => GgmlDType::Q2K,
            Self::Q3K => GgmlDType::Q3K,
            Self::Q4K => GgmlDType::Q4K,
            Self::Q5K => GgmlDType::Q5K,
            Self::Q6K => GgmlDType::Q6K,
        }
    }

    /// GGUF's name of the format.
    pub fn name(self) -> &'static str {
        match self {
            Self::Q4_0 => "Q4_0",
            Self::Q4_1 => "Q4_1",
            Self::Q5_0 => "Q5_0",
            Self::Q5_1 => "Q5_1",
            Self::Q8_0 => "Q8_0",
            Self::Q2K => "Q2_K",
            Self::Q3K => "Q3_K",
            Self::Q4K => "Q4_K",
            Self::Q5K => "Q5_K",
            Self::Q6K => "Q6_K",
        }
    }

    pub const ALL: [StoredFormat; 10] = [
        Self::Q4_0,
        Self::Q4_1,
        Self::Q5_0,
        Self::Q5_1,
        Self::Q8_0,
        Self::Q2K,
        Self::Q3K,
        Self::Q4K,
        Self::Q5K,
        Self::Q6K,
    ];

    fn scheme(self) -> Scheme {
        let legacy = |high_bits, offset, min| Scheme {
            super_block: 32,
            sub_block: 32,
            high_bits,
            offset,
            min,
            sub_scales: false,
        };
        match self {
            Self::Q4_0 => legacy(0, 8, false),
            Self::Q4_1 => legacy(0, 0, true),
            Self::Q5_0 => legacy(1, 16, false),
            Self::Q5_1 => legacy(1, 0, true),
            Self::Q8_0 => legacy(8, 128, false),
            // 2- and 3-bit values kept in the low nibble (a bit or two of it unused): the
            // nibble layout's kernels serve them unchanged, at 4.6–5.3 bits per weight.
            Self::Q2K => Scheme {
                super_block: 256,
                sub_block: 16,
                high_bits: 0,
                offset: 0,
                min: true,
                sub_scales: true,
            },
            Self::Q3K => Scheme {
                super_block: 256,
                sub_block: 16,
                high_bits: 0,
                offset: 4,
                min: false,
                sub_scales: true,
            },
            Self::Q4K | Self::Q5K => Scheme {
                super_block: 256,
                sub_block: 32,
                high_bits: if self == Self::Q4K { 0 } else { 1 },
                offset: 0,
                min: true,
                sub_scales: true,
            },
            Self::Q6K => Scheme {
                super_block: 256,
                sub_block: 16,
                high_bits: 2,
                offset: 32,
                min: false,
                sub_scales: true,
            },
        }
    }

    /// Inputs per GGUF block of the format.
    pub fn block(self) -> usize {
        self.scheme().super_block
    }

    /// Bits per weight in the repacked layout (4.75 for Q4_K, 9 for Q8_0), scales included.
    pub fn repacked_bits(self) -> f64 {
        let s = self.scheme();
        let values = if s.high_bits == 8 { 8 } else { 4 + s.high_bits };
        let per_super = 32.0 * (1 + usize::from(s.min)) as f64 / s.super_block as f64;
        let per_sub = match s.sub_scales {
            true => 8.0 * (1 + usize::from(s.min)) as f64 / s.sub_block as f64,
            false => 0.0,
        };
        values as f64 + per_super + per_sub
    }
}

impl Scheme {
    /// Bytes of one super-block of one panel.
    fn quant_bytes(&self) -> usize {
        match self.high_bits {
            8 => PANEL * self.super_block,
            h => self.super_block * PANEL / 2 + self.super_block * PANEL * h / 8,
        }
    }

    fn subs(&self) -> usize {
        self.super_block / self.sub_block
    }
}

/// The instruction sets the product can run on, fastest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StoredPath {
    /// AVX-512 with VNNI: `vpdpbusd`, 64 multiply-adds per instruction.
    Avx512Vnni,
    /// AVX2: `vpmaddubsw` then `vpmaddwd` (Q8_0 through |w| and x·sign(w)).
    Avx2,
    /// Plain Rust on any CPU: the reference every other path equals.
    Portable,
}

impl StoredPath {
    /// The name reports and `VALUELENS_STORED_PATH` use.
    pub fn name(self) -> &'static str {
        match self {
            Self::Avx512Vnni => "avx512_vnni",
            Self::Avx2 => "avx2",
            Self::Portable => "portable",
        }
    }

    /// The paths the CPU can run, fastest first (always ending with the portable one).
    pub fn available(features: &CpuFeatures) -> Vec<Self> {
        let mut paths = Vec::new();
        if features.avx512f && features.avx512bw && features.avx512vnni {
            paths.push(Self::Avx512Vnni);
        }
        if features.avx2 && features.fma {
            paths.push(Self::Avx2);
        }
        paths.push(Self::Portable);
        paths
    }

    /// The fastest path this CPU has, unless `VALUELENS_STORED_PATH` names another it has.
    pub fn select(features: &CpuFeatures) -> anyhow::Result<Self> {
        super::common::select_path(
            "VALUELENS_STORED_PATH",
            &Self::available(features),
            Self::name,
        )
    }
}

/// One row decoded from its GGUF blocks into the scheme's integers and scales.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DecodedRow {
    /// `u`, one per input.
    pub u: Vec<u8>,
    /// `D` per super-block.
    pub d: Vec<f32>,
    /// `M` per super-block (formats with a minimum).
    pub m: Vec<f32>,
    /// `sc` per sub-block (k-quants).
    pub sc: Vec<i8>,
    /// `mn` per sub-block (k-quants with a minimum).
    pub mn: Vec<u8>,
}

fn f16_at(bytes: &[u8], at: usize) -> f32 {
    half::f16::from_le_bytes([bytes[at], bytes[at + 1]]).to_f32()
}

/// Q4_K's and Q5_K's 6-bit scale and minimum of sub-block `j` (ggml's `get_scale_min_k4`).
fn scale_min_k4(j: usize, q: &[u8]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        (
            (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4),
            (q[j + 4] >> 4) | ((q[j] >> 6) << 4),
        )
    }
}

impl StoredFormat {
    /// Bytes of one GGUF block.
    pub fn block_bytes(self) -> usize {
        match self {
            Self::Q4_0 => 18,
            Self::Q4_1 => 20,
            Self::Q5_0 => 22,
            Self::Q5_1 => 24,
            Self::Q8_0 => 34,
            Self::Q2K => 84,
            Self::Q3K => 110,
            Self::Q4K => 144,
            Self::Q5K => 176,
            Self::Q6K => 210,
        }
    }

    /// Decodes one row of GGUF blocks (`bytes` holds whole blocks) into `out`.
    pub fn decode_row(self, bytes: &[u8], out: &mut DecodedRow) {
        let blocks = bytes.len() / self.block_bytes();
        let k = blocks * self.block();
        out.u.clear();
        out.u.resize(k, 0);
        out.d.clear();
        out.m.clear();
        out.sc.clear();
        out.mn.clear();
        for (b, block) in bytes.chunks_exact(self.block_bytes()).enumerate() {
            let u = &mut out.u[b * self.block()..(b + 1) * self.block()];
            match self {
                Self::Q4_0 | Self::Q4_1 | Self::Q5_0 | Self::Q5_1 => {
                    out.d.push(f16_at(block, 0));
                    let mut at = 2;
                    if matches!(self, Self::Q4_1 | Self::Q5_1) {
                        out.m.push(f16_at(block, 2));
                        at = 4;
                    }
                    let mut high = 0u32;
                    if matches!(self, Self::Q5_0 | Self::Q5_1) {
                        high = u32::from_le_bytes(block[at..at + 4].try_into().unwrap());
                        at += 4;
                    }
                    let qs = &block[at..at + 16];
                    for j in 0..16 {
                        u[j] = (qs[j] & 0xF) | ((((high >> j) & 1) as u8) << 4);
                        u[j + 16] = (qs[j] >> 4) | ((((high >> (j + 16)) & 1) as u8) << 4);
                    }
                }
                Self::Q8_0 => {
                    out.d.push(f16_at(block, 0));
                    for (u, &q) in u.iter_mut().zip(&block[2..34]) {
                        *u = (q as i8 as i32 + 128) as u8;
                    }
                }
                Self::Q2K => {
                    // scales[16] (minimum << 4 | scale), qs[64], d, dmin.
                    let (scales, qs) = (&block[0..16], &block[16..80]);
                    out.d.push(f16_at(block, 80));
                    out.m.push(-f16_at(block, 82));
                    out.sc.extend(scales.iter().map(|&s| (s & 0xF) as i8));
                    out.mn.extend(scales.iter().map(|&s| s >> 4));
                    for (i, u) in u.iter_mut().enumerate() {
                        let (half, shift, l) = (i / 128, (i % 128) / 32 * 2, i % 32);
                        *u = (qs[half * 32 + l] >> shift) & 3;
                    }
                }
                Self::Q3K => {
                    // hmask[32], qs[64], scales[12] (16 of 6 bits, offset by 32), d.
                    let (hmask, qs, packed) = (&block[0..32], &block[32..96], &block[96..108]);
                    out.d.push(f16_at(block, 108));
                    out.sc.extend((0..16).map(|j| {
                        let low = (packed[j % 8] >> (4 * (j / 8))) & 0xF;
                        let high = (packed[8 + j % 4] >> (2 * (j / 4))) & 3;
                        ((low | (high << 4)) as i8) - 32
                    }));
                    for (i, u) in u.iter_mut().enumerate() {
                        let (half, step, l) = (i / 128, (i % 128) / 32, i % 32);
                        let low = (qs[half * 32 + l] >> (2 * step)) & 3;
                        let high = (hmask[l] >> (half * 4 + step)) & 1;
                        *u = low | (high << 2);
                    }
                }
                Self::Q4K | Self::Q5K => {
                    out.d.push(f16_at(block, 0));
                    out.m.push(-f16_at(block, 2));
                    let scales = &block[4..16];
                    for j in 0..8 {
                        let (sc, mn) = scale_min_k4(j, scales);
                        out.sc.push(sc as i8);
                        out.mn.push(mn);
                    }
                    let (qh, qs) = match self {
                        Self::Q5K => (Some(&block[16..48]), &block[48..176]),
                        _ => (None, &block[16..144]),
                    };
                    for chunk in 0..4 {
                        let ql = &qs[chunk * 32..(chunk + 1) * 32];
                        for l in 0..32 {
                            let (h1, h2) = qh.map_or((0, 0), |qh| {
                                ((qh[l] >> (2 * chunk)) & 1, (qh[l] >> (2 * chunk + 1)) & 1)
                            });
                            u[chunk * 64 + l] = (ql[l] & 0xF) | (h1 << 4);
                            u[chunk * 64 + 32 + l] = (ql[l] >> 4) | (h2 << 4);
                        }
                    }
                }
                Self::Q6K => {
                    let (ql, qh) = (&block[0..128], &block[128..192]);
                    out.sc.extend(block[192..208].iter().map(|&s| s as i8));
                    out.d.push(f16_at(block, 208));
                    for half in 0..2 {
                        let (ql, qh) = (&ql[half * 64..], &qh[half * 32..]);
                        let y = &mut u[half * 128..];
                        for l in 0..32 {
                            y[l] = (ql[l] & 0xF) | ((qh[l] & 3) << 4);
                            y[l + 32] = (ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4);
                            y[l + 64] = (ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4);
                            y[l + 96] = (ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4);
                        }
                    }
                }
            }
        }
    }

    /// One row of floats quantized to Q8_0's scheme with an f32 scale per block of 32 (the
    /// 8-bit form of float sources and of formats without a kernel); `k` is padded with zeros
    /// to a multiple of 32.
    pub fn encode_q8(values: &[f32], out: &mut DecodedRow) {
        let k = values.len().div_ceil(32) * 32;
        out.u.clear();
        out.u.resize(k, 128);
        out.d.clear();
        out.m.clear();
        out.sc.clear();
        out.mn.clear();
        for (b, block) in values.chunks(32).enumerate() {
            let amax = block.iter().fold(0f32, |m, v| m.max(v.abs()));
            let scale = amax / 127.0;
            let inverse = if scale > 0.0 { 1.0 / scale } else { 0.0 };
            for (u, v) in out.u[b * 32..].iter_mut().zip(block) {
                *u = ((v * inverse).round_ties_even().clamp(-127.0, 127.0) as i32 + 128) as u8;
            }
            out.d.push(scale);
        }
    }

    /// The weights of a decoded row, as GGUF's dequantization computes them.
    pub fn dequantize(self, row: &DecodedRow, out: &mut [f32]) {
        let s = self.scheme();
        for (i, o) in out.iter_mut().enumerate().take(row.u.len()) {
            let (sb, sub) = (i / s.super_block, i / s.sub_block);
            let (sc, mn) = match s.sub_scales {
                true => (
                    row.sc[sub] as f32,
                    row.mn.get(sub).map_or(0.0, |&m| m as f32),
                ),
                false => (1.0, 1.0),
            };
            let a = row.d[sb] * sc;
            let b = if s.min { row.m[sb] * mn } else { 0.0 };
            *o = a * (row.u[i] as i32 - s.offset) as f32 + b;
        }
    }
}

/// A weight matrix `[n, k]` in a GGUF format, repacked for the stored-format kernels.
pub struct StoredMatrix {
    format: StoredFormat,
    n: usize,
    /// Inputs, a multiple of the super-block.
    k: usize,
    /// The caller's inputs (`k` rounded up to whole blocks for float sources).
    k_in: usize,
    super_blocks: usize,
    /// `[panel][super-block][quant bytes]`.
    quants: Vec<u8>,
    /// `[panel][super-block][column]`.
    d: Vec<f32>,
    /// `[panel][super-block][column]` (formats with a minimum).
    m: Vec<f32>,
    /// `[panel][super-block][sub-block][column]` (k-quants).
    sc: Vec<i8>,
    /// `[panel][super-block][sub-block][column]` (k-quants with a minimum).
    mn: Vec<u8>,
    path: StoredPath,
    /// Levels of 8-bit activations per product: 1, or 2 (the rounding error quantized again
    /// and multiplied too: about 16-bit activations for twice the integer work); read at each
    /// product, shared with the model's other matrices.
    activation_levels: ActivationLevels,
}

impl StoredMatrix {
    /// Repacks the rows `rows(r, out)` decodes (`n` of them, `k` inputs each).
    pub fn from_rows(
        format: StoredFormat,
        n: usize,
        k: usize,
        k_in: usize,
        path: StoredPath,
        rows: impl Fn(usize, &mut DecodedRow) + Sync,
    ) -> Self {
        let s = format.scheme();
        assert_eq!(k % s.super_block, 0, "{} rows of {k} inputs", format.name());
        let super_blocks = k / s.super_block;
        let panels = n.div_ceil(PANEL);
        let quant_bytes = s.quant_bytes();
        let subs = s.subs();
        let mut quants = vec![0u8; panels * super_blocks * quant_bytes];
        let mut d = vec![0f32; panels * super_blocks * PANEL];
        let mut m = vec![0f32; if s.min { d.len() } else { 0 }];
        let sub_len = if s.sub_scales { d.len() * subs } else { 0 };
        let mut sc = vec![0i8; sub_len];
        let mut mn = vec![0u8; if s.sub_scales && s.min { sub_len } else { 0 }];
        let (m_len, sc_len) = (
            if s.min { PANEL } else { 0 },
            if s.sub_scales { PANEL * subs } else { 0 },
        );
        let mn_len = if s.min { sc_len } else { 0 };
        let pointers = (
            SharedMut(quants.as_mut_ptr()),
            SharedMut(d.as_mut_ptr()),
            SharedMut(m.as_mut_ptr()),
            SharedMut(sc.as_mut_ptr()),
            SharedMut(mn.as_mut_ptr()),
        );
        (0..panels).into_par_iter().for_each(|p| {
            // SAFETY: each panel writes its own elements of each array (its super-blocks'),
            // all within the lengths allocated above.
            let (pq, pd, pm, psc, pmn) = unsafe {
                let (q, d, m, sc, mn) = pointers;
                let blocks = p * super_blocks;
                (
                    q.slice(blocks * quant_bytes, super_blocks * quant_bytes),
                    d.slice(blocks * PANEL, super_blocks * PANEL),
                    m.slice(blocks * m_len, super_blocks * m_len),
                    sc.slice(blocks * sc_len, super_blocks * sc_len),
                    mn.slice(blocks * mn_len, super_blocks * mn_len),
                )
            };
            let mut row = DecodedRow::default();
            for c in 0..PANEL.min(n - p * PANEL) {
                rows(p * PANEL + c, &mut row);
                debug_assert_eq!(row.u.len(), k);
                for sb in 0..super_blocks {
                    let base = &mut pq[sb * quant_bytes..(sb + 1) * quant_bytes];
                    for i in 0..s.super_block {
                        let u = row.u[sb * s.super_block + i];
                        let (g, within) = (i / 4, c * 4 + i % 4);
                        if s.high_bits == 8 {
                            base[g * UNIT + within] = u;
                            continue;
                        }
                        base[(g / 2) * UNIT + within] |= (u & 0xF) << (4 * (g % 2));
                        if let Some(per) = 8usize.checked_div(s.high_bits) {
                            let mask = (1u8 << s.high_bits) - 1;
                            let at = s.super_block * PANEL / 2 + (g / per) * UNIT + within;
                            base[at] |= ((u >> 4) & mask) << ((g % per) * s.high_bits);
                        }
                    }
                    pd[sb * PANEL + c] = row.d[sb];
                    if s.min {
                        pm[sb * PANEL + c] = row.m[sb];
                    }
                    for sub in 0..subs.min(sc_len) {
                        psc[(sb * subs + sub) * PANEL + c] = row.sc[sb * subs + sub];
                        if s.min {
                            pmn[(sb * subs + sub) * PANEL + c] = row.mn[sb * subs + sub];
                        }
                    }
                }
            }
        });
        Self {
            format,
            n,
            k,
            k_in,
            super_blocks,
            quants,
            d,
            m,
            sc,
            mn,
            path,
            activation_levels: ActivationLevels::new(1),
        }
    }

    /// A matrix from its GGUF bytes (`n` rows of `k` inputs in `format`'s blocks).
    pub fn from_gguf(
        format: StoredFormat,
        bytes: &[u8],
        n: usize,
        k: usize,
        path: StoredPath,
    ) -> anyhow::Result<Self> {
        if !k.is_multiple_of(format.block()) {
            anyhow::bail!(
                "{} rows of {k} inputs: not a whole number of {}-input blocks",
                format.name(),
                format.block()
            );
        }
        let row_bytes = k / format.block() * format.block_bytes();
        if bytes.len() != n * row_bytes {
            anyhow::bail!(
                "{} matrix of {n}×{k} needs {} bytes, got {}",
                format.name(),
                n * row_bytes,
                bytes.len()
            );
        }
        Ok(Self::from_rows(format, n, k, k, path, |r, out| {
            format.decode_row(&bytes[r * row_bytes..(r + 1) * row_bytes], out)
        }))
    }

    /// A matrix of floats (`[n, k]` row-major) in Q8_0's scheme with f32 scales.
    pub fn from_f32(values: &[f32], n: usize, k: usize, path: StoredPath) -> Self {
        assert_eq!(values.len(), n * k);
        let padded = k.div_ceil(32) * 32;
        Self::from_rows(StoredFormat::Q8_0, n, padded, k, path, |r, out| {
            StoredFormat::encode_q8(&values[r * k..(r + 1) * k], out)
        })
    }

    pub fn rows(&self) -> usize {
        self.n
    }

    pub fn cols(&self) -> usize {
        self.k_in
    }

    pub fn format(&self) -> StoredFormat {
        self.format
    }

    pub fn path(&self) -> StoredPath {
        self.path
    }

    /// Bytes held by the repacked matrix.
    pub fn bytes(&self) -> usize {
        self.quants.len() + 4 * (self.d.len() + self.m.len()) + self.sc.len() + self.mn.len()
    }

    /// Row `r` read back from the packed layout as weights (for embedding lookups of a table
    /// kept only in this form).
    pub fn dequantize_row(&self, r: usize, out: &mut [f32]) {
        let s = self.format.scheme();
        let (p, c) = (r / PANEL, r % PANEL);
        let quant_bytes = s.quant_bytes();
        let subs = s.subs();
        // The same arithmetic as `StoredFormat::dequantize`, written straight into `out`
        // (one row per looked-up token: no allocation).
        for sb in 0..self.super_blocks {
            let at = p * self.super_blocks + sb;
            let base = &self.quants[at * quant_bytes..(at + 1) * quant_bytes];
            let d = self.d[at * PANEL + c];
            for sub in 0..subs {
                let (sc, mn) = match s.sub_scales {
                    true => (
                        self.sc[(at * subs + sub) * PANEL + c] as f32,
                        match s.min {
                            true => self.mn[(at * subs + sub) * PANEL + c] as f32,
                            false => 0.0,
                        },
                    ),
                    false => (1.0, 1.0),
                };
                let a = d * sc;
                let b = if s.min {
                    self.m[at * PANEL + c] * mn
                } else {
                    0.0
                };
                for i in sub * s.sub_block..(sub + 1) * s.sub_block {
                    let Some(o) = out.get_mut(sb * s.super_block + i) else {
                        return; // the padding of a float source's rows
                    };
                    *o = a * (unpack_scalar(&s, base, c, i) as i32 - s.offset) as f32 + b;
                }
            }
        }
    }

    /// The matrix multiplying activations at `levels` levels of 8 bits (1 or 2): at 2, each
    /// activation row's rounding error is quantized again as a second row, and the two rows'
    /// products are summed (`x ≈ s₁q₁ + s₂q₂`).
    pub fn with_activation_levels(self, levels: usize) -> Self {
        self.with_shared_levels(ActivationLevels::new(levels))
    }

    /// The matrix multiplying at the levels `levels` holds whenever it multiplies (one knob
    /// for all of a model's matrices).
    pub fn with_shared_levels(mut self, levels: ActivationLevels) -> Self {
        self.activation_levels = levels;
        self
    }

    /// `x: [rows, k]` row-major → `[rows, n]` row-major.
    pub fn matmul(&self, x: &[f32], rows: usize) -> Vec<f32> {
        assert_eq!(
            x.len(),
            rows * self.k_in,
            "input of {rows}×{} expected",
            self.k_in
        );
        let s = self.format.scheme();
        let levels = self.activation_levels.get();
        let acts = Activations::new(x, rows, self.k_in, self.k, &s, levels);
        let y = self.product(&acts, rows * levels);
        if levels == 1 {
            return y;
        }
        let mut out = vec![0f32; rows * self.n];
        out.par_chunks_mut(self.n.max(1))
            .zip(y.par_chunks(2 * self.n.max(1)))
            .for_each(|(out, pair)| {
                let (main, residual) = pair.split_at(self.n);
                for ((o, m), r) in out.iter_mut().zip(main).zip(residual) {
                    *o = m + r;
                }
            });
        out
    }

    /// The product of quantized activation rows with the matrix: `[rows, n]`.
    fn product(&self, acts: &Activations, rows: usize) -> Vec<f32> {
        let s = self.format.scheme();
        let quant_bytes = s.quant_bytes() * self.super_blocks;
        let per_panel = self.super_blocks * PANEL;
        let subs = s.subs();
        tiled_product_in_chunks::<TILE_ROWS>(rows, self.n, CHUNK_ROWS, |row, panel, tile| {
            let slice = |v: &[f32], len: usize| -> *const f32 {
                if v.is_empty() {
                    std::ptr::null()
                } else {
                    v[panel * len..][..len].as_ptr()
                }
            };
            let o = Operands {
                x: &acts.q[row * self.k..(row + TILE_ROWS) * self.k],
                x_scales: &acts.scales[row * self.super_blocks..][..TILE_ROWS * self.super_blocks],
                sums: &acts.sums[row * acts.subs_per_row..][..TILE_ROWS * acts.subs_per_row],
                k: self.k,
                super_blocks: self.super_blocks,
                quants: &self.quants[panel * quant_bytes..][..quant_bytes],
                d: slice(&self.d, per_panel),
                m: slice(&self.m, per_panel),
                sc: if self.sc.is_empty() {
                    std::ptr::null()
                } else {
                    self.sc[panel * per_panel * subs..].as_ptr()
                },
                mn: if self.mn.is_empty() {
                    std::ptr::null()
                } else {
                    self.mn[panel * per_panel * subs..].as_ptr()
                },
            };
            // SAFETY: every pointer above covers one panel of its array; the paths were chosen
            // among those the CPU supports.
            unsafe { dispatch(self.format, self.path, &o, tile) }
        })
    }
}

/// A raw pointer into an array whose disjoint parts several threads write.
#[derive(Clone, Copy)]
struct SharedMut<T>(*mut T);
// SAFETY: the writers touch disjoint elements, and the array outlives them.
unsafe impl<T> Send for SharedMut<T> {}
unsafe impl<T> Sync for SharedMut<T> {}

impl<T> SharedMut<T> {
    /// `len` elements from `start`.
    ///
    /// # Safety
    /// The range is within the array and no other thread uses it meanwhile.
    unsafe fn slice<'a>(self, start: usize, len: usize) -> &'a mut [T] {
        if len == 0 {
            return &mut [];
        }
        // SAFETY: as the caller promises.
        unsafe { std::slice::from_raw_parts_mut(self.0.add(start), len) }
    }
}

/// Activations quantized per super-block: `q` signed 8-bit `[rows][k]`, a scale per
/// super-block and the sum of `q` per sub-block; rows padded with zeros to whole tiles.
struct Activations {
    q: Vec<i8>,
    scales: Vec<f32>,
    sums: Vec<i32>,
    subs_per_row: usize,
}

impl Activations {
    fn new(x: &[f32], rows: usize, k_in: usize, k: usize, s: &Scheme, levels: usize) -> Self {
        let padded = (rows * levels).div_ceil(TILE_ROWS) * TILE_ROWS;
        let super_blocks = k / s.super_block;
        let subs_per_row = k / s.sub_block;
        let mut q = vec![0i8; padded * k];
        let mut scales = vec![0f32; padded * super_blocks];
        let mut sums = vec![0i32; padded * subs_per_row];
        q.par_chunks_mut(k * levels)
            .zip(scales.par_chunks_mut(super_blocks * levels))
            .zip(sums.par_chunks_mut(subs_per_row * levels))
            .take(rows)
            .enumerate()
            .for_each_init(Vec::new, |residual, (r, ((q, scales), sums))| {
                let row = &x[r * k_in..(r + 1) * k_in];
                let (q, q_residual) = q.split_at_mut(k);
                let (scales, scales_residual) = scales.split_at_mut(super_blocks);
                let (sums, sums_residual) = sums.split_at_mut(subs_per_row);
                quantize_row(row, s, q, scales, sums);
                if levels == 2 {
                    // One buffer per task, not per row.
                    residual.clear();
                    residual.extend(
                        row.iter()
                            .enumerate()
                            .map(|(i, v)| v - scales[i / s.super_block] * q[i] as f32),
                    );
                    quantize_row(residual, s, q_residual, scales_residual, sums_residual);
                }
            });
        Self {
            q,
            scales,
            sums,
            subs_per_row,
        }
    }
}

/// One row quantized per super-block (values past `row.len()` are zero): scale = largest
/// magnitude / 127, values rounded half to even; AVX2 where the CPU has it, with the same
/// numbers as the scalar code.
fn quantize_row(row: &[f32], s: &Scheme, q: &mut [i8], scales: &mut [f32], sums: &mut [i32]) {
    #[cfg(target_arch = "x86_64")]
    if row.len() == q.len() && is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2; lengths are checked inside.
        unsafe { quantize_row_avx2(row, s, q, scales, sums) };
        return;
    }
    quantize_row_scalar(row, s, q, scales, sums);
}

fn quantize_row_scalar(
    row: &[f32],
    s: &Scheme,
    q: &mut [i8],
    scales: &mut [f32],
    sums: &mut [i32],
) {
    for (b, scale) in scales.iter_mut().enumerate() {
        let start = (b * s.super_block).min(row.len());
        let end = ((b + 1) * s.super_block).min(row.len());
        let values = &row[start..end];
        let amax = values.iter().fold(0f32, |m, v| m.max(v.abs()));
        *scale = amax / 127.0;
        let inverse = if *scale > 0.0 { 1.0 / *scale } else { 0.0 };
        for i in 0..s.super_block {
            let v = values.get(i).copied().unwrap_or(0.0);
            q[b * s.super_block + i] = (v * inverse).round_ties_even().clamp(-127.0, 127.0) as i8;
        }
    }
    for (sub, sum) in sums.iter_mut().enumerate() {
        *sum = q[sub * s.sub_block..(sub + 1) * s.sub_block]
            .iter()
            .map(|&v| v as i32)
            .sum();
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn quantize_row_avx2(
    row: &[f32],
    s: &Scheme,
    q: &mut [i8],
    scales: &mut [f32],
    sums: &mut [i32],
) {
    use std::arch::x86_64::*;
    let blocks = row.len() / s.super_block;
    assert!(q.len() >= blocks * s.super_block && scales.len() >= blocks);
    assert!(sums.len() >= blocks * s.subs() && s.sub_block.is_multiple_of(8));
    let magnitude = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fff_ffff));
    let (low, high) = (_mm256_set1_ps(-127.0), _mm256_set1_ps(127.0));
    for b in 0..blocks {
        // SAFETY (loads and stores): within the block, bounded by the asserts.
        let at = row.as_ptr().add(b * s.super_block);
        let mut m = _mm256_setzero_ps();
        for i in (0..s.super_block).step_by(8) {
            m = _mm256_max_ps(m, _mm256_and_ps(_mm256_loadu_ps(at.add(i)), magnitude));
        }
        let m = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
        let m = _mm_max_ps(m, _mm_movehl_ps(m, m));
        let m = _mm_max_ss(m, _mm_shuffle_ps(m, m, 1));
        let scale = _mm_cvtss_f32(m) / 127.0;
        *scales.get_unchecked_mut(b) = scale;
        let inverse = _mm256_set1_ps(if scale > 0.0 { 1.0 / scale } else { 0.0 });
        for sub in 0..s.subs() {
            let mut sum = _mm256_setzero_si256();
            for i in (0..s.sub_block).step_by(8) {
                let offset = b * s.super_block + sub * s.sub_block + i;
                const NEAREST: i32 = _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC;
                let v = _mm256_loadu_ps(row.as_ptr().add(offset));
                let r = _mm256_round_ps::<NEAREST>(_mm256_mul_ps(v, inverse));
                let r = _mm256_cvtps_epi32(_mm256_min_ps(_mm256_max_ps(r, low), high));
                sum = _mm256_add_epi32(sum, r);
                let words = _mm256_packs_epi32(r, r);
                let bytes = _mm256_packs_epi16(words, words);
                let ordered =
                    _mm256_permutevar8x32_epi32(bytes, _mm256_setr_epi32(0, 4, 0, 0, 0, 0, 0, 0));
                _mm_storel_epi64(
                    q.as_mut_ptr().add(offset) as *mut __m128i,
                    _mm256_castsi256_si128(ordered),
                );
            }
            let sum = _mm_add_epi32(
                _mm256_castsi256_si128(sum),
                _mm256_extracti128_si256(sum, 1),
            );
            let sum = _mm_hadd_epi32(sum, sum);
            let sum = _mm_hadd_epi32(sum, sum);
            *sums.get_unchecked_mut(b * s.subs() + sub) = _mm_cvtsi128_si32(sum);
        }
    }
}

/// What a tile reads: `TILE_ROWS` quantized rows and one panel of the matrix.
struct Operands<'a> {
    x: &'a [i8],
    x_scales: &'a [f32],
    sums: &'a [i32],
    k: usize,
    super_blocks: usize,
    quants: &'a [u8],
    d: *const f32,
    m: *const f32,
    sc: *const i8,
    mn: *const u8,
}

/// `u` of column `c`, input `i` of a super-block's packed bytes.
fn unpack_scalar(s: &Scheme, base: &[u8], c: usize, i: usize) -> u8 {
    let (g, within) = (i / 4, c * 4 + i % 4);
    if s.high_bits == 8 {
        return base[g * UNIT + within];
    }
    let low = (base[(g / 2) * UNIT + within] >> (4 * (g % 2))) & 0xF;
    if s.high_bits == 0 {
        return low;
    }
    let per = 8 / s.high_bits;
    let mask = (1u8 << s.high_bits) - 1;
    let plane = base[s.super_block * PANEL / 2 + (g / per) * UNIT + within];
    low | (((plane >> ((g % per) * s.high_bits)) & mask) << 4)
}

/// A format's scheme as compile-time constants, so that each kernel is compiled per format.
trait Layout {
    const FORMAT: StoredFormat;
    const SB: usize;
    const SUB: usize;
    const HIGH: usize;
    const OFFSET: i32;
    const MIN: bool;
    const SUB_SCALES: bool;
    const QUANT_BYTES: usize = if Self::HIGH == 8 {
        PANEL * Self::SB
    } else {
        Self::SB * PANEL / 2 + Self::SB * PANEL * Self::HIGH / 8
    };
    const SUBS: usize = Self::SB / Self::SUB;
}

macro_rules! layouts {
    ($($name:ident: $format:ident, $sb:expr, $sub:expr, $high:expr, $offset:expr, $min:expr, $subs:expr;)*) => {
        $(
            struct $name;
            impl Layout for $name {
                const FORMAT: StoredFormat = StoredFormat::$format;
                const SB: usize = $sb;
                const SUB: usize = $sub;
                const HIGH: usize = $high;
                const OFFSET: i32 = $offset;
                const MIN: bool = $min;
                const SUB_SCALES: bool = $subs;
            }
        )*

        /// Runs the tile of `format` on `path`.
        ///
        /// # Safety
        /// `path` is one the CPU supports, and `o`'s pointers cover one panel.
        unsafe fn dispatch(
            format: StoredFormat,
            path: StoredPath,
            o: &Operands,
            tile: &mut [[f32; PANEL]; TILE_ROWS],
        ) {
            match format {
                $(StoredFormat::$format => {
                    debug_assert_eq!($name::FORMAT.scheme().quant_bytes(), $name::QUANT_BYTES);
                    match path {
                        #[cfg(target_arch = "x86_64")]
                        StoredPath::Avx512Vnni => tile_avx512_vnni::<$name>(o, tile),
                        #[cfg(target_arch = "x86_64")]
                        StoredPath::Avx2 => tile_avx2::<$name>(o, tile),
                        #[cfg(not(target_arch = "x86_64"))]
                        StoredPath::Avx512Vnni | StoredPath::Avx2 => unreachable!("x86_64 paths"),
                        StoredPath::Portable => tile_portable::<$name>(o, tile),
                    }
                })*
            }
        }
    };
}

layouts! {
    LayoutQ4_0: Q4_0, 32, 32, 0, 8, false, false;
    LayoutQ4_1: Q4_1, 32, 32, 0, 0, true, false;
    LayoutQ5_0: Q5_0, 32, 32, 1, 16, false, false;
    LayoutQ5_1: Q5_1, 32, 32, 1, 0, true, false;
    LayoutQ8_0: Q8_0, 32, 32, 8, 128, false, false;
    LayoutQ2K: Q2K, 256, 16, 0, 0, true, true;
    LayoutQ3K: Q3K, 256, 16, 0, 4, false, true;
    LayoutQ4K: Q4K, 256, 32, 0, 0, true, true;
    LayoutQ5K: Q5K, 256, 32, 1, 0, true, true;
    LayoutQ6K: Q6K, 256, 16, 2, 32, false, true;
}

/// The reference tile in plain Rust: the same integers and the same float steps as every path.
fn tile_portable<L: Layout>(o: &Operands, tile: &mut [[f32; PANEL]; TILE_ROWS]) {
    let s = L::FORMAT.scheme();
    for (r, out_row) in tile.iter_mut().enumerate() {
        for (c, out) in out_row.iter_mut().enumerate() {
            let mut acc = 0f32;
            for sb in 0..o.super_blocks {
                let base = &o.quants[sb * L::QUANT_BYTES..(sb + 1) * L::QUANT_BYTES];
                let (mut isum, mut imin) = (0i32, 0i32);
                for sub in 0..L::SUBS {
                    let sum = o.sums[r * (o.k / L::SUB) + sb * L::SUBS + sub];
                    let mut dot = -L::OFFSET * sum;
                    for i in sub * L::SUB..(sub + 1) * L::SUB {
                        let u = unpack_scalar(&s, base, c, i) as i32;
                        dot += u * o.x[r * o.k + sb * L::SB + i] as i32;
                    }
                    let at = (sb * L::SUBS + sub) * PANEL + c;
                    if L::SUB_SCALES {
                        // SAFETY: `sc` and `mn` cover the panel's sub-blocks.
                        isum += unsafe { *o.sc.add(at) } as i32 * dot;
                        if L::MIN {
                            imin += unsafe { *o.mn.add(at) } as i32 * sum;
                        }
                    } else {
                        isum += dot;
                        imin += sum;
                    }
                }
                let x_scale = o.x_scales[r * o.super_blocks + sb];
                // SAFETY: `d` and `m` cover the panel's super-blocks.
                let d = unsafe { *o.d.add(sb * PANEL + c) };
                acc = (isum as f32 * x_scale).mul_add(d, acc);
                if L::MIN {
                    let m = unsafe { *o.m.add(sb * PANEL + c) };
                    acc = (imin as f32 * x_scale).mul_add(m, acc);
                }
            }
            *out = acc;
        }
    }
}

/// The AVX-512 VNNI tile, one half of the panel (16 columns) at a time: per group of 4 inputs,
/// the weights unpacked into one register of 64 unsigned bytes, then one `vpdpbusd` per row.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
unsafe fn tile_avx512_vnni<L: Layout>(o: &Operands, tile: &mut [[f32; PANEL]; TILE_ROWS]) {
    use std::arch::x86_64::*;
    let subs_per_row = o.k / L::SUB;
    assert!(o.x.len() >= TILE_ROWS * o.k && o.quants.len() >= o.super_blocks * L::QUANT_BYTES);
    assert!(o.sums.len() >= TILE_ROWS * subs_per_row);
    assert!(o.x_scales.len() >= TILE_ROWS * o.super_blocks);
    let low_mask = _mm512_set1_epi8(0x0F);
    let plane_mask = _mm512_set1_epi8(((1u16 << L::HIGH.min(7)) - 1) as i8);
    let x = o.x.as_ptr();
    for half in 0..2 {
        let mut acc = [_mm512_setzero_ps(); TILE_ROWS];
        for sb in 0..o.super_blocks {
            // SAFETY (all loads below): the asserts and the panel's layout bound every offset.
            let base = o.quants.as_ptr().add(sb * L::QUANT_BYTES + half * 64);
            let mut isum = [_mm512_setzero_si512(); TILE_ROWS];
            let mut imin = [_mm512_setzero_si512(); TILE_ROWS];
            for sub in 0..L::SUBS {
                let sum_at = sb * L::SUBS + sub;
                let mut dots = [_mm512_setzero_si512(); TILE_ROWS];
                if L::OFFSET != 0 {
                    for (r, dot) in dots.iter_mut().enumerate() {
                        *dot = _mm512_set1_epi32(
                            -L::OFFSET * *o.sums.get_unchecked(r * subs_per_row + sum_at),
                        );
                    }
                }
                for g in sub * L::SUB / 4..(sub + 1) * L::SUB / 4 {
                    let w = if L::HIGH == 8 {
                        _mm512_loadu_si512(base.add(g * UNIT) as *const _)
                    } else {
                        let v = _mm512_loadu_si512(base.add((g / 2) * UNIT) as *const _);
                        let low = if g % 2 == 0 {
                            v
                        } else {
                            _mm512_srli_epi16::<4>(v)
                        };
                        let low = _mm512_and_si512(low, low_mask);
                        if let Some(per) = 8usize.checked_div(L::HIGH) {
                            let plane = _mm512_loadu_si512(
                                base.add(L::SB * PANEL / 2 + (g / per) * UNIT) as *const _,
                            );
                            let shift = _mm_cvtsi32_si128(((g % per) * L::HIGH) as i32);
                            let bits = _mm512_and_si512(_mm512_srl_epi16(plane, shift), plane_mask);
                            _mm512_or_si512(low, _mm512_slli_epi16::<4>(bits))
                        } else {
                            low
                        }
                    };
                    for (r, dot) in dots.iter_mut().enumerate() {
                        let four =
                            (x.add(r * o.k + sb * L::SB + g * 4) as *const i32).read_unaligned();
                        *dot = _mm512_dpbusd_epi32(*dot, w, _mm512_set1_epi32(four));
                    }
                }
                if L::SUB_SCALES {
                    let at = sum_at * PANEL + half * 16;
                    let scales = _mm512_cvtepi8_epi32(_mm_loadu_si128(o.sc.add(at) as *const _));
                    for (isum, dot) in isum.iter_mut().zip(&dots) {
                        *isum = _mm512_add_epi32(*isum, _mm512_mullo_epi32(*dot, scales));
                    }
                    if L::MIN {
                        let mins = _mm512_cvtepu8_epi32(_mm_loadu_si128(o.mn.add(at) as *const _));
                        for (r, imin) in imin.iter_mut().enumerate() {
                            let sum = *o.sums.get_unchecked(r * subs_per_row + sum_at);
                            *imin = _mm512_add_epi32(
                                *imin,
                                _mm512_mullo_epi32(mins, _mm512_set1_epi32(sum)),
                            );
                        }
                    }
                } else {
                    for (r, (isum, dot)) in isum.iter_mut().zip(&dots).enumerate() {
                        *isum = _mm512_add_epi32(*isum, *dot);
                        if L::MIN {
                            let sum = *o.sums.get_unchecked(r * subs_per_row + sum_at);
                            imin[r] = _mm512_add_epi32(imin[r], _mm512_set1_epi32(sum));
                        }
                    }
                }
            }
            let d = _mm512_loadu_ps(o.d.add(sb * PANEL + half * 16));
            for (r, acc) in acc.iter_mut().enumerate() {
                let x_scale = _mm512_set1_ps(*o.x_scales.get_unchecked(r * o.super_blocks + sb));
                let t = _mm512_mul_ps(_mm512_cvtepi32_ps(isum[r]), x_scale);
                *acc = _mm512_fmadd_ps(t, d, *acc);
                if L::MIN {
                    let m = _mm512_loadu_ps(o.m.add(sb * PANEL + half * 16));
                    let t = _mm512_mul_ps(_mm512_cvtepi32_ps(imin[r]), x_scale);
                    *acc = _mm512_fmadd_ps(t, m, *acc);
                }
            }
        }
        for (row, acc) in tile.iter_mut().zip(acc.iter()) {
            _mm512_storeu_ps(row.as_mut_ptr().add(half * 16), *acc);
        }
    }
}

/// The AVX2 tile, 4 rows × 8 columns at a time: `vpmaddubsw(u, x)` (no saturation: `u` ≤ 63)
/// and `vpmaddwd` by ones; Q8_0 (`u` up to 255) as `vpmaddubsw(|q|, x·sign(q))` with
/// `q = u − 128`, which is the offset product itself. Then the same steps as every path.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn tile_avx2<L: Layout>(o: &Operands, tile: &mut [[f32; PANEL]; TILE_ROWS]) {
    use std::arch::x86_64::*;
    let subs_per_row = o.k / L::SUB;
    assert!(o.x.len() >= TILE_ROWS * o.k && o.quants.len() >= o.super_blocks * L::QUANT_BYTES);
    assert!(o.sums.len() >= TILE_ROWS * subs_per_row);
    assert!(o.x_scales.len() >= TILE_ROWS * o.super_blocks);
    const QUAD: usize = 4;
    let low_mask = _mm256_set1_epi8(0x0F);
    let plane_mask = _mm256_set1_epi8(((1u16 << L::HIGH.min(7)) - 1) as i8);
    let ones = _mm256_set1_epi16(1);
    let top_bit = _mm256_set1_epi8(-128);
    let x = o.x.as_ptr();
    for rows in (0..TILE_ROWS).step_by(QUAD) {
        for quarter in 0..4 {
            let mut acc = [_mm256_setzero_ps(); QUAD];
            for sb in 0..o.super_blocks {
                // SAFETY (all loads below): the asserts and the panel's layout bound them.
                let base = o.quants.as_ptr().add(sb * L::QUANT_BYTES + quarter * 32);
                let mut isum = [_mm256_setzero_si256(); QUAD];
                let mut imin = [_mm256_setzero_si256(); QUAD];
                for sub in 0..L::SUBS {
                    let sum_at = sb * L::SUBS + sub;
                    // Macros rather than closures: closures are compiled without the function's
                    // target features.
                    macro_rules! sum {
                        ($r:expr) => {
                            *o.sums.get_unchecked((rows + $r) * subs_per_row + sum_at)
                        };
                    }
                    let mut dots = [_mm256_setzero_si256(); QUAD];
                    if L::OFFSET != 0 && L::HIGH != 8 {
                        for (r, dot) in dots.iter_mut().enumerate() {
                            *dot = _mm256_set1_epi32(-L::OFFSET * sum!(r));
                        }
                    }
                    for g in sub * L::SUB / 4..(sub + 1) * L::SUB / 4 {
                        macro_rules! four {
                            ($r:expr) => {{
                                let at = (rows + $r) * o.k + sb * L::SB + g * 4;
                                _mm256_set1_epi32((x.add(at) as *const i32).read_unaligned())
                            }};
                        }
                        if L::HIGH == 8 {
                            let w = _mm256_loadu_si256(base.add(g * UNIT) as *const _);
                            let q = _mm256_xor_si256(w, top_bit);
                            let magnitude = _mm256_sign_epi8(q, q);
                            for (r, dot) in dots.iter_mut().enumerate() {
                                let p =
                                    _mm256_maddubs_epi16(magnitude, _mm256_sign_epi8(four!(r), q));
                                *dot = _mm256_add_epi32(*dot, _mm256_madd_epi16(p, ones));
                            }
                            continue;
                        }
                        let v = _mm256_loadu_si256(base.add((g / 2) * UNIT) as *const _);
                        let low = if g % 2 == 0 {
                            v
                        } else {
                            _mm256_srli_epi16::<4>(v)
                        };
                        let mut w = _mm256_and_si256(low, low_mask);
                        if let Some(per) = 8usize.checked_div(L::HIGH) {
                            let plane = _mm256_loadu_si256(
                                base.add(L::SB * PANEL / 2 + (g / per) * UNIT) as *const _,
                            );
                            let shift = _mm_cvtsi32_si128(((g % per) * L::HIGH) as i32);
                            let bits = _mm256_and_si256(_mm256_srl_epi16(plane, shift), plane_mask);
                            w = _mm256_or_si256(w, _mm256_slli_epi16::<4>(bits));
                        }
                        for (r, dot) in dots.iter_mut().enumerate() {
                            let p = _mm256_maddubs_epi16(w, four!(r));
                            *dot = _mm256_add_epi32(*dot, _mm256_madd_epi16(p, ones));
                        }
                    }
                    if L::SUB_SCALES {
                        let at = sum_at * PANEL + quarter * 8;
                        let scales =
                            _mm256_cvtepi8_epi32(_mm_loadl_epi64(o.sc.add(at) as *const _));
                        for (isum, dot) in isum.iter_mut().zip(&dots) {
                            *isum = _mm256_add_epi32(*isum, _mm256_mullo_epi32(*dot, scales));
                        }
                        if L::MIN {
                            let mins =
                                _mm256_cvtepu8_epi32(_mm_loadl_epi64(o.mn.add(at) as *const _));
                            for (r, imin) in imin.iter_mut().enumerate() {
                                *imin = _mm256_add_epi32(
                                    *imin,
                                    _mm256_mullo_epi32(mins, _mm256_set1_epi32(sum!(r))),
                                );
                            }
                        }
                    } else {
                        for (r, (isum, dot)) in isum.iter_mut().zip(&dots).enumerate() {
                            *isum = _mm256_add_epi32(*isum, *dot);
                            if L::MIN {
                                imin[r] = _mm256_add_epi32(imin[r], _mm256_set1_epi32(sum!(r)));
                            }
                        }
                    }
                }
                let d = _mm256_loadu_ps(o.d.add(sb * PANEL + quarter * 8));
                for (r, acc) in acc.iter_mut().enumerate() {
                    let x_scale =
                        _mm256_set1_ps(*o.x_scales.get_unchecked((rows + r) * o.super_blocks + sb));
                    let t = _mm256_mul_ps(_mm256_cvtepi32_ps(isum[r]), x_scale);
                    *acc = _mm256_fmadd_ps(t, d, *acc);
                    if L::MIN {
                        let m = _mm256_loadu_ps(o.m.add(sb * PANEL + quarter * 8));
                        let t = _mm256_mul_ps(_mm256_cvtepi32_ps(imin[r]), x_scale);
                        *acc = _mm256_fmadd_ps(t, m, *acc);
                    }
                }
            }
            for (r, acc) in acc.iter().enumerate() {
                _mm256_storeu_ps(tile[rows + r].as_mut_ptr().add(quarter * 8), *acc);
            }
        }
    }
}

/// `y = x · Wᵀ` for decoded rows with plain scalar arithmetic in the kernels' order (the
/// activations quantized as they quantize them): what every path must equal, for tests.
#[allow(clippy::needless_range_loop)] // indices name the sub-blocks as the kernels do
pub fn reference(
    format: StoredFormat,
    rows_w: &[DecodedRow],
    x: &[f32],
    k_in: usize,
    rows: usize,
) -> Vec<f32> {
    let s = format.scheme();
    let k = rows_w.first().map_or(0, |r| r.u.len());
    let (sbs, subs) = (k / s.super_block, k / s.sub_block);
    let mut y = vec![0f32; rows * rows_w.len()];
    for r in 0..rows {
        let (mut q, mut scales, mut sums) = (vec![0i8; k], vec![0f32; sbs], vec![0i32; subs]);
        quantize_row_scalar(
            &x[r * k_in..(r + 1) * k_in],
            &s,
            &mut q,
            &mut scales,
            &mut sums,
        );
        for (c, w) in rows_w.iter().enumerate() {
            let mut acc = 0f32;
            for sb in 0..sbs {
                let (mut isum, mut imin) = (0i32, 0i32);
                for sub in sb * s.subs()..(sb + 1) * s.subs() {
                    let range = sub * s.sub_block..(sub + 1) * s.sub_block;
                    let dot: i32 = range
                        .clone()
                        .map(|i| (w.u[i] as i32 - s.offset) * q[i] as i32)
                        .sum();
                    let (sc, mn) = match s.sub_scales {
                        true => (w.sc[sub] as i32, w.mn.get(sub).map_or(0, |&m| m as i32)),
                        false => (1, 1),
                    };
                    isum += sc * dot;
                    imin += mn * sums[sub];
                }
                acc = (isum as f32 * scales[sb]).mul_add(w.d[sb], acc);
                if s.min {
                    acc = (imin as f32 * scales[sb]).mul_add(w.m[sb], acc);
                }
            }
            y[r * rows_w.len() + c] = acc;
        }
    }
    y
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::kernels::common::test_support::random_matrix;
    use candle_core::quantized::QTensor;
    use candle_core::{Device, Tensor};

    /// GGUF blocks of `format` made by candle's quantizer from random weights.
    fn gguf_matrix(format: StoredFormat, n: usize, k: usize, seed: u64) -> (Vec<u8>, QTensor) {
        let mut w = random_matrix(seed, n * k, 0.05);
        // An outlier weight and a zero block, as real matrices have.
        w[1] = 0.9;
        if k >= 64 {
            w[32..64].fill(0.0);
        }
        let t = Tensor::from_vec(w, (n, k), &Device::Cpu).unwrap();
        let dtype = format.ggml_dtype();
        let q = QTensor::quantize(&t, dtype).unwrap();
        (q.data().unwrap().to_vec(), q)
    }

    fn decoded(format: StoredFormat, bytes: &[u8], n: usize, k: usize) -> Vec<DecodedRow> {
        let row_bytes = bytes.len() / n;
        (0..n)
            .map(|r| {
                let mut row = DecodedRow::default();
                format.decode_row(&bytes[r * row_bytes..(r + 1) * row_bytes], &mut row);
                assert_eq!(row.u.len(), k);
                row
            })
            .collect()
    }

    #[test]
    fn decoding_gives_ggmls_weights_for_every_format() {
        for format in StoredFormat::ALL {
            let (n, k) = (3, 512);
            let (bytes, q) = gguf_matrix(format, n, k, 7);
            let want = q
                .dequantize(&Device::Cpu)
                .unwrap()
                .to_vec2::<f32>()
                .unwrap();
            for (r, row) in decoded(format, &bytes, n, k).iter().enumerate() {
                let mut got = vec![0f32; k];
                format.dequantize(row, &mut got);
                for i in 0..k {
                    assert!(
                        (got[i] - want[r][i]).abs() <= 1e-6 * want[r][i].abs().max(1e-3),
                        "{} row {r} input {i}: {} ≠ {}",
                        format.name(),
                        got[i],
                        want[r][i]
                    );
                }
            }
        }
    }

    fn check(format: StoredFormat, rows: usize, n: usize, k: usize) {
        let seed = (rows * 31 + n * 7 + k) as u64;
        let (bytes, _) = gguf_matrix(format, n, k, seed);
        let mut x = random_matrix(seed + 1, rows * k, 1.0);
        for r in 0..rows {
            x[r * k + 3] = 40.0; // an outlier channel
        }
        let expected = reference(format, &decoded(format, &bytes, n, k), &x, k, rows);
        let features = CpuFeatures::detect();
        for path in StoredPath::available(&features) {
            let m = StoredMatrix::from_gguf(format, &bytes, n, k, path).unwrap();
            let what = format!("{} {} at {rows}×{n}×{k}", format.name(), path.name());
            assert_same_bits(&m.matmul(&x, rows), &expected, &what);
        }
    }

    /// `got` equals `expected` to the bit, output by output.
    fn assert_same_bits(got: &[f32], expected: &[f32], what: &str) {
        for (i, (g, e)) in got.iter().zip(expected).enumerate() {
            assert!(g.to_bits() == e.to_bits(), "{what}, output {i}: {g} ≠ {e}");
        }
    }

    /// Two activation levels: on every path, exactly the reference's product of the 8-bit rows
    /// plus that of their rounding errors quantized again, and many times closer to the product
    /// of the decoded weights with the unquantized activations than one level.
    #[test]
    fn two_activation_levels_add_the_rounding_errors_product() {
        let (rows, n, k) = (9, 40, 512);
        for format in StoredFormat::ALL {
            let (bytes, q) = gguf_matrix(format, n, k, 5);
            let mut x = random_matrix(6, rows * k, 1.0);
            x[3] = 40.0;
            let weights = decoded(format, &bytes, n, k);
            let s = format.scheme();
            let mut residual = vec![0f32; rows * k];
            for r in 0..rows {
                let row = &x[r * k..(r + 1) * k];
                let (mut q8, mut scales) = (vec![0i8; k], vec![0f32; k / s.super_block]);
                let mut sums = vec![0i32; k / s.sub_block];
                quantize_row_scalar(row, &s, &mut q8, &mut scales, &mut sums);
                for i in 0..k {
                    residual[r * k + i] = row[i] - scales[i / s.super_block] * q8[i] as f32;
                }
            }
            let main = reference(format, &weights, &x, k, rows);
            let second = reference(format, &weights, &residual, k, rows);
            let expected: Vec<f32> = main.iter().zip(&second).map(|(m, r)| m + r).collect();
            let dense = q
                .dequantize(&Device::Cpu)
                .unwrap()
                .to_vec2::<f32>()
                .unwrap();
            let exact: Vec<f64> = (0..rows * n)
                .map(|i| {
                    let (r, c) = (i / n, i % n);
                    (0..k)
                        .map(|j| x[r * k + j] as f64 * dense[c][j] as f64)
                        .sum()
                })
                .collect();
            let error = |y: &[f32]| -> f64 {
                y.iter()
                    .zip(&exact)
                    .map(|(a, b)| (*a as f64 - b).abs())
                    .sum()
            };
            assert!(
                error(&expected) * 20.0 < error(&main),
                "{}: two levels {} vs one {}",
                format.name(),
                error(&expected),
                error(&main)
            );
            for path in StoredPath::available(&CpuFeatures::detect()) {
                let m = StoredMatrix::from_gguf(format, &bytes, n, k, path)
                    .unwrap()
                    .with_activation_levels(2);
                let what = format!("{} {} two levels", format.name(), path.name());
                assert_same_bits(&m.matmul(&x, rows), &expected, &what);
            }
        }
    }

    fn report_skipped() {
        let available = StoredPath::available(&CpuFeatures::detect());
        for path in [StoredPath::Avx512Vnni, StoredPath::Avx2] {
            if !available.contains(&path) {
                println!(
                    "skipped the {} stored-format path: this CPU lacks it",
                    path.name()
                );
            }
        }
    }

    #[test]
    fn every_path_equals_the_reference_at_odd_sizes() {
        for format in StoredFormat::ALL {
            let block = format.block();
            for (rows, n, k) in [
                (1, 1, block),
                (3, 33, block * 2),
                (9, 47, block * 3),
                (70, 65, block),
            ] {
                check(format, rows, n, k);
            }
        }
        report_skipped();
    }

    /// The real models' and an 8B model's shapes (k a multiple of 256 for the k-quants).
    #[test]
    fn every_path_equals_the_reference_at_the_models_shapes() {
        for format in StoredFormat::ALL {
            for (n, k) in [
                (960, 576),
                (576, 1536),
                (1152, 896),
                (896, 4864),
                (4096, 640),
            ] {
                if k % format.block() == 0 {
                    check(format, 9, n, k);
                }
            }
            // Llama-3.1-8B's down projection, a few columns of it, and its attention input.
            check(format, 3, 40, 14336);
            check(format, 3, 40, 4096);
        }
        report_skipped();
    }

    #[test]
    fn float_sources_go_through_q8_0_with_padding() {
        let (rows, n, k) = (5, 37, 70);
        let w = random_matrix(3, n * k, 0.05);
        let x = random_matrix(4, rows * k, 1.0);
        let decoded: Vec<DecodedRow> = (0..n)
            .map(|r| {
                let mut row = DecodedRow::default();
                StoredFormat::encode_q8(&w[r * k..(r + 1) * k], &mut row);
                row
            })
            .collect();
        let expected = reference(StoredFormat::Q8_0, &decoded, &x, k, rows);
        for path in StoredPath::available(&CpuFeatures::detect()) {
            let got = StoredMatrix::from_f32(&w, n, k, path).matmul(&x, rows);
            assert!(got
                .iter()
                .zip(&expected)
                .all(|(g, e)| g.to_bits() == e.to_bits()));
        }
        for r in 0..rows {
            for c in 0..n {
                let exact: f32 = (0..k).map(|i| x[r * k + i] * w[c * k + i]).sum();
                assert!((expected[r * n + c] - exact).abs() < 0.02);
            }
        }
        // Rows read back stop at the caller's 70 inputs, not the 96 of whole blocks.
        let m = StoredMatrix::from_f32(&w, n, k, StoredPath::Portable);
        let mut row = vec![0f32; k];
        for r in [0, 36] {
            m.dequantize_row(r, &mut row);
            let mut full = vec![0f32; decoded[r].u.len()];
            StoredFormat::Q8_0.dequantize(&decoded[r], &mut full);
            assert_eq!(row, full[..k]);
        }
    }

    #[test]
    fn rows_read_back_from_the_packed_layout() {
        for format in StoredFormat::ALL {
            let (n, k) = (40, 512);
            let (bytes, q) = gguf_matrix(format, n, k, 11);
            let want = q
                .dequantize(&Device::Cpu)
                .unwrap()
                .to_vec2::<f32>()
                .unwrap();
            let m = StoredMatrix::from_gguf(format, &bytes, n, k, StoredPath::Portable).unwrap();
            let mut got = vec![0f32; k];
            for r in [0, 31, 32, 39] {
                m.dequantize_row(r, &mut got);
                let decoded = &decoded(format, &bytes, n, k)[r];
                let mut exact = vec![0f32; k];
                format.dequantize(decoded, &mut exact);
                assert_eq!(got, exact, "{} row {r}", format.name());
                assert!(got.iter().zip(&want[r]).all(|(g, w)| (g - w).abs() < 1e-6));
            }
        }
    }

    #[test]
    fn activation_rows_quantize_as_the_scalar_code_does() {
        for format in [StoredFormat::Q8_0, StoredFormat::Q6K, StoredFormat::Q4K] {
            let s = format.scheme();
            let k = s.super_block * 3;
            let mut row = random_matrix(k as u64, k, 3.0);
            for (i, v) in row.iter_mut().enumerate().take(16) {
                *v = if i == 0 { 127.0 } else { i as f32 - 7.5 };
            }
            let (sbs, subs) = (k / s.super_block, k / s.sub_block);
            let mut a = (vec![0i8; k], vec![0f32; sbs], vec![0i32; subs]);
            let mut b = a.clone();
            quantize_row(&row, &s, &mut a.0, &mut a.1, &mut a.2);
            quantize_row_scalar(&row, &s, &mut b.0, &mut b.1, &mut b.2);
            assert_eq!(a, b, "{}", format.name());
        }
    }
}
