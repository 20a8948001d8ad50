//! A whole benchmark run: the options and the configuration that a results folder is bound to
//! (`config`), the units a run is cut into (`units`), their stored progress (`store`) under a
//! lock on the folder (`lock`), the shards a run may be cut into for several processes
//! (`shard`), scoring them (`execute`), and the results folder — CSVs, the
//! measures, figures and `run.json` (`record`) — with the summary that ends a run (`summary`).
//! `recompute` gives the measures from files alone (`valuelens metrics`).

pub mod config;
pub mod execute;
pub mod lock;
pub mod merge;
pub mod recompute;
pub mod record;
pub mod shard;
pub mod store;
pub mod summary;
pub mod units;

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Result};
use indicatif::ProgressBar;

use crate::model::device::device_name;
use crate::model::kernels::{matmul_kernels, CpuFeatures};
use crate::model::{resolve, Model, ResolvedModel};
use crate::output::{write_atomically, write_json_line};
use crate::report::{figures, results, MetricsReport};
use crate::tasks::pride::{Debias, PrideSettings, Sample};
use crate::tasks::PromptFormat;
use crate::{verified, via};
use config::{default_results_folder, prompt_format, RunConfig, RunOptions};
use lock::RunLock;
use record::{
    DataRecord, ItemCounts, ModelRecord, PartRecord, PrideRecord, RunRecord, SettingsRecord,
    Timings, UnitCounts, RUN_RECORD_FILE, RUN_RECORD_SCHEMA, WHOLE_PART,
};
use shard::Shard;
use store::UnitStore;
use units::Plan;

/// What a run ends with: the results of a whole run, or one shard's part of them.
pub enum Finished {
    Run(Box<RunResults>),
    Shard(ShardResults),
}

impl Finished {
    /// What to tell the user at the end.
    pub fn summary(&self) -> String {
        match self {
            Finished::Run(results) => results.summary(),
            Finished::Shard(results) => results.summary(),
        }
    }
}

/// A finished shard: its units are stored in the results folder; the results are not written.
pub struct ShardResults {
    pub out: PathBuf,
    pub shard: Shard,
    pub units: usize,
    pub resumed_units: usize,
    pub total_units: usize,
    pub computed_tokens: usize,
    pub scoring_s: f64,
}

impl ShardResults {
    pub fn summary(&self) -> String {
        format!(
            "shard {} done: {} of the run's {} units ({} resumed), {} tokens computed in {:.1} s, \
             stored in {}\nOnce every shard is done, `valuelens merge` with the results folder(s) writes \
             the results (or the same command without --shard, which scores any unit still missing).\n",
            self.shard,
            self.units,
            self.total_units,
            self.resumed_units,
            self.computed_tokens,
            self.scoring_s,
            self.out.display()
        )
    }
}

/// A finished run: where its results are, its measures and its record.
pub struct RunResults {
    pub out: PathBuf,
    pub report: MetricsReport,
    pub record: RunRecord,
    /// The figures written.
    pub figures: Vec<PathBuf>,
}

impl RunResults {
    /// The one-screen summary of the run.
    pub fn summary(&self) -> String {
        summary::summary(&self.report, &self.record, &self.out, self.figures.len())
    }
}

/// What a run reads before it scores: the data, and the model's source and prompt format.
struct Inputs {
    data: PathBuf,
    dataset: via::Dataset,
    model: ResolvedModel,
    format: PromptFormat,
}

impl Inputs {
    fn of(options: &RunOptions) -> Result<Self> {
        let data = via::setup::via_csv(options.data.as_deref())?;
        let dataset = via::Dataset::load(&data)?;
        let model = resolve(&options.model)?;
        let format = prompt_format(&model.source, options.chat_template)?;
        Ok(Self {
            data,
            dataset,
            model,
            format,
        })
    }
}

