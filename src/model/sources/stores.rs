//! Models where people already keep them: Ollama's store (`ollama:NAME[:TAG]`, a manifest
//! naming a GGUF blob) and LM Studio's models folder (`lmstudio:PUBLISHER/REPO[/FILE.gguf]`),
//! resolved to the GGUF file they hold; and every model of those stores and of the Hugging Face
//! cache listed from headers and config files alone (`valuelens models --local`).

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::{bail, Context, Result};
use candle_core::quantized::gguf_file::{Content, Value as GgufValue};
use serde::Serialize;
use serde_json::Value;

use super::{hub, registry};
use crate::model::architectures;
use crate::model::formats::gguf::split_parts;
use crate::verified;

const OLLAMA_HOST: &str = "registry.ollama.ai";
const OLLAMA_NAMESPACE: &str = "library";
const OLLAMA_TAG: &str = "latest";
const MODEL_LAYER: &str = "application/vnd.ollama.image.model";
const TENSOR_LAYER: &str = "application/vnd.ollama.image.tensor";
const PROJECTOR_LAYER: &str = "application/vnd.ollama.image.projector";

fn home() -> PathBuf {
    std::env::var_os("HOME").map_or_else(|| PathBuf::from("."), PathBuf::from)
}

/// Ollama's store: `$OLLAMA_MODELS`, else `~/.ollama/models`, else the Linux service's
/// `/usr/share/ollama/.ollama/models`.
pub fn ollama_store() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("OLLAMA_MODELS") {
        let dir = PathBuf::from(dir);
        if !dir.is_dir() {
            bail!(
                "{}: no such folder (from $OLLAMA_MODELS); point it at Ollama's models folder \
                 (the one holding manifests/ and blobs/)",
                dir.display()
            );
        }
        return Ok(dir);
    }
    let candidates = [
        home().join(".ollama/models"),
        PathBuf::from("/usr/share/ollama/.ollama/models"),
    ];
    match candidates.iter().find(|d| d.join("manifests").is_dir()) {
        Some(dir) => Ok(dir.clone()),
        None => bail!(
            "{}: no Ollama store there (nor in {}); pull the model with Ollama first, or set \
             $OLLAMA_MODELS to its models folder",
            candidates[0].display(),
            candidates[1].display()
        ),
    }
}

/// An Ollama model name: `[host/][namespace/]model[:tag]`.
#[derive(Debug, Clone, PartialEq)]
pub struct OllamaName {
    pub host: String,
    pub namespace: String,
    pub model: String,
    pub tag: String,
}

impl OllamaName {
    pub fn parse(spec: &str) -> Result<Self> {
        let (path, tag) = match spec.rsplit_once(':') {
            Some((path, tag)) if !tag.contains('/') && !tag.is_empty() => (path, tag),
            _ => (spec, OLLAMA_TAG),
        };
        let parts: Vec<&str> = path.split('/').collect();
        if parts
            .iter()
            .any(|p| p.is_empty() || *p == "." || *p == "..")
        {
            bail!("ollama:{spec}: give NAME[:TAG], e.g. ollama:llama3.1:8b or ollama:hf.co/org/repo:Q4_K_M");
        }
        let (host, namespace, model) = match parts.as_slice() {
            [model] => (OLLAMA_HOST, OLLAMA_NAMESPACE, *model),
            [namespace, model] => (OLLAMA_HOST, *namespace, *model),
            [host, namespace, model] => (*host, *namespace, *model),
            _ => bail!("ollama:{spec}: a name has at most host/namespace/model, then :tag"),
        };
        Ok(Self {
            host: host.to_string(),
            namespace: namespace.to_string(),
            model: model.to_string(),
            tag: tag.to_string(),
        })
    }

    /// The shortest form that names it (`llama3.1:8b`, `hf.co/org/repo:Q4_K_M`).
    pub fn short(&self) -> String {
        let mut name = match (self.host.as_str(), self.namespace.as_str()) {
            (OLLAMA_HOST, OLLAMA_NAMESPACE) => self.model.clone(),
            (OLLAMA_HOST, namespace) => format!("{namespace}/{}", self.model),
            (host, namespace) => format!("{host}/{namespace}/{}", self.model),
        };
        if self.tag != OLLAMA_TAG {
            name = format!("{name}:{}", self.tag);
        }
        name
    }

