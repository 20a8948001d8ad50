//! Criterion benchmarks of the engine on the real default model (fetched on first use): a
//! small realistic request set — one Task-1 prompt with three values × four options, one Task-2
//! pair and a plain sentence (`data/samples/requests.jsonl`) — scored with prefix sharing and,
//! as the baseline, one request per forward with nothing shared; plus tokenization alone.
//! Run with `cargo bench`.

use std::path::Path;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use valuelens::engine::{self, requests, EngineOptions};
use valuelens::model::{Model, Precision};

fn engine_benchmarks(c: &mut Criterion) {
    let model = Model::load("smollm2-135m", Precision::F32).expect("the default model loads");
    let input = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/samples/requests.jsonl");
    let requests = requests::read_requests(&input).expect("the sample requests parse");
    let shared = EngineOptions::default();
    let naive = EngineOptions {
        batch_tokens: 1,
        share_prefixes: false,
        ..EngineOptions::default()
    };
    let (_, stats) = engine::score_with_stats(&model, &requests, &shared, None).unwrap();

    let mut group = c.benchmark_group("score_samples");
    group.sample_size(10);
    group.throughput(Throughput::Elements(requests.len() as u64));
    group.bench_function(
        format!("shared ({} computed tokens)", stats.computed_tokens),
        |b| b.iter(|| engine::score(&model, &requests, &shared, None).unwrap()),
    );
    group.bench_function(format!("naive ({} tokens)", stats.request_tokens), |b| {
        b.iter(|| engine::score(&model, &requests, &naive, None).unwrap())
    });
    group.finish();

    c.bench_function("tokenize_samples", |b| {
        b.iter(|| {
            requests
                .iter()
                .map(|r| engine::tokenize_request(&model, r).unwrap())
                .collect::<Vec<_>>()
        })
    });
}

criterion_group!(benches, engine_benchmarks);
criterion_main!(benches);
