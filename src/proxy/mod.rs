//! The reverse proxy (IO shell): every request on the HTTP(S) listeners enters [`Proxy::dispatch`] (called by
//! `crate::front`), which answers ACME HTTP-01 challenges, sends requests for route hosts through the proxy, and
//! hands everything else (requests by IP, `server.admin_hosts`, unknown names) back as [`Dispatch::Admin`] once the
//! admin's front door admits it.
//!
//! A proxied request passes these stages, in order (see [`Proxy::forward`]):
//! 1. route lookup (host + path prefix; [`table::RouteTable`]), and on plain HTTP a 308 to HTTPS unless the
//!    route has `tls = "none"`;
//! 2. client address allow/deny; 3. rate limit (token bucket per client IP, `X-RateLimit-*` headers, health
//!    paths exempt); 4. basic auth or forward auth (hearth's own login at `/.hearth/login` on the route's host);
//! 5. body-size limit; 6. pick a backend ([`pool::Pool`]) and send with hop-by-hop headers removed and
//!    `X-Forwarded-*`/`Forwarded` set, retrying idempotent body-less requests on connect failures; 7. response
//!    headers (HSTS and security headers unless overridden, the route's own headers) and the access log line.
//!
//! Bodies stream both ways (never buffered); `Upgrade` requests (WebSocket) are spliced after the backend's 101.
//! Invariant: the table is an immutable value swapped atomically; a request holds its route (and so its pool and
//! client) until it ends, so in-flight requests and open WebSockets keep their backend across reloads.

pub mod health;
pub mod mw;
pub mod path;
pub mod pool;
pub mod table;

use crate::util::Locked;
use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use axum::body::Body;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode, Uri, Version, header};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tracing::Instrument;

use crate::auth::login::LoginError;
use crate::config::{Config, ProxyRoute, RouteTls};
use crate::net::Cidr;
use crate::net::ConnInfo;
use crate::ratelimit::RateLimiter;
use crate::storage::Db;
use pool::{Pool, Strategy, UpstreamAddr};
use table::{RouteTable, request_host};

type HttpsConnector = hyper_rustls::HttpsConnector<HttpConnector>;
type HttpsClient = Client<Dial, Body>;

/// A connector that always dials one backend, whatever authority the request URI names. Requests then carry
/// the client's host as their authority — HTTP/2's `:authority` or HTTP/1's `Host` — while the connection (and
/// TLS server name) is the backend's, as RFC 9113 §8.3.1 asks of an intermediary.
#[derive(Clone)]
pub struct Dial {
    inner: HttpsConnector,
    target: Uri,
}

impl tower::Service<Uri> for Dial {
    type Response = <HttpsConnector as tower::Service<Uri>>::Response;
    type Error = <HttpsConnector as tower::Service<Uri>>::Error;
    type Future = <HttpsConnector as tower::Service<Uri>>::Future;

    fn poll_ready(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, _: Uri) -> Self::Future {
        self.inner.call(self.target.clone())
    }
}

/// One compiled route: its config, backends and middleware state. Shared by in-flight requests.
pub struct Route {
    pub cfg: ProxyRoute,
    /// A label for logs and metrics: the first host and the path prefix.
    pub name: String,
    pub pool: Arc<Pool>,
    /// One client per backend (same order as `pool.upstreams`), each with its own connection pool.
    clients: Vec<HttpsClient>,
    allow: Vec<Cidr>,
    deny: Vec<Cidr>,
    basic: Vec<(String, String)>,
    /// Basic-auth headers already verified (argon2 is too slow to run on every request), with their expiry.
    basic_ok: Mutex<std::collections::HashMap<String, Instant>>,
    limiter: Option<Mutex<RateLimiter>>,
    headers: Vec<(HeaderName, Option<HeaderValue>)>,
    metrics: Arc<RouteMetrics>,
}

/// Metric handles of one route, registered once (a labelled lookup per request costs more than the proxying).
pub struct RouteMetrics {
    name: String,
    duration: metrics::Histogram,
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

    fn requests(&self, status: u16) -> metrics::Counter {
        let mut m = self.by_status.locked();
        if let Some((_, c)) = m.iter().find(|(s, _)| *s == status) {
            return c.clone();
        }
        let c = metrics::counter!("hearth_proxy_requests_total", "route" => self.name.clone(), "status" => status.to_string());
        m.push((status, c.clone()));
        c
    }
}

