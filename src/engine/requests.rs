//! Request files (JSONL of `{"id", "context", "continuation"}`) and score files (JSONL of
//! `{"id", "logprob", "n_tokens", "greedy", "token_logprobs"}`).

use std::io::Write;
use std::path::Path;

use anyhow::{bail, Result};

use super::types::{Request, Score};
use crate::input::JsonLines;
use crate::output::{write_atomically, write_json_line};

/// Reads a request file; a bad line is reported with its number and what is wrong with it.
pub fn read_requests(path: &Path) -> Result<Vec<Request>> {
    RequestLines::open(path)?.collect()
}

/// The requests of a JSONL file, one at a time (blank lines skipped).
pub struct RequestLines {
    lines: JsonLines,
}

const REQUEST_SHAPE: &str =
    "each line must be a JSON object with string fields \"id\", \"context\" and \"continuation\"";

impl RequestLines {
    pub fn open(path: &Path) -> Result<Self> {
        Ok(Self {
            lines: JsonLines::open(path, "request file")?,
        })
    }

    fn parse(&self, number: usize, line: &str) -> Result<Request> {
        let request: Request = self.lines.parse(number, line, REQUEST_SHAPE)?;
        if request.context.is_empty() && request.continuation.is_empty() {
            bail!(
                "{} line {number}: request '{}' has an empty context and an empty continuation",
                self.lines.path().display(),
                request.id
            );
        }
        Ok(request)
    }
}

impl Iterator for RequestLines {
    type Item = Result<Request>;

    fn next(&mut self) -> Option<Self::Item> {
        Some(match self.lines.next()? {
            Ok((number, line)) => self.parse(number, &line),
            Err(e) => Err(e),
        })
    }
}

/// Checks every line of a request file without keeping the requests; returns their number.
pub fn validate_requests(path: &Path) -> Result<usize> {
    let mut n = 0;
    for request in RequestLines::open(path)? {
        request?;
        n += 1;
    }
    Ok(n)
}

/// Writes one score as a JSONL line.
pub fn write_score(out: &mut dyn Write, score: &Score) -> Result<()> {
    write_json_line(out, score)
}

/// Writes scores as JSONL, all or nothing.
pub fn write_scores(path: &Path, scores: &[Score]) -> Result<()> {
    write_atomically(path, |out| {
        for score in scores {
            write_score(out, score)?;
        }
        Ok(())
    })
}
