//! `valuelens leaderboard`: many runs side by side. Each results folder's measures are
//! recomputed from its CSVs (the numbers of its own `metrics.json`, checked), optionally with the
//! paper's API models from their released files; runs are compared only where they asked the
//! same questions (or, with `common`, on the cells and questions all of them cover), every pair
//! with a paired bootstrap interval of its difference. Found and checked by `runs`, held in
//! `board`'s types, compared by `compare`, written as a table (`table`), figures (`figures`)
//! and one self-contained page (`page`).

pub mod board;
pub mod compare;
pub mod figures;
pub mod page;
pub mod runs;
pub mod table;

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

pub use board::{Entry, Leaderboard, Options, Pair, Source, View};
pub use compare::{pair, restrict, value_gaps};
pub use runs::find_runs;

use crate::benchmark::recompute::{recompute, ActionInput, MetricsInputs};
use crate::benchmark::record::{RunRecord, RUN_RECORD_FILE};
use crate::metrics::{Cells, N_VALUES};
use crate::output::write_atomically;
use crate::tasks::Scoring;
use crate::via::setup::released_files_dir;
use crate::via::N_SCENARIOS;
use compare::{covered_cells, intersect, pairs_of};
use runs::{check_against_metrics_json, choose_view, PAPER_FILES};

impl Leaderboard {
    /// Writes `leaderboard.md`, `.csv`, `.json`, `index.html` and `figures/*.svg` into `out`
    /// (created if needed), each file whole or not at all; everything is rendered before the
    /// first file is written. Returns the files written.
    pub fn write(&self, out: &Path) -> Result<Vec<PathBuf>> {
        let document = self.document();
        let figures = figures::figures(self)?;
        let mut files: Vec<(PathBuf, String)> = vec![
            (out.join("leaderboard.md"), document.to_markdown()),
            (out.join("leaderboard.csv"), document.to_csv()?),
            (out.join("leaderboard.json"), document.to_json()),
            (out.join("index.html"), page::render(&document, &figures)),
        ];
        for (name, _, svg) in &figures {
            files.push((out.join("figures").join(name), svg.clone()));
        }
        std::fs::create_dir_all(out.join("figures"))
            .with_context(|| format!("cannot create output folder {}", out.display()))?;
        for (path, text) in &files {
            write_atomically(path, |w| Ok(w.write_all(text.as_bytes())?))?;
        }
        Ok(files.into_iter().map(|(path, _)| path).collect())
    }
}

