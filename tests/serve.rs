//! `valuelens serve` over real HTTP on loopback, on the real default model: lm-eval's
//! `local-completions` requests (token ids and strings, batched, concurrent) answered with the
//! log-probabilities `valuelens score` gives; the tokenizer endpoints; every bad request with
//! its status while the server keeps serving; a bounded load test with slow and vanishing
//! clients; SIGTERM answering the request in flight.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// A `valuelens serve` process on a free loopback port, killed when dropped.
struct Server {
    child: Child,
    base: String,
    /// The model name the server answers to.
    name: String,
    /// The line the server says where it listens with (it names the precision).
    banner: String,
    stderr: std::sync::Mutex<mpsc::Receiver<String>>,
}

impl Server {
    fn start(extra: &[&str]) -> Server {
        let mut child = common::valuelens_command()
            .args(["serve", "--port", "0", "--model"])
            .arg(common::default_model_path())
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the binary runs");
        let (lines, stderr) = mpsc::channel();
        let pipe = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                let _ = lines.send(line);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let Ok(line) = stderr.recv_timeout(left) else {
                let _ = child.kill();
                let _ = child.wait();
                panic!("the server did not say where it listens");
            };
            if let Some(rest) = line.split("at http://").nth(1) {
                let address = rest.split('/').next().unwrap();
                assert!(address.starts_with("127.0.0.1:"), "{line}");
                let mut server = Server {
                    child,
                    base: format!("http://{address}"),
                    name: String::new(),
                    banner: line.clone(),
                    stderr: std::sync::Mutex::new(stderr),
                };
                let key = extra
                    .iter()
                    .position(|&a| a == "--api-key")
                    .map(|i| extra[i + 1]);
                let (_, models) = server.get("/v1/models", key);
                server.name = models["data"][0]["id"].as_str().unwrap().to_string();
                return server;
            }
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn address(&self) -> String {
        self.base.trim_start_matches("http://").to_string()
    }

    fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        self.post_keyed(path, body, None)
    }

    fn post_keyed(&self, path: &str, body: &Value, key: Option<&str>) -> (u16, Value) {
        let mut request = agent().post(&self.url(path));
        if let Some(key) = key {
            request = request.set("Authorization", &format!("Bearer {key}"));
        }
        answer(request.send_json(body.clone()))
    }

    fn get(&self, path: &str, key: Option<&str>) -> (u16, Value) {
        let mut request = agent().get(&self.url(path));
        if let Some(key) = key {
            request = request.set("Authorization", &format!("Bearer {key}"));
        }
        answer(request.call())
    }

    fn counters(&self) -> Value {
        self.get("/health", None).1["counters"].clone()
    }

