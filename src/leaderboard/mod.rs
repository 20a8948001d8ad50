//! `valuelens leaderboard`: many runs side by side. Each results folder's measures are
//! recomputed from its CSVs (the numbers of its own `metrics.json`, checked), optionally with the
//! paper's API models from their released files; runs are compared only where they asked the
//! same questions (or, with `common`, on the cells and questions all of them cover), every pair
//! with a paired bootstrap interval of its difference. Written as a table (`table`), figures
//! (`figures`) and one self-contained page (`page`).

pub mod figures;
pub mod page;
pub mod table;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde_json::Value;

use crate::benchmark::record::{RunRecord, RUN_RECORD_FILE};
use crate::benchmark::recompute::{recompute, ActionInput, MetricsInputs};
use crate::metrics::bootstrap::{paired_difference_ci95, scenario_measures, Intervals};
use crate::metrics::{self, Cells, Matrix, N_VALUES};
use crate::output::write_atomically;
use crate::report::MetricsReport;
use crate::tasks::pride::Debias;
use crate::tasks::{Protocol, Scoring};
use crate::via::setup::released_files_dir;
use crate::via::N_SCENARIOS;

/// What `valuelens leaderboard` was asked.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Add the paper's models, recomputed from the released files.
    pub paper: bool,
    /// Compare on the cells and questions all runs cover instead of refusing runs that differ.
    pub common: bool,
    /// The VIA CSV (for the paper's files); `None`: the default one.
    pub data: Option<PathBuf>,
}

/// The files a finished results folder of `valuelens run` holds.
const RUN_FILES: [&str; 4] = [RUN_RECORD_FILE, "stated.csv", "action.csv", "metrics.json"];

/// Where a row's numbers come from.
#[derive(Debug, Clone)]
pub enum Source {
    /// A results folder of `valuelens run`.
    Run { dir: PathBuf, record: RunRecord },
    /// The paper's released outputs of an API model (sampled answers): its Task-1 responses and
    /// the list of its misaligned cells, from which its Task-2 answers are rebuilt — exactly
    /// for GPT-3.5-turbo, as a lower bound on the misaligned cells for the newer files, which
    /// omit cells whose action text did not parse (PAPER.md §5.4).
    Paper {
        stated: PathBuf,
        misaligned: PathBuf,
        exact: bool,
    },
}

/// One row of the leaderboard.
pub struct Entry {
    /// How the row is named everywhere (unique within the leaderboard).
    pub label: String,
    pub source: Source,
    /// The measures on the leaderboard's view (the run's own questions and cells, or the
    /// common ones).
    pub report: MetricsReport,
    /// The cells the measures cover.
    pub cells: Cells,
}

/// How two rows differ, over the cells both cover (paired bootstrap over scenarios).
#[derive(Debug, Clone)]
pub struct Pair {
    /// Indices into the entries (as sorted by F1).
    pub a: usize,
    pub b: usize,
    pub cells: usize,
    pub scenarios: usize,
    /// `a − b` on the shared cells.
    pub f1_difference: f64,
    pub distance_difference: f64,
    pub ci95: Option<Intervals>,
    /// Spearman's correlation of the two models' per-value gaps (mean |v − a| per value) on
    /// the shared cells.
    pub gap_rank_agreement: Option<f64>,
}

impl Pair {
    /// Whether the interval of the F1 difference leaves 0 out.
    pub fn f1_excludes_zero(&self) -> bool {
        self.ci95
            .is_some_and(|ci| ci.alignment_rate[0] > 0.0 || ci.alignment_rate[1] < 0.0)
    }

    pub fn distance_excludes_zero(&self) -> bool {
        self.ci95
            .is_some_and(|ci| ci.distance[0] > 0.0 || ci.distance[1] < 0.0)
    }
}

/// The questions every row was measured on, when the leaderboard chose them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct View {
    /// The questions of this protocol only (runs of larger protocols, seen as this one).
    pub protocol: Option<Protocol>,
    /// Raw answers for every run (some runs were not debiased).
    pub debias: Option<Debias>,
    pub scoring: Option<Scoring>,
    /// The cells all rows cover, where the rows' own cells differ.
    pub common_cells: Option<usize>,
}

/// The whole comparison.
pub struct Leaderboard {
    /// Sorted by alignment rate, highest first.
    pub entries: Vec<Entry>,
    pub pairs: Vec<Pair>,
    pub view: View,
    /// One paragraph: what the rows are and on which questions and cells they were compared.
    pub caption: String,
}

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

    /// The pair of entries `a` and `b`, in either order, as `a − b`.
    pub fn pair(&self, a: usize, b: usize) -> Option<(f64, f64, Option<Intervals>, &Pair)> {
        let flip = |ci: Option<Intervals>| {
            ci.map(|ci| Intervals {
                alignment_rate: [-ci.alignment_rate[1], -ci.alignment_rate[0]],
                distance: [-ci.distance[1], -ci.distance[0]],
            })
        };
        self.pairs.iter().find_map(|p| match (p.a, p.b) {
            (x, y) if (x, y) == (a, b) => {
                Some((p.f1_difference, p.distance_difference, p.ci95, p))
            }
            (x, y) if (x, y) == (b, a) => Some((
                -p.f1_difference,
                -p.distance_difference,
                flip(p.ci95),
                p,
            )),
            _ => None,
        })
    }
}

