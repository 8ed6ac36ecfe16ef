//! The log store of the box: hearth's own events, syslog from the LAN and Loki pushes, kept in SQLite partitioned
//! by day with a full-text index, and answered in a LogQL subset on a Loki-compatible API. Replaces Loki +
//! Promtail for a homelab.
//!
//! Layout: pure cores in `model.rs` (entries, labels and their bounds), `logql.rs` (the query language and metric
//! evaluation), `syslog.rs` (RFC 5424/3164 and TCP framing), `push.rs` (Loki's push bodies), `journal.rs`
//! (journalctl's JSON), `docker.rs` (containers' log streams); the IO shell in `store.rs` (SQLite) and `task.rs` (applier, the writer, the journal, the
//! syslog listeners).
//!
//! Invariants: sources never write to SQLite themselves — they [`Logs::push`] into a bounded queue that the
//! writer commits once a second in one transaction (a kill -9 loses at most that second; a full queue drops and
//! counts); bad input is cut, replaced or counted, never refused in a way that loses the rest of a batch; a query
//! never answers lines older than `logs.retention`.

pub(crate) mod docker;
pub(crate) mod journal;
pub(crate) mod logql;
pub(crate) mod model;
pub(crate) mod push;
pub(crate) mod store;
pub(crate) mod syslog;
pub(crate) mod task;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use logql::{LogqlError, Query};
use model::{Entry, Labels};
use store::{Select, Store};

#[derive(Debug, thiserror::Error)]
pub(crate) enum LogsError {
    #[error("log store: {0}")]
    Store(String),
    #[error(transparent)]
    Query(#[from] LogqlError),
    #[error("{0}")]
    BadRequest(String),
}

/// Lines waiting for the writer, at most; past it new lines are dropped and counted.
pub(crate) const MAX_QUEUE: usize = 100_000;
/// Most lines a metric query may read.
const MAX_SCANNED: usize = 5_000_000;

/// Counters shown in the UI and on `/metrics`.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub received: AtomicU64,
    pub dropped: AtomicU64,
    pub truncated: AtomicU64,
    pub written: AtomicU64,
}

pub(crate) struct Logs {
    pub(crate) store: Store,
    queue: Mutex<Vec<Entry>>,
    /// sources' positions to save with the next write (the journal's cursor after its queued lines)
    positions: Mutex<Vec<(String, String)>>,
    pub(crate) counters: Counters,
    /// how far back queries answer (ns), from `logs.retention`
    retention_ns: AtomicI64,
    /// this box's name, the `host` label of its own lines
    pub(crate) host: String,
}

/// A query's answer, in Loki's three shapes.
#[derive(Debug)]
pub(crate) enum Answer {
    /// per output label set, its lines as (time ns, line)
    Streams(Vec<(Labels, Vec<(i64, String)>)>),
    Matrix(BTreeMap<Labels, Vec<(i64, f64)>>),
    Vector(Vec<(Labels, i64, f64)>),
}

/// A query's parameters (times in ns).
#[derive(Debug, Clone)]
pub(crate) struct Params {
    pub start: i64,
    pub end: i64,
    pub limit: usize,
    pub backward: bool,
    pub step: i64,
}

impl Logs {
    pub(crate) fn new(store: Store, host: String, retention: std::time::Duration) -> Arc<Logs> {
        Arc::new(Logs {
            store,
            queue: Mutex::default(),
            positions: Mutex::default(),
            counters: Counters::default(),
            retention_ns: AtomicI64::new(retention.as_nanos() as i64),
            host,
        })
    }

    pub(crate) fn set_retention(&self, retention: std::time::Duration) {
        self.retention_ns.store(retention.as_nanos() as i64, Ordering::Relaxed);
    }

    pub(crate) fn retention_ns(&self) -> i64 {
        self.retention_ns.load(Ordering::Relaxed)
    }

    /// Queue entries for the writer; returns how many were taken (the rest were dropped: the queue is full).
    pub(crate) fn push(&self, entries: impl IntoIterator<Item = (Entry, bool)>) -> usize {
        let mut q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        let (mut taken, mut dropped, mut cut) = (0u64, 0u64, 0u64);
        for (e, truncated) in entries {
            cut += truncated as u64;
            if q.len() >= MAX_QUEUE {
                dropped += 1;
                continue;
            }
            q.push(e);
            taken += 1;
        }
        self.counters.received.fetch_add(taken + dropped, Ordering::Relaxed);
        self.counters.dropped.fetch_add(dropped, Ordering::Relaxed);
        self.counters.truncated.fetch_add(cut, Ordering::Relaxed);
        taken as usize
    }

