//! The paper's measures recomputed from files (`valuelens metrics`): a run's `stated.csv` and
//! `action.csv`, or the paper's released outputs (Task-1 response CSVs with a Task-2 CSV, JSONL
//! log, or misaligned-cell list).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use super::record::{RunRecord, RUN_RECORD_FILE};
use crate::metrics::bias::{
    answer_bias, label_bias, position_bias, Bias, Debiased, PositionQuestion,
};
use crate::metrics::{Cells, Matrix};
use crate::prompts::TASK2_PAPER_VARIANT;
use crate::report::{results, MetricsReport};
use crate::tasks::action::ActionItem;
use crate::tasks::pride::{self, Debias, PermutedItem, Priors};
use crate::tasks::stated::StatedItem;
use crate::tasks::{action, released, stated, Protocol, Scoring};
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
    /// For a run's CSVs: divide PriDe's priors out or not; `None`: as the run did (when a
    /// `pride.csv` lies beside its `stated.csv`).
    pub debias: Option<Debias>,
    /// For a run's CSVs: only the questions another protocol asks (e.g. `paper` from a
    /// `balanced` run); `None`: all of them.
    pub protocol: Option<Protocol>,
}

/// The measures, and what was read on the way (for the user's information).
pub struct Recomputed {
    pub report: MetricsReport,
    pub notes: Vec<String>,
}

pub fn recompute(inputs: &MetricsInputs) -> Result<Recomputed> {
    let action = match &inputs.action {
        ActionInput::Results(path) => ("--action", path),
        ActionInput::Misaligned(path) => ("--action-misaligned", path),
    };
    // Each file named by its own flag before either is read, so that a missing one is never
    // reported as a problem of the other.
    for (flag, path) in [("--stated", &inputs.stated), action] {
        if !path.is_file() {
            bail!(
                "{flag} {}: no such file; give the {} of a run (or the paper's released file)",
                path.display(),
                match flag {
                    "--stated" => "stated.csv",
                    _ => "action.csv",
                }
            );
        }
    }
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
        pride: None,
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
    let mut stated_items = results::read_stated(stated_csv)?;
    let mut action_items = results::read_action(action_csv)?;
    let name = match &inputs.model_name {
        Some(name) => name.clone(),
        None => model_name_of_run(stated_csv).unwrap_or_else(|| "model".to_string()),
    };
    let mut notes = Vec::new();
    let pride_csv = stated_csv.with_file_name(results::PRIDE_FILE);
    let debias = inputs.debias.unwrap_or(match pride_csv.is_file() {
        true => Debias::Pride,
        false => Debias::None,
    });
    let (mut permuted_stated, mut permuted_action) = match debias {
        Debias::None => (Vec::new(), Vec::new()),
        Debias::Pride if !pride_csv.is_file() => bail!(
            "{} is missing: the run was not debiased; run it with --debias pride, or leave \
             --debias out",
            pride_csv.display()
        ),
        Debias::Pride => results::read_pride(&pride_csv)?,
    };
    if let Some(view) = inputs.protocol {
        let (task1, task2) = (view.task1_variants(), view.task2_variants());
        let asked_task1: BTreeSet<usize> = stated_items.iter().map(|i| i.variant).collect();
        let asked_task2: BTreeSet<usize> = action_items.iter().map(|i| i.variant).collect();
        for (task, wanted, asked, csv) in [
            ("Task-1", &task1, &asked_task1, stated_csv),
            ("Task-2", &task2, &asked_task2, action_csv),
        ] {
            if let Some(v) = wanted.iter().find(|v| !asked.contains(v)) {
                bail!(
                    "{} has no {task} variant {v}, which --protocol {} asks: give a protocol the \
                     run covers (its own, or paper from full or balanced)",
                    csv.display(),
                    view.name()
                );
            }
        }
        stated_items.retain(|i| task1.contains(&i.variant));
        action_items.retain(|i| task2.contains(&i.variant));
        permuted_stated.retain(|i| task1.contains(&i.variant));
        permuted_action.retain(|i| task2.contains(&i.variant));
        notes.push(format!(
            "the questions of --protocol {}: Task-1 variants {task1:?}, Task-2 variants {task2:?}",
            view.name()
        ));
    }
    let permuted = (debias == Debias::Pride).then_some(Permuted {
        stated: &permuted_stated,
        action: &permuted_action,
    });
    let (report, priors) = report_of_items(
        &name,
        &stated_items,
        &action_items,
        permuted,
        inputs.scoring,
    );
    if debias == Debias::Pride {
        notes.push(format!(
            "PriDe priors from {}: Task 1 on {} questions, Task 2 on {}",
            pride_csv.display(),
            priors.task1.map_or(0, |p| p.questions),
            priors.task2.map_or(0, |p| p.questions)
        ));
    }
    Ok(Recomputed { report, notes })
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
        pride: None,
    }
}

/// PriDe's permuted questions of a debiased run.
pub struct Permuted<'a> {
    pub stated: &'a [PermutedItem<4>],
    pub action: &'a [PermutedItem<2>],
}

/// The measures of a run's questions over the cells its Task 1 covers, with the raw biases;
/// with `permuted`, the priors estimated from them are divided out of every question first
/// (and returned), and the bias block says what they were and what is left.
pub fn report_of_items(
    name: &str,
    stated_items: &[StatedItem],
    action_items: &[ActionItem],
    permuted: Option<Permuted>,
    scoring: Scoring,
) -> (MetricsReport, Priors) {
    let mut bias = bias_of_items(stated_items, action_items);
    let cells = stated::cells(stated_items);
    let Some(permuted) = permuted else {
        let report = MetricsReport::compute(
            name,
            &stated::matrix(stated_items, scoring),
            &action::matrix(action_items, scoring),
            &cells,
        )
        .with_bias(bias);
        return (report, Priors::default());
    };
    let priors = pride::priors(stated_items, action_items, permuted.stated, permuted.action);
    let stated_items = pride::debias_stated(stated_items, priors.task1.as_ref());
    let action_items = pride::debias_action(action_items, priors.task2.as_ref());
    let debiased = bias_of_items(&stated_items, &action_items);
    bias.pride = Some(Box::new(Debiased {
        task1_prior: priors.task1,
        task2_prior: priors.task2,
        task1: debiased.task1,
        task2: debiased.task2,
    }));
    let report = MetricsReport::compute(
        name,
        &stated::matrix(&stated_items, scoring),
        &action::matrix(&action_items, scoring),
        &cells,
    )
    .with_bias(bias);
    (report, priors)
}

/// The model name in the run.json beside a run's CSV, if there is a readable one.
fn model_name_of_run(csv: &Path) -> Option<String> {
    let record = csv.with_file_name(RUN_RECORD_FILE);
    RunRecord::read(&record)
        .with_context(|| record.display().to_string())
        .ok()
        .map(|r| r.model.name)
}
