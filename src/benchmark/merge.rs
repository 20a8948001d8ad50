//! `valuelens merge`: a run's results from the units its parts stored — shards that shared one
//! results folder, or shards in a folder each — after checking that all the folders hold one
//! configuration and that every unit of the run is there exactly once. Neither the model nor
//! its weights are needed: a unit's requests are checked by their ids, which name questions,
//! not prompt text.

use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};

use super::execute::Outcome;
use super::lock::{self, RunLock};
use super::record::{PartRecord, PARTS_DIR};
use super::shard::assign;
use super::store::{difference, UnitStore};
use super::units::Plan;
use super::{write_results, RunResults};
use crate::tasks::pride::{Debias, Sample};
use crate::tasks::{PromptFormat, Selection};
use crate::{verified, via};

/// What `valuelens merge` is asked.
#[derive(Debug, Clone)]
pub struct MergeOptions {
    /// The results folders the parts wrote (one, when shards shared it).
    pub inputs: Vec<PathBuf>,
    /// Where the results go; by default the one input folder.
    pub out: Option<PathBuf>,
    /// The VIA CSV the run scored; by default the one in data/.
    pub data: Option<PathBuf>,
}

/// How many names an error lists before it counts the rest.
const LISTED: usize = 12;

fn listed(names: &[String]) -> String {
    let mut text = names
        .iter()
        .take(LISTED)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if names.len() > LISTED {
        text.push_str(&format!(" and {} more", names.len() - LISTED));
    }
    text
}

/// The shard count N of parts named `shard-K-of-N`, if they agree on one.
fn shard_count(parts: &[(PathBuf, PartRecord)]) -> Option<usize> {
    let counts: HashSet<usize> = parts
        .iter()
        .filter_map(|(_, part)| part.part.rsplit_once("-of-")?.1.parse().ok())
        .collect();
    match counts.len() {
        1 => counts.into_iter().next(),
        _ => None,
    }
}

