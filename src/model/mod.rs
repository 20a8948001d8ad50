//! Models: resolving a `--model` argument to a file, loading it (tokenizer and weights), and the
//! packed forward pass every architecture implements.

pub mod checkpoint;
mod cpu_attention;
mod cpu_ops;
pub mod device;
pub mod gemma3;
pub mod gguf;
pub mod hub;
pub mod layers;
pub mod llama;
pub mod qwen2;
pub mod registry;
pub mod safetensors;
pub mod synthetic;
pub mod tokenizer;

use std::ops::Range;
use std::path::{Path, PathBuf};

use anyhow::{bail, Result};

use candle_core::Device;
pub use device::{parse_device, Placement, WeightMode};
use gemma3::Gemma3;
use llama::Llama;
use tokenizer::TextTokenizer;

/// Token segments packed end to end into one forward. A segment attends causally to itself
/// and fully to its ancestor segments (earlier in the same batch), so a prefix tree of
/// requests is computed once: a shared prompt is one segment, each continuation branch a
/// segment below it. A segment without ancestors is an ordinary causal sequence.
#[derive(Debug, Default, Clone)]
pub struct PackedBatch {
    pub tokens: Vec<u32>,
    /// Each token's position in its own sequence (its depth in the tree), for rotary embeddings.
    pub positions: Vec<u32>,
    pub segments: Vec<Segment>,
    /// Rows of `tokens` whose next-token distribution is needed (each once) …
    pub score_rows: Vec<u32>,
    /// … and the (index into `score_rows`, target token) pairs to score.
    pub targets: Vec<(u32, u32)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    /// Where the segment lies in `tokens`.
    pub range: Range<usize>,
    /// The ranges of its ancestors, root first; their lengths sum to the segment's first
    /// position.
    pub ancestors: Vec<Range<usize>>,
}

impl PackedBatch {
    /// Appends a segment below `ancestors` (ranges already in the batch) and returns its range.
    pub fn push_segment(&mut self, tokens: &[u32], ancestors: Vec<Range<usize>>) -> Range<usize> {
        let start = self.tokens.len();
        let first_position = ancestors.iter().map(|r| r.len()).sum::<usize>() as u32;
        self.tokens.extend_from_slice(tokens);
        self.positions
            .extend((0..tokens.len() as u32).map(|i| first_position + i));
        let range = start..self.tokens.len();
        self.segments.push(Segment {
            range: range.clone(),
            ancestors,
        });
        range
    }

    /// Asks for the log-probability of `target` at `row`; returns the index of the answer.
    pub fn push_score(&mut self, row: usize, target: u32) -> usize {
        let slot = match self.score_rows.last() {
            Some(&last) if last as usize == row => self.score_rows.len() - 1,
            _ => {
                self.score_rows.push(row as u32);
                self.score_rows.len() - 1
            }
        };
        self.targets.push((slot as u32, target));
        self.targets.len() - 1
    }
}

/// The scored distribution at one row: log p(target) and whether target is the argmax.
#[derive(Debug, Clone, Copy)]
pub struct RowScore {
    pub logprob: f64,
    pub is_argmax: bool,
}

/// The `general.architecture` values this build can run.
pub const SUPPORTED_ARCHITECTURES: &[&str] = &["llama", "qwen2", "gemma3"];

enum Network {
    Llama(Llama),
    Gemma3(Gemma3),
}

/// A loaded model: its tokenizer and its network.
pub struct Model {
    pub name: String,
    pub path: PathBuf,
    pub architecture: String,
    pub weight_mode: WeightMode,
    /// Where the forward runs.
    pub device: Device,
    pub tokenizer: TextTokenizer,
    network: Network,
}

impl Model {
    /// Loads a model named as `--model` takes it (see [`resolve`]), for the CPU.
    pub fn load(spec: &str, mode: WeightMode) -> Result<Self> {
        Self::load_on(spec, &Placement::cpu(mode))
    }

    /// Loads a model named as `--model` takes it onto a device.
    pub fn load_on(spec: &str, placement: &Placement) -> Result<Self> {
        let (name, path) = resolve(spec)?;
        Self::load_file_on(&name, &path, placement)
    }

    /// Loads a resolved model file or folder for the CPU.
    pub fn load_file(name: &str, path: &Path, mode: WeightMode) -> Result<Self> {
        Self::load_file_on(name, path, &Placement::cpu(mode))
    }

    /// Loads a resolved model file or folder onto a device.
    pub fn load_file_on(name: &str, path: &Path, placement: &Placement) -> Result<Self> {
        let mut file = checkpoint::Checkpoint::open(path)?;
        let architecture = file.string("general.architecture")?;
        if !SUPPORTED_ARCHITECTURES.contains(&architecture.as_str()) {
            bail!(
                "{}: architecture '{architecture}' is not supported (supported: {})",
                path.display(),
                SUPPORTED_ARCHITECTURES.join(", ")
            );
        }
        let tokenizer = TextTokenizer::from_checkpoint(&file)?;
        let network = match architecture.as_str() {
            "llama" => Network::Llama(Llama::from_checkpoint(&mut file, placement)?),
            "qwen2" => Network::Llama(qwen2::from_checkpoint(&mut file, placement)?),
            "gemma3" => Network::Gemma3(Gemma3::from_checkpoint(&mut file, placement)?),
            _ => unreachable!("checked against SUPPORTED_ARCHITECTURES above"),
        };
        Ok(Self {
            name: name.to_string(),
            path: path.to_path_buf(),
            architecture,
            weight_mode: placement.mode,
            device: placement.device.clone(),
            tokenizer,
            network,
        })
    }

    /// The longest token sequence the model accepts.
    pub fn context_length(&self) -> usize {
        match &self.network {
            Network::Llama(m) => m.config.context_length,
            Network::Gemma3(m) => m.config.context_length,
        }
    }

    /// Runs one packed forward and scores its rows.
    pub fn score(&self, batch: &PackedBatch) -> Result<Vec<RowScore>> {
        match &self.network {
            Network::Llama(m) => m.score(batch),
            Network::Gemma3(m) => m.score(batch),
        }
    }
}

/// A `--model` argument → (display name, path). `synthetic:<shape>[@dir]` is kept as its own
/// "path" (see `synthetic.rs`). `hf:org/name[@revision][:file.gguf]` comes
/// from the Hugging Face cache (downloaded if missing); a `.gguf` file or a safetensors folder
/// is taken as it is; anything else must be a registry name, whose file is fetched if it is not
/// there yet.
pub fn resolve(spec: &str) -> Result<(String, PathBuf)> {
    if synthetic::is_synthetic(spec) {
        return Ok((spec.to_string(), PathBuf::from(spec)));
    }
    if spec.starts_with("hf:") {
        let model = hub::HubModel::parse(spec)?;
        let path = hub::resolve(&model)?;
        return Ok((model.display_name(), path));
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
        return Ok((name, path));
    }
    let registry = registry::Registry::builtin()?;
    let entry = registry.get(spec)?;
    let path = registry::ensure(entry, &registry::models_dir())?;
    Ok((entry.name.clone(), path))
}
