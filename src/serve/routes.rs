//! The HTTP endpoints: `/v1/completions` (prompt log-probabilities, lm-eval's
//! `local-completions` contract), the tokenizer endpoints lm-eval's remote tokenizer uses
//! (`/tokenizer_info`, `/tokenize`, `/detokenize`), `/v1/models` and `/health`; the API key
//! check, and every failure as OpenAI's error body with its status.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use tower_http::catch_panic::CatchPanicLayer;

use super::api::{
    parse_completion, parse_object, ApiError, Choice, ChoicePosition, CompletionRequest, ModelInfo,
    PromptInput,
};
use super::queue::Scorer;
use crate::engine::positions::{check_prompt, PromptRequest, PromptScores};
use crate::model::Model;

/// What every handler shares.
pub struct AppState {
    pub model: Arc<Model>,
    pub scorer: Scorer,
    pub info: ModelInfo,
    pub api_key: Option<String>,
    pub max_prompts: usize,
    /// Each vocabulary entry decoded on its own: the `tokens` and `top_logprobs` keys.
    token_texts: Vec<String>,
    next_id: AtomicU64,
}

impl AppState {
    pub fn new(
        model: Arc<Model>,
        scorer: Scorer,
        info: ModelInfo,
        api_key: Option<String>,
        max_prompts: usize,
    ) -> anyhow::Result<Self> {
        let token_texts = (0..model.tokenizer.vocab_size() as u32)
            .map(|id| model.tokenizer.decode(&[id]))
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(Self {
            model,
            scorer,
            info,
            api_key,
            max_prompts,
            token_texts,
            next_id: AtomicU64::new(0),
        })
    }

    fn token_text(&self, id: u32) -> String {
        self.token_texts
            .get(id as usize)
            .cloned()
            .unwrap_or_default()
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = (status, Json(self.body())).into_response();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

/// The server's routes over `state`; request bodies above `max_body_bytes` get a 413.
pub fn router(state: Arc<AppState>, max_body_bytes: usize) -> Router {
    let keyed = Router::new()
        .route("/v1/completions", post(completions))
        .route("/v1/models", get(models))
        .route("/tokenizer_info", get(tokenizer_info))
        .route("/tokenize", post(tokenize))
        .route("/detokenize", post(detokenize))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_key));
    Router::new()
        .route("/health", get(health))
        .merge(keyed)
        .fallback(not_found)
        .method_not_allowed_fallback(wrong_method)
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .layer(CatchPanicLayer::custom(|_| {
            ApiError::new(
                500,
                "the server failed on this request; it keeps serving others",
            )
            .into_response()
        }))
        .with_state(state)
}

async fn require_key(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    if let Some(key) = &state.api_key {
        let given = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if given != Some(key.as_str()) {
            return ApiError::new(
                401,
                "missing or wrong API key: send the header 'Authorization: Bearer <key>' \
                 (lm-eval sends $OPENAI_API_KEY)",
            )
            .into_response();
        }
    }
    next.run(request).await
}

async fn not_found(request: Request) -> ApiError {
    ApiError::new(
        404,
        format!(
            "no endpoint {} {}; this server answers POST /v1/completions, POST /tokenize, \
             POST /detokenize, GET /tokenizer_info, GET /v1/models and GET /health",
            request.method(),
            request.uri().path()
        ),
    )
}

/// A path the server has, asked with a method it does not answer there (routing's 405, in
/// OpenAI's error shape like every other refusal).
async fn wrong_method(request: Request) -> ApiError {
    let path = request.uri().path();
    let allowed = match path {
        "/v1/completions" | "/tokenize" | "/detokenize" => "POST",
        _ => "GET",
    };
    ApiError::new(
        405,
        format!(
            "{} {path} is not answered; send {allowed} {path}",
            request.method()
        ),
    )
}

