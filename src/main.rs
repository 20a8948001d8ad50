//! The `valuelens` command line: a thin layer over the library.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use valuelens::engine::{self, requests, EngineOptions};
use valuelens::model::{registry, Model, WeightMode};

#[derive(Parser)]
#[command(
    name = "valuelens",
    version,
    about = "Value–action gap of open-weight LLMs, by log-probability"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Score (context, continuation) requests: JSONL in, JSONL out (lm-eval `loglikelihood`).
    Score {
        /// A registry name (fetched on first use) or a path to a .gguf file.
        #[arg(long, default_value = "smollm2-135m")]
        model: String,
        /// JSONL, one `{"id", "context", "continuation"}` per line.
        #[arg(long)]
        input: PathBuf,
        /// JSONL, one `{"id", "logprob", "n_tokens", "greedy", "token_logprobs"}` per line.
        #[arg(long)]
        output: PathBuf,
        /// Weights dequantized to f32 (fastest on CPU) or kept quantized.
        #[arg(long, value_enum, default_value = "f32")]
        dtype: WeightMode,
        /// Most tokens in one forward pass.
        #[arg(long, default_value_t = EngineOptions::default().batch_tokens)]
        batch_tokens: usize,
    },
    /// List the registry's models, or fetch one.
    Models {
        #[command(subcommand)]
        action: Option<ModelsAction>,
    },
}

#[derive(Subcommand)]
enum ModelsAction {
    /// List registry models and whether they are fetched.
    List,
    /// Fetch a registry model into models/ (a no-op when it is already there and verifies).
    Fetch {
        /// Registry name; the default model when omitted.
        name: Option<String>,
    },
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Score {
            model,
            input,
            output,
            dtype,
            batch_tokens,
        } => score(&model, &input, &output, dtype, batch_tokens),
        Command::Models { action } => match action.unwrap_or(ModelsAction::List) {
            ModelsAction::List => list_models(),
            ModelsAction::Fetch { name } => {
                let registry = registry::Registry::builtin()?;
                let name = name.unwrap_or_else(|| registry.default.clone());
                let path = registry::ensure(registry.get(&name)?, &registry::models_dir())?;
                println!("{}", path.display());
                Ok(())
            }
        },
    }
}

fn score(
    model: &str,
    input: &Path,
    output: &Path,
    dtype: WeightMode,
    batch_tokens: usize,
) -> Result<()> {
    if batch_tokens == 0 {
        anyhow::bail!("--batch-tokens must be at least 1");
    }
    let requests = requests::read_requests(input)?;
    let started = Instant::now();
    let model = Model::load(model, dtype)?;
    let loaded = started.elapsed();
    let bar = progress_bar(requests.len());
    let options = EngineOptions { batch_tokens };
    let scores = engine::score(&model, &requests, &options, Some(&bar))
        .with_context(|| format!("{}", input.display()))?;
    let total = bar.length().unwrap_or(0);
    bar.finish_and_clear();
    requests::write_scores(output, &scores)?;
    let secs = (started.elapsed() - loaded).as_secs_f64();
    eprintln!(
        "scored {} requests ({total} tokens) with {} [{:?}] in {secs:.2} s ({:.0} tokens/s; load {:.2} s)",
        scores.len(),
        model.name,
        dtype,
        total as f64 / secs.max(1e-9),
        loaded.as_secs_f64()
    );
    Ok(())
}

/// A token-counting progress bar on stderr, shown only for long inputs on a terminal.
fn progress_bar(n_requests: usize) -> ProgressBar {
    if n_requests < 32 {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} tokens ({per_sec}, ETA {eta})",
        )
        .expect("the progress template is valid"),
    );
    bar
}

fn list_models() -> Result<()> {
    let registry = registry::Registry::builtin()?;
    let dir = registry::models_dir();
    println!(
        "{:<22} {:<8} {:>9}  {:<8} description",
        "name", "arch", "size", "status"
    );
    for m in &registry.models {
        let fetched = dir.join(&m.file).is_file();
        let default = if m.name == registry.default {
            " (default)"
        } else {
            ""
        };
        println!(
            "{:<22} {:<8} {:>7.1}MB  {:<8} {}{default}",
            m.name,
            m.architecture,
            m.size as f64 / 1e6,
            if fetched { "fetched" } else { "-" },
            m.description
        );
    }
    println!("models folder: {}", dir.display());
    Ok(())
}
