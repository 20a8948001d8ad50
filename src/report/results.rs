//! A run's item files: `stated.csv` (one row per Task-1 question: scenario, variant, value, the
//! four options' log-probabilities and renormalised probabilities, hard and soft score) and
//! `action.csv` (one row per Task-2 question: which option was the negative action, both
//! options' log-probabilities, p(negative) and the hard choice); for a debiased run the same
//! with PriDe's prior divided out in extra columns, and `pride.csv` (the sampled questions in
//! their other orders). Long format, plain columns, so pandas opens them as they are; read
//! back exactly by `valuelens metrics`. Also a report's `cells.csv` (V and A per cell).

use std::path::Path;

use anyhow::{bail, Context, Result};

use crate::metrics::binarise;
use crate::metrics::pride::Prior;
use crate::output::write_atomically;
use crate::tasks::action::ActionItem;
use crate::tasks::pride::{debias_action, debias_stated, PermutedItem};
use crate::tasks::stated::StatedItem;
use crate::via::vocabulary::{COUNTRIES, TOPICS, VALUES};
use crate::via::{country_index, scenario_index, topic_index, value_index};

pub const STATED_COLUMNS: [&str; 14] = [
    "country",
    "topic",
    "value",
    "variant",
    "logprob_1",
    "logprob_2",
    "logprob_3",
    "logprob_4",
    "p_1",
    "p_2",
    "p_3",
    "p_4",
    "hard",
    "soft",
];

pub const ACTION_COLUMNS: [&str; 9] = [
    "country",
    "topic",
    "value",
    "variant",
    "negative_option",
    "logprob_option_1",
    "logprob_option_2",
    "p_negative",
    "chose_negative",
];

fn names(scenario: usize, value: usize) -> [&'static str; 3] {
    [
        COUNTRIES[scenario / TOPICS.len()],
        TOPICS[scenario % TOPICS.len()],
        VALUES[value],
    ]
}

/// Writes one CSV row per item (all or nothing): the item's country, topic and value, then
/// the fields `rest` gives. Floats are written in their shortest exact form, so reading the
/// file back gives the same numbers.
fn write_rows<T>(
    path: &Path,
    columns: &[&str],
    items: &[T],
    cell: impl Fn(&T) -> (usize, usize),
    rest: impl Fn(&T) -> Vec<String>,
) -> Result<()> {
    write_atomically(path, |out| {
        let mut csv = csv::Writer::from_writer(out);
        csv.write_record(columns)?;
        for item in items {
            let (scenario, value) = cell(item);
            let mut row: Vec<String> = names(scenario, value)
                .iter()
                .map(|s| s.to_string())
                .collect();
            row.extend(rest(item));
            csv.write_record(&row)?;
        }
        csv.flush()?;
        Ok(())
    })
}

/// The columns a debiased run adds to `stated.csv`, after the raw ones.
pub const STATED_DEBIASED_COLUMNS: [&str; 6] = [
    "debiased_p_1",
    "debiased_p_2",
    "debiased_p_3",
    "debiased_p_4",
    "debiased_hard",
    "debiased_soft",
];

/// The columns a debiased run adds to `action.csv`, after the raw ones.
pub const ACTION_DEBIASED_COLUMNS: [&str; 2] = ["debiased_p_negative", "debiased_chose_negative"];

