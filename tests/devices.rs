//! Devices and precisions: bf16 and f16 as GPUs compute them (run here on the CPU through the
//! same half-precision activations and masked-attention path the GPU takes) stay close to the
//! f32 references, `--device`
//! explains itself when CUDA is not built in, and `compare` / `tokenize` / `bench --repeat`
//! do what they say.

mod common;

use std::process::Command;

use common::fixture_checks::{close_on_average, score_subset};
use common::{fixtures, registry_model_path, shared_dir, succeed};
use valuelens::engine::{EngineOptions, Request};
use valuelens::model::{Model, Placement, Precision};

fn valuelens() -> Command {
    common::valuelens_command()
}

fn load(name: &str, mode: Precision) -> Model {
    let placement = Placement::cpu(mode).with_gpu_numerics();
    Model::load_file_on(name, &registry_model_path(name), &placement).unwrap()
}

/// SmolLM2 on every 16th fixture request (contexts up to ~2,500 tokens, so several 1,024-row
/// attention blocks): f16 and bf16 keep the mean per-token error near their precision.
#[test]
fn half_precisions_track_the_f32_references_on_smollm2() {
    let every_16th = |i: usize, _: &_| i.is_multiple_of(16);
    let options = EngineOptions::default();
    let mut means = Vec::new();
    for (mode, max_mean) in [(Precision::F16, 0.03), (Precision::Bf16, 0.15)] {
        let model = load("smollm2-135m", mode);
        let (scores, references) = score_subset(&model, "smollm2-135m", every_16th, &options);
        means.push(close_on_average(
            &scores,
            &references,
            &format!("smollm2 {mode:?}"),
            max_mean,
        ));
    }
    // bf16 has 3 fewer mantissa bits than f16: its error must be the larger one.
    assert!(means[1] > means[0], "bf16 {} vs f16 {}", means[1], means[0]);
}

/// gemma3's sliding-window layers through the masked blocks: contexts beyond its 512-token
/// window, in bf16 (gemma's activations overflow f16, which is refused).
#[test]
fn gemma3_sliding_windows_hold_in_bf16() {
    let path = registry_model_path("gemma3-270m");
    let f16 = Model::load_file_on("gemma3-270m", &path, &Placement::cpu(Precision::F16));
    let err = format!("{:#}", f16.err().expect("f16 is refused"));
    assert!(err.contains("bf16"), "{err}");

    let model = load("gemma3-270m", Precision::Bf16);
    // Every 16th request, and the one of ~2,500 tokens (five windows, three query blocks).
    let long_ones = |i: usize, r: &Request| i.is_multiple_of(16) || r.context.len() > 10_000;
    let (scores, references) =
        score_subset(&model, "gemma3-270m", long_ones, &EngineOptions::default());
    assert!(
        references.iter().any(|r| r.context_tokens.len() > 1024),
        "some contexts span several windows"
    );
    close_on_average(&scores, &references, "gemma3 bf16", 0.15);
}

#[test]
fn device_flag_names_what_to_do() {
    let requests = shared_dir().join("fixtures/smollm2-135m/requests.jsonl");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("scores.jsonl");
    // Runs `score` on `device`, expects a refusal, returns its message.
    let refusal = |device: &str| {
        let mut command = valuelens();
        command
            .args(["score", "--device", device, "--input"])
            .arg(&requests)
            .arg("--output")
            .arg(&out);
        let output = command.output().unwrap();
        assert!(!output.status.success(), "--device {device} is refused");
        String::from_utf8_lossy(&output.stderr).into_owned()
    };
    let stderr = refusal("tpu");
    assert!(stderr.contains("cpu, cuda or cuda:N"), "{stderr}");
    if !cfg!(feature = "cuda") {
        let stderr = refusal("cuda");
        assert!(
            stderr.contains("--features cuda") && stderr.contains("build-cuda.sh"),
            "{stderr}"
        );
    }
    assert!(!out.exists(), "no output after a refused device");
}

