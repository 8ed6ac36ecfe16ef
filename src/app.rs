//! Wiring: the only module that knows every subsystem. It loads the config, opens storage with every
//! subsystem's migrations, installs logging and metrics, builds each subsystem, registers its applier with the
//! config transaction and its tasks with the supervisor, talks to systemd, and handles signals (SIGHUP reloads;
//! SIGTERM/SIGINT shut down within the deadline). No subsystem logic lives here.
//!
//! Appliers, in the order a change is prepared and committed: log level, login throttle, listeners (reserves new
//! addresses, UDP and TCP), dns, certificates, proxy (trusts the root the certificates' applier prepared), metrics
//! history (scrape targets, retention), alerts (rules, channels).
//! Tasks: `storage` (SQLite upkeep), `http` and `https` (the front door's listeners), `acme`, `proxy` (backend
//! health checks), `metrics` (process samples for the dashboard), `dns`, `querylog`, `memory` (the embedding
//! model, loaded in the background), `memory-upkeep` (collection indexes, compaction, pruning), `history` (the
//! machine's, the services' and hearth's own samples into the metrics store) and `scrape` (`[[metrics.scrape]]`), `remote-write`
//! (`[[metrics.remote_write]]`), `alerts`
//! (rule evaluation) and `notify` (the alerts' outbox).

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use crate::auth::throttle::ThrottlePolicy;
use crate::config::live::{Applier, LiveConfig, Overrides};
use crate::config::{Config, ConfigError, ConfigSource};
use crate::http::{self, AppState};
use crate::storage::{Db, Migration};
use crate::supervisor::{RestartPolicy, Supervisor};
use crate::telemetry::{RequestCounter, Series};

/// Every subsystem's database migrations, by component (handed to `storage`).
pub fn migrations() -> Vec<(&'static str, &'static [Migration])> {
    vec![
        ("auth", crate::auth::MIGRATIONS),
        ("dns", crate::dns::querylog::MIGRATIONS),
        ("tls", crate::tls::acme::MIGRATIONS),
        ("alerts", crate::alerts::MIGRATIONS),
    ]
}

/// The local records DNS adds for proxy routes on local names (they point at hearth).
fn route_records() -> crate::dns::task::ExtraRecords {
    Arc::new(|cfg: &Config| crate::proxy::local_records(cfg, crate::proxy::advertised_address(cfg)))
}

/// Everything a config must pass before it runs: the config's own checks, then what each subsystem's `prepare`
/// would refuse (settings compiled the way the subsystem compiles them; no socket is bound, nothing is written).
pub(crate) fn check_config(cfg: &Config) -> Result<(), ConfigError> {
    cfg.validate()?;
    crate::tls::applier::check(cfg)?;
    crate::proxy::Proxy::check(cfg).map_err(|(k, e)| ConfigError::invalid(k, e))?;
    crate::metrics::task::check(cfg)?;
    crate::alerts::task::check(cfg, &expr_checker())?;
    crate::traces::task::check(cfg)?;
    crate::dns::task::check(cfg, &route_records())
}

/// The alerts' expressions are parsed the way they are evaluated: PromQL by the metrics history, LogQL by the log
/// store (a metric query: a log query returns lines, not numbers).
fn expr_checker() -> crate::alerts::Checker {
    use crate::config::QueryLanguage;
    Arc::new(|language: QueryLanguage, expr: &str| {
        match language {
        QueryLanguage::Promql => crate::metrics::promql::Query::parse(expr).map(|_| ()).map_err(|e| {
            match crate::logs::logql::parse(expr) {
                Ok(crate::logs::logql::Query::Metric(_)) => format!("{e} (it is LogQL: set language = \"logql\")"),
                _ => e.to_string(),
            }
        }),
        QueryLanguage::Logql => match crate::logs::logql::parse(expr) {
            Ok(crate::logs::logql::Query::Metric(_)) => Ok(()),
            Ok(crate::logs::logql::Query::Log(_)) => Err(
                "a log query returns lines, not numbers: count them, e.g. sum(count_over_time({unit=\"nginx.service\"} |= \"error\" [5m])) > 0"
                    .into(),
            ),
            Err(e) => Err(e.to_string()),
        },
    }
    })
}

