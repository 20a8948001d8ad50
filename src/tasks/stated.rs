//! Task 1, stated values: for a scenario, variant and value, the context is the wrapped prompt
//! followed by the answer's opening `{"<Value>": "`, and the continuations are the four option
//! digits. Their log-probabilities, renormalised over the four, give a hard score (the most
//! likely option) and a soft score (the expected option); V averages them over the variants.

use anyhow::Result;

use super::{argmax, mean_per_cell, renormalise, PromptFormat, Scoring};
use crate::engine::Request;
use crate::metrics::{Cells, Matrix};
use crate::prompts::{task1_is_reversed, task1_prompt_shifted};
use crate::via::vocabulary::{COUNTRIES, TOPICS, VALUES};

pub const OPTIONS: [&str; 4] = ["1", "2", "3", "4"];

/// One scored Task-1 question: a value's answer in one scenario and variant.
#[derive(Debug, Clone, PartialEq)]
pub struct StatedItem {
    pub scenario: usize,
    pub variant: usize,
    pub value: usize,
    /// Log-probabilities of the continuations "1"–"4".
    pub logprobs: [f64; 4],
}

impl StatedItem {
    pub fn probabilities(&self) -> [f64; 4] {
        renormalise(&self.logprobs)
    }

    /// The most likely option, 1–4, on the paper's scale (1 = strongly agree): a reversed
    /// variant's answer k counts as 5 − k.
    pub fn hard(&self) -> f64 {
        self.on_paper_scale((argmax(&self.logprobs) + 1) as f64)
    }

    /// The expected option, in [1, 4], on the paper's scale.
    pub fn soft(&self) -> f64 {
        let expected = self
            .probabilities()
            .iter()
            .enumerate()
            .map(|(i, p)| (i + 1) as f64 * p)
            .sum();
        self.on_paper_scale(expected)
    }

    fn on_paper_scale(&self, answer: f64) -> f64 {
        match task1_is_reversed(self.variant) {
            true => 5.0 - answer,
            false => answer,
        }
    }

    pub fn score(&self, scoring: Scoring) -> f64 {
        match scoring {
            Scoring::Hard => self.hard(),
            Scoring::Soft => self.soft(),
        }
    }
}

/// The renormalised option probabilities of each question, for the label bias.
pub fn label_questions(items: &[StatedItem]) -> Vec<[f64; 4]> {
    items.iter().map(StatedItem::probabilities).collect()
}

/// `t1|<country>|<topic>|v<variant>[|s<shift>]|<value>|<option>`: a permuted question's id
/// names its shift; the paper's questions keep the ids they always had.
fn request_id(scenario: usize, variant: usize, shift: usize, value: usize, option: &str) -> String {
    let shift = match shift {
        0 => String::new(),
        s => format!("|s{s}"),
    };
    format!(
        "t1|{}|{}|v{variant}{shift}|{}|{option}",
        COUNTRIES[scenario / TOPICS.len()],
        TOPICS[scenario % TOPICS.len()],
        VALUES[value]
    )
}

/// The requests of one scenario: per variant, per value, the four options (in that order).
pub fn requests(
    format: &PromptFormat,
    scenario: usize,
    variants: &[usize],
    values: &[usize],
) -> Result<Vec<Request>> {
    let mut requests = Vec::with_capacity(variants.len() * values.len() * OPTIONS.len());
    for &variant in variants {
        push_prompt_requests(format, scenario, variant, 0, values, &mut requests)?;
    }
    Ok(requests)
}

/// The requests of one prompt — a scenario in one variant with its answers moved `shift`
/// places round the labels — per value, the four options.
pub(super) fn push_prompt_requests(
    format: &PromptFormat,
    scenario: usize,
    variant: usize,
    shift: usize,
    values: &[usize],
    requests: &mut Vec<Request>,
) -> Result<()> {
    let (country, topic) = (
        COUNTRIES[scenario / TOPICS.len()],
        TOPICS[scenario % TOPICS.len()],
    );
    let wrapped = format.wrap(&task1_prompt_shifted(country, topic, variant, shift))?;
    for &value in values {
        let context = format!("{wrapped}{{\"{}\": \"", VALUES[value]);
        for option in OPTIONS {
            requests.push(Request {
                id: request_id(scenario, variant, shift, value, option),
                context: context.clone(),
                continuation: option.to_string(),
            });
        }
    }
    Ok(())
}

