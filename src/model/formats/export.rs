//! Writing a checkpoint as a Hugging Face safetensors folder (config.json, `*.safetensors`,
//! tokenizer.json, tokenizer_config.json), its weights dequantized to f32, f16 or bf16 and
//! put in Hugging Face's conventions by its architecture — e.g. to hand a registry GGUF to
//! transformers, or to test the safetensors path on real weights.

use std::path::Path;

use anyhow::{bail, Context, Result};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{DType, Device};
use serde_json::json;

use super::checkpoint::Checkpoint;
use crate::model::architectures;
use crate::model::architectures::architecture::Architecture;
use crate::model::formats::safetensors::write_tensors;
use crate::model::formats::synthetic::quantize_rows_in_parallel;
use crate::model::tokenizer::TextTokenizer;
use crate::output::set_readable;

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

/// Writes `checkpoint` as one GGUF file at `out` that llama.cpp and valuelens read: its metadata
/// (architecture, hyper-parameters, tokenizer), its 1-D tensors in f32, and its matrices in
/// `storage` (converted from what the checkpoint holds; rows that a k-quant's 256-value blocks
/// do not divide go to Q8_0, as llama.cpp's quantizer does with them) or, without `storage`, as
/// the checkpoint stores them. The tokenizer's token lists are padded to the embedding table's
/// rows where they are shorter (a synthetic shape borrowing a smaller vocabulary), with unused
/// placeholder tokens, as llama.cpp requires one token per row. Written beside `out`, then
/// renamed: the file appears whole or not at all. Returns (tensors converted, file bytes).
pub fn export_gguf(
    checkpoint: &mut Checkpoint,
    out: &Path,
    storage: Option<GgmlDType>,
) -> Result<(usize, u64)> {
    use candle_core::quantized::gguf_file::{self, Value};
    let mut names = checkpoint.tensor_names();
    names.sort_by_key(|name| tensor_order(name));
    let mut tensors = Vec::with_capacity(names.len());
    let mut converted = 0;
    for name in &names {
        let tensor = checkpoint.tensor(name)?;
        let matrix = tensor.shape().dims().len() == 2;
        let target = match storage {
            Some(format) if matrix => {
                let row = *tensor.shape().dims().last().unwrap_or(&0);
                if row % format.block_size() == 0 {
                    format
                } else {
                    GgmlDType::Q8_0
                }
            }
            _ if !matrix && tensor.dtype() != GgmlDType::F32 => GgmlDType::F32,
            _ => tensor.dtype(),
        };
        let tensor = if target == tensor.dtype() {
            tensor
        } else {
            converted += 1;
            let dense = tensor.dequantize(&Device::Cpu)?;
            quantize_rows_in_parallel(&dense, target)
                .with_context(|| format!("{}: storing '{name}' as {target:?}", checkpoint.origin))?
        };
        tensors.push((name.clone(), tensor));
    }
    if let Some(divisors) = llama3_rope_as_divisors(checkpoint)? {
        tensors.push((crate::model::rope::ROPE_FREQS_TENSOR.to_string(), divisors));
    }
    let mut metadata = checkpoint.metadata().clone();
    if tensors
        .iter()
        .any(|(n, _)| n == crate::model::rope::ROPE_FREQS_TENSOR)
    {
        let arch = checkpoint.string("general.architecture")?;
        for key in LLAMA3_ROPE_KEYS {
            metadata.remove(&format!("{arch}.rope.scaling.{key}"));
        }
    }
    if let Some((_, embeddings)) = tensors.iter().find(|(n, _)| n == "token_embd.weight") {
        pad_vocabulary(&mut metadata, embeddings.shape().dims()[0]);
    }
    let dir = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let mut temp = tempfile::Builder::new()
        .prefix(".valuelens-")
        .suffix(".gguf.tmp")
        .tempfile_in(dir)
        .with_context(|| format!("cannot create a file in {}", dir.display()))?;
    {
        let metadata: Vec<(&str, &Value)> = metadata.iter().map(|(k, v)| (k.as_str(), v)).collect();
        let tensors: Vec<(&str, &QTensor)> = tensors.iter().map(|(n, t)| (n.as_str(), t)).collect();
        let mut writer = std::io::BufWriter::new(temp.as_file_mut());
        gguf_file::write(&mut writer, &metadata, &tensors)
            .with_context(|| format!("writing {}", out.display()))?;
        std::io::Write::flush(&mut writer)?;
    }
    let bytes = temp.as_file().metadata()?.len();
    set_readable(temp.as_file())?;
    temp.persist(out)
        .with_context(|| format!("cannot write {}", out.display()))?;
    Ok((converted, bytes))
}

/// The metadata keys of llama 3's RoPE scaling, which llama.cpp does not read.
const LLAMA3_ROPE_KEYS: [&str; 5] = [
    "type",
    "factor",
    "low_freq_factor",
    "high_freq_factor",
    "original_context_length",
];