/// Checks the parts in `options.inputs` and writes the run's results into the output folder.
pub fn merge(options: &MergeOptions) -> Result<RunResults> {
    let started = Instant::now();
    let mut inputs: Vec<(PathBuf, PathBuf)> = Vec::new();
    for dir in &options.inputs {
        let canonical = fs::canonicalize(dir)
            .with_context(|| format!("cannot open the results folder {}", dir.display()))?;
        if !inputs.iter().any(|(_, seen)| *seen == canonical) {
            inputs.push((dir.clone(), canonical));
        }
    }
    let out = match (&options.out, inputs.as_slice()) {
        (Some(out), _) => out.clone(),
        (None, [(only, _)]) => only.clone(),
        (None, []) => bail!("give the results folders to merge"),
        (None, _) => bail!("merging {} folders needs --out DIR", inputs.len()),
    };

    let (first, _) = &inputs[0];
    let config = UnitStore::config_of(first)?;
    for (dir, _) in &inputs[1..] {
        let other = UnitStore::config_of(dir)?;
        if other != config {
            bail!(
                "{} and {} hold runs of different configurations ({}); merge only the parts of \
                 one run",
                first.display(),
                dir.display(),
                difference(
                    &serde_json::to_value(&config)?,
                    &serde_json::to_value(&other)?
                )
            );
        }
    }
    let mut parts = Vec::new();
    for (dir, _) in &inputs {
        parts.extend(PartRecord::read_all(dir)?);
    }
    let Some((first_path, first_part)) = parts.first().cloned() else {
        bail!(
            "{} has no {PARTS_DIR}/*.json: its units were scored before valuelens recorded \
             parts; finish the run with `valuelens run` and the same arguments instead",
            first.display()
        );
    };
    for (path, part) in &parts[1..] {
        if part.model.name != first_part.model.name || part.scoring != first_part.scoring {
            bail!(
                "{} ran {} with {} scoring but {} ran {} with {} scoring: give the parts the \
                 same --model and --scoring",
                first_path.display(),
                first_part.model.name,
                first_part.scoring.name(),
                path.display(),
                part.model.name,
                part.scoring.name()
            );
        }
    }

    let data = via::setup::via_csv(options.data.as_deref())?;
    let data_sha256 = verified::sha256_file(&data)?;
    if data_sha256 != config.data_sha256 {
        bail!(
            "{} is not the data the run scored (its sha256 is {data_sha256}, the run's {}): give \
             --data with the run's VIA CSV (its parts read {})",
            data.display(),
            config.data_sha256,
            first_part.data.file
        );
    }
    let dataset = via::Dataset::load(&data)?;
    let selection = Selection::from_names(&config.selection)
        .with_context(|| format!("{}'s configuration", first.display()))?;
    let sample = match config.debias {
        Debias::None => None,
        Debias::Pride => Some(Sample::draw(
            &dataset,
            &selection,
            config.protocol,
            &config.pride.unwrap_or_default(),
        )),
    };
    // Only the requests' ids are compared, and those do not depend on the prompt format.
    let format = PromptFormat::Plain;
    let plan = Plan {
        dataset: &dataset,
        format: &format,
        selection: &selection,
        protocol: config.protocol,
        sample,
    };

    // The folder the shards share is locked before it is read, so that a merge while a shard
    // still scores is refused, naming it; a new folder only once there is something to write.
    let out_is_input = fs::canonicalize(&out)
        .is_ok_and(|canonical| inputs.iter().any(|(_, seen)| *seen == canonical));
    let mut lock = match out_is_input {
        true => Some(RunLock::acquire(&out)?),
        false => None,
    };
    let stores: Vec<UnitStore> = inputs
        .iter()
        .map(|(dir, _)| UnitStore::existing(dir))
        .collect();

    let units = plan.units();
    let names: HashSet<String> = units.iter().map(|unit| unit.name()).collect();
    let mut foreign = Vec::new();
    for store in &stores {
        for name in store.unit_names()? {
            if !names.contains(&name) {
                foreign.push(format!("{name} (in {})", store_folder(store, &name)));
            }
        }
    }
    let mut found = Vec::with_capacity(units.len());
    let mut missing = Vec::new();
    let mut twice = Vec::new();
    for (index, &unit) in units.iter().enumerate() {
        let holders: Vec<&UnitStore> = stores.iter().filter(|store| store.holds(unit)).collect();
        match holders.as_slice() {
            [] => missing.push(index),
            [store] => {
                let (requests, own_count) = plan.requests(unit)?;
                match store.load(unit, &requests)? {
                    Some(scores) => found.push((unit, scores, own_count)),
                    None => foreign.push(format!(
                        "{} (not this run's questions, or damaged)",
                        store.path(unit).display()
                    )),
                }
            }
            several => twice.push(format!(
                "{} (in {})",
                unit.name(),
                several
                    .iter()
                    .map(|store| store.path(unit).display().to_string())
                    .collect::<Vec<_>>()
                    .join(" and ")
            )),
        }
    }
    if !foreign.is_empty() {
        bail!(
            "units that are not this run's: {}; remove them or merge without their folders",
            listed(&foreign)
        );
    }
    if !twice.is_empty() {
        bail!(
            "units stored in more than one folder: {}; give each part's folder once",
            listed(&twice)
        );
    }
    if !missing.is_empty() {
        let costs: Vec<u64> = units.iter().map(|&unit| plan.weight(unit)).collect();
        let missing_names: Vec<String> = match shard_count(&parts) {
            Some(count) => {
                let owners = assign(&costs, count);
                missing
                    .iter()
                    .map(|&i| format!("{} (shard {}/{count})", units[i].name(), owners[i]))
                    .collect()
            }
            None => missing.iter().map(|&i| units[i].name()).collect(),
        };
        bail!(
            "{} of the run's {} units are missing: {}; score them (run their shards again, or \
             the run without --shard) and merge again",
            missing.len(),
            units.len(),
            listed(&missing_names)
        );
    }

    if lock.is_none() {
        lock = Some(RunLock::acquire(&out)?);
        let target = lock::while_binding(&out, || UnitStore::open(&out, &config, false))?;
        for (unit, scores, _) in &found {
            target.save(*unit, scores)?;
        }
    }
    let mut outcome = Outcome {
        units: units.len(),
        resumed_units: units.len(),
        ..Outcome::default()
    };
    for (unit, scores, own_count) in &found {
        outcome.add(&plan, *unit, scores, *own_count);
    }
    let part_records: Vec<PartRecord> = parts.into_iter().map(|(_, part)| part).collect();
    let pride = config.pride;
    let results = write_results(
        out,
        &plan,
        &outcome,
        &first_part,
        pride,
        part_records,
        started,
    );
    drop(lock);
    results
}

/// The results folder of a stored unit file, for messages.
fn store_folder(store: &UnitStore, name: &str) -> String {
    let path = store.path_of_name(name);
    path.parent().and_then(Path::parent).map_or_else(
        || path.display().to_string(),
        |dir| dir.display().to_string(),
    )
}
