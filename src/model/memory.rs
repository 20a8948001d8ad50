//! The memory a model needs in a precision, and the memory this process may use, compared
//! before anything is loaded: a model that cannot fit is refused in seconds with what it needs,
//! what is available and which `--dtype` fits, instead of aborting minutes later; a batch that
//! cannot fit beside the weights is made smaller.
//!
//! The estimate adds up, per tensor of the checkpoint, the bytes of its loaded form (f32, bf16
//! or int8 matrices, or GGUF blocks repacked for the stored-format kernels), the largest
//! tensor's source bytes once more (it is read beside what is already loaded), a fixed share for
//! the tokenizer and the runtime, and per token of a forward the activations of one layer plus
//! one chunk of LM-head logits (measured with `valuelens bench`: within 15 % of the peak
//! resident memory of the registry models and 8B shapes).

use anyhow::{bail, Result};

use super::device::{Placement, Precision};
use super::formats::checkpoint::Checkpoint;
use super::kernels::stored::StoredFormat;
use super::scoring::LM_HEAD_ROWS;

/// The smallest `--batch-tokens` a plan shrinks to before refusing.
pub const MIN_BATCH_TOKENS: usize = 256;

/// What a model needs in one precision.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Need {
    /// Weights as loaded, the source tensor read beside them, tokenizer and runtime.
    pub fixed: u64,
    /// Activations per token of a forward.
    pub per_token: u64,
    /// The LM head's logits for one chunk of scored rows.
    pub logits: u64,
}

impl Need {
    /// Bytes for forwards of `batch_tokens` tokens.
    pub fn total(&self, batch_tokens: usize) -> u64 {
        self.fixed + self.logits + self.per_token * batch_tokens as u64
    }
}

/// Bytes a checkpoint's tensors take in `precision` on the CPU (see the module's text).
pub fn need(checkpoint: &Checkpoint, precision: Precision) -> Need {
    let (mut weights, mut largest_source) = (0u64, 0u64);
    let (mut hidden, mut vocab, mut ffn, mut attention) = (0usize, 0usize, 0usize, 0usize);
    let tied = !checkpoint.has_tensor("output.weight");
    for name in checkpoint.tensor_names() {
        let Some((dims, dtype)) = checkpoint.tensor_info(&name) else {
            continue;
        };
        let elements: usize = dims.iter().product();
        let source = match dtype {
            Some(d) => (elements / d.block_size() * d.type_size()) as u64,
            None => 4 * elements as u64,
        };
        let matrix = dims.len() == 2;
        let bits = match (precision, matrix) {
            (_, false) => 32.0,
            (p, true) if p.keeps_blocks() => dtype.and_then(StoredFormat::of).map_or(
                StoredFormat::Q8_0.repacked_bits(),
                StoredFormat::repacked_bits,
            ),
            (Precision::Int8, true) if name.contains("ffn_") => 12.0,
            (Precision::Bf16 | Precision::F16, true) if name != "token_embd.weight" => 16.0,
            _ => 32.0,
        };
        weights += (elements as f64 * bits / 8.0) as u64;
        if name == "token_embd.weight" && tied && precision == Precision::Bf16 {
            weights += 2 * elements as u64; // the dense table and the head's bf16 copy
        }
        // Dequantizing precisions hold the source and its f32 form while converting.
        let transient = match precision {
            p if p.keeps_blocks() => source,
            _ => source + 4 * elements as u64,
        };
        largest_source = largest_source.max(transient);
        let rows = dims.first().copied().unwrap_or(0);
        match name.as_str() {
            "token_embd.weight" => {
                vocab = rows;
                hidden = dims.get(1).copied().unwrap_or(0);
            }
            n if n.starts_with("blk.0.ffn_up") || n.starts_with("blk.0.ffn_gate") => {
                ffn = ffn.max(rows);
            }
            n if n.starts_with("blk.0.attn_q.")
                || n.starts_with("blk.0.attn_k.")
                || n.starts_with("blk.0.attn_v.")
                || n.starts_with("blk.0.attn_qkv.") =>
            {
                attention += rows;
            }
            _ => {}
        }
    }
    // Fused gate/up files store both halves in `ffn_up`.
    if !checkpoint.has_tensor("blk.0.ffn_gate.weight") {
        ffn /= 2;
    }
    let runtime = 150_000_000 + 700 * vocab as u64;
    let per_token = 4 * (8 * hidden + 3 * attention + 4 * ffn) as u64;
    Need {
        fixed: weights + largest_source + runtime,
        per_token,
        logits: 2 * 4 * (LM_HEAD_ROWS * vocab) as u64,
    }
}

