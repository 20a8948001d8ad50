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
    let mut capture = KvCapture::new((0..p as u32).collect(), geometry);
    model
        .score_with(
            &head,
            KvIo {
                past: None,
                capture: Some(&mut capture),
            },
        )
        .unwrap();
    let rows = capture.into_rows().unwrap();
    let past = PastKv::from_rows(geometry, &rows, &candle_core::Device::Cpu).unwrap();
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

// ---- The engine with a prefix cache: every number as without it, fewer tokens computed. ----

use valuelens::engine::positions::{score_prompts, PromptRequest};
use valuelens::engine::{EngineOptions, PrefixCache, TokenScores, TokenizedRequest};

type ScoreBits = (Vec<u64>, Vec<(u32, u64)>, bool);

fn score_bits(scores: &[TokenScores]) -> Vec<ScoreBits> {
    scores
        .iter()
        .map(|s| {
            (
                s.token_logprobs.iter().map(|x| x.to_bits()).collect(),
                s.top.iter().map(|&(t, x)| (t, x.to_bits())).collect(),
                s.greedy,
            )
        })
        .collect()
}

/// The first `n` Task-2 requests as tokens: pairs of choices (Option 1 / Option 2) after one
/// context, contexts that share the system prompt and the country's wording.
fn task2(n: usize) -> Vec<TokenizedRequest> {
    let requests: Vec<Request> = workload("smollm2-t2-100pairs.jsonl")
        .into_iter()
        .take(n)
        .collect();
    engine::tokenize_requests(model_f32(), &requests).unwrap()
}

fn cold(requests: &[TokenizedRequest]) -> Vec<ScoreBits> {
    let (scores, _) =
        engine::score_tokenized(model_f32(), requests, &EngineOptions::default(), None).unwrap();
    score_bits(&scores)
}

fn warm(
    cache: &mut PrefixCache,
    requests: &[TokenizedRequest],
    options: &EngineOptions,
) -> (Vec<ScoreBits>, engine::EngineStats) {
    let (scores, stats) =
        engine::score_tokenized_cached(model_f32(), requests, options, None, Some(cache)).unwrap();
    (score_bits(&scores), stats)
}

fn roomy_cache() -> PrefixCache {
    PrefixCache::new(256 << 20, model_f32().kv_geometry())
}

/// A request with another continuation after the same context.
fn with_continuation(r: &TokenizedRequest, continuation: &[u32]) -> TokenizedRequest {
    let mut tokens = r.context().to_vec();
    tokens.extend_from_slice(continuation);
    TokenizedRequest {
        tokens,
        context_len: r.context_len,
    }
}

#[test]
fn scored_again_from_the_cache_gives_the_same_numbers_for_nothing() {
    let requests = task2(8);
    let expected = cold(&requests);
    let mut cache = roomy_cache();
    let options = EngineOptions::default();
    let (first, stats) = warm(&mut cache, &requests, &options);
    assert_eq!(first, expected, "a cold cache changes nothing");
    assert!(stats.computed_tokens > 0);
    let (again, stats) = warm(&mut cache, &requests, &options);
    assert_eq!(again, expected);
    assert_eq!(stats.computed_tokens, 0, "{stats:?}");
    let continuations: usize = requests.iter().map(|r| r.continuation().len()).sum();
    assert_eq!(stats.answered_from_cache, continuations);
    assert!(cache.bytes() <= cache.budget());
}

/// Cached requests inside another batch: the same context with a new continuation, an
/// unrelated request, and one that shares only the start of the cached context; then a
/// cached prompt as the prefix of a longer one, and a path that leaves a cached one midway.
#[test]
fn cached_prefixes_inside_other_batches_give_the_numbers_computed_cold() {
    let all = task2(40);
    let a = all[0].clone();
    let mut cache = roomy_cache();
    let options = EngineOptions::default();
    warm(&mut cache, std::slice::from_ref(&a), &options);

    // The same context with other continuations, an unrelated request, half a context.
    let other = with_continuation(&a, &all[39].continuation().repeat(3));
    let unrelated = all[39].clone();
    let half = TokenizedRequest {
        tokens: a.tokens[..a.context_len / 2 + 4].to_vec(),
        context_len: a.context_len / 2,
    };
    let batch = vec![other.clone(), unrelated, half, a.clone()];
    let expected = cold(&batch);
    let (got, stats) = warm(&mut cache, &batch, &options);
    assert_eq!(got, expected);
    assert!(
        stats.past_tokens > 0,
        "the cached context is attended to: {stats:?}"
    );
    assert!(
        stats.answered_from_cache >= a.continuation().len(),
        "the repeated request costs nothing: {stats:?}"
    );

    // The cached prompt as the prefix of a longer one.
    let longer = TokenizedRequest {
        tokens: [a.tokens.clone(), all[2].tokens[..30].to_vec()].concat(),
        context_len: a.tokens.len() + 10,
    };
    let expected = cold(std::slice::from_ref(&longer));
    let (got, stats) = warm(&mut cache, std::slice::from_ref(&longer), &options);
    assert_eq!(got, expected);
    assert_eq!(
        stats.computed_tokens,
        longer.input().len() - a.input().len(),
        "only the new tokens are computed: {stats:?}"
    );

    // Leaving the cached `other` midway through its continuation.
    let mut forked = other.tokens.clone();
    let at = other.context_len + 1;
    forked[at] = forked[at].wrapping_add(1) % 1000;
    let forked = TokenizedRequest {
        tokens: forked,
        context_len: other.context_len,
    };
    let expected = cold(std::slice::from_ref(&forked));
    let (got, _) = warm(&mut cache, std::slice::from_ref(&forked), &options);
    assert_eq!(got, expected);
    assert!(cache.bytes() <= cache.budget());
}

