//! A prefix cache across calls: the keys and values of token prefixes computed before, kept in
//! a radix tree keyed by token ids under a memory budget, with what was scored at each cached
//! position (the model's argmax and the log-probabilities of the targets asked for there), so
//! that a prefix sent again is neither computed nor recomputed for its echoed scores.
//!
//! Shaped after SGLang's radix cache: edges hold runs of tokens and split where paths diverge;
//! eviction takes the least recently used leaf first (a parent goes after its children), and
//! never a node that the running call has matched (`pin`), so the past a call planned with is
//! still there when its forwards read it. Recency is a counter, not wall time, so that tests
//! are deterministic. Unlike vLLM and SGLang it keeps each position's scores, so requests for
//! prompt log-probabilities are served from the cache too.
//!
//! Keys and values are stored token-major (see [`crate::model::kv`]), so a split is a
//! `split_off` of a node's rows.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use anyhow::{bail, Result};
use serde::Serialize;

use crate::model::kv::KvGeometry;

/// A kept score: log p(target), and the argmax with its log-probability.
pub type KeptAnswer = (f64, (u32, f64));

/// What was scored at one cached position: the distribution over the token after it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RowFacts {
    /// The most likely next token and its log-probability.
    pub top: Option<(u32, f64)>,
    /// (target, log-probability) of the next tokens scored here.
    pub targets: Vec<(u32, f64)>,
}

impl RowFacts {
    /// The log-probability of `target` and the argmax with its log-probability, where both
    /// are known.
    pub fn answer(&self, target: u32) -> Option<KeptAnswer> {
        let top = self.top?;
        let (_, logprob) = self.targets.iter().find(|(t, _)| *t == target)?;
        Some((*logprob, top))
    }

    fn merge(&mut self, other: &RowFacts) -> usize {
        if other.top.is_some() {
            self.top = other.top;
        }
        let before = self.targets.len();
        for &(t, lp) in &other.targets {
            if !self.targets.iter().any(|(u, _)| *u == t) {
                self.targets.push((t, lp));
            }
        }
        self.targets.len() - before
    }
}

/// Bytes a node costs besides its tokens (struct, child map, allocations), counted against
/// the budget.
const NODE_BYTES: usize = 160;
/// Bytes a target kept at a position costs.
const TARGET_BYTES: usize = std::mem::size_of::<(u32, f64)>();

/// How many leading tokens `a` and `b` share.
fn common_prefix(a: &[u32], b: &[u32]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

type NodeId = usize;
const NO_PARENT: NodeId = usize::MAX;

struct Node {
    tokens: Vec<u32>,
    parent: NodeId,
    children: HashMap<u32, NodeId>,
    /// `tokens.len()` rows of keys and values, token-major.
    kv: Vec<f32>,
    facts: Vec<RowFacts>,
    /// When it was last matched or written.
    tick: u64,
    /// The call that last matched it; the running call's nodes are not evicted.
    pin: u64,
}

/// Counters of the cache, readable while the cache is busy (a server's `/health`).
#[derive(Debug, Default)]
pub struct CacheStats {
    pub budget_bytes: AtomicU64,
    pub bytes: AtomicU64,
    pub entries: AtomicU64,
    pub tokens: AtomicU64,
    pub looked_up_tokens: AtomicU64,
    pub hit_tokens: AtomicU64,
    pub answered_positions: AtomicU64,
    pub inserted_tokens: AtomicU64,
    pub evicted_tokens: AtomicU64,
}

/// A snapshot of [`CacheStats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct CacheStatsValues {
    pub budget_bytes: u64,
    pub bytes: u64,
    pub entries: u64,
    pub tokens: u64,
    /// Input tokens of the requests looked up, and how many of them were cached.
    pub looked_up_tokens: u64,
    pub hit_tokens: u64,
    /// `hit_tokens / looked_up_tokens`.
    pub hit_rate: f64,
    /// Scores answered from the cache's kept scores, without computing their position.
    pub answered_positions: u64,
    pub inserted_tokens: u64,
    pub evicted_tokens: u64,
}

