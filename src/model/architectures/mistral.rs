//! The mistral architecture (Mistral-7B v0.1–v0.3 and its fine-tunes): llama's block, with a
//! sliding window when config.json sets `sliding_window` (v0.1: 4,096; later versions: null)
//! and an explicit `head_dim`. llama.cpp's converter writes these models as `llama` (and drops
//! the window), so a Mistral folder is translated into llama metadata plus
//! `llama.attention.sliding_window`, and llama's forward runs it.

use anyhow::Result;
use serde_json::Value as Json;

use super::architecture::{Architecture, Network};
use super::llama::{self, LlamaArchitecture};
use crate::model::device::Placement;
use crate::model::formats::checkpoint::Checkpoint;
use crate::model::formats::Metadata;

pub struct MistralArchitecture;

impl Architecture for MistralArchitecture {
    fn name(&self) -> &'static str {
        "mistral"
    }

    fn gguf_architecture(&self) -> &'static str {
        LlamaArchitecture.name()
    }

    fn model_types(&self) -> &'static [&'static str] {
        &["mistral"]
    }

    fn metadata_from_config(&self, config: &Json) -> Result<Metadata> {
        let mut metadata = llama::metadata_from_config(config, self.gguf_architecture())?;
        if let Some(window) = config["sliding_window"].as_u64() {
            metadata.insert(
                "llama.attention.sliding_window".to_string(),
                super::architecture::gguf_uint(window),
            );
        }
        Ok(metadata)
    }

    fn config_from_metadata(&self, checkpoint: &Checkpoint, torch_dtype: &str) -> Result<Json> {
        LlamaArchitecture.config_from_metadata(checkpoint, torch_dtype)
    }

    fn norm_names(&self) -> &'static [(&'static str, &'static str)] {
        llama::NORM_NAMES
    }

    fn load(&self, checkpoint: &mut Checkpoint, placement: &Placement) -> Result<Box<dyn Network>> {
        LlamaArchitecture.load(checkpoint, placement)
    }
}
