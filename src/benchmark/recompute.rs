//! The paper's measures recomputed from files (`valuelens metrics`): a run's `stated.csv` and
//! `action.csv`, or the paper's released outputs (Task-1 response CSVs with a Task-2 CSV, JSONL
//! log, or misaligned-cell list).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use super::record::{RunRecord, RUN_RECORD_FILE};
use crate::metrics::bias::{answer_bias, label_bias, position_bias, Bias, PositionQuestion};
use crate::metrics::{Cells, Matrix};
use crate::prompts::TASK2_PAPER_VARIANT;
use crate::report::{results, MetricsReport};
use crate::tasks::action::ActionItem;
use crate::tasks::stated::StatedItem;
use crate::tasks::{action, released, stated, Scoring};
use crate::via;

/// The Task-2 input: results (a run's action.csv, a released CSV or a JSONL log), or a list of
/// misaligned cells to rebuild them from.
#[derive(Debug, Clone)]
pub enum ActionInput {
    Results(PathBuf),
    Misaligned(PathBuf),
}

/// The inputs of `valuelens metrics`.
#[derive(Debug, Clone)]
pub struct MetricsInputs {
    /// The VIA CSV, for released files; `None`: the default one.
    pub data: Option<PathBuf>,
    pub stated: PathBuf,
    pub action: ActionInput,
    /// How the report names the model; `None`: from run.json or the file name.
    pub model_name: Option<String>,
    /// For a run's CSVs: hard or soft scores.
    pub scoring: Scoring,
}

/// The measures, and what was read on the way (for the user's information).
pub struct Recomputed {
    pub report: MetricsReport,
    pub notes: Vec<String>,
}

pub fn recompute(inputs: &MetricsInputs) -> Result<Recomputed> {
    if results::is_stated_csv(&inputs.stated) {
        return of_run(inputs);
    }
    let data = via::setup::via_csv(inputs.data.as_deref())?;
    let dataset = via::Dataset::load(&data)?;
    let mut notes = vec![format!(
        "VIA: {} rows ({} parsed), {} pairs ({} usable) from {}",
        dataset.rows.len(),
        dataset.parsed_rows(),
        dataset.pairs.len(),
        dataset.usable_pairs().count(),
        data.display()
    )];
    let responses = released::read_task1_responses(&inputs.stated)?;
    notes.push(format!(
        "Task 1: {} responses, {} unparsed, from {}",
        responses.responses,
        responses.unparsed,
        inputs.stated.display()
    ));
    let action_matrix = match &inputs.action {
        ActionInput::Results(path) if path.extension().is_some_and(|e| e == "jsonl") => {
            released::read_task2_log(path, &dataset)?
        }
        ActionInput::Results(path) => released::read_task2_csv(path)?,
        ActionInput::Misaligned(path) => {
            released::reconstruct_action_from_misaligned(&responses.matrix, path)?
        }
    };
    let name = inputs.model_name.clone().unwrap_or_else(|| {
        let stem = inputs
            .stated
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        stem.strip_suffix("_t1").unwrap_or(&stem).to_string()
    });
    // Single-variant runs rebuilt from misaligned cells are variant 5, whose Option 1 is the
    // value-opposing action; released Task-2 results do not say which option was chosen.
    let position = match &inputs.action {
        ActionInput::Misaligned(_) => position_bias(&variant5_questions(&action_matrix)),
        ActionInput::Results(_) => None,
    };
    let bias = Bias {
        task1: answer_bias(&responses.label_counts),
        task2: position,
    };
    let report = MetricsReport::compute(&name, &responses.matrix, &action_matrix, &Cells::all())
        .with_bias(bias);
    Ok(Recomputed { report, notes })
}

/// The measures from a run's `stated.csv` and `action.csv`, over the cells its Task 1 covered —
/// what `valuelens run` wrote into its metrics.json.
fn of_run(inputs: &MetricsInputs) -> Result<Recomputed> {
    let stated_csv = &inputs.stated;
    let action_csv = match &inputs.action {
        ActionInput::Results(path) if results::is_action_csv(path) => path,
        _ => bail!(
            "{} is a run's stated.csv: give the same run's action.csv as --action",
            stated_csv.display()
        ),
    };
    let stated_items = results::read_stated(stated_csv)?;
    let action_items = results::read_action(action_csv)?;
    let name = match &inputs.model_name {
        Some(name) => name.clone(),
        None => model_name_of_run(stated_csv).unwrap_or_else(|| "model".to_string()),
    };
    let report = MetricsReport::compute(
        &name,
        &stated::matrix(&stated_items, inputs.scoring),
        &action::matrix(&action_items, inputs.scoring),
        &stated::cells(&stated_items),
    )
    .with_bias(bias_of_items(&stated_items, &action_items));
    Ok(Recomputed {
        report,
        notes: Vec::new(),
    })
}

/// The questions of a single-variant run in the paper's variant (negative action first) with
/// hard choices `a` (0 or 1 per cell).
fn variant5_questions(action: &Matrix) -> Vec<PositionQuestion> {
    Cells::all()
        .iter()
        .filter(|&(s, k)| !action.get(s, k).is_nan())
        .map(|(s, k)| {
            let chose_negative = action.get(s, k) >= 0.5;
            PositionQuestion {
                cell: (s, k),
                variant: TASK2_PAPER_VARIANT,
                negative_first: true,
                chose_option1: chose_negative,
                p_option1: f64::from(u8::from(chose_negative)),
            }
        })
        .collect()
}

/// The label and position biases of a run's questions.
pub fn bias_of_items(stated_items: &[StatedItem], action_items: &[ActionItem]) -> Bias {
    Bias {
        task1: label_bias(&stated::label_questions(stated_items)),
        task2: position_bias(&action::position_questions(action_items)),
    }
}

/// The model name in the run.json beside a run's CSV, if there is a readable one.
fn model_name_of_run(csv: &Path) -> Option<String> {
    let record = csv.with_file_name(RUN_RECORD_FILE);
    RunRecord::read(&record)
        .with_context(|| record.display().to_string())
        .ok()
        .map(|r| r.model.name)
}