/// The alerts' rules are evaluated as instant queries: PromQL over the metrics history, LogQL over the logs.
fn expr_evaluator(history: Arc<crate::metrics::Metrics>, logs: Arc<crate::logs::Logs>) -> crate::alerts::Evaluator {
    use crate::config::QueryLanguage;
    Arc::new(move |language: QueryLanguage, expr: &str, t: i64| match language {
        QueryLanguage::Promql => match history.query_instant(expr, t, crate::util::unix_now_ms()) {
            Ok(crate::metrics::promql::Value::Vector(v)) => {
                Ok(v.into_iter().map(|(l, x)| (l.pairs().iter().cloned().collect(), x)).collect())
            }
            Ok(_) => {
                Err("an alert rule must return an instant vector (a selector, a comparison, an aggregation)".into())
            }
            Err(e) => Err(e.to_string()),
        },
        QueryLanguage::Logql => {
            let t_ns = t * 1_000_000;
            match logs.query_instant(expr, t_ns, 0, true, crate::util::unix_now_ms() * 1_000_000) {
                Ok(crate::logs::Answer::Vector(v)) => {
                    Ok(v.into_iter().map(|(l, _, x)| (l.pairs().iter().cloned().collect(), x)).collect())
                }
                Ok(_) => Err("a LogQL alert rule must be a metric query (count_over_time, rate, …)".into()),
                Err(e) => Err(e.to_string()),
            }
        }
    })
}

pub(crate) struct RunOptions {
    pub config: PathBuf,
    pub data_dir: Option<PathBuf>,
}

/// Load and validate the configuration as `hearth run` would.
pub(crate) fn load_config(
    config: &std::path::Path,
    data_dir: Option<PathBuf>,
) -> Result<(ConfigSource, Overrides, Config), ConfigError> {
    let source = ConfigSource::new(config.to_path_buf());
    let overrides = Overrides { data_dir };
    let cfg = overrides.apply(source.load()?);
    check_config(&cfg)?;
    Ok((source, overrides, cfg))
}

