//! The engine against the HF transformers references of `../shared/fixtures/smollm2-135m/`:
//! token ids, f32, quantized and int8 log-probabilities, greedy flags, and batch invariance (default
//! batching against one forward per request with nothing shared), on all 164 requests.

mod common;

valuelens_fixture_suite!(
    "smollm2-135m",
    f32_every: 1,
    quantized_every: 1,
    int8_every: 1,
    bf16_every: 1,
    invariance_every: 1
);
