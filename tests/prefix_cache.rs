//! Keys and values kept across forwards give the numbers of computing them again, bit for
//! bit, in f32 on the CPU: a forward over a prefix's past keys and values against the same
//! tokens in one forward (real SmolLM2 and gemma-3 weights, the latter across its sliding
//! window).

mod common;

use common::model_f32;
use valuelens::engine::{self, Request};
use valuelens::model::batch::{Keys, PackedBatch};
use valuelens::model::kv::{KvCapture, KvIo, PastKv};
use valuelens::model::{Model, Precision, RowScore};

fn workload(name: &str) -> Vec<Request> {
    let path = common::shared_dir().join("workloads").join(name);
    engine::requests::read_requests(&path).unwrap()
}

/// The tokens of a long Task-1 request (context and continuation).
fn long_tokens(model: &Model) -> Vec<u32> {
    let request = &workload("smollm2-t1-scenario.jsonl")[0];
    engine::tokenize_request(model, request).unwrap().tokens
}

fn bits(scores: &[RowScore]) -> Vec<(u64, bool, u32, u64)> {
    scores
        .iter()
        .map(|s| {
            (
                s.logprob.to_bits(),
                s.is_argmax,
                s.argmax,
                s.argmax_logprob.to_bits(),
            )
        })
        .collect()
}

/// Scores every row of `tokens[from..n-1]` for its next token.
fn push_scores(batch: &mut PackedBatch, tokens: &[u32], from: usize, first_row: usize) {
    for (row, &target) in tokens[from + 1..].iter().enumerate() {
        batch.push_score(first_row + row, target);
    }
}

/// `tokens` in one forward, against its first `p` tokens in one forward (capturing their keys
/// and values) and the rest in a second forward over them, for several lengths of the rest.
fn past_equals_recomputed(model: &Model, tokens: &[u32], p: usize, rests: &[usize]) {
    let geometry = model.kv_geometry();
    let mut head = PackedBatch::default();
    head.push_segment(&tokens[..p], vec![]);
    let mut capture = KvCapture::new((0..p as u32).collect());
    model
        .score_with(
            &head,
            KvIo {
                past: None,
                capture: Some(&mut capture),
            },
        )
        .unwrap();
    let rows = capture.into_rows(geometry).unwrap();
    let past = PastKv::from_rows(
        geometry,
        &rows,
        &candle_core::Device::Cpu,
        candle_core::DType::F32,
    )
    .unwrap();
    for &rest in rests {
        let n = p + rest;
        let mut whole = PackedBatch::default();
        whole.push_segment(&tokens[..n], vec![]);
        push_scores(&mut whole, &tokens[..n + 1], p, p);
        let expected = model.score(&whole).unwrap();

        let mut tail = PackedBatch::default();
        let past_rows = tail.push_past(p);
        tail.push_segment_below(&tokens[p..n], vec![Keys::Past(past_rows)]);
        push_scores(&mut tail, &tokens[..n + 1], p, 0);
        let got = model
            .score_with(
                &tail,
                KvIo {
                    past: Some(&past),
                    capture: None,
                },
            )
            .unwrap();
        assert_eq!(
            bits(&got),
            bits(&expected),
            "{p} past tokens, {rest} computed"
        );
    }
}

const RESTS: &[usize] = &[1, 2, 3, 4, 8, 63, 64, 65];

#[test]
fn smollm2_forward_over_past_keys_equals_one_forward() {
    let model = model_f32();
    let tokens = long_tokens(model);
    past_equals_recomputed(model, &tokens, 300, RESTS);
    // A prefix that ends inside a key chunk of the attention (not a multiple of 64).
    past_equals_recomputed(model, &tokens, 77, &[1, 5]);
}

#[test]
fn gemma3_forward_over_past_keys_across_its_window_equals_one_forward() {
    let path = common::registry_model_path("gemma3-270m");
    let model = Model::load_file("gemma3-270m", &path, Precision::F32).unwrap();
    let tokens = long_tokens(&model);
    assert!(tokens.len() > 680, "a prompt longer than the window");
    past_equals_recomputed(&model, &tokens, 600, &[1, 3, 64, 65]);
}
