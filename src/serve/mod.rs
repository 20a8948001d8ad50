//! `valuelens serve`: the prefix-sharing engine behind an HTTP API, so that
//! lm-evaluation-harness's `local-completions` model (and any OpenAI-style client asking for
//! prompt log-probabilities) scores through it. Prompts of one request, and of requests that
//! arrive together, go through one prefix tree: a context sent once per answer choice is
//! computed once, and a prefix cache keeps what was computed for later requests (keys,
//! values and the scores echoed at each position), so a context sent again is not computed
//! again.
//!
//! `api` reads requests and writes responses, `queue` batches requests for the one scoring
//! worker, `routes` are the endpoints; this module binds, serves, and drains on SIGTERM.

mod api;
mod queue;
mod routes;

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context, Result};

pub use api::ModelInfo;
pub use queue::{BatchPolicy, CounterValues};

use crate::engine::EngineOptions;
use crate::model::Model;
use queue::Scorer;
use routes::{router, AppState};

/// How the server listens and what it accepts.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub host: String,
    /// 0: any free port (the one taken is passed to `on_listening`).
    pub port: u16,
    /// Required as `Authorization: Bearer <key>` on every endpoint but `/health`.
    pub api_key: Option<String>,
    pub engine: EngineOptions,
    pub batch: BatchPolicy,
    /// Most prompts in one request.
    pub max_prompts: usize,
    pub max_body_bytes: usize,
}

/// Serves `model` until SIGTERM or SIGINT, then stops accepting connections, answers the
/// requests in flight, and returns what was served. `on_listening` is called with the bound
/// address once connections are accepted.
pub fn serve(
    model: Model,
    info: ModelInfo,
    options: ServeOptions,
    on_listening: impl FnOnce(SocketAddr),
) -> Result<CounterValues> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("valuelens-http")
        .enable_all()
        .build()
        .context("cannot start the server's runtime")?;
    let model = Arc::new(model);
    let (scorer, worker) = Scorer::start(model.clone(), options.engine, options.batch);
    let counters = scorer.counters.clone();
    let state = Arc::new(AppState::new(
        model,
        scorer,
        info,
        options.api_key.clone(),
        options.max_prompts,
    )?);
    let served: Result<()> = runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind((options.host.as_str(), options.port))
            .await
            .with_context(|| {
                format!(
                    "cannot listen on {}:{}; choose another --port (or --host)",
                    options.host, options.port
                )
            })?;
        on_listening(listener.local_addr()?);
        axum::serve(listener, router(state, options.max_body_bytes))
            .with_graceful_shutdown(stop_signal())
            .await
            .context("the server stopped with an error")
    });
    // Every connection is closed: dropping the runtime drops the last handles on the queue,
    // and the worker ends once it has answered what it holds.
    drop(runtime);
    let _ = worker.join();
    served?;
    Ok(counters.values())
}

/// SIGTERM (a service manager, `kill`) or SIGINT (Ctrl-C).
async fn stop_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    _ = interrupt => {},
                    _ = terminate.recv() => {},
                }
            }
            Err(_) => {
                let _ = interrupt.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
    eprintln!("stopping: no new connections; answering the requests in flight");
}
