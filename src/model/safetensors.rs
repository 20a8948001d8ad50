//! Hugging Face safetensors checkpoints, both ways.
//!
//! Opening: a folder in the Hub layout (`config.json`, `model.safetensors` or shards listed in
//! `model.safetensors.index.json`, `tokenizer.json`, `tokenizer_config.json`) becomes a
//! [`Checkpoint`] in GGUF's vocabulary — config fields under GGUF metadata keys, tensors under
//! GGUF names, f16/bf16 widened to f32 — so every architecture has one loader. Two conventions
//! differ between the formats and are undone here: gemma's norm weights (GGUF adds the 1 of
//! `(1 + w) · x̂`) and llama's Q/K rows (GGUF permutes them for interleaved RoPE; a safetensors
//! llama is loaded with the halves layout instead, see `Model::load_file`).
//!
//! Writing ([`export`]): a checkpoint (e.g. a registry GGUF, dequantized) as such a folder, in
//! f32, f16 or bf16, optionally sharded — how the safetensors path is tested on real weights.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use candle_core::quantized::gguf_file::Value;
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::safetensors::MmapedSafetensors;
use candle_core::{DType, Device, Tensor};
use serde_json::{json, Value as Json};

use super::checkpoint::{Checkpoint, Tensors};
use super::gemma3;
use super::tokenizer::TextTokenizer;

/// Per-layer tensor names: (Hugging Face suffix after `model.layers.<i>.`, GGUF suffix after
/// `blk.<i>.`). The FFN's input norm is `post_attention_layernorm` in llama and qwen2 but
/// `pre_feedforward_layernorm` in gemma, whose `post_attention_layernorm` is a norm of its own;
/// see [`layer_names`].
const LAYER_NAMES: &[(&str, &str)] = &[
    ("input_layernorm.weight", "attn_norm.weight"),
    ("self_attn.q_proj.weight", "attn_q.weight"),
    ("self_attn.k_proj.weight", "attn_k.weight"),
    ("self_attn.v_proj.weight", "attn_v.weight"),
    ("self_attn.q_proj.bias", "attn_q.bias"),
    ("self_attn.k_proj.bias", "attn_k.bias"),
    ("self_attn.v_proj.bias", "attn_v.bias"),
    ("self_attn.o_proj.weight", "attn_output.weight"),
    ("self_attn.q_norm.weight", "attn_q_norm.weight"),
    ("self_attn.k_norm.weight", "attn_k_norm.weight"),
    ("post_feedforward_layernorm.weight", "post_ffw_norm.weight"),
    ("mlp.gate_proj.weight", "ffn_gate.weight"),
    ("mlp.up_proj.weight", "ffn_up.weight"),
    ("mlp.down_proj.weight", "ffn_down.weight"),
];

const GLOBAL_NAMES: &[(&str, &str)] = &[
    ("model.embed_tokens.weight", "token_embd.weight"),
    ("model.norm.weight", "output_norm.weight"),
    ("lm_head.weight", "output.weight"),
];

fn layer_names(architecture: &str) -> impl Iterator<Item = (&'static str, &'static str)> {
    let norms: &[(&str, &str)] = if architecture == "gemma3" {
        &[
            (
                "post_attention_layernorm.weight",
                "post_attention_norm.weight",
            ),
            ("pre_feedforward_layernorm.weight", "ffn_norm.weight"),
        ]
    } else {
        &[("post_attention_layernorm.weight", "ffn_norm.weight")]
    };
    LAYER_NAMES.iter().chain(norms).copied()
}

/// The GGUF name of a Hugging Face tensor name, if it is one the networks use.
fn gguf_name(architecture: &str, hf: &str) -> Option<String> {
    let hf = hf.strip_prefix("language_model.").unwrap_or(hf);
    if let Some(&(_, gguf)) = GLOBAL_NAMES.iter().find(|(h, _)| *h == hf) {
        return Some(gguf.to_string());
    }
    let (layer, suffix) = hf.strip_prefix("model.layers.")?.split_once('.')?;
    let layer: usize = layer.parse().ok()?;
    layer_names(architecture)
        .find(|(h, _)| *h == suffix)
        .map(|(_, gguf)| format!("blk.{layer}.{gguf}"))
}

