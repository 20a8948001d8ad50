//! valuelens measures whether open-weight language models act in line with the values they
//! state (ValueActionLens, Shen, Clark, Mitra, EMNLP 2025), by scoring every answer option with
//! its log-probability on local hardware.
//!
//! Data flow: `model` (files → tokenizer + network) → `engine` (requests → scores);
//! `via` (the dataset and the paper's released outputs) → `metrics` (the paper's measures) →
//! `report` (metrics.json, summary.md).

pub mod engine;
pub mod metrics;
pub mod model;
pub mod output;
pub mod paths;
pub mod prompts;
pub mod report;
pub mod tasks;
pub mod verified;
pub mod via;
