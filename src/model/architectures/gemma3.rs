//! The gemma3 architecture (Gemma 3 text models, e.g. gemma-3-270m): its config.json ↔ GGUF
//! translation and weight conventions, and its network — the same packed, selected-rows forward
//! as llama.
//!
//! Math, top to bottom: x = embed(ids) · √hidden; per layer
//! x += n_post_attn(Wo·attn(rope(n_q(Wq·n(x))), rope(n_k(Wk·n(x))), Wv·n(x)));
//! x += n_post_ffw(Wdown·(gelu_tanh(Wgate·n(x)) ⊙ Wup·n(x))), every n an RMSNorm (n_q and n_k
//! per head). Five of every six layers attend within a sliding window with their own RoPE base
//! (10 000); every sixth is global (the file's `rope.freq_base`, linearly scaled when the file
//! says so). The LM head is the embedding table. GGUF stores gemma's norm weights with the +1
//! of `(1 + w) · x̂` already added, so every norm is a plain RMSNorm here.

use anyhow::{bail, Context, Result};
use candle_core::quantized::gguf_file::Value;
use candle_core::Tensor;
use serde_json::{json, Value as Json};

use super::architecture::{base_config, Architecture, ConfigReader, Network, RopeConfig};
use crate::model::attention::{AttentionPlan, AttentionSpec};
use crate::model::batch::PackedBatch;
use crate::model::device::{Placement, Precision};
use crate::model::formats::checkpoint::Checkpoint;
use crate::model::formats::Metadata;
use crate::model::kv::{KvGeometry, KvIo};
use crate::model::layers::{
    gated, head_major, heads, BatchTensors, Embeddings, GateActivation, Linear, RopeStyle,
    RopeTables,
};
use crate::model::scoring::{LmHead, RowScore};

/// Layers per group of which the last is global, when the file does not say
/// (`sliding_window_pattern` of Gemma 3's config).
pub const DEFAULT_SLIDING_WINDOW_PATTERN: usize = 6;
/// RoPE base of the sliding-window layers, when the file does not say.
pub const DEFAULT_LOCAL_ROPE_BASE: f32 = 10_000.0;

/// What differs between the Gemma generations that share this network.
#[derive(Debug, Clone, Copy)]
pub struct GemmaFamily {
    /// GGUF metadata prefix (`general.architecture`).
    pub prefix: &'static str,
    /// config.json `architectures` and `model_type` written by export.
    pub class: &'static str,
    pub model_type: &'static str,
    /// Layers per group of which the last is global, when the file does not say.
    pub default_sliding_window_pattern: usize,
    /// Whether sliding-window layers have a RoPE base of their own (else the global one).
    pub local_rope_base: bool,
    /// Whether each head of Q and K has its own RMSNorm.
    pub qk_norm: bool,
    /// The layer count of the size whose queries llama.cpp scales by (hidden / heads)^-½
    /// instead of head_dim^-½ (the 27B models), for files that do not store the scale.
    pub layers_of_hidden_scaled: usize,
}

pub const GEMMA3: GemmaFamily = GemmaFamily {
    prefix: "gemma3",
    class: "Gemma3ForCausalLM",
    model_type: "gemma3_text",
    default_sliding_window_pattern: DEFAULT_SLIDING_WINDOW_PATTERN,
    local_rope_base: true,
    qk_norm: true,
    layers_of_hidden_scaled: 62,
};

/// gemma3: config.json `model_type` "gemma3_text" (or the multimodal "gemma3", whose language
/// model settings are in `text_config`), GGUF `gemma3`.
pub struct Gemma3Architecture;

