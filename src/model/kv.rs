//! Keys and values across forwards: the ones a forward is handed (computed by an earlier
//! forward, referred to by [`Keys::Past`](super::batch::Keys) ranges) and the ones it hands
//! back for chosen rows, so that a prefix cache can keep them. Kept outside the network as
//! flat token-major rows (`[token][layer][key | value][kv head][head_dim]`, f32): one
//! token's state is one contiguous slice, so a cache can split and join runs of tokens
//! without re-laying anything out.

use anyhow::{bail, Result};
use candle_core::{DType, Device, Storage, Tensor};

use super::cpu_ops::slice_of;

/// The shape of a network's keys and values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KvGeometry {
    pub layers: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
}

impl KvGeometry {
    /// f32s of one token's keys and values over all layers.
    pub fn floats_per_token(&self) -> usize {
        self.layers * 2 * self.kv_heads * self.head_dim
    }

    /// Bytes of one token's keys and values.
    pub fn bytes_per_token(&self) -> usize {
        self.floats_per_token() * std::mem::size_of::<f32>()
    }
}

/// Past keys and values for one forward: per layer, keys (after RoPE) and values, each
/// `[kv_heads, len, head_dim]` on the model's device.
pub struct PastKv {
    pub len: usize,
    layers: Vec<(Tensor, Tensor)>,
}

impl PastKv {
    /// From `len` token-major rows (see the module's doc), as f32 on `device` (attention
    /// converts them to its own precision where that differs).
    pub fn from_rows(geometry: KvGeometry, rows: &[f32], device: &Device) -> Result<Self> {
        let per_token = geometry.floats_per_token();
        if per_token == 0 || !rows.len().is_multiple_of(per_token) {
            bail!(
                "past keys and values of {} floats are not whole tokens of {per_token}",
                rows.len()
            );
        }
        let len = rows.len() / per_token;
        let per_head = geometry.head_dim;
        let per_layer = 2 * geometry.kv_heads * per_head;
        let layers = (0..geometry.layers)
            .map(|layer| {
                let half = |which: usize| -> Result<Tensor> {
                    // [token][kv head][d] of this layer and half → [kv head][token][d].
                    let mut out = vec![0f32; geometry.kv_heads * len * per_head];
                    for t in 0..len {
                        let base = t * per_token + layer * per_layer + which * per_layer / 2;
                        for h in 0..geometry.kv_heads {
                            let src = &rows[base + h * per_head..base + (h + 1) * per_head];
                            let dst = (h * len + t) * per_head;
                            out[dst..dst + per_head].copy_from_slice(src);
                        }
                    }
                    Ok(Tensor::from_vec(
                        out,
                        (geometry.kv_heads, len, per_head),
                        device,
                    )?)
                };
                Ok((half(0)?, half(1)?))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self { len, layers })
    }

    /// Layer `layer`'s keys and values.
    pub fn layer(&self, layer: usize) -> Option<(&Tensor, &Tensor)> {
        self.layers.get(layer).map(|(k, v)| (k, v))
    }
}

/// Rows of a forward whose keys and values to hand back, gathered layer by layer into
/// token-major rows (see the module's doc) as the forward runs.
pub struct KvCapture {
    rows: Vec<u32>,
    geometry: KvGeometry,
    layer: usize,
    out: Vec<f32>,
}

impl KvCapture {
    /// Captures `rows` (indices into the forward's tokens) of a network of `geometry`.
    pub fn new(rows: Vec<u32>, geometry: KvGeometry) -> Self {
        let out = vec![0f32; rows.len() * geometry.floats_per_token()];
        Self {
            rows,
            geometry,
            layer: 0,
            out,
        }
    }

    pub fn rows(&self) -> &[u32] {
        &self.rows
    }

