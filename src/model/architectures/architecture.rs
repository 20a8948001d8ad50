//! What every architecture provides, and what they share.
//!
//! An [`Architecture`] owns everything that depends on it: the translation of a Hugging Face
//! `config.json` into GGUF metadata and back (for export), the names of its tensors in both
//! formats, the conventions in which the formats store its weights, and the loading of its
//! [`Network`] from a checkpoint. Format readers know none of this, so a new architecture is a
//! new file plus one line in `architectures.rs`.

use anyhow::{bail, Context, Result};
use candle_core::quantized::gguf_file::Value;
use candle_core::Tensor;
use serde_json::{json, Value as Json};

use crate::model::batch::PackedBatch;
use crate::model::device::Placement;
use crate::model::formats::checkpoint::Checkpoint;
use crate::model::formats::Metadata;
use crate::model::kv::{KvGeometry, KvIo};
use crate::model::rope::longrope_attention_factor;
use crate::model::scoring::RowScore;

/// A loaded network: one packed forward, scored on the batch's scored rows.
pub trait Network: Send + Sync {
    fn score(&self, batch: &PackedBatch) -> Result<Vec<RowScore>> {
        self.score_with(batch, KvIo::default())
    }
    /// One forward that also attends to past keys and values (the batch's
    /// [`Keys::Past`](crate::model::batch::Keys) ranges) and hands back those of chosen rows.
    fn score_with(&self, batch: &PackedBatch, kv: KvIo) -> Result<Vec<RowScore>>;
    /// The shape of its keys and values.
    fn kv_geometry(&self) -> KvGeometry;
    /// The longest token sequence the network accepts.
    fn context_length(&self) -> usize;
    /// Which rotary frequencies an input of `input_len` tokens takes (Phi-3's longrope takes
    /// other factors beyond its original context); inputs of different regimes never share a
    /// forward or a prefix.
    fn rope_regime(&self, _input_len: usize) -> u8 {
        0
    }
}

pub trait Architecture: Sync {
    /// The name GGUF files give it (`general.architecture`).
    fn name(&self) -> &'static str;

    /// The `general.architecture` of its GGUF files, where it is not [`Self::name`] (llama.cpp
    /// writes Mistral as llama).
    fn gguf_architecture(&self) -> &'static str {
        self.name()
    }

    /// The `model_type`s of Hugging Face config.json files that are this architecture.
    fn model_types(&self) -> &'static [&'static str];

    /// config.json → GGUF metadata (`general.architecture`, `<name>.block_count`, …).
    fn metadata_from_config(&self, config: &Json) -> Result<Metadata>;

    /// GGUF metadata → config.json, for export; `torch_dtype` names the written weights' dtype.
    fn config_from_metadata(&self, checkpoint: &Checkpoint, torch_dtype: &str) -> Result<Json>;

    /// (Hugging Face suffix after `model.layers.<i>.`, GGUF suffix after `blk.<i>.`) of the
    /// layer norms, whose names differ between architectures; the rest is [`LAYER_NAMES`].
    fn norm_names(&self) -> &'static [(&'static str, &'static str)];

    /// Whether the LM head is the embedding table when config.json does not say.
    fn ties_embeddings_by_default(&self) -> bool {
        false
    }

    /// A tensor of a safetensors folder in GGUF's conventions (`name` is its GGUF name).
    fn tensor_from_hf(&self, _name: &str, tensor: Tensor) -> Result<Tensor> {
        Ok(tensor)
    }

    /// A tensor of `checkpoint` in Hugging Face's conventions, for export.
    fn tensor_to_hf(
        &self,
        _checkpoint: &Checkpoint,
        _name: &str,
        tensor: Tensor,
    ) -> Result<Tensor> {
        Ok(tensor)
    }

    fn load(&self, checkpoint: &mut Checkpoint, placement: &Placement) -> Result<Box<dyn Network>>;

    /// The GGUF name of a Hugging Face tensor name, if it is one the networks use.
    fn gguf_tensor_name(&self, hf: &str) -> Option<String> {
        let hf = hf.strip_prefix("language_model.").unwrap_or(hf);
        if let Some(&(_, gguf)) = GLOBAL_NAMES.iter().find(|(h, _)| *h == hf) {
            return Some(gguf.to_string());
        }
        let (layer, suffix) = hf.strip_prefix("model.layers.")?.split_once('.')?;
        let layer: usize = layer.parse().ok()?;
        self.layer_names()
            .find(|(h, _)| *h == suffix)
            .map(|(_, gguf)| format!("blk.{layer}.{gguf}"))
    }

    /// The Hugging Face name of a GGUF tensor name.
    fn hf_tensor_name(&self, gguf: &str) -> Option<String> {
        if let Some(&(hf, _)) = GLOBAL_NAMES.iter().find(|(_, g)| *g == gguf) {
            return Some(hf.to_string());
        }
        let (layer, suffix) = gguf.strip_prefix("blk.")?.split_once('.')?;
        let layer: usize = layer.parse().ok()?;
        self.layer_names()
            .find(|(_, g)| *g == suffix)
            .map(|(hf, _)| format!("model.layers.{layer}.{hf}"))
    }

    /// Every per-layer name pair: the shared ones, then the norms.
    fn layer_names(&self) -> Box<dyn Iterator<Item = (&'static str, &'static str)> + '_> {
        Box::new(LAYER_NAMES.iter().chain(self.norm_names()).copied())
    }
}