fn client_for(r: &ProxyRoute, addr: &UpstreamAddr, roots: &rustls::RootCertStore) -> HttpsClient {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(r.connect_timeout.as_std()));
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("ring supports the default versions")
        .with_root_certificates(roots.clone())
        .with_no_client_auth();
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_all_versions()
        .wrap_connector(http);
    let target = format!("{}://{}", addr.scheme, addr.authority).parse().expect("validated upstream authority");
    let connector = Dial { inner: connector, target };
    let mut b = Client::builder(TokioExecutor::new());
    b.pool_idle_timeout(Duration::from_secs(60)).pool_max_idle_per_host(64);
    if addr.h2c {
        b.http2_only(true);
    }
    b.build(connector)
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
pub struct Table {
    pub lookup: RouteTable,
    pub routes: Vec<Arc<Route>>,
    /// The port of the first HTTPS listener, for redirects (None: 443).
    https_port: Option<u16>,
    session_ttl: i64,
    has_https: bool,
    admin: AdminGate,
    /// `proxy.trusted_proxies`: clients whose forwarding headers are passed on.
    trusted: Vec<Cidr>,
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

/// `<hostname>.local`, the name mDNS gives this machine.
fn mdns_name() -> Option<String> {
    let h = crate::util::host_name();
    let h = h.trim_end_matches(".local");
    (!h.is_empty() && h != "localhost").then(|| format!("{h}.local"))
}

impl Table {
    /// Compile `cfg`'s routes; routes whose config did not change keep their pools (health, connections).
    /// `fresh`: build every route anew (new trust roots), only inheriting backend health.
    pub fn build(
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
pub struct Prepared {
    table: Table,
    roots: Option<(rustls::RootCertStore, Option<String>)>,
}

/// The proxy's part in a config change: `prepare` builds the new table (after the certificates' applier, whose
/// pending root it trusts), `commit` swaps it in.
pub struct ProxyApplier {
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

pub struct Proxy {
    pub table: ArcSwap<Table>,
    pub acme: Arc<crate::tls::acme::Acme>,
    db: Db,
    /// Password checks (basic auth, the forward-auth form) share the admin login's throttle and argon2 bound.
    verifier: Arc<crate::auth::verifier::Verifier>,
    /// Trusted by backend connections: webpki roots plus hearth's internal root (swapped when that is replaced).
    roots: ArcSwap<rustls::RootCertStore>,
    /// The internal root in `roots`.
    root_pem: Mutex<Option<String>>,
    /// The most recent proxied requests, for the UI's access log (the full log goes through `tracing`).
    access: Mutex<std::collections::VecDeque<AccessEntry>>,
}

const ACCESS_KEPT: usize = 1000;

/// One line of the access log.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct AccessEntry {
    pub ts_ms: i64,
    pub request_id: String,
    pub route: String,
    pub client: String,
    pub method: String,
    pub host: String,
    pub path: String,
    pub status: u16,
    pub upstream: String,
    pub latency_ms: f64,
}

impl Proxy {
    /// Newest first, optionally only one route's, at most `limit`.
    pub fn access_log(&self, route: Option<&str>, limit: usize) -> Vec<AccessEntry> {
        let log = self.access.locked();
        log.iter().rev().filter(|e| route.is_none_or(|r| e.route == r)).take(limit).cloned().collect()
    }

    fn remember(&self, e: AccessEntry) {
        let mut log = self.access.locked();
        if log.len() >= ACCESS_KEPT {
            log.pop_front();
        }
        log.push_back(e);
    }
}

const HOP_BY_HOP: [HeaderName; 9] = [
    header::CONNECTION,
    header::PROXY_AUTHORIZATION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

fn strip_hop_by_hop(h: &mut HeaderMap) {
    let named: Vec<HeaderName> = h
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::try_from(n.trim()).ok())
        .collect();
    for n in HOP_BY_HOP.iter().chain(named.iter()) {
        h.remove(n);
    }
}

/// Forwarding and identity headers a client may not set for the backend (unless it is a trusted proxy; the
/// identity headers only hearth sets, on forward-auth routes).
const CLIENT_FORWARDING: [&str; 6] =
    ["x-forwarded-for", "x-forwarded-proto", "x-forwarded-host", "x-forwarded-prefix", "forwarded", "x-real-ip"];
const IDENTITY: [&str; 2] = ["remote-user", "x-forwarded-user"];

/// Remove hearth's own cookies (admin and forward-auth sessions) from the `Cookie` headers going to a backend.
fn strip_hearth_cookies(h: &mut HeaderMap) {
    let kept: Vec<String> = h
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .map(str::trim)
        .filter(|kv| !kv.is_empty())
        .filter(|kv| !crate::auth::cookie::is_hearth_cookie(kv.split_once('=').map(|(k, _)| k).unwrap_or(kv).trim()))
        .map(str::to_string)
        .collect();
    h.remove(header::COOKIE);
    if !kept.is_empty()
        && let Ok(v) = HeaderValue::try_from(kept.join("; "))
    {
        h.insert(header::COOKIE, v);
    }
}

/// A `Host` value fit to quote in `Forwarded` (RFC 7239: a quoted-string; only host syntax is let through).
fn forwarded_host(h: &str) -> Option<&str> {
    (!h.is_empty() && h.bytes().all(|b| b.is_ascii_alphanumeric() || b".-:[]_".contains(&b))).then_some(h)
}

/// A same-origin path to go to after login: `/…`, not `//…` (another host), no `\` (browsers read it as `/`),
/// no scheme, no control characters.
fn safe_next(next: &str) -> Option<&str> {
    let ok = next.starts_with('/')
        && !next.starts_with("//")
        && !next.contains('\\')
        && !next.bytes().any(|b| b.is_ascii_control())
        && !next.split(['?', '#']).next().unwrap_or("").contains(':');
    ok.then_some(next)
}

/// webpki's roots plus the PEM certificates given (hearth's internal root).
fn trust_store(extra: Option<&str>) -> rustls::RootCertStore {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(pem) = extra {
        use rustls::pki_types::pem::PemObject;
        for c in rustls::pki_types::CertificateDer::pem_slice_iter(pem.as_bytes()).flatten() {
            let _ = roots.add(c);
        }
    }
    roots
}

pub use crate::net::canonical;

fn text(status: StatusCode, msg: impl Into<String>) -> Response<Body> {
    let mut r = Response::new(Body::from(msg.into() + "\n"));
    *r.status_mut() = status;
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

fn is_health_path(route: &ProxyRoute, path: &str) -> bool {
    (!route.health_path.is_empty() && path == route.health_path)
        || matches!(path, "/healthz" | "/readyz" | "/health" | "/livez" | "/ping")
}

/// The `Upgrade` to pass on: only `websocket` (an `h2c` or other upgrade is dropped with the hop-by-hop headers).
fn upgrade_of(h: &HeaderMap) -> Option<HeaderValue> {
    let wants = h
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case("upgrade")));
    let up = h.get(header::UPGRADE)?;
    (wants && up.to_str().is_ok_and(|u| u.trim().eq_ignore_ascii_case("websocket"))).then(|| up.clone())
}

impl Proxy {
    pub fn new(
        cfg: &Config,
        acme: Arc<crate::tls::acme::Acme>,
        db: Db,
        verifier: Arc<crate::auth::verifier::Verifier>,
        extra_roots: Option<&str>,
    ) -> anyhow::Result<Proxy> {
        let roots = trust_store(extra_roots);
        let table = Table::build(cfg, None, &roots, false).map_err(|(k, e)| anyhow::anyhow!("{k}: {e}"))?;
        Ok(Proxy {
            table: ArcSwap::from_pointee(table),
            acme,
            db,
            verifier,
            roots: ArcSwap::from_pointee(roots),
            root_pem: Mutex::new(extra_roots.map(str::to_string)),
            access: Mutex::default(),
        })
    }

