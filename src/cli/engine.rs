//! The engine's commands: `score`, `bench`, `compare` and `tokenize`.

use std::time::Instant;

use anyhow::{Context, Result};
use indicatif::ProgressBar;

use valuelens::engine::agreement::{Agreement, Comparison, Setting};
use valuelens::engine::{self, requests, EngineOptions};
use valuelens::model::device::device_name;
use valuelens::model::formats::open::open_checkpoint;
use valuelens::model::kernels::{matmul_kernels, CpuFeatures};
use valuelens::model::tokenizer::TextTokenizer;
use valuelens::model::{parse_device, resolve, Model, Placement};
use valuelens::output::{refuse_overwriting_input, write_atomically, write_json_line};

use super::args::{BenchArgs, CompareArgs, ModelArg, ScoreArgs, TokenizeArgs};
use super::progress_bar;

/// Requests scored together (and sharing prefixes) at a time: bounds memory for any input.
const STREAM_CHUNK: usize = 8192;

pub fn score(args: ScoreArgs) -> Result<()> {
    let ScoreArgs {
        model: ModelArg { model },
        input,
        output,
        compute,
    } = args;
    let (input, output) = (input.as_path(), output.as_path());
    let options = compute.engine_options()?;
    refuse_overwriting_input(input, output, ("--input", "--output"))?;
    let n_requests = requests::validate_requests(input)?;
    let options = EngineOptions {
        batch_tokens: Model::plan_memory(
            &resolve(&model)?,
            &compute.placement()?,
            options.batch_tokens,
            options.prefix_cache_bytes,
        )?,
        ..options
    };
    let started = Instant::now();
    let model = Model::load_on(&model, &compute.placement()?)?;
    let loaded = started.elapsed();
    let bar = match n_requests {
        0..32 => ProgressBar::hidden(),
        _ => progress_bar(
            "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} tokens ({per_sec}, ETA {eta})",
        ),
    };
    let mut stats = engine::EngineStats::default();
    write_atomically(output, |out| {
        stats = engine::score_stream(
            &model,
            requests::RequestLines::open(input)?,
            &options,
            STREAM_CHUNK,
            Some(&bar),
            |score| requests::write_score(out, &score),
        )
        .with_context(|| format!("{}", input.display()))?;
        Ok(())
    })?;
    bar.finish_and_clear();
    let secs = (started.elapsed() - loaded).as_secs_f64();
    let rechecked = match stats.rechecked_requests {
        0 => String::new(),
        n => format!(
            "; {n} requests of near ties scored again with finer activations, {} of the tokens",
            stats.rechecked_tokens
        ),
    };
    eprintln!(
        "scored {} requests with {} [{} on {}] in {secs:.2} s: {} tokens computed for {} in \
         the requests ({:.0} computed tokens/s; load {:.2} s{rechecked})",
        stats.requests,
        model.name,
        model.precision.name(),
        device_name(&model.device),
        stats.computed_tokens,
        stats.request_tokens,
        stats.computed_tokens as f64 / secs.max(1e-9),
        loaded.as_secs_f64()
    );
    Ok(())
}