impl Architecture for Gemma3Architecture {
    fn name(&self) -> &'static str {
        "gemma3"
    }

    fn model_types(&self) -> &'static [&'static str] {
        &["gemma3_text", "gemma3"]
    }

    fn metadata_from_config(&self, config: &Json) -> Result<Metadata> {
        let config = match &config["text_config"] {
            Json::Object(_) if config["model_type"] == "gemma3" => &config["text_config"],
            _ => config,
        };
        metadata_from_config(config, &GEMMA3)
    }

    fn config_from_metadata(&self, checkpoint: &Checkpoint, torch_dtype: &str) -> Result<Json> {
        config_from_metadata(checkpoint, &GEMMA3, torch_dtype)
    }

    /// The FFN's input norm is `pre_feedforward_layernorm`; `post_attention_layernorm` is a
    /// norm of its own.
    fn norm_names(&self) -> &'static [(&'static str, &'static str)] {
        &[
            (
                "post_attention_layernorm.weight",
                "post_attention_norm.weight",
            ),
            ("pre_feedforward_layernorm.weight", "ffn_norm.weight"),
        ]
    }

    fn ties_embeddings_by_default(&self) -> bool {
        true
    }

    /// GGUF stores the norm weights with the 1 of `(1 + w) · x̂` added; Hugging Face without.
    fn tensor_from_hf(&self, name: &str, tensor: Tensor) -> Result<Tensor> {
        match name.ends_with("norm.weight") {
            true => Ok((tensor + 1.0)?),
            false => Ok(tensor),
        }
    }

    fn tensor_to_hf(&self, _checkpoint: &Checkpoint, name: &str, tensor: Tensor) -> Result<Tensor> {
        match name.ends_with("norm.weight") {
            true => Ok((tensor - 1.0)?),
            false => Ok(tensor),
        }
    }

    fn load(&self, checkpoint: &mut Checkpoint, placement: &Placement) -> Result<Box<dyn Network>> {
        Ok(Box::new(Gemma::from_checkpoint(
            checkpoint, placement, &GEMMA3,
        )?))
    }
}

/// config.json of a Gemma model → GGUF metadata under the family's prefix.
pub fn metadata_from_config(config: &Json, family: &GemmaFamily) -> Result<Metadata> {
    let mut reader = ConfigReader::new(config, family.prefix)?;
    let rope = RopeConfig::of(config);
    match rope.scaling_type {
        "default" => {}
        "linear" => {
            let factor = rope.scaling["factor"]
                .as_f64()
                .context("linear RoPE scaling without 'factor'")?;
            reader.set("rope.scaling.type", Value::String("linear".into()));
            reader.set("rope.scaling.factor", Value::F32(factor as f32));
        }
        other => bail!(
            "RoPE scaling '{other}' is not supported for {}",
            family.prefix
        ),
    }
    if config["head_dim"].is_u64() {
        reader.int("attention.key_length", "head_dim")?;
        reader.int("attention.value_length", "head_dim")?;
    }
    if config["sliding_window"].is_u64() {
        reader.int("attention.sliding_window", "sliding_window")?;
    }
    if let Some(pattern) = sliding_window_pattern(config)? {
        reader.set(
            "attention.sliding_window_pattern",
            crate::model::architectures::architecture::gguf_uint(pattern as u64),
        );
    }
    if family.local_rope_base {
        if let Some(local) = config["rope_local_base_freq"]
            .as_f64()
            .or(rope.local["rope_theta"].as_f64())
        {
            reader.set("rope.freq_base_swa", Value::F32(local as f32));
        }
    }
    if let Some(scalar) = config["query_pre_attn_scalar"].as_f64() {
        reader.set("attention.scale", Value::F32((1.0 / scalar.sqrt()) as f32));
    }
    for cap in ["attn_logit_softcapping", "final_logit_softcapping"] {
        if let Some(v) = reader.float(cap) {
            reader.set(cap, v);
        }
    }
    Ok(reader.metadata)
}

/// GGUF metadata of a Gemma model → config.json.
pub fn config_from_metadata(
    checkpoint: &Checkpoint,
    family: &GemmaFamily,
    torch_dtype: &str,
) -> Result<Json> {
    let prefix = family.prefix;
    let mut config = base_config(
        checkpoint,
        prefix,
        family.class,
        family.model_type,
        torch_dtype,
    )?;
    let key = |k: &str| format!("{prefix}.{k}");
    let gemma = GemmaConfig::from_checkpoint(checkpoint, family)?;
    config["head_dim"] = json!(gemma.head_dim);
    // The scalar whose ^-½ is the scale; a whole number in every released model.
    let scalar = 1.0 / (gemma.attention_scale as f64).powi(2);
    config["query_pre_attn_scalar"] = match (scalar - scalar.round()).abs() < 1e-3 {
        true => json!(scalar.round() as u64),
        false => json!(scalar),
    };
    config["hidden_activation"] = json!("gelu_pytorch_tanh");
    if let Some(window) = gemma.sliding_window {
        config["sliding_window"] = json!(window);
        config["layer_types"] = json!((0..gemma.n_layer)
            .map(|i| match gemma.is_sliding(i) {
                true => "sliding_attention",
                false => "full_attention",
            })
            .collect::<Vec<_>>());
        if family.local_rope_base {
            config["rope_local_base_freq"] = json!(gemma.local_rope_base);
        }
    }
    for cap in ["attn_logit_softcapping", "final_logit_softcapping"] {
        if let Some(v) = checkpoint.optional_f32(&key(cap))? {
            config[cap] = json!(v);
        }
    }
    Ok(config)
}

