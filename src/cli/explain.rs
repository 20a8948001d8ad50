//! `valuelens explain`: the paper's Table-14 experiment with a local observer.

use std::path::PathBuf;

use anyhow::{bail, Result};

use valuelens::explain::prompts::Setting;
use valuelens::explain::target::TargetSource;
use valuelens::explain::{self, Draw, ExplainOptions};
use valuelens::output::{write_atomically, write_json_line};
use valuelens::via::setup::released_files_dir;

use super::args::ExplainArgs;
use super::progress_bar;

fn parse_settings(list: &str) -> Result<Vec<Setting>> {
    let mut settings = Vec::new();
    for name in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let Some(setting) = Setting::parse(name) else {
            bail!("--settings: unknown setting '{name}'; the settings are act, attr, exp, all");
        };
        if !settings.contains(&setting) {
            settings.push(setting);
        }
    }
    if settings.is_empty() {
        bail!("--settings is empty; give some of act, attr, exp, all");
    }
    Ok(settings)
}

/// `paper:gpt-3.5-turbo` → `gpt-3.5-turbo`, a file → its stem.
fn short_name(target: &str) -> String {
    match target.strip_prefix("paper:") {
        Some(name) => name.to_string(),
        None => PathBuf::from(target)
            .file_stem()
            .map_or("target".into(), |s| s.to_string_lossy().into_owned()),
    }
}

pub fn explain(args: ExplainArgs) -> Result<()> {
    let settings = parse_settings(&args.settings)?;
    if args.examples_per_class == 0 || args.tests_per_class == 0 {
        bail!("--examples-per-class and --tests-per-class must be at least 1");
    }
    let target = TargetSource::parse(
        &args.target,
        args.target_stated.as_deref(),
        &released_files_dir(),
    )?;
    let out = args.out.clone().unwrap_or_else(|| {
        let observer = args.observer.replace(['/', ':'], "_");
        PathBuf::from("results").join(format!("explain-{observer}-{}", short_name(&args.target)))
    });
    let options = ExplainOptions {
        observer: args.observer.clone(),
        placement: args.compute.placement()?,
        engine: args.compute.engine_options_for(&args.observer)?,
        target,
        target_name: args.target.clone(),
        settings,
        data: args.data.clone(),
        draw: Draw {
            examples_per_class: args.examples_per_class,
            tests_per_class: args.tests_per_class,
            seed: args.seed,
            ..Draw::default()
        },
    };
    if let Some(path) = &args.dump_requests {
        let prepared = explain::prepare(&options)?;
        write_atomically(path, |out| {
            for request in &prepared.requests {
                write_json_line(out, request)?;
            }
            Ok(())
        })?;
        eprintln!(
            "wrote {} requests to {}",
            prepared.requests.len(),
            path.display()
        );
        return Ok(());
    }
    let bar = progress_bar(
        "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} tokens ({per_sec}, ETA {eta})",
    );
    let report = explain::run(&options, Some(&bar))?;
    bar.finish_and_clear();
    report.write(&out)?;
    print!("{}", report.summary());
    println!("→ {}", out.display());
    Ok(())
}
