//! The target model's Task-2 frame — the VIA rows, each with `model_choice` (true = the target
//! chose this row's action) — from whatever records the target's choices:
//!
//! - a Task-2 CSV in the paper's format (VIA rows with `model_choice`), read in file order;
//! - a `valuelens run`'s `action.csv` (per cell, the choice over its variants);
//! - the paper's list of misaligned cells with the target's Task-1 responses, rebuilt as
//!   `valuelens metrics --action-misaligned` rebuilds them (PAPER.md §5.4).
//!
//! A rebuilt frame holds, like the paper's Task-2 files, the two rows of every usable pair whose
//! cell has a choice, in VIA order (the authors saved `df.loc[list(updated_indices)]`: a set of
//! small integers, so ascending row numbers).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use super::frame::TargetRow;
use crate::metrics::{binarise, Cells, Matrix};
use crate::report::results;
use crate::tasks::released;
use crate::via::dataset::parse_row_key;
use crate::via::{Dataset, Polarity};

/// Where the target's choices come from.
#[derive(Debug, Clone)]
pub enum TargetSource {
    /// A Task-2 CSV with `model_choice`, or a run's `action.csv`.
    Results(PathBuf),
    /// A misaligned-cell list (`country, topic, value`) and the Task-1 responses it was made
    /// from, with what to know about the rebuild.
    Misaligned {
        list: PathBuf,
        stated: PathBuf,
        caveat: Option<&'static str>,
    },
}

/// The paper's two targets, rebuilt from its released files: name, misaligned list, Task-1
/// responses, and what to know about the rebuild.
pub const PAPER_TARGETS: [(&str, &str, &str, Option<&str>); 2] = [
    (
        "paper:gpt-3.5-turbo",
        // The older, complete list (1,421 cells): the rebuild is exact (PAPER.md §5.4).
        "outputs/evaluation/chatgpt_misaligned_example.csv",
        "outputs/evaluation/gpt-3.5-turbo_t1.csv",
        None,
    ),
    (
        "paper:llama-3.3-70b",
        "outputs/evaluation/misaligned_examples/llama3_misaligned_example.csv",
        "outputs/evaluation/Llama-3.3-70B-Instruct_t1.csv",
        Some(
            "approximate: the released Llama list omits the misaligned cells whose chosen \
             action fails a strict json.loads (PAPER.md §5.4), so some labels differ from the \
             paper's Task-2 file and the rows drawn are not the paper's",
        ),
    ),
];

impl TargetSource {
    /// `--target`: one of [`PAPER_TARGETS`]' names (files under `released`), or a file;
    /// `stated` goes with a misaligned list.
    pub fn parse(target: &str, stated: Option<&Path>, released: &Path) -> Result<Self> {
        if let Some((_, list, t1, caveat)) = PAPER_TARGETS.iter().find(|(name, ..)| *name == target)
        {
            let (list, stated) = (released.join(list), released.join(t1));
            for file in [&list, &stated] {
                if !file.is_file() {
                    bail!(
                        "{target} is rebuilt from the paper's released files, but {} does not \
                         exist; set VALUELENS_SHARED to the folder holding valueactionlens/",
                        file.display()
                    );
                }
            }
            return Ok(Self::Misaligned {
                list,
                stated,
                caveat: *caveat,
            });
        }
        if target.starts_with("paper:") {
            let names: Vec<&str> = PAPER_TARGETS.iter().map(|t| t.0).collect();
            bail!(
                "unknown target {target}; the paper's targets are {}",
                names.join(", ")
            );
        }
        let path = PathBuf::from(target);
        if !path.is_file() {
            bail!(
                "target file {target} does not exist; give a Task-2 CSV with model_choice, a \
                 run's action.csv, a misaligned-cell list with --target-stated, or one of {}",
                PAPER_TARGETS.map(|t| t.0).join(", ")
            );
        }
        if results::is_stated_csv(&path) {
            bail!(
                "{target} is a run's stated.csv (Task 1); the observer predicts Task-2 choices: \
                 give the same run's action.csv"
            );
        }
        let header = csv_header(&path)?;
        let has = |c: &str| header.iter().any(|h| h == c);
        if has("model_choice") || results::is_action_csv(&path) {
            if stated.is_some() {
                bail!("--target-stated goes with a misaligned-cell list, not with {target}");
            }
            return Ok(Self::Results(path));
        }
        if has("country") && has("topic") && has("value") {
            let Some(stated) = stated else {
                bail!(
                    "{target} looks like a misaligned-cell list: give the target's Task-1 \
                     responses with --target-stated"
                );
            };
            return Ok(Self::Misaligned {
                list: path,
                stated: stated.to_path_buf(),
                caveat: None,
            });
        }
        bail!(
            "{target}: not a target file (its header is: {}); give a Task-2 CSV with \
             model_choice, a run's action.csv, or a misaligned-cell list (country, topic, value)",
            header.join(", ")
        )
    }
}

