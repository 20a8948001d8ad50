//! valuelens measures whether open-weight language models act in line with the values they
//! state (ValueActionLens, Shen, Clark, Mitra, EMNLP 2025), by scoring every answer option with
//! its log-probability on local hardware.
//!
//! The layers, in the order data flows through them; each module imports only modules listed
//! before it (tested: `tests/module_graph.rs`):
//!
//! 1. `output`, `input`, `paths`, `verified`, `random` — writing files all or nothing, reading
//!    user files (byte-order marks, JSONL objects), where files live, sha256-checked files,
//!    reproducible random numbers.
//! 2. `via` — the VIA dataset: vocabulary, CSV loader, the data file's setup.
//! 3. `model` — a `--model` argument resolved to files, read through a format reader
//!    (GGUF, safetensors, synthetic), translated by its architecture into a checkpoint, loaded
//!    as a tokenizer and a network that scores packed batches.
//! 4. `metrics` (the paper's measures, pure functions), `prompts` (the paper's prompts in the
//!    model's chat template) and `engine` (requests → tokens → prefix tree → packed forwards on
//!    a `model` → lm-eval `loglikelihood` scores).
//! 5. `tasks` — Task 1 and Task 2 as engine requests and back into the matrices V and A; the
//!    same matrices read from the paper's released outputs.
//! 6. `report` — `metrics.json`, `summary.md`, the run's CSVs, figures.
//! 7. `benchmark` — a whole run: its configuration (the resume identity), units and their
//!    store, the results folder's lock, `run.json`, the summary; the measures recomputed from
//!    files.
//! 8. `leaderboard` — many results folders side by side (with the paper's API models), paired
//!    differences, figures and one HTML page.
//! 9. `explain` — the paper's third experiment (Table 14): an observer model predicting a target
//!    model's Task-2 choices from examples of its actions and explanations.
//! 10. `serve` — the engine behind an HTTP API (lm-evaluation-harness's `local-completions`
//!     contract), batching the prompts of concurrent requests into one prefix tree.
//!
//! The `valuelens` binary (`src/main.rs`, `src/cli/`) parses the command line and calls these.

pub mod benchmark;
pub mod engine;
pub mod explain;
pub mod input;
pub mod leaderboard;
pub mod metrics;
pub mod model;
pub mod output;
pub mod paths;
pub mod prompts;
pub mod random;
pub mod report;
pub mod serve;
pub mod tasks;
pub mod verified;
pub mod via;
