//! One forward's input: token segments packed end to end, each attending to its ancestors, and
//! the rows and target tokens to score.

use std::ops::Range;

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
    /// Rows of the past keys and values (see [`Keys::Past`]) the segments refer to; a forward
    /// without them is given none.
    pub past_len: usize,
    /// Rows of `tokens` whose next-token distribution is needed (each once) …
    pub score_rows: Vec<u32>,
    /// … and the (index into `score_rows`, target token) pairs to score.
    pub targets: Vec<(u32, u32)>,
    /// Which rotary frequencies the batch's sequences take, where a model's depend on the
    /// input's length (see `Network::rope_regime`); every sequence of a batch has the same.
    pub rope_regime: u8,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    /// Where the segment lies in `tokens`.
    pub range: Range<usize>,
    /// The keys of its ancestors, root first; their lengths sum to the segment's first
    /// position.
    pub ancestors: Vec<Keys>,
}

/// Keys and values a segment attends to besides its own: rows computed in this forward, or
/// rows computed by an earlier one and handed in as [`PastKv`](super::kv::PastKv) (a prefix
/// cache). Either way a key's position is its offset along the segment's ancestor chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Keys {
    /// Rows of this forward's `tokens`.
    Batch(Range<usize>),
    /// Rows of the forward's past keys and values.
    Past(Range<usize>),
}

impl Keys {
    pub fn range(&self) -> &Range<usize> {
        match self {
            Keys::Batch(r) | Keys::Past(r) => r,
        }
    }

    pub fn len(&self) -> usize {
        self.range().len()
    }

    pub fn is_empty(&self) -> bool {
        self.range().is_empty()
    }
}

impl From<Range<usize>> for Keys {
    fn from(range: Range<usize>) -> Self {
        Keys::Batch(range)
    }
}

impl PackedBatch {
    /// Appends a segment below `ancestors` (ranges already in the batch) and returns its range.
    pub fn push_segment(&mut self, tokens: &[u32], ancestors: Vec<Range<usize>>) -> Range<usize> {
        self.push_segment_below(tokens, ancestors.into_iter().map(Keys::Batch).collect())
    }

    /// Appends a segment below `ancestors` (in the batch or past) and returns its range.
    pub fn push_segment_below(&mut self, tokens: &[u32], ancestors: Vec<Keys>) -> Range<usize> {
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

    /// Reserves `len` rows of the forward's past keys and values and returns their range.
    pub fn push_past(&mut self, len: usize) -> Range<usize> {
        let range = self.past_len..self.past_len + len;
        self.past_len += len;
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
