//! The lm-evaluation-harness split of a request into context and continuation tokens:
//! trailing whitespace of the context moves to the continuation, and the continuation is
//! `tokens(context + continuation)[len(tokens(context))..]`, with no prefix check.

use anyhow::{bail, Result};

use super::Request;
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
    let window = model.context_length();
    if tokenized.input().len() > window {
        bail!(
            "context and continuation are {} tokens, longer than the model's context window of \
             {window} tokens; shorten the context",
            tokenized.tokens.len()
        );
    }
    Ok(tokenized)
}

/// The lm-eval split of a request with `tokenizer`, without the context-window check.
pub fn tokenize_with(tokenizer: &TextTokenizer, request: &Request) -> Result<TokenizedRequest> {
    let trimmed = request.context.trim_end_matches(is_python_space);
    let (context, continuation) = (
        trimmed,
        format!(
            "{}{}",
            &request.context[trimmed.len()..],
            request.continuation
        ),
    );
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
        let context_ids = tokenizer.encode(context)?;
        let whole = tokenizer.encode(&format!("{context}{continuation}"))?;
        TokenizedRequest {
            context_len: context_ids.len().min(whole.len()),
            tokens: whole,
        }
    })
}