    /// Build the routing state of a new config, trusting backends under `root_pem` (hearth's internal root after
    /// the change): the table, each route's pool (keeping what was learnt about unchanged backends) and clients.
    pub fn prepare(&self, cfg: &Config, root_pem: Option<&str>) -> Result<Prepared, (String, String)> {
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
    pub fn commit(&self, p: Prepared) {
        if let Some((roots, pem)) = p.roots {
            self.roots.store(Arc::new(roots));
            *self.root_pem.locked() = pem;
        }
        self.table.store(Arc::new(p.table));
    }

    /// `hearth check-config` and start-up: everything [`Proxy::prepare`] would refuse.
    pub fn check(cfg: &Config) -> Result<(), (String, String)> {
        table::RouteTable::check(&cfg.proxy.routes)
    }

    /// Test one backend URL right now (the UI's "test upstream" button): a GET of `path`.
    pub async fn probe(&self, url: &str, path: &str) -> Result<(u16, f64), String> {
        let addr = UpstreamAddr::parse(url)?;
        let route = ProxyRoute {
            upstreams: vec![url.to_string()],
            connect_timeout: crate::config::Duration::from_secs(5),
            ..Default::default()
        };
        let client = client_for(&route, &addr, &self.roots.load());
        health::probe(&client, &addr, path, Duration::from_secs(5)).await
    }

    async fn forward(
        &self,
        route: Arc<Route>,
        req: Request<Incoming>,
        conn: ConnInfo,
        rid: &str,
    ) -> (Response<Body>, String) {
        let client_ip = canonical(conn.peer.ip());
        let cfg = &route.cfg;
        let path = req.uri().path().to_string();
        // 2. address filter
        if !mw::ip_allowed(client_ip, &route.allow, &route.deny) {
            return (text(StatusCode::FORBIDDEN, "403 Forbidden: your address may not use this site"), String::new());
        }
        // 3. rate limit
        let mut limit_headers = None;
        if let Some(l) = &route.limiter
            && !is_health_path(cfg, &path)
        {
            let d = l.locked().take(client_ip, Instant::now());
            if !d.allowed {
                let mut r = text(StatusCode::TOO_MANY_REQUESTS, "429 Too Many Requests: slow down");
                set_limit_headers(r.headers_mut(), &d);
                r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(d.retry_after.max(1)));
                return (r, String::new());
            }
            limit_headers = Some(d);
        }
        // 4. authentication
        if !route.basic.is_empty()
            && let Some(denied) = self.check_basic(&route, req.headers(), client_ip).await
        {
            return (denied, String::new());
        }
        let mut user = None;
        if cfg.forward_auth {
            match self.check_session(&route, &req, conn).await {
                Ok(u) => user = Some(u),
                Err(denied) => return (denied, String::new()),
            }
        }
        // 5. body size
        let declared = req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        if cfg.max_body_bytes > 0 && declared.is_some_and(|n| n > cfg.max_body_bytes) {
            return (
                text(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("413: the body is larger than {} bytes", cfg.max_body_bytes),
                ),
                String::new(),
            );
        }
        // 6. backend
        let (resp, upstream) = self.send(&route, req, conn, client_ip, user.as_deref(), rid).await;
        let mut resp = resp;
        // 7. response headers
        let h = resp.headers_mut();
        if let Some(d) = limit_headers {
            set_limit_headers(h, &d);
        }
        if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
            let h = resp.headers_mut();
            if conn.tls && cfg.hsts {
                h.entry(header::STRICT_TRANSPORT_SECURITY).or_insert(HeaderValue::from_static("max-age=31536000"));
            }
            h.entry(header::X_CONTENT_TYPE_OPTIONS).or_insert(HeaderValue::from_static("nosniff"));
            h.entry(header::REFERRER_POLICY).or_insert(HeaderValue::from_static("strict-origin-when-cross-origin"));
            h.entry(header::X_FRAME_OPTIONS).or_insert(HeaderValue::from_static("SAMEORIGIN"));
            for (k, v) in &route.headers {
                match v {
                    Some(v) => {
                        h.insert(k.clone(), v.clone());
                    }
                    None => {
                        h.remove(k);
                    }
                }
            }
        }
        (resp, upstream)
    }