/// Gemma 3's period of sliding-window layers: `sliding_window_pattern`, or read off
/// `layer_types` (which must then repeat with one global layer last in each period).
fn sliding_window_pattern(config: &Json) -> Result<Option<usize>> {
    if let Some(p) = config["sliding_window_pattern"].as_u64() {
        return Ok(Some(p as usize));
    }
    let Some(types) = config["layer_types"].as_array() else {
        return Ok(None);
    };
    let is_global = |t: &Json| t.as_str() == Some("full_attention");
    let Some(first_global) = types.iter().position(is_global) else {
        bail!("'layer_types' has no full_attention layer; only periodic patterns are supported");
    };
    let period = first_global + 1;
    let periodic = types
        .iter()
        .enumerate()
        .all(|(i, t)| is_global(t) == (i + 1).is_multiple_of(period));
    if !periodic {
        bail!("'layer_types' does not repeat with period {period}; only periodic patterns are supported");
    }
    Ok(Some(period))
}

#[derive(Debug, Clone)]
pub struct GemmaConfig {
    pub n_layer: usize,
    pub hidden: usize,
    pub n_head: usize,
    pub n_kv_head: usize,
    pub head_dim: usize,
    pub rms_eps: f32,
    pub context_length: usize,
    pub global_rope_base: f32,
    /// Linear RoPE scaling factor of the global layers (1 = none).
    pub global_rope_scale: f32,
    pub local_rope_base: f32,
    /// `None`: every layer is global.
    pub sliding_window: Option<usize>,
    pub sliding_window_pattern: usize,
    pub attention_scale: f32,
    pub attention_softcap: Option<f32>,
    pub final_softcap: Option<f32>,
}

impl GemmaConfig {
    fn from_checkpoint(checkpoint: &Checkpoint, family: &GemmaFamily) -> Result<Self> {
        let prefix = family.prefix;
        let key = |k: &str| format!("{prefix}.{k}");
        let hidden = checkpoint.usize(&key("embedding_length"))?;
        let n_head = checkpoint.usize(&key("attention.head_count"))?;
        let n_layer = checkpoint.usize(&key("block_count"))?;
        let head_dim = checkpoint.usize_or(&key("attention.key_length"), hidden / n_head)?;
        let value_dim = checkpoint.usize_or(&key("attention.value_length"), head_dim)?;
        if value_dim != head_dim {
            bail!(
                "{prefix} with key length {head_dim} ≠ value length {value_dim} is not supported"
            );
        }
        let global_rope_scale = match checkpoint.has(&key("rope.scaling.type")) {
            false => 1.0,
            true => match checkpoint.string(&key("rope.scaling.type"))?.as_str() {
                "none" => 1.0,
                "linear" => checkpoint.f32(&key("rope.scaling.factor"))?,
                other => bail!("{prefix} RoPE scaling '{other}' is not supported (only linear)"),
            },
        };
        // Gemma scales queries by query_pre_attn_scalar^-½, which GGUF does not store:
        // llama.cpp takes head_dim, except for the 27B models (Gemma 2: 46 layers, Gemma 3:
        // 62), whose scalar is hidden / heads. A file that stores `attention.scale` overrides
        // both.
        let attention_scale = match checkpoint.optional_f32(&key("attention.scale"))? {
            Some(scale) => scale,
            None if n_layer == family.layers_of_hidden_scaled => {
                1.0 / ((hidden / n_head) as f32).sqrt()
            }
            None => 1.0 / (head_dim as f32).sqrt(),
        };
        let global_rope_base = checkpoint.optional_f32(&key("rope.freq_base"))?.unwrap_or(
            match family.local_rope_base {
                true => 1_000_000.0,
                false => DEFAULT_LOCAL_ROPE_BASE,
            },
        );
        Ok(Self {
            n_layer,
            hidden,
            n_head,
            n_kv_head: checkpoint.usize_or(&key("attention.head_count_kv"), n_head)?,
            head_dim,
            rms_eps: checkpoint.f32(&key("attention.layer_norm_rms_epsilon"))?,
            context_length: checkpoint.usize(&key("context_length"))?,
            global_rope_base,
            global_rope_scale,
            local_rope_base: match family.local_rope_base {
                true => checkpoint
                    .optional_f32(&key("rope.freq_base_swa"))?
                    .unwrap_or(DEFAULT_LOCAL_ROPE_BASE),
                false => global_rope_base,
            },
            sliding_window: match checkpoint.has(&key("attention.sliding_window")) {
                true => Some(checkpoint.usize(&key("attention.sliding_window"))?),
                false => None,
            },
            sliding_window_pattern: checkpoint.usize_or(
                &key("attention.sliding_window_pattern"),
                family.default_sliding_window_pattern,
            )?,
            attention_scale,
            attention_softcap: checkpoint.optional_f32(&key("attn_logit_softcapping"))?,
            final_softcap: checkpoint.optional_f32(&key("final_logit_softcapping"))?,
        })
    }

