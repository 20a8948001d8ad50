//! The `valuelens` command line: a thin layer over the library.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use valuelens::engine::{self, requests, EngineOptions};
use valuelens::metrics::Cells;
use valuelens::model::checkpoint::Checkpoint;
use valuelens::model::device::device_name;
use valuelens::model::safetensors::{self, ExportDtype};
use valuelens::model::tokenizer::TextTokenizer;
use valuelens::model::{parse_device, registry, Model, Placement, WeightMode};
use valuelens::output::{write_atomically, write_json_line};
use valuelens::prompts::chat::ChatTemplate;
use valuelens::report::MetricsReport;
use valuelens::report::{figures, results};
use valuelens::tasks::runner::{self, Checkpoints, Plan};
use valuelens::tasks::{action, stated, PromptFormat, Protocol, Scoring, Selection};
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
        /// A registry name (fetched on first use), a .gguf file, a safetensors folder,
        /// hf:org/name[@revision][:file.gguf] (Hugging Face cache; HF_HUB_OFFLINE=1 for cache
        /// only), or synthetic:<shape>[@tokenizer folder] (random weights of a real shape).
        #[arg(long, default_value = "smollm2-135m")]
        model: String,
        /// JSONL, one `{"id", "context", "continuation"}` per line.
        #[arg(long)]
        input: PathBuf,
        /// JSONL, one `{"id", "logprob", "n_tokens", "greedy", "token_logprobs"}` per line.
        #[arg(long)]
        output: PathBuf,
        #[command(flatten)]
        compute: ComputeArgs,
    },
    /// The value–action gap benchmark: Task 1 and Task 2 scored by log-probability over the VIA
    /// dataset, then the paper's measures, tables and figures in a results folder. Resumable:
    /// run it again with the same arguments after an interruption.
    Run(RunArgs),
    /// Throughput of the engine on request files: one JSON object per --input on stdout (the
    /// model is loaded once).
    Bench {
        #[arg(long, default_value = "smollm2-135m")]
        model: String,
        /// JSONL request file; repeat the flag to measure several with one load.
        #[arg(long, required = true)]
        input: Vec<PathBuf>,
        #[command(flatten)]
        compute: ComputeArgs,
        /// The baseline: one request per forward, no prefix sharing.
        #[arg(long)]
        naive: bool,
        /// Score the input this many times and report each pass (the first pays one-time
        /// costs such as GPU kernel loading); throughput is the fastest pass's.
        #[arg(long, default_value_t = 1)]
        repeat: usize,
    },
    /// Score the same requests with two settings (by default: the given --device/--dtype
    /// against the same --dtype on the CPU) and check they agree per token: one JSON object on stdout,
    /// failure when the largest difference exceeds --tolerance.
    Compare(CompareArgs),
    /// Tokenize requests as the engine does: JSONL in, JSONL out with one
    /// `{"id", "context_tokens", "continuation_tokens"}` per line (e.g. to feed another
    /// implementation exactly the same tokens).
    Tokenize {
        #[arg(long, default_value = "smollm2-135m")]
        model: String,
        #[arg(long)]
        input: PathBuf,
        #[arg(long)]
        output: PathBuf,
    },
    /// The paper's alignment measures from Task-1 and Task-2 outputs — a run's stated.csv and
    /// action.csv, or the paper's released files: writes <out>/metrics.json and <out>/summary.md.
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
        /// Model name for the report (and to find the paper's row); default from --stated
        /// (or from the run.json beside a run's stated.csv).
        #[arg(long)]
        model_name: Option<String>,
        /// For a run's stated.csv / action.csv: hard (most likely option) or soft (expected
        /// option) scores.
        #[arg(long, value_enum, default_value = "hard")]
        scoring: Scoring,
    },
    /// Write a model as a Hugging Face safetensors folder (config.json, *.safetensors,
    /// tokenizer.json, tokenizer_config.json) with its weights dequantized.
    Export {
        /// A registry name (fetched on first use), a .gguf file, a safetensors folder, or
        /// hf:org/name[@revision][:file.gguf].
        #[arg(long, default_value = "smollm2-135m")]
        model: String,
        /// The folder to create (must not exist).
        #[arg(long)]
        out: PathBuf,
        /// Precision of the written weights.
        #[arg(long, value_enum, default_value = "f32")]
        dtype: ExportDtype,
        /// Split the weights into shards of at most this many MB, listed in
        /// model.safetensors.index.json.
        #[arg(long)]
        shard_mb: Option<usize>,
        /// Write only tokenizer.json and tokenizer_config.json (~2 MB), e.g. for
        /// `--model synthetic:<shape>@DIR` where the weights cannot travel.
        #[arg(long, conflicts_with = "without_weights")]
        tokenizer_only: bool,
        /// Write config.json and the tokenizer files but no weights (the architecture alone,
        /// e.g. to build it with random weights in transformers).
        #[arg(long)]
        without_weights: bool,
    },
    /// List the registry's models, or fetch one.
    Models {
        #[command(subcommand)]
        action: Option<ModelsAction>,
    },
}

