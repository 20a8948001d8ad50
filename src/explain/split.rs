//! The paper's `sample_train_test_set`: the frame split into an example pool and a test pool
//! at a fixed row, and from each pool a number of True and of False rows drawn as
//! `DataFrame.sample(n, random_state=seed)` draws them.

use anyhow::{Context, Result};

use super::frame::ObservedRow;
use super::sample::sample_positions;

/// The paper's split and draw.
#[derive(Debug, Clone, Copy)]
pub struct Draw {
    /// Rows before this position are the example pool, the rest the test pool.
    pub train_rows: usize,
    /// Examples per class (True, False).
    pub examples_per_class: usize,
    /// Test rows per class.
    pub tests_per_class: usize,
    /// `random_state` of every `DataFrame.sample`.
    pub seed: u32,
}

impl Default for Draw {
    fn default() -> Self {
        Self {
            train_rows: 7000,
            examples_per_class: 10,
            tests_per_class: 100,
            seed: 42,
        }
    }
}

/// The rows drawn, as positions in the observed frame: the True rows then the False rows, each
/// in the order drawn (`pd.concat([t, f], ignore_index=True)`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Split {
    pub examples: Vec<usize>,
    pub tests: Vec<usize>,
}

/// `sample_train_test_set`: the pools split at `draw.train_rows`, each pool's True and False
/// rows sampled with `random_state = draw.seed`.
pub fn draw_split(rows: &[ObservedRow], draw: &Draw) -> Result<Split> {
    let cut = draw.train_rows.min(rows.len());
    let pick =
        |range: std::ops::Range<usize>, per_class: usize, pool: &str| -> Result<Vec<usize>> {
            let mut picked = Vec::with_capacity(2 * per_class);
            for class in [true, false] {
                let members: Vec<usize> = range
                    .clone()
                    .filter(|&i| rows[i].target.model_choice == class)
                    .collect();
                let positions = sample_positions(members.len(), per_class, draw.seed)
                    .with_context(|| {
                        format!(
                    "the {pool} pool (frame rows {}..{}) has {} rows labelled {}, fewer than the \
                     {per_class} to draw",
                    range.start,
                    range.end,
                    members.len(),
                    if class { "True" } else { "False" }
                )
                    })?;
                picked.extend(positions.into_iter().map(|p| members[p]));
            }
            Ok(picked)
        };
    Ok(Split {
        examples: pick(0..cut, draw.examples_per_class, "example")?,
        tests: pick(cut..rows.len(), draw.tests_per_class, "test")?,
    })
}
