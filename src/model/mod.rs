//! Models: what `--model` names (`sources`), read from its files (`formats`: a checkpoint,
//! translated by its architecture in `formats::open`), its tokenizer, and the network that
//! scores packed batches.
//!
//! The folders say what each part does; each layer imports only those below it:
//! - `sources/`: where the weights are — `registry` (fetched by package name), `hub` (the
//!   Hugging Face cache), `stores` (Ollama's and LM Studio's), resolved from `--model`;
//! - `formats/`: GGUF, safetensors and synthetic weights behind one trait, `checkpoint`
//!   (metadata and tensors under GGUF's names), `open` (a source as a checkpoint) and `export`
//!   (a checkpoint as a safetensors folder or a GGUF file); `tokenizer`;
//! - compute: `device` (where and in which precision), `batch` (one forward's input), `kv` (keys and values across forwards),
//!   `cpu_ops`, `kernels` (matrix kernels picked by the CPU's features: int8), `layers`, `attention` (the CPU tree kernel and masked blocks), `scoring` (LM
//!   head and log-softmax);
//! - `architectures/`: `architecture` (the trait and what all share) and one file per
//!   architecture (`llama`, `mistral`, `qwen2`, `qwen3`, `gemma2`, `gemma3`, `phi3`), listed in
//!   its `mod.rs`;
//! - assembly: [`Model`] here.

pub mod architectures;
pub mod attention;
pub mod batch;
mod cpu_ops;
pub mod device;
pub mod formats;
pub mod kernels;
pub mod kv;
pub mod layers;
pub mod memory;
pub mod rope;
pub mod scoring;
pub mod sources;
pub mod tokenizer;

use std::path::Path;

use anyhow::{Context, Result};
use candle_core::Device;

use architectures::architecture::Network;
pub use batch::{PackedBatch, Segment};
pub use device::{parse_device, Placement, Precision};
pub use kernels::DtypeChoice;
pub use scoring::RowScore;
pub use sources::{resolve, ModelSource, ResolvedModel};
use tokenizer::TextTokenizer;

/// A loaded model: its tokenizer and its network.
pub struct Model {
    pub name: String,
    pub source: ModelSource,
    pub architecture: String,
    pub precision: Precision,
    /// Where the forward runs.
    pub device: Device,
    pub tokenizer: TextTokenizer,
    /// Storage formats converted at load, in words (`F16 → Q8_0 (24 matrices)`): where the
    /// weights stay in blocks on the CPU, matrices in a format without a stored-format kernel,
    /// and float matrices, become Q8_0.
    pub converted: Vec<String>,
    network: Box<dyn Network>,
    /// The stored-format products' activation levels (see [`Model::with_finer_activations`]).
    activation_levels: device::ActivationLevels,
}

impl Model {
    /// Loads a model named as `--model` takes it (see [`resolve`]), for the CPU.
    pub fn load(spec: &str, precision: Precision) -> Result<Self> {
        Self::load_on(spec, &Placement::cpu(precision))
    }

    /// Loads a model named as `--model` takes it onto a device.
    pub fn load_on(spec: &str, placement: &Placement) -> Result<Self> {
        Self::load_resolved(&resolve(spec)?, placement)
    }

    /// Loads a GGUF file or a safetensors folder for the CPU.
    pub fn load_file(name: &str, path: &Path, precision: Precision) -> Result<Self> {
        Self::load_file_on(name, path, &Placement::cpu(precision))
    }

    /// Loads a GGUF file or a safetensors folder onto a device.
    pub fn load_file_on(name: &str, path: &Path, placement: &Placement) -> Result<Self> {
        let model = ResolvedModel {
            name: name.to_string(),
            source: ModelSource::from_path(path),
        };
        Self::load_resolved(&model, placement)
    }

    /// Loads a resolved model onto a device.
    pub fn load_resolved(model: &ResolvedModel, placement: &Placement) -> Result<Self> {
        let checkpoint = formats::open::open_checkpoint(&model.source)?;
        Self::load_checkpoint(model, checkpoint, placement)
    }

