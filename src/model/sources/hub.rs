//! `--model hf:org/name[@revision][:file.gguf]`: models from the Hugging Face Hub, kept in the
//! standard Hub cache (`$HF_HUB_CACHE`, else `$HF_HOME/hub`, else `~/.cache/huggingface/hub`;
//! `models--org--name/{refs,snapshots,blobs}`) so that Python tools and valuelens share files.
//!
//! Files already in the cache are used without touching the network. Others are downloaded
//! with hf-hub (token from `HF_TOKEN`, else the cache's `token` file), unless
//! `HF_HUB_OFFLINE=1`, in which case a missing file is an error that says so.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use hf_hub::api::sync::ApiBuilder;
use hf_hub::{Cache, Repo, RepoType};

/// A parsed `hf:` model argument.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubModel {
    /// `org/name`.
    pub repo: String,
    /// A branch, tag or commit hash (`main` unless given).
    pub revision: String,
    /// The GGUF file in the repository, for GGUF repositories; `None` means a safetensors
    /// checkpoint (`config.json`, `*.safetensors`, `tokenizer.json`).
    pub file: Option<String>,
}

impl HubModel {
    /// Parses `hf:org/name`, `hf:org/name@revision`, `hf:org/name:file.gguf` or
    /// `hf:org/name@revision:file.gguf`.
    pub fn parse(spec: &str) -> Result<Self> {
        let usage =
            "expected hf:org/name, hf:org/name@revision or hf:org/name[@revision]:file.gguf";
        let rest = spec
            .strip_prefix("hf:")
            .with_context(|| format!("'{spec}': {usage}"))?;
        let (repo_and_revision, file) = match rest.split_once(':') {
            Some((repo, file)) => (repo, Some(file.to_string())),
            None => (rest, None),
        };
        let (repo, revision) = match repo_and_revision.split_once('@') {
            Some((repo, revision)) => (repo, revision.to_string()),
            None => (repo_and_revision, "main".to_string()),
        };
        let valid_repo = repo.split('/').count() == 2 && repo.split('/').all(|p| !p.is_empty());
        if !valid_repo || revision.is_empty() {
            bail!("'{spec}': {usage}");
        }
        if let Some(file) = &file {
            if !file.ends_with(".gguf") {
                bail!("'{spec}': the file after ':' must be a .gguf file; {usage}");
            }
        }
        Ok(Self {
            repo: repo.to_string(),
            revision,
            file,
        })
    }

    /// How the model is named in results: `org/name` or `org/name:file.gguf`.
    pub fn display_name(&self) -> String {
        match &self.file {
            Some(file) => format!("{}:{file}", self.repo),
            None => self.repo.clone(),
        }
    }
}

/// The Hub cache folder valuelens uses, as `huggingface_hub` picks it.
pub fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("HF_HUB_CACHE") {
        return PathBuf::from(dir);
    }
    Cache::from_env().path().clone()
}

fn offline() -> bool {
    std::env::var("HF_HUB_OFFLINE")
        .map(|v| matches!(v.to_ascii_lowercase().as_str(), "1" | "true" | "yes" | "on"))
        .unwrap_or(false)
}

/// The local path of `model`: its GGUF file, or the snapshot folder of its safetensors
/// checkpoint, downloading what the cache lacks.
pub fn resolve(model: &HubModel) -> Result<PathBuf> {
    let source = Source::new(model)?;
    if let Some(file) = &model.file {
        return source.fetch(file);
    }
    let config = source.fetch("config.json")?;
    source.fetch("tokenizer.json")?;
    source.fetch_optional("tokenizer_config.json")?;
    match source.fetch_optional("model.safetensors.index.json")? {
        Some(index) => {
            let text = std::fs::read_to_string(&index)
                .with_context(|| format!("cannot read {}", index.display()))?;
            let index_json: serde_json::Value = serde_json::from_str(&text)
                .with_context(|| format!("{} is not valid JSON", index.display()))?;
            let mut shards: Vec<&str> = index_json["weight_map"]
                .as_object()
                .with_context(|| format!("{}: no 'weight_map' object", index.display()))?
                .values()
                .filter_map(|v| v.as_str())
                .collect();
            shards.sort_unstable();
            shards.dedup();
            for shard in shards {
                source.fetch(shard)?;
            }
        }
        None => {
            source.fetch("model.safetensors")?;
        }
    }
    Ok(config
        .parent()
        .expect("a cached file lies in a snapshot folder")
        .to_path_buf())
}

/// One repository at one revision: the cache, and the Hub behind it.
struct Source<'a> {
    model: &'a HubModel,
    cache: PathBuf,
}

impl<'a> Source<'a> {
    fn new(model: &'a HubModel) -> Result<Self> {
        Ok(Self {
            model,
            cache: cache_dir(),
        })
    }

    fn repo_folder(&self) -> PathBuf {
        self.cache
            .join(format!("models--{}", self.model.repo.replace('/', "--")))
    }