    /// Basic auth: anything but a well-formed `Basic` credential of a listed user with the right password gets 401
    /// + `WWW-Authenticate` (no header, another scheme, bad base64, no colon, non-UTF-8, empty user, wrong password).
    async fn check_basic(&self, route: &Route, headers: &HeaderMap, client: IpAddr) -> Option<Response<Body>> {
        let deny = || {
            let mut r = text(StatusCode::UNAUTHORIZED, "401 Unauthorized");
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"hearth\", charset=\"UTF-8\""),
            );
            Some(r)
        };
        let Some(raw) = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) else {
            return deny();
        };
        let Some((user, pw)) = mw::basic_credentials(raw).filter(|(u, _)| !u.is_empty()) else {
            return deny();
        };
        let key = crate::util::sha256_hex(raw);
        let now = Instant::now();
        if route.basic_ok.locked().get(&key).is_some_and(|t| *t > now) {
            return None;
        }
        let hash = route.basic.iter().find(|(u, _)| *u == user).map(|(_, h)| h.clone());
        match self.verify(client, &user, pw, hash).await {
            Ok(true) => {}
            Ok(false) => {
                tracing::warn!(user = crate::auth::log_name(&user), client = %client, route = %route.name, "basic auth failed");
                return deny();
            }
            Err(retry) => return Some(throttled(retry)),
        }
        let mut cache = route.basic_ok.locked();
        if cache.len() > 1000 {
            cache.retain(|_, t| *t > now);
        }
        cache.insert(key, now + Duration::from_secs(300));
        None
    }

    /// A password check through the shared login throttle and the bound on concurrent argon2 hashes; `hash` None
    /// (unknown user) costs the same work. Err: throttled, retry after that many seconds.
    async fn verify(&self, client: IpAddr, user: &str, pw: String, hash: Option<String>) -> Result<bool, u64> {
        self.verifier.verify(client, user, pw, hash, std::time::Instant::now()).await.map_err(|t| t.retry_after_secs)
    }

    /// A forward-auth route's session: Ok(user name), or the answer to send (302 to the login form, 403).
    async fn check_session(
        &self,
        route: &Route,
        req: &Request<Incoming>,
        conn: ConnInfo,
    ) -> Result<String, Response<Body>> {
        let login = || {
            let next = req.uri().path_and_query().map(|p| p.as_str()).unwrap_or("/");
            let loc = format!("/.hearth/login?next={}", urlencode(next));
            let mut r = text(StatusCode::FOUND, "302: please log in");
            r.headers_mut().insert(
                header::LOCATION,
                HeaderValue::try_from(loc).unwrap_or(HeaderValue::from_static("/.hearth/login")),
            );
            r
        };
        let Some(id) = crate::auth::cookie::cookie(req.headers(), crate::auth::cookie::forward_cookie_name(conn.tls))
        else {
            return Err(login());
        };
        let now = crate::util::unix_now();
        let found = self.db.call(move |c| crate::auth::lookup_session(c, &id, now)).await.ok().flatten();
        let Some(s) = found.filter(|s| s.kind == crate::auth::SessionKind::Forward) else {
            return Err(login());
        };
        if !route.cfg.forward_auth_users.is_empty() && !route.cfg.forward_auth_users.contains(&s.user.username) {
            return Err(text(
                StatusCode::FORBIDDEN,
                format!("403 Forbidden: {} may not use this site", s.user.username),
            ));
        }
        Ok(s.user.username)
    }

    /// hearth's own login form on a forward-auth route's host: the session cookie then belongs to that host.
    async fn login_page(
        &self,
        route: &Route,
        req: Request<Incoming>,
        conn: ConnInfo,
        client: IpAddr,
    ) -> Response<Body> {
        let next = req
            .uri()
            .query()
            .and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("next=")))
            .map(urldecode)
            .filter(|n| safe_next(n).is_some())
            .unwrap_or_else(|| "/".into());
        let form = |msg: &str| {
            let html = format!(
                "<!doctype html><meta charset=utf-8><meta name=viewport content='width=device-width'><title>Log in · hearth</title>\
                 <style>body{{font:16px system-ui;display:grid;place-items:center;min-height:90vh}}form{{display:grid;gap:.6em;width:18em}}\
                 .e{{color:#b00}}</style><form method=post action='/.hearth/login?next={}'><h1>{}</h1><p>Log in with your hearth account.</p>\
                 <p class=e>{}</p><label>User <input name=username autocomplete=username required></label>\
                 <label>Password <input name=password type=password autocomplete=current-password required></label><button>Log in</button></form>",
                urlencode(&next),
                html_escape(&route.name),
                html_escape(msg)
            );
            let mut r = Response::new(Body::from(html));
            r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
            r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            r.headers_mut().insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
            r
        };
        if req.uri().path() != "/.hearth/login" {
            return text(StatusCode::NOT_FOUND, "404 Not Found");
        }
        if req.method() == Method::GET {
            return form("");
        }
        if req.method() != Method::POST {
            return text(StatusCode::METHOD_NOT_ALLOWED, "405 Method Not Allowed");
        }
        let agent: String = req
            .headers()
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.chars().take(256).collect())
            .unwrap_or_default();
        let body = match http_body_util::Limited::new(req.into_body(), 8192).collect().await {
            Ok(b) => b.to_bytes(),
            Err(_) => return text(StatusCode::PAYLOAD_TOO_LARGE, "413: the form is too large"),
        };
        let fields: std::collections::HashMap<String, String> = String::from_utf8_lossy(&body)
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (urldecode(k), urldecode(v)))
            .collect();
        let (user, pw) =
            (fields.get("username").cloned().unwrap_or_default(), fields.get("password").cloned().unwrap_or_default());
        let ttl = self.table.load().session_ttl;
        let attempt = crate::auth::login::Attempt {
            username: user,
            password: pw,
            client,
            user_agent: agent,
            ttl_secs: ttl,
            kind: crate::auth::SessionKind::Forward,
        };
        let session = match crate::auth::login::login(&self.db, &self.verifier, attempt).await {
            Ok((_, session)) => session,
            Err(LoginError::Throttled { retry_after_secs }) => {
                let mut r = form(&format!("Too many failed logins: try again in {retry_after_secs} s."));
                *r.status_mut() = StatusCode::TOO_MANY_REQUESTS;
                r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
                return r;
            }
            Err(LoginError::Invalid) => {
                let mut r = form("Wrong user name or password.");
                *r.status_mut() = StatusCode::UNAUTHORIZED;
                return r;
            }
            Err(LoginError::Auth(e)) => {
                tracing::error!(error = %e, "could not check a login");
                return text(StatusCode::INTERNAL_SERVER_ERROR, "500: could not create a session");
            }
        };
        let cookie = crate::auth::cookie::set_forward_cookie(&session.id, ttl, &conn);
        let mut r = text(StatusCode::SEE_OTHER, "303: logged in");
        r.headers_mut().insert(header::LOCATION, HeaderValue::try_from(next).unwrap_or(HeaderValue::from_static("/")));
        if let Ok(v) = HeaderValue::try_from(cookie) {
            r.headers_mut().insert(header::SET_COOKIE, v);
        }
        r
    }

    /// Stage 6: pick a backend and exchange; returns the response and the backend's URL.
    async fn send(
        &self,
        route: &Arc<Route>,
        req: Request<Incoming>,
        conn: ConnInfo,
        client_ip: IpAddr,
        user: Option<&str>,
        rid: &str,
    ) -> (Response<Body>, String) {
        let cfg = &route.cfg;
        let trusted = self.table.load().trusted.iter().any(|c| c.contains(client_ip));
        let (mut parts, body) = req.into_parts();
        let upgrade = upgrade_of(&parts.headers);
        let client_upgrade = upgrade.as_ref().map(|_| {
            // a bodiless request carrying the original extensions, where hyper keeps the pending upgrade
            let mut r = Request::new(());
            *r.extensions_mut() = std::mem::take(&mut parts.extensions);
            hyper::upgrade::on(&mut r)
        });
        let original_host = parts
            .headers
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
            .or_else(|| parts.uri.authority().map(|a| a.to_string()))
            .unwrap_or_default();
        let mut headers = std::mem::take(&mut parts.headers);
        strip_hop_by_hop(&mut headers);
        strip_hearth_cookies(&mut headers);
        // what a client says about forwarding or identity reaches the backend only from a trusted proxy;
        // identity headers only hearth sets (below, for forward-auth users)
        let prior_for = if trusted {
            headers.get("x-forwarded-for").and_then(|v| v.to_str().ok()).map(str::to_string)
        } else {
            for h in CLIENT_FORWARDING {
                headers.remove(h);
            }
            None
        };
        if !trusted || user.is_some() {
            for h in IDENTITY {
                headers.remove(h);
            }
        }
        if let Some(u) = user.and_then(|u| HeaderValue::try_from(u).ok()) {
            headers.insert(HeaderName::from_static("remote-user"), u.clone());
            headers.insert(HeaderName::from_static("x-forwarded-user"), u);
        }
        if let Some(u) = &upgrade {
            headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
            headers.insert(header::UPGRADE, u.clone());
        }
        let proto = if conn.tls { "https" } else { "http" };
        let for_ = match client_ip {
            IpAddr::V6(v6) => format!("\"[{v6}]\""),
            v4 => v4.to_string(),
        };
        let xff = match prior_for {
            Some(p) if !p.trim().is_empty() => format!("{p}, {client_ip}"),
            _ => client_ip.to_string(),
        };
        if let Ok(v) = HeaderValue::try_from(xff) {
            headers.insert(HeaderName::from_static("x-forwarded-for"), v);
        }
        if !(trusted && headers.contains_key("x-forwarded-proto")) {
            headers.insert(
                HeaderName::from_static("x-forwarded-proto"),
                HeaderValue::from_static(if conn.tls { "https" } else { "http" }),
            );
        }
        if !(trusted && headers.contains_key("x-forwarded-host"))
            && let Ok(v) = HeaderValue::try_from(original_host.as_str())
        {
            headers.insert(HeaderName::from_static("x-forwarded-host"), v);
        }
        // The client's host travels as the request URI's authority: hyper sends it as `Host` over HTTP/1 and
        // as `:authority` over HTTP/2 (where a second, `Host`, header is an error to nginx and others).
        headers.remove(header::HOST);
        let authority = original_host.parse::<axum::http::uri::Authority>().ok();
        let mut fwd = format!("for={for_}");
        if let Some(h) = forwarded_host(&original_host) {
            fwd.push_str(&format!(";host=\"{h}\""));
        }
        fwd.push_str(&format!(";proto={proto}"));
        let fwd = match headers.get(header::FORWARDED).and_then(|v| v.to_str().ok()).filter(|_| trusted) {
            Some(prior) => format!("{prior}, {fwd}"),
            None => fwd,
        };
        if let Ok(v) = HeaderValue::try_from(fwd) {
            headers.insert(header::FORWARDED, v);
        }
        if let Ok(v) = HeaderValue::try_from(rid) {
            headers.insert(HeaderName::from_static("x-request-id"), v);
        }
        // the path was normalised by `Front::handle` before the route was looked up
        let path = parts.uri.path();
        let path = if cfg.strip_prefix && cfg.path_prefix != "/" {
            path::strip_prefix(path, &cfg.path_prefix)
        } else {
            path.to_string()
        };
        let path_q = match parts.uri.query() {
            Some(q) => format!("{path}?{q}"),
            None => path,
        };
        let replayable =
            matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS | Method::DELETE | Method::PUT)
                && hyper::body::Body::is_end_stream(&body);
        let mut body = Some(body);
        let mut tried = vec![];
        let attempts = if replayable { cfg.retries as usize + 1 } else { 1 };
        let mut last_error = String::from("no backend is available");
        let mut last_upstream = String::new();
        for _ in 0..attempts.min(route.pool.upstreams.len().max(1)) {
            let Some(i) = route.pool.pick(client_ip, Instant::now(), &tried) else { break };
            tried.push(i);
            let u = &route.pool.upstreams[i];
            last_upstream = u.addr.to_string();
            let host = authority.as_ref().map(|a| a.as_str()).unwrap_or(&u.addr.authority);
            let uri: Uri = match format!("{}://{}{}{}", u.addr.scheme, host, u.addr.base_path, path_q).parse() {
                Ok(u) => u,
                Err(e) => return (text(StatusCode::BAD_REQUEST, format!("400: bad request path: {e}")), last_upstream),
            };
            let b = match body.take() {
                Some(b) => Body::new(b),
                None => Body::empty(), // a retry: only body-less requests are retried
            };
            let b = if cfg.max_body_bytes > 0 {
                Body::new(http_body_util::Limited::new(b, cfg.max_body_bytes as usize))
            } else {
                b
            };
            let mut out = Request::new(b);
            *out.method_mut() = parts.method.clone();
            *out.uri_mut() = uri;
            *out.headers_mut() = headers.clone();
            *out.version_mut() = if u.addr.h2c { Version::HTTP_2 } else { Version::HTTP_11 };
            u.active.fetch_add(1, Ordering::Relaxed);
            u.requests.fetch_add(1, Ordering::Relaxed);
            let guard = ActiveGuard(route.clone(), i);
            let started = Instant::now();
            let result = tokio::time::timeout(cfg.timeout.as_std(), route.clients[i].request(out)).await;
            match result {
                Ok(Ok(mut resp)) => {
                    route.pool.success(i, started.elapsed());
                    if resp.status() == StatusCode::SWITCHING_PROTOCOLS
                        && let Some(client_up) = client_upgrade
                    {
                        let upstream_up = hyper::upgrade::on(&mut resp);
                        tokio::spawn(
                            async move {
                                let _guard = guard;
                                match tokio::try_join!(client_up, upstream_up) {
                                    Ok((a, b)) => {
                                        let mut a = hyper_util::rt::TokioIo::new(a);
                                        let mut b = hyper_util::rt::TokioIo::new(b);
                                        let _ = tokio::io::copy_bidirectional(&mut a, &mut b).await;
                                    }
                                    Err(e) => tracing::debug!(error = %e, "upgrade failed"),
                                }
                            }
                            .in_current_span(),
                        );
                        let (mut p, _) = resp.into_parts();
                        p.headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
                        return (Response::from_parts(p, Body::empty()), last_upstream);
                    }
                    let (mut p, b) = resp.into_parts();
                    strip_hop_by_hop(&mut p.headers);
                    // the backend counts as busy until its body is done
                    let b = b.map_frame(move |f| {
                        let _ = &guard;
                        f
                    });
                    return (Response::from_parts(p, Body::new(b)), last_upstream);
                }
                Ok(Err(e)) => {
                    let connect = e.is_connect();
                    last_error = error_chain(&e);
                    route.pool.failure(i, Instant::now(), last_error.clone());
                    tracing::warn!(upstream = %u.addr, error = %last_error, connect, "backend request failed");
                    if !connect {
                        break;
                    }
                }
                Err(_) => {
                    last_error = format!("no response within {}", cfg.timeout);
                    route.pool.failure(i, Instant::now(), last_error.clone());
                    tracing::warn!(upstream = %u.addr, error = %last_error, "backend timed out");
                    // the client learns the request id; the backend and the error are in hearth's log
                    let msg = format!("504 Gateway Timeout: the site did not answer in time (request id {rid})");
                    return (text(StatusCode::GATEWAY_TIMEOUT, msg), last_upstream);
                }
            }
        }
        let status = if tried.is_empty() { StatusCode::SERVICE_UNAVAILABLE } else { StatusCode::BAD_GATEWAY };
        if tried.is_empty() {
            tracing::warn!(route = %route.name, "no healthy backend");
        } else {
            tracing::warn!(upstream = %last_upstream, error = %last_error, "backend unreachable");
        }
        let msg = format!("{status}: the site is not reachable right now (request id {rid})");
        (text(status, msg), last_upstream)
    }
}

