//! The one-screen summary that ends a run: the measures per country, tokens and time.

use std::fmt::Write as _;
use std::path::Path;

use super::record::RunRecord;
use crate::report::MetricsReport;

/// The summary of a finished run whose results are in `out` (with `figures` figures).
pub fn summary(report: &MetricsReport, record: &RunRecord, out: &Path, figures: usize) -> String {
    let mut text = String::new();
    let debiased = match &record.pride {
        Some(_) => " · PriDe-debiased",
        None => "",
    };
    let _ = writeln!(
        text,
        "{} · {} protocol{debiased} · {} scoring · {} cells",
        report.model,
        record.protocol.name(),
        record.scoring.name(),
        report.covered_cells
    );
    let _ = writeln!(
        text,
        "alignment rate (F1) {:.4}{} · misaligned cells {} · distance {:.4}{}",
        report.alignment_rate.overall,
        report.ci_text(|ci| ci.alignment_rate),
        report.misaligned.total,
        report.distances.overall,
        report.ci_text(|ci| ci.distance)
    );
    for warning in report
        .bias
        .warnings()
        .into_iter()
        .chain(report.undecided_warning())
    {
        let _ = writeln!(text, "{warning}");
    }
    let _ = writeln!(text, "{:<16} {:>6} {:>9}", "country", "F1", "distance");
    for ((country, f1), (_, d)) in report
        .alignment_rate
        .by_country
        .iter()
        .zip(report.distance_by_country())
    {
        if !f1.is_nan() {
            let _ = writeln!(text, "{country:<16} {f1:>6.3} {d:>9.3}");
        }
    }
    let _ = writeln!(
        text,
        "{} tokens computed ({} in the requests) in {:.1} s of scoring ({} of {} units resumed); \
         wall {:.1} s",
        record.tokens.computed_tokens,
        record.tokens.request_tokens,
        record.timings.compute_s_all_units,
        record.units.resumed,
        record.units.total,
        record.timings.wall_s
    );
    if record.tokens.rechecked_requests > 0 {
        let _ = writeln!(
            text,
            "near ties: {} requests scored again with finer activations, {} tokens ({:.1} % of \
             the computed)",
            record.tokens.rechecked_requests,
            record.tokens.rechecked_tokens,
            100.0 * record.tokens.rechecked_tokens as f64
                / record.tokens.computed_tokens.max(1) as f64
        );
    }
    if let Some(pride) = &record.pride {
        let _ = writeln!(
            text,
            "PriDe sample: {} Task-1 prompts and {} Task-2 questions, {} tokens computed ({:.1} % \
             of the run) in {:.1} s",
            pride.task1_prompts,
            pride.task2_questions,
            pride.computed_tokens,
            100.0 * pride.computed_tokens as f64 / record.tokens.computed_tokens.max(1) as f64,
            pride.compute_s
        );
    }
    let pride_file = if record.pride.is_some() {
        ", pride.csv"
    } else {
        ""
    };
    let _ = writeln!(
        text,
        "results: {} (run.json, stated.csv, action.csv{pride_file}, metrics.json, summary.md, \
         cells.csv, {figures} figures)",
        out.display()
    );
    text
}