/// Per-layer tensor names every architecture shares: (Hugging Face suffix after
/// `model.layers.<i>.`, GGUF suffix after `blk.<i>.`).
pub const LAYER_NAMES: &[(&str, &str)] = &[
    ("input_layernorm.weight", "attn_norm.weight"),
    ("self_attn.q_proj.weight", "attn_q.weight"),
    ("self_attn.k_proj.weight", "attn_k.weight"),
    ("self_attn.v_proj.weight", "attn_v.weight"),
    ("self_attn.q_proj.bias", "attn_q.bias"),
    ("self_attn.k_proj.bias", "attn_k.bias"),
    ("self_attn.v_proj.bias", "attn_v.bias"),
    ("self_attn.o_proj.weight", "attn_output.weight"),
    ("self_attn.q_norm.weight", "attn_q_norm.weight"),
    ("self_attn.k_norm.weight", "attn_k_norm.weight"),
    ("post_feedforward_layernorm.weight", "post_ffw_norm.weight"),
    ("mlp.gate_proj.weight", "ffn_gate.weight"),
    ("mlp.up_proj.weight", "ffn_up.weight"),
    ("mlp.down_proj.weight", "ffn_down.weight"),
];

/// Tensors outside the layers.
pub const GLOBAL_NAMES: &[(&str, &str)] = &[
    ("model.embed_tokens.weight", "token_embd.weight"),
    ("model.norm.weight", "output_norm.weight"),
    ("lm_head.weight", "output.weight"),
];

/// The RoPE settings of a config.json: transformers ≥ 5 nests them in `rope_parameters` (per
/// layer type for models with sliding-window layers); older configs keep them at the top.
pub struct RopeConfig<'a> {
    /// The base of the global (full-attention) layers.
    pub theta: Option<f64>,
    /// `rope_parameters.sliding_attention` where the config has it.
    pub local: &'a Json,
    /// The scaling object (`rope_scaling`, or the global `rope_parameters`) and its type
    /// (`default` when there is none).
    pub scaling: &'a Json,
    pub scaling_type: &'a str,
}

impl<'a> RopeConfig<'a> {
    pub fn of(config: &'a Json) -> Self {
        let rope = &config["rope_parameters"];
        let (global, local) = match (&rope["full_attention"], &rope["sliding_attention"]) {
            (Json::Object(_), local) => (&rope["full_attention"], local),
            _ => (rope, &Json::Null),
        };
        let scaling = match &config["rope_scaling"] {
            Json::Object(_) => &config["rope_scaling"],
            _ => global,
        };
        Self {
            theta: config["rope_theta"]
                .as_f64()
                .or(global["rope_theta"].as_f64()),
            local,
            scaling,
            scaling_type: scaling["rope_type"]
                .as_str()
                .or(scaling["type"].as_str())
                .unwrap_or("default"),
        }
    }
}

/// Reads the fields of a config.json into GGUF metadata under one architecture's prefix.
pub struct ConfigReader<'a> {
    pub config: &'a Json,
    pub architecture: &'static str,
    pub metadata: Metadata,
}

impl<'a> ConfigReader<'a> {
    /// The fields every architecture has (sizes, heads, context, norm epsilon, RoPE base).
    pub fn new(config: &'a Json, architecture: &'static str) -> Result<Self> {
        let mut reader = Self {
            config,
            architecture,
            metadata: Metadata::new(),
        };
        reader.metadata.insert(
            "general.architecture".to_string(),
            Value::String(architecture.to_string()),
        );
        reader.int("embedding_length", "hidden_size")?;
        reader.int("block_count", "num_hidden_layers")?;
        reader.int("feed_forward_length", "intermediate_size")?;
        reader.int("attention.head_count", "num_attention_heads")?;
        if config["num_key_value_heads"].is_u64() {
            reader.int("attention.head_count_kv", "num_key_value_heads")?;
        }
        reader.int("context_length", "max_position_embeddings")?;
        let eps = reader
            .float("rms_norm_eps")
            .context("'rms_norm_eps' is missing")?;
        reader.set("attention.layer_norm_rms_epsilon", eps);
        if let Some(theta) = RopeConfig::of(config).theta {
            reader.set("rope.freq_base", Value::F32(theta as f32));
        }
        Ok(reader)
    }

    pub fn set(&mut self, key: &str, value: Value) {
        self.metadata
            .insert(format!("{}.{key}", self.architecture), value);
    }

    /// `<arch>.<key>` = the non-negative integer `field`, which must be there.
    pub fn int(&mut self, key: &str, field: &str) -> Result<()> {
        let v = self.config[field]
            .as_u64()
            .with_context(|| format!("'{field}' is missing or not a non-negative integer"))?;
        self.set(key, gguf_uint(v));
        Ok(())
    }