/// Llama 3's RoPE scaling as llama.cpp stores it: a `rope_freqs.weight` tensor of frequency
/// divisors (its loader refuses `rope.scaling.type = llama3`); `None` for other scalings.
fn llama3_rope_as_divisors(checkpoint: &mut Checkpoint) -> Result<Option<QTensor>> {
    use crate::model::rope::{base_inv_freq, RopeScaling, ROPE_FREQS_TENSOR};
    let arch = checkpoint.string("general.architecture")?;
    let key = |k: &str| format!("{arch}.{k}");
    if checkpoint.has_tensor(ROPE_FREQS_TENSOR)
        || !checkpoint.has(&key("rope.scaling.type"))
        || checkpoint.string(&key("rope.scaling.type"))? != "llama3"
    {
        return Ok(None);
    }
    let scaling = RopeScaling::from_checkpoint(checkpoint, &arch)?;
    let dim = match checkpoint.has(&key("rope.dimension_count")) {
        true => checkpoint.usize(&key("rope.dimension_count"))?,
        false => {
            checkpoint.usize(&key("embedding_length"))?
                / checkpoint.usize(&key("attention.head_count"))?
        }
    };
    let theta = match checkpoint.has(&key("rope.freq_base")) {
        true => checkpoint.f32(&key("rope.freq_base"))?,
        false => 10_000.0,
    };
    let divisors: Vec<f32> = base_inv_freq(dim, theta)
        .iter()
        .zip(scaling.inv_freq(dim, theta)?)
        .map(|(base, scaled)| base / scaled)
        .collect();
    let len = divisors.len();
    let tensor = candle_core::Tensor::from_vec(divisors, len, &Device::Cpu)?;
    Ok(Some(QTensor::quantize(&tensor, GgmlDType::F32)?))
}

/// Pads `tokenizer.ggml.tokens` (and its parallel arrays) to `rows` entries with unused
/// placeholder tokens.
fn pad_vocabulary(metadata: &mut crate::model::formats::Metadata, rows: usize) {
    use candle_core::quantized::gguf_file::Value;
    let Some(Value::Array(tokens)) = metadata.get("tokenizer.ggml.tokens") else {
        return;
    };
    let have = tokens.len();
    if have >= rows {
        return;
    }
    let pad = |key: &str,
               value: &dyn Fn(usize) -> Value,
               metadata: &mut crate::model::formats::Metadata| {
        if let Some(Value::Array(values)) = metadata.get_mut(key) {
            if values.len() == have {
                values.extend((have..rows).map(value));
            }
        }
    };
    pad(
        "tokenizer.ggml.token_type",
        &|_| Value::I32(5), // LLAMA_TOKEN_TYPE_UNUSED
        metadata,
    );
    pad("tokenizer.ggml.scores", &|_| Value::F32(0.0), metadata);
    pad(
        "tokenizer.ggml.tokens",
        &|i| Value::String(format!("<|valuelens_unused_{i}|>")),
        metadata,
    );
}

/// Writes `checkpoint` with `tokenizer` into `out` in the Hugging Face layout: weights
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
    let architecture = architecture_of(checkpoint)?;
    let staging = staging_dir(out)?;
    let config = architecture.config_from_metadata(checkpoint, dtype.torch_name())?;
    let mut names: Vec<(String, String)> = checkpoint
        .tensor_names()
        .into_iter()
        .filter_map(|gguf| architecture.hf_tensor_name(&gguf).map(|hf| (gguf, hf)))
        .collect();
    names.sort_by_key(|(gguf, _)| tensor_order(gguf));
    let mut tensors = Vec::with_capacity(names.len());
    for (gguf, hf) in names {
        let t = checkpoint.tensor(&gguf)?.dequantize(&Device::Cpu)?;
        let t = architecture.tensor_to_hf(checkpoint, &gguf, t)?;
        tensors.push((hf, t.to_dtype(dtype.dtype())?));
    }
    let dir = staging.path();
    write_tensors(dir, tensors, shard_bytes)?;
    std::fs::write(
        dir.join("config.json"),
        serde_json::to_string_pretty(&config)?,
    )?;
    write_tokenizer_files(checkpoint, tokenizer, dir)?;
    finish_staging(staging, out)
}

fn architecture_of(checkpoint: &Checkpoint) -> Result<&'static dyn Architecture> {
    let name = checkpoint.string("general.architecture")?;
    architectures::by_name(&name).with_context(|| format!("exporting {}", checkpoint.origin))
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
    let architecture = architecture_of(checkpoint)?;
    let staging = staging_dir(out)?;
    let config = architecture.config_from_metadata(checkpoint, dtype.torch_name())?;
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
        set_readable(&std::fs::File::open(entry?.path())?)?;
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

/// Embeddings first, then layer by layer, then the head: the order checkpoints are written in.
fn tensor_order(name: &str) -> (usize, String) {
    match name.strip_prefix("blk.").and_then(|r| r.split_once('.')) {
        Some((layer, rest)) => (layer.parse::<usize>().unwrap_or(0) + 1, rest.to_string()),
        None if name.starts_with("token_embd") => (0, name.to_string()),
        None => (usize::MAX, name.to_string()),
    }
}