/// The results folders among `dirs`: each is one, or a parent holding them (one level down).
pub fn find_runs(dirs: &[PathBuf]) -> Result<Vec<PathBuf>> {
    if dirs.is_empty() {
        bail!("give at least one results folder of `valuelens run` (or a folder holding several)");
    }
    let mut runs: Vec<PathBuf> = Vec::new();
    let mut seen = BTreeSet::new();
    for dir in dirs {
        if !dir.is_dir() {
            bail!(
                "{}: no such folder; give results folders of `valuelens run` (or their parent)",
                dir.display()
            );
        }
        let found = if looks_like_run(dir) {
            vec![dir.clone()]
        } else {
            let mut children: Vec<PathBuf> = std::fs::read_dir(dir)
                .with_context(|| format!("cannot read folder {}", dir.display()))?
                .filter_map(|entry| entry.ok().map(|e| e.path()))
                .filter(|path| path.is_dir() && looks_like_run(path))
                .collect();
            children.sort();
            children
        };
        if found.is_empty() {
            let empty = std::fs::read_dir(dir).map_or(false, |mut d| d.next().is_none());
            bail!(
                "{} {}: a results folder of `valuelens run` holds run.json, stated.csv, \
                 action.csv and metrics.json; give such folders, or a folder holding them",
                dir.display(),
                match empty {
                    true => "is empty",
                    false => "is not a results folder and holds none",
                }
            );
        }
        for run in found {
            let key = run.canonicalize().unwrap_or_else(|_| run.clone());
            if seen.insert(key) {
                runs.push(run);
            }
        }
    }
    for run in &runs {
        for file in RUN_FILES {
            if !run.join(file).is_file() {
                bail!(
                    "{}: missing — the run did not finish (or its shards were not merged); run \
                     the same `valuelens run` command again (or `valuelens merge`) to complete it",
                    run.join(file).display()
                );
            }
        }
    }
    Ok(runs)
}

/// A folder with any file of a run (finished or not): a parent is searched one level down
/// only when it is none.
fn looks_like_run(dir: &Path) -> bool {
    RUN_FILES.iter().any(|f| dir.join(f).exists()) || dir.join("checkpoints").is_dir()
}

/// The paper's API models whose Task-1 and Task-2 outputs the released files hold: (name,
/// Task-1 responses, misaligned cells, exact).
const PAPER_FILES: [(&str, &str, &str, bool); 4] = [
    (
        "GPT-3.5-turbo",
        "gpt-3.5-turbo_t1.csv",
        "chatgpt_misaligned_example.csv",
        true,
    ),
    (
        "GPT-4o-mini",
        "gpt-4o-mini_t1.csv",
        "misaligned_examples/gpt4o_misaligned_example.csv",
        false,
    ),
    (
        "Gemma-2-9b",
        "gemma-2-9b-it_t1.csv",
        "misaligned_examples/gemma_misaligned_example.csv",
        false,
    ),
    (
        "Llama-3.3-70B",
        "Llama-3.3-70B-Instruct_t1.csv",
        "misaligned_examples/llama3_misaligned_example.csv",
        false,
    ),
];

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
                record,
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

/// The questions to compare the runs on: their own where they agree; otherwise a refusal
/// that names what differs, or with `common`, the questions all of them asked.
fn choose_view(runs: &[PathBuf], records: &[RunRecord], common: bool) -> Result<View> {
    let mut view = View::default();
    if records.is_empty() {
        return Ok(view);
    }
    let differing = |what: &str, of: &dyn Fn(&RunRecord) -> String| -> Option<String> {
        let values: BTreeSet<String> = records.iter().map(of).collect();
        (values.len() > 1).then(|| {
            let each: Vec<String> = runs
                .iter()
                .zip(records)
                .map(|(dir, r)| format!("{} {}", dir.display(), of(r)))
                .collect();
            format!("{what} differs: {}", each.join("; "))
        })
    };
    let data = differing("the VIA data (sha256)", &|r| r.data.sha256[..12].to_string());
    if let Some(data) = data {
        bail!("{data}: runs on different data cannot be compared");
    }
    let protocol = differing("protocol", &|r| r.protocol.name().to_string());
    let debias = differing("debias", &|r| debias_name(r.debias).to_string());
    let scoring = differing("scoring", &|r| r.scoring.name().to_string());
    let selection = differing("selection", &|r| selection_text(r));
    let differences: Vec<String> = [&protocol, &debias, &scoring, &selection]
        .into_iter()
        .flatten()
        .cloned()
        .collect();
    if differences.is_empty() {
        return Ok(view);
    }
    if !common {
        bail!(
            "the runs are not comparable — {}. Give runs of one protocol, debias, scoring and \
             selection, or add --common to compare them on the questions and cells all of them \
             cover",
            differences.join(" — ")
        );
    }
    if protocol.is_some() {
        // The largest protocol whose questions every run asked (paper's are in all of them).
        let covers = |r: &RunRecord, p: Protocol| {
            let (t1, t2) = (r.protocol.task1_variants(), r.protocol.task2_variants());
            p.task1_variants().iter().all(|v| t1.contains(v))
                && p.task2_variants().iter().all(|v| t2.contains(v))
        };
        view.protocol = [Protocol::Balanced, Protocol::Full, Protocol::Paper]
            .into_iter()
            .find(|&p| records.iter().all(|r| covers(r, p)));
    }
    if debias.is_some() {
        view.debias = Some(Debias::None);
    }
    if scoring.is_some() {
        view.scoring = Some(Scoring::Hard);
    }
    Ok(view)
}

