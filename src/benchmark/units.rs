//! The grain of a run: units — one task in one scenario — and the plan that lists a run's
//! units and builds each unit's requests. A unit is always scored the same way (one engine
//! call), so its scores do not depend on which other units ran in the same process.

use std::collections::HashSet;

use anyhow::{Context, Result};

use crate::engine::Request;
use crate::prompts::TASK1_OPTIONS;
use crate::tasks::pride::{self, Sample};
use crate::tasks::{action, stated, PromptFormat, Protocol, Selection};
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

/// One task in one scenario: the grain of scoring and of stored progress. With PriDe, a unit
/// also asks its scenario's sampled questions in their other orders, in the same engine call,
/// so that they share their prompts' prefixes with the questions' own orders.
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

/// What a run asks: the data, the prompt format, the selection, the protocol, and PriDe's
/// sample when it debiases.
pub struct Plan<'a> {
    pub dataset: &'a Dataset,
    pub format: &'a PromptFormat,
    pub selection: &'a Selection,
    pub protocol: Protocol,
    pub sample: Option<Sample>,
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

    /// PriDe's sample; only runs with one ask for it.
    pub fn pride_sample(&self) -> &Sample {
        self.sample
            .as_ref()
            .expect("permuted questions exist only in runs with a sample")
    }

    /// A unit's requests: its questions in the protocol's variants, then (with PriDe) its
    /// sampled questions in their other orders; and how many of them are the former.
    pub fn requests(&self, unit: Unit) -> Result<(Vec<Request>, usize)> {
        let own = match unit.task {
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
        .with_context(|| format!("building the prompts of {}", unit.describe()))?;
        let own_count = own.len();
        let Some(sample) = &self.sample else {
            return Ok((own, own_count));
        };
        let permuted = match unit.task {
            Task::Stated => pride::task1_requests(
                self.format,
                unit.scenario,
                &sample.task1_variants(unit.scenario),
                &self.selection.values,
            ),
            Task::Action => pride::task2_requests(
                self.format,
                self.dataset,
                unit.scenario,
                &sample.task2_questions(unit.scenario),
                &self.selection.values,
            ),
        }
        .with_context(|| format!("building the permuted prompts of {}", unit.describe()))?;
        let mut requests = own;
        requests.extend(permuted);
        Ok((requests, own_count))
    }

    /// An estimate of the tokens a unit computes, for the progress bar.
    pub fn weight(&self, unit: Unit) -> u64 {
        let own = match unit.task {
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
        };
        let permuted = match (&self.sample, unit.task) {
            (None, _) => 0,
            (Some(sample), Task::Stated) => {
                let prompts = sample.task1_variants(unit.scenario).len() as u64;
                prompts * (TASK1_OPTIONS as u64 - 1) * TASK1_PROMPT_TOKENS
            }
            (Some(sample), Task::Action) => {
                sample.task2_questions(unit.scenario).len() as u64 * TASK2_QUESTION_TOKENS
            }
        };
        own + permuted
    }
}
