//! The LM head and what comes after it: the final norm and the vocabulary projection on the
//! scored rows only, then log-softmax, argmax and the targets' log-probabilities (in f64 on the
//! CPU; on the device elsewhere, so that only three numbers per target come back).

use anyhow::{bail, Context, Result};
use candle_core::quantized::QTensor;
use candle_core::{DType, Tensor};

use rayon::prelude::*;

use super::batch::PackedBatch;
use super::cpu_ops::{row_summary, slice_of};
use super::device::{Placement, Precision};
use super::layers::{Embeddings, Linear};

/// The scored distribution at one row: log p(target), whether target is the argmax, and the
/// argmax itself with its log-probability (what a server's `top_logprobs` and a one-token
/// greedy generation report).
#[derive(Debug, Clone, Copy)]
pub struct RowScore {
    pub logprob: f64,
    pub is_argmax: bool,
    pub argmax: u32,
    pub argmax_logprob: f64,
}

/// Scored rows whose logits are computed at once: bounds the LM head's memory (256 rows of a
/// 262,144-token vocabulary are 268 MB of f32 logits).
pub const LM_HEAD_ROWS: usize = 256;

/// The final norm and the vocabulary projection.
pub struct LmHead {
    final_norm: Tensor,
    rms_eps: f32,
    projection: Linear,
    /// Logits are capped to `cap · tanh(x / cap)` (gemma 2 and 3 where the checkpoint says).
    softcap: Option<f32>,
}

impl LmHead {
    /// `output` is the checkpoint's own LM head; without one the head is the embedding table
    /// (kept quantized as `embeddings_q` in quantized precision on a GPU, shared with the
    /// stored table on the CPU, else the already placed dense `embeddings`).
    pub fn new(
        final_norm: Tensor,
        rms_eps: f32,
        output: Option<QTensor>,
        embeddings_q: Option<QTensor>,
        embeddings: &Embeddings,
        placement: &Placement,
        softcap: Option<f32>,
    ) -> Result<Self> {
        let projection = match (output, placement.precision) {
            (Some(output), _) => Linear::new(output, &placement.outlier_sensitive())?,
            (None, p)
                if (p.keeps_blocks() || p == Precision::Bf16)
                    && matches!(embeddings, Embeddings::Dense(_))
                    && (placement.precision.keeps_blocks() || placement.cpu_bf16_kernel()) =>
            {
                let table = embeddings_q.context("the tied LM head needs the embedding table")?;
                Linear::new(table, placement)?
            }
            (None, _) => embeddings.tied_head(),
        };
        Ok(Self {
            final_norm,
            rms_eps,
            projection,
            softcap,
        })
    }

    /// The scored rows of `hidden` (the last layer's output for every packed token), at most
    /// [`LM_HEAD_ROWS`] rows of logits at a time (a row's numbers do not depend on its chunk).
    pub fn score(&self, hidden: &Tensor, batch: &PackedBatch) -> Result<Vec<RowScore>> {
        let rows = Tensor::new(batch.score_rows.as_slice(), hidden.device())?;
        let h = candle_nn::ops::rms_norm(
            &hidden.index_select(&rows, 0)?,
            &self.final_norm,
            self.rms_eps,
        )?;
        let n = batch.score_rows.len();
        if n <= LM_HEAD_ROWS {
            return score_logits(&self.projection.forward(&h)?, &batch.targets, self.softcap);
        }
        // Targets are (row, token) pairs; each chunk takes its rows' targets, renumbered.
        let mut scores = vec![None; batch.targets.len()];
        for first in (0..n).step_by(LM_HEAD_ROWS) {
            let len = LM_HEAD_ROWS.min(n - first);
            let (indices, targets): (Vec<usize>, Vec<(u32, u32)>) = batch
                .targets
                .iter()
                .enumerate()
                .filter(|(_, &(row, _))| (first..first + len).contains(&(row as usize)))
                .map(|(i, &(row, token))| (i, (row - first as u32, token)))
                .unzip();
            let logits = self.projection.forward(&h.narrow(0, first, len)?)?;
            for (i, score) in
                indices
                    .into_iter()
                    .zip(score_logits(&logits, &targets, self.softcap)?)
            {
                scores[i] = Some(score);
            }
        }
        scores
            .into_iter()
            .map(|s| s.ok_or_else(|| anyhow::anyhow!("a target names a row that is not scored")))
            .collect()
    }
}

