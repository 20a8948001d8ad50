//! `synthetic:<shape>` models: SmolLM2's shapes with seeded random weights load with the default
//! model's tokenizer or with an exported tokenizer folder, score deterministically, and give
//! near-uniform distributions (as random weights of std 0.02 should).

mod common;

use std::process::Command;

use common::{default_model_path, fixtures, succeed};
use valuelens::engine::{self, EngineOptions, Request};
use valuelens::model::{Model, Precision};

/// `n` fixture requests with short contexts (a synthetic model's scores mean nothing; loading
/// and tokenizing are what these tests check).
fn first_requests(n: usize) -> Vec<Request> {
    fixtures("smollm2-135m")
        .0
        .into_iter()
        .filter(|r| r.context.len() < 400)
        .take(n)
        .collect()
}

#[test]
fn synthetic_smollm2_shape_scores_deterministically_and_near_uniformly() {
    let requests = first_requests(3);
    let a = Model::load("synthetic:llama-135m", Precision::F32).unwrap();
    let b = Model::load("synthetic:llama-135m", Precision::F32).unwrap();
    let real = Model::load_file("smollm2", &default_model_path(), Precision::F32).unwrap();
    for request in &requests {
        assert_eq!(
            engine::tokenize_request(&a, request).unwrap(),
            engine::tokenize_request(&real, request).unwrap(),
            "the default model's tokenizer"
        );
    }
    let options = EngineOptions::default();
    let scores_a = engine::score(&a, &requests, &options, None).unwrap();
    let scores_b = engine::score(&b, &requests, &options, None).unwrap();
    let uniform = -(49_152f64).ln();
    for (x, y) in scores_a.iter().zip(&scores_b) {
        assert_eq!(x.token_logprobs, y.token_logprobs, "same seed, same scores");
        for &lp in &x.token_logprobs {
            assert!((lp - uniform).abs() < 3.0, "{lp} vs uniform {uniform}");
        }
    }
}

#[test]
fn synthetic_model_takes_an_exported_tokenizer_folder() {
    let dir = tempfile::tempdir().unwrap();
    let tokenizer = dir.path().join("tokenizer");
    let mut command = Command::new(env!("CARGO_BIN_EXE_valuelens"));
    command
        .args(["export", "--tokenizer-only", "--out"])
        .arg(&tokenizer);
    succeed(command);
    let mut files: Vec<String> = std::fs::read_dir(&tokenizer)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert_eq!(files, ["tokenizer.json", "tokenizer_config.json"]);

    let requests = first_requests(2);
    let spec = format!("synthetic:llama-135m@{}", tokenizer.display());
    let with_folder = Model::load(&spec, Precision::F32).unwrap();
    let with_default = Model::load("synthetic:llama-135m", Precision::F32).unwrap();
    let options = EngineOptions::default();
    let a = engine::score(&with_folder, &requests, &options, None).unwrap();
    let b = engine::score(&with_default, &requests, &options, None).unwrap();
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(x.n_tokens, y.n_tokens);
        for (p, q) in x.token_logprobs.iter().zip(&y.token_logprobs) {
            assert!((p - q).abs() < 1e-5, "{}: {p} vs {q}", x.id);
        }
    }
}

#[test]
fn unknown_synthetic_shape_or_tokenizer_folder_fails_clearly() {
    for (spec, expected) in [
        ("synthetic:llama-2b", "llama-135m"),
        ("synthetic:llama-135m@/nonexistent/folder", "tokenizer.json"),
    ] {
        let err = format!("{:#}", Model::load(spec, Precision::F32).err().unwrap());
        assert!(err.contains(expected), "{spec}: {err}");
    }
}
