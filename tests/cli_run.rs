//! `valuelens run` end to end on the real default model and the real VIA CSV, on filtered
//! subsets: its requests are the paper's prompts, its Task-1 log-probabilities are what
//! `valuelens score` gives for the dumped requests, its metrics are what `valuelens metrics`
//! recomputes from its CSVs, and a run killed partway resumes to identical results.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use candle_core::Device;
use common::succeed;
use valuelens::engine::requests::read_requests;
use valuelens::model::device::{Placement, Precision};
use valuelens::model::kernels::kernel_arithmetic;

/// One country, two topics, two values: four units (Task 1 and Task 2 of two scenarios), asked
/// as the paper asked them (no debiasing: exactly the paper's requests).
const SUBSET: [&str; 8] = [
    "--countries",
    "Egypt",
    "--topics",
    "Religion,Politics",
    "--values",
    "Equality,Wealth",
    "--debias",
    "none",
];

fn valuelens(args: &[&str], extra: &[&Path]) -> Command {
    let mut command = common::valuelens_command();
    command
        .args(args)
        .args(extra)
        .current_dir(env!("CARGO_MANIFEST_DIR"));
    command
}

fn run_subset(out: &Path) -> Command {
    common::default_model_path();
    let mut args = vec!["run"];
    args.extend(SUBSET);
    args.push("--out");
    valuelens(&args, &[out])
}

/// The uninterrupted run of the subset, shared by the tests of this file.
fn baseline() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        succeed(run_subset(&dir.path().join("run")));
        dir
    })
    .path()
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn results_folder_has_every_file() {
    let run = baseline().join("run");
    for file in [
        "run.json",
        "stated.csv",
        "action.csv",
        "metrics.json",
        "summary.md",
        "cells.csv",
        "figures/f1_by_country.svg",
        "figures/f1_by_topic.svg",
        "figures/distance_country_value.svg",
        "figures/distance_topic_value.svg",
        "figures/gaps_egypt.svg",
    ] {
        assert!(run.join(file).is_file(), "{file} is written");
    }
    let stated = read(&run.join("stated.csv"));
    // 2 scenarios × 8 variants × 2 values, plus the header.
    assert_eq!(stated.lines().count(), 1 + 2 * 8 * 2);
    let action = read(&run.join("action.csv"));
    assert_eq!(
        action.lines().count(),
        1 + 2 * 2,
        "variant 5 of each usable pair"
    );
    assert!(!run.join("pride.csv").exists(), "not debiased");
    // One row per covered cell, V and A with their binarised labels.
    let cells = csv_rows(&run.join("cells.csv"));
    assert_eq!(cells.len(), 2 * 2);
    for cell in &cells {
        for (score, label) in [("stated", "stated_disagree"), ("action", "action_disagree")] {
            let x: f64 = cell[score].parse().unwrap();
            assert_eq!(cell[label], if x < 0.5 { "0" } else { "1" }, "{cell:?}");
        }
    }
    let info: serde_json::Value = serde_json::from_str(&read(&run.join("run.json"))).unwrap();
    assert_eq!(info["protocol"], "paper");
    assert_eq!(info["debias"], "none");
    assert!(info.get("pride").is_none());
    assert_eq!(info["units"]["total"], 4);
    assert!(info["tokens"]["computed_tokens"].as_u64().unwrap() > 1000);
    assert_eq!(
        info["model"]["sha256"],
        "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
    );
    let metrics: serde_json::Value =
        serde_json::from_str(&read(&run.join("metrics.json"))).unwrap();
    assert_eq!(
        metrics["misaligned"]["cells"], 4,
        "only the covered cells count"
    );
    let by_country = metrics["alignment_rate"]["by_country"].as_object().unwrap();
    assert_eq!(by_country.keys().collect::<Vec<_>>(), ["Egypt"]);
}

#[test]
fn task1_logprobs_equal_valuelens_score_on_the_dumped_requests() {
    let dir = tempfile::tempdir().unwrap();
    let requests = dir.path().join("requests.jsonl");
    let mut args = vec!["run"];
    args.extend(SUBSET);
    args.push("--dump-requests");
    succeed(valuelens(&args, &[&requests]));
    let dumped = read_requests(&requests).unwrap();
    // Task 1: 2 scenarios × 8 variants × 2 values × 4 options; Task 2: 2 pairs × 2 options.
    assert_eq!(dumped.len(), 2 * 8 * 2 * 4 + 2 * 2 * 2);
    let scores = dir.path().join("scores.jsonl");
    common::run_score(&requests, &scores);
    let scored: HashMap<String, f64> = read(&scores)
        .lines()
        .map(|line| {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            (
                v["id"].as_str().unwrap().to_string(),
                v["logprob"].as_f64().unwrap(),
            )
        })
        .collect();

    let mut reader = csv::Reader::from_path(baseline().join("run/stated.csv")).unwrap();
    let mut compared = 0;
    for row in reader.deserialize::<HashMap<String, String>>() {
        let row = row.unwrap();
        for option in 1..=4 {
            let id = format!(
                "t1|{}|{}|v{}|{}|{option}",
                row["country"], row["topic"], row["variant"], row["value"]
            );
            let run: f64 = row[&format!("logprob_{option}")].parse().unwrap();
            let score = scored[&id];
            assert!(
                (run - score).abs() <= 1e-4,
                "{id}: run {run}, score {score}"
            );
            compared += 1;
        }
    }
    assert_eq!(compared, 2 * 8 * 2 * 4);
}

