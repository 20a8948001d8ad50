//! What one layer's attention computes: the scale of q·k, the sliding window, the soft cap.

use std::ops::Range;

/// How the attention of one layer turns query·key products into weights.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AttentionSpec {
    /// Factor on q·k (usually 1/√head_dim).
    pub scale: f32,
    /// A query at position p sees keys at positions p − window < j ≤ p only (sliding-window
    /// layers); `None` is plain causal attention.
    pub window: Option<usize>,
    /// Scaled scores are capped to `cap · tanh(s / cap)` before the softmax (gemma 2).
    pub softcap: Option<f32>,
}

impl AttentionSpec {
    pub fn causal(scale: f32) -> Self {
        Self {
            scale,
            window: None,
            softcap: None,
        }
    }

    /// The key positions a query at `position` attends to.
    pub fn visible_keys(&self, position: usize) -> Range<usize> {
        let end = position + 1;
        let start = self.window.map_or(0, |w| end.saturating_sub(w));
        start..end
    }
}
