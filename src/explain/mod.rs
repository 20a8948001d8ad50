//! The paper's third experiment (PAPER.md §6, its Table 14): an observer model sees a target
//! model's Task-2 choices on twenty example actions — the action alone, with its feature
//! attributions, with its explanation, or with both — and predicts the target's choice on 200
//! test actions. The data, the draw and the prompts are the paper's; the observer's answer is
//! scored by log-probability (` True` against ` False` after `Label:`) instead of sampled, and
//! the twenty examples are one shared prefix per setting, computed once.
//!
//! Data flow: `target` (the target's Task-2 frame) → `frame` (rows the paper's strict parser
//! keeps, texts as Python prints them) → `split` (the pools, drawn with `sample`: numpy's draw) →
//! `prompts` → the engine → `report`.

pub mod frame;
pub mod prompts;
pub mod report;
pub mod sample;
pub mod split;
pub mod target;

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use indicatif::ProgressBar;

use crate::engine::{self, EngineOptions, EngineStats, Request};
use crate::metrics::classification::{auc_ci95, measure_ci95, roc_auc, Confusion};
use crate::model::{resolve, Model, Placement, ResolvedModel};
use crate::prompts::chat::{benchmark_variables, ChatTemplate};
use crate::via::{self, Dataset};
use frame::{observe, ObservedRow};
use prompts::{Setting, ANSWER_PREFIX, LABELS};
use report::{ExplainReport, Prediction, SettingResult};
pub use split::{draw_split, Draw, Split};
use target::{load_frame, FrameRow, TargetSource};

/// The observed frame of a target: its rows that the paper's parser keeps.
pub fn observed_frame(
    source: &TargetSource,
    dataset: &Dataset,
) -> Result<(Vec<ObservedRow>, Vec<FrameRow>, String)> {
    let (frame, how) = load_frame(source, dataset)?;
    let mut observed = Vec::with_capacity(frame.len());
    for row in &frame {
        let index = row.target.via_index;
        match observe(row.target.clone(), &row.generation_text) {
            Ok(Some(o)) => observed.push(o),
            Ok(None) => {}
            Err(missing) => bail!(
                "{} data row {index}: the generation parses but has no \"{}\" (the paper's code \
                 stops here with a KeyError); fix or remove that row",
                dataset.path.display(),
                missing.0
            ),
        }
    }
    Ok((observed, frame, how))
}

/// What `valuelens explain` needs.
pub struct ExplainOptions {
    pub observer: String,
    pub placement: Placement,
    pub engine: EngineOptions,
    pub target: TargetSource,
    /// How the report names the target.
    pub target_name: String,
    pub settings: Vec<Setting>,
    pub data: Option<PathBuf>,
    pub draw: Draw,
}

/// Everything before the model runs: the frame, the draw and the requests.
pub struct Prepared {
    pub observer: ResolvedModel,
    pub rows: Vec<ObservedRow>,
    pub frame: Vec<FrameRow>,
    pub frame_source: String,
    pub split: Split,
    /// Per setting and test row, the context with ` True` then with ` False`.
    pub requests: Vec<Request>,
}

/// Loads the data and the target's frame, draws the split and renders the observer's prompts.
pub fn prepare(options: &ExplainOptions) -> Result<Prepared> {
    let data = via::setup::via_csv(options.data.as_deref())?;
    let dataset = Dataset::load(&data)?;
    let (rows, frame, frame_source) = observed_frame(&options.target, &dataset)?;
    let split = draw_split(&rows, &options.draw)?;
    let observer = resolve(&options.observer)?;
    let checkpoint = crate::model::formats::open::open_checkpoint(&observer.source)?;
    let template = ChatTemplate::from_checkpoint(&checkpoint)?.with_context(|| {
        format!(
            "{} has no chat template; the observer reads a conversation (system, examples, \
             query), so it needs an instruction-tuned model with one",
            observer.name
        )
    })?;
    let examples: Vec<ObservedRow> = split.examples.iter().map(|&i| rows[i].clone()).collect();
    let mut requests = Vec::new();
    for &setting in &options.settings {
        for (t, &row) in split.tests.iter().enumerate() {
            let messages = prompts::conversation(setting, &examples, &rows[row]);
            let context = template.render(&messages, true, &benchmark_variables())? + ANSWER_PREFIX;
            for label in LABELS {
                requests.push(Request {
                    id: format!("{setting}/{t}/{}", label.trim()),
                    context: context.clone(),
                    continuation: label.to_string(),
                });
            }
        }
    }
    Ok(Prepared {
        observer,
        rows,
        frame,
        frame_source,
        split,
        requests,
    })
}

/// Runs the experiment and returns its report (not yet written).
pub fn run(options: &ExplainOptions, progress: Option<&ProgressBar>) -> Result<ExplainReport> {
    let Prepared {
        observer,
        rows,
        frame,
        frame_source,
        split,
        requests,
    } = prepare(options)?;
    let started = Instant::now();
    let model = Model::load_resolved(&observer, &options.placement)?;
    let load_s = started.elapsed().as_secs_f64();
    let scoring = Instant::now();
    let (scores, stats): (_, EngineStats) =
        engine::score_with_stats(&model, &requests, &options.engine, progress)?;
    let score_s = scoring.elapsed().as_secs_f64();
    let mut settings = Vec::new();
    let mut scores = scores.chunks_exact(2);
    for (stream, &setting) in options.settings.iter().enumerate() {
        let mut predictions = Vec::with_capacity(split.tests.len());
        for &row in &split.tests {
            let pair = scores.next().expect("two scores per test row");
            let (logprob_true, logprob_false) = (pair[0].logprob, pair[1].logprob);
            predictions.push(Prediction {
                row: rows[row].target.clone(),
                logprob_true,
                logprob_false,
                predicted: logprob_true >= logprob_false,
            });
        }
        let items: Vec<(bool, bool)> = predictions
            .iter()
            .map(|p| (p.row.model_choice, p.predicted))
            .collect();
        let confusion = Confusion::of(items.iter().copied());
        let margins: Vec<(bool, f64)> = predictions
            .iter()
            .map(|p| (p.row.model_choice, p.logprob_true - p.logprob_false))
            .collect();
        settings.push(SettingResult {
            setting,
            measures: confusion.measures(),
            ci95: measure_ci95(&items, stream as u64 + 1),
            auc: roc_auc(&margins),
            auc_ci95: auc_ci95(&margins, stream as u64 + 1),
            confusion,
            predictions,
        });
    }
    Ok(ExplainReport {
        observer: model.name.clone(),
        precision: format!("{:?}", model.precision),
        target: options.target_name.clone(),
        frame_source,
        frame_rows: frame.len(),
        observed_rows: rows.len(),
        draw: options.draw,
        examples: split
            .examples
            .iter()
            .map(|&i| rows[i].target.clone())
            .collect(),
        settings,
        stats,
        load_s,
        score_s,
        baselines: report::baselines(
            &split
                .tests
                .iter()
                .map(|&i| rows[i].target.clone())
                .collect::<Vec<_>>(),
        ),
        paper: report::paper_rows(&options.target_name),
        released: report::released_outputs(&options.target_name, &options.settings)?,
        frame,
    })
}