impl CacheStats {
    pub fn values(&self) -> CacheStatsValues {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let looked_up = get(&self.looked_up_tokens);
        let hit = get(&self.hit_tokens);
        CacheStatsValues {
            budget_bytes: get(&self.budget_bytes),
            bytes: get(&self.bytes),
            entries: get(&self.entries),
            tokens: get(&self.tokens),
            looked_up_tokens: looked_up,
            hit_tokens: hit,
            hit_rate: if looked_up == 0 {
                0.0
            } else {
                hit as f64 / looked_up as f64
            },
            answered_positions: get(&self.answered_positions),
            inserted_tokens: get(&self.inserted_tokens),
            evicted_tokens: get(&self.evicted_tokens),
        }
    }
}

/// The cache of one model: one tree per rotary regime (prefixes of different regimes are not
/// prefixes of each other).
pub struct PrefixCache {
    budget: usize,
    geometry: KvGeometry,
    nodes: Vec<Option<Node>>,
    free: Vec<NodeId>,
    roots: HashMap<u8, NodeId>,
    tick: u64,
    call: u64,
    bytes: usize,
    tokens: usize,
    entries: usize,
    stats: Arc<CacheStats>,
}

/// One step of a walk: `len` tokens of `node` from its first.
struct Span {
    node: NodeId,
    len: usize,
}

impl PrefixCache {
    /// An empty cache of at most `budget` bytes for keys and values of `geometry`.
    pub fn new(budget: usize, geometry: KvGeometry) -> Self {
        let stats = Arc::new(CacheStats::default());
        stats.budget_bytes.store(budget as u64, Ordering::Relaxed);
        Self {
            budget,
            geometry,
            nodes: Vec::new(),
            free: Vec::new(),
            roots: HashMap::new(),
            tick: 0,
            call: 0,
            bytes: 0,
            tokens: 0,
            entries: 0,
            stats,
        }
    }

    pub fn geometry(&self) -> KvGeometry {
        self.geometry
    }

    pub fn budget(&self) -> usize {
        self.budget
    }

    /// Bytes held (keys and values, kept scores and the tree), never above the budget.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Cached token positions.
    pub fn tokens(&self) -> usize {
        self.tokens
    }

    /// Nodes of the tree (runs of tokens).
    pub fn entries(&self) -> usize {
        self.entries
    }

    pub fn stats(&self) -> Arc<CacheStats> {
        self.stats.clone()
    }

    /// Empties the cache (its counters go on).
    pub fn clear(&mut self) {
        self.nodes.clear();
        self.free.clear();
        self.roots.clear();
        self.bytes = 0;
        self.tokens = 0;
        self.entries = 0;
        self.publish();
    }

    /// Starts a call: what it matches from now on is kept until the next call starts.
    pub fn begin_call(&mut self) {
        self.call += 1;
    }

    fn node(&self, id: NodeId) -> &Node {
        self.nodes[id].as_ref().expect("live node")
    }

    fn node_mut(&mut self, id: NodeId) -> &mut Node {
        self.nodes[id].as_mut().expect("live node")
    }

    fn root(&mut self, regime: u8) -> NodeId {
        if let Some(&root) = self.roots.get(&regime) {
            return root;
        }
        let root = self.alloc(Node {
            tokens: Vec::new(),
            parent: NO_PARENT,
            children: HashMap::new(),
            kv: Vec::new(),
            facts: Vec::new(),
            tick: 0,
            pin: 0,
        });
        self.roots.insert(regime, root);
        root
    }

    fn alloc(&mut self, node: Node) -> NodeId {
        match self.free.pop() {
            Some(id) => {
                self.nodes[id] = Some(node);
                id
            }
            None => {
                self.nodes.push(Some(node));
                self.nodes.len() - 1
            }
        }
    }

    fn token_bytes(&self) -> usize {
        self.geometry.bytes_per_token() + 4 + std::mem::size_of::<RowFacts>()
    }