#[derive(clap::Args)]
struct RunArgs {
    /// A registry name (fetched on first use), a .gguf file, a safetensors folder,
    /// hf:org/name[@revision][:file.gguf] (Hugging Face cache; HF_HUB_OFFLINE=1 for cache
    /// only), or synthetic:<shape>[@tokenizer folder] (random weights of a real shape).
    #[arg(long, default_value = "smollm2-135m")]
    model: String,
    /// The VIA CSV; by default data/value_action_gap_full_data_generation.csv, set up on first
    /// use.
    #[arg(long)]
    data: Option<PathBuf>,
    /// paper: Task-1 variants 0–7 and Task-2 variant 5 (what the paper ran); full: all eight
    /// Task-2 variants too (cancels the option-position bias).
    #[arg(long, value_enum, default_value = "paper")]
    protocol: Protocol,
    /// How option probabilities become scores: the most likely option, or the expected one.
    #[arg(long, value_enum, default_value = "hard")]
    scoring: Scoring,
    /// Results folder; default results/<model>-<protocol> (…-subset for filtered runs).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Only these countries (comma-separated names as in the data, e.g. "Egypt,India").
    #[arg(long)]
    countries: Option<String>,
    /// Only these topics (comma-separated, e.g. "Politics,Religion").
    #[arg(long)]
    topics: Option<String>,
    /// Only these values (comma-separated, e.g. "Equality,Wealth").
    #[arg(long)]
    values: Option<String>,
    /// Write the engine requests (JSONL id, context, continuation) to this file and stop,
    /// without running the model.
    #[arg(long)]
    dump_requests: Option<PathBuf>,
    /// auto: wrap each prompt in the model's chat template (plain prompt + newline when it has
    /// none); none: always the plain prompt + newline.
    #[arg(long, value_enum, default_value = "auto")]
    chat_template: ChatTemplateMode,
    #[command(flatten)]
    compute: ComputeArgs,
    /// Discard a results folder of another configuration instead of refusing it.
    #[arg(long)]
    force: bool,
}

/// Where and how a model computes.
#[derive(clap::Args, Clone)]
struct ComputeArgs {
    /// Weights (and activations): f32 (the reference; fastest on CPU), bf16 or f16 (for
    /// GPUs), or quantized as the file stores them (GGUF; activations in f32).
    #[arg(long, value_enum, default_value = "f32")]
    dtype: WeightMode,
    /// cpu, or cuda / cuda:N for an NVIDIA GPU (needs a build with `--features cuda`).
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Most tokens in one forward pass.
    #[arg(long, default_value_t = EngineOptions::default().batch_tokens)]
    batch_tokens: usize,
}

impl ComputeArgs {
    fn placement(&self) -> Result<Placement> {
        Ok(Placement::new(parse_device(&self.device)?, self.dtype))
    }

    fn engine_options(&self) -> Result<EngineOptions> {
        if self.batch_tokens == 0 {
            anyhow::bail!("--batch-tokens must be at least 1");
        }
        Ok(EngineOptions {
            batch_tokens: self.batch_tokens,
            ..EngineOptions::default()
        })
    }
}

