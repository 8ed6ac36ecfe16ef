//! Metrics history: collectors (the machine, the Pi, services, hearth itself, scraped exporters), the embedded
//! time-series store with roll-up tiers, and PromQL queries over it. Replaces node-exporter + cAdvisor +
//! Prometheus for a homelab; `alerts/` evaluates its rules through [`Metrics::query_instant`].
//!
//! Layout: pure cores in `expo.rs` (exposition text), `block.rs` (block format, roll-ups, retention plan),
//! `promql.rs` (the evaluator), `collect.rs` (readers over a root path); the IO shell in `store.rs` (SQLite +
//! write-ahead file), `scrape.rs` (HTTP) and `task.rs` (applier and tasks).
//!
//! Invariants: a query reads one tier, chosen from its range and step ([`Metrics::choose_tier`]); queries run on
//! the blocking pool and never hold the store's locks across an await; a failing collector or scrape target
//! costs its own samples only.

pub(crate) mod block;
pub(crate) mod collect;
pub(crate) mod expo;
pub(crate) mod model;
pub(crate) mod promql;
pub(crate) mod remote;
pub(crate) mod scrape;
pub(crate) mod store;
pub(crate) mod task;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use model::{Labels, Point};
use promql::{Data, Query, QueryError, Value};
use store::Store;

#[derive(Debug, thiserror::Error)]
pub(crate) enum MetricsError {
    #[error("metrics store: {0}")]
    Store(String),
    #[error(transparent)]
    Query(#[from] QueryError),
    #[error("{0}")]
    BadRequest(String),
}

/// The state of one scrape target, shown in the UI.
#[derive(Debug, Clone, Default, serde::Serialize, utoipa::ToSchema)]
pub(crate) struct TargetStatus {
    pub name: String,
    pub url: String,
    /// "up", "down" or "unknown" (not scraped yet)
    pub health: String,
    pub last_scrape_ms: i64,
    pub last_duration_ms: f64,
    pub last_error: Option<String>,
    pub samples: usize,
    pub failures: u64,
}

/// A range query's answer: per series, its labels and (t ms, value) points.
pub(crate) type Matrix = Vec<(Labels, Vec<(i64, f64)>)>;

pub(crate) struct Metrics {
    pub(crate) store: Store,
    pub(crate) targets: Mutex<HashMap<String, TargetStatus>>,
}

/// Most points a range query may return per series (Prometheus's limit).
const MAX_POINTS: i64 = 11_000;

impl Metrics {
    pub(crate) fn new(store: Store) -> Arc<Metrics> {
        Arc::new(Metrics { store, targets: Mutex::default() })
    }

    /// The tier a query over `[start, end]` with `step` reads: among the tiers that still hold `start`, the
    /// coarsest whose step is at most the query's (a chart never asks for more points than it draws); if none
    /// qualifies, the finest that holds `start`.
    pub(crate) fn choose_tier(&self, now: i64, start: i64, step: i64) -> usize {
        let tiers = self.store.tiers();
        let covering: Vec<usize> = (0..3).filter(|&k| now - tiers[k].retention_ms <= start).collect();
        covering.iter().rev().copied().find(|&k| tiers[k].step_ms <= step).or(covering.first().copied()).unwrap_or(2)
    }

    fn lookback(&self, tier: usize) -> i64 {
        promql::LOOKBACK_MS.max(2 * self.store.tiers()[tier].step_ms)
    }

    fn fetch(&self, q: &Query, tier: usize, start: i64, end: i64) -> Result<Data, MetricsError> {
        let mut data = Data::new();
        for f in q.selectors(self.lookback(tier)) {
            let (a, b) = (start - f.offset - f.before, end - f.offset);
            let got: Vec<(Labels, Vec<Point>)> = self.store.select(f.name.as_deref(), &|l| f.matches(l), tier, a, b)?;
            data.insert(f.key, got.into_iter().map(|(l, p)| promql::Series::new(l, p)).collect());
        }
        Ok(data)
    }

    /// An instant query at `t` (ms).
    pub(crate) fn query_instant(&self, text: &str, t: i64, now: i64) -> Result<Value, MetricsError> {
        let q = Query::parse(text)?;
        let tier = self.choose_tier(now, t - promql::LOOKBACK_MS, 0);
        let data = self.fetch(&q, tier, t, t)?;
        Ok(q.eval(&data, t, self.lookback(tier))?)
    }

