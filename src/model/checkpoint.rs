//! A model checkpoint as the networks and the tokenizer read it: metadata under GGUF's keys
//! (`<arch>.block_count`, `tokenizer.ggml.*`, …) and tensors under GGUF's names
//! (`blk.0.attn_q.weight`, …), whether it came from a GGUF file or from a Hugging Face
//! safetensors folder (translated on opening, see `safetensors.rs`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use candle_core::quantized::gguf_file::Value;
use candle_core::quantized::QTensor;

use super::{gguf, safetensors, synthetic};

/// Where a checkpoint's tensors come from.
pub enum Tensors {
    Gguf(gguf::GgufTensors),
    Safetensors(safetensors::HfTensors),
    Synthetic(synthetic::SyntheticTensors),
}

pub struct Checkpoint {
    /// The GGUF file, the folder of a safetensors checkpoint, or a `synthetic:` spec.
    pub path: PathBuf,
    metadata: HashMap<String, Value>,
    tensors: Tensors,
    /// A Hugging Face tokenizer to use instead of the GGUF `tokenizer.ggml.*` metadata.
    tokenizer_json: Option<PathBuf>,
}

impl Checkpoint {
    /// A `.gguf` file, or a folder in the Hugging Face layout (`config.json`, `*.safetensors`,
    /// `tokenizer.json`).
    pub fn open(path: &Path) -> Result<Self> {
        let spec = path.to_string_lossy();
        if synthetic::is_synthetic(&spec) {
            synthetic::open(&spec)
        } else if path.is_dir() {
            safetensors::open(path)
        } else {
            gguf::open(path)
        }
    }

    pub(super) fn new(path: PathBuf, metadata: HashMap<String, Value>, tensors: Tensors) -> Self {
        Self {
            path,
            metadata,
            tensors,
            tokenizer_json: None,
        }
    }

    pub(super) fn with_tokenizer_json(mut self, tokenizer_json: PathBuf) -> Self {
        self.tokenizer_json = Some(tokenizer_json);
        self
    }

    pub fn is_safetensors(&self) -> bool {
        matches!(self.tensors, Tensors::Safetensors(_))
    }

    /// The Hugging Face `tokenizer.json` of checkpoints that come with one.
    pub fn tokenizer_json(&self) -> Option<PathBuf> {
        self.tokenizer_json.clone()
    }

    /// The text of the BOS or EOS token (`which`: "bos" | "eos"), or "" when there is none.
    pub fn special_token_text(&self, which: &str) -> Result<String> {
        let text_key = format!("tokenizer.{which}_token");
        if self.has(&text_key) {
            return self.string(&text_key);
        }
        let id_key = format!("tokenizer.ggml.{which}_token_id");
        if !self.has(&id_key) || !self.has("tokenizer.ggml.tokens") {
            return Ok(String::new());
        }
        let tokens = self.strings("tokenizer.ggml.tokens")?;
        Ok(tokens
            .get(self.usize(&id_key)?)
            .cloned()
            .unwrap_or_default())
    }

    pub fn metadata(&self) -> &HashMap<String, Value> {
        &self.metadata
    }

    fn get(&self, key: &str) -> Result<&Value> {
        self.metadata.get(key).with_context(|| {
            format!(
                "{}: metadata key '{key}' is missing; the file is not a complete model",
                self.path.display()
            )
        })
    }

    pub fn has(&self, key: &str) -> bool {
        self.metadata.contains_key(key)
    }

    pub fn string(&self, key: &str) -> Result<String> {
        Ok(self
            .get(key)?
            .to_string()
            .with_context(|| self.bad_type(key, "a string"))?
            .clone())
    }

    pub fn usize(&self, key: &str) -> Result<usize> {
        let value = self.get(key)?;
        let n = match value {
            Value::U8(v) => *v as u64,
            Value::U16(v) => *v as u64,
            Value::U32(v) => *v as u64,
            Value::U64(v) => *v,
            Value::I8(v) if *v >= 0 => *v as u64,
            Value::I16(v) if *v >= 0 => *v as u64,
            Value::I32(v) if *v >= 0 => *v as u64,
            Value::I64(v) if *v >= 0 => *v as u64,
            _ => bail!(self.bad_type(key, "a non-negative integer")),
        };
        Ok(n as usize)
    }