    fn manifest(&self, store: &Path) -> PathBuf {
        store
            .join("manifests")
            .join(&self.host)
            .join(&self.namespace)
            .join(&self.model)
            .join(&self.tag)
    }
}

/// The GGUF blob of `ollama:SPEC`, its sha256 checked against its digest (once: the check is
/// remembered in valuelens's models folder, not in Ollama's store).
pub fn resolve_ollama(spec: &str) -> Result<PathBuf> {
    let name = OllamaName::parse(spec)?;
    let store = ollama_store()?;
    let manifest = name.manifest(&store);
    if !manifest.is_file() {
        let folder = manifest.parent().expect("a manifest lies in a folder");
        let tags = entries(folder);
        if !tags.is_empty() {
            bail!(
                "{}: no tag '{}' of {}; the tags there: {}",
                manifest.display(),
                name.tag,
                name.model,
                tags.join(", ")
            );
        }
        bail!(
            "{}: Ollama has no model {} (`ollama pull {}` fetches it; `valuelens models --local` \
             lists what is there)",
            manifest.display(),
            name.short(),
            name.short()
        );
    }
    let digest = model_digest(&store, &manifest)?;
    let blob = blob_path(&store, &digest);
    if !blob.is_file() {
        bail!(
            "{}: missing, though {} names it; `ollama pull {}` again",
            blob.display(),
            manifest.display(),
            name.short()
        );
    }
    let hex = digest.trim_start_matches("sha256:");
    let stamp = registry::models_dir()
        .join(".ollama-verified")
        .join(format!("{hex}.verified"));
    if !stamp.is_file() {
        eprintln!("checking {} against its sha256 (once) …", blob.display());
    }
    if !verified::matches_stamped_at(&blob, None, hex, &stamp)? {
        bail!(
            "{}: its sha256 differs from its digest {digest}: the blob is damaged; remove it and \
             `ollama pull {}` again",
            blob.display(),
            name.short()
        );
    }
    say_without_template(&blob, &format!("ollama:{}", name.short()));
    Ok(blob)
}

/// Ollama keeps its chat templates in Go's template language, in a layer of their own, which
/// valuelens does not run: a GGUF without its own Jinja template is scored with plain prompts,
/// and the user is told so — once per process, though a command resolves its model more than
/// once (to plan memory, then to load).
fn say_without_template(gguf: &Path, form: &str) {
    static SAID: Mutex<BTreeSet<PathBuf>> = Mutex::new(BTreeSet::new());
    let first = SAID
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(gguf.to_path_buf());
    if !first {
        return;
    }
    let header = File::open(gguf)
        .ok()
        .and_then(|f| Content::read(&mut BufReader::new(f)).ok());
    if let Some(content) = header {
        if !content.metadata.contains_key("tokenizer.chat_template") {
            eprintln!(
                "note: {form} ({}) has no tokenizer.chat_template in its GGUF; it is scored with                  the plain prompt (Ollama's own templates are Go templates, not Jinja, and are                  not run)",
                gguf.display()
            );
        }
    }
}

fn blob_path(store: &Path, digest: &str) -> PathBuf {
    store.join("blobs").join(digest.replacen(':', "-", 1))
}

/// The names in a folder, sorted (empty where it cannot be read).
fn entries(folder: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(folder)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| !n.starts_with('.'))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

fn read_json(path: &Path, what: &str) -> Result<Value> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| {
        anyhow::anyhow!(
            "{}: not JSON ({e}); the {what} is damaged: `ollama pull` the model again",
            path.display()
        )
    })
}

