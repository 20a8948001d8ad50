//! Hugging Face safetensors folders, read and written: `config.json`, `model.safetensors` or
//! shards listed in `model.safetensors.index.json`, `tokenizer.json`, `tokenizer_config.json`.
//! Tensors keep their Hugging Face names here; the architectures translate them.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use candle_core::quantized::gguf_file::Value;
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::safetensors::MmapedSafetensors;
use candle_core::{DType, Device, Tensor};
use serde_json::{json, Value as Json};

use super::{Metadata, TensorSource};
use crate::input::read_json;

/// The config.json of a model folder, which must also hold tokenizer.json (and the weights,
/// which [`HfTensors::open`] reads).
pub fn read_config(folder: &Path) -> Result<Json> {
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
    read_json(&config_path)
}

/// The tensors of a safetensors folder (all shards memory-mapped), under their own names.
pub struct HfTensors {
    folder: PathBuf,
    shards: Vec<PathBuf>,
    files: MmapedSafetensors,
    names: BTreeSet<String>,
}

impl HfTensors {
    /// The weights of `folder`: `model.safetensors`, or the shards its index lists.
    pub fn open(folder: &Path) -> Result<Self> {
        let shards = shard_files(folder)?;
        // SAFETY: the files are mapped read-only; valuelens does not modify them while loaded
        // (the same contract as every mmap-based loader, e.g. candle's and transformers').
        let files = unsafe { MmapedSafetensors::multi(&shards) }
            .with_context(|| format!("{}: cannot read the safetensors files", folder.display()))?;
        let names = files.tensors().into_iter().map(|(name, _)| name).collect();
        Ok(Self {
            folder: folder.to_path_buf(),
            shards,
            files,
            names,
        })
    }

    /// A tensor widened to f32 (from f16 or bf16 where stored so).
    /// A tensor as f32, copied out of the shards' memory map (whose pages it then releases).
    pub fn read_f32(&self, name: &str) -> Result<Tensor> {
        let tensor = self
            .files
            .load(name, &Device::Cpu)
            .and_then(|t| t.to_dtype(DType::F32))
            .with_context(|| format!("{}: cannot read tensor '{name}'", self.folder.display()))?;
        if let Ok(view) = self.files.get(name) {
            release_pages(view.data());
        }
        Ok(tensor)
    }

    /// The shard files, for messages.
    pub fn shards(&self) -> &[PathBuf] {
        &self.shards
    }
}

impl TensorSource for HfTensors {
    fn has(&self, name: &str) -> bool {
        self.names.contains(name)
    }

    fn names(&self) -> Vec<String> {
        self.names.iter().cloned().collect()
    }

    fn dims(&self, name: &str) -> Option<Vec<usize>> {
        let view = self.files.get(name).ok()?;
        Some(view.shape().to_vec())
    }

    fn read(&mut self, name: &str) -> Result<QTensor> {
        Ok(QTensor::quantize(&self.read_f32(name)?, GgmlDType::F32)?)
    }
}

/// Drops the whole pages of a tensor's bytes in the shards' memory map once the tensor has
/// been copied out, so that loading holds one tensor's source at a time, not every shard's
/// touched pages (as the GGUF reader does).
fn release_pages(data: &[u8]) {
    #[cfg(unix)]
    {
        // SAFETY: sysconf has no preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(1) as usize;
        let start = (data.as_ptr() as usize).div_ceil(page) * page;
        let end = (data.as_ptr() as usize + data.len()) / page * page;
        if end > start {
            // SAFETY: MADV_DONTNEED on a read-only file map only drops pages, which are read
            // again from the file if touched; the range lies within the tensor's bytes, and no
            // reference into it outlives the copy made above.
            let _ = unsafe {
                libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_DONTNEED)
            };
        }
    }
    #[cfg(not(unix))]
    let _ = data;
}

/// The chat template and BOS/EOS texts of `folder/tokenizer_config.json`, where there is one,
/// as `tokenizer.chat_template`, `tokenizer.bos_token` and `tokenizer.eos_token`.
pub fn add_tokenizer_config(folder: &Path, metadata: &mut Metadata) -> Result<()> {
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

/// tokenizer_config.json → `tokenizer.chat_template`, `tokenizer.bos_token`, `tokenizer.eos_token`.
fn tokenizer_metadata(tokenizer_config: &Json, metadata: &mut Metadata) {
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

/// Writes `tensors` into `dir` as `model.safetensors`, or, when `shard_bytes` is given and
/// they are larger, as `model-0000i-of-0000n.safetensors` shards listed in
/// `model.safetensors.index.json`. `tensors` come in the order they are to be written.
pub fn write_tensors(
    dir: &Path,
    tensors: Vec<(String, Tensor)>,
    shard_bytes: Option<usize>,
) -> Result<()> {
    let mut shards: Vec<BTreeMap<String, Tensor>> = vec![BTreeMap::new()];
    let mut shard_size = 0usize;
    for (name, t) in tensors {
        let bytes = t.elem_count() * t.dtype().size_in_bytes();
        if let Some(limit) = shard_bytes {
            if shard_size > 0 && shard_size + bytes > limit {
                shards.push(BTreeMap::new());
                shard_size = 0;
            }
        }
        shard_size += bytes;
        shards
            .last_mut()
            .expect("one shard at least")
            .insert(name, t);
    }
    if shards.len() == 1 {
        return save_shard(&shards[0], &dir.join("model.safetensors"));
    }
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
    Ok(())
}

fn save_shard(tensors: &BTreeMap<String, Tensor>, path: &Path) -> Result<()> {
    let tensors: HashMap<&String, Tensor> = tensors.iter().map(|(k, v)| (k, v.clone())).collect();
    candle_core::safetensors::save(&tensors, path)
        .with_context(|| format!("cannot write {}", path.display()))
}