/// The Hugging Face name of a GGUF tensor name.
fn hf_name(architecture: &str, gguf: &str) -> Option<String> {
    if let Some(&(hf, _)) = GLOBAL_NAMES.iter().find(|(_, g)| *g == gguf) {
        return Some(hf.to_string());
    }
    let (layer, suffix) = gguf.strip_prefix("blk.")?.split_once('.')?;
    let layer: usize = layer.parse().ok()?;
    layer_names(architecture)
        .find(|(_, g)| *g == suffix)
        .map(|(hf, _)| format!("model.layers.{layer}.{hf}"))
}

/// Whether the GGUF convention adds 1 to this architecture's norm weights.
fn norms_offset_by_one(architecture: &str) -> bool {
    architecture == "gemma3"
}

/// The tensors of a safetensors checkpoint (all shards memory-mapped), under GGUF names.
pub struct HfTensors {
    files: MmapedSafetensors,
    /// GGUF name → Hugging Face name.
    names: HashMap<String, String>,
    norms_offset_by_one: bool,
}

impl HfTensors {
    pub fn has(&self, name: &str) -> bool {
        self.names.contains_key(name)
    }

    pub fn names(&self) -> Vec<String> {
        self.names.keys().cloned().collect()
    }

    pub fn dims(&self, name: &str) -> Option<Vec<usize>> {
        let view = self.files.get(self.names.get(name)?).ok()?;
        Some(view.shape().to_vec())
    }

    pub fn read(&mut self, folder: &Path, name: &str) -> Result<QTensor> {
        let hf = &self.names[name];
        let mut tensor = self
            .files
            .load(hf, &Device::Cpu)
            .and_then(|t| t.to_dtype(DType::F32))
            .with_context(|| format!("{}: cannot read tensor '{hf}'", folder.display()))?;
        if self.norms_offset_by_one && name.ends_with("norm.weight") {
            tensor = (tensor + 1.0)?;
        }
        Ok(QTensor::quantize(&tensor, GgmlDType::F32)?)
    }
}

fn read_json(path: &Path) -> Result<Json> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{} is not valid JSON", path.display()))
}