pub(crate) async fn run(opts: RunOptions) -> anyhow::Result<()> {
    let (source, overrides, cfg) = load_config(&opts.config, opts.data_dir)?;
    // hearth's own events also go to the log store, through a bounded tap (drained by the `own-logs` task)
    // traces: the tracer goes under `tracing` with the logging layers; the ring and the exporter are the subsystem's
    let traces = crate::traces::Traces::new(&cfg.tracing);
    let (levels, own_events) = crate::logging::init(&cfg.log, 50_000, Some(traces.tracer()));
    let (trace_export, trace_export_rx) = tokio::sync::watch::channel(crate::traces::task::build(&cfg.tracing)?);
    let metrics = crate::telemetry::install_recorder();
    let data_dir = cfg.data_dir();
    let db = {
        let (d, t) = (data_dir.clone(), cfg.storage.busy_timeout.as_std());
        tokio::task::spawn_blocking(move || Db::open(&d, t, &migrations())).await?
    }
    .with_context(|| format!("while opening the database in {}", data_dir.display()))?;
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        commit = crate::BUILD_COMMIT,
        config = %source.path.display(),
        config_file_exists = source.exists(),
        data_dir = %data_dir.display(),
        "hearth starting"
    );
    // no admin yet: make (or keep) the one-time setup code and log where it is; else remove a leftover code file
    crate::auth::setup_code::at_start(&db, &data_dir).await;

    let live = Arc::new(LiveConfig::new(source, overrides, cfg.clone()));
    // every password check (admin login, setup code, a route's basic auth or login form) goes through one
    // throttle and one bound on concurrent argon2 hashes
    let verifier = Arc::new(crate::auth::verifier::Verifier::new(throttle_policy(&cfg)));
    let reserved = Arc::new(crate::net::Reserved::default());

    let mut sup = Supervisor::new(RestartPolicy::default());
    // DNS: settings and zone compiled once here, then by its applier on every change
    let (querylog, log_reader, log_writer) =
        crate::dns::querylog::start(db.clone(), crate::dns::querylog_policy(&cfg.dns), 10_000);
    let dns_settings = crate::dns::Settings::from_config(&cfg.dns).map_err(|(key, e)| anyhow::anyhow!("{key}: {e}"))?;
    let dns = Arc::new(crate::dns::Dns::new(dns_settings, crate::dns::cache_policy(&cfg.dns), Some(querylog)));
    // a blocking pause outlives a restart (a timed one still ends on time)
    let paused_until = db.call(|c| crate::dns::blocking::load(c)).await?;
    if paused_until != 0 {
        dns.pause_blocking(paused_until);
    }
    let dns_applier = Arc::new(crate::dns::task::DnsApplier::new(dns.clone(), log_reader.clone(), route_records()));
    dns.apply(crate::dns::Prepared {
        zone: crate::dns::task::compile(None, &cfg, &route_records())?.zone,
        ..Default::default()
    });
    // list downloads resolve their hosts through hearth's own resolver (no glibc NSS in a static binary)
    let resolver = Arc::new(crate::dns::SelfResolver(dns.clone()));
    let updater = Arc::new(crate::dns::lists::ListUpdater::new(Some(resolver)));
    // the HTTPS front: certificates (internal CA, ACME) and the proxy's routing table
    let certs = {
        let (d, p) = (data_dir.clone(), crate::tls::NamePolicy::from_config(&cfg));
        Arc::new(tokio::task::spawn_blocking(move || crate::tls::Certs::new(&d, p)).await??)
    };
    let certs_applier = Arc::new(crate::tls::applier::CertsApplier::new(certs.clone()));
    let acme = Arc::new(crate::tls::acme::Acme::new(db.clone(), certs.clone(), &data_dir));
    let proxy = Arc::new(crate::proxy::Proxy::new(
        &cfg,
        acme.clone(),
        db.clone(),
        verifier.clone(),
        certs.root_pem().as_deref(),
    )?);
    // memory: the vector store opens now (its own runtime), the model loads in the background
    let store = {
        let d = data_dir.join("memory");
        Arc::new(tokio::task::spawn_blocking(move || crate::memory::store::Store::open(&d)).await??)
    };
    let memory = Arc::new(crate::memory::Memory::new(live.clone(), store));
    // metrics history: its own SQLite file and write-ahead file (or RAM only)
    let history = {
        let dir = (cfg.metrics.storage == crate::config::MetricsStorage::Sqlite).then(|| data_dir.clone());
        let tiers = crate::metrics::task::tiers_of(&cfg.metrics);
        let store = tokio::task::spawn_blocking(move || {
            crate::metrics::store::Store::open(dir.as_deref(), tiers, crate::util::unix_now_ms())
        })
        .await??;
        crate::metrics::Metrics::new(store)
    };
    let scrape_targets = Arc::new(Mutex::new(crate::metrics::task::compile(&cfg.metrics)?));
    let receivers = Arc::new(Mutex::new(crate::metrics::task::compile_receivers(&cfg.metrics)?));
    // logs: their own SQLite file (or RAM only); syslog sockets bound now, so a busy port fails the start
    let logs = {
        let dir = (cfg.logs.storage == crate::config::MetricsStorage::Sqlite).then(|| data_dir.clone());
        let store = tokio::task::spawn_blocking(move || crate::logs::store::Store::open(dir.as_deref())).await??;
        crate::logs::Logs::new(store, crate::util::host_name(), cfg.logs.retention.as_std())
    };
    let (syslog_sockets, syslog_rx) = tokio::sync::watch::channel(crate::logs::task::bind_all(&cfg, &[])?);
    // alerts: rules over the history, state and outbox in hearth.db
    let alerts = crate::alerts::Alerts::open(db.clone(), expr_evaluator(history.clone(), logs.clone())).await?;
    let alert_rules = Arc::new(Mutex::new(crate::alerts::task::compile(&cfg.alerts)?));
    let state = AppState {
        db: db.clone(),
        health: sup.health(),
        config: live.clone(),
        verifier: verifier.clone(),
        metrics: metrics.clone(),
        requests: RequestCounter::default(),
        series: Arc::new(Mutex::new(Series::new(180))),
        started_at: crate::util::unix_now(),
        openapi: Arc::default(),
        dns: http::DnsApi {
            config: live.clone(),
            dns: dns.clone(),
            querylog: log_reader.clone(),
            lists: updater.clone(),
            db: db.clone(),
        },
        proxy: http::ProxyApi { config: live.clone(), proxy: proxy.clone(), certs: certs.clone() },
        memory: http::MemoryApi { config: live.clone(), memory: memory.clone() },
        history: http::MetricsApi { metrics: history.clone() },
        alerts: http::AlertsApi { alerts: alerts.clone(), compiled: alert_rules.clone() },
        logs: http::LogsApi { logs: logs.clone() },
        traces: http::TracesApi { traces: traces.clone() },
    };
    let front = Arc::new(crate::front::Front::new(http::router(state.clone()), proxy.clone(), &cfg));

    // the config transaction: prepared in this order, committed in this order
    let appliers: [Arc<dyn Applier>; 10] = [
        Arc::new(LevelApplier(levels)),
        Arc::new(ThrottleApplier(verifier.clone())),
        Arc::new(crate::front::listeners::ListenerApplier { reserved: reserved.clone(), front: front.clone() }),
        dns_applier,
        certs_applier.clone(),
        Arc::new(crate::proxy::ProxyApplier { proxy: proxy.clone(), certs: certs_applier, prepared: Mutex::default() }),
        Arc::new(crate::metrics::task::MetricsApplier::new(history.clone(), scrape_targets.clone(), receivers.clone())),
        Arc::new(crate::alerts::task::AlertsApplier::new(alert_rules.clone(), expr_checker())),
        Arc::new(crate::logs::task::LogsApplier::new(logs.clone(), syslog_sockets)),
        Arc::new(crate::traces::task::TracingApplier::new(traces.clone(), trace_export)),
    ];
    for a in appliers {
        live.add_applier(a);
    }

    {
        let (db, live) = (db.clone(), live.clone());
        let every: Arc<dyn Fn() -> Duration + Send + Sync> =
            Arc::new(move || live.current().storage.maintenance_interval.as_std());
        let jobs: Vec<crate::storage::Upkeep> = vec![
            ("expired sessions", |c, now| crate::auth::prune_sessions(c, now).map_err(|e| e.to_string())),
            ("alert history", crate::alerts::prune),
        ];
        sup.spawn("storage", move |ctx| {
            let (db, every, jobs) = (db.clone(), every.clone(), jobs.clone());
            async move { Ok(crate::storage::task(ctx, db, every, jobs).await?) }
        });
    }
    for kind in [crate::front::listeners::Kind::Http, crate::front::listeners::Kind::Https] {
        let (live, front, certs, reserved) = (live.clone(), front.clone(), certs.clone(), reserved.clone());
        sup.spawn(kind.name(), move |ctx| {
            crate::front::listeners::task(ctx, kind, live.clone(), front.clone(), certs.clone(), reserved.clone())
        });
    }
    {
        let live = live.clone();
        sup.spawn("acme", move |ctx| acme.clone().run(ctx, live.clone()));
    }
    {
        let proxy = proxy.clone();
        sup.spawn("proxy", move |ctx| crate::proxy::health::task(ctx, proxy.clone()));
    }
    {
        let memory = memory.clone();
        sup.spawn("memory", move |ctx| memory.clone().run(ctx));
    }
    {
        let (memory, live) = (memory.clone(), live.clone());
        sup.spawn("memory-upkeep", move |ctx| crate::memory::task::upkeep(ctx, memory.clone(), live.clone()));
    }
    {
        let (series, requests, handle) = (state.series.clone(), state.requests.clone(), state.metrics.clone());
        sup.spawn("metrics", move |ctx| {
            crate::telemetry::sampler(ctx, series.clone(), requests.clone(), handle.clone())
        });
    }
    {
        let (history, live, handle) = (history.clone(), live.clone(), state.metrics.clone());
        sup.spawn("history", move |ctx| crate::metrics::task::run(ctx, history.clone(), live.clone(), handle.clone()));
    }
    {
        let (alerts, rules, live) = (alerts.clone(), alert_rules.clone(), live.clone());
        sup.spawn("alerts", move |ctx| crate::alerts::task::run(ctx, alerts.clone(), rules.clone(), live.clone()));
    }
    {
        let (alerts, rules) = (alerts.clone(), alert_rules.clone());
        sup.spawn("notify", move |ctx| crate::alerts::task::deliver(ctx, alerts.clone(), rules.clone()));
    }
    {
        let (history, receivers) = (history.clone(), receivers.clone());
        sup.spawn("remote-write", move |ctx| {
            crate::metrics::task::remote_write_task(ctx, history.clone(), receivers.clone())
        });
    }
    {
        let (history, targets) = (history.clone(), scrape_targets.clone());
        sup.spawn("scrape", move |ctx| crate::metrics::task::scrape_task(ctx, history.clone(), targets.clone()));
    }
    {
        let (logs, live) = (logs.clone(), live.clone());
        sup.spawn("logs", move |ctx| crate::logs::task::writer(ctx, logs.clone(), live.clone()));
    }
    {
        // the tap's receiver outlives a restart of the task (a restarted task takes it over)
        let (logs, events) = (logs.clone(), Arc::new(tokio::sync::Mutex::new(own_events.rx)));
        let dropped = own_events.dropped.clone();
        sup.spawn("own-logs", move |ctx| {
            crate::logs::task::own_events(ctx, logs.clone(), events.clone(), dropped.clone())
        });
    }
    {
        let logs = logs.clone();
        sup.spawn("syslog", move |ctx| crate::logs::task::syslog(ctx, logs.clone(), syslog_rx.clone()));
    }
    {
        let (logs, live) = (logs.clone(), live.clone());
        sup.spawn("journal", move |ctx| crate::logs::task::journal(ctx, logs.clone(), live.clone()));
    }
    {
        let (logs, live) = (logs.clone(), live.clone());
        sup.spawn("docker-logs", move |ctx| crate::logs::task::docker(ctx, logs.clone(), live.clone()));
    }
    {
        let traces = traces.clone();
        sup.spawn("traces", move |ctx| crate::traces::task::run(ctx, traces.clone(), trace_export_rx.clone()));
    }
    {
        let (live, reserved, updater, certs) = (live.clone(), reserved.clone(), updater.clone(), certs.clone());
        sup.spawn("dns", move |ctx| {
            crate::dns::task::run(ctx, live.clone(), dns.clone(), certs.clone(), reserved.clone(), updater.clone())
        });
    }
    {
        let writer = Arc::new(log_writer);
        sup.spawn("querylog", move |ctx| {
            let writer = writer.clone();
            async move {
                ctx.ready("writing in batches");
                writer.run(ctx.shutdown.clone()).await?;
                // every handle is gone only at shutdown
                ctx.shutdown.cancelled().await;
                Ok(())
            }
        });
    }

    print_urls(&cfg);
    let health = sup.health();
    let notify = std::env::var_os("NOTIFY_SOCKET").is_some();
    let watchdog = CancellationToken::new();
    if notify {
        tokio::spawn(crate::supervisor::notify_systemd(health.clone(), watchdog.clone()));
    }

    // Signals: SIGHUP reloads the file, SIGTERM/SIGINT shut down.
    use tokio::signal::unix::{SignalKind, signal};
    let mut hup = signal(SignalKind::hangup())?;
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let why = loop {
        tokio::select! {
            _ = hup.recv() => {
                tracing::info!("SIGHUP: reloading the configuration");
                let _ = live.reload().await;
            }
            _ = term.recv() => break "SIGTERM",
            _ = int.recv() => break "SIGINT",
        }
    };
    let deadline = live.current().server.shutdown_timeout.as_std();
    tracing::info!(signal = why, deadline_s = deadline.as_secs_f64(), "shutting down");
    watchdog.cancel();
    if notify {
        let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Stopping]);
    }
    let clean = sup.shutdown(deadline).await;
    if clean {
        tracing::info!("stopped cleanly");
    } else {
        tracing::warn!("some subsystems did not stop within the shutdown deadline");
    }
    Ok(())
}