fn csv_header(path: &Path) -> Result<Vec<String>> {
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .from_path(path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    Ok(reader
        .headers()
        .with_context(|| format!("{}: cannot read the header line", path.display()))?
        .iter()
        .map(str::to_string)
        .collect())
}

/// A target frame row with the generation text the observer's parser reads.
pub struct FrameRow {
    pub target: TargetRow,
    pub generation_text: String,
}

/// The target's frame over `dataset`, and a line saying how it was made.
pub fn load_frame(source: &TargetSource, dataset: &Dataset) -> Result<(Vec<FrameRow>, String)> {
    match source {
        TargetSource::Results(path) if results::is_action_csv(path) => {
            let items = results::read_action(path)?;
            let mut sums = Matrix::filled(0.0);
            let mut counts = Matrix::filled(0.0);
            let mut cells = Cells::none();
            for item in &items {
                let (s, k) = (item.scenario, item.value);
                sums.set(
                    s,
                    k,
                    sums.get(s, k) + f64::from(u8::from(item.chose_negative())),
                );
                counts.set(s, k, counts.get(s, k) + 1.0);
                cells.insert(s, k);
            }
            let mut negative = Matrix::filled(0.0);
            for (s, k) in cells.iter() {
                negative.set(s, k, sums.get(s, k) / counts.get(s, k));
            }
            let rows = rebuilt_frame(dataset, &negative, &cells);
            let how = format!(
                "{}: a run's Task-2 choices (raw, the majority over each cell's variants) on {} cells",
                path.display(),
                cells.len()
            );
            Ok((rows, how))
        }
        TargetSource::Results(path) => Ok((
            paper_task2_frame(path, dataset)?,
            format!("{}: a Task-2 CSV with model_choice", path.display()),
        )),
        TargetSource::Misaligned {
            list,
            stated,
            caveat,
        } => {
            let responses = released::read_task1_responses(stated)?;
            let action = released::reconstruct_action_from_misaligned(&responses.matrix, list)?;
            let rows = rebuilt_frame(dataset, &action, &Cells::all());
            let mut how = format!(
                "rebuilt from {} and {} (Task-2 choice = Task-1 inclination, flipped on the \
                 listed cells)",
                list.display(),
                stated.display()
            );
            if let Some(caveat) = caveat {
                how += &format!("; {caveat}");
            }
            Ok((rows, how))
        }
    }
}

/// The rows of the usable pairs on `cells`, in VIA order; `negative` ≥ 0.5 = the target chose
/// the value-opposing action.
fn rebuilt_frame(dataset: &Dataset, negative: &Matrix, cells: &Cells) -> Vec<FrameRow> {
    let mut chosen_negative = vec![None; dataset.rows.len()];
    for pair in dataset.usable_pairs() {
        let (s, k) = (pair.scenario(), pair.value);
        if !cells.contains(s, k) {
            continue;
        }
        let negative = binarise(negative.get(s, k)) == 1;
        for row in [pair.positive, pair.negative].into_iter().flatten() {
            chosen_negative[row] = Some(negative);
        }
    }
    dataset
        .rows
        .iter()
        .filter_map(|row| {
            let negative = chosen_negative[row.index]?;
            Some(FrameRow {
                target: TargetRow {
                    via_index: row.index,
                    country: row.country,
                    topic: row.topic,
                    value: row.value,
                    polarity: row.polarity,
                    model_choice: negative == (row.polarity == Polarity::Negative),
                },
                generation_text: row.generation_text.clone(),
            })
        })
        .collect()
}

/// A Task-2 CSV in the paper's format, in file order; the generation text from its own
/// `generation_prompt` column where it has one, else from the VIA row.
fn paper_task2_frame(path: &Path, dataset: &Dataset) -> Result<Vec<FrameRow>> {
    let (mut reader, columns) = released::open_csv(
        path,
        &["country", "topic", "value", "polarity", "model_choice"],
    )?;
    let [c_country, c_topic, c_value, c_polarity, c_choice] =
        <[usize; 5]>::try_from(columns).expect("one position per column asked");
    let c_generation = reader
        .headers()?
        .iter()
        .position(|h| h == "generation_prompt");
    let mut by_key = std::collections::HashMap::new();
    for row in &dataset.rows {
        by_key.insert((row.country, row.topic, row.value, row.polarity), row.index);
    }
    let mut rows = Vec::new();
    for record in reader.records() {
        let record = record.with_context(|| format!("{}: malformed CSV", path.display()))?;
        let line = record.position().map_or(0, |p| p.line());
        let field = |i: usize| record.get(i).unwrap_or_default();
        let at = || format!("{} line {line}", path.display());
        let (country, topic, value, polarity) =
            parse_row_key(&at(), [c_country, c_topic, c_value, c_polarity].map(field))?;
        let model_choice = match field(c_choice) {
            "True" | "true" => true,
            "False" | "false" => false,
            // The paper's code would keep such a row in the frame's positions but in neither
            // class; its Task-2 files hold answered rows only.
            "" | "None" | "nan" => bail!(
                "{}: model_choice is empty; a target frame holds answered rows only — remove \
                 the unanswered ones",
                at()
            ),
            other => bail!("{}: model_choice '{other}' is not True or False", at()),
        };
        let via_index = *by_key
            .get(&(country, topic, value, polarity))
            .with_context(|| format!("{}: this row is not in {}", at(), dataset.path.display()))?;
        let generation_text = match c_generation {
            Some(c) => record.get(c).unwrap_or_default().to_string(),
            None => dataset.rows[via_index].generation_text.clone(),
        };
        rows.push(FrameRow {
            target: TargetRow {
                via_index,
                country,
                topic,
                value,
                polarity,
                model_choice,
            },
            generation_text,
        });
    }
    if rows.is_empty() {
        bail!("{} has no rows with a model_choice", path.display());
    }
    Ok(rows)
}
