//! Scoring: requests → tokens → one prefix tree → segments packed into forwards → per-token
//! log-probabilities, gathered back per request in input order.

use anyhow::Result;
use indicatif::ProgressBar;

use super::cache::{PrefixCache, RowFacts};
use super::prefix::{PrefixTree, Segments};
use super::schedule::{Consumer, PlannedBatch, Schedule};
use super::ties::{near_tie_requests, NEAR_TIE_NATS};
use super::tokenize::{tokenize_requests, TokenizedRequest};
use super::types::{EngineOptions, EngineStats, Request, Score};
use crate::model::kv::{KvCapture, KvIo, PastKv};
use crate::model::{Model, RowScore};

/// Scores `requests` and returns one score per request, in input order.
pub fn score(
    model: &Model,
    requests: &[Request],
    options: &EngineOptions,
    progress: Option<&ProgressBar>,
) -> Result<Vec<Score>> {
    Ok(score_with_stats(model, requests, options, progress)?.0)
}

/// Like [`score`], with what was computed.
pub fn score_with_stats(
    model: &Model,
    requests: &[Request],
    options: &EngineOptions,
    progress: Option<&ProgressBar>,
) -> Result<(Vec<Score>, EngineStats)> {
    score_cached(model, requests, options, progress, None)
}

/// Like [`score_with_stats`], with a prefix cache across calls (see
/// [`score_tokenized_cached`]).
pub fn score_cached(
    model: &Model,
    requests: &[Request],
    options: &EngineOptions,
    progress: Option<&ProgressBar>,
    cache: Option<&mut PrefixCache>,
) -> Result<(Vec<Score>, EngineStats)> {
    let tokenized = tokenize_requests(model, requests)?;
    let (mut scores, mut stats) =
        score_tokenized_cached(model, &tokenized, options, progress, cache)?;
    if model.rechecks_near_ties() {
        recheck_near_ties(
            model,
            requests,
            &tokenized,
            &mut scores,
            &mut stats,
            options,
            progress,
        )?;
    }
    let scores = requests
        .iter()
        .zip(scores)
        .map(|(r, s)| Score {
            id: r.id.clone(),
            logprob: s.token_logprobs.iter().sum(),
            n_tokens: s.token_logprobs.len(),
            greedy: s.greedy,
            token_logprobs: s.token_logprobs,
        })
        .collect();
    Ok((scores, stats))
}

/// Scores the choices of the questions that are near ties in `scores` again with finer
/// activations (see [`ties`](super::ties)), in place.
fn recheck_near_ties(
    model: &Model,
    requests: &[Request],
    tokenized: &[TokenizedRequest],
    scores: &mut [TokenScores],
    stats: &mut EngineStats,
    options: &EngineOptions,
    progress: Option<&ProgressBar>,
) -> Result<()> {
    let logprobs: Vec<f64> = scores
        .iter()
        .map(|s| s.token_logprobs.iter().sum())
        .collect();
    let near = near_tie_requests(requests, &logprobs, NEAR_TIE_NATS);
    if near.is_empty() {
        return Ok(());
    }
    let again: Vec<TokenizedRequest> = near.iter().map(|&i| tokenized[i].clone()).collect();
    let (rescored, again_stats) =
        model.with_finer_activations(|| score_tokenized(model, &again, options, progress))?;
    for (&i, score) in near.iter().zip(rescored) {
        scores[i] = score;
    }
    stats.computed_tokens += again_stats.computed_tokens;
    stats.forwards += again_stats.forwards;
    stats.rechecked_requests += near.len();
    stats.rechecked_tokens += again_stats.computed_tokens;
    Ok(())
}

/// Per-token scores of one tokenized request.
#[derive(Debug, Clone, Default)]
pub struct TokenScores {
    pub token_logprobs: Vec<f64>,
    pub greedy: bool,
    /// Per continuation token, the model's most likely token at its position and that token's
    /// log-probability.
    pub top: Vec<(u32, f64)>,
}

