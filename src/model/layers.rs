//! Building blocks shared by the architectures: linear layers that are either quantized or
//! dequantized, rotary tables indexed by per-token positions, the split of projections into
//! heads, and gated activations.

use std::sync::Arc;

use anyhow::{bail, Result};
use candle_core::quantized::{QMatMul, QStorage, QTensor};
use candle_core::{DType, Device, Module, Tensor, D};
use rayon::prelude::*;

use super::batch::PackedBatch;
use super::cpu_ops;
pub use super::cpu_ops::GateActivation;
use super::device::{is_float_format, ActivationLevels, Placement, Precision};
use super::kernels::bf16::{Bf16Matrix, Bf16Path};
use super::kernels::int8::{Int8Matrix, Int8Path};
use super::kernels::stored::{StoredFormat, StoredMatrix, StoredPath};
use super::kernels::CpuFeatures;
use super::rope::RopeScaling;

/// A weight matrix `[out, in]`, applied as `x · Wᵀ`: with candle's kernels (dense or
/// quantized), or with one of valuelens's own CPU kernels.
pub struct Linear {
    parts: Vec<QMatMul>,
    packed: Option<Packed>,
}

/// A matrix packed for one of valuelens's CPU kernels.
enum Packed {
    Int8(Int8Matrix),
    Bf16(Bf16Matrix),
    /// GGUF blocks as stored: one matrix per run of stacked parts in one format, their outputs
    /// side by side (shared with the embedding table where the LM head is tied to it).
    Stored(Vec<Arc<StoredMatrix>>),
}

impl Linear {
    /// One matrix whose output rows are the rows of `parts` stacked in order (e.g. Q, K and V),
    /// so that one large matmul replaces several small ones; placed as `placement` says.
    pub fn stacked(parts: Vec<QTensor>, placement: &Placement) -> Result<Self> {
        if placement.precision == Precision::Int8 || placement.cpu_bf16_kernel() {
            return Self::packed(&parts, placement);
        }
        if placement.precision.keeps_blocks() && placement.device.is_cpu() {
            return Self::stored(&parts, &placement.activation_levels);
        }
        let quantized =
            placement.precision.keeps_blocks() && parts.iter().all(|p| !is_float_format(p.dtype()));
        if !quantized {
            let dense = parts
                .iter()
                .map(|p| p.dequantize(&Device::Cpu))
                .collect::<candle_core::Result<Vec<_>>>()?;
            // Float-format weights of a quantized file compute in f32, as its activations do.
            let w = placement.put(&Tensor::cat(&dense, 0)?)?;
            return Ok(Self {
                parts: vec![QMatMul::Tensor(w)],
                packed: None,
            });
        }
        let same_dtype = parts.windows(2).all(|w| w[0].dtype() == w[1].dtype());
        let parts = if same_dtype && parts.len() > 1 {
            let (_, cols) = parts[0].shape().dims2()?;
            let mut rows = 0;
            let mut bytes = Vec::new();
            for p in &parts {
                let (r, c) = p.shape().dims2()?;
                if c != cols {
                    bail!("cannot stack weights of {cols} and {c} columns");
                }
                rows += r;
                bytes.extend_from_slice(&p.data()?);
            }
            let storage = QStorage::from_data(bytes.into(), &Device::Cpu, parts[0].dtype())?;
            vec![QTensor::new(storage, (rows, cols))?]
        } else {
            parts
        };
        Ok(Self {
            parts: parts
                .into_iter()
                .map(|p| Ok(QMatMul::from_qtensor(placement.quantized(p)?)?))
                .collect::<Result<_>>()?,
            packed: None,
        })
    }

