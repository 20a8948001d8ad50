//! `valuelens explain` (the paper's Table 14): numpy's draw reimplemented and checked against
//! numpy and pandas, the target frame and prompts against the paper's own code run with pandas
//! (fixtures made by scripts/make_explain_fixtures.py), the test rows against the paper's
//! released observer outputs, their F1s reproduced, and the command end to end.

mod common;

use std::path::{Path, PathBuf};

use serde_json::Value;
use sha2::{Digest, Sha256};

use valuelens::explain::prompts::{query, Setting, SYSTEM};
use valuelens::explain::sample::{sample_positions, Mt19937};
use valuelens::explain::target::{load_frame, TargetSource};
use valuelens::explain::{draw_split, observed_frame, Draw};
use valuelens::metrics::classification::Confusion;
use valuelens::tasks::action::ActionItem;
use valuelens::tasks::released::read_observer_outputs;
use valuelens::via::setup::{released_files_dir, via_csv};
use valuelens::via::vocabulary::{COUNTRIES, TOPICS, VALUES};
use valuelens::via::{Dataset, Polarity};

fn fixture(name: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/explain")
        .join(name);
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

fn dataset() -> Dataset {
    Dataset::load(&via_csv(None).unwrap()).unwrap()
}

fn explanations_file(name: &str) -> PathBuf {
    released_files_dir()
        .join("outputs/evaluation/explanations")
        .join(name)
}

#[test]
fn samples_equal_numpy_and_pandas() {
    let fx = fixture("numpy_sample.json");
    let mut cases = 0;
    for case in fx["samples"].as_array().unwrap() {
        let (seed, len, n) = (
            case["seed"].as_u64().unwrap() as u32,
            case["len"].as_u64().unwrap() as usize,
            case["n"].as_u64().unwrap() as usize,
        );
        let expected: Vec<usize> = case["positions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p.as_u64().unwrap() as usize)
            .collect();
        assert_eq!(
            sample_positions(len, n, seed).unwrap(),
            expected,
            "DataFrame.sample(n={n}, random_state={seed}) of {len} rows"
        );
        cases += 1;
    }
    for (seed, words) in fx["uint32_words"].as_object().unwrap() {
        let mut mt = Mt19937::new(seed.parse().unwrap());
        for word in words.as_array().unwrap() {
            assert_eq!(
                u64::from(mt.next_u32()),
                word.as_u64().unwrap(),
                "seed {seed}"
            );
        }
    }
    println!("{cases} draws equal pandas {}'s", fx["pandas"]);
}

fn key(row: &valuelens::explain::frame::TargetRow) -> Value {
    serde_json::json!([
        COUNTRIES[row.country],
        TOPICS[row.topic],
        VALUES[row.value],
        row.polarity.as_str(),
        row.model_choice
    ])
}

/// The GPT-3.5 target rebuilt from the released files, parsed, drawn and rendered, equals what
/// the paper's `load_full_data` and `sample_train_test_set` give with pandas on the same frame.
#[test]
fn the_gpt35_draw_and_prompts_equal_the_papers_code() {
    let fx = fixture("gpt-3.5-turbo.json");
    let dataset = dataset();
    let target = TargetSource::parse("paper:gpt-3.5-turbo", None, &released_files_dir()).unwrap();
    let (rows, frame, _) = observed_frame(&target, &dataset).unwrap();
    // The paper's Task-2 files hold the 7,329 usable pairs' rows.
    assert_eq!(frame.len(), 14_658);
    assert_eq!(rows.len() as u64, fx["frame_rows"].as_u64().unwrap());
    let split = draw_split(&rows, &Draw::default()).unwrap();
    let keys = |positions: &[usize]| -> Vec<Value> {
        positions.iter().map(|&i| key(&rows[i].target)).collect()
    };
    assert_eq!(Value::Array(keys(&split.examples)), fx["train"]);
    assert_eq!(Value::Array(keys(&split.tests)), fx["test"]);
    assert_eq!(SYSTEM, fx["system"].as_str().unwrap());
    let queries: Vec<Value> = split
        .tests
        .iter()
        .map(|&i| Value::from(query(&rows[i])))
        .collect();
    assert_eq!(Value::Array(queries), fx["queries"]);
    for setting in Setting::ALL {
        let examples: Vec<Value> = split
            .examples
            .iter()
            .map(|&i| serde_json::json!([query(&rows[i]), setting.completion(&rows[i])]))
            .collect();
        assert_eq!(
            Value::Array(examples),
            fx["examples"][setting.paper_mode()],
            "{setting}"
        );
    }
    // Every parsed row's texts (Python's list repr of the attributions included).
    let mut digest = Sha256::new();
    for row in &rows {
        digest.update(format!("{}\n{}\n", query(row), Setting::All.completion(row)).as_bytes());
    }
    assert_eq!(
        valuelens::verified::hex(&digest.finalize()),
        fx["parsed_rows_digest"].as_str().unwrap()
    );
}

/// The paper's observer, asked for attributions, quoted phrases of each test action: ours
/// contain them, so the 200 test rows drawn here are the paper's, in the paper's order.
#[test]
fn the_test_rows_are_the_papers() {
    let dataset = dataset();
    let target = TargetSource::parse("paper:gpt-3.5-turbo", None, &released_files_dir()).unwrap();
    let (rows, _, _) = observed_frame(&target, &dataset).unwrap();
    let split = draw_split(&rows, &Draw::default()).unwrap();
    let path = explanations_file("chatgpt_explanation_outputs_attribution.csv");
    let mut reader = csv::Reader::from_path(&path).unwrap();
    let (mut checked, mut found) = (0, 0);
    for (i, record) in reader.records().enumerate() {
        let record = record.unwrap();
        let (label, result) = (&record[1], &record[2]);
        let test = &rows[split.tests[i]];
        assert_eq!(label == "True", test.target.model_choice, "test row {i}");
        let Some((_, list)) = result.split_once("Action Attribution: [") else {
            continue;
        };
        let list = list.split(']').next().unwrap();
        let phrases: Vec<&str> = list
            .split(['\'', '"'])
            .map(str::trim)
            .filter(|p| p.len() > 3 && *p != ",")
            .collect();
        if phrases.is_empty() {
            continue;
        }
        checked += 1;
        let action = test.action.to_lowercase();
        let quoted = phrases
            .iter()
            .filter(|p| action.contains(&p.to_lowercase()))
            .count();
        if 2 * quoted >= phrases.len() {
            found += 1;
        } else {
            println!("test row {i}: {phrases:?} vs {}", test.action);
        }
    }
    println!("{found} of {checked} answers quote their test action");
    assert_eq!((checked, found), (200, 200));
}

/// compute.ipynb's printed measures, from the released observer outputs.
#[test]
fn the_papers_observer_outputs_give_its_f1s() {
    let expected = [
        ("chatgpt", "default", 0.7951807228915663, 0.745),
        ("chatgpt", "attribution", 0.823045267489712, 0.785),
        ("chatgpt", "explanation", 0.8298755186721992, 0.795),
        (
            "chatgpt",
            "attribution_explanation",
            0.8298755186721992,
            0.795,
        ),
        ("llama3", "default", 0.7782101167315175, 0.715),
        ("llama3", "attribution", 0.796812749003984, 0.745),
        ("llama3", "explanation", 0.823045267489712, 0.785),
        ("llama3", "attribution_explanation", 0.819672131147541, 0.78),
    ];
    for (target, mode, f1, accuracy) in expected {
        let items = read_observer_outputs(&explanations_file(&format!(
            "{target}_explanation_outputs_{mode}.csv"
        )))
        .unwrap();
        assert_eq!(items.len(), 200);
        let m = Confusion::of(items).measures();
        assert_eq!((m.f1, m.accuracy), (f1, accuracy), "{target} {mode}");
    }
}

/// A run's action.csv as the target: the rows of the cells it covers, labelled by its choices.
#[test]
fn a_runs_action_csv_is_a_target() {
    let dataset = dataset();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("action.csv");
    // Egypt × every topic × the first 8 values; the negative action wins on even values.
    let egypt = valuelens::via::country_index("Egypt").unwrap();
    let mut items = Vec::new();
    for topic in 0..TOPICS.len() {
        for value in 0..8 {
            items.push(ActionItem {
                scenario: valuelens::via::scenario_index(egypt, topic),
                value,
                variant: 5,
                negative_option: 1,
                logprobs: if value % 2 == 0 {
                    [-0.1, -2.0]
                } else {
                    [-2.0, -0.1]
                },
            });
        }
    }
    valuelens::report::results::write_action(&path, &items, None).unwrap();
    let target = TargetSource::parse(path.to_str().unwrap(), None, &released_files_dir()).unwrap();
    let (frame, how) = load_frame(&target, &dataset).unwrap();
    assert!(how.contains("88 cells"), "{how}");
    let usable = dataset
        .usable_pairs()
        .filter(|p| p.country == egypt && p.value < 8)
        .count();
    assert_eq!(frame.len(), 2 * usable);
    assert!(frame
        .windows(2)
        .all(|w| w[0].target.via_index < w[1].target.via_index));
    for row in &frame {
        let t = &row.target;
        assert_eq!(t.country, egypt);
        let negative_chosen = t.value % 2 == 0;
        assert_eq!(
            t.model_choice,
            negative_chosen == (t.polarity == Polarity::Negative)
        );
    }
}

fn explain(args: &[&str]) -> std::process::Output {
    common::valuelens_command()
        .arg("explain")
        .args(args)
        .output()
        .expect("the binary runs")
}

fn requests(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The default experiment end to end: GPT-3.5 target, default observer, the four settings.
#[test]
fn explain_runs_the_papers_experiment() {
    let model = common::default_model_path();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("explain");
    let run = explain(&[
        "--observer",
        model.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{stderr}");
    let stdout = String::from_utf8_lossy(&run.stdout);
    println!("{stdout}");
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("explain.json")).unwrap()).unwrap();
    assert_eq!(report["frame"]["rows"], 14_658);
    assert_eq!(report["examples"].as_array().unwrap().len(), 20);
    let settings = report["settings"].as_array().unwrap();
    assert_eq!(settings.len(), 4);
    // The measures follow from predictions.csv.
    let mut reader = csv::Reader::from_path(out.join("predictions.csv")).unwrap();
    let records: Vec<csv::StringRecord> = reader.records().map(|r| r.unwrap()).collect();
    assert_eq!(records.len(), 800);
    for s in settings {
        let name = s["setting"].as_str().unwrap();
        let items: Vec<(bool, bool)> = records
            .iter()
            .filter(|r| &r[0] == name)
            .map(|r| {
                let (t, f): (f64, f64) = (r[8].parse().unwrap(), r[9].parse().unwrap());
                assert_eq!(&r[10] == "true", t >= f);
                (&r[7] == "true", &r[10] == "true")
            })
            .collect();
        assert_eq!(items.len(), 200);
        assert_eq!(items.iter().filter(|i| i.0).count(), 100);
        let m = Confusion::of(items).measures();
        assert_eq!(s["measures"]["f1"].as_f64().unwrap(), m.f1, "{name}");
        let ci = &s["ci95"]["f1"];
        assert!(
            ci[0].as_f64().unwrap() <= m.f1 && m.f1 <= ci[1].as_f64().unwrap(),
            "{name}"
        );
    }
    // The baselines, from the test rows' labels and polarities.
    let act: Vec<&csv::StringRecord> = records.iter().filter(|r| &r[0] == "act").collect();
    let polarity = Confusion::of(act.iter().map(|r| (&r[7] == "true", &r[6] == "positive")));
    let baselines = report["baselines"].as_array().unwrap();
    assert_eq!(
        baselines[0]["measures"]["f1"].as_f64().unwrap(),
        200.0 / 300.0
    );
    assert_eq!(
        baselines[1]["measures"]["f1"].as_f64().unwrap(),
        polarity.measures().f1
    );
    // The twenty examples are computed once per setting, not once per test row.
    let (requested, computed) = (
        report["engine"]["request_tokens"].as_u64().unwrap(),
        report["engine"]["computed_tokens"].as_u64().unwrap(),
    );
    assert!(computed * 20 < requested, "{computed} of {requested}");
    let released: Vec<f64> = report["paper_released_outputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["f1"].as_f64().unwrap())
        .collect();
    assert_eq!(
        released,
        [
            0.7951807228915663,
            0.823045267489712,
            0.8298755186721992,
            0.8298755186721992
        ]
    );
    let summary = std::fs::read_to_string(out.join("summary.md")).unwrap();
    for title in ["| Act |", "| Act+Attr |", "| Act+Exp |", "| Act+Attr+Exp |"] {
        assert!(summary.contains(title), "{summary}");
    }
    // frame.csv is the target in the paper's Task-2 format: given back as the target, it asks
    // the same questions.
    let (from_paper, from_frame) = (dir.path().join("a.jsonl"), dir.path().join("b.jsonl"));
    for (target, dump) in [
        ("paper:gpt-3.5-turbo", &from_paper),
        (out.join("frame.csv").to_str().unwrap(), &from_frame),
    ] {
        let run = explain(&[
            "--observer",
            model.to_str().unwrap(),
            "--target",
            target,
            "--settings",
            "all",
            "--dump-requests",
            dump.to_str().unwrap(),
        ]);
        assert!(
            run.status.success(),
            "{}",
            String::from_utf8_lossy(&run.stderr)
        );
    }
    let (a, b) = (requests(&from_paper), requests(&from_frame));
    assert_eq!(a.len(), 400);
    assert_eq!(a, b);
}

fn fails(args: &[&str], expected: &str) {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let mut all = args.to_vec();
    all.extend(["--out", out.to_str().unwrap()]);
    let run = explain(&all);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(1), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(
        stderr.contains(expected),
        "expected {expected:?} in: {stderr}"
    );
    assert!(!out.exists(), "{}", out.display());
}

#[test]
fn bad_input_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("misaligned.csv");
    std::fs::write(&list, "country,topic,value\nEgypt,Politics,Wealth\n").unwrap();
    let list = list.to_str().unwrap();
    let odd = dir.path().join("odd.csv");
    std::fs::write(&odd, "a,b\n1,2\n").unwrap();
    let choices = dir.path().join("t2.csv");
    std::fs::write(
        &choices,
        "country,topic,value,polarity,model_choice\nEgypt,Politics,Wealth,positive,maybe\n",
    )
    .unwrap();
    let stated = dir.path().join("stated.csv");
    std::fs::write(&stated, "country,topic,value,variant,logprob_1\n").unwrap();
    fails(
        &["--target", stated.to_str().unwrap()],
        "give the same run's action.csv",
    );
    fails(&["--settings", "act,both"], "unknown setting 'both'");
    fails(&["--target", "paper:gpt-5"], "unknown target paper:gpt-5");
    fails(&["--target", "/nonexistent.csv"], "does not exist");
    fails(&["--target", list], "--target-stated");
    fails(&["--target", odd.to_str().unwrap()], "not a target file");
    fails(
        &["--target", choices.to_str().unwrap()],
        "line 2: model_choice 'maybe'",
    );
    fails(
        &["--tests-per-class", "5000"],
        "fewer than the 5000 to draw",
    );
}