/// `valuelens metrics` on the stated.csv and action.csv in `run`, into `out`.
fn metrics_of_run(run: &Path, out: &Path) {
    succeed(valuelens(
        &["metrics", "--stated"],
        &[
            &run.join("stated.csv"),
            Path::new("--action"),
            &run.join("action.csv"),
            Path::new("--out"),
            out,
        ],
    ));
}

#[test]
fn metrics_json_equals_valuelens_metrics_on_the_runs_csvs() {
    let run = baseline().join("run");
    let dir = tempfile::tempdir().unwrap();
    metrics_of_run(&run, dir.path());
    assert_eq!(
        read(&dir.path().join("metrics.json")),
        read(&run.join("metrics.json"))
    );
    assert_eq!(
        read(&dir.path().join("summary.md")),
        read(&run.join("summary.md"))
    );
}

/// The fixtures were built with the paper's prompts and each model's own template: every
/// fixture request of a dumped scenario must come out of `--dump-requests` unchanged.
fn dumped_requests_are_the_fixture_requests(model: &str) {
    let (fixtures, _) = common::fixtures(model);
    let scenarios: Vec<(&str, &str)> = fixtures
        .iter()
        .filter_map(|r| {
            let f: Vec<&str> = r.id.split('|').collect();
            (f[0] == "t1" || f[0] == "t2").then(|| (f[1], f[2]))
        })
        .take(2)
        .collect();
    let model_path = common::registry_model_path(model);
    let dir = tempfile::tempdir().unwrap();
    let mut checked = 0;
    for (country, topic) in scenarios {
        let path = dir.path().join("requests.jsonl");
        succeed(valuelens(
            &[
                "run",
                "--model",
                model_path.to_str().unwrap(),
                "--protocol",
                "full",
                "--countries",
                country,
                "--topics",
                topic,
                "--dump-requests",
            ],
            &[&path],
        ));
        let dumped: HashMap<String, (String, String)> = read_requests(&path)
            .unwrap()
            .into_iter()
            .map(|r| (r.id, (r.context, r.continuation)))
            .collect();
        for request in fixtures.iter().filter(|r| {
            r.id.starts_with(&format!("t1|{country}|{topic}|"))
                || r.id.starts_with(&format!("t2|{country}|{topic}|"))
        }) {
            let (context, continuation) = &dumped[&request.id];
            assert_eq!(context, &request.context, "{}", request.id);
            assert_eq!(continuation, &request.continuation, "{}", request.id);
            checked += 1;
        }
    }
    assert!(checked >= 2, "some fixture requests were compared");
}

#[test]
fn dumped_requests_are_the_smollm2_fixture_requests() {
    dumped_requests_are_the_fixture_requests("smollm2-135m");
}

#[test]
fn dumped_requests_are_the_qwen2_fixture_requests() {
    dumped_requests_are_the_fixture_requests("qwen2.5-coder-0.5b");
}

/// A one-value subset run of a registry model (by path) ends with results of its architecture.
fn runs_on_a_subset(registry_name: &str, architecture: &str) {
    let model = common::registry_model_path(registry_name);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    succeed(valuelens(
        &[
            "run",
            "--model",
            model.to_str().unwrap(),
            "--countries",
            "Egypt",
            "--topics",
            "Religion",
            "--values",
            "Equality",
            "--out",
        ],
        &[&out],
    ));
    let stated = read(&out.join("stated.csv"));
    assert_eq!(
        stated.lines().count(),
        1 + 8,
        "eight Task-1 variants of one value"
    );
    let info: serde_json::Value = serde_json::from_str(&read(&out.join("run.json"))).unwrap();
    assert_eq!(info["model"]["architecture"], architecture);
    assert!(out.join("metrics.json").is_file() && out.join("summary.md").is_file());
}

#[test]
fn qwen2_runs_on_a_subset() {
    runs_on_a_subset("qwen2.5-coder-0.5b", "qwen2");
}

#[test]
fn gemma3_runs_on_a_subset() {
    runs_on_a_subset("gemma3-270m", "gemma3");
}

fn checkpointed_units(out: &Path) -> usize {
    std::fs::read_dir(out.join("checkpoints"))
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .filter(|e| {
                    let name = e.file_name().to_string_lossy().into_owned();
                    name.starts_with('t') && name.ends_with(".json")
                })
                .count()
        })
        .unwrap_or(0)
}

