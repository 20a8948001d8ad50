//! Prefix sharing: the requests' token sequences as a prefix tree (a node per distinct token
//! prefix), compressed into segments — maximal chains of nodes without branching — which the
//! model computes once each, a segment attending to its ancestors.

use std::collections::HashMap;
use std::ops::Range;

const ROOT: u32 = u32::MAX;

/// A prefix tree over token ids.
#[derive(Default)]
pub struct PrefixTree {
    token: Vec<u32>,
    parent: Vec<u32>,
    child_index: HashMap<(u32, u32), u32>,
    children: Vec<Vec<u32>>,
    roots: Vec<u32>,
}

impl PrefixTree {
    pub fn len(&self) -> usize {
        self.token.len()
    }

    pub fn is_empty(&self) -> bool {
        self.token.is_empty()
    }

    fn new_node(&mut self, parent: u32, token: u32) -> u32 {
        let id = self.token.len() as u32;
        self.token.push(token);
        self.parent.push(parent);
        self.children.push(Vec::new());
        if parent == ROOT {
            self.roots.push(id);
        } else {
            self.children[parent as usize].push(id);
        }
        id
    }

    /// Adds `tokens` as a path from the root, sharing existing prefixes, and returns the node
    /// of every token.
    pub fn insert(&mut self, tokens: &[u32]) -> Vec<u32> {
        let mut parent = ROOT;
        tokens
            .iter()
            .map(|&t| {
                let node = match self.child_index.get(&(parent, t)) {
                    Some(&n) => n,
                    None => {
                        let n = self.new_node(parent, t);
                        self.child_index.insert((parent, t), n);
                        n
                    }
                };
                parent = node;
                node
            })
            .collect()
    }

    /// How many leading tokens of `tokens` the tree holds as a path from a root.
    pub fn shared_len(&self, tokens: &[u32]) -> usize {
        let mut parent = ROOT;
        for (i, &t) in tokens.iter().enumerate() {
            match self.child_index.get(&(parent, t)) {
                Some(&node) => parent = node,
                None => return i,
            }
        }
        tokens.len()
    }

    /// Adds `tokens` as a path of new nodes, sharing nothing (the no-sharing baseline).
    pub fn insert_unshared(&mut self, tokens: &[u32]) -> Vec<u32> {
        let mut parent = ROOT;
        tokens
            .iter()
            .map(|&t| {
                parent = self.new_node(parent, t);
                parent
            })
            .collect()
    }

    /// The tree cut into segments, parents before children, roots in insertion order.
    pub fn segments(&self) -> Segments {
        self.segments_marked(&[])
    }

    /// Like [`Self::segments`], where nodes whose `computed` flag is false (or missing) hold
    /// keys and values computed before (a prefix cache's): segments break where the flag
    /// changes, and those of cached nodes are marked [`SegmentNode::cached`].
    pub fn segments_marked(&self, computed: &[bool]) -> Segments {
        let is_cached = |node: u32| {
            !computed.is_empty() && !computed.get(node as usize).copied().unwrap_or(false)
        };
        let mut segments = Segments {
            tokens: Vec::with_capacity(self.len()),
            list: Vec::new(),
            node_place: vec![(0, 0); self.len()],
        };
        let mut stack: Vec<(u32, Option<usize>)> =
            self.roots.iter().rev().map(|&r| (r, None)).collect();
        while let Some((first, parent)) = stack.pop() {
            let id = segments.list.len();
            let start = segments.tokens.len();
            let mut node = first;
            let cached = is_cached(first);
            loop {
                segments.node_place[node as usize] =
                    (id as u32, (segments.tokens.len() - start) as u32);
                segments.tokens.push(self.token[node as usize]);
                match self.children[node as usize].as_slice() {
                    [only] if is_cached(*only) == cached => node = *only,
                    _ => break,
                }
            }
            let depth = parent.map_or(0, |p: usize| {
                let p = &segments.list[p];
                p.depth + p.tokens.len()
            });
            segments.list.push(SegmentNode {
                tokens: start..segments.tokens.len(),
                parent,
                depth,
                cached,
            });
            for &child in self.children[node as usize].iter().rev() {
                stack.push((child, Some(id)));
            }
        }
        segments
    }
}

