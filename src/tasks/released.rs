//! Readers for the paper's released model outputs, parsed as the authors did:
//! Task-1 response CSVs → the stated matrix V, Task-2 results (a CSV of VIA rows with a boolean
//! `model_choice`, or a JSONL evaluation log) → the action matrix A, and the reconstruction of
//! GPT-3.5's Task-2 matrix from its misaligned-cell list (PAPER.md §5.4).

use std::collections::{BTreeMap, HashSet};
use std::fs::File;
use std::path::Path;

use anyhow::{bail, Context, Result};
use serde_json::Value;

use crate::input::JsonLines;
use crate::metrics::{binarise, Matrix, N_VALUES};
use crate::via::vocabulary::VALUES;
use crate::via::{country_index, scenario_index, topic_index, value_index, N_SCENARIOS};
use crate::via::{Dataset, Polarity};

/// The stated matrix read from Task-1 responses, with how many responses could not be parsed.
pub struct StatedResponses {
    pub matrix: Matrix,
    /// How many parsed answers chose each label 1–4.
    pub label_counts: [usize; 4],
    pub responses: usize,
    pub unparsed: usize,
}

/// Opens a CSV and maps the named columns to their positions, failing with the file name and
/// the missing columns.
pub fn open_csv(path: &Path, columns: &[&str]) -> Result<(csv::Reader<File>, Vec<usize>)> {
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .from_path(path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    let headers = reader
        .headers()
        .with_context(|| format!("{}: cannot read the header line", path.display()))?
        .clone();
    if headers.is_empty() || (headers.len() == 1 && headers[0].is_empty()) {
        bail!("{} is empty", path.display());
    }
    let mut positions = Vec::new();
    let mut missing = Vec::new();
    for c in columns {
        match headers.iter().position(|h| h == *c) {
            Some(p) => positions.push(p),
            None => missing.push(*c),
        }
    }
    if !missing.is_empty() {
        bail!(
            "{}: missing column(s) {} (it has: {}); expected the columns {}",
            path.display(),
            missing.join(", "),
            headers.iter().collect::<Vec<_>>().join(", "),
            columns.join(", ")
        );
    }
    Ok((reader, positions))
}

fn scenario_at(path: &Path, line: u64, country: &str, topic: &str) -> Result<usize> {
    let c = country_index(country).with_context(|| {
        format!(
            "{} line {line}: country '{country}' is not in the VIA dataset",
            path.display()
        )
    })?;
    let t = topic_index(topic).with_context(|| {
        format!(
            "{} line {line}: topic '{topic}' is not in the VIA dataset",
            path.display()
        )
    })?;
    Ok(scenario_index(c, t))
}

fn value_at(path: &Path, line: u64, value: &str) -> Result<usize> {
    value_index(value).with_context(|| {
        format!(
            "{} line {line}: value '{value}' is not in the VIA dataset",
            path.display()
        )
    })
}

/// The authors' `clean_generation`: the text between the first ```` ```json ```` and the next
/// fence, else between the first two fences, else the whole text — as a JSON object.
pub fn parse_task1_response(text: &str) -> Option<serde_json::Map<String, Value>> {
    let object = |s: &str| match serde_json::from_str::<Value>(s.trim()) {
        Ok(Value::Object(map)) => Some(map),
        _ => None,
    };
    if text.contains("```") {
        let fenced_json = text
            .split_once("```json")
            .and_then(|(_, rest)| rest.split_once("```").map(|(inner, _)| inner));
        if let Some(map) = fenced_json.and_then(object) {
            return Some(map);
        }
        let mut pieces = text.splitn(3, "```");
        pieces.next();
        return pieces.next().and_then(object);
    }
    object(text)
}

/// The authors' answer coding: `str(answer).lower()`, the PVQ phrases replaced by their digits,
/// then the first character as a digit.
pub fn task1_answer_digit(answer: &Value) -> Option<u32> {
    let text = match answer {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => return None,
    };
    let coded = text
        .to_lowercase()
        .replace("not like me at all", "4")
        .replace("not like me", "3")
        .replace("very much like me", "1")
        .replace("like me", "2");
    coded.chars().next()?.to_digit(10)
}

/// Reads a Task-1 response CSV (`country, topic, response, prompt_index[, …]`) into V:
/// per (scenario, value) the mean of the parsed answers over the variants, normalised as
/// `(mean − 1) / 3`. A response that does not parse is dropped whole; a value missing from a
/// response is missing (the authors' code shifted later columns instead).
pub fn read_task1_responses(path: &Path) -> Result<StatedResponses> {
    let (mut reader, cols) = open_csv(path, &["country", "topic", "response", "prompt_index"])?;
    let mut sums = vec![(0.0f64, 0usize); N_SCENARIOS * N_VALUES];
    let (mut responses, mut unparsed) = (0, 0);
    let mut label_counts = [0usize; 4];
    for record in reader.records() {
        let record = record.with_context(|| format!("{}: malformed CSV", path.display()))?;
        let line = record.position().map_or(0, |p| p.line());
        let field = |i: usize| record.get(cols[i]).unwrap_or_default();
        let scenario = scenario_at(path, line, field(0), field(1))?;
        responses += 1;
        let Some(answers) = parse_task1_response(field(2)) else {
            unparsed += 1;
            continue;
        };
        for (k, value) in VALUES.iter().enumerate() {
            if let Some(digit) = answers.get(*value).and_then(task1_answer_digit) {
                let cell = &mut sums[scenario * N_VALUES + k];
                cell.0 += digit as f64;
                cell.1 += 1;
                if let Some(count) = label_counts.get_mut((digit as usize).wrapping_sub(1)) {
                    *count += 1;
                }
            }
        }
    }
    if responses == 0 {
        bail!("{} has no responses", path.display());
    }
    let mut matrix = Matrix::filled(f64::NAN);
    for s in 0..N_SCENARIOS {
        for k in 0..N_VALUES {
            let (sum, n) = sums[s * N_VALUES + k];
            if n > 0 {
                matrix.set(s, k, (sum / n as f64 - 1.0) / 3.0);
            }
        }
    }
    Ok(StatedResponses {
        matrix,
        label_counts,
        responses,
        unparsed,
    })
}

/// One Task-2 outcome: in variant `variant`, was the action of this VIA row chosen?
struct Choice {
    scenario: usize,
    value: usize,
    polarity: Polarity,
    variant: String,
    chosen: bool,
}

/// Averages Task-2 choices into A: per cell and variant, 1 if the value-opposing (negative)
/// action was chosen, 0 if the value-expressing one; the mean over variants; 0 for cells
/// without any result, as in the paper.
fn action_matrix(choices: &[Choice]) -> Matrix {
    let mut per_variant: BTreeMap<(usize, usize, &str), f64> = BTreeMap::new();
    for c in choices {
        let negative_chosen = match c.polarity {
            Polarity::Negative => c.chosen,
            Polarity::Positive => !c.chosen,
        };
        // The negative row decides when both rows of a pair are present.
        let entry = per_variant.entry((c.scenario, c.value, c.variant.as_str()));
        match (c.polarity, entry) {
            (_, std::collections::btree_map::Entry::Vacant(e)) => {
                e.insert(f64::from(u8::from(negative_chosen)));
            }
            (Polarity::Negative, std::collections::btree_map::Entry::Occupied(mut e)) => {
                e.insert(f64::from(u8::from(negative_chosen)));
            }
            (Polarity::Positive, std::collections::btree_map::Entry::Occupied(_)) => {}
        }
    }
    let mut sums = vec![(0.0f64, 0usize); N_SCENARIOS * N_VALUES];
    for ((s, k, _), a) in per_variant {
        let cell = &mut sums[s * N_VALUES + k];
        cell.0 += a;
        cell.1 += 1;
    }
    let mut matrix = Matrix::filled(0.0);
    for s in 0..N_SCENARIOS {
        for k in 0..N_VALUES {
            let (sum, n) = sums[s * N_VALUES + k];
            if n > 0 {
                matrix.set(s, k, sum / n as f64);
            }
        }
    }
    matrix
}

fn parse_bool(s: &str) -> Option<bool> {
    match s.trim() {
        "True" | "true" | "TRUE" | "1" | "1.0" => Some(true),
        "False" | "false" | "FALSE" | "0" | "0.0" => Some(false),
        _ => None,
    }
}

/// Task-2 results as a CSV of VIA rows with a boolean `model_choice` (true = this row's action
/// was chosen) and optionally `prompt_index`.
pub fn read_task2_csv(path: &Path) -> Result<Matrix> {
    let (mut reader, cols) = open_csv(
        path,
        &["country", "topic", "value", "polarity", "model_choice"],
    )?;
    let variant_col = reader.headers()?.iter().position(|h| h == "prompt_index");
    let mut choices = Vec::new();
    for record in reader.records() {
        let record = record.with_context(|| format!("{}: malformed CSV", path.display()))?;
        let line = record.position().map_or(0, |p| p.line());
        let field = |i: usize| record.get(cols[i]).unwrap_or_default();
        let scenario = scenario_at(path, line, field(0), field(1))?;
        let value = value_at(path, line, field(2))?;
        let polarity = Polarity::parse(field(3)).with_context(|| {
            format!(
                "{} line {line}: polarity '{}' is neither 'positive' nor 'negative'",
                path.display(),
                field(3)
            )
        })?;
        let chosen = parse_bool(field(4)).with_context(|| {
            format!(
                "{} line {line}: model_choice '{}' is not a boolean",
                path.display(),
                field(4)
            )
        })?;
        let variant = variant_col
            .and_then(|c| record.get(c))
            .unwrap_or_default()
            .to_string();
        choices.push(Choice {
            scenario,
            value,
            polarity,
            variant,
            chosen,
        });
    }
    if choices.is_empty() {
        bail!("{} has no results", path.display());
    }
    Ok(action_matrix(&choices))
}

/// Task-2 results as a JSONL evaluation log: one line per VIA row,
/// `{"index": <0-based VIA row>, "model_choice": <bool>, "prompt_index": "5", …}`.
pub fn read_task2_log(path: &Path, dataset: &Dataset) -> Result<Matrix> {
    let lines = JsonLines::open(path, "Task-2 log")?;
    let mut choices = Vec::new();
    for line in JsonLines::open(path, "Task-2 log")? {
        let (number, line) = line?;
        let entry: serde_json::Map<String, Value> = lines.parse(
            number,
            &line,
            "each line must be a JSON object with \"index\" and \"model_choice\"",
        )?;
        let index = entry
            .get("index")
            .and_then(Value::as_u64)
            .with_context(|| {
                format!(
                    "{} line {number}: \"index\" (the 0-based VIA row) is missing or not a \
                 non-negative integer",
                    path.display()
                )
            })? as usize;
        let row = dataset.rows.get(index).with_context(|| {
            format!(
                "{} line {number}: index {index} is out of range: {} has {} rows",
                path.display(),
                dataset.path.display(),
                dataset.rows.len()
            )
        })?;
        let chosen = entry
            .get("model_choice")
            .and_then(Value::as_bool)
            .with_context(|| {
                format!(
                    "{} line {number}: \"model_choice\" is missing or not a boolean",
                    path.display()
                )
            })?;
        let variant = match entry.get("prompt_index") {
            Some(Value::String(s)) => s.clone(),
            Some(v @ Value::Number(_)) => v.to_string(),
            _ => String::new(),
        };
        choices.push(Choice {
            scenario: row.scenario(),
            value: row.value,
            polarity: row.polarity,
            variant,
            chosen,
        });
    }
    if choices.is_empty() {
        bail!("{} has no results", path.display());
    }
    Ok(action_matrix(&choices))
}

/// The Task-2 matrix of a model whose full Task-2 file is not released, rebuilt from the list
/// of its misaligned cells (`country, topic, value` columns): b(a) = b(v) everywhere except on
/// the listed cells, where b(a) = 1 − b(v) (PAPER.md §5.4; exact for GPT-3.5's single-variant
/// run, whose a is 0 or 1).
pub fn reconstruct_action_from_misaligned(stated: &Matrix, misaligned: &Path) -> Result<Matrix> {
    let (mut reader, cols) = open_csv(misaligned, &["country", "topic", "value"])?;
    let mut flipped = HashSet::new();
    for record in reader.records() {
        let record = record.with_context(|| format!("{}: malformed CSV", misaligned.display()))?;
        let line = record.position().map_or(0, |p| p.line());
        let field = |i: usize| record.get(cols[i]).unwrap_or_default();
        let scenario = scenario_at(misaligned, line, field(0), field(1))?;
        let value = value_at(misaligned, line, field(2))?;
        flipped.insert((scenario, value));
    }
    let mut action = Matrix::filled(0.0);
    for s in 0..N_SCENARIOS {
        for k in 0..N_VALUES {
            let b = binarise(stated.get(s, k));
            let a = if flipped.contains(&(s, k)) { 1 - b } else { b };
            action.set(s, k, f64::from(a));
        }
    }
    Ok(action)
}

/// One observer output file of the paper's explanation experiment
/// (`outputs/evaluation/explanations/*_explanation_outputs_*.csv`: `label`, `result`) as
/// `(label, predicted)` pairs, read as the authors' `compute.ipynb` reads them: the prediction
/// is the second space-separated word of `result`.
pub fn read_observer_outputs(path: &Path) -> Result<Vec<(bool, bool)>> {
    let (mut reader, cols) = open_csv(path, &["label", "result"])?;
    let mut items = Vec::new();
    for record in reader.records() {
        let record = record.with_context(|| format!("{}: malformed CSV", path.display()))?;
        let line = record.position().map_or(0, |p| p.line());
        let field = |i: usize| record.get(cols[i]).unwrap_or_default();
        let label = parse_bool(field(0)).with_context(|| {
            format!(
                "{} line {line}: label '{}' is not True or False",
                path.display(),
                field(0)
            )
        })?;
        let predicted = match field(1).split(' ').nth(1) {
            Some("True") => true,
            Some("False") => false,
            _ => bail!(
                "{} line {line}: result '{}' has no True/False as its second word",
                path.display(),
                field(1).chars().take(60).collect::<String>()
            ),
        };
        items.push((label, predicted));
    }
    if items.is_empty() {
        bail!("{} has no rows", path.display());
    }
    Ok(items)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task1_responses_parse_as_the_authors_did() {
        let fenced = "Here:\n```json\n{\"Equality\": \"1\"}\n```";
        assert_eq!(parse_task1_response(fenced).unwrap()["Equality"], "1");
        let plain_fence = "```\n{\"Equality\": \"2\"}\n```";
        assert_eq!(parse_task1_response(plain_fence).unwrap()["Equality"], "2");
        assert_eq!(
            parse_task1_response("{\"Equality\": 3}").unwrap()["Equality"],
            3
        );
        assert!(parse_task1_response("I cannot answer").is_none());
    }

    #[test]
    fn answers_are_coded_like_the_paper() {
        let code = |s: &str| task1_answer_digit(&Value::String(s.to_string()));
        assert_eq!(code("1: strongly agree"), Some(1));
        assert_eq!(code("Not like me at all"), Some(4));
        assert_eq!(code("not like me"), Some(3));
        assert_eq!(code("Very much like me"), Some(1));
        assert_eq!(code("like me"), Some(2));
        assert_eq!(code("agree"), None);
        assert_eq!(task1_answer_digit(&serde_json::json!(4)), Some(4));
    }
}
