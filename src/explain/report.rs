//! What `valuelens explain` writes: `explain.json` (everything, machine-readable),
//! `summary.md` (the Table-14 comparison), `predictions.csv` (per setting and test row, both
//! log-probabilities and the prediction) and `frame.csv` (the target's Task-2 frame in the
//! paper's format, for checking the draw with pandas: `scripts/make_explain_fixtures.py`).

use std::path::Path;

use anyhow::{Context, Result};
use serde::Serialize;

use super::frame::TargetRow;
use super::prompts::Setting;
use super::split::Draw;
use super::target::FrameRow;
use crate::engine::EngineStats;
use crate::metrics::classification::{measure_ci95, Confusion, MeasureIntervals, Measures};
use crate::output::write_atomically;
use crate::tasks::released::read_observer_outputs;
use crate::via::vocabulary::{COUNTRIES, TOPICS, VALUES};
use crate::via::Polarity;

/// The observer's answer on one test row.
#[derive(Debug, Clone)]
pub struct Prediction {
    pub row: TargetRow,
    pub logprob_true: f64,
    pub logprob_false: f64,
    pub predicted: bool,
}

/// One setting's outcome.
#[derive(Debug, Clone)]
pub struct SettingResult {
    pub setting: Setting,
    pub measures: Measures,
    pub ci95: Option<MeasureIntervals>,
    /// ROC AUC of log p(True) − log p(False) against the labels, with its interval: how well
    /// the observer orders the rows, whatever its bias toward one label.
    pub auc: Option<f64>,
    pub auc_ci95: Option<[f64; 2]>,
    pub confusion: Confusion,
    pub predictions: Vec<Prediction>,
}

/// A row of the paper's Table 14 or of its released observer outputs re-scored.
#[derive(Debug, Clone, Serialize)]
pub struct ReferenceRow {
    pub setting: &'static str,
    pub f1: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub measures: Option<Measures>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ci95: Option<MeasureIntervals>,
}

pub struct ExplainReport {
    pub observer: String,
    pub precision: String,
    pub target: String,
    pub frame_source: String,
    pub frame_rows: usize,
    pub observed_rows: usize,
    pub draw: Draw,
    pub examples: Vec<TargetRow>,
    pub settings: Vec<SettingResult>,
    pub stats: EngineStats,
    pub load_s: f64,
    pub score_s: f64,
    /// Observers that read no examples, on the same test rows.
    pub baselines: Vec<Baseline>,
    /// Table 14's F1s for this target (the paper's targets only).
    pub paper: Vec<ReferenceRow>,
    /// The paper's released observer outputs for this target, re-scored.
    pub released: Vec<ReferenceRow>,
    /// The target's frame, every row (also those the parser drops).
    pub frame: Vec<FrameRow>,
}

/// A rule that predicts without the examples, as a floor for the observers.
#[derive(Debug, Clone, Serialize)]
pub struct Baseline {
    pub name: &'static str,
    pub rule: &'static str,
    pub measures: Measures,
}

/// "Always True" (the paper's observers answered True on 141–157 of 200) and "True when the
/// action expresses the value" (a target that mostly acts on its values is mostly predicted by
/// the action's polarity alone).
pub fn baselines(tests: &[TargetRow]) -> Vec<Baseline> {
    let rule = |name, rule, predict: fn(&TargetRow) -> bool| Baseline {
        name,
        rule,
        measures: Confusion::of(tests.iter().map(|t| (t.model_choice, predict(t)))).measures(),
    };
    vec![
        rule("always_true", "always True", |_| true),
        rule(
            "polarity",
            "True when the action expresses the value (the row's polarity is positive)",
            |t| t.polarity == Polarity::Positive,
        ),
    ]
}

/// Table 14 (F1 per setting, as printed).
const TABLE_14: [(&str, &str, [f64; 4]); 2] = [
    (
        "paper:gpt-3.5-turbo",
        "chatgpt",
        [0.795, 0.823, 0.830, 0.830],
    ),
    (
        "paper:llama-3.3-70b",
        "llama3",
        [0.778, 0.797, 0.823, 0.820],
    ),
];