/// A safetensors folder as a [`Checkpoint`].
pub fn open(folder: &Path) -> Result<Checkpoint> {
    let config_path = folder.join("config.json");
    if !config_path.is_file() {
        bail!(
            "{}: a model folder needs config.json, *.safetensors and tokenizer.json \
             (the Hugging Face layout); config.json is missing",
            folder.display()
        );
    }
    if !folder.join("tokenizer.json").is_file() {
        bail!(
            "{}: tokenizer.json is missing; valuelens reads the tokenizer from it",
            folder.display()
        );
    }
    let config = read_json(&config_path)?;
    let mut metadata = config_metadata(&config)
        .with_context(|| format!("{}: unsupported model configuration", config_path.display()))?;
    let architecture = match metadata.get("general.architecture") {
        Some(Value::String(a)) => a.clone(),
        _ => unreachable!("config_metadata always sets the architecture"),
    };
    add_tokenizer_config(folder, &mut metadata)?;
    let shards = shard_files(folder)?;
    // SAFETY: the files are mapped read-only; valuelens does not modify them while loaded
    // (the same contract as every mmap-based loader, e.g. candle's and transformers').
    let files = unsafe { MmapedSafetensors::multi(&shards) }
        .with_context(|| format!("{}: cannot read the safetensors files", folder.display()))?;
    let names: HashMap<String, String> = files
        .tensors()
        .into_iter()
        .filter_map(|(hf, _)| gguf_name(&architecture, &hf).map(|g| (g, hf)))
        .collect();
    if !names.contains_key("token_embd.weight") {
        bail!(
            "{}: no tensor 'model.embed_tokens.weight' in {} — not a {architecture} checkpoint \
             in the Hugging Face layout",
            folder.display(),
            shards
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let tied = config["tie_word_embeddings"]
        .as_bool()
        .unwrap_or(architecture == "gemma3");
    if !tied && !names.contains_key("output.weight") {
        bail!(
            "{}: config.json says the LM head is not tied to the embeddings, but there is no \
             'lm_head.weight' tensor",
            folder.display()
        );
    }
    Ok(Checkpoint::new(
        folder.to_path_buf(),
        metadata,
        Tensors::Safetensors(HfTensors {
            files,
            names,
            norms_offset_by_one: norms_offset_by_one(&architecture),
        }),
    )
    .with_tokenizer_json(folder.join("tokenizer.json")))
}

/// The chat template and BOS/EOS texts of `folder/tokenizer_config.json`, where there is one.
pub fn add_tokenizer_config(folder: &Path, metadata: &mut HashMap<String, Value>) -> Result<()> {
    let tokenizer_config = folder.join("tokenizer_config.json");
    if tokenizer_config.is_file() {
        tokenizer_metadata(&read_json(&tokenizer_config)?, metadata);
    }
    Ok(())
}

/// `model.safetensors`, or the shards that `model.safetensors.index.json` lists.
fn shard_files(folder: &Path) -> Result<Vec<PathBuf>> {
    let index = folder.join("model.safetensors.index.json");
    if index.is_file() {
        let map = read_json(&index)?;
        let shards: BTreeSet<String> = map["weight_map"]
            .as_object()
            .with_context(|| format!("{}: no 'weight_map' object", index.display()))?
            .values()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect();
        let paths: Vec<PathBuf> = shards.iter().map(|s| folder.join(s)).collect();
        if let Some(missing) = paths.iter().find(|p| !p.is_file()) {
            bail!(
                "{}: lists shard {}, which is missing; download the checkpoint again",
                index.display(),
                missing.display()
            );
        }
        return Ok(paths);
    }
    let single = folder.join("model.safetensors");
    if single.is_file() {
        return Ok(vec![single]);
    }
    bail!(
        "{}: neither model.safetensors nor model.safetensors.index.json is there",
        folder.display()
    )
}

/// The architecture name valuelens uses for a config's `model_type`.
fn architecture_of(model_type: &str) -> Result<&'static str> {
    Ok(match model_type {
        "llama" => "llama",
        "qwen2" => "qwen2",
        "gemma3_text" | "gemma3" => "gemma3",
        other => {
            bail!("model_type '{other}' is not supported (supported: llama, qwen2, gemma3_text)")
        }
    })
}

/// config.json → GGUF metadata keys (`<arch>.embedding_length`, …).
fn config_metadata(config: &Json) -> Result<HashMap<String, Value>> {
    let model_type = config["model_type"]
        .as_str()
        .context("config.json has no 'model_type'")?;
    // Multimodal gemma 3 keeps the language model's settings in `text_config`.
    let config = match &config["text_config"] {
        Json::Object(_) if model_type == "gemma3" => &config["text_config"],
        _ => config,
    };
    let architecture = architecture_of(model_type)?;
    let mut metadata = HashMap::new();
    metadata.insert(
        "general.architecture".to_string(),
        Value::String(architecture.to_string()),
    );
    let mut set = |key: &str, value: Value| {
        metadata.insert(format!("{architecture}.{key}"), value);
    };
    let int = |field: &str| -> Result<Value> {
        let v = config[field]
            .as_u64()
            .with_context(|| format!("'{field}' is missing or not a non-negative integer"))?;
        Ok(Value::U64(v))
    };
    let float = |field: &str| config[field].as_f64().map(|v| Value::F32(v as f32));
    set("embedding_length", int("hidden_size")?);
    set("block_count", int("num_hidden_layers")?);
    set("feed_forward_length", int("intermediate_size")?);
    set("attention.head_count", int("num_attention_heads")?);
    if config["num_key_value_heads"].is_u64() {
        set("attention.head_count_kv", int("num_key_value_heads")?);
    }
    set("context_length", int("max_position_embeddings")?);
    set(
        "attention.layer_norm_rms_epsilon",
        float("rms_norm_eps").context("'rms_norm_eps' is missing")?,
    );
    // transformers ≥ 5 nests RoPE settings in `rope_parameters` (per layer type for gemma 3).
    let rope = &config["rope_parameters"];
    let (global_rope, local_rope) = match (&rope["full_attention"], &rope["sliding_attention"]) {
        (Json::Object(_), local) => (&rope["full_attention"], local),
        _ => (rope, &Json::Null),
    };
    let theta = config["rope_theta"]
        .as_f64()
        .or(global_rope["rope_theta"].as_f64());
    if let Some(theta) = theta {
        set("rope.freq_base", Value::F32(theta as f32));
    }
    let scaling = match &config["rope_scaling"] {
        Json::Object(_) => &config["rope_scaling"],
        _ => global_rope,
    };
    let scaling_type = scaling["rope_type"]
        .as_str()
        .or(scaling["type"].as_str())
        .unwrap_or("default");
    match scaling_type {
        "default" => {}
        "linear" if architecture == "gemma3" => {
            set("rope.scaling.type", Value::String("linear".into()));
            set(
                "rope.scaling.factor",
                Value::F32(
                    scaling["factor"]
                        .as_f64()
                        .context("linear RoPE scaling without 'factor'")?
                        as f32,
                ),
            );
        }
        other => bail!("RoPE scaling '{other}' is not supported for {architecture}"),
    }
    if architecture == "gemma3" {
        if config["head_dim"].is_u64() {
            set("attention.key_length", int("head_dim")?);
            set("attention.value_length", int("head_dim")?);
        }
        if config["sliding_window"].is_u64() {
            set("attention.sliding_window", int("sliding_window")?);
        }
        if let Some(pattern) = sliding_window_pattern(config)? {
            set(
                "attention.sliding_window_pattern",
                Value::U64(pattern as u64),
            );
        }
        if let Some(local) = config["rope_local_base_freq"]
            .as_f64()
            .or(local_rope["rope_theta"].as_f64())
        {
            set("rope.freq_base_swa", Value::F32(local as f32));
        }
        if let Some(scalar) = config["query_pre_attn_scalar"].as_f64() {
            set("attention.scale", Value::F32((1.0 / scalar.sqrt()) as f32));
        }
        for cap in ["attn_logit_softcapping", "final_logit_softcapping"] {
            if let Some(v) = float(cap) {
                set(cap, v);
            }
        }
    } else if config["head_dim"].is_u64() {
        set("rope.dimension_count", int("head_dim")?);
    }
    Ok(metadata)
}

/// Gemma 3's period of sliding-window layers: `sliding_window_pattern`, or read off
/// `layer_types` (which must then repeat with one global layer last in each period).
fn sliding_window_pattern(config: &Json) -> Result<Option<usize>> {
    if let Some(p) = config["sliding_window_pattern"].as_u64() {
        return Ok(Some(p as usize));
    }
    let Some(types) = config["layer_types"].as_array() else {
        return Ok(None);
    };
    let is_global = |t: &Json| t.as_str() == Some("full_attention");
    let Some(first_global) = types.iter().position(is_global) else {
        bail!("'layer_types' has no full_attention layer; only periodic patterns are supported");
    };
    let period = first_global + 1;
    let periodic = types
        .iter()
        .enumerate()
        .all(|(i, t)| is_global(t) == (i + 1).is_multiple_of(period));
    if !periodic {
        bail!("'layer_types' does not repeat with period {period}; only periodic patterns are supported");
    }
    Ok(Some(period))
}

/// tokenizer_config.json → `tokenizer.chat_template`, `tokenizer.bos_token`, `tokenizer.eos_token`.
fn tokenizer_metadata(tokenizer_config: &Json, metadata: &mut HashMap<String, Value>) {
    let text =
        |v: &Json| -> Option<String> { v.as_str().or(v["content"].as_str()).map(str::to_string) };
    if let Some(template) = text(&tokenizer_config["chat_template"]) {
        metadata.insert("tokenizer.chat_template".into(), Value::String(template));
    }
    for which in ["bos", "eos"] {
        if let Some(token) = text(&tokenizer_config[format!("{which}_token")]) {
            metadata.insert(format!("tokenizer.{which}_token"), Value::String(token));
        }
    }
}

/// Weight precision of an exported checkpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ExportDtype {
    F32,
    F16,
    Bf16,
}