/// A budget too small for two contexts: the older one is evicted (whole, or down to the
/// shared system prompt), and scoring it again, or a sibling of it, gives the cold numbers.
#[test]
fn after_eviction_prompts_score_as_computed_cold() {
    let all = task2(40);
    let (a, b) = (&all[0], &all[38]);
    let per_token = model_f32().kv_geometry().bytes_per_token();
    let mut cache = PrefixCache::new(
        per_token * (a.tokens.len() * 6 / 5),
        model_f32().kv_geometry(),
    );
    let options = EngineOptions::default();
    warm(&mut cache, std::slice::from_ref(a), &options);
    warm(&mut cache, std::slice::from_ref(b), &options);
    assert!(
        cache.stats().values().evicted_tokens > 0,
        "{:?}",
        cache.stats().values()
    );
    assert!(cache.bytes() <= cache.budget());
    let sibling = all[1].clone();
    let batch = vec![a.clone(), sibling];
    let expected = cold(&batch);
    let (got, _) = warm(&mut cache, &batch, &options);
    assert_eq!(got, expected);
    assert!(cache.bytes() <= cache.budget());
}

/// Small forwards over a warm cache (ancestors repeated across forwards, past rows read
/// for each) give what one large forward gives.
#[test]
fn token_budgets_over_a_warm_cache_give_the_same_numbers() {
    let all = task2(24);
    let expected = cold(&all);
    let mut cache = roomy_cache();
    warm(&mut cache, &all[..6], &EngineOptions::default());
    for batch_tokens in [200, 16384] {
        let mut cache = roomy_cache();
        warm(&mut cache, &all[..6], &EngineOptions::default());
        let options = EngineOptions {
            batch_tokens,
            ..EngineOptions::default()
        };
        let (got, _) = warm(&mut cache, &all, &options);
        assert_eq!(got, expected, "batch_tokens {batch_tokens}");
    }
}

/// What a completions server echoes: every position's score and argmax, and the predicted
/// next token, equal when answered from the cache, and nothing computed for a repeat.
#[test]
fn echoed_prompt_scores_come_from_the_cache_unchanged() {
    let all = task2(6);
    let prompts: Vec<PromptRequest> = all
        .iter()
        .enumerate()
        .map(|(i, r)| PromptRequest {
            tokens: r.tokens.clone(),
            next: i % 2 == 0,
        })
        .collect();
    let options = EngineOptions::default();
    let (expected, _) = score_prompts(model_f32(), &prompts, &options, None).unwrap();
    let mut cache = roomy_cache();
    let (first, _) = score_prompts(model_f32(), &prompts[..3], &options, Some(&mut cache)).unwrap();
    assert_eq!(first, expected[..3]);
    let (all_again, stats) =
        score_prompts(model_f32(), &prompts, &options, Some(&mut cache)).unwrap();
    let bits = |p: &[valuelens::engine::positions::PromptScores]| -> Vec<Vec<(u64, u32, u64)>> {
        p.iter()
            .map(|s| {
                s.positions
                    .iter()
                    .map(|x| (x.logprob.to_bits(), x.argmax, x.argmax_logprob.to_bits()))
                    .chain(s.next.map(|(t, lp)| (0, t, lp.to_bits())))
                    .collect()
            })
            .collect()
    };
    assert_eq!(bits(&all_again), bits(&expected));
    assert!(stats.answered_from_cache > 0);
    let (repeat, stats) = score_prompts(model_f32(), &prompts, &options, Some(&mut cache)).unwrap();
    assert_eq!(bits(&repeat), bits(&expected));
    assert_eq!(stats.computed_tokens, 0, "{stats:?}");
    let values = cache.stats().values();
    assert!(
        values.hit_rate > 0.0 && values.answered_positions > 0,
        "{values:?}"
    );
}
