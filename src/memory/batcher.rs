//! The dynamic batcher. Pure core: [`plan`] cuts a set of tokenized inputs into length-sorted micro-batches whose
//! padded size stays under the token budget, and [`should_wait`] decides whether to hold a batch open for more
//! requests. IO shell: [`Engine`] owns one dispatcher thread that merges concurrent requests, and a dedicated rayon
//! pool (sized by `memory.threads`) that runs the model — never the async workers.
//!
//! Invariants: every job gets exactly one reply; inputs come back in the order they were sent; a job whose caller
//! gave up (timeout, disconnect) is skipped before it costs inference; after a second with an empty queue the freed
//! heap goes back to the kernel (so the RSS of an idle hearth is not that of its largest batch).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use super::MemoryError;
use super::model::{Embedder, Tokens};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BatchPolicy {
    /// Padded tokens (inputs × longest input) in one forward pass.
    pub max_batch_tokens: usize,
    /// How long to hold a batch open for more requests when requests are arriving concurrently.
    pub max_wait: Duration,
}

/// Cut inputs of the given token lengths into micro-batches: sorted by length so that each batch pads little,
/// each batch's `len × longest` within `max_batch_tokens` (a single longer input gets a batch of its own).
/// Returns indices into `lens`.
pub(crate) fn plan(lens: &[usize], max_batch_tokens: usize) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..lens.len()).collect();
    order.sort_by_key(|&i| lens[i]);
    let mut batches: Vec<Vec<usize>> = vec![];
    let mut cur: Vec<usize> = vec![];
    for i in order {
        // sorted ascending: the newcomer is the longest so far
        let padded = (cur.len() + 1) * lens[i].max(1);
        if !cur.is_empty() && padded > max_batch_tokens {
            batches.push(std::mem::take(&mut cur));
        }
        cur.push(i);
    }
    if !cur.is_empty() {
        batches.push(cur);
    }
    batches
}

/// Hold the batch open for `max_wait`? Only when the previous round merged several requests (so others are
/// likely to arrive) and the batch is still far from full: a lone caller never pays the wait.
pub(crate) fn should_wait(previous_round_jobs: usize, pending_tokens: usize, policy: &BatchPolicy) -> bool {
    !policy.max_wait.is_zero() && previous_round_jobs > 1 && pending_tokens < policy.max_batch_tokens / 2
}

/// The result of one job: pooled (un-normalised) vectors in input order and the tokens they cost.
#[derive(Debug)]
pub(crate) struct Embedded {
    pub vectors: Vec<Vec<f32>>,
    /// Per input: tokens and whether it was truncated to fit.
    pub tokens: Vec<(u32, bool)>,
}

pub(crate) struct Job {
    pub texts: Vec<String>,
    /// Refuse inputs longer than the model takes instead of truncating them.
    pub strict_length: bool,
    pub reply: oneshot::Sender<Result<Embedded, MemoryError>>,
    pub enqueued: Instant,
}

/// Counters the API and /metrics read.
#[derive(Debug, Default)]
pub(crate) struct EngineStats {
    pub requests: AtomicU64,
    pub inputs: AtomicU64,
    pub tokens: AtomicU64,
    pub batches: AtomicU64,
    pub busy_micros: AtomicU64,
}

/// A loaded model behind its dispatcher thread and thread pool.
pub(crate) struct Engine {
    tx: SyncSender<Job>,
    pub model: String,
    pub dim: usize,
    pub max_tokens: usize,
    pub threads: usize,
    pub stats: Arc<EngineStats>,
}

