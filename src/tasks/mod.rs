//! The two VIA tasks on top of the engine: Task 1 (stated values) and Task 2 (actions) turned
//! into (context, continuation) requests, and their option log-probabilities turned back into
//! the stated matrix V and the action matrix A; what a run covers (protocol, filters); PriDe's
//! permuted questions and label priors (`pride`); and the same matrices read from the paper's
//! released outputs (`released`).

pub mod action;
pub mod pride;
pub mod released;
pub mod stated;

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};

use crate::metrics::{Cells, Matrix};
use crate::prompts::chat::ChatTemplate;
use crate::prompts::{
    TASK1_REVERSED_VARIANTS, TASK1_VARIANTS, TASK2_PAPER_VARIANT, TASK2_PAPER_VARIANT_SWAPPED,
    TASK2_VARIANTS,
};
use crate::via::vocabulary::{COUNTRIES, TOPICS, VALUES};
use crate::via::{country_index, scenario_index, topic_index, value_index};

/// Which prompt variants a run asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// What the paper ran: Task-1 variants 0–7, Task-2 variant 5 only.
    Paper,
    /// All eight variants of both tasks (cancels Task 2's option-position bias).
    Full,
    /// Each question asked both ways round: Task-1 variants 0–7 and each with its answer scale
    /// reversed (8–15); Task-2 variant 5 and its order-swapped twin, variant 7.
    Balanced,
}

impl Protocol {
    /// The name `--protocol` takes.
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Paper => "paper",
            Protocol::Full => "full",
            Protocol::Balanced => "balanced",
        }
    }

    pub fn task1_variants(self) -> Vec<usize> {
        match self {
            Protocol::Paper | Protocol::Full => (0..TASK1_VARIANTS).collect(),
            Protocol::Balanced => (0..TASK1_VARIANTS + TASK1_REVERSED_VARIANTS).collect(),
        }
    }

    pub fn task2_variants(self) -> Vec<usize> {
        match self {
            Protocol::Paper => vec![TASK2_PAPER_VARIANT],
            Protocol::Full => (0..TASK2_VARIANTS).collect(),
            Protocol::Balanced => vec![TASK2_PAPER_VARIANT, TASK2_PAPER_VARIANT_SWAPPED],
        }
    }
}

/// How an answer's option probabilities become a score.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Scoring {
    /// The most likely option, as a sampled answer at temperature 0 would be.
    Hard,
    /// The expected option under the renormalised option probabilities.
    Soft,
}

impl Scoring {
    /// The name `--scoring` takes.
    pub fn name(self) -> &'static str {
        match self {
            Scoring::Hard => "hard",
            Scoring::Soft => "soft",
        }
    }
}

/// The countries, topics and values a run covers, as indices in the dataset's orders.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selection {
    pub countries: Vec<usize>,
    pub topics: Vec<usize>,
    pub values: Vec<usize>,
}

impl Selection {
    pub fn all() -> Self {
        Self {
            countries: (0..COUNTRIES.len()).collect(),
            topics: (0..TOPICS.len()).collect(),
            values: (0..VALUES.len()).collect(),
        }
    }

    /// Comma-separated name lists (`None` = all); unknown names are errors listing the choices.
    pub fn parse(
        countries: Option<&str>,
        topics: Option<&str>,
        values: Option<&str>,
    ) -> Result<Self> {
        fn pick(
            list: Option<&str>,
            flag: &str,
            names: &[&str],
            index: fn(&str) -> Option<usize>,
        ) -> Result<Vec<usize>> {
            let Some(list) = list else {
                return Ok((0..names.len()).collect());
            };
            let mut picked = Vec::new();
            for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
                match index(name) {
                    Some(i) => picked.push(i),
                    None => bail!(
                        "{flag}: '{name}' is not in the VIA dataset; choose from: {}",
                        names.join(", ")
                    ),
                }
            }
            if picked.is_empty() {
                bail!("{flag} is empty; give comma-separated names or leave it out for all");
            }
            picked.sort_unstable();
            picked.dedup();
            Ok(picked)
        }
        Ok(Self {
            countries: pick(countries, "--countries", &COUNTRIES, country_index)?,
            topics: pick(topics, "--topics", &TOPICS, topic_index)?,
            values: pick(values, "--values", &VALUES, value_index)?,
        })
    }

    /// Scenarios in matrix order (country-major).
    pub fn scenarios(&self) -> Vec<usize> {
        let mut scenarios: Vec<usize> = self
            .countries
            .iter()
            .flat_map(|&c| self.topics.iter().map(move |&t| scenario_index(c, t)))
            .collect();
        scenarios.sort_unstable();
        scenarios
    }

    pub fn cells(&self) -> Cells {
        let mut cells = Cells::none();
        for s in self.scenarios() {
            for &k in &self.values {
                cells.insert(s, k);
            }
        }
        cells
    }

    pub fn is_all(&self) -> bool {
        *self == Self::all()
    }

    /// The selection that `names` (as run.json and a results folder's configuration record
    /// it) name.
    pub fn from_names(names: &SelectionNames) -> Result<Self> {
        fn pick(names: &[String], all: &[&str], what: &str) -> Result<Vec<usize>> {
            let mut picked = Vec::with_capacity(names.len());
            for name in names {
                match all.iter().position(|known| known == name) {
                    Some(i) => picked.push(i),
                    None => bail!("the {what} '{name}' is not in the VIA dataset"),
                }
            }
            picked.sort_unstable();
            picked.dedup();
            Ok(picked)
        }
        Ok(Self {
            countries: pick(&names.countries, &COUNTRIES, "country")?,
            topics: pick(&names.topics, &TOPICS, "topic")?,
            values: pick(&names.values, &VALUES, "value")?,
        })
    }

    /// Names, for run.json.
    pub fn names(&self) -> SelectionNames {
        let names = |ix: &[usize], all: &[&str]| -> Vec<String> {
            ix.iter().map(|&i| all[i].to_string()).collect()
        };
        SelectionNames {
            countries: names(&self.countries, &COUNTRIES),
            topics: names(&self.topics, &TOPICS),
            values: names(&self.values, &VALUES),
        }
    }
}

