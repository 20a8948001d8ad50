//! `valuelens leaderboard` on three real runs (the registry's three models on one filtered
//! subset) and the paper's released files: every row says what its own run's metrics.json
//! says, the paper's rows what `valuelens metrics` gives from the same files, the paired
//! intervals what the CSVs give; runs that asked different questions are refused or, with
//! `--common`, compared on the cells they share; bad folders are named and nothing is written;
//! the page works in a real browser.

mod common;

#[path = "common/browser.rs"]
mod browser;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use serde_json::Value;
use valuelens::leaderboard::value_gaps;
use valuelens::metrics::bootstrap::{paired_difference_ci95, scenario_measures};
use valuelens::metrics::{spearman, Cells, Matrix};
use valuelens::via::scenario_index;
use valuelens::via::vocabulary::{COUNTRIES, TOPICS, VALUES};

/// One country, two topics, three values, asked as `valuelens run` asks by default (the paper's
/// questions, debiased with PriDe: without it these small models answer "Agree" to everything,
/// and every F1 would be 0).
const SUBSET: [&str; 6] = [
    "--countries",
    "Egypt",
    "--topics",
    "Religion,Politics",
    "--values",
    "Equality,Wealth,Honest",
];

const MODELS: [&str; 3] = ["smollm2-135m", "gemma3-270m", "qwen2.5-coder-0.5b"];

fn valuelens(args: &[&str]) -> Command {
    let mut command = common::valuelens_command();
    command.args(args).current_dir(env!("CARGO_MANIFEST_DIR"));
    command
}

/// The three runs, in `<runs>/<model>/`, made once for all tests of this file; beside them
/// (outside `<runs>`) a run of the first model on fewer values.
fn runs() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        for model in MODELS {
            // By registry name (fetched first), which names the rows.
            common::registry_model_path(model);
            let out = dir.path().join("runs").join(model);
            let mut args = vec!["run", "--model", model];
            args.extend(SUBSET);
            args.extend(["--out", out.to_str().unwrap()]);
            common::succeed(valuelens(&args));
        }
        let out = dir.path().join("fewer-values");
        common::succeed(valuelens(&[
            "run",
            "--model",
            MODELS[0],
            "--countries",
            "Egypt",
            "--topics",
            "Religion,Politics",
            "--values",
            "Equality,Wealth",
            "--out",
            out.to_str().unwrap(),
        ]));
        dir
    })
    .path()
}

fn leaderboard(args: &[&Path], flags: &[&str], out: &Path) -> Output {
    let mut command = valuelens(&["leaderboard"]);
    command.args(args).args(flags).arg("--out").arg(out);
    command.output().unwrap()
}

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

fn close(a: &Value, b: &Value) -> bool {
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) => (x - y).abs() <= 1e-12 * x.abs().max(1.0),
        _ => a == b,
    }
}

/// The leaderboard of the three runs (and the paper's models), written once.
fn board() -> &'static (tempfile::TempDir, Value) {
    static BOARD: OnceLock<(tempfile::TempDir, Value)> = OnceLock::new();
    BOARD.get_or_init(|| {
        let out = tempfile::tempdir().unwrap();
        let output = leaderboard(&[&runs().join("runs")], &["--paper"], out.path());
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let json = read_json(&out.path().join("leaderboard.json"));
        (out, json)
    })
}

fn row<'a>(json: &'a Value, label: &str) -> &'a Value {
    json["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["label"] == label)
        .unwrap_or_else(|| panic!("no row {label}"))
}