    /// `field` as a GGUF float, if it is there.
    pub fn float(&self, field: &str) -> Option<Value> {
        self.config[field].as_f64().map(|v| Value::F32(v as f32))
    }

    /// Translates a config.json's RoPE scaling into the metadata: `linear` and `llama3` as
    /// `rope.scaling.*` keys; `dynamic` as nothing, since transformers changes the frequencies only
    /// for sequences longer than `max_position_embeddings`, which is the context valuelens refuses
    /// to go beyond. Other types are refused with their name.
    pub fn rope_scaling(&mut self) -> Result<()> {
        let rope = RopeConfig::of(self.config);
        let scaling = rope.scaling;
        let number = |field: &str| -> Result<f32> {
            scaling[field]
                .as_f64()
                .map(|x| x as f32)
                .with_context(|| format!("RoPE scaling '{}' needs '{field}'", rope.scaling_type))
        };
        match rope.scaling_type {
            "default" | "dynamic" => {}
            "linear" => {
                let factor = number("factor")?;
                self.set("rope.scaling.type", Value::String("linear".into()));
                self.set("rope.scaling.factor", Value::F32(factor));
            }
            "llama3" => {
                let values = [
                    ("factor", number("factor")?),
                    ("low_freq_factor", number("low_freq_factor")?),
                    ("high_freq_factor", number("high_freq_factor")?),
                    (
                        "original_context_length",
                        number("original_max_position_embeddings")?,
                    ),
                ];
                self.set("rope.scaling.type", Value::String("llama3".into()));
                for (key, value) in values {
                    let value = match key {
                        // llama.cpp reads the context length as u32.
                        "original_context_length" => gguf_uint(value as u64),
                        _ => Value::F32(value),
                    };
                    self.set(&format!("rope.scaling.{key}"), value);
                }
            }
            "longrope" | "su" => {
                let factors = |field: &str| -> Result<Value> {
                    let list = scaling[field]
                        .as_array()
                        .with_context(|| format!("RoPE scaling 'longrope' needs '{field}'"))?;
                    let values: Option<Vec<Value>> = list
                        .iter()
                        .map(|x| x.as_f64().map(|x| Value::F32(x as f32)))
                        .collect();
                    values
                        .map(Value::Array)
                        .with_context(|| format!("'{field}' is not a list of numbers"))
                };
                let original = scaling["original_max_position_embeddings"]
                    .as_u64()
                    .or(self.config["original_max_position_embeddings"].as_u64())
                    .context("RoPE scaling 'longrope' needs 'original_max_position_embeddings'")?;
                let context = self.config["max_position_embeddings"]
                    .as_u64()
                    .context("'max_position_embeddings' is missing")?;
                let attention_factor = match scaling["attention_factor"].as_f64() {
                    Some(factor) => factor as f32,
                    None => longrope_attention_factor(context as usize, original as usize),
                };
                self.set("rope.scaling.type", Value::String("longrope".into()));
                self.set("rope.scaling.short_factor", factors("short_factor")?);
                self.set("rope.scaling.long_factor", factors("long_factor")?);
                self.set("rope.scaling.original_context_length", gguf_uint(original));
                self.set("rope.scaling.attn_factor", Value::F32(attention_factor));
            }
            other => bail!(
                "RoPE scaling '{other}' is not supported for {} (supported: linear, llama3, \
                 dynamic, longrope)",
                self.architecture
            ),
        }
        Ok(())
    }
}

/// The config.json fields every architecture has, from GGUF metadata under `architecture.`.
pub fn base_config(
    checkpoint: &Checkpoint,
    architecture: &str,
    class: &str,
    model_type: &str,
    torch_dtype: &str,
) -> Result<Json> {
    let key = |k: &str| format!("{architecture}.{k}");
    let n_head = checkpoint.usize(&key("attention.head_count"))?;
    let mut config = json!({
        "architectures": [class],
        "model_type": model_type,
        "hidden_size": checkpoint.usize(&key("embedding_length"))?,
        "intermediate_size": checkpoint.usize(&key("feed_forward_length"))?,
        "num_hidden_layers": checkpoint.usize(&key("block_count"))?,
        "num_attention_heads": n_head,
        "num_key_value_heads": checkpoint.usize_or(&key("attention.head_count_kv"), n_head)?,
        "max_position_embeddings": checkpoint.usize(&key("context_length"))?,
        "rms_norm_eps": checkpoint.f32(&key("attention.layer_norm_rms_epsilon"))?,
        "vocab_size": checkpoint.tensor_shape("token_embd.weight")?.0,
        "tie_word_embeddings": !checkpoint.has_tensor("output.weight"),
        "torch_dtype": torch_dtype,
    });
    if let Some(theta) = checkpoint.optional_f32(&key("rope.freq_base"))? {
        config["rope_theta"] = json!(theta);
    }
    Ok(config)
}

/// A metadata integer as llama.cpp writes and expects it: u32 (its loader refuses a u64 for
/// keys such as `context_length`), u64 only where the value does not fit.
pub fn gguf_uint(v: u64) -> Value {
    u32::try_from(v).map_or(Value::U64(v), Value::U32)
}
