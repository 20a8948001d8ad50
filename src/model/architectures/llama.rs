//! The llama architecture (SmolLM2, Llama 2/3, TinyLlama, …): its config.json ↔ GGUF
//! translation and weight conventions, and a forward pass over packed sequences that returns
//! log-probabilities for the scored rows only.
//!
//! Math, top to bottom, per layer: x += Wo·attn(rope(Wq·n(x)), rope(Wk·n(x)), Wv·n(x));
//! x += Wdown·(silu(Wgate·n(x)) ⊙ Wup·n(x)), with n = RMSNorm. GGUF stores llama's Q and K
//! permuted for interleaved rotary embeddings, hence `rope_i`. Architectures that differ from
//! this only in their metadata prefix, Q/K/V biases and rotary layout (qwen2) reuse it.

use anyhow::{Context, Result};
use candle_core::Tensor;
use serde_json::{json, Value as Json};

use super::architecture::{base_config, Architecture, ConfigReader, Network};
use crate::model::attention::{AttentionPlan, AttentionSpec};
use crate::model::batch::PackedBatch;
use crate::model::device::Placement;
use crate::model::formats::checkpoint::{Checkpoint, CheckpointFormat};
use crate::model::formats::Metadata;
use crate::model::kv::{KvGeometry, KvIo};
pub use crate::model::layers::RopeStyle;
use crate::model::layers::{
    gated, head_major, heads, BatchTensors, Embeddings, GateActivation, Linear, RopeTables,
};
use crate::model::rope::{self, RopeScaling};
use crate::model::scoring::{LmHead, RowScore};

/// llama: config.json `model_type` "llama", GGUF `llama`.
pub struct LlamaArchitecture;

impl Architecture for LlamaArchitecture {
    fn name(&self) -> &'static str {
        "llama"
    }

    fn model_types(&self) -> &'static [&'static str] {
        &["llama"]
    }

    fn metadata_from_config(&self, config: &Json) -> Result<Metadata> {
        metadata_from_config(config, self.name())
    }

    fn config_from_metadata(&self, checkpoint: &Checkpoint, torch_dtype: &str) -> Result<Json> {
        config_from_metadata(checkpoint, self.name(), "LlamaForCausalLM", torch_dtype)
    }

    fn norm_names(&self) -> &'static [(&'static str, &'static str)] {
        NORM_NAMES
    }

    /// GGUF permutes llama's Q/K rows for interleaved RoPE; Hugging Face does not.
    fn tensor_to_hf(&self, checkpoint: &Checkpoint, name: &str, tensor: Tensor) -> Result<Tensor> {
        if checkpoint.format == CheckpointFormat::Safetensors {
            return Ok(tensor);
        }
        let key = |k: &str| format!("llama.{k}");
        let n_head = checkpoint.usize(&key("attention.head_count"))?;
        if name.ends_with("attn_q.weight") {
            unpermute_rows(&tensor, n_head)
        } else if name.ends_with("attn_k.weight") {
            unpermute_rows(
                &tensor,
                checkpoint.usize_or(&key("attention.head_count_kv"), n_head)?,
            )
        } else {
            Ok(tensor)
        }
    }

    fn load(&self, checkpoint: &mut Checkpoint, placement: &Placement) -> Result<Box<dyn Network>> {
        // GGUF permutes llama's Q/K rows for interleaved RoPE; Hugging Face checkpoints keep
        // the halves layout.
        let rope_style = if checkpoint.is_safetensors() {
            RopeStyle::Halves
        } else {
            RopeStyle::Interleaved
        };
        Ok(Box::new(Llama::from_checkpoint_as(
            checkpoint, placement, "llama", rope_style,
        )?))
    }
}

/// The FFN's input norm is `post_attention_layernorm` in llama-shaped models.
pub const NORM_NAMES: &[(&str, &str)] = &[("post_attention_layernorm.weight", "ffn_norm.weight")];

