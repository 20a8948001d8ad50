//! Where a model computes (`--device cpu|cuda[:N]`) and in which precision (`--dtype`), and
//! how weights read from a checkpoint (always on the CPU) are put there.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use candle_core::quantized::{GgmlDType, QStorage, QTensor};
use candle_core::{DType, Device, Tensor};

/// The precision a model computes in (`--dtype`): how its weights are kept in memory, and so
/// the dtype of its activations.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// Dequantized to f32 at load: the fastest path on CPU with candle's kernels, and the
    /// reference precision.
    F32,
    /// Weights in bf16. On a GPU, activations in bf16 too (softmaxes and log-softmax in f32):
    /// the usual precision there. On the CPU, every linear layer and the LM head multiply with
    /// valuelens's bf16 kernel (inputs rounded to bf16 at each product, f32 accumulation; AMX
    /// tiles where the CPU has AMX-BF16, else AVX-512 BF16, AVX2 or portable code with the same
    /// numbers on each, AMX's within rounding of theirs) and the rest stays f32.
    Bf16,
    /// Dequantized to f16 at load, activations in f16 (softmaxes and log-softmax in f32).
    F16,
    /// Kept in the file's quantized format. On the CPU every matrix (attention projections
    /// and LM head included) is repacked at load and multiplied with valuelens's stored-format
    /// kernels (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K … Q6_K as stored; float matrices as
    /// 8-bit Q8_0), activations quantized to 8 bits per block at each product;
    /// on a GPU candle's quantized kernels. Activations in f32.
    Quantized,
    /// As `quantized`, with activations at about 16 bits on the CPU (W·A16): each activation
    /// row is quantized to 8 bits and its rounding error quantized again, and both go through
    /// the stored-format kernels (twice their integer work). Hard choices equal f32's where
    /// 8-bit activations flip near-ties; on a GPU the same as `quantized`.
    #[value(name = "quantized-a16")]
    #[serde(rename = "quantized-a16")]
    QuantizedA16,
    /// As `quantized` (8-bit activations), and on the CPU the choices of a question (requests
    /// with the same context) whose two most likely continuations lie within 0.25 nats are
    /// scored again as `quantized-a16` does: 8-bit activations flip such near ties, and the
    /// recheck gives f32's hard choices at about `quantized`'s speed. What `auto` picks on
    /// the CPU. Prompt-only scoring (the server's echo requests) has no questions to recheck.
    #[value(name = "quantized-tiebreak")]
    #[serde(rename = "quantized-tiebreak")]
    QuantizedTiebreak,
    /// int8 on the CPU: the feed-forward matrices requantized at load to 8 bits per block of
    /// 16 inputs, activations quantized the same way at each product, integer dot products on
    /// the fastest instruction set the CPU has (AVX-512 VNNI, AVX2, else portable code; the
    /// same numbers on every path); attention projections, LM head and the rest in f32.
    Int8,
}

impl Precision {
    /// Whether weights stay in the file's quantized blocks (`quantized`, `quantized-a16`).
    pub fn keeps_blocks(self) -> bool {
        matches!(
            self,
            Precision::Quantized | Precision::QuantizedA16 | Precision::QuantizedTiebreak
        )
    }

    /// Whether near ties are scored again with finer activations (`quantized-tiebreak`).
    pub fn rechecks_near_ties(self) -> bool {
        self == Precision::QuantizedTiebreak
    }

    /// Levels of 8-bit activations in the stored-format kernels as loaded: 2 for
    /// `quantized-a16` (`quantized-tiebreak` switches to 2 for its rechecks only).
    pub fn activation_levels(self) -> usize {
        match self {
            Precision::QuantizedA16 => 2,
            _ => 1,
        }
    }

    /// The dtype of dense weights and activations.
    pub fn activation_dtype(self) -> DType {
        match self {
            Precision::F32
            | Precision::Quantized
            | Precision::QuantizedA16
            | Precision::QuantizedTiebreak
            | Precision::Int8 => DType::F32,
            Precision::Bf16 => DType::BF16,
            Precision::F16 => DType::F16,
        }
    }
}

/// Parses `cpu`, `cuda` or `cuda:N` into a device.
pub fn parse_device(name: &str) -> Result<Device> {
    let ordinal = match name.trim() {
        "cpu" => return Ok(Device::Cpu),
        "cuda" | "gpu" => 0,
        other => match other.strip_prefix("cuda:").map(str::parse::<usize>) {
            Some(Ok(n)) => n,
            _ => bail!("--device '{name}': expected cpu, cuda or cuda:N (N = the GPU's index)"),
        },
    };
    if !cfg!(feature = "cuda") {
        bail!(
            "--device {name}: this valuelens was built without CUDA support; build it with \
             `cargo build --release --features cuda` on a machine with the CUDA toolkit, or with \
             scripts/build-cuda.sh on one without"
        );
    }
    Device::new_cuda(ordinal).with_context(|| {
        format!(
            "--device {name}: could not open CUDA device {ordinal} (is the NVIDIA driver loaded \
             and does `nvidia-smi` list that GPU?)"
        )
    })
}

impl Precision {
    /// The name `--dtype` takes.
    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::Bf16 => "bf16",
            Precision::F16 => "f16",
            Precision::Quantized => "quantized",
            Precision::QuantizedA16 => "quantized-a16",
            Precision::QuantizedTiebreak => "quantized-tiebreak",
            Precision::Int8 => "int8",
        }
    }
}