    /// The stacked parts dequantized and packed for valuelens's kernel of the placement's
    /// precision (int8 or bf16, on the fastest path this CPU has).
    fn packed(parts: &[QTensor], placement: &Placement) -> Result<Self> {
        if !placement.device.is_cpu() {
            bail!("--dtype int8 computes on the CPU only; on a GPU use --dtype bf16 or f16");
        }
        let mut values = Vec::new();
        let (mut rows, mut cols) = (0, None);
        for part in parts {
            let (r, c) = part.shape().dims2()?;
            if let Some(cols) = cols.filter(|&cols| cols != c) {
                bail!("cannot stack weights of {cols} and {c} columns");
            }
            cols = Some(c);
            rows += r;
            values.extend(
                part.dequantize(&Device::Cpu)?
                    .flatten_all()?
                    .to_vec1::<f32>()?,
            );
        }
        let (features, cols) = (CpuFeatures::detect(), cols.unwrap_or(0));
        let packed = match placement.precision {
            Precision::Bf16 => Packed::Bf16(Bf16Matrix::new(
                &values,
                rows,
                cols,
                Bf16Path::select(&features)?,
            )),
            _ => Packed::Int8(Int8Matrix::new(
                &values,
                rows,
                cols,
                Int8Path::select(&features)?,
            )),
        };
        Ok(Self {
            parts: Vec::new(),
            packed: Some(packed),
        })
    }

    /// The stacked parts repacked for the stored-format kernels: parts in a format they cover
    /// keep their blocks; float parts, and formats without a kernel, become 8-bit (Q8_0's
    /// scheme with f32 scales). Consecutive parts of one format share one matrix.
    fn stored(parts: &[QTensor], activation_levels: &ActivationLevels) -> Result<Self> {
        let path = StoredPath::select(&CpuFeatures::detect())?;
        let mut matrices = Vec::new();
        let mut start = 0;
        while start < parts.len() {
            let format = StoredFormat::of(parts[start].dtype());
            let end = (start..parts.len())
                .find(|&i| StoredFormat::of(parts[i].dtype()) != format)
                .unwrap_or(parts.len());
            let group = &parts[start..end];
            let (_, cols) = group[0].shape().dims2()?;
            let mut sizes = Vec::with_capacity(group.len());
            for part in group {
                let (r, c) = part.shape().dims2()?;
                if c != cols {
                    bail!("cannot stack weights of {cols} and {c} columns");
                }
                sizes.push(r);
            }
            let rows: usize = sizes.iter().sum();
            let matrix = match format {
                Some(format) => {
                    let data = group
                        .iter()
                        .map(|p| p.data())
                        .collect::<candle_core::Result<Vec<_>>>()?;
                    if !cols.is_multiple_of(format.block()) {
                        bail!(
                            "a {} matrix of {cols} columns: not whole blocks of {}",
                            format.name(),
                            format.block()
                        );
                    }
                    let row_bytes = cols / format.block() * format.block_bytes();
                    let offsets: Vec<usize> = sizes
                        .iter()
                        .scan(0, |first, &r| {
                            let at = *first;
                            *first += r;
                            Some(at)
                        })
                        .collect();
                    StoredMatrix::from_rows(format, rows, cols, cols, path, |r, out| {
                        let part = offsets.partition_point(|&first| first <= r) - 1;
                        let local = r - offsets[part];
                        format.decode_row(&data[part][local * row_bytes..][..row_bytes], out)
                    })
                }
                None => {
                    let source = group[0].dtype();
                    if !is_float_format(source) {
                        say_converted_once(source);
                    }
                    let mut values = Vec::with_capacity(rows * cols);
                    for part in group {
                        values.extend(
                            part.dequantize(&Device::Cpu)?
                                .flatten_all()?
                                .to_vec1::<f32>()?,
                        );
                    }
                    StoredMatrix::from_f32(&values, rows, cols, path)
                }
            };
            matrices.push(Arc::new(
                matrix.with_shared_levels(activation_levels.clone()),
            ));
            start = end;
        }
        Ok(Self {
            parts: Vec::new(),
            packed: Some(Packed::Stored(matrices)),
        })
    }

    /// A matrix already repacked for the stored-format kernels (a tied embedding table).
    pub fn shared_stored(matrix: Arc<StoredMatrix>) -> Self {
        Self {
            parts: Vec::new(),
            packed: Some(Packed::Stored(vec![matrix])),
        }
    }

