//! Binary classification measures as sklearn computes them (positive class 1, zero_division
//! → 0), with 95 % percentile bootstrap intervals over the classified items: how well an
//! observer predicts a target's choices (the paper's Table 14).

use serde::Serialize;

use super::bootstrap::{percentile_interval, RESAMPLES, SEED};
use crate::random::below;

/// Counts of the four outcomes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Confusion {
    pub true_positive: usize,
    pub false_positive: usize,
    pub true_negative: usize,
    pub false_negative: usize,
}

impl Confusion {
    pub fn of(pairs: impl IntoIterator<Item = (bool, bool)>) -> Self {
        let mut c = Self::default();
        for (truth, predicted) in pairs {
            match (truth, predicted) {
                (true, true) => c.true_positive += 1,
                (false, true) => c.false_positive += 1,
                (false, false) => c.true_negative += 1,
                (true, false) => c.false_negative += 1,
            }
        }
        c
    }

    pub fn total(&self) -> usize {
        self.true_positive + self.false_positive + self.true_negative + self.false_negative
    }

    pub fn measures(&self) -> Measures {
        let ratio = |num: usize, den: usize| {
            if den == 0 {
                0.0
            } else {
                num as f64 / den as f64
            }
        };
        let (tp, fp, tn, fn_) = (
            self.true_positive,
            self.false_positive,
            self.true_negative,
            self.false_negative,
        );
        Measures {
            f1: ratio(2 * tp, 2 * tp + fp + fn_),
            accuracy: ratio(tp + tn, self.total()),
            precision: ratio(tp, tp + fp),
            recall: ratio(tp, tp + fn_),
        }
    }
}

/// sklearn's `f1_score`, `accuracy_score`, `precision_score`, `recall_score`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Measures {
    pub f1: f64,
    pub accuracy: f64,
    pub precision: f64,
    pub recall: f64,
}

/// 95 % intervals of each measure.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct MeasureIntervals {
    pub f1: [f64; 2],
    pub accuracy: [f64; 2],
    pub precision: [f64; 2],
    pub recall: [f64; 2],
}

/// Percentile bootstrap over the items (`(truth, predicted)` pairs), from a fixed stream per
/// `stream`, so that the intervals are the same on every machine; `None` without items.
pub fn measure_ci95(items: &[(bool, bool)], stream: u64) -> Option<MeasureIntervals> {
    let n = items.len();
    if n == 0 {
        return None;
    }
    let seed = SEED ^ stream.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    let mut draws: [Vec<f64>; 4] = std::array::from_fn(|_| Vec::with_capacity(RESAMPLES));
    for resample in 0..RESAMPLES {
        let confusion =
            Confusion::of((0..n).map(|draw| items[below(seed, (resample * n + draw) as u64, n)]));
        let m = confusion.measures();
        for (column, x) in draws
            .iter_mut()
            .zip([m.f1, m.accuracy, m.precision, m.recall])
        {
            column.push(x);
        }
    }
    let [f1, accuracy, precision, recall] = draws.map(|mut d| percentile_interval(&mut d));
    Some(MeasureIntervals {
        f1,
        accuracy,
        precision,
        recall,
    })
}

/// The area under the ROC curve of `margin` (higher = more likely positive) against the truth:
/// the probability that a random positive item outranks a random negative one, ties counting
/// half (Mann–Whitney). Independent of any threshold, so a classifier biased toward one label
/// still shows whether it orders the items. `None` when either class is empty.
pub fn roc_auc(items: &[(bool, f64)]) -> Option<f64> {
    let mut sorted: Vec<(f64, bool)> = items.iter().map(|&(t, m)| (m, t)).collect();
    sorted.sort_by(|a, b| a.0.total_cmp(&b.0));
    let positives = sorted.iter().filter(|(_, t)| *t).count();
    let negatives = sorted.len() - positives;
    if positives == 0 || negatives == 0 {
        return None;
    }
    // Sum of the positives' ranks, tied margins sharing their mean rank.
    let mut rank_sum = 0.0;
    let mut start = 0;
    while start < sorted.len() {
        let mut end = start;
        while end + 1 < sorted.len() && sorted[end + 1].0 == sorted[start].0 {
            end += 1;
        }
        let mean_rank = (start + end) as f64 / 2.0 + 1.0;
        rank_sum += mean_rank * sorted[start..=end].iter().filter(|(_, t)| *t).count() as f64;
        start = end + 1;
    }
    let (p, n) = (positives as f64, negatives as f64);
    Some((rank_sum - p * (p + 1.0) / 2.0) / (p * n))
}