/// The body, or the reason it could not be read (too large: 413).
fn body_bytes(body: Result<Bytes, BytesRejection>) -> Result<Bytes, ApiError> {
    body.map_err(|rejection| {
        let status = rejection.status().as_u16();
        let message = match status {
            413 => "the request body is larger than this server's limit (--max-body-mb); send \
                    fewer prompts per request"
                .to_string(),
            _ => format!(
                "the request body could not be read: {}",
                rejection.body_text()
            ),
        };
        ApiError::new(status, message)
    })
}

async fn health(State(state): State<Arc<AppState>>) -> Json<Value> {
    Json(json!({
        "status": "ok",
        "model": state.model.name,
        "counters": state.scorer.counters.values(),
    }))
}

async fn models(State(state): State<Arc<AppState>>) -> Json<Value> {
    Json(json!({
        "object": "list",
        "data": [{
            "id": state.model.name,
            "object": "model",
            "created": 0,
            "owned_by": "valuelens",
            "max_model_len": state.model.context_length(),
        }],
    }))
}

async fn tokenizer_info(State(state): State<Arc<AppState>>) -> Json<Value> {
    let info = &state.info;
    Json(json!({
        "tokenizer_class": "valuelens",
        "bos_token": info.bos_token,
        "eos_token": info.eos_token,
        "pad_token": Value::Null,
        "chat_template": info.chat_template,
        "model_max_length": state.model.context_length(),
        "vocab_size": state.model.tokenizer.vocab_size(),
    }))
}

async fn tokenize(
    State(state): State<Arc<AppState>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let fields = parse_object(&body_bytes(body)?)?;
    let Some(Value::String(text)) = fields.get("prompt") else {
        return Err(ApiError::bad_request(
            "prompt",
            "prompt must be the text to tokenize, a string",
        ));
    };
    let special = match fields.get("add_special_tokens") {
        None | Some(Value::Null) => true,
        Some(Value::Bool(b)) => *b,
        Some(v) => {
            return Err(ApiError::bad_request(
                "add_special_tokens",
                format!("add_special_tokens is {v}; it must be true or false"),
            ))
        }
    };
    let tokenizer = &state.model.tokenizer;
    let tokens = match special {
        true => tokenizer.encode(text),
        false => tokenizer.encode_plain(text),
    }
    .map_err(|e| ApiError::bad_request("prompt", format!("{e:#}")))?;
    Ok(Json(json!({
        "count": tokens.len(),
        "max_model_len": state.model.context_length(),
        "tokens": tokens,
    })))
}

async fn detokenize(
    State(state): State<Arc<AppState>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let fields = parse_object(&body_bytes(body)?)?;
    let vocab = state.model.tokenizer.vocab_size();
    let ids = match fields.get("tokens") {
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, item)| {
                item.as_u64()
                    .filter(|&id| id < vocab as u64)
                    .map(|id| id as u32)
                    .ok_or_else(|| {
                        ApiError::bad_request(
                            "tokens",
                            format!(
                                "tokens[{i}] is {item}, not a token id of this model's \
                                 vocabulary (0 to {})",
                                vocab - 1
                            ),
                        )
                    })
            })
            .collect::<Result<Vec<u32>, ApiError>>()?,
        _ => {
            return Err(ApiError::bad_request(
                "tokens",
                "tokens must be a list of token ids",
            ))
        }
    };
    let prompt = state
        .model
        .tokenizer
        .decode(&ids)
        .map_err(|e| ApiError::bad_request("tokens", format!("{e:#}")))?;
    Ok(Json(json!({ "prompt": prompt })))
}