impl ExportDtype {
    fn dtype(self) -> DType {
        match self {
            Self::F32 => DType::F32,
            Self::F16 => DType::F16,
            Self::Bf16 => DType::BF16,
        }
    }

    fn torch_name(self) -> &'static str {
        match self {
            Self::F32 => "float32",
            Self::F16 => "float16",
            Self::Bf16 => "bfloat16",
        }
    }
}

/// Writes `checkpoint` (a GGUF) with `tokenizer` into `out` in the Hugging Face layout: weights
/// dequantized to `dtype`, in shards of at most `shard_bytes` (one file when `None`), with
/// config.json, tokenizer.json and tokenizer_config.json. The folder appears whole or not at
/// all (written beside it, then renamed).
pub fn export(
    checkpoint: &mut Checkpoint,
    tokenizer: &TextTokenizer,
    out: &Path,
    dtype: ExportDtype,
    shard_bytes: Option<usize>,
) -> Result<()> {
    let architecture = checkpoint.string("general.architecture")?;
    if !["llama", "qwen2", "gemma3"].contains(&architecture.as_str()) {
        bail!("exporting architecture '{architecture}' is not supported");
    }
    let staging = staging_dir(out)?;
    let config = hf_config(checkpoint, &architecture, dtype)?;
    let (n_head, n_kv_head) = (
        config["num_attention_heads"].as_u64().unwrap_or(1) as usize,
        config["num_key_value_heads"].as_u64().unwrap_or(1) as usize,
    );

    let mut names: Vec<String> = checkpoint
        .tensor_names()
        .into_iter()
        .filter(|n| hf_name(&architecture, n).is_some())
        .collect();
    names.sort_by_key(|n| tensor_order(n));
    let mut shards: Vec<BTreeMap<String, Tensor>> = vec![BTreeMap::new()];
    let mut shard_size = 0usize;
    for name in &names {
        let mut t = checkpoint.tensor(name)?.dequantize(&Device::Cpu)?;
        if architecture == "llama" {
            // GGUF permutes llama's Q/K rows for interleaved RoPE; Hugging Face does not.
            if name.ends_with("attn_q.weight") {
                t = unpermute_rows(&t, n_head)?;
            } else if name.ends_with("attn_k.weight") {
                t = unpermute_rows(&t, n_kv_head)?;
            }
        }
        if norms_offset_by_one(&architecture) && name.ends_with("norm.weight") {
            t = (t - 1.0)?;
        }
        let t = t.to_dtype(dtype.dtype())?;
        let bytes = t.elem_count() * t.dtype().size_in_bytes();
        if let Some(limit) = shard_bytes {
            if shard_size > 0 && shard_size + bytes > limit {
                shards.push(BTreeMap::new());
                shard_size = 0;
            }
        }
        shard_size += bytes;
        let hf = hf_name(&architecture, name).expect("filtered above");
        shards.last_mut().expect("one shard at least").insert(hf, t);
    }

    let dir = staging.path();
    if shards.len() == 1 {
        save_shard(&shards[0], &dir.join("model.safetensors"))?;
    } else {
        let mut weight_map = serde_json::Map::new();
        let mut total = 0usize;
        for (i, shard) in shards.iter().enumerate() {
            let file = format!("model-{:05}-of-{:05}.safetensors", i + 1, shards.len());
            for (name, t) in shard {
                weight_map.insert(name.clone(), json!(file));
                total += t.elem_count() * t.dtype().size_in_bytes();
            }
            save_shard(shard, &dir.join(&file))?;
        }
        let index = json!({"metadata": {"total_size": total}, "weight_map": weight_map});
        std::fs::write(
            dir.join("model.safetensors.index.json"),
            serde_json::to_string_pretty(&index)?,
        )?;
    }
    std::fs::write(
        dir.join("config.json"),
        serde_json::to_string_pretty(&config)?,
    )?;
    write_tokenizer_files(checkpoint, tokenizer, dir)?;
    finish_staging(staging, out)
}