fn throttle_policy(cfg: &Config) -> ThrottlePolicy {
    ThrottlePolicy {
        free_attempts: cfg.auth.login_free_attempts,
        base_delay: Duration::from_secs(1),
        max_delay: cfg.auth.login_max_delay.as_std(),
        forget_after: Duration::from_secs(3600),
    }
}

fn print_urls(cfg: &Config) {
    let mut lines = vec![];
    for a in &cfg.server.http_listen {
        lines.push(format!("  admin UI and API  http://{}", a.connect_addr()));
    }
    for a in &cfg.server.https_listen {
        lines.push(format!("  admin UI (TLS)    https://{}", a.connect_addr()));
    }
    for a in &cfg.dns.listen {
        lines.push(format!("  DNS (UDP + TCP)   {}", a.connect_addr()));
    }
    for a in &cfg.dns.tls_listen {
        lines.push(format!("  DNS over TLS      {}", a.connect_addr()));
    }
    for a in &cfg.server.https_listen {
        lines.push(format!("  DNS over HTTPS    https://{}/dns-query", a.connect_addr()));
    }
    for a in cfg.server.http_listen.iter().take(1) {
        lines.push(format!("  internal root CA  http://{}/ca.crt", a.connect_addr()));
    }
    for r in &cfg.proxy.routes {
        let scheme = if r.tls == crate::config::RouteTls::None { "http" } else { "https" };
        lines.push(format!(
            "  proxy route       {scheme}://{}{} → {}",
            r.hosts.join(", "),
            r.path_prefix,
            r.upstreams.join(", ")
        ));
    }
    println!("hearth {} is starting:\n{}", env!("CARGO_PKG_VERSION"), lines.join("\n"));
}

struct LevelApplier(crate::logging::LevelHandle);

impl Applier for LevelApplier {
    fn prepare(&self, _old: &Config, _new: &Config) -> Result<(), ConfigError> {
        Ok(()) // validated by Config::validate
    }
    fn commit(&self, old: &Config, new: &Config) {
        if old.log.level != new.log.level
            && std::env::var_os("RUST_LOG").is_none()
            && let Err(e) = self.0.set(&new.log.level)
        {
            tracing::error!(error = %e, "could not change the log level");
        }
    }
}

struct ThrottleApplier(Arc<crate::auth::verifier::Verifier>);

impl Applier for ThrottleApplier {
    fn prepare(&self, _old: &Config, _new: &Config) -> Result<(), ConfigError> {
        Ok(())
    }
    fn commit(&self, _old: &Config, new: &Config) {
        self.0.set_policy(throttle_policy(new));
    }
}
