//! Hugging Face checkpoints on real weights: the registry GGUFs written as safetensors folders
//! (f32, and f16/bf16 in shards) score the fixtures as the references say, and `hf:` models
//! resolve from a Hub cache laid out as `huggingface_hub` lays it out — offline, by branch and
//! by commit, safetensors and GGUF — and fail clearly when the cache lacks them.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::OnceLock;

use common::fixture_checks::{self, score_subset};
use common::{default_model_path, fixtures, registry_model_path, succeed};
use valuelens::engine::EngineOptions;
use valuelens::model::formats::export::{export, ExportDtype};
use valuelens::model::formats::open::open_path;
use valuelens::model::tokenizer::TextTokenizer;
use valuelens::model::{Model, Precision};

/// `model` (a GGUF) exported into a fresh folder under `root`.
fn exported(model: &Path, root: &Path, dtype: ExportDtype, shard_mb: Option<usize>) -> PathBuf {
    let out = root.join(format!("{dtype:?}-{shard_mb:?}"));
    let mut checkpoint = open_path(model).unwrap();
    let tokenizer = TextTokenizer::from_checkpoint(&checkpoint).unwrap();
    export(
        &mut checkpoint,
        &tokenizer,
        &out,
        dtype,
        shard_mb.map(|mb| mb * 1_000_000),
    )
    .unwrap();
    out
}

/// SmolLM2 as an f32 safetensors folder, written once per test process.
fn smollm2_f32() -> &'static Path {
    static DIR: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    let (_, path) = DIR.get_or_init(|| {
        let root = tempfile::tempdir().unwrap();
        let path = exported(&default_model_path(), root.path(), ExportDtype::F32, None);
        (root, path)
    });
    path
}

#[test]
fn smollm2_written_as_f32_safetensors_scores_every_fixture_within_1e3() {
    let model = Model::load_file("smollm2-st", smollm2_f32(), Precision::F32).unwrap();
    assert_eq!(model.architecture, "llama");
    fixture_checks::token_ids_match(&model, "smollm2-135m");
    let (scores, references) = score_subset(
        &model,
        "smollm2-135m",
        |_, _| true,
        &EngineOptions::default(),
    );
    assert_eq!(scores.len(), 164);
    fixture_checks::f32_close(&scores, &references, 1e-3);
}

/// Mean |Δ| per token against the f32 reference on every 16th SmolLM2 fixture.
fn mean_delta(model_dir: &Path) -> f64 {
    let model = Model::load_file("smollm2-st", model_dir, Precision::F32).unwrap();
    let (scores, references) = score_subset(
        &model,
        "smollm2-135m",
        |i, _| i % 16 == 0,
        &EngineOptions::default(),
    );
    let (mut total, mut n) = (0.0, 0);
    for (s, r) in scores.iter().zip(&references) {
        assert_eq!(s.n_tokens, r.n_tokens);
        for (a, b) in s.token_logprobs.iter().zip(&r.token_logprobs) {
            total += (a - b).abs();
            n += 1;
        }
    }
    total / n as f64
}

#[test]
fn sharded_f16_and_bf16_checkpoints_load_and_stay_close() {
    let root = tempfile::tempdir().unwrap();
    // Measured: f16 0.0015, bf16 0.0086 mean |Δ| per token (weights rounded, math in f32).
    for (dtype, tolerance) in [(ExportDtype::F16, 0.005), (ExportDtype::Bf16, 0.03)] {
        let dir = exported(&default_model_path(), root.path(), dtype, Some(100));
        let index: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(dir.join("model.safetensors.index.json")).unwrap(),
        )
        .unwrap();
        let shards: std::collections::BTreeSet<&str> = index["weight_map"]
            .as_object()
            .unwrap()
            .values()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert!(shards.len() >= 2, "{dtype:?}: {shards:?}");
        let mean = mean_delta(&dir);
        eprintln!("{dtype:?}: mean |Δ| per token {mean:.4}");
        assert!(mean <= tolerance, "{dtype:?}: mean |Δ| {mean}");
    }
}