    fn node_bytes(&self, node: &Node) -> usize {
        NODE_BYTES
            + node.tokens.len() * self.token_bytes()
            + node.facts.iter().map(|f| f.targets.len()).sum::<usize>() * TARGET_BYTES
    }

    /// Walks `tokens` from the root as far as the cache holds them; with `pin`, the nodes on
    /// the way are kept for the running call and count as used now.
    fn walk(&mut self, regime: u8, tokens: &[u32], pin: bool) -> Vec<Span> {
        let Some(&root) = self.roots.get(&regime) else {
            return Vec::new();
        };
        self.tick += 1;
        let (tick, call) = (self.tick, self.call);
        let mut spans = Vec::new();
        let mut node = root;
        let mut at = 0;
        while at < tokens.len() {
            let Some(&child) = self.node(node).children.get(&tokens[at]) else {
                break;
            };
            let edge = &self.node(child).tokens;
            let common = common_prefix(edge, &tokens[at..]);
            let whole = common == edge.len();
            // A match that ends inside an edge splits it, so that only the matched part is
            // kept for the call (where the budget has room for one more node).
            let child = if pin && !whole && common > 0 {
                // Kept from eviction while room is made, then the unmatched part lets go.
                let before = std::mem::replace(&mut self.node_mut(child).pin, call);
                self.evict(NODE_BYTES);
                if self.bytes + NODE_BYTES <= self.budget {
                    let upper = self.split(child, common);
                    self.node_mut(child).pin = before;
                    upper
                } else {
                    child
                }
            } else {
                child
            };
            if pin {
                let n = self.node_mut(child);
                n.tick = tick;
                n.pin = call;
            }
            spans.push(Span {
                node: child,
                len: common,
            });
            at += common;
            node = child;
            if !whole {
                break;
            }
        }
        spans
    }

    /// How many leading tokens of `tokens` are cached (a look that changes nothing).
    pub fn cached_len(&self, regime: u8, tokens: &[u32]) -> usize {
        let Some(&root) = self.roots.get(&regime) else {
            return 0;
        };
        let (mut node, mut at) = (root, 0);
        while at < tokens.len() {
            let Some(&child) = self.node(node).children.get(&tokens[at]) else {
                break;
            };
            let edge = &self.node(child).tokens;
            let common = common_prefix(edge, &tokens[at..]);
            at += common;
            if common < edge.len() {
                break;
            }
            node = child;
        }
        at
    }

    /// How many leading tokens of `tokens` are cached, and for each (position, target) of
    /// `queries` the kept answer there ([`RowFacts::answer`]). The matched nodes are kept
    /// until the next call.
    pub fn lookup(
        &mut self,
        regime: u8,
        tokens: &[u32],
        queries: &[(usize, u32)],
    ) -> (usize, Vec<Option<KeptAnswer>>) {
        let spans = self.walk(regime, tokens, true);
        let mut starts = Vec::with_capacity(spans.len());
        let mut matched = 0;
        for span in &spans {
            starts.push(matched);
            matched += span.len;
        }
        let answers = queries
            .iter()
            .map(|&(row, target)| {
                if row >= matched {
                    return None;
                }
                let i = starts.partition_point(|&s| s <= row) - 1;
                self.node(spans[i].node).facts[row - starts[i]].answer(target)
            })
            .collect();
        self.stats
            .looked_up_tokens
            .fetch_add(tokens.len() as u64, Ordering::Relaxed);
        self.stats
            .hit_tokens
            .fetch_add(matched as u64, Ordering::Relaxed);
        (matched, answers)
    }

    /// Counts scores answered from kept facts (for the statistics).
    pub fn note_answered(&self, positions: usize) {
        self.stats
            .answered_positions
            .fetch_add(positions as u64, Ordering::Relaxed);
    }

