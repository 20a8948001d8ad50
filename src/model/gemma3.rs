//! The gemma3 architecture (Gemma 3 text models, e.g. gemma-3-270m) from GGUF weights, with the
//! same packed, selected-rows forward as llama.
//!
//! Math, top to bottom: x = embed(ids) · √hidden; per layer
//! x += n_post_attn(Wo·attn(rope(n_q(Wq·n(x))), rope(n_k(Wk·n(x))), Wv·n(x)));
//! x += n_post_ffw(Wdown·(gelu_tanh(Wgate·n(x)) ⊙ Wup·n(x))), every n an RMSNorm (n_q and n_k
//! per head). Five of every six layers attend within a sliding window with their own RoPE base
//! (10 000); every sixth is global (the file's `rope.freq_base`, linearly scaled when the file
//! says so). The LM head is the embedding table. GGUF stores gemma's norm weights with the +1
//! of `(1 + w) · x̂` already added, so every norm is a plain RMSNorm here.

use anyhow::{bail, Context, Result};
use candle_core::Tensor;

use super::checkpoint::Checkpoint;
use super::layers::{
    gated, head_major, heads, lm_head, score_rows, AttentionPlan, AttentionSpec, BatchTensors,
    GateActivation, Linear, Placement, RopeStyle, RopeTables, WeightMode,
};
use super::{PackedBatch, RowScore};

/// Layers per group of which the last is global, when the file does not say
/// (`sliding_window_pattern` of Gemma 3's config).
pub const DEFAULT_SLIDING_WINDOW_PATTERN: usize = 6;
/// RoPE base of the sliding-window layers, when the file does not say.
pub const DEFAULT_LOCAL_ROPE_BASE: f32 = 10_000.0;

