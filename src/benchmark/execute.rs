//! Scoring a run's units: the finished ones loaded from the store, the rest scored with the
//! engine and stored as each finishes.

use std::time::Instant;

use anyhow::{Context, Result};
use indicatif::ProgressBar;

use super::store::{PermutedCost, UnitScores, UnitStore};
use super::units::{Plan, Task, Unit};
use crate::engine::{self, EngineOptions, EngineStats};
use crate::model::Model;
use crate::tasks::action::{self, ActionItem};
use crate::tasks::pride::{self, PermutedItem};
use crate::tasks::stated::{self, StatedItem};

/// Everything a run scored.
#[derive(Debug, Default)]
pub struct Outcome {
    pub stated: Vec<StatedItem>,
    pub action: Vec<ActionItem>,
    /// PriDe's sampled questions in their other orders (empty without `--debias pride`).
    pub permuted_stated: Vec<PermutedItem<4>>,
    pub permuted_action: Vec<PermutedItem<2>>,
    pub stats: EngineStats,
    /// Tokens computed for PriDe's permuted questions beyond their units' own questions.
    pub permuted_tokens: usize,
    /// Their share of the scoring seconds (all invocations).
    pub permuted_seconds: f64,
    /// Scoring seconds of all units, including those of earlier, interrupted invocations.
    pub compute_seconds: f64,
    /// Scoring seconds of this invocation.
    pub session_seconds: f64,
    pub units: usize,
    pub resumed_units: usize,
}

impl Outcome {
    /// Adds a finished unit: its costs, and its items from its log-probabilities (the first
    /// `own_count` are its own questions', the rest PriDe's permuted ones).
    pub fn add(&mut self, plan: &Plan, unit: Unit, scores: &UnitScores, own_count: usize) {
        self.stats.add(&scores.stats);
        if let Some(permuted) = &scores.permuted {
            self.permuted_tokens += permuted.computed_tokens;
            self.permuted_seconds += permuted.seconds;
        }
        self.compute_seconds += scores.seconds;
        let (own, permuted) = scores.logprobs.split_at(own_count);
        match unit.task {
            Task::Stated => {
                self.stated.extend(stated::items(
                    unit.scenario,
                    &plan.protocol.task1_variants(),
                    &plan.selection.values,
                    own,
                ));
                if plan.sample.is_some() {
                    self.permuted_stated.extend(pride::task1_items(
                        unit.scenario,
                        &plan.pride_sample().task1_variants(unit.scenario),
                        &plan.selection.values,
                        permuted,
                    ));
                }
            }
            Task::Action => {
                self.action.extend(action::items(
                    plan.dataset,
                    unit.scenario,
                    &plan.protocol.task2_variants(),
                    &plan.selection.values,
                    own,
                ));
                if plan.sample.is_some() {
                    self.permuted_action.extend(pride::task2_items(
                        unit.scenario,
                        &plan.pride_sample().task2_questions(unit.scenario),
                        permuted,
                    ));
                }
            }
        }
    }
}

/// Scores every one of `units` (of `plan`) that `store` does not already hold, storing each.
pub fn execute(
    plan: &Plan,
    units: &[Unit],
    model: &Model,
    options: &EngineOptions,
    store: &UnitStore,
    progress: &ProgressBar,
) -> Result<Outcome> {
    progress.set_length(units.iter().map(|&u| plan.weight(u)).sum());
    let mut outcome = Outcome {
        units: units.len(),
        ..Outcome::default()
    };
    let started = Instant::now();
    // Units of one scenario's country share the chat template's system prompt and the
    // questions' openings; with a cache those are computed once per run, not once per unit.
    let mut cache = (options.prefix_cache_bytes > 0)
        .then(|| engine::PrefixCache::new(options.prefix_cache_bytes, model.kv_geometry()));
    for &unit in units {
        progress.set_message(unit.describe());
        let (requests, own_count) = plan.requests(unit)?;
        let scores = match store.load(unit, &requests)? {
            Some(scores) => {
                outcome.resumed_units += 1;
                // Off the bar rather than onto it, so the ETA reflects only work still to do.
                progress.dec_length(plan.weight(unit));
                scores
            }
            None => {
                let scoring = Instant::now();
                let (scores, stats) =
                    engine::score_cached(model, &requests, options, None, cache.as_mut())
                        .with_context(|| format!("scoring {}", unit.describe()))?;
                let seconds = scoring.elapsed().as_secs_f64();
                // What the permuted questions add: the unit's tokens beyond those its own
                // questions alone would compute (planned, not run), and that share of its time.
                let permuted = match own_count < requests.len() {
                    true => {
                        let own = engine::plan_stats(model, &requests[..own_count], options)?;
                        let tokens = stats.computed_tokens.saturating_sub(own.computed_tokens);
                        Some(PermutedCost {
                            computed_tokens: tokens,
                            seconds: seconds * tokens as f64 / stats.computed_tokens.max(1) as f64,
                        })
                    }
                    false => None,
                };
                let scores = UnitScores {
                    unit: unit.name(),
                    seconds,
                    stats,
                    ids: scores.iter().map(|s| s.id.clone()).collect(),
                    logprobs: scores.iter().map(|s| s.logprob).collect(),
                    permuted,
                };
                store.save(unit, &scores)?;
                progress.inc(plan.weight(unit));
                scores
            }
        };
        outcome.add(plan, unit, &scores, own_count);
    }
    outcome.session_seconds = started.elapsed().as_secs_f64();
    Ok(outcome)
}
