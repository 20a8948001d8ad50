//! What a run is: the options it is started with ([`RunOptions`]), and the part of them that
//! changes a score ([`RunConfig`], the resume identity a results folder is bound to).

use std::path::PathBuf;

use anyhow::{anyhow, Result};
use serde::{Deserialize, Serialize};

use super::shard::Shard;
use crate::engine::EngineOptions;
use crate::model::device::device_name;
use crate::model::formats::open::open_checkpoint;
use crate::model::kernels::kernel_arithmetic;
use crate::model::{ModelSource, Placement, Precision};
use crate::prompts::chat::ChatTemplate;
use crate::tasks::pride::{Debias, PrideSettings};
use crate::tasks::{PromptFormat, Protocol, Scoring, Selection, SelectionNames};

/// Whether prompts go through the model's chat template (`--chat-template`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChatTemplateMode {
    /// The model's template, where it has one; else the plain prompt and a newline.
    Auto,
    /// Always the plain prompt and a newline.
    None,
}

/// Everything `valuelens run` is asked to do.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The `--model` argument.
    pub model: String,
    /// The VIA CSV; `None`: the default one, set up on first use.
    pub data: Option<PathBuf>,
    pub protocol: Protocol,
    pub debias: Debias,
    /// Which questions PriDe samples (used with `Debias::Pride`).
    pub pride: PrideSettings,
    pub scoring: Scoring,
    /// The results folder; `None`: [`default_results_folder`].
    pub out: Option<PathBuf>,
    pub selection: Selection,
    pub chat_template: ChatTemplateMode,
    pub placement: Placement,
    pub engine: EngineOptions,
    /// Discard a results folder of another configuration instead of refusing it.
    pub force: bool,
    /// Score only this shard's units, and leave writing the results to a run without one.
    pub shard: Option<Shard>,
}

/// Everything that changes a score: a results folder resumes only a run with the same. Its
/// JSON form (in `<out>/checkpoints/config.json`) keeps the fields and order it had before it
/// was typed, so folders of earlier versions still resume.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunConfig {
    /// The crate version (kernels and prompts may change between versions).
    pub valuelens: String,
    pub model_sha256: String,
    pub data_sha256: String,
    pub protocol: Protocol,
    pub selection: SelectionNames,
    pub chat_template: ChatTemplateMode,
    pub dtype: Precision,
    pub batch_tokens: usize,
    /// The device kind (`cuda`) for GPU runs; kernels differ between kinds of device, not
    /// between GPUs of one kind. CPU runs leave it out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    /// Left out when `none`, as runs before debiasing existed were.
    #[serde(default, skip_serializing_if = "Debias::is_none")]
    pub debias: Debias,
    /// PriDe's sample, for debiased runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pride: Option<PrideSettings>,
    /// What decides a CPU run's numbers beyond its dtype: the arithmetic of valuelens's own
    /// matrix kernels where they compute (int8, bf16), which is the same on every instruction
    /// set, and candle's gemm's instruction set where it is AVX-512 (see
    /// `kernels::kernel_arithmetic`). Left out where neither applies, as it was for runs before
    /// either existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernels: Option<String>,
}

impl RunConfig {
    pub fn new(options: &RunOptions, model_sha256: String, data_sha256: String) -> Self {
        let device = &options.placement.device;
        let device = (!device.is_cpu()).then(|| {
            let name = device_name(device);
            name.split(':').next().unwrap_or_default().to_string()
        });
        Self {
            valuelens: env!("CARGO_PKG_VERSION").to_string(),
            model_sha256,
            data_sha256,
            protocol: options.protocol,
            selection: options.selection.names(),
            chat_template: options.chat_template,
            dtype: options.placement.precision,
            batch_tokens: options.engine.batch_tokens,
            device,
            debias: options.debias,
            pride: (options.debias == Debias::Pride).then_some(options.pride),
            kernels: kernel_arithmetic(&options.placement),
        }
    }
}

/// The precision `--dtype auto` computes a run in, given what it resolved to on the device.
/// On the CPU that is `quantized-tiebreak`, whose recheck makes the raw hard choices (each
/// question's most likely option) f32's. A run that decides on something else — PriDe's
/// prior-divided probabilities (the default) or soft scores — gains nothing from that recheck
/// and pays for it: in the whole default protocol on SmolLM2 it computed 17.8 % of the tokens
/// for 1.5 % of the requests, the run took 1.19× f32's time, and its debiased choices were
/// f32's no more often than without it (their margins are a different, much thinner set of
/// near ties: `benches/results/2026-12-04-full-protocol-dtypes.md`). Such runs compute in
/// `quantized`.
pub fn auto_precision_for_run(resolved: Precision, debias: Debias, scoring: Scoring) -> Precision {
    let decides_on_raw_choices = debias == Debias::None && scoring == Scoring::Hard;
    match resolved {
        Precision::QuantizedTiebreak if !decides_on_raw_choices => Precision::Quantized,
        other => other,
    }
}