    /// The stored-format kernels' formats and path, when this layer uses them.
    pub fn stored_formats(&self) -> Vec<(StoredFormat, StoredPath)> {
        match &self.packed {
            Some(Packed::Stored(m)) => m.iter().map(|m| (m.format(), m.path())).collect(),
            _ => Vec::new(),
        }
    }

    /// The int8 kernel's path, when this layer uses it.
    pub fn int8_path(&self) -> Option<Int8Path> {
        match &self.packed {
            Some(Packed::Int8(m)) => Some(m.path()),
            _ => None,
        }
    }

    /// The bf16 kernel's path, when this layer uses it.
    pub fn bf16_path(&self) -> Option<Bf16Path> {
        match &self.packed {
            Some(Packed::Bf16(m)) => Some(m.path()),
            _ => None,
        }
    }

    pub fn new(weight: QTensor, placement: &Placement) -> Result<Self> {
        Self::stacked(vec![weight], placement)
    }

    /// A dense matrix already in place (e.g. a tied embedding table used as LM head).
    pub fn dense(weight: Tensor) -> Self {
        Self {
            parts: vec![QMatMul::Tensor(weight)],
            packed: None,
        }
    }

    /// `x: [rows, in]` → `[rows, out]`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if let Some(packed) = &self.packed {
            let x = x.to_dtype(DType::F32)?.contiguous()?;
            let rows = x.dim(0)?;
            let (storage, layout) = x.storage_and_layout();
            let candle_core::Storage::Cpu(cpu) = &*storage else {
                bail!("valuelens's CPU kernels need their input on the CPU");
            };
            let values = cpu_ops::slice_of(cpu.as_slice::<f32>()?, layout)?;
            let (out, n) = match packed {
                Packed::Int8(m) => (m.matmul(values, rows), m.rows()),
                Packed::Bf16(m) => (m.matmul(values, rows), m.rows()),
                Packed::Stored(parts) if parts.len() == 1 => {
                    (parts[0].matmul(values, rows), parts[0].rows())
                }
                Packed::Stored(parts) => {
                    let n: usize = parts.iter().map(|m| m.rows()).sum();
                    let mut out = vec![0f32; rows * n];
                    let mut first = 0;
                    for part in parts {
                        let y = part.matmul(values, rows);
                        for (dst, src) in out.chunks_mut(n).zip(y.chunks(part.rows().max(1))) {
                            dst[first..first + part.rows()].copy_from_slice(src);
                        }
                        first += part.rows();
                    }
                    (out, n)
                }
            };
            return Ok(Tensor::from_vec(out, (rows, n), &Device::Cpu)?);
        }
        if x.dim(0)? == 1 {
            // gemm takes its matrix-vector path for a single row, which sums in another
            // order than its matrix kernel: a row alone would not score as it does in a batch.
            let twice = Tensor::cat(&[x, x], 0)?;
            return Ok(self.forward(&twice)?.narrow(0, 0, 1)?);
        }
        if self.parts.len() == 1 {
            return Ok(self.parts[0].forward(x)?);
        }
        let outs = self
            .parts
            .iter()
            .map(|p| p.forward(x))
            .collect::<candle_core::Result<Vec<_>>>()?;
        Ok(Tensor::cat(&outs, D::Minus1)?)
    }
}

/// Says on stderr, once per process and format, that matrices in `format` (which has no
/// stored-format kernel) are converted to Q8_0 at load.
fn say_converted_once(format: candle_core::quantized::GgmlDType) {
    static SAID: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
    let name = format!("{format:?}");
    let mut said = SAID.lock().unwrap_or_else(|e| e.into_inner());
    if !said.contains(&name) {
        eprintln!(
            "valuelens: {name} has no stored-format kernel; its matrices are converted to Q8_0 \
             at load (8.5 bits per weight)"
        );
        said.push(name);
    }
}

