//! What `--model` names, resolved to where its weights are: a registry name (fetched on first
//! use), `hf:` (the Hugging Face cache), `ollama:` and `lmstudio:` (those programs' stores), a
//! `.gguf` file (the first of a split one's parts), a safetensors folder, or
//! `synthetic:<shape>` (weights generated from a seed).

pub mod hub;
pub mod registry;
pub mod stores;

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};

use crate::model::formats::synthetic::SyntheticSpec;
use crate::verified;

/// Where a model's weights come from, once resolved.
#[derive(Debug, Clone, PartialEq)]
pub enum ModelSource {
    Gguf(PathBuf),
    /// A folder in the Hugging Face layout (`config.json`, `*.safetensors`, `tokenizer.json`).
    SafetensorsFolder(PathBuf),
    Synthetic(SyntheticSpec),
}

impl ModelSource {
    /// A file or folder on disk: a folder is a safetensors checkpoint, a file a GGUF.
    pub fn from_path(path: &Path) -> Self {
        match path.is_dir() {
            true => Self::SafetensorsFolder(path.to_path_buf()),
            false => Self::Gguf(path.to_path_buf()),
        }
    }

    /// The file or folder, or the synthetic spec, as run.json and messages name it.
    pub fn describe(&self) -> String {
        match self {
            Self::Gguf(path) | Self::SafetensorsFolder(path) => path.display().to_string(),
            Self::Synthetic(spec) => spec.text.clone(),
        }
    }

    /// The sha256 that identifies the weights: of the GGUF file; of a safetensors folder's
    /// files (config, tokenizer and weights); of a synthetic spec's text, whose weights follow
    /// from it (shape and seed) and the build.
    pub fn sha256(&self) -> Result<String> {
        match self {
            // A split GGUF: the sha256 of its parts' sha256s, in order.
            Self::Gguf(path) => match crate::model::formats::gguf::split_parts(path) {
                Some(parts) => {
                    let mut joined = String::new();
                    for part in &parts {
                        joined.push_str(&verified::sha256_file(part)?);
                    }
                    Ok(verified::sha256_bytes(joined.as_bytes()))
                }
                None => verified::sha256_file(path),
            },
            Self::SafetensorsFolder(path) => verified::sha256_folder(path),
            Self::Synthetic(spec) => Ok(verified::sha256_bytes(spec.text.as_bytes())),
        }
    }
}

/// A `--model` argument, resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct ResolvedModel {
    /// How results name the model.
    pub name: String,
    pub source: ModelSource,
}

/// Resolves a `--model` argument. `hf:org/name[@revision][:file.gguf]` comes from the Hugging
/// Face cache (downloaded if missing); a `.gguf` file or a safetensors folder is taken as it
/// is; anything else must be a registry name, whose file is fetched if it is not there yet.
pub fn resolve(spec: &str) -> Result<ResolvedModel> {
    if SyntheticSpec::is_synthetic(spec) {
        return Ok(ResolvedModel {
            name: spec.to_string(),
            source: ModelSource::Synthetic(SyntheticSpec::parse(spec)?),
        });
    }
    if let Some(name) = spec.strip_prefix("ollama:") {
        let path = stores::resolve_ollama(name)?;
        return Ok(ResolvedModel {
            name: format!("ollama:{}", stores::OllamaName::parse(name)?.short()),
            source: ModelSource::Gguf(path),
        });
    }
    if let Some(name) = spec.strip_prefix("lmstudio:") {
        let path = stores::resolve_lmstudio(name)?;
        return Ok(ResolvedModel {
            name: format!("lmstudio:{name}"),
            source: ModelSource::Gguf(path),
        });
    }
    if spec.starts_with("hf:") {
        let model = hub::HubModel::parse(spec)?;
        let path = hub::resolve(&model)?;
        return Ok(ResolvedModel {
            name: model.display_name(),
            source: ModelSource::from_path(&path),
        });
    }
    let looks_like_path = spec.ends_with(".gguf") || spec.contains('/') || spec.contains('\\');
    if looks_like_path || Path::new(spec).exists() {
        let path = PathBuf::from(spec);
        if !path.exists() {
            bail!(
                "model {} does not exist: give a .gguf file, a safetensors folder (config.json, \
                 *.safetensors, tokenizer.json), hf:org/name, or a registry name \
                 (`valuelens models` lists them)",
                path.display()
            );
        }
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| spec.to_string());
        return Ok(ResolvedModel {
            name,
            source: ModelSource::from_path(&path),
        });
    }
    let registry = registry::Registry::builtin()?;
    let entry = registry.get(spec)?;
    let path = registry::ensure(entry, &registry::models_dir())?;
    Ok(ResolvedModel {
        name: entry.name.clone(),
        source: ModelSource::Gguf(path),
    })
}