/// Percentile bootstrap of [`roc_auc`] (resamples with one class missing are skipped).
pub fn auc_ci95(items: &[(bool, f64)], stream: u64) -> Option<[f64; 2]> {
    let n = items.len();
    if n == 0 {
        return None;
    }
    let seed = SEED ^ stream.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0xa0c;
    let mut aucs: Vec<f64> = (0..RESAMPLES)
        .filter_map(|resample| {
            let drawn: Vec<(bool, f64)> = (0..n)
                .map(|draw| items[below(seed, (resample * n + draw) as u64, n)])
                .collect();
            roc_auc(&drawn)
        })
        .collect();
    (!aucs.is_empty()).then(|| percentile_interval(&mut aucs))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// compute.ipynb's GPT-3.5 default setting: cm [[50 50] [1 99]] → f1 0.7951807228915663,
    /// accuracy 0.745, precision 0.6644295302013423, recall 0.99.
    #[test]
    fn measures_equal_sklearns() {
        let c = Confusion {
            true_positive: 99,
            false_positive: 50,
            true_negative: 50,
            false_negative: 1,
        };
        let m = c.measures();
        assert_eq!(m.f1, 0.7951807228915663);
        assert_eq!(m.accuracy, 0.745);
        assert_eq!(m.precision, 0.6644295302013423);
        assert_eq!(m.recall, 0.99);
        let none = Confusion::default().measures();
        assert_eq!(
            (none.f1, none.precision, none.recall, none.accuracy),
            (0.0, 0.0, 0.0, 0.0)
        );
    }

    #[test]
    fn auc_counts_ordered_pairs_and_ties_half() {
        let perfect = [(false, 0.1), (true, 0.9), (false, 0.2), (true, 0.8)];
        assert_eq!(roc_auc(&perfect), Some(1.0));
        let reversed = [(true, 0.1), (false, 0.9)];
        assert_eq!(roc_auc(&reversed), Some(0.0));
        let tied = [(true, 0.5), (false, 0.5)];
        assert_eq!(roc_auc(&tied), Some(0.5));
        // Positives 0.3, 0.7 against negatives 0.1, 0.5, 0.7: 1 + 0 + 0 and 1 + 1 + 0.5.
        let mixed = [
            (true, 0.3),
            (true, 0.7),
            (false, 0.1),
            (false, 0.5),
            (false, 0.7),
        ];
        assert_eq!(roc_auc(&mixed), Some(3.5 / 6.0));
        assert_eq!(roc_auc(&[(true, 0.1)]), None);
        let ci = auc_ci95(&mixed, 3).unwrap();
        assert!(ci[0] <= ci[1]);
    }

    #[test]
    fn intervals_hold_the_estimate_and_are_reproducible() {
        let items: Vec<(bool, bool)> = (0..200).map(|i| (i < 100, i < 100 || i % 3 == 0)).collect();
        let m = Confusion::of(items.iter().copied()).measures();
        let ci = measure_ci95(&items, 7).unwrap();
        assert!(ci.f1[0] <= m.f1 && m.f1 <= ci.f1[1], "{ci:?} {m:?}");
        assert!(ci.accuracy[0] < ci.accuracy[1]);
        assert_eq!(measure_ci95(&items, 7), Some(ci));
        assert!(measure_ci95(&[], 7).is_none());
    }
}
