//! The batch scheduler: walks the segments of a prefix tree depth-first and packs them into
//! forwards of at most `batch_tokens` tokens. A segment goes into a forward together with those
//! of its ancestors the forward does not already hold, so ancestors are repeated only when
//! their descendants spill into the next forward; a segment whose ancestry alone exceeds the
//! budget gets a forward of its own. Segments whose keys and values a prefix cache holds are
//! not computed: a forward refers to them as past keys (they cost no tokens).

use std::collections::HashMap;
use std::ops::Range;

use super::prefix::Segments;
use super::tokenize::TokenizedRequest;
use crate::model::batch::Keys;
use crate::model::PackedBatch;

/// Where one continuation token's answer goes: (request, token index).
pub type Consumer = (u32, u32);

/// One forward to run, and which answer of it goes where.
pub struct PlannedBatch {
    pub batch: PackedBatch,
    /// (index into the forward's scores, consumer).
    pub answers: Vec<(usize, Consumer)>,
    /// Cached segments the forward attends to, in the order of its past rows.
    pub past: Vec<usize>,
    /// Segments the forward computes, with their rows, parents first.
    pub computed: Vec<(usize, Range<usize>)>,
}

pub struct Schedule<'a> {
    segments: &'a Segments,
    /// Per segment: (offset inside the segment, consumer), sorted by offset.
    consumers: &'a [Vec<(u32, Consumer)>],
    requests: &'a [TokenizedRequest],
    budget: usize,
    next: usize,
}

impl<'a> Schedule<'a> {
    pub fn new(
        segments: &'a Segments,
        consumers: &'a [Vec<(u32, Consumer)>],
        requests: &'a [TokenizedRequest],
        budget: usize,
    ) -> Self {
        Self {
            segments,
            consumers,
            requests,
            budget,
            next: 0,
        }
    }
}

impl Iterator for Schedule<'_> {
    type Item = PlannedBatch;

    fn next(&mut self) -> Option<PlannedBatch> {
        let segments = self.segments;
        let mut planned = PlannedBatch {
            batch: PackedBatch::default(),
            answers: Vec::new(),
            past: Vec::new(),
            computed: Vec::new(),
        };
        let mut placed: HashMap<usize, Keys> = HashMap::new();
        while self.next < segments.list.len() {
            let segment = self.next;
            if segments.list[segment].cached {
                // Attended to by its computed descendants only.
                self.next += 1;
                continue;
            }
            let ancestors = segments.ancestors(segment);
            let missing: usize = ancestors
                .iter()
                .filter(|&&a| !placed.contains_key(&a) && !segments.list[a].cached)
                .map(|&a| segments.len(a))
                .sum();
            let cost = segments.len(segment) + missing;
            let used = planned.batch.tokens.len();
            if used > 0 && used + cost > self.budget {
                break;
            }
            for &s in ancestors.iter().chain(std::iter::once(&segment)) {
                if placed.contains_key(&s) {
                    continue;
                }
                if segments.list[s].cached {
                    let rows = planned.batch.push_past(segments.len(s));
                    planned.past.push(s);
                    placed.insert(s, Keys::Past(rows));
                    continue;
                }
                let above: Vec<Keys> = segments
                    .ancestors(s)
                    .iter()
                    .map(|a| placed[a].clone())
                    .collect();
                let tokens = &segments.tokens[segments.list[s].tokens.clone()];
                let rows = planned.batch.push_segment_below(tokens, above);
                planned.computed.push((s, rows.clone()));
                placed.insert(s, Keys::Batch(rows));
            }
            let start = placed[&segment].range().start;
            for &(offset, (i, j)) in &self.consumers[segment] {
                let target = self.requests[i as usize].continuation()[j as usize];
                let t = planned.batch.push_score(start + offset as usize, target);
                planned.answers.push((t, (i, j)));
            }
            self.next += 1;
        }
        (!planned.batch.tokens.is_empty()).then_some(planned)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::prefix::PrefixTree;

    fn request(tokens: &[u32], context_len: usize) -> TokenizedRequest {
        TokenizedRequest {
            tokens: tokens.to_vec(),
            context_len,
        }
    }

    /// A trunk of 4 tokens with two 2-token branches: one forward holds everything; a budget
    /// of 6 splits the branches and repeats the trunk.
    #[test]
    fn ancestors_are_repeated_only_across_forwards() {
        let requests = [
            request(&[1, 2, 3, 4, 5, 6, 7], 6),
            request(&[1, 2, 3, 4, 8, 9, 7], 6),
        ];
        let mut tree = PrefixTree::default();
        let mut consumers = Vec::new();
        let paths: Vec<Vec<u32>> = requests.iter().map(|r| tree.insert(r.input())).collect();
        let segments = tree.segments();
        consumers.resize(segments.list.len(), Vec::new());
        for (i, path) in paths.iter().enumerate() {
            let (seg, offset) = segments.node_place[path[5] as usize];
            consumers[seg as usize].push((offset, (i as u32, 0)));
        }
        let all: Vec<_> = Schedule::new(&segments, &consumers, &requests, 100).collect();
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].batch.tokens, vec![1, 2, 3, 4, 5, 6, 8, 9]);
        assert_eq!(all[0].batch.positions, vec![0, 1, 2, 3, 4, 5, 4, 5]);
        assert_eq!(all[0].batch.score_rows, vec![5, 7]);
        let split: Vec<_> = Schedule::new(&segments, &consumers, &requests, 6).collect();
        assert_eq!(split.len(), 2);
        assert_eq!(split[1].batch.tokens, vec![1, 2, 3, 4, 8, 9]);
        assert_eq!(
            split[1].batch.segments[1].ancestors,
            vec![crate::model::batch::Keys::Batch(0..4)]
        );
        assert_eq!(split[1].answers, vec![(0, (1, 0))]);
    }
}
