//! valuelens measures whether open-weight language models act in line with the values they
//! state (ValueActionLens, Shen, Clark, Mitra, EMNLP 2025), by scoring every answer option with
//! its log-probability on local hardware.
//!
//! Data flow: `via` (the dataset) → `prompts` (the paper's prompts in the model's chat
//! template) → `tasks` (Task 1 and Task 2 as requests) → `engine` (requests → scores, on a
//! `model`: files → tokenizer + network) → `tasks` (scores → the matrices V and A) → `metrics`
//! (the paper's measures) → `report` (CSVs, metrics.json, summary.md, figures).

pub mod benchmark;
pub mod engine;
pub mod input;
pub mod metrics;
pub mod model;
pub mod output;
pub mod paths;
pub mod prompts;
pub mod report;
pub mod tasks;
pub mod verified;
pub mod via;
