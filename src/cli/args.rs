//! The command line's words: every subcommand and flag, with the help text users see.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use valuelens::benchmark::config::ChatTemplateMode;
use valuelens::engine::EngineOptions;
use valuelens::model::formats::export::ExportDtype;
use valuelens::model::{DtypeChoice, Precision};
use valuelens::tasks::pride::{Debias, PrideSettings};
use valuelens::tasks::{Protocol, Scoring};

#[derive(Parser)]
#[command(
    name = "valuelens",
    version,
    about = "Value–action gap of open-weight LLMs, by log-probability"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// The paper's third experiment (Table 14): an observer model predicts a target model's
    /// Task-2 choices from examples of its actions, with attributions and/or explanations;
    /// scored by log-probability.
    Explain(ExplainArgs),
    /// Score (context, continuation) requests: JSONL in, JSONL out (lm-eval `loglikelihood`).
    Score(ScoreArgs),
    /// The value–action gap benchmark: Task 1 and Task 2 scored by log-probability over the VIA
    /// dataset, then the paper's measures, tables and figures in a results folder. Resumable:
    /// run it again with the same arguments after an interruption.
    Run(RunArgs),
    /// The results of a run scored in shards (`run --shard`): checks that the folders hold one
    /// configuration and every unit exactly once, then writes the CSVs, measures, figures and
    /// run.json as one process would have (the model is not needed).
    Merge(MergeArgs),
    /// Throughput of the engine on request files: one JSON object per --input on stdout (the
    /// model is loaded once).
    Bench(BenchArgs),
    /// Score the same requests with two settings (by default: the given --device/--dtype
    /// against the same --dtype on the CPU) and check they agree per token: one JSON object on stdout,
    /// failure when the largest difference exceeds --tolerance.
    Compare(CompareArgs),
    /// Tokenize requests as the engine does: JSONL in, JSONL out with one
    /// `{"id", "context_tokens", "continuation_tokens"}` per line (e.g. to feed another
    /// implementation exactly the same tokens).
    Tokenize(TokenizeArgs),
    /// The paper's alignment measures from Task-1 and Task-2 outputs — a run's stated.csv and
    /// action.csv, or the paper's released files: writes <out>/metrics.json and <out>/summary.md.
    Metrics(MetricsArgs),
    /// Many runs side by side: one row per results folder (and, with --paper, the paper's API
    /// models), sorted by alignment rate, with paired bootstrap differences between every two
    /// rows, figures, and one self-contained HTML page. Runs that asked different questions are
    /// refused unless --common compares them on what all of them cover.
    Leaderboard(LeaderboardArgs),
    /// Write a model as a Hugging Face safetensors folder (config.json, *.safetensors,
    /// tokenizer.json, tokenizer_config.json) with its weights dequantized.
    Export(ExportArgs),
    /// Serve the engine over HTTP for lm-evaluation-harness's `local-completions` model (and
    /// OpenAI-style clients): prompt log-probabilities from /v1/completions with echo and
    /// logprobs, and the tokenizer endpoints lm-eval's remote tokenizer uses. Prompts of
    /// concurrent requests share one prefix tree. Binds to 127.0.0.1 unless --host says
    /// otherwise; SIGTERM answers the requests in flight, then exits.
    Serve(ServeArgs),
    /// List the registry's models, or fetch one; with --local, every model in Ollama's store,
    /// LM Studio's folders and the Hugging Face cache, read from headers only.
    Models {
        #[command(subcommand)]
        action: Option<ModelsAction>,
        /// List the models of the local stores instead: the form to pass to --model,
        /// architecture, parameters, storage format, size, and whether valuelens runs it.
        #[arg(long)]
        local: bool,
        /// With --local: JSON (one array of objects) for scripts.
        #[arg(long, requires = "local")]
        json: bool,
    },
}

