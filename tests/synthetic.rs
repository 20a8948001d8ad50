//! `synthetic:<shape>` models: SmolLM2's shapes with seeded random weights load with the default
//! model's tokenizer or with an exported tokenizer folder, score deterministically, and give
//! near-uniform distributions (as random weights of std 0.02 should).

mod common;

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
    let mut command = common::valuelens_command();
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

/// Every synthetic shape states its architecture's metadata and exactly the tensors its
/// architecture names, with the sizes the metadata implies (checked without generating the
/// weights: the real-size shapes are billions of values).
#[test]
fn every_synthetic_shape_is_a_complete_checkpoint_of_its_architecture() {
    use valuelens::model::architectures;
    use valuelens::model::formats::open::open_checkpoint;
    use valuelens::model::formats::synthetic::SyntheticSpec;
    use valuelens::model::ModelSource;
    for (shape, architecture, hidden) in [
        ("llama-3.1-8b", "llama", 4096),
        ("mistral-7b", "llama", 4096),
        ("qwen3-8b", "qwen3", 4096),
        ("gemma2-9b", "gemma2", 3584),
        ("gemma3-270m", "gemma3", 640),
        ("phi3-mini", "phi3", 3072),
    ] {
        let spec = SyntheticSpec::parse(&format!("synthetic:{shape}")).unwrap();
        let checkpoint = open_checkpoint(&ModelSource::Synthetic(spec)).unwrap();
        assert_eq!(
            checkpoint.string("general.architecture").unwrap(),
            architecture
        );
        let arch = architectures::by_name(architecture).unwrap();
        let config = arch.config_from_metadata(&checkpoint, "float32").unwrap();
        assert_eq!(config["hidden_size"], hidden, "{shape}");
        let names = checkpoint.tensor_names();
        assert!(names.len() > 100, "{shape}: {} tensors", names.len());
        for name in &names {
            assert!(
                arch.hf_tensor_name(name).is_some(),
                "{shape}: '{name}' is not a tensor of {architecture}"
            );
        }
    }
}

/// `export --format gguf` writes a file that loads as the model it came from: the same tokens
/// and, with the matrices in the same GGUF blocks, the same scores bit for bit; `--gguf-type`
/// converts the matrices; an existing file is refused.
#[test]
fn models_export_as_gguf_files_that_score_as_the_source() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tiny.gguf");
    let export = |spec: &str, out: &std::path::Path, extra: &[&str]| {
        let mut command = common::valuelens_command();
        command
            .args(["export", "--format", "gguf", "--model", spec, "--out"])
            .arg(out)
            .args(extra);
        command.output().unwrap()
    };
    let output = export("synthetic:llama-tiny+q8_0", &file, &[]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // llama.cpp's loader takes these keys as u32 only ("wrong type u64 but expected type u32").
    let content =
        candle_core::quantized::gguf_file::Content::read(&mut std::fs::File::open(&file).unwrap())
            .unwrap();
    for key in [
        "context_length",
        "block_count",
        "embedding_length",
        "attention.head_count",
    ] {
        let value = &content.metadata[&format!("llama.{key}")];
        assert!(
            matches!(value, candle_core::quantized::gguf_file::Value::U32(_)),
            "llama.{key} is {value:?}, not u32"
        );
    }
    let requests = first_requests(3);
    let options = EngineOptions::default();
    let source = Model::load("synthetic:llama-tiny+q8_0", Precision::Quantized).unwrap();
    let written = Model::load_file("tiny", &file, Precision::Quantized).unwrap();
    for request in &requests {
        assert_eq!(
            engine::tokenize_request(&source, request).unwrap(),
            engine::tokenize_request(&written, request).unwrap()
        );
    }
    let a = engine::score(&source, &requests, &options, None).unwrap();
    let b = engine::score(&written, &requests, &options, None).unwrap();
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(x.token_logprobs, y.token_logprobs);
    }

    let converted = dir.path().join("tiny-q4_0.gguf");
    let output = export(file.to_str().unwrap(), &converted, &["--gguf-type", "q4_0"]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let (_, tensors) = valuelens::model::formats::gguf::open(&converted).unwrap();
    assert_eq!(
        tensors.dtype_of("blk.0.ffn_up.weight"),
        Some(candle_core::quantized::GgmlDType::Q4_0)
    );
    assert!(Model::load_file("tiny", &converted, Precision::Quantized).is_ok());

    // Llama 3's RoPE scaling goes out as llama.cpp stores it: a `rope_freqs.weight` tensor of
    // frequency divisors instead of `rope.scaling.type = llama3`, which llama.cpp refuses.
    let scaled = dir.path().join("llama3-tiny.gguf");
    let output = export("synthetic:llama3-tiny+q8_0", &scaled, &[]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let content = candle_core::quantized::gguf_file::Content::read(
        &mut std::fs::File::open(&scaled).unwrap(),
    )
    .unwrap();
    assert!(!content.metadata.contains_key("llama.rope.scaling.type"));
    assert_eq!(content.tensor_infos["rope_freqs.weight"].shape.dims(), &[8]);
    let source = Model::load("synthetic:llama3-tiny+q8_0", Precision::F32).unwrap();
    let written = Model::load_file("llama3-tiny", &scaled, Precision::F32).unwrap();
    let a = engine::score(&source, &requests, &options, None).unwrap();
    let b = engine::score(&written, &requests, &options, None).unwrap();
    for (x, y) in a.iter().zip(&b) {
        for (p, q) in x.token_logprobs.iter().zip(&y.token_logprobs) {
            assert!((p - q).abs() < 1e-4, "{p} vs {q}");
        }
    }

    let output = export("synthetic:llama-tiny", &converted, &[]);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("exists"));
}

