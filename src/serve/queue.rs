//! Batching across requests: one worker thread owns the forwards. Requests wait in a bounded
//! queue; the worker takes the first, gathers whatever else arrives within a short window (up
//! to a token budget), and scores all their prompts through one prefix tree, so contexts sent
//! once per answer choice, in one request or in several, are computed once. A full queue is
//! refused at once rather than grown; requests whose client has gone are dropped unscored.
//! The worker also owns the prefix cache: prefixes computed for earlier batches (their keys,
//! values and echoed scores) are not computed again.

use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::oneshot;

use crate::engine::cache::{CacheStats, CacheStatsValues};
use crate::engine::positions::{score_prompts, PromptRequest, PromptScores};
use crate::engine::prefix::PrefixTree;
use crate::engine::{EngineOptions, PrefixCache};
use crate::model::Model;

/// How the worker gathers requests into batches.
#[derive(Debug, Clone, Copy)]
pub struct BatchPolicy {
    /// Requests that may wait for the worker; one more is refused.
    pub queue_capacity: usize,
    /// How long the worker waits after a batch's first request for others to join it.
    pub window: Duration,
    /// No more requests join a batch once its prompts hold this many tokens.
    pub batch_tokens: usize,
}

/// What a request gets back: its prompts' scores, or why they could not be scored.
pub type Reply = Result<Vec<PromptScores>, String>;

struct Job {
    prompts: Vec<PromptRequest>,
    tokens: usize,
    reply: oneshot::Sender<Reply>,
    /// Batches that went before it while it waited.
    passed_over: u32,
}

/// Batches a request may be passed over for others sharing more prefix with the oldest; then
/// it goes first.
const MOST_PASSED_OVER: u32 = 4;

/// The queue is full: come back later.
#[derive(Debug)]
pub struct QueueFull;

/// Counters of what the worker has done, readable while it runs.
#[derive(Debug, Default)]
pub struct Counters {
    pub requests: AtomicU64,
    pub prompts: AtomicU64,
    pub batches: AtomicU64,
    pub prompt_tokens: AtomicU64,
    pub computed_tokens: AtomicU64,
    pub abandoned: AtomicU64,
    pub refused: AtomicU64,
    pub queued: AtomicU64,
    pub running: AtomicU64,
    /// The prefix cache's counters, where the server keeps one.
    pub prefix_cache: Option<Arc<CacheStats>>,
}

/// A snapshot of [`Counters`].
#[derive(Debug, Clone, Copy, Serialize)]
pub struct CounterValues {
    /// Requests scored.
    pub requests: u64,
    pub prompts: u64,
    /// Forward batches run (each one prefix tree).
    pub batches: u64,
    /// Tokens of the prompts scored, and tokens the model actually computed for them.
    pub prompt_tokens: u64,
    pub computed_tokens: u64,
    /// Requests dropped unscored because their client had gone.
    pub abandoned: u64,
    /// Requests refused because the queue was full.
    pub refused: u64,
    /// Requests waiting now, and being scored now.
    pub queued: u64,
    pub running: u64,
    /// The prefix cache (`null` when the server keeps none).
    pub prefix_cache: Option<CacheStatsValues>,
}

impl Counters {
    pub fn values(&self) -> CounterValues {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        CounterValues {
            requests: get(&self.requests),
            prompts: get(&self.prompts),
            batches: get(&self.batches),
            prompt_tokens: get(&self.prompt_tokens),
            computed_tokens: get(&self.computed_tokens),
            abandoned: get(&self.abandoned),
            refused: get(&self.refused),
            queued: get(&self.queued),
            running: get(&self.running),
            prefix_cache: self.prefix_cache.as_ref().map(|c| c.values()),
        }
    }
}

/// The handle requests are submitted through; dropping every handle stops the worker once the
/// queue is empty.
#[derive(Clone)]
pub struct Scorer {
    sender: SyncSender<Job>,
    capacity: u64,
    pub counters: Arc<Counters>,
}

impl Scorer {
    /// Starts the worker on `model`, with a prefix cache of `options.prefix_cache_bytes`.
    pub fn start(
        model: Arc<Model>,
        options: EngineOptions,
        policy: BatchPolicy,
    ) -> (Self, JoinHandle<()>) {
        let cache_bytes = options.prefix_cache_bytes;
        let (sender, receiver) = sync_channel(policy.queue_capacity.max(1));
        let cache = (cache_bytes > 0).then(|| PrefixCache::new(cache_bytes, model.kv_geometry()));
        let counters = Arc::new(Counters {
            prefix_cache: cache.as_ref().map(|c| c.stats()),
            ..Counters::default()
        });
        let worker_counters = counters.clone();
        let worker = std::thread::Builder::new()
            .name("valuelens-scorer".into())
            .spawn(move || {
                let mut worker = Worker {
                    model: &model,
                    options: &options,
                    counters: &worker_counters,
                    cache,
                };
                worker.work(&policy, &receiver)
            })
            .expect("a thread can be started");
        let capacity = policy.queue_capacity.max(1) as u64;
        (
            Self {
                sender,
                capacity,
                counters,
            },
            worker,
        )
    }

