//! `valuelens metrics` end to end on the paper's files, and its bad-input contract: a clear
//! message naming the file, exit 1, no panic, no result files.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use valuelens::via;

fn evaluation_file(name: &str) -> PathBuf {
    via::setup::released_files_dir()
        .join("outputs/evaluation")
        .join(name)
}

fn metrics(args: &[&str], out: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_valuelens"))
        .arg("metrics")
        .args(args)
        .arg("--out")
        .arg(out)
        .output()
        .expect("the binary runs")
}

fn fails(args: &[&str], expected: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("results");
    let run = metrics(args, &out);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(1), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    for e in expected {
        assert!(stderr.contains(e), "expected {e:?} in: {stderr}");
    }
    assert!(!out.join("metrics.json").exists());
    assert!(!out.join("summary.md").exists());
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

#[test]
fn reproduces_gpt35_into_metrics_json_and_summary_md() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("gpt35");
    let stated = evaluation_file("gpt-3.5-turbo_t1.csv");
    let misaligned = evaluation_file("chatgpt_misaligned_example.csv");
    let run = metrics(
        &[
            "--stated",
            stated.to_str().unwrap(),
            "--action-misaligned",
            misaligned.to_str().unwrap(),
        ],
        &out,
    );
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("metrics.json")).unwrap()).unwrap();
    let rate = &json["alignment_rate"];
    assert!((rate["overall"].as_f64().unwrap() - 0.178859).abs() < 1e-6);
    assert!((rate["by_country"]["United States"].as_f64().unwrap() - 0.17458).abs() < 1e-4);
    assert!(
        (rate["by_topic"]["Family & Changing Gender Roles"]
            .as_f64()
            .unwrap()
            - 0.162)
            .abs()
            < 5e-4
    );
    assert_eq!(json["misaligned"]["total"], 1421);
    assert_eq!(json["misaligned"]["stated_agree_action_disagree"], 1385);
    assert_eq!(json["misaligned"]["stated_disagree_action_agree"], 36);
    assert!((json["distance"]["overall"].as_f64().unwrap() - 0.2091).abs() < 2e-4);
    assert!(
        (json["distance"]["by_topic"]["Social Inequality"]
            .as_f64()
            .unwrap()
            - 0.2879)
            .abs()
            < 2e-4
    );
    let philippines = json["ranking"]["by_country"]["Philippines"]
        .as_array()
        .unwrap();
    assert_eq!(philippines.len(), 56);
    assert_eq!(philippines[1][0], "Independent");
    let summary = std::fs::read_to_string(out.join("summary.md")).unwrap();
    assert!(summary.contains("paper F1"), "{summary}");
    assert!(
        summary.contains("| Politics | 0.1146 | 0.115 |"),
        "{summary}"
    );
}

#[test]
fn missing_stated_file() {
    fails(
        &["--stated", "/no/such/t1.csv", "--action", "/no/such/t2.csv"],
        &["/no/such/t1.csv"],
    );
}

/// Each missing file is named by its own flag, never reported as a problem of the other one.
#[test]
fn missing_action_file_is_named_by_its_flag() {
    let stated = evaluation_file("gpt-3.5-turbo_t1.csv");
    fails(
        &[
            "--stated",
            stated.to_str().unwrap(),
            "--action",
            "/no/such/t2.csv",
        ],
        &["--action /no/such/t2.csv: no such file"],
    );
    let dir = tempfile::tempdir().unwrap();
    let run_stated = dir.path().join("stated.csv");
    std::fs::write(
        &run_stated,
        "country,topic,value,variant,logprob_1,logprob_2,logprob_3,logprob_4\n",
    )
    .unwrap();
    fails(
        &[
            "--stated",
            run_stated.to_str().unwrap(),
            "--action",
            "/no/such/action.csv",
        ],
        &["--action /no/such/action.csv: no such file"],
    );
}

#[test]
fn missing_data_file() {
    let stated = evaluation_file("gpt-3.5-turbo_t1.csv");
    let misaligned = evaluation_file("chatgpt_misaligned_example.csv");
    fails(
        &[
            "--data",
            "/no/such/via.csv",
            "--stated",
            stated.to_str().unwrap(),
            "--action-misaligned",
            misaligned.to_str().unwrap(),
        ],
        &["/no/such/via.csv", "does not exist"],
    );
}

#[test]
fn data_file_with_wrong_columns() {
    let dir = tempfile::tempdir().unwrap();
    let data = write(
        dir.path(),
        "via.csv",
        "country,topic,val,polarity\nUnited States,Politics,Wealth,positive\n",
    );
    let stated = evaluation_file("gpt-3.5-turbo_t1.csv");
    fails(
        &[
            "--data",
            &data,
            "--stated",
            stated.to_str().unwrap(),
            "--action",
            &data,
        ],
        &["via.csv", "missing column(s) value, generation_prompt"],
    );
}

#[test]
fn stated_file_with_missing_columns() {
    let dir = tempfile::tempdir().unwrap();
    let t1 = write(
        dir.path(),
        "t1.csv",
        "country,topic,answer\nUnited States,Politics,x\n",
    );
    fails(
        &["--stated", &t1, "--action", &t1],
        &["t1.csv", "missing column(s) response, prompt_index"],
    );
}

