//! The qwen3 architecture (Qwen3 dense models). Llama's math with two differences: each head of
//! Q and of K passes through its own RMSNorm before RoPE (`attn_q_norm`, `attn_k_norm`), and the
//! head size is explicit (`head_dim`, GGUF `attention.key_length`). No QKV biases (unlike
//! qwen2); rotary embeddings in the NEOX layout, unpermuted in both formats. So: llama's forward
//! from the `qwen3.` metadata with that layout, and llama's config translation.

use anyhow::{bail, Result};
use serde_json::Value as Json;

use super::architecture::{Architecture, Network};
use super::llama::{self, Llama, RopeStyle};
use crate::model::device::Placement;
use crate::model::formats::checkpoint::Checkpoint;
use crate::model::formats::Metadata;

pub struct Qwen3Architecture;

impl Architecture for Qwen3Architecture {
    fn name(&self) -> &'static str {
        "qwen3"
    }

    fn model_types(&self) -> &'static [&'static str] {
        &["qwen3"]
    }

    fn metadata_from_config(&self, config: &Json) -> Result<Metadata> {
        refuse_sliding_window(config)?;
        llama::metadata_from_config(config, self.name())
    }

    fn config_from_metadata(&self, checkpoint: &Checkpoint, torch_dtype: &str) -> Result<Json> {
        llama::config_from_metadata(checkpoint, self.name(), "Qwen3ForCausalLM", torch_dtype)
    }

    fn norm_names(&self) -> &'static [(&'static str, &'static str)] {
        llama::NORM_NAMES
    }

    fn load(&self, checkpoint: &mut Checkpoint, placement: &Placement) -> Result<Box<dyn Network>> {
        Ok(Box::new(Llama::from_checkpoint_as(
            checkpoint,
            placement,
            "qwen3",
            RopeStyle::Halves,
        )?))
    }
}

/// Qwen configs carry a `sliding_window` that applies only with `use_sliding_window` (and then
/// only above `max_window_layers`), which no released Qwen2/Qwen3 dense model sets.
pub fn refuse_sliding_window(config: &Json) -> Result<()> {
    if config["use_sliding_window"].as_bool() == Some(true) {
        bail!(
            "use_sliding_window is set: sliding-window attention above max_window_layers is not \
             supported for {}",
            config["model_type"].as_str().unwrap_or("this model")
        );
    }
    Ok(())
}