    /// Queues `prompts`; the receiver gets their scores. Refused when the queue is full.
    pub fn submit(
        &self,
        prompts: Vec<PromptRequest>,
    ) -> Result<oneshot::Receiver<Reply>, QueueFull> {
        let (reply, receiver) = oneshot::channel();
        let tokens = prompts.iter().map(|p| p.tokens.len()).sum();
        let refuse = || {
            self.counters.queued.fetch_sub(1, Ordering::Relaxed);
            self.counters.refused.fetch_add(1, Ordering::Relaxed);
            Err(QueueFull)
        };
        // Waiting requests, in the channel or already with the worker, stay within capacity.
        if self.counters.queued.fetch_add(1, Ordering::Relaxed) >= self.capacity {
            return refuse();
        }
        match self.sender.try_send(Job {
            prompts,
            tokens,
            reply,
            passed_over: 0,
        }) {
            Ok(()) => Ok(receiver),
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => refuse(),
        }
    }
}

/// The scoring thread's state: the model and the prefix cache it alone uses.
struct Worker<'a> {
    model: &'a Model,
    options: &'a EngineOptions,
    counters: &'a Counters,
    cache: Option<PrefixCache>,
}

impl Worker<'_> {
    /// Gathers requests for a window after the first, then scores a batch of them: the one
    /// waiting longest and those that share the most prefix with it, up to the token budget
    /// (tokens the prefix cache holds do not count); the rest wait for the next batch.
    fn work(&mut self, policy: &BatchPolicy, receiver: &Receiver<Job>) {
        let counters = self.counters;
        let mut waiting: VecDeque<Job> = VecDeque::new();
        loop {
            if waiting.is_empty() {
                match receiver.recv() {
                    Ok(job) => waiting.push_back(job),
                    Err(_) => return,
                }
            }
            let deadline = Instant::now() + policy.window;
            let mut tokens: usize = waiting.iter().map(|j| j.tokens).sum();
            while tokens < policy.batch_tokens {
                let left = deadline.saturating_duration_since(Instant::now());
                match receiver.recv_timeout(left) {
                    Ok(job) => {
                        tokens += job.tokens;
                        waiting.push_back(job);
                    }
                    Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => break,
                }
            }
            // Whatever else is queued already may join without waiting.
            while let Ok(job) = receiver.try_recv() {
                waiting.push_back(job);
            }
            let candidates: Vec<Candidate> = waiting
                .iter()
                .map(|job| Candidate {
                    prompts: job.prompts.iter().map(|p| p.tokens.as_slice()).collect(),
                    uncached: job.tokens - self.cached_tokens(&job.prompts),
                    passed_over: job.passed_over,
                })
                .collect();
            let chosen = choose_batch(&candidates, policy.batch_tokens);
            let mut jobs = Vec::with_capacity(chosen.len());
            let mut rest = VecDeque::with_capacity(waiting.len() - chosen.len());
            for (i, mut job) in waiting.drain(..).enumerate() {
                if chosen.contains(&i) {
                    jobs.push(job);
                } else {
                    job.passed_over += 1;
                    rest.push_back(job);
                }
            }
            waiting = rest;
            counters
                .queued
                .fetch_sub(jobs.len() as u64, Ordering::Relaxed);
            let before = jobs.len();
            jobs.retain(|job| !job.reply.is_closed());
            counters
                .abandoned
                .fetch_add((before - jobs.len()) as u64, Ordering::Relaxed);
            if jobs.is_empty() {
                continue;
            }
            counters.running.store(jobs.len() as u64, Ordering::Relaxed);
            self.run_batch(jobs);
            counters.running.store(0, Ordering::Relaxed);
        }
    }

    /// Tokens of `prompts` that the prefix cache holds.
    fn cached_tokens(&self, prompts: &[PromptRequest]) -> usize {
        match &self.cache {
            Some(cache) => prompts
                .iter()
                .map(|p| cache.cached_len(0, &p.tokens).min(p.tokens.len()))
                .sum(),
            None => 0,
        }
    }

    /// Scores the jobs together; if that fails, each alone, so that one bad request fails
    /// only itself.
    fn run_batch(&mut self, jobs: Vec<Job>) {
        let counters = self.counters;
        let prompts: Vec<PromptRequest> = jobs.iter().flat_map(|j| j.prompts.clone()).collect();
        match self.score_guarded(&prompts) {
            Ok(mut scores) => {
                for job in jobs.into_iter().rev() {
                    let own = scores.split_off(scores.len() - job.prompts.len());
                    finish(job, Ok(own), counters);
                }
            }
            Err(message) if jobs.len() == 1 => {
                let job = jobs.into_iter().next().expect("one job");
                finish(job, Err(message), counters);
            }
            Err(_) => {
                for job in jobs {
                    let result = self.score_guarded(&job.prompts);
                    finish(job, result, counters);
                }
            }
        }
    }

    /// [`score_prompts`] with its errors and panics as messages. A panic may have left the
    /// cache half-updated, so it is emptied then.
    fn score_guarded(&mut self, prompts: &[PromptRequest]) -> Result<Vec<PromptScores>, String> {
        let (model, options, counters) = (self.model, self.options, self.counters);
        let cache = self.cache.as_mut();
        match catch_unwind(AssertUnwindSafe(|| {
            score_prompts(model, prompts, options, cache)
        })) {
            Ok(Ok((scores, stats))) => {
                counters.batches.fetch_add(1, Ordering::Relaxed);
                counters
                    .computed_tokens
                    .fetch_add(stats.computed_tokens as u64, Ordering::Relaxed);
                Ok(scores)
            }
            Ok(Err(e)) => Err(format!("scoring failed: {e:#}")),
            Err(panic) => {
                if let Some(cache) = &mut self.cache {
                    cache.clear();
                }
                let what = panic
                    .downcast_ref::<String>()
                    .map(String::as_str)
                    .or_else(|| panic.downcast_ref::<&str>().copied())
                    .unwrap_or("a panic");
                Err(format!("scoring failed inside the engine: {what}"))
            }
        }
    }
}

