//! `valuelens models` and `valuelens export`.

use anyhow::{bail, Result};

use valuelens::model::architectures;
use valuelens::model::formats::export::{
    export, export_gguf, export_tokenizer, export_without_weights,
};
use valuelens::model::formats::open::open_checkpoint;
use valuelens::model::formats::synthetic::parse_format;
use valuelens::model::resolve;
use valuelens::model::sources::{registry, stores};
use valuelens::model::tokenizer::TextTokenizer;

use super::args::{ExportArgs, ExportFormat, ModelsAction};

pub fn models(action: Option<ModelsAction>) -> Result<()> {
    match action.unwrap_or(ModelsAction::List) {
        ModelsAction::List => list_models(),
        ModelsAction::Fetch { name } => {
            let registry = registry::Registry::builtin()?;
            let name = name.unwrap_or_else(|| registry.default.clone());
            let path = registry::ensure(registry.get(&name)?, &registry::models_dir())?;
            println!("{}", path.display());
            Ok(())
        }
    }
}

/// `valuelens models --local`: the local stores' models, a table or JSON.
pub fn list_local(json: bool) -> Result<()> {
    let models = stores::list_local();
    if json {
        println!("{}", serde_json::to_string_pretty(&models)?);
        return Ok(());
    }
    if models.is_empty() {
        println!(
            "no models in Ollama's store, LM Studio's folders ({}) or the Hugging Face cache ({})",
            stores::lmstudio_roots()
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
            valuelens::model::sources::hub::cache_dir().display()
        );
        return Ok(());
    }
    let form_width = models
        .iter()
        .map(|m| m.form.chars().count())
        .max()
        .unwrap_or(4)
        .max(4);
    println!(
        "{:<form_width$}  {:<10} {:>7} {:<12} {:>9}  runs",
        "form", "arch", "params", "format", "size"
    );
    for m in &models {
        let parameters = m.parameters.map_or("–".to_string(), |p| match p {
            p if p >= 1_000_000_000 => format!("{:.1}B", p as f64 / 1e9),
            p => format!("{:.0}M", p as f64 / 1e6),
        });
        println!(
            "{:<form_width$}  {:<10} {:>7} {:<12} {:>7.2}GB  {}",
            m.form,
            m.architecture.as_deref().unwrap_or("–"),
            parameters,
            m.format,
            m.size as f64 / 1e9,
            match &m.not_runnable {
                None => "yes".to_string(),
                Some(why) => format!("no: {why}"),
            }
        );
    }
    Ok(())
}

pub fn export_model(args: ExportArgs) -> Result<()> {
    let model = resolve(&args.model)?;
    let mut checkpoint = open_checkpoint(&model.source)?;
    if args.format == ExportFormat::Gguf {
        if args.tokenizer_only || args.without_weights || args.shard_mb.is_some() {
            bail!("--format gguf writes one whole file: drop --tokenizer-only, --without-weights and --shard-mb");
        }
        let storage = args
            .gguf_type
            .as_deref()
            .map(|name| parse_format("--gguf-type", name))
            .transpose()?;
        let out = &args.out;
        if out.exists() {
            bail!("{} exists; give another --out", out.display());
        }
        let (converted, bytes) = export_gguf(&mut checkpoint, out, storage)?;
        eprintln!(
            "wrote {} ({} as GGUF, {:.2} GB; {converted} tensors converted)",
            out.display(),
            args.model,
            bytes as f64 / 1e9
        );
        return Ok(());
    }
    if args.gguf_type.is_some() {
        bail!("--gguf-type needs --format gguf");
    }
    let tokenizer = TextTokenizer::from_checkpoint(&checkpoint)?;
    let out = &args.out;
    if args.tokenizer_only {
        export_tokenizer(&checkpoint, &tokenizer, out)?;
    } else if args.without_weights {
        export_without_weights(&checkpoint, &tokenizer, out, args.dtype)?;
    } else {
        let shard_bytes = args.shard_mb.map(|mb| mb.max(1) * 1_000_000);
        export(&mut checkpoint, &tokenizer, out, args.dtype, shard_bytes)?;
    }
    eprintln!("wrote {} ({} as safetensors)", out.display(), args.model);
    Ok(())
}

fn list_models() -> Result<()> {
    let registry = registry::Registry::builtin()?;
    let dir = registry::models_dir();
    println!(
        "{:<22} {:<8} {:>9}  {:<8} description",
        "name", "arch", "size", "status"
    );
    for m in &registry.models {
        let fetched = dir.join(&m.file).is_file();
        let default = if m.name == registry.default {
            " (default)"
        } else {
            ""
        };
        println!(
            "{:<22} {:<8} {:>7.1}MB  {:<8} {}{default}",
            m.name,
            m.architecture,
            m.size as f64 / 1e6,
            if fetched { "fetched" } else { "-" },
            m.description
        );
    }
    println!("models folder: {}", dir.display());
    println!(
        "any other model of these architectures loads from a GGUF file, a safetensors folder or \
         hf:org/name:"
    );
    println!(
        "  {:<10} {:<22} config.json model_type",
        "name", "GGUF architecture"
    );
    for architecture in architectures::ALL {
        println!(
            "  {:<10} {:<22} {}",
            architecture.name(),
            architecture.gguf_architecture(),
            architecture.model_types().join(", ")
        );
    }
    println!("  others (mixture-of-experts, vision towers, …) are refused with their model_type");
    Ok(())
}
