//! The compiled routing state and how a config change swaps it: [`Route`] (one route's pool, backend clients and
//! middleware state), [`Table`] (all routes plus what the front door needs), built by [`Proxy::prepare`] (through
//! [`ProxyApplier`]) and swapped in by [`Proxy::commit`]; and the admin's front door ([`Proxy::admin_door`]) for
//! requests no route claims.
//!
//! Invariants: a table is immutable once built and is swapped whole; an unchanged route keeps its `Arc<Route>`
//! (pool, connections, health), a changed one inherits its backends' health; a request holds its route until it
//! ends. The admin answers only its own names (never a host routes claim: 404), only `server.admin_allow` clients,
//! and over HTTPS except from loopback; `/healthz`, `/readyz`, `/dns-query` and `/metrics` pass for any name and
//! client (their handlers check).

use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::body::Body;
use axum::http::{HeaderName, HeaderValue, Request, StatusCode, header};
use hyper::body::Incoming;

use super::pool::{Pool, Strategy, UpstreamAddr};
use super::send::{HttpsClient, client_for, trust_store};
use super::table::{self, RouteTable};
use super::{Dispatch, Proxy, canonical, mw, text};
use crate::config::{Config, ProxyRoute};
use crate::net::{Cidr, ConnInfo};
use crate::ratelimit::RateLimiter;
use crate::util::Locked;

/// One compiled route: its config, backends and middleware state. Shared by in-flight requests.
pub(crate) struct Route {
    pub cfg: ProxyRoute,
    /// A label for logs and metrics: the first host and the path prefix.
    pub name: String,
    pub pool: Arc<Pool>,
    /// One client per backend (same order as `pool.upstreams`), each with its own connection pool.
    pub(super) clients: Vec<HttpsClient>,
    pub(super) allow: Vec<Cidr>,
    pub(super) deny: Vec<Cidr>,
    pub(super) basic: Vec<(String, String)>,
    /// Basic-auth headers already verified (argon2 is too slow to run on every request), with their expiry.
    pub(super) basic_ok: Mutex<std::collections::HashMap<String, Instant>>,
    pub(super) limiter: Option<Mutex<RateLimiter>>,
    pub(super) headers: Vec<(HeaderName, Option<HeaderValue>)>,
    pub(super) metrics: Arc<RouteMetrics>,
}

/// Metric handles of one route, registered once (a labelled lookup per request costs more than the proxying).
pub(crate) struct RouteMetrics {
    name: String,
    pub(super) duration: metrics::Histogram,
    by_status: Mutex<Vec<(u16, metrics::Counter)>>,
}

impl RouteMetrics {
    fn new(name: &str) -> RouteMetrics {
        RouteMetrics {
            name: name.to_string(),
            duration: metrics::histogram!("hearth_proxy_request_duration_seconds", "route" => name.to_string()),
            by_status: Mutex::default(),
        }
    }

    pub(super) fn requests(&self, status: u16) -> metrics::Counter {
        let mut m = self.by_status.locked();
        if let Some((_, c)) = m.iter().find(|(s, _)| *s == status) {
            return c.clone();
        }
        let c = metrics::counter!("hearth_proxy_requests_total", "route" => self.name.clone(), "status" => status.to_string());
        m.push((status, c.clone()));
        c
    }
}

impl Route {
    fn build(cfg: &ProxyRoute, roots: &rustls::RootCertStore) -> Route {
        let addrs: Vec<UpstreamAddr> = cfg.upstreams.iter().filter_map(|u| UpstreamAddr::parse(u).ok()).collect();
        let strategy = Strategy::parse(&cfg.strategy).unwrap_or(Strategy::RoundRobin);
        let clients = addrs.iter().map(|a| client_for(cfg, a, roots)).collect();
        let pool = Arc::new(Pool::new(addrs, strategy, cfg.max_fails, cfg.fail_timeout.as_std()));
        let headers = cfg
            .headers
            .iter()
            .filter_map(|(k, v)| {
                let name = HeaderName::try_from(k.as_str()).ok()?;
                let value = if v.is_empty() { None } else { Some(HeaderValue::try_from(v.as_str()).ok()?) };
                Some((name, value))
            })
            .collect();
        let burst = if cfg.rate_limit_burst == 0 { cfg.rate_limit.saturating_mul(2) } else { cfg.rate_limit_burst };
        let name = format!("{}{}", cfg.hosts.first().map(String::as_str).unwrap_or(""), cfg.path_prefix);
        Route {
            metrics: Arc::new(RouteMetrics::new(&name)),
            name,
            pool,
            clients,
            allow: cfg.allow.iter().filter_map(|c| Cidr::parse(c).ok()).collect(),
            deny: cfg.deny.iter().filter_map(|c| Cidr::parse(c).ok()).collect(),
            basic: cfg.basic_auth.iter().filter_map(|b| mw::parse_basic_user(b).ok()).collect(),
            basic_ok: Mutex::default(),
            limiter: (cfg.rate_limit > 0).then(|| Mutex::new(RateLimiter::new(cfg.rate_limit, burst))),
            headers,
            cfg: cfg.clone(),
        }
    }
}