    /// The keys and values of positions `range` of the path `tokens` (token-major rows),
    /// appended to `out`; the path must be cached that far (a call reads what it matched).
    pub fn read_rows(
        &mut self,
        regime: u8,
        tokens: &[u32],
        range: std::ops::Range<usize>,
        out: &mut Vec<f32>,
    ) -> Result<()> {
        let per_token = self.geometry.floats_per_token();
        let spans = self.walk(regime, &tokens[..range.end], false);
        let mut at = 0;
        for span in &spans {
            let node = self.node(span.node);
            let lo = range.start.max(at);
            let hi = range.end.min(at + span.len);
            if lo < hi {
                out.extend_from_slice(&node.kv[(lo - at) * per_token..(hi - at) * per_token]);
            }
            at += span.len;
        }
        if at < range.end {
            bail!(
                "the prefix cache lost positions {at}..{} that this call matched",
                range.end
            );
        }
        Ok(())
    }

    /// Splits `child` after its first `k` tokens; returns the upper half, which takes its place.
    fn split(&mut self, child: NodeId, k: usize) -> NodeId {
        let per_token = self.geometry.floats_per_token();
        let (parent, upper) = {
            let c = self.node_mut(child);
            let lower_tokens = c.tokens.split_off(k);
            let lower_kv = c.kv.split_off(k * per_token);
            let lower_facts = c.facts.split_off(k);
            let upper = Node {
                tokens: std::mem::replace(&mut c.tokens, lower_tokens),
                parent: c.parent,
                children: HashMap::new(),
                kv: std::mem::replace(&mut c.kv, lower_kv),
                facts: std::mem::replace(&mut c.facts, lower_facts),
                tick: c.tick,
                pin: c.pin,
            };
            (c.parent, upper)
        };
        let first = upper.tokens[0];
        let below = self.node(child).tokens[0];
        let upper = self.alloc(upper);
        self.node_mut(upper).children.insert(below, child);
        self.node_mut(child).parent = upper;
        self.node_mut(parent).children.insert(first, upper);
        self.bytes += NODE_BYTES;
        self.entries += 1;
        upper
    }

    /// Caches positions `from..path.len()` of the path `path`: `kv` holds their keys and
    /// values (token-major) and `facts` what was scored at each. Positions already cached
    /// gain the facts; new ones are added where the budget allows (least recently used
    /// leaves of other calls make room; what does not fit is left out, deepest first). The
    /// path must be cached up to `from`, else nothing is added. Returns the positions added.
    pub fn insert(
        &mut self,
        regime: u8,
        path: &[u32],
        from: usize,
        kv: &[f32],
        facts: &[RowFacts],
    ) -> usize {
        let per_token = self.geometry.floats_per_token();
        debug_assert_eq!(kv.len(), (path.len() - from) * per_token);
        debug_assert_eq!(facts.len(), path.len() - from);
        self.tick += 1;
        let (tick, call) = (self.tick, self.call);
        let mut node = self.root(regime);
        let mut at = 0;
        // Walk the cached part, adding scores computed again at cached positions.
        let mut diverged = false;
        while at < path.len() {
            let Some(&child) = self.node(node).children.get(&path[at]) else {
                break;
            };
            let common = common_prefix(&self.node(child).tokens, &path[at..]);
            let edge_len = self.node(child).tokens.len();
            {
                let n = self.node_mut(child);
                n.tick = tick;
                n.pin = call;
            }
            self.merge_facts(child, at, from, common, facts);
            node = child;
            at += common;
            if common < edge_len {
                diverged = true;
                break;
            }
        }
        let mut inserted = 0;
        if at >= from && at < path.len() {
            let token_bytes = self.token_bytes();
            let targets: Vec<usize> = facts[at - from..]
                .iter()
                .map(|f| f.targets.len() * TARGET_BYTES)
                .collect();
            // The bytes of a leaf of the first `n` new tokens.
            let leaf_bytes =
                |n: usize| NODE_BYTES + n * token_bytes + targets[..n].iter().sum::<usize>();
            let split_bytes = if diverged { NODE_BYTES } else { 0 };
            let wanted = path.len() - at;
            self.evict(split_bytes + leaf_bytes(wanted));
            let room = self.budget.saturating_sub(self.bytes + split_bytes);
            let fits = (0..=wanted)
                .rev()
                .find(|&n| n == 0 || leaf_bytes(n) <= room)
                .unwrap_or(0);
            if fits > 0 {
                if diverged {
                    let k = at - self.depth_of(node);
                    node = self.split(node, k);
                }
                let (lo, hi) = (at - from, at - from + fits);
                let leaf = Node {
                    tokens: path[at..at + fits].to_vec(),
                    parent: node,
                    children: HashMap::new(),
                    kv: kv[lo * per_token..hi * per_token].to_vec(),
                    facts: facts[lo..hi].to_vec(),
                    tick,
                    pin: call,
                };
                self.bytes += self.node_bytes(&leaf);
                self.tokens += fits;
                self.entries += 1;
                let leaf = self.alloc(leaf);
                self.node_mut(node).children.insert(path[at], leaf);
                inserted = fits;
            }
        }
        self.stats
            .inserted_tokens
            .fetch_add(inserted as u64, Ordering::Relaxed);
        self.publish();
        inserted
    }

