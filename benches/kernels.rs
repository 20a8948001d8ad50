//! Matrix-multiplication kernels at the shapes of a SmolLM2-135M prefill (512 tokens × the
//! fused QKV projection, 576 → 960), for choosing the CPU weight format by measurement:
//! candle's f32 (gemm), f16 and bf16 matmuls, and `QMatMul` with Q4_1 (the default model's
//! format), Q8_0, Q4_K and Q6_K weights. Throughput is reported in FLOP/s ("elem/s").
//! Run with `cargo bench --bench kernels`.

use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{DType, Device, Module, Tensor};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

fn kernels(c: &mut Criterion) {
    let dev = Device::Cpu;
    for (m, k, n) in [(512usize, 576usize, 960usize), (512, 1536, 576)] {
        let x = Tensor::randn(0f32, 1.0, (m, k), &dev).unwrap();
        let w = Tensor::randn(0f32, 0.05, (n, k), &dev).unwrap();
        let mut group = c.benchmark_group(format!("matmul_{m}x{k}x{n}"));
        group.sample_size(10);
        group.throughput(Throughput::Elements((2 * m * k * n) as u64));
        for dtype in [DType::F32, DType::F16, DType::BF16] {
            let (x, w) = (x.to_dtype(dtype).unwrap(), w.to_dtype(dtype).unwrap());
            group.bench_function(format!("{dtype:?}"), |b| {
                b.iter(|| x.matmul(&w.t().unwrap()).unwrap())
            });
        }
        for format in [
            GgmlDType::Q4_1,
            GgmlDType::Q8_0,
            GgmlDType::Q4K,
            GgmlDType::Q6K,
        ] {
            let Ok(q) = QTensor::quantize(&w, format) else {
                continue; // k-quants need k to be a multiple of 256
            };
            let q = QMatMul::from_qtensor(q).unwrap();
            group.bench_function(format!("QMatMul {format:?}"), |b| {
                b.iter(|| q.forward(&x).unwrap())
            });
        }
        group.finish();
    }
}

criterion_group!(benches, kernels);
criterion_main!(benches);