/// A [`Selection`] by name, as run.json records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SelectionNames {
    pub countries: Vec<String>,
    pub topics: Vec<String>,
    pub values: Vec<String>,
}

/// How a prompt reaches the model: as the single user turn of its chat template, or as plain
/// text followed by a newline (models without a template, or `--chat-template none`).
pub enum PromptFormat {
    Chat(Box<ChatTemplate>),
    Plain,
}

impl PromptFormat {
    pub fn wrap(&self, prompt: &str) -> Result<String> {
        match self {
            PromptFormat::Chat(template) => template.render_user(prompt),
            PromptFormat::Plain => Ok(format!("{prompt}\n")),
        }
    }

    pub fn describe(&self) -> &'static str {
        match self {
            PromptFormat::Chat(_) => "chat template",
            PromptFormat::Plain => "plain prompt + newline",
        }
    }
}

/// Per cell, the mean of the scores given to it, and which cells got any.
pub fn mean_per_cell(scores: impl Iterator<Item = (usize, usize, f64)>) -> (Matrix, Cells) {
    let mut sums = Matrix::filled(0.0);
    let mut counts = Matrix::filled(0.0);
    let mut cells = Cells::none();
    for (s, k, score) in scores {
        sums.set(s, k, sums.get(s, k) + score);
        counts.set(s, k, counts.get(s, k) + 1.0);
        cells.insert(s, k);
    }
    let mut means = Matrix::filled(f64::NAN);
    for (s, k) in cells.iter() {
        means.set(s, k, sums.get(s, k) / counts.get(s, k));
    }
    (means, cells)
}

/// Softmax of log-probabilities: the options' probabilities renormalised over the options.
pub fn renormalise<const N: usize>(logprobs: &[f64; N]) -> [f64; N] {
    let max = logprobs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let mut p = logprobs.map(|lp| (lp - max).exp());
    let total: f64 = p.iter().sum();
    for x in &mut p {
        *x /= total;
    }
    p
}

/// The index of the largest log-probability; ties go to the earlier option.
pub fn argmax<const N: usize>(logprobs: &[f64; N]) -> usize {
    let mut best = 0;
    for (i, &lp) in logprobs.iter().enumerate() {
        if lp > logprobs[best] {
            best = i;
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renormalise_sums_to_one_and_keeps_ratios() {
        let p = renormalise(&[-1.0, -2.0, -3.0, -40.0]);
        assert!((p.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        assert!((p[0] / p[1] - 1f64.exp()).abs() < 1e-9);
    }

    #[test]
    fn argmax_prefers_the_earlier_option_on_ties() {
        assert_eq!(argmax(&[-1.0, -1.0]), 0);
        assert_eq!(argmax(&[-2.0, -1.0, -1.0, -3.0]), 1);
    }

    #[test]
    fn selection_parses_names_and_rejects_unknown_ones() {
        let s = Selection::parse(Some("Egypt, India"), None, Some("Equality")).unwrap();
        assert_eq!(s.countries.len(), 2);
        assert_eq!(s.topics.len(), TOPICS.len());
        assert_eq!(s.cells().len(), 2 * TOPICS.len());
        let e = Selection::parse(Some("Atlantis"), None, None).unwrap_err();
        assert!(e.to_string().contains("'Atlantis'"), "{e}");
        assert!(Selection::parse(None, None, None).unwrap().is_all());
    }
}