    /// Keeps the captured rows of the next layer's keys and values (`[kv_heads, T, head_dim]`);
    /// called once per layer, in order.
    pub fn keep(&mut self, k: &Tensor, v: &Tensor) -> Result<()> {
        let layer = self.layer;
        self.layer += 1;
        if self.rows.is_empty() {
            return Ok(());
        }
        if layer >= self.geometry.layers {
            bail!(
                "a forward handed back more than {} layers",
                self.geometry.layers
            );
        }
        let (kv_heads, head_dim) = (self.geometry.kv_heads, self.geometry.head_dim);
        let per_token = self.geometry.floats_per_token();
        let per_layer = 2 * kv_heads * head_dim;
        for (which, t) in [k, v].into_iter().enumerate() {
            let n_tokens = t.dim(1)?;
            // Straight from the tensor where it is contiguous f32 on the CPU, else through a copy.
            let copied;
            let (storage, layout) = t.storage_and_layout();
            let data: &[f32] = match (&*storage, t.dtype(), layout.is_contiguous()) {
                (Storage::Cpu(cpu), DType::F32, true) => slice_of(cpu.as_slice::<f32>()?, layout)?,
                _ => {
                    copied = t
                        .to_dtype(DType::F32)?
                        .to_device(&Device::Cpu)?
                        .flatten_all()?
                        .to_vec1::<f32>()?;
                    &copied
                }
            };
            for h in 0..kv_heads {
                for (r, &row) in self.rows.iter().enumerate() {
                    let src = (h * n_tokens + row as usize) * head_dim;
                    let dst =
                        r * per_token + layer * per_layer + which * per_layer / 2 + h * head_dim;
                    self.out[dst..dst + head_dim].copy_from_slice(&data[src..src + head_dim]);
                }
            }
        }
        Ok(())
    }

    /// The captured rows, token-major, one slice of `floats_per_token()` per row in the order
    /// of [`Self::rows`].
    pub fn into_rows(self) -> Result<Vec<f32>> {
        if !self.rows.is_empty() && self.layer != self.geometry.layers {
            bail!(
                "a forward handed back {} layers of keys and values, not {}",
                self.layer,
                self.geometry.layers
            );
        }
        Ok(self.out)
    }
}

/// What a forward takes and gives besides its batch: past keys and values, and rows to
/// capture.
#[derive(Default)]
pub struct KvIo<'a> {
    pub past: Option<&'a PastKv>,
    pub capture: Option<&'a mut KvCapture>,
}

impl KvIo<'_> {
    /// Layer `layer`'s past keys and values, if the forward has any.
    pub fn past(&self, layer: usize) -> Option<(&Tensor, &Tensor)> {
        self.past.and_then(|p| p.layer(layer))
    }

    /// Hands layer `layer`'s keys and values to the capture, if there is one.
    pub fn keep(&mut self, k: &Tensor, v: &Tensor) -> Result<()> {
        match &mut self.capture {
            Some(capture) => capture.keep(k, v),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rows captured from per-layer tensors and turned back into per-layer tensors give the
    /// captured rows back.
    #[test]
    fn captured_rows_round_trip_into_past_tensors() {
        let geometry = KvGeometry {
            layers: 3,
            kv_heads: 2,
            head_dim: 4,
        };
        let n = 7;
        let layers: Vec<(Tensor, Tensor)> = (0..geometry.layers)
            .map(|_| {
                let t = || Tensor::randn(0f32, 1.0, (2, n, 4), &Device::Cpu).unwrap();
                (t(), t())
            })
            .collect();
        let rows = vec![1u32, 4, 6];
        let mut capture = KvCapture::new(rows.clone(), geometry);
        for (k, v) in &layers {
            capture.keep(k, v).unwrap();
        }
        let flat = capture.into_rows().unwrap();
        assert_eq!(flat.len(), 3 * geometry.floats_per_token());
        let past = PastKv::from_rows(geometry, &flat, &Device::Cpu).unwrap();
        assert_eq!(past.len, 3);
        let index = Tensor::new(rows.as_slice(), &Device::Cpu).unwrap();
        for (layer, (k, v)) in layers.iter().enumerate() {
            let (pk, pv) = past.layer(layer).unwrap();
            for (got, want) in [(pk, k), (pv, v)] {
                let want = want.index_select(&index, 1).unwrap();
                assert_eq!(
                    got.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
                    want.flatten_all().unwrap().to_vec1::<f32>().unwrap()
                );
            }
        }
    }
}