    /// Whether layer `i` attends within the sliding window (else globally).
    pub fn is_sliding(&self, i: usize) -> bool {
        self.sliding_window.is_some() && !(i + 1).is_multiple_of(self.sliding_window_pattern)
    }
}

struct Block {
    attn_norm: Tensor,
    qkv: Linear,
    /// Per-head RMSNorm weights of Q and K (Gemma 3; Gemma 2 has none).
    qk_norm: Option<(Tensor, Tensor)>,
    attn_out: Linear,
    post_attn_norm: Tensor,
    ffn_norm: Tensor,
    gate_up: Linear,
    down: Linear,
    post_ffn_norm: Tensor,
    attention: AttentionSpec,
    sliding: bool,
}

pub struct Gemma {
    pub config: GemmaConfig,
    embeddings: Embeddings,
    blocks: Vec<Block>,
    lm_head: LmHead,
    global_rope: RopeTables,
    local_rope: RopeTables,
}

impl Gemma {
    /// Loads a Gemma network of `family` from its metadata and tensors.
    pub fn from_checkpoint(
        checkpoint: &mut Checkpoint,
        placement: &Placement,
        family: &GemmaFamily,
    ) -> Result<Self> {
        let config = GemmaConfig::from_checkpoint(checkpoint, family)?;
        if placement.precision == Precision::F16 {
            bail!(
                "{}: gemma's activations overflow f16 (they exceed its largest value, 65504); \
                 use --dtype bf16 or f32",
                checkpoint.origin
            );
        }
        let embed_q = checkpoint.tensor("token_embd.weight")?;
        let embeddings = Embeddings::new(&embed_q, placement)?;
        // A table kept in its stored form is the tied head too: the source goes now.
        let embed_q = embeddings.dense_only(embed_q);
        let mut blocks = Vec::with_capacity(config.n_layer);
        for i in 0..config.n_layer {
            let mut t = |name: &str| checkpoint.tensor(&format!("blk.{i}.{name}.weight"));
            let sliding = config.is_sliding(i);
            let qk_norm = match family.qk_norm {
                true => Some((
                    placement.dense(&t("attn_q_norm")?)?,
                    placement.dense(&t("attn_k_norm")?)?,
                )),
                false => None,
            };
            blocks.push(Block {
                attn_norm: placement.dense(&t("attn_norm")?)?,
                qkv: Linear::stacked(
                    vec![t("attn_q")?, t("attn_k")?, t("attn_v")?],
                    &placement.outlier_sensitive(),
                )?,
                qk_norm,
                attn_out: Linear::new(t("attn_output")?, &placement.outlier_sensitive())?,
                post_attn_norm: placement.dense(&t("post_attention_norm")?)?,
                ffn_norm: placement.dense(&t("ffn_norm")?)?,
                gate_up: Linear::stacked(vec![t("ffn_gate")?, t("ffn_up")?], placement)?,
                down: Linear::new(t("ffn_down")?, placement)?,
                post_ffn_norm: placement.dense(&t("post_ffw_norm")?)?,
                attention: AttentionSpec {
                    scale: config.attention_scale,
                    window: config.sliding_window.filter(|_| sliding),
                    softcap: config.attention_softcap,
                },
                sliding,
            });
        }
        let lm_head = LmHead::new(
            placement.dense(&checkpoint.tensor("output_norm.weight")?)?,
            config.rms_eps,
            checkpoint.optional_tensor("output.weight")?,
            embed_q,
            &embeddings,
            placement,
            config.final_softcap,
        )?;
        let (dim, max) = (config.head_dim, config.context_length);
        let global_rope = RopeTables::linearly_scaled(
            dim,
            config.global_rope_base,
            config.global_rope_scale,
            max,
            placement,
        )
        .context("building the global rotary tables")?;
        let local_rope = RopeTables::new(dim, config.local_rope_base, max, placement)
            .context("building the sliding-window rotary tables")?;
        Ok(Self {
            config,
            embeddings,
            blocks,
            lm_head,
            global_rope,
            local_rope,
        })
    }
}