#[test]
fn each_run_row_says_what_its_metrics_json_says() {
    let (out, json) = board();
    assert_eq!(json["schema"], 1);
    let rows = json["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 3 + 4, "three runs and four paper models");
    let f1s: Vec<f64> = rows
        .iter()
        .map(|r| r["alignment_rate"]["value"].as_f64().unwrap())
        .collect();
    assert!(
        f1s.windows(2).all(|w| w[0] >= w[1]),
        "sorted by F1: {f1s:?}"
    );
    for model in MODELS {
        let run = runs().join("runs").join(model);
        let metrics = read_json(&run.join("metrics.json"));
        let record = read_json(&run.join("run.json"));
        let r = row(json, model);
        for (ours, theirs) in [
            (
                &r["alignment_rate"]["value"],
                &metrics["alignment_rate"]["overall"],
            ),
            (
                &r["alignment_rate"]["ci95"],
                &metrics["alignment_rate"]["overall_ci95"],
            ),
            (&r["distance"]["value"], &metrics["distance"]["overall"]),
            (&r["distance"]["ci95"], &metrics["distance"]["overall_ci95"]),
            (&r["misaligned"], &metrics["misaligned"]["total"]),
            (&r["cells"], &metrics["misaligned"]["cells"]),
            (
                &r["bias"]["task2_option1_share"],
                &metrics["bias"]["task2"]["option1_share"],
            ),
            (
                &r["bias"]["task2_option1_share_debiased"],
                &metrics["bias"]["task2"]["debiased"]["option1_share"],
            ),
            (
                &r["bias"]["task1_label1_share"],
                &metrics["bias"]["task1"]["argmax_share"]["1"],
            ),
            (
                &r["bias"]["stated_undecided_cells"],
                &metrics["cells"]["stated_undecided"],
            ),
            (
                &r["bias"]["action_undecided_cells"],
                &metrics["cells"]["action_undecided"],
            ),
            (&r["computed_tokens"], &record["tokens"]["computed_tokens"]),
            (&r["model"]["sha256"], &record["model"]["sha256"]),
            (&r["model"]["dtype"], &record["model"]["dtype"]),
        ] {
            let equal = match (ours, theirs) {
                (Value::Array(a), Value::Array(b)) => {
                    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| close(x, y))
                }
                _ => close(ours, theirs),
            };
            assert!(equal, "{model}: {ours} against its run's {theirs}");
        }
        assert_eq!(r["source"], "run");
        assert_eq!(r["protocol"], "paper");
        assert_eq!(r["debias"], "pride");
    }
    let nonzero = MODELS
        .iter()
        .filter(|m| row(json, m)["alignment_rate"]["value"].as_f64().unwrap() > 0.0)
        .count();
    assert!(
        nonzero > 0,
        "some run has a positive F1, so the comparisons are not of zeros"
    );
    let md = std::fs::read_to_string(out.path().join("leaderboard.md")).unwrap();
    assert!(
        md.contains("| rank | model |") && md.contains("Paired differences"),
        "{md}"
    );
    let csv = std::fs::read_to_string(out.path().join("leaderboard.csv")).unwrap();
    assert_eq!(csv.lines().count(), 1 + 7, "{csv}");
    for figure in [
        "f1_by_model.svg",
        "f1_model_country.svg",
        "f1_model_topic.svg",
        "task2_option1_by_model.svg",
        "gap_rank_agreement.svg",
    ] {
        let svg = std::fs::read_to_string(out.path().join("figures").join(figure)).unwrap();
        assert!(
            svg.contains("<svg") && svg.contains("smollm2-135m"),
            "{figure}"
        );
    }
}

#[test]
fn the_paper_rows_are_what_valuelens_metrics_gives_from_the_released_files() {
    let (_, json) = board();
    let gpt35 = row(json, "GPT-3.5-turbo (paper)");
    assert!((gpt35["alignment_rate"]["value"].as_f64().unwrap() - 0.178859).abs() < 1e-6);
    assert_eq!(gpt35["misaligned"], 1421);
    assert_eq!(gpt35["exact"], true);
    assert_eq!(gpt35["source"], "paper");
    let evaluation = common::shared_dir().join("valueactionlens/outputs/evaluation");
    for (label, stated, misaligned) in [
        (
            "GPT-3.5-turbo (paper)",
            "gpt-3.5-turbo_t1.csv",
            "chatgpt_misaligned_example.csv",
        ),
        (
            "Gemma-2-9b (paper)",
            "gemma-2-9b-it_t1.csv",
            "misaligned_examples/gemma_misaligned_example.csv",
        ),
    ] {
        let out = tempfile::tempdir().unwrap();
        common::succeed(valuelens(&[
            "metrics",
            "--stated",
            evaluation.join(stated).to_str().unwrap(),
            "--action-misaligned",
            evaluation.join(misaligned).to_str().unwrap(),
            "--out",
            out.path().to_str().unwrap(),
        ]));
        let metrics = read_json(&out.path().join("metrics.json"));
        let r = row(json, label);
        assert!(close(
            &r["alignment_rate"]["value"],
            &metrics["alignment_rate"]["overall"]
        ));
        assert!(close(
            &r["distance"]["value"],
            &metrics["distance"]["overall"]
        ));
        assert_eq!(r["misaligned"], metrics["misaligned"]["total"]);
    }
    assert_eq!(row(json, "Gemma-2-9b (paper)")["exact"], false);
}