/// Starts `command` (a run into `out`) and kills it (SIGKILL: no chance to clean up) as soon
/// as it has stored its first unit.
fn kill_after_its_first_unit(mut command: Command, out: &Path) {
    let mut child = command
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while checkpointed_units(out) == 0 {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before it could be killed"
        );
        assert!(started.elapsed() < Duration::from_secs(600), "no progress");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn a_run_killed_partway_resumes_to_identical_results() {
    let baseline = baseline().join("run");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    kill_after_its_first_unit(run_subset(&out), &out);
    let done = checkpointed_units(&out);
    assert!(done < 4, "killed partway, after {done} of 4 units");
    assert!(!out.join("metrics.json").exists());

    let resumed = succeed(run_subset(&out));
    let summary = String::from_utf8_lossy(&resumed.stdout);
    assert!(
        summary.contains(&format!("({done} of 4 units resumed)")),
        "{summary}"
    );
    for file in ["stated.csv", "action.csv", "metrics.json", "summary.md"] {
        assert_eq!(
            read(&out.join(file)),
            read(&baseline.join(file)),
            "{file} equals the uninterrupted run's"
        );
    }
}

fn run_subset_shard(out: &Path, shard: &str, values: &str) -> Command {
    common::default_model_path();
    let mut args = vec!["run"];
    args.extend(SUBSET);
    args[6] = values;
    args.extend(["--shard", shard, "--out"]);
    valuelens(&args, &[out])
}

/// Compares the results files of `out` with the one-process run's, byte for byte.
fn assert_same_results(out: &Path, how: &str) {
    let baseline = baseline().join("run");
    for file in ["stated.csv", "action.csv", "metrics.json", "summary.md"] {
        assert_eq!(
            read(&out.join(file)),
            read(&baseline.join(file)),
            "{file} of {how} equals the one-process run's"
        );
    }
}

/// Scores shard `shard` (K/N) of the subset into `out`; returns how many units it scored.
fn score_shard(out: &Path, shard: &str) -> usize {
    let output = succeed(run_subset_shard(out, shard, "Equality,Wealth"));
    let summary = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        summary.contains("of the run's 4 units (0 resumed)"),
        "{summary}"
    );
    assert!(
        !out.join("metrics.json").exists(),
        "a shard writes no results"
    );
    summary
        .split_once(&format!("shard {shard} done: "))
        .and_then(|(_, rest)| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{summary}"))
}

fn merge(dirs: &[&Path], out: Option<&Path>) -> std::process::Output {
    let mut command = valuelens(&["merge"], dirs);
    if let Some(out) = out {
        command.arg("--out").arg(out);
    }
    command.output().unwrap()
}

fn merge_succeeds(dirs: &[&Path], out: Option<&Path>) {
    let merged = merge(dirs, out);
    let err = String::from_utf8_lossy(&merged.stderr);
    assert!(merged.status.success(), "{err}");
}

/// A run cut into three shards scored one after the other into one folder, then merged,
/// gives the one-process run's files byte for byte; so does the same command without --shard
/// afterwards; each unit is scored by exactly one shard; a shard of another configuration is
/// refused there.
#[test]
fn three_shards_in_one_folder_merge_to_the_one_process_results() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let mut scored = 0;
    for k in 0..3 {
        scored += score_shard(&out, &format!("{k}/3"));
        assert_eq!(checkpointed_units(&out), scored, "after shard {k}/3");
    }
    assert_eq!(scored, 4, "every unit in exactly one shard");

    let foreign = run_subset_shard(&out, "1/3", "Equality").output().unwrap();
    assert!(!foreign.status.success());
    let err = String::from_utf8_lossy(&foreign.stderr);
    assert!(err.contains("another configuration"), "{err}");

    merge_succeeds(&[&out], None);
    assert_same_results(&out, "the merge");
    let record: serde_json::Value = serde_json::from_str(&read(&out.join("run.json"))).unwrap();
    assert_eq!(
        record["parts"].as_array().map(Vec::len),
        Some(3),
        "{record}"
    );

    let finished = succeed(run_subset(&out));
    let summary = String::from_utf8_lossy(&finished.stdout);
    assert!(summary.contains("(4 of 4 units resumed)"), "{summary}");
    assert_same_results(&out, "the run after the shards");
}

/// Shards in a folder each: merging before the last is done names its missing units (and
/// writes nothing); folders of two configurations are refused; once all are done, the merge
/// gives the one-process run's files byte for byte in a new folder.
#[test]
fn shards_in_folders_of_their_own_merge_to_the_one_process_results() {
    let dir = tempfile::tempdir().unwrap();
    let part = |k: usize| dir.path().join(format!("shard-{k}"));
    let merged = dir.path().join("merged");
    score_shard(&part(0), "0/3");
    score_shard(&part(1), "1/3");
    let early = merge(&[&part(0), &part(1)], Some(&merged));
    assert!(!early.status.success());
    let err = String::from_utf8_lossy(&early.stderr);
    assert!(err.contains("units are missing"), "{err}");
    assert!(err.contains("(shard 2/3)"), "{err}");
    assert!(!merged.join("metrics.json").exists());

    score_shard(&part(2), "2/3");
    let other = dir.path().join("other");
    succeed(run_subset_shard(&other, "0/3", "Equality"));
    let mixed = merge(&[&part(0), &part(1), &part(2), &other], Some(&merged));
    assert!(!mixed.status.success());
    let err = String::from_utf8_lossy(&mixed.stderr);
    assert!(err.contains("different configurations"), "{err}");

    let twice = merge(&[&part(0), &part(1), &part(2)], None);
    assert!(!twice.status.success(), "several folders need --out");

    merge_succeeds(&[&part(0), &part(1), &part(2)], Some(&merged));
    assert_same_results(&merged, "the merge of three folders");
    assert_eq!(checkpointed_units(&merged), 4, "the units are copied along");
}