/// The units `options` ask of `dataset` in `format`, with PriDe's sample when debiasing.
fn plan<'a>(
    options: &'a RunOptions,
    dataset: &'a via::Dataset,
    format: &'a PromptFormat,
) -> Plan<'a> {
    let sample = match options.debias {
        Debias::None => None,
        Debias::Pride => Some(Sample::draw(
            dataset,
            &options.selection,
            options.protocol,
            &options.pride,
        )),
    };
    Plan {
        dataset,
        format,
        selection: &options.selection,
        protocol: options.protocol,
        sample,
    }
}

/// Runs the benchmark as `options` say: scores every unit not already in the results folder
/// (taking its lock for the whole run), then writes the CSVs, the measures, the figures and
/// run.json. With a shard, scores only the shard's units not already there and stops.
/// `progress` shows the scoring.
pub fn run(options: &RunOptions, progress: &ProgressBar) -> Result<Finished> {
    let started = Instant::now();
    let Inputs {
        data,
        dataset,
        model,
        format,
    } = Inputs::of(options)?;
    let plan = plan(options, &dataset, &format);
    let out = options.out.clone().unwrap_or_else(|| {
        default_results_folder(
            &model.name,
            options.protocol,
            options.debias,
            &options.selection,
        )
    });
    if options.shard.is_some() && options.force {
        bail!(
            "--force would discard the other shards' units: run it once without --shard to \
             start the folder over, then start the shards"
        );
    }
    let _lock = match options.shard {
        None => RunLock::acquire(&out)?,
        Some(shard) => RunLock::acquire_shard(&out, shard)?,
    };
    let model_sha256 = model.source.sha256()?;
    let data_sha256 = verified::sha256_file(&data)?;
    let config = RunConfig::new(options, model_sha256.clone(), data_sha256.clone());
    let store = lock::while_binding(&out, || UnitStore::open(&out, &config, options.force))?;

    let loaded = Model::load_resolved(&model, &options.placement)?;
    let load_s = started.elapsed().as_secs_f64();
    let all_units = plan.units();
    let units = match options.shard {
        None => all_units.clone(),
        Some(shard) => {
            let costs: Vec<u64> = all_units.iter().map(|&unit| plan.weight(unit)).collect();
            shard
                .select(&costs)
                .into_iter()
                .map(|i| all_units[i])
                .collect()
        }
    };
    let outcome = execute::execute(&plan, &units, &loaded, &options.engine, &store, progress)?;
    progress.finish_and_clear();
    let part = PartRecord {
        part: options
            .shard
            .map_or_else(|| WHOLE_PART.to_string(), |shard| shard.file_stem()),
        valuelens: env!("CARGO_PKG_VERSION").to_string(),
        host: lock::host_name(),
        model: ModelRecord {
            name: model.name.clone(),
            file: model.source.describe(),
            sha256: model_sha256,
            architecture: loaded.architecture.clone(),
            dtype: options.placement.precision,
            device: device_name(&loaded.device),
            matmul_kernels: matmul_kernels(options.placement.precision, loaded.device.is_cpu())?,
            cpu_features: CpuFeatures::detect()
                .names()
                .into_iter()
                .map(String::from)
                .collect(),
            converted: loaded.converted.clone(),
        },
        data: DataRecord {
            file: data.display().to_string(),
            sha256: data_sha256,
            rows: dataset.rows.len(),
            usable_pairs: dataset.usable_pairs().count(),
        },
        scoring: options.scoring,
        prompt_format: format.describe().to_string(),
        settings: SettingsRecord {
            chat_template: options.chat_template,
            batch_tokens: options.engine.batch_tokens,
            share_prefixes: options.engine.share_prefixes,
            prefix_cache_mb: options.engine.prefix_cache_bytes >> 20,
            threads: rayon::current_num_threads(),
        },
        units: UnitCounts {
            total: outcome.units,
            resumed: outcome.resumed_units,
        },
        tokens: outcome.stats,
        timings: Timings {
            load_s,
            scoring_s: outcome.session_seconds,
            compute_s_all_units: outcome.compute_seconds,
            wall_s: started.elapsed().as_secs_f64(),
        },
    };
    part.write(&out)?;
    if let Some(shard) = options.shard {
        return Ok(Finished::Shard(ShardResults {
            out,
            shard,
            units: outcome.units,
            resumed_units: outcome.resumed_units,
            total_units: all_units.len(),
            computed_tokens: outcome.stats.computed_tokens,
            scoring_s: outcome.session_seconds,
        }));
    }
    let results = write_results(
        out,
        &plan,
        &outcome,
        &part,
        config.pride,
        Vec::new(),
        started,
    )?;
    Ok(Finished::Run(Box::new(results)))
}

