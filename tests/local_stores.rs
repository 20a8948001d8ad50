//! Models from Ollama's store and LM Studio's folders: each store's real layout is built in a
//! temporary home around the default model's GGUF (manifests as Ollama writes them, a manifest
//! list, blobs named by digest; LM Studio folders with one file, several, and a split GGUF),
//! and `ollama:` / `lmstudio:` must score exactly as the file given by its path;
//! `models --local` lists them; each kind of bad store is named in one line.

mod common;

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use candle_core::quantized::gguf_file::{self, Content, Value as GgufValue};
use candle_core::Device;
use serde_json::{json, Value};

const MODEL_LAYER: &str = "application/vnd.ollama.image.model";

/// The default model's file and its sha256.
fn model() -> (PathBuf, String) {
    let path = common::default_model_path();
    let sha = valuelens::verified::sha256_file(&path).unwrap();
    (path, sha)
}

/// A copy of `from` at `to` (a hard link where the file system allows one).
fn place(from: &Path, to: &Path) {
    std::fs::create_dir_all(to.parent().unwrap()).unwrap();
    if std::fs::hard_link(from, to).is_err() {
        std::fs::copy(from, to).unwrap();
    }
}

fn manifest(layers: Value) -> Value {
    json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json",
                   "digest": "sha256:3f1c0e8b6a2d", "size": 487},
        "layers": layers,
    })
}

fn write_json(path: &Path, value: &Value) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, serde_json::to_string_pretty(value).unwrap()).unwrap();
}

/// Writes `gguf` as a split model of two parts in `folder` (llama.cpp's gguf-split layout: the
/// first part holds the metadata, each part its `split.*` keys and half of the tensors).
fn split_gguf(gguf: &Path, folder: &Path, base: &str) -> PathBuf {
    let mut reader = File::open(gguf).unwrap();
    let content = Content::read(&mut reader).unwrap();
    let mut names: Vec<&String> = content.tensor_infos.keys().collect();
    names.sort();
    let half = names.len() / 2;
    std::fs::create_dir_all(folder).unwrap();
    for (part, chunk) in [&names[..half], &names[half..]].into_iter().enumerate() {
        let tensors: Vec<(String, _)> = chunk
            .iter()
            .map(|n| {
                let t = content.tensor(&mut reader, n, &Device::Cpu).unwrap();
                (n.to_string(), t)
            })
            .collect();
        let split = [
            ("split.no", GgufValue::U16(part as u16)),
            ("split.count", GgufValue::U16(2)),
            ("split.tensors.count", GgufValue::I32(names.len() as i32)),
        ];
        let mut metadata: Vec<(&str, &GgufValue)> = split.iter().map(|(k, v)| (*k, v)).collect();
        if part == 0 {
            metadata.extend(content.metadata.iter().map(|(k, v)| (k.as_str(), v)));
        }
        let tensor_refs: Vec<(&str, &_)> = tensors.iter().map(|(n, t)| (n.as_str(), t)).collect();
        let path = folder.join(format!("{base}-{:05}-of-00002.gguf", part + 1));
        let mut out = BufWriter::new(File::create(&path).unwrap());
        gguf_file::write(&mut out, &metadata, &tensor_refs).unwrap();
    }
    folder.join(format!("{base}-00001-of-00002.gguf"))
}

/// A home with Ollama's and LM Studio's stores, built once.
fn home() -> &'static Path {
    static HOME: OnceLock<tempfile::TempDir> = OnceLock::new();
    HOME.get_or_init(|| {
        let home = tempfile::tempdir().unwrap();
        let (gguf, sha) = model();
        let size = std::fs::metadata(&gguf).unwrap().len();
        let store = home.path().join(".ollama/models");
        place(&gguf, &store.join(format!("blobs/sha256-{sha}")));
        let manifests = store.join("manifests/registry.ollama.ai");
        let model_layer = json!({"mediaType": MODEL_LAYER, "digest": format!("sha256:{sha}"), "size": size});
        let template = json!({"mediaType": "application/vnd.ollama.image.template",
                              "digest": "sha256:1e65450c3067", "size": 1615});
        write_json(
            &manifests.join("library/smollm2/135m"),
            &manifest(json!([model_layer, template])),
        );
        write_json(
            &manifests.join("library/smollm2/latest"),
            &manifest(json!([model_layer])),
        );
        // A manifest list: a safetensors child (tensor layers) and a GGUF child stored as a blob.
        let child = manifest(json!([model_layer]));
        let child_text = serde_json::to_string(&child).unwrap();
        let child_sha = valuelens::verified::sha256_bytes(child_text.as_bytes());
        std::fs::write(store.join(format!("blobs/sha256-{child_sha}")), &child_text).unwrap();
        write_json(
            &manifests.join("me/smol-multi/latest"),
            &json!({
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.index.v1+json",
                "manifests": [
                    {"mediaType": "application/vnd.docker.distribution.manifest.v2+json",
                     "layers": [{"mediaType": "application/vnd.ollama.image.tensor; name=model.embed_tokens.weight; dtype=BF16; shape=49152,576",
                                 "digest": "sha256:aa11", "size": 10}],
                     "annotations": {"format": "safetensors"}},
                    {"mediaType": "application/vnd.docker.distribution.manifest.v2+json",
                     "digest": format!("sha256:{child_sha}"), "size": child_text.len(),
                     "annotations": {"format": "gguf", "runner": "llama"}},
                ],
            }),
        );
        let hf = store.join("manifests/hf.co/org/SmolLM2-GGUF/Q4_1");
        write_json(&hf, &manifest(json!([model_layer])));
        let lmstudio = home.path().join(".lmstudio/models");
        place(&gguf, &lmstudio.join("pub/one-file/SmolLM2-Q4_1.gguf"));
        place(&gguf, &lmstudio.join("pub/several/SmolLM2-a.gguf"));
        place(&gguf, &lmstudio.join("pub/several/SmolLM2-b.gguf"));
        split_gguf(&gguf, &lmstudio.join("pub/split"), "SmolLM2-Q4_1");
        home
    })
    .path()
}

