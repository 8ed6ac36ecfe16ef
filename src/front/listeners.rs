//! The HTTP and HTTPS listeners: [`ListenerApplier`] reserves every address a config change adds (TCP for
//! `server.*_listen` and `dns.tls_listen`, TCP and UDP for `dns.listen`) while the change is prepared — an address
//! that cannot be bound rejects the change before the file is written — and swaps the connection limits on commit;
//! [`task`] serves one kind of listener and follows its addresses, starting the reserved sockets of new ones and
//! stopping removed ones (in-flight requests on those finish in the background), leaving the others untouched.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::Front;
use crate::config::live::{Applier, LiveConfig};
use crate::config::{Config, ConfigError, ListenAddr};
use crate::net::Reserved;
use crate::supervisor::TaskCtx;

/// Every TCP address of the config, with the key that names it.
fn tcp_addresses(c: &Config) -> Vec<(&'static str, usize, ListenAddr)> {
    let mut v = vec![];
    let keyed = [
        ("server.http_listen", &c.server.http_listen),
        ("server.https_listen", &c.server.https_listen),
        ("dns.listen", &c.dns.listen),
        ("dns.tls_listen", &c.dns.tls_listen),
    ];
    for (key, list) in keyed {
        v.extend(list.iter().enumerate().map(|(i, a)| (key, i, *a)));
    }
    v
}

/// Reserves the addresses a change adds and swaps the connection limits.
pub(crate) struct ListenerApplier {
    pub reserved: Arc<Reserved>,
    pub front: Arc<Front>,
}

impl ListenerApplier {
    /// Addresses in `new` that no listener of `old` holds: (key, TCP address, also UDP).
    fn added(old: &Config, new: &Config) -> Vec<(String, SocketAddr, bool)> {
        let before: Vec<ListenAddr> = tcp_addresses(old).into_iter().map(|(_, _, a)| a).collect();
        let mut v: Vec<(String, SocketAddr, bool)> = tcp_addresses(new)
            .into_iter()
            .filter(|(_, _, a)| !before.contains(a))
            .map(|(key, i, a)| (format!("{key}[{i}]"), a.0, key == "dns.listen"))
            .collect();
        // DNS over UDP: an address that `dns.listen` gains needs its UDP socket even if TCP was ours already
        for (i, a) in new.dns.listen.iter().enumerate() {
            if !old.dns.listen.contains(a) && !v.iter().any(|(_, s, _)| *s == a.0) {
                v.push((format!("dns.listen[{i}]"), a.0, true));
            }
        }
        v
    }
}

impl Applier for ListenerApplier {
    fn prepare(&self, old: &Config, new: &Config) -> Result<(), ConfigError> {
        let before_tcp: Vec<ListenAddr> = tcp_addresses(old).into_iter().map(|(_, _, a)| a).collect();
        for (key, addr, udp) in Self::added(old, new) {
            if !before_tcp.iter().any(|a| a.0 == addr) {
                self.reserved
                    .reserve_tcp(addr)
                    .map_err(|e| ConfigError::invalid(key.clone(), format!("cannot listen on {addr}: {e}")))?;
            }
            if udp {
                self.reserved
                    .reserve_udp(addr)
                    .map_err(|e| ConfigError::invalid(key, format!("cannot listen on {addr} (UDP): {e}")))?;
            }
        }
        Ok(())
    }

    fn abort(&self, old: &Config, new: &Config) {
        for (_, addr, _) in Self::added(old, new) {
            self.reserved.release(addr);
        }
    }

    fn commit(&self, _old: &Config, new: &Config) {
        self.front.limits.store(Arc::new(super::conn::ConnLimits::from_config(&new.server)));
    }
}

#[derive(Debug, Clone, Copy)]
pub(crate) enum Kind {
    Http,
    Https,
}

impl Kind {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Kind::Http => "http",
            Kind::Https => "https",
        }
    }

    fn addrs(self, c: &Config) -> Vec<SocketAddr> {
        let list = match self {
            Kind::Http => &c.server.http_listen,
            Kind::Https => &c.server.https_listen,
        };
        list.iter().map(|a| a.0).collect()
    }
}

/// One running accept loop.
struct Serving {
    stop: CancellationToken,
    done: tokio::task::JoinHandle<()>,
    shown: String,
}

/// Serves the front on one kind of listener and follows its addresses.
pub(crate) async fn task(
    ctx: TaskCtx,
    kind: Kind,
    live: Arc<LiveConfig>,
    front: Arc<Front>,
    certs: Arc<crate::tls::Certs>,
    reserved: Arc<Reserved>,
) -> anyhow::Result<()> {
    let tls = match kind {
        Kind::Http => None,
        Kind::Https => Some(tokio_rustls::TlsAcceptor::from(crate::tls::server_config(
            certs,
            &[b"h2", b"http/1.1", crate::tls::ACME_TLS_ALPN],
        )?)),
    };
    let mut rx = live.subscribe();
    let mut serving: HashMap<SocketAddr, Serving> = HashMap::new();
    let mut first = true;
    loop {
        let cfg = rx.borrow_and_update().clone();
        let want = kind.addrs(&cfg);
        let drain = cfg.server.shutdown_timeout.as_std();
        for gone in serving.keys().filter(|a| !want.contains(a)).copied().collect::<Vec<_>>() {
            if let Some(s) = serving.remove(&gone) {
                tracing::info!(subsystem = kind.name(), addr = %gone, "no longer listening");
                // in-flight requests finish in the background (within the drain deadline)
                s.stop.cancel();
            }
        }
        let new: Vec<SocketAddr> = want.iter().filter(|a| !serving.contains_key(a)).copied().collect();
        for addr in &new {
            let l = match reserved.tcp(*addr).await {
                Ok(l) => l,
                Err(e) if first => return Err(anyhow::anyhow!("cannot listen on {addr}: {e}")),
                Err(e) => {
                    // after start, only an address moving between hearth's own listeners gets here (every new one was
                    // reserved when the change was prepared): report it, keep serving the others
                    tracing::error!(subsystem = kind.name(), addr = %addr, error = %e, "cannot listen");
                    ctx.degraded(format!("cannot listen on {addr}: {e}"));
                    continue;
                }
            };
            let scheme = if tls.is_some() { "https" } else { "http" };
            let shown = format!("{scheme}://{}", l.local_addr().unwrap_or(*addr));
            let stop = CancellationToken::new();
            let done = tokio::spawn(super::serve(l, tls.clone(), front.clone(), stop.clone(), drain));
            serving.insert(*addr, Serving { stop, done, shown });
        }
        first = false;
        if serving.is_empty() {
            ctx.ready("disabled: no addresses configured");
        } else if serving.len() == want.len() {
            let mut urls: Vec<&str> = serving.values().map(|s| s.shown.as_str()).collect();
            urls.sort();
            ctx.ready(format!("serving on {}", urls.join(", ")));
        }
        tokio::select! {
            _ = ctx.shutdown.cancelled() => break,
            changed = rx.changed() => if changed.is_err() { break },
        }
    }
    for s in serving.values() {
        s.stop.cancel();
    }
    for (_, s) in serving {
        let _ = s.done.await;
    }
    Ok(())
}