#[derive(clap::Args)]
pub struct LeaderboardArgs {
    /// Results folders of `valuelens run`, or folders holding several (searched one level
    /// down).
    #[arg(required = true)]
    pub dirs: Vec<PathBuf>,
    /// Add the paper's API models (GPT-3.5-turbo exactly; GPT-4o-mini, Gemma-2-9b and
    /// Llama-3.3-70B approximately), recomputed from its released files.
    #[arg(long)]
    pub paper: bool,
    /// Compare runs that differ in protocol, debias, scoring or selection on the questions and
    /// cells all of them cover (recomputed from their CSVs), instead of refusing them.
    #[arg(long)]
    pub common: bool,
    /// The VIA CSV for --paper; by default data/value_action_gap_full_data_generation.csv.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Output folder: leaderboard.md, leaderboard.csv, leaderboard.json, index.html and
    /// figures/.
    #[arg(long, default_value = "results/leaderboard")]
    pub out: PathBuf,
}

#[derive(clap::Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub model: ModelArg,
    /// Address to listen on; 0.0.0.0 exposes the server to the network (then set --api-key).
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// The model name clients send (lm-eval's model=…) and /v1/models lists; by default the
    /// registry name, or the file's name without its extension.
    #[arg(long)]
    pub name: Option<String>,
    /// Port to listen on; 0 takes any free port (printed on stderr).
    #[arg(long, default_value_t = 8000)]
    pub port: u16,
    /// Require `Authorization: Bearer KEY` on every endpoint but /health (lm-eval sends
    /// $OPENAI_API_KEY).
    #[arg(long, env = "VALUELENS_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    #[command(flatten)]
    pub compute: ComputeArgs,
    /// Requests that may wait for the model; one more is answered 503 with Retry-After.
    #[arg(long, default_value_t = 256)]
    pub queue: usize,
    /// Milliseconds the worker waits after a request for others to score with it.
    #[arg(long, default_value_t = 5)]
    pub batch_window_ms: u64,
    /// Most prompts in one request.
    #[arg(long, default_value_t = 4096)]
    pub max_prompts: usize,
    /// Largest request body, in MiB.
    #[arg(long, default_value_t = 64)]
    pub max_body_mb: usize,
}

#[derive(clap::Args)]
pub struct MergeArgs {
    /// The results folders the shards wrote: one folder they shared, or one per shard.
    #[arg(required = true, value_name = "DIR")]
    pub dirs: Vec<PathBuf>,
    /// Where the results go (with the units copied there); by default the one folder given.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// The VIA CSV the run scored; by default data/value_action_gap_full_data_generation.csv.
    #[arg(long)]
    pub data: Option<PathBuf>,
}

#[derive(clap::Args)]
pub struct ScoreArgs {
    #[command(flatten)]
    pub model: ModelArg,
    /// JSONL, one `{"id", "context", "continuation"}` per line.
    #[arg(long)]
    pub input: PathBuf,
    /// JSONL, one `{"id", "logprob", "n_tokens", "greedy", "token_logprobs"}` per line.
    #[arg(long)]
    pub output: PathBuf,
    #[command(flatten)]
    pub compute: ComputeArgs,
}