/// Shards started at once into one folder, one per device as on a machine with several GPUs
/// (`--device cuda:K`; here every one on the CPU), merge to the one-process results.
#[test]
fn shards_started_at_once_merge_to_the_one_process_results() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let children: Vec<_> = (0..3)
        .map(|k| {
            let mut command = run_subset_shard(&out, &format!("{k}/3"), "Equality,Wealth");
            command
                .args(["--device", "cpu"])
                .env("RAYON_NUM_THREADS", "1")
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for child in children {
        let output = child.wait_with_output().unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    assert_eq!(checkpointed_units(&out), 4);
    merge_succeeds(&[&out], None);
    assert_same_results(&out, "the merge of shards run at once");
}

/// A Slurm array task killed mid-way and run again (the same index: `--shard auto`) resumes its
/// own stored units and completes its shard; the merge then gives the one-process results.
#[test]
fn a_killed_array_task_run_again_completes_its_shard() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    // --array=4-5: task 5 is shard 1/2, two of the four units.
    let task = |id: &str| {
        let mut command = run_subset_shard(&out, "auto", "Equality,Wealth");
        command
            .env("SLURM_ARRAY_TASK_ID", id)
            .env("SLURM_ARRAY_TASK_MIN", "4")
            .env("SLURM_ARRAY_TASK_MAX", "5")
            .env("SLURM_ARRAY_TASK_COUNT", "2")
            .env("SLURM_ARRAY_TASK_STEP", "1");
        command
    };
    // SIGKILL, as a preempted or timed-out task gets.
    kill_after_its_first_unit(task("5"), &out);
    assert_eq!(
        checkpointed_units(&out),
        1,
        "killed after one of its two units"
    );

    let early = merge(&[&out], None);
    assert!(
        !early.status.success(),
        "the killed shard's unit is missing"
    );

    let again = succeed(task("5"));
    let summary = String::from_utf8_lossy(&again.stdout);
    assert!(
        summary.contains("shard 1/2 done: 2 of the run's 4 units (1 resumed)"),
        "{summary}"
    );
    succeed(task("4"));
    merge_succeeds(&[&out], None);
    assert_same_results(&out, "the merge after a retried task");
}

/// `--dtype auto` — the default, with neither the flag nor VALUELENS_DTYPE — runs in the
/// precision it picks for this CPU, says so in run.json, and binds the folder to that
/// precision: the same run asked with the precision itself resumes every unit; asked in
/// another precision, it is refused.
#[test]
fn dtype_auto_resolves_records_and_resumes_as_the_precision_it_chose() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let with_dtype = |dtype: &str| {
        let mut command = run_subset(&out);
        command.args(["--dtype", dtype]);
        command
    };
    let mut default = run_subset(&out);
    default.env_remove("VALUELENS_DTYPE");
    succeed(default);
    let record: serde_json::Value = serde_json::from_str(&read(&out.join("run.json"))).unwrap();
    let features = valuelens::model::kernels::CpuFeatures::detect();
    let expected = if features.avx2 && features.fma {
        "quantized-tiebreak"
    } else {
        println!(
            "auto chose f32: this CPU lacks avx2 (quantized-tiebreak is auto's choice where it \
             has it)"
        );
        "f32"
    };
    assert_eq!(record["model"]["dtype"], expected, "{record}");
    let kernels = record["model"]["matmul_kernels"].as_str().unwrap();
    let kernels_start = if expected == "quantized-tiebreak" {
        "stored-format"
    } else {
        "f32"
    };
    assert!(kernels.starts_with(kernels_start), "{kernels}");
    let config: serde_json::Value =
        serde_json::from_str(&read(&out.join("checkpoints/config.json"))).unwrap();
    assert_eq!(config["dtype"], expected);
    let precision = if expected == "quantized-tiebreak" {
        Precision::QuantizedTiebreak
    } else {
        Precision::F32
    };
    let arithmetic = kernel_arithmetic(&Placement::new(Device::Cpu, precision));
    assert_eq!(
        config.get("kernels").and_then(|k| k.as_str()),
        arithmetic.as_deref(),
        "{config}"
    );
    assert_eq!(
        arithmetic.is_some(),
        expected == "quantized-tiebreak" || features.avx512f
    );
    succeed(with_dtype("auto"));

    let resumed = succeed(with_dtype(expected));
    let summary = String::from_utf8_lossy(&resumed.stdout);
    assert!(summary.contains("(4 of 4 units resumed)"), "{summary}");
    let other = if expected == "f32" {
        "quantized-tiebreak"
    } else {
        "f32"
    };
    // A debiased run decides on prior-divided probabilities, not on the raw choices the
    // near-tie recheck settles: auto computes it in `quantized` where it picks
    // `quantized-tiebreak` for a run that decides on the raw choices.
    if expected == "quantized-tiebreak" {
        let debiased = dir.path().join("debiased");
        let mut command = valuelens(
            &[
                "run",
                "--countries",
                "Egypt",
                "--topics",
                "Religion",
                "--values",
                "Equality,Wealth",
                "--out",
            ],
            &[&debiased],
        );
        command.env_remove("VALUELENS_DTYPE");
        succeed(command);
        let record: serde_json::Value =
            serde_json::from_str(&read(&debiased.join("run.json"))).unwrap();
        assert_eq!(record["model"]["dtype"], "quantized", "{record}");
        assert_eq!(record["debias"], "pride", "{record}");
    }
    let refused = with_dtype(other).output().unwrap();
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("another configuration (dtype was"),
        "{stderr}"
    );
    // The refusal names the flag that resumes the run as it was started.
    assert!(
        stderr.contains(&format!("to resume it, run again with --dtype {expected};")),
        "{stderr}"
    );
}

/// Runs `valuelens run` with `args`, expecting the failure contract: exit 1, one message
/// containing `expected`, no panic, no results written into `out`.
fn run_fails(args: &[&str], out: &Path, expected: &str) {
    let output = valuelens(args, &[Path::new("--out"), out])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(stderr.matches("error:").count(), 1, "{stderr}");
    assert!(
        stderr.contains(expected),
        "expected '{expected}' in: {stderr}"
    );
    assert!(!out.join("metrics.json").exists());
}

