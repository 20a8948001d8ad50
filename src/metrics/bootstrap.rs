//! How sure the overall measures are: 95 % percentile bootstrap intervals over scenarios
//! (country × topic), the unit the benchmark samples. Each resample draws as many scenarios
//! as were covered, with replacement, from a fixed seed, and recomputes the overall alignment
//! rate (mean of the scenarios' F1) and distance (mean over the drawn scenarios' cells).
//! Two models are compared the same way, paired: each resample draws the same scenarios for
//! both, so what they share (a scenario that is hard for every model) cancels out.

use super::{alignment_rate, scenario_distance_sums, Cells, Matrix};
use crate::random::below;

/// Resamples per interval.
pub const RESAMPLES: usize = 1000;
/// The stream the resamples are drawn from: the same intervals on every machine and run.
pub const SEED: u64 = 0x0b00_75a2_0000_0095;

/// What one covered scenario contributes to the overall measures.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScenarioMeasures {
    pub f1: f64,
    /// Sum of |v − a| over the scenario's covered cells, and how many there are.
    pub distance_sum: f64,
    pub cells: usize,
}

/// What each scenario contributes to the overall measures of `stated` and `action` over `cells`,
/// by scenario index; `None` for a scenario without covered cells.
pub fn scenario_measures(
    stated: &Matrix,
    action: &Matrix,
    cells: &Cells,
) -> Vec<Option<ScenarioMeasures>> {
    let (per_scenario_f1, _) = alignment_rate(stated, action, cells);
    scenario_measures_with_f1(&per_scenario_f1, stated, action, cells)
}

/// [`scenario_measures`] for a caller that has the scenarios' F1 already.
pub fn scenario_measures_with_f1(
    per_scenario_f1: &[f64],
    stated: &Matrix,
    action: &Matrix,
    cells: &Cells,
) -> Vec<Option<ScenarioMeasures>> {
    per_scenario_f1
        .iter()
        .zip(scenario_distance_sums(stated, action, cells))
        .map(|(&f1, (distance_sum, cells))| {
            (!f1.is_nan()).then_some(ScenarioMeasures {
                f1,
                distance_sum,
                cells,
            })
        })
        .collect()
}

/// 95 % intervals `[lo, hi]` of the overall measures.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Intervals {
    pub alignment_rate: [f64; 2],
    pub distance: [f64; 2],
}

/// The intervals over `scenarios` (the covered ones); `None` when there are none.
pub fn overall_ci95(scenarios: &[ScenarioMeasures]) -> Option<Intervals> {
    let n = scenarios.len();
    if n == 0 {
        return None;
    }
    let mut rates = Vec::with_capacity(RESAMPLES);
    let mut distances = Vec::with_capacity(RESAMPLES);
    for resample in 0..RESAMPLES {
        let (mut f1_sum, mut distance_sum, mut cells) = (0.0, 0.0, 0usize);
        for draw in 0..n {
            let s = &scenarios[below(SEED, (resample * n + draw) as u64, n)];
            f1_sum += s.f1;
            distance_sum += s.distance_sum;
            cells += s.cells;
        }
        rates.push(f1_sum / n as f64);
        distances.push(match cells {
            0 => f64::NAN,
            _ => distance_sum / cells as f64,
        });
    }
    Some(Intervals {
        alignment_rate: percentile_interval(&mut rates),
        distance: percentile_interval(&mut distances),
    })
}

/// 95 % intervals of the differences `a − b` of the overall measures of two models, over the
/// scenarios both cover: `a[i]` and `b[i]` are the same scenario, measured on the same cells.
/// Each resample draws one set of scenarios and recomputes both models' measures on it.
pub fn paired_difference_ci95(a: &[ScenarioMeasures], b: &[ScenarioMeasures]) -> Option<Intervals> {
    assert_eq!(a.len(), b.len(), "paired measures come in pairs");
    let n = a.len();
    if n == 0 {
        return None;
    }
    let seed = SEED ^ PAIRED_STREAM;
    let mut rates = Vec::with_capacity(RESAMPLES);
    let mut distances = Vec::with_capacity(RESAMPLES);
    for resample in 0..RESAMPLES {
        let (mut f1_difference, mut sum_a, mut sum_b, mut cells) = (0.0, 0.0, 0.0, 0usize);
        for draw in 0..n {
            let i = below(seed, (resample * n + draw) as u64, n);
            f1_difference += a[i].f1 - b[i].f1;
            sum_a += a[i].distance_sum;
            sum_b += b[i].distance_sum;
            cells += a[i].cells;
        }
        rates.push(f1_difference / n as f64);
        distances.push(match cells {
            0 => f64::NAN,
            _ => (sum_a - sum_b) / cells as f64,
        });
    }
    Some(Intervals {
        alignment_rate: percentile_interval(&mut rates),
        distance: percentile_interval(&mut distances),
    })
}

