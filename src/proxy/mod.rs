//! The reverse proxy (IO shell): every request on the HTTP(S) listeners enters [`Proxy::dispatch`] (called by
//! `front`), which answers ACME HTTP-01 challenges, normalises the path ([`path`]), serves the forward-auth
//! login form, sends requests for route hosts through the proxy, and hands everything else (requests by IP,
//! `server.admin_hosts`, unknown names) back as [`Dispatch::Admin`] once the admin's front door admits it.
//!
//! A proxied request passes these stages, in order; [`Proxy::forward`] is their list:
//! 1. route lookup (host + path prefix; [`table::RouteTable`]), and on plain HTTP a 308 to HTTPS unless the
//!    route has `tls = "none"` (in [`Proxy::dispatch`]);
//! 2. client address allow/deny; 3. rate limit (token bucket per client IP, `X-RateLimit-*` headers, health
//!    paths exempt); 4. basic auth or forward auth (`login.rs`; hearth's own login at `/.hearth/login` on the
//!    route's host); 5. body-size limit; 6. pick a backend ([`pool::Pool`]) and send with hop-by-hop headers
//!    removed and `X-Forwarded-*`/`Forwarded` set, retrying idempotent body-less requests on connect failures
//!    (`send.rs`); 7. response headers (HSTS and security headers unless overridden, the route's own headers);
//!    8. the request id, metrics and the access log line (`access.rs`).
//!
//! The other files: `route.rs` (the compiled [`Table`] of [`Route`]s, its config-change applier and the admin's
//! front door), `local.rs` (the DNS records of local route names); pure cores in `table.rs`, `pool.rs`, `mw.rs`,
//! `path.rs`; active health checks in `health.rs`.
//!
//! Bodies stream both ways (never buffered); `Upgrade` requests (WebSocket) are spliced after the backend's 101.
//! Invariant: the table is an immutable value swapped atomically; a request holds its route (and so its pool and
//! client) until it ends, so in-flight requests and open WebSockets keep their backend across reloads.

pub(crate) mod health;
pub(crate) mod mw;
pub(crate) mod path;
pub(crate) mod pool;
pub(crate) mod table;

mod access;
mod local;
mod login;
mod route;
mod send;

use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use axum::body::Body;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Request, Response, StatusCode, Uri, header};
use hyper::body::Incoming;
use tracing::Instrument;

use crate::config::{Config, ProxyRoute, RouteTls};
use crate::net::ConnInfo;
use crate::ratelimit::Decision;
use crate::storage::Db;
use crate::util::Locked;
use pool::UpstreamAddr;
use send::{client_for, trust_store};
use table::request_host;

pub(crate) use crate::net::canonical;
pub(crate) use access::AccessEntry;
pub(crate) use local::{advertised_address, local_records};
pub(crate) use route::{ProxyApplier, Route, Table};

