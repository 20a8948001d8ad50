//! The wire format: OpenAI's legacy completions request as lm-evaluation-harness sends it,
//! read strictly enough that every mistake gets a 400 naming the field, and the response with
//! echoed prompt log-probabilities; the error body every endpoint answers with; what
//! `/tokenizer_info` reports.

use serde_json::{json, Map, Value};

/// Largest `logprobs` (alternatives per position) the server reports: the argmax. lm-eval asks
/// for 1.
pub const MAX_LOGPROBS: u64 = 1;

/// What `/tokenizer_info` reports besides the tokenizer itself.
#[derive(Debug, Clone, Default)]
pub struct ModelInfo {
    pub bos_token: Option<String>,
    pub eos_token: Option<String>,
    pub chat_template: Option<String>,
}

/// An error answered to a client: an HTTP status and a message saying what to change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: u16,
    pub message: String,
    /// Which request field is at fault, if one is.
    pub param: Option<String>,
}

impl ApiError {
    pub fn new(status: u16, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            param: None,
        }
    }

    pub fn bad_request(param: &str, message: impl Into<String>) -> Self {
        Self {
            status: 400,
            message: message.into(),
            param: Some(param.to_string()),
        }
    }

    /// OpenAI's error body.
    pub fn body(&self) -> Value {
        let kind = match self.status {
            401 => "authentication_error",
            404 => "not_found_error",
            413 | 400 => "invalid_request_error",
            503 => "overloaded_error",
            _ => "server_error",
        };
        json!({"error": {
            "message": self.message,
            "type": kind,
            "param": self.param,
            "code": self.status,
        }})
    }
}

/// One prompt as sent: token ids, or text to be tokenized.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PromptInput {
    Tokens(Vec<u32>),
    Text(String),
}

/// A completions request, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompletionRequest {
    pub model: Option<String>,
    pub prompts: Vec<PromptInput>,
    pub echo: bool,
    /// 0 (score the prompt only) or 1 (also the greedy next token).
    pub max_tokens: usize,
    /// Alternatives per position in `top_logprobs`; `None`: no log-probabilities at all.
    pub logprobs: Option<usize>,
}

/// Parses a JSON object body, or says why it is not one.
pub fn parse_object(body: &[u8]) -> Result<Map<String, Value>, ApiError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(ApiError::new(400, "the request body must be a JSON object")),
        Err(e) => Err(ApiError::new(
            400,
            format!("the request body is not valid JSON: {e}"),
        )),
    }
}

/// Reads and checks a `/v1/completions` body; at most `max_prompts` prompts.
pub fn parse_completion(body: &[u8], max_prompts: usize) -> Result<CompletionRequest, ApiError> {
    let fields = parse_object(body)?;
    let model = match fields.get("model") {
        None | Some(Value::Null) => None,
        Some(Value::String(name)) => Some(name.clone()),
        Some(_) => return Err(ApiError::bad_request("model", "model must be a string")),
    };
    let prompt = fields
        .get("prompt")
        .ok_or_else(|| ApiError::bad_request("prompt", "prompt is missing"))?;
    let prompts = parse_prompts(prompt)?;
    if prompts.len() > max_prompts {
        return Err(ApiError::bad_request(
            "prompt",
            format!(
                "{} prompts in one request, more than this server's limit of {max_prompts}; \
                 send smaller batches (lm-eval: a smaller batch_size)",
                prompts.len()
            ),
        ));
    }
    let echo = optional_bool(&fields, "echo")?.unwrap_or(false);
    let max_tokens = match optional_integer(&fields, "max_tokens")? {
        None => 1,
        Some(n @ 0..=1) => n as usize,
        Some(n) => {
            return Err(ApiError::bad_request(
                "max_tokens",
                format!(
                    "max_tokens is {n}: valuelens serve scores prompts and predicts at most one \
                     token; send max_tokens 0 or 1 (generation beyond one token is not served)"
                ),
            ))
        }
    };
    let logprobs = match optional_integer(&fields, "logprobs")? {
        None => None,
        Some(n) if n <= MAX_LOGPROBS as i64 && n >= 0 => Some(n as usize),
        Some(n) => {
            return Err(ApiError::bad_request(
                "logprobs",
                format!(
                    "logprobs is {n}: this server reports at most {MAX_LOGPROBS} alternative \
                     (the most likely token) per position; send 0 or {MAX_LOGPROBS}"
                ),
            ))
        }
    };
    if max_tokens == 1 {
        if let Some(t) = optional_number(&fields, "temperature")? {
            if t != 0.0 {
                return Err(ApiError::bad_request(
                    "temperature",
                    format!(
                        "temperature is {t}: the one predicted token is the most likely one; \
                         send temperature 0 (or max_tokens 0)"
                    ),
                ));
            }
        }
    }
    for (field, allowed) in [("n", 1), ("best_of", 1)] {
        if let Some(n) = optional_integer(&fields, field)? {
            if n != allowed {
                return Err(ApiError::bad_request(
                    field,
                    format!("{field} is {n}: one completion per prompt is served; send {field} 1"),
                ));
            }
        }
    }
    if optional_bool(&fields, "stream")? == Some(true) {
        return Err(ApiError::bad_request(
            "stream",
            "stream is true: answers are not streamed; send stream false",
        ));
    }
    Ok(CompletionRequest {
        model,
        prompts,
        echo,
        max_tokens,
        logprobs,
    })
}

