//! Qwen2.5-Coder-0.5B-Instruct (qwen2 architecture, GGUF Q5_0/Q4_K/Q6_K/Q8_0) against the HF
//! transformers references of `../shared/fixtures/qwen2.5-coder-0.5b/`: token ids for all 164
//! requests, f32 log-probabilities on all of them, and — the model being 4× SmolLM2's compute,
//! and most of its weights Q5_0, which has only a slow scalar kernel in candle — quantized
//! closeness on every eighth request and batch invariance on every 32nd.

mod common;

use std::sync::OnceLock;

use common::fixture_checks::{self, score_subset};
use common::{registry_model_path, Reference};
use valuelens::engine::{EngineOptions, Score};
use valuelens::model::{Model, WeightMode};

const MODEL: &str = "qwen2.5-coder-0.5b";

fn model(mode: WeightMode) -> Model {
    Model::load_file(MODEL, &registry_model_path(MODEL), mode).unwrap()
}

fn model_f32() -> &'static Model {
    static MODEL_F32: OnceLock<Model> = OnceLock::new();
    MODEL_F32.get_or_init(|| model(WeightMode::F32))
}

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
    fixture_checks::f32_close(scores, references, 1e-3);
}

#[test]
fn scores_do_not_depend_on_batching_or_sharing() {
    let (scores, _) = f32_scores();
    let every_32nd: Vec<Score> = scores.iter().step_by(32).cloned().collect();
    fixture_checks::batch_invariant(model_f32(), MODEL, &every_32nd);
}

#[test]
fn quantized_logprobs_are_close_and_greedy_mostly_agrees_on_every_eighth_request() {
    let (scores, references) = score_subset(
        &model(WeightMode::Quantized),
        MODEL,
        |i, _| i % 8 == 0,
        &EngineOptions::default(),
    );
    fixture_checks::quantized_close(&scores, &references);
}
