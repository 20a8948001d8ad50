//! Qwen2.5-Coder-0.5B-Instruct (qwen2 architecture, GGUF Q5_0/Q4_K/Q6_K/Q8_0) against the HF
//! transformers references of `../shared/fixtures/qwen2.5-coder-0.5b/`: token ids for all 164
//! requests, f32 log-probabilities on all of them, and — the model being 4× SmolLM2's compute,
//! and most of its weights Q5_0, which has only a slow scalar kernel in candle — quantized
//! closeness on every eighth request and batch invariance on every 32nd.

mod common;

valuelens_fixture_suite!("qwen2.5-coder-0.5b", quantized_every: 8, invariance_every: 32);
