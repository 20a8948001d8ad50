//! A run's item files: `stated.csv` (one row per Task-1 question: scenario, variant, value, the
//! four options' log-probabilities and renormalised probabilities, hard and soft score) and
//! `action.csv` (one row per Task-2 question: which option was the negative action, both
//! options' log-probabilities, p(negative) and the hard choice). Long format, plain columns, so
//! pandas opens them as they are; read back exactly by `valuelens metrics`.

use std::path::Path;

use anyhow::{bail, Context, Result};

use crate::output::write_atomically;
use crate::tasks::action::ActionItem;
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

pub fn write_stated(path: &Path, items: &[StatedItem]) -> Result<()> {
    write_rows(
        path,
        &STATED_COLUMNS,
        items,
        |item| (item.scenario, item.value),
        |item| {
            let mut row = vec![item.variant.to_string()];
            row.extend(item.logprobs.iter().map(|x| x.to_string()));
            row.extend(item.probabilities().iter().map(|x| x.to_string()));
            row.push(item.hard().to_string());
            row.push(item.soft().to_string());
            row
        },
    )
}

pub fn write_action(path: &Path, items: &[ActionItem]) -> Result<()> {
    write_rows(
        path,
        &ACTION_COLUMNS,
        items,
        |item| (item.scenario, item.value),
        |item| {
            let mut row = vec![item.variant.to_string(), item.negative_option.to_string()];
            row.extend(item.logprobs.iter().map(|x| x.to_string()));
            row.push(item.p_negative().to_string());
            row.push(u8::from(item.chose_negative()).to_string());
            row
        },
    )
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
        write_stated(&s, &stated).unwrap();
        write_action(&a, &action).unwrap();
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