fn with_debiased(
    columns: &[&'static str],
    debiased: &[&'static str],
    prior: bool,
) -> Vec<&'static str> {
    let mut all = columns.to_vec();
    if prior {
        all.extend(debiased);
    }
    all
}

/// Writes `stated.csv`: the raw log-probabilities, probabilities and scores, and when `prior`
/// is given (`--debias pride`) the same with the prior divided out.
pub fn write_stated(path: &Path, items: &[StatedItem], prior: Option<&Prior<4>>) -> Result<()> {
    let columns = with_debiased(&STATED_COLUMNS, &STATED_DEBIASED_COLUMNS, prior.is_some());
    write_rows(
        path,
        &columns,
        items,
        |item| (item.scenario, item.value),
        |item| {
            let mut row = vec![item.variant.to_string()];
            row.extend(item.logprobs.iter().map(|x| x.to_string()));
            row.extend(item.probabilities().iter().map(|x| x.to_string()));
            row.push(item.hard().to_string());
            row.push(item.soft().to_string());
            if let Some(prior) = prior {
                let debiased = &debias_stated(std::slice::from_ref(item), Some(prior))[0];
                row.extend(debiased.probabilities().iter().map(|x| x.to_string()));
                row.push(debiased.hard().to_string());
                row.push(debiased.soft().to_string());
            }
            row
        },
    )
}

/// Writes `action.csv`: the raw log-probabilities, p(negative) and choice, and when `prior` is
/// given the same with the prior divided out.
pub fn write_action(path: &Path, items: &[ActionItem], prior: Option<&Prior<2>>) -> Result<()> {
    let columns = with_debiased(&ACTION_COLUMNS, &ACTION_DEBIASED_COLUMNS, prior.is_some());
    write_rows(
        path,
        &columns,
        items,
        |item| (item.scenario, item.value),
        |item| {
            let mut row = vec![item.variant.to_string(), item.negative_option.to_string()];
            row.extend(item.logprobs.iter().map(|x| x.to_string()));
            row.push(item.p_negative().to_string());
            row.push(u8::from(item.chose_negative()).to_string());
            if let Some(prior) = prior {
                let debiased = &debias_action(std::slice::from_ref(item), Some(prior))[0];
                row.push(debiased.p_negative().to_string());
                row.push(u8::from(debiased.chose_negative()).to_string());
            }
            row
        },
    )
}

pub const CELLS_COLUMNS: [&str; 7] = [
    "country",
    "topic",
    "value",
    "stated",
    "action",
    "stated_disagree",
    "action_disagree",
];

/// The name of a report's per-cell file.
pub const CELLS_FILE: &str = "cells.csv";

/// Writes `cells.csv`: per cell the measures were computed over, V and A (normalised, 1 =
/// disagree / the value-opposing action) and their binarised labels as the measures take them.
pub fn write_cells(path: &Path, cells: &[(usize, usize, f64, f64)]) -> Result<()> {
    write_rows(
        path,
        &CELLS_COLUMNS,
        cells,
        |c| (c.0, c.1),
        |c| {
            vec![
                c.2.to_string(),
                c.3.to_string(),
                binarise(c.2).to_string(),
                binarise(c.3).to_string(),
            ]
        },
    )
}

pub const PRIDE_COLUMNS: [&str; 10] = [
    "country",
    "topic",
    "value",
    "variant",
    "task",
    "shift",
    "logprob_1",
    "logprob_2",
    "logprob_3",
    "logprob_4",
];

/// The name of a debiased run's file of permuted questions, beside its `stated.csv`.
pub const PRIDE_FILE: &str = "pride.csv";

/// Writes `pride.csv`: PriDe's sampled questions in their other orders, one row per question
/// and shift (Task 2 leaves labels 3 and 4 empty). With `stated.csv` and `action.csv`, which
/// hold each question's own order, it is all the priors are estimated from.
pub fn write_pride(
    path: &Path,
    stated: &[PermutedItem<4>],
    action: &[PermutedItem<2>],
) -> Result<()> {
    let rows: Vec<(usize, usize, Vec<String>)> = stated
        .iter()
        .map(|p| {
            (
                p.scenario,
                p.value,
                pride_fields(1, p.variant, p.shift, &p.logprobs),
            )
        })
        .chain(action.iter().map(|p| {
            (
                p.scenario,
                p.value,
                pride_fields(2, p.variant, p.shift, &p.logprobs),
            )
        }))
        .collect();
    write_rows(path, &PRIDE_COLUMNS, &rows, |r| (r.0, r.1), |r| r.2.clone())
}

fn pride_fields(task: u8, variant: usize, shift: usize, logprobs: &[f64]) -> Vec<String> {
    let mut fields = vec![variant.to_string(), task.to_string(), shift.to_string()];
    fields.extend((0..4).map(|i| logprobs.get(i).map_or(String::new(), |x| x.to_string())));
    fields
}

/// Reads a run's `pride.csv` back into its Task-1 and Task-2 permuted questions.
pub fn read_pride(path: &Path) -> Result<(Vec<PermutedItem<4>>, Vec<PermutedItem<2>>)> {
    let mut stated = Vec::new();
    let mut action = Vec::new();
    let variants = crate::prompts::TASK1_VARIANTS + crate::prompts::TASK1_REVERSED_VARIANTS;
    for (line, fields) in read_rows(path, &PRIDE_COLUMNS)? {
        let row = Row {
            path,
            line,
            fields: &fields,
            columns: &PRIDE_COLUMNS,
        };
        let (scenario, value) = row.cell()?;
        let variant: usize = row.number(3)?;
        let task: u8 = row.number(4)?;
        let shift: usize = row.number(5)?;
        let (labels, variants) = match task {
            1 => (4, variants),
            2 => (2, crate::prompts::TASK2_VARIANTS),
            _ => return Err(row.fail(4, "a task (1 or 2)")),
        };
        if variant >= variants {
            return Err(row.fail(3, &format!("a variant (0–{})", variants - 1)));
        }
        if !(1..labels).contains(&shift) {
            return Err(row.fail(5, &format!("a shift (1–{})", labels - 1)));
        }
        let logprobs = (6..6 + labels)
            .map(|i| row.number(i))
            .collect::<Result<Vec<f64>>>()?;
        match task {
            1 => stated.push(PermutedItem {
                scenario,
                value,
                variant,
                shift,
                logprobs: [logprobs[0], logprobs[1], logprobs[2], logprobs[3]],
            }),
            _ => action.push(PermutedItem {
                scenario,
                value,
                variant,
                shift,
                logprobs: [logprobs[0], logprobs[1]],
            }),
        }
    }
    Ok((stated, action))
}

/// Whether a CSV's header is that of a run's `stated.csv` (rather than the paper's responses).
pub fn is_stated_csv(path: &Path) -> bool {
    header(path).is_some_and(|h| h.iter().any(|c| c == "logprob_1"))
}

/// Whether a CSV's header is that of a run's `action.csv`.
pub fn is_action_csv(path: &Path) -> bool {
    header(path).is_some_and(|h| h.iter().any(|c| c == "logprob_option_1"))
}

fn header(path: &Path) -> Option<Vec<String>> {
    let mut reader = csv::Reader::from_path(path).ok()?;
    Some(reader.headers().ok()?.iter().map(str::to_string).collect())
}

/// A CSV with the given columns, as rows of those columns (in that order) with line numbers.
fn read_rows(path: &Path, columns: &[&str]) -> Result<Vec<(u64, Vec<String>)>> {
    let mut reader =
        csv::Reader::from_path(path).with_context(|| format!("cannot open {}", path.display()))?;
    let headers = reader
        .headers()
        .with_context(|| format!("{}: cannot read the header line", path.display()))?
        .clone();
    let mut positions = Vec::new();
    for c in columns {
        match headers.iter().position(|h| h == *c) {
            Some(p) => positions.push(p),
            None => bail!(
                "{}: missing column '{c}'; a run's file has the columns {}",
                path.display(),
                columns.join(", ")
            ),
        }
    }
    let mut rows = Vec::new();
    for record in reader.records() {
        let record = record.with_context(|| format!("{}: malformed CSV", path.display()))?;
        let line = record.position().map_or(0, |p| p.line());
        let row = positions
            .iter()
            .map(|&p| record.get(p).unwrap_or_default().to_string())
            .collect();
        rows.push((line, row));
    }
    Ok(rows)
}

/// Parses one field of a row, naming the file, line and column when it fails.
struct Row<'a> {
    path: &'a Path,
    line: u64,
    fields: &'a [String],
    columns: &'a [&'a str],
}