fn valuelens(home: &Path) -> Command {
    let mut command = common::valuelens_command();
    command
        .env("HOME", home)
        .env_remove("OLLAMA_MODELS")
        .env("HF_HUB_CACHE", home.join("hf-cache"))
        .env("VALUELENS_MODELS_DIR", home.join("valuelens-models"))
        .current_dir(env!("CARGO_MANIFEST_DIR"));
    command
}

/// The scores of the sample requests with `--model spec`, as parsed JSON lines.
fn scores(spec: &str) -> Vec<Value> {
    let out = tempfile::tempdir().unwrap();
    let path = out.path().join("scores.jsonl");
    let mut command = valuelens(home());
    command
        .args([
            "score",
            "--model",
            spec,
            "--input",
            "data/samples/requests.jsonl",
            "--output",
        ])
        .arg(&path);
    common::succeed(command);
    std::fs::read_to_string(&path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn by_path() -> &'static Vec<Value> {
    static SCORES: OnceLock<Vec<Value>> = OnceLock::new();
    SCORES.get_or_init(|| scores(model().0.to_str().unwrap()))
}

#[test]
fn ollama_models_score_exactly_as_their_blob_given_by_path() {
    for spec in [
        "ollama:smollm2:135m",
        "ollama:smollm2",
        "ollama:me/smol-multi",
        "ollama:hf.co/org/SmolLM2-GGUF:Q4_1",
    ] {
        assert_eq!(&scores(spec), by_path(), "{spec}");
    }
}

#[test]
fn lmstudio_models_score_exactly_as_their_file_given_by_path() {
    for spec in [
        "lmstudio:pub/one-file",
        "lmstudio:pub/several/SmolLM2-b.gguf",
        "lmstudio:pub/split",
        "lmstudio:pub/split/SmolLM2-Q4_1-00002-of-00002.gguf",
    ] {
        assert_eq!(&scores(spec), by_path(), "{spec}");
    }
}

#[test]
fn models_local_lists_every_model_with_its_columns() {
    let output = common::succeed({
        let mut c = valuelens(home());
        c.args(["models", "--local", "--json"]);
        c
    });
    let listed: Vec<Value> = serde_json::from_slice(&output.stdout).unwrap();
    let forms: Vec<&str> = listed.iter().map(|m| m["form"].as_str().unwrap()).collect();
    for form in [
        "ollama:smollm2",
        "ollama:smollm2:135m",
        "ollama:me/smol-multi",
        "ollama:hf.co/org/SmolLM2-GGUF:Q4_1",
        "lmstudio:pub/one-file/SmolLM2-Q4_1.gguf",
        "lmstudio:pub/several/SmolLM2-a.gguf",
        "lmstudio:pub/several/SmolLM2-b.gguf",
        "lmstudio:pub/split/SmolLM2-Q4_1-00001-of-00002.gguf",
    ] {
        assert!(forms.contains(&form), "{form} in {forms:?}");
    }
    assert_eq!(listed.len(), 8, "{forms:?}");
    let size = std::fs::metadata(model().0).unwrap().len();
    for m in &listed {
        assert_eq!(m["architecture"], "llama", "{m}");
        assert_eq!(m["format"], "Q4_1", "{m}");
        assert_eq!(m["parameters"], 134_515_008u64, "{m}");
        assert_eq!(m["not_runnable"], Value::Null, "{m}");
        let on_disk = m["size"].as_u64().unwrap();
        if m["form"].as_str().unwrap().contains("split") {
            assert!(on_disk > size / 2 && on_disk < size * 11 / 10, "{m}");
        } else {
            assert_eq!(on_disk, size, "{m}");
        }
    }
    let table = common::succeed({
        let mut c = valuelens(home());
        c.args(["models", "--local"]);
        c
    });
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(table.starts_with("form"), "{table}");
    assert!(
        table.contains("ollama:smollm2:135m") && table.contains("135M") && table.contains("yes")
    );
}

/// A fresh copy of the stores to break.
fn broken_home() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let (gguf, sha) = model();
    let store = dir.path().join(".ollama/models");
    place(&gguf, &store.join(format!("blobs/sha256-{sha}")));
    let size = std::fs::metadata(&gguf).unwrap().len();
    let layer = json!({"mediaType": MODEL_LAYER, "digest": format!("sha256:{sha}"), "size": size});
    let manifests = store.join("manifests/registry.ollama.ai/library");
    write_json(&manifests.join("smollm2/135m"), &manifest(json!([layer])));
    std::fs::create_dir_all(manifests.join("broken")).unwrap();
    std::fs::write(manifests.join("broken/latest"), "{\"layers\": [").unwrap();
    write_json(
        &manifests.join("nolayer/latest"),
        &manifest(
            json!([{"mediaType": "application/vnd.ollama.image.template",
                          "digest": "sha256:1e65", "size": 3}]),
        ),
    );
    write_json(
        &manifests.join("vision/latest"),
        &manifest(
            json!([layer, {"mediaType": "application/vnd.ollama.image.projector",
                                 "digest": "sha256:9a8b", "size": 100}]),
        ),
    );
    write_json(
        &manifests.join("tensors/latest"),
        &manifest(
            json!([{"mediaType": "application/vnd.ollama.image.tensor; name=w; dtype=BF16; shape=2,2",
                          "digest": "sha256:77aa", "size": 8}]),
        ),
    );
    // A blob whose bytes are not what its name says.
    let fake = "0".repeat(64);
    std::fs::write(
        store.join(format!("blobs/sha256-{fake}")),
        b"GGUF and then not much",
    )
    .unwrap();
    write_json(
        &manifests.join("damaged/latest"),
        &manifest(
            json!([{"mediaType": MODEL_LAYER, "digest": format!("sha256:{fake}"), "size": 22}]),
        ),
    );
    dir
}