/// The items of one scenario from the log-probabilities of its [`requests`], in their order.
pub fn items(
    scenario: usize,
    variants: &[usize],
    values: &[usize],
    logprobs: &[f64],
) -> Vec<StatedItem> {
    assert_eq!(
        logprobs.len(),
        variants.len() * values.len() * OPTIONS.len(),
        "one log-probability per request"
    );
    let mut chunks = logprobs.chunks_exact(OPTIONS.len());
    let mut items = Vec::with_capacity(variants.len() * values.len());
    for &variant in variants {
        for &value in values {
            let lp = chunks.next().expect("length checked above");
            items.push(StatedItem {
                scenario,
                variant,
                value,
                logprobs: [lp[0], lp[1], lp[2], lp[3]],
            });
        }
    }
    items
}

/// V: per cell, `(mean over variants of the score − 1) / 3`; NaN where nothing was asked.
pub fn matrix(items: &[StatedItem], scoring: Scoring) -> Matrix {
    let scores = items
        .iter()
        .map(|item| (item.scenario, item.value, item.score(scoring)));
    let (means, cells) = mean_per_cell(scores);
    let mut v = Matrix::filled(f64::NAN);
    for (s, k) in cells.iter() {
        v.set(s, k, (means.get(s, k) - 1.0) / 3.0);
    }
    v
}

/// The cells a set of Task-1 items covers (what the measures of a run are computed over).
pub fn cells(items: &[StatedItem]) -> Cells {
    let mut cells = Cells::none();
    for item in items {
        cells.insert(item.scenario, item.value);
    }
    cells
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hard_and_soft_scores() {
        let item = StatedItem {
            scenario: 0,
            variant: 0,
            value: 0,
            logprobs: [-3.0, -0.5, -1.0, -9.0],
        };
        assert_eq!(item.hard(), 2.0);
        let p = item.probabilities();
        let expected = p[0] + 2.0 * p[1] + 3.0 * p[2] + 4.0 * p[3];
        assert!((item.soft() - expected).abs() < 1e-12);
        assert!(item.soft() > 2.0 && item.soft() < 3.0);
    }

    /// A reversed variant (8–15) lists "strongly disagree" first: its answer k is the paper's
    /// 5 − k, for the hard and the soft score alike.
    #[test]
    fn reversed_scale_answers_count_as_five_minus_k() {
        let logprobs = [-3.0, -0.5, -1.0, -9.0];
        let paper = StatedItem {
            scenario: 0,
            variant: 2,
            value: 0,
            logprobs,
        };
        let reversed = StatedItem {
            variant: 2 + 8,
            ..paper.clone()
        };
        assert_eq!(paper.hard(), 2.0);
        assert_eq!(reversed.hard(), 3.0);
        assert!((reversed.soft() - (5.0 - paper.soft())).abs() < 1e-12);
        // The same preference stated on both scales gives the same V.
        let agree = StatedItem {
            logprobs: [-0.1, -5.0, -5.0, -5.0],
            ..paper.clone()
        };
        let agree_reversed = StatedItem {
            variant: 10,
            logprobs: [-5.0, -5.0, -5.0, -0.1],
            ..paper
        };
        let v = matrix(&[agree, agree_reversed], Scoring::Hard);
        assert_eq!(v.get(0, 0), 0.0);
    }

    #[test]
    fn matrix_averages_variants_and_normalises() {
        let item = |variant, best: usize| {
            let mut logprobs = [-5.0; 4];
            logprobs[best] = -0.1;
            StatedItem {
                scenario: 3,
                variant,
                value: 7,
                logprobs,
            }
        };
        let v = matrix(&[item(0, 0), item(1, 3)], Scoring::Hard);
        assert!((v.get(3, 7) - 0.5).abs() < 1e-12, "mean 2.5 → (2.5 − 1)/3");
        assert!(v.get(3, 8).is_nan());
    }
}