/// A short name of a device for reports: `cpu` or `cuda:N`.
pub fn device_name(device: &Device) -> String {
    match device.location() {
        candle_core::DeviceLocation::Cpu => "cpu".into(),
        candle_core::DeviceLocation::Cuda { gpu_id } => format!("cuda:{gpu_id}"),
        candle_core::DeviceLocation::Metal { gpu_id } => format!("metal:{gpu_id}"),
    }
}

/// Levels of 8-bit activations (1 or 2) that a model's stored-format products use now: one
/// value shared by all its matrices, so that a forward can be run again with finer
/// activations without loading the model twice (see `Model::with_finer_activations`).
#[derive(Debug, Clone)]
pub struct ActivationLevels(Arc<AtomicUsize>);

impl ActivationLevels {
    pub fn new(levels: usize) -> Self {
        assert!(matches!(levels, 1 | 2), "1 or 2 activation levels");
        Self(Arc::new(AtomicUsize::new(levels)))
    }

    pub fn get(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }

    pub fn set(&self, levels: usize) {
        assert!(matches!(levels, 1 | 2), "1 or 2 activation levels");
        self.0.store(levels, Ordering::Relaxed);
    }
}

/// A device and a precision: where loaded weights go and in which form.
#[derive(Debug, Clone)]
pub struct Placement {
    pub device: Device,
    pub precision: Precision,
    /// The stored-format products' activation levels, shared by every matrix loaded with
    /// this placement (and its clones).
    pub activation_levels: ActivationLevels,
    /// Compute bf16 on the CPU as a GPU does (bf16 activations through candle, masked
    /// attention blocks) instead of with the CPU's bf16 kernel: to test on a CPU what GPUs
    /// compute.
    pub gpu_numerics: bool,
}

impl Placement {
    pub fn new(device: Device, precision: Precision) -> Self {
        Self {
            device,
            precision,
            gpu_numerics: false,
            activation_levels: ActivationLevels::new(precision.activation_levels()),
        }
    }

    /// The same placement computing as a GPU would (see [`Placement::gpu_numerics`]).
    pub fn with_gpu_numerics(self) -> Self {
        Self {
            gpu_numerics: true,
            ..self
        }
    }

    /// Whether the matrices multiply with valuelens's CPU bf16 kernel (bf16 on the CPU).
    pub fn cpu_bf16_kernel(&self) -> bool {
        self.precision == Precision::Bf16 && self.device.is_cpu() && !self.gpu_numerics
    }

    pub fn cpu(precision: Precision) -> Self {
        Self::new(Device::Cpu, precision)
    }

    /// The dtype of dense weights and activations: f32 for bf16 on the CPU, whose bf16 is in
    /// the matrix kernel only.
    pub fn dtype(&self) -> DType {
        match self.precision {
            Precision::Bf16 if self.cpu_bf16_kernel() => DType::F32,
            p => p.activation_dtype(),
        }
    }

    /// A dense tensor (norm weights, biases, embeddings, a dense weight matrix) in the
    /// activation dtype on the device.
    pub fn dense(&self, weight: &QTensor) -> Result<Tensor> {
        self.put(&weight.dequantize(&Device::Cpu)?)
    }

    /// A CPU f32 tensor in the activation dtype on the device.
    pub fn put(&self, tensor: &Tensor) -> Result<Tensor> {
        Ok(tensor.to_dtype(self.dtype())?.to_device(&self.device)?)
    }

    /// Where the layers whose inputs hold outliers go: the attention's projections (Q, K, V
    /// and output) and the LM head. Int8 keeps them in f32: their inputs (the normalised residual stream, the heads' attention outputs)
    /// hold outlier channels that 8-bit blocks round too coarsely. Measured on the SmolLM2-135M
    /// fixtures, mean |Δ| per token against the f32 reference: 0.053 with everything but the
    /// LM head in int8, 0.042 with this; the feed-forward products left in int8 are ≈ 75 % of
    /// a layer's multiply-adds (≈ 85 % for Qwen2.5-0.5B).
    pub fn outlier_sensitive(&self) -> Placement {
        match self.precision {
            Precision::Int8 => Placement {
                precision: Precision::F32,
                ..self.clone()
            },
            _ => self.clone(),
        }
    }

    /// A quantized tensor moved to the device as it is (its blocks copied, not requantized).
    pub fn quantized(&self, weight: QTensor) -> Result<QTensor> {
        if self.device.is_cpu() {
            return Ok(weight);
        }
        let (dtype, shape) = (weight.dtype(), weight.shape().clone());
        let storage = QStorage::from_data(weight.data()?, &self.device, dtype)?;
        Ok(QTensor::new(storage, shape)?)
    }
}

/// Whether quantized weights of this format are dequantized rather than kept (the float
/// formats, which have no quantized kernel to gain from).
pub fn is_float_format(dtype: GgmlDType) -> bool {
    matches!(dtype, GgmlDType::F32 | GgmlDType::F16 | GgmlDType::BF16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_names_parse_or_explain() {
        assert!(parse_device("cpu").unwrap().is_cpu());
        let err = format!("{:#}", parse_device("tpu").unwrap_err());
        assert!(err.contains("cpu, cuda or cuda:N"), "{err}");
        let err = format!("{:#}", parse_device("cuda:x").unwrap_err());
        assert!(err.contains("cpu, cuda or cuda:N"), "{err}");
        if !cfg!(feature = "cuda") {
            let err = format!("{:#}", parse_device("cuda:1").unwrap_err());
            assert!(err.contains("--features cuda"), "{err}");
        }
    }
}
