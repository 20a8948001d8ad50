//! Shared helpers of the integration tests: the real default model (fetched on first use), and
//! the reference fixtures in `../shared/fixtures/`.
#![allow(dead_code)]

pub mod fixture_checks;

use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};

use serde::Deserialize;
use valuelens::engine::Request;
use valuelens::model::sources::registry;
use valuelens::model::{Model, Precision};

/// `../shared` beside the repository (override with `VALUELENS_SHARED`).
pub fn shared_dir() -> PathBuf {
    std::env::var_os("VALUELENS_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared"))
}

#[derive(Debug, Deserialize)]
pub struct Reference {
    pub id: String,
    pub logprob: f64,
    pub n_tokens: usize,
    pub greedy: bool,
    pub context_tokens: Vec<u32>,
    pub continuation_tokens: Vec<u32>,
    pub token_logprobs: Vec<f64>,
}

fn read_jsonl<T: for<'de> Deserialize<'de>>(path: &std::path::Path) -> Vec<T> {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read fixture {}: {e}", path.display()));
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).expect("fixture line parses"))
        .collect()
}

/// The fixture requests and references of one model, in file order.
pub fn fixtures(model: &str) -> (Vec<Request>, Vec<Reference>) {
    fixtures_in(&shared_dir().join("fixtures").join(model))
}

/// The `requests.jsonl` and `reference.jsonl` of a fixture folder, in file order.
pub fn fixtures_in(dir: &std::path::Path) -> (Vec<Request>, Vec<Reference>) {
    let requests: Vec<Request> = read_jsonl(&dir.join("requests.jsonl"));
    let references: Vec<Reference> = read_jsonl(&dir.join("reference.jsonl"));
    assert_eq!(requests.len(), references.len());
    for (q, r) in requests.iter().zip(&references) {
        assert_eq!(q.id, r.id, "fixture files are aligned");
    }
    (requests, references)
}

/// Path of the default registry model, fetched once per test process.
pub fn default_model_path() -> PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let registry = registry::Registry::builtin().unwrap();
        registry_model_path(&registry.default)
    })
    .clone()
}

/// Path of a registry model, fetched if missing (one fetch at a time).
pub fn registry_model_path(name: &str) -> PathBuf {
    static FETCH: Mutex<()> = Mutex::new(());
    let _guard = FETCH.lock().unwrap_or_else(|e| e.into_inner());
    let registry = registry::Registry::builtin().unwrap();
    let entry = registry.get(name).unwrap();
    registry::ensure(entry, &registry::models_dir())
        .unwrap_or_else(|e| panic!("registry model {name} fetches: {e:#}"))
}

pub fn model_f32() -> &'static Model {
    static MODEL: OnceLock<Model> = OnceLock::new();
    MODEL.get_or_init(|| {
        Model::load_file("smollm2-135m", &default_model_path(), Precision::F32).unwrap()
    })
}