/// Scores tokenized requests: builds their prefix tree (or, without sharing, one path per
/// request), cuts it into segments, and runs the segments in depth-first order in forwards of
/// at most `batch_tokens` tokens, each segment together with those of its ancestors that the
/// forward does not already hold.
pub fn score_tokenized(
    model: &Model,
    requests: &[TokenizedRequest],
    options: &EngineOptions,
    progress: Option<&ProgressBar>,
) -> Result<(Vec<TokenScores>, EngineStats)> {
    run_tokenized(model, requests, options, progress, true, None)
}

/// [`score_tokenized`] with a prefix cache across calls: prefixes it holds are not computed
/// again, scores it keeps are not computed at all, and what is computed is added to it. In
/// f32 on the CPU the scores are bit-identical to scoring without it.
pub fn score_tokenized_cached(
    model: &Model,
    requests: &[TokenizedRequest],
    options: &EngineOptions,
    progress: Option<&ProgressBar>,
    cache: Option<&mut PrefixCache>,
) -> Result<(Vec<TokenScores>, EngineStats)> {
    run_tokenized(model, requests, options, progress, true, cache)
}

/// What scoring `requests` would compute (tokens, forwards), planned without running the
/// model: e.g. the share of a unit's cost that some of its requests add.
pub fn plan_stats(
    model: &Model,
    requests: &[Request],
    options: &EngineOptions,
) -> Result<EngineStats> {
    let tokenized = tokenize_requests(model, requests)?;
    Ok(run_tokenized(model, &tokenized, options, None, false, None)?.1)
}

/// Plans the forwards of `requests` and, with `score`, runs them.
fn run_tokenized(
    model: &Model,
    requests: &[TokenizedRequest],
    options: &EngineOptions,
    progress: Option<&ProgressBar>,
    score: bool,
    mut cache: Option<&mut PrefixCache>,
) -> Result<(Vec<TokenScores>, EngineStats)> {
    let regimes: Vec<u8> = requests
        .iter()
        .map(|r| model.rope_regime(r.input().len()))
        .collect();
    let first = regimes.first().copied().unwrap_or(0);
    if regimes.iter().all(|&r| r == first) {
        return score_regime(model, requests, first, options, progress, score, cache);
    }
    // Inputs whose length gives them other rotary frequencies are scored apart: a prefix
    // computed with one regime's frequencies is not the prefix of the other's.
    let mut results = vec![TokenScores::default(); requests.len()];
    let mut stats = EngineStats::default();
    let mut distinct: Vec<u8> = regimes.clone();
    distinct.sort_unstable();
    distinct.dedup();
    for regime in distinct {
        let members: Vec<usize> = (0..requests.len())
            .filter(|&i| regimes[i] == regime)
            .collect();
        let group: Vec<TokenizedRequest> = members.iter().map(|&i| requests[i].clone()).collect();
        let (scores, group_stats) = score_regime(
            model,
            &group,
            regime,
            options,
            progress,
            score,
            cache.as_deref_mut(),
        )?;
        for (i, score) in members.into_iter().zip(scores) {
            results[i] = score;
        }
        stats.add(&group_stats);
    }
    Ok((results, stats))
}

