//! The `serve` command: loads the model, reads what `/tokenizer_info` reports from its file,
//! and serves until SIGTERM.

use std::time::{Duration, Instant};

use anyhow::{bail, Result};

use valuelens::model::device::device_name;
use valuelens::model::formats::open::open_checkpoint;
use valuelens::model::kernels::bf16::Bf16Path;
use valuelens::model::kernels::{CpuFeatures, DtypeChoice};
use valuelens::model::memory;
use valuelens::model::sources::resolve;
use valuelens::model::{Model, Placement, Precision};
use valuelens::serve::{self, BatchPolicy, ModelInfo, ServeOptions};

use super::args::{ModelArg, ServeArgs};

/// The prefix cache's size on the CPU where `--prefix-cache-mb` is not given: ~11,000
/// tokens of SmolLM2-135M, ~2,000 of an 8B Llama.
const DEFAULT_PREFIX_CACHE_MB: usize = 512;

/// What `--dtype auto` computes in for the server on the CPU, where the general choice is
/// `resolved`:
/// - bf16 where the CPU multiplies bf16 in AMX tiles and the weights in bf16 are affordable
///   (see [`bf16_affordable`]): there bf16 is both faster than the stored-format kernels
///   (Task-2 workload 35 s against 58 s) and closer to f32 (mean |Δ| per token 0.013 against
///   0.06–0.07 for SmolLM2's Q4_1 file);
/// - else the stored formats with 8-bit activations (`quantized`): the server scores whole
///   prompts, never questions whose near ties `quantized-tiebreak` could recheck;
/// - f32 where the CPU has neither (`resolved` as it is).
fn auto_on_cpu(spec: &str, resolved: Precision) -> Result<Precision> {
    let in_tiles = matches!(Bf16Path::select(&CpuFeatures::detect()), Ok(Bf16Path::Amx));
    if in_tiles && bf16_affordable(spec)? {
        return Ok(Precision::Bf16);
    }
    Ok(match resolved {
        Precision::QuantizedTiebreak => Precision::Quantized,
        other => other,
    })
}

/// Whether the model's weights in bf16 cost little memory, by the memory plan's estimates from
/// the file's header (no weights read): at most twice what the stored-format kernels hold
/// (files of 8 bits per weight or more: floats, Q8_0), or at most a quarter of the memory this
/// process may still take (a small model of 4-bit blocks; an 8B model of 4-bit blocks keeps its
/// file's size instead).
fn bf16_affordable(spec: &str) -> Result<bool> {
    let checkpoint = open_checkpoint(&resolve(spec)?.source)?;
    let bf16 = memory::need(&checkpoint, Precision::Bf16).fixed;
    let stored = memory::need(&checkpoint, Precision::Quantized).fixed;
    let room = memory::available().map(|(bytes, _)| bytes);
    Ok(bf16 <= 2 * stored || room.is_some_and(|room| 4 * bf16 <= room))
}

pub fn serve(args: ServeArgs) -> Result<()> {
    let ServeArgs {
        model: ModelArg { model },
        host,
        name,
        port,
        api_key,
        compute,
        queue,
        batch_window_ms,
        max_prompts,
        max_body_mb,
    } = args;
    if queue == 0 || max_prompts == 0 || max_body_mb == 0 {
        bail!("--queue, --max-prompts and --max-body-mb must each be at least 1");
    }
    if api_key.as_deref() == Some("") {
        bail!("--api-key is empty; give a key, or leave the flag out to serve without one");
    }
    let mut engine = compute.engine_options()?;
    if compute.prefix_cache_mb.is_none() && compute.placement()?.device.is_cpu() {
        engine.prefix_cache_bytes = DEFAULT_PREFIX_CACHE_MB << 20;
    }
    let engine = compute.plan_options(&model, engine)?;
    let started = Instant::now();
    let mut placement = compute.placement()?;
    if compute.dtype == DtypeChoice::Auto && placement.device.is_cpu() {
        placement = Placement::new(placement.device, auto_on_cpu(&model, placement.precision)?);
    }
    let mut model = Model::load_on(&model, &placement)?;
    if let Some(name) = name {
        model.name = name;
    }
    let checkpoint = open_checkpoint(&model.source)?;
    let text = |which: &str| -> Result<Option<String>> {
        Ok(Some(checkpoint.special_token_text(which)?).filter(|t| !t.is_empty()))
    };
    let info = ModelInfo {
        bos_token: text("bos")?,
        eos_token: text("eos")?,
        chat_template: match checkpoint.has("tokenizer.chat_template") {
            true => Some(checkpoint.string("tokenizer.chat_template")?),
            false => None,
        },
    };
    drop(checkpoint);
    let exposed = !matches!(host.as_str(), "127.0.0.1" | "localhost" | "::1");
    if exposed && api_key.is_none() {
        eprintln!(
            "warning: listening on {host} without --api-key: anyone who can reach this machine \
             can use the model"
        );
    }
    let (name, precision, device) = (
        model.name.clone(),
        model.precision,
        device_name(&model.device),
    );
    let options = ServeOptions {
        host,
        port,
        api_key,
        batch: BatchPolicy {
            queue_capacity: queue,
            window: Duration::from_millis(batch_window_ms),
            batch_tokens: engine.batch_tokens.max(1) * 4,
        },
        engine,
        max_prompts,
        max_body_bytes: max_body_mb << 20,
    };
    let served = serve::serve(model, info, options, |address| {
        eprintln!(
            "serving {name} [{precision:?} on {device}] at http://{address}/v1/completions \
             (loaded in {:.1} s)",
            started.elapsed().as_secs_f64()
        );
    })?;
    eprintln!(
        "served {} requests ({} prompts, {} prompt tokens, {} tokens computed in {} batches); \
         {} refused with a full queue, {} dropped with their client gone",
        served.requests,
        served.prompts,
        served.prompt_tokens,
        served.computed_tokens,
        served.batches,
        served.refused,
        served.abandoned
    );
    if let Some(cache) = served.prefix_cache {
        eprintln!(
            "prefix cache: {:.1} % of looked-up tokens found ({} of {}), {} scores answered \
             from it, {} tokens held in {:.1} MiB of {:.0} MiB, {} evicted",
            100.0 * cache.hit_rate,
            cache.hit_tokens,
            cache.looked_up_tokens,
            cache.answered_positions,
            cache.tokens,
            cache.bytes as f64 / (1u64 << 20) as f64,
            cache.budget_bytes as f64 / (1u64 << 20) as f64,
            cache.evicted_tokens
        );
    }
    Ok(())
}
