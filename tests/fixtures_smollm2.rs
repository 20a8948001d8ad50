//! The engine against the HF transformers references of `../shared/fixtures/smollm2-135m/`:
//! token ids, f32 and quantized log-probabilities, greedy flags, and batch invariance.

mod common;

use std::sync::OnceLock;

use common::{fixtures, model_f32, model_quantized};
use valuelens::engine::{self, tokenize_request, EngineOptions, Score};

const MODEL: &str = "smollm2-135m";

fn f32_scores() -> &'static Vec<Score> {
    static SCORES: OnceLock<Vec<Score>> = OnceLock::new();
    SCORES.get_or_init(|| {
        let (requests, _) = fixtures(MODEL);
        engine::score(model_f32(), &requests, &EngineOptions::default(), None).unwrap()
    })
}

#[test]
fn token_ids_match_the_reference_for_every_request() {
    let (requests, references) = fixtures(MODEL);
    assert_eq!(requests.len(), 164);
    let model = model_f32();
    let mut mismatches = Vec::new();
    for (request, reference) in requests.iter().zip(&references) {
        let tokenized = tokenize_request(model, request).unwrap();
        if tokenized.context() != reference.context_tokens.as_slice()
            || tokenized.continuation() != reference.continuation_tokens.as_slice()
        {
            mismatches.push(request.id.clone());
        }
    }
    assert!(mismatches.is_empty(), "token ids differ for {mismatches:?}");
}

#[test]
fn f32_logprobs_are_within_1e3_per_token_of_the_reference() {
    let (_, references) = fixtures(MODEL);
    let scores = f32_scores();
    let mut worst = (0.0f64, String::new());
    for (score, reference) in scores.iter().zip(&references) {
        assert_eq!(score.id, reference.id);
        assert_eq!(score.n_tokens, reference.n_tokens, "{}", score.id);
        for (got, want) in score.token_logprobs.iter().zip(&reference.token_logprobs) {
            let delta = (got - want).abs();
            if delta > worst.0 {
                worst = (delta, score.id.clone());
            }
        }
        let per_token = (score.logprob - reference.logprob).abs() / reference.n_tokens as f64;
        assert!(per_token <= 1e-3, "{}: {per_token} per token", score.id);
    }
    assert!(worst.0 <= 1e-3, "largest per-token difference {worst:?}");
    let greedy_agree = scores
        .iter()
        .zip(&references)
        .filter(|(s, r)| s.greedy == r.greedy)
        .count();
    assert_eq!(greedy_agree, references.len(), "greedy flags agree in f32");
}

/// Default batching (shared prefixes, packed forwards) against one forward per request with
/// nothing shared.
#[test]
fn scores_do_not_depend_on_batching_or_sharing() {
    let (requests, _) = fixtures(MODEL);
    let batched = f32_scores();
    let one_by_one = engine::score(
        model_f32(),
        &requests,
        &EngineOptions {
            batch_tokens: 1,
            share_prefixes: false,
        },
        None,
    )
    .unwrap();
    for (a, b) in batched.iter().zip(&one_by_one) {
        assert_eq!(a.token_logprobs.len(), b.token_logprobs.len());
        for (x, y) in a.token_logprobs.iter().zip(&b.token_logprobs) {
            assert!((x - y).abs() <= 1e-4, "{}: {x} vs {y}", a.id);
        }
        assert_eq!(a.greedy, b.greedy, "{}", a.id);
    }
}

#[test]
fn quantized_logprobs_are_close_and_greedy_mostly_agrees() {
    let (requests, references) = fixtures(MODEL);
    let scores = engine::score(
        model_quantized(),
        &requests,
        &EngineOptions::default(),
        None,
    )
    .unwrap();
    let (mut total_delta, mut total_tokens, mut greedy_agree) = (0.0, 0usize, 0usize);
    for (score, reference) in scores.iter().zip(&references) {
        assert_eq!(score.n_tokens, reference.n_tokens, "{}", score.id);
        for (got, want) in score.token_logprobs.iter().zip(&reference.token_logprobs) {
            total_delta += (got - want).abs();
        }
        total_tokens += reference.n_tokens;
        greedy_agree += usize::from(score.greedy == reference.greedy);
    }
    let mean = total_delta / total_tokens as f64;
    let agreement = greedy_agree as f64 / references.len() as f64;
    eprintln!(
        "quantized on all {} requests: mean |Δ| per token {mean:.4}, greedy agreement {:.1}%",
        references.len(),
        agreement * 100.0
    );
    assert!(mean <= 0.15, "mean |Δ| per token {mean}");
    assert!(agreement >= 0.95, "greedy agreement {agreement}");
}