/// A few short fixture requests as a JSONL file.
fn short_requests(dir: &std::path::Path, n: usize) -> std::path::PathBuf {
    let path = dir.join("requests.jsonl");
    let lines: Vec<String> = fixtures("smollm2-135m")
        .0
        .iter()
        .filter(|r| r.context.len() < 600)
        .take(n)
        .map(|r| serde_json::to_string(r).unwrap())
        .collect();
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    path
}

#[test]
fn compare_reports_agreement_and_fails_beyond_the_tolerance() {
    let dir = tempfile::tempdir().unwrap();
    let requests = short_requests(dir.path(), 4);
    let compare = |tolerance: &str| {
        let mut command = valuelens();
        command
            .args([
                "compare",
                "--model",
                "synthetic:llama-135m",
                "--dtype",
                "f16",
            ])
            .args([
                "--reference-dtype",
                "f32",
                "--tolerance",
                tolerance,
                "--input",
            ])
            .arg(&requests);
        command.output().unwrap()
    };
    let loose = compare("0.5");
    assert!(
        loose.status.success(),
        "{}",
        String::from_utf8_lossy(&loose.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&loose.stdout).unwrap();
    let agreement = &report["agreement"];
    assert_eq!(agreement["requests"], 4);
    let max = agreement["max_abs_token_diff"].as_f64().unwrap();
    assert!(
        max > 0.0 && max < 0.05,
        "f16 vs f32 on a synthetic model: {max}"
    );
    assert_eq!(report["tested"]["dtype"], "f16");
    assert_eq!(report["reference"]["device"], "cpu");

    let strict = compare("1e-9");
    assert!(!strict.status.success());
    let stderr = String::from_utf8_lossy(&strict.stderr);
    assert!(
        stderr.contains("f16 on cpu differs from f32 on cpu"),
        "{stderr}"
    );
}

/// `tokenize` writes exactly the ids the references were computed from.
#[test]
fn tokenize_writes_the_reference_token_ids() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("tokens.jsonl");
    let requests = shared_dir().join("fixtures/smollm2-135m/requests.jsonl");
    let mut command = valuelens();
    command
        .args(["tokenize", "--input"])
        .arg(&requests)
        .arg("--output")
        .arg(&out);
    succeed(command);
    let (_, references) = fixtures("smollm2-135m");
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), references.len());
    for (line, reference) in lines.iter().zip(&references) {
        assert_eq!(line["id"], reference.id.as_str());
        let ids = |key: &str| -> Vec<u32> { serde_json::from_value(line[key].clone()).unwrap() };
        assert_eq!(
            ids("context_tokens"),
            reference.context_tokens,
            "{}",
            reference.id
        );
        assert_eq!(
            ids("continuation_tokens"),
            reference.continuation_tokens,
            "{}",
            reference.id
        );
    }
}

#[test]
fn bench_repeats_and_reports_each_input() {
    let dir = tempfile::tempdir().unwrap();
    let requests = short_requests(dir.path(), 3);
    let other_dir = tempfile::tempdir().unwrap();
    let others = short_requests(other_dir.path(), 5);
    let mut command = valuelens();
    command
        .args([
            "bench",
            "--model",
            "synthetic:llama-135m",
            "--repeat",
            "2",
            "--input",
        ])
        .arg(&requests)
        .arg("--input")
        .arg(&others);
    let output = succeed(command);
    let reports: Vec<serde_json::Value> = String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(reports.len(), 2, "one report per input");
    assert_eq!(reports[0]["requests"], 3);
    assert_eq!(reports[1]["requests"], 5);
    for report in &reports {
        let passes = report["passes_s"].as_array().unwrap();
        assert_eq!(passes.len(), 2);
        let fastest = passes
            .iter()
            .map(|p| p.as_f64().unwrap())
            .fold(f64::INFINITY, f64::min);
        assert_eq!(report["score_s"].as_f64().unwrap(), fastest);
        assert_eq!(report["settings"]["device"], "cpu");
        assert_eq!(report["settings"]["dtype"], "f32");
        assert_eq!(report["load_s"], reports[0]["load_s"], "one load");
    }
}