#[derive(clap::Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub model: ModelArg,
    /// The VIA CSV; by default data/value_action_gap_full_data_generation.csv, set up on first
    /// use.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// paper: Task-1 variants 0–7 and Task-2 variant 5 (what the paper ran); full: all eight
    /// Task-2 variants too (cancels the option-position bias); balanced: Task 1 on both answer
    /// scales (variants 0–15) and Task 2 in both orders (variants 5 and 7).
    #[arg(long, value_enum, default_value = "paper")]
    pub protocol: Protocol,
    /// pride (default): estimate the model's preference for option labels on a seeded sample
    /// of questions asked in every cyclic order of their answers (PriDe), and divide it out of
    /// every question; none: the answers as the model gives them (with --protocol paper,
    /// exactly the paper's protocol).
    #[arg(long, value_enum, default_value = "pride")]
    pub debias: Debias,
    /// With --debias pride: the fraction of questions sampled (Task-1 prompts and Task-2
    /// questions), in (0, 1].
    #[arg(long, default_value_t = PrideSettings::default().fraction, value_parser = parse_fraction)]
    pub pride_fraction: f64,
    /// With --debias pride: the seed that picks the sample (the same seed samples the same
    /// questions in every run).
    #[arg(long, default_value_t = PrideSettings::default().seed)]
    pub pride_seed: u64,
    /// How option probabilities become scores: the most likely option, or the expected one.
    #[arg(long, value_enum, default_value = "hard")]
    pub scoring: Scoring,
    /// Results folder; default results/<model>-<protocol> (…-pride for debiased runs,
    /// …-subset for filtered ones).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Only these countries (comma-separated names as in the data, e.g. "Egypt,India").
    #[arg(long)]
    pub countries: Option<String>,
    /// Only these topics (comma-separated, e.g. "Politics,Religion").
    #[arg(long)]
    pub topics: Option<String>,
    /// Only these values (comma-separated, e.g. "Equality,Wealth").
    #[arg(long)]
    pub values: Option<String>,
    /// Write the engine requests (JSONL id, context, continuation) to this file and stop,
    /// without running the model.
    #[arg(long)]
    pub dump_requests: Option<PathBuf>,
    /// auto: wrap each prompt in the model's chat template (plain prompt + newline when it has
    /// none); none: always the plain prompt + newline.
    #[arg(long, value_enum, default_value = "auto")]
    pub chat_template: ChatTemplateMode,
    #[command(flatten)]
    pub compute: ComputeArgs,
    /// Discard a results folder of another configuration instead of refusing it.
    #[arg(long)]
    pub force: bool,
    /// Score only shard K of N (0-based; units dealt by expected tokens, the same on every
    /// machine) into --out, beside the other shards; the same command without --shard then
    /// writes the results. auto: K and N from a Slurm job array (SLURM_ARRAY_TASK_*) or a
    /// Kubernetes Indexed Job (JOB_COMPLETION_INDEX, with --shards N).
    #[arg(long, value_name = "K/N|auto")]
    pub shard: Option<String>,
    /// With --shard auto in a Kubernetes Indexed Job: how many shards (the Job's completions).
    #[arg(long, value_name = "N")]
    pub shards: Option<usize>,
}

/// Which model.
#[derive(clap::Args, Clone)]
pub struct ModelArg {
    /// A registry name (fetched on first use), a .gguf file, a safetensors folder,
    /// hf:org/name[@revision][:file.gguf] (Hugging Face cache; HF_HUB_OFFLINE=1 for cache
    /// only), ollama:NAME[:TAG] (Ollama's store), lmstudio:PUBLISHER/REPO[/FILE.gguf] (LM
    /// Studio's folder), or synthetic:<shape>[@tokenizer folder] (random weights of a real
    /// shape). `valuelens models --local` lists what the local stores hold.
    #[arg(long, default_value = "smollm2-135m")]
    pub model: String,
}

/// Where and how a model computes.
#[derive(clap::Args, Clone)]
pub struct ComputeArgs {
    /// Weights (and activations): auto (the default: the fastest within tolerance here —
    /// quantized on CPUs with AVX2 or AVX-512 VNNI, bf16 on GPUs), f32 (the exact reference),
    /// quantized (a GGUF file's blocks as stored, 8-bit activations), quantized-a16 (the same
    /// blocks, ~16-bit activations: f32's hard choices at about half the speed), int8, bf16
    /// (GPUs; on the CPU, valuelens's bf16 kernel) or f16 (GPUs). VALUELENS_DTYPE sets it where
    /// the flag is not given.
    #[arg(long, value_enum, default_value = "auto", env = "VALUELENS_DTYPE")]
    pub dtype: DtypeChoice,
    /// cpu, or cuda / cuda:N for an NVIDIA GPU (needs a build with `--features cuda`).
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Most tokens in one forward pass.
    #[arg(long, default_value_t = EngineOptions::default().batch_tokens)]
    pub batch_tokens: usize,
    /// MiB of keys, values and scores of computed prefixes kept across engine calls, so that
    /// a prefix met again is not computed again (least recently used first out); 0 keeps
    /// none. `serve` keeps 512 by default on the CPU (none on GPUs, not yet checked there);
    /// `score` and `run` keep none by default (their calls share little: see docs).
    #[arg(long, value_name = "MIB")]
    pub prefix_cache_mb: Option<usize>,
}