/// Matrices without a stored-format kernel (here: float ones) are converted to Q8_0 where the
/// weights stay in blocks on the CPU, and the model says so (bench's settings and run.json
/// record it); in f32 nothing is converted.
#[test]
fn conversions_at_load_are_recorded() {
    let quantized = Model::load("synthetic:llama-tiny", Precision::Quantized).unwrap();
    assert_eq!(quantized.converted, ["F32 → Q8_0 (15 matrices)"]);
    let stored = Model::load("synthetic:llama-tiny+q8_0", Precision::QuantizedA16).unwrap();
    assert!(stored.converted.is_empty(), "{:?}", stored.converted);
    let f32 = Model::load("synthetic:llama-tiny", Precision::F32).unwrap();
    assert!(f32.converted.is_empty());
}

/// Q2_K and Q3_K files are multiplied as stored (nothing converted at load). With two
/// activation levels the product is that of the file's own weights (within 0.005 nats per
/// token of the same file in f32, as for every other format); with 8-bit activations within
/// what `quantized` differs by elsewhere. SmolLM2's down projections (1,536 inputs) take the
/// k-quant; its 576-input matrices go to Q8_0, as llama.cpp's quantizer sends them.
#[test]
fn two_and_three_bit_k_quants_multiply_as_stored() {
    let dir = tempfile::tempdir().unwrap();
    let requests = first_requests(6);
    let options = EngineOptions::default();
    for (storage, dtype) in [
        ("q3_k", candle_core::quantized::GgmlDType::Q3K),
        ("q2_k", candle_core::quantized::GgmlDType::Q2K),
    ] {
        let file = dir.path().join(format!("smollm2-{storage}.gguf"));
        let mut command = common::valuelens_command();
        command
            .args([
                "export",
                "--format",
                "gguf",
                "--gguf-type",
                storage,
                "--model",
            ])
            .arg(default_model_path())
            .arg("--out")
            .arg(&file);
        succeed(command);
        let (_, tensors) = valuelens::model::formats::gguf::open(&file).unwrap();
        assert_eq!(tensors.dtype_of("blk.0.ffn_down.weight"), Some(dtype));
        let f32 = Model::load_file("smollm2", &file, Precision::F32).unwrap();
        let exact = engine::score(&f32, &requests, &options, None).unwrap();
        for (precision, mean_bound, max_bound) in [
            (Precision::QuantizedA16, 0.005, 0.02),
            (Precision::Quantized, 0.2, 0.8),
        ] {
            let stored = Model::load_file("smollm2", &file, precision).unwrap();
            assert!(stored.converted.is_empty(), "{:?}", stored.converted);
            let scores = engine::score(&stored, &requests, &options, None).unwrap();
            let deltas: Vec<f64> = scores
                .iter()
                .zip(&exact)
                .flat_map(|(x, y)| x.token_logprobs.iter().zip(&y.token_logprobs))
                .map(|(p, q)| (p - q).abs())
                .collect();
            let mean = deltas.iter().sum::<f64>() / deltas.len() as f64;
            let max = deltas.iter().copied().fold(0.0, f64::max);
            println!(
                "{storage} {precision:?}: |Δ| per token against f32 mean {mean:.4}, max {max:.4}"
            );
            assert!(
                mean < mean_bound && max < max_bound,
                "{storage} {precision:?}: mean |Δ| {mean}, max {max}"
            );
        }
    }
}
