//! Memory: an offline embedding model and a vector store, in process.
//!
//! - `model`: the candle BERT encoder + tokenizer + pooling (pure CPU work).
//! - `batcher`: the dynamic batcher (pure planning core, dispatcher thread + rayon pool shell).
//! - `cache`: the LRU of embeddings (pure).
//! - `filter`: metadata filters (JSON → SQL over typed columns; pure).
//! - `store`: collections in lancedb under `<data_dir>/memory`, on their own tokio runtime.
//!
//! [`Memory`] is the handle the API uses. The model loads in the background ([`Memory::run`], a supervised task):
//! until it is ready embedding calls fail with [`MemoryError::NotReady`] (503 + Retry-After) and the task's state
//! tells /readyz why. Invariants: no model or store CPU work runs on the main runtime's workers; limits are read
//! from the live config on every call.

pub(crate) mod batcher;
pub(crate) mod cache;
pub(crate) mod encoder;
pub(crate) mod filter;
pub(crate) mod model;
pub(crate) mod ram_index;
pub(crate) mod store;
pub(crate) mod task;

use crate::util::Locked;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use serde::Serialize;

use crate::config::MemoryConfig;
use crate::config::live::LiveConfig;
use crate::supervisor::TaskCtx;
use batcher::{BatchPolicy, Engine, Job};
use cache::{Cached, EmbedCache};

#[derive(Debug, thiserror::Error)]
pub(crate) enum MemoryError {
    #[error("the embedding model is not ready: {0}")]
    NotReady(String),
    #[error("too many embedding requests are waiting; retry shortly")]
    Overloaded,
    #[error("the embedding request timed out")]
    Timeout,
    #[error("input {index} is longer than the model's {max_tokens} tokens (set truncate to true to cut it)")]
    TooLong { index: usize, max_tokens: usize },
    #[error("{0}")]
    Invalid(String),
    #[error("model: {0}")]
    Model(String),
    #[error("collection {0:?} does not exist")]
    NoCollection(String),
    #[error("collection {0:?} already exists")]
    CollectionExists(String),
    #[error("vector store: {0}")]
    Store(String),
}

/// Where the model is, for the API, the UI and /readyz.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(tag = "state", rename_all = "snake_case")]
pub(crate) enum ModelState {
    Disabled,
    Loading { model: String, since: i64 },
    Ready { model: String, dim: usize, max_tokens: usize, threads: usize, load_ms: u64 },
    Failed { model: String, error: String, attempts: u32 },
}

/// One embedded input as the API returns it.
pub(crate) struct Embedding {
    pub vector: Arc<[f32]>,
    pub tokens: u32,
}

pub(crate) struct Memory {
    engine: ArcSwapOption<Engine>,
    state: Mutex<ModelState>,
    cache: Mutex<EmbedCache>,
    pub store: Arc<store::Store>,
    live: Arc<LiveConfig>,
}

impl Memory {
    pub(crate) fn new(live: Arc<LiveConfig>, store: Arc<store::Store>) -> Self {
        let entries = live.current().memory.cache_entries;
        Memory {
            engine: ArcSwapOption::empty(),
            state: Mutex::new(ModelState::Disabled),
            cache: Mutex::new(EmbedCache::new(entries)),
            store,
            live,
        }
    }

    pub(crate) fn state(&self) -> ModelState {
        self.state.locked().clone()
    }

    fn set_state(&self, s: ModelState) {
        let ready = matches!(s, ModelState::Ready { .. }) as u8 as f64;
        metrics::gauge!("hearth_memory_model_ready").set(ready);
        *self.state.locked() = s;
    }

    pub(crate) fn engine(&self) -> Option<Arc<Engine>> {
        self.engine.load_full()
    }

    /// (hit rate, entries, capacity)
    pub(crate) fn cache_stats(&self) -> (f64, usize, usize) {
        let c = self.cache.locked();
        (c.hit_rate(), c.len(), c.capacity())
    }

    /// Check the request limits (count, length, emptiness) before any work.
    pub(crate) fn check_inputs(&self, texts: &[String]) -> Result<(), MemoryError> {
        let (max_inputs, max_chars) = {
            let c = self.live.current();
            (c.memory.max_inputs, c.memory.max_input_chars)
        };
        if texts.is_empty() {
            return Err(MemoryError::Invalid("at least one input is required".into()));
        }
        if texts.len() > max_inputs {
            return Err(MemoryError::Invalid(format!(
                "{} inputs in one request; at most {max_inputs} are allowed",
                texts.len()
            )));
        }
        for (i, t) in texts.iter().enumerate() {
            if t.trim().is_empty() {
                return Err(MemoryError::Invalid(format!("input {i} is empty")));
            }
            let n = t.chars().count();
            if n > max_chars {
                return Err(MemoryError::Invalid(format!(
                    "input {i} has {n} characters; at most {max_chars} are allowed"
                )));
            }
        }
        Ok(())
    }

