//! Whole prompts scored at every position, as an OpenAI-style completions server reports them
//! with `echo` and `logprobs`: the log-probability of each prompt token after the first given
//! the tokens before it, the model's most likely token at each position, and optionally the
//! most likely token after the prompt (a one-token greedy generation). The prompts of one call
//! share one prefix tree, so a context sent once per answer choice is computed once.

use anyhow::{bail, Result};

use super::cache::PrefixCache;
use super::score::score_tokenized_cached;
use super::tokenize::TokenizedRequest;
use super::types::{EngineOptions, EngineStats};
use crate::model::Model;

/// One prompt of token ids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PromptRequest {
    pub tokens: Vec<u32>,
    /// Also predict the token after the prompt.
    pub next: bool,
}

/// What the model says at one position.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PositionScore {
    /// log p(token at this position | the tokens before it).
    pub logprob: f64,
    /// The most likely token at this position and its log-probability.
    pub argmax: u32,
    pub argmax_logprob: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PromptScores {
    /// One per prompt token after the first (the first has no context to be predicted from).
    pub positions: Vec<PositionScore>,
    /// With `next`: the most likely token after the prompt and its log-probability.
    pub next: Option<(u32, f64)>,
}

/// Why a prompt cannot be scored; `prompt` is its index in the call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PromptError {
    #[error("prompt {prompt} is empty; send at least one token")]
    Empty { prompt: usize },
    #[error(
        "prompt {prompt} has token id {token} at position {position}, outside the model's \
         vocabulary of {vocab} tokens"
    )]
    UnknownToken {
        prompt: usize,
        position: usize,
        token: u32,
        vocab: usize,
    },
    #[error(
        "prompt {prompt} is {tokens} tokens, longer than the model's context window of \
         {window} tokens; shorten it"
    )]
    TooLong {
        prompt: usize,
        tokens: usize,
        window: usize,
    },
}

/// Checks that `model` can score `prompt` (the `index`-th of its call).
pub fn check_prompt(model: &Model, index: usize, prompt: &[u32]) -> Result<(), PromptError> {
    if prompt.is_empty() {
        return Err(PromptError::Empty { prompt: index });
    }
    let vocab = model.tokenizer.vocab_size();
    if let Some((position, &token)) = prompt
        .iter()
        .enumerate()
        .find(|&(_, &t)| t as usize >= vocab)
    {
        return Err(PromptError::UnknownToken {
            prompt: index,
            position,
            token,
            vocab,
        });
    }
    let window = model.context_length();
    if prompt.len() > window {
        return Err(PromptError::TooLong {
            prompt: index,
            tokens: prompt.len(),
            window,
        });
    }
    Ok(())
}

/// Scores `prompts` together, one result per prompt in input order; with a prefix cache,
/// positions it holds are answered from it (see [`score_tokenized_cached`]).
pub fn score_prompts(
    model: &Model,
    prompts: &[PromptRequest],
    options: &EngineOptions,
    cache: Option<&mut PrefixCache>,
) -> Result<(Vec<PromptScores>, EngineStats)> {
    let mut requests = Vec::with_capacity(prompts.len());
    for (index, prompt) in prompts.iter().enumerate() {
        if let Err(e) = check_prompt(model, index, &prompt.tokens) {
            bail!(e);
        }
        let mut tokens = prompt.tokens.clone();
        if prompt.next {
            // A stand-in target after the prompt: the model reads the whole prompt, and the
            // row that would score it holds the distribution of the next token, whose argmax
            // is all that is kept.
            tokens.push(0);
        }
        requests.push(TokenizedRequest {
            tokens,
            context_len: 1,
        });
    }
    let (scores, stats) = score_tokenized_cached(model, &requests, options, None, cache)?;
    let results = prompts
        .iter()
        .zip(scores)
        .map(|(prompt, score)| {
            let mut positions: Vec<PositionScore> = score
                .token_logprobs
                .iter()
                .zip(&score.top)
                .map(|(&logprob, &(argmax, argmax_logprob))| PositionScore {
                    logprob,
                    argmax,
                    argmax_logprob,
                })
                .collect();
            let next = match prompt.next {
                true => positions.pop().map(|p| (p.argmax, p.argmax_logprob)),
                false => None,
            };
            PromptScores { positions, next }
        })
        .collect();
    Ok((results, stats))
}