    pub fn f32(&self, key: &str) -> Result<f32> {
        match self.get(key)? {
            Value::F32(v) => Ok(*v),
            Value::F64(v) => Ok(*v as f32),
            _ => bail!(self.bad_type(key, "a float")),
        }
    }

    /// `usize(key)` when the file has the key, else `default`.
    pub fn usize_or(&self, key: &str, default: usize) -> Result<usize> {
        if self.has(key) {
            self.usize(key)
        } else {
            Ok(default)
        }
    }

    /// `f32(key)` when the file has the key.
    pub fn optional_f32(&self, key: &str) -> Result<Option<f32>> {
        if self.has(key) {
            Ok(Some(self.f32(key)?))
        } else {
            Ok(None)
        }
    }

    pub fn bool_or(&self, key: &str, default: bool) -> Result<bool> {
        match self.metadata.get(key) {
            None => Ok(default),
            Some(v) => v.to_bool().with_context(|| self.bad_type(key, "a bool")),
        }
    }

    pub fn strings(&self, key: &str) -> Result<Vec<String>> {
        self.get(key)?
            .to_vec()
            .with_context(|| self.bad_type(key, "an array"))?
            .iter()
            .map(|v| {
                v.to_string()
                    .cloned()
                    .with_context(|| self.bad_type(key, "an array of strings"))
            })
            .collect()
    }

    pub fn integers(&self, key: &str) -> Result<Vec<i64>> {
        self.get(key)?
            .to_vec()
            .with_context(|| self.bad_type(key, "an array"))?
            .iter()
            .map(|v| match v {
                Value::I32(x) => Ok(*x as i64),
                Value::U32(x) => Ok(*x as i64),
                Value::I64(x) => Ok(*x),
                Value::U64(x) => Ok(*x as i64),
                Value::I8(x) => Ok(*x as i64),
                Value::U8(x) => Ok(*x as i64),
                _ => bail!(self.bad_type(key, "an array of integers")),
            })
            .collect()
    }

    fn bad_type(&self, key: &str, expected: &str) -> String {
        format!(
            "{}: metadata key '{key}' is not {expected}",
            self.path.display()
        )
    }

    pub fn has_tensor(&self, name: &str) -> bool {
        match &self.tensors {
            Tensors::Gguf(t) => t.has(name),
            Tensors::Safetensors(t) => t.has(name),
            Tensors::Synthetic(t) => t.has(name),
        }
    }

    /// The names of all tensors the networks can use.
    pub fn tensor_names(&self) -> Vec<String> {
        match &self.tensors {
            Tensors::Gguf(t) => t.names(),
            Tensors::Safetensors(t) => t.names(),
            Tensors::Synthetic(t) => t.names(),
        }
    }

    /// (rows, columns) of a matrix, without reading it.
    pub fn tensor_shape(&self, name: &str) -> Result<(usize, usize)> {
        let dims = match &self.tensors {
            Tensors::Gguf(t) => t.dims(name),
            Tensors::Safetensors(t) => t.dims(name),
            Tensors::Synthetic(t) => t.dims(name),
        }
        .with_context(|| format!("{}: tensor '{name}' is missing", self.path.display()))?;
        match dims.as_slice() {
            [rows, cols] => Ok((*rows, *cols)),
            other => bail!(
                "{}: tensor '{name}' has shape {other:?}, expected a matrix",
                self.path.display()
            ),
        }
    }

    pub fn tensor(&mut self, name: &str) -> Result<QTensor> {
        if !self.has_tensor(name) {
            bail!(
                "{}: tensor '{name}' is missing; the checkpoint is not a complete model",
                self.path.display()
            );
        }
        match &mut self.tensors {
            Tensors::Gguf(t) => t.read(&self.path, name),
            Tensors::Safetensors(t) => t.read(&self.path, name),
            Tensors::Synthetic(t) => t.read(&self.path, name),
        }
    }
}