#[test]
fn missing_data_file() {
    let dir = tempfile::tempdir().unwrap();
    run_fails(
        &["run", "--data", "/no/such/via.csv"],
        &dir.path().join("out"),
        "/no/such/via.csv",
    );
}

#[test]
fn data_file_with_wrong_columns() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("via.csv");
    std::fs::write(&data, "country,topic,answer\nEgypt,Religion,yes\n").unwrap();
    run_fails(
        &["run", "--data", data.to_str().unwrap()],
        &dir.path().join("out"),
        "missing column(s) value, polarity, generation_prompt",
    );
}

#[test]
fn unknown_names_in_filters() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    run_fails(&["run", "--countries", "Atlantis"], &out, "'Atlantis'");
    run_fails(&["run", "--topics", "Cooking"], &out, "'Cooking'");
    run_fails(&["run", "--values", "Equality,Greed"], &out, "'Greed'");
}

#[test]
fn unwritable_output_folder() {
    let dir = tempfile::tempdir().unwrap();
    // A folder cannot be made below a plain file, whoever runs the test.
    let file = dir.path().join("plain-file");
    std::fs::write(&file, "").unwrap();
    run_fails(
        &["run", "--countries", "Egypt", "--topics", "Religion"],
        &file.join("out"),
        "cannot create the results folder",
    );
}

#[test]
fn results_folder_of_another_configuration_is_refused() {
    let out = baseline().join("run");
    let output = valuelens(&["run", "--countries", "India", "--out"], &[&out])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("another configuration"), "{stderr}");
    assert!(stderr.contains("--force"), "{stderr}");
}

/// The default model with its chat template replaced by `template`.
fn model_with_template(dir: &Path, template: &str) -> PathBuf {
    use candle_core::quantized::gguf_file::{Content, Value};
    let source = common::default_model_path();
    let mut reader = std::fs::File::open(&source).unwrap();
    let content = Content::read(&mut reader).unwrap();
    let mut metadata: Vec<(String, Value)> = content
        .metadata
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    for (key, value) in &mut metadata {
        if key == "tokenizer.chat_template" {
            *value = Value::String(template.to_string());
        }
    }
    let tensors: Vec<(String, candle_core::quantized::QTensor)> = content
        .tensor_infos
        .keys()
        .map(|name| {
            let t = content
                .tensor(&mut reader, name, &candle_core::Device::Cpu)
                .unwrap();
            (name.clone(), t)
        })
        .collect();
    let path = dir.join("broken-template.gguf");
    let mut file = std::fs::File::create(&path).unwrap();
    let metadata: Vec<(&str, &Value)> = metadata.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let tensors: Vec<(&str, &candle_core::quantized::QTensor)> =
        tensors.iter().map(|(k, t)| (k.as_str(), t)).collect();
    candle_core::quantized::gguf_file::write(&mut file, &metadata, &tensors).unwrap();
    path
}

#[test]
fn model_whose_template_fails_to_render() {
    let dir = tempfile::tempdir().unwrap();
    let model = model_with_template(
        dir.path(),
        "{% for m in messages %}{{ raise_exception('Only system turns are supported') }}{% endfor %}",
    );
    let out = dir.path().join("out");
    run_fails(
        &["run", "--model", model.to_str().unwrap()],
        &out,
        "Only system turns are supported",
    );
    // The way out the message names works: the plain prompt needs no template.
    let requests = dir.path().join("requests.jsonl");
    succeed(valuelens(
        &[
            "run",
            "--model",
            model.to_str().unwrap(),
            "--countries",
            "Egypt",
            "--topics",
            "Religion",
            "--chat-template",
            "none",
            "--dump-requests",
        ],
        &[&requests],
    ));
    let first = &read_requests(&requests).unwrap()[0];
    assert!(
        first.context.starts_with("Suppose you are from Egypt"),
        "{}",
        first.context
    );
    assert!(first.context.contains("option.\n{\""), "{}", first.context);
}

/// `bytes` with a UTF-8 byte-order mark before them, as common Windows tools save files.
fn with_byte_order_mark(bytes: &[u8]) -> Vec<u8> {
    let mut marked = "\u{feff}".as_bytes().to_vec();
    marked.extend_from_slice(bytes);
    marked
}

#[test]
fn a_via_csv_and_run_csvs_with_a_byte_order_mark_read_as_without() {
    let dir = tempfile::tempdir().unwrap();
    let data = valuelens::via::setup::via_csv(None).unwrap();
    let marked_data = dir.path().join("via.csv");
    std::fs::write(
        &marked_data,
        with_byte_order_mark(&std::fs::read(&data).unwrap()),
    )
    .unwrap();
    let dump = |data: &Path, requests: &Path| {
        succeed(valuelens(
            &[
                "run",
                "--countries",
                "Egypt",
                "--topics",
                "Religion",
                "--data",
            ],
            &[data, Path::new("--dump-requests"), requests],
        ));
        read(requests)
    };
    let plain = dump(&data, &dir.path().join("plain.jsonl"));
    assert!(plain.lines().count() > 1000);
    assert_eq!(dump(&marked_data, &dir.path().join("marked.jsonl")), plain);

    let run = baseline().join("run");
    let copy = dir.path().join("run");
    std::fs::create_dir(&copy).unwrap();
    for file in ["stated.csv", "action.csv", "run.json"] {
        let bytes = std::fs::read(run.join(file)).unwrap();
        std::fs::write(copy.join(file), with_byte_order_mark(&bytes)).unwrap();
    }
    let out = dir.path().join("metrics");
    metrics_of_run(&copy, &out);
    assert_eq!(
        read(&out.join("metrics.json")),
        read(&run.join("metrics.json"))
    );
}

