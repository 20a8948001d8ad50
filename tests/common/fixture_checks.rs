//! The checks every model's reference fixtures get (`../shared/fixtures/<model>/`): token ids,
//! f32 log-probabilities per token, greedy flags, quantized closeness, batch invariance.

use valuelens::engine::{self, tokenize_request, EngineOptions, Request, Score};
use valuelens::model::Model;

use super::{fixtures, Reference};

/// Every request tokenizes to exactly the reference's context and continuation ids.
pub fn token_ids_match(model: &Model, fixture: &str) {
    let (requests, references) = fixtures(fixture);
    token_ids_match_on(model, &requests, &references);
}

/// [`token_ids_match`] on given requests and references.
pub fn token_ids_match_on(model: &Model, requests: &[Request], references: &[Reference]) {
    let mut mismatches = Vec::new();
    for (request, reference) in requests.iter().zip(references) {
        let tokenized = tokenize_request(model, request).unwrap();
        if tokenized.context() != reference.context_tokens.as_slice()
            || tokenized.continuation() != reference.continuation_tokens.as_slice()
        {
            mismatches.push(format!(
                "{}: context {:?}… vs {:?}…, continuation {:?} vs {:?}",
                request.id,
                &tokenized.context()[..tokenized.context().len().min(8)],
                &reference.context_tokens[..reference.context_tokens.len().min(8)],
                tokenized.continuation(),
                reference.continuation_tokens
            ));
        }
    }
    assert!(
        mismatches.is_empty(),
        "token ids differ for {} of {} requests, e.g. {:?}",
        mismatches.len(),
        requests.len(),
        &mismatches[..mismatches.len().min(3)]
    );
}

/// Scores of the fixture requests `pick`ed, and their references.
pub fn score_subset(
    model: &Model,
    fixture: &str,
    pick: impl Fn(usize, &Request) -> bool,
    options: &EngineOptions,
) -> (Vec<Score>, Vec<Reference>) {
    let (requests, references) = fixtures(fixture);
    let (requests, references): (Vec<Request>, Vec<Reference>) = requests
        .into_iter()
        .zip(references)
        .enumerate()
        .filter(|(i, (q, _))| pick(*i, q))
        .map(|(_, pair)| pair)
        .unzip();
    let scores = engine::score(model, &requests, options, None).unwrap();
    (scores, references)
}

/// f32: every token within `tolerance` of the reference, and every greedy flag equal.
pub fn f32_close(scores: &[Score], references: &[Reference], tolerance: f64) {
    let mut worst = (0.0f64, String::new());
    for (score, reference) in scores.iter().zip(references) {
        assert_eq!(score.id, reference.id);
        assert_eq!(score.n_tokens, reference.n_tokens, "{}", score.id);
        for (got, want) in score.token_logprobs.iter().zip(&reference.token_logprobs) {
            let delta = (got - want).abs();
            if delta > worst.0 {
                worst = (delta, score.id.clone());
            }
        }
    }
    eprintln!(
        "f32: largest per-token |Δ| {worst:?} over {} requests",
        scores.len()
    );
    assert!(
        worst.0 <= tolerance,
        "largest per-token difference {worst:?}"
    );
    let greedy_agree = scores
        .iter()
        .zip(references)
        .filter(|(s, r)| s.greedy == r.greedy)
        .count();
    assert_eq!(greedy_agree, references.len(), "greedy flags agree in f32");
}

/// Quantized: mean |Δ| per token ≤ 0.15 and greedy agreement ≥ 95 %.
pub fn quantized_close(scores: &[Score], references: &[Reference]) {
    close_on_average(scores, references, "quantized", 0.15);
}

/// Int8 (issue 16's bar): mean |Δ| per token ≤ 0.05 and greedy agreement ≥ 99 %.
pub fn int8_close(scores: &[Score], references: &[Reference]) {
    close_within(scores, references, "int8", 0.05, 0.99);
}

/// CPU bf16 (issue 16's bar): mean |Δ| per token ≤ 0.02 and greedy agreement ≥ 99 %.
pub fn bf16_close(scores: &[Score], references: &[Reference]) {
    close_within(scores, references, "bf16", 0.02, 0.99);
}

