//! Finding results folders (a run, or a folder holding several), the paper's released files,
//! and whether runs asked the same questions.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde_json::Value;

use super::board::{selection_text, View};
use crate::benchmark::record::{RunRecord, RUN_RECORD_FILE};
use crate::benchmark::store::UNITS_DIR;
use crate::report::MetricsReport;
use crate::tasks::pride::Debias;
use crate::tasks::{Protocol, Scoring};

/// The files a finished results folder of `valuelens run` holds.
const RUN_FILES: [&str; 4] = [RUN_RECORD_FILE, "stated.csv", "action.csv", "metrics.json"];

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
            let empty = std::fs::read_dir(dir).is_ok_and(|mut d| d.next().is_none());
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
    RUN_FILES.iter().any(|f| dir.join(f).exists()) || dir.join(UNITS_DIR).is_dir()
}

/// The paper's API models whose Task-1 and Task-2 outputs the released files hold: (name,
/// Task-1 responses, misaligned cells, exact).
pub const PAPER_FILES: [(&str, &str, &str, bool); 4] = [
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

/// The questions to compare the runs on: their own where they agree; otherwise a refusal
/// that names what differs, or with `common`, the questions all of them asked.
pub fn choose_view(runs: &[PathBuf], records: &[RunRecord], common: bool) -> Result<View> {
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
    let data = differing("the VIA data (sha256)", &|r| {
        r.data.sha256[..12].to_string()
    });
    if let Some(data) = data {
        bail!("{data}: runs on different data cannot be compared");
    }
    let protocol = differing("protocol", &|r| r.protocol.name().to_string());
    let debias = differing("debias", &|r| r.debias.name().to_string());
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

/// Refuses a folder whose metrics.json no longer says what its CSVs give.
pub fn check_against_metrics_json(dir: &Path, report: &MetricsReport) -> Result<()> {
    let path = dir.join("metrics.json");
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let json: Value = serde_json::from_str(crate::input::strip_bom(&text)).with_context(|| {
        format!(
            "{} is not JSON: run the run again to rewrite it",
            path.display()
        )
    })?;
    let stored = json["alignment_rate"]["overall"]
        .as_f64()
        .with_context(|| {
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