    /// Queue lines with the position a source reached after them (saved in the same transaction as the lines).
    pub(crate) fn push_at(&self, entries: Vec<(Entry, bool)>, key: &str, position: String) -> usize {
        // the positions lock, then the queue's (as `flush` takes them): a flush never sees a position without its lines
        let mut positions = self.positions.lock().unwrap_or_else(|p| p.into_inner());
        let n = self.push(entries);
        positions.retain(|(k, _)| k != key);
        positions.push((key.to_string(), position));
        n
    }

    /// Write what is queued (one transaction). Blocking: the writer task runs it on the blocking pool.
    pub(crate) fn flush(&self) -> Result<usize, LogsError> {
        let (batch, positions) = {
            let mut positions = self.positions.lock().unwrap_or_else(|p| p.into_inner());
            let batch = std::mem::take(&mut *self.queue.lock().unwrap_or_else(|p| p.into_inner()));
            (batch, std::mem::take(&mut *positions))
        };
        if batch.is_empty() && positions.is_empty() {
            return Ok(0);
        }
        match self.store.write(&batch, &positions) {
            Ok(n) => {
                self.counters.written.fetch_add(n as u64, Ordering::Relaxed);
                Ok(n)
            }
            Err(e) => {
                // the batch is lost; say so once per failure with its size
                self.counters.dropped.fetch_add(batch.len() as u64, Ordering::Relaxed);
                Err(e)
            }
        }
    }