fn debias_name(debias: Debias) -> &'static str {
    match debias {
        Debias::None => "none",
        Debias::Pride => "pride",
    }
}

/// A run's selection in words: `all`, or what it filtered.
pub fn selection_text(record: &RunRecord) -> String {
    let s = &record.selection;
    let part = |what: &str, names: &[String]| match names.len() {
        0 => None,
        _ => Some(format!("{what} {}", names.join(", "))),
    };
    let parts: Vec<String> = [
        part("countries", &s.countries),
        part("topics", &s.topics),
        part("values", &s.values),
    ]
    .into_iter()
    .flatten()
    .collect();
    match parts.is_empty() {
        true => "all".to_string(),
        false => parts.join("; "),
    }
}

/// Refuses a folder whose metrics.json no longer says what its CSVs give.
fn check_against_metrics_json(dir: &Path, report: &MetricsReport) -> Result<()> {
    let path = dir.join("metrics.json");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
    let json: Value = serde_json::from_str(crate::input::strip_bom(&text))
        .with_context(|| format!("{} is not JSON: run the run again to rewrite it", path.display()))?;
    let stored = json["alignment_rate"]["overall"].as_f64().with_context(|| {
        format!(
            "{}: no alignment_rate.overall; is it a valuelens metrics.json?",
            path.display()
        )
    })?;
    let computed = report.alignment_rate.overall;
    if !(stored == computed || (stored - computed).abs() <= 1e-9) {
        bail!(
            "{}: alignment rate {stored} but its stated.csv and action.csv give {computed}: the \
             folder was changed after its run; rewrite it with `valuelens metrics --stated … \
             --action … --out {}`",
            path.display(),
            dir.display()
        );
    }
    Ok(())
}

/// The cells a report's measures cover.
fn covered_cells(report: &MetricsReport) -> Cells {
    let mut cells = Cells::none();
    for &(s, k, _, _) in &report.cell_scores {
        cells.insert(s, k);
    }
    cells
}

fn intersect(a: &Cells, b: &Cells) -> Cells {
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

/// Every pair's paired differences and gap-rank agreement, over the cells both cover.
fn pairs_of(entries: &[Entry]) -> Vec<Pair> {
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
pub fn pair(a: usize, b: usize, ma: &(Matrix, Matrix), mb: &(Matrix, Matrix), shared: &Cells) -> Pair {
    let measures_a = scenario_measures(&ma.0, &ma.1, shared);
    let measures_b = scenario_measures(&mb.0, &mb.1, shared);
    let (mut xs, mut ys) = (Vec::new(), Vec::new());
    for (x, y) in measures_a.into_iter().zip(measures_b) {
        if let (Some(x), Some(y)) = (x, y) {
            xs.push(x);
            ys.push(y);
        }
    }
    let mean_f1 = |m: &[metrics::bootstrap::ScenarioMeasures]| {
        m.iter().map(|s| s.f1).sum::<f64>() / m.len().max(1) as f64
    };
    let distance = |m: &[metrics::bootstrap::ScenarioMeasures]| {
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
            true => ", and the paper's API models recomputed from its released files (sampled \
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
        assert!((ab.f1_difference - (a.alignment_rate.overall - b.alignment_rate.overall)).abs() < 1e-12);
        assert!((ab.f1_difference + ba.f1_difference).abs() < 1e-12);
        let (x, y) = (ab.ci95.unwrap(), ba.ci95.unwrap());
        assert!((x.alignment_rate[0] + y.alignment_rate[1]).abs() < 1e-12);
        assert_eq!(pair(0, 0, &ma, &ma, &cells).gap_rank_agreement, Some(1.0));
    }
}