impl Row<'_> {
    fn field(&self, i: usize) -> &str {
        &self.fields[i]
    }

    fn fail(&self, i: usize, what: &str) -> anyhow::Error {
        anyhow::anyhow!(
            "{} line {}, column {}: '{}' is not {what}",
            self.path.display(),
            self.line,
            self.columns[i],
            self.fields[i]
        )
    }

    fn number<T: std::str::FromStr>(&self, i: usize) -> Result<T> {
        self.field(i).parse().map_err(|_| self.fail(i, "a number"))
    }

    fn cell(&self) -> Result<(usize, usize)> {
        let c = country_index(self.field(0)).ok_or_else(|| self.fail(0, "a VIA country"))?;
        let t = topic_index(self.field(1)).ok_or_else(|| self.fail(1, "a VIA topic"))?;
        let k = value_index(self.field(2)).ok_or_else(|| self.fail(2, "a VIA value"))?;
        Ok((scenario_index(c, t), k))
    }
}

/// Reads a run's item file: each row's cell and variant (checked against `variants`) handed
/// to `item` with the row, for the rest of its fields.
fn read_items<T>(
    path: &Path,
    columns: &[&str],
    variants: usize,
    item: impl Fn(&Row, usize, usize, usize) -> Result<T>,
) -> Result<Vec<T>> {
    let mut items = Vec::new();
    for (line, fields) in read_rows(path, columns)? {
        let row = Row {
            path,
            line,
            fields: &fields,
            columns,
        };
        let (scenario, value) = row.cell()?;
        let variant: usize = row.number(3)?;
        if variant >= variants {
            return Err(row.fail(3, &format!("a variant (0–{})", variants - 1)));
        }
        items.push(item(&row, scenario, value, variant)?);
    }
    Ok(items)
}

