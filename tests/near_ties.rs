//! `--dtype quantized-tiebreak` (what `auto` picks on a CPU with AVX2 or AVX-512 VNNI) on
//! gemma-3-270m's own Q4_K_M file and the first 96 Task-1 questions of the shared workload:
//! every request of a question whose best two choices lie within 0.25 nats under 8-bit
//! activations scores exactly what `quantized-a16` scores, every other request exactly what
//! `quantized` scores, and the statistics count the recheck.

mod common;

use std::collections::HashMap;

use common::registry_model_path;
use valuelens::engine::{self, ties::NEAR_TIE_NATS, EngineOptions, Request, Score};
use valuelens::model::{Model, Precision};

fn scores(precision: Precision, requests: &[Request]) -> (Vec<Score>, engine::EngineStats) {
    let path = registry_model_path("gemma3-270m");
    let model = Model::load_file("gemma3-270m", &path, precision).unwrap();
    engine::score_with_stats(&model, requests, &EngineOptions::default(), None).unwrap()
}

#[test]
fn near_ties_are_scored_again_as_quantized_a16_and_the_rest_as_quantized() {
    let path = common::shared_dir().join("workloads/smollm2-t1-scenario.jsonl");
    let requests: Vec<Request> = engine::requests::read_requests(&path).unwrap()[..384].to_vec();
    let (quantized, quantized_stats) = scores(Precision::Quantized, &requests);
    let (a16, _) = scores(Precision::QuantizedA16, &requests);
    let (tiebreak, stats) = scores(Precision::QuantizedTiebreak, &requests);
    assert_eq!(quantized_stats.rechecked_requests, 0);

    // Near ties by the quantized scores, per question (the requests sharing a context).
    let mut questions: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, r) in requests.iter().enumerate() {
        questions.entry(&r.context).or_default().push(i);
    }
    let mut rechecked = 0;
    for members in questions.values() {
        let mut logprobs: Vec<f64> = members.iter().map(|&i| quantized[i].logprob).collect();
        logprobs.sort_by(|a, b| b.total_cmp(a));
        let near = logprobs[0] - logprobs[1] < NEAR_TIE_NATS;
        for &i in members {
            let expected = if near { &a16[i] } else { &quantized[i] };
            assert_eq!(
                tiebreak[i], *expected,
                "{} (near tie: {near})",
                requests[i].id
            );
        }
        rechecked += near as usize * members.len();
    }
    println!(
        "{} of {} questions rechecked: {} tokens computed, {} of them again",
        rechecked / 4,
        questions.len(),
        stats.computed_tokens,
        stats.rechecked_tokens
    );
    // The slice holds both kinds of question, so neither branch above went untested.
    assert!(rechecked > 0 && rechecked < requests.len(), "{rechecked}");
    assert_eq!(stats.rechecked_requests, rechecked);
    assert_eq!(
        stats.computed_tokens,
        quantized_stats.computed_tokens + stats.rechecked_tokens
    );
    assert!(stats.forwards > quantized_stats.forwards);
}
