//! Wiring: the only module that knows every subsystem. It loads the config, opens storage, installs logging and
//! metrics, registers each subsystem with the supervisor, connects config changes to the subsystems that react to
//! them, talks to systemd, and handles signals (SIGHUP reloads; SIGTERM/SIGINT shut down within the deadline).
//!
//! Subsystems today: `storage` (SQLite upkeep), `http` and `https` (listeners: admin UI/API and proxied routes),
//! `acme` (certificates), `proxy` (backend health checks), `metrics` (process samples for the dashboard), `dns`
//! (the resolver), `querylog`, `memory` (the embedding model, loaded in the background) and `memory-upkeep`
//! (collection indexes, compaction, pruning).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::auth::throttle::ThrottlePolicy;
use crate::config::live::{Applier, LiveConfig, Overrides};
use crate::config::{Config, ConfigError, ConfigSource, ListenAddr};
use crate::http::{self, AppState};
use crate::storage::Db;
use crate::supervisor::{RestartPolicy, Supervisor, TaskCtx};
use crate::telemetry::{ProcessStats, RequestCounter, Series};

pub struct RunOptions {
    pub config: PathBuf,
    pub data_dir: Option<PathBuf>,
}

/// Load and validate the configuration as `hearth run` would.
pub fn load_config(
    config: &std::path::Path,
    data_dir: Option<PathBuf>,
) -> Result<(ConfigSource, Overrides, Config), ConfigError> {
    let source = ConfigSource::new(config.to_path_buf());
    let overrides = Overrides { data_dir };
    let cfg = overrides.apply(source.load()?);
    cfg.validate()?;
    Ok((source, overrides, cfg))
}

