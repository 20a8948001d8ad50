//! The architectures this build runs, found by their GGUF name or their config.json
//! `model_type`.

pub mod architecture;
pub mod gemma2;
pub mod gemma3;
pub mod llama;
pub mod mistral;
pub mod phi3;
pub mod qwen2;
pub mod qwen3;

use anyhow::{bail, Result};

use self::architecture::Architecture;
use self::gemma2::Gemma2Architecture;
use self::gemma3::Gemma3Architecture;
use self::llama::LlamaArchitecture;
use self::mistral::MistralArchitecture;
use self::phi3::Phi3Architecture;
use self::qwen2::Qwen2Architecture;
use self::qwen3::Qwen3Architecture;

pub const ALL: &[&dyn Architecture] = &[
    &LlamaArchitecture,
    &MistralArchitecture,
    &Qwen2Architecture,
    &Qwen3Architecture,
    &Gemma2Architecture,
    &Gemma3Architecture,
    &Phi3Architecture,
];

/// The architecture GGUF calls `name` (`general.architecture`).
pub fn by_name(name: &str) -> Result<&'static dyn Architecture> {
    match ALL.iter().find(|a| a.name() == name) {
        Some(a) => Ok(*a),
        None => bail!(
            "architecture '{name}' is not supported (supported: {})",
            ALL.iter().map(|a| a.name()).collect::<Vec<_>>().join(", ")
        ),
    }
}

/// The architecture of a config.json `model_type`.
pub fn by_model_type(model_type: &str) -> Result<&'static dyn Architecture> {
    match ALL.iter().find(|a| a.model_types().contains(&model_type)) {
        Some(a) => Ok(*a),
        None => bail!(
            "model_type '{model_type}' is not supported (supported: {})",
            ALL.iter()
                .map(|a| a.model_types()[0])
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tensor_names_map_both_ways() {
        for arch in ALL {
            // Phi-3 fuses Q, K and V into attn_qkv.
            let attention = match arch.name() {
                "phi3" => "blk.3.attn_qkv.weight",
                _ => "blk.3.attn_q.weight",
            };
            for gguf in [
                "token_embd.weight",
                "output_norm.weight",
                attention,
                "blk.3.ffn_norm.weight",
                "blk.3.ffn_up.weight",
                "blk.11.ffn_down.weight",
            ] {
                let hf = arch.hf_tensor_name(gguf).unwrap();
                assert_eq!(
                    arch.gguf_tensor_name(&hf).as_deref(),
                    Some(gguf),
                    "{} {hf}",
                    arch.name()
                );
            }
        }
        // Both directions: an exported llama must name its FFN norm as transformers does.
        for (arch, gguf, hf) in [
            (
                "llama",
                "blk.0.ffn_norm.weight",
                "model.layers.0.post_attention_layernorm.weight",
            ),
            (
                "gemma3",
                "blk.0.ffn_norm.weight",
                "model.layers.0.pre_feedforward_layernorm.weight",
            ),
            (
                "gemma3",
                "blk.0.post_attention_norm.weight",
                "model.layers.0.post_attention_layernorm.weight",
            ),
            (
                "gemma3",
                "blk.2.ffn_norm.weight",
                "model.layers.2.pre_feedforward_layernorm.weight",
            ),
        ] {
            let arch = by_name(arch).unwrap();
            assert_eq!(arch.hf_tensor_name(gguf).as_deref(), Some(hf), "{gguf}");
            assert_eq!(arch.gguf_tensor_name(hf).as_deref(), Some(gguf), "{hf}");
        }
        let llama = by_name("llama").unwrap();
        assert_eq!(
            llama.gguf_tensor_name("model.layers.0.pre_feedforward_layernorm.weight"),
            None
        );
        assert_eq!(llama.gguf_tensor_name("model.rotary_emb.inv_freq"), None);
    }

    #[test]
    fn unknown_architectures_are_named_with_the_known_ones() {
        let err = by_name("mamba").err().unwrap().to_string();
        assert!(
            err.contains("'mamba'")
                && err.contains("llama, mistral, qwen2, qwen3, gemma2, gemma3, phi3"),
            "{err}"
        );
        assert!(by_model_type("mamba")
            .err()
            .unwrap()
            .to_string()
            .contains("mamba"));
        let err = by_model_type("mixtral").err().unwrap().to_string();
        assert!(err.contains("'mixtral'"), "{err}");
        assert!(
            err.contains("llama, mistral, qwen2, qwen3, gemma2, gemma3_text, phi3"),
            "{err}"
        );
    }
}