/// Mean |Δ| per token ≤ `max_mean` and greedy agreement ≥ 95 % (`label` names the setting);
/// returns the mean.
pub fn close_on_average(
    scores: &[Score],
    references: &[Reference],
    label: &str,
    max_mean: f64,
) -> f64 {
    close_within(scores, references, label, max_mean, 0.95)
}

/// Mean |Δ| per token ≤ `max_mean` and greedy agreement ≥ `min_agreement`; returns the mean.
pub fn close_within(
    scores: &[Score],
    references: &[Reference],
    label: &str,
    max_mean: f64,
    min_agreement: f64,
) -> f64 {
    let (mut total_delta, mut total_tokens, mut greedy_agree) = (0.0, 0usize, 0usize);
    for (score, reference) in scores.iter().zip(references) {
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
        "{label} on {} requests: mean |Δ| per token {mean:.4}, greedy agreement {:.1}%",
        references.len(),
        agreement * 100.0
    );
    assert!(mean <= max_mean, "{label}: mean |Δ| per token {mean}");
    assert!(
        agreement >= min_agreement,
        "{label}: greedy agreement {agreement}"
    );
    mean
}

/// The same requests scored one per forward with nothing shared give the same scores.
pub fn batch_invariant(model: &Model, fixture: &str, batched: &[Score]) {
    batch_invariant_on(model, fixtures(fixture).0, batched);
}

/// [`batch_invariant`] on given requests (those of `batched` among them are compared).
pub fn batch_invariant_on(model: &Model, requests: Vec<Request>, batched: &[Score]) {
    let requests: Vec<Request> = requests
        .into_iter()
        .filter(|r| batched.iter().any(|s| s.id == r.id))
        .collect();
    let one_by_one = engine::score(
        model,
        &requests,
        &EngineOptions {
            batch_tokens: 1,
            share_prefixes: false,
            ..EngineOptions::default()
        },
        None,
    )
    .unwrap();
    for (b, a) in one_by_one.iter().zip(
        batched
            .iter()
            .filter(|s| requests.iter().any(|r| r.id == s.id)),
    ) {
        assert_eq!(a.id, b.id);
        assert_eq!(a.token_logprobs.len(), b.token_logprobs.len());
        for (x, y) in a.token_logprobs.iter().zip(&b.token_logprobs) {
            assert!((x - y).abs() <= 1e-4, "{}: {x} vs {y}", a.id);
        }
        assert_eq!(a.greedy, b.greedy, "{}", a.id);
    }
}

/// The requests of `batched` scored through a prefix cache — half of them first, then all,
/// so that some come from the cache whole and others from a cached prefix — give the same
/// scores bit for bit (f32 on the CPU).
pub fn cache_invariant(model: &Model, fixture: &str, batched: &[Score]) {
    let requests: Vec<Request> = fixtures(fixture)
        .0
        .into_iter()
        .filter(|r| batched.iter().any(|s| s.id == r.id))
        .collect();
    let mut cache = engine::PrefixCache::new(64 << 20, model.kv_geometry());
    let options = EngineOptions::default();
    let half = &requests[..requests.len() / 2];
    engine::score_cached(model, half, &options, None, Some(&mut cache)).unwrap();
    let (cached, stats) =
        engine::score_cached(model, &requests, &options, None, Some(&mut cache)).unwrap();
    assert!(
        half.is_empty() || stats.answered_from_cache + stats.past_tokens > 0,
        "{stats:?}"
    );
    for (a, b) in cached.iter().zip(
        batched
            .iter()
            .filter(|s| requests.iter().any(|r| r.id == s.id)),
    ) {
        assert_eq!(a.id, b.id);
        let bits =
            |s: &Score| -> Vec<u64> { s.token_logprobs.iter().map(|x| x.to_bits()).collect() };
        assert_eq!(bits(a), bits(b), "{}", a.id);
        assert_eq!(a.greedy, b.greedy, "{}", a.id);
    }
}

/// Whether request `i` is in a subset of every `n`-th request.
pub fn every(i: usize, n: usize) -> bool {
    i.is_multiple_of(n)
}