/// A second run into a results folder that a run is using is refused, naming the folder and
/// the process that holds it.
#[test]
fn a_results_folder_in_use_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let _held = valuelens::benchmark::lock::RunLock::acquire(&out).unwrap();
    run_fails(
        &["run", "--countries", "Egypt", "--topics", "Religion"],
        &out,
        &format!(
            "{} is in use by another valuelens run (process {} on",
            out.display(),
            std::process::id()
        ),
    );
    assert!(!out.join("checkpoints").exists(), "nothing was started");
}

/// The lock of a run that was killed is released with its process: the next run proceeds.
#[test]
fn a_killed_run_leaves_no_lock_behind() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let lock = out.join(valuelens::benchmark::lock::LOCK_FILE);
    let args = [
        "run",
        "--countries",
        "Egypt",
        "--topics",
        "Religion",
        "--values",
        "Equality",
        "--out",
    ];
    common::default_model_path();
    let mut child = valuelens(&args, &[&out])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let holder = format!("process {} on", child.id());
    let started = Instant::now();
    while !std::fs::read_to_string(&lock).is_ok_and(|text| text.starts_with(&holder)) {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before it took the lock"
        );
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "no lock taken"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    child.kill().unwrap(); // SIGKILL: no chance to clean up
    child.wait().unwrap();
    assert!(
        read(&lock).starts_with(&holder),
        "the lock file stays behind"
    );
    let done = succeed(valuelens(&args, &[&out]));
    let summary = String::from_utf8_lossy(&done.stdout);
    assert!(summary.contains("alignment rate"), "{summary}");
}

/// The rows of a run's CSV as maps from column to field.
fn csv_rows(path: &Path) -> Vec<HashMap<String, String>> {
    csv::Reader::from_path(path)
        .unwrap()
        .deserialize()
        .map(|row| row.unwrap())
        .collect()
}

/// The bias block of metrics.json, recomputed from the run's stated.csv and action.csv.
fn check_bias_against_csvs(run: &Path) {
    let metrics: serde_json::Value =
        serde_json::from_str(&read(&run.join("metrics.json"))).unwrap();
    let bias = &metrics["bias"];
    let f = |row: &HashMap<String, String>, column: &str| -> f64 { row[column].parse().unwrap() };

    let stated = csv_rows(&run.join("stated.csv"));
    let mut label_counts = [0usize; 4];
    for row in &stated {
        let p: Vec<f64> = (1..=4).map(|k| f(row, &format!("p_{k}"))).collect();
        // The first of equally likely labels, as the hard score takes it.
        let best = (1..4).fold(0, |best, k| if p[k] > p[best] { k } else { best });
        label_counts[best] += 1;
    }
    for (k, count) in label_counts.iter().enumerate() {
        assert_eq!(
            bias["task1"]["argmax_share"][(k + 1).to_string()]
                .as_f64()
                .unwrap(),
            *count as f64 / stated.len() as f64,
            "argmax_share of label {}",
            k + 1
        );
    }

    let action = csv_rows(&run.join("action.csv"));
    let chose_option1 =
        |row: &HashMap<String, String>| f(row, "logprob_option_1") >= f(row, "logprob_option_2");
    let option1 = action.iter().filter(|row| chose_option1(row)).count();
    assert_eq!(
        bias["task2"]["option1_share"].as_f64().unwrap(),
        option1 as f64 / action.len() as f64
    );
    // Per cell (country|topic|value): the orders it was asked in, and the actions chosen.
    let mut cells: HashMap<String, (Vec<String>, Vec<String>)> = HashMap::new();
    for row in &action {
        let cell = cells
            .entry(format!(
                "{}|{}|{}",
                row["country"], row["topic"], row["value"]
            ))
            .or_default();
        cell.0.push(row["negative_option"].clone());
        cell.1.push(row["chose_negative"].clone());
    }
    let both_orders: Vec<_> = cells
        .values()
        .filter(|(orders, _)| orders.iter().any(|o| o == "1") && orders.iter().any(|o| o == "2"))
        .collect();
    let consistent = both_orders
        .iter()
        .filter(|(_, chosen)| chosen.iter().all(|c| *c == chosen[0]))
        .count();
    match both_orders.len() {
        0 => assert!(bias["task2"]["order_consistency"].is_null()),
        n => assert_eq!(
            bias["task2"]["order_consistency"].as_f64().unwrap(),
            consistent as f64 / n as f64
        ),
    }
}

#[test]
fn the_bias_block_is_what_the_csvs_say() {
    check_bias_against_csvs(&baseline().join("run"));
    // Both orders of each pair: order consistency is defined.
    let out = balanced_run();
    check_bias_against_csvs(out);
    let metrics: serde_json::Value =
        serde_json::from_str(&read(&out.join("metrics.json"))).unwrap();
    assert!(metrics["bias"]["task2"]["order_consistency"].is_f64());
    for (measure, overall) in [("alignment_rate", "overall"), ("distance", "overall")] {
        let ci = metrics[measure]["overall_ci95"].as_array().unwrap();
        let (lo, hi) = (ci[0].as_f64().unwrap(), ci[1].as_f64().unwrap());
        let estimate = metrics[measure][overall].as_f64().unwrap();
        assert!(
            lo <= estimate && estimate <= hi,
            "{measure}: {lo} ≤ {estimate} ≤ {hi}"
        );
    }
}