pub async fn run(opts: RunOptions) -> anyhow::Result<()> {
    let (source, overrides, cfg) = load_config(&opts.config, opts.data_dir)?;
    let levels = crate::logging::init(&cfg.log);
    let metrics = crate::telemetry::install_recorder();
    let data_dir = cfg.data_dir();
    let db = {
        let (d, t) = (data_dir.clone(), cfg.storage.busy_timeout.as_std());
        tokio::task::spawn_blocking(move || Db::open(&d, t)).await?
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
    let stash: Stash = Arc::default();
    live.add_applier(Arc::new(LevelApplier(levels)));
    live.add_applier(Arc::new(ThrottleApplier(verifier.clone())));
    live.add_applier(Arc::new(ListenerApplier(stash.clone())));

    let mut sup = Supervisor::new(RestartPolicy::default());
    let (querylog, log_reader, log_writer) =
        crate::dns::querylog::start(db.clone(), crate::dns::querylog_policy(&cfg.dns), 10_000);
    let dns_settings = crate::dns::Settings::from_config(&cfg.dns).map_err(|(key, e)| anyhow::anyhow!("{key}: {e}"))?;
    let dns = Arc::new(crate::dns::Dns::new(dns_settings, crate::dns::cache_policy(&cfg.dns), Some(querylog)));
    // list downloads resolve their hosts through hearth's own resolver (no glibc NSS in a static binary)
    let resolver = Arc::new(crate::dns::SelfResolver(dns.clone()));
    let updater = Arc::new(crate::dns::lists::ListUpdater::new(Some(resolver)));
    // the HTTPS front: certificates (internal CA, ACME) and the proxy's routing table
    let certs = {
        let (d, p) = (data_dir.clone(), crate::tls::NamePolicy::from_config(&cfg));
        Arc::new(tokio::task::spawn_blocking(move || crate::tls::Certs::new(&d, p)).await??)
    };
    let acme = Arc::new(crate::tls::acme::Acme::new(db.clone(), certs.clone(), &data_dir));
    let proxy = Arc::new(crate::proxy::Proxy::new(
        &cfg,
        acme.clone(),
        db.clone(),
        verifier.clone(),
        certs.root_pem().as_deref(),
    )?);
    live.add_applier(Arc::new(FrontApplier { proxy: proxy.clone(), certs: certs.clone() }));
    // memory: the vector store opens now (its own runtime), the model loads in the background
    let store = {
        let d = data_dir.join("memory");
        Arc::new(tokio::task::spawn_blocking(move || crate::memory::store::Store::open(&d)).await??)
    };
    let memory = Arc::new(crate::memory::Memory::new(live.clone(), store));
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
        dns: dns.clone(),
        querylog: log_reader.clone(),
        lists: updater.clone(),
        proxy: proxy.clone(),
        certs: certs.clone(),
        memory: memory.clone(),
    };
    let front = Arc::new(crate::proxy::Front {
        admin: http::router(state.clone()),
        proxy: proxy.clone(),
        conns: Arc::default(),
    });

    {
        let (db, live) = (db.clone(), live.clone());
        sup.spawn("storage", move |ctx| storage_task(ctx, db.clone(), live.clone()));
    }
    for kind in [Listeners::Http, Listeners::Https] {
        let (live, front, certs, stash) = (live.clone(), front.clone(), certs.clone(), stash.clone());
        sup.spawn(kind.name(), move |ctx| {
            listener_task(ctx, kind, live.clone(), front.clone(), certs.clone(), stash.clone())
        });
    }
    {
        let live = live.clone();
        sup.spawn("acme", move |ctx| acme.clone().run(ctx, live.clone()));
    }
    {
        let proxy = proxy.clone();
        sup.spawn("proxy", move |ctx| {
            let proxy = proxy.clone();
            async move {
                let n = proxy.table.load().routes.len();
                ctx.ready(format!("{n} route(s); health checks running"));
                crate::proxy::health::run(proxy, ctx.shutdown.clone()).await;
                Ok(())
            }
        });
    }
    {
        let memory = memory.clone();
        sup.spawn("memory", move |ctx| memory.clone().run(ctx));
    }
    {
        let (memory, live) = (memory.clone(), live.clone());
        sup.spawn("memory-upkeep", move |ctx| memory_upkeep(ctx, memory.clone(), live.clone()));
    }
    {
        let state = state.clone();
        sup.spawn("metrics", move |ctx| sampler_task(ctx, state.clone()));
    }
    {
        let (live, stash, reader, updater) = (live.clone(), stash.clone(), log_reader.clone(), updater.clone());
        let certs = certs.clone();
        sup.spawn("dns", move |ctx| {
            dns_task(ctx, live.clone(), dns.clone(), certs.clone(), stash.clone(), reader.clone(), updater.clone())
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
        tokio::spawn(systemd_task(health.clone(), watchdog.clone()));
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

/// Every minute: an ANN index for collections past the threshold. Every `memory.optimize_interval`: compaction,
/// index refresh and version pruning of every collection.
async fn memory_upkeep(ctx: TaskCtx, memory: Arc<crate::memory::Memory>, live: Arc<LiveConfig>) -> anyhow::Result<()> {
    ctx.ready("waiting for the first round");
    let mut last_full = std::time::Instant::now();
    loop {
        tokio::select! {
            _ = ctx.shutdown.cancelled() => return Ok(()),
            _ = tokio::time::sleep(Duration::from_secs(60)) => {}
        }
        let cfg = live.current().memory.clone();
        let full = last_full.elapsed() >= cfg.optimize_interval.as_std();
        let started = std::time::Instant::now();
        memory.store.maintain_all(&crate::memory::store::IndexPolicy::of(&cfg), full).await;
        // index builds and compaction free hundreds of MB of buffers that glibc would otherwise keep
        let _ = tokio::task::spawn_blocking(crate::util::release_free_heap).await;
        if full {
            last_full = std::time::Instant::now();
            ctx.ready(format!("last full round took {:.1}s", started.elapsed().as_secs_f64()));
        }
    }
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

/// Swaps the proxy's routing table and the certificate policy when routes, TLS or host settings change.
struct FrontApplier {
    proxy: Arc<crate::proxy::Proxy>,
    certs: Arc<crate::tls::Certs>,
}

impl Applier for FrontApplier {
    fn prepare(&self, _old: &Config, new: &Config) -> Result<(), ConfigError> {
        crate::proxy::table::RouteTable::build(&new.proxy.routes)
            .map(|_| ())
            .map_err(|(k, e)| ConfigError::invalid(k, e))
    }
    fn commit(&self, old: &Config, new: &Config) {
        if let Err((key, e)) = self.proxy.reload(new) {
            tracing::error!(key, error = %e, "proxy routes not applied");
        }
        let policy_inputs = |c: &Config| {
            (
                c.tls.clone(),
                c.proxy.clone(),
                c.server.admin_hosts.clone(),
                c.server.https_listen.clone(),
                c.dns.local_domains.clone(),
                c.dns.records.clone(),
            )
        };
        if policy_inputs(old) != policy_inputs(new) {
            let root = self.certs.root_pem();
            if let Err(e) = self.certs.set_policy(&new.data_dir(), crate::tls::NamePolicy::from_config(new)) {
                tracing::error!(error = %e, "certificate settings not applied");
            }
            // a replaced internal root: backends serving hearth's certificates are trusted under the new one
            let now = self.certs.root_pem();
            if now != root
                && let Err((key, e)) = self.proxy.set_internal_root(new, now.as_deref())
            {
                tracing::error!(key, error = %e, "proxy routes not rebuilt for the new internal root");
            }
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

/// Listeners bound while preparing a config change, waiting for their subsystem to take them.
type Stash = Arc<Mutex<HashMap<SocketAddr, std::net::TcpListener>>>;

/// Binds the addresses a change adds, so that an address that cannot be bound rejects the change.
struct ListenerApplier(Stash);

fn all_listen(c: &Config) -> Vec<(&'static str, usize, ListenAddr)> {
    let mut v = vec![];
    for (i, a) in c.server.http_listen.iter().enumerate() {
        v.push(("server.http_listen", i, *a));
    }
    for (i, a) in c.server.https_listen.iter().enumerate() {
        v.push(("server.https_listen", i, *a));
    }
    for (i, a) in c.dns.listen.iter().enumerate() {
        v.push(("dns.listen", i, *a));
    }
    for (i, a) in c.dns.tls_listen.iter().enumerate() {
        v.push(("dns.tls_listen", i, *a));
    }
    v
}

impl ListenerApplier {
    fn added(old: &Config, new: &Config) -> Vec<(&'static str, usize, ListenAddr)> {
        let before: Vec<ListenAddr> = all_listen(old).into_iter().map(|(_, _, a)| a).collect();
        all_listen(new).into_iter().filter(|(_, _, a)| !before.contains(a)).collect()
    }
}

impl Applier for ListenerApplier {
    fn prepare(&self, old: &Config, new: &Config) -> Result<(), ConfigError> {
        let mut stash = self.0.lock().unwrap_or_else(|p| p.into_inner());
        for (key, i, addr) in Self::added(old, new) {
            let l = std::net::TcpListener::bind(addr.0)
                .and_then(|l| l.set_nonblocking(true).map(|_| l))
                .map_err(|e| ConfigError::invalid(format!("{key}[{i}]"), format!("cannot listen on {addr}: {e}")))?;
            stash.insert(addr.0, l);
        }
        Ok(())
    }
    fn abort(&self, old: &Config, new: &Config) {
        let mut stash = self.0.lock().unwrap_or_else(|p| p.into_inner());
        for (_, _, addr) in Self::added(old, new) {
            stash.remove(&addr.0);
        }
    }
    fn commit(&self, _old: &Config, _new: &Config) {}
}

#[derive(Debug, Clone, Copy)]
enum Listeners {
    Http,
    Https,
}

impl Listeners {
    fn name(self) -> &'static str {
        match self {
            Listeners::Http => "http",
            Listeners::Https => "https",
        }
    }
    fn addrs(self, c: &Config) -> Vec<ListenAddr> {
        match self {
            Listeners::Http => c.server.http_listen.clone(),
            Listeners::Https => c.server.https_listen.clone(),
        }
    }
}

async fn bind(addr: SocketAddr, stash: &Stash) -> anyhow::Result<TcpListener> {
    if let Some(l) = stash.lock().unwrap_or_else(|p| p.into_inner()).remove(&addr) {
        return Ok(TcpListener::from_std(l)?);
    }
    // an address moving between our own listeners may still be held for a moment by the old accept loop
    let mut last = None;
    for _ in 0..20 {
        match TcpListener::bind(addr).await {
            Ok(l) => return Ok(l),
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
                last = Some(e);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => return Err(e).with_context(|| format!("cannot listen on {addr}")),
        }
    }
    Err(last.expect("retried")).with_context(|| format!("cannot listen on {addr}"))
}

/// Serves the admin router on one kind of listener; rebinds when its addresses change, in-flight requests on the
/// old addresses finish in the background.
async fn listener_task(
    ctx: TaskCtx,
    kind: Listeners,
    live: Arc<LiveConfig>,
    front: Arc<crate::proxy::Front>,
    certs: Arc<crate::tls::Certs>,
    stash: Stash,
) -> anyhow::Result<()> {
    let mut rx = live.subscribe();
    loop {
        let cfg = rx.borrow_and_update().clone();
        let addrs = kind.addrs(&cfg);
        let drain = cfg.server.shutdown_timeout.as_std();
        let stop = CancellationToken::new();
        let mut servers = JoinSet::new();
        if addrs.is_empty() {
            ctx.ready("disabled: no addresses configured");
        } else {
            let tls = match kind {
                Listeners::Http => None,
                Listeners::Https => Some(tokio_rustls::TlsAcceptor::from(crate::tls::server_config(
                    certs.clone(),
                    &[b"h2", b"http/1.1", crate::tls::ACME_TLS_ALPN],
                )?)),
            };
            let mut urls = vec![];
            for a in &addrs {
                let l = bind(a.0, &stash).await?;
                let scheme = if tls.is_some() { "https" } else { "http" };
                urls.push(format!("{scheme}://{}", l.local_addr()?));
                servers.spawn(http::serve(l, tls.clone(), front.clone(), stop.clone(), drain));
            }
            ctx.ready(format!("serving on {}", urls.join(", ")));
        }
        loop {
            tokio::select! {
                _ = ctx.shutdown.cancelled() => {
                    stop.cancel();
                    while servers.join_next().await.is_some() {}
                    return Ok(());
                }
                changed = rx.changed() => {
                    if changed.is_err() {
                        return Ok(());
                    }
                    if kind.addrs(&rx.borrow()) != addrs {
                        tracing::info!(subsystem = kind.name(), "listen addresses changed; rebinding");
                        ctx.starting("rebinding to new addresses");
                        stop.cancel();
                        tokio::spawn(async move { while servers.join_next().await.is_some() {} });
                        break;
                    }
                }
            }
        }
    }
}

async fn storage_task(ctx: TaskCtx, db: Db, live: Arc<LiveConfig>) -> anyhow::Result<()> {
    let ok = format!("{} (WAL)", db.path().display());
    ctx.ready(ok.clone());
    loop {
        // A failed upkeep round leaves the database usable: report degraded and try again next round.
        let now = crate::util::unix_now();
        let round = async {
            let pruned = db.call(move |c| crate::auth::prune_sessions(c, now)).await?;
            db.maintain().await?;
            Ok::<_, anyhow::Error>(pruned)
        };
        match round.await {
            Ok(pruned) => {
                tracing::debug!(expired_sessions = pruned, "storage maintenance done");
                ctx.ready(ok.clone());
            }
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "storage maintenance failed");
                ctx.degraded(format!("maintenance failed: {e:#}"));
            }
        }
        let every = live.current().storage.maintenance_interval.as_std();
        tokio::select! {
            _ = ctx.shutdown.cancelled() => return Ok(()),
            _ = tokio::time::sleep(every) => {}
        }
    }
}

/// The DNS subsystem: compiles the lists, serves UDP and TCP on `dns.listen`, follows config changes (settings
/// and cache policy swap live, lists recompile, listeners rebind).
async fn dns_task(
    ctx: TaskCtx,
    live: Arc<LiveConfig>,
    dns: Arc<crate::dns::Dns>,
    certs: Arc<crate::tls::Certs>,
    stash: Stash,
    log: crate::dns::querylog::LogReader,
    updater: Arc<crate::dns::lists::ListUpdater>,
) -> anyhow::Result<()> {
    use crate::dns::{Settings, cache::Cache, cache_policy, server};
    let mut rx = live.subscribe();
    let mut cfg = rx.borrow_and_update().clone();
    let lists_dir = cfg.data_dir().join("lists");
    let load_lists = |c: crate::config::DnsConfig| {
        let (dns, dir) = (dns.clone(), lists_dir.clone());
        async move {
            let report = tokio::task::spawn_blocking(move || dns.reload_lists(&c, &dir)).await?;
            let failed = crate::dns::failures(&report);
            for f in &failed {
                tracing::warn!(list = %f, "blocklist not loaded");
            }
            Ok::<_, anyhow::Error>(failed)
        }
    };
    // cache refreshes (prefetch) run as their own tasks, like forwarded queries
    if let Some(mut prefetches) = dns.take_prefetches() {
        let dns = dns.clone();
        tokio::spawn(async move {
            while let Some(p) = prefetches.recv().await {
                let dns = dns.clone();
                tokio::spawn(async move { dns.forward(p).await });
            }
        });
    }
    let mut failed = load_lists(cfg.dns.clone()).await?;
    dns.local.store(Arc::new(zone_for(&cfg)?));
    loop {
        let stop = CancellationToken::new();
        let mut servers = JoinSet::new();
        let mut addrs = vec![];
        for a in &cfg.dns.listen {
            let tcp = bind(a.0, &stash).await?;
            let udp = tokio::net::UdpSocket::bind(a.0).await.with_context(|| format!("cannot listen on {a} (UDP)"))?;
            addrs.push(udp.local_addr()?.to_string());
            servers.spawn(server::serve_udp(udp, dns.clone(), stop.clone()));
            servers.spawn(server::serve_tcp(tcp, None, dns.clone(), stop.clone()));
        }
        if !cfg.dns.tls_listen.is_empty() {
            let acceptor = tokio_rustls::TlsAcceptor::from(crate::tls::server_config(certs.clone(), &[b"dot"])?);
            for a in &cfg.dns.tls_listen {
                let tcp = bind(a.0, &stash).await?;
                addrs.push(format!("{} (DoT)", tcp.local_addr()?));
                servers.spawn(server::serve_tcp(tcp, Some(acceptor.clone()), dns.clone(), stop.clone()));
            }
        }
        let report = |failed: &[String]| {
            if addrs.is_empty() {
                ctx.ready("disabled: no addresses configured");
            } else if failed.is_empty() {
                ctx.ready(format!("serving on {} (UDP+TCP)", addrs.join(", ")));
            } else {
                ctx.degraded(format!("serving on {}; lists not loaded: {}", addrs.join(", "), failed.join("; ")));
            }
        };
        report(&failed);
        // URL lists: checked right away (the cached copies already serve), then every minute for due ones
        let mut downloads = tokio::time::interval(Duration::from_secs(60));
        loop {
            tokio::select! {
                _ = ctx.shutdown.cancelled() => {
                    stop.cancel();
                    while servers.join_next().await.is_some() {}
                    return Ok(());
                }
                _ = downloads.tick() => {
                    if updater.update(&cfg.dns.lists, &lists_dir, false).await {
                        failed = load_lists(cfg.dns.clone()).await?;
                    } else {
                        // an update through the API may have recompiled meanwhile
                        failed = dns.list_failures();
                    }
                    report(&failed);
                }
                changed = rx.changed() => {
                    if changed.is_err() {
                        return Ok(());
                    }
                    let new = rx.borrow_and_update().clone();
                    if new.dns == cfg.dns && new.proxy == cfg.proxy && new.server.https_listen == cfg.server.https_listen {
                        continue;
                    }
                    let settings = Settings::from_config(&new.dns).map_err(|(key, e)| anyhow::anyhow!("{key}: {e}"))?;
                    dns.settings.store(Arc::new(settings));
                    log.set_policy(crate::dns::querylog_policy(&new.dns));
                    if new.dns.records != cfg.dns.records
                        || new.dns.local_domains != cfg.dns.local_domains
                        || new.proxy != cfg.proxy
                        || new.server.https_listen != cfg.server.https_listen
                    {
                        dns.local.store(Arc::new(zone_for(&new)?));
                    }
                    if (new.dns.rate_limit, new.dns.rate_limit_burst) != (cfg.dns.rate_limit, cfg.dns.rate_limit_burst) {
                        *dns.limiter.lock().unwrap_or_else(|p| p.into_inner()) =
                            crate::ratelimit::RateLimiter::new(new.dns.rate_limit, new.dns.rate_limit_burst);
                    }
                    if new.dns.cache != cfg.dns.cache {
                        *dns.cache.lock().unwrap_or_else(|p| p.into_inner()) = Cache::new(cache_policy(&new.dns));
                    }
                    if new.dns.lists != cfg.dns.lists {
                        updater.update(&new.dns.lists, &lists_dir, false).await;
                        failed = load_lists(new.dns.clone()).await?;
                    }
                    let rebind = new.dns.listen != cfg.dns.listen || new.dns.tls_listen != cfg.dns.tls_listen;
                    cfg = new;
                    if rebind {
                        stop.cancel();
                        while servers.join_next().await.is_some() {}
                        break;
                    }
                    report(&failed);
                }
            }
        }
    }
}

/// The local DNS zone: configured records plus proxy routes on local names (pointing at hearth).
fn zone_for(cfg: &Config) -> anyhow::Result<crate::dns::local::LocalZone> {
    let extra = crate::proxy::local_records(cfg, crate::proxy::advertised_address(cfg));
    crate::dns::local_zone_with(&cfg.dns, &extra).map_err(|(k, e)| anyhow::anyhow!("{k}: {e}"))
}

pub const SAMPLE_EVERY: Duration = Duration::from_secs(5);

async fn sampler_task(ctx: TaskCtx, state: AppState) -> anyhow::Result<()> {
    ctx.ready(format!("sampling every {}s", SAMPLE_EVERY.as_secs()));
    let mut tick = tokio::time::interval(SAMPLE_EVERY);
    loop {
        tokio::select! {
            _ = ctx.shutdown.cancelled() => return Ok(()),
            _ = tick.tick() => {}
        }
        let p = tokio::task::spawn_blocking(ProcessStats::read).await?;
        let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_millis() as i64;
        state.series.lock().unwrap_or_else(|p| p.into_inner()).push(
            now_ms,
            p.rss_bytes,
            p.cpu_seconds,
            state.requests.get(),
        );
        if let Some(h) = &state.metrics {
            h.run_upkeep();
        }
    }
}

/// Half the watchdog period, as sd_watchdog_enabled(3) defines it: `WATCHDOG_USEC` set, and `WATCHDOG_PID` either
/// absent or ours. (The sd-notify crate also demands `WATCHDOG_PID`; libsystemd does not.)
fn watchdog_interval(usec: Option<&str>, pid: Option<&str>, me: u32) -> Option<Duration> {
    let usec: u64 = usec?.trim().parse().ok().filter(|u| *u > 0)?;
    if let Some(p) = pid
        && p.trim().parse::<u32>().ok() != Some(me)
    {
        return None;
    }
    Some(Duration::from_micros(usec / 2))
}

/// systemd: READY once every subsystem serves, STATUS on changes, WATCHDOG pings only while nothing has failed.
async fn systemd_task(health: crate::supervisor::Health, stop: CancellationToken) {
    use sd_notify::NotifyState;
    let watchdog = watchdog_interval(
        std::env::var("WATCHDOG_USEC").ok().as_deref(),
        std::env::var("WATCHDOG_PID").ok().as_deref(),
        std::process::id(),
    );
    let mut ready_sent = false;
    let mut last_status = String::new();
    let tick = watchdog.unwrap_or(Duration::from_secs(5)).min(Duration::from_secs(5));
    loop {
        let snap = health.snapshot();
        let status: Vec<String> = snap.iter().map(|(n, s)| format!("{n}: {}", s.state.as_str())).collect();
        let status = status.join(", ");
        if !ready_sent && health.is_ready() {
            let _ = sd_notify::notify(false, &[NotifyState::Ready, NotifyState::Status(&status)]);
            ready_sent = true;
            last_status = status.clone();
        } else if status != last_status {
            let _ = sd_notify::notify(false, &[NotifyState::Status(&status)]);
            last_status = status;
        }
        if watchdog.is_some() && ready_sent && !health.any_failed() {
            let _ = sd_notify::notify(false, &[NotifyState::Watchdog]);
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(tick) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watchdog_follows_libsystemd_rules() {
        assert_eq!(watchdog_interval(Some("2000000"), None, 7), Some(Duration::from_secs(1)));
        assert_eq!(watchdog_interval(Some("2000000"), Some("7"), 7), Some(Duration::from_secs(1)));
        assert_eq!(watchdog_interval(Some("2000000"), Some("8"), 7), None, "meant for another process");
        assert_eq!(watchdog_interval(None, None, 7), None);
        assert_eq!(watchdog_interval(Some("0"), None, 7), None);
        assert_eq!(watchdog_interval(Some("x"), None, 7), None);
    }
}