/// A run's V and A from its cells.csv.
fn matrices(run: &Path) -> (Matrix, Matrix, Cells) {
    let (mut stated, mut action, mut cells) = (
        Matrix::filled(f64::NAN),
        Matrix::filled(f64::NAN),
        Cells::none(),
    );
    let mut reader = csv::Reader::from_path(run.join("cells.csv")).unwrap();
    for record in reader.records() {
        let record = record.unwrap();
        let index = |names: &[&str], i: usize| names.iter().position(|n| *n == &record[i]).unwrap();
        let s = scenario_index(index(&COUNTRIES, 0), index(&TOPICS, 1));
        let k = index(&VALUES, 2);
        stated.set(s, k, record[3].parse().unwrap());
        action.set(s, k, record[4].parse().unwrap());
        cells.insert(s, k);
    }
    (stated, action, cells)
}

#[test]
fn paired_intervals_are_what_the_csvs_give() {
    let (_, json) = board();
    let pairs = json["pairs"].as_array().unwrap();
    assert_eq!(pairs.len(), 7 * 6 / 2);
    let (a, b) = (MODELS[1], MODELS[2]);
    let pair = pairs
        .iter()
        .find(|p| (p["a"] == a && p["b"] == b) || (p["a"] == b && p["b"] == a))
        .unwrap();
    let (first, second) = (pair["a"].as_str().unwrap(), pair["b"].as_str().unwrap());
    let (va, aa, cells) = matrices(&runs().join("runs").join(first));
    let (vb, ab, cells_b) = matrices(&runs().join("runs").join(second));
    assert_eq!(cells, cells_b);
    let ma: Vec<_> = scenario_measures(&va, &aa, &cells)
        .into_iter()
        .flatten()
        .collect();
    let mb: Vec<_> = scenario_measures(&vb, &ab, &cells)
        .into_iter()
        .flatten()
        .collect();
    let ci = paired_difference_ci95(&ma, &mb).unwrap();
    let f1 = |m: &[valuelens::metrics::bootstrap::ScenarioMeasures]| {
        m.iter().map(|s| s.f1).sum::<f64>() / m.len() as f64
    };
    assert!((pair["f1_difference"]["value"].as_f64().unwrap() - (f1(&ma) - f1(&mb))).abs() < 1e-12);
    let stored: Vec<f64> = pair["f1_difference"]["ci95"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect();
    assert_eq!(stored, ci.alignment_rate.to_vec());
    let stored: Vec<f64> = pair["distance_difference"]["ci95"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect();
    assert_eq!(stored, ci.distance.to_vec());
    let excludes = ci.alignment_rate[0] > 0.0 || ci.alignment_rate[1] < 0.0;
    assert_eq!(pair["f1_excludes_zero"], excludes);
    let rho = spearman(
        &value_gaps(&(va, aa), &cells),
        &value_gaps(&(vb, ab), &cells),
    );
    assert!(close(&pair["gap_rank_agreement"], &serde_json::json!(rho)));
}

#[test]
fn runs_of_other_selections_are_refused_or_compared_on_their_common_cells() {
    let both = [runs().join("runs"), runs().join("fewer-values")];
    let paths: Vec<&Path> = both.iter().map(PathBuf::as_path).collect();
    let out = tempfile::tempdir().unwrap();
    let refused = leaderboard(&paths, &[], &out.path().join("board"));
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("selection differs") && stderr.contains("--common"),
        "{stderr}"
    );
    assert!(!out.path().join("board").exists(), "nothing written");

    let output = leaderboard(&paths, &["--common"], &out.path().join("board"));
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let json = read_json(&out.path().join("board/leaderboard.json"));
    assert_eq!(
        json["view"]["common_cells"], 4,
        "Egypt × 2 topics × 2 values"
    );
    assert!(json["caption"].as_str().unwrap().contains("the 4 cells"));
    // The wider runs, recomputed on the shared cells from their own CSVs.
    let (_, _, shared) = matrices(&runs().join("fewer-values"));
    for model in &MODELS[1..] {
        let (stated, action, _) = matrices(&runs().join("runs").join(model));
        let report = valuelens::report::MetricsReport::compute(model, &stated, &action, &shared);
        let r = row(&json, model);
        assert_eq!(r["cells"], 4);
        assert!(close(
            &r["alignment_rate"]["value"],
            &serde_json::json!(report.alignment_rate.overall)
        ));
        assert!(close(
            &r["distance"]["value"],
            &serde_json::json!(report.distances.overall)
        ));
    }
}

#[test]
fn runs_of_other_protocols_are_refused_with_what_differs() {
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("full-run");
    copy_dir(&runs().join("runs").join(MODELS[0]), &copy);
    let record = copy.join("run.json");
    let text = std::fs::read_to_string(&record).unwrap();
    std::fs::write(
        &record,
        text.replace("\"protocol\": \"paper\"", "\"protocol\": \"full\""),
    )
    .unwrap();
    let other = runs().join("runs").join(MODELS[1]);
    let output = leaderboard(&[&copy, &other], &[], &dir.path().join("board"));
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("protocol differs") && stderr.contains("full"),
        "{stderr}"
    );
    assert!(!dir.path().join("board").exists());
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            std::fs::copy(&path, to.join(path.file_name().unwrap())).unwrap();
        }
    }
}

