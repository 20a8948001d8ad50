//! The qwen2 architecture (Qwen2, Qwen2.5, Qwen2.5-Coder). Its math is llama's with two
//! differences: the Q, K and V projections have biases, and rotary embeddings rotate the two
//! halves of each head (NEOX layout; GGUF keeps qwen2's Q/K unpermuted, so both formats store
//! the same weights). So it is llama's forward, loaded from the `qwen2.` metadata with that
//! rotary layout, and llama's config translation.

use anyhow::Result;
use serde_json::Value as Json;

use super::architecture::{Architecture, Network};
use super::llama::{self, Llama, RopeStyle};
use crate::model::device::Placement;
use crate::model::formats::checkpoint::Checkpoint;
use crate::model::formats::Metadata;

pub struct Qwen2Architecture;

impl Architecture for Qwen2Architecture {
    fn name(&self) -> &'static str {
        "qwen2"
    }

    fn model_types(&self) -> &'static [&'static str] {
        &["qwen2"]
    }

    fn metadata_from_config(&self, config: &Json) -> Result<Metadata> {
        super::qwen3::refuse_sliding_window(config)?;
        llama::metadata_from_config(config, self.name())
    }

    fn config_from_metadata(&self, checkpoint: &Checkpoint, torch_dtype: &str) -> Result<Json> {
        llama::config_from_metadata(checkpoint, self.name(), "Qwen2ForCausalLM", torch_dtype)
    }

    fn norm_names(&self) -> &'static [(&'static str, &'static str)] {
        llama::NORM_NAMES
    }

    fn load(&self, checkpoint: &mut Checkpoint, placement: &Placement) -> Result<Box<dyn Network>> {
        Ok(Box::new(Llama::from_checkpoint_as(
            checkpoint,
            placement,
            "qwen2",
            RopeStyle::Halves,
        )?))
    }
}