    /// Resident and peak memory of the server process, in bytes.
    fn memory(&self) -> (u64, u64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let field = |name: &str| -> u64 {
            let line = status.lines().find(|l| l.starts_with(name)).unwrap();
            let kb: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
            kb * 1024
        };
        (field("VmRSS:"), field("VmHWM:"))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn agent() -> ureq::Agent {
    ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(300))
        .build()
}

fn answer(result: Result<ureq::Response, ureq::Error>) -> (u16, Value) {
    let response = match result {
        Ok(response) => response,
        Err(ureq::Error::Status(_, response)) => response,
        Err(e) => panic!("the request reaches the server: {e}"),
    };
    let status = response.status();
    let text = response.into_string().unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// lm-eval's loglikelihood payload for token-id prompts.
fn lm_eval_payload(name: &str, prompts: &[Vec<u32>]) -> Value {
    json!({
        "model": name, "prompt": prompts, "temperature": 0, "max_tokens": 1,
        "logprobs": 1, "seed": 1234, "echo": true
    })
}

/// lm-eval's `parse_logprobs`: the continuation's summed log-probability and whether every
/// continuation token equals the greatest of its `top_logprobs`.
fn lm_eval_parse(choice: &Value, ctxlen: usize) -> (Vec<f64>, bool) {
    let logprobs = &choice["logprobs"];
    let token_logprobs = logprobs["token_logprobs"].as_array().unwrap();
    let top = logprobs["top_logprobs"].as_array().unwrap();
    let n = token_logprobs.len();
    let continuation: Vec<f64> = token_logprobs[ctxlen..n - 1]
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    let greedy = continuation
        .iter()
        .zip(&top[ctxlen..n - 1])
        .all(|(lp, top)| {
            let max = top
                .as_object()
                .unwrap()
                .values()
                .map(|v| v.as_f64().unwrap())
                .fold(f64::NEG_INFINITY, f64::max);
            *lp == max
        });
    (continuation, greedy)
}

/// Checks one echoed choice's fields for a prompt of `tokens` with one predicted token.
fn check_choice_fields(choice: &Value, index: usize, tokens: &[u32]) {
    assert_eq!(choice["index"], json!(index));
    assert_eq!(choice["finish_reason"], json!("length"));
    let logprobs = &choice["logprobs"];
    let token_logprobs = logprobs["token_logprobs"].as_array().unwrap();
    assert_eq!(token_logprobs.len(), tokens.len() + 1);
    assert!(token_logprobs[0].is_null());
    assert!(logprobs["top_logprobs"][0].is_null());
    assert_eq!(
        logprobs["tokens"].as_array().unwrap().len(),
        tokens.len() + 1
    );
    assert_eq!(
        logprobs["text_offset"].as_array().unwrap().len(),
        tokens.len() + 1
    );
    for (lp, top) in token_logprobs[1..]
        .iter()
        .zip(&logprobs["top_logprobs"].as_array().unwrap()[1..])
    {
        let lp = lp.as_f64().unwrap();
        assert!(lp <= 0.0 && lp.is_finite());
        let top = top.as_object().unwrap();
        assert!(!top.is_empty() && top.len() <= 2);
        assert!(top
            .values()
            .all(|v| v.as_f64().unwrap() >= lp - 1e-12 || top.len() == 2));
    }
    assert!(!choice["text"].as_str().unwrap().is_empty());
}

/// The fixture references' token ids as lm-eval would send them: (prompt, ctxlen).
fn fixture_prompts() -> Vec<(Vec<u32>, usize)> {
    let (_, references) = common::fixtures("smollm2-135m");
    references
        .iter()
        .map(|r| {
            let mut prompt = r.context_tokens.clone();
            prompt.extend(&r.continuation_tokens);
            (prompt, r.context_tokens.len())
        })
        .collect()
}

/// `valuelens score` on the fixture requests: per request, its token log-probabilities and
/// greedy flag.
fn score_fixtures() -> Vec<(Vec<f64>, bool)> {
    let dir = tempfile::tempdir().unwrap();
    let input = common::shared_dir().join("fixtures/smollm2-135m/requests.jsonl");
    let output = dir.path().join("scores.jsonl");
    common::run_score(&input, &output);
    std::fs::read_to_string(&output)
        .unwrap()
        .lines()
        .map(|line| {
            let score: Value = serde_json::from_str(line).unwrap();
            let lps = score["token_logprobs"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap())
                .collect();
            (lps, score["greedy"].as_bool().unwrap())
        })
        .collect()
}

fn max_difference(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max)
}

#[test]
fn lm_eval_requests_get_the_scores_of_valuelens_score() {
    let expected = score_fixtures();
    let prompts = fixture_prompts();
    let server = Server::start(&[]);

    // Batches as lm-eval's batch_size makes them, of several sizes, two of them sent at once
    // from two clients (so that they may share the worker's batch).
    let sizes = [1usize, 7, 32, 60, 64];
    let mut batches = Vec::new();
    let mut start = 0;
    for size in sizes.iter().cycle() {
        if start >= prompts.len() {
            break;
        }
        let end = (start + size).min(prompts.len());
        batches.push(start..end);
        start = end;
    }
    let answers: Vec<(std::ops::Range<usize>, Value)> = std::thread::scope(|scope| {
        let handles: Vec<_> = batches
            .chunks(2)
            .map(|pair| {
                let pair = pair.to_vec();
                let (server, prompts) = (&server, &prompts);
                scope.spawn(move || {
                    pair.into_iter()
                        .map(|range| {
                            let tokens: Vec<Vec<u32>> =
                                prompts[range.clone()].iter().map(|p| p.0.clone()).collect();
                            let (status, body) = server
                                .post("/v1/completions", &lm_eval_payload(&server.name, &tokens));
                            assert_eq!(status, 200, "{body}");
                            (range, body)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    let mut worst: f64 = 0.0;
    for (range, body) in &answers {
        let choices = body["choices"].as_array().unwrap();
        assert_eq!(choices.len(), range.len());
        let prompt_tokens: usize = prompts[range.clone()].iter().map(|p| p.0.len()).sum();
        assert_eq!(body["usage"]["prompt_tokens"], json!(prompt_tokens));
        assert_eq!(body["usage"]["completion_tokens"], json!(range.len()));
        assert_eq!(body["object"], json!("text_completion"));
        for (index, (choice, i)) in choices.iter().zip(range.clone()).enumerate() {
            let (tokens, ctxlen) = &prompts[i];
            check_choice_fields(choice, index, tokens);
            let (logprobs, greedy) = lm_eval_parse(choice, *ctxlen);
            let (expected_logprobs, expected_greedy) = &expected[i];
            worst = worst.max(max_difference(&logprobs, expected_logprobs));
            assert_eq!(greedy, *expected_greedy, "request {i}: greedy flag");
        }
    }
    println!("largest difference from valuelens score: {worst:.2e}");
    assert!(worst <= 1e-5, "largest difference {worst:.2e} > 1e-5");

    // One prompt alone and the same prompt among all the others: the same scores.
    let alone = server
        .post(
            "/v1/completions",
            &lm_eval_payload(&server.name, &[prompts[5].0.clone()]),
        )
        .1;
    let all: Vec<Vec<u32>> = prompts.iter().map(|p| p.0.clone()).collect();
    let together = server
        .post("/v1/completions", &lm_eval_payload(&server.name, &all))
        .1;
    let (a, _) = lm_eval_parse(&alone["choices"][0], 1);
    let (b, _) = lm_eval_parse(&together["choices"][5], 1);
    let difference = max_difference(&a, &b);
    assert!(
        difference <= 1e-4,
        "batch changes the scores by {difference:.2e}"
    );
    assert_eq!(
        alone["choices"][0]["text"], together["choices"][5]["text"],
        "the predicted token does not depend on the batch"
    );

    // The shared contexts were computed once: far fewer tokens than were sent.
    let counters = server.counters();
    let sent = counters["prompt_tokens"].as_u64().unwrap();
    let computed = counters["computed_tokens"].as_u64().unwrap();
    println!("prompt tokens {sent}, computed {computed}");
    assert!(computed * 3 < sent, "{counters}");
}

/// lm-eval's payload sent again is answered from the prefix cache with nothing computed, in
/// exactly the JSON a server without a cache sends; a new continuation after a cached
/// context computes only itself and the context's last token.
#[test]
fn repeated_contexts_are_answered_from_the_prefix_cache_unchanged() {
    let prompts: Vec<(Vec<u32>, usize)> = fixture_prompts().into_iter().take(24).collect();
    let tokens: Vec<Vec<u32>> = prompts.iter().map(|p| p.0.clone()).collect();
    let (first, ctxlen) = prompts[0].clone();
    let mut forked = first[..ctxlen].to_vec();
    forked.extend(first[ctxlen..].iter().map(|t| (t + 5003) % 40000));
    forked.push(13);
    let cached = Server::start(&["--prefix-cache-mb", "64"]);
    let plain = Server::start(&["--prefix-cache-mb", "0"]);
    assert!(plain.counters()["prefix_cache"].is_null());
    let send = |server: &Server, tokens: &[Vec<u32>]| -> Value {
        let (status, body) = server.post("/v1/completions", &lm_eval_payload(&server.name, tokens));
        assert_eq!(status, 200, "{body}");
        body["choices"].clone()
    };
    let computed = |server: &Server| server.counters()["computed_tokens"].as_u64().unwrap();

    let expected = send(&plain, &tokens);
    assert_eq!(
        send(&cached, &tokens),
        expected,
        "a cold cache changes nothing"
    );
    let before = computed(&cached);
    assert_eq!(send(&cached, &tokens), expected, "answered from the cache");
    assert_eq!(computed(&cached), before, "a repeat computes nothing");

    let expected = send(&plain, std::slice::from_ref(&forked));
    let before = computed(&cached);
    assert_eq!(send(&cached, std::slice::from_ref(&forked)), expected);
    assert_eq!(
        computed(&cached) - before,
        (forked.len() - ctxlen + 1) as u64,
        "the new continuation and the context's last token"
    );
    let cache = &cached.counters()["prefix_cache"];
    assert!(cache["hit_rate"].as_f64().unwrap() > 0.5, "{cache}");
    assert!(cache["answered_positions"].as_u64().unwrap() > 0, "{cache}");
    assert!(cache["bytes"].as_u64().unwrap() <= 64 << 20, "{cache}");
}

#[test]
fn strings_tokenizer_endpoints_and_max_tokens_zero() {
    let (requests, references) = common::fixtures("smollm2-135m");
    let server = Server::start(&["--name", "smollm2-135m"]);
    assert_eq!(server.name, "smollm2-135m");

    // /tokenize with the default special tokens is the engine's context tokenization, and
    // /detokenize gives the text back.
    for (request, reference) in requests.iter().zip(&references).step_by(20) {
        // lm-eval moves the context's trailing whitespace to the continuation.
        let context = request.context.trim_end();
        let (status, body) = server.post("/tokenize", &json!({"prompt": context}));
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["tokens"], json!(reference.context_tokens));
        assert_eq!(body["count"], json!(reference.context_tokens.len()));
        let (_, back) = server.post("/detokenize", &json!({"tokens": body["tokens"]}));
        assert_eq!(back["prompt"], json!(context));
    }
    // lm-eval's remote tokenizer: eos_token from /tokenizer_info is one token of /tokenize.
    let (status, info) = server.get("/tokenizer_info", None);
    assert_eq!(status, 200);
    let eos = info["eos_token"].as_str().unwrap();
    assert!(info["chat_template"].as_str().unwrap().contains("im_start"));
    let (_, eos_tokens) = server.post(
        "/tokenize",
        &json!({"prompt": eos, "add_special_tokens": false}),
    );
    assert_eq!(
        eos_tokens["tokens"].as_array().unwrap().len(),
        1,
        "{eos_tokens}"
    );
    let (_, models) = server.get("/v1/models", None);
    assert_eq!(models["data"][0]["id"], json!("smollm2-135m"));

    // A string prompt is the same as its token ids.
    let text = requests[0].context.trim_end();
    let ids = &references[0].context_tokens;
    let by_text = server.post(
        "/v1/completions",
        &json!({"prompt": [text], "max_tokens": 1, "echo": true, "logprobs": 1}),
    );
    let by_ids = server.post(
        "/v1/completions",
        &lm_eval_payload(&server.name, std::slice::from_ref(ids)),
    );
    assert_eq!(by_text.0, 200, "{}", by_text.1);
    assert_eq!(
        by_text.1["choices"][0]["logprobs"],
        by_ids.1["choices"][0]["logprobs"]
    );
    assert!(by_text.1["choices"][0]["text"]
        .as_str()
        .unwrap()
        .starts_with(text));

    // max_tokens 0: the prompt's log-probabilities only; without echo, the predicted token only.
    let zero = server.post(
        "/v1/completions",
        &json!({"prompt": [ids], "max_tokens": 0, "echo": true, "logprobs": 1}),
    );
    let with_token = &by_ids.1["choices"][0]["logprobs"]["token_logprobs"];
    let without = &zero.1["choices"][0]["logprobs"]["token_logprobs"];
    assert_eq!(without.as_array().unwrap().len(), ids.len());
    assert_eq!(
        without.as_array().unwrap()[..],
        with_token.as_array().unwrap()[..ids.len()]
    );
    let next_only = server.post(
        "/v1/completions",
        &json!({"prompt": ids, "max_tokens": 1, "logprobs": 1}),
    );
    let choice = &next_only.1["choices"][0];
    assert_eq!(
        choice["logprobs"]["token_logprobs"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        choice["logprobs"]["token_logprobs"][0],
        with_token.as_array().unwrap()[ids.len()]
    );
}

#[test]
fn bad_requests_get_their_status_and_the_server_keeps_serving() {
    let server = Server::start(&[
        "--api-key",
        "sesame",
        "--max-prompts",
        "8",
        "--max-body-mb",
        "1",
    ]);
    let key = Some("sesame");
    let good = lm_eval_payload(&server.name, &[vec![1, 2, 3, 4]]);

    let (status, body) = server.post("/v1/completions", &good);
    assert_eq!(status, 401, "{body}");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("API key"));
    assert_eq!(
        server.post_keyed("/v1/completions", &good, Some("wrong")).0,
        401
    );
    assert_eq!(server.get("/tokenizer_info", None).0, 401);
    assert_eq!(server.get("/health", None).0, 200);

    let too_long: Vec<u32> = (0..8193).map(|i| 100 + i % 1000).collect();
    let cases: Vec<(Value, u16, &str)> = vec![
        (
            json!({"prompt": [[1, 2]], "max_tokens": 16, "echo": true}),
            400,
            "max_tokens is 16",
        ),
        (
            json!({"prompt": [[1, 2], too_long], "echo": true}),
            400,
            "prompt 1 is 8193 tokens",
        ),
        (
            json!({"prompt": [[1, 49152]], "echo": true}),
            400,
            "outside the model's vocabulary",
        ),
        (
            json!({"prompt": [[1, -2]], "echo": true}),
            400,
            "prompt[0][1] is -2",
        ),
        (
            json!({"prompt": [[]], "echo": true}),
            400,
            "prompt 0 is empty",
        ),
        (
            json!({"prompt": vec![vec![1]; 9], "echo": true}),
            400,
            "9 prompts in one request",
        ),
        (
            json!({"prompt": [[1, 2]], "temperature": 0.8}),
            400,
            "temperature is 0.8",
        ),
        (
            json!({"prompt": [[1, 2]], "logprobs": 5}),
            400,
            "logprobs is 5",
        ),
        (
            json!({"model": "gpt-4", "prompt": [[1, 2]]}),
            404,
            "not served here",
        ),
        (
            json!({"prompt": [[1, 2], "a b"], "echo": true}),
            400,
            "mixes strings and token-id lists",
        ),
    ];
    for (body, status, message) in cases {
        let (got, answer) = server.post_keyed("/v1/completions", &body, key);
        assert_eq!(got, status, "{answer}");
        let text = answer["error"]["message"].as_str().unwrap();
        assert!(text.contains(message), "{text}");
    }

    // Raw bodies: not JSON, and larger than --max-body-mb.
    let raw = |body: &[u8]| {
        answer(
            agent()
                .post(&server.url("/v1/completions"))
                .set("Authorization", "Bearer sesame")
                .set("Content-Type", "application/json")
                .send_bytes(body),
        )
    };
    let (status, body) = raw(b"{\"prompt\": [[1, 2]");
    assert_eq!(status, 400);
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("not valid JSON"));
    // Larger than --max-body-mb: 413, read from a raw socket, since the server may answer
    // and close before the client has written the whole body.
    let mut socket = TcpStream::connect(server.address()).unwrap();
    write!(
        socket,
        "POST /v1/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer sesame\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        2 << 20
    )
    .unwrap();
    let mut writer = socket.try_clone().unwrap();
    let filler = std::thread::spawn(move || {
        let _ = writer.write_all(&vec![b' '; 2 << 20]);
    });
    socket
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let mut head = String::new();
    BufReader::new(&socket).read_line(&mut head).unwrap();
    assert!(head.starts_with("HTTP/1.1 413"), "{head}");
    drop(socket);
    filler.join().unwrap();
    let (status, body) = server.get("/v2/anything", key);
    assert_eq!(status, 404);
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("/v1/completions"));
    // A wrong method on a path the server has: 405 in the same error shape, naming the method
    // to send.
    let (status, body) = server.get("/v1/completions", key);
    assert_eq!(status, 405, "{body}");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("send POST /v1/completions"));
    let (status, _) = server.post_keyed("/detokenize", &json!({"tokens": [1, 99999999]}), key);
    assert_eq!(status, 400);

    // Still serving, with the same answer as before any of this.
    let (status, body) = server.post_keyed("/v1/completions", &good, key);
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["choices"][0]["logprobs"]["token_logprobs"]
            .as_array()
            .unwrap()
            .len(),
        5
    );
}

/// Short prompts cut from the fixtures' contexts, two choices each, as lm-eval's multiple
/// choice requests look.
fn load_prompts() -> Vec<Vec<Vec<u32>>> {
    fixture_prompts()
        .iter()
        .step_by(9)
        .enumerate()
        .map(|(i, (tokens, _))| {
            let end = (30 + 3 * i).min(tokens.len());
            let context = &tokens[end.saturating_sub(24)..end];
            (0..2)
                .map(|choice| {
                    let mut prompt = context.to_vec();
                    prompt.push(300 + choice);
                    prompt
                })
                .collect()
        })
        .collect()
}

#[test]
fn load_test_with_slow_and_vanishing_clients() {
    const CLIENTS: usize = 32;
    const REQUESTS_PER_CLIENT: usize = 25;
    let server = Server::start(&["--queue", "4"]);
    let questions = load_prompts();
    let expected: Vec<Value> = questions
        .iter()
        .map(|prompts| {
            let (status, body) =
                server.post("/v1/completions", &lm_eval_payload(&server.name, prompts));
            assert_eq!(status, 200);
            body["choices"].clone()
        })
        .collect();
    let (rss_before, _) = server.memory();

    // A slow client: half a request, then silence; a vanishing one: a whole costly request,
    // then gone before the answer.
    let slow = TcpStream::connect(server.address()).unwrap();
    let mut slow_writer = slow.try_clone().unwrap();
    slow_writer
        .write_all(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 5000\r\n\r\n{\"prompt\": [[1, 2")
        .unwrap();
    {
        let costly: Vec<Vec<u32>> = fixture_prompts()
            .iter()
            .take(8)
            .map(|p| p.0.clone())
            .collect();
        let body = lm_eval_payload(&server.name, &costly).to_string();
        let mut vanishing = TcpStream::connect(server.address()).unwrap();
        write!(
            vanishing,
            "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
    }

    let deadline = Instant::now() + Duration::from_secs(240);
    let (answered, refused) = (AtomicUsize::new(0), AtomicUsize::new(0));
    let started = Instant::now();
    std::thread::scope(|scope| {
        for client in 0..CLIENTS {
            let (server, questions, expected) = (&server, &questions, &expected);
            let (answered, refused) = (&answered, &refused);
            scope.spawn(move || {
                let mut done = 0;
                let mut attempt = 0;
                while done < REQUESTS_PER_CLIENT && Instant::now() < deadline {
                    let q = (client + done * 7) % questions.len();
                    attempt += 1;
                    let (status, body) = server.post(
                        "/v1/completions",
                        &lm_eval_payload(&server.name, &questions[q]),
                    );
                    match status {
                        200 => {
                            for (got, want) in body["choices"]
                                .as_array()
                                .unwrap()
                                .iter()
                                .zip(expected[q].as_array().unwrap())
                            {
                                let (a, _) = lm_eval_parse(got, 1);
                                let (b, _) = lm_eval_parse(want, 1);
                                assert!(max_difference(&a, &b) <= 1e-4, "client {client}");
                                assert_eq!(got["text"], want["text"]);
                            }
                            answered.fetch_add(1, Ordering::Relaxed);
                            done += 1;
                        }
                        503 => {
                            refused.fetch_add(1, Ordering::Relaxed);
                            std::thread::sleep(Duration::from_millis(50 + (attempt % 5) * 20));
                        }
                        other => panic!("client {client}: status {other}: {body}"),
                    }
                }
            });
        }
    });
    let elapsed = started.elapsed();
    let (rss_after, peak) = server.memory();
    let answered = answered.into_inner();
    let refused = refused.into_inner();
    println!(
        "{answered} answered, {refused} refused (503) in {:.1} s; RSS {} → {} MB, peak {} MB",
        elapsed.as_secs_f64(),
        rss_before >> 20,
        rss_after >> 20,
        peak >> 20
    );
    assert_eq!(
        answered,
        CLIENTS * REQUESTS_PER_CLIENT,
        "every client finished in time"
    );
    assert!(
        refused > 0,
        "32 clients against a queue of 4 are refused sometimes"
    );
    assert!(
        peak < rss_before + (512 << 20),
        "memory grew from {} MB to a peak of {} MB",
        rss_before >> 20,
        peak >> 20
    );
    let counters = server.counters();
    assert_eq!(
        counters["refused"].as_u64().unwrap() as usize,
        refused,
        "{counters}"
    );
    assert_eq!(counters["queued"], json!(0));

    // The slow client is still connected and never stalled anyone; it finishes or is dropped.
    drop(slow_writer);
    drop(slow);
    assert_eq!(server.get("/health", None).0, 200);
}

/// Eight clients send distinct long prompts through a prefix cache of 16 MiB (about 360
/// tokens of SmolLM2): the cache stays within its budget, the process within the budget plus
/// the forwards' working memory, and a newcomer's prompt is still cached after the flood (the
/// flood's least recently used prefixes make room for it).
#[test]
fn the_prefix_cache_keeps_its_budget_under_load_and_serves_newcomers() {
    const BUDGET_MB: u64 = 16;
    const CLIENTS: usize = 8;
    let server = Server::start(&["--prefix-cache-mb", &BUDGET_MB.to_string()]);
    let prompts: Vec<Vec<u32>> = fixture_prompts().into_iter().map(|p| p.0).collect();
    let warmup = prompts.last().unwrap().clone();
    server.post("/v1/completions", &lm_eval_payload(&server.name, &[warmup]));
    let (rss_before, _) = server.memory();
    let deadline = Instant::now() + Duration::from_secs(240);
    std::thread::scope(|scope| {
        for client in 0..CLIENTS {
            let (server, prompts) = (&server, &prompts);
            scope.spawn(move || {
                for prompt in prompts.iter().skip(client).step_by(CLIENTS).take(16) {
                    assert!(Instant::now() < deadline, "client {client} ran out of time");
                    let payload = lm_eval_payload(&server.name, std::slice::from_ref(prompt));
                    let (status, body) = server.post("/v1/completions", &payload);
                    assert_eq!(status, 200, "client {client}: {body}");
                }
            });
        }
    });
    let (_, peak) = server.memory();
    let cache = server.counters()["prefix_cache"].clone();
    println!(
        "{cache}; RSS {} MB, peak {} MB",
        rss_before >> 20,
        peak >> 20
    );
    assert!(
        cache["bytes"].as_u64().unwrap() <= BUDGET_MB << 20,
        "{cache}"
    );
    assert!(cache["evicted_tokens"].as_u64().unwrap() > 0, "{cache}");
    assert!(
        peak < rss_before + ((BUDGET_MB + 512) << 20),
        "memory grew from {} MB to a peak of {} MB",
        rss_before >> 20,
        peak >> 20
    );
    let newcomer: Vec<u32> = prompts[3][..40].iter().map(|t| (t + 17) % 40000).collect();
    let payload = lm_eval_payload(&server.name, &[newcomer]);
    let first = server.post("/v1/completions", &payload).1;
    let before = server.counters()["computed_tokens"].as_u64().unwrap();
    let again = server.post("/v1/completions", &payload).1;
    assert_eq!(first["choices"], again["choices"]);
    assert_eq!(
        server.counters()["computed_tokens"].as_u64().unwrap(),
        before,
        "the newcomer's prompt was cached despite the flood"
    );
}

#[test]
fn sigterm_answers_the_request_in_flight_then_exits() {
    let mut server = Server::start(&[]);
    let costly: Vec<Vec<u32>> = fixture_prompts()
        .iter()
        .take(24)
        .map(|p| p.0.clone())
        .collect();
    let url = server.url("/v1/completions");
    let payload = lm_eval_payload(&server.name, &costly);
    let client = std::thread::spawn(move || answer(agent().post(&url).send_json(payload)));
    // Wait until the request is with the worker, then ask the server to stop.
    let deadline = Instant::now() + Duration::from_secs(60);
    while server.counters()["running"] == json!(0) {
        assert!(Instant::now() < deadline, "the request reaches the server");
        std::thread::sleep(Duration::from_millis(2));
    }
    let pid = server.child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let (status, body) = client.join().unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["choices"].as_array().unwrap().len(), 24);
    let exited = server.child.wait().unwrap();
    assert!(exited.success(), "{exited:?}");
    let mut lines = Vec::new();
    let stderr = server.stderr.lock().unwrap();
    while let Ok(line) = stderr.recv_timeout(Duration::from_secs(10)) {
        lines.push(line);
    }
    let stderr = lines.join("\n");
    assert!(stderr.contains("stopping"), "{stderr}");
    assert!(stderr.contains("served 1 requests"), "{stderr}");
    // No longer listening.
    assert!(TcpStream::connect(server.address()).is_err());
}

/// `--dtype auto` loads the default model (SmolLM2's Q4_1 file, 0.27 GB in bf16) as bf16 where
/// the CPU multiplies bf16 in AMX tiles, and in the stored formats elsewhere.
#[test]
fn auto_loads_bf16_where_amx_tiles_multiply_it_else_the_stored_formats() {
    use valuelens::model::kernels::bf16::Bf16Path;
    use valuelens::model::kernels::CpuFeatures;
    let features = CpuFeatures::detect();
    let in_tiles = matches!(Bf16Path::select(&features), Ok(Bf16Path::Amx));
    // The tests' command sets VALUELENS_DTYPE=f32; the flag overrides it.
    let server = Server::start(&["--dtype", "auto"]);
    let want = match (in_tiles, features.avx2) {
        (true, _) => "[Bf16 on cpu]",
        (false, true) => "[Quantized on cpu]",
        (false, false) => "[F32 on cpu]",
    };
    assert!(server.banner.contains(want), "{}", server.banner);
    if !in_tiles {
        println!("skipped auto's bf16: this CPU or kernel has no AMX-BF16 tiles ({want} checked)");
    }
}
