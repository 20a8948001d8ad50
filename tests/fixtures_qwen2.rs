//! Qwen2.5-Coder-0.5B-Instruct (qwen2 architecture, GGUF Q5_0/Q4_K/Q6_K/Q8_0) against the HF
//! transformers references of `../shared/fixtures/qwen2.5-coder-0.5b/`: token ids for all 164
//! requests and — the model being 4× SmolLM2's compute, and most of its weights Q5_0, which has
//! only a slow scalar kernel in candle — f32 log-probabilities on every second request (all 164
//! passed when this was written; CI time is the reason for the subset), quantized closeness on
//! every 16th, int8 closeness (≤ 0.05 per token, greedy ≥ 99 %) on all, and batch invariance on
//! every 32nd.

mod common;

valuelens_fixture_suite!("qwen2.5-coder-0.5b", f32_every: 2, quantized_every: 16, int8_every: 1, bf16_every: 2, invariance_every: 32);