/// config.json of a llama-shaped model (llama, mistral, qwen2, qwen3) → GGUF metadata under
/// `architecture.`, as llama.cpp's converter writes it (RoPE scaling as `rope.scaling.*` keys
/// where the converter writes a `rope_freqs` tensor instead).
pub fn metadata_from_config(config: &Json, architecture: &'static str) -> Result<Metadata> {
    let mut reader = ConfigReader::new(config, architecture)?;
    reader.rope_scaling()?;
    if config["head_dim"].is_u64() {
        reader.int("rope.dimension_count", "head_dim")?;
        reader.int("attention.key_length", "head_dim")?;
    }
    Ok(reader.metadata)
}

/// GGUF metadata of a llama-shaped model → config.json.
pub fn config_from_metadata(
    checkpoint: &Checkpoint,
    architecture: &'static str,
    class: &str,
    torch_dtype: &str,
) -> Result<Json> {
    let mut config = base_config(checkpoint, architecture, class, architecture, torch_dtype)?;
    config["hidden_act"] = json!("silu");
    for key in ["rope.dimension_count", "attention.key_length"] {
        let key = format!("{architecture}.{key}");
        if checkpoint.has(&key) {
            config["head_dim"] = json!(checkpoint.usize(&key)?);
        }
    }
    if let Some(scaling) = rope::scaling_to_config(checkpoint, architecture)? {
        config["rope_scaling"] = scaling;
    }
    let window = format!("{architecture}.attention.sliding_window");
    if checkpoint.has(&window) {
        // Only Mistral among llama-shaped models has one (llama.cpp writes Mistral as llama).
        config["sliding_window"] = json!(checkpoint.usize(&window)?);
        config["model_type"] = json!("mistral");
        config["architectures"] = json!(["MistralForCausalLM"]);
    }
    Ok(config)
}

/// The inverse of llama.cpp's Q/K permutation: rows (head, i, pair) → (head, pair, i).
fn unpermute_rows(t: &Tensor, heads: usize) -> Result<Tensor> {
    let (rows, cols) = t.dims2()?;
    Ok(t.reshape((heads, rows / heads / 2, 2, cols))?
        .transpose(1, 2)?
        .reshape((rows, cols))?)
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
    pub rope_scaling: RopeScaling,
    /// Every layer attends to this many positions at most (Mistral); `None`: all of them.
    pub sliding_window: Option<usize>,
    pub rms_eps: f64,
    pub context_length: usize,
}

impl LlamaConfig {
    /// The hyper-parameters under `<prefix>.` in the GGUF metadata (`llama`, `qwen2`, …).
    fn from_checkpoint(
        checkpoint: &mut Checkpoint,
        prefix: &str,
        rope_style: RopeStyle,
    ) -> Result<Self> {
        let key = |k: &str| format!("{prefix}.{k}");
        let hidden = checkpoint.usize(&key("embedding_length"))?;
        let n_head = checkpoint.usize(&key("attention.head_count"))?;
        let head_dim = checkpoint.usize_or(
            &key("rope.dimension_count"),
            checkpoint.usize_or(&key("attention.key_length"), hidden / n_head)?,
        )?;
        let sliding_window = match checkpoint.has(&key("attention.sliding_window")) {
            true => Some(checkpoint.usize(&key("attention.sliding_window"))?).filter(|&w| w > 0),
            false => None,
        };
        Ok(Self {
            rope_style,
            n_layer: checkpoint.usize(&key("block_count"))?,
            hidden,
            n_head,
            n_kv_head: checkpoint.usize_or(&key("attention.head_count_kv"), n_head)?,
            head_dim,
            rope_theta: checkpoint
                .optional_f32(&key("rope.freq_base"))?
                .unwrap_or(10_000.0),
            rope_scaling: RopeScaling::from_checkpoint(checkpoint, prefix)?,
            sliding_window,
            rms_eps: checkpoint.f32(&key("attention.layer_norm_rms_epsilon"))? as f64,
            context_length: checkpoint.usize(&key("context_length"))?,
        })
    }
}

struct Block {
    attn_norm: Tensor,
    qkv: Linear,
    /// Q, K and V biases, concatenated (qwen2); llama has none.
    qkv_bias: Option<Tensor>,
    /// RMSNorm weights applied to each head of Q and of K before RoPE (qwen3).
    qk_norm: Option<(Tensor, Tensor)>,
    attn_out: Linear,
    ffn_norm: Tensor,
    gate_up: Linear,
    down: Linear,
}