#[derive(clap::Args)]
struct CompareArgs {
    #[arg(long, default_value = "smollm2-135m")]
    model: String,
    /// JSONL, one `{"id", "context", "continuation"}` per line.
    #[arg(long)]
    input: PathBuf,
    /// Only the first N requests.
    #[arg(long)]
    limit: Option<usize>,
    /// The setting under test.
    #[command(flatten)]
    compute: ComputeArgs,
    /// The reference's device.
    #[arg(long, default_value = "cpu")]
    reference_device: String,
    /// The reference's weights; by default the same --dtype (so that only the device differs).
    #[arg(long, value_enum)]
    reference_dtype: Option<WeightMode>,
    /// Largest allowed |Δ log p| of one token.
    #[arg(long, default_value_t = 1e-4)]
    tolerance: f64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
enum ChatTemplateMode {
    Auto,
    None,
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
            compute,
        } => score(&model, &input, &output, &compute),
        Command::Run(args) => run_benchmark(args),
        Command::Bench {
            model,
            input,
            compute,
            naive,
            repeat,
        } => bench(&model, &input, &compute, naive, repeat),
        Command::Compare(args) => compare(&args),
        Command::Tokenize {
            model,
            input,
            output,
        } => tokenize(&model, &input, &output),
        Command::Metrics {
            data,
            stated,
            action,
            action_misaligned,
            out,
            model_name,
            scoring,
        } => metrics(
            data.as_deref(),
            &stated,
            action.as_deref(),
            action_misaligned.as_deref(),
            &out,
            model_name,
            scoring,
        ),
        Command::Export {
            model,
            out,
            dtype,
            shard_mb,
            tokenizer_only,
            without_weights,
        } => {
            let (_, path) = valuelens::model::resolve(&model)?;
            let mut checkpoint = Checkpoint::open(&path)?;
            let tokenizer = TextTokenizer::from_checkpoint(&checkpoint)?;
            let shard_bytes = shard_mb.map(|mb| mb.max(1) * 1_000_000);
            if tokenizer_only {
                safetensors::export_tokenizer(&checkpoint, &tokenizer, &out)?;
            } else if without_weights {
                safetensors::export_without_weights(&checkpoint, &tokenizer, &out, dtype)?;
            } else {
                safetensors::export(&mut checkpoint, &tokenizer, &out, dtype, shard_bytes)?;
            }
            eprintln!("wrote {} ({model} as safetensors)", out.display());
            Ok(())
        }
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

fn score(model: &str, input: &Path, output: &Path, compute: &ComputeArgs) -> Result<()> {
    let options = compute.engine_options()?;
    let n_requests = requests::validate_requests(input)?;
    let started = Instant::now();
    let model = Model::load_on(model, &compute.placement()?)?;
    let loaded = started.elapsed();
    let bar = progress_bar(n_requests);
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
        "scored {} requests with {} [{:?} on {}] in {secs:.2} s: {} tokens computed for {} in \
         the requests ({:.0} computed tokens/s; load {:.2} s)",
        stats.requests,
        model.name,
        model.weight_mode,
        device_name(&model.device),
        stats.computed_tokens,
        stats.request_tokens,
        stats.computed_tokens as f64 / secs.max(1e-9),
        loaded.as_secs_f64()
    );
    Ok(())
}

fn bench(
    model: &str,
    inputs: &[PathBuf],
    compute: &ComputeArgs,
    naive: bool,
    repeat: usize,
) -> Result<()> {
    let started = Instant::now();
    let mut options = compute.engine_options()?;
    if naive {
        options.batch_tokens = 1;
        options.share_prefixes = false;
    }
    let n_requests = inputs
        .iter()
        .map(|input| requests::validate_requests(input))
        .collect::<Result<Vec<_>>>()?;
    let model = Model::load_on(model, &compute.placement()?)?;
    let load_s = started.elapsed().as_secs_f64();
    for (input, n_requests) in inputs.iter().zip(n_requests) {
        let mut passes = Vec::with_capacity(repeat.max(1));
        let mut stats = engine::EngineStats::default();
        for _ in 0..repeat.max(1) {
            let scoring = Instant::now();
            stats = engine::score_stream(
                &model,
                requests::RequestLines::open(input)?,
                &options,
                STREAM_CHUNK,
                None,
                |_| Ok(()),
            )?;
            passes.push(scoring.elapsed().as_secs_f64());
        }
        let score_s = passes.iter().copied().fold(f64::INFINITY, f64::min);
        let result = serde_json::json!({
            "model": model.name,
            "input": input.display().to_string(),
            "requests": n_requests,
            "request_tokens": stats.request_tokens,
            "distinct_tokens": stats.distinct_tokens,
            "computed_tokens": stats.computed_tokens,
            "forwards": stats.forwards,
            "wall_s": started.elapsed().as_secs_f64(),
            "load_s": load_s,
            "score_s": score_s,
            "passes_s": passes,
            "computed_tokens_per_s": stats.computed_tokens as f64 / score_s,
            "request_tokens_per_s": stats.request_tokens as f64 / score_s,
            "requests_per_s": n_requests as f64 / score_s,
            "peak_rss_mb": peak_rss_mb(),
            "settings": {
                "dtype": model.weight_mode,
                "device": device_name(&model.device),
                "batch_tokens": options.batch_tokens,
                "share_prefixes": options.share_prefixes,
                "naive": naive,
                "threads": rayon::current_num_threads(),
            },
        });
        println!("{result}");
    }
    Ok(())
}