/// The memory this process may still take, and where that number comes from: the smaller of
/// the kernel's MemAvailable and the room left under the cgroup's limit (containers, Slurm,
/// Kubernetes); `VALUELENS_MEMORY_AVAILABLE_MB` replaces both (to plan for another machine).
/// `None` where neither can be read.
pub fn available() -> Option<(u64, String)> {
    if let Ok(mb) = std::env::var("VALUELENS_MEMORY_AVAILABLE_MB") {
        if let Ok(mb) = mb.trim().parse::<u64>() {
            return Some((mb * 1_000_000, "VALUELENS_MEMORY_AVAILABLE_MB".into()));
        }
    }
    let meminfo = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| {
            let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
            let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
            Some(kb * 1024)
        });
    let cgroup = cgroup_room();
    match (meminfo, cgroup) {
        (Some(m), Some(c)) if c < m => Some((c, "the cgroup's memory limit".into())),
        (Some(m), _) => Some((m, "MemAvailable".into())),
        (None, Some(c)) => Some((c, "the cgroup's memory limit".into())),
        (None, None) => None,
    }
}

/// Bytes left under this process's cgroup limit (v2 `memory.max`, or v1
/// `memory.limit_in_bytes`), when it has one.
fn cgroup_room() -> Option<u64> {
    let read = |path: &str| std::fs::read_to_string(path).ok();
    let number = |text: Option<String>| text.and_then(|t| t.trim().parse::<u64>().ok());
    let membership = read("/proc/self/cgroup")?;
    for line in membership.lines() {
        let mut fields = line.splitn(3, ':');
        let (_, controllers, path) = (fields.next()?, fields.next()?, fields.next()?);
        if controllers.is_empty() {
            let dir = format!("/sys/fs/cgroup{path}");
            let limit = number(read(&format!("{dir}/memory.max")));
            let used = number(read(&format!("{dir}/memory.current"))).unwrap_or(0);
            if let Some(limit) = limit {
                return Some(limit.saturating_sub(used));
            }
        } else if controllers.split(',').any(|c| c == "memory") {
            let dir = format!("/sys/fs/cgroup/memory{path}");
            let limit = number(read(&format!("{dir}/memory.limit_in_bytes")))?;
            let used = number(read(&format!("{dir}/memory.usage_in_bytes"))).unwrap_or(0);
            // v1 reports "no limit" as a huge number.
            if limit < 1 << 60 {
                return Some(limit.saturating_sub(used));
            }
        }
    }
    None
}

/// What loading `checkpoint` in `placement` may use: `batch_tokens`, or the largest smaller
/// power-of-two fraction of it (down to [`MIN_BATCH_TOKENS`]) whose forwards fit beside the
/// weights, with a note saying so; an error naming the need, the memory available and the
/// `--dtype` that fits where the weights themselves do not. GPUs (whose memory is the
/// device's) and machines whose memory cannot be read pass unchecked.
pub fn plan(
    checkpoint: &Checkpoint,
    placement: &Placement,
    batch_tokens: usize,
    reserved: u64,
) -> Result<(usize, Option<String>)> {
    if !placement.device.is_cpu() {
        return Ok((batch_tokens, None));
    }
    let Some((available, source)) = available() else {
        return Ok((batch_tokens, None));
    };
    // Memory set aside beside the forwards (a prefix cache and what it captures).
    let (available, source) = match reserved {
        0 => (available, source),
        _ => (
            available.saturating_sub(reserved),
            format!("{source}, less {} for the prefix cache", gb(reserved)),
        ),
    };
    let precision = placement.precision;
    let need = need(checkpoint, precision);
    if need.total(batch_tokens) <= available {
        return Ok((batch_tokens, None));
    }
    let mut tokens = batch_tokens;
    while tokens > MIN_BATCH_TOKENS && need.total(tokens) > available {
        tokens = (tokens / 2).max(MIN_BATCH_TOKENS);
    }
    if need.total(tokens) <= available {
        let note = format!(
            "--batch-tokens {batch_tokens} → {tokens}: forwards of {batch_tokens} tokens would \
             need {} beside the weights, and {} is available ({source})",
            gb(need.total(batch_tokens) - need.fixed),
            gb(available.saturating_sub(need.fixed)),
        );
        return Ok((tokens, Some(note)));
    }
    let fits: Vec<String> = [
        Precision::QuantizedTiebreak,
        Precision::Quantized,
        Precision::Int8,
        Precision::Bf16,
        Precision::F32,
    ]
    .into_iter()
    .filter(|&p| p != precision)
    .map(|p| (p, self::need(checkpoint, p).total(MIN_BATCH_TOKENS)))
    .filter(|&(_, bytes)| bytes <= available)
    .map(|(p, bytes)| format!("--dtype {} (about {})", p.name(), gb(bytes)))
    .collect();
    let advice = match fits.first() {
        Some(first) => format!("use {first}"),
        None => "no --dtype fits: use a smaller model or a machine with more memory".into(),
    };
    bail!(
        "{}: --dtype {} needs about {} ({} of weights and runtime, {} for forwards of \
         {MIN_BATCH_TOKENS} tokens), but {} is available ({source}); {advice}",
        checkpoint.origin,
        precision.name(),
        gb(need.total(MIN_BATCH_TOKENS)),
        gb(need.fixed),
        gb(need.total(MIN_BATCH_TOKENS) - need.fixed),
        gb(available)
    )
}

fn gb(bytes: u64) -> String {
    format!("{:.1} GB", bytes as f64 / 1e9)
}