/// Writes only `tokenizer.json` and `tokenizer_config.json` of `checkpoint` into `out` (a new
/// folder, appearing whole): about 2 MB that lets `synthetic:<shape>@out` tokenize as the model
/// does where its weights cannot travel.
pub fn export_tokenizer(
    checkpoint: &Checkpoint,
    tokenizer: &TextTokenizer,
    out: &Path,
) -> Result<()> {
    let staging = staging_dir(out)?;
    write_tokenizer_files(checkpoint, tokenizer, staging.path())?;
    finish_staging(staging, out)
}

/// Writes `config.json` and the tokenizer files but no weights: the architecture without its
/// parameters, e.g. for building the same network with random weights elsewhere
/// (`AutoModelForCausalLM.from_config`) to compare speed.
pub fn export_without_weights(
    checkpoint: &Checkpoint,
    tokenizer: &TextTokenizer,
    out: &Path,
    dtype: ExportDtype,
) -> Result<()> {
    let architecture = checkpoint.string("general.architecture")?;
    let staging = staging_dir(out)?;
    let config = hf_config(checkpoint, &architecture, dtype)?;
    std::fs::write(
        staging.path().join("config.json"),
        serde_json::to_string_pretty(&config)?,
    )?;
    write_tokenizer_files(checkpoint, tokenizer, staging.path())?;
    finish_staging(staging, out)
}