/// The stream of paired resamples, apart from the single-model intervals' own.
const PAIRED_STREAM: u64 = 0x7061_6972_6564;

/// The interval of the mean of `values` (e.g. one country's scenario F1s), resampled from
/// stream `stream` (a different one per group, so that groups do not share their draws).
pub fn mean_ci95(values: &[f64], stream: u64) -> Option<[f64; 2]> {
    let n = values.len();
    if n == 0 {
        return None;
    }
    let seed = SEED ^ stream.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    let mut means: Vec<f64> = (0..RESAMPLES)
        .map(|resample| {
            let sum: f64 = (0..n)
                .map(|draw| values[below(seed, (resample * n + draw) as u64, n)])
                .sum();
            sum / n as f64
        })
        .collect();
    Some(percentile_interval(&mut means))
}

/// The 2.5th and 97.5th percentiles, interpolated linearly between order statistics (numpy's
/// default).
pub fn percentile_interval(values: &mut [f64]) -> [f64; 2] {
    values.sort_by(f64::total_cmp);
    let at = |q: f64| {
        let h = q * (values.len() - 1) as f64;
        let (below, above) = (h.floor() as usize, h.ceil() as usize);
        values[below] + (h - below as f64) * (values[above] - values[below])
    };
    [at(0.025), at(0.975)]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scenario(f1: f64, distance: f64) -> ScenarioMeasures {
        ScenarioMeasures {
            f1,
            distance_sum: distance * 56.0,
            cells: 56,
        }
    }

    #[test]
    fn intervals_contain_the_estimate_and_shrink_with_agreement() {
        let spread: Vec<_> = (0..132)
            .map(|i| scenario((i % 11) as f64 / 10.0, (i % 5) as f64 / 4.0))
            .collect();
        let ci = overall_ci95(&spread).unwrap();
        let mean_f1 = spread.iter().map(|s| s.f1).sum::<f64>() / 132.0;
        assert!(
            ci.alignment_rate[0] < mean_f1 && mean_f1 < ci.alignment_rate[1],
            "{ci:?}"
        );
        assert!(ci.alignment_rate[1] - ci.alignment_rate[0] < 0.15, "{ci:?}");
        assert!(ci.distance[0] < 0.5 && 0.5 < ci.distance[1], "{ci:?}");
        assert_eq!(
            overall_ci95(&spread),
            Some(ci),
            "the same seed, the same interval"
        );
        let same = vec![scenario(0.4, 0.3); 20];
        let ci = overall_ci95(&same).unwrap();
        assert!(
            (ci.alignment_rate[0] - 0.4).abs() < 1e-12
                && (ci.alignment_rate[1] - 0.4).abs() < 1e-12
        );
        assert_eq!(overall_ci95(&[]), None);
    }

    #[test]
    fn group_intervals_surround_the_group_mean() {
        let values = [0.1, 0.4, 0.2, 0.9, 0.5, 0.3];
        let [lo, hi] = mean_ci95(&values, 3).unwrap();
        let mean = values.iter().sum::<f64>() / 6.0;
        assert!(
            lo < mean && mean < hi && lo >= 0.1 && hi <= 0.9,
            "{lo} {hi}"
        );
        assert_eq!(mean_ci95(&values, 3), Some([lo, hi]));
        assert_eq!(mean_ci95(&[], 3), None);
    }

    #[test]
    fn paired_intervals_cancel_what_both_models_share() {
        // Scenario difficulty varies a lot, the difference between the models hardly: the
        // paired interval of the difference is far narrower than either model's own.
        let a: Vec<_> = (0..60)
            .map(|i| scenario((i % 10) as f64 / 10.0 + 0.05, 0.3))
            .collect();
        let b: Vec<_> = (0..60)
            .map(|i| scenario((i % 10) as f64 / 10.0, 0.3 + (i % 3) as f64 * 0.01))
            .collect();
        let ci = paired_difference_ci95(&a, &b).unwrap();
        let [lo, hi] = ci.alignment_rate;
        assert!(
            (lo - 0.05).abs() < 1e-9 && (hi - 0.05).abs() < 1e-9,
            "{ci:?}"
        );
        assert!(ci.distance[0] < -0.005 && ci.distance[1] < 0.0, "{ci:?}");
        let own = overall_ci95(&a).unwrap().alignment_rate;
        assert!(own[1] - own[0] > 0.1, "{own:?}");
        let swapped = paired_difference_ci95(&b, &a).unwrap();
        assert!((swapped.alignment_rate[0] + hi).abs() < 1e-9);
        assert_eq!(paired_difference_ci95(&[], &[]), None);
    }

    #[test]
    fn percentiles_interpolate_as_numpy_does() {
        // numpy.percentile(range(11), [2.5, 97.5]) == [0.25, 9.75]
        let mut values: Vec<f64> = (0..11).rev().map(f64::from).collect();
        assert_eq!(percentile_interval(&mut values), [0.25, 9.75]);
    }
}
