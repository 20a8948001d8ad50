//! The leaderboard's figures as SVG, in the style of a run's own: F1 per model with its
//! interval; F1 per model × country and model × topic; the share of Task-2 answers "Option 1"
//! per model, as asked and after debiasing; how alike the models' orders of per-value gaps are
//! (Spearman's correlation, a model × model matrix).

use anyhow::Result;
use plotters::style::{Color, RGBColor, BLUE, RED};

use super::board::{Leaderboard, Source};
use crate::report::figures::{grid, horizontal_bars, Bar, Scale};
use crate::via::vocabulary::{COUNTRY_ABBREVIATIONS, TOPIC_SHORT_NAMES};

/// White (0) to dark blue (1): an alignment rate.
fn f1_colour(x: f64) -> RGBColor {
    let x = x.clamp(0.0, 1.0);
    let fade = |full: f64| (255.0 - (255.0 - full) * x).round() as u8;
    RGBColor(fade(20.0), fade(70.0), fade(160.0))
}

const F1_SCALE: Scale = Scale {
    colour: f1_colour,
    top: 1.0,
    bottom: 0.0,
    name: "F1",
};

/// Blue (−1) through white (0) to red (1): a correlation.
fn correlation_colour(r: f64) -> RGBColor {
    let r = r.clamp(-1.0, 1.0);
    let fade = |full: f64, t: f64| (255.0 - (255.0 - full) * t).round() as u8;
    match r >= 0.0 {
        true => RGBColor(fade(170.0, r), fade(20.0, r), fade(30.0, r)),
        false => RGBColor(fade(20.0, -r), fade(70.0, -r), fade(160.0, -r)),
    }
}

const CORRELATION_SCALE: Scale = Scale {
    colour: correlation_colour,
    top: 1.0,
    bottom: -1.0,
    name: "Spearman ρ",
};

/// Every figure, as (file name, what it shows, SVG).
pub fn figures(board: &Leaderboard) -> Result<Vec<(String, String, String)>> {
    let entries = &board.entries;
    let labels: Vec<String> = entries.iter().map(|e| e.label.clone()).collect();
    let mut out = Vec::new();
    let bars: Vec<Bar> = entries
        .iter()
        .map(|e| Bar {
            name: e.label.clone(),
            length: e.report.alignment_rate.overall,
            colour: match e.source {
                Source::Run { .. } => BLUE.mix(0.6),
                Source::Paper { .. } => RGBColor(120, 120, 120).mix(0.6),
            },
            ci: e.report.ci95.map(|ci| ci.alignment_rate),
        })
        .collect();
    out.push((
        "f1_by_model.svg".to_string(),
        "Alignment rate (F1) per model with its 95 % interval".to_string(),
        horizontal_bars(
            "Alignment rate (F1) per model, with 95 % CIs (grey: the paper's API models)",
            &bars,
            1.15,
            "alignment rate (F1, positive class = Disagree); whiskers: 95 % bootstrap interval",
            None,
        )?,
    ));
    for (file, dimension, names, groups) in [
        (
            "f1_model_country.svg",
            "country",
            &COUNTRY_ABBREVIATIONS[..],
            entries
                .iter()
                .map(|e| {
                    e.report
                        .alignment_rate
                        .by_country
                        .iter()
                        .map(|g| g.1)
                        .collect()
                })
                .collect::<Vec<Vec<f64>>>(),
        ),
        (
            "f1_model_topic.svg",
            "topic",
            &TOPIC_SHORT_NAMES[..],
            entries
                .iter()
                .map(|e| {
                    e.report
                        .alignment_rate
                        .by_topic
                        .iter()
                        .map(|g| g.1)
                        .collect()
                })
                .collect(),
        ),
    ] {
        let kept: Vec<usize> = (0..names.len())
            .filter(|&c| groups.iter().any(|row| !row[c].is_nan()))
            .collect();
        let rows: Vec<Vec<f64>> = groups
            .iter()
            .map(|row| kept.iter().map(|&c| row[c]).collect())
            .collect();
        let columns: Vec<String> = kept.iter().map(|&c| names[c].to_string()).collect();
        out.push((
            file.to_string(),
            format!("F1 per model and {dimension}"),
            grid(
                &format!("Alignment rate (F1), model × {dimension}"),
                &labels,
                &columns,
                &rows,
                &F1_SCALE,
                true,
            )?,
        ));
    }
    let mut shares = Vec::new();
    for e in entries {
        let bias = &e.report.bias;
        if let Some(raw) = &bias.task2 {
            shares.push(Bar {
                name: format!("{} — as asked", e.label),
                length: raw.option1_share,
                colour: RED.mix(0.7),
                ci: None,
            });
        }
        if let Some(debiased) = bias.pride.as_deref().and_then(|p| p.task2.as_ref()) {
            shares.push(Bar {
                name: format!("{} — debiased", e.label),
                length: debiased.option1_share,
                colour: BLUE.mix(0.6),
                ci: None,
            });
        }
    }
    if !shares.is_empty() {
        out.push((
            "task2_option1_by_model.svg".to_string(),
            "Share of Task-2 answers \"Option 1\" per model, as asked and debiased".to_string(),
            horizontal_bars(
                "Task 2: share of questions answered \"Option 1\" per model",
                &shares,
                1.15,
                "share answered \"Option 1\" (dashed: no position preference)",
                Some(0.5),
            )?,
        ));
    }
    if entries.len() > 1 {
        let n = entries.len();
        let matrix: Vec<Vec<f64>> = (0..n)
            .map(|a| {
                (0..n)
                    .map(|b| match a == b {
                        true => 1.0,
                        false => board
                            .pair(a, b)
                            .and_then(|p| p.gap_rank_agreement)
                            .unwrap_or(f64::NAN),
                    })
                    .collect()
            })
            .collect();
        let short: Vec<String> = (1..=n).map(|i| format!("#{i}")).collect();
        let rows: Vec<String> = labels
            .iter()
            .enumerate()
            .map(|(i, l)| format!("#{} {l}", i + 1))
            .collect();
        out.push((
            "gap_rank_agreement.svg".to_string(),
            "Rank agreement of the models' per-value gaps (Spearman)".to_string(),
            grid(
                "Rank agreement of per-value gaps |v − a| (Spearman), model × model",
                &rows,
                &short,
                &matrix,
                &CORRELATION_SCALE,
                true,
            )?,
        ));
    }
    Ok(out)
}