/// A temporary folder beside `out`, which must not exist yet.
fn staging_dir(out: &Path) -> Result<tempfile::TempDir> {
    if out.exists() {
        bail!("{} exists already; choose a new folder", out.display());
    }
    let parent = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent)?;
    tempfile::Builder::new()
        .prefix(".export-")
        .tempdir_in(parent)
        .with_context(|| format!("cannot create a folder in {}", parent.display()))
}

/// Makes the staged files readable by all and moves the folder into place at `out`.
fn finish_staging(staging: tempfile::TempDir, out: &Path) -> Result<()> {
    for entry in std::fs::read_dir(staging.path())? {
        crate::verified::set_readable(&std::fs::File::open(entry?.path())?)?;
    }
    let staging = staging.keep();
    std::fs::rename(&staging, out)
        .with_context(|| format!("cannot move the export into place at {}", out.display()))
}

fn write_tokenizer_files(
    checkpoint: &Checkpoint,
    tokenizer: &TextTokenizer,
    dir: &Path,
) -> Result<()> {
    tokenizer.save_json(&dir.join("tokenizer.json"))?;
    let mut tokenizer_config = json!({
        "bos_token": checkpoint.special_token_text("bos")?,
        "eos_token": checkpoint.special_token_text("eos")?,
    });
    if checkpoint.has("tokenizer.chat_template") {
        tokenizer_config["chat_template"] = json!(checkpoint.string("tokenizer.chat_template")?);
    }
    std::fs::write(
        dir.join("tokenizer_config.json"),
        serde_json::to_string_pretty(&tokenizer_config)?,
    )?;
    Ok(())
}

fn save_shard(tensors: &BTreeMap<String, Tensor>, path: &Path) -> Result<()> {
    let tensors: HashMap<&String, Tensor> = tensors.iter().map(|(k, v)| (k, v.clone())).collect();
    candle_core::safetensors::save(&tensors, path)
        .with_context(|| format!("cannot write {}", path.display()))
}