/// DNS integration: route hosts that are local names (`*.home.arpa`, `dns.local_domains`, …) resolve to
/// `address` in hearth's own DNS. Wildcard hosts are left out (the local zone has no wildcards).
pub fn local_records(cfg: &Config, address: Option<IpAddr>) -> Vec<(String, String, String, u32)> {
    let Some(ip) = address else { return vec![] };
    let rtype = if ip.is_ipv4() { "A" } else { "AAAA" };
    let mut out: Vec<(String, String, String, u32)> = vec![];
    for r in &cfg.proxy.routes {
        for h in &r.hosts {
            let h = h.trim().trim_end_matches('.').to_ascii_lowercase();
            if h.starts_with("*.") || h.parse::<IpAddr>().is_ok() || out.iter().any(|o| o.0 == h) {
                continue;
            }
            if crate::net::is_local_name(&h, &cfg.dns.local_domains) {
                out.push((h, rtype.into(), ip.to_string(), 60));
            }
        }
    }
    out
}

/// The address local route names resolve to: `proxy.address`, else the first HTTPS listener's specific address,
/// else the address of the interface with the default route.
pub fn advertised_address(cfg: &Config) -> Option<IpAddr> {
    if let Ok(ip) = cfg.proxy.address.parse() {
        return Some(ip);
    }
    if let Some(a) = cfg.server.https_listen.iter().find(|a| !a.0.ip().is_unspecified()) {
        return Some(a.0.ip());
    }
    crate::tls::lan_address()
}