/// The token embedding table: dense on the device, or — with `--dtype quantized` on the CPU —
/// kept only in its stored format (the form a tied LM head multiplies with), rows dequantized
/// as tokens look them up, so the table is held once and at about its size in the file.
pub enum Embeddings {
    Dense(Tensor),
    Stored(Arc<StoredMatrix>),
}

impl Embeddings {
    pub fn new(table: &QTensor, placement: &Placement) -> Result<Self> {
        if placement.precision.keeps_blocks() && placement.device.is_cpu() {
            let Some(Packed::Stored(mut parts)) =
                Linear::stored(std::slice::from_ref(table), &placement.activation_levels)?.packed
            else {
                unreachable!("Linear::stored packs for the stored-format kernels")
            };
            return Ok(Self::Stored(parts.remove(0)));
        }
        Ok(Self::Dense(placement.dense(table)?))
    }

    /// The rows of `ids`, `[T, hidden]`.
    pub fn lookup(&self, ids: &Tensor) -> Result<Tensor> {
        match self {
            Self::Dense(table) => Ok(table.index_select(ids, 0)?),
            Self::Stored(table) => {
                let ids = ids.to_vec1::<u32>()?;
                let (vocab, hidden) = (table.rows(), table.cols());
                if let Some(&bad) = ids.iter().find(|&&id| id as usize >= vocab) {
                    bail!("token id {bad} is outside the model's vocabulary of {vocab}");
                }
                let mut values = vec![0f32; ids.len() * hidden];
                values
                    .par_chunks_mut(hidden.max(1))
                    .zip(ids.par_iter())
                    .for_each(|(row, &id)| table.dequantize_row(id as usize, row));
                Ok(Tensor::from_vec(values, (ids.len(), hidden), &Device::Cpu)?)
            }
        }
    }

    /// `source` (the table as the checkpoint stored it) where a tied LM head may still need
    /// it, i.e. unless this table is kept in its stored form, which is the head itself.
    pub fn dense_only(&self, source: QTensor) -> Option<QTensor> {
        match self {
            Self::Dense(_) => Some(source),
            Self::Stored(_) => None,
        }
    }

    /// The LM head tied to this table: the stored matrix itself, or a dense one.
    pub fn tied_head(&self) -> Linear {
        match self {
            Self::Dense(table) => Linear::dense(table.clone()),
            Self::Stored(table) => Linear::shared_stored(table.clone()),
        }
    }

    pub fn device(&self) -> Device {
        match self {
            Self::Dense(table) => table.device().clone(),
            Self::Stored(_) => Device::Cpu,
        }
    }

    pub fn dtype(&self) -> DType {
        match self {
            Self::Dense(table) => table.dtype(),
            Self::Stored(_) => DType::F32,
        }
    }
}

/// cos/sin tables of rotary position embeddings, `[max_positions, rotary_dim / 2]`.
pub struct RopeTables {
    cos: Tensor,
    sin: Tensor,
}

impl RopeTables {
    pub fn new(
        rotary_dim: usize,
        theta: f32,
        max_positions: usize,
        placement: &Placement,
    ) -> Result<Self> {
        Self::linearly_scaled(rotary_dim, theta, 1.0, max_positions, placement)
    }

    /// Tables for positions divided by `factor` (linear RoPE scaling, as gemma 3's global layers
    /// use beyond 270M).
    pub fn linearly_scaled(
        rotary_dim: usize,
        theta: f32,
        factor: f32,
        max_positions: usize,
        placement: &Placement,
    ) -> Result<Self> {
        let inv_freq = RopeScaling::Linear { factor }.inv_freq(rotary_dim, theta)?;
        Self::from_inv_freq(&inv_freq, 1.0, max_positions, placement)
    }

