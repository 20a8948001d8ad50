//! CUDA against the CPU on identical weights (a synthetic model of SmolLM2's shape): f32 within
//! 1e-4 per token, bf16 within 1e-2 (the same precision on both devices), and Q8_0 weights
//! through candle's CUDA quantized kernels within 5e-2 of the CPU's quantized kernels.
//!
//! Built only with `--features cuda` and run on a machine with an NVIDIA GPU (scripts/
//! build-cuda.sh packs this test binary; scripts/gpu-check.sh runs it). The requests are made
//! here, so no fixtures are needed there: a prompt shared by several continuations (a tree), a
//! prompt of more than 1,024 tokens (several attention blocks), multi-token continuations and
//! an unrelated short request. The tokenizer is the folder in `VALUELENS_TOKENIZER` (from
//! `valuelens export --tokenizer-only`), else the default model's.
#![cfg(feature = "cuda")]

use candle_core::Device;
use valuelens::engine::agreement::Agreement;
use valuelens::engine::{self, EngineOptions, Request};
use valuelens::model::{Model, Placement, Precision};

fn spec(shape: &str) -> String {
    match std::env::var("VALUELENS_TOKENIZER") {
        Ok(dir) => format!("synthetic:{shape}@{dir}"),
        Err(_) => format!("synthetic:{shape}"),
    }
}

fn requests() -> Vec<Request> {
    let request = |id: &str, context: String, continuation: &str| Request {
        id: id.into(),
        context,
        continuation: continuation.into(),
    };
    let prompt = "Suppose you are from Egypt. How strongly do you agree with the value of \
                  equality: equal opportunity for all? Answer with a number from 1 to 6.\nAnswer:";
    let long: String = (0..160)
        .map(|i| format!("Sentence {i} says something about values and actions. "))
        .collect();
    let mut requests: Vec<Request> = (1..=6)
        .map(|option| {
            request(
                &format!("tree-{option}"),
                prompt.into(),
                &format!(" {option}"),
            )
        })
        .collect();
    requests.push(request("long-a", long.clone(), " and so on."));
    requests.push(request("long-b", long, " The end"));
    requests.push(request("short", "Hello".into(), ", world!"));
    requests
}

fn agreement(shape: &str, mode: Precision) -> Agreement {
    let requests = requests();
    let options = EngineOptions::default();
    let score = |device: Device| {
        // The CPU computes bf16 as the GPU does, not with its own bf16 kernel.
        let placement = Placement::new(device, mode).with_gpu_numerics();
        let model = Model::load_on(&spec(shape), &placement).unwrap();
        engine::score(&model, &requests, &options, None).unwrap()
    };
    let cpu = score(Device::Cpu);
    let cuda = score(Device::new_cuda(0).expect("a CUDA device"));
    let agreement = Agreement::of(&cpu, &cuda).unwrap();
    eprintln!("{shape} {mode:?}: {agreement:?}");
    agreement
}

#[test]
fn f32_on_cuda_matches_the_cpu() {
    let a = agreement("llama-135m", Precision::F32);
    assert!(a.max_abs_token_diff <= 1e-4, "{a:?}");
    assert_eq!(a.greedy_agreement, 1.0);
}

#[test]
fn bf16_on_cuda_matches_the_cpu() {
    let a = agreement("llama-135m", Precision::Bf16);
    assert!(a.max_abs_token_diff <= 1e-2, "{a:?}");
}

#[test]
fn quantized_kernels_on_cuda_match_the_cpu() {
    let a = agreement("llama-135m+q8_0", Precision::Quantized);
    assert!(a.max_abs_token_diff <= 5e-2, "{a:?}");
}

/// The prefix cache on the GPU (masked attention over past keys and values): the requests
/// scored twice through one cache — the second time from it — agree with scoring them without
/// one within the f32 tolerance; `serve --prefix-cache-mb` on a GPU rests on this check.
#[test]
fn the_prefix_cache_on_cuda_agrees_with_scoring_without_it() {
    let requests = requests();
    let options = EngineOptions::default();
    let placement = Placement::new(Device::new_cuda(0).expect("a CUDA device"), Precision::F32);
    let model = Model::load_on(&spec("llama-135m"), &placement).unwrap();
    let plain = engine::score(&model, &requests, &options, None).unwrap();
    let mut cache = engine::PrefixCache::new(256 << 20, model.kv_geometry());
    engine::score_cached(&model, &requests[..4], &options, None, Some(&mut cache)).unwrap();
    let (cached, stats) =
        engine::score_cached(&model, &requests, &options, None, Some(&mut cache)).unwrap();
    assert!(stats.answered_from_cache > 0, "{stats:?}");
    let a = Agreement::of(&plain, &cached).unwrap();
    eprintln!("prefix cache on cuda: {a:?}");
    assert!(a.max_abs_token_diff <= 1e-4, "{a:?}");
    assert_eq!(a.greedy_agreement, 1.0);
}
