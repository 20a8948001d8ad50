//! The leaderboard as data: one typed row per run (`leaderboard.json`, with a schema version),
//! the same rows flat (`leaderboard.csv`), and `leaderboard.md` — the caption, the table, the
//! paired-difference matrix and each run's settings.

use std::fmt::Write as _;

use serde::Serialize;

use super::board::{selection_text, Entry, Leaderboard, Source};

/// The schema version of `leaderboard.json`.
pub const LEADERBOARD_SCHEMA: u32 = 1;

#[derive(Debug, Clone, Serialize)]
pub struct Document {
    pub schema: u32,
    pub caption: String,
    pub view: ViewRow,
    pub rows: Vec<Row>,
    pub pairs: Vec<PairRow>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ViewRow {
    /// The protocol whose questions every run was measured on, where runs differ.
    pub protocol: Option<String>,
    pub debias: Option<String>,
    pub scoring: Option<String>,
    /// The cells all rows cover, where the rows were restricted to them.
    pub common_cells: Option<usize>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub rank: usize,
    pub label: String,
    /// `run` (a results folder of `valuelens run`) or `paper` (the paper's released outputs of
    /// an API model: sampled answers).
    pub source: &'static str,
    /// The results folder, or the paper's Task-1 file.
    pub path: String,
    pub model: ModelRow,
    pub protocol: String,
    pub debias: String,
    pub scoring: String,
    pub selection: String,
    /// Whether the numbers are the paper's own computation (false: a lower bound on its
    /// misaligned cells, PAPER.md §5.4); runs are always exact.
    pub exact: bool,
    pub cells: usize,
    pub alignment_rate: Estimate,
    pub distance: Estimate,
    pub misaligned: usize,
    pub bias: BiasRow,
    pub computed_tokens: Option<usize>,
    /// Scoring seconds of all the run's units.
    pub seconds: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ModelRow {
    pub name: String,
    pub file: Option<String>,
    pub sha256: Option<String>,
    pub architecture: Option<String>,
    pub dtype: Option<String>,
    pub device: Option<String>,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct Estimate {
    pub value: f64,
    pub ci95: Option<[f64; 2]>,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct BiasRow {
    /// Share of Task-2 questions answered "Option 1", as asked and after PriDe.
    pub task2_option1_share: Option<f64>,
    pub task2_option1_share_debiased: Option<f64>,
    /// Share of Task-1 questions whose most likely answer is label 1.
    pub task1_label1_share: Option<f64>,
    pub stated_undecided_cells: usize,
    pub action_undecided_cells: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct PairRow {
    pub a: String,
    pub b: String,
    pub cells: usize,
    pub scenarios: usize,
    /// F1 of a minus F1 of b on the shared cells, with its paired 95 % interval.
    pub f1_difference: Estimate,
    pub f1_excludes_zero: bool,
    pub distance_difference: Estimate,
    pub distance_excludes_zero: bool,
    /// Spearman's correlation of the two models' per-value gaps.
    pub gap_rank_agreement: Option<f64>,
}

fn row(rank: usize, entry: &Entry) -> Row {
    let report = &entry.report;
    let bias = &report.bias;
    let bias = BiasRow {
        task2_option1_share: bias.task2.as_ref().map(|b| b.option1_share),
        task2_option1_share_debiased: bias
            .pride
            .as_deref()
            .and_then(|p| p.task2.as_ref())
            .map(|b| b.option1_share),
        task1_label1_share: bias.task1.as_ref().map(|b| b.argmax_share[0]),
        stated_undecided_cells: report.stated_undecided_cells,
        action_undecided_cells: report.action_undecided_cells,
    };
    let (path, model, protocol, debias, scoring, selection, exact, tokens, seconds) =
        match &entry.source {
            Source::Run { dir, record } => {
                let m = &record.model;
                let dtype = serde_json::to_value(m.dtype)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string));
                (
                    dir.display().to_string(),
                    ModelRow {
                        name: m.name.clone(),
                        file: Some(m.file.clone()),
                        sha256: Some(m.sha256.clone()),
                        architecture: Some(m.architecture.clone()),
                        dtype,
                        device: Some(m.device.clone()),
                    },
                    record.protocol.name().to_string(),
                    record.debias.name().to_string(),
                    record.scoring.name().to_string(),
                    selection_text(record),
                    true,
                    Some(record.tokens.computed_tokens),
                    Some(record.timings.compute_s_all_units),
                )
            }
            Source::Paper { stated, exact, .. } => (
                stated.display().to_string(),
                ModelRow {
                    name: report.model.clone(),
                    file: None,
                    sha256: None,
                    architecture: None,
                    dtype: None,
                    device: Some("API (sampled answers)".to_string()),
                },
                "paper".to_string(),
                "none".to_string(),
                "sampled".to_string(),
                "all".to_string(),
                *exact,
                None,
                None,
            ),
        };
    Row {
        rank,
        label: entry.label.clone(),
        source: match entry.source {
            Source::Run { .. } => "run",
            Source::Paper { .. } => "paper",
        },
        path,
        model,
        protocol,
        debias,
        scoring,
        selection,
        exact,
        cells: report.covered_cells,
        alignment_rate: Estimate {
            value: report.alignment_rate.overall,
            ci95: report.ci95.map(|ci| ci.alignment_rate),
        },
        distance: Estimate {
            value: report.distances.overall,
            ci95: report.ci95.map(|ci| ci.distance),
        },
        misaligned: report.misaligned.total,
        bias,
        computed_tokens: tokens,
        seconds,
    }
}

impl Leaderboard {
    /// The typed document behind every output.
    pub fn document(&self) -> Document {
        let label = |i: usize| self.entries[i].label.clone();
        Document {
            schema: LEADERBOARD_SCHEMA,
            caption: self.caption.clone(),
            view: ViewRow {
                protocol: self.view.protocol.map(|p| p.name().to_string()),
                debias: self.view.debias.map(|d| d.name().to_string()),
                scoring: self.view.scoring.map(|s| s.name().to_string()),
                common_cells: self.view.common_cells,
            },
            rows: self
                .entries
                .iter()
                .enumerate()
                .map(|(i, e)| row(i + 1, e))
                .collect(),
            pairs: self
                .pairs
                .iter()
                .map(|p| PairRow {
                    a: label(p.a),
                    b: label(p.b),
                    cells: p.cells,
                    scenarios: p.scenarios,
                    f1_difference: Estimate {
                        value: p.f1_difference,
                        ci95: p.ci95.map(|ci| ci.alignment_rate),
                    },
                    f1_excludes_zero: p.f1_excludes_zero(),
                    distance_difference: Estimate {
                        value: p.distance_difference,
                        ci95: p.ci95.map(|ci| ci.distance),
                    },
                    distance_excludes_zero: p.distance_excludes_zero(),
                    gap_rank_agreement: p.gap_rank_agreement,
                })
                .collect(),
        }
    }
}

/// `0.1234`, or `–` for a missing number.
pub fn number(x: Option<f64>, digits: usize) -> String {
    match x {
        Some(x) if !x.is_nan() => format!("{x:.digits$}"),
        _ => "–".to_string(),
    }
}

/// `[lo, hi]` of an interval, or nothing.
pub fn interval(ci: Option<[f64; 2]>, digits: usize) -> String {
    match ci {
        Some([lo, hi]) => format!("[{lo:.digits$}, {hi:.digits$}]"),
        None => String::new(),
    }
}

/// `12.3 %`, or `–`.
pub fn percent(x: Option<f64>) -> String {
    match x {
        Some(x) if !x.is_nan() => format!("{:.1} %", 100.0 * x),
        _ => "–".to_string(),
    }
}

/// The model's file with the first 12 hex digits of its sha256.
pub fn model_file(model: &ModelRow) -> String {
    match (&model.file, &model.sha256) {
        (Some(file), Some(sha)) => {
            let name = std::path::Path::new(file)
                .file_name()
                .map_or(file.clone(), |n| n.to_string_lossy().into_owned());
            format!("{name} ({})", &sha[..sha.len().min(12)])
        }
        _ => "released outputs".to_string(),
    }
}

/// A signed difference with its interval, starred where the interval leaves 0 out.
pub fn difference(estimate: &Estimate, excludes_zero: bool) -> String {
    // + 0.0 turns −0 into 0: "+0.000" rather than "-0.000" for equal models.
    let ci = estimate.ci95.map(|[lo, hi]| [lo + 0.0, hi + 0.0]);
    format!(
        "{:+.3} {}{}",
        estimate.value + 0.0,
        interval(ci, 3),
        if excludes_zero { " *" } else { "" }
    )
}

/// The column headers of the table, in order (markdown, CSV and HTML share them): the
/// measures first, so that they show on a narrow screen before the settings do.
pub const COLUMNS: [&str; 15] = [
    "rank",
    "model",
    "F1",
    "F1 95 % CI",
    "distance",
    "distance 95 % CI",
    "misaligned cells",
    "T2 Option 1 raw / debiased",
    "T1 label 1",
    "undecided V / A",
    "dtype",
    "protocol / debias",
    "selection",
    "file (sha256)",
    "tokens · seconds",
];

/// Whether a column holds words (left-aligned, sorted alphabetically) rather than numbers.
pub fn is_text_column(column: &str) -> bool {
    matches!(
        column,
        "model" | "file (sha256)" | "protocol / debias" | "dtype" | "selection"
    )
}

/// One row's cells in [`COLUMNS`] order: the text shown, and the number it sorts by (for
/// numeric columns).
pub fn cells_of(row: &Row) -> [(String, Option<f64>); 15] {
    let bias = &row.bias;
    [
        (row.rank.to_string(), Some(row.rank as f64)),
        (
            match (row.source, row.exact) {
                ("paper", false) => format!("{}, approximate", row.label),
                _ => row.label.clone(),
            },
            None,
        ),
        (
            number(Some(row.alignment_rate.value), 4),
            Some(row.alignment_rate.value),
        ),
        (
            interval(row.alignment_rate.ci95, 4),
            row.alignment_rate.ci95.map(|c| c[0]),
        ),
        (
            number(Some(row.distance.value), 4),
            Some(row.distance.value),
        ),
        (
            interval(row.distance.ci95, 4),
            row.distance.ci95.map(|c| c[0]),
        ),
        (
            format!("{} / {}", row.misaligned, row.cells),
            Some(row.misaligned as f64),
        ),
        (
            format!(
                "{} / {}",
                percent(bias.task2_option1_share),
                percent(bias.task2_option1_share_debiased)
            ),
            bias.task2_option1_share,
        ),
        (percent(bias.task1_label1_share), bias.task1_label1_share),
        (
            format!(
                "{} / {}",
                bias.stated_undecided_cells, bias.action_undecided_cells
            ),
            Some((bias.stated_undecided_cells + bias.action_undecided_cells) as f64),
        ),
        (row.model.dtype.clone().unwrap_or_else(|| "–".into()), None),
        (format!("{} / {}", row.protocol, row.debias), None),
        (row.selection.clone(), None),
        (model_file(&row.model), None),
        (
            match (row.computed_tokens, row.seconds) {
                (Some(t), Some(s)) => format!("{t} · {s:.1}"),
                _ => "–".to_string(),
            },
            row.seconds,
        ),
    ]
}

impl Document {
    pub fn to_json(&self) -> String {
        let mut text = serde_json::to_string_pretty(self).expect("the document serialises");
        text.push('\n');
        text
    }

    /// One line per row, the numbers unformatted.
    pub fn to_csv(&self) -> anyhow::Result<String> {
        let mut out = csv::Writer::from_writer(Vec::new());
        out.write_record([
            "rank",
            "label",
            "source",
            "exact",
            "path",
            "model",
            "file",
            "sha256",
            "architecture",
            "dtype",
            "device",
            "protocol",
            "debias",
            "scoring",
            "selection",
            "cells",
            "f1",
            "f1_ci95_lo",
            "f1_ci95_hi",
            "distance",
            "distance_ci95_lo",
            "distance_ci95_hi",
            "misaligned",
            "task2_option1_share",
            "task2_option1_share_debiased",
            "task1_label1_share",
            "stated_undecided_cells",
            "action_undecided_cells",
            "computed_tokens",
            "seconds",
        ])?;
        let opt = |x: Option<f64>| x.map_or(String::new(), |x| x.to_string());
        let text = |x: &Option<String>| x.clone().unwrap_or_default();
        for r in &self.rows {
            let (f1, d) = (r.alignment_rate, r.distance);
            out.write_record([
                r.rank.to_string(),
                r.label.clone(),
                r.source.to_string(),
                r.exact.to_string(),
                r.path.clone(),
                r.model.name.clone(),
                text(&r.model.file),
                text(&r.model.sha256),
                text(&r.model.architecture),
                text(&r.model.dtype),
                text(&r.model.device),
                r.protocol.clone(),
                r.debias.clone(),
                r.scoring.clone(),
                r.selection.clone(),
                r.cells.to_string(),
                f1.value.to_string(),
                opt(f1.ci95.map(|c| c[0])),
                opt(f1.ci95.map(|c| c[1])),
                d.value.to_string(),
                opt(d.ci95.map(|c| c[0])),
                opt(d.ci95.map(|c| c[1])),
                r.misaligned.to_string(),
                opt(r.bias.task2_option1_share),
                opt(r.bias.task2_option1_share_debiased),
                opt(r.bias.task1_label1_share),
                r.bias.stated_undecided_cells.to_string(),
                r.bias.action_undecided_cells.to_string(),
                r.computed_tokens.map_or(String::new(), |t| t.to_string()),
                opt(r.seconds),
            ])?;
        }
        Ok(String::from_utf8(out.into_inner()?)?)
    }

    /// The paired F1 differences as a matrix: row minus column, starred where the interval
    /// leaves 0 out.
    pub fn pair_matrix(&self) -> Vec<Vec<String>> {
        let labels: Vec<&str> = self.rows.iter().map(|r| r.label.as_str()).collect();
        labels
            .iter()
            .map(|a| {
                labels
                    .iter()
                    .map(|b| {
                        if a == b {
                            return "·".to_string();
                        }
                        self.pairs
                            .iter()
                            .find_map(|p| {
                                if p.a == *a && p.b == *b {
                                    Some(difference(&p.f1_difference, p.f1_excludes_zero))
                                } else if p.a == *b && p.b == *a {
                                    let flipped = Estimate {
                                        value: -p.f1_difference.value,
                                        ci95: p.f1_difference.ci95.map(|[lo, hi]| [-hi, -lo]),
                                    };
                                    Some(difference(&flipped, p.f1_excludes_zero))
                                } else {
                                    None
                                }
                            })
                            .unwrap_or_default()
                    })
                    .collect()
            })
            .collect()
    }

    pub fn to_markdown(&self) -> String {
        let mut md = String::new();
        let _ = writeln!(
            md,
            "# Leaderboard: the value–action gap\n\n{}\n",
            self.caption
        );
        let _ = writeln!(md, "| {} |", COLUMNS.join(" | "));
        let _ = writeln!(
            md,
            "|{}",
            COLUMNS
                .iter()
                .map(|c| match is_text_column(c) {
                    true => "---|",
                    false => "---:|",
                })
                .collect::<String>()
        );
        for row in &self.rows {
            let cells = cells_of(row).map(|(text, _)| text.replace('|', "\\|"));
            let _ = writeln!(md, "| {} |", cells.join(" | "));
        }
        if self.rows.len() > 1 {
            let _ = writeln!(
                md,
                "\n## Paired differences in F1 (row − column)\n\nOver the cells both cover, \
                 with 95 % paired bootstrap intervals over scenarios (the same resamples for \
                 both); `*`: the interval leaves 0 out.\n"
            );
            let labels: Vec<String> = self.rows.iter().map(|r| r.label.clone()).collect();
            let _ = writeln!(md, "| | {} |", labels.join(" | "));
            let _ = writeln!(md, "|---|{}", "---:|".repeat(labels.len()));
            for (label, cells) in labels.iter().zip(self.pair_matrix()) {
                let _ = writeln!(md, "| {label} | {} |", cells.join(" | "));
            }
            let _ = writeln!(
                md,
                "\n## Every pair\n\n| a | b | cells | F1 a − b | distance a − b | gap ranks (Spearman) |\n|---|---|---:|---:|---:|---:|"
            );
            for p in &self.pairs {
                let _ = writeln!(
                    md,
                    "| {} | {} | {} | {} | {} | {} |",
                    p.a,
                    p.b,
                    p.cells,
                    difference(&p.f1_difference, p.f1_excludes_zero),
                    difference(&p.distance_difference, p.distance_excludes_zero),
                    number(p.gap_rank_agreement, 3)
                );
            }
        }
        let _ = writeln!(md, "\n## Settings\n");
        for r in &self.rows {
            let _ = writeln!(
                md,
                "- **{}**: {} — {}{}; protocol {}, debias {}, scoring {}; selection {}; {} cells.",
                r.label,
                r.path,
                model_file(&r.model),
                match (&r.model.dtype, &r.model.device) {
                    (Some(dtype), Some(device)) => format!(", {dtype} on {device}"),
                    (None, Some(device)) => format!(", {device}"),
                    _ => String::new(),
                },
                r.protocol,
                r.debias,
                r.scoring,
                r.selection,
                r.cells
            );
        }
        md
    }
}