/// Writes a run's results into `out` from all its units' `outcome`: the CSVs, the measures,
/// the figures and run.json (what ran as `part` says; `parts` where it ran in several).
fn write_results(
    out: PathBuf,
    plan: &Plan,
    outcome: &execute::Outcome,
    part: &PartRecord,
    pride_settings: Option<PrideSettings>,
    parts: Vec<PartRecord>,
    started: Instant,
) -> Result<RunResults> {
    let permuted = plan.sample.as_ref().map(|_| recompute::Permuted {
        stated: &outcome.permuted_stated,
        action: &outcome.permuted_action,
    });
    let (report, priors) = recompute::report_of_items(
        &part.model.name,
        &outcome.stated,
        &outcome.action,
        permuted,
        part.scoring,
    );
    results::write_stated(
        &out.join("stated.csv"),
        &outcome.stated,
        priors.task1.as_ref(),
    )?;
    results::write_action(
        &out.join("action.csv"),
        &outcome.action,
        priors.task2.as_ref(),
    )?;
    let mut pride = None;
    if let Some(sample) = &plan.sample {
        results::write_pride(
            &out.join(results::PRIDE_FILE),
            &outcome.permuted_stated,
            &outcome.permuted_action,
        )?;
        pride = Some(PrideRecord {
            settings: pride_settings.unwrap_or_default(),
            task1_prompts: sample.task1.len(),
            task2_questions: sample.task2.len(),
            computed_tokens: outcome.permuted_tokens,
            compute_s: outcome.permuted_seconds,
        });
    }
    report.write(&out)?;
    let figures = figures::write_figures(&out.join("figures"), &report)?;
    let record = RunRecord {
        schema: RUN_RECORD_SCHEMA,
        valuelens: env!("CARGO_PKG_VERSION").to_string(),
        model: part.model.clone(),
        data: part.data.clone(),
        protocol: plan.protocol,
        debias: match plan.sample {
            Some(_) => Debias::Pride,
            None => Debias::None,
        },
        pride,
        task1_variants: plan.protocol.task1_variants(),
        task2_variants: plan.protocol.task2_variants(),
        scoring: part.scoring,
        selection: plan.selection.names(),
        prompt_format: part.prompt_format.clone(),
        settings: part.settings.clone(),
        units: UnitCounts {
            total: outcome.units,
            resumed: outcome.resumed_units,
        },
        items: ItemCounts {
            stated: outcome.stated.len(),
            action: outcome.action.len(),
        },
        tokens: outcome.stats,
        timings: Timings {
            load_s: part.timings.load_s,
            scoring_s: outcome.session_seconds,
            compute_s_all_units: outcome.compute_seconds,
            wall_s: started.elapsed().as_secs_f64(),
        },
        computed_tokens_per_s: outcome.stats.computed_tokens as f64
            / outcome.compute_seconds.max(1e-9),
        parts,
    };
    record.write(&out.join(RUN_RECORD_FILE))?;
    Ok(RunResults {
        out,
        report,
        record,
        figures,
    })
}

/// Writes the requests a run with `options` would score (JSONL `id, context, continuation`)
/// to `path`, without loading the model's weights; returns how many.
pub fn dump_requests(options: &RunOptions, path: &Path) -> Result<usize> {
    let inputs = Inputs::of(options)?;
    let plan = plan(options, &inputs.dataset, &inputs.format);
    let mut n = 0usize;
    write_atomically(path, |out| {
        for unit in plan.units() {
            for request in plan.requests(unit)?.0 {
                write_json_line(out, &request)?;
                n += 1;
            }
        }
        Ok(())
    })?;
    Ok(n)
}