/// [`score_tokenized`] for requests of one rotary regime.
fn score_regime(
    model: &Model,
    requests: &[TokenizedRequest],
    regime: u8,
    options: &EngineOptions,
    progress: Option<&ProgressBar>,
    score: bool,
    cache: Option<&mut PrefixCache>,
) -> Result<(Vec<TokenScores>, EngineStats)> {
    let mut cache = cache.filter(|_| options.share_prefixes && score);
    if let Some(cache) = cache.as_deref_mut() {
        cache.begin_call();
    }
    let mut tree = PrefixTree::default();
    let mut pending: Vec<(u32, Consumer)> = Vec::new();
    // Per node of the tree: whether some request needs it computed (else the cache holds it).
    let mut computed: Vec<bool> = Vec::new();
    let mut answered = 0;
    let mut results: Vec<TokenScores> = requests
        .iter()
        .map(|r| TokenScores {
            token_logprobs: vec![0.0; r.continuation().len()],
            greedy: true,
            top: vec![(0, 0.0); r.continuation().len()],
        })
        .collect();
    for (i, request) in requests.iter().enumerate() {
        if request.continuation().is_empty() {
            // An empty continuation scores log 1 = 0 and is trivially greedy, as in lm-eval.
            continue;
        }
        // Positions before `start` are not computed: the cache holds their keys and values,
        // and the scores asked for there.
        let start = match cache.as_deref_mut() {
            Some(cache) => {
                let (start, from_cache) =
                    answer_from_cache(cache, regime, request, &mut results[i]);
                answered += from_cache;
                match start {
                    Some(start) => start,
                    None => continue,
                }
            }
            None => 0,
        };
        let path = if options.share_prefixes {
            tree.insert(request.input())
        } else {
            tree.insert_unshared(request.input())
        };
        if cache.is_some() {
            computed.resize(tree.len(), false);
            for &node in &path[start..] {
                computed[node as usize] = true;
            }
        }
        for j in 0..request.continuation().len() {
            let row = request.context_len - 1 + j;
            if row >= start {
                pending.push((path[row], (i as u32, j as u32)));
            }
        }
    }
    let segments = match cache {
        Some(_) => tree.segments_marked(&computed),
        None => tree.segments(),
    };
    if let Some(bar) = progress {
        let to_compute = match cache {
            Some(_) => computed.iter().filter(|&&c| c).count(),
            None => tree.len(),
        };
        bar.set_length(bar.length().unwrap_or(0) + to_compute as u64);
    }
    let mut consumers: Vec<Vec<(u32, Consumer)>> = vec![Vec::new(); segments.list.len()];
    for (node, consumer) in pending {
        let (segment, offset) = segments.node_place[node as usize];
        consumers[segment as usize].push((offset, consumer));
    }
    for c in &mut consumers {
        c.sort_unstable();
    }

    let mut stats = EngineStats {
        requests: requests.len(),
        request_tokens: requests.iter().map(|r| r.tokens.len()).sum(),
        distinct_tokens: tree.len(),
        answered_from_cache: answered,
        ..EngineStats::default()
    };
    for mut planned in Schedule::new(&segments, &consumers, requests, options.batch_tokens) {
        stats.computed_tokens += planned.batch.tokens.len();
        stats.past_tokens += planned.batch.past_len;
        stats.forwards += 1;
        if !score {
            continue;
        }
        planned.batch.rope_regime = regime;
        let scores = match cache.as_deref_mut() {
            Some(cache) => forward_with_cache(model, cache, &segments, &planned, regime)?,
            None => model.score(&planned.batch)?,
        };
        for &(t, (i, j)) in &planned.answers {
            let result = &mut results[i as usize];
            result.token_logprobs[j as usize] = scores[t].logprob;
            result.top[j as usize] = (scores[t].argmax, scores[t].argmax_logprob);
            result.greedy &= scores[t].is_argmax;
        }
        if let Some(bar) = progress {
            bar.inc(planned.batch.tokens.len() as u64);
        }
    }
    Ok((results, stats))
}

/// Answers `request`'s continuation tokens from the scores the cache keeps, in order, until
/// one is missing. Returns the first position to compute (`None`: nothing; all answered) and
/// how many tokens were answered.
fn answer_from_cache(
    cache: &mut PrefixCache,
    regime: u8,
    request: &TokenizedRequest,
    result: &mut TokenScores,
) -> (Option<usize>, usize) {
    let continuation = request.continuation();
    let queries: Vec<(usize, u32)> = continuation
        .iter()
        .enumerate()
        .map(|(j, &target)| (request.context_len - 1 + j, target))
        .collect();
    let (matched, found) = cache.lookup(regime, request.input(), &queries);
    let mut answers = Vec::new();
    let mut start = None;
    for (&(row, _), answer) in queries.iter().zip(found) {
        match answer {
            Some(answer) => answers.push(answer),
            None => {
                // Recompute from the first position without a kept score, or from where the
                // cache ends (the computed positions need every position before them).
                start = Some(row.min(matched));
                break;
            }
        }
    }
    // Scores before the start are used; the rest are computed again (equal, in f32 on the CPU).
    let used = match start {
        Some(start) => answers
            .iter()
            .enumerate()
            .take_while(|(j, _)| request.context_len - 1 + j < start)
            .count(),
        None => answers.len(),
    };
    for (j, &(logprob, top)) in answers[..used].iter().enumerate() {
        result.token_logprobs[j] = logprob;
        result.top[j] = top;
        result.greedy &= top.0 == continuation[j];
    }
    cache.note_answered(used);
    (start, used)
}

