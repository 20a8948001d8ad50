//! Rows compared: the cells a row covers, its measures on fewer cells, and two rows' paired
//! differences and gap-rank agreement on the cells both cover.

use super::board::{Entry, Pair};
use crate::metrics::bootstrap::{paired_difference_ci95, scenario_measures, ScenarioMeasures};
use crate::metrics::{self, Cells, Matrix, N_VALUES};
use crate::report::MetricsReport;

/// The cells a report's measures cover.
pub fn covered_cells(report: &MetricsReport) -> Cells {
    let mut cells = Cells::none();
    for &(s, k, _, _) in &report.cell_scores {
        cells.insert(s, k);
    }
    cells
}

/// The cells in both `a` and `b`.
pub fn intersect(a: &Cells, b: &Cells) -> Cells {
    let mut both = Cells::none();
    for (s, k) in a.iter().filter(|&(s, k)| b.contains(s, k)) {
        both.insert(s, k);
    }
    both
}

/// A report's stated and action matrices, from its cells' scores.
fn matrices(report: &MetricsReport) -> (Matrix, Matrix) {
    let (mut stated, mut action) = (Matrix::filled(f64::NAN), Matrix::filled(f64::NAN));
    for &(s, k, v, a) in &report.cell_scores {
        stated.set(s, k, v);
        action.set(s, k, a);
    }
    (stated, action)
}

/// The measures of `report` on `cells` only (its biases, which are properties of the questions
/// asked, kept as they were).
pub fn restrict(report: &MetricsReport, cells: &Cells) -> MetricsReport {
    let (stated, action) = matrices(report);
    MetricsReport::compute(&report.model, &stated, &action, cells).with_bias(report.bias.clone())
}

/// Every pair's paired differences and gap-rank agreement, over the cells both cover.
pub fn pairs_of(entries: &[Entry]) -> Vec<Pair> {
    let matrices: Vec<(Matrix, Matrix)> = entries.iter().map(|e| matrices(&e.report)).collect();
    let mut pairs = Vec::new();
    for a in 0..entries.len() {
        for b in a + 1..entries.len() {
            let shared = intersect(&entries[a].cells, &entries[b].cells);
            pairs.push(pair(a, b, &matrices[a], &matrices[b], &shared));
        }
    }
    pairs
}

/// Entries `a` and `b` compared on `shared`: the differences of their overall measures there,
/// the paired interval, and how alike the order of their per-value gaps is.
pub fn pair(
    a: usize,
    b: usize,
    ma: &(Matrix, Matrix),
    mb: &(Matrix, Matrix),
    shared: &Cells,
) -> Pair {
    let measures_a = scenario_measures(&ma.0, &ma.1, shared);
    let measures_b = scenario_measures(&mb.0, &mb.1, shared);
    let (mut xs, mut ys) = (Vec::new(), Vec::new());
    for (x, y) in measures_a.into_iter().zip(measures_b) {
        if let (Some(x), Some(y)) = (x, y) {
            xs.push(x);
            ys.push(y);
        }
    }
    let mean_f1 =
        |m: &[ScenarioMeasures]| m.iter().map(|s| s.f1).sum::<f64>() / m.len().max(1) as f64;
    let distance = |m: &[ScenarioMeasures]| {
        let cells: usize = m.iter().map(|s| s.cells).sum();
        m.iter().map(|s| s.distance_sum).sum::<f64>() / cells.max(1) as f64
    };
    Pair {
        a,
        b,
        cells: shared.len(),
        scenarios: xs.len(),
        f1_difference: mean_f1(&xs) - mean_f1(&ys),
        distance_difference: distance(&xs) - distance(&ys),
        ci95: paired_difference_ci95(&xs, &ys),
        gap_rank_agreement: metrics::spearman(&value_gaps(ma, shared), &value_gaps(mb, shared)),
    }
}

/// Mean |v − a| per value over `cells` (NaN for a value without cells).
pub fn value_gaps((stated, action): &(Matrix, Matrix), cells: &Cells) -> Vec<f64> {
    let mut sums = vec![(0.0, 0usize); N_VALUES];
    for (s, k) in cells.iter() {
        let d = (stated.get(s, k) - action.get(s, k)).abs();
        if !d.is_nan() {
            sums[k].0 += d;
            sums[k].1 += 1;
        }
    }
    sums.into_iter()
        .map(|(sum, n)| match n {
            0 => f64::NAN,
            _ => sum / n as f64,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report_of(cells: &Cells, action_flip_every: usize) -> MetricsReport {
        let (mut stated, mut action) = (Matrix::filled(f64::NAN), Matrix::filled(f64::NAN));
        for (i, (s, k)) in cells.iter().enumerate() {
            let v = if (s + k) % 3 == 0 { 0.8 } else { 0.1 };
            stated.set(s, k, v);
            let flipped = i % action_flip_every == 0;
            action.set(s, k, if flipped { 1.0 - v } else { v });
        }
        MetricsReport::compute("m", &stated, &action, cells)
    }

    #[test]
    fn restricting_to_all_covered_cells_changes_nothing_and_pairs_are_antisymmetric() {
        let mut cells = Cells::none();
        for s in 0..20 {
            for k in 0..10 {
                cells.insert(s, k);
            }
        }
        let a = report_of(&cells, 4);
        let same = restrict(&a, &cells);
        assert_eq!(same.alignment_rate.overall, a.alignment_rate.overall);
        assert_eq!(same.distances.overall, a.distances.overall);
        let b = report_of(&cells, 9);
        let (ma, mb) = (matrices(&a), matrices(&b));
        let ab = pair(0, 1, &ma, &mb, &cells);
        let ba = pair(1, 0, &mb, &ma, &cells);
        assert_eq!(ab.scenarios, 20);
        assert!(
            (ab.f1_difference - (a.alignment_rate.overall - b.alignment_rate.overall)).abs()
                < 1e-12
        );
        assert!((ab.f1_difference + ba.f1_difference).abs() < 1e-12);
        let (x, y) = (ab.ci95.unwrap(), ba.ci95.unwrap());
        assert!((x.alignment_rate[0] + y.alignment_rate[1]).abs() < 1e-12);
        assert_eq!(pair(0, 0, &ma, &ma, &cells).gap_rank_agreement, Some(1.0));
    }
}