#[test]
fn unknown_country_topic_and_value() {
    let dir = tempfile::tempdir().unwrap();
    let t1 = write(
        dir.path(),
        "t1.csv",
        "country,topic,response,prompt_index\nAtlantis,Politics,\"{}\",0\n",
    );
    fails(
        &["--stated", &t1, "--action", &t1],
        &["t1.csv line 2", "country 'Atlantis'"],
    );
    let t1 = write(
        dir.path(),
        "t1b.csv",
        "country,topic,response,prompt_index\nIndia,Cooking,\"{}\",0\n",
    );
    fails(
        &["--stated", &t1, "--action", &t1],
        &["t1b.csv line 2", "topic 'Cooking'"],
    );
    let stated = evaluation_file("gpt-3.5-turbo_t1.csv");
    let t2 = write(
        dir.path(),
        "t2.csv",
        "country,topic,value,polarity,model_choice\nIndia,Politics,Bravery,negative,True\n",
    );
    fails(
        &["--stated", stated.to_str().unwrap(), "--action", &t2],
        &["t2.csv line 2", "value 'Bravery'"],
    );
}

#[test]
fn empty_files() {
    let dir = tempfile::tempdir().unwrap();
    let empty = write(dir.path(), "empty.csv", "");
    fails(
        &["--stated", &empty, "--action", &empty],
        &["empty.csv", "empty"],
    );
    let header_only = write(
        dir.path(),
        "header.csv",
        "country,topic,response,prompt_index\n",
    );
    fails(
        &["--stated", &header_only, "--action", &empty],
        &["header.csv", "no responses"],
    );
    let stated = evaluation_file("gpt-3.5-turbo_t1.csv");
    let empty_log = write(dir.path(), "t2.jsonl", "\n");
    fails(
        &["--stated", stated.to_str().unwrap(), "--action", &empty_log],
        &["t2.jsonl", "no results"],
    );
}

#[test]
fn task2_log_index_out_of_range() {
    let dir = tempfile::tempdir().unwrap();
    let stated = evaluation_file("gpt-3.5-turbo_t1.csv");
    let log = write(
        dir.path(),
        "t2.jsonl",
        "{\"index\": 0, \"model_choice\": true, \"prompt_index\": \"5\"}\n{\"index\": 14784, \"model_choice\": false, \"prompt_index\": \"5\"}\n",
    );
    fails(
        &["--stated", stated.to_str().unwrap(), "--action", &log],
        &["t2.jsonl line 2", "index 14784 is out of range"],
    );
}

/// A copy of `source` in `dir` with a UTF-8 byte-order mark before its first byte.
fn with_byte_order_mark(source: &Path, dir: &Path) -> PathBuf {
    let path = dir.join(source.file_name().unwrap());
    let mut bytes = "\u{feff}".as_bytes().to_vec();
    bytes.extend(std::fs::read(source).unwrap());
    std::fs::write(&path, bytes).unwrap();
    path
}

/// CSV and JSONL files saved by common Windows tools start with a byte-order mark: the VIA CSV,
/// the Task-1 responses, the misaligned cells and a Task-2 log all read as without it.
#[test]
fn files_with_a_byte_order_mark_read_as_without() {
    let dir = tempfile::tempdir().unwrap();
    let marked = dir.path().join("marked");
    std::fs::create_dir(&marked).unwrap();
    let data = via::setup::via_csv(None).unwrap();
    let stated = evaluation_file("gpt-3.5-turbo_t1.csv");
    let misaligned = evaluation_file("chatgpt_misaligned_example.csv");
    let log_text = "{\"index\": 0, \"model_choice\": true, \"prompt_index\": \"5\"}\n{\"index\": 1, \"model_choice\": false, \"prompt_index\": \"5\"}\n";
    let log = Path::new(&write(dir.path(), "t2.jsonl", log_text)).to_path_buf();
    let metrics_json = |args: &[&Path], flag: &str, out: &str| -> String {
        let out = dir.path().join(out);
        let run = metrics(
            &[
                "--data",
                args[0].to_str().unwrap(),
                "--stated",
                args[1].to_str().unwrap(),
                flag,
                args[2].to_str().unwrap(),
            ],
            &out,
        );
        assert!(
            run.status.success(),
            "{}",
            String::from_utf8_lossy(&run.stderr)
        );
        std::fs::read_to_string(out.join("metrics.json")).unwrap()
    };
    let marked_files: Vec<PathBuf> = [&data, &stated, &misaligned, &log]
        .iter()
        .map(|p| with_byte_order_mark(p, &marked))
        .collect();
    assert_eq!(
        metrics_json(
            &[&marked_files[0], &marked_files[1], &marked_files[2]],
            "--action-misaligned",
            "m1"
        ),
        metrics_json(&[&data, &stated, &misaligned], "--action-misaligned", "p1")
    );
    assert_eq!(
        metrics_json(
            &[&marked_files[0], &marked_files[1], &marked_files[3]],
            "--action",
            "m2"
        ),
        metrics_json(&[&data, &stated, &log], "--action", "p2")
    );
}

#[test]
fn task2_log_line_that_is_a_json_array() {
    let dir = tempfile::tempdir().unwrap();
    let stated = evaluation_file("gpt-3.5-turbo_t1.csv");
    let log = write(dir.path(), "t2.jsonl", "[0, true, \"5\"]\n");
    fails(
        &["--stated", stated.to_str().unwrap(), "--action", &log],
        &["t2.jsonl line 1", "not a JSON object"],
    );
}