    /// The batch size a model can be loaded with (see [`memory::plan`]): `batch_tokens`, or
    /// fewer with a line on stderr saying why; an error before anything is read where the
    /// weights themselves do not fit in memory.
    pub fn plan_memory(
        model: &ResolvedModel,
        placement: &Placement,
        batch_tokens: usize,
        prefix_cache_bytes: usize,
    ) -> Result<usize> {
        let checkpoint = formats::open::open_checkpoint(&model.source)?;
        // The cache at its budget, and at most as much again captured from one forward.
        let reserved = 2 * prefix_cache_bytes as u64;
        let (tokens, note) = memory::plan(&checkpoint, placement, batch_tokens, reserved)?;
        if let Some(note) = note {
            eprintln!("valuelens: {note}");
        }
        Ok(tokens)
    }

    fn load_checkpoint(
        model: &ResolvedModel,
        mut checkpoint: formats::checkpoint::Checkpoint,
        placement: &Placement,
    ) -> Result<Self> {
        let name = checkpoint.string("general.architecture")?;
        let architecture =
            architectures::by_name(&name).with_context(|| checkpoint.origin.clone())?;
        let tokenizer = TextTokenizer::from_checkpoint(&checkpoint)?;
        let converted = conversions(&checkpoint, placement);
        let network = architecture.load(&mut checkpoint, placement)?;
        Ok(Self {
            name: model.name.clone(),
            source: model.source.clone(),
            architecture: name,
            precision: placement.precision,
            device: placement.device.clone(),
            tokenizer,
            converted,
            network,
            activation_levels: placement.activation_levels.clone(),
        })
    }

    /// The longest token sequence the model accepts.
    pub fn context_length(&self) -> usize {
        self.network.context_length()
    }

    /// Runs one packed forward and scores its rows.
    /// See [`Network::rope_regime`].
    pub fn rope_regime(&self, input_len: usize) -> u8 {
        self.network.rope_regime(input_len)
    }

    pub fn score(&self, batch: &PackedBatch) -> Result<Vec<RowScore>> {
        self.network.score(batch)
    }

    /// Runs one packed forward over past keys and values, handing back those of chosen rows
    /// (see [`kv`]).
    pub fn score_with(&self, batch: &PackedBatch, kv: kv::KvIo) -> Result<Vec<RowScore>> {
        self.network.score_with(batch, kv)
    }

    /// The shape of the network's keys and values.
    pub fn kv_geometry(&self) -> kv::KvGeometry {
        self.network.kv_geometry()
    }

    /// Whether the engine scores the choices of near ties again with finer activations
    /// (`quantized-tiebreak` on the CPU, where the stored-format kernels can switch).
    pub fn rechecks_near_ties(&self) -> bool {
        self.precision.rechecks_near_ties() && self.device.is_cpu()
    }

    /// Runs `f` with the stored-format products at two levels of 8-bit activations (about
    /// 16-bit, as `quantized-a16`), then back to the levels the model was loaded with; a
    /// model without stored-format products runs `f` as it is. Forwards of one model run one
    /// at a time (the engine's callers hold it so), so no other forward sees the switch.
    pub fn with_finer_activations<T>(&self, f: impl FnOnce() -> T) -> T {
        struct Restore<'a>(&'a device::ActivationLevels, usize);
        impl Drop for Restore<'_> {
            fn drop(&mut self) {
                self.0.set(self.1);
            }
        }
        let _restore = Restore(&self.activation_levels, self.activation_levels.get());
        self.activation_levels.set(2);
        f()
    }
}

/// The storage formats that loading `checkpoint` as `placement` says converts, counted by
/// format: every matrix without a stored-format kernel (other GGUF formats, and float ones)
/// where the weights stay in blocks on the CPU.
fn conversions(checkpoint: &formats::checkpoint::Checkpoint, placement: &Placement) -> Vec<String> {
    if !(placement.precision.keeps_blocks() && placement.device.is_cpu()) {
        return Vec::new();
    }
    let mut counts = std::collections::BTreeMap::<String, usize>::new();
    for name in checkpoint.tensor_names() {
        let Some((dims, dtype)) = checkpoint.tensor_info(&name) else {
            continue;
        };
        let dtype = dtype.unwrap_or(candle_core::quantized::GgmlDType::F32);
        if dims.len() == 2 && kernels::stored::StoredFormat::of(dtype).is_none() {
            let stored = checkpoint.tensor_stored_as(&name);
            *counts
                .entry(stored.unwrap_or_else(|| format!("{dtype:?}")))
                .or_default() += 1;
        }
    }
    counts
        .into_iter()
        .map(|(format, n)| {
            let noun = if n == 1 { "matrix" } else { "matrices" };
            format!("{format} → Q8_0 ({n} {noun})")
        })
        .collect()
}
