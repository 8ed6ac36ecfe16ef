//! The metrics applier and tasks: `metrics` (collect every `metrics.interval`, flush, retention) and `scrape`
//! (the `[[metrics.scrape]]` targets, each on its own interval).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::scrape::{self, Target};
use super::store::FLUSH_EVERY;
use super::{Metrics, TargetStatus, block};
use crate::config::live::{Applier, LiveConfig};
use crate::config::{Config, ConfigError, MetricsConfig};
use crate::supervisor::TaskCtx;
use crate::util::Locked;

pub(crate) fn tiers_of(m: &MetricsConfig) -> [block::Tier; 3] {
    let ms = |d: crate::config::Duration| d.as_std().as_millis() as i64;
    block::tiers(ms(m.retention_raw), ms(m.retention_1m), ms(m.retention_1h))
}

/// Build the scrape targets of `m` (URLs parsed, token files read); fails naming the key.
pub(crate) fn compile(m: &MetricsConfig) -> Result<Vec<Target>, ConfigError> {
    let mut out = vec![];
    for (i, s) in m.scrape.iter().enumerate() {
        let key = |k: &str| format!("metrics.scrape[{i}].{k}");
        let url = reqwest::Url::parse(&s.url).map_err(|e| ConfigError::invalid(key("url"), e.to_string()))?;
        let interval = s.interval.unwrap_or(m.interval).as_std();
        let timeout = s.timeout.map(|t| t.as_std()).unwrap_or(interval.min(Duration::from_secs(10)));
        let bearer = match &s.bearer_token_file {
            Some(p) => Some(
                std::fs::read_to_string(p)
                    .map_err(|e| ConfigError::invalid(key("bearer_token_file"), format!("{}: {e}", p.display())))?
                    .trim()
                    .to_string(),
            ),
            None => None,
        };
        out.push(Target { name: s.name.clone(), url, interval, timeout, bearer });
    }
    Ok(out)
}

/// Build the remote-write receivers of `m` (URLs parsed, secrets read); fails naming the key.
pub(crate) fn compile_receivers(m: &MetricsConfig) -> Result<Vec<super::remote::Receiver>, ConfigError> {
    let mut out = vec![];
    for (i, r) in m.remote_write.iter().enumerate() {
        let key = |k: &str| format!("metrics.remote_write[{i}].{k}");
        let url = reqwest::Url::parse(&r.url).map_err(|e| ConfigError::invalid(key("url"), e.to_string()))?;
        let read = |k: &str, p: &std::path::Path| {
            std::fs::read_to_string(p)
                .map(|s| s.trim().to_string())
                .map_err(|e| ConfigError::invalid(key(k), format!("{}: {e}", p.display())))
        };
        let basic = match (&r.username, &r.password_file) {
            (Some(u), Some(p)) => Some((u.clone(), read("password_file", p)?)),
            _ => None,
        };
        let bearer = r.bearer_token_file.as_ref().map(|p| read("bearer_token_file", p)).transpose()?;
        out.push(super::remote::Receiver { url, basic, bearer });
    }
    Ok(out)
}

pub(crate) fn check(cfg: &Config) -> Result<(), ConfigError> {
    compile(&cfg.metrics)?;
    compile_receivers(&cfg.metrics).map(|_| ())
}

/// Swaps the scrape targets and the tiers' retention.
pub(crate) struct MetricsApplier {
    pub metrics: Arc<Metrics>,
    pub targets: Arc<Mutex<Vec<Target>>>,
    pub receivers: Arc<Mutex<Vec<super::remote::Receiver>>>,
    prepared: Mutex<Option<(Vec<Target>, Vec<super::remote::Receiver>)>>,
}

impl MetricsApplier {
    pub(crate) fn new(
        metrics: Arc<Metrics>,
        targets: Arc<Mutex<Vec<Target>>>,
        receivers: Arc<Mutex<Vec<super::remote::Receiver>>>,
    ) -> Self {
        MetricsApplier { metrics, targets, receivers, prepared: Mutex::default() }
    }
}

impl Applier for MetricsApplier {
    fn prepare(&self, _old: &Config, new: &Config) -> Result<(), ConfigError> {
        *self.prepared.locked() = Some((compile(&new.metrics)?, compile_receivers(&new.metrics)?));
        Ok(())
    }
    fn abort(&self, _old: &Config, _new: &Config) {
        self.prepared.locked().take();
    }
    fn commit(&self, _old: &Config, new: &Config) {
        if let Some((t, r)) = self.prepared.locked().take() {
            *self.targets.locked() = t;
            *self.receivers.locked() = r;
        }
        self.metrics.store.set_tiers(tiers_of(&new.metrics));
    }
}

