//! gemma-3-270m (gemma3 architecture, GGUF Q4_K_M) against the HF transformers references of
//! `../shared/fixtures/gemma3-270m/`: token ids (sentencepiece BPE rebuilt from the GGUF, BOS
//! added) and f32 log-probabilities on all 164 requests — contexts up to 2,521 tokens, so the
//! 512-token sliding window of five layers in six is exercised — quantized closeness on every
//! second (all 164 passed when this was written; CI time is the reason for the subset), int8
//! closeness on all 164, and batch invariance on every 32nd.

mod common;

valuelens_fixture_suite!("gemma3-270m", f32_every: 1, quantized_every: 2, int8_every: 1, bf16_every: 1, invariance_every: 32);