#[test]
fn gemma3_written_as_safetensors_matches_the_reference() {
    let root = tempfile::tempdir().unwrap();
    let dir = exported(
        &registry_model_path("gemma3-270m"),
        root.path(),
        ExportDtype::F32,
        None,
    );
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["model_type"], "gemma3_text");
    let model = Model::load_file("gemma3-st", &dir, Precision::F32).unwrap();
    // Every 20th request: long Task-1 prompts (past the sliding window) and short ones.
    let (scores, references) = score_subset(
        &model,
        "gemma3-270m",
        |i, _| i % 20 == 0,
        &EngineOptions::default(),
    );
    for (s, r) in scores.iter().zip(&references) {
        assert_eq!(s.n_tokens, r.n_tokens, "{}: BOS and token ids", s.id);
    }
    fixture_checks::f32_close(&scores, &references, 1e-3);
}

#[test]
fn a_folder_without_config_or_weights_is_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let err = Model::load_file("empty", dir.path(), Precision::F32)
        .err()
        .unwrap();
    assert!(format!("{err:#}").contains("config.json"), "{err:#}");
    std::fs::write(dir.path().join("config.json"), r#"{"model_type": "llama"}"#).unwrap();
    std::fs::write(dir.path().join("tokenizer.json"), "{}").unwrap();
    let err = format!(
        "{:#}",
        Model::load_file("x", dir.path(), Precision::F32)
            .err()
            .unwrap()
    );
    assert!(err.contains("hidden_size"), "{err}");
}

// ---- hf: through a Hub cache populated the way huggingface_hub populates it ----

const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

/// `HF_HOME/hub/models--<org>--<name>/`: each file as a blob (hard-linked, else copied) and a
/// relative symlink to it in `snapshots/<COMMIT>/`; `refs/main` names the commit.
fn add_to_cache(hf_home: &Path, repo: &str, files: &[PathBuf]) {
    let folder = hf_home
        .join("hub")
        .join(format!("models--{}", repo.replace('/', "--")));
    let (blobs, snapshot) = (folder.join("blobs"), folder.join("snapshots").join(COMMIT));
    std::fs::create_dir_all(&blobs).unwrap();
    std::fs::create_dir_all(&snapshot).unwrap();
    std::fs::create_dir_all(folder.join("refs")).unwrap();
    std::fs::write(folder.join("refs").join("main"), COMMIT).unwrap();
    for (i, file) in files.iter().enumerate() {
        let blob = blobs.join(format!("blob{i:04}"));
        if std::fs::hard_link(file, &blob).is_err() {
            std::fs::copy(file, &blob).unwrap();
        }
        let name = file.file_name().unwrap();
        std::os::unix::fs::symlink(
            Path::new("../../blobs").join(blob.file_name().unwrap()),
            snapshot.join(name),
        )
        .unwrap();
    }
}

/// A Hub cache with SmolLM2 as a safetensors repository and as a GGUF repository.
fn hub_cache() -> &'static Path {
    static HOME: OnceLock<tempfile::TempDir> = OnceLock::new();
    HOME.get_or_init(|| {
        let home = tempfile::tempdir().unwrap();
        let files: Vec<PathBuf> = std::fs::read_dir(smollm2_f32())
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        add_to_cache(home.path(), "test-org/SmolLM2-st", &files);
        add_to_cache(
            home.path(),
            "test-org/SmolLM2-GGUF",
            &[default_model_path()],
        );
        home
    })
    .path()
}

fn valuelens_with_hub(args: &[&str], offline: bool) -> Output {
    let mut command = common::valuelens_command();
    command
        .args(args)
        .env("HF_HOME", hub_cache())
        .env_remove("HF_HUB_CACHE")
        .env_remove("HF_TOKEN")
        // Nothing listens on port 9: a download attempt fails at once, wherever tests run.
        .env("HF_ENDPOINT", "http://127.0.0.1:9");
    if offline {
        command.env("HF_HUB_OFFLINE", "1");
    } else {
        command.env_remove("HF_HUB_OFFLINE");
    }
    command.output().unwrap()
}

/// The first four SmolLM2 fixture requests as a JSONL file in `dir`.
fn fixture_input(dir: &Path) -> PathBuf {
    let (requests, _) = fixtures("smollm2-135m");
    let input = dir.join("requests.jsonl");
    let lines: Vec<String> = requests[..4]
        .iter()
        .map(|r| serde_json::to_string(r).unwrap())
        .collect();
    std::fs::write(&input, lines.join("\n") + "\n").unwrap();
    input
}