async fn completions(
    State(state): State<Arc<AppState>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let request = parse_completion(&body_bytes(body)?, state.max_prompts)?;
    if let Some(name) = &request.model {
        if name != &state.model.name {
            return Err(ApiError::new(
                404,
                format!(
                    "model '{name}' is not served here; this server serves '{}' (GET /v1/models)",
                    state.model.name
                ),
            ));
        }
    }
    let prompts = prompt_tokens(&state, &request)?;
    let needs_model = request.echo || request.max_tokens == 1;
    let scores = match needs_model {
        false => vec![None; prompts.len()],
        true => {
            let receiver = state.scorer.submit(prompts.clone()).map_err(|_| {
                ApiError::new(
                    503,
                    "the server's queue is full; retry after a second (Retry-After)",
                )
            })?;
            receiver
                .await
                .map_err(|_| ApiError::new(500, "the scoring worker stopped"))?
                .map_err(|message| ApiError::new(500, message))?
                .into_iter()
                .map(Some)
                .collect()
        }
    };
    let choices: Vec<Value> = prompts
        .iter()
        .zip(&scores)
        .enumerate()
        .map(|(i, (prompt, score))| choice(&state, &request, prompt, score.as_ref()).to_json(i))
        .collect();
    let prompt_tokens: usize = prompts.iter().map(|p| p.tokens.len()).sum();
    let completion_tokens = prompts.len() * request.max_tokens;
    let id = state.next_id.fetch_add(1, Ordering::Relaxed);
    Ok(Json(json!({
        "id": format!("cmpl-{id}"),
        "object": "text_completion",
        "created": std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
        "model": state.model.name,
        "choices": choices,
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    })))
}

/// The request's prompts as token ids (text tokenized with the model's default special
/// tokens, as `tokenizer(text)` in transformers), each checked against the model.
fn prompt_tokens(
    state: &AppState,
    request: &CompletionRequest,
) -> Result<Vec<PromptRequest>, ApiError> {
    request
        .prompts
        .iter()
        .enumerate()
        .map(|(i, prompt)| {
            let tokens =
                match prompt {
                    PromptInput::Tokens(ids) => ids.clone(),
                    PromptInput::Text(text) => state.model.tokenizer.encode(text).map_err(|e| {
                        ApiError::bad_request("prompt", format!("prompt {i}: {e:#}"))
                    })?,
                };
            check_prompt(&state.model, i, &tokens)
                .map_err(|e| ApiError::bad_request("prompt", e.to_string()))?;
            Ok(PromptRequest {
                tokens,
                next: request.max_tokens == 1,
            })
        })
        .collect()
}

/// One prompt's choice: the echoed prompt with its log-probabilities, then the predicted
/// token.
fn choice(
    state: &AppState,
    request: &CompletionRequest,
    prompt: &PromptRequest,
    score: Option<&PromptScores>,
) -> Choice {
    let alternatives = request.logprobs.unwrap_or(0);
    let mut positions = Vec::new();
    let mut text = String::new();
    let next = score.and_then(|s| s.next);
    if request.echo {
        let mut all = prompt.tokens.clone();
        all.extend(next.map(|(token, _)| token));
        text = state.model.tokenizer.decode(&all).unwrap_or_default();
        positions.push(ChoicePosition {
            token: state.token_text(prompt.tokens[0]),
            logprob: None,
            top: Vec::new(),
        });
        if let Some(score) = score {
            for (position, &token) in score.positions.iter().zip(&prompt.tokens[1..]) {
                let token_text = state.token_text(token);
                let mut top = vec![(token_text.clone(), position.logprob)];
                if alternatives > 0 {
                    top.push((state.token_text(position.argmax), position.argmax_logprob));
                }
                positions.push(ChoicePosition {
                    token: token_text,
                    logprob: Some(position.logprob),
                    top,
                });
            }
        }
    }
    if let Some((token, logprob)) = next {
        let token_text = state.token_text(token);
        if !request.echo {
            text = token_text.clone();
        }
        positions.push(ChoicePosition {
            token: token_text.clone(),
            logprob: Some(logprob),
            top: vec![(token_text, logprob)],
        });
    }
    Choice {
        text,
        positions,
        with_logprobs: request.logprobs.is_some(),
    }
}
