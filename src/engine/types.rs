//! What goes into the engine and what comes out: requests, scores, the engine's options and
//! the statistics of what it computed.

use serde::{Deserialize, Serialize};

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
    /// Upper bound on the tokens of one forward (a segment with its ancestors that is longer
    /// still gets a forward alone).
    pub batch_tokens: usize,
    /// Compute each distinct token prefix once (off: every request in full, the baseline).
    pub share_prefixes: bool,
    /// Bytes of a prefix cache kept across the engine calls of one command (`score`'s chunks,
    /// `run`'s units, a server's batches); 0 keeps none.
    pub prefix_cache_bytes: usize,
}

impl Default for EngineOptions {
    fn default() -> Self {
        Self {
            batch_tokens: 8192,
            share_prefixes: true,
            prefix_cache_bytes: 0,
        }
    }
}

/// What a scoring run computed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EngineStats {
    pub requests: usize,
    /// Tokens of the requests as given (context + continuation).
    pub request_tokens: usize,
    /// Distinct token prefixes the model must read (nodes of the prefix tree).
    pub distinct_tokens: usize,
    /// Tokens actually run through the model (ancestors repeated across forwards included).
    pub computed_tokens: usize,
    pub forwards: usize,
    /// Requests scored again with finer activations as choices of a near tie
    /// (`quantized-tiebreak`); their second scoring's tokens are in `computed_tokens` and
    /// `rechecked_tokens`.
    #[serde(default)]
    pub rechecked_requests: usize,
    #[serde(default)]
    pub rechecked_tokens: usize,
    /// Past tokens read from a prefix cache by the forwards (counted once per forward).
    #[serde(default)]
    pub past_tokens: usize,
    /// Continuation tokens answered from a prefix cache's kept scores, not computed.
    #[serde(default)]
    pub answered_from_cache: usize,
}

impl EngineStats {
    pub fn add(&mut self, other: &EngineStats) {
        self.requests += other.requests;
        self.request_tokens += other.request_tokens;
        self.distinct_tokens += other.distinct_tokens;
        self.computed_tokens += other.computed_tokens;
        self.forwards += other.forwards;
        self.rechecked_requests += other.rechecked_requests;
        self.rechecked_tokens += other.rechecked_tokens;
        self.past_tokens += other.past_tokens;
        self.answered_from_cache += other.answered_from_cache;
    }
}