    /// Embed `texts` (already checked): cache hits answer at once, the rest go through the batcher. Vectors are
    /// pooled but not normalised. `strict_length` refuses inputs longer than the model takes.
    pub(crate) async fn embed(&self, texts: &[String], strict_length: bool) -> Result<Vec<Embedding>, MemoryError> {
        let started = Instant::now();
        let engine = self.engine().ok_or_else(|| MemoryError::NotReady(self.not_ready_reason()))?;
        let timeout = self.live.current().memory.request_timeout.as_std();
        let keys: Vec<u128> = texts.iter().map(|t| cache::key(&engine.model, t)).collect();
        let mut out: Vec<Option<Cached>> = {
            let mut c = self.cache.locked();
            keys.iter().map(|k| c.get(*k)).collect()
        };
        for (i, c) in out.iter().enumerate() {
            if strict_length && c.as_ref().is_some_and(|c| c.truncated) {
                return Err(MemoryError::TooLong { index: i, max_tokens: engine.max_tokens });
            }
        }
        let missing: Vec<usize> = (0..texts.len()).filter(|&i| out[i].is_none()).collect();
        let hits = texts.len() - missing.len();
        metrics::counter!("hearth_memory_cache_hits_total").increment(hits as u64);
        metrics::counter!("hearth_memory_cache_misses_total").increment(missing.len() as u64);
        if !missing.is_empty() {
            let (tx, rx) = tokio::sync::oneshot::channel();
            engine.submit(Job {
                texts: missing.iter().map(|&i| texts[i].clone()).collect(),
                strict_length,
                reply: tx,
                enqueued: Instant::now(),
            })?;
            let done = match tokio::time::timeout(timeout, rx).await {
                Err(_) => return Err(MemoryError::Timeout),
                Ok(Err(_)) => return Err(MemoryError::NotReady("the embedding engine stopped".into())),
                Ok(Ok(r)) => r.map_err(|e| match e {
                    // the index is the job's; report the request's
                    MemoryError::TooLong { index, max_tokens } => {
                        MemoryError::TooLong { index: missing[index], max_tokens }
                    }
                    e => e,
                })?,
            };
            let mut c = self.cache.locked();
            for ((&i, v), (tokens, truncated)) in missing.iter().zip(done.vectors).zip(done.tokens) {
                let entry = Cached { vector: v.into(), tokens, truncated };
                c.put(keys[i], entry.clone());
                out[i] = Some(entry);
            }
        }
        metrics::counter!("hearth_memory_embed_requests_total").increment(1);
        metrics::counter!("hearth_memory_embed_inputs_total").increment(texts.len() as u64);
        metrics::histogram!("hearth_memory_embed_duration_seconds").record(started.elapsed().as_secs_f64());
        Ok(out
            .into_iter()
            .map(|c| {
                let c = c.expect("every input embedded or cached");
                Embedding { vector: c.vector, tokens: c.tokens }
            })
            .collect())
    }

    fn not_ready_reason(&self) -> String {
        match self.state() {
            ModelState::Disabled => "memory is disabled ([memory] enabled = false)".into(),
            ModelState::Loading { model, .. } => format!("{model} is loading"),
            ModelState::Failed { model, error, .. } => format!("{model} failed to load: {error}"),
            ModelState::Ready { .. } => "the model is being replaced".into(),
        }
    }

    /// The supervised task: load the model in the background, serve it, reload it when its settings change.
    pub(crate) async fn run(self: Arc<Self>, ctx: TaskCtx) -> anyhow::Result<()> {
        let mut rx = self.live.subscribe();
        let mut attempts = 0u32;
        loop {
            let cfg = rx.borrow_and_update().memory.clone();
            self.engine.store(None);
            if !cfg.enabled {
                self.set_state(ModelState::Disabled);
                ctx.ready("disabled");
            } else {
                self.set_state(ModelState::Loading { model: cfg.model.clone(), since: crate::util::unix_now() });
                ctx.starting(format!("loading the embedding model {}", cfg.model));
                let started = Instant::now();
                let (model, max_tokens) = (cfg.model.clone(), cfg.max_tokens);
                let loaded = tokio::task::spawn_blocking(move || model::Embedder::load(&model, max_tokens)).await?;
                let engine = loaded.and_then(|e| {
                    let threads = if cfg.threads == 0 { num_cpus() } else { cfg.threads };
                    let policy =
                        BatchPolicy { max_batch_tokens: cfg.max_batch_tokens, max_wait: cfg.max_batch_wait.as_std() };
                    Engine::start(e, threads, policy, cfg.queue)
                });
                match engine {
                    Ok(engine) => {
                        attempts = 0;
                        let load_ms = started.elapsed().as_millis() as u64;
                        tracing::info!(model = %engine.model, dim = engine.dim, load_ms, threads = engine.threads, "embedding model ready");
                        self.set_state(ModelState::Ready {
                            model: engine.model.clone(),
                            dim: engine.dim,
                            max_tokens: engine.max_tokens,
                            threads: engine.threads,
                            load_ms,
                        });
                        ctx.ready(format!("{} ready ({} dimensions)", engine.model, engine.dim));
                        self.engine.store(Some(Arc::new(engine)));
                    }
                    Err(e) => {
                        attempts += 1;
                        self.set_state(ModelState::Failed { model: cfg.model.clone(), error: e.to_string(), attempts });
                        // the supervisor retries with backoff and shows the error
                        return Err(anyhow::anyhow!("loading the embedding model {}: {e}", cfg.model));
                    }
                }
            }
            // wait for a change that matters to the model, or shutdown
            let mut cache_entries = cfg.cache_entries;
            loop {
                tokio::select! {
                    _ = ctx.shutdown.cancelled() => {
                        self.engine.store(None);
                        return Ok(());
                    }
                    changed = rx.changed() => {
                        if changed.is_err() {
                            return Ok(());
                        }
                        let new = rx.borrow().memory.clone();
                        if model_settings(&new) != model_settings(&cfg) {
                            break;
                        }
                        if new.cache_entries != cache_entries {
                            cache_entries = new.cache_entries;
                            *self.cache.locked() = EmbedCache::new(cache_entries);
                        }
                    }
                }
            }
        }
    }
}

type ModelSettings = (bool, String, usize, usize, usize, Duration, usize);

fn model_settings(c: &MemoryConfig) -> ModelSettings {
    (c.enabled, c.model.clone(), c.threads, c.max_tokens, c.max_batch_tokens, c.max_batch_wait.as_std(), c.queue)
}

pub(crate) fn num_cpus() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}