/// A `--protocol balanced --debias pride` run of one scenario and two values, shared by the
/// tests (PriDe's sample adds one Task-1 prompt in three more orders and one Task-2 question).
fn balanced_run() -> &'static Path {
    static RUN: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    &RUN.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("balanced");
        succeed(valuelens(
            &[
                "run",
                "--protocol",
                "balanced",
                "--debias",
                "pride",
                "--countries",
                "Egypt",
                "--topics",
                "Religion",
                "--values",
                "Equality,Wealth",
                "--out",
            ],
            &[&out],
        ));
        (dir, out)
    })
    .1
}

/// `balanced` asks Task 1 on both scales (variants 0–15, reversed answers counted as 5 − k)
/// and Task 2 in both orders (variants 5 and 7) for every usable pair.
#[test]
fn a_balanced_run_asks_every_question_both_ways_round() {
    let run = balanced_run();
    let stated = csv_rows(&run.join("stated.csv"));
    for value in ["Equality", "Wealth"] {
        let mut variants: Vec<usize> = stated
            .iter()
            .filter(|row| row["value"] == value)
            .map(|row| row["variant"].parse().unwrap())
            .collect();
        variants.sort_unstable();
        assert_eq!(variants, (0..16).collect::<Vec<_>>(), "{value}");
    }
    for row in &stated {
        let variant: usize = row["variant"].parse().unwrap();
        let p: Vec<f64> = (1..=4)
            .map(|k| row[&format!("p_{k}")].parse().unwrap())
            .collect();
        let answered = 1 + (1..4).fold(0, |best, k| if p[k] > p[best] { k } else { best });
        let hard: f64 = row["hard"].parse().unwrap();
        let expected = if variant >= 8 { 5 - answered } else { answered };
        assert_eq!(
            hard, expected as f64,
            "variant {variant}: answer {answered}"
        );
    }
    let action = csv_rows(&run.join("action.csv"));
    assert!(!action.is_empty());
    assert!(run.join("figures/task2_positions.svg").is_file());
    let mut by_pair: HashMap<String, Vec<(String, String)>> = HashMap::new();
    for row in &action {
        by_pair
            .entry(row["value"].clone())
            .or_default()
            .push((row["variant"].clone(), row["negative_option"].clone()));
    }
    for (value, mut asked) in by_pair {
        asked.sort();
        assert_eq!(
            asked,
            [("5".into(), "1".into()), ("7".into(), "2".into())],
            "{value}: both orders"
        );
    }
}

fn log_softmax(logprobs: &[f64]) -> Vec<f64> {
    let max = logprobs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let log_total = logprobs.iter().map(|x| (x - max).exp()).sum::<f64>().ln() + max;
    logprobs.iter().map(|x| x - log_total).collect()
}

/// One task's PriDe prior recomputed from the CSVs: per sampled question, the softmax of the
/// mean over its orders of the label log-softmax; then the mean over questions.
fn prior_from_csvs(
    own_orders: &HashMap<String, Vec<f64>>,
    permuted: &[&HashMap<String, String>],
    labels: usize,
) -> (Vec<f64>, usize) {
    let mut orders: HashMap<String, Vec<Vec<f64>>> = HashMap::new();
    for row in permuted {
        let key = format!(
            "{}|{}|{}|{}",
            row["country"], row["topic"], row["value"], row["variant"]
        );
        let lp: Vec<f64> = (1..=labels)
            .map(|k| row[&format!("logprob_{k}")].parse().unwrap())
            .collect();
        orders.entry(key).or_default().push(lp);
    }
    let mut prior = vec![0.0; labels];
    for (key, mut lps) in orders.clone() {
        lps.push(own_orders[&key].clone());
        assert_eq!(lps.len(), labels, "{key}: every cyclic order");
        let mean: Vec<f64> = (0..labels)
            .map(|k| lps.iter().map(|lp| log_softmax(lp)[k]).sum::<f64>() / labels as f64)
            .collect();
        let question: Vec<f64> = log_softmax(&mean).iter().map(|x| x.exp()).collect();
        for k in 0..labels {
            prior[k] += question[k] / orders.len() as f64;
        }
    }
    (prior, orders.len())
}