#[derive(Debug, Clone)]
pub struct Gemma3Config {
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

impl Gemma3Config {
    fn from_checkpoint(checkpoint: &Checkpoint) -> Result<Self> {
        let key = |k: &str| format!("gemma3.{k}");
        let hidden = checkpoint.usize(&key("embedding_length"))?;
        let n_head = checkpoint.usize(&key("attention.head_count"))?;
        let n_layer = checkpoint.usize(&key("block_count"))?;
        let head_dim = checkpoint.usize_or(&key("attention.key_length"), hidden / n_head)?;
        let value_dim = checkpoint.usize_or(&key("attention.value_length"), head_dim)?;
        if value_dim != head_dim {
            bail!("gemma3 with key length {head_dim} ≠ value length {value_dim} is not supported");
        }
        let global_rope_scale = match checkpoint.has(&key("rope.scaling.type")) {
            false => 1.0,
            true => match checkpoint.string(&key("rope.scaling.type"))?.as_str() {
                "none" => 1.0,
                "linear" => checkpoint.f32(&key("rope.scaling.factor"))?,
                other => bail!("gemma3 RoPE scaling '{other}' is not supported (only linear)"),
            },
        };
        // Gemma 3 scales queries by query_pre_attn_scalar^-½, which GGUF does not store:
        // llama.cpp takes head_dim, except for the 27B model (62 layers), whose scalar is
        // hidden / heads. A file that stores `attention.scale` overrides both.
        let attention_scale = match checkpoint.optional_f32(&key("attention.scale"))? {
            Some(scale) => scale,
            None if n_layer == 62 => 1.0 / ((hidden / n_head) as f32).sqrt(),
            None => 1.0 / (head_dim as f32).sqrt(),
        };
        Ok(Self {
            n_layer,
            hidden,
            n_head,
            n_kv_head: checkpoint.usize_or(&key("attention.head_count_kv"), n_head)?,
            head_dim,
            rms_eps: checkpoint.f32(&key("attention.layer_norm_rms_epsilon"))?,
            context_length: checkpoint.usize(&key("context_length"))?,
            global_rope_base: checkpoint
                .optional_f32(&key("rope.freq_base"))?
                .unwrap_or(1_000_000.0),
            global_rope_scale,
            local_rope_base: checkpoint
                .optional_f32(&key("rope.freq_base_swa"))?
                .unwrap_or(DEFAULT_LOCAL_ROPE_BASE),
            sliding_window: match checkpoint.has(&key("attention.sliding_window")) {
                true => Some(checkpoint.usize(&key("attention.sliding_window"))?),
                false => None,
            },
            sliding_window_pattern: checkpoint.usize_or(
                &key("attention.sliding_window_pattern"),
                DEFAULT_SLIDING_WINDOW_PATTERN,
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
    q_norm: Tensor,
    k_norm: Tensor,
    attn_out: Linear,
    post_attn_norm: Tensor,
    ffn_norm: Tensor,
    gate_up: Linear,
    down: Linear,
    post_ffn_norm: Tensor,
    attention: AttentionSpec,
    sliding: bool,
}

pub struct Gemma3 {
    pub config: Gemma3Config,
    embeddings: Tensor,
    blocks: Vec<Block>,
    final_norm: Tensor,
    lm_head: Linear,
    global_rope: RopeTables,
    local_rope: RopeTables,
}

impl Gemma3 {
    pub fn from_checkpoint(checkpoint: &mut Checkpoint, placement: &Placement) -> Result<Self> {
        let config = Gemma3Config::from_checkpoint(checkpoint)?;
        if placement.mode == WeightMode::F16 {
            bail!(
                "{}: gemma 3's activations overflow f16 (they exceed its largest value, 65504); \
                 use --dtype bf16 or f32",
                checkpoint.path.display()
            );
        }
        let embed_q = checkpoint.tensor("token_embd.weight")?;
        let embeddings = placement.dense(&embed_q)?;
        let lm_head = lm_head(checkpoint, embed_q, &embeddings, placement)?;
        let mut blocks = Vec::with_capacity(config.n_layer);
        for i in 0..config.n_layer {
            let mut t = |name: &str| checkpoint.tensor(&format!("blk.{i}.{name}.weight"));
            let sliding = config.is_sliding(i);
            blocks.push(Block {
                attn_norm: placement.dense(&t("attn_norm")?)?,
                qkv: Linear::stacked(vec![t("attn_q")?, t("attn_k")?, t("attn_v")?], placement)?,
                q_norm: placement.dense(&t("attn_q_norm")?)?,
                k_norm: placement.dense(&t("attn_k_norm")?)?,
                attn_out: Linear::new(t("attn_output")?, placement)?,
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
        let final_norm = placement.dense(&checkpoint.tensor("output_norm.weight")?)?;
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
            final_norm,
            lm_head,
            global_rope,
            local_rope,
        })
    }

    pub fn score(&self, batch: &PackedBatch) -> Result<Vec<RowScore>> {
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
                    self.embeddings.device(),
                    self.embeddings.dtype(),
                )?;
                plans.push((block.attention, plan));
            }
        }
        let mut x = (self.embeddings.index_select(&global.ids, 0)? * (c.hidden as f64).sqrt())?;
        for block in &self.blocks {
            let (_, attention) = plans
                .iter()
                .find(|(spec, _)| *spec == block.attention)
                .expect("a plan was made for every block's spec");
            let tables = if block.sliding { &local } else { &global };
            let rope = Some((&tables.cos, &tables.sin, RopeStyle::Halves));
            let qkv = block.qkv.forward(&norm(&x, &block.attn_norm)?)?;
            let q = norm(&heads(&qkv, 0, c.n_head, c.head_dim)?, &block.q_norm)?;
            let k = norm(&heads(&qkv, q_dim, c.n_kv_head, c.head_dim)?, &block.k_norm)?;
            let v = heads(&qkv, q_dim + kv_dim, c.n_kv_head, c.head_dim)?;
            let attn = attention.attend(
                &head_major(&q, rope)?,
                &head_major(&k, rope)?,
                &head_major(&v, None)?,
            )?;
            x = (x + norm(&block.attn_out.forward(&attn)?, &block.post_attn_norm)?)?;

            let gate_up = block.gate_up.forward(&norm(&x, &block.ffn_norm)?)?;
            let act = gated(&gate_up, GateActivation::GeluTanh)?;
            x = (x + norm(&block.down.forward(&act)?, &block.post_ffn_norm)?)?;
        }
        score_rows(
            &x,
            batch,
            &self.final_norm,
            c.rms_eps,
            &self.lm_head,
            c.final_softcap,
        )
    }
}