/// The immutable routing state: swapped as a whole on every config change.
pub(crate) struct Table {
    pub lookup: RouteTable,
    pub routes: Vec<Arc<Route>>,
    /// The port of the first HTTPS listener, for redirects (None: 443).
    pub(super) https_port: Option<u16>,
    pub(super) session_ttl: i64,
    has_https: bool,
    admin: AdminGate,
    /// `proxy.trusted_proxies`: clients whose forwarding headers are passed on.
    pub(super) trusted: Vec<Cidr>,
}

/// Who reaches the admin UI/API: by Host (`server.admin_hosts`, `localhost`, `<hostname>.local`, the IP address the
/// client connected to) and by client address (`server.admin_allow`).
struct AdminGate {
    hosts: Vec<String>,
    allow: Vec<Cidr>,
    local_name: Option<String>,
}

impl AdminGate {
    fn host_ok(&self, host: &str, conn: &ConnInfo) -> bool {
        if host == "localhost" || self.hosts.iter().any(|h| h == host) || self.local_name.as_deref() == Some(host) {
            return true;
        }
        match host.parse::<IpAddr>() {
            Ok(ip) => {
                let (ip, local) = (canonical(ip), canonical(conn.local.ip()));
                ip == local || (ip.is_loopback() && local.is_loopback())
            }
            Err(_) => false,
        }
    }

    fn client_ok(&self, ip: IpAddr) -> bool {
        self.allow.iter().any(|c| c.contains(ip))
    }
}

