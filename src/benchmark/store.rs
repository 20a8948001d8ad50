//! Run progress on disk: each finished unit's scores, written atomically into
//! `<out>/checkpoints/` (the folder's name on disk since the first version) beside the
//! configuration they belong to, so that a run started again with the same configuration
//! loads them instead of scoring them again.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::config::RunConfig;
use super::lock::is_lock_file;
use super::units::Unit;
use crate::engine::{EngineStats, Request};
use crate::output::write_atomically;

/// A finished unit as stored: its requests' ids and log-probabilities, and what it cost.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UnitScores {
    pub unit: String,
    pub seconds: f64,
    pub stats: EngineStats,
    pub ids: Vec<String>,
    pub logprobs: Vec<f64>,
    /// What PriDe's permuted questions added to the unit, where it asked any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub permuted: Option<PermutedCost>,
}

/// The tokens and the share of seconds that a unit's permuted questions added.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PermutedCost {
    pub computed_tokens: usize,
    pub seconds: f64,
}

/// The finished units of a results folder (`<out>/checkpoints/`), bound to one run
/// configuration.
pub struct UnitStore {
    dir: PathBuf,
}

/// The folder of finished units inside a results folder.
pub const UNITS_DIR: &str = "checkpoints";
/// The configuration the units belong to, inside `UNITS_DIR`.
const CONFIG_FILE: &str = "config.json";

/// Whether `out` is a folder with files other than the run's locks.
fn holds_anything_but_the_lock(out: &Path) -> Result<bool> {
    if !out.is_dir() {
        return Ok(false);
    }
    for entry in fs::read_dir(out)? {
        if !is_lock_file(&entry?.file_name().to_string_lossy()) {
            return Ok(true);
        }
    }
    Ok(false)
}

impl UnitStore {
    /// Opens (or starts) `<out>/checkpoints` for `config`. Units of another configuration are
    /// refused — or, with `force`, deleted.
    pub fn open(out: &Path, config: &RunConfig, force: bool) -> Result<Self> {
        let dir = out.join(UNITS_DIR);
        let config_path = dir.join(CONFIG_FILE);
        if config_path.is_file() {
            let text = fs::read_to_string(&config_path)
                .with_context(|| format!("cannot read {}", config_path.display()))?;
            let previous: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            let same = serde_json::from_value::<RunConfig>(previous.clone())
                .is_ok_and(|previous| previous == *config);
            if !same {
                if !force {
                    let current = serde_json::to_value(config)?;
                    bail!(
                        "{} holds a run with another configuration ({}); {}use another --out \
                         folder, or --force to discard it and start over",
                        out.display(),
                        difference(&previous, &current),
                        how_to_resume(&previous, &current)
                    );
                }
                fs::remove_dir_all(&dir)
                    .with_context(|| format!("cannot remove {}", dir.display()))?;
            }
        } else if holds_anything_but_the_lock(out)? && !force {
            bail!(
                "{} is not empty and holds no valuelens run; use another --out folder, or \
                 --force to write into it anyway",
                out.display()
            );
        }
        fs::create_dir_all(&dir).with_context(|| {
            format!(
                "cannot create the results folder {}: is its parent writable?",
                dir.display()
            )
        })?;
        let text = serde_json::to_string_pretty(config)?;
        write_atomically(&config_path, |w| Ok(w.write_all(text.as_bytes())?))?;
        Ok(Self { dir })
    }

    /// The finished units of results folder `out` as they are, bound to nothing (for reading
    /// the parts of a run: `valuelens merge`).
    pub fn existing(out: &Path) -> Self {
        Self {
            dir: out.join(UNITS_DIR),
        }
    }

    /// The configuration results folder `out` is bound to.
    pub fn config_of(out: &Path) -> Result<RunConfig> {
        let path = out.join(UNITS_DIR).join(CONFIG_FILE);
        if !path.is_file() {
            bail!(
                "{} holds no valuelens run (no {}): give the results folders that runs or \
                 shards wrote",
                out.display(),
                path.display()
            );
        }
        let text =
            fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
        serde_json::from_str(&text).with_context(|| {
            format!(
                "{} is not the configuration of a run of this valuelens version",
                path.display()
            )
        })
    }

    /// Whether a file for `unit` is stored (whether or not it matches).
    pub fn holds(&self, unit: Unit) -> bool {
        self.path(unit).is_file()
    }

    /// The stored file of `unit`.
    pub fn path(&self, unit: Unit) -> PathBuf {
        self.path_of_name(&unit.name())
    }

    /// The stored file of the unit named `name`.
    pub fn path_of_name(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.json"))
    }

    /// A finished unit's scores, if stored and matching `requests`.
    pub fn load(&self, unit: Unit, requests: &[Request]) -> Result<Option<UnitScores>> {
        let path = self.path(unit);
        if !path.is_file() {
            return Ok(None);
        }
        let text =
            fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
        let scores: UnitScores = match serde_json::from_str(&text) {
            Ok(s) => s,
            // Files are renamed into place whole, so this is damage from outside: recompute.
            Err(_) => return Ok(None),
        };
        let same = scores.ids.len() == requests.len()
            && scores.logprobs.len() == requests.len()
            && scores.ids.iter().zip(requests).all(|(id, r)| *id == r.id);
        Ok(same.then_some(scores))
    }

