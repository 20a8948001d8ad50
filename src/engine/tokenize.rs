//! The lm-evaluation-harness split of a request into context and continuation tokens:
//! trailing whitespace of the context moves to the continuation, and the continuation is
//! `tokens(context + continuation)[len(tokens(context))..]`, with no prefix check.

use std::collections::HashMap;

use anyhow::{bail, Context, Result};
use rayon::prelude::*;

use super::types::Request;
use crate::model::tokenizer::TextTokenizer;
use crate::model::Model;

/// A request as token ids: `tokens = context ++ continuation`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenizedRequest {
    pub tokens: Vec<u32>,
    pub context_len: usize,
}

impl TokenizedRequest {
    pub fn context(&self) -> &[u32] {
        &self.tokens[..self.context_len]
    }

    pub fn continuation(&self) -> &[u32] {
        &self.tokens[self.context_len..]
    }

    /// What the model must read: every token but the last (which is only predicted).
    pub fn input(&self) -> &[u32] {
        &self.tokens[..self.tokens.len().saturating_sub(1)]
    }
}

/// Python's `str.isspace`, which lm-eval's `rstrip()` uses: Unicode White_Space plus the
/// ASCII information separators U+001C..U+001F.
fn is_python_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

pub fn tokenize_request(model: &Model, request: &Request) -> Result<TokenizedRequest> {
    let tokenized = tokenize_with(&model.tokenizer, request)?;
    check_window(model, &tokenized)?;
    Ok(tokenized)
}

fn check_window(model: &Model, tokenized: &TokenizedRequest) -> Result<()> {
    let window = model.context_length();
    if tokenized.input().len() > window {
        bail!(
            "context and continuation are {} tokens, longer than the model's context window of \
             {window} tokens; shorten the context",
            tokenized.tokens.len()
        );
    }
    Ok(())
}

/// Tokenizes `requests` in parallel, in order, encoding each distinct context once: the
/// options of one question share their context, so this saves one encode in two per option
/// after the first (VIA's Task 1: 1,792 context encodes per scenario become 448).
pub fn tokenize_requests(model: &Model, requests: &[Request]) -> Result<Vec<TokenizedRequest>> {
    let tokenizer = &model.tokenizer;
    let mut index: HashMap<&str, usize> = HashMap::new();
    // Each distinct context, with the first request that has it (named in errors).
    let mut contexts: Vec<(&str, &Request)> = Vec::new();
    let slots: Vec<usize> = requests
        .iter()
        .map(|r| {
            let (context, _) = split(r);
            *index.entry(context).or_insert_with(|| {
                contexts.push((context, r));
                contexts.len() - 1
            })
        })
        .collect();
    let context_ids: Vec<Vec<u32>> = contexts
        .par_iter()
        .map(|(context, request)| match context.is_empty() {
            true => Ok(Vec::new()),
            false => tokenizer
                .encode(context)
                .with_context(|| format!("request '{}'", request.id)),
        })
        .collect::<Result<_>>()?;
    requests
        .par_iter()
        .zip(slots.par_iter())
        .map(|(request, &slot)| {
            let tokenized = assemble(tokenizer, request, &context_ids[slot])
                .and_then(|t| check_window(model, &t).map(|()| t))
                .with_context(|| format!("request '{}'", request.id))?;
            Ok(tokenized)
        })
        .collect::<Result<Vec<_>>>()
}

/// lm-eval's split: trailing whitespace of the context moves to the front of the continuation.
fn split(request: &Request) -> (&str, String) {
    let trimmed = request.context.trim_end_matches(is_python_space);
    (
        trimmed,
        format!(
            "{}{}",
            &request.context[trimmed.len()..],
            request.continuation
        ),
    )
}

/// The lm-eval split of a request with `tokenizer`, without the context-window check.
pub fn tokenize_with(tokenizer: &TextTokenizer, request: &Request) -> Result<TokenizedRequest> {
    let (context, _) = split(request);
    let context_ids = match context.is_empty() {
        true => Vec::new(),
        false => tokenizer.encode(context)?,
    };
    assemble(tokenizer, request, &context_ids)
}

/// The request's tokens, given its (trimmed) context's own encoding.
fn assemble(
    tokenizer: &TextTokenizer,
    request: &Request,
    context_ids: &[u32],
) -> Result<TokenizedRequest> {
    let (context, continuation) = split(request);
    Ok(if context.is_empty() {
        // lm-eval scores a continuation without context after the model's prefix token.
        let prefix = tokenizer.prefix_token();
        let mut continuation_ids = tokenizer.encode(&continuation)?;
        if continuation_ids.first() == Some(&prefix) {
            continuation_ids.remove(0);
        }
        let mut tokens = vec![prefix];
        tokens.extend(continuation_ids);
        TokenizedRequest {
            tokens,
            context_len: 1,
        }
    } else {
        let whole = tokenizer.encode(&format!("{context}{continuation}"))?;
        TokenizedRequest {
            context_len: context_ids.len().min(whole.len()),
            tokens: whole,
        }
    })
}