#[derive(clap::Args)]
pub struct BenchArgs {
    #[command(flatten)]
    pub model: ModelArg,
    /// JSONL request file; repeat the flag to measure several with one load.
    #[arg(long, required = true)]
    pub input: Vec<PathBuf>,
    #[command(flatten)]
    pub compute: ComputeArgs,
    /// The baseline: one request per forward, no prefix sharing.
    #[arg(long)]
    pub naive: bool,
    /// Score the input this many times and report each pass (the first pays one-time
    /// costs such as GPU kernel loading); throughput is the fastest pass's.
    #[arg(long, default_value_t = 1)]
    pub repeat: usize,
}

#[derive(clap::Args)]
pub struct CompareArgs {
    #[command(flatten)]
    pub model: ModelArg,
    /// JSONL, one `{"id", "context", "continuation"}` per line.
    #[arg(long)]
    pub input: PathBuf,
    /// Only the first N requests.
    #[arg(long)]
    pub limit: Option<usize>,
    /// The setting under test.
    #[command(flatten)]
    pub compute: ComputeArgs,
    /// The reference's device.
    #[arg(long, default_value = "cpu")]
    pub reference_device: String,
    /// The reference's weights; by default the same --dtype (so that only the device differs).
    #[arg(long, value_enum)]
    pub reference_dtype: Option<Precision>,
    /// Largest allowed |Δ log p| of one token.
    #[arg(long, default_value_t = 1e-4)]
    pub tolerance: f64,
}

#[derive(clap::Args)]
pub struct TokenizeArgs {
    #[command(flatten)]
    pub model: ModelArg,
    #[arg(long)]
    pub input: PathBuf,
    #[arg(long)]
    pub output: PathBuf,
}

#[derive(clap::Args)]
#[command(group(clap::ArgGroup::new("task2").required(true).args(["action", "action_misaligned"])))]
pub struct MetricsArgs {
    /// The VIA CSV; by default data/value_action_gap_full_data_generation.csv, set up on
    /// first use.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Task-1 responses: CSV with country, topic, response, prompt_index.
    #[arg(long)]
    pub stated: PathBuf,
    /// Task-2 results: a CSV of VIA rows with a boolean model_choice (and prompt_index), or
    /// a JSONL log with one {"index", "model_choice", "prompt_index"} per VIA row.
    #[arg(long)]
    pub action: Option<PathBuf>,
    /// Instead of --action: a list of misaligned cells (country, topic, value) from which
    /// a single-variant Task-2 run is rebuilt (the paper's GPT-3.5 files).
    #[arg(long)]
    pub action_misaligned: Option<PathBuf>,
    /// Output folder.
    #[arg(long)]
    pub out: PathBuf,
    /// Model name for the report (and to find the paper's row); default from --stated
    /// (or from the run.json beside a run's stated.csv).
    #[arg(long)]
    pub model_name: Option<String>,
    /// For a run's stated.csv / action.csv: hard (most likely option) or soft (expected
    /// option) scores.
    #[arg(long, value_enum, default_value = "hard")]
    pub scoring: Scoring,
    /// For a run's CSVs: none or pride; by default as the run did (pride when a pride.csv
    /// lies beside --stated).
    #[arg(long, value_enum)]
    pub debias: Option<Debias>,
    /// For a run's CSVs: only the questions this protocol asks (e.g. paper, from a balanced
    /// or full run); by default all of them.
    #[arg(long, value_enum)]
    pub protocol: Option<Protocol>,
}