/// Keeps a backend's active-request count up while a response (or an upgraded connection) lives.
struct ActiveGuard(Arc<Route>, usize);

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.pool.upstreams[self.1].active.fetch_sub(1, Ordering::Relaxed);
    }
}

/// 429 for a password check the login throttle refused.
fn throttled(retry_after: u64) -> Response<Body> {
    let mut r = text(StatusCode::TOO_MANY_REQUESTS, "429 Too Many Requests: too many failed logins, wait a little");
    r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(retry_after.max(1)));
    r
}

fn set_limit_headers(h: &mut HeaderMap, d: &crate::ratelimit::Decision) {
    h.insert(HeaderName::from_static("x-ratelimit-limit"), HeaderValue::from(d.limit));
    h.insert(HeaderName::from_static("x-ratelimit-remaining"), HeaderValue::from(d.remaining));
    h.insert(HeaderName::from_static("x-ratelimit-reset"), HeaderValue::from(d.reset));
}

fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![e.to_string()];
    let mut src = e.source();
    while let Some(s) = src {
        let t = s.to_string();
        if !parts.iter().any(|p| p.contains(&t)) {
            parts.push(t);
        }
        src = s.source();
    }
    parts.join(": ")
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~/".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn urldecode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                let hex = |c: u8| (c as char).to_digit(16);
                match (hex(b[i + 1]), hex(b[i + 2])) {
                    (Some(h), Some(l)) => {
                        out.push((h * 16 + l) as u8);
                        i += 2;
                    }
                    _ => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;").replace('\'', "&#39;")
}

