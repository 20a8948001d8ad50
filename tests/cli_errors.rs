//! Bad input through the `valuelens` binary: each case exits non-zero with one clear message,
//! never panics, and leaves no output file behind.

mod common;

use std::path::{Path, PathBuf};

use candle_core::quantized::gguf_file::{self, Value};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor};

struct Failure {
    stderr: String,
}

/// Runs `valuelens score`.
fn score(model: &str, input: &Path, output: &Path) -> std::process::Output {
    common::valuelens_command()
        .args(["score", "--model", model, "--input"])
        .arg(input)
        .arg("--output")
        .arg(output)
        .output()
        .expect("the binary runs")
}

/// Runs `valuelens score` and checks the failure contract; returns stderr for more checks.
fn score_fails(model: &str, input: &Path, dir: &Path) -> Failure {
    let output = dir.join("scores.jsonl");
    let run = score(model, input, &output);
    let stderr = String::from_utf8_lossy(&run.stderr).into_owned();
    assert!(
        !run.status.success(),
        "expected a failure, got success: {stderr}"
    );
    assert_eq!(
        run.status.code(),
        Some(1),
        "a clean error exit, not a crash: {stderr}"
    );
    assert!(!stderr.contains("panicked"), "no panic: {stderr}");
    assert_eq!(stderr.matches("error:").count(), 1, "one message: {stderr}");
    assert!(!output.exists(), "no output file is left behind");
    let leftovers: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains(".tmp"))
        .collect();
    assert!(
        leftovers.is_empty(),
        "no temporary files are left: {leftovers:?}"
    );
    Failure { stderr }
}

fn good_requests(dir: &Path) -> PathBuf {
    let path = dir.join("requests.jsonl");
    std::fs::write(
        &path,
        "{\"id\": \"a\", \"context\": \"The sky is\", \"continuation\": \" blue\"}\n",
    )
    .unwrap();
    path
}

fn model_path() -> String {
    common::default_model_path().display().to_string()
}

#[test]
fn missing_model_file() {
    let dir = tempfile::tempdir().unwrap();
    let f = score_fails(
        "/no/such/model.gguf",
        &good_requests(dir.path()),
        dir.path(),
    );
    assert!(f.stderr.contains("/no/such/model.gguf"), "{}", f.stderr);
    assert!(f.stderr.contains("does not exist"), "{}", f.stderr);
}

#[test]
fn file_that_is_not_gguf() {
    let dir = tempfile::tempdir().unwrap();
    let fake = dir.path().join("fake.gguf");
    std::fs::write(&fake, "this is a text file, not a model\n").unwrap();
    let f = score_fails(
        fake.to_str().unwrap(),
        &good_requests(dir.path()),
        dir.path(),
    );
    assert!(f.stderr.contains("fake.gguf"), "{}", f.stderr);
    assert!(f.stderr.contains("not a GGUF file"), "{}", f.stderr);
}

#[test]
fn truncated_gguf_in_the_header_and_in_the_tensor_data() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(model_path()).unwrap();
    for (name, len) in [("head.gguf", 100_000), ("half.gguf", bytes.len() / 2)] {
        let cut = dir.path().join(name);
        std::fs::write(&cut, &bytes[..len]).unwrap();
        let f = score_fails(
            cut.to_str().unwrap(),
            &good_requests(dir.path()),
            dir.path(),
        );
        assert!(f.stderr.contains(name), "{}", f.stderr);
        assert!(f.stderr.contains("truncated"), "{}", f.stderr);
        std::fs::remove_file(&cut).unwrap();
    }
}

#[test]
fn unknown_registry_name() {
    let dir = tempfile::tempdir().unwrap();
    let f = score_fails("no-such-model", &good_requests(dir.path()), dir.path());
    assert!(
        f.stderr.contains("unknown model 'no-such-model'"),
        "{}",
        f.stderr
    );
    assert!(
        f.stderr.contains("smollm2-135m"),
        "lists the known names: {}",
        f.stderr
    );
}

#[test]
fn unsupported_architecture() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mamba.gguf");
    let weight = QTensor::quantize(
        &Tensor::zeros((4, 32), candle_core::DType::F32, &Device::Cpu).unwrap(),
        GgmlDType::F32,
    )
    .unwrap();
    let arch = Value::String("mamba".to_string());
    let mut file = std::fs::File::create(&path).unwrap();
    gguf_file::write(
        &mut file,
        &[("general.architecture", &arch)],
        &[("w", &weight)],
    )
    .unwrap();
    drop(file);
    let f = score_fails(
        path.to_str().unwrap(),
        &good_requests(dir.path()),
        dir.path(),
    );
    assert!(
        f.stderr.contains("architecture 'mamba' is not supported"),
        "{}",
        f.stderr
    );
}