/// OpenAI's four shapes of `prompt`: a string, a list of strings, a list of token ids, a list
/// of lists of token ids.
fn parse_prompts(prompt: &Value) -> Result<Vec<PromptInput>, ApiError> {
    let items = match prompt {
        Value::String(text) => return Ok(vec![PromptInput::Text(text.clone())]),
        Value::Array(items) => items,
        _ => {
            return Err(ApiError::bad_request(
                "prompt",
                "prompt must be a string, a list of strings, a list of token ids or a list of \
                 lists of token ids",
            ))
        }
    };
    if items.is_empty() {
        return Err(ApiError::bad_request("prompt", "prompt is an empty list"));
    }
    if items.iter().all(|item| item.is_number()) {
        return Ok(vec![PromptInput::Tokens(token_ids(items, "prompt")?)]);
    }
    // OpenAI's four shapes: a list holds strings only, or lists of token ids only.
    let first_is_text = items[0].is_string();
    if let Some(i) = items
        .iter()
        .position(|item| item.is_string() != first_is_text)
    {
        return Err(ApiError::bad_request(
            "prompt",
            format!(
                "prompt mixes strings and token-id lists (prompt[0] is {}, prompt[{i}] is not); \
                 send a list of strings or a list of lists of token ids",
                if first_is_text {
                    "a string"
                } else {
                    "not a string"
                }
            ),
        ));
    }
    items
        .iter()
        .enumerate()
        .map(|(i, item)| match item {
            Value::String(text) => Ok(PromptInput::Text(text.clone())),
            Value::Array(ids) => Ok(PromptInput::Tokens(token_ids(
                ids,
                &format!("prompt[{i}]"),
            )?)),
            _ => Err(ApiError::bad_request(
                "prompt",
                format!("prompt[{i}] is neither a string nor a list of token ids"),
            )),
        })
        .collect()
}

fn token_ids(items: &[Value], place: &str) -> Result<Vec<u32>, ApiError> {
    items
        .iter()
        .enumerate()
        .map(|(j, item)| {
            item.as_u64()
                .and_then(|id| u32::try_from(id).ok())
                .ok_or_else(|| {
                    ApiError::bad_request(
                        "prompt",
                        format!("{place}[{j}] is {item}, not a token id (an integer from 0)"),
                    )
                })
        })
        .collect()
}

fn optional_bool(fields: &Map<String, Value>, name: &str) -> Result<Option<bool>, ApiError> {
    match fields.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(v) => Err(ApiError::bad_request(
            name,
            format!("{name} is {v}; it must be true or false"),
        )),
    }
}

fn optional_integer(fields: &Map<String, Value>, name: &str) -> Result<Option<i64>, ApiError> {
    match fields.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v.as_i64().map(Some).ok_or_else(|| {
            ApiError::bad_request(name, format!("{name} is {v}; it must be an integer"))
        }),
    }
}

fn optional_number(fields: &Map<String, Value>, name: &str) -> Result<Option<f64>, ApiError> {
    match fields.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v.as_f64().map(Some).ok_or_else(|| {
            ApiError::bad_request(name, format!("{name} is {v}; it must be a number"))
        }),
    }
}

/// One position of a choice's `logprobs`: the token there, its log-probability (None for the
/// prompt's first token), and the alternatives to report.
pub struct ChoicePosition {
    pub token: String,
    pub logprob: Option<f64>,
    /// The token's own entry and the argmax's, as (text, log-probability); empty for the
    /// prompt's first token.
    pub top: Vec<(String, f64)>,
}

/// One choice of the response.
pub struct Choice {
    pub text: String,
    pub positions: Vec<ChoicePosition>,
    pub with_logprobs: bool,
}