pub struct SegmentNode {
    /// The segment's tokens, as a range of `Segments::tokens`.
    pub tokens: Range<usize>,
    pub parent: Option<usize>,
    /// Tokens above the segment (the position of its first token).
    pub depth: usize,
    /// Its keys and values come from a prefix cache: it is not computed, only attended to.
    pub cached: bool,
}

/// A prefix tree cut into chains, in depth-first order.
pub struct Segments {
    pub tokens: Vec<u32>,
    pub list: Vec<SegmentNode>,
    /// Node id → (segment, offset inside the segment).
    pub node_place: Vec<(u32, u32)>,
}

impl Segments {
    pub fn len(&self, segment: usize) -> usize {
        self.list[segment].tokens.len()
    }

    /// The tokens from the root to the end of `segment` (its ancestors' and its own).
    pub fn path(&self, segment: usize) -> Vec<u32> {
        let mut path = Vec::with_capacity(self.list[segment].depth + self.len(segment));
        for s in self
            .ancestors(segment)
            .into_iter()
            .chain(std::iter::once(segment))
        {
            path.extend_from_slice(&self.tokens[self.list[s].tokens.clone()]);
        }
        path
    }

    /// The ancestors of `segment`, root first.
    pub fn ancestors(&self, segment: usize) -> Vec<usize> {
        let mut chain = Vec::new();
        let mut at = self.list[segment].parent;
        while let Some(p) = at {
            chain.push(p);
            at = self.list[p].parent;
        }
        chain.reverse();
        chain
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_prefixes_become_one_segment_with_branches() {
        let mut tree = PrefixTree::default();
        let a = tree.insert(&[1, 2, 3, 4]);
        let b = tree.insert(&[1, 2, 3, 5, 6]);
        let c = tree.insert(&[7]);
        assert_eq!(tree.len(), 7);
        assert_eq!(a[..3], b[..3]);
        let s = tree.segments();
        assert_eq!(s.list.len(), 4);
        assert_eq!(&s.tokens[s.list[0].tokens.clone()], &[1, 2, 3]);
        assert_eq!(&s.tokens[s.list[1].tokens.clone()], &[4]);
        assert_eq!(&s.tokens[s.list[2].tokens.clone()], &[5, 6]);
        assert_eq!(s.list[2].parent, Some(0));
        assert_eq!(s.list[2].depth, 3);
        assert_eq!(s.ancestors(2), vec![0]);
        assert_eq!(s.node_place[b[4] as usize], (2, 1));
        assert_eq!(s.node_place[c[0] as usize], (3, 0));
    }

    /// Cached nodes form their own segments, broken where a path turns from cached to
    /// computed (or back).
    #[test]
    fn cached_nodes_form_segments_of_their_own() {
        let mut tree = PrefixTree::default();
        let a = tree.insert(&[1, 2, 3, 4, 5]);
        let mut computed = vec![false; tree.len()];
        computed[a[1] as usize] = true;
        computed[a[4] as usize] = true;
        let s = tree.segments_marked(&computed);
        let runs: Vec<(Vec<u32>, bool)> = s
            .list
            .iter()
            .map(|n| (s.tokens[n.tokens.clone()].to_vec(), n.cached))
            .collect();
        assert_eq!(
            runs,
            vec![
                (vec![1], true),
                (vec![2], false),
                (vec![3, 4], true),
                (vec![5], false)
            ]
        );
        assert_eq!(s.path(2), vec![1, 2, 3, 4]);
        assert_eq!(s.list[3].depth, 4);
    }

    #[test]
    fn unshared_paths_share_nothing() {
        let mut tree = PrefixTree::default();
        tree.insert_unshared(&[1, 2]);
        tree.insert_unshared(&[1, 2]);
        assert_eq!(tree.len(), 4);
        assert_eq!(tree.segments().list.len(), 2);
    }
}