/// A real GGUF whose tensors are in a format neither candle nor valuelens reads (Q4_0_8_8, a
/// repacked layout older llama.cpp versions wrote into files) is named as such, with the
/// formats to use instead, not called damaged.
#[test]
fn gguf_in_a_format_not_read_is_named_not_called_damaged() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model-Q4_0_8_8.gguf");
    let weight = QTensor::quantize(
        &Tensor::zeros((4, 256), candle_core::DType::F32, &Device::Cpu).unwrap(),
        GgmlDType::F32,
    )
    .unwrap();
    let arch = Value::String("llama".to_string());
    let mut bytes = Vec::new();
    gguf_file::write(
        &mut std::io::Cursor::new(&mut bytes),
        &[("general.architecture", &arch)],
        &[("blk.0.ffn_down.weight", &weight)],
    )
    .unwrap();
    common::set_matrix_type(&mut bytes, "blk.0.ffn_down.weight", 0, 33);
    std::fs::write(&path, &bytes).unwrap();
    let f = score_fails(
        path.to_str().unwrap(),
        &good_requests(dir.path()),
        dir.path(),
    );
    assert!(f.stderr.contains("model-Q4_0_8_8.gguf"), "{}", f.stderr);
    assert!(f.stderr.contains("blk.0.ffn_down.weight"), "{}", f.stderr);
    assert!(f.stderr.contains("(GGUF tensor type 33)"), "{}", f.stderr);
    assert!(f.stderr.contains("Q4_K_M"), "{}", f.stderr);
    assert!(!f.stderr.contains("damaged"), "{}", f.stderr);
}

#[test]
fn malformed_jsonl_line_names_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("bad.jsonl");
    std::fs::write(
        &input,
        "{\"id\": \"a\", \"context\": \"x\", \"continuation\": \" y\"}\n\n{\"id\": \"b\", \"context\": \n",
    )
    .unwrap();
    let f = score_fails(&model_path(), &input, dir.path());
    assert!(f.stderr.contains("bad.jsonl line 3"), "{}", f.stderr);
}

#[test]
fn missing_field_names_the_field_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("nofield.jsonl");
    std::fs::write(&input, "{\"id\": \"a\", \"context\": \"x\"}\n").unwrap();
    let f = score_fails(&model_path(), &input, dir.path());
    assert!(f.stderr.contains("nofield.jsonl line 1"), "{}", f.stderr);
    assert!(f.stderr.contains("continuation"), "{}", f.stderr);
}

#[test]
fn context_longer_than_the_window() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("long.jsonl");
    let context = "word ".repeat(9000);
    let line = serde_json::json!({"id": "too-long", "context": context, "continuation": "end"});
    std::fs::write(&input, format!("{line}\n")).unwrap();
    let f = score_fails(&model_path(), &input, dir.path());
    assert!(
        f.stderr.contains("too-long"),
        "names the request: {}",
        f.stderr
    );
    assert!(f.stderr.contains("context window of 8192"), "{}", f.stderr);
}

#[test]
fn unwritable_output_folder() {
    let dir = tempfile::tempdir().unwrap();
    let input = good_requests(dir.path());
    let run = score(
        &model_path(),
        &input,
        Path::new("/no/such/folder/scores.jsonl"),
    );
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("/no/such/folder"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn request_line_that_is_a_json_array() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("arrays.jsonl");
    std::fs::write(
        &input,
        "{\"id\": \"a\", \"context\": \"x\", \"continuation\": \" y\"}\n[\"b\", \"x\", \" y\"]\n",
    )
    .unwrap();
    let f = score_fails(&model_path(), &input, dir.path());
    assert!(f.stderr.contains("arrays.jsonl line 2"), "{}", f.stderr);
    assert!(f.stderr.contains("not a JSON object"), "{}", f.stderr);
}

/// `--output` naming the input file (by any path) would replace the user's requests with the
/// scores: refused before the model is even looked for, the input untouched.
#[test]
fn output_that_is_the_input_file() {
    let dir = tempfile::tempdir().unwrap();
    let input = good_requests(dir.path());
    let before = std::fs::read_to_string(&input).unwrap();
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    let same_file = dir.path().join("sub/../requests.jsonl");
    for output in [&input, &same_file] {
        let run = score("/no/such/model.gguf", &input, output);
        let stderr = String::from_utf8_lossy(&run.stderr);
        assert_eq!(run.status.code(), Some(1), "{stderr}");
        assert!(stderr.contains("same file as --input"), "{stderr}");
        assert!(stderr.contains("requests.jsonl"), "{stderr}");
        assert!(
            !stderr.contains("/no/such/model.gguf"),
            "before the model: {stderr}"
        );
        assert_eq!(std::fs::read_to_string(&input).unwrap(), before);
    }
}
