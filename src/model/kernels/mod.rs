//! Matrix kernels of the CPU linear layers that candle does not have, each picked at run time
//! by the features of the CPU it runs on (never assumed at compile time), each with a portable
//! fallback that every other path must equal: the CPU features that matter here (`features`),
//! and the int8 kernel (`int8`).

pub mod features;
pub mod int8;

pub use features::CpuFeatures;

use super::device::Precision;

/// Which kernels multiply a model's matrices in `precision` on the CPU (`on_cpu`) or a GPU,
/// in words for reports (`valuelens bench`, `run.json`).
pub fn matmul_kernels(precision: Precision, on_cpu: bool) -> anyhow::Result<String> {
    Ok(match (precision, on_cpu) {
        (Precision::Int8, _) => format!(
            "int8 {} (feed-forward); f32 candle gemm (attention projections, LM head)",
            int8::Int8Path::select(&CpuFeatures::detect())?.name()
        ),
        (Precision::Quantized, _) => "candle QMatMul (GGUF blocks; Q4/Q5 as Q8_0)".into(),
        (p, true) => format!("{} candle gemm", p.name()),
        (p, false) => format!("{} candle cuBLAS", p.name()),
    })
}