/// What the front door does with a request no route claims (pure: `Table::admin_door`).
#[derive(Debug, PartialEq, Eq)]
enum AdminDoor {
    /// Into the admin router; `client_ok`: the client is in `server.admin_allow`.
    Open {
        client_ok: bool,
    },
    Refuse(StatusCode, &'static str),
    /// Plain HTTP from a non-loopback client: to this HTTPS URL.
    Redirect(String),
}

impl Table {
    /// The front door of the admin router for a request no route claims: `path_q` is its normalised path and
    /// query. Public paths pass for any name and client (their handlers check); other paths need an admin name
    /// that no route claims, an `admin_allow` client, and HTTPS unless the client is loopback.
    fn admin_door(&self, host: Option<&str>, path_q: &str, conn: &ConnInfo) -> AdminDoor {
        let path = path_q.split('?').next().unwrap_or(path_q);
        let client = canonical(conn.peer.ip());
        let client_ok = self.admin.client_ok(client);
        if public_path(path) {
            return AdminDoor::Open { client_ok };
        }
        let Some(host) = host else {
            return AdminDoor::Refuse(StatusCode::MISDIRECTED_REQUEST, "421 Misdirected Request: no Host");
        };
        if self.lookup.has_host(host) {
            return AdminDoor::Refuse(StatusCode::NOT_FOUND, "404 Not Found");
        }
        if !self.admin.host_ok(host, conn) {
            return AdminDoor::Refuse(
                StatusCode::MISDIRECTED_REQUEST,
                "421 Misdirected Request: this name is not served here (server.admin_hosts)",
            );
        }
        if !client_ok {
            return AdminDoor::Refuse(StatusCode::FORBIDDEN, "403 Forbidden: the admin UI is not open to your address");
        }
        if !conn.tls && !client.is_loopback() && self.has_https && !plain_http_ok(path) {
            let host = if host.contains(':') { format!("[{host}]") } else { host.to_string() };
            let port = self.https_port.map(|p| format!(":{p}")).unwrap_or_default();
            return AdminDoor::Redirect(format!("https://{host}{port}{path_q}"));
        }
        AdminDoor::Open { client_ok }
    }
}

/// Paths of the admin router that answer whatever the Host and client: liveness, DNS over HTTPS (its own
/// `dns.allow_clients` applies) and `/metrics` (the handler asks a non-admin client for a `metrics` token).
fn public_path(path: &str) -> bool {
    matches!(path, "/healthz" | "/readyz" | "/dns-query" | "/metrics")
}

/// Plain-HTTP paths not moved to HTTPS: liveness, and the root certificate a device needs before HTTPS can work.
fn plain_http_ok(path: &str) -> bool {
    matches!(path, "/healthz" | "/readyz" | "/ca.crt" | "/dns-query" | "/metrics")
}

/// `<hostname>.local`, the name mDNS gives this machine.
fn mdns_name() -> Option<String> {
    let h = crate::util::host_name();
    let h = h.trim_end_matches(".local");
    (!h.is_empty() && h != "localhost").then(|| format!("{h}.local"))
}

impl Table {
    /// Compile `cfg`'s routes; routes whose config did not change keep their pools (health, connections).
    /// `fresh`: build every route anew (new trust roots), only inheriting backend health.
    pub(crate) fn build(
        cfg: &Config,
        old: Option<&Table>,
        roots: &rustls::RootCertStore,
        fresh: bool,
    ) -> Result<Table, (String, String)> {
        let lookup = RouteTable::build(&cfg.proxy.routes)?;
        let routes = cfg
            .proxy
            .routes
            .iter()
            .map(|r| {
                if let Some(same) = old.filter(|_| !fresh).and_then(|o| o.routes.iter().find(|o| o.cfg == *r)) {
                    return same.clone();
                }
                let new = Route::build(r, roots);
                // a changed route keeps what was learnt about backends it shares with its old version
                if let Some(prev) = old.and_then(|o| {
                    o.routes.iter().find(|o| o.cfg.hosts == r.hosts && o.cfg.path_prefix == r.path_prefix)
                }) {
                    new.pool.inherit(&prev.pool);
                }
                Arc::new(new)
            })
            .collect();
        let https_port = cfg.server.https_listen.first().map(|a| a.0.port()).filter(|p| *p != 443);
        let cidrs = |l: &[String]| l.iter().filter_map(|c| Cidr::parse(c).ok()).collect::<Vec<_>>();
        let admin = AdminGate {
            hosts: cfg.server.admin_hosts.iter().filter_map(|h| table::normalize_host(h).ok()).collect(),
            allow: cidrs(&cfg.server.admin_allow),
            local_name: mdns_name(),
        };
        Ok(Table {
            lookup,
            routes,
            https_port,
            session_ttl: cfg.auth.session_ttl.as_std().as_secs() as i64,
            admin,
            trusted: cidrs(&cfg.proxy.trusted_proxies),
            has_https: !cfg.server.https_listen.is_empty(),
        })
    }
}

/// The routing state a config change built, waiting for [`Proxy::commit`].
pub(crate) struct Prepared {
    table: Table,
    roots: Option<(rustls::RootCertStore, Option<String>)>,
}

/// The proxy's part in a config change: `prepare` builds the new table (after the certificates' applier, whose
/// pending root it trusts), `commit` swaps it in.
pub(crate) struct ProxyApplier {
    pub proxy: Arc<Proxy>,
    pub certs: Arc<crate::tls::applier::CertsApplier>,
    pub prepared: Mutex<Option<Prepared>>,
}

impl crate::config::live::Applier for ProxyApplier {
    fn prepare(&self, _old: &Config, new: &Config) -> Result<(), crate::config::ConfigError> {
        let p = self
            .proxy
            .prepare(new, self.certs.next_root_pem().as_deref())
            .map_err(|(k, e)| crate::config::ConfigError::invalid(k, e))?;
        *self.prepared.locked() = Some(p);
        Ok(())
    }
    fn abort(&self, _old: &Config, _new: &Config) {
        self.prepared.locked().take();
    }
    fn commit(&self, _old: &Config, _new: &Config) {
        if let Some(p) = self.prepared.locked().take() {
            self.proxy.commit(p);
        }
    }
}

impl Proxy {
    /// Build the routing state of a new config, trusting backends under `root_pem` (hearth's internal root after
    /// the change): the table, each route's pool (keeping what was learnt about unchanged backends) and clients.
    pub(crate) fn prepare(&self, cfg: &Config, root_pem: Option<&str>) -> Result<Prepared, (String, String)> {
        Self::check(cfg)?;
        let old = self.table.load_full();
        if self.root_pem.locked().as_deref() == root_pem {
            let table = Table::build(cfg, Some(&old), &self.roots.load(), false)?;
            return Ok(Prepared { table, roots: None });
        }
        // a replaced internal root: every route gets new clients
        let roots = trust_store(root_pem);
        let table = Table::build(cfg, Some(&old), &roots, true)?;
        Ok(Prepared { table, roots: Some((roots, root_pem.map(str::to_string))) })
    }

    /// Swap in what [`Proxy::prepare`] built. Cannot fail.
    pub(crate) fn commit(&self, p: Prepared) {
        if let Some((roots, pem)) = p.roots {
            self.roots.store(Arc::new(roots));
            *self.root_pem.locked() = pem;
        }
        self.table.store(Arc::new(p.table));
    }

    /// `hearth check-config` and start-up: everything [`Proxy::prepare`] would refuse.
    pub(crate) fn check(cfg: &Config) -> Result<(), (String, String)> {
        table::RouteTable::check(&cfg.proxy.routes)
    }