/// The digest of the GGUF layer a manifest (or, for a manifest list, one of its children)
/// names; a refusal that says why where there is none valuelens can run.
fn model_digest(store: &Path, manifest: &Path) -> Result<String> {
    let json = read_json(manifest, "manifest")?;
    let mut manifests = Vec::new();
    match json.get("manifests").and_then(Value::as_array) {
        // A manifest list: a child per runner and format, inline or as a blob of its own.
        Some(children) => {
            for child in children {
                if child.get("layers").is_some() {
                    manifests.push((manifest.to_path_buf(), child.clone()));
                } else if let Some(digest) = child.get("digest").and_then(Value::as_str) {
                    let blob = blob_path(store, digest);
                    if !blob.is_file() {
                        bail!(
                            "{}: missing, though the manifest list {} names it",
                            blob.display(),
                            manifest.display()
                        );
                    }
                    manifests.push((blob.clone(), read_json(&blob, "child manifest")?));
                }
            }
        }
        None => manifests.push((manifest.to_path_buf(), json)),
    }
    let mut refusals = Vec::new();
    for (path, m) in &manifests {
        let layers: Vec<(&str, &str)> = m
            .get("layers")
            .and_then(Value::as_array)
            .map(|layers| {
                layers
                    .iter()
                    .map(|l| {
                        (
                            l.get("mediaType").and_then(Value::as_str).unwrap_or(""),
                            l.get("digest").and_then(Value::as_str).unwrap_or(""),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        let of_type = |media: &str| {
            layers
                .iter()
                .find(|(m, _)| *m == media || m.starts_with(&format!("{media};")))
                .map(|l| l.1)
        };
        if of_type(PROJECTOR_LAYER).is_some() {
            refusals.push(format!(
                "{}: a vision model — its projector layer ({PROJECTOR_LAYER}) is a part \
                 valuelens does not run; use a text-only model",
                path.display()
            ));
            continue;
        }
        match of_type(MODEL_LAYER) {
            Some(digest) if digest.starts_with("sha256:") => return Ok(digest.to_string()),
            Some(digest) => refusals.push(format!(
                "{}: model layer digest '{digest}' is not sha256:…",
                path.display()
            )),
            None if of_type(TENSOR_LAYER).is_some() => refusals.push(format!(
                "{}: stored as safetensors tensor layers ({TENSOR_LAYER}), not as a GGUF; \
                 valuelens reads Ollama's GGUF models (or give the safetensors folder or \
                 hf:org/name)",
                path.display()
            )),
            None => refusals.push(format!(
                "{}: no model layer ({MODEL_LAYER}); the manifest is damaged or not a model's",
                path.display()
            )),
        }
    }
    match refusals.len() {
        0 => bail!("{}: a manifest list without children", manifest.display()),
        _ => bail!("{}", refusals.join("; ")),
    }
}

/// LM Studio's models folders, newest layout first.
pub fn lmstudio_roots() -> Vec<PathBuf> {
    vec![
        home().join(".lmstudio/models"),
        home().join(".cache/lm-studio/models"),
    ]
}

/// The GGUF model files of an LM Studio model folder, by the name `lmstudio:` takes: whole
/// files, and each split model by its first part; projector files (`mmproj…`) left out.
fn gguf_models(folder: &Path) -> BTreeMap<String, PathBuf> {
    let mut models = BTreeMap::new();
    for name in entries(folder) {
        let path = folder.join(&name);
        if !name.ends_with(".gguf") || name.starts_with("mmproj") || !path.is_file() {
            continue;
        }
        match split_parts(&path) {
            Some(parts) if parts[0] != path => continue,
            _ => {}
        }
        models.insert(name, path);
    }
    models
}

/// The GGUF file of `lmstudio:SPEC` (`PUBLISHER/REPO[/FILE.gguf]`); for a split model its first
/// part, from which the others are found.
pub fn resolve_lmstudio(spec: &str) -> Result<PathBuf> {
    let parts: Vec<&str> = spec.split('/').collect();
    if parts.len() < 2 || parts.len() > 3 || parts.iter().any(|p| p.is_empty() || p.contains(".."))
    {
        bail!("lmstudio:{spec}: give PUBLISHER/REPO or PUBLISHER/REPO/FILE.gguf");
    }
    let roots = lmstudio_roots();
    let Some(folder) = roots
        .iter()
        .map(|root| root.join(parts[0]).join(parts[1]))
        .find(|f| f.is_dir())
    else {
        bail!(
            "{}: no such folder (nor under {}); download the model in LM Studio, or give the \
             .gguf file's path",
            roots[0].join(parts[0]).join(parts[1]).display(),
            roots[1].display()
        );
    };
    let models = gguf_models(&folder);
    let listed = || models.keys().cloned().collect::<Vec<_>>().join(", ");
    match parts.get(2) {
        Some(file) => {
            let path = folder.join(file);
            match split_parts(&path) {
                Some(split) if split[0].is_file() => Ok(split[0].clone()),
                _ if path.is_file() => Ok(path),
                _ => bail!(
                    "{}: no such file; the model files there: {}",
                    path.display(),
                    listed()
                ),
            }
        }
        None => match models.len() {
            0 => bail!("{}: holds no .gguf model file", folder.display()),
            1 => Ok(models.into_values().next().expect("one model")),
            _ => bail!(
                "{}: holds {} model files; choose one as lmstudio:{}/{}/FILE.gguf: {}",
                folder.display(),
                models.len(),
                parts[0],
                parts[1],
                listed()
            ),
        },
    }
}

/// One model found in a local store, read from its headers only.
#[derive(Debug, Clone, Serialize)]
pub struct LocalModel {
    /// What to pass to `--model`.
    pub form: String,
    pub store: &'static str,
    pub path: PathBuf,
    pub architecture: Option<String>,
    pub parameters: Option<u64>,
    /// Storage format: the GGUF type most of the weights are stored in, or `safetensors`.
    pub format: String,
    /// Bytes on disk (all parts of a split model).
    pub size: u64,
    /// `None` where valuelens runs it, else why not.
    pub not_runnable: Option<String>,
}

/// Every model in Ollama's store, LM Studio's folders and the Hugging Face cache (those that
/// exist), sorted by form within each store.
pub fn list_local() -> Vec<LocalModel> {
    let mut found = Vec::new();
    if let Ok(store) = ollama_store() {
        found.extend(ollama_models(&store));
    }
    for root in lmstudio_roots() {
        for publisher in entries(&root) {
            for repo in entries(&root.join(&publisher)) {
                let folder = root.join(&publisher).join(&repo);
                let projector = entries(&folder).iter().any(|n| n.starts_with("mmproj"));
                for (file, path) in gguf_models(&folder) {
                    let mut model = describe_gguf(
                        format!("lmstudio:{publisher}/{repo}/{file}"),
                        "lmstudio",
                        &path,
                    );
                    if projector {
                        model.format = format!("{} (+ vision projector, not used)", model.format);
                    }
                    found.push(model);
                }
            }
        }
    }
    found.extend(hub_models(&hub::cache_dir()));
    found
}

fn ollama_models(store: &Path) -> Vec<LocalModel> {
    let mut found = Vec::new();
    let manifests = store.join("manifests");
    for host in entries(&manifests) {
        for namespace in entries(&manifests.join(&host)) {
            for model in entries(&manifests.join(&host).join(&namespace)) {
                for tag in entries(&manifests.join(&host).join(&namespace).join(&model)) {
                    let name = OllamaName {
                        host: host.clone(),
                        namespace: namespace.clone(),
                        model: model.clone(),
                        tag,
                    };
                    let form = format!("ollama:{}", name.short());
                    let manifest = name.manifest(store);
                    found.push(match model_digest(store, &manifest) {
                        Ok(digest) => describe_gguf(form, "ollama", &blob_path(store, &digest)),
                        Err(e) => LocalModel {
                            form,
                            store: "ollama",
                            path: manifest,
                            architecture: None,
                            parameters: None,
                            format: "–".to_string(),
                            size: 0,
                            not_runnable: Some(format!("{e:#}")),
                        },
                    });
                }
            }
        }
    }
    found
}

/// The Hugging Face cache's models: each snapshot's GGUF files, and its safetensors checkpoint
/// where it has a config.json.
fn hub_models(cache: &Path) -> Vec<LocalModel> {
    let mut found = Vec::new();
    for folder in entries(cache) {
        let Some(repo) = folder.strip_prefix("models--") else {
            continue;
        };
        let repo = repo.replacen("--", "/", 1);
        let snapshots = cache.join(&folder).join("snapshots");
        let Some(snapshot) = entries(&snapshots).pop() else {
            continue;
        };
        let snapshot = snapshots.join(snapshot);
        for (file, path) in gguf_models(&snapshot) {
            found.push(describe_gguf(
                format!("hf:{repo}:{file}"),
                "huggingface",
                &path,
            ));
        }
        let config = snapshot.join("config.json");
        if config.is_file() {
            let model_type = std::fs::read_to_string(&config)
                .ok()
                .and_then(|t| serde_json::from_str::<Value>(&t).ok())
                .and_then(|j| {
                    j.get("model_type")
                        .and_then(Value::as_str)
                        .map(String::from)
                });
            let size = entries(&snapshot)
                .iter()
                .filter(|n| n.ends_with(".safetensors"))
                .filter_map(|n| std::fs::metadata(snapshot.join(n)).ok())
                .map(|m| m.len())
                .sum();
            let not_runnable = match &model_type {
                Some(t) => architectures::by_model_type(t)
                    .err()
                    .map(|e| format!("{e:#}")),
                None => Some("config.json has no model_type".to_string()),
            };
            found.push(LocalModel {
                form: format!("hf:{repo}"),
                store: "huggingface",
                path: snapshot.clone(),
                architecture: model_type,
                parameters: None,
                format: "safetensors".to_string(),
                size,
                not_runnable,
            });
        }
    }
    found
}

/// A GGUF model described from its header (its first part's, for a split model).
fn describe_gguf(form: String, store: &'static str, path: &Path) -> LocalModel {
    let parts = split_parts(path).unwrap_or_else(|| vec![path.to_path_buf()]);
    let size = parts
        .iter()
        .filter_map(|p| std::fs::metadata(p).ok())
        .map(|m| m.len())
        .sum();
    let mut model = LocalModel {
        form,
        store,
        path: path.to_path_buf(),
        architecture: None,
        parameters: None,
        format: "–".to_string(),
        size,
        not_runnable: None,
    };
    let mut parameters = 0u64;
    let mut by_type: BTreeMap<String, u64> = BTreeMap::new();
    for (i, part) in parts.iter().enumerate() {
        let header = File::open(part)
            .map_err(anyhow::Error::from)
            .and_then(|f| Content::read(&mut BufReader::new(f)).map_err(anyhow::Error::from));
        let content = match header {
            Ok(content) => content,
            Err(e) => {
                let first = format!("{e}")
                    .lines()
                    .next()
                    .unwrap_or_default()
                    .to_string();
                model.not_runnable = Some(format!(
                    "{}: cannot read its header: {first}",
                    part.display()
                ));
                return model;
            }
        };
        if i == 0 {
            if let Some(GgufValue::String(arch)) = content.metadata.get("general.architecture") {
                model.architecture = Some(arch.clone());
            }
        }
        for info in content.tensor_infos.values() {
            let n = info.shape.elem_count() as u64;
            parameters += n;
            if info.shape.dims().len() == 2 {
                *by_type.entry(format!("{:?}", info.ggml_dtype)).or_default() += n;
            }
        }
    }
    model.parameters = Some(parameters);
    if let Some((format, _)) = by_type.iter().max_by_key(|(_, n)| **n) {
        model.format = format.clone();
    }
    model.not_runnable = match &model.architecture {
        None => Some("no general.architecture in its header".to_string()),
        Some(arch) => {
            let known = architectures::ALL
                .iter()
                .any(|a| a.gguf_architecture() == arch || a.name() == arch);
            (!known).then(|| format!("architecture '{arch}' is not supported"))
        }
    };
    model
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ollama_names_take_ollamas_defaults() {
        let name = OllamaName::parse("llama3.1").unwrap();
        assert_eq!(
            (
                name.host.as_str(),
                name.namespace.as_str(),
                name.model.as_str(),
                name.tag.as_str()
            ),
            ("registry.ollama.ai", "library", "llama3.1", "latest")
        );
        let name = OllamaName::parse("hf.co/org/repo:Q4_K_M").unwrap();
        assert_eq!(
            (name.host.as_str(), name.namespace.as_str()),
            ("hf.co", "org")
        );
        assert_eq!((name.model.as_str(), name.tag.as_str()), ("repo", "Q4_K_M"));
        let name = OllamaName::parse("me/mine:v2").unwrap();
        assert_eq!(name.short(), "me/mine:v2");
        assert_eq!(
            OllamaName::parse("llama3.1:latest").unwrap().short(),
            "llama3.1"
        );
        assert!(OllamaName::parse("a/b/c/d").is_err());
        assert!(OllamaName::parse("../x").is_err());
    }
}
