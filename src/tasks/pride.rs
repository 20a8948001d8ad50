//! PriDe on the two tasks (`--debias pride`): the seeded sample of questions a run also asks
//! with their answers permuted round the fixed labels — a Task-1 prompt in its three other
//! cyclic orders, a Task-2 question with its two actions swapped — the label priors estimated
//! from them (`metrics::pride`), and every question's log-probabilities with its task's prior
//! divided out.

use std::collections::{BTreeSet, HashMap};

use anyhow::Result;
use serde::{Deserialize, Serialize};

use super::action::{self, push_question_requests, scenario_pairs, ActionItem, Question};
use super::stated::{self, push_prompt_requests, StatedItem};
use super::{PromptFormat, Protocol, Selection};
use crate::engine::Request;
use crate::metrics::pride::{debias, estimate_prior, sample, Prior};
use crate::prompts::{task2_swapped_variant, TASK1_OPTIONS};
use crate::via::vocabulary::{COUNTRIES, TOPICS, VALUES};
use crate::via::Dataset;

/// Whether a run divides the label priors out of its answers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Debias {
    /// The answers as the model gives them.
    #[default]
    None,
    /// PriDe: label priors estimated on a seeded sample of questions asked in every cyclic
    /// order of their answers, divided out of every question.
    Pride,
}

impl Debias {
    /// The name `--debias` takes.
    pub fn name(self) -> &'static str {
        match self {
            Debias::None => "none",
            Debias::Pride => "pride",
        }
    }

    pub fn is_none(&self) -> bool {
        *self == Debias::None
    }
}

/// Which questions PriDe samples: a fraction of each task's questions, chosen by a seed.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PrideSettings {
    pub fraction: f64,
    pub seed: u64,
}

impl Default for PrideSettings {
    /// 5 % of the questions, as PriDe's paper found enough; the seed is fixed so that every
    /// run samples the same questions.
    fn default() -> Self {
        Self {
            fraction: 0.05,
            seed: 2024,
        }
    }
}

/// The sampled questions of a run. Task 1 is sampled by prompt (a scenario in one variant,
/// with all the run's values), since its values share the prompt; Task 2 by question.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sample {
    /// (scenario, variant).
    pub task1: BTreeSet<(usize, usize)>,
    /// (scenario, value, variant).
    pub task2: BTreeSet<(usize, usize, usize)>,
}

fn scenario_names(scenario: usize) -> (&'static str, &'static str) {
    (
        COUNTRIES[scenario / TOPICS.len()],
        TOPICS[scenario % TOPICS.len()],
    )
}

impl Sample {
    /// The questions of a run's protocol and selection that `settings` sample. A question's
    /// membership depends on its names and the seed only, so a run that asks more (another
    /// protocol, more countries) samples the same questions among those it shares.
    pub fn draw(
        dataset: &Dataset,
        selection: &Selection,
        protocol: Protocol,
        settings: &PrideSettings,
    ) -> Self {
        let scenarios = selection.scenarios();
        let prompts: Vec<(usize, usize)> = scenarios
            .iter()
            .flat_map(|&s| protocol.task1_variants().into_iter().map(move |v| (s, v)))
            .collect();
        let prompt_keys: Vec<String> = prompts
            .iter()
            .map(|&(s, v)| {
                let (country, topic) = scenario_names(s);
                format!("t1|{country}|{topic}|v{v}")
            })
            .collect();
        let questions: Vec<(usize, usize, usize)> = scenarios
            .iter()
            .flat_map(|&s| {
                scenario_pairs(dataset, s, &selection.values)
                    .flat_map(move |(value, _, _)| {
                        protocol
                            .task2_variants()
                            .into_iter()
                            .map(move |v| (s, value, v))
                    })
                    .collect::<Vec<_>>()
            })
            .collect();
        let question_keys: Vec<String> = questions
            .iter()
            .map(|&(s, value, v)| {
                let (country, topic) = scenario_names(s);
                format!("t2|{country}|{topic}|{}|v{v}", VALUES[value])
            })
            .collect();
        Self {
            task1: sample(&prompt_keys, settings.fraction, settings.seed)
                .into_iter()
                .map(|i| prompts[i])
                .collect(),
            task2: sample(&question_keys, settings.fraction, settings.seed)
                .into_iter()
                .map(|i| questions[i])
                .collect(),
        }
    }

