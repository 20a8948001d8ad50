//! Prefix sharing and the batch scheduler do not change any score: shared vs unshared on
//! slices of the realistic workloads, three token budgets, inputs without shared prefixes, and
//! empty inputs.

mod common;

use common::model_f32;
use valuelens::engine::{self, EngineOptions, Request, Score};

fn workload(name: &str) -> Vec<Request> {
    let path = common::shared_dir().join("workloads").join(name);
    engine::requests::read_requests(&path).unwrap()
}

fn unshared() -> EngineOptions {
    EngineOptions {
        batch_tokens: 1,
        share_prefixes: false,
        ..EngineOptions::default()
    }
}

/// How far a score may move with its batch in f32 on the CPU: every sum of the forward runs in
/// an order fixed by position (tree attention in fixed key chunks, no single-row gemm path), so
/// the measured difference is 0; the bound leaves room only for a platform's libm.
const BATCH_INVARIANCE: f64 = 1e-6;

fn assert_close(a: &[Score], b: &[Score], tolerance: f64) {
    assert_eq!(a.len(), b.len());
    let mut largest: f64 = 0.0;
    for (x, y) in a.iter().zip(b) {
        assert_eq!(x.id, y.id);
        assert_eq!(x.n_tokens, y.n_tokens, "{}", x.id);
        for (p, q) in x.token_logprobs.iter().zip(&y.token_logprobs) {
            largest = largest.max((p - q).abs());
            assert!((p - q).abs() <= tolerance, "{}: {p} vs {q}", x.id);
        }
        assert_eq!(x.greedy, y.greedy, "{}", x.id);
    }
    println!("largest difference per token: {largest:.2e}");
}

/// Scores a 200-request slice with sharing, and every `stride`-th request of it alone with
/// nothing shared (each Task-1 request is ~900 tokens; all 200 unshared would take ~10 min).
fn shared_equals_unshared(name: &str, stride: usize) {
    let slice: Vec<Request> = workload(name).into_iter().take(200).collect();
    let (shared, stats) =
        engine::score_with_stats(model_f32(), &slice, &EngineOptions::default(), None).unwrap();
    assert!(
        stats.computed_tokens < stats.request_tokens,
        "sharing computes fewer tokens: {stats:?}"
    );
    let sample: Vec<Request> = slice.iter().step_by(stride).cloned().collect();
    let alone = engine::score(model_f32(), &sample, &unshared(), None).unwrap();
    let shared_sample: Vec<Score> = shared.iter().step_by(stride).cloned().collect();
    assert_close(&shared_sample, &alone, BATCH_INVARIANCE);
}

#[test]
fn task1_workload_slice_shared_equals_unshared() {
    shared_equals_unshared("smollm2-t1-scenario.jsonl", 20);
}

#[test]
fn task2_workload_slice_shared_equals_unshared() {
    shared_equals_unshared("smollm2-t2-100pairs.jsonl", 4);
}

#[test]
fn scores_do_not_depend_on_the_token_budget() {
    let slice: Vec<Request> = workload("smollm2-t2-100pairs.jsonl")
        .into_iter()
        .take(48)
        .collect();
    let run = |batch_tokens| {
        let options = EngineOptions {
            batch_tokens,
            ..EngineOptions::default()
        };
        engine::score_with_stats(model_f32(), &slice, &options, None).unwrap()
    };
    let (large, large_stats) = run(16_384);
    let (medium, medium_stats) = run(1_000);
    let (small, small_stats) = run(200);
    assert_eq!(large_stats.forwards, 1);
    assert!(medium_stats.forwards > 1 && small_stats.forwards > medium_stats.forwards);
    assert_eq!(large_stats.computed_tokens, large_stats.distinct_tokens);
    assert!(
        small_stats.computed_tokens > large_stats.computed_tokens,
        "ancestors recomputed"
    );
    assert_close(&large, &medium, BATCH_INVARIANCE);
    assert_close(&large, &small, BATCH_INVARIANCE);
}

#[test]
fn requests_without_shared_prefixes_score_as_alone() {
    let requests: Vec<Request> = [
        ("a", "Apples grow on", " trees"),
        ("b", "Birds can", " fly high"),
        ("c", "Cats like to", " sleep"),
        ("d", "", "Dogs bark"),
        ("e", "Every morning I drink", ""),
    ]
    .iter()
    .map(|(id, context, continuation)| Request {
        id: id.to_string(),
        context: context.to_string(),
        continuation: continuation.to_string(),
    })
    .collect();
    let (together, stats) =
        engine::score_with_stats(model_f32(), &requests, &EngineOptions::default(), None).unwrap();
    assert_eq!(stats.forwards, 1);
    let alone = engine::score(model_f32(), &requests, &unshared(), None).unwrap();
    assert_close(&together, &alone, BATCH_INVARIANCE);
    let empty = &together[4];
    assert_eq!(
        (empty.n_tokens, empty.logprob, empty.greedy),
        (0, 0.0, true)
    );
}

#[test]
fn an_empty_request_file_gives_an_empty_output() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("empty.jsonl");
    let output = dir.path().join("out.jsonl");
    std::fs::write(&input, "").unwrap();
    common::run_score(&input, &output);
    assert_eq!(std::fs::read_to_string(&output).unwrap(), "");
}

/// Tokenizing a batch (each distinct context encoded once) gives every request the tokens it
/// gets alone, on both workloads, the fixtures, and requests with an empty context.
#[test]
fn batch_tokenization_equals_tokenizing_each_request_alone() {
    let mut requests = workload("smollm2-t1-scenario.jsonl");
    requests.truncate(224);
    requests.extend(workload("smollm2-t2-100pairs.jsonl").into_iter().take(96));
    requests.extend(common::fixtures("smollm2-135m").0);
    for (id, context) in [("empty-1", ""), ("empty-2", ""), ("spaces", "  ")] {
        requests.push(Request {
            id: id.into(),
            context: context.into(),
            continuation: " The answer".into(),
        });
    }
    let batched = engine::tokenize_requests(model_f32(), &requests).unwrap();
    assert_eq!(batched.len(), requests.len());
    for (request, tokens) in requests.iter().zip(&batched) {
        let alone = engine::tokenize_request(model_f32(), request).unwrap();
        assert_eq!(tokens, &alone, "{}", request.id);
    }
}
