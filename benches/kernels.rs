//! Matrix-multiplication kernels at the real shapes of the three registry models' prefills
//! (512 tokens through each linear layer), for choosing the CPU weight format by measurement:
//! candle's f32 (gemm) matmul, `QMatMul` with Q8_0 and Q6_K weights, and every path of
//! valuelens's own int8 and bf16 kernels this CPU can run. Throughput is reported in FLOP/s
//! ("elem/s"). Run with `cargo bench --bench kernels` (`-- int8` for the int8 paths only).

use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{DType, Device, Module, Tensor};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use valuelens::model::attention::{AttentionPlan, AttentionSpec};
use valuelens::model::batch::PackedBatch;
use valuelens::model::kernels::bf16::{Bf16Matrix, Bf16Path};
use valuelens::model::kernels::int8::{Int8Matrix, Int8Path};
use valuelens::model::kernels::stored::{StoredFormat, StoredMatrix, StoredPath};
use valuelens::model::kernels::CpuFeatures;

/// (model, layer, n, k): SmolLM2-135M, gemma-3-270m, Qwen2.5-0.5B.
const SHAPES: [(&str, &str, usize, usize); 12] = [
    ("smollm2", "qkv", 960, 576),
    ("smollm2", "o", 576, 576),
    ("smollm2", "gate_up", 3072, 576),
    ("smollm2", "down", 576, 1536),
    ("gemma3", "qkv", 1536, 640),
    ("gemma3", "o", 640, 1024),
    ("gemma3", "gate_up", 4096, 640),
    ("gemma3", "down", 640, 2048),
    ("qwen2", "qkv", 1152, 896),
    ("qwen2", "o", 896, 896),
    ("qwen2", "gate_up", 9728, 896),
    ("qwen2", "down", 896, 4864),
];

fn kernels(c: &mut Criterion) {
    let dev = Device::Cpu;
    let features = CpuFeatures::detect();
    eprintln!("CPU features: {}", features.names().join(" "));
    let m = 512usize;
    for (model, layer, n, k) in SHAPES {
        let x = Tensor::randn(0f32, 1.0, (m, k), &dev).unwrap();
        let w = Tensor::randn(0f32, 0.05, (n, k), &dev).unwrap();
        let mut group = c.benchmark_group(format!("{model}_{layer}_{m}x{k}x{n}"));
        group.sample_size(10);
        group.throughput(Throughput::Elements((2 * m * k * n) as u64));
        group.bench_function("f32 candle", |b| {
            b.iter(|| x.matmul(&w.t().unwrap()).unwrap())
        });
        for format in [GgmlDType::Q8_0, GgmlDType::Q6K] {
            let Ok(q) = QTensor::quantize(&w, format) else {
                continue; // k-quants need k to be a multiple of 256
            };
            let q = QMatMul::from_qtensor(q).unwrap();
            group.bench_function(format!("QMatMul {format:?}"), |b| {
                b.iter(|| q.forward(&x).unwrap())
            });
        }
        let (xs, ws) = (
            x.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            w.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
        );
        for path in Int8Path::available(&features) {
            if path == Int8Path::Portable && features.avx2 {
                continue; // minutes per shape; only a fallback where nothing faster exists
            }
            let packed = Int8Matrix::new(&ws, n, k, path);
            group.bench_function(format!("int8 {}", path.name()), |b| {
                b.iter(|| packed.matmul(&xs, m))
            });
        }
        for path in Bf16Path::available(&features) {
            if path == Bf16Path::Portable && features.avx2 {
                continue; // as for int8
            }
            let packed = Bf16Matrix::new(&ws, n, k, path);
            group.bench_function(format!("bf16 {}", path.name()), |b| {
                b.iter(|| packed.matmul(&xs, m))
            });
        }
        group.finish();
    }
}

