//! valuelens measures whether open-weight language models act in line with the values they
//! state (ValueActionLens, Shen, Clark, Mitra, EMNLP 2025), by scoring every answer option with
//! its log-probability on local hardware.
//!
//! Data flow: `model` (files → tokenizer + network) → `engine` (requests → scores).

pub mod engine;
pub mod model;
pub mod output;