/// Runs `command` and asserts it succeeds; returns its output.
pub fn succeed(mut command: std::process::Command) -> std::process::Output {
    let output = command.output().expect("the binary runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// The valuelens binary, computing in f32 unless the test gives another `--dtype`: the
/// references the tests compare with are f32's (the default, `auto`, is tested on its own).
pub fn valuelens_command() -> std::process::Command {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_valuelens"));
    command.env("VALUELENS_DTYPE", "f32");
    command
}

/// Runs `valuelens score` on the default model and asserts it succeeds; returns its output.
pub fn run_score(input: &std::path::Path, output: &std::path::Path) -> std::process::Output {
    let mut command = valuelens_command();
    command
        .args(["score", "--model"])
        .arg(default_model_path())
        .arg("--input")
        .arg(input)
        .arg("--output")
        .arg(output);
    succeed(command)
}

/// llama.cpp's tokenizer test vocabularies (`ggml-vocab-*.gguf` with their `.inp` / `.out`
/// texts and ids), taken from the llama-cpp-python 0.3.36 source distribution into
/// `<models>/llama-cpp-vocabs/` on first use: fetched by package name with pip (in a venv of its
/// own that holds the build backend pip asks for and the CMake it calls), sha256-checked, one
/// fetch at a time.
pub fn llama_cpp_vocabs() -> PathBuf {
    const SHA256: &str = "832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e";
    static FETCH: Mutex<()> = Mutex::new(());
    let _guard = FETCH.lock().unwrap_or_else(|e| e.into_inner());
    let dir = registry::models_dir().join("llama-cpp-vocabs");
    if dir.join("complete").is_file() {
        return dir;
    }
    let script = r#"
import glob, hashlib, os, shutil, subprocess, sys, tarfile, venv
sha, out = sys.argv[1:3]
work = out + ".fetch"
shutil.rmtree(work, ignore_errors=True)
venv.create(os.path.join(work, "venv"), with_pip=True)
pip = [os.path.join(work, "venv", "bin", "python"), "-m", "pip", "--quiet", "--disable-pip-version-check"]
# pip prepares an sdist's metadata even to download it: scikit-build-core does that and wants a
# CMake, which a fresh machine lacks; PyPI's `cmake` package brings one into the venv.
subprocess.run(pip + ["install", "scikit-build-core", "cmake"], check=True)
env = dict(os.environ, PATH=os.path.join(work, "venv", "bin") + os.pathsep + os.environ.get("PATH", ""))
subprocess.run(pip + ["download", "--no-deps", "--no-binary", ":all:", "--no-build-isolation",
                      "llama-cpp-python==0.3.36", "-d", os.path.join(work, "sdist")], check=True, env=env)
(sdist,) = glob.glob(os.path.join(work, "sdist", "llama_cpp_python-0.3.36.tar.gz"))
with open(sdist, "rb") as f:
    if hashlib.sha256(f.read()).hexdigest() != sha:
        sys.exit(f"{sdist}: sha256 mismatch")
tmp = out + ".tmp"
shutil.rmtree(tmp, ignore_errors=True)
os.makedirs(tmp)
with tarfile.open(sdist) as tar:
    for member in tar.getmembers():
        name = os.path.basename(member.name)
        if "/vendor/llama.cpp/models/ggml-vocab-" in member.name and member.isfile() and \
                any(name.startswith(f"ggml-vocab-{f}.gguf") for f in ("llama-bpe", "qwen2", "llama-spm", "phi-3")):
            with open(os.path.join(tmp, name), "wb") as f:
                f.write(tar.extractfile(member).read())
open(os.path.join(tmp, "complete"), "w").close()
os.replace(tmp, out)
shutil.rmtree(work, ignore_errors=True)
"#;
    let python = std::env::var("VALUELENS_PYTHON").unwrap_or_else(|_| "python3".into());
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.parent().unwrap()).unwrap();
    let status = std::process::Command::new(python)
        .args(["-c", script, SHA256])
        .arg(&dir)
        .status()
        .expect("python3 runs");
    assert!(
        status.success(),
        "fetching llama-cpp-python 0.3.36's source distribution with pip failed (it needs the \
         Python package index and python3's venv module)"
    );
    dir
}

/// Sets the GGUF type id of matrix `name` in a written file's bytes from `from` to `to` (the
/// tensor info: name, n_dims as u32, two dims as u64, then the type as u32), to make files in
/// types candle cannot write.
pub fn set_matrix_type(bytes: &mut [u8], name: &str, from: u32, to: u32) {
    let at = bytes
        .windows(name.len())
        .position(|w| w == name.as_bytes())
        .expect("the tensor's name is in the header")
        + name.len()
        + 4
        + 16;
    assert_eq!(
        bytes[at..at + 4],
        from.to_le_bytes(),
        "the type id of {name}"
    );
    bytes[at..at + 4].copy_from_slice(&to.to_le_bytes());
}
