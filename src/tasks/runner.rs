//! Scoring a whole run resumably. The run is cut into units — one task in one scenario — that
//! are always scored the same way (one engine call each), so a unit's scores do not depend on
//! which other units ran in the same process. Each finished unit is checkpointed atomically in
//! `<out>/checkpoints/`; a run started again with the same configuration loads the finished
//! units and scores only the rest, so a killed run ends with exactly the uninterrupted results.

use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use indicatif::ProgressBar;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::action::{self, ActionItem};
use super::stated::{self, StatedItem};
use super::{PromptFormat, Protocol, Selection};
use crate::engine::{self, EngineOptions, EngineStats, Request};
use crate::model::Model;
use crate::output::write_atomically;
use crate::via::vocabulary::{COUNTRIES, TOPICS};
use crate::via::Dataset;

/// Rough computed tokens of one Task-1 prompt and of one Task-2 question with the default
/// template (measured on the shared workloads); they only weight the progress bar's ETA.
const TASK1_PROMPT_TOKENS: u64 = 730;
const TASK2_QUESTION_TOKENS: u64 = 86;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Task {
    Stated,
    Action,
}

/// One task in one scenario: the grain of scoring and of checkpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unit {
    pub task: Task,
    pub scenario: usize,
}

impl Unit {
    pub fn name(&self) -> String {
        let task = match self.task {
            Task::Stated => "t1",
            Task::Action => "t2",
        };
        format!("{task}-{:03}", self.scenario)
    }

    pub fn describe(&self) -> String {
        let task = match self.task {
            Task::Stated => "Task 1",
            Task::Action => "Task 2",
        };
        format!(
            "{task} {} / {}",
            COUNTRIES[self.scenario / TOPICS.len()],
            TOPICS[self.scenario % TOPICS.len()]
        )
    }
}

/// What a run asks: the data, the prompt format, the selection and the protocol.
pub struct Plan<'a> {
    pub dataset: &'a Dataset,
    pub format: &'a PromptFormat,
    pub selection: &'a Selection,
    pub protocol: Protocol,
}

impl Plan<'_> {
    /// Task 1 for every selected scenario, then Task 2 for every selected scenario with a
    /// usable pair among the selected values.
    pub fn units(&self) -> Vec<Unit> {
        let scenarios = self.selection.scenarios();
        let with_pairs: HashSet<usize> = self
            .dataset
            .usable_pairs()
            .filter(|p| self.selection.values.contains(&p.value))
            .map(|p| p.scenario())
            .collect();
        let stated = scenarios.iter().map(|&scenario| Unit {
            task: Task::Stated,
            scenario,
        });
        let action = scenarios
            .iter()
            .filter(|s| with_pairs.contains(s))
            .map(|&scenario| Unit {
                task: Task::Action,
                scenario,
            });
        stated.chain(action).collect()
    }

    pub fn requests(&self, unit: Unit) -> Result<Vec<Request>> {
        match unit.task {
            Task::Stated => stated::requests(
                self.format,
                unit.scenario,
                &self.protocol.task1_variants(),
                &self.selection.values,
            ),
            Task::Action => action::requests(
                self.format,
                self.dataset,
                unit.scenario,
                &self.protocol.task2_variants(),
                &self.selection.values,
            ),
        }
        .with_context(|| format!("building the prompts of {}", unit.describe()))
    }

    /// An estimate of the tokens a unit computes, for the progress bar.
    fn weight(&self, unit: Unit) -> u64 {
        match unit.task {
            Task::Stated => self.protocol.task1_variants().len() as u64 * TASK1_PROMPT_TOKENS,
            Task::Action => {
                let pairs = self
                    .dataset
                    .usable_pairs()
                    .filter(|p| {
                        p.scenario() == unit.scenario && self.selection.values.contains(&p.value)
                    })
                    .count() as u64;
                pairs * self.protocol.task2_variants().len() as u64 * TASK2_QUESTION_TOKENS
            }
        }
    }
}

/// A finished unit as checkpointed: its requests' ids and log-probabilities, and what it cost.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UnitScores {
    pub unit: String,
    pub seconds: f64,
    pub stats: EngineStats,
    pub ids: Vec<String>,
    pub logprobs: Vec<f64>,
}

/// The checkpoint folder of a results folder, bound to one run configuration.
pub struct Checkpoints {
    dir: PathBuf,
}

const CONFIG_FILE: &str = "config.json";

