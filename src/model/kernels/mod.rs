//! Matrix kernels of the CPU linear layers that candle does not have, each picked at run time
//! by the features of the CPU it runs on (never assumed at compile time), each with a portable
//! fallback that every other path must equal (AMX's bf16 sums within rounding): the CPU
//! features that matter here (`features`), the use of AMX tiles (`amx`), the int8 kernel
//! (`int8`), the bf16 kernel (`bf16`) and GGUF's formats multiplied as stored (`stored`); and
//! what `--dtype auto` picks by them.

pub mod amx;
pub mod bf16;
mod common;
pub mod features;
pub mod int8;
pub mod stored;

pub use features::CpuFeatures;

use candle_core::Device;

use super::device::{Placement, Precision};

/// What `--dtype` takes: a precision, or `auto` for the fastest one whose scores stay within
/// the tolerances of `tests/fixtures_*.rs` on the device at hand.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DtypeChoice {
    Auto,
    Fixed(Precision),
}

impl DtypeChoice {
    /// The precision to compute in on `device`. `auto`: bf16 on a GPU; on the CPU the
    /// stored-format kernels with near ties rechecked (`quantized-tiebreak`: a GGUF file's
    /// blocks as stored, float weights as 8-bit Q8_0, activations at 8 bits and the choices of
    /// questions within 0.25 nats scored again at about 16) where the CPU has a path faster
    /// than portable code (AVX2 or AVX-512 VNNI: measured faster than f32 and int8, at about
    /// the file's size in memory, f32's hard choices on the shared workloads, and the same
    /// numbers on every such CPU), else f32. (`valuelens run` computes a debiased or
    /// soft-scored run in `quantized`: see `benchmark::config::auto_precision_for_run`.)
    pub fn resolve(self, device: &Device) -> Precision {
        match self {
            DtypeChoice::Fixed(precision) => precision,
            DtypeChoice::Auto if !device.is_cpu() => Precision::Bf16,
            DtypeChoice::Auto => {
                let features = CpuFeatures::detect();
                match stored::StoredPath::available(&features)[0] {
                    stored::StoredPath::Portable => Precision::F32,
                    _ => Precision::QuantizedTiebreak,
                }
            }
        }
    }
}

impl clap::ValueEnum for DtypeChoice {
    fn value_variants<'a>() -> &'a [Self] {
        &[
            DtypeChoice::Auto,
            DtypeChoice::Fixed(Precision::F32),
            DtypeChoice::Fixed(Precision::Bf16),
            DtypeChoice::Fixed(Precision::F16),
            DtypeChoice::Fixed(Precision::Quantized),
            DtypeChoice::Fixed(Precision::QuantizedA16),
            DtypeChoice::Fixed(Precision::QuantizedTiebreak),
            DtypeChoice::Fixed(Precision::Int8),
        ]
    }

    fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
        match self {
            DtypeChoice::Auto => Some(clap::builder::PossibleValue::new("auto").help(
                "The fastest precision within tolerance on this device: bf16 on a GPU; on the \
                 CPU quantized-tiebreak (the file's GGUF blocks as stored, float weights as \
                 8-bit, near ties rechecked; `run` with PriDe or soft scores: quantized, as \
                 it does not decide on the raw choices the recheck settles) where it has AVX2 \
                 or AVX-512 VNNI, else f32 (run.json says which); `serve`: bf16 where the CPU \
                 has AMX-BF16 tiles and the weights in bf16 are affordable (8-bit or float \
                 files, or a quarter of the free memory), else quantized",
            )),
            DtypeChoice::Fixed(precision) => precision.to_possible_value(),
        }
    }
}

/// Which kernels multiply a model's matrices in `precision` on the CPU (`on_cpu`) or a GPU,
/// in words for reports (`valuelens bench`, `run.json`).
pub fn matmul_kernels(precision: Precision, on_cpu: bool) -> anyhow::Result<String> {
    Ok(match (precision, on_cpu) {
        (Precision::Int8, _) => format!(
            "int8 {} (feed-forward); f32 candle gemm {} (attention projections, LM head)",
            int8::Int8Path::select(&CpuFeatures::detect())?.name(),
            cpu_gemm_path()
        ),
        (Precision::Bf16, true) => format!(
            "bf16 {} (every linear layer and the LM head); f32 candle gemm {} (attention)",
            bf16::Bf16Path::select(&CpuFeatures::detect())?.name(),
            cpu_gemm_path()
        ),
        (Precision::Quantized | Precision::QuantizedA16 | Precision::QuantizedTiebreak, true) => {
            format!(
                "stored-format {} (every matrix in the file's GGUF format; float and other \
                 formats as 8-bit Q8_0; activations {})",
                stored::StoredPath::select(&CpuFeatures::detect())?.name(),
                match precision {
                    Precision::QuantizedA16 => "8-bit twice (about 16-bit)",
                    Precision::QuantizedTiebreak =>
                        "8-bit; near ties rescored with 8-bit twice (about 16-bit)",
                    _ => "8-bit",
                }
            )
        }
        (Precision::Quantized | Precision::QuantizedA16 | Precision::QuantizedTiebreak, false) => {
            "candle QMatMul (GGUF blocks)".into()
        }
        (p, true) => format!("{} candle gemm {}", p.name(), cpu_gemm_path()),
        (p, false) => format!("{} candle cuBLAS", p.name()),
    })
}

/// The instruction set of candle's CPU gemm (the `gemm` crate, built with its AVX-512 kernels),
/// which multiplies f32 matrices on the CPU: it picks by the CPU as this does.
pub fn cpu_gemm_path() -> &'static str {
    let features = CpuFeatures::detect();
    if features.avx512f {
        "avx512f"
    } else if features.fma {
        "fma"
    } else {
        "scalar"
    }
}

/// What decides the numbers of a CPU run beyond its precision, for its resume identity (see
/// `RunConfig::kernels`): the arithmetic of valuelens's own kernels where `placement` uses
/// them, and the instruction set of candle's gemm where it is not FMA (AVX-512 sums in another
/// order; runs before valuelens used it computed with the FMA kernel, and their identity, which
/// named no gemm, stays theirs). `None` on GPUs, whose kind the identity holds instead.
pub fn kernel_arithmetic(placement: &Placement) -> Option<String> {
    if !placement.device.is_cpu() {
        return None;
    }
    let own = match placement.precision {
        Precision::Int8 => Some(int8::ARITHMETIC),
        Precision::Quantized => Some(stored::ARITHMETIC),
        Precision::QuantizedA16 => Some(stored::ARITHMETIC_A16),
        Precision::QuantizedTiebreak => Some(stored::ARITHMETIC_TIEBREAK),
        Precision::Bf16 if placement.cpu_bf16_kernel() => {
            match bf16::Bf16Path::select(&CpuFeatures::detect()) {
                Ok(bf16::Bf16Path::Amx) => Some(bf16::ARITHMETIC_AMX),
                _ => Some(bf16::ARITHMETIC),
            }
        }
        _ => None,
    };
    let gemm = match cpu_gemm_path() {
        "fma" => None,
        path => Some(format!("candle gemm {path}")),
    };
    match (own, gemm) {
        (Some(own), Some(gemm)) => Some(format!("{own}; {gemm}")),
        (Some(own), None) => Some(own.to_string()),
        (None, gemm) => gemm,
    }
}