fn finish(job: Job, result: Reply, counters: &Counters) {
    if result.is_ok() {
        counters.requests.fetch_add(1, Ordering::Relaxed);
        counters
            .prompts
            .fetch_add(job.prompts.len() as u64, Ordering::Relaxed);
        counters
            .prompt_tokens
            .fetch_add(job.tokens as u64, Ordering::Relaxed);
    }
    // The client may have gone meanwhile; nobody is left to tell.
    let _ = job.reply.send(result);
}

/// A waiting request as the batch choice sees it.
struct Candidate<'a> {
    prompts: Vec<&'a [u32]>,
    /// Its tokens the prefix cache does not hold.
    uncached: usize,
    passed_over: u32,
}

/// Indices (in waiting order) of the requests of the next batch: those passed over too often,
/// the oldest, then the others by the tokens their prompts share with the first chosen one's
/// (most first, older first among equals), while their uncached tokens fit `budget` (the first
/// always goes).
fn choose_batch(waiting: &[Candidate], budget: usize) -> Vec<usize> {
    if waiting.is_empty() {
        return Vec::new();
    }
    let first = waiting
        .iter()
        .position(|c| c.passed_over >= MOST_PASSED_OVER)
        .unwrap_or(0);
    let mut tree = PrefixTree::default();
    for prompt in &waiting[first].prompts {
        tree.insert(prompt);
    }
    let mut order: Vec<(usize, bool, usize)> = (0..waiting.len())
        .filter(|&i| i != first)
        .map(|i| {
            let shared = waiting[i].prompts.iter().map(|p| tree.shared_len(p)).sum();
            (i, waiting[i].passed_over >= MOST_PASSED_OVER, shared)
        })
        .collect();
    order.sort_by_key(|&(i, overdue, shared)| (std::cmp::Reverse((overdue, shared)), i));
    let mut chosen = vec![first];
    let mut used = waiting[first].uncached;
    for (i, _, _) in order {
        if used + waiting[i].uncached <= budget {
            used += waiting[i].uncached;
            chosen.push(i);
        }
    }
    chosen.sort_unstable();
    chosen
}

#[cfg(test)]
mod tests {
    use super::*;

    fn candidate(
        prompts: &[&'static [u32]],
        uncached: usize,
        passed_over: u32,
    ) -> Candidate<'static> {
        Candidate {
            prompts: prompts.to_vec(),
            uncached,
            passed_over,
        }
    }

    /// With room for three of five requests, the oldest goes with the two that share its
    /// context (not the ones that arrived next); a request passed over too often goes first.
    #[test]
    fn a_batch_gathers_the_requests_that_share_the_oldest_ones_prefix() {
        let waiting = [
            candidate(&[&[1, 2, 3, 4, 10]], 5, 0),
            candidate(&[&[7, 8, 9, 10, 11]], 5, 0),
            candidate(&[&[1, 2, 3, 4, 11]], 5, 0),
            candidate(&[&[5, 6, 7]], 5, 0),
            candidate(&[&[9, 9], &[1, 2, 3, 5, 12]], 5, 0),
        ];
        assert_eq!(choose_batch(&waiting, 15), vec![0, 2, 4]);
        assert_eq!(choose_batch(&waiting, 1000), vec![0, 1, 2, 3, 4]);
        assert_eq!(choose_batch(&waiting, 1), vec![0], "the first always goes");
        let mut overdue = waiting;
        overdue[3].passed_over = MOST_PASSED_OVER;
        assert_eq!(choose_batch(&overdue, 10), vec![0, 3]);
        overdue[0].uncached = 20;
        assert_eq!(
            choose_batch(&overdue, 10),
            vec![1, 3],
            "the overdue one first"
        );
    }
}
