//! `valuelens score` end to end: JSONL in, JSONL out in input order, stdout clean.

mod common;

#[test]
fn scores_a_request_file_in_input_order() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.jsonl");
    let output = dir.path().join("out.jsonl");
    std::fs::write(
        &input,
        concat!(
            "{\"id\": \"long\", \"context\": \"Paris is the capital of\", \"continuation\": \" France\"}\n",
            "{\"id\": \"space\", \"context\": \"Paris is the capital of \", \"continuation\": \"France\"}\n",
            "{\"id\": \"unlikely\", \"context\": \"Paris is the capital of\", \"continuation\": \" bananas and more\"}\n",
        ),
    )
    .unwrap();
    let run = common::run_score(&input, &output);
    assert!(run.stdout.is_empty(), "stdout stays clean");
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&output)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let ids: Vec<&str> = lines.iter().map(|l| l["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["long", "space", "unlikely"]);
    for l in &lines {
        let per_token: Vec<f64> = l["token_logprobs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect();
        assert_eq!(per_token.len(), l["n_tokens"].as_u64().unwrap() as usize);
        let sum: f64 = per_token.iter().sum();
        assert!((sum - l["logprob"].as_f64().unwrap()).abs() < 1e-9);
        assert!(per_token.iter().all(|&x| x <= 0.0));
        assert!(l["greedy"].is_boolean());
    }
    // The trailing space moves into the continuation, so both spellings score the same.
    assert!(
        (lines[0]["logprob"].as_f64().unwrap() - lines[1]["logprob"].as_f64().unwrap()).abs()
            < 1e-6
    );
    assert!(lines[0]["logprob"].as_f64().unwrap() > lines[2]["logprob"].as_f64().unwrap());
}

/// Files written by common Windows tools start with a UTF-8 byte-order mark; it is skipped.
#[test]
fn a_byte_order_mark_before_the_first_request_is_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let lines = concat!(
        "{\"id\": \"a\", \"context\": \"The sky is\", \"continuation\": \" blue\"}\n",
        "{\"id\": \"b\", \"context\": \"The grass is\", \"continuation\": \" green\"}\n",
    );
    let plain = dir.path().join("plain.jsonl");
    let marked = dir.path().join("marked.jsonl");
    std::fs::write(&plain, lines).unwrap();
    std::fs::write(&marked, format!("\u{feff}{lines}")).unwrap();
    let (plain_out, marked_out) = (dir.path().join("p.out"), dir.path().join("m.out"));
    common::run_score(&plain, &plain_out);
    common::run_score(&marked, &marked_out);
    let read = |p: &std::path::Path| std::fs::read_to_string(p).unwrap();
    assert_eq!(read(&marked_out), read(&plain_out));
    assert_eq!(read(&marked_out).lines().count(), 2);
}