    /// The sampled Task-1 variants of a scenario.
    pub fn task1_variants(&self, scenario: usize) -> Vec<usize> {
        self.task1
            .range((scenario, 0)..(scenario + 1, 0))
            .map(|&(_, v)| v)
            .collect()
    }

    /// The sampled Task-2 questions of a scenario, as (value, variant).
    pub fn task2_questions(&self, scenario: usize) -> Vec<(usize, usize)> {
        self.task2
            .range((scenario, 0, 0)..(scenario + 1, 0, 0))
            .map(|&(_, value, v)| (value, v))
            .collect()
    }
}

/// A sampled question asked with its answers moved `shift` places round the labels.
#[derive(Debug, Clone, PartialEq)]
pub struct PermutedItem<const N: usize> {
    pub scenario: usize,
    pub value: usize,
    /// The question's own variant (a Task-2 question's swap is asked as its twin variant).
    pub variant: usize,
    pub shift: usize,
    /// Log-probabilities of the labels "1"… in label order.
    pub logprobs: [f64; N],
}

/// The permuted requests of a scenario's sampled Task-1 prompts: per variant, shifts 1–3, per
/// value, the four options.
pub fn task1_requests(
    format: &PromptFormat,
    scenario: usize,
    variants: &[usize],
    values: &[usize],
) -> Result<Vec<Request>> {
    let mut requests = Vec::new();
    for &variant in variants {
        for shift in 1..TASK1_OPTIONS {
            push_prompt_requests(format, scenario, variant, shift, values, &mut requests)?;
        }
    }
    Ok(requests)
}

/// The items of [`task1_requests`] from their log-probabilities, in their order.
pub fn task1_items(
    scenario: usize,
    variants: &[usize],
    values: &[usize],
    logprobs: &[f64],
) -> Vec<PermutedItem<4>> {
    assert_eq!(
        logprobs.len(),
        variants.len() * (TASK1_OPTIONS - 1) * values.len() * stated::OPTIONS.len(),
        "one log-probability per request"
    );
    let mut chunks = logprobs.chunks_exact(stated::OPTIONS.len());
    let mut items = Vec::new();
    for &variant in variants {
        for shift in 1..TASK1_OPTIONS {
            for &value in values {
                let lp = chunks.next().expect("length checked above");
                items.push(PermutedItem {
                    scenario,
                    value,
                    variant,
                    shift,
                    logprobs: [lp[0], lp[1], lp[2], lp[3]],
                });
            }
        }
    }
    items
}

/// The swapped requests of a scenario's sampled Task-2 questions ((value, variant) pairs).
pub fn task2_requests(
    format: &PromptFormat,
    dataset: &Dataset,
    scenario: usize,
    questions: &[(usize, usize)],
    values: &[usize],
) -> Result<Vec<Request>> {
    let pairs: HashMap<usize, (&str, &str)> = scenario_pairs(dataset, scenario, values)
        .map(|(value, negative, positive)| (value, (negative, positive)))
        .collect();
    let mut requests = Vec::new();
    for &(value, variant) in questions {
        let (negative, positive) = pairs[&value];
        let question = Question {
            scenario,
            value,
            negative,
            positive,
        };
        let twin = task2_swapped_variant(variant);
        push_question_requests(format, &question, variant, twin, &mut requests)?;
    }
    Ok(requests)
}

/// The items of [`task2_requests`] from their log-probabilities, in their order.
pub fn task2_items(
    scenario: usize,
    questions: &[(usize, usize)],
    logprobs: &[f64],
) -> Vec<PermutedItem<2>> {
    assert_eq!(
        logprobs.len(),
        questions.len() * action::OPTIONS.len(),
        "one log-probability per request"
    );
    questions
        .iter()
        .zip(logprobs.chunks_exact(action::OPTIONS.len()))
        .map(|(&(value, variant), lp)| PermutedItem {
            scenario,
            value,
            variant,
            shift: 1,
            logprobs: [lp[0], lp[1]],
        })
        .collect()
}

/// Both tasks' priors; `None` for a task without a complete sampled question.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Priors {
    pub task1: Option<Prior<4>>,
    pub task2: Option<Prior<2>>,
}