    /// A range query: `text` evaluated at every `step` from `start` to `end` (ms).
    pub(crate) fn query_range(
        &self,
        text: &str,
        start: i64,
        end: i64,
        step: i64,
        now: i64,
    ) -> Result<Matrix, MetricsError> {
        if step <= 0 {
            return Err(MetricsError::BadRequest(
                "zero or negative query resolution step widths are not accepted. Try a positive integer".into(),
            ));
        }
        if end < start {
            return Err(MetricsError::BadRequest("end timestamp must not be before start time".into()));
        }
        if (end - start) / step > MAX_POINTS {
            return Err(MetricsError::BadRequest(
                "exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)".into(),
            ));
        }
        let q = Query::parse(text)?;
        if q.is_range_vector() || q.is_string() {
            return Err(MetricsError::BadRequest(format!(
                "invalid expression type \"{}\" for range query, must be Scalar or instant Vector",
                if q.is_string() { "string" } else { "range vector" }
            )));
        }
        let tier = self.choose_tier(now, start, step);
        let lookback = self.lookback(tier);
        let data = self.fetch(&q, tier, start, end)?;
        let mut series: HashMap<Labels, Vec<(i64, f64)>, foldhash::fast::RandomState> = HashMap::default();
        q.eval_range(&data, (start, end, step), lookback, &mut |t, value| match value {
            Value::Scalar(v) => series.entry(Labels::default()).or_default().push((t, v)),
            Value::Vector(v) => {
                for (l, x) in v {
                    series.entry(l).or_default().push((t, x));
                }
            }
            _ => {}
        })?;
        let mut out: Matrix = series.into_iter().collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    /// Series matching any of `selectors` (Prometheus's `match[]`), or all when there are none.
    pub(crate) fn series(&self, selectors: &[String], start: i64) -> Result<Vec<Labels>, MetricsError> {
        let mut sets = vec![];
        for s in selectors {
            let expr = promql_parser::parser::parse(s).map_err(QueryError::Parse)?;
            match expr {
                promql_parser::parser::Expr::VectorSelector(vs) => sets.push(vs),
                _ => return Err(MetricsError::BadRequest(format!("{s}: match[] must be a series selector"))),
            }
        }
        let matches = |l: &Labels| {
            sets.is_empty()
                || sets
                    .iter()
                    .any(|vs| vs.name.as_deref().is_none_or(|n| l.name() == n) && promql::matches(&vs.matchers, l))
        };
        Ok(self.store.series(&matches, start))
    }
}

/// The benchmark's handle on a store (`benches/metrics.rs`): series given as `name{a="b"}` keys, times in ms.
#[doc(hidden)]
pub struct BenchStore {
    m: Arc<Metrics>,
}

impl BenchStore {
    /// A store in `dir` with the default tiers (48 h, 14 d, 400 d).
    pub fn open(dir: &std::path::Path, now_ms: i64) -> BenchStore {
        let tiers = block::tiers(48 * block::HOUR, 14 * block::DAY, 400 * block::DAY);
        BenchStore { m: Metrics::new(Store::open(Some(dir), tiers, now_ms).expect("the store opens")) }
    }

    pub fn append(&self, t: i64, samples: &[(String, f64)]) {
        self.m.store.append(t, samples.iter().filter_map(|(k, v)| Some((Labels::from_key(k)?, *v))));
    }

    pub fn flush(&self, now_ms: i64) {
        self.m.store.flush(now_ms).expect("flush");
    }

    /// Bytes on disk (files) and bytes of blocks per tier.
    pub fn bytes(&self) -> (u64, [u64; 3]) {
        let s = self.m.store.stats();
        (s.disk_bytes, s.tier_bytes)
    }

    /// A range query; returns the number of points answered.
    pub fn query_range(&self, q: &str, start: i64, end: i64, step: i64, now: i64) -> Result<usize, String> {
        let m = self.m.query_range(q, start, end, step, now).map_err(|e| e.to_string())?;
        Ok(m.iter().map(|(_, p)| p.len()).sum())
    }

    /// The resolution a range query reads (0 raw, 1 one minute, 2 one hour).
    pub fn tier_for(&self, now: i64, start: i64, step: i64) -> usize {
        self.m.choose_tier(now, start, step)
    }
}

/// One collection round of this machine (host + services), as the `history` task does it: the number of samples.
#[doc(hidden)]
pub fn bench_collect_round(state: &mut collect::HostState) -> usize {
    collect::host(std::path::Path::new("/"), state, 0.0).len()
        + collect::services(std::path::Path::new("/sys/fs/cgroup"), &|_| None).len()
}

#[doc(hidden)]
pub use collect::HostState;