    pub(crate) fn queued(&self) -> usize {
        self.queue.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// A range query (`/loki/api/v1/query_range`): lines for a log query, a matrix for a metric query.
    pub(crate) fn query_range(&self, text: &str, p: &Params, now_ns: i64) -> Result<Answer, LogsError> {
        let q = logql::parse(text)?;
        if p.end < p.start {
            return Err(LogsError::BadRequest("the end of the range is before its start".into()));
        }
        let floor = now_ns - self.retention_ns();
        match q {
            Query::Log(lq) => self.lines(&lq, p.start.max(floor), p.end, p.limit, p.backward),
            Query::Metric(mq) => {
                if p.step <= 0 {
                    return Err(LogsError::BadRequest("the step must be positive".into()));
                }
                if (p.end - p.start) / p.step > 11_000 {
                    return Err(LogsError::BadRequest(
                        "exceeded maximum resolution of 11,000 points per timeseries. Try increasing the value of the step parameter".into(),
                    ));
                }
                let events = self.events(&mq.log, (p.start - mq.range_ns).max(floor), p.end)?;
                Ok(Answer::Matrix(logql::evaluate(&mq, &events, p.start, p.end, p.step)))
            }
        }
    }

    /// An instant query (`/loki/api/v1/query`) at `t`: a vector for a metric query, the lines of the hour before
    /// `t` for a log query.
    pub(crate) fn query_instant(
        &self,
        text: &str,
        t: i64,
        limit: usize,
        backward: bool,
        now_ns: i64,
    ) -> Result<Answer, LogsError> {
        let q = logql::parse(text)?;
        let floor = now_ns - self.retention_ns();
        match q {
            Query::Log(lq) => self.lines(&lq, (t - 3_600_000_000_000).max(floor), t + 1, limit, backward),
            Query::Metric(mq) => {
                let events = self.events(&mq.log, (t - mq.range_ns).max(floor), t + 1)?;
                let m = logql::evaluate(&mq, &events, t, t, 1);
                Ok(Answer::Vector(m.into_iter().filter_map(|(l, pts)| pts.last().map(|&(t, v)| (l, t, v))).collect()))
            }
        }
    }

    /// Lines of a log query in `[start, end)`, at most `limit`, grouped by their labels after the pipeline.
    fn lines(
        &self,
        q: &logql::LogQuery,
        start: i64,
        end: i64,
        limit: usize,
        backward: bool,
    ) -> Result<Answer, LogsError> {
        let streams = self.store.streams(start, end, &|l| q.selects(l));
        let labels: std::collections::HashMap<i64, Labels> = streams.iter().map(|s| (s.id, s.labels.clone())).collect();
        let sel = Select {
            streams: streams.iter().map(|s| s.id).collect(),
            start_ns: start,
            end_ns: end,
            backward,
            contains: q.needles(),
        };
        let mut out: BTreeMap<Labels, Vec<(i64, String)>> = BTreeMap::new();
        let mut n = 0;
        self.store.select(&sel, &mut |t, stream, line| {
            let Some(base) = labels.get(&stream) else { return true };
            if let Some(extracted) = q.run(base, line) {
                out.entry(extracted.unwrap_or_else(|| base.clone())).or_default().push((t, line.to_string()));
                n += 1;
            }
            n < limit
        })?;
        Ok(Answer::Streams(out.into_iter().collect()))
    }

    /// Every line of a log query in `[start, end)` as (time, labels, bytes), for metric queries.
    fn events(&self, q: &logql::LogQuery, start: i64, end: i64) -> Result<Vec<(i64, Labels, usize)>, LogsError> {
        let streams = self.store.streams(start, end, &|l| q.selects(l));
        let labels: std::collections::HashMap<i64, Labels> = streams.iter().map(|s| (s.id, s.labels.clone())).collect();
        let sel = Select {
            streams: streams.iter().map(|s| s.id).collect(),
            start_ns: start,
            end_ns: end,
            backward: false,
            contains: q.needles(),
        };
        let mut out = vec![];
        let mut too_many = false;
        self.store.select(&sel, &mut |t, stream, line| {
            let Some(base) = labels.get(&stream) else { return true };
            if let Some(extracted) = q.run(base, line) {
                out.push((t, extracted.unwrap_or_else(|| base.clone()), line.len()));
            }
            if out.len() >= MAX_SCANNED {
                too_many = true;
                return false;
            }
            true
        })?;
        if too_many {
            return Err(LogsError::BadRequest(format!(
                "the query matches more than {MAX_SCANNED} lines: narrow the selector or the time range"
            )));
        }
        Ok(out)
    }

    /// Label names of the streams with lines in `[start, end)`.
    pub(crate) fn label_names(&self, start: i64, end: i64) -> Vec<String> {
        let mut names: Vec<String> = self
            .store
            .streams(start, end, &|_| true)
            .iter()
            .flat_map(|s| s.labels.pairs().iter().map(|(k, _)| k.clone()).collect::<Vec<_>>())
            .collect();
        names.sort();
        names.dedup();
        names
    }

    /// The label sets of the streams with lines in `[start, end)` that any of `selectors` picks (Loki's `/series`;
    /// no selector: every stream).
    pub(crate) fn series(&self, selectors: &[&str], start: i64, end: i64) -> Result<Vec<Labels>, LogsError> {
        let mut qs = vec![];
        for s in selectors {
            match logql::parse(s)? {
                Query::Log(l) => qs.push(l),
                Query::Metric(_) => {
                    return Err(LogsError::BadRequest(format!("match[] must be a stream selector: {s}")));
                }
            }
        }
        let mut out: Vec<Labels> = self
            .store
            .streams(start, end, &|l| qs.is_empty() || qs.iter().any(|q| q.selects(l)))
            .into_iter()
            .map(|s| s.labels)
            .collect();
        out.sort();
        out.dedup();
        Ok(out)
    }

    /// Values of label `name` on the streams with lines in `[start, end)` (narrowed by a selector, if given).
    pub(crate) fn label_values(
        &self,
        name: &str,
        start: i64,
        end: i64,
        selector: Option<&str>,
    ) -> Result<Vec<String>, LogsError> {
        let q = match selector {
            Some(s) if !s.trim().is_empty() => match logql::parse(s)? {
                Query::Log(l) => Some(l),
                Query::Metric(_) => return Err(LogsError::BadRequest("the query must be a stream selector".into())),
            },
            _ => None,
        };
        let mut values: Vec<String> = self
            .store
            .streams(start, end, &|l| q.as_ref().is_none_or(|q| q.selects(l)))
            .iter()
            .filter_map(|s| s.labels.get(name).map(String::from))
            .collect();
        values.sort();
        values.dedup();
        Ok(values)
    }
}

/// The benchmark's handle on a log store (`benches/logs.rs`).
#[doc(hidden)]
pub struct BenchLogs {
    logs: Arc<Logs>,
}

impl BenchLogs {
    /// A store in `dir` (or in memory), 30 days of retention.
    pub fn open(dir: Option<&std::path::Path>) -> BenchLogs {
        let store = Store::open(dir).expect("the log store opens");
        BenchLogs { logs: Logs::new(store, "bench".into(), std::time::Duration::from_secs(30 * 86_400)) }
    }

    /// Queue one line (as a source does).
    pub fn push(&self, t_ns: i64, labels: &[(&str, &str)], line: &str) {
        let l = Labels::new(labels.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        self.logs.push([Entry::new(t_ns, l, line)]);
    }

    /// Write what is queued (the writer's once-a-second transaction).
    pub fn flush(&self) -> usize {
        self.logs.flush().expect("the write succeeds")
    }

    /// A LogQL log query over `[start, end)` (ns), newest first: the number of lines answered.
    pub fn query(&self, q: &str, start: i64, end: i64, limit: usize, now: i64) -> Result<usize, String> {
        let p = Params { start, end, limit, backward: true, step: 1 };
        match self.logs.query_range(q, &p, now).map_err(|e| e.to_string())? {
            Answer::Streams(s) => Ok(s.iter().map(|(_, v)| v.len()).sum()),
            _ => Err("not a log query".into()),
        }
    }

    /// Bytes of pages in use.
    pub fn bytes(&self) -> u64 {
        self.logs.store.usage().map(|u| u.bytes).unwrap_or(0)
    }
}
