//! The llama architecture (SmolLM2, Llama 2/3, TinyLlama, …) from GGUF weights, with a forward
//! pass over packed sequences that returns log-probabilities for the scored rows only.
//!
//! Math, top to bottom, per layer: x += Wo·attn(rope(Wq·n(x)), rope(Wk·n(x)), Wv·n(x));
//! x += Wdown·(silu(Wgate·n(x)) ⊙ Wup·n(x)), with n = RMSNorm. GGUF stores llama's Q and K
//! permuted for interleaved rotary embeddings, hence `rope_i`. Architectures that differ from
//! this only in their metadata prefix, Q/K/V biases and rotary layout (qwen2) reuse it.

use anyhow::{Context, Result};
use candle_core::{Device, Tensor};

use super::gguf::GgufFile;
use super::layers::{
    packed_attention, score_logits, swiglu, BatchTensors, Linear, RopeTables, WeightMode,
};
use super::{PackedBatch, RowScore};

/// How rotary embeddings pair up the dimensions of a head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RopeStyle {
    /// Adjacent pairs (2i, 2i + 1): llama's GGUF layout.
    Interleaved,
    /// The two halves (i, i + d/2): the NEOX layout of qwen2 and gemma.
    Halves,
}

#[derive(Debug, Clone)]
pub struct LlamaConfig {
    pub rope_style: RopeStyle,
    pub n_layer: usize,
    pub hidden: usize,
    pub n_head: usize,
    pub n_kv_head: usize,
    pub head_dim: usize,
    pub rope_theta: f32,
    pub rms_eps: f64,
    pub context_length: usize,
}

impl LlamaConfig {
    /// The hyper-parameters under `<prefix>.` in the GGUF metadata (`llama`, `qwen2`, …).
    fn from_gguf(gguf: &GgufFile, prefix: &str, rope_style: RopeStyle) -> Result<Self> {
        let key = |k: &str| format!("{prefix}.{k}");
        let hidden = gguf.usize(&key("embedding_length"))?;
        let n_head = gguf.usize(&key("attention.head_count"))?;
        let head_dim = if gguf.has(&key("rope.dimension_count")) {
            gguf.usize(&key("rope.dimension_count"))?
        } else {
            hidden / n_head
        };
        Ok(Self {
            rope_style,
            n_layer: gguf.usize(&key("block_count"))?,
            hidden,
            n_head,
            n_kv_head: if gguf.has(&key("attention.head_count_kv")) {
                gguf.usize(&key("attention.head_count_kv"))?
            } else {
                n_head
            },
            head_dim,
            rope_theta: if gguf.has(&key("rope.freq_base")) {
                gguf.f32(&key("rope.freq_base"))?
            } else {
                10_000.0
            },
            rms_eps: gguf.f32(&key("attention.layer_norm_rms_epsilon"))? as f64,
            context_length: gguf.usize(&key("context_length"))?,
        })
    }
}

struct Block {
    attn_norm: Tensor,
    qkv: Linear,
    /// Q, K and V biases, concatenated (qwen2); llama has none.
    qkv_bias: Option<Tensor>,
    attn_out: Linear,
    ffn_norm: Tensor,
    gate_up: Linear,
    down: Linear,
}

pub struct Llama {
    pub config: LlamaConfig,
    embeddings: Tensor,
    blocks: Vec<Block>,
    final_norm: Tensor,
    lm_head: Linear,
    rope: RopeTables,
}

impl Llama {
    pub fn from_gguf(gguf: &mut GgufFile, mode: WeightMode) -> Result<Self> {
        Self::from_gguf_as(gguf, mode, "llama", RopeStyle::Interleaved)
    }