    /// `snapshots/<commit>/<file>` when the cache has it; the commit is the revision itself
    /// when that is a hash, else what `refs/<revision>` holds.
    fn cached(&self, file: &str) -> Option<PathBuf> {
        let path = self.snapshot()?.join(file);
        path.is_file().then_some(path)
    }

    /// The cached snapshot folder of the revision, if the cache has one.
    fn snapshot(&self) -> Option<PathBuf> {
        let folder = self.repo_folder();
        let revision = &self.model.revision;
        let is_commit = revision.len() == 40 && revision.chars().all(|c| c.is_ascii_hexdigit());
        let commit = if is_commit {
            revision.clone()
        } else {
            std::fs::read_to_string(folder.join("refs").join(revision))
                .ok()?
                .trim()
                .to_string()
        };
        let snapshot = folder.join("snapshots").join(commit);
        snapshot.is_dir().then_some(snapshot)
    }

    fn fetch(&self, file: &str) -> Result<PathBuf> {
        match self.fetch_or_absent(file)? {
            Some(path) => Ok(path),
            None => bail!(
                "{}@{} has no file '{file}' on the Hugging Face Hub",
                self.model.repo,
                self.model.revision
            ),
        }
    }

    fn fetch_optional(&self, file: &str) -> Result<Option<PathBuf>> {
        self.fetch_or_absent(file)
    }

    /// The file from the cache, else from the Hub; `None` when the Hub says it does not exist.
    /// Offline, a file missing from the cache is an error unless `optional`.
    fn fetch_or_absent(&self, file: &str) -> Result<Option<PathBuf>> {
        if let Some(path) = self.cached(file) {
            return Ok(Some(path));
        }
        let model = self.model;
        // An optional file missing from a cached snapshot was not in the repository when it
        // was downloaded (huggingface_hub falls back to the cache the same way); offline, an
        // absent optional file and an uncached one look alike. Required files (config,
        // tokenizer, weights) still fail below.
        let cached_without_it = is_optional(file) && self.snapshot().is_some();
        if offline() {
            if is_optional(file) {
                return Ok(None);
            }
            bail!(
                "{file} of {}@{} is not in the Hugging Face cache at {} and HF_HUB_OFFLINE is \
                 set: unset HF_HUB_OFFLINE to download it, or point HF_HOME / HF_HUB_CACHE at \
                 the cache that has it",
                model.repo,
                model.revision,
                self.repo_folder().display()
            );
        }
        let mut builder =
            ApiBuilder::from_cache(Cache::new(self.cache.clone())).with_progress(true);
        if let Ok(endpoint) = std::env::var("HF_ENDPOINT") {
            builder = builder.with_endpoint(endpoint);
        }
        if let Ok(token) = std::env::var("HF_TOKEN") {
            builder = builder.with_token(Some(token));
        }
        let api = builder
            .build()
            .context("cannot set up the Hugging Face client")?;
        let repo = api.repo(Repo::with_revision(
            model.repo.clone(),
            RepoType::Model,
            model.revision.clone(),
        ));
        match repo.download(file) {
            Ok(path) => Ok(Some(path)),
            Err(e) if is_optional(file) && e.to_string().contains("404") => Ok(None),
            Err(_) if cached_without_it => Ok(None),
            Err(e) => bail!(
                "cannot download {file} of {}@{} from the Hugging Face Hub: {e}; check the \
                 name and the network, set HF_TOKEN for a gated or private repository, or set \
                 HF_HUB_OFFLINE=1 to use only the cache at {}",
                model.repo,
                model.revision,
                self.cache.display()
            ),
        }
    }
}

fn is_optional(file: &str) -> bool {
    matches!(
        file,
        "tokenizer_config.json" | "model.safetensors.index.json"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_repo_revision_and_file() {
        let m = HubModel::parse("hf:HuggingFaceTB/SmolLM2-135M-Instruct").unwrap();
        assert_eq!(
            (m.repo.as_str(), m.revision.as_str(), m.file),
            ("HuggingFaceTB/SmolLM2-135M-Instruct", "main", None)
        );
        let m = HubModel::parse("hf:unsloth/gemma-3-270m-it-GGUF@v2:gemma-3-270m-it-Q4_K_M.gguf")
            .unwrap();
        assert_eq!(m.revision, "v2");
        assert_eq!(m.file.as_deref(), Some("gemma-3-270m-it-Q4_K_M.gguf"));
        assert_eq!(
            m.display_name(),
            "unsloth/gemma-3-270m-it-GGUF:gemma-3-270m-it-Q4_K_M.gguf"
        );
        for bad in [
            "hf:",
            "hf:name",
            "hf:a/b/c",
            "hf:org/name@",
            "hf:org/name:weights.bin",
        ] {
            assert!(HubModel::parse(bad).is_err(), "{bad}");
        }
    }
}