/// Runs one planned forward over the cache's keys and values for its cached segments, and
/// caches the keys, values and scores of the rows it computes (as many as the budget holds).
fn forward_with_cache(
    model: &Model,
    cache: &mut PrefixCache,
    segments: &Segments,
    planned: &PlannedBatch,
    regime: u8,
) -> Result<Vec<RowScore>> {
    let geometry = cache.geometry();
    let past = if planned.past.is_empty() {
        None
    } else {
        let mut rows = Vec::with_capacity(planned.batch.past_len * geometry.floats_per_token());
        for &s in &planned.past {
            let node = &segments.list[s];
            let path = segments.path(s);
            cache.read_rows(regime, &path, node.depth..path.len(), &mut rows)?;
        }
        Some(PastKv::from_rows(geometry, &rows, &model.device)?)
    };
    // Capture the rows the cache can hold, parents first (the shallowest are the most shared).
    let room = cache.budget() / geometry.bytes_per_token().max(1);
    let capture_rows: Vec<u32> = planned
        .computed
        .iter()
        .flat_map(|(_, rows)| rows.clone())
        .take(room)
        .map(|r| r as u32)
        .collect();
    let captured = capture_rows.len();
    let mut capture = KvCapture::new(capture_rows, geometry);
    let scores = model.score_with(
        &planned.batch,
        KvIo {
            past: past.as_ref(),
            capture: Some(&mut capture),
        },
    )?;
    drop(past);
    let kv = capture.into_rows()?;
    // What was scored at each row of the forward.
    let batch = &planned.batch;
    let mut facts = vec![RowFacts::default(); batch.tokens.len()];
    for (t, &(slot, target)) in batch.targets.iter().enumerate() {
        let f = &mut facts[batch.score_rows[slot as usize] as usize];
        f.top = Some((scores[t].argmax, scores[t].argmax_logprob));
        f.targets.push((target, scores[t].logprob));
    }
    let per_token = geometry.floats_per_token();
    // Room for all of it at once: one pass of eviction rather than one per segment.
    cache.make_room(captured * geometry.bytes_per_token());
    let mut at = 0;
    for (s, rows) in &planned.computed {
        if at >= captured {
            break;
        }
        let n = rows.len().min(captured - at);
        let node = &segments.list[*s];
        let path = segments.path(*s);
        cache.insert(
            regime,
            &path[..node.depth + n],
            node.depth,
            &kv[at * per_token..(at + n) * per_token],
            &facts[rows.start..rows.start + n],
        );
        at += n;
    }
    Ok(scores)
}

/// Scores a stream of requests of any length with bounded memory: `chunk` requests at a time
/// (more where the last ones share a context, so that a question is not cut) are tokenized,
/// shared and scored, and their scores handed to `sink` in input order. With
/// `options.prefix_cache_bytes`, prefixes computed for one chunk are kept for the next.
pub fn score_stream(
    model: &Model,
    requests: impl Iterator<Item = Result<Request>>,
    options: &EngineOptions,
    chunk: usize,
    progress: Option<&ProgressBar>,
    mut sink: impl FnMut(Score) -> Result<()>,
) -> Result<EngineStats> {
    let mut stats = EngineStats::default();
    let mut cache = (options.prefix_cache_bytes > 0)
        .then(|| PrefixCache::new(options.prefix_cache_bytes, model.kv_geometry()));
    let mut buffer = Vec::with_capacity(chunk.min(1 << 16));
    let mut requests = requests.peekable();
    while requests.peek().is_some() {
        buffer.clear();
        for request in requests.by_ref().take(chunk.max(1)) {
            buffer.push(request?);
        }
        // A question's choices (requests with one context, in a row) stay in one chunk, so
        // that near ties are found whole.
        while let Some(Ok(next)) = requests.peek() {
            match buffer.last() {
                Some(last) if !last.context.is_empty() && last.context == next.context => {
                    buffer.push(requests.next().expect("peeked")?);
                }
                _ => break,
            }
        }
        let (scores, chunk_stats) =
            score_cached(model, &buffer, options, progress, cache.as_mut())?;
        stats.add(&chunk_stats);
        for score in scores {
            sink(score)?;
        }
    }
    Ok(stats)
}