impl Checkpoints {
    /// Opens (or starts) `<out>/checkpoints` for `config`. Checkpoints of another configuration
    /// are refused — or, with `force`, deleted.
    pub fn open(out: &Path, config: &Value, force: bool) -> Result<Self> {
        let dir = out.join("checkpoints");
        let config_path = dir.join(CONFIG_FILE);
        if config_path.is_file() {
            let text = fs::read_to_string(&config_path)
                .with_context(|| format!("cannot read {}", config_path.display()))?;
            let previous: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            if previous != *config {
                if !force {
                    bail!(
                        "{} holds a run with another configuration ({}); use another --out \
                         folder, or --force to discard it and start over",
                        out.display(),
                        difference(&previous, config)
                    );
                }
                fs::remove_dir_all(&dir)
                    .with_context(|| format!("cannot remove {}", dir.display()))?;
            }
        } else if out.is_dir() && fs::read_dir(out)?.next().is_some() && !force {
            bail!(
                "{} is not empty and holds no valuelens run; use another --out folder, or \
                 --force to write into it anyway",
                out.display()
            );
        }
        fs::create_dir_all(&dir).with_context(|| {
            format!(
                "cannot create the results folder {}: is its parent writable?",
                dir.display()
            )
        })?;
        let text = serde_json::to_string_pretty(config)?;
        write_atomically(&config_path, |w| Ok(w.write_all(text.as_bytes())?))?;
        Ok(Self { dir })
    }

    fn path(&self, unit: Unit) -> PathBuf {
        self.dir.join(format!("{}.json", unit.name()))
    }

    /// A finished unit's scores, if checkpointed and matching `requests`.
    pub fn load(&self, unit: Unit, requests: &[Request]) -> Result<Option<UnitScores>> {
        let path = self.path(unit);
        if !path.is_file() {
            return Ok(None);
        }
        let text =
            fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
        let scores: UnitScores = match serde_json::from_str(&text) {
            Ok(s) => s,
            // Files are renamed into place whole, so this is damage from outside: recompute.
            Err(_) => return Ok(None),
        };
        let same = scores.ids.len() == requests.len()
            && scores.logprobs.len() == requests.len()
            && scores.ids.iter().zip(requests).all(|(id, r)| *id == r.id);
        Ok(same.then_some(scores))
    }

    pub fn save(&self, unit: Unit, scores: &UnitScores) -> Result<()> {
        let text = serde_json::to_string(scores)?;
        write_atomically(&self.path(unit), |w| Ok(w.write_all(text.as_bytes())?))
    }
}

/// The first top-level field where two configurations differ, for the refusal message.
fn difference(previous: &Value, current: &Value) -> String {
    if let (Value::Object(a), Value::Object(b)) = (previous, current) {
        for (key, value) in b {
            if a.get(key) != Some(value) {
                let before = a.get(key).map_or("nothing".to_string(), |v| v.to_string());
                return format!("{key} was {before}, now {value}");
            }
        }
    }
    "its config.json differs".to_string()
}

/// Everything a run scored.
#[derive(Debug, Default)]
pub struct Outcome {
    pub stated: Vec<StatedItem>,
    pub action: Vec<ActionItem>,
    pub stats: EngineStats,
    /// Scoring seconds of all units, including those of earlier, interrupted invocations.
    pub compute_seconds: f64,
    /// Scoring seconds of this invocation.
    pub session_seconds: f64,
    pub units: usize,
    pub resumed_units: usize,
}

/// Scores every unit of `plan` that `checkpoints` does not already hold, checkpointing each.
pub fn execute(
    plan: &Plan,
    model: &Model,
    options: &EngineOptions,
    checkpoints: &Checkpoints,
    progress: &ProgressBar,
) -> Result<Outcome> {
    let units = plan.units();
    progress.set_length(units.iter().map(|&u| plan.weight(u)).sum());
    let mut outcome = Outcome {
        units: units.len(),
        ..Outcome::default()
    };
    let started = Instant::now();
    for unit in units {
        progress.set_message(unit.describe());
        let requests = plan.requests(unit)?;
        let scores = match checkpoints.load(unit, &requests)? {
            Some(scores) => {
                outcome.resumed_units += 1;
                // Off the bar rather than onto it, so the ETA reflects only work still to do.
                progress.dec_length(plan.weight(unit));
                scores
            }
            None => {
                let scoring = Instant::now();
                let (scores, stats) = engine::score_with_stats(model, &requests, options, None)
                    .with_context(|| format!("scoring {}", unit.describe()))?;
                let scores = UnitScores {
                    unit: unit.name(),
                    seconds: scoring.elapsed().as_secs_f64(),
                    stats,
                    ids: scores.iter().map(|s| s.id.clone()).collect(),
                    logprobs: scores.iter().map(|s| s.logprob).collect(),
                };
                checkpoints.save(unit, &scores)?;
                progress.inc(plan.weight(unit));
                scores
            }
        };
        outcome.stats.add(&scores.stats);
        outcome.compute_seconds += scores.seconds;
        match unit.task {
            Task::Stated => outcome.stated.extend(stated::items(
                unit.scenario,
                &plan.protocol.task1_variants(),
                &plan.selection.values,
                &scores.logprobs,
            )),
            Task::Action => outcome.action.extend(action::items(
                plan.dataset,
                unit.scenario,
                &plan.protocol.task2_variants(),
                &plan.selection.values,
                &scores.logprobs,
            )),
        }
    }
    outcome.session_seconds = started.elapsed().as_secs_f64();
    Ok(outcome)
}
