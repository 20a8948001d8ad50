//! Opening a [`ModelSource`] as a [`Checkpoint`]: a GGUF file as it is; a safetensors folder
//! translated into GGUF's vocabulary by its architecture (config.json → metadata, tensor names,
//! weight conventions); synthetic weights with the tokenizer they borrow.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{bail, Context, Result};
use candle_core::quantized::{GgmlDType, QTensor};

use super::checkpoint::{Checkpoint, CheckpointFormat};
use crate::model::architectures;
use crate::model::architectures::architecture::Architecture;
use crate::model::formats::safetensors::{add_tokenizer_config, read_config, HfTensors};
use crate::model::formats::synthetic::{self, SyntheticSpec};
use crate::model::formats::{gguf, TensorSource};
use crate::model::sources::registry;
use crate::model::sources::ModelSource;

/// The checkpoint of a resolved model.
pub fn open_checkpoint(source: &ModelSource) -> Result<Checkpoint> {
    match source {
        ModelSource::Gguf(path) => {
            if let Some(parts) = gguf::split_parts(path) {
                let (metadata, tensors) = gguf::open_split(&parts)?;
                return Ok(Checkpoint::new(
                    path.display().to_string(),
                    CheckpointFormat::Gguf,
                    metadata,
                    Box::new(tensors),
                ));
            }
            let (metadata, tensors) = gguf::open(path)?;
            Ok(Checkpoint::new(
                path.display().to_string(),
                CheckpointFormat::Gguf,
                metadata,
                Box::new(tensors),
            ))
        }
        ModelSource::SafetensorsFolder(folder) => open_safetensors(folder),
        ModelSource::Synthetic(spec) => open_synthetic(spec),
    }
}

/// Generated weights, with the tokenizer of the spec's folder or, without one, the default
/// registry model's tokenizer, chat template and special tokens.
fn open_synthetic(spec: &SyntheticSpec) -> Result<Checkpoint> {
    let (mut metadata, tensors) = synthetic::open(spec);
    let tokenizer_json = match &spec.tokenizer_dir {
        Some(dir) => {
            add_tokenizer_config(dir, &mut metadata)?;
            Some(dir.join("tokenizer.json"))
        }
        None => {
            let registry = registry::Registry::builtin()?;
            let path = registry::ensure(registry.get(&registry.default)?, &registry::models_dir())?;
            let (default, _) = gguf::open(&path)?;
            metadata.extend(
                default
                    .into_iter()
                    .filter(|(key, _)| key.starts_with("tokenizer.")),
            );
            None
        }
    };
    let checkpoint = Checkpoint::new(
        spec.text.clone(),
        CheckpointFormat::Synthetic,
        metadata,
        Box::new(tensors),
    );
    Ok(match tokenizer_json {
        Some(json) => checkpoint.with_tokenizer_json(json),
        None => checkpoint,
    })
}

/// A checkpoint from a path (a GGUF file or a safetensors folder).
pub fn open_path(path: &Path) -> Result<Checkpoint> {
    open_checkpoint(&ModelSource::from_path(path))
}

fn open_safetensors(folder: &Path) -> Result<Checkpoint> {
    let config = read_config(folder)?;
    let config_path = folder.join("config.json");
    let architecture = config["model_type"]
        .as_str()
        .context("config.json has no 'model_type'")
        .and_then(architectures::by_model_type)
        .with_context(|| format!("{}: unsupported model configuration", config_path.display()))?;
    let mut metadata = architecture
        .metadata_from_config(&config)
        .with_context(|| format!("{}: unsupported model configuration", config_path.display()))?;
    add_tokenizer_config(folder, &mut metadata)?;
    let tensors = HfTensors::open(folder)?;
    let names: HashMap<String, String> = tensors
        .names()
        .into_iter()
        .filter_map(|hf| architecture.gguf_tensor_name(&hf).map(|g| (g, hf)))
        .collect();
    let name = architecture.name();
    if !names.contains_key("token_embd.weight") {
        bail!(
            "{}: no tensor 'model.embed_tokens.weight' in {} — not a {name} checkpoint in the \
             Hugging Face layout",
            folder.display(),
            tensors
                .shards()
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let tied = config["tie_word_embeddings"]
        .as_bool()
        .unwrap_or(architecture.ties_embeddings_by_default());
    if !tied && !names.contains_key("output.weight") {
        bail!(
            "{}: config.json says the LM head is not tied to the embeddings, but there is no \
             'lm_head.weight' tensor",
            folder.display()
        );
    }
    Ok(Checkpoint::new(
        folder.display().to_string(),
        CheckpointFormat::Safetensors,
        metadata,
        Box::new(Translated {
            tensors,
            names,
            architecture,
        }),
    )
    .with_tokenizer_json(folder.join("tokenizer.json")))
}

/// A safetensors folder's tensors under GGUF names and in GGUF's conventions.
struct Translated {
    tensors: HfTensors,
    /// GGUF name → Hugging Face name.
    names: HashMap<String, String>,
    architecture: &'static dyn Architecture,
}

impl TensorSource for Translated {
    fn has(&self, name: &str) -> bool {
        self.names.contains_key(name)
    }

    fn names(&self) -> Vec<String> {
        self.names.keys().cloned().collect()
    }

    fn dims(&self, name: &str) -> Option<Vec<usize>> {
        self.tensors.dims(self.names.get(name)?)
    }

    fn read(&mut self, name: &str) -> Result<QTensor> {
        let hf = self
            .names
            .get(name)
            .with_context(|| format!("no tensor '{name}'"))?;
        let tensor = self
            .architecture
            .tensor_from_hf(name, self.tensors.read_f32(hf)?)?;
        Ok(QTensor::quantize(&tensor, GgmlDType::F32)?)
    }
}
