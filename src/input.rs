//! Reading the files users hand to valuelens: text lines and JSON that may start with a UTF-8
//! byte-order mark (as files written by common Windows tools do), and JSONL lines that must be
//! JSON objects. CSV files go through the `csv` crate, which skips a byte-order mark itself.

use std::fs::File;
use std::io::{BufRead, BufReader, Lines};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::de::DeserializeOwned;

const BOM: char = '\u{feff}';

/// `text` without a leading byte-order mark.
pub fn strip_bom(text: &str) -> &str {
    text.strip_prefix(BOM).unwrap_or(text)
}

/// A JSON file (config.json, tokenizer_config.json, …), a byte-order mark skipped.
pub fn read_json(path: &Path) -> Result<serde_json::Value> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_str(strip_bom(&text))
        .with_context(|| format!("{} is not valid JSON", path.display()))
}

/// The non-blank lines of a JSONL file with their 1-based line numbers, a byte-order mark on
/// the first line skipped; a line that is not UTF-8 is an error naming it.
pub struct JsonLines {
    path: PathBuf,
    lines: std::iter::Enumerate<Lines<BufReader<File>>>,
}

impl JsonLines {
    /// Opens `path`; `what` names the kind of file in the error when it cannot be opened.
    pub fn open(path: &Path, what: &str) -> Result<Self> {
        let file =
            File::open(path).with_context(|| format!("cannot open {what} {}", path.display()))?;
        Ok(Self {
            path: path.to_path_buf(),
            lines: BufReader::new(file).lines().enumerate(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Parses line `number` as a `T`, which must be written as a JSON object (serde would
    /// also read a struct from an array, `["a", "b", "c"]`). `expected` says what a line must
    /// hold; it ends every error.
    pub fn parse<T: DeserializeOwned>(
        &self,
        number: usize,
        line: &str,
        expected: &str,
    ) -> Result<T> {
        if !line.trim_start().starts_with('{') {
            bail!(
                "{} line {number}: not a JSON object; {expected}",
                self.path.display()
            );
        }
        serde_json::from_str(line)
            .map_err(|e| anyhow::anyhow!("{} line {number}: {e}; {expected}", self.path.display()))
    }
}

impl Iterator for JsonLines {
    /// (line number, line)
    type Item = Result<(usize, String)>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let (i, line) = self.lines.next()?;
            let number = i + 1;
            let mut line = match line {
                Ok(line) => line,
                Err(_) => {
                    return Some(Err(anyhow::anyhow!(
                        "{} line {number}: cannot read (is it UTF-8 text?)",
                        self.path.display()
                    )))
                }
            };
            if number == 1 && line.starts_with(BOM) {
                line.remove(0);
            }
            if !line.trim().is_empty() {
                return Some(Ok((number, line)));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    struct Pair {
        a: String,
        b: u32,
    }

    #[test]
    fn lines_skip_a_byte_order_mark_and_blank_lines_and_refuse_arrays() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.jsonl");
        std::fs::write(&path, "\u{feff}{\"a\": \"x\", \"b\": 1}\n\n[\"y\", 2]\n").unwrap();
        let lines = JsonLines::open(&path, "test file").unwrap();
        let parsed: Vec<(usize, String)> = JsonLines::open(&path, "test file")
            .unwrap()
            .collect::<Result<_>>()
            .unwrap();
        assert_eq!(parsed.len(), 2);
        let first: Pair = lines.parse(parsed[0].0, &parsed[0].1, "pairs").unwrap();
        assert_eq!((first.a.as_str(), first.b), ("x", 1));
        let err = lines
            .parse::<Pair>(parsed[1].0, &parsed[1].1, "each line is a pair object")
            .unwrap_err()
            .to_string();
        assert!(err.contains("x.jsonl line 3: not a JSON object"), "{err}");
        assert!(err.ends_with("each line is a pair object"), "{err}");
    }

    #[test]
    fn json_files_may_start_with_a_byte_order_mark() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        std::fs::write(&path, "\u{feff}{\"model_type\": \"llama\"}").unwrap();
        assert_eq!(read_json(&path).unwrap()["model_type"], "llama");
    }
}
