//! The leaderboard's data: what was asked (`Options`), its rows (`Entry`, from a run or the
//! paper's files: `Source`), the questions they were compared on (`View`), every pair's
//! differences (`Pair`) and the whole (`Leaderboard`).

use std::path::PathBuf;

use crate::benchmark::record::RunRecord;
use crate::metrics::bootstrap::Intervals;
use crate::metrics::Cells;
use crate::report::MetricsReport;
use crate::tasks::pride::Debias;
use crate::tasks::{Protocol, Scoring};

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

/// Where a row's numbers come from.
#[derive(Debug, Clone)]
pub enum Source {
    /// A results folder of `valuelens run`.
    Run {
        dir: PathBuf,
        record: Box<RunRecord>,
    },
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
    /// The pair of entries `a` and `b`, stored in either order.
    pub fn pair(&self, a: usize, b: usize) -> Option<&Pair> {
        self.pairs
            .iter()
            .find(|p| (p.a, p.b) == (a, b) || (p.a, p.b) == (b, a))
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
