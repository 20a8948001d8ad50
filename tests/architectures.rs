//! The architectures beyond the registry models, on tiny random-weight checkpoints built with
//! HF transformers (`tests/fixtures/architectures/<name>/`, made by
//! `scripts/make_arch_fixtures.py`): each as its safetensors folder and as the GGUF file
//! llama.cpp's converter made of it, against transformers' own f32 log-likelihoods — token ids
//! on every request, f32 within 1e-4 per token on every request (they run past the sliding
//! windows and the original contexts of the RoPE scalings), bf16 close on average, and batch
//! invariance.

mod common;

use std::path::PathBuf;
use std::sync::OnceLock;

use common::fixture_checks::{batch_invariant_on, close_on_average, f32_close, token_ids_match_on};
use common::{fixtures_in, Reference};
use valuelens::engine::{self, EngineOptions, Request, Score};
use valuelens::model::{Model, Precision};

fn fixture_dir(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/architectures")
        .join(name)
}

/// The checkpoint of a fixture in one form: its safetensors folder or its GGUF file.
fn checkpoint(name: &str, gguf: bool) -> String {
    let dir = fixture_dir(name);
    let path = if gguf {
        dir.join("model.gguf")
    } else {
        dir.join("hf")
    };
    path.display().to_string()
}

fn load(name: &str, gguf: bool, precision: Precision) -> Model {
    Model::load(&checkpoint(name, gguf), precision)
        .unwrap_or_else(|e| panic!("{} loads: {e:#}", checkpoint(name, gguf)))
}

fn requests(name: &str) -> (Vec<Request>, Vec<Reference>) {
    fixtures_in(&fixture_dir(name))
}

/// Token ids, f32 log-probabilities and greedy flags of one form against the references (for
/// a GGUF without Mistral's window, of the requests within it).
fn matches_transformers(name: &str, gguf: bool) -> (Model, Vec<Score>) {
    let model = load(name, gguf, Precision::F32);
    let (mut requests, mut references) = requests(name);
    if gguf && name == "mistral" {
        const WINDOW: usize = 32;
        let within: Vec<bool> = references
            .iter()
            .map(|r| r.context_tokens.len() + r.continuation_tokens.len() <= WINDOW)
            .collect();
        let mut keep = within.iter();
        requests.retain(|_| *keep.next().unwrap());
        let mut keep = within.iter();
        references.retain(|_| *keep.next().unwrap());
        assert!(
            requests.len() >= 8,
            "{} requests within the window",
            requests.len()
        );
        token_ids_match_on(&model, &requests, &references);
        let scores = engine::score(&model, &requests, &EngineOptions::default(), None).unwrap();
        f32_close(&scores, &references, 1e-4);
        return (model, scores);
    }
    assert!(requests.len() >= 24, "{name}: {} requests", requests.len());
    token_ids_match_on(&model, &requests, &references);
    let scores = engine::score(&model, &requests, &EngineOptions::default(), None).unwrap();
    f32_close(&scores, &references, 1e-4);
    (model, scores)
}

macro_rules! architecture_suite {
    ($name:ident) => {
        architecture_suite!($name, gguf_test: gguf_file_matches_transformers);
    };
    ($name:ident, gguf_test: $gguf_test:ident) => {
        mod $name {
            use super::*;

            const NAME: &str = stringify!($name);

            fn safetensors() -> &'static (Model, Vec<Score>) {
                static RUN: OnceLock<(Model, Vec<Score>)> = OnceLock::new();
                RUN.get_or_init(|| matches_transformers(NAME, false))
            }

            #[test]
            fn safetensors_folder_matches_transformers() {
                safetensors();
            }

            #[test]
            fn $gguf_test() {
                matches_transformers(NAME, true);
            }

            #[test]
            fn scores_do_not_depend_on_batching_or_sharing() {
                let (model, scores) = safetensors();
                batch_invariant_on(model, requests(NAME).0, scores);
            }

            #[test]
            fn bf16_is_close_on_average() {
                let model = load(NAME, false, Precision::Bf16);
                let (requests, references) = requests(NAME);
                let scores =
                    engine::score(&model, &requests, &EngineOptions::default(), None).unwrap();
                close_on_average(&scores, &references, "bf16", 0.05);
            }
        }
    };
}

architecture_suite!(llama3);
architecture_suite!(qwen3);
architecture_suite!(gemma2);
architecture_suite!(phi3);
// llama.cpp's converter writes Mistral as llama and drops its sliding window, so the converted
// file matches transformers only on requests within the window; with the window in its
// metadata (`llama.attention.sliding_window`, which valuelens reads) it matches on all.
architecture_suite!(mistral, gguf_test: gguf_file_matches_transformers_within_the_window);

#[test]
fn mistral_gguf_with_its_window_matches_transformers_on_every_request() {
    use candle_core::quantized::gguf_file::{self, Value};
    let original = fixture_dir("mistral").join("model.gguf");
    let mut file = std::fs::File::open(&original).unwrap();
    let content = gguf_file::Content::read(&mut file).unwrap();
    let window = Value::U32(32);
    let mut metadata: Vec<(&str, &Value)> = content
        .metadata
        .iter()
        .map(|(k, v)| (k.as_str(), v))
        .collect();
    metadata.push(("llama.attention.sliding_window", &window));
    let tensors: Vec<(String, _)> = content
        .tensor_infos
        .keys()
        .map(|name| {
            let tensor = content
                .tensor(&mut file, name, &candle_core::Device::Cpu)
                .unwrap();
            (name.clone(), tensor)
        })
        .collect();
    let tensors: Vec<(&str, _)> = tensors.iter().map(|(n, t)| (n.as_str(), t)).collect();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mistral-with-window.gguf");
    let mut out = std::fs::File::create(&path).unwrap();
    gguf_file::write(&mut out, &metadata, &tensors).unwrap();
    drop(out);
    let model = Model::load(&path.display().to_string(), Precision::F32).unwrap();
    let (requests, references) = requests("mistral");
    let scores = engine::score(&model, &requests, &EngineOptions::default(), None).unwrap();
    f32_close(&scores, &references, 1e-4);
}

/// A filtered benchmark run on a new architecture, from its safetensors folder, completes.
#[test]
fn a_filtered_run_on_qwen3_completes() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let mut command = common::valuelens_command();
    command
        .args(["run", "--model", &checkpoint("qwen3", false)])
        .args(["--countries", "Egypt", "--topics", "Religion"])
        .args(["--values", "Equality,Wealth", "--out"])
        .arg(&out)
        .current_dir(env!("CARGO_MANIFEST_DIR"));
    let output = common::succeed(command);
    let summary = String::from_utf8_lossy(&output.stdout);
    assert!(summary.contains("alignment rate"), "{summary}");
    let record: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("run.json")).unwrap()).unwrap();
    assert_eq!(record["model"]["architecture"], "qwen3");
    assert!(out.join("metrics.json").is_file());
}
