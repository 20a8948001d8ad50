//! Request files (JSONL of `{"id", "context", "continuation"}`) and score files (JSONL of
//! `{"id", "logprob", "n_tokens", "greedy", "token_logprobs"}`).

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;

use anyhow::{bail, Context, Result};

use super::{Request, Score};
use crate::output::write_atomically;

/// Reads a request file; a bad line is reported with its number and what is wrong with it.
pub fn read_requests(path: &Path) -> Result<Vec<Request>> {
    RequestLines::open(path)?.collect()
}

/// The requests of a JSONL file, one at a time (blank lines skipped).
pub struct RequestLines {
    path: std::path::PathBuf,
    lines: std::iter::Enumerate<std::io::Lines<BufReader<File>>>,
}

impl RequestLines {
    pub fn open(path: &Path) -> Result<Self> {
        let file = File::open(path)
            .with_context(|| format!("cannot open request file {}", path.display()))?;
        Ok(Self {
            path: path.to_path_buf(),
            lines: BufReader::new(file).lines().enumerate(),
        })
    }

    fn parse(&self, number: usize, line: &str) -> Result<Request> {
        let request: Request = serde_json::from_str(line).map_err(|e| {
            anyhow::anyhow!(
                "{} line {number}: {e}; each line must be a JSON object with string fields \
                 \"id\", \"context\" and \"continuation\"",
                self.path.display()
            )
        })?;
        if request.context.is_empty() && request.continuation.is_empty() {
            bail!(
                "{} line {number}: request '{}' has an empty context and an empty continuation",
                self.path.display(),
                request.id
            );
        }
        Ok(request)
    }
}

impl Iterator for RequestLines {
    type Item = Result<Request>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let (i, line) = self.lines.next()?;
            let number = i + 1;
            let line = match line {
                Ok(line) => line,
                Err(_) => {
                    return Some(Err(anyhow::anyhow!(
                        "{} line {number}: cannot read (is it UTF-8 text?)",
                        self.path.display()
                    )))
                }
            };
            if line.trim().is_empty() {
                continue;
            }
            return Some(self.parse(number, &line));
        }
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
    crate::output::write_json_line(out, score)
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
