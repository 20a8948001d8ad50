//! The phi3 architecture (Phi-3 and Phi-3.5 mini/medium). Llama's math with its weights fused:
//! `qkv_proj` holds Q, K and V stacked, `gate_up_proj` the gate above the up projection (GGUF
//! `attn_qkv`, and `ffn_up` of twice the width); rotary embeddings in the NEOX layout, unpermuted
//! in both formats; a sliding window where config.json sets one; and the `longrope` (alias `su`)
//! scaling of the 128k models: short factors for inputs up to `original_max_position_embeddings`
//! tokens, long ones beyond, cos and sin multiplied by the attention factor — as transformers
//! chooses them by the input's length, so the engine never shares a prefix between inputs of the
//! two kinds (`Network::rope_regime`). GGUF keeps the factors as `rope_factors_short.weight` /
//! `rope_factors_long.weight`.

use anyhow::{bail, Result};
use serde_json::Value as Json;

use super::architecture::{Architecture, Network};
use super::llama::{self, Llama, RopeStyle};
use crate::model::device::Placement;
use crate::model::formats::checkpoint::Checkpoint;
use crate::model::formats::Metadata;

/// Per-layer tensor names: (Hugging Face suffix after `model.layers.<i>.`, GGUF suffix).
const LAYER_NAMES: &[(&str, &str)] = &[
    ("input_layernorm.weight", "attn_norm.weight"),
    ("self_attn.qkv_proj.weight", "attn_qkv.weight"),
    ("self_attn.o_proj.weight", "attn_output.weight"),
    ("post_attention_layernorm.weight", "ffn_norm.weight"),
    ("mlp.gate_up_proj.weight", "ffn_up.weight"),
    ("mlp.down_proj.weight", "ffn_down.weight"),
];

pub struct Phi3Architecture;

impl Architecture for Phi3Architecture {
    fn name(&self) -> &'static str {
        "phi3"
    }

    fn model_types(&self) -> &'static [&'static str] {
        &["phi3"]
    }

    fn metadata_from_config(&self, config: &Json) -> Result<Metadata> {
        let rotary = config["rope_parameters"]["partial_rotary_factor"]
            .as_f64()
            .or(config["partial_rotary_factor"].as_f64())
            .unwrap_or(1.0);
        if rotary != 1.0 {
            bail!("partial rotary embeddings (partial_rotary_factor {rotary}) are not supported");
        }
        let mut metadata = llama::metadata_from_config(config, self.name())?;
        if let Some(window) = config["sliding_window"].as_u64() {
            metadata.insert(
                "phi3.attention.sliding_window".to_string(),
                super::architecture::gguf_uint(window),
            );
        }
        Ok(metadata)
    }

    fn config_from_metadata(&self, checkpoint: &Checkpoint, torch_dtype: &str) -> Result<Json> {
        let mut config =
            llama::config_from_metadata(checkpoint, self.name(), "Phi3ForCausalLM", torch_dtype)?;
        // Phi-3 has no head_dim field; its window is its own, not Mistral's.
        if let Some(object) = config.as_object_mut() {
            object.remove("head_dim");
        }
        config["model_type"] = Json::from("phi3");
        config["architectures"] = serde_json::json!(["Phi3ForCausalLM"]);
        Ok(config)
    }

    fn norm_names(&self) -> &'static [(&'static str, &'static str)] {
        &[]
    }

    fn layer_names(&self) -> Box<dyn Iterator<Item = (&'static str, &'static str)> + '_> {
        Box::new(LAYER_NAMES.iter().copied())
    }

    fn load(&self, checkpoint: &mut Checkpoint, placement: &Placement) -> Result<Box<dyn Network>> {
        Ok(Box::new(Llama::from_checkpoint_as(
            checkpoint,
            placement,
            "phi3",
            RopeStyle::Halves,
        )?))
    }
}