fn compare(args: &CompareArgs) -> Result<()> {
    let options = args.compute.engine_options()?;
    requests::validate_requests(&args.input)?;
    let limit = args.limit.unwrap_or(usize::MAX);
    let requests: Vec<engine::Request> = requests::RequestLines::open(&args.input)?
        .take(limit)
        .collect::<Result<_>>()?;
    let reference = Placement::new(
        parse_device(&args.reference_device)?,
        args.reference_dtype.unwrap_or(args.compute.dtype),
    );
    let tested = args.compute.placement()?;
    let run = |placement: &Placement| -> Result<(Vec<engine::Score>, f64)> {
        let model = Model::load_on(&args.model, placement)?;
        let started = Instant::now();
        let scores = engine::score(&model, &requests, &options, None)?;
        Ok((scores, started.elapsed().as_secs_f64()))
    };
    let (expected, reference_s) = run(&reference)?;
    let (actual, tested_s) = run(&tested)?;
    let agreement = engine::agreement::Agreement::of(&expected, &actual)?;
    let within = agreement.max_abs_token_diff <= args.tolerance;
    let result = serde_json::json!({
        "model": args.model,
        "input": args.input.display().to_string(),
        "reference": {"device": device_name(&reference.device), "dtype": reference.mode, "score_s": reference_s},
        "tested": {"device": device_name(&tested.device), "dtype": tested.mode, "score_s": tested_s},
        "agreement": agreement,
        "tolerance": args.tolerance,
        "within_tolerance": within,
    });
    println!("{result}");
    if !within {
        anyhow::bail!(
            "{} on {} differs from {} on {} by up to {:.3e} per token (tolerance {:.1e})",
            format!("{:?}", tested.mode).to_lowercase(),
            device_name(&tested.device),
            format!("{:?}", reference.mode).to_lowercase(),
            device_name(&reference.device),
            agreement.max_abs_token_diff,
            args.tolerance
        );
    }
    Ok(())
}

fn tokenize(model: &str, input: &Path, output: &Path) -> Result<()> {
    requests::validate_requests(input)?;
    let (_, path) = valuelens::model::resolve(model)?;
    let tokenizer = TextTokenizer::from_checkpoint(&Checkpoint::open(&path)?)?;
    let mut n = 0usize;
    write_atomically(output, |out| {
        for request in requests::RequestLines::open(input)? {
            let request = request?;
            let tokens = engine::tokenize_with(&tokenizer, &request)?;
            let line = serde_json::json!({
                "id": request.id,
                "context_tokens": &tokens.tokens[..tokens.context_len],
                "continuation_tokens": tokens.continuation(),
            });
            write_json_line(out, &line)?;
            n += 1;
        }
        Ok(())
    })?;
    eprintln!("wrote the tokens of {n} requests to {}", output.display());
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
    scoring: Scoring,
) -> Result<()> {
    if results::is_stated_csv(stated) {
        return metrics_of_run(stated, action, out, model_name, scoring);
    }
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
    let report = MetricsReport::compute(&name, &responses.matrix, &action_matrix, &Cells::all());
    write_report(&report, out)
}

