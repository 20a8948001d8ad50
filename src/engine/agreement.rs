//! How closely two scorings of the same requests agree (another device, precision or
//! implementation against a reference): per-token log-probability differences and argmax
//! agreement.

use anyhow::{bail, Result};
use serde::Serialize;

use super::types::Score;
use crate::model::Precision;

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Agreement {
    pub requests: usize,
    pub tokens: usize,
    /// Largest |Δ log p| of one continuation token.
    pub max_abs_token_diff: f64,
    pub mean_abs_token_diff: f64,
    /// Largest |Δ| of a whole request's log-probability.
    pub max_abs_request_diff: f64,
    /// Share of requests whose greedy flag is the same in both.
    pub greedy_agreement: f64,
}

impl Agreement {
    /// Compares `actual` with `expected`, request by request (same ids, same order).
    pub fn of(expected: &[Score], actual: &[Score]) -> Result<Self> {
        if expected.len() != actual.len() {
            bail!(
                "{} scores against {} expected: the scorings cover different requests",
                actual.len(),
                expected.len()
            );
        }
        let mut agreement = Agreement {
            requests: expected.len(),
            tokens: 0,
            max_abs_token_diff: 0.0,
            mean_abs_token_diff: 0.0,
            max_abs_request_diff: 0.0,
            greedy_agreement: 1.0,
        };
        let (mut sum, mut same_greedy) = (0.0, 0usize);
        for (e, a) in expected.iter().zip(actual) {
            if e.id != a.id || e.token_logprobs.len() != a.token_logprobs.len() {
                bail!(
                    "request '{}' ({} tokens) is paired with '{}' ({} tokens): the scorings \
                     tokenized differently or are in another order",
                    e.id,
                    e.token_logprobs.len(),
                    a.id,
                    a.token_logprobs.len()
                );
            }
            for (x, y) in e.token_logprobs.iter().zip(&a.token_logprobs) {
                let diff = (x - y).abs();
                // NaN fails every tolerance.
                if diff.is_nan() || diff > agreement.max_abs_token_diff {
                    agreement.max_abs_token_diff = if diff.is_nan() { f64::INFINITY } else { diff };
                }
                sum += diff;
                agreement.tokens += 1;
            }
            agreement.max_abs_request_diff = agreement
                .max_abs_request_diff
                .max((e.logprob - a.logprob).abs());
            same_greedy += usize::from(e.greedy == a.greedy);
        }
        if agreement.tokens > 0 {
            agreement.mean_abs_token_diff = sum / agreement.tokens as f64;
        }
        if agreement.requests > 0 {
            agreement.greedy_agreement = same_greedy as f64 / agreement.requests as f64;
        }
        Ok(agreement)
    }
}

/// One side of a [`Comparison`]: where and in which precision it scored, and how long it took.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Setting {
    pub device: String,
    pub dtype: Precision,
    pub score_s: f64,
}

/// A tested setting against a reference on the same requests, with a tolerance on the largest
/// per-token difference (what `valuelens compare` prints).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Comparison {
    pub model: String,
    pub input: String,
    pub reference: Setting,
    pub tested: Setting,
    pub agreement: Agreement,
    pub tolerance: f64,
    pub within_tolerance: bool,
}

impl Comparison {
    pub fn new(
        model: String,
        input: String,
        reference: Setting,
        tested: Setting,
        agreement: Agreement,
        tolerance: f64,
    ) -> Self {
        Self {
            within_tolerance: agreement.max_abs_token_diff <= tolerance,
            model,
            input,
            reference,
            tested,
            agreement,
            tolerance,
        }
    }

    /// The verdict: an error saying by how much the settings differ when beyond tolerance.
    pub fn verdict(&self) -> Result<()> {
        if !self.within_tolerance {
            bail!(
                "{} on {} differs from {} on {} by up to {:.3e} per token (tolerance {:.1e})",
                self.tested.dtype.name(),
                self.tested.device,
                self.reference.dtype.name(),
                self.reference.device,
                self.agreement.max_abs_token_diff,
                self.tolerance
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn score(id: &str, token_logprobs: Vec<f64>, greedy: bool) -> Score {
        Score {
            id: id.into(),
            logprob: token_logprobs.iter().sum(),
            n_tokens: token_logprobs.len(),
            greedy,
            token_logprobs,
        }
    }

    #[test]
    fn differences_are_per_token_and_mismatches_are_refused() {
        let expected = [
            score("a", vec![-1.0, -2.0], true),
            score("b", vec![-0.5], false),
        ];
        let actual = [
            score("a", vec![-1.1, -2.0], true),
            score("b", vec![-0.5], true),
        ];
        let agreement = Agreement::of(&expected, &actual).unwrap();
        assert_eq!(agreement.tokens, 3);
        assert!((agreement.max_abs_token_diff - 0.1).abs() < 1e-12);
        assert!((agreement.mean_abs_token_diff - 0.1 / 3.0).abs() < 1e-12);
        assert_eq!(agreement.greedy_agreement, 0.5);

        let nan = [
            score("a", vec![f64::NAN, -2.0], true),
            score("b", vec![-0.5], false),
        ];
        let agreement = Agreement::of(&expected, &nan).unwrap();
        assert!(agreement.max_abs_token_diff > 1e9);

        let err = Agreement::of(&expected, &actual[..1])
            .unwrap_err()
            .to_string();
        assert!(err.contains("different requests"), "{err}");
        let swapped = [actual[1].clone(), actual[0].clone()];
        let err = Agreement::of(&expected, &swapped).unwrap_err().to_string();
        assert!(err.contains("another order"), "{err}");
    }
}
