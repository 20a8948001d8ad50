//! The memory plan made before a model loads: a precision whose weights do not fit is refused
//! in seconds with what it needs, what is available and the `--dtype` that fits; a batch that
//! does not fit beside the weights is made smaller, with a line saying so. The memory
//! available is set through `VALUELENS_MEMORY_AVAILABLE_MB`, as on a smaller machine.

mod common;

use std::process::Command;
use std::time::Instant;

fn bench(
    model: &str,
    dtype: &str,
    available_mb: u64,
    input: &std::path::Path,
) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_valuelens"))
        .args(["bench", "--model", model, "--dtype", dtype, "--input"])
        .arg(input)
        .env("VALUELENS_MEMORY_AVAILABLE_MB", available_mb.to_string())
        .output()
        .unwrap()
}

fn one_request(dir: &std::path::Path) -> std::path::PathBuf {
    let input = dir.join("one.jsonl");
    std::fs::write(
        &input,
        "{\"id\": \"a\", \"context\": \"The capital of France is\", \"continuation\": \" Paris\"}\n",
    )
    .unwrap();
    input
}

#[test]
fn an_8b_model_in_f32_is_refused_before_loading_and_named_what_fits() {
    let dir = tempfile::tempdir().unwrap();
    let input = one_request(dir.path());
    let started = Instant::now();
    let output = bench("synthetic:llama-8b+q4_k", "f32", 22_000, &input);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        started.elapsed().as_secs() < 30,
        "refused only after {:?}",
        started.elapsed()
    );
    for part in [
        "--dtype f32 needs about",
        "22.0 GB is available",
        "use --dtype quantized",
    ] {
        assert!(stderr.contains(part), "{part:?} not in: {stderr}");
    }
    // The need is the f32 weights of an 8B model: 8.0e9 parameters × 4 bytes and more.
    let need: f64 = stderr
        .split("needs about ")
        .nth(1)
        .and_then(|rest| rest.split(" GB").next())
        .and_then(|gb| gb.parse().ok())
        .unwrap();
    assert!((32.0..40.0).contains(&need), "{need} GB");
    // Nothing fits in too little memory.
    let output = bench("synthetic:llama-8b+q4_k", "quantized", 3_000, &input);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("no --dtype fits"), "{stderr}");
}

#[test]
fn a_batch_that_does_not_fit_beside_the_weights_is_made_smaller() {
    let dir = tempfile::tempdir().unwrap();
    let input = one_request(dir.path());
    let model = common::default_model_path();
    let output = bench(model.to_str().unwrap(), "quantized", 650, &input);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("--batch-tokens 8192 → "), "{stderr}");
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let tokens = report["settings"]["batch_tokens"].as_u64().unwrap();
    assert!((256..8192).contains(&tokens), "{tokens}");
    // With room to spare nothing changes.
    let output = bench(model.to_str().unwrap(), "quantized", 20_000, &input);
    assert!(output.status.success());
    assert!(!String::from_utf8_lossy(&output.stderr).contains("--batch-tokens"));
    // A prefix cache is set aside first (twice its size: what it holds and what one forward
    // captures for it), so the same room holds a smaller batch.
    let output = Command::new(env!("CARGO_BIN_EXE_valuelens"))
        .args([
            "bench",
            "--model",
            model.to_str().unwrap(),
            "--dtype",
            "quantized",
        ])
        .args(["--prefix-cache-mb", "4000", "--input"])
        .arg(&input)
        .env("VALUELENS_MEMORY_AVAILABLE_MB", "9000")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("--batch-tokens 8192 → "), "{stderr}");
    assert!(
        stderr.contains("less 8.4 GB for the prefix cache"),
        "{stderr}"
    );
}
