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
    /// For results merged from parts (`valuelens merge`): what each part ran on and cost.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parts: Vec<PartRecord>,
}

/// The folder of part records inside a results folder.
pub const PARTS_DIR: &str = "parts";
/// The part record of a run scored in one process (shards are `shard-K-of-N`).
pub const WHOLE_PART: &str = "whole";

/// What one process that scored units into a results folder ran with and what it cost, in
/// `<out>/parts/<part>.json`: what `valuelens merge` builds run.json from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PartRecord {
    /// `whole`, or the shard as `shard-K-of-N`.
    pub part: String,
    pub valuelens: String,
    pub host: String,
    pub model: ModelRecord,
    pub data: DataRecord,
    pub scoring: Scoring,
    pub prompt_format: String,
    pub settings: SettingsRecord,
    /// The part's units, and how many of them an earlier try had stored.
    pub units: UnitCounts,
    pub tokens: EngineStats,
    pub timings: Timings,
}

impl PartRecord {
    pub fn write(&self, out: &Path) -> Result<()> {
        let dir = out.join(PARTS_DIR);
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        let text = serde_json::to_string_pretty(self)?;
        write_atomically(&dir.join(format!("{}.json", self.part)), |w| {
            Ok(w.write_all(text.as_bytes())?)
        })
    }

    /// The part records in results folder `out`, by name.
    pub fn read_all(out: &Path) -> Result<Vec<(std::path::PathBuf, Self)>> {
        let dir = out.join(PARTS_DIR);
        let mut parts = Vec::new();
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return Ok(parts);
        };
        for entry in entries {
            let path = entry?.path();
            let name = path.file_name().unwrap_or_default().to_string_lossy();
            if name.starts_with('.') || !name.ends_with(".json") {
                continue;
            }
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            let part = serde_json::from_str(&text).with_context(|| {
                format!(
                    "{} is not a valuelens part record: remove it, or score that part again",
                    path.display()
                )
            })?;
            parts.push((path, part));
        }
        parts.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(parts)
    }
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
    /// Storage formats converted at load (`F16 → Q8_0 (24 matrices)`); absent when none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub converted: Vec<String>,
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
    /// MiB of the prefix cache kept across units (0: none).
    #[serde(default)]
    pub prefix_cache_mb: usize,
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