/// `valuelens score` of the first four SmolLM2 fixtures with `model`, into `dir/scores.jsonl`.
fn score_with_hub(model: &str, offline: bool, dir: &Path) -> (Output, PathBuf) {
    let input = fixture_input(dir);
    let output = dir.join("scores.jsonl");
    let args = [
        "score",
        "--model",
        model,
        "--input",
        input.to_str().unwrap(),
        "--output",
        output.to_str().unwrap(),
    ];
    (valuelens_with_hub(&args, offline), output)
}

/// Scores the first four SmolLM2 fixtures with `model`; checks them against the references.
fn scores_fixtures_through(model: &str, offline: bool) {
    let dir = tempfile::tempdir().unwrap();
    let (_, references) = fixtures("smollm2-135m");
    let (out, output) = score_with_hub(model, offline, dir.path());
    assert!(
        out.status.success(),
        "{model}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let scored: Vec<serde_json::Value> = std::fs::read_to_string(&output)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(scored.len(), 4);
    let tolerance = if model.ends_with(".gguf") { 0.5 } else { 1e-3 };
    for (s, r) in scored.iter().zip(&references) {
        let got = s["logprob"].as_f64().unwrap();
        assert!(
            (got - r.logprob).abs() <= tolerance * r.n_tokens as f64,
            "{model} {}: {got} vs {}",
            r.id,
            r.logprob
        );
    }
}

#[test]
fn hf_safetensors_model_resolves_offline_from_the_cache() {
    scores_fixtures_through("hf:test-org/SmolLM2-st", true);
}

#[test]
fn hf_model_resolves_by_commit_and_from_cache_without_the_offline_flag() {
    scores_fixtures_through(&format!("hf:test-org/SmolLM2-st@{COMMIT}"), false);
}

#[test]
fn hf_gguf_file_resolves_offline_from_the_cache() {
    scores_fixtures_through(
        "hf:test-org/SmolLM2-GGUF:SmolLM2-135M-Instruct.Q4_1.gguf",
        true,
    );
}

/// `valuelens score` with `model` that is expected to fail, leaving no output.
fn failed_score_with_hub(model: &str, offline: bool) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let (out, output) = score_with_hub(model, offline, dir.path());
    assert!(!output.exists(), "no output on failure");
    out
}

#[test]
fn hf_cache_miss_offline_fails_clearly() {
    for model in [
        "hf:test-org/absent",
        "hf:test-org/SmolLM2-st@v9",
        "hf:test-org/SmolLM2-GGUF:other.gguf",
    ] {
        let out = failed_score_with_hub(model, true);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{model}");
        assert!(
            stderr.contains("not in the Hugging Face cache") && stderr.contains("HF_HUB_OFFLINE"),
            "{model}: {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}

#[test]
fn hf_download_failure_names_the_file_and_the_remedies() {
    let out = failed_score_with_hub("hf:test-org/absent", false);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("cannot download config.json of test-org/absent@main")
            && stderr.contains("HF_TOKEN"),
        "{stderr}"
    );
}

/// The chat template and BOS/EOS of a safetensors folder come from its tokenizer_config.json:
/// the run's requests are byte for byte those of the GGUF the folder was written from.
#[test]
fn safetensors_folder_renders_the_same_prompts_as_its_gguf() {
    let dir = tempfile::tempdir().unwrap();
    let dump = |model: &Path, name: &str| -> String {
        let file = dir.path().join(name);
        let mut command = common::valuelens_command();
        command
            .args(["run", "--model", model.to_str().unwrap()])
            .args([
                "--countries",
                "Egypt",
                "--topics",
                "Religion",
                "--dump-requests",
            ])
            .arg(&file);
        succeed(command);
        std::fs::read_to_string(&file).unwrap()
    };
    let from_gguf = dump(&default_model_path(), "gguf.jsonl");
    assert!(from_gguf.contains("<|im_start|>user"));
    assert_eq!(dump(smollm2_f32(), "safetensors.jsonl"), from_gguf);
}