    /// Tables of the given inverse frequencies (one per rotary pair), cos and sin multiplied by
    /// `magnitude` (longrope's attention factor; 1 otherwise). Computed in f32, kept in the
    /// activation dtype (as transformers does).
    pub fn from_inv_freq(
        inv_freq: &[f32],
        magnitude: f32,
        max_positions: usize,
        placement: &Placement,
    ) -> Result<Self> {
        let half = inv_freq.len();
        let mut cos = Vec::with_capacity(max_positions * half);
        let mut sin = Vec::with_capacity(max_positions * half);
        for p in 0..max_positions {
            for f in inv_freq {
                let angle = p as f32 * f;
                cos.push(angle.cos() * magnitude);
                sin.push(angle.sin() * magnitude);
            }
        }
        Ok(Self {
            cos: placement.put(&Tensor::from_vec(cos, (max_positions, half), &Device::Cpu)?)?,
            sin: placement.put(&Tensor::from_vec(sin, (max_positions, half), &Device::Cpu)?)?,
        })
    }

    /// Rows of the tables for each token's own position: `([T, d/2], [T, d/2])`.
    pub fn at(&self, positions: &Tensor) -> Result<(Tensor, Tensor)> {
        Ok((
            self.cos.index_select(positions, 0)?,
            self.sin.index_select(positions, 0)?,
        ))
    }
}

/// Per-forward tensors derived from the batch once and shared by every layer.
pub struct BatchTensors {
    pub ids: Tensor,
    pub cos: Tensor,
    pub sin: Tensor,
}

impl BatchTensors {
    pub fn new(batch: &PackedBatch, rope: &RopeTables) -> Result<Self> {
        let device = rope.cos.device();
        let ids = Tensor::new(batch.tokens.as_slice(), device)?;
        let positions = Tensor::new(batch.positions.as_slice(), device)?;
        let (cos, sin) = rope.at(&positions)?;
        Ok(Self { ids, cos, sin })
    }
}

/// How rotary embeddings pair up the dimensions of a head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RopeStyle {
    /// Adjacent pairs (2i, 2i + 1): llama's GGUF layout.
    Interleaved,
    /// The two halves (i, i + d/2): the NEOX layout of qwen2 and gemma.
    Halves,
}

/// `n` heads of `head_dim` starting at column `offset` of the projections `x: [T, ·]`, as
/// `[T, n, head_dim]`.
pub fn heads(x: &Tensor, offset: usize, n: usize, head_dim: usize) -> Result<Tensor> {
    let tokens = x.dim(0)?;
    Ok(x.narrow(1, offset, n * head_dim)?
        .reshape((tokens, n, head_dim))?)
}

/// `[T, n, head_dim]` → head-major `[n, T, head_dim]` with rotary embeddings applied at the
/// tokens' positions (`cos`, `sin` from [`BatchTensors`]), or without when `rope` is `None`.
pub fn head_major(t: &Tensor, rope: Option<(&Tensor, &Tensor, RopeStyle)>) -> Result<Tensor> {
    let t = t.transpose(0, 1)?.contiguous()?;
    let Some((cos, sin, style)) = rope else {
        return Ok(t);
    };
    let t = t.unsqueeze(0)?;
    let rotated = match style {
        RopeStyle::Interleaved => candle_nn::rotary_emb::rope_i(&t, cos, sin)?,
        RopeStyle::Halves => candle_nn::rotary_emb::rope(&t, cos, sin)?,
    };
    Ok(rotated.squeeze(0)?)
}

/// `act(gate) ⊙ up` for `gate_up = [gate | up]` (`[T, 2F]` → `[T, F]`).
pub fn gated(gate_up: &Tensor, activation: GateActivation) -> Result<Tensor> {
    if gate_up.device().is_cpu() && gate_up.dtype() == DType::F32 && gate_up.is_contiguous() {
        return cpu_ops::gated(gate_up, activation);
    }
    let ffn = gate_up.dim(1)? / 2;
    let gate = gate_up.narrow(1, 0, ffn)?;
    let gate = match activation {
        GateActivation::Silu => candle_nn::ops::silu(&gate)?,
        GateActivation::GeluTanh => gate.gelu()?,
    };
    Ok((gate * gate_up.narrow(1, ffn, ffn)?)?)
}
