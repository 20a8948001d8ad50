//! The gemma2 architecture (Gemma 2: 2B, 9B — the paper's open model — and 27B). Gemma 3's
//! network (`gemma3.rs`) without its per-head Q/K norms: embeddings scaled by √hidden; RMSNorms
//! before and after attention and the feed-forward, with GGUF's +1 already added; GeGLU;
//! queries scaled by `query_pre_attn_scalar^-½`; attention logits soft-capped
//! (`attn_logit_softcapping`) and the final logits too (`final_logit_softcapping`); layers
//! alternating between a sliding window (even layers) and global attention, all with one RoPE
//! base; the LM head tied to the embeddings.

use anyhow::Result;
use candle_core::Tensor;
use serde_json::Value as Json;

use super::architecture::{Architecture, Network};
use super::gemma3::{self, Gemma, Gemma3Architecture, GemmaFamily};
use crate::model::device::Placement;
use crate::model::formats::checkpoint::Checkpoint;
use crate::model::formats::Metadata;

pub const GEMMA2: GemmaFamily = GemmaFamily {
    prefix: "gemma2",
    class: "Gemma2ForCausalLM",
    model_type: "gemma2",
    // llama.cpp's gemma2 alternates without storing a pattern: sliding, global, sliding, …
    default_sliding_window_pattern: 2,
    local_rope_base: false,
    qk_norm: false,
    // gemma-2-27b.
    layers_of_hidden_scaled: 46,
};

pub struct Gemma2Architecture;

impl Architecture for Gemma2Architecture {
    fn name(&self) -> &'static str {
        "gemma2"
    }

    fn model_types(&self) -> &'static [&'static str] {
        &["gemma2"]
    }

    fn metadata_from_config(&self, config: &Json) -> Result<Metadata> {
        gemma3::metadata_from_config(config, &GEMMA2)
    }

    fn config_from_metadata(&self, checkpoint: &Checkpoint, torch_dtype: &str) -> Result<Json> {
        gemma3::config_from_metadata(checkpoint, &GEMMA2, torch_dtype)
    }

    fn norm_names(&self) -> &'static [(&'static str, &'static str)] {
        Gemma3Architecture.norm_names()
    }

    fn ties_embeddings_by_default(&self) -> bool {
        true
    }

    fn tensor_from_hf(&self, name: &str, tensor: Tensor) -> Result<Tensor> {
        Gemma3Architecture.tensor_from_hf(name, tensor)
    }

    fn tensor_to_hf(&self, checkpoint: &Checkpoint, name: &str, tensor: Tensor) -> Result<Tensor> {
        Gemma3Architecture.tensor_to_hf(checkpoint, name, tensor)
    }

    fn load(&self, checkpoint: &mut Checkpoint, placement: &Placement) -> Result<Box<dyn Network>> {
        Ok(Box::new(Gemma::from_checkpoint(
            checkpoint, placement, &GEMMA2,
        )?))
    }
}