pub(crate) struct Proxy {
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

/// What [`Proxy::dispatch`] made of a request.
pub(crate) enum Dispatch {
    /// Answered here (a proxied route, an ACME challenge, a refusal, a redirect).
    Done(Response<Body>),
    /// For the admin router: admitted by the front door, with [`ConnInfo`] and [`crate::net::AdminClient`] set.
    Admin(Request<Body>),
}

impl Proxy {
    pub(crate) fn new(
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

    /// Test one backend URL right now (the UI's "test upstream" button): a GET of `path`.
    pub(crate) async fn probe(&self, url: &str, path: &str) -> Result<(u16, f64), String> {
        let addr = UpstreamAddr::parse(url)?;
        let route = ProxyRoute {
            upstreams: vec![url.to_string()],
            connect_timeout: crate::config::Duration::from_secs(5),
            ..Default::default()
        };
        let client = client_for(&route, &addr, &self.roots.load());
        health::probe(&client, &addr, path, Duration::from_secs(5)).await
    }

    /// Where a request on the HTTP(S) listeners goes: an ACME challenge answer, a proxied route, or the admin.
    pub(crate) async fn dispatch(&self, mut req: Request<Incoming>, conn: ConnInfo) -> Dispatch {
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
        let span = tracing::info_span!(
            "proxy",
            request_id = %rid,
            otel.kind = "server",
            http.request.method = %req.method(),
            url.path = req.uri().path(),
            server.address = host.as_deref().unwrap_or(""),
            http.response.status_code = tracing::field::Empty,
            otel.status_code = tracing::field::Empty,
        );
        // a caller's trace continues here (W3C traceparent)
        crate::tracecontext::adopt(&span, req.headers());
        if login_route.is_some() {
            let client = canonical(conn.peer.ip());
            return Dispatch::Done(self.login_page(&route, req, conn, client).instrument(span).await);
        }
        let host = host.unwrap_or_default();
        Dispatch::Done(self.forward(route, req, conn, host, rid).instrument(span).await)
    }

    /// The stages of a proxied request after routing (stage 1, the route and the 308 to HTTPS, is in
    /// [`Proxy::dispatch`]), in order. A stage that refuses the request answers it: the later stages up to the
    /// backend's response headers are skipped, the request id and the access log line are not.
    async fn forward(
        &self,
        route: Arc<Route>,
        req: Request<Incoming>,
        conn: ConnInfo,
        host: String,
        rid: String,
    ) -> Response<Body> {
        let started = access::Started::new(&route, &req, host);
        let client = canonical(conn.peer.ip());
        let admitted = async {
            // 2. client address allow/deny
            filter_client(&route, client)?;
            // 3. rate limit
            let quota = rate_limit(&route, client, req.uri().path())?;
            // 4. basic auth, forward auth
            let user = self.authenticate(&route, &req, conn, client).await.map_err(Box::new)?;
            // 5. body size
            limit_body(&route.cfg, req.headers())?;
            Ok::<_, Refused>((quota, user))
        };
        let (mut resp, upstream) = match admitted.await {
            Ok((quota, user)) => {
                // 6. backend, in its own span (its context goes to the backend as `traceparent`)
                let span = tracing::info_span!(
                    "upstream",
                    otel.kind = "client",
                    route = %route.name,
                    http.response.status_code = tracing::field::Empty,
                );
                let (mut resp, upstream) =
                    self.send(&route, req, conn, client, user.as_deref(), &rid).instrument(span.clone()).await;
                span.record("http.response.status_code", i64::from(resp.status().as_u16()));
                // 7. response headers
                response_headers(&route, conn.tls, quota.as_ref(), &mut resp);
                (resp, upstream)
            }
            Err(refused) => (*refused, String::new()),
        };
        // 8. request id, the span's outcome, metrics, access log
        set_request_id(&mut resp, &rid);
        let span = tracing::Span::current();
        span.record("http.response.status_code", i64::from(resp.status().as_u16()));
        if resp.status().is_server_error() {
            span.record("otel.status_code", "ERROR");
        }
        self.log_access(started, conn, &resp, upstream, rid);
        resp
    }
}

/// A stage's answer that ends the request (boxed: a response is large and the stages' `Ok` is small).
type Refused = Box<Response<Body>>;

/// Stage 2: the route's client address `allow`/`deny` lists (403).
fn filter_client(route: &Route, client: IpAddr) -> Result<(), Refused> {
    if !mw::ip_allowed(client, &route.allow, &route.deny) {
        return Err(Box::new(text(StatusCode::FORBIDDEN, "403 Forbidden: your address may not use this site")));
    }
    Ok(())
}

/// Stage 3: the route's token bucket for this client, health paths exempt (429 + `Retry-After`). Ok: the decision
/// whose `X-RateLimit-*` headers the response gets (None: the route or path is not limited).
fn rate_limit(route: &Route, client: IpAddr, path: &str) -> Result<Option<Decision>, Refused> {
    let Some(l) = &route.limiter else { return Ok(None) };
    if is_health_path(&route.cfg, path) {
        return Ok(None);
    }
    let d = l.locked().take(client, Instant::now());
    if !d.allowed {
        let mut r = text(StatusCode::TOO_MANY_REQUESTS, "429 Too Many Requests: slow down");
        set_limit_headers(r.headers_mut(), &d);
        r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(d.retry_after.max(1)));
        return Err(Box::new(r));
    }
    Ok(Some(d))
}

/// Stage 5: a declared body over the route's `max_body_bytes` (413); an undeclared one is cut off at the limit
/// while it streams (`send`).
fn limit_body(cfg: &ProxyRoute, headers: &HeaderMap) -> Result<(), Refused> {
    let declared = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if cfg.max_body_bytes > 0 && declared.is_some_and(|n| n > cfg.max_body_bytes) {
        return Err(Box::new(text(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("413: the body is larger than {} bytes", cfg.max_body_bytes),
        )));
    }
    Ok(())
}

/// Stage 7: the rate limit's headers; then, unless the backend switched protocols, HSTS (over TLS, when the route
/// has `hsts`) and the security headers where the backend set none, and the route's own `headers` (an empty value
/// removes the header).
fn response_headers(route: &Route, tls: bool, quota: Option<&Decision>, resp: &mut Response<Body>) {
    let cfg = &route.cfg;
    let h = resp.headers_mut();
    if let Some(d) = quota {
        set_limit_headers(h, d);
    }
    if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
        let h = resp.headers_mut();
        if tls && cfg.hsts {
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
}

/// Stage 8: the request id goes back to the client too.
fn set_request_id(resp: &mut Response<Body>, rid: &str) {
    if let Ok(v) = HeaderValue::try_from(rid) {
        resp.headers_mut().insert(HeaderName::from_static(crate::net::REQUEST_ID_HEADER), v);
    }
}

fn is_health_path(route: &ProxyRoute, path: &str) -> bool {
    (!route.health_path.is_empty() && path == route.health_path)
        || matches!(path, "/healthz" | "/readyz" | "/health" | "/livez" | "/ping")
}

fn set_limit_headers(h: &mut HeaderMap, d: &Decision) {
    h.insert(HeaderName::from_static("x-ratelimit-limit"), HeaderValue::from(d.limit));
    h.insert(HeaderName::from_static("x-ratelimit-remaining"), HeaderValue::from(d.remaining));
    h.insert(HeaderName::from_static("x-ratelimit-reset"), HeaderValue::from(d.reset));
}

/// A short plain-text answer (refusals, redirects, errors), never cached.
fn text(status: StatusCode, msg: impl Into<String>) -> Response<Body> {
    let mut r = Response::new(Body::from(msg.into() + "\n"));
    *r.status_mut() = status;
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}