    /// Loads a llama-shaped network whose metadata lives under `prefix`, with the given rotary
    /// layout; Q/K/V biases are used where the file has them.
    pub fn from_gguf_as(
        gguf: &mut GgufFile,
        mode: WeightMode,
        prefix: &str,
        rope_style: RopeStyle,
    ) -> Result<Self> {
        let config = LlamaConfig::from_gguf(gguf, prefix, rope_style)?;
        let dev = Device::Cpu;
        let embed_q = gguf.tensor("token_embd.weight")?;
        let embeddings = embed_q.dequantize(&dev)?;
        let lm_head = if gguf.has_tensor("output.weight") {
            Linear::new(gguf.tensor("output.weight")?, mode)?
        } else {
            match mode {
                WeightMode::F32 => Linear::dense(embeddings.clone()),
                WeightMode::Quantized => Linear::new(embed_q, mode)?,
            }
        };
        let mut blocks = Vec::with_capacity(config.n_layer);
        for i in 0..config.n_layer {
            let qkv_bias = if gguf.has_tensor(&format!("blk.{i}.attn_q.bias")) {
                let mut bias = |name: &str| -> Result<Tensor> {
                    Ok(gguf
                        .tensor(&format!("blk.{i}.{name}.bias"))?
                        .dequantize(&dev)?)
                };
                let parts = [bias("attn_q")?, bias("attn_k")?, bias("attn_v")?];
                Some(Tensor::cat(&parts, 0)?)
            } else {
                None
            };
            let mut t = |name: &str| gguf.tensor(&format!("blk.{i}.{name}.weight"));
            blocks.push(Block {
                attn_norm: t("attn_norm")?.dequantize(&dev)?,
                qkv: Linear::stacked(vec![t("attn_q")?, t("attn_k")?, t("attn_v")?], mode)?,
                qkv_bias,
                attn_out: Linear::new(t("attn_output")?, mode)?,
                ffn_norm: t("ffn_norm")?.dequantize(&dev)?,
                gate_up: Linear::stacked(vec![t("ffn_gate")?, t("ffn_up")?], mode)?,
                down: Linear::new(t("ffn_down")?, mode)?,
            });
        }
        let final_norm = gguf.tensor("output_norm.weight")?.dequantize(&dev)?;
        let rope = RopeTables::new(config.head_dim, config.rope_theta, config.context_length)
            .context("building rotary tables")?;
        Ok(Self {
            config,
            embeddings,
            blocks,
            final_norm,
            lm_head,
            rope,
        })
    }

    pub fn score(&self, batch: &PackedBatch) -> Result<Vec<RowScore>> {
        let c = &self.config;
        let tensors = BatchTensors::new(batch, &self.rope)?;
        let n_tokens = batch.tokens.len();
        let q_dim = c.n_head * c.head_dim;
        let kv_dim = c.n_kv_head * c.head_dim;
        let scale = 1.0 / (c.head_dim as f64).sqrt();
        let mut x = self.embeddings.index_select(&tensors.ids, 0)?;
        for block in &self.blocks {
            let h = candle_nn::ops::rms_norm(&x, &block.attn_norm, c.rms_eps as f32)?;
            let mut qkv = block.qkv.forward(&h)?;
            if let Some(bias) = &block.qkv_bias {
                qkv = qkv.broadcast_add(bias)?;
            }
            let heads = |offset: usize, n: usize| -> Result<Tensor> {
                let t = qkv
                    .narrow(1, offset, n * c.head_dim)?
                    .reshape((n_tokens, n, c.head_dim))?
                    .transpose(0, 1)?
                    .contiguous()?
                    .unsqueeze(0)?;
                let rotated = match c.rope_style {
                    RopeStyle::Interleaved => {
                        candle_nn::rotary_emb::rope_i(&t, &tensors.cos, &tensors.sin)?
                    }
                    RopeStyle::Halves => {
                        candle_nn::rotary_emb::rope(&t, &tensors.cos, &tensors.sin)?
                    }
                };
                Ok(rotated.squeeze(0)?)
            };
            let q = heads(0, c.n_head)?;
            let k = heads(q_dim, c.n_kv_head)?;
            let v = qkv
                .narrow(1, q_dim + kv_dim, kv_dim)?
                .reshape((n_tokens, c.n_kv_head, c.head_dim))?
                .transpose(0, 1)?
                .contiguous()?;
            let attn = packed_attention(&q, &k, &v, batch, scale)?;
            x = (x + block.attn_out.forward(&attn)?)?;

            let h = candle_nn::ops::rms_norm(&x, &block.ffn_norm, c.rms_eps as f32)?;
            let gate_up = block.gate_up.forward(&h)?;
            let act = swiglu(&gate_up)?;
            x = (x + block.down.forward(&act)?)?;
        }
        let rows = Tensor::new(batch.score_rows.as_slice(), &Device::Cpu)?;
        let h = x.index_select(&rows, 0)?;
        let h = candle_nn::ops::rms_norm(&h, &self.final_norm, c.rms_eps as f32)?;
        let logits = self.lm_head.forward(&h)?;
        score_logits(&logits, &batch.targets)
    }
}