/// The paper's Table-14 row for `target`, if it is one of the paper's.
pub fn paper_rows(target: &str) -> Vec<ReferenceRow> {
    TABLE_14
        .iter()
        .find(|(name, ..)| *name == target)
        .map(|(_, _, f1s)| {
            Setting::ALL
                .iter()
                .zip(f1s)
                .map(|(s, &f1)| ReferenceRow {
                    setting: s.name(),
                    f1,
                    measures: None,
                    ci95: None,
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The paper's observer outputs for `target` (GPT-4o-mini observing it), re-scored with our
/// measures, for the settings asked; empty for other targets or without the released files.
pub fn released_outputs(target: &str, settings: &[Setting]) -> Result<Vec<ReferenceRow>> {
    let Some((_, prefix, _)) = TABLE_14.iter().find(|(name, ..)| *name == target) else {
        return Ok(Vec::new());
    };
    let dir = crate::via::setup::released_files_dir().join("outputs/evaluation/explanations");
    let mut rows = Vec::new();
    for (stream, setting) in settings.iter().enumerate() {
        let path = dir.join(format!(
            "{prefix}_explanation_outputs_{}.csv",
            setting.paper_mode()
        ));
        if !path.is_file() {
            continue;
        }
        let items = read_observer_outputs(&path)?;
        let measures = Confusion::of(items.iter().copied()).measures();
        rows.push(ReferenceRow {
            setting: setting.name(),
            f1: measures.f1,
            measures: Some(measures),
            ci95: measure_ci95(&items, 100 + stream as u64),
        });
    }
    Ok(rows)
}

fn row_json(row: &TargetRow) -> serde_json::Value {
    serde_json::json!({
        "via_row": row.via_index,
        "country": COUNTRIES[row.country],
        "topic": TOPICS[row.topic],
        "value": VALUES[row.value],
        "polarity": row.polarity.as_str(),
        "model_choice": row.model_choice,
    })
}

impl ExplainReport {
    pub fn to_json(&self) -> serde_json::Value {
        let settings: Vec<serde_json::Value> = self
            .settings
            .iter()
            .map(|s| {
                let predicted_true = s.predictions.iter().filter(|p| p.predicted).count();
                serde_json::json!({
                    "setting": s.setting.name(),
                    "paper_mode": s.setting.paper_mode(),
                    "measures": s.measures,
                    "ci95": s.ci95,
                    "roc_auc": s.auc,
                    "roc_auc_ci95": s.auc_ci95,
                    "confusion": s.confusion,
                    "predicted_true": predicted_true,
                    "test_rows": s.predictions.len(),
                })
            })
            .collect();
        serde_json::json!({
            "observer": self.observer,
            "precision": self.precision,
            "target": self.target,
            "frame": {
                "source": self.frame_source,
                "rows": self.frame_rows,
                "parsed_rows": self.observed_rows,
            },
            "draw": {
                "train_rows": self.draw.train_rows,
                "examples_per_class": self.draw.examples_per_class,
                "tests_per_class": self.draw.tests_per_class,
                "random_state": self.draw.seed,
            },
            "examples": self.examples.iter().map(row_json).collect::<Vec<_>>(),
            "tests": self.settings.first().map(|s| s.predictions.iter().map(|p| row_json(&p.row)).collect::<Vec<_>>()),
            "settings": settings,
            "baselines": self.baselines,
            "paper_table14": self.paper,
            "paper_released_outputs": self.released,
            "engine": self.stats,
            "load_s": self.load_s,
            "score_s": self.score_s,
        })
    }

    pub fn summary(&self) -> String {
        let mut s = format!(
            "# Predicting a target's actions from its explanations (the paper's Table 14)\n\n\
             Observer {} ({}), target {}. Target frame: {} rows ({}), {} of them parsed by the \
             paper's strict parser; {} examples and {} test rows drawn with random_state {}.\n\n",
            self.observer,
            self.precision,
            self.target,
            self.frame_rows,
            self.frame_source,
            self.observed_rows,
            self.examples.len(),
            self.settings.first().map_or(0, |s| s.predictions.len()),
            self.draw.seed
        );
        s += "| setting | F1 [95 % CI] | accuracy | precision | recall | predicted True | ROC AUC [95 % CI] | paper F1 (GPT-4o-mini) | paper's outputs re-scored |\n|---|---|---|---|---|---|---|---|---|\n";
        for r in &self.settings {
            let name = r.setting.name();
            let paper = self.paper.iter().find(|p| p.setting == name);
            let released = self.released.iter().find(|p| p.setting == name);
            let ci = r.ci95.map_or(String::new(), |c| {
                format!(" [{:.3}, {:.3}]", c.f1[0], c.f1[1])
            });
            let auc = match (r.auc, r.auc_ci95) {
                (Some(a), Some(c)) => format!("{a:.3} [{:.3}, {:.3}]", c[0], c[1]),
                (Some(a), None) => format!("{a:.3}"),
                _ => "–".into(),
            };
            s += &format!(
                "| {} | {:.4}{ci} | {:.3} | {:.3} | {:.3} | {}/{} | {auc} | {} | {} |\n",
                r.setting.title(),
                r.measures.f1,
                r.measures.accuracy,
                r.measures.precision,
                r.measures.recall,
                r.predictions.iter().filter(|p| p.predicted).count(),
                r.predictions.len(),
                paper.map_or("–".into(), |p| format!("{:.3}", p.f1)),
                released.map_or("–".into(), |p| format!("{:.4}", p.f1)),
            );
        }
        s += "\nWithout examples, on the same test rows:";
        for b in &self.baselines {
            s += &format!(
                " {} — F1 {:.4}, accuracy {:.3};",
                b.rule, b.measures.f1, b.measures.accuracy
            );
        }
        s.pop();
        s += ".\n";
        s += "\nF1, accuracy, precision and recall take the observer's more likely label \
              (` True` or ` False` after `Label:`), as the paper takes its sampled answer; ROC AUC \
              ranks the test rows by log p(True) − log p(False), so a small observer's bias toward \
              one label does not hide whether it tells the rows apart.\n";
        s += &format!(
            "\nScoring: {} requests, {} tokens in the requests, {} computed ({:.1} % — the \
             examples are one shared prefix per setting), {:.1} s (model load {:.1} s).\n",
            self.stats.requests,
            self.stats.request_tokens,
            self.stats.computed_tokens,
            100.0 * self.stats.computed_tokens as f64 / self.stats.request_tokens.max(1) as f64,
            self.score_s,
            self.load_s
        );
        s
    }

    /// Writes the four files into `out`, each whole or not at all.
    pub fn write(&self, out: &Path) -> Result<()> {
        std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
        write_atomically(&out.join("frame.csv"), |w| {
            let mut csv = csv::Writer::from_writer(w);
            csv.write_record([
                "country",
                "topic",
                "value",
                "polarity",
                "generation_prompt",
                "model_choice",
            ])?;
            for row in &self.frame {
                let t = &row.target;
                csv.write_record([
                    COUNTRIES[t.country],
                    TOPICS[t.topic],
                    VALUES[t.value],
                    t.polarity.as_str(),
                    row.generation_text.as_str(),
                    if t.model_choice { "True" } else { "False" },
                ])?;
            }
            csv.flush()?;
            Ok(())
        })?;
        write_atomically(&out.join("predictions.csv"), |w| {
            let mut csv = csv::Writer::from_writer(w);
            csv.write_record([
                "setting",
                "test_row",
                "via_row",
                "country",
                "topic",
                "value",
                "polarity",
                "label",
                "logprob_true",
                "logprob_false",
                "predicted",
            ])?;
            for s in &self.settings {
                for (i, p) in s.predictions.iter().enumerate() {
                    let r = &p.row;
                    csv.write_record([
                        s.setting.name().to_string(),
                        i.to_string(),
                        r.via_index.to_string(),
                        COUNTRIES[r.country].to_string(),
                        TOPICS[r.topic].to_string(),
                        VALUES[r.value].to_string(),
                        r.polarity.as_str().to_string(),
                        r.model_choice.to_string(),
                        p.logprob_true.to_string(),
                        p.logprob_false.to_string(),
                        p.predicted.to_string(),
                    ])?;
                }
            }
            csv.flush()?;
            Ok(())
        })?;
        write_atomically(&out.join("explain.json"), |w| {
            serde_json::to_writer_pretty(&mut *w, &self.to_json())?;
            writeln!(w)?;
            Ok(())
        })?;
        write_atomically(&out.join("summary.md"), |w| {
            w.write_all(self.summary().as_bytes())?;
            Ok(())
        })
    }
}