    /// The names of the units stored, from their files (whatever run they belong to).
    pub fn unit_names(&self) -> Result<Vec<String>> {
        let mut names = Vec::new();
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return Ok(names);
        };
        for entry in entries {
            let name = entry?.file_name().to_string_lossy().into_owned();
            if name == CONFIG_FILE || name.starts_with('.') {
                continue;
            }
            if let Some(stem) = name.strip_suffix(".json") {
                names.push(stem.to_string());
            }
        }
        names.sort();
        Ok(names)
    }

    pub fn save(&self, unit: Unit, scores: &UnitScores) -> Result<()> {
        let text = serde_json::to_string(scores)?;
        write_atomically(&self.path(unit), |w| Ok(w.write_all(text.as_bytes())?))
    }
}

/// The command-line flags that give a run the configuration `previous` it was started with,
/// where every field that differs has one (`to resume it, run again with --dtype quantized;
/// `), or why it cannot resume with this build; empty where neither can be said.
fn how_to_resume(previous: &Value, current: &Value) -> String {
    let (Value::Object(before), Value::Object(now)) = (previous, current) else {
        return String::new();
    };
    let keys: std::collections::BTreeSet<&String> = before.keys().chain(now.keys()).collect();
    let mut flags = Vec::new();
    for key in keys.into_iter().filter(|k| before.get(*k) != now.get(*k)) {
        let value = before.get(key.as_str());
        let text = |default: &str| match value {
            Some(Value::String(s)) => s.clone(),
            Some(other) => other.to_string(),
            None => default.to_string(),
        };
        flags.push(match key.as_str() {
            "dtype" => format!("--dtype {}", text("f32")),
            "batch_tokens" => format!("--batch-tokens {}", text("8192")),
            "chat_template" => format!("--chat-template {}", text("auto")),
            "protocol" => format!("--protocol {}", text("paper")),
            "debias" => format!("--debias {}", text("none")),
            "device" => format!("--device {}", text("cpu")),
            "kernels" if before.get("dtype") == now.get("dtype") => {
                return format!(
                    "this build's kernels on this machine compute other numbers than those \
                     that started it, so it cannot resume here: finish it where and with the \
                     build that started it (valuelens {}), or ",
                    before
                        .get("valuelens")
                        .and_then(Value::as_str)
                        .unwrap_or("an earlier version")
                );
            }
            // The kernels follow from the dtype: the dtype's flag resumes them.
            "kernels" => continue,
            _ => return String::new(),
        });
    }
    match flags.is_empty() {
        true => String::new(),
        false => format!("to resume it, run again with {}; or ", flags.join(" ")),
    }
}

/// The first top-level field where two configurations differ, for the refusal message.
pub(super) fn difference(previous: &Value, current: &Value) -> String {
    if let (Value::Object(a), Value::Object(b)) = (previous, current) {
        for (key, value) in b {
            if a.get(key) != Some(value) {
                let before = a.get(key).map_or("nothing".to_string(), |v| v.to_string());
                return format!("{key} was {before}, now {value}");
            }
        }
    }
    "its config.json differs".to_string()
}

#[cfg(test)]
mod tests {
    use super::how_to_resume;
    use serde_json::json;

    #[test]
    fn refusals_name_the_flags_that_resume_a_run() {
        let before = json!({"dtype": "quantized", "kernels": "stored v1", "batch_tokens": 4096});
        let now = json!({"dtype": "quantized-tiebreak", "kernels": "stored v1; near ties"});
        assert_eq!(
            how_to_resume(&before, &now),
            "to resume it, run again with --batch-tokens 4096 --dtype quantized; or "
        );
        // Fields left out of older configurations take their defaults.
        let now = json!({"dtype": "quantized", "kernels": "stored v1", "batch_tokens": 4096,
                         "device": "cuda", "debias": "pride"});
        assert_eq!(
            how_to_resume(&before, &now),
            "to resume it, run again with --debias none --device cpu; or "
        );
    }

    #[test]
    fn refusals_say_when_no_flag_resumes_a_run() {
        let before = json!({"valuelens": "0.1.0", "dtype": "int8", "kernels": "int8 v1"});
        let now = json!({"valuelens": "0.1.0", "dtype": "int8", "kernels": "int8 v2"});
        let hint = how_to_resume(&before, &now);
        assert!(hint.contains("cannot resume here"), "{hint}");
        assert!(hint.contains("valuelens 0.1.0"), "{hint}");
        let before = json!({"dtype": "int8", "selection": {"countries": ["Egypt"]}});
        let now = json!({"dtype": "f32", "selection": {"countries": ["India"]}});
        assert_eq!(how_to_resume(&before, &now), "");
    }
}