/// The prior of questions keyed by `key`: each question's own order (shift 0) from `asked`,
/// its other `N` − 1 orders from `permuted`. Questions missing an order are left out.
fn prior_of<const N: usize, K: std::hash::Hash + Eq + Ord + Copy>(
    asked: impl Iterator<Item = (K, [f64; N])>,
    permuted: impl Iterator<Item = (K, usize, [f64; N])>,
) -> Option<Prior<N>> {
    let mut orders: std::collections::BTreeMap<K, Vec<Option<[f64; N]>>> = Default::default();
    for (key, shift, logprobs) in permuted {
        orders.entry(key).or_insert_with(|| vec![None; N])[shift] = Some(logprobs);
    }
    for (key, logprobs) in asked {
        if let Some(question) = orders.get_mut(&key) {
            question[0] = Some(logprobs);
        }
    }
    let complete: Vec<Vec<[f64; N]>> = orders
        .into_values()
        .filter_map(|question| question.into_iter().collect::<Option<Vec<_>>>())
        .collect();
    estimate_prior(&complete).map(|p| Prior {
        p,
        questions: complete.len(),
    })
}

/// The label priors of a run's answers from its sampled questions' permutations.
pub fn priors(
    stated: &[StatedItem],
    action: &[ActionItem],
    permuted_stated: &[PermutedItem<4>],
    permuted_action: &[PermutedItem<2>],
) -> Priors {
    Priors {
        task1: prior_of(
            stated
                .iter()
                .map(|i| ((i.scenario, i.variant, i.value), i.logprobs)),
            permuted_stated
                .iter()
                .map(|p| ((p.scenario, p.variant, p.value), p.shift, p.logprobs)),
        ),
        task2: prior_of(
            action
                .iter()
                .map(|i| ((i.scenario, i.variant, i.value), i.logprobs)),
            permuted_action
                .iter()
                .map(|p| ((p.scenario, p.variant, p.value), p.shift, p.logprobs)),
        ),
    }
}

/// Task-1 questions with the prior divided out: their log-probabilities become the debiased
/// log-scores, from which the scores, V and the measures follow unchanged.
pub fn debias_stated(items: &[StatedItem], prior: Option<&Prior<4>>) -> Vec<StatedItem> {
    items
        .iter()
        .map(|item| StatedItem {
            logprobs: prior.map_or(item.logprobs, |prior| debias(&item.logprobs, &prior.p)),
            ..item.clone()
        })
        .collect()
}

/// Task-2 questions with the prior divided out (see [`debias_stated`]).
pub fn debias_action(items: &[ActionItem], prior: Option<&Prior<2>>) -> Vec<ActionItem> {
    items
        .iter()
        .map(|item| ActionItem {
            logprobs: prior.map_or(item.logprobs, |prior| debias(&item.logprobs, &prior.p)),
            ..item.clone()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_prior_joins_each_question_with_its_own_order() {
        let own = StatedItem {
            scenario: 4,
            variant: 1,
            value: 9,
            logprobs: [0.5f64.ln(), 0.3f64.ln(), 0.1f64.ln(), 0.1f64.ln()],
        };
        // Label 1 always gets 0.5, whatever it offers: the prior is the observed distribution.
        let permuted: Vec<PermutedItem<4>> = (1..4)
            .map(|shift| PermutedItem {
                scenario: 4,
                value: 9,
                variant: 1,
                shift,
                logprobs: own.logprobs,
            })
            .collect();
        let priors = priors(std::slice::from_ref(&own), &[], &permuted, &[]);
        let prior = priors.task1.unwrap();
        assert_eq!(prior.questions, 1);
        assert!((prior.p[0] - 0.5).abs() < 1e-12);
        assert_eq!(priors.task2, None);
        // Divided out, nothing is preferred.
        let debiased = debias_stated(std::slice::from_ref(&own), Some(&prior));
        let p = debiased[0].probabilities();
        assert!(p.iter().all(|&x| (x - 0.25).abs() < 1e-12), "{p:?}");
        // A question missing one of its orders does not count.
        assert_eq!(priors_of_incomplete(&own, &permuted[..2]), None);
    }

    fn priors_of_incomplete(own: &StatedItem, permuted: &[PermutedItem<4>]) -> Option<Prior<4>> {
        priors(std::slice::from_ref(own), &[], permuted, &[]).task1
    }
}
