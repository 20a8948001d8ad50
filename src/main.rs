//! The `valuelens` command line: a thin layer over the library.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use valuelens::engine::{self, requests, EngineOptions};
use valuelens::model::{registry, Model, WeightMode};
use valuelens::output::write_atomically;
use valuelens::report::MetricsReport;
use valuelens::via::{self, released};

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
    /// Throughput of the engine on a request file: one JSON object on stdout.
    Bench {
        #[arg(long, default_value = "smollm2-135m")]
        model: String,
        #[arg(long)]
        input: PathBuf,
        #[arg(long, value_enum, default_value = "f32")]
        dtype: WeightMode,
        #[arg(long, default_value_t = EngineOptions::default().batch_tokens)]
        batch_tokens: usize,
        /// The baseline: one request per forward, no prefix sharing.
        #[arg(long)]
        naive: bool,
    },
    /// The paper's alignment measures from Task-1 and Task-2 outputs (e.g. the paper's released
    /// files): writes <out>/metrics.json and <out>/summary.md.
    #[command(group(clap::ArgGroup::new("task2").required(true).args(["action", "action_misaligned"])))]
    Metrics {
        /// The VIA CSV; by default data/value_action_gap_full_data_generation.csv, set up on
        /// first use.
        #[arg(long)]
        data: Option<PathBuf>,
        /// Task-1 responses: CSV with country, topic, response, prompt_index.
        #[arg(long)]
        stated: PathBuf,
        /// Task-2 results: a CSV of VIA rows with a boolean model_choice (and prompt_index), or
        /// a JSONL log with one {"index", "model_choice", "prompt_index"} per VIA row.
        #[arg(long)]
        action: Option<PathBuf>,
        /// Instead of --action: a list of misaligned cells (country, topic, value) from which
        /// a single-variant Task-2 run is rebuilt (the paper's GPT-3.5 files).
        #[arg(long)]
        action_misaligned: Option<PathBuf>,
        /// Output folder.
        #[arg(long)]
        out: PathBuf,
        /// Model name for the report (and to find the paper's row); default from --stated.
        #[arg(long)]
        model_name: Option<String>,
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
        Command::Bench {
            model,
            input,
            dtype,
            batch_tokens,
            naive,
        } => bench(&model, &input, dtype, batch_tokens, naive),
        Command::Metrics {
            data,
            stated,
            action,
            action_misaligned,
            out,
            model_name,
        } => metrics(
            data.as_deref(),
            &stated,
            action.as_deref(),
            action_misaligned.as_deref(),
            &out,
            model_name,
        ),
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

/// Requests scored together (and sharing prefixes) at a time: bounds memory for any input.
const STREAM_CHUNK: usize = 8192;

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
    let n_requests = requests::validate_requests(input)?;
    let started = Instant::now();
    let model = Model::load(model, dtype)?;
    let loaded = started.elapsed();
    let bar = progress_bar(n_requests);
    let options = EngineOptions {
        batch_tokens,
        ..EngineOptions::default()
    };
    let mut stats = engine::EngineStats::default();
    write_atomically(output, |out| {
        stats = engine::score_stream(
            &model,
            requests::RequestLines::open(input)?,
            &options,
            STREAM_CHUNK,
            Some(&bar),
            |score| requests::write_score(out, &score),
        )
        .with_context(|| format!("{}", input.display()))?;
        Ok(())
    })?;
    bar.finish_and_clear();
    let secs = (started.elapsed() - loaded).as_secs_f64();
    eprintln!(
        "scored {} requests with {} [{:?}] in {secs:.2} s: {} tokens computed for {} in the \
         requests ({:.0} computed tokens/s; load {:.2} s)",
        stats.requests,
        model.name,
        dtype,
        stats.computed_tokens,
        stats.request_tokens,
        stats.computed_tokens as f64 / secs.max(1e-9),
        loaded.as_secs_f64()
    );
    Ok(())
}

fn bench(
    model: &str,
    input: &Path,
    dtype: WeightMode,
    batch_tokens: usize,
    naive: bool,
) -> Result<()> {
    let started = Instant::now();
    let n_requests = requests::validate_requests(input)?;
    let model = Model::load(model, dtype)?;
    let loaded = started.elapsed();
    let options = EngineOptions {
        batch_tokens: if naive { 1 } else { batch_tokens },
        share_prefixes: !naive,
    };
    let scoring = Instant::now();
    let stats = engine::score_stream(
        &model,
        requests::RequestLines::open(input)?,
        &options,
        STREAM_CHUNK,
        None,
        |_| Ok(()),
    )?;
    let score_s = scoring.elapsed().as_secs_f64();
    let wall_s = started.elapsed().as_secs_f64();
    let result = serde_json::json!({
        "model": model.name,
        "input": input.display().to_string(),
        "requests": n_requests,
        "request_tokens": stats.request_tokens,
        "distinct_tokens": stats.distinct_tokens,
        "computed_tokens": stats.computed_tokens,
        "forwards": stats.forwards,
        "wall_s": wall_s,
        "load_s": loaded.as_secs_f64(),
        "score_s": score_s,
        "computed_tokens_per_s": stats.computed_tokens as f64 / score_s,
        "requests_per_s": n_requests as f64 / wall_s,
        "peak_rss_mb": peak_rss_mb(),
        "settings": {
            "dtype": dtype,
            "batch_tokens": options.batch_tokens,
            "share_prefixes": options.share_prefixes,
            "naive": naive,
            "threads": rayon::current_num_threads(),
        },
    });
    println!("{result}");
    Ok(())
}

/// The process's peak resident memory (VmHWM) in MiB, where the OS reports it.
fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

fn metrics(
    data: Option<&Path>,
    stated: &Path,
    action: Option<&Path>,
    action_misaligned: Option<&Path>,
    out: &Path,
    model_name: Option<String>,
) -> Result<()> {
    let data = via::setup::via_csv(data)?;
    let dataset = via::Dataset::load(&data)?;
    let usable = dataset.usable_pairs().count();
    eprintln!(
        "VIA: {} rows ({} parsed), {} pairs ({usable} usable) from {}",
        dataset.rows.len(),
        dataset.parsed_rows(),
        dataset.pairs.len(),
        data.display()
    );
    let responses = released::read_task1_responses(stated)?;
    eprintln!(
        "Task 1: {} responses, {} unparsed, from {}",
        responses.responses,
        responses.unparsed,
        stated.display()
    );
    let action_matrix = match (action, action_misaligned) {
        (Some(path), _) if path.extension().is_some_and(|e| e == "jsonl") => {
            released::read_task2_log(path, &dataset)?
        }
        (Some(path), _) => released::read_task2_csv(path)?,
        (None, Some(path)) => {
            released::reconstruct_action_from_misaligned(&responses.matrix, path)?
        }
        (None, None) => anyhow::bail!("give --action or --action-misaligned"),
    };
    let name = model_name.unwrap_or_else(|| {
        let stem = stated
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        stem.strip_suffix("_t1").unwrap_or(&stem).to_string()
    });
    let report = MetricsReport::compute(&name, &responses.matrix, &action_matrix);
    report.write(out)?;
    println!(
        "{}: alignment rate (F1) {:.4}, {} misaligned cells, distance {:.4} → {}",
        name,
        report.alignment_rate.overall,
        report.misaligned.total,
        report.distances.overall,
        out.display()
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
