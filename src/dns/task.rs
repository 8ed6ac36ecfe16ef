//! The DNS subsystem's part in a config change and its task (IO shell).
//!
//! [`DnsApplier`]: `prepare` compiles everything a change needs — the `[dns]` settings (upstream clients, DNSSEC
//! trust anchors, root hints, groups, exemptions), the local zone (records plus what the wiring adds, e.g. proxy
//! routes on local names), the cache and rate-limit policies — once, and may fail with the key named; `commit`
//! swaps the prepared values into [`Dns`] and cannot fail. The listener sockets of new `dns.listen` (UDP and TCP)
//! and `dns.tls_listen` addresses are reserved by the front door's applier in the same transaction.
//!
//! [`run`]: serves the reserved sockets, stops removed addresses, recompiles and downloads the lists. List
//! problems make the subsystem degraded, never the change fail: the previous lists keep serving.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::{Dns, Settings, cache_policy, querylog};
use crate::config::live::{Applier, LiveConfig};
use crate::config::{Config, ConfigError};
use crate::net::Reserved;
use crate::supervisor::TaskCtx;
use crate::util::Locked;

/// Local records the wiring adds to the configured ones: (name, type, value, ttl).
pub(crate) type ExtraRecords = Arc<dyn Fn(&Config) -> Vec<(String, String, String, u32)> + Send + Sync>;

pub(crate) use super::Prepared;

/// Build what `new` needs that `old` (None: nothing runs yet) does not have. Errors name the key.
pub(crate) fn compile(old: Option<&Config>, new: &Config, extra: &ExtraRecords) -> Result<Prepared, ConfigError> {
    let d = &new.dns;
    let changed = |f: &dyn Fn(&Config) -> bool| old.is_none_or(f);
    let mut p = Prepared::default();
    if changed(&|o| o.dns != new.dns) {
        if d.lists.len() > super::blocklist::MAX_LISTS {
            return Err(ConfigError::invalid("dns.lists", "too many lists"));
        }
        p.settings = Some(Settings::from_config(d).map_err(|(key, reason)| ConfigError::invalid(key, reason))?);
    }
    // the extra records depend on the rest of the config (routes, listeners): compare what they come to
    let records = extra(new);
    if changed(&|o| o.dns.records != d.records || o.dns.local_domains != d.local_domains || extra(o) != records) {
        p.zone = Some(super::local_zone_with(d, &records).map_err(|(key, e)| ConfigError::invalid(key, e))?);
    }
    if changed(&|o| o.dns.cache != d.cache) {
        p.cache = Some(cache_policy(d));
    }
    if changed(&|o| (o.dns.rate_limit, o.dns.rate_limit_burst) != (d.rate_limit, d.rate_limit_burst)) {
        p.rate_limit = Some((d.rate_limit, d.rate_limit_burst));
    }
    Ok(p)
}

/// `hearth check-config` and start-up: everything [`DnsApplier::prepare`] would refuse.
pub(crate) fn check(cfg: &Config, extra: &ExtraRecords) -> Result<(), ConfigError> {
    compile(None, cfg, extra).map(|_| ())
}

pub(crate) struct DnsApplier {
    dns: Arc<Dns>,
    log: querylog::LogReader,
    extra: ExtraRecords,
    prepared: std::sync::Mutex<Option<Prepared>>,
    compiled: AtomicU64,
}

impl DnsApplier {
    pub(crate) fn new(dns: Arc<Dns>, log: querylog::LogReader, extra: ExtraRecords) -> DnsApplier {
        DnsApplier { dns, log, extra, prepared: Default::default(), compiled: AtomicU64::new(0) }
    }

    #[cfg(test)]
    /// How many times a change compiled the `[dns]` settings (once per change that touches them).
    pub(crate) fn compilations(&self) -> u64 {
        self.compiled.load(Ordering::Relaxed)
    }
}

impl Applier for DnsApplier {
    fn prepare(&self, old: &Config, new: &Config) -> Result<(), ConfigError> {
        let p = compile(Some(old), new, &self.extra)?;
        if p.settings.is_some() {
            self.compiled.fetch_add(1, Ordering::Relaxed);
        }
        *self.prepared.locked() = Some(p);
        Ok(())
    }

    fn abort(&self, _old: &Config, _new: &Config) {
        self.prepared.locked().take();
    }

