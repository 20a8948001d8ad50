//! The `valuelens` binary's commands: its words (`args`) and, per group of commands, the few
//! lines that turn parsed arguments into library calls and print what they return.

pub mod args;
pub mod benchmark;
pub mod engine;
pub mod explain;
pub mod models;
pub mod serve;

use anyhow::{bail, Result};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use valuelens::engine::EngineOptions;
use valuelens::model::{parse_device, resolve, Model, Placement};

use args::ComputeArgs;

impl ComputeArgs {
    pub fn placement(&self) -> Result<Placement> {
        let device = parse_device(&self.device)?;
        let precision = self.dtype.resolve(&device);
        Ok(Placement::new(device, precision))
    }

    /// [`ComputeArgs::engine_options`] with `--batch-tokens` fitted to the memory `model` leaves
    /// (see `Model::plan_memory`): refused before loading where the weights do not fit.
    pub fn engine_options_for(&self, model: &str) -> Result<EngineOptions> {
        self.plan_options(model, self.engine_options()?)
    }

    /// `options` with `--batch-tokens` cut to what memory holds beside their prefix cache.
    pub fn plan_options(&self, model: &str, mut options: EngineOptions) -> Result<EngineOptions> {
        options.batch_tokens = Model::plan_memory(
            &resolve(model)?,
            &self.placement()?,
            options.batch_tokens,
            options.prefix_cache_bytes,
        )?;
        Ok(options)
    }

    pub fn engine_options(&self) -> Result<EngineOptions> {
        if self.batch_tokens == 0 {
            bail!("--batch-tokens must be at least 1");
        }
        Ok(EngineOptions {
            batch_tokens: self.batch_tokens,
            prefix_cache_bytes: self.prefix_cache_mb.unwrap_or(0) << 20,
            ..EngineOptions::default()
        })
    }
}

/// A progress bar on stderr in `template`'s style.
pub fn progress_bar(template: &str) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    bar.set_style(ProgressStyle::with_template(template).expect("the progress template is valid"));
    bar
}