pub struct Llama {
    pub config: LlamaConfig,
    embeddings: Embeddings,
    blocks: Vec<Block>,
    lm_head: LmHead,
    rope: RopeTables,
    /// The tables of inputs longer than the original context, where they differ (longrope).
    long_rope: Option<RopeTables>,
}

impl Llama {
    /// Loads a llama-shaped network whose metadata lives under `prefix`, with the given rotary
    /// layout; Q/K/V biases are used where the file has them.
    pub fn from_checkpoint_as(
        checkpoint: &mut Checkpoint,
        placement: &Placement,
        prefix: &str,
        rope_style: RopeStyle,
    ) -> Result<Self> {
        let config = LlamaConfig::from_checkpoint(checkpoint, prefix, rope_style)?;
        let embed_q = checkpoint.tensor("token_embd.weight")?;
        let embeddings = Embeddings::new(&embed_q, placement)?;
        // A table kept in its stored form is the tied head too: the source goes now.
        let embed_q = embeddings.dense_only(embed_q);
        let mut blocks = Vec::with_capacity(config.n_layer);
        for i in 0..config.n_layer {
            let qkv_bias = if checkpoint.has_tensor(&format!("blk.{i}.attn_q.bias")) {
                let mut bias = |name: &str| -> Result<Tensor> {
                    placement.dense(&checkpoint.tensor(&format!("blk.{i}.{name}.bias"))?)
                };
                let parts = [bias("attn_q")?, bias("attn_k")?, bias("attn_v")?];
                Some(Tensor::cat(&parts, 0)?)
            } else {
                None
            };
            let qk_norm = if checkpoint.has_tensor(&format!("blk.{i}.attn_q_norm.weight")) {
                let mut norm = |name: &str| -> Result<Tensor> {
                    placement.dense(&checkpoint.tensor(&format!("blk.{i}.{name}.weight"))?)
                };
                Some((norm("attn_q_norm")?, norm("attn_k_norm")?))
            } else {
                None
            };
            // Phi-3 stores Q, K and V as one matrix, and the gate above the up projection in
            // one `ffn_up` — the layouts these stacks build.
            let fused_qkv = checkpoint.has_tensor(&format!("blk.{i}.attn_qkv.weight"));
            let fused_gate_up = !checkpoint.has_tensor(&format!("blk.{i}.ffn_gate.weight"));
            let mut t = |name: &str| checkpoint.tensor(&format!("blk.{i}.{name}.weight"));
            let qkv = match fused_qkv {
                true => Linear::new(t("attn_qkv")?, &placement.outlier_sensitive())?,
                false => Linear::stacked(
                    vec![t("attn_q")?, t("attn_k")?, t("attn_v")?],
                    &placement.outlier_sensitive(),
                )?,
            };
            let gate_up = match fused_gate_up {
                true => Linear::new(t("ffn_up")?, placement)?,
                false => Linear::stacked(vec![t("ffn_gate")?, t("ffn_up")?], placement)?,
            };
            blocks.push(Block {
                attn_norm: placement.dense(&t("attn_norm")?)?,
                qkv,
                qkv_bias,
                qk_norm,
                attn_out: Linear::new(t("attn_output")?, &placement.outlier_sensitive())?,
                ffn_norm: placement.dense(&t("ffn_norm")?)?,
                gate_up,
                down: Linear::new(t("ffn_down")?, placement)?,
            });
        }
        let lm_head = LmHead::new(
            placement.dense(&checkpoint.tensor("output_norm.weight")?)?,
            config.rms_eps as f32,
            checkpoint.optional_tensor("output.weight")?,
            embed_q,
            &embeddings,
            placement,
            None,
        )?;
        let scaling = &config.rope_scaling;
        let tables = |inv_freq: Option<Vec<f32>>| -> Result<Option<RopeTables>> {
            inv_freq
                .map(|f| {
                    RopeTables::from_inv_freq(
                        &f,
                        scaling.attention_factor(),
                        config.context_length,
                        placement,
                    )
                    .context("building rotary tables")
                })
                .transpose()
        };
        let origin = || checkpoint.origin.clone();
        let rope = tables(Some(
            scaling
                .inv_freq(config.head_dim, config.rope_theta)
                .with_context(origin)?,
        ))?
        .expect("tables of Some");
        let long_rope = tables(
            scaling
                .long_inv_freq(config.head_dim, config.rope_theta)
                .with_context(origin)?,
        )?;
        Ok(Self {
            config,
            embeddings,
            blocks,
            lm_head,
            rope,
            long_rope,
        })
    }
}