pub fn read_stated(path: &Path) -> Result<Vec<StatedItem>> {
    let items = read_items(
        path,
        &STATED_COLUMNS,
        crate::prompts::TASK1_VARIANTS + crate::prompts::TASK1_REVERSED_VARIANTS,
        |row, scenario, value, variant| {
            Ok(StatedItem {
                scenario,
                variant,
                value,
                logprobs: [
                    row.number(4)?,
                    row.number(5)?,
                    row.number(6)?,
                    row.number(7)?,
                ],
            })
        },
    )?;
    if items.is_empty() {
        bail!("{} has no rows", path.display());
    }
    Ok(items)
}

pub fn read_action(path: &Path) -> Result<Vec<ActionItem>> {
    read_items(
        path,
        &ACTION_COLUMNS,
        crate::prompts::TASK2_VARIANTS,
        |row, scenario, value, variant| {
            let negative_option: usize = row.number(4)?;
            if !(1..=2).contains(&negative_option) {
                return Err(row.fail(4, "an option (1 or 2)"));
            }
            Ok(ActionItem {
                scenario,
                value,
                variant,
                negative_option,
                logprobs: [row.number(5)?, row.number(6)?],
            })
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_survive_a_round_trip_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let stated = vec![StatedItem {
            scenario: 131,
            variant: 7,
            value: 55,
            logprobs: [-0.1, -2.000000000000001, -1e-300, -40.123456789],
        }];
        let action = vec![ActionItem {
            scenario: 0,
            value: 3,
            variant: 5,
            negative_option: 2,
            logprobs: [-0.7, -std::f64::consts::PI],
        }];
        let (s, a) = (dir.path().join("stated.csv"), dir.path().join("action.csv"));
        write_stated(&s, &stated, None).unwrap();
        write_action(&a, &action, None).unwrap();
        assert!(is_stated_csv(&s) && !is_stated_csv(&a));
        assert!(is_action_csv(&a) && !is_action_csv(&s));
        assert_eq!(read_stated(&s).unwrap(), stated);
        assert_eq!(read_action(&a).unwrap(), action);
        let text = std::fs::read_to_string(&s).unwrap();
        assert!(
            text.starts_with("country,topic,value,variant,logprob_1"),
            "{text}"
        );
        assert!(text.contains("Australia,Health and Health Care,Sense of Belonging,7,"));
    }
}
