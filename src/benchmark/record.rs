//! `run.json`: what a run was (model, data, protocol, settings) and what it cost (tokens,
//! timings), written and read through one type. Versioned by `schema`; files of the first
//! version, which had no such field, read as schema 0.

use std::path::Path;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::engine::EngineStats;
use crate::model::Precision;
use crate::output::write_atomically;
use crate::tasks::pride::{Debias, PrideSettings};
use crate::tasks::{Protocol, Scoring, SelectionNames};

use super::config::ChatTemplateMode;

/// The schema version this build writes.
pub const RUN_RECORD_SCHEMA: u32 = 1;

/// The file name inside a results folder.
pub const RUN_RECORD_FILE: &str = "run.json";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    #[serde(default)]
    pub schema: u32,
    /// The crate version that wrote it.
    pub valuelens: String,
    pub model: ModelRecord,
    pub data: DataRecord,
    pub protocol: Protocol,
    /// `none` in files written before debiasing existed.
    #[serde(default)]
    pub debias: Debias,
    /// PriDe's sample and what it cost, for debiased runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pride: Option<PrideRecord>,
    pub task1_variants: Vec<usize>,
    pub task2_variants: Vec<usize>,
    pub scoring: Scoring,
    pub selection: SelectionNames,
    /// "chat template" or "plain prompt + newline".
    pub prompt_format: String,
    pub settings: SettingsRecord,
    pub units: UnitCounts,
    pub items: ItemCounts,
    pub tokens: EngineStats,
    pub timings: Timings,
    /// Computed tokens over the scoring seconds of all units.
    pub computed_tokens_per_s: f64,
}

/// PriDe's sample in a debiased run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PrideRecord {
    pub settings: PrideSettings,
    /// Sampled Task-1 prompts (a scenario in one variant, with all the run's values), each
    /// asked in 3 more orders.
    pub task1_prompts: usize,
    /// Sampled Task-2 questions, each asked once more with its options swapped.
    pub task2_questions: usize,
    /// What the permuted questions added (included in the run's `tokens` and timings): the
    /// tokens their units computed beyond those the units' own questions alone would, and
    /// that share of the units' seconds.
    pub computed_tokens: usize,
    pub compute_s: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelRecord {
    pub name: String,
    /// The GGUF file, the safetensors folder, or the synthetic spec.
    pub file: String,
    pub sha256: String,
    pub architecture: String,
    pub dtype: Precision,
    pub device: String,
    /// Which kernels multiplied the matrices (e.g. int8's instruction set), and the CPU's
    /// features they were chosen by; empty in records written before they were recorded.
    #[serde(default)]
    pub matmul_kernels: String,
    #[serde(default)]
    pub cpu_features: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DataRecord {
    pub file: String,
    pub sha256: String,
    pub rows: usize,
    pub usable_pairs: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SettingsRecord {
    pub chat_template: ChatTemplateMode,
    pub batch_tokens: usize,
    pub share_prefixes: bool,
    pub threads: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnitCounts {
    pub total: usize,
    /// Units loaded from the store rather than scored by this invocation.
    pub resumed: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ItemCounts {
    pub stated: usize,
    pub action: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Timings {
    pub load_s: f64,
    /// Scoring seconds of this invocation.
    pub scoring_s: f64,
    /// Scoring seconds of all units, including those of earlier, interrupted invocations.
    pub compute_s_all_units: f64,
    pub wall_s: f64,
}

impl RunRecord {
    pub fn read(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        serde_json::from_str(crate::input::strip_bom(&text))
            .with_context(|| format!("{} is not a valuelens run.json", path.display()))
    }

    pub fn write(&self, path: &Path) -> Result<()> {
        let text = serde_json::to_string_pretty(self)?;
        write_atomically(path, |w| Ok(w.write_all(text.as_bytes())?))
    }
}