impl Engine {
    /// Start the dispatcher for `embedder`. `queue` bounds the requests waiting (beyond it: overloaded).
    pub(crate) fn start(
        embedder: Embedder,
        threads: usize,
        policy: BatchPolicy,
        queue: usize,
    ) -> Result<Self, MemoryError> {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("hearth-embed-{i}"))
            .build()
            .map_err(|e| MemoryError::Model(format!("thread pool: {e}")))?;
        let (tx, rx) = std::sync::mpsc::sync_channel(queue);
        let stats = Arc::new(EngineStats::default());
        let engine = Engine {
            tx,
            model: embedder.name.clone(),
            dim: embedder.dim,
            max_tokens: embedder.max_tokens,
            threads: pool.current_num_threads(),
            stats: stats.clone(),
        };
        std::thread::Builder::new()
            .name("hearth-batcher".into())
            .spawn(move || dispatch(rx, embedder, pool, policy, stats))
            .map_err(|e| MemoryError::Model(format!("batcher thread: {e}")))?;
        Ok(engine)
    }

    /// Queue a job; the reply arrives on the job's channel.
    pub(crate) fn submit(&self, job: Job) -> Result<(), MemoryError> {
        match self.tx.try_send(job) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(_)) => Err(MemoryError::Overloaded),
            Err(TrySendError::Disconnected(_)) => Err(MemoryError::NotReady("the embedding engine stopped".into())),
        }
    }
}

struct Pending {
    job: Job,
    tokens: Result<Vec<Tokens>, MemoryError>,
}

fn tokenize(embedder: &Embedder, job: Job, max_tokens: usize) -> Pending {
    let tokens = job
        .texts
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let tok = embedder.tokenize(t)?;
            if job.strict_length && tok.truncated {
                return Err(MemoryError::TooLong { index: i, max_tokens });
            }
            Ok(tok)
        })
        .collect();
    Pending { job, tokens }
}

/// How long the queue stays empty before the batcher returns the freed activations to the kernel: long enough that
/// a steady stream of requests keeps its warm heap, short enough that an idle hearth is small.
const IDLE_BEFORE_TRIM: Duration = Duration::from_secs(1);

fn dispatch(
    rx: Receiver<Job>,
    embedder: Embedder,
    pool: rayon::ThreadPool,
    policy: BatchPolicy,
    stats: Arc<EngineStats>,
) {
    let max_tokens = embedder.max_tokens;
    let mut previous_round = 0usize;
    // loading the model freed its transient buffers; after that, every round frees its activations
    let mut heap_dirty = true;
    loop {
        // ends when the Engine (every sender) is dropped
        let next = if heap_dirty {
            rx.recv_timeout(IDLE_BEFORE_TRIM)
        } else {
            rx.recv().map_err(|_| RecvTimeoutError::Disconnected)
        };
        let first = match next {
            Ok(j) => j,
            Err(RecvTimeoutError::Timeout) => {
                crate::util::release_free_heap();
                heap_dirty = false;
                continue;
            }
            Err(RecvTimeoutError::Disconnected) => return,
        };
        heap_dirty = true;
        let mut round = vec![tokenize(&embedder, first, max_tokens)];
        let count = |r: &[Pending]| -> usize {
            r.iter().filter_map(|p| p.tokens.as_ref().ok()).flatten().map(|t| t.ids.len()).sum()
        };
        // take what is already queued, then maybe hold the batch open a little
        while let Ok(j) = rx.try_recv() {
            round.push(tokenize(&embedder, j, max_tokens));
        }
        if should_wait(previous_round, count(&round), &policy) {
            let deadline = Instant::now() + policy.max_wait;
            loop {
                let now = Instant::now();
                if now >= deadline || count(&round) >= policy.max_batch_tokens {
                    break;
                }
                match rx.recv_timeout(deadline - now) {
                    Ok(j) => round.push(tokenize(&embedder, j, max_tokens)),
                    Err(RecvTimeoutError::Timeout) | Err(RecvTimeoutError::Disconnected) => break,
                }
            }
        }
        previous_round = round.len();
        run_round(&embedder, &pool, round, policy.max_batch_tokens, &stats);
    }
}