/// `results/<model>-<protocol>`, `…-pride` for a debiased run, `…-subset` for a filtered one.
pub fn default_results_folder(
    model_name: &str,
    protocol: Protocol,
    debias: Debias,
    selection: &Selection,
) -> PathBuf {
    let debiased = match debias {
        Debias::None => String::new(),
        other => format!("-{}", other.name()),
    };
    let subset = if selection.is_all() { "" } else { "-subset" };
    let model = model_name.replace(['/', ':'], "_");
    PathBuf::from("results").join(format!("{model}-{}{debiased}{subset}", protocol.name()))
}

/// How prompts reach the model of `source`; a template that cannot render is refused up front.
pub fn prompt_format(source: &ModelSource, mode: ChatTemplateMode) -> Result<PromptFormat> {
    if mode == ChatTemplateMode::None {
        return Ok(PromptFormat::Plain);
    }
    let checkpoint = open_checkpoint(source)?;
    let Some(template) = ChatTemplate::from_checkpoint(&checkpoint)
        .map_err(|e| anyhow!("{e:#}; use --chat-template none to score plain prompts"))?
    else {
        return Ok(PromptFormat::Plain);
    };
    template.render_user("probe").map_err(|e| {
        anyhow!(
            "{}: {e:#}; use --chat-template none to score plain prompts",
            source.describe()
        )
    })?;
    Ok(PromptFormat::Chat(Box::new(template)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn auto_rechecks_near_ties_only_where_a_run_decides_on_raw_choices() {
        use Precision::*;
        let tiebreak = QuantizedTiebreak;
        assert_eq!(
            auto_precision_for_run(tiebreak, Debias::None, Scoring::Hard),
            tiebreak
        );
        assert_eq!(
            auto_precision_for_run(tiebreak, Debias::Pride, Scoring::Hard),
            Quantized
        );
        assert_eq!(
            auto_precision_for_run(tiebreak, Debias::None, Scoring::Soft),
            Quantized
        );
        for other in [F32, Bf16, Quantized] {
            assert_eq!(
                auto_precision_for_run(other, Debias::Pride, Scoring::Hard),
                other
            );
        }
    }

    #[test]
    fn default_folders_name_the_model_protocol_and_subset() {
        let all = Selection::all();
        let some = Selection::parse(Some("Egypt"), None, None).unwrap();
        assert_eq!(
            default_results_folder("smollm2-135m", Protocol::Paper, Debias::None, &all),
            Path::new("results/smollm2-135m-paper")
        );
        assert_eq!(
            default_results_folder("org/name:file.gguf", Protocol::Full, Debias::None, &some),
            Path::new("results/org_name_file.gguf-full-subset")
        );
        assert_eq!(
            default_results_folder("gemma3-270m", Protocol::Paper, Debias::Pride, &some),
            Path::new("results/gemma3-270m-paper-pride-subset")
        );
    }

    /// Results folders written before the configuration was typed must still resume.
    #[test]
    fn the_configuration_reads_and_writes_the_json_of_earlier_versions() {
        let earlier = r#"{
  "valuelens": "0.1.0",
  "model_sha256": "b179",
  "data_sha256": "8922",
  "protocol": "paper",
  "selection": {
    "countries": ["Egypt"],
    "topics": ["Religion"],
    "values": ["Equality"]
  },
  "chat_template": "auto",
  "dtype": "f32",
  "batch_tokens": 8192
}"#;
        let config: RunConfig = serde_json::from_str(earlier).unwrap();
        assert_eq!(config.device, None);
        assert_eq!(config.debias, Debias::None);
        assert_eq!(config.dtype, Precision::F32);
        let written = serde_json::to_string_pretty(&config).unwrap();
        let reparsed: serde_json::Value = serde_json::from_str(&written).unwrap();
        let original: serde_json::Value = serde_json::from_str(earlier).unwrap();
        assert_eq!(reparsed, original);
        let keys: Vec<&String> = reparsed.as_object().unwrap().keys().collect();
        assert_eq!(
            keys,
            [
                "valuelens",
                "model_sha256",
                "data_sha256",
                "protocol",
                "selection",
                "chat_template",
                "dtype",
                "batch_tokens"
            ]
        );
    }
}