/// Container names from the Docker API, for the services collector: fetched again when a container it does not
/// know appears (at most every 30 s) and every 5 minutes. Without a readable socket the short ids stay the names.
#[derive(Default)]
pub(crate) struct DockerNames {
    names: HashMap<String, String>,
    fetched: Option<Instant>,
    missed: bool,
    error: Option<String>,
}

impl DockerNames {
    fn refresh_if_due(&mut self, socket: &std::path::Path) {
        let every = if self.missed { Duration::from_secs(30) } else { Duration::from_secs(300) };
        if self.fetched.is_some_and(|t| t.elapsed() < every) {
            return;
        }
        self.fetched = Some(Instant::now());
        if !socket.exists() {
            return;
        }
        match crate::docker::containers(socket, Duration::from_secs(2)) {
            Ok(list) => {
                self.names = list.iter().map(|c| (c.id.clone(), c.name())).collect();
                self.error = None;
            }
            Err(e) => {
                let e = e.to_string();
                if self.error.as_ref() != Some(&e) {
                    tracing::info!(error = %e, "container metrics are named by id: the Docker API is not readable");
                }
                self.error = Some(e);
            }
        }
    }
}

/// One collection round: the machine, the services and hearth's own `/metrics`.
fn collect_round(
    m: &MetricsConfig,
    (host, docker): (&mut super::collect::HostState, &mut DockerNames),
    own: Option<&metrics_exporter_prometheus::PrometheusHandle>,
    now_ms: i64,
) -> Vec<(super::model::Labels, f64)> {
    let mut out = vec![];
    if m.host {
        out.extend(super::collect::host(std::path::Path::new("/"), host, now_ms as f64 / 1000.0));
    }
    if m.services {
        docker.refresh_if_due(std::path::Path::new(crate::docker::DEFAULT_SOCKET));
        let missed = std::cell::Cell::new(false);
        let name = |id: &str| {
            let n = docker.names.get(id).cloned();
            missed.set(missed.get() || n.is_none());
            n
        };
        out.extend(super::collect::services(std::path::Path::new("/sys/fs/cgroup"), &name));
        docker.missed = missed.get();
    }
    if let Some(h) = own {
        match super::expo::parse(&h.render(), &[]) {
            Ok(s) => out.extend(s),
            Err(e) => tracing::warn!(error = %e, "hearth's own metrics did not parse"),
        }
    }
    out.into_iter().map(|s| (s.labels, s.value)).collect()
}

pub(crate) async fn run(
    ctx: TaskCtx,
    metrics: Arc<Metrics>,
    live: Arc<LiveConfig>,
    own: Option<metrics_exporter_prometheus::PrometheusHandle>,
) -> anyhow::Result<()> {
    ctx.ready("collecting");
    let host = Arc::new(Mutex::new((super::collect::HostState::default(), DockerNames::default())));
    let mut last_flush = Instant::now();
    let mut last_retention: Option<Instant> = None;
    loop {
        let cfg = live.current().metrics.clone();
        if cfg.enabled {
            let (m, host, own, metrics2) = (cfg.clone(), host.clone(), own.clone(), metrics.clone());
            let started = Instant::now();
            let res = tokio::task::spawn_blocking(move || {
                let now = crate::util::unix_now_ms();
                let mut state = host.locked();
                let (h, d) = &mut *state;
                let samples = collect_round(&m, (h, d), own.as_ref(), now);
                let n = samples.len();
                metrics2.store.append(now, samples);
                n
            })
            .await;
            if let Ok(n) = res {
                metrics::gauge!("hearth_metrics_collect_duration_seconds").set(started.elapsed().as_secs_f64());
                metrics::gauge!("hearth_metrics_collected_samples").set(n as f64);
            }
            if last_flush.elapsed() >= FLUSH_EVERY {
                last_flush = Instant::now();
                let m2 = metrics.clone();
                let max = cfg.max_disk.bytes();
                let due = last_retention.is_none_or(|t| t.elapsed() >= Duration::from_secs(3600));
                let r = tokio::task::spawn_blocking(move || {
                    let now = crate::util::unix_now_ms();
                    m2.store.flush(now)?;
                    if due {
                        m2.store.enforce_retention(now, max)?;
                    }
                    Ok::<_, super::MetricsError>(())
                })
                .await?;
                if due {
                    last_retention = Some(Instant::now());
                }
                match r {
                    Ok(()) => ctx.ready(format!("{} series", metrics.store.stats().series)),
                    Err(e) => ctx.degraded(format!("could not write the metrics store: {e}")),
                }
            }
        }
        tokio::select! {
            _ = ctx.shutdown.cancelled() => {
                let m2 = metrics.clone();
                let _ = tokio::task::spawn_blocking(move || m2.store.flush(crate::util::unix_now_ms())).await;
                return Ok(());
            }
            _ = tokio::time::sleep(cfg.interval.as_std()) => {}
        }
    }
}

