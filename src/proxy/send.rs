//! The backend exchange (stage 6 of a proxied request, [`Proxy::send`]): pick a backend from the route's pool,
//! rewrite the request's headers for it, send it through that backend's client, and pass the response (or the
//! upgraded connection) back. Also the clients themselves: [`Dial`], [`client_for`] and [`trust_store`].
//!
//! Invariants: bodies stream both ways, never buffered (`Incoming` in, `Incoming` out); hop-by-hop headers
//! (`Proxy-Authorization` too) and hearth's own cookies never reach a backend, and neither do a client's
//! forwarding or identity headers unless it is in `proxy.trusted_proxies`; only `Upgrade: websocket` passes, and
//! is spliced after the backend's 101; only body-less idempotent requests are retried, and only on connect
//! errors; only connection-level failures and timeouts count against a backend (its 5xx is passed through; a
//! request body that fails on the client's side — past `max_body_bytes`, or broken off — does not count); a
//! 502/504 body names only the request id (the backend and its error go to the log).

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode, Uri, Version, header};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tracing::Instrument;

use super::pool::UpstreamAddr;
use super::{Proxy, Route, path, text};
use crate::config::ProxyRoute;
use crate::net::ConnInfo;

type HttpsConnector = hyper_rustls::HttpsConnector<HttpConnector>;
pub(super) type HttpsClient = Client<Dial, Body>;

/// A connector that always dials one backend, whatever authority the request URI names. Requests then carry
/// the client's host as their authority — HTTP/2's `:authority` or HTTP/1's `Host` — while the connection (and
/// TLS server name) is the backend's, as RFC 9113 §8.3.1 asks of an intermediary.
#[derive(Clone)]
pub(crate) struct Dial {
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

/// A client that dials `addr` (HTTP, HTTPS trusting `roots`, or h2c) with the route's connect timeout.
pub(super) fn client_for(r: &ProxyRoute, addr: &UpstreamAddr, roots: &rustls::RootCertStore) -> HttpsClient {
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

/// webpki's roots plus the PEM certificates given (hearth's internal root).
pub(super) fn trust_store(extra: Option<&str>) -> rustls::RootCertStore {
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
    /// Stage 6: pick a backend and exchange; returns the response and the backend's URL.
    pub(super) async fn send(
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
        // the backend's parent is this stage's span (`traceparent`, `tracestate`)
        crate::tracecontext::pass_on(&tracing::Span::current(), &mut headers);
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
        let client_fault = Arc::new(std::sync::OnceLock::new());
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
            let limit = if cfg.max_body_bytes > 0 { cfg.max_body_bytes as usize } else { usize::MAX };
            let fault = client_fault.clone();
            let b = Body::new(http_body_util::Limited::new(b, limit).map_err(move |e| {
                // any error of the body we send is the client's: it outgrew the limit, or its upload broke off
                let _ = fault.set(if e.is::<http_body_util::LengthLimitError>() {
                    ClientFault::TooLarge
                } else {
                    ClientFault::Broken
                });
                e
            }));
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
                Ok(Err(e)) if client_fault.get().is_some() => {
                    // the backend is not at fault: no failure counted, no retry
                    tracing::debug!(upstream = %u.addr, error = %error_chain(&e), "the client's request body failed");
                    let r = match client_fault.get() {
                        Some(ClientFault::TooLarge) => text(
                            StatusCode::PAYLOAD_TOO_LARGE,
                            format!("413: the body is larger than {} bytes", cfg.max_body_bytes),
                        ),
                        _ => text(StatusCode::BAD_REQUEST, "400 Bad Request: the request body broke off"),
                    };
                    return (r, last_upstream);
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

/// Why the body sent to a backend failed on the client's side (then the exchange's failure is not the backend's).
#[derive(Debug)]
enum ClientFault {
    /// It streamed past the route's `max_body_bytes`.
    TooLarge,
    /// The client's upload broke off (it went away, or sent a malformed chunk).
    Broken,
}

/// Keeps a backend's active-request count up while a response (or an upgraded connection) lives.
struct ActiveGuard(Arc<Route>, usize);

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.pool.upstreams[self.1].active.fetch_sub(1, Ordering::Relaxed);
    }
}

pub(super) use crate::util::error_chain;

#[cfg(test)]
mod tests {
    use super::*;

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
    fn forwarded_host_is_only_host_syntax() {
        assert_eq!(forwarded_host("app.home.arpa:8443"), Some("app.home.arpa:8443"));
        assert_eq!(forwarded_host("[::1]:8443"), Some("[::1]:8443"));
        assert_eq!(forwarded_host("a\";for=evil"), None);
        assert_eq!(crate::auth::log_name(&"x".repeat(100)).chars().count(), 65);
    }
}