pub fn bench(args: BenchArgs) -> Result<()> {
    let BenchArgs {
        model: ModelArg { model },
        input: inputs,
        compute,
        naive,
        repeat,
    } = args;
    let started = Instant::now();
    let mut options = compute.engine_options()?;
    if naive {
        options.batch_tokens = 1;
        options.share_prefixes = false;
    }
    let n_requests = inputs
        .iter()
        .map(|input| requests::validate_requests(input))
        .collect::<Result<Vec<_>>>()?;
    if !naive {
        options.batch_tokens = Model::plan_memory(
            &resolve(&model)?,
            &compute.placement()?,
            options.batch_tokens,
            options.prefix_cache_bytes,
        )?;
    }
    let model = Model::load_on(&model, &compute.placement()?)?;
    let load_s = started.elapsed().as_secs_f64();
    for (input, n_requests) in inputs.iter().zip(n_requests) {
        let mut passes = Vec::with_capacity(repeat.max(1));
        let mut stats = engine::EngineStats::default();
        for _ in 0..repeat.max(1) {
            let scoring = Instant::now();
            stats = engine::score_stream(
                &model,
                requests::RequestLines::open(input)?,
                &options,
                STREAM_CHUNK,
                None,
                |_| Ok(()),
            )?;
            passes.push(scoring.elapsed().as_secs_f64());
        }
        let score_s = passes.iter().copied().fold(f64::INFINITY, f64::min);
        let result = serde_json::json!({
            "model": model.name,
            "input": input.display().to_string(),
            "requests": n_requests,
            "request_tokens": stats.request_tokens,
            "distinct_tokens": stats.distinct_tokens,
            "computed_tokens": stats.computed_tokens,
            "forwards": stats.forwards,
            "rechecked_requests": stats.rechecked_requests,
            "rechecked_tokens": stats.rechecked_tokens,
            "wall_s": started.elapsed().as_secs_f64(),
            "load_s": load_s,
            "score_s": score_s,
            "passes_s": passes,
            "computed_tokens_per_s": stats.computed_tokens as f64 / score_s,
            "request_tokens_per_s": stats.request_tokens as f64 / score_s,
            "requests_per_s": n_requests as f64 / score_s,
            "peak_rss_mb": peak_rss_mb(),
            "settings": {
                "dtype": model.precision,
                "device": device_name(&model.device),
                "matmul_kernels": matmul_kernels(model.precision, model.device.is_cpu())?,
                "cpu_features": CpuFeatures::detect().names(),
                "converted": model.converted,
                "batch_tokens": options.batch_tokens,
                "share_prefixes": options.share_prefixes,
                "naive": naive,
                "threads": rayon::current_num_threads(),
            },
        });
        println!("{result}");
    }
    Ok(())
}

pub fn compare(args: CompareArgs) -> Result<()> {
    let options = args.compute.engine_options()?;
    requests::validate_requests(&args.input)?;
    let limit = args.limit.unwrap_or(usize::MAX);
    let requests: Vec<engine::Request> = requests::RequestLines::open(&args.input)?
        .take(limit)
        .collect::<Result<_>>()?;
    let tested = args.compute.placement()?;
    let mut reference = Placement::new(
        parse_device(&args.reference_device)?,
        args.reference_dtype.unwrap_or(tested.precision),
    );
    if !tested.device.is_cpu() {
        // Against a GPU, the CPU computes half precisions as the GPU does.
        reference = reference.with_gpu_numerics();
    }
    let run = |placement: &Placement| -> Result<(Vec<engine::Score>, Setting)> {
        let model = Model::load_on(&args.model.model, placement)?;
        let started = Instant::now();
        let scores = engine::score(&model, &requests, &options, None)?;
        let setting = Setting {
            device: device_name(&placement.device),
            dtype: placement.precision,
            score_s: started.elapsed().as_secs_f64(),
        };
        Ok((scores, setting))
    };
    let (expected, reference) = run(&reference)?;
    let (actual, tested) = run(&tested)?;
    let comparison = Comparison::new(
        args.model.model.clone(),
        args.input.display().to_string(),
        reference,
        tested,
        Agreement::of(&expected, &actual)?,
        args.tolerance,
    );
    println!("{}", serde_json::to_string(&comparison)?);
    comparison.verdict()
}

pub fn tokenize(args: TokenizeArgs) -> Result<()> {
    let (input, output) = (args.input.as_path(), args.output.as_path());
    refuse_overwriting_input(input, output, ("--input", "--output"))?;
    requests::validate_requests(input)?;
    let model = resolve(&args.model.model)?;
    let tokenizer = TextTokenizer::from_checkpoint(&open_checkpoint(&model.source)?)?;
    let mut n = 0usize;
    write_atomically(output, |out| {
        for request in requests::RequestLines::open(input)? {
            let request = request?;
            let tokens = engine::tokenize_with(&tokenizer, &request)?;
            let line = serde_json::json!({
                "id": request.id,
                "context_tokens": &tokens.tokens[..tokens.context_len],
                "continuation_tokens": tokens.continuation(),
            });
            write_json_line(out, &line)?;
            n += 1;
        }
        Ok(())
    })?;
    eprintln!("wrote the tokens of {n} requests to {}", output.display());
    Ok(())
}

/// The process's peak resident memory (VmHWM) in MiB, where the OS reports it.
fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}