impl Choice {
    pub fn to_json(&self, index: usize) -> Value {
        let logprobs = match self.with_logprobs {
            false => Value::Null,
            true => {
                let mut offset = 0usize;
                let mut text_offset = Vec::with_capacity(self.positions.len());
                for p in &self.positions {
                    text_offset.push(offset);
                    offset += p.token.chars().count();
                }
                let top: Vec<Value> = self
                    .positions
                    .iter()
                    .map(|p| match p.logprob {
                        None => Value::Null,
                        // Later entries win a shared text: the argmax comes last, so the
                        // greatest value is always the argmax's (lm-eval's greedy test).
                        Some(_) => Value::Object(
                            p.top
                                .iter()
                                .map(|(text, lp)| (text.clone(), json!(lp)))
                                .collect(),
                        ),
                    })
                    .collect();
                json!({
                    "tokens": self.positions.iter().map(|p| &p.token).collect::<Vec<_>>(),
                    "token_logprobs": self.positions.iter().map(|p| p.logprob).collect::<Vec<_>>(),
                    "top_logprobs": top,
                    "text_offset": text_offset,
                })
            }
        };
        json!({
            "index": index,
            "text": self.text,
            "logprobs": logprobs,
            "finish_reason": "length",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(body: Value) -> Result<CompletionRequest, ApiError> {
        parse_completion(body.to_string().as_bytes(), 8)
    }

    #[test]
    fn reads_lm_evals_loglikelihood_request() {
        let request = parse(json!({
            "model": "m", "prompt": [[1, 2, 3], [1, 2, 4]], "temperature": 0,
            "max_tokens": 1, "logprobs": 1, "seed": 1234, "echo": true
        }))
        .unwrap();
        assert_eq!(
            request.prompts,
            vec![
                PromptInput::Tokens(vec![1, 2, 3]),
                PromptInput::Tokens(vec![1, 2, 4])
            ]
        );
        assert!(request.echo);
        assert_eq!((request.max_tokens, request.logprobs), (1, Some(1)));
    }

    #[test]
    fn reads_the_four_prompt_shapes() {
        let shapes = [
            (json!("a b"), vec![PromptInput::Text("a b".into())]),
            (
                json!(["a", "b"]),
                vec![PromptInput::Text("a".into()), PromptInput::Text("b".into())],
            ),
            (json!([5, 6]), vec![PromptInput::Tokens(vec![5, 6])]),
            (
                json!([[5], [6, 7]]),
                vec![
                    PromptInput::Tokens(vec![5]),
                    PromptInput::Tokens(vec![6, 7]),
                ],
            ),
        ];
        for (prompt, expected) in shapes {
            let request = parse(json!({"prompt": prompt, "max_tokens": 0})).unwrap();
            assert_eq!(request.prompts, expected);
        }
    }

    #[test]
    fn names_what_is_wrong() {
        let cases = [
            (json!({"prompt": [[1], [2, -3]]}), "prompt[1][1] is -3"),
            (json!({"prompt": [[1], 2.5]}), "prompt[1] is neither"),
            (json!({"prompt": []}), "empty list"),
            (
                json!({"prompt": ["a", [1]]}),
                "mixes strings and token-id lists",
            ),
            (json!({"prompt": [[1], "a"]}), "prompt[1] is not"),
            (json!({"max_tokens": 1}), "prompt is missing"),
            (json!({"prompt": "x", "max_tokens": 16}), "max_tokens is 16"),
            (json!({"prompt": "x", "logprobs": 5}), "logprobs is 5"),
            (
                json!({"prompt": "x", "temperature": 0.7}),
                "temperature is 0.7",
            ),
            (json!({"prompt": "x", "n": 2}), "n is 2"),
            (json!({"prompt": "x", "stream": true}), "stream is true"),
            (json!({"prompt": "x", "echo": "yes"}), "echo is \"yes\""),
            (json!({"prompt": vec!["a"; 9]}), "9 prompts in one request"),
        ];
        for (body, expected) in cases {
            let err = parse(body.clone()).unwrap_err();
            assert_eq!(err.status, 400);
            assert!(err.message.contains(expected), "{body}: {}", err.message);
        }
        let err = parse_completion(b"{\"prompt\": [1,", 8).unwrap_err();
        assert!(err.message.contains("not valid JSON"), "{}", err.message);
        let err = parse_completion(b"[1]", 8).unwrap_err();
        assert!(err.message.contains("JSON object"), "{}", err.message);
    }

    #[test]
    fn temperature_matters_only_when_a_token_is_predicted() {
        assert!(parse(json!({"prompt": "x", "max_tokens": 0, "temperature": 1.0})).is_ok());
    }

    #[test]
    fn top_logprobs_keep_the_argmax_when_texts_collide() {
        let choice = Choice {
            text: "ab".into(),
            positions: vec![
                ChoicePosition {
                    token: "a".into(),
                    logprob: None,
                    top: vec![],
                },
                ChoicePosition {
                    token: "b".into(),
                    logprob: Some(-3.0),
                    top: vec![("b".into(), -3.0), ("b".into(), -0.5)],
                },
            ],
            with_logprobs: true,
        };
        let json = choice.to_json(0);
        assert_eq!(json["logprobs"]["top_logprobs"][1]["b"], json!(-0.5));
        assert_eq!(json["logprobs"]["token_logprobs"], json!([null, -3.0]));
        assert_eq!(json["logprobs"]["text_offset"], json!([0, 1]));
    }
}
