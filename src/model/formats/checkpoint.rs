//! A model checkpoint as the networks and the tokenizer read it: metadata under GGUF's keys
//! (`<arch>.block_count`, `tokenizer.ggml.*`, …) and tensors under GGUF's names
//! (`blk.0.attn_q.weight`, …), whichever format it came from (a safetensors folder is
//! translated into this vocabulary by its architecture when it is opened, see `open.rs`).

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use candle_core::quantized::gguf_file::Value;
use candle_core::quantized::{GgmlDType, QTensor};

use crate::model::formats::{Metadata, TensorSource};

/// The format a checkpoint was read from, for the conventions that differ between formats
/// (e.g. GGUF permutes llama's Q/K rows for interleaved rotary embeddings).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckpointFormat {
    Gguf,
    Safetensors,
    /// Generated weights in GGUF's conventions.
    Synthetic,
}

pub struct Checkpoint {
    /// What to name in messages: the GGUF file, the safetensors folder, or the synthetic spec.
    pub origin: String,
    pub format: CheckpointFormat,
    metadata: Metadata,
    tensors: Box<dyn TensorSource>,
    /// A Hugging Face tokenizer to use instead of the GGUF `tokenizer.ggml.*` metadata.
    tokenizer_json: Option<PathBuf>,
}

impl Checkpoint {
    pub fn new(
        origin: String,
        format: CheckpointFormat,
        metadata: Metadata,
        tensors: Box<dyn TensorSource>,
    ) -> Self {
        Self {
            origin,
            format,
            metadata,
            tensors,
            tokenizer_json: None,
        }
    }

    pub fn with_tokenizer_json(mut self, tokenizer_json: PathBuf) -> Self {
        self.tokenizer_json = Some(tokenizer_json);
        self
    }

    pub fn is_safetensors(&self) -> bool {
        self.format == CheckpointFormat::Safetensors
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

    pub fn metadata(&self) -> &Metadata {
        &self.metadata
    }

    fn get(&self, key: &str) -> Result<&Value> {
        self.metadata.get(key).with_context(|| {
            format!(
                "{}: metadata key '{key}' is missing; the file is not a complete model",
                self.origin
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
            // Integer-valued keys (llama.cpp stores context lengths as u32) read as numbers too.
            _ => match self.usize(key) {
                Ok(n) => Ok(n as f32),
                Err(_) => bail!(self.bad_type(key, "a number")),
            },
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

    /// An array of floats (e.g. RoPE factors written from a config.json).
    pub fn f32s(&self, key: &str) -> Result<Vec<f32>> {
        self.get(key)?
            .to_vec()
            .with_context(|| self.bad_type(key, "an array"))?
            .iter()
            .map(|v| match v {
                Value::F32(x) => Ok(*x),
                Value::F64(x) => Ok(*x as f32),
                _ => bail!(self.bad_type(key, "an array of floats")),
            })
            .collect()
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
        format!("{}: metadata key '{key}' is not {expected}", self.origin)
    }

    pub fn has_tensor(&self, name: &str) -> bool {
        self.tensors.has(name)
    }

    /// The names of all tensors the networks can use.
    pub fn tensor_names(&self) -> Vec<String> {
        self.tensors.names()
    }

    /// Dimensions (outermost first) and storage format of a tensor, without reading it (the
    /// format `None` where the source does not say).
    pub fn tensor_info(&self, name: &str) -> Option<(Vec<usize>, Option<GgmlDType>)> {
        Some((self.tensors.dims(name)?, self.tensors.dtype(name)))
    }

    /// The format tensor `name` is stored in where reading converts it (GGUF formats candle
    /// does not read); `None` where it is read as stored.
    pub fn tensor_stored_as(&self, name: &str) -> Option<String> {
        self.tensors.stored_as(name)
    }

    /// (rows, columns) of a matrix, without reading it.
    pub fn tensor_shape(&self, name: &str) -> Result<(usize, usize)> {
        let dims = self
            .tensors
            .dims(name)
            .with_context(|| format!("{}: tensor '{name}' is missing", self.origin))?;
        match dims.as_slice() {
            [rows, cols] => Ok((*rows, *cols)),
            other => bail!(
                "{}: tensor '{name}' has shape {other:?}, expected a matrix",
                self.origin
            ),
        }
    }

    /// The tensor `name` if the checkpoint has it (e.g. an LM head that may be tied instead).
    pub fn optional_tensor(&mut self, name: &str) -> Result<Option<QTensor>> {
        match self.has_tensor(name) {
            true => Ok(Some(self.tensor(name)?)),
            false => Ok(None),
        }
    }

    pub fn tensor(&mut self, name: &str) -> Result<QTensor> {
        if !self.has_tensor(name) {
            bail!(
                "{}: tensor '{name}' is missing; the checkpoint is not a complete model",
                self.origin
            );
        }
        self.tensors.read(name)
    }
}
