//! Checkpoint file formats — GGUF files, Hugging Face safetensors folders, and synthetic
//! weights generated from a seed — each read into metadata and tensors behind one trait,
//! [`TensorSource`]; the `checkpoint` they make (metadata and tensors under GGUF's names);
//! `open` (a resolved source as a checkpoint) and `export` (a checkpoint written as a
//! safetensors folder or a GGUF file). The readers know nothing of architectures: translating a
//! format's names and conventions into the networks' vocabulary is each architecture's job,
//! which `open` and `export` call on.

pub mod checkpoint;
pub mod export;
pub mod foreign_quants;
pub mod gguf;
pub mod open;
pub mod safetensors;
pub mod synthetic;

use std::collections::HashMap;

use anyhow::Result;
use candle_core::quantized::gguf_file::Value;
use candle_core::quantized::{GgmlDType, QTensor};

/// Metadata under GGUF's keys (`general.architecture`, `<arch>.block_count`,
/// `tokenizer.ggml.*`, …).
pub type Metadata = HashMap<String, Value>;

/// The tensors of an opened checkpoint, read on demand.
pub trait TensorSource: Send {
    fn has(&self, name: &str) -> bool;
    fn names(&self) -> Vec<String>;
    /// Dimensions, outermost first; `None` for a tensor that is not there.
    fn dims(&self, name: &str) -> Option<Vec<usize>>;
    /// The tensor on the CPU, as stored (quantized formats stay quantized).
    fn read(&mut self, name: &str) -> Result<QTensor>;
    /// The format a tensor is stored in, without reading it; `None` where the source does not
    /// say (read as f32).
    fn dtype(&self, _name: &str) -> Option<GgmlDType> {
        None
    }
    /// The name of the format a tensor is stored in where reading converts it to what
    /// [`Self::dtype`] says (GGUF formats candle does not read, dequantized to f32); `None`
    /// where the tensor is read as stored.
    fn stored_as(&self, _name: &str) -> Option<String> {
        None
    }
}