    /// The admin router, for a request no route claims: only for the admin's names and from `server.admin_allow`
    /// clients (both checks defeat DNS rebinding and keep the admin off the internet), over HTTPS except from
    /// loopback; never on a host that routes claim (a route's origin must not share the admin's cookies).
    pub(super) fn admin_door(
        &self,
        mut req: Request<Incoming>,
        conn: ConnInfo,
        host: Option<&str>,
        table: &Table,
    ) -> Dispatch {
        let pq = req.uri().path_and_query().map(|p| p.as_str()).unwrap_or("/");
        let client_ok = match table.admin_door(host, pq, &conn) {
            AdminDoor::Open { client_ok } => client_ok,
            AdminDoor::Refuse(status, why) => return Dispatch::Done(text(status, why)),
            AdminDoor::Redirect(location) => {
                let mut r = text(StatusCode::PERMANENT_REDIRECT, "308: the admin UI is served over HTTPS");
                if let Ok(v) = HeaderValue::try_from(location) {
                    r.headers_mut().insert(header::LOCATION, v);
                }
                return Dispatch::Done(r);
            }
        };
        req.extensions_mut().insert(conn);
        req.extensions_mut().insert(crate::net::AdminClient(client_ok));
        Dispatch::Admin(req.map(Body::new))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_admin_door() {
        let mut cfg = Config::default();
        cfg.server.admin_hosts = vec!["hearth.home.arpa".into()];
        cfg.server.https_listen = vec!["0.0.0.0:8443".parse().unwrap()];
        cfg.proxy.routes = vec![ProxyRoute {
            hosts: vec!["app.home.arpa".into()],
            path_prefix: "/app".into(),
            upstreams: vec!["http://127.0.0.1:1".into()],
            ..Default::default()
        }];
        let t = Table::build(&cfg, None, &trust_store(None), false).unwrap();
        let conn = |peer: &str, local: &str, tls: bool| ConnInfo {
            peer: peer.parse().unwrap(),
            local: local.parse().unwrap(),
            tls,
        };
        let lan = conn("192.168.1.20:5000", "192.168.1.5:80", false);
        let lan_tls = conn("192.168.1.20:5000", "192.168.1.5:8443", true);
        let wan = conn("203.0.113.7:5000", "192.168.1.5:8443", true);
        let lo = conn("127.0.0.1:5000", "127.0.0.1:80", false);
        let open = AdminDoor::Open { client_ok: true };
        // names: admin hosts, the address connected to, localhost; not another address, not a rebinding name
        assert_eq!(t.admin_door(Some("hearth.home.arpa"), "/", &lan_tls), open);
        assert_eq!(t.admin_door(Some("192.168.1.5"), "/api/v1/setup", &lan_tls), open);
        assert_eq!(t.admin_door(Some("localhost"), "/", &lo), open);
        assert!(matches!(t.admin_door(Some("192.168.1.6"), "/", &lan_tls), AdminDoor::Refuse(s, _) if s == 421));
        assert!(matches!(t.admin_door(Some("evil.example"), "/", &lan_tls), AdminDoor::Refuse(s, _) if s == 421));
        assert!(matches!(t.admin_door(None, "/", &lan_tls), AdminDoor::Refuse(s, _) if s == 421));
        // a route's host never serves the admin, even where its routes leave paths unclaimed
        assert!(
            matches!(t.admin_door(Some("app.home.arpa"), "/api/v1/config", &lan_tls), AdminDoor::Refuse(s, _) if s == 404)
        );
        // clients outside admin_allow
        assert!(matches!(t.admin_door(Some("hearth.home.arpa"), "/", &wan), AdminDoor::Refuse(s, _) if s == 403));
        assert_eq!(t.admin_door(Some("evil.example"), "/healthz", &wan), AdminDoor::Open { client_ok: false });
        assert_eq!(t.admin_door(Some("hearth.home.arpa"), "/metrics", &wan), AdminDoor::Open { client_ok: false });
        // plain HTTP from the LAN goes to HTTPS (not from loopback; not the root certificate nor liveness)
        assert_eq!(
            t.admin_door(Some("hearth.home.arpa"), "/api/v1/setup?x=1", &lan),
            AdminDoor::Redirect("https://hearth.home.arpa:8443/api/v1/setup?x=1".into())
        );
        assert_eq!(t.admin_door(Some("hearth.home.arpa"), "/ca.crt", &lan), open);
        assert_eq!(t.admin_door(Some("hearth.home.arpa"), "/healthz", &lan), open);
        assert_eq!(t.admin_door(Some("127.0.0.1"), "/", &lo), open);
        // IPv4-mapped clients and IPv6 literals
        let v6 = conn("[::ffff:192.168.1.20]:5000", "[fd00::5]:8443", true);
        assert_eq!(t.admin_door(Some("fd00::5"), "/", &v6), open);
    }
}
