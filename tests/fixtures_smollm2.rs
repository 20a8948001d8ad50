//! The engine against the HF transformers references of `../shared/fixtures/smollm2-135m/`:
//! token ids, f32 and quantized log-probabilities, greedy flags, and batch invariance, on all
//! 164 requests.

mod common;

use std::sync::OnceLock;

use common::fixture_checks::{self, score_subset};
use common::{model_f32, model_quantized, Reference};
use valuelens::engine::{EngineOptions, Score};

const MODEL: &str = "smollm2-135m";

fn f32_scores() -> &'static (Vec<Score>, Vec<Reference>) {
    static SCORES: OnceLock<(Vec<Score>, Vec<Reference>)> = OnceLock::new();
    SCORES.get_or_init(|| score_subset(model_f32(), MODEL, |_, _| true, &EngineOptions::default()))
}

#[test]
fn token_ids_match_the_reference_for_every_request() {
    fixture_checks::token_ids_match(model_f32(), MODEL);
}

#[test]
fn f32_logprobs_are_within_1e3_per_token_of_the_reference() {
    let (scores, references) = f32_scores();
    assert_eq!(scores.len(), 164);
    fixture_checks::f32_close(scores, references, 1e-3);
}

/// Default batching (shared prefixes, packed forwards) against one forward per request with
/// nothing shared, on the whole fixture set (issue 4's acceptance).
#[test]
fn scores_do_not_depend_on_batching_or_sharing() {
    fixture_checks::batch_invariant(model_f32(), MODEL, &f32_scores().0);
}

#[test]
fn quantized_logprobs_are_close_and_greedy_mostly_agrees() {
    let (scores, references) = score_subset(
        model_quantized(),
        MODEL,
        |_, _| true,
        &EngineOptions::default(),
    );
    fixture_checks::quantized_close(&scores, &references);
}