/// A fraction in (0, 1].
fn parse_fraction(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(x) if x > 0.0 && x <= 1.0 => Ok(x),
        _ => Err(format!("'{text}' is not a fraction in (0, 1], e.g. 0.05")),
    }
}

#[derive(clap::Args)]
pub struct ExportArgs {
    /// A registry name (fetched on first use), a .gguf file, a safetensors folder, or
    /// hf:org/name[@revision][:file.gguf].
    #[arg(long, default_value = "smollm2-135m")]
    pub model: String,
    /// The folder to create (must not exist), or with `--format gguf` the file to write.
    #[arg(long)]
    pub out: PathBuf,
    /// safetensors: a Hugging Face folder (weights dequantized to --dtype); gguf: one GGUF
    /// file that llama.cpp and valuelens read, its matrices in --gguf-type.
    #[arg(long, value_enum, default_value = "safetensors")]
    pub format: ExportFormat,
    /// With `--format gguf`: the storage format of the matrices (q4_0, q4_1, q5_0, q5_1, q8_0,
    /// q4_k, q5_k, q6_k, f16); by default as the model stores them.
    #[arg(long)]
    pub gguf_type: Option<String>,
    /// Precision of the written weights.
    #[arg(long, value_enum, default_value = "f32")]
    pub dtype: ExportDtype,
    /// Split the weights into shards of at most this many MB, listed in
    /// model.safetensors.index.json.
    #[arg(long)]
    pub shard_mb: Option<usize>,
    /// Write only tokenizer.json and tokenizer_config.json (~2 MB), e.g. for
    /// `--model synthetic:<shape>@DIR` where the weights cannot travel.
    #[arg(long, conflicts_with = "without_weights")]
    pub tokenizer_only: bool,
    /// Write config.json and the tokenizer files but no weights (the architecture alone,
    /// e.g. to build it with random weights in transformers).
    #[arg(long)]
    pub without_weights: bool,
}

/// What `valuelens export` writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ExportFormat {
    Safetensors,
    Gguf,
}

#[derive(Subcommand)]
pub enum ModelsAction {
    /// List registry models and whether they are fetched.
    List,
    /// Fetch a registry model into models/ (a no-op when it is already there and verifies).
    Fetch {
        /// Registry name; the default model when omitted.
        name: Option<String>,
    },
}

#[derive(clap::Args)]
pub struct ExplainArgs {
    /// The observer: a model with a chat template (registry name, .gguf, folder, hf:…).
    #[arg(long, default_value = "smollm2-135m")]
    pub observer: String,
    /// Whose choices to predict: paper:gpt-3.5-turbo or paper:llama-3.3-70b (rebuilt from the
    /// paper's released files), a Task-2 CSV with model_choice, a run's action.csv, or a
    /// misaligned-cell list (with --target-stated).
    #[arg(long, default_value = "paper:gpt-3.5-turbo")]
    pub target: String,
    /// The target's Task-1 responses, when --target is a misaligned-cell list.
    #[arg(long)]
    pub target_stated: Option<PathBuf>,
    /// Comma-separated: act, attr, exp, all.
    #[arg(long, default_value = "act,attr,exp,all")]
    pub settings: String,
    /// The VIA CSV (default: data/, set up on first use).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Results folder (default: results/explain-<observer>-<target>).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// random_state of the paper's draws.
    #[arg(long, default_value_t = 42)]
    pub seed: u32,
    /// Few-shot examples per class (True, False).
    #[arg(long, default_value_t = 10)]
    pub examples_per_class: usize,
    /// Test rows per class.
    #[arg(long, default_value_t = 100)]
    pub tests_per_class: usize,
    /// Write the engine requests (JSONL id, context, continuation) to this file and stop,
    /// without running the model.
    #[arg(long)]
    pub dump_requests: Option<PathBuf>,
    #[command(flatten)]
    pub compute: ComputeArgs,
}
