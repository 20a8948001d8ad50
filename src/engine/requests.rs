//! Request files (JSONL of `{"id", "context", "continuation"}`) and score files (JSONL of
//! `{"id", "logprob", "n_tokens", "greedy", "token_logprobs"}`).

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;

use anyhow::{bail, Context, Result};

use super::{Request, Score};
use crate::output::write_atomically;

/// Reads a request file; a bad line is reported with its number and what is wrong with it.
pub fn read_requests(path: &Path) -> Result<Vec<Request>> {
    let file =
        File::open(path).with_context(|| format!("cannot open request file {}", path.display()))?;
    let mut requests = Vec::new();
    for (i, line) in BufReader::new(file).lines().enumerate() {
        let number = i + 1;
        let line = line.with_context(|| {
            format!(
                "{} line {number}: cannot read (is it UTF-8 text?)",
                path.display()
            )
        })?;
        if line.trim().is_empty() {
            continue;
        }
        let request: Request = serde_json::from_str(&line).map_err(|e| {
            anyhow::anyhow!(
                "{} line {number}: {e}; each line must be a JSON object with string fields \
                 \"id\", \"context\" and \"continuation\"",
                path.display()
            )
        })?;
        if request.context.is_empty() && request.continuation.is_empty() {
            bail!(
                "{} line {number}: request '{}' has an empty context and an empty continuation",
                path.display(),
                request.id
            );
        }
        requests.push(request);
    }
    Ok(requests)
}

/// Writes scores as JSONL, all or nothing.
pub fn write_scores(path: &Path, scores: &[Score]) -> Result<()> {
    write_atomically(path, |out| {
        for score in scores {
            serde_json::to_writer(&mut *out, score)?;
            out.write_all(b"\n")?;
        }
        Ok(())
    })
}