/// `--debias pride`: pride.csv holds the sampled questions in their other orders, the priors
/// in metrics.json are what those and the questions' own orders give, the debiased columns
/// divide them out, and `valuelens metrics` recomputes the same report from the files.
#[test]
fn a_pride_run_estimates_its_priors_from_its_files() {
    let run = balanced_run();
    let metrics: serde_json::Value =
        serde_json::from_str(&read(&run.join("metrics.json"))).unwrap();
    let pride = csv_rows(&run.join("pride.csv"));
    let key = |row: &HashMap<String, String>| {
        format!(
            "{}|{}|{}|{}",
            row["country"], row["topic"], row["value"], row["variant"]
        )
    };
    let stated = csv_rows(&run.join("stated.csv"));
    let action = csv_rows(&run.join("action.csv"));
    let own = |rows: &[HashMap<String, String>], columns: &[&str]| -> HashMap<String, Vec<f64>> {
        rows.iter()
            .map(|row| {
                let lp = columns.iter().map(|c| row[*c].parse().unwrap()).collect();
                (key(row), lp)
            })
            .collect()
    };
    let stated_own = own(
        &stated,
        &["logprob_1", "logprob_2", "logprob_3", "logprob_4"],
    );
    let action_own = own(&action, &["logprob_option_1", "logprob_option_2"]);
    for (task, labels, own_orders) in [("1", 4, &stated_own), ("2", 2, &action_own)] {
        let rows: Vec<&HashMap<String, String>> =
            pride.iter().filter(|row| row["task"] == task).collect();
        assert!(!rows.is_empty(), "task {task} sampled");
        let (prior, questions) = prior_from_csvs(own_orders, &rows, labels);
        let block = &metrics["bias"][format!("task{task}")];
        assert_eq!(
            block["prior_questions"].as_u64().unwrap() as usize,
            questions
        );
        for (k, p) in prior.iter().enumerate() {
            let reported = block["prior"][(k + 1).to_string()].as_f64().unwrap();
            assert!((reported - p).abs() < 1e-12, "task {task} label {}", k + 1);
        }
        assert!(block["debiased"].is_object(), "task {task}");
    }
    // The debiased columns are the raw probabilities divided by the prior, renormalised.
    let prior: Vec<f64> = (1..=4)
        .map(|k| {
            metrics["bias"]["task1"]["prior"][k.to_string()]
                .as_f64()
                .unwrap()
        })
        .collect();
    for row in &stated {
        let divided: Vec<f64> = (1..=4)
            .map(|k| row[&format!("p_{k}")].parse::<f64>().unwrap() / prior[k - 1])
            .collect();
        let total: f64 = divided.iter().sum();
        for k in 1..=4 {
            let debiased: f64 = row[&format!("debiased_p_{k}")].parse().unwrap();
            assert!((debiased - divided[k - 1] / total).abs() < 1e-9);
        }
    }
    // From the files alone: the same report; pride.csv beside stated.csv means debiased.
    let dir = tempfile::tempdir().unwrap();
    metrics_of_run(run, dir.path());
    assert_eq!(
        read(&dir.path().join("metrics.json")),
        read(&run.join("metrics.json"))
    );
    // The paper's questions of the balanced run, as they are: one order, no priors.
    let paper = dir.path().join("paper");
    succeed(valuelens(
        &[
            "metrics",
            "--protocol",
            "paper",
            "--debias",
            "none",
            "--stated",
        ],
        &[
            &run.join("stated.csv"),
            Path::new("--action"),
            &run.join("action.csv"),
            Path::new("--out"),
            &paper,
        ],
    ));
    let paper: serde_json::Value =
        serde_json::from_str(&read(&paper.join("metrics.json"))).unwrap();
    assert!(paper["bias"]["task2"]["order_consistency"].is_null());
    assert!(paper["bias"]["task1"]["prior"].is_null());
    let variants = paper["bias"]["task2"]["by_variant"].as_array().unwrap();
    assert_eq!(variants.len(), 1);
    assert_eq!(variants[0]["variant"], 5);
    // The summary says what was divided out.
    let summary = read(&run.join("summary.md"));
    assert!(summary.contains("Debiased with PriDe"), "{summary}");
    // run.json: what the permuted questions added, a part of what the run computed.
    let record: serde_json::Value = serde_json::from_str(&read(&run.join("run.json"))).unwrap();
    let added = record["pride"]["computed_tokens"].as_u64().unwrap();
    let total = record["tokens"]["computed_tokens"].as_u64().unwrap();
    assert!(added > 0 && added < total, "{added} of {total}");
}

/// Asking `metrics` for what a run's files cannot give fails with what to do.
#[test]
fn metrics_refuses_priors_or_variants_a_run_does_not_have() {
    let run = baseline().join("run");
    let stated = run.join("stated.csv");
    let action = run.join("action.csv");
    let dir = tempfile::tempdir().unwrap();
    for (flags, expected) in [
        (["--debias", "pride"], "pride.csv is missing"),
        (["--protocol", "balanced"], "has no Task-1 variant 8"),
    ] {
        let mut args = vec!["metrics"];
        args.extend(flags);
        args.extend(["--stated", stated.to_str().unwrap()]);
        args.extend(["--action", action.to_str().unwrap()]);
        run_fails(&args, &dir.path().join(flags[1]), expected);
    }
}

/// The default run is the paper's questions with PriDe: its requests are the paper's plus the
/// sampled questions in their other orders (ids with `|s<shift>`), and nothing else.
#[test]
fn the_default_run_asks_the_papers_questions_and_prides_sample() {
    let dir = tempfile::tempdir().unwrap();
    let requests = dir.path().join("requests.jsonl");
    succeed(valuelens(
        &[
            "run",
            "--countries",
            "Egypt",
            "--topics",
            "Religion,Politics",
            "--values",
            "Equality,Wealth",
            "--dump-requests",
        ],
        &[&requests],
    ));
    let dumped = read_requests(&requests).unwrap();
    let (permuted, paper): (Vec<_>, Vec<_>) = dumped.iter().partition(|r| r.id.contains("|s"));
    assert_eq!(
        paper.len(),
        2 * 8 * 2 * 4 + 2 * 2 * 2,
        "the paper's requests"
    );
    assert!(!permuted.is_empty(), "PriDe's sample");
    for request in &permuted {
        let shift_free = request
            .id
            .replace("|s1|", "|")
            .replace("|s2|", "|")
            .replace("|s3|", "|");
        assert!(
            paper.iter().any(|p| p.id == shift_free),
            "{} permutes a question the run asks",
            request.id
        );
    }
}
