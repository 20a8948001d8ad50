//! The qwen2 architecture (Qwen2, Qwen2.5, Qwen2.5-Coder) from GGUF weights. Its math is
//! llama's with two differences: the Q, K and V projections have biases, and rotary embeddings
//! rotate the two halves of each head (NEOX layout; GGUF keeps qwen2's Q/K unpermuted). So it
//! is llama's forward, loaded from the `qwen2.` metadata with that rotary layout.

use anyhow::Result;

use super::checkpoint::Checkpoint;
use super::layers::Placement;
use super::llama::{Llama, RopeStyle};

pub fn from_checkpoint(checkpoint: &mut Checkpoint, placement: &Placement) -> Result<Llama> {
    Llama::from_checkpoint_as(checkpoint, placement, "qwen2", RopeStyle::Halves)
}