/// The CPU tree attention on SmolLM2-135M's heads (9 query heads sharing 3 key/value heads of
/// 64), for two batch shapes: Task 1's (a long shared prompt, short questions below it and short
/// answer labels below each question) and prefills of whole sequences. Throughput counts the
/// products' FLOPs over the keys each query sees (`4 · head_dim` per query head and key).
fn attention(c: &mut Criterion) {
    let (n_head, n_kv, head_dim) = (9, 3, 64);
    let mut task1 = PackedBatch::default();
    let trunk = task1.push_segment(&[0; 640], vec![]);
    for _ in 0..28 {
        let question = task1.push_segment(&[0; 14], vec![trunk.clone()]);
        for _ in 0..4 {
            task1.push_segment(&[0; 2], vec![trunk.clone(), question.clone()]);
        }
    }
    let mut prefill = PackedBatch::default();
    for _ in 0..4 {
        prefill.push_segment(&[0; 512], vec![]);
    }
    for (name, batch) in [("task1_tree", &task1), ("prefill_4x512", &prefill)] {
        let n = batch.tokens.len();
        let keys_seen: usize = batch
            .segments
            .iter()
            .map(|s| {
                let context: usize = s.ancestors.iter().map(|a| a.len()).sum();
                (1..=s.range.len()).map(|i| context + i).sum::<usize>()
            })
            .sum();
        let q = Tensor::randn(0f32, 1.0, (n_head, n, head_dim), &Device::Cpu).unwrap();
        let k = Tensor::randn(0f32, 1.0, (n_kv, n, head_dim), &Device::Cpu).unwrap();
        let v = Tensor::randn(0f32, 1.0, (n_kv, n, head_dim), &Device::Cpu).unwrap();
        let plan = AttentionPlan::new(
            batch,
            AttentionSpec::causal(0.125),
            &Device::Cpu,
            DType::F32,
        )
        .unwrap();
        let mut group = c.benchmark_group(format!("attention_{name}_{n}_tokens"));
        group.sample_size(10);
        group.throughput(Throughput::Elements(
            (4 * head_dim * n_head * keys_seen) as u64,
        ));
        group.bench_function("tree f32", |b| {
            b.iter(|| plan.attend(&q, &k, &v, None).unwrap())
        });
        group.finish();
    }
}

/// The stored-format kernels (`--dtype quantized` on the CPU) at 512 rows, each format on the
/// fastest path this CPU has, beside candle's `QMatMul` of the same GGUF blocks: the real
/// models' shapes where the format's blocks divide them, and an 8B model's attention and
/// down-projection inputs (4,096 and 14,336) over 4,096 outputs.
fn stored(c: &mut Criterion) {
    let dev = Device::Cpu;
    let path = StoredPath::select(&CpuFeatures::detect()).unwrap();
    let m = 512usize;
    let shapes = [
        ("qwen2_gate_up", 9728, 896),
        ("qwen2_down", 896, 4864),
        ("llama8b_q", 4096, 4096),
        ("llama8b_down", 4096, 14336),
    ];
    for (name, n, k) in shapes {
        let x = Tensor::randn(0f32, 1.0, (m, k), &dev).unwrap();
        let w = Tensor::randn(0f32, 0.05, (n, k), &dev).unwrap();
        let xs = x.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let mut group = c.benchmark_group(format!("stored_{name}_{m}x{k}x{n}"));
        group.sample_size(10);
        group.throughput(Throughput::Elements((2 * m * k * n) as u64));
        for format in StoredFormat::ALL {
            if k % format.block() != 0 {
                continue;
            }
            let dtype = format.ggml_dtype();
            let q = QTensor::quantize(&w, dtype).unwrap();
            let bytes = q.data().unwrap().to_vec();
            let packed = StoredMatrix::from_gguf(format, &bytes, n, k, path).unwrap();
            group.bench_function(format!("stored {} {}", format.name(), path.name()), |b| {
                b.iter(|| packed.matmul(&xs, m))
            });
            if matches!(
                format,
                StoredFormat::Q8_0 | StoredFormat::Q4K | StoredFormat::Q6K
            ) {
                let q = QMatMul::from_qtensor(q).unwrap();
                group.bench_function(format!("QMatMul {}", format.name()), |b| {
                    b.iter(|| q.forward(&x).unwrap())
                });
            }
        }
        group.finish();
    }
}

/// Float weights as the stored-format kernels hold them (Q8_0, what `--dtype auto` computes
/// with for a safetensors model on the CPU) on every path this CPU has but the portable one, at
/// SmolLM2-135M's shapes and its LM head: how much each instruction set gives
/// (`cargo bench --bench kernels -- stored_paths`).
fn stored_paths(c: &mut Criterion) {
    let features = CpuFeatures::detect();
    let m = 512usize;
    for (layer, n, k) in [
        ("qkv", 960, 576),
        ("gate_up", 3072, 576),
        ("down", 576, 1536),
        ("lm_head", 49152, 576),
    ] {
        let xs = Tensor::randn(0f32, 1.0, (m, k), &Device::Cpu)
            .and_then(|x| x.flatten_all()?.to_vec1::<f32>())
            .unwrap();
        let ws = Tensor::randn(0f32, 0.05, (n, k), &Device::Cpu)
            .and_then(|w| w.flatten_all()?.to_vec1::<f32>())
            .unwrap();
        let mut group = c.benchmark_group(format!("stored_paths_smollm2_{layer}_{m}x{k}x{n}"));
        group.sample_size(10);
        group.throughput(Throughput::Elements((2 * m * k * n) as u64));
        for path in StoredPath::available(&features) {
            if path == StoredPath::Portable && features.avx2 {
                continue; // as for int8
            }
            let packed = StoredMatrix::from_f32(&ws, n, k, path);
            group.bench_function(format!("Q8_0 {}", path.name()), |b| {
                b.iter(|| packed.matmul(&xs, m))
            });
        }
        group.finish();
    }
}

criterion_group!(benches, kernels, attention, stored, stored_paths);
criterion_main!(benches);