impl Network for Gemma {
    fn context_length(&self) -> usize {
        self.config.context_length
    }

    fn kv_geometry(&self) -> KvGeometry {
        KvGeometry {
            layers: self.blocks.len(),
            kv_heads: self.config.n_kv_head,
            head_dim: self.config.head_dim,
        }
    }

    fn score_with(&self, batch: &PackedBatch, mut kv: KvIo) -> Result<Vec<RowScore>> {
        let c = &self.config;
        let global = BatchTensors::new(batch, &self.global_rope)?;
        let local = BatchTensors::new(batch, &self.local_rope)?;
        let q_dim = c.n_head * c.head_dim;
        let kv_dim = c.n_kv_head * c.head_dim;
        let norm = |x: &Tensor, w: &Tensor| candle_nn::ops::rms_norm(x, w, c.rms_eps);
        // One plan per distinct spec (sliding and global layers), shared by the layers.
        let mut plans: Vec<(AttentionSpec, AttentionPlan)> = Vec::new();
        for block in &self.blocks {
            if !plans.iter().any(|(spec, _)| *spec == block.attention) {
                let plan = AttentionPlan::new(
                    batch,
                    block.attention,
                    &self.embeddings.device(),
                    self.embeddings.dtype(),
                )?;
                plans.push((block.attention, plan));
            }
        }
        let mut x = (self.embeddings.lookup(&global.ids)? * (c.hidden as f64).sqrt())?;
        for (layer, block) in self.blocks.iter().enumerate() {
            let (_, attention) = plans
                .iter()
                .find(|(spec, _)| *spec == block.attention)
                .expect("a plan was made for every block's spec");
            let tables = if block.sliding { &local } else { &global };
            let rope = Some((&tables.cos, &tables.sin, RopeStyle::Halves));
            let qkv = block.qkv.forward(&norm(&x, &block.attn_norm)?)?;
            let mut q = heads(&qkv, 0, c.n_head, c.head_dim)?;
            let mut k = heads(&qkv, q_dim, c.n_kv_head, c.head_dim)?;
            if let Some((q_norm, k_norm)) = &block.qk_norm {
                q = norm(&q, q_norm)?;
                k = norm(&k, k_norm)?;
            }
            let k = head_major(&k, rope)?;
            let v = head_major(&heads(&qkv, q_dim + kv_dim, c.n_kv_head, c.head_dim)?, None)?;
            let attn = attention.attend(&head_major(&q, rope)?, &k, &v, kv.past(layer))?;
            kv.keep(&k, &v)?;
            x = (x + norm(&block.attn_out.forward(&attn)?, &block.post_attn_norm)?)?;

            let gate_up = block.gate_up.forward(&norm(&x, &block.ffn_norm)?)?;
            let act = gated(&gate_up, GateActivation::GeluTanh)?;
            x = (x + norm(&block.down.forward(&act)?, &block.post_ffn_norm)?)?;
        }
        self.lm_head.score(&x, batch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gemma3_config_fields_become_gguf_metadata() {
        let config = json!({
            "model_type": "gemma3_text", "hidden_size": 640, "num_hidden_layers": 18,
            "intermediate_size": 2048, "num_attention_heads": 4, "num_key_value_heads": 1,
            "max_position_embeddings": 32768, "rms_norm_eps": 1e-6, "head_dim": 256,
            "sliding_window": 512, "query_pre_attn_scalar": 256,
            "layer_types": ["sliding_attention", "sliding_attention", "full_attention",
                            "sliding_attention", "sliding_attention", "full_attention"],
            "rope_parameters": {"full_attention": {"rope_type": "default", "rope_theta": 1e6},
                                "sliding_attention": {"rope_type": "default", "rope_theta": 1e4}}
        });
        let m = Gemma3Architecture.metadata_from_config(&config).unwrap();
        let f = |k: &str| match &m[k] {
            Value::F32(v) => *v as f64,
            Value::U32(v) => *v as f64,
            other => panic!("{k}: {other:?}"),
        };
        assert_eq!(f("gemma3.attention.sliding_window_pattern"), 3.0);
        assert_eq!(f("gemma3.rope.freq_base"), 1e6);
        assert_eq!(f("gemma3.rope.freq_base_swa"), 1e4);
        assert_eq!(f("gemma3.attention.scale"), 1.0 / 16.0);
        assert_eq!(f("gemma3.attention.key_length"), 256.0);
    }
}