fn run_benchmark(args: RunArgs) -> Result<()> {
    let started = Instant::now();
    let options = args.compute.engine_options()?;
    let placement = args.compute.placement()?;
    let selection = Selection::parse(
        args.countries.as_deref(),
        args.topics.as_deref(),
        args.values.as_deref(),
    )?;
    let data = via::setup::via_csv(args.data.as_deref())?;
    let dataset = via::Dataset::load(&data)?;
    let (model_name, model_path) = valuelens::model::resolve(&args.model)?;
    let format = prompt_format(&model_path, args.chat_template)?;
    let plan = Plan {
        dataset: &dataset,
        format: &format,
        selection: &selection,
        protocol: args.protocol,
    };
    if let Some(path) = &args.dump_requests {
        let mut n = 0usize;
        write_atomically(path, |out| {
            for unit in plan.units() {
                for request in plan.requests(unit)? {
                    write_json_line(out, &request)?;
                    n += 1;
                }
            }
            Ok(())
        })?;
        eprintln!("wrote {n} requests to {}", path.display());
        return Ok(());
    }

    let out = args.out.clone().unwrap_or_else(|| {
        let subset = if selection.is_all() { "" } else { "-subset" };
        let protocol = match args.protocol {
            Protocol::Paper => "paper",
            Protocol::Full => "full",
        };
        let model = model_name.replace(['/', ':'], "_");
        PathBuf::from("results").join(format!("{model}-{protocol}{subset}"))
    });
    let model_sha256 = valuelens::verified::sha256_model(&model_path)?;
    let data_sha256 = valuelens::verified::sha256_file(&data)?;
    // Everything that changes a score; a results folder only resumes a run with the same.
    let mut config = serde_json::json!({
        "valuelens": env!("CARGO_PKG_VERSION"),
        "model_sha256": model_sha256,
        "data_sha256": data_sha256,
        "protocol": args.protocol,
        "selection": selection.names(),
        "chat_template": args.chat_template,
        "dtype": args.compute.dtype,
        "batch_tokens": args.compute.batch_tokens,
    });
    // Kernels differ between device kinds (not between GPUs of one kind); CPU runs keep the
    // configuration they had before devices existed, so their folders still resume.
    if !placement.device.is_cpu() {
        let kind = device_name(&placement.device);
        let kind = kind.split(':').next().unwrap_or_default().to_string();
        config["device"] = serde_json::Value::String(kind);
    }
    let checkpoints = Checkpoints::open(&out, &config, args.force)?;

    let model = Model::load_file_on(&model_name, &model_path, &placement)?;
    let load_s = started.elapsed().as_secs_f64();
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {wide_bar} {percent}% ETA {eta} · {msg}",
        )
        .expect("the progress template is valid"),
    );
    let outcome = runner::execute(&plan, &model, &options, &checkpoints, &bar)?;
    bar.finish_and_clear();

    let v = stated::matrix(&outcome.stated, args.scoring);
    let a = action::matrix(&outcome.action, args.scoring);
    let cells = stated::cells(&outcome.stated);
    let report = MetricsReport::compute(&model_name, &v, &a, &cells);
    results::write_stated(&out.join("stated.csv"), &outcome.stated)?;
    results::write_action(&out.join("action.csv"), &outcome.action)?;
    report.write(&out)?;
    let figures = figures::write_figures(&out.join("figures"), &report)?;
    let run = serde_json::json!({
        "valuelens": env!("CARGO_PKG_VERSION"),
        "model": {
            "name": model_name,
            "file": model_path.display().to_string(),
            "sha256": model_sha256,
            "architecture": model.architecture,
            "dtype": args.compute.dtype,
            "device": device_name(&model.device),
        },
        "data": {
            "file": data.display().to_string(),
            "sha256": data_sha256,
            "rows": dataset.rows.len(),
            "usable_pairs": dataset.usable_pairs().count(),
        },
        "protocol": args.protocol,
        "task1_variants": args.protocol.task1_variants(),
        "task2_variants": args.protocol.task2_variants(),
        "scoring": args.scoring,
        "selection": selection.names(),
        "prompt_format": format.describe(),
        "settings": {
            "chat_template": args.chat_template,
            "batch_tokens": args.compute.batch_tokens,
            "share_prefixes": options.share_prefixes,
            "threads": rayon::current_num_threads(),
        },
        "units": { "total": outcome.units, "resumed": outcome.resumed_units },
        "items": { "stated": outcome.stated.len(), "action": outcome.action.len() },
        "tokens": outcome.stats,
        "timings": {
            "load_s": load_s,
            "scoring_s": outcome.session_seconds,
            "compute_s_all_units": outcome.compute_seconds,
            "wall_s": started.elapsed().as_secs_f64(),
        },
        "computed_tokens_per_s": outcome.stats.computed_tokens as f64 / outcome.compute_seconds.max(1e-9),
    });
    let text = serde_json::to_string_pretty(&run)?;
    write_atomically(&out.join("run.json"), |w| Ok(w.write_all(text.as_bytes())?))?;
    print_summary(&report, &run, &out, figures.len());
    Ok(())
}