/// The `scrape` task: every second, the targets that are due are scraped concurrently.
pub(crate) async fn scrape_task(
    ctx: TaskCtx,
    metrics: Arc<Metrics>,
    targets: Arc<Mutex<Vec<Target>>>,
) -> anyhow::Result<()> {
    let client = reqwest::Client::builder()
        .user_agent(concat!("hearth/", env!("CARGO_PKG_VERSION")))
        .redirect(reqwest::redirect::Policy::limited(3))
        .build()?;
    ctx.ready("no targets");
    let mut due: HashMap<String, Instant> = HashMap::new();
    let mut running: tokio::task::JoinSet<()> = tokio::task::JoinSet::new();
    loop {
        let list = targets.locked().clone();
        {
            // forget targets that left the config
            let mut st = metrics.targets.locked();
            st.retain(|k, _| list.iter().any(|t| &t.name == k));
            for t in &list {
                st.entry(t.name.clone()).or_insert_with(|| TargetStatus {
                    name: t.name.clone(),
                    url: t.url.to_string(),
                    health: "unknown".into(),
                    ..Default::default()
                });
            }
        }
        let now = Instant::now();
        for t in list.iter().cloned() {
            let next = due.entry(format!("{}\0{}", t.name, t.url)).or_insert(now);
            if *next > now || running.len() >= 16 {
                continue;
            }
            *next = now + t.interval;
            let (client, metrics) = (client.clone(), metrics.clone());
            running.spawn(async move {
                let r = scrape::scrape(&client, &t).await;
                let ts = crate::util::unix_now_ms();
                let n = r.samples.len();
                metrics.store.append(ts, r.samples.into_iter().map(|s| (s.labels, s.value)));
                metrics::counter!("hearth_metrics_scrapes_total", "job" => t.name.clone(),
                    "result" => if r.error.is_some() { "error" } else { "ok" })
                .increment(1);
                let mut st = metrics.targets.locked();
                let e = st.entry(t.name.clone()).or_default();
                e.name = t.name.clone();
                e.url = t.url.to_string();
                e.last_scrape_ms = ts;
                e.last_duration_ms = r.duration.as_secs_f64() * 1000.0;
                e.samples = n.saturating_sub(3);
                e.health = if r.error.is_some() { "down".into() } else { "up".into() };
                if r.error.is_some() {
                    e.failures += 1;
                }
                e.last_error = r.error;
            });
        }
        let down = metrics.targets.locked().values().filter(|t| t.health == "down").count();
        if list.is_empty() {
            ctx.ready("no targets");
        } else if down > 0 {
            ctx.degraded(format!("{down} of {} targets down", list.len()));
        } else {
            ctx.ready(format!("{} targets", list.len()));
        }
        tokio::select! {
            _ = ctx.shutdown.cancelled() => return Ok(()),
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            Some(_) = running.join_next(), if !running.is_empty() => {}
        }
    }
}

/// The `remote-write` task: every 10 s, each receiver gets what was stored after its cursor.
pub(crate) async fn remote_write_task(
    ctx: TaskCtx,
    metrics: Arc<Metrics>,
    receivers: Arc<Mutex<Vec<super::remote::Receiver>>>,
) -> anyhow::Result<()> {
    let client = reqwest::Client::builder().user_agent(concat!("hearth/", env!("CARGO_PKG_VERSION"))).build()?;
    ctx.ready("no receivers");
    let mut failures: HashMap<String, u32> = HashMap::new();
    loop {
        let list = receivers.locked().clone();
        let mut down = vec![];
        for r in &list {
            let now = crate::util::unix_now_ms();
            match super::remote::push(&client, &metrics, r, now).await {
                Ok(n) => {
                    failures.remove(r.url.as_str());
                    metrics::counter!("hearth_metrics_remote_write_samples_total", "url" => r.url.to_string())
                        .increment(n as u64);
                }
                Err(e) => {
                    *failures.entry(r.url.to_string()).or_default() += 1;
                    metrics::counter!("hearth_metrics_remote_write_failures_total", "url" => r.url.to_string())
                        .increment(1);
                    tracing::warn!(url = %r.url, error = %e, "remote write failed; the samples are sent once it answers");
                    down.push(format!("{}: {e}", r.url));
                }
            }
        }
        if list.is_empty() {
            ctx.ready("no receivers");
        } else if down.is_empty() {
            ctx.ready(format!("{} receiver(s) up to date", list.len()));
        } else {
            ctx.degraded(down.join("; "));
        }
        tokio::select! {
            _ = ctx.shutdown.cancelled() => return Ok(()),
            _ = tokio::time::sleep(Duration::from_secs(10)) => {}
        }
    }
}