/// Builds the leaderboard of the runs in `dirs` (see [`find_runs`]).
pub fn build(dirs: &[PathBuf], options: &Options) -> Result<Leaderboard> {
    let runs = find_runs(dirs)?;
    let records: Vec<RunRecord> = runs
        .iter()
        .map(|dir| RunRecord::read(&dir.join(RUN_RECORD_FILE)))
        .collect::<Result<_>>()?;
    let view = choose_view(&runs, &records, options.common)?;
    let mut entries = Vec::new();
    for (dir, record) in runs.iter().zip(records) {
        let report = recompute(&MetricsInputs {
            data: None,
            stated: dir.join("stated.csv"),
            action: ActionInput::Results(dir.join("action.csv")),
            model_name: Some(record.model.name.clone()),
            scoring: view.scoring.unwrap_or(record.scoring),
            debias: view.debias,
            protocol: view.protocol.filter(|&p| p != record.protocol),
        })?
        .report;
        if view.protocol.is_none() && view.debias.is_none() && view.scoring.is_none() {
            check_against_metrics_json(dir, &report)?;
        }
        let cells = covered_cells(&report);
        entries.push(Entry {
            label: record.model.name.clone(),
            source: Source::Run {
                dir: dir.clone(),
                record: Box::new(record),
            },
            report,
            cells,
        });
    }
    if options.paper {
        let released = released_files_dir().join("outputs/evaluation");
        for (name, stated, misaligned, exact) in PAPER_FILES {
            let (stated, misaligned) = (released.join(stated), released.join(misaligned));
            for file in [&stated, &misaligned] {
                if !file.is_file() {
                    bail!(
                        "{}: missing; --paper reads the paper's released files (set \
                         VALUELENS_SHARED to the folder holding valueactionlens/)",
                        file.display()
                    );
                }
            }
            let report = recompute(&MetricsInputs {
                data: options.data.clone(),
                stated: stated.clone(),
                action: ActionInput::Misaligned(misaligned.clone()),
                model_name: Some(name.to_string()),
                scoring: Scoring::Hard,
                debias: None,
                protocol: None,
            })?
            .report;
            entries.push(Entry {
                label: format!("{name} (paper)"),
                source: Source::Paper {
                    stated,
                    misaligned,
                    exact,
                },
                cells: covered_cells(&report),
                report,
            });
        }
    }
    let mut view = view;
    if options.common {
        let mut common = Cells::all();
        for entry in &entries {
            common = intersect(&common, &entry.cells);
        }
        if common.is_empty() {
            bail!("the runs share no cell (country × topic × value): nothing to compare");
        }
        if entries.iter().any(|e| e.cells != common) {
            view.common_cells = Some(common.len());
            for entry in &mut entries {
                entry.report = restrict(&entry.report, &common);
                entry.cells = common.clone();
            }
        }
    }
    unique_labels(&mut entries);
    entries.sort_by(|a, b| {
        b.report
            .alignment_rate
            .overall
            .total_cmp(&a.report.alignment_rate.overall)
    });
    let pairs = pairs_of(&entries);
    let caption = caption(&entries, &view, options);
    Ok(Leaderboard {
        entries,
        pairs,
        view,
        caption,
    })
}

/// Labels made unique by the folder's name (or a counter) where two rows share a model name.
fn unique_labels(entries: &mut [Entry]) {
    for i in 0..entries.len() {
        let clashes = entries
            .iter()
            .filter(|e| e.label == entries[i].label)
            .count();
        if clashes > 1 {
            let suffix = match &entries[i].source {
                Source::Run { dir, .. } => dir
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_else(|| i.to_string()),
                Source::Paper { .. } => i.to_string(),
            };
            entries[i].label = format!("{} ({suffix})", entries[i].label);
        }
    }
    for i in 0..entries.len() {
        if entries[..i].iter().any(|e| e.label == entries[i].label) {
            entries[i].label = format!("{} #{}", entries[i].label, i + 1);
        }
    }
}

/// What the rows are and what they were compared on.
fn caption(entries: &[Entry], view: &View, options: &Options) -> String {
    let runs = entries
        .iter()
        .filter(|e| matches!(e.source, Source::Run { .. }))
        .count();
    let mut parts = vec![format!(
        "{runs} run{} of `valuelens run`{}, sorted by alignment rate (F1, positive class = \
         Disagree) with 95 % bootstrap intervals over scenarios.",
        if runs == 1 { "" } else { "s" },
        match options.paper {
            true =>
                ", and the paper's API models recomputed from its released files (sampled \
                     answers; rows marked approximate rebuild Task 2 from misaligned-cell lists \
                     that omit cells, so their F1 is biased)",
            false => "",
        }
    )];
    if let Some(p) = view.protocol {
        parts.push(format!(
            "Protocols differ: every run is measured on the questions of `{}` only.",
            p.name()
        ));
    }
    if view.debias.is_some() {
        parts.push(
            "Debiasing differs: every run is measured on its raw answers (PriDe not applied)."
                .to_string(),
        );
    }
    if view.scoring.is_some() {
        parts.push("Scorings differ: every run is measured with hard scores.".to_string());
    }
    match view.common_cells {
        Some(n) => parts.push(format!(
            "Compared on the {n} cells (country × topic × value) all rows cover, of {}.",
            N_SCENARIOS * N_VALUES
        )),
        None if options.common => parts.push(format!(
            "Every row covers the same {} cells.",
            entries.first().map_or(0, |e| e.cells.len())
        )),
        None => {}
    }
    parts.join(" ")
}