    /// Adds `facts` (for positions `from..`) to the first `common` positions of `node`,
    /// which start at position `at` of the path, as far as the budget allows.
    fn merge_facts(
        &mut self,
        node: NodeId,
        at: usize,
        from: usize,
        common: usize,
        facts: &[RowFacts],
    ) {
        let first = from.max(at);
        if first >= at + common {
            return;
        }
        let new_targets: usize = (first..at + common)
            .map(|p| {
                let kept = &self.node(node).facts[p - at].targets;
                facts[p - from]
                    .targets
                    .iter()
                    .filter(|(t, _)| !kept.iter().any(|(u, _)| u == t))
                    .count()
            })
            .sum();
        if new_targets > 0 {
            self.evict(new_targets * TARGET_BYTES);
        }
        let room = self.budget.saturating_sub(self.bytes) / TARGET_BYTES;
        let n = self.node_mut(node);
        let mut added = 0;
        for p in first..at + common {
            if new_targets > room {
                // No room for more scores: keep only what replaces nothing (the argmax).
                if facts[p - from].top.is_some() {
                    n.facts[p - at].top = facts[p - from].top;
                }
                continue;
            }
            added += n.facts[p - at].merge(&facts[p - from]);
        }
        self.bytes += added * TARGET_BYTES;
    }

    /// The position of `node`'s first token along its path.
    fn depth_of(&self, node: NodeId) -> usize {
        let mut depth = 0;
        let mut at = self.node(node).parent;
        while at != NO_PARENT {
            depth += self.node(at).tokens.len();
            at = self.node(at).parent;
        }
        depth
    }

    /// Evicts least recently used leaves that the running call has not matched until
    /// `extra` more bytes fit in the budget, or nothing more can go.
    fn evict(&mut self, extra: usize) {
        if self.bytes + extra <= self.budget {
            return;
        }
        let evictable = |cache: &Self, n: &Node| {
            n.children.is_empty() && n.pin != cache.call && n.parent != NO_PARENT
        };
        let mut leaves: BinaryHeap<Reverse<(u64, NodeId)>> = self
            .nodes
            .iter()
            .enumerate()
            .filter_map(|(id, n)| n.as_ref().map(|n| (id, n)))
            .filter(|&(_, n)| evictable(self, n))
            .map(|(id, n)| Reverse((n.tick, id)))
            .collect();
        while self.bytes + extra > self.budget {
            let Some(Reverse((_, victim))) = leaves.pop() else {
                break;
            };
            let node = self.nodes[victim].take().expect("live node");
            self.bytes -= self.node_bytes(&node);
            self.tokens -= node.tokens.len();
            self.entries -= 1;
            self.stats
                .evicted_tokens
                .fetch_add(node.tokens.len() as u64, Ordering::Relaxed);
            self.node_mut(node.parent).children.remove(&node.tokens[0]);
            self.free.push(victim);
            // A parent left without children is a leaf now.
            let parent = self.node(node.parent);
            if evictable(self, parent) {
                leaves.push(Reverse((parent.tick, node.parent)));
            }
        }
    }

