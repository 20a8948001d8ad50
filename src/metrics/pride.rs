//! PriDe (Zheng et al., ICLR 2024, "Large Language Models Are Not Robust Multiple Choice
//! Selectors"): a model's preference for some option labels, estimated as a prior over the
//! labels on a small sample of questions asked with every cyclic permutation of their answers,
//! and divided out of every question's label probabilities. Pure functions of
//! log-probabilities, and the seeded choice of which questions are sampled.
//!
//! The observed probability of label i under permutation I is modelled as
//! P(answer at i | question) · prior(i) / Z_I. Over all cyclic permutations every answer stands
//! at every label once, so the mean over permutations of log P_obs(i) is log prior(i) plus a
//! constant: its softmax is the question's prior.

use sha2::{Digest, Sha256};

/// The log-probabilities renormalised over the options (log-softmax).
pub fn log_softmax<const N: usize>(logprobs: &[f64; N]) -> [f64; N] {
    let max = logprobs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let log_total = logprobs.iter().map(|lp| (lp - max).exp()).sum::<f64>().ln() + max;
    logprobs.map(|lp| lp - log_total)
}

fn softmax<const N: usize>(logits: &[f64; N]) -> [f64; N] {
    log_softmax(logits).map(f64::exp)
}

/// One question's label prior from its label log-probabilities under each cyclic permutation
/// of its answers (`permutations[r]`: the answers moved r places; labels fixed).
pub fn question_prior<const N: usize>(permutations: &[[f64; N]]) -> [f64; N] {
    assert!(!permutations.is_empty(), "a question has its own order");
    let mut mean = [0.0; N];
    for logprobs in permutations {
        for (m, lp) in mean.iter_mut().zip(log_softmax(logprobs)) {
            *m += lp / permutations.len() as f64;
        }
    }
    softmax(&mean)
}

/// A task's estimated label prior and how many sampled questions it rests on.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Prior<const N: usize> {
    pub p: [f64; N],
    pub questions: usize,
}

/// The label prior of a task: the mean of its sampled questions' priors; `None` without
/// questions.
pub fn estimate_prior<const N: usize>(questions: &[Vec<[f64; N]>]) -> Option<[f64; N]> {
    if questions.is_empty() {
        return None;
    }
    let mut prior = [0.0; N];
    for permutations in questions {
        for (p, q) in prior.iter_mut().zip(question_prior(permutations)) {
            *p += q / questions.len() as f64;
        }
    }
    Some(prior)
}

/// A question's log-scores with the prior divided out: log p − log prior. They are not
/// normalised; their argmax is the debiased choice and their softmax the debiased
/// probabilities.
pub fn debias<const N: usize>(logprobs: &[f64; N], prior: &[f64; N]) -> [f64; N] {
    let mut debiased = *logprobs;
    for (d, p) in debiased.iter_mut().zip(prior) {
        *d -= p.ln();
    }
    debiased
}

/// Where `key` falls in the seeded order of questions: uniform on [0, 1) and fixed by the seed
/// and the key alone.
fn draw(seed: u64, key: &str) -> f64 {
    let digest = Sha256::digest(format!("{seed}|{key}").as_bytes());
    let bits = u64::from_be_bytes(digest[..8].try_into().expect("8 bytes"));
    (bits >> 11) as f64 / (1u64 << 53) as f64
}

/// The seeded sample of a fraction of questions, as indices into `keys`: each question is in it
/// when its draw is below `fraction`, so whether a question is sampled depends only on its key
/// and the seed — not on which other questions a run asks. When that leaves none, the question
/// with the lowest draw stands in, so a small run still estimates a prior.
pub fn sample(keys: &[String], fraction: f64, seed: u64) -> Vec<usize> {
    let draws: Vec<f64> = keys.iter().map(|k| draw(seed, k)).collect();
    let sampled: Vec<usize> = (0..keys.len()).filter(|&i| draws[i] < fraction).collect();
    if !sampled.is_empty() || keys.is_empty() {
        return sampled;
    }
    let lowest = (0..keys.len())
        .min_by(|&a, &b| draws[a].total_cmp(&draws[b]))
        .expect("keys is not empty");
    vec![lowest]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::random::{below, splitmix64};

    fn uniform(seed: u64, i: u64) -> f64 {
        (splitmix64(seed.wrapping_add(i)) >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Questions whose answers have random probabilities, observed through a known label prior
    /// in every cyclic permutation: PriDe recovers the prior, and debiasing recovers each
    /// question's own answer probabilities.
    #[test]
    fn a_known_label_prior_is_recovered() {
        let prior = [0.55, 0.25, 0.15, 0.05];
        let mut questions = Vec::new();
        let mut truths = Vec::new();
        for q in 0..40u64 {
            let mut truth = [0.0; 4];
            for (a, t) in truth.iter_mut().enumerate() {
                *t = 0.05 + uniform(7, q * 4 + a as u64);
            }
            let total: f64 = truth.iter().sum();
            truth = truth.map(|t| t / total);
            let observed = |shift: usize| -> [f64; 4] {
                // Label i offers answer (i + shift) mod 4; any per-permutation constant is fine.
                let offset = -3.0 * uniform(11, q * 4 + shift as u64);
                std::array::from_fn(|i| (truth[(i + shift) % 4] * prior[i]).ln() + offset)
            };
            questions.push((0..4).map(observed).collect::<Vec<_>>());
            truths.push(truth);
        }
        let estimated = estimate_prior(&questions).unwrap();
        for (e, p) in estimated.iter().zip(prior) {
            assert!((e - p).abs() < 1e-12, "{estimated:?} vs {prior:?}");
        }
        for (permutations, truth) in questions.iter().zip(&truths) {
            let recovered = softmax(&debias(&permutations[0], &estimated));
            for (r, t) in recovered.iter().zip(truth) {
                assert!((r - t).abs() < 1e-12);
            }
        }
        assert_eq!(estimate_prior::<4>(&[]), None);
    }

    #[test]
    fn two_options_and_a_question_without_bias() {
        // Option 1 is preferred 3:1 whatever it says.
        let q = vec![[0.75f64.ln(), 0.25f64.ln()], [0.75f64.ln(), 0.25f64.ln()]];
        let prior = question_prior(&q);
        assert!((prior[0] - 0.75).abs() < 1e-12);
        // The same answer chosen in both orders: no label preference at all.
        let q = vec![[0.9f64.ln(), 0.1f64.ln()], [0.1f64.ln(), 0.9f64.ln()]];
        let prior = question_prior(&q);
        assert!((prior[0] - 0.5).abs() < 1e-12);
    }

    #[test]
    fn the_sample_is_fixed_by_the_seed_and_the_keys() {
        let keys: Vec<String> = (0..2000).map(|i| format!("question {i}")).collect();
        let a = sample(&keys, 0.05, 1);
        assert_eq!(a, sample(&keys, 0.05, 1));
        assert_ne!(a, sample(&keys, 0.05, 2));
        assert!((70..130).contains(&a.len()), "{} of 2000", a.len());
        // A question's membership does not depend on the other questions asked.
        let half: Vec<String> = keys.iter().step_by(2).cloned().collect();
        let in_half: Vec<usize> = sample(&half, 0.05, 1).iter().map(|i| i * 2).collect();
        let a_even: Vec<usize> = a.iter().copied().filter(|i| i % 2 == 0).collect();
        assert_eq!(in_half, a_even);
        // A run too small for the fraction still samples one question.
        let few = &keys[..below(3, 0, 5) + 1];
        assert_eq!(sample(few, 0.0001, 1).len(), 1);
        assert!(sample(&[], 0.05, 1).is_empty());
    }
}