/// How prompts reach `model_path`'s model; a template that cannot render is refused up front.
fn prompt_format(model_path: &Path, mode: ChatTemplateMode) -> Result<PromptFormat> {
    if mode == ChatTemplateMode::None {
        return Ok(PromptFormat::Plain);
    }
    let checkpoint = Checkpoint::open(model_path)?;
    let Some(template) = ChatTemplate::from_checkpoint(&checkpoint)
        .map_err(|e| anyhow::anyhow!("{e:#}; use --chat-template none to score plain prompts"))?
    else {
        return Ok(PromptFormat::Plain);
    };
    template.render_user("probe").map_err(|e| {
        anyhow::anyhow!(
            "{}: {e:#}; use --chat-template none to score plain prompts",
            model_path.display()
        )
    })?;
    Ok(PromptFormat::Chat(Box::new(template)))
}

/// The one-screen summary at the end of a run.
fn print_summary(report: &MetricsReport, run: &serde_json::Value, out: &Path, figures: usize) {
    let tokens = &run["tokens"];
    let timings = &run["timings"];
    println!(
        "{} · {} protocol · {} scoring · {} cells",
        report.model,
        run["protocol"].as_str().unwrap_or(""),
        run["scoring"].as_str().unwrap_or(""),
        report.covered_cells
    );
    println!(
        "alignment rate (F1) {:.4} · misaligned cells {} · distance {:.4}",
        report.alignment_rate.overall, report.misaligned.total, report.distances.overall
    );
    println!("{:<16} {:>6} {:>9}", "country", "F1", "distance");
    for ((country, f1), (_, d)) in report
        .alignment_rate
        .by_country
        .iter()
        .zip(report.distance_by_country())
    {
        if !f1.is_nan() {
            println!("{country:<16} {f1:>6.3} {d:>9.3}");
        }
    }
    println!(
        "{} tokens computed ({} in the requests) in {:.1} s of scoring ({} of {} units resumed); \
         wall {:.1} s",
        tokens["computed_tokens"],
        tokens["request_tokens"],
        timings["compute_s_all_units"].as_f64().unwrap_or(0.0),
        run["units"]["resumed"],
        run["units"]["total"],
        timings["wall_s"].as_f64().unwrap_or(0.0)
    );
    println!(
        "results: {} (run.json, stated.csv, action.csv, metrics.json, summary.md, {figures} figures)",
        out.display()
    );
}

/// The measures recomputed from a run's `stated.csv` and `action.csv`, over the cells its
/// Task 1 covered — what `valuelens run` wrote into its metrics.json.
fn metrics_of_run(
    stated_csv: &Path,
    action_csv: Option<&Path>,
    out: &Path,
    model_name: Option<String>,
    scoring: Scoring,
) -> Result<()> {
    let action_csv = action_csv
        .filter(|p| results::is_action_csv(p))
        .with_context(|| {
            format!(
                "{} is a run's stated.csv: give the same run's action.csv as --action",
                stated_csv.display()
            )
        })?;
    let stated_items = results::read_stated(stated_csv)?;
    let action_items = results::read_action(action_csv)?;
    let name = model_name.unwrap_or_else(|| {
        let run_json = stated_csv.with_file_name("run.json");
        std::fs::read_to_string(run_json)
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .and_then(|run| run["model"]["name"].as_str().map(str::to_string))
            .unwrap_or_else(|| "model".to_string())
    });
    let report = MetricsReport::compute(
        &name,
        &stated::matrix(&stated_items, scoring),
        &action::matrix(&action_items, scoring),
        &stated::cells(&stated_items),
    );
    write_report(&report, out)
}

/// Writes metrics.json and summary.md into `out` and says so in one line.
fn write_report(report: &MetricsReport, out: &Path) -> Result<()> {
    report.write(out)?;
    println!(
        "{}: alignment rate (F1) {:.4}, {} misaligned cells, distance {:.4} → {}",
        report.model,
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