    /// Evicts (as an insert would) until `bytes` more fit: one pass before many inserts.
    pub fn make_room(&mut self, bytes: usize) {
        self.evict(bytes.min(self.budget));
        self.publish();
    }

    fn publish(&self) {
        self.stats.bytes.store(self.bytes as u64, Ordering::Relaxed);
        self.stats
            .tokens
            .store(self.tokens as u64, Ordering::Relaxed);
        self.stats
            .entries
            .store(self.entries as u64, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GEOMETRY: KvGeometry = KvGeometry {
        layers: 2,
        kv_heads: 1,
        head_dim: 2,
    };

    /// Stand-in keys and values: a function of the token and its position.
    fn kv(tokens: &[u32], from: usize) -> Vec<f32> {
        let per = GEOMETRY.floats_per_token();
        tokens[from..]
            .iter()
            .enumerate()
            .flat_map(|(i, &t)| {
                (0..per).map(move |j| (t * 1000) as f32 + (from + i) as f32 + j as f32 / 10.0)
            })
            .collect()
    }

    fn facts(tokens: &[u32], from: usize) -> Vec<RowFacts> {
        (from..tokens.len())
            .map(|i| RowFacts {
                top: Some((tokens[i] + 1, -0.5)),
                targets: vec![(tokens.get(i + 1).copied().unwrap_or(0), -(i as f64))],
            })
            .collect()
    }

    fn insert(cache: &mut PrefixCache, tokens: &[u32]) -> usize {
        let (m, _) = cache.lookup(0, tokens, &[]);
        cache.insert(0, tokens, m, &kv(tokens, m), &facts(tokens, m))
    }

    fn rows(cache: &mut PrefixCache, tokens: &[u32]) -> Vec<f32> {
        let mut out = Vec::new();
        cache
            .read_rows(0, tokens, 0..tokens.len(), &mut out)
            .unwrap();
        out
    }

    fn roomy() -> PrefixCache {
        PrefixCache::new(1 << 20, GEOMETRY)
    }

    #[test]
    fn a_cached_path_comes_back_with_its_rows_and_facts() {
        let mut cache = roomy();
        cache.begin_call();
        let a = [1, 2, 3, 4, 5];
        assert_eq!(insert(&mut cache, &a), 5);
        assert_eq!(rows(&mut cache, &a), kv(&a, 0));
        let (m, f) = cache.lookup(0, &[1, 2, 3, 9], &[(0, 2), (2, 4), (2, 9), (3, 5)]);
        assert_eq!(m, 3);
        let at = |i: usize, t: u32| facts(&a, 0)[i].answer(t);
        assert_eq!(f, vec![at(0, 2), at(2, 4), None, None]);
        assert!(f[1].is_some());
        assert_eq!(
            cache.lookup(1, &a, &[]).0,
            0,
            "another rotary regime shares nothing"
        );
        assert!(cache.bytes() <= cache.budget());
    }

    /// A path that leaves a cached one midway splits its edge; both keep their rows and facts,
    /// and a shared prefix is stored once.
    #[test]
    fn diverging_paths_split_an_edge_and_keep_everything() {
        let mut cache = roomy();
        cache.begin_call();
        let a = [1, 2, 3, 4, 5];
        let b = [1, 2, 3, 7, 8, 9];
        insert(&mut cache, &a);
        // b computed whole: its new tokens are added, its scores join the shared positions'.
        assert_eq!(
            cache.insert(0, &b, 0, &kv(&b, 0), &facts(&b, 0)),
            3,
            "only the new tokens are added"
        );
        assert_eq!(cache.tokens(), 8);
        assert_eq!(cache.entries(), 3);
        assert_eq!(rows(&mut cache, &a), kv(&a, 0));
        assert_eq!(rows(&mut cache, &b), kv(&b, 0));
        // Position 2 was scored for target 4 (path a) and target 7 (path b).
        let (m, f) = cache.lookup(0, &a, &[(2, 4), (2, 7), (2, 5)]);
        assert_eq!(m, 5);
        assert_eq!(
            f,
            vec![Some((-2.0, (4, -0.5))), Some((-2.0, (4, -0.5))), None]
        );
        // A path inside an edge.
        assert_eq!(cache.lookup(0, &[1, 2], &[]).0, 2);
        assert_eq!(insert(&mut cache, &[1, 2]), 0);
    }

    /// Room for 2.5 prompts: A, B, C inserted in turn evicts A; touching B then inserting D
    /// evicts C, not B. What the running call has matched is never evicted, and an insert too
    /// big for what is left is cut short.
    #[test]
    fn least_recently_used_leaves_go_first_within_the_budget() {
        let prompt = |t: u32| -> Vec<u32> { (0..10).map(|i| t * 100 + i).collect() };
        let (a, b, c, d) = (prompt(1), prompt(2), prompt(3), prompt(4));
        let one = NODE_BYTES + 10 * roomy().token_bytes();
        let mut cache = PrefixCache::new(one * 5 / 2, GEOMETRY);
        for p in [&a, &b, &c] {
            cache.begin_call();
            insert(&mut cache, p);
            assert!(cache.bytes() <= cache.budget());
        }
        cache.begin_call();
        assert_eq!(cache.lookup(0, &a, &[]).0, 0, "A, the oldest, made room");
        assert_eq!(cache.lookup(0, &b, &[]).0, 10);
        cache.begin_call();
        insert(&mut cache, &d);
        assert_eq!(
            cache.lookup(0, &c, &[]).0,
            0,
            "C went, not B, which was used later"
        );
        assert_eq!(cache.lookup(0, &b, &[]).0, 10);
        assert_eq!(cache.lookup(0, &d, &[]).0, 10);
        // In one call that matched B and D, a new prompt finds no room and adds nothing.
        assert_eq!(insert(&mut cache, &prompt(5)), 0);
        assert_eq!(cache.lookup(0, &b, &[]).0, 10);
        assert_eq!(cache.lookup(0, &d, &[]).0, 10);
        assert!(cache.bytes() <= cache.budget());
        let stats = cache.stats().values();
        assert_eq!(stats.evicted_tokens, 20);
        assert_eq!(stats.tokens, 20);
    }

    /// A parent is evicted only after its children, and not while the running call uses it;
    /// an insert that does not fit keeps its shallow part.
    #[test]
    fn parents_outlive_their_children_and_big_inserts_keep_their_start() {
        let one_token = roomy().token_bytes();
        let mut cache = PrefixCache::new(3 * NODE_BYTES + 10 * one_token, GEOMETRY);
        cache.begin_call();
        insert(&mut cache, &[1, 2, 3, 4, 5, 6]);
        insert(&mut cache, &[1, 2, 3, 7, 8, 9]);
        assert_eq!(cache.entries(), 3);
        cache.begin_call();
        assert_eq!(cache.lookup(0, &[1, 2, 3], &[]).0, 3);
        let long: Vec<u32> = (50..60).collect();
        let added = insert(&mut cache, &long);
        assert!(added > 0 && added < 10, "cut short: {added}");
        let (m, _) = cache.lookup(0, &long, &[]);
        assert_eq!(m, added, "the first tokens are the ones kept");
        assert_eq!(rows(&mut cache, &long[..m]), kv(&long[..m], 0));
        // Both branches went; the trunk they hang from, matched by this call, stayed.
        assert_eq!(cache.lookup(0, &[1, 2, 3, 4, 5, 6], &[]).0, 3);
        assert_eq!(cache.lookup(0, &[1, 2, 3, 7, 8, 9], &[]).0, 3);
        assert!(cache.bytes() <= cache.budget());
    }

    #[test]
    fn an_insert_needs_its_path_cached_up_to_where_it_starts() {
        let mut cache = roomy();
        cache.begin_call();
        let a = [1, 2, 3, 4];
        assert_eq!(cache.insert(0, &a, 2, &kv(&a, 2), &facts(&a, 2)), 0);
        assert_eq!(cache.tokens(), 0);
    }
}