/// The fixture tests of one registry model: token ids on all requests, f32 on every
/// `f32_every`-th, batch invariance on every `invariance_every`-th, quantized closeness on
/// every `quantized_every`-th, int8 closeness on every `int8_every`-th and CPU bf16 closeness
/// on every `bf16_every`-th (the full sets where the model is fast enough, subsets otherwise;
/// `invariance_every` must be a multiple of `f32_every`). Expands into a test crate that
/// declares `mod common;`.
#[macro_export]
macro_rules! valuelens_fixture_suite {
    ($model:expr, f32_every: $f32_every:expr, quantized_every: $quantized_every:expr, int8_every: $int8_every:expr, bf16_every: $bf16_every:expr, invariance_every: $invariance_every:expr) => {
        use std::sync::OnceLock;

        use common::fixture_checks::{self, score_subset};
        use common::{registry_model_path, Reference};
        use valuelens::engine::{EngineOptions, Score};
        use valuelens::model::{Model, Precision};

        const MODEL: &str = $model;

        fn model(mode: Precision) -> Model {
            Model::load_file(MODEL, &registry_model_path(MODEL), mode).unwrap()
        }

        fn model_f32() -> &'static Model {
            static MODEL_F32: OnceLock<Model> = OnceLock::new();
            MODEL_F32.get_or_init(|| model(Precision::F32))
        }

        fn f32_scores() -> &'static (Vec<Score>, Vec<Reference>) {
            static SCORES: OnceLock<(Vec<Score>, Vec<Reference>)> = OnceLock::new();
            SCORES.get_or_init(|| {
                score_subset(
                    model_f32(),
                    MODEL,
                    |i, _| fixture_checks::every(i, $f32_every),
                    &EngineOptions::default(),
                )
            })
        }

        #[test]
        fn token_ids_match_the_reference_for_every_request() {
            fixture_checks::token_ids_match(model_f32(), MODEL);
        }

        #[test]
        fn f32_logprobs_are_within_1e3_per_token_of_the_reference() {
            let (scores, references) = f32_scores();
            assert_eq!(scores.len(), references.len());
            assert_eq!(scores.len(), 164usize.div_ceil($f32_every));
            fixture_checks::f32_close(scores, references, 1e-3);
        }

        #[test]
        fn scores_do_not_depend_on_batching_or_sharing() {
            let (scores, _) = f32_scores();
            const { assert!(usize::is_multiple_of($invariance_every, $f32_every)) };
            let step = $invariance_every / $f32_every;
            let subset: Vec<Score> = scores.iter().step_by(step).cloned().collect();
            fixture_checks::batch_invariant(model_f32(), MODEL, &subset);
        }

        #[test]
        fn scores_do_not_depend_on_the_prefix_cache() {
            let (scores, _) = f32_scores();
            let step = $invariance_every / $f32_every;
            let subset: Vec<Score> = scores.iter().step_by(step).cloned().collect();
            fixture_checks::cache_invariant(model_f32(), MODEL, &subset);
        }

        #[test]
        fn quantized_logprobs_are_close_and_greedy_mostly_agrees() {
            let (scores, references) = score_subset(
                &model(Precision::Quantized),
                MODEL,
                |i, _| fixture_checks::every(i, $quantized_every),
                &EngineOptions::default(),
            );
            fixture_checks::quantized_close(&scores, &references);
        }

        #[test]
        fn int8_logprobs_are_within_0_05_per_token_and_greedy_agrees_on_99_percent() {
            let (scores, references) = score_subset(
                &model(Precision::Int8),
                MODEL,
                |i, _| fixture_checks::every(i, $int8_every),
                &EngineOptions::default(),
            );
            fixture_checks::int8_close(&scores, &references);
        }

        #[test]
        fn cpu_bf16_logprobs_are_within_0_02_per_token_and_greedy_agrees_on_99_percent() {
            let (scores, references) = score_subset(
                &model(Precision::Bf16),
                MODEL,
                |i, _| fixture_checks::every(i, $bf16_every),
                &EngineOptions::default(),
            );
            fixture_checks::bf16_close(&scores, &references);
        }
    };
}