/// `valuelens tokenize --model spec` fails with one line that names `file`.
fn refused(home: &Path, spec: &str, file: &Path, also: &str) {
    let mut command = valuelens(home);
    command.args([
        "tokenize",
        "--model",
        spec,
        "--input",
        "data/samples/requests.jsonl",
    ]);
    command.arg("--output").arg(home.join("tokens.jsonl"));
    let output: Output = command.output().unwrap();
    assert!(!output.status.success(), "{spec}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with("checking "))
        .collect();
    assert_eq!(lines.len(), 1, "{spec}: {stderr}");
    assert!(
        lines[0].contains(&file.display().to_string()),
        "{spec} names {}: {stderr}",
        file.display()
    );
    assert!(lines[0].contains(also), "{spec} says '{also}': {stderr}");
    assert!(!home.join("tokens.jsonl").exists());
}

#[test]
fn bad_stores_are_named_in_one_line() {
    let dir = broken_home();
    let home = dir.path();
    let manifests = home.join(".ollama/models/manifests/registry.ollama.ai/library");
    refused(
        home,
        "ollama:smollm2:7b",
        &manifests.join("smollm2/7b"),
        "the tags there: 135m",
    );
    refused(
        home,
        "ollama:broken",
        &manifests.join("broken/latest"),
        "not JSON",
    );
    refused(
        home,
        "ollama:nolayer",
        &manifests.join("nolayer/latest"),
        "no model layer",
    );
    refused(
        home,
        "ollama:tensors",
        &manifests.join("tensors/latest"),
        "safetensors tensor layers",
    );
    refused(
        home,
        "ollama:vision",
        &manifests.join("vision/latest"),
        "projector",
    );
    let blob = home.join(format!(".ollama/models/blobs/sha256-{}", "0".repeat(64)));
    refused(home, "ollama:damaged", &blob, "sha256 differs");
    let mut command = valuelens(home);
    let missing = home.join("no-such-store");
    command.env("OLLAMA_MODELS", &missing);
    command.args([
        "tokenize",
        "--model",
        "ollama:smollm2",
        "--input",
        "data/samples/requests.jsonl",
    ]);
    command.arg("--output").arg(home.join("tokens.jsonl"));
    let output = command.output().unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&missing.display().to_string()) && stderr.lines().count() == 1,
        "{stderr}"
    );
    refused(
        home,
        "lmstudio:pub/none",
        &home.join(".lmstudio/models/pub/none"),
        "no such folder",
    );
    // Several files and none chosen: the message lists them.
    refused(
        crate::home(),
        "lmstudio:pub/several",
        &crate::home().join(".lmstudio/models/pub/several"),
        "SmolLM2-a.gguf, SmolLM2-b.gguf",
    );
}
