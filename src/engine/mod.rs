//! The log-likelihood engine: (context, continuation) requests in, lm-evaluation-harness
//! `loglikelihood` scores out, computed in packed batches under a token budget. It knows
//! nothing about VIA or prompts.

pub mod requests;
mod tokenize;

use anyhow::{Context, Result};
use indicatif::ProgressBar;
use serde::{Deserialize, Serialize};

use crate::model::{Model, PackedBatch};
pub use tokenize::{tokenize_request, TokenizedRequest};

/// One question to the model: how likely is `continuation` after `context`?
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    pub id: String,
    pub context: String,
    pub continuation: String,
}

/// The answer, as lm-evaluation-harness reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Score {
    pub id: String,
    /// Sum of the continuation tokens' log-probabilities.
    pub logprob: f64,
    pub n_tokens: usize,
    /// Whether every continuation token is the model's argmax at its position.
    pub greedy: bool,
    pub token_logprobs: Vec<f64>,
}

#[derive(Debug, Clone, Copy)]
pub struct EngineOptions {
    /// Upper bound on the tokens of one forward (a longer request still gets a forward alone).
    pub batch_tokens: usize,
}

impl Default for EngineOptions {
    fn default() -> Self {
        Self { batch_tokens: 4096 }
    }
}

/// Scores `requests` and returns one score per request, in input order.
pub fn score(
    model: &Model,
    requests: &[Request],
    options: &EngineOptions,
    progress: Option<&ProgressBar>,
) -> Result<Vec<Score>> {
    let tokenized = requests
        .iter()
        .map(|r| tokenize_request(model, r).with_context(|| format!("request '{}'", r.id)))
        .collect::<Result<Vec<_>>>()?;
    if let Some(bar) = progress {
        bar.set_length(tokenized.iter().map(|t| t.input().len() as u64).sum());
    }
    let scores = score_tokenized(model, &tokenized, options, progress)?;
    Ok(requests
        .iter()
        .zip(scores)
        .map(|(r, s)| Score {
            id: r.id.clone(),
            logprob: s.token_logprobs.iter().sum(),
            n_tokens: s.token_logprobs.len(),
            greedy: s.greedy,
            token_logprobs: s.token_logprobs,
        })
        .collect())
}

/// Per-token scores of one tokenized request.
#[derive(Debug, Clone, Default)]
pub struct TokenScores {
    pub token_logprobs: Vec<f64>,
    pub greedy: bool,
}

/// Scores already-tokenized requests in batches of at most `batch_tokens` tokens, longest
/// first so that a batch holds sequences of similar length.
pub fn score_tokenized(
    model: &Model,
    requests: &[TokenizedRequest],
    options: &EngineOptions,
    progress: Option<&ProgressBar>,
) -> Result<Vec<TokenScores>> {
    let mut results = vec![TokenScores::default(); requests.len()];
    let mut order: Vec<usize> = (0..requests.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(requests[i].input().len()));

    let mut start = 0;
    while start < order.len() {
        let mut end = start;
        let mut tokens = 0;
        while end < order.len() {
            let len = requests[order[end]].input().len();
            if end > start && tokens + len > options.batch_tokens {
                break;
            }
            tokens += len;
            end += 1;
        }
        let members = &order[start..end];
        let mut batch = PackedBatch::default();
        for &i in members {
            let request = &requests[i];
            if request.continuation().is_empty() {
                continue;
            }
            let range = batch.push_sequence(request.input());
            for (j, &target) in request.continuation().iter().enumerate() {
                batch.push_score(range.start + request.context_len - 1 + j, target);
            }
        }
        let rows = if batch.score_rows.is_empty() {
            Vec::new()
        } else {
            model.score(&batch)?
        };
        let mut rows = rows.into_iter();
        for &i in members {
            let n = requests[i].continuation().len();
            let scored: Vec<_> = rows.by_ref().take(n).collect();
            // An empty continuation scores log 1 = 0 and is trivially greedy, as in lm-eval.
            results[i] = TokenScores {
                token_logprobs: scored.iter().map(|r| r.logprob).collect(),
                greedy: scored.iter().all(|r| r.is_argmax),
            };
        }
        if let Some(bar) = progress {
            bar.inc(tokens as u64);
        }
        start = end;
    }
    Ok(results)
}