/// Runs the leaderboard on `folder`, expects a one-line refusal naming `names`, and nothing
/// written.
fn refused(folder: &Path, names: &Path) {
    let out = folder.parent().unwrap().join("board");
    let output = leaderboard(&[folder], &[], &out);
    assert!(!output.status.success(), "{}", folder.display());
    let stderr = String::from_utf8_lossy(&output.stderr);
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one line: {stderr}");
    assert!(
        lines[0].contains(&names.display().to_string()),
        "names {}: {stderr}",
        names.display()
    );
    assert!(!out.exists(), "nothing written for {}", folder.display());
}

#[test]
fn bad_folders_are_named_in_one_line_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    refused(&empty, &empty);

    let not_a_run = dir.path().join("notes");
    std::fs::create_dir_all(&not_a_run).unwrap();
    std::fs::write(not_a_run.join("readme.txt"), "hello").unwrap();
    refused(&not_a_run, &not_a_run);

    let half = dir.path().join("half");
    copy_dir(&runs().join("runs").join(MODELS[0]), &half);
    std::fs::remove_file(half.join("metrics.json")).unwrap();
    refused(&half, &half.join("metrics.json"));

    let damaged = dir.path().join("damaged");
    copy_dir(&runs().join("runs").join(MODELS[0]), &damaged);
    let stated = damaged.join("stated.csv");
    let text = std::fs::read_to_string(&stated).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    lines[2] = lines[2].replacen(',', ",not-a-number,", 1);
    std::fs::write(&stated, lines.join("\n")).unwrap();
    refused(&damaged, &stated);
}

#[test]
fn the_page_works_in_a_real_browser() {
    let (out, json) = board();
    let html = out.path().join("index.html");
    let text = std::fs::read_to_string(&html).unwrap();
    assert!(
        !text.contains("src=\"http") && !text.contains("href=\"http"),
        "self-contained"
    );
    let Some(mut page) = browser::Page::open(&html, 1280) else {
        eprintln!("skipped: no Chromium to open the leaderboard page in");
        return;
    };
    let rows = json["rows"].as_array().unwrap().len();
    assert_eq!(
        page.eval("document.querySelectorAll('#leaderboard tbody tr').length"),
        rows
    );
    // The F1 column's numbers, top to bottom (rows of equal F1 keep their order, so the
    // labels alone would not show the reversal).
    let order = "(() => { const f1 = Array.from(document.querySelectorAll('#leaderboard th'))\
        .findIndex(th => th.dataset.column === 'F1'); return Array.from(document\
        .querySelectorAll('#leaderboard tbody tr')).map(r => r.cells[f1].textContent); })()";
    let before: Vec<Value> = page.eval(order).as_array().unwrap().clone();
    page.eval("document.querySelector('#leaderboard th[data-column=\"F1\"]').click()");
    let after: Vec<Value> = page.eval(order).as_array().unwrap().clone();
    let mut reversed = before.clone();
    reversed.reverse();
    assert_eq!(after, reversed, "a click on F1 reverses the order");
    assert_eq!(page.console_errors(), Vec::<String>::new());
    assert_eq!(
        page.requests(),
        vec![page.url().to_string()],
        "no request leaves the page"
    );
    let shots = match std::env::var_os("VALUELENS_SCREENSHOTS") {
        Some(dir) => PathBuf::from(dir),
        None => out.path().join("shots"),
    };
    std::fs::create_dir_all(&shots).unwrap();
    for width in [1280, 400] {
        page.set_width(width);
        // The phone-width layout: nothing wider than the screen but the scrolling tables.
        let overflow = page.eval("document.documentElement.scrollWidth <= window.innerWidth + 1");
        assert_eq!(overflow, true, "the page fits {width} px");
        let png = shots.join(format!("leaderboard-{width}.png"));
        page.screenshot(&png);
        let bytes = std::fs::read(&png).unwrap();
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
        let png_width = u32::from_be_bytes(bytes[16..20].try_into().unwrap());
        assert_eq!(png_width, width);
    }
}
