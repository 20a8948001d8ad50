//! `valuelens run`, `valuelens merge` and `valuelens metrics`.

use anyhow::{bail, Result};

use valuelens::benchmark::config::{auto_precision_for_run, RunOptions};
use valuelens::benchmark::merge::{self, MergeOptions};
use valuelens::benchmark::recompute::{recompute, ActionInput, MetricsInputs};
use valuelens::benchmark::shard::{self, Shard};
use valuelens::benchmark::{self};
use valuelens::model::kernels::DtypeChoice;
use valuelens::model::Placement;
use valuelens::report::MetricsReport;
use valuelens::tasks::pride::PrideSettings;
use valuelens::tasks::Selection;

use super::args::{LeaderboardArgs, MergeArgs, MetricsArgs, RunArgs};
use super::progress_bar;

/// The shard `--shard` and `--shards` ask for, if any.
fn shard_of(shard: Option<&str>, shards: Option<usize>) -> Result<Option<Shard>> {
    let shard = match shard {
        None if shards.is_some() => bail!("--shards goes with --shard auto"),
        None => return Ok(None),
        Some("auto") => {
            let shard = shard::from_scheduler(|name| std::env::var(name).ok(), shards)?;
            eprintln!("--shard auto: shard {shard}, from the scheduler's environment");
            shard
        }
        Some(text) => {
            let shard = Shard::parse(text)?;
            if shards.is_some_and(|count| count != shard.count) {
                bail!(
                    "--shard {text} and --shards {} disagree",
                    shards.unwrap_or(0)
                );
            }
            shard
        }
    };
    Ok(Some(shard))
}

pub fn run(args: RunArgs) -> Result<()> {
    let mut placement = args.compute.placement()?;
    if args.compute.dtype == DtypeChoice::Auto {
        let precision = auto_precision_for_run(placement.precision, args.debias, args.scoring);
        placement = Placement::new(placement.device, precision);
    }
    let options = RunOptions {
        shard: shard_of(args.shard.as_deref(), args.shards)?,
        engine: args.compute.engine_options_for(&args.model.model)?,
        placement,
        selection: Selection::parse(
            args.countries.as_deref(),
            args.topics.as_deref(),
            args.values.as_deref(),
        )?,
        model: args.model.model,
        data: args.data,
        protocol: args.protocol,
        debias: args.debias,
        pride: PrideSettings {
            fraction: args.pride_fraction,
            seed: args.pride_seed,
        },
        scoring: args.scoring,
        out: args.out,
        chat_template: args.chat_template,
        force: args.force,
    };
    if let Some(path) = &args.dump_requests {
        let n = benchmark::dump_requests(&options, path)?;
        eprintln!("wrote {n} requests to {}", path.display());
        return Ok(());
    }
    let bar = progress_bar("{spinner} [{elapsed_precise}] {wide_bar} {percent}% ETA {eta} · {msg}");
    let finished = benchmark::run(&options, &bar)?;
    print!("{}", finished.summary());
    Ok(())
}

pub fn merge(args: MergeArgs) -> Result<()> {
    let results = merge::merge(&MergeOptions {
        inputs: args.dirs,
        out: args.out,
        data: args.data,
    })?;
    print!("{}", results.summary());
    Ok(())
}

pub fn metrics(args: MetricsArgs) -> Result<()> {
    let action = match (args.action, args.action_misaligned) {
        (Some(path), _) => ActionInput::Results(path),
        (None, Some(path)) => ActionInput::Misaligned(path),
        (None, None) => anyhow::bail!("give --action or --action-misaligned"),
    };
    let recomputed = recompute(&MetricsInputs {
        data: args.data,
        stated: args.stated,
        action,
        model_name: args.model_name,
        scoring: args.scoring,
        debias: args.debias,
        protocol: args.protocol,
    })?;
    for note in &recomputed.notes {
        eprintln!("{note}");
    }
    write_report(&recomputed.report, &args.out)
}

pub fn leaderboard(args: LeaderboardArgs) -> Result<()> {
    let options = valuelens::leaderboard::Options {
        paper: args.paper,
        common: args.common,
        data: args.data,
    };
    let board = valuelens::leaderboard::build(&args.dirs, &options)?;
    let written = board.write(&args.out)?;
    for (rank, entry) in board.entries.iter().enumerate() {
        println!(
            "{:>2}. {}: alignment rate (F1) {:.4}{}",
            rank + 1,
            entry.label,
            entry.report.alignment_rate.overall,
            entry.report.ci_text(|ci| ci.alignment_rate)
        );
    }
    println!(
        "{} rows, {} pairs → {} ({} files: leaderboard.md, .csv, .json, index.html, figures/)",
        board.entries.len(),
        board.pairs.len(),
        args.out.display(),
        written.len()
    );
    Ok(())
}

/// Writes metrics.json and summary.md into `out` and says so in one line.
fn write_report(report: &MetricsReport, out: &std::path::Path) -> Result<()> {
    report.write(out)?;
    println!(
        "{}: alignment rate (F1) {:.4}, {} misaligned cells, distance {:.4} → {}",
        report.model,
        report.alignment_rate.overall,
        report.misaligned.total,
        report.distances.overall,
        out.display()
    );
    Ok(())
}
