//! The log-likelihood engine: (context, continuation) requests in, lm-evaluation-harness
//! `loglikelihood` scores out. Requests are tokenized, merged into a prefix tree so that each
//! distinct token prefix is computed once, and run in packed forwards under a token budget.
//! It knows nothing about VIA or prompts.
//!
//! Inside, data flows `types` (requests) → `tokenize` → `prefix` (the tree and its segments)
//! → `schedule` (packed forwards) → `score` (the model, then scores per request); `requests`
//! reads and writes the JSONL files, `agreement` compares two scorings, `positions` scores
//! whole prompts at every position (what a completions server echoes), `ties` finds the
//! questions that `--dtype quantized-tiebreak` scores again, and `cache` keeps computed
//! prefixes (keys, values and scores) across calls.

pub mod agreement;
pub mod cache;
pub mod positions;
pub mod prefix;
pub mod requests;
mod schedule;
mod score;
pub mod ties;
mod tokenize;
mod types;

pub use cache::PrefixCache;
pub use score::{
    plan_stats, score, score_cached, score_stream, score_tokenized, score_tokenized_cached,
    score_with_stats, TokenScores,
};
pub use tokenize::{tokenize_request, tokenize_requests, tokenize_with, TokenizedRequest};
pub use types::{EngineOptions, EngineStats, Request, Score};