fn run_round(embedder: &Embedder, pool: &rayon::ThreadPool, round: Vec<Pending>, budget: usize, stats: &EngineStats) {
    let started = Instant::now();
    // every input of every live job, flattened: (job, position, ids)
    let mut items: Vec<(usize, usize, &[u32])> = vec![];
    for (j, p) in round.iter().enumerate() {
        if p.job.reply.is_closed() {
            continue;
        }
        if let Ok(tokens) = &p.tokens {
            for (k, t) in tokens.iter().enumerate() {
                items.push((j, k, &t.ids));
            }
        }
    }
    let lens: Vec<usize> = items.iter().map(|(_, _, ids)| ids.len()).collect();
    let mut out: Vec<Vec<Option<Vec<f32>>>> =
        round.iter().map(|p| vec![None; p.tokens.as_ref().map(|t| t.len()).unwrap_or(0)]).collect();
    let mut failure: Option<MemoryError> = None;
    for batch in plan(&lens, budget) {
        let ids: Vec<&[u32]> = batch.iter().map(|&i| items[i].2).collect();
        metrics::histogram!("hearth_memory_batch_size").record(ids.len() as f64);
        stats.batches.fetch_add(1, Ordering::Relaxed);
        match pool.install(|| embedder.embed(&ids)) {
            Ok(vectors) => {
                for (&i, v) in batch.iter().zip(vectors) {
                    let (j, k, _) = items[i];
                    out[j][k] = Some(v);
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "embedding a batch failed");
                failure = Some(e);
                break;
            }
        }
    }
    let busy = started.elapsed();
    stats.busy_micros.fetch_add(busy.as_micros() as u64, Ordering::Relaxed);
    for (p, vectors) in round.into_iter().zip(out) {
        let Pending { job, tokens } = p;
        if job.reply.is_closed() {
            continue;
        }
        let result = match (tokens, &failure) {
            (Err(e), _) => Err(e),
            (Ok(_), Some(e)) => Err(MemoryError::Model(e.to_string())),
            (Ok(tokens), None) => {
                let n: usize = tokens.iter().map(|t| t.ids.len()).sum();
                stats.requests.fetch_add(1, Ordering::Relaxed);
                stats.inputs.fetch_add(tokens.len() as u64, Ordering::Relaxed);
                stats.tokens.fetch_add(n as u64, Ordering::Relaxed);
                metrics::counter!("hearth_memory_embed_tokens_total").increment(n as u64);
                let wait = started.saturating_duration_since(job.enqueued);
                metrics::histogram!("hearth_memory_queue_wait_seconds").record(wait.as_secs_f64());
                match vectors.into_iter().collect::<Option<Vec<_>>>() {
                    Some(vectors) => Ok(Embedded {
                        vectors,
                        tokens: tokens.iter().map(|t| (t.ids.len() as u32, t.truncated)).collect(),
                    }),
                    // the caller gave up before its inputs were run
                    None => continue,
                }
            }
        };
        let _ = job.reply.send(result);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_sorts_by_length_and_respects_the_budget() {
        let lens = [10, 200, 12, 11, 190, 5];
        let batches = plan(&lens, 400);
        // every index exactly once
        let mut all: Vec<usize> = batches.iter().flatten().copied().collect();
        all.sort();
        assert_eq!(all, vec![0, 1, 2, 3, 4, 5]);
        for b in &batches {
            let longest = b.iter().map(|&i| lens[i]).max().unwrap();
            assert!(b.len() * longest <= 400 || b.len() == 1, "{b:?}");
        }
        // short inputs together, the two long ones together
        assert_eq!(batches, vec![vec![5, 0, 3, 2], vec![4, 1]]);
    }

    #[test]
    fn an_input_longer_than_the_budget_gets_its_own_batch() {
        assert_eq!(plan(&[300, 2, 2], 100), vec![vec![1, 2], vec![0]]);
        assert!(plan(&[], 100).is_empty());
    }

    #[test]
    fn a_lone_caller_never_waits() {
        let p = BatchPolicy { max_batch_tokens: 1000, max_wait: Duration::from_millis(2) };
        assert!(!should_wait(1, 10, &p));
        assert!(should_wait(3, 10, &p));
        assert!(!should_wait(3, 600, &p));
        assert!(!should_wait(3, 10, &BatchPolicy { max_wait: Duration::ZERO, ..p }));
    }
}