impl Network for Llama {
    fn context_length(&self) -> usize {
        self.config.context_length
    }

    fn rope_regime(&self, input_len: usize) -> u8 {
        match self.config.rope_scaling.original_context() {
            Some(original) if input_len > original => 1,
            _ => 0,
        }
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
        let tables = match (batch.rope_regime, &self.long_rope) {
            (1, Some(long)) => long,
            _ => &self.rope,
        };
        let tensors = BatchTensors::new(batch, tables)?;
        let q_dim = c.n_head * c.head_dim;
        let kv_dim = c.n_kv_head * c.head_dim;
        let spec = AttentionSpec {
            window: c.sliding_window,
            ..AttentionSpec::causal(1.0 / (c.head_dim as f32).sqrt())
        };
        let attention = AttentionPlan::new(
            batch,
            spec,
            &self.embeddings.device(),
            self.embeddings.dtype(),
        )?;
        let rope = Some((&tensors.cos, &tensors.sin, c.rope_style));
        let mut x = self.embeddings.lookup(&tensors.ids)?;
        for (layer, block) in self.blocks.iter().enumerate() {
            let h = candle_nn::ops::rms_norm(&x, &block.attn_norm, c.rms_eps as f32)?;
            let mut qkv = block.qkv.forward(&h)?;
            if let Some(bias) = &block.qkv_bias {
                qkv = qkv.broadcast_add(bias)?;
            }
            let mut q = heads(&qkv, 0, c.n_head, c.head_dim)?;
            let mut k = heads(&qkv, q_dim, c.n_kv_head, c.head_dim)?;
            if let Some((q_norm, k_norm)) = &block.qk_norm {
                q = candle_nn::ops::rms_norm(&q, q_norm, c.rms_eps as f32)?;
                k = candle_nn::ops::rms_norm(&k, k_norm, c.rms_eps as f32)?;
            }
            let q = head_major(&q, rope)?;
            let k = head_major(&k, rope)?;
            let v = head_major(&heads(&qkv, q_dim + kv_dim, c.n_kv_head, c.head_dim)?, None)?;
            let attn = attention.attend(&q, &k, &v, kv.past(layer))?;
            kv.keep(&k, &v)?;
            x = (x + block.attn_out.forward(&attn)?)?;

            let h = candle_nn::ops::rms_norm(&x, &block.ffn_norm, c.rms_eps as f32)?;
            let gate_up = block.gate_up.forward(&h)?;
            let act = gated(&gate_up, GateActivation::Silu)?;
            x = (x + block.down.forward(&act)?)?;
        }
        self.lm_head.score(&x, batch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn unpermuting_inverts_the_llama_cpp_permutation() {
        let (heads, head_dim, cols) = (3, 4, 2);
        let rows = heads * head_dim;
        let hf = Tensor::arange(0f32, (rows * cols) as f32, &Device::Cpu)
            .unwrap()
            .reshape((rows, cols))
            .unwrap();
        // llama.cpp: reshape(heads, 2, head_dim / 2, cols).swapaxes(1, 2)
        let permuted = hf
            .reshape((heads, 2, head_dim / 2, cols))
            .unwrap()
            .transpose(1, 2)
            .unwrap()
            .reshape((rows, cols))
            .unwrap();
        let back = unpermute_rows(&permuted, heads).unwrap();
        assert_eq!(back.to_vec2::<f32>().unwrap(), hf.to_vec2::<f32>().unwrap());
    }
}