/// What [`Proxy::dispatch`] made of a request.
pub enum Dispatch {
    /// Answered here (a proxied route, an ACME challenge, a refusal, a redirect).
    Done(Response<Body>),
    /// For the admin router: admitted by the front door, with [`ConnInfo`] and [`crate::net::AdminClient`] set.
    Admin(Request<Body>),
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

impl Proxy {
    /// The admin router, for a request no route claims: only for the admin's names and from `server.admin_allow`
    /// clients (both checks defeat DNS rebinding and keep the admin off the internet), over HTTPS except from
    /// loopback; never on a host that routes claim (a route's origin must not share the admin's cookies).
    fn admin_door(&self, mut req: Request<Incoming>, conn: ConnInfo, host: Option<&str>, table: &Table) -> Dispatch {
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

    /// Where a request on the HTTP(S) listeners goes: an ACME challenge answer, a proxied route, or the admin.
    pub async fn dispatch(&self, mut req: Request<Incoming>, conn: ConnInfo) -> Dispatch {
        let path = req.uri().path();
        if !conn.tls
            && let Some(token) = path.strip_prefix("/.well-known/acme-challenge/")
        {
            return Dispatch::Done(match self.acme.http01_answer(token) {
                Some(ka) => {
                    tracing::info!(token, "answered an ACME HTTP-01 challenge");
                    let mut r = Response::new(Body::from(ka));
                    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
                    r
                }
                None => text(StatusCode::NOT_FOUND, "404: no such ACME challenge"),
            });
        }
        let table = self.table.load();
        let host = req
            .headers()
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .map(request_host)
            .or_else(|| req.uri().authority().map(|a| request_host(a.as_str())));
        // every match below is on the normalised path, and that is the path that goes on (RFC 3986 §6)
        match path::normalize(req.uri().path()) {
            Ok(p) if p == req.uri().path() => {}
            Ok(p) => {
                let pq = match req.uri().query() {
                    Some(q) => format!("{p}?{q}"),
                    None => p,
                };
                let mut parts = req.uri().clone().into_parts();
                parts.path_and_query = pq.parse().ok();
                match Uri::from_parts(parts) {
                    Ok(u) => *req.uri_mut() = u,
                    Err(_) => {
                        return Dispatch::Done(text(
                            StatusCode::BAD_REQUEST,
                            "400 Bad Request: the path cannot be read",
                        ));
                    }
                }
            }
            Err(e) => return Dispatch::Done(text(StatusCode::BAD_REQUEST, format!("400 Bad Request: {e}"))),
        }
        let path = req.uri().path();
        // the forward-auth login form, on every forward-auth host whatever its routes' path prefixes
        let login_route = host
            .as_deref()
            .filter(|_| path.starts_with("/.hearth/"))
            .and_then(|h| table.lookup.host_routes(h).map(|i| &table.routes[i]).find(|r| r.cfg.forward_auth).cloned());
        let route = login_route
            .clone()
            .or_else(|| host.as_deref().and_then(|h| table.lookup.lookup(h, path)).map(|i| table.routes[i].clone()));
        let Some(route) = route else {
            return self.admin_door(req, conn, host.as_deref(), &table);
        };
        // 1. plain HTTP → HTTPS, unless the route is plain HTTP
        if !conn.tls && route.cfg.tls != RouteTls::None {
            let host = host.unwrap_or_default();
            let host = if host.contains(':') { format!("[{host}]") } else { host };
            let port = table.https_port.map(|p| format!(":{p}")).unwrap_or_default();
            let pq = req.uri().path_and_query().map(|p| p.as_str()).unwrap_or("/");
            let mut r = text(StatusCode::PERMANENT_REDIRECT, "308: this site is served over HTTPS");
            if let Ok(v) = HeaderValue::try_from(format!("https://{host}{port}{pq}")) {
                r.headers_mut().insert(header::LOCATION, v);
            }
            return Dispatch::Done(r);
        }
        let rid = crate::net::request_id(req.headers());
        let span = tracing::info_span!("proxy", request_id = %rid);
        if login_route.is_some() {
            let client = canonical(conn.peer.ip());
            return Dispatch::Done(self.login_page(&route, req, conn, client).instrument(span).await);
        }
        let started = Instant::now();
        let method = req.method().clone();
        let path = req.uri().path().to_string();
        let route_name = route.name.clone();
        let host_for_log = host.clone().unwrap_or_default();
        let metrics = route.metrics.clone();
        let done = async move {
            let (mut resp, upstream) = self.forward(route, req, conn, &rid).await;
            if let Ok(v) = HeaderValue::try_from(rid.as_str()) {
                resp.headers_mut().insert(HeaderName::from_static(crate::net::REQUEST_ID_HEADER), v);
            }
            let status = resp.status().as_u16();
            let elapsed = started.elapsed().as_secs_f64();
            metrics.requests(status).increment(1);
            metrics.duration.record(elapsed);
            tracing::info!(
                route = %route_name,
                method = %method,
                path,
                status,
                upstream,
                latency_ms = elapsed * 1000.0,
                client = %conn.peer.ip(),
                "proxy request"
            );
            let ts_ms = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as i64)
                .unwrap_or(0);
            self.remember(AccessEntry {
                ts_ms,
                request_id: rid,
                route: route_name,
                client: canonical(conn.peer.ip()).to_string(),
                method: method.to_string(),
                host: host_for_log,
                path,
                status,
                upstream,
                latency_ms: (elapsed * 10_000.0).round() / 10.0,
            });
            resp
        };
        Dispatch::Done(done.instrument(span).await)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_route_names_resolve_to_hearth() {
        let mut cfg = Config::default();
        cfg.proxy.routes = vec![ProxyRoute {
            hosts: vec!["jelly.home.arpa".into(), "*.home.arpa".into(), "app.example.com".into()],
            upstreams: vec!["http://127.0.0.1:1".into()],
            ..Default::default()
        }];
        let recs = local_records(&cfg, Some("192.168.1.5".parse().unwrap()));
        assert_eq!(recs, [("jelly.home.arpa".to_string(), "A".to_string(), "192.168.1.5".to_string(), 60)]);
        assert!(local_records(&cfg, None).is_empty());
        let zone = crate::dns::local_zone_with(&cfg.dns, &recs).unwrap();
        assert!(zone.lookup("jelly.home.arpa", 1).is_some());
    }

    #[test]
    fn hop_by_hop_headers_go() {
        let mut h = HeaderMap::new();
        h.insert(header::CONNECTION, HeaderValue::from_static("keep-alive, x-private"));
        h.insert("x-private", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert(header::TRANSFER_ENCODING, HeaderValue::from_static("chunked"));
        h.insert("x-kept", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("x-kept"));
    }

    #[test]
    fn upgrades_need_both_headers() {
        let mut h = HeaderMap::new();
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        assert_eq!(upgrade_of(&h), None);
        h.insert(header::CONNECTION, HeaderValue::from_static("keep-alive, Upgrade"));
        assert_eq!(upgrade_of(&h), Some(HeaderValue::from_static("websocket")));
    }

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

    #[test]
    fn only_websocket_upgrades_pass() {
        let mut h = HeaderMap::new();
        h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
        h.insert(header::UPGRADE, HeaderValue::from_static("h2c"));
        assert_eq!(upgrade_of(&h), None);
        h.insert(header::UPGRADE, HeaderValue::from_static("WebSocket"));
        assert!(upgrade_of(&h).is_some());
    }

    #[test]
    fn proxy_authorization_is_hop_by_hop() {
        let mut h = HeaderMap::new();
        h.insert(header::PROXY_AUTHORIZATION, HeaderValue::from_static("Basic eDp5"));
        strip_hop_by_hop(&mut h);
        assert!(h.is_empty());
    }

    #[test]
    fn hearth_cookies_never_reach_a_backend() {
        let mut h = HeaderMap::new();
        h.append(header::COOKIE, HeaderValue::from_static("a=1; hearth_session=x"));
        h.append(header::COOKIE, HeaderValue::from_static("__Host-hearth_fwd=y;b=2; __Host-hearth_session=z"));
        strip_hearth_cookies(&mut h);
        assert_eq!(h.get_all(header::COOKIE).iter().collect::<Vec<_>>(), ["a=1; b=2"]);
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, HeaderValue::from_static("hearth_fwd=1"));
        strip_hearth_cookies(&mut h);
        assert!(h.get(header::COOKIE).is_none());
    }

    #[test]
    fn login_targets_stay_on_the_site() {
        for ok in ["/", "/app/x?y=1", "/a#b"] {
            assert_eq!(safe_next(ok), Some(ok));
        }
        for bad in ["//evil.com", "/\\evil.com", "\\evil.com", "https://evil.com", "/x:y@evil.com", "evil", "/a\nb", ""]
        {
            assert_eq!(safe_next(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn forwarded_host_is_only_host_syntax() {
        assert_eq!(forwarded_host("app.home.arpa:8443"), Some("app.home.arpa:8443"));
        assert_eq!(forwarded_host("[::1]:8443"), Some("[::1]:8443"));
        assert_eq!(forwarded_host("a\";for=evil"), None);
        assert_eq!(crate::auth::log_name(&"x".repeat(100)).chars().count(), 65);
    }

    #[test]
    fn url_coding_round_trips() {
        let s = "/a b/?x=1&y=ä";
        assert_eq!(urldecode(&urlencode(s)), s);
        assert_eq!(urldecode("a+b%2"), "a b%2");
    }
}