/// Embeddings first, then layer by layer, then the head: the order checkpoints are written in.
fn tensor_order(name: &str) -> (usize, String) {
    match name.strip_prefix("blk.").and_then(|r| r.split_once('.')) {
        Some((layer, rest)) => (layer.parse::<usize>().unwrap_or(0) + 1, rest.to_string()),
        None if name.starts_with("token_embd") => (0, name.to_string()),
        None => (usize::MAX, name.to_string()),
    }
}

/// The inverse of llama.cpp's Q/K permutation: rows (head, i, pair) → (head, pair, i).
fn unpermute_rows(t: &Tensor, heads: usize) -> Result<Tensor> {
    let (rows, cols) = t.dims2()?;
    Ok(t.reshape((heads, rows / heads / 2, 2, cols))?
        .transpose(1, 2)?
        .reshape((rows, cols))?)
}

/// config.json for a GGUF checkpoint's metadata.
fn hf_config(checkpoint: &Checkpoint, architecture: &str, dtype: ExportDtype) -> Result<Json> {
    let key = |k: &str| format!("{architecture}.{k}");
    let hidden = checkpoint.usize(&key("embedding_length"))?;
    let n_head = checkpoint.usize(&key("attention.head_count"))?;
    let vocab = checkpoint.tensor_shape("token_embd.weight")?.0;
    let mut config = json!({
        "architectures": [match architecture {
            "llama" => "LlamaForCausalLM",
            "qwen2" => "Qwen2ForCausalLM",
            _ => "Gemma3ForCausalLM",
        }],
        "model_type": if architecture == "gemma3" { "gemma3_text" } else { architecture },
        "hidden_size": hidden,
        "intermediate_size": checkpoint.usize(&key("feed_forward_length"))?,
        "num_hidden_layers": checkpoint.usize(&key("block_count"))?,
        "num_attention_heads": n_head,
        "num_key_value_heads": checkpoint.usize_or(&key("attention.head_count_kv"), n_head)?,
        "max_position_embeddings": checkpoint.usize(&key("context_length"))?,
        "rms_norm_eps": checkpoint.f32(&key("attention.layer_norm_rms_epsilon"))?,
        "vocab_size": vocab,
        "tie_word_embeddings": !checkpoint.has_tensor("output.weight"),
        "torch_dtype": dtype.torch_name(),
    });
    if let Some(theta) = checkpoint.optional_f32(&key("rope.freq_base"))? {
        config["rope_theta"] = json!(theta);
    }
    if architecture == "gemma3" {
        let head_dim = checkpoint.usize_or(&key("attention.key_length"), hidden / n_head)?;
        config["head_dim"] = json!(head_dim);
        config["query_pre_attn_scalar"] = json!(head_dim);
        config["hidden_activation"] = json!("gelu_pytorch_tanh");
        if checkpoint.has(&key("attention.sliding_window")) {
            config["sliding_window"] = json!(checkpoint.usize(&key("attention.sliding_window"))?);
            config["sliding_window_pattern"] = json!(checkpoint.usize_or(
                &key("attention.sliding_window_pattern"),
                gemma3::DEFAULT_SLIDING_WINDOW_PATTERN,
            )?);
            config["rope_local_base_freq"] = json!(checkpoint
                .optional_f32(&key("rope.freq_base_swa"))?
                .unwrap_or(gemma3::DEFAULT_LOCAL_ROPE_BASE));
        }
    } else {
        config["hidden_act"] = json!("silu");
        if checkpoint.has(&key("rope.dimension_count")) {
            config["head_dim"] = json!(checkpoint.usize(&key("rope.dimension_count"))?);
        }
    }
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tensor_names_map_both_ways() {
        for arch in ["llama", "qwen2", "gemma3"] {
            for gguf in [
                "token_embd.weight",
                "output_norm.weight",
                "blk.3.attn_q.weight",
                "blk.3.ffn_norm.weight",
                "blk.11.ffn_down.weight",
            ] {
                let hf = hf_name(arch, gguf).unwrap();
                assert_eq!(gguf_name(arch, &hf).as_deref(), Some(gguf), "{arch} {hf}");
            }
        }
        // Both directions: an exported llama must name its FFN norm as transformers does.
        for (arch, gguf, hf) in [
            (
                "llama",
                "blk.0.ffn_norm.weight",
                "model.layers.0.post_attention_layernorm.weight",
            ),
            (
                "gemma3",
                "blk.0.ffn_norm.weight",
                "model.layers.0.pre_feedforward_layernorm.weight",
            ),
            (
                "gemma3",
                "blk.0.post_attention_norm.weight",
                "model.layers.0.post_attention_layernorm.weight",
            ),
            (
                "gemma3",
                "blk.2.ffn_norm.weight",
                "model.layers.2.pre_feedforward_layernorm.weight",
            ),
        ] {
            assert_eq!(hf_name(arch, gguf).as_deref(), Some(hf), "{arch} {gguf}");
            assert_eq!(gguf_name(arch, hf).as_deref(), Some(gguf), "{arch} {hf}");
        }
        assert_eq!(
            gguf_name("llama", "model.layers.0.pre_feedforward_layernorm.weight"),
            None
        );
        assert_eq!(gguf_name("llama", "model.rotary_emb.inv_freq"), None);
    }

    #[test]
    fn unpermuting_inverts_the_llama_cpp_permutation() {
        let (heads, head_dim, cols) = (3, 4, 2);
        let rows = heads * head_dim;
        let hf = Tensor::arange(0f32, (rows * cols) as f32, &Device::Cpu)
            .unwrap()
            .reshape((rows, cols))
            .unwrap();
        // llama.cpp: reshape(heads, 2, head_dim / 2, cols).swapaxes(1, 2)
        let permuted = hf
            .reshape((heads, 2, head_dim / 2, cols))
            .unwrap()
            .transpose(1, 2)
            .unwrap()
            .reshape((rows, cols))
            .unwrap();
        let back = unpermute_rows(&permuted, heads).unwrap();
        assert_eq!(back.to_vec2::<f32>().unwrap(), hf.to_vec2::<f32>().unwrap());
    }

    #[test]
    fn gemma3_config_fields_become_gguf_metadata() {
        let config = json!({
            "model_type": "gemma3_text", "hidden_size": 640, "num_hidden_layers": 18,
            "intermediate_size": 2048, "num_attention_heads": 4, "num_key_value_heads": 1,
            "max_position_embeddings": 32768, "rms_norm_eps": 1e-6, "head_dim": 256,
            "sliding_window": 512, "query_pre_attn_scalar": 256,
            "layer_types": ["sliding_attention", "sliding_attention", "full_attention",
                            "sliding_attention", "sliding_attention", "full_attention"],
            "rope_parameters": {"full_attention": {"rope_type": "default", "rope_theta": 1e6},
                                "sliding_attention": {"rope_type": "default", "rope_theta": 1e4}}
        });
        let m = config_metadata(&config).unwrap();
        let f = |k: &str| match &m[k] {
            Value::F32(v) => *v as f64,
            Value::U64(v) => *v as f64,
            other => panic!("{k}: {other:?}"),
        };
        assert_eq!(f("gemma3.attention.sliding_window_pattern"), 3.0);
        assert_eq!(f("gemma3.rope.freq_base"), 1e6);
        assert_eq!(f("gemma3.rope.freq_base_swa"), 1e4);
        assert_eq!(f("gemma3.attention.scale"), 1.0 / 16.0);
        assert_eq!(f("gemma3.attention.key_length"), 256.0);
        let mut bad = config.clone();
        bad["model_type"] = json!("mamba");
        assert!(config_metadata(&bad)
            .unwrap_err()
            .to_string()
            .contains("mamba"));
    }
}