    fn commit(&self, _old: &Config, new: &Config) {
        if let Some(p) = self.prepared.locked().take() {
            self.dns.apply(p);
        }
        self.log.set_policy(super::querylog_policy(&new.dns));
    }
}

/// One running listener (UDP + TCP, or DoT).
struct Serving {
    stop: CancellationToken,
    shown: String,
}

/// The DNS task: serves `dns.listen` (UDP + TCP) and `dns.tls_listen`, follows their changes, and keeps the lists
/// compiled and downloaded.
pub(crate) async fn run(
    ctx: TaskCtx,
    live: Arc<LiveConfig>,
    dns: Arc<Dns>,
    certs: Arc<crate::tls::Certs>,
    reserved: Arc<Reserved>,
    updater: Arc<super::lists::ListUpdater>,
) -> anyhow::Result<()> {
    let mut rx = live.subscribe();
    let mut cfg = rx.borrow_and_update().clone();
    let lists_dir = cfg.data_dir().join("lists");
    let load_lists = |c: crate::config::DnsConfig| {
        let (dns, dir) = (dns.clone(), lists_dir.clone());
        async move {
            let report = tokio::task::spawn_blocking(move || dns.reload_lists(&c, &dir)).await?;
            let failed = super::failures(&report);
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
    let dot = tokio_rustls::TlsAcceptor::from(crate::tls::server_config(certs, &[b"dot"])?);
    let mut failed = load_lists(cfg.dns.clone()).await?;
    let mut serving: HashMap<(SocketAddr, bool), Serving> = HashMap::new();
    let mut first = true;
    // URL lists: checked right away (the cached copies already serve), then every minute for due ones
    let mut downloads = tokio::time::interval(Duration::from_secs(60));
    loop {
        // the listeners: (address, DoT)
        let want: Vec<(SocketAddr, bool)> =
            cfg.dns.listen.iter().map(|a| (a.0, false)).chain(cfg.dns.tls_listen.iter().map(|a| (a.0, true))).collect();
        for gone in serving.keys().filter(|k| !want.contains(k)).copied().collect::<Vec<_>>() {
            if let Some(s) = serving.remove(&gone) {
                tracing::info!(addr = %gone.0, "DNS no longer listening");
                s.stop.cancel();
            }
        }
        let mut trouble = vec![];
        let new: Vec<(SocketAddr, bool)> = want.iter().copied().filter(|k| !serving.contains_key(k)).collect();
        for key @ (addr, tls) in new {
            let stop = CancellationToken::new();
            let started: std::io::Result<String> = async {
                let tcp = reserved.tcp(addr).await?;
                let shown = tcp.local_addr()?;
                if tls {
                    tokio::spawn(super::server::serve_tcp(tcp, Some(dot.clone()), dns.clone(), stop.clone()));
                    return Ok(format!("{shown} (DoT)"));
                }
                let udp = match reserved.udp(addr).await {
                    Ok(u) => u,
                    Err(e) => return Err(std::io::Error::new(e.kind(), format!("{e} (UDP)"))),
                };
                tokio::spawn(super::server::serve_udp(udp, dns.clone(), stop.clone()));
                tokio::spawn(super::server::serve_tcp(tcp, None, dns.clone(), stop.clone()));
                Ok(format!("{shown} (UDP+TCP)"))
            }
            .await;
            match started {
                Ok(shown) => {
                    serving.insert(key, Serving { stop, shown });
                }
                Err(e) if first => return Err(anyhow::anyhow!("cannot listen on {addr}: {e}")),
                // after start only an address moving between hearth's own listeners gets here (every new one
                // was reserved when the change was prepared)
                Err(e) => trouble.push(format!("cannot listen on {addr}: {e}")),
            }
        }
        first = false;
        let report = |failed: &[String]| {
            let mut shown: Vec<&str> = serving.values().map(|s| s.shown.as_str()).collect();
            shown.sort();
            let problems: Vec<String> = trouble
                .iter()
                .cloned()
                .chain((!failed.is_empty()).then(|| format!("lists not loaded: {}", failed.join("; "))))
                .collect();
            if shown.is_empty() && problems.is_empty() {
                ctx.ready("disabled: no addresses configured");
            } else if problems.is_empty() {
                ctx.ready(format!("serving on {}", shown.join(", ")));
            } else {
                ctx.degraded(format!("serving on {}; {}", shown.join(", "), problems.join("; ")));
            }
        };
        report(&failed);
        loop {
            tokio::select! {
                _ = ctx.shutdown.cancelled() => {
                    for s in serving.values() {
                        s.stop.cancel();
                    }
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
                    // settings, zone and policies were swapped by the applier; the lists and listeners are ours
                    if new.dns.lists != cfg.dns.lists {
                        updater.update(&new.dns.lists, &lists_dir, false).await;
                        failed = load_lists(new.dns.clone()).await?;
                    }
                    let rebind = new.dns.listen != cfg.dns.listen || new.dns.tls_listen != cfg.dns.tls_listen;
                    cfg = new;
                    if rebind {
                        break;
                    }
                    report(&failed);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn none() -> ExtraRecords {
        Arc::new(|_| vec![])
    }

    #[test]
    fn only_what_changed_is_rebuilt() {
        let mut old = Config::default();
        old.dns.dnssec = false;
        let mut new = old.clone();
        new.proxy.address = "192.168.1.2".into();
        let p = compile(Some(&old), &new, &none()).unwrap();
        assert!(p.settings.is_none() && p.zone.is_none() && p.cache.is_none() && p.rate_limit.is_none());
        new.dns.rate_limit = 7;
        let p = compile(Some(&old), &new, &none()).unwrap();
        assert!(p.settings.is_some() && p.rate_limit == Some((7, new.dns.rate_limit_burst)));
        assert!(p.zone.is_none() && p.cache.is_none());
        // routes on local names change the zone without a [dns] change
        let extra: ExtraRecords = Arc::new(|c: &Config| {
            c.proxy
                .address
                .is_empty()
                .then(Vec::new)
                .unwrap_or_else(|| vec![("app.home.arpa".into(), "A".into(), c.proxy.address.clone(), 60)])
        });
        let p = compile(Some(&old), &Config { dns: old.dns.clone(), ..new.clone() }, &extra).unwrap();
        assert!(p.zone.is_some() && p.settings.is_none());
    }

    /// A config change compiles the `[dns]` settings once (in prepare; before, validation, the applier and the
    /// task each compiled them), and a change the DNS applier refuses leaves the running settings and the file.
    #[tokio::test]
    async fn a_change_compiles_the_settings_once() {
        use crate::config::live::{LiveConfig, Overrides};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hearth.toml");
        std::fs::write(&path, "[dns]\ndnssec = false\nlisten = []\n").unwrap();
        let source = crate::config::ConfigSource::new(path.clone());
        let cfg = source.load().unwrap();
        let live = LiveConfig::new(source, Overrides::default(), cfg.clone());
        let db = crate::storage::Db::open_in_memory(&[("dns", querylog::MIGRATIONS)]).unwrap();
        let (_, reader, _) = querylog::start(db, super::super::querylog_policy(&cfg.dns), 10);
        let settings = Settings::from_config(&cfg.dns).unwrap();
        let dns = Arc::new(Dns::new(settings, cache_policy(&cfg.dns), None));
        let applier = Arc::new(DnsApplier::new(dns.clone(), reader, none()));
        live.add_applier(applier.clone());
        live.patch(&serde_json::json!({"dns": {"rate_limit": 11}})).await.unwrap();
        assert_eq!(applier.compilations(), 1);
        assert_eq!(dns.settings().rate_limit.0, 11);
        // a change outside [dns] compiles nothing
        live.patch(&serde_json::json!({"log": {"level": "debug"}})).await.unwrap();
        assert_eq!(applier.compilations(), 1);
        // refused in prepare (the upstream cannot be compiled): nothing runs, nothing is written
        let before = std::fs::read_to_string(&path).unwrap();
        let e = live.patch(&serde_json::json!({"dns": {"upstreams": ["tls://"]}})).await.unwrap_err();
        assert_eq!(e.key(), Some("dns.upstreams[0]"));
        assert_eq!(std::fs::read_to_string(&path).unwrap(), before);
        assert_eq!(dns.settings().rate_limit.0, 11);
        assert_eq!(live.current().dns.upstreams, cfg.dns.upstreams);
    }

    #[test]
    fn a_bad_setting_names_its_key() {
        let mut c = Config::default();
        c.dns.upstreams = vec!["tls://".into()];
        let e = check(&c, &none()).expect_err("refused");
        assert_eq!(e.key(), Some("dns.upstreams[0]"));
    }
}