/// Log-probability of each target and whether it is its row's argmax, from the logits
/// `[R, V]` of the scored rows (soft-capped to `cap · tanh(x / cap)` first when `softcap` is
/// given); `targets` are (row, token) pairs. On the CPU the rows are summed in f64; on other
/// devices the log-softmax runs there (in f32) and only R + 2·targets numbers come back.
pub fn score_logits(
    logits: &Tensor,
    targets: &[(u32, u32)],
    softcap: Option<f32>,
) -> Result<Vec<RowScore>> {
    let logits = match softcap {
        Some(cap) => ((logits.to_dtype(DType::F32)? / cap as f64)?.tanh()? * cap as f64)?,
        None => logits.to_dtype(DType::F32)?,
    };
    let vocab = logits.dim(1)?;
    if let Some(&(_, target)) = targets.iter().find(|&&(_, t)| t as usize >= vocab) {
        bail!("token id {target} is outside the model's vocabulary of {vocab}");
    }
    if !logits.device().is_cpu() {
        return score_logits_on_device(&logits, targets);
    }
    let logits = logits.contiguous()?;
    let (storage, layout) = logits.storage_and_layout();
    let candle_core::Storage::Cpu(cpu) = &*storage else {
        bail!("CPU scoring needs its logits on the CPU");
    };
    let flat = slice_of(cpu.as_slice::<f32>()?, layout)?;
    let logits: Vec<&[f32]> = flat.chunks_exact(vocab).collect();
    let summaries: Vec<(usize, f32, f64)> = logits.par_iter().map(|row| row_summary(row)).collect();
    targets
        .iter()
        .map(|&(row, target)| {
            let (row, target) = (row as usize, target as usize);
            let logits = &logits[row];
            let (argmax, max, log_sum) = summaries[row];
            Ok(RowScore {
                logprob: (logits[target] - max) as f64 - log_sum,
                is_argmax: argmax == target,
                argmax: argmax as u32,
                argmax_logprob: -log_sum,
            })
        })
        .collect()
}

/// [`score_logits`] for f32 logits on a GPU: max, log-sum-exp and argmax per row, and the
/// targets' logits gathered from the flattened matrix, all on the device.
fn score_logits_on_device(logits: &Tensor, targets: &[(u32, u32)]) -> Result<Vec<RowScore>> {
    let (rows, vocab) = logits.dims2()?;
    let device = logits.device();
    let max = logits.max_keepdim(1)?;
    let log_sum_exp = (logits.broadcast_sub(&max)?.exp()?.sum_keepdim(1)?.log()? + &max)?
        .flatten_all()?
        .to_vec1::<f32>()?;
    let max = max.flatten_all()?.to_vec1::<f32>()?;
    let argmax = logits.argmax_keepdim(1)?.flatten_all()?.to_vec1::<u32>()?;
    let flat: Vec<i64> = targets
        .iter()
        .map(|&(row, target)| row as i64 * vocab as i64 + target as i64)
        .collect();
    let picked = logits
        .reshape(rows * vocab)?
        .index_select(&Tensor::new(flat.as_slice(), device)?, 0)?
        .to_vec1::<f32>()?;
    Ok(targets
        .iter()
        .zip(picked)
        .map(|(&(row, target), logit)| RowScore {
            logprob: (logit - log_sum_exp[row as usize]) as f64,
            is_argmax: argmax[row as usize] == target,
            argmax: argmax[row as usize],
            argmax_logprob: (max[row as usize] - log_sum_exp[row as usize]) as f64,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// The GPU path of `score_logits` (run here on CPU tensors) gives what the CPU path gives.
    #[test]
    fn device_scoring_matches_the_cpu_path() {
        let logits = Tensor::randn(0f32, 3.0, (5, 1000), &Device::Cpu).unwrap();
        let targets = [(0, 7), (0, 999), (1, 0), (3, 500), (4, 42)];
        let argmax_of_2 = logits.get(2).unwrap().argmax(0).unwrap();
        let targets: Vec<(u32, u32)> = targets
            .into_iter()
            .chain([(2, argmax_of_2.to_scalar::<u32>().unwrap())])
            .collect();
        let cpu = score_logits(&logits, &targets, None).unwrap();
        let device = score_logits_on_device(&logits, &targets).unwrap();
        for (a, b) in cpu.iter().zip(&device) {
            assert!((a.logprob - b.logprob).abs() < 1e-5, "{a:?} vs {b:?}");
            assert_eq!(a.is_argmax, b.is_argmax);
            assert_eq!(a.argmax, b.argmax);
            assert!((a.argmax_logprob - b.argmax_logprob).abs() < 1e-5);
        }
        // The argmax's own target scores exactly its reported log-probability.
        let last = cpu.last().unwrap();
        assert_eq!(last.logprob, last.argmax_logprob);
        assert!(device.last().unwrap().is_argmax);
        let err = score_logits(&logits, &[(0, 1000)], None).unwrap_err();
        assert!(err.to_string().contains("outside the model's vocabulary"));
    }
}
