//! The admin HTTP(S) shell: one router (API, UI, health, metrics) behind middleware for request ids, access logs,
//! metrics, limits and security headers; served on already-bound listeners by a hyper accept loop with graceful
//! shutdown.
//!
//! Invariants: every `/api/v1` handler that is not public takes [`auth::AdminAuth`] (checked by a test against the
//! OpenAPI document); every error answer is JSON with an id; every log line of a request carries its request id.

pub mod api;
pub mod auth;
pub mod conn;
pub mod dns_api;
pub mod doh;
pub mod error;
pub mod memory_api;
pub mod proxy_api;
pub mod system_api;
pub mod tls;
pub mod ui;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::config::live::LiveConfig;
use crate::storage::Db;
use crate::supervisor::Health;
use crate::telemetry::{RequestCounter, Series};
use error::ApiError;

/// Shared state of the admin HTTP shell.
#[derive(Clone)]
pub struct AppState {
    pub db: Db,
    pub health: Health,
    pub config: Arc<LiveConfig>,
    pub verifier: Arc<crate::auth::verifier::Verifier>,
    pub metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
    pub requests: RequestCounter,
    pub series: Arc<Mutex<Series>>,
    pub started_at: i64,
    pub openapi: Arc<OnceLock<String>>,
    pub dns: Arc<crate::dns::Dns>,
    pub querylog: crate::dns::querylog::LogReader,
    pub lists: Arc<crate::dns::lists::ListUpdater>,
    pub proxy: Arc<crate::proxy::Proxy>,
    pub certs: Arc<crate::tls::Certs>,
    pub memory: Arc<crate::memory::Memory>,
}

/// Per-connection facts, inserted into every request by the accept loop.
#[derive(Debug, Clone, Copy)]
pub struct ConnInfo {
    pub peer: SocketAddr,
    /// The box's address the client connected to (an IP literal `Host` must be this one to reach the admin).
    pub local: SocketAddr,
    pub tls: bool,
}

/// Inserted by the front door into every request the admin router serves: whether the client's address is in
/// `server.admin_allow` (the UI and API need it; `/metrics` and `/readyz` details check it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdminClient(pub bool);

static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

pub fn router(state: AppState) -> Router {
    let (api, openapi) = api::routes().split_for_parts();
    let _ = state.openapi.set(openapi.to_pretty_json().unwrap_or_default());
    Router::new()
        .merge(api.method_not_allowed_fallback(api::method_not_allowed))
        .fallback(ui::serve)
        .layer(axum::extract::DefaultBodyLimit::disable())
        .layer(axum::middleware::from_fn_with_state(state.clone(), limits))
        .layer(axum::middleware::from_fn(security_headers))
        .layer(axum::middleware::from_fn_with_state(state.clone(), observe))
        .layer(axum::middleware::from_fn(request_id))
        .with_state(state)
}

pub(crate) fn valid_request_id(v: &str) -> bool {
    !v.is_empty() && v.len() <= 64 && v.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
}

/// Outermost: take or generate the request id, open the request's span, echo the id back.
async fn request_id(req: Request, next: Next) -> Response {
    let id = req
        .headers()
        .get(&X_REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| valid_request_id(v))
        .map(str::to_string)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let span = tracing::info_span!("request", request_id = %id);
    let mut resp = next.run(req).instrument(span).await;
    if let Ok(v) = HeaderValue::from_str(&id) {
        resp.headers_mut().insert(X_REQUEST_ID.clone(), v);
    }
    resp
}

/// Access log line and request metrics.
async fn observe(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = req.method().clone();
    let route = req.extensions().get::<MatchedPath>().map(|m| m.as_str().to_string());
    let path = req.uri().path().to_string();
    let peer = req.extensions().get::<ConnInfo>().map(|c| c.peer.ip().to_string()).unwrap_or_default();
    let resp = next.run(req).await;
    let elapsed = start.elapsed();
    let status = resp.status().as_u16();
    // UI asset paths are folded into one label so that the metric's cardinality stays bounded.
    let route = route.unwrap_or_else(|| if path.starts_with("/api/") { "unmatched".into() } else { "ui".into() });
    state.requests.inc();
    metrics::counter!("hearth_http_requests_total", "route" => route.clone(), "method" => method.to_string(), "status" => status.to_string()).increment(1);
    metrics::histogram!("hearth_http_request_duration_seconds", "route" => route, "method" => method.to_string())
        .record(elapsed.as_secs_f64());
    if path != "/healthz" && path != "/metrics" {
        tracing::info!(method = %method, path, status, latency_ms = elapsed.as_secs_f64() * 1000.0, peer, "http request");
    }
    resp
}

/// Body size limit and request timeout for the API, read from the live config on every request.
async fn limits(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let path = req.uri().path();
    let memory = path.starts_with("/v1/") || path == "/api/v1/embed" || path.starts_with("/api/v1/collections");
    let (max_body, timeout) = {
        let c = state.config.current();
        let body = if memory { c.memory.max_body_bytes } else { c.server.max_body_bytes };
        (body, c.server.request_timeout.as_std())
    };
    if !path.starts_with("/api/") && !path.starts_with("/v1/") {
        return next.run(req).await;
    }
    let declared =
        req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max_body) {
        return ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("request body is larger than {max_body} bytes"),
        )
        .into_response();
    }
    let (parts, body) = req.into_parts();
    let body = Body::new(http_body_util::Limited::new(body, max_body as usize));
    match tokio::time::timeout(timeout, next.run(Request::from_parts(parts, body))).await {
        Ok(resp) => resp,
        Err(_) => ApiError::new(StatusCode::REQUEST_TIMEOUT, "timeout", "the request took too long").into_response(),
    }
}

async fn security_headers(req: Request, next: Next) -> Response {
    let tls = req.extensions().get::<ConnInfo>().is_some_and(|c| c.tls);
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    let set = |h: &mut axum::http::HeaderMap, k: HeaderName, v: &'static str| {
        h.entry(k).or_insert(HeaderValue::from_static(v));
    };
    set(h, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(h, header::X_FRAME_OPTIONS, "DENY");
    set(h, header::REFERRER_POLICY, "no-referrer");
    set(
        h,
        header::CONTENT_SECURITY_POLICY,
        "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    );
    if tls {
        set(h, header::STRICT_TRANSPORT_SECURITY, "max-age=31536000");
    }
    resp
}

/// Serve `front` (ACME challenges, proxied routes, the admin router) on `listener` until `stop` fires, then let
/// open connections finish for up to `drain`.
pub async fn serve(
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    front: Arc<crate::proxy::Front>,
    stop: CancellationToken,
    drain: Duration,
) {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    loop {
        let (stream, peer) = tokio::select! {
            _ = stop.cancelled() => break,
            r = listener.accept() => match r {
                Ok(v) => v,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let limits = front.proxy.table.load().conn_limits;
        let Some(permit) = front.conns.admit(crate::proxy::canonical(peer.ip()), &limits) else {
            // over server.max_connections or max_connections_per_client: closed at once
            metrics::counter!("hearth_http_connections_refused_total").increment(1);
            tracing::debug!(peer = %peer, "connection refused: too many open connections");
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let local = stream.local_addr().unwrap_or(peer);
        let info = ConnInfo { peer, local, tls: tls.is_some() };
        let act = Arc::new(conn::Activity::default());
        let front = front.clone();
        let svc_act = act.clone();
        let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
            let front = front.clone();
            let act = svc_act.clone();
            let guard = act.begin();
            async move {
                let resp = guarded(front.handle(req, info)).await;
                if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
                    act.upgraded();
                    return Ok::<_, std::convert::Infallible>(resp);
                }
                // the request counts as in flight until its response body is done
                Ok(resp.map(|b| {
                    Body::new(http_body_util::BodyExt::map_frame(b, move |f| {
                        let _ = &guard;
                        f
                    }))
                }))
            }
        });
        let builder = builder.clone();
        match &tls {
            None => {
                let io = TokioIo::new(conn::Watched::new(stream, act, limits));
                let conn = builder.serve_connection_with_upgrades(io, svc).into_owned();
                let watched = graceful.watch(conn);
                tokio::spawn(async move {
                    let _permit = permit;
                    let _ = watched.await;
                });
            }
            Some(acceptor) => {
                let acceptor = acceptor.clone();
                let watcher = graceful.watcher();
                tokio::spawn(async move {
                    let _permit = permit;
                    let handshake = limits.header_read_timeout.min(Duration::from_secs(10));
                    let stream = match tokio::time::timeout(handshake, acceptor.accept(stream)).await {
                        Ok(Ok(s)) => s,
                        Ok(Err(e)) => {
                            return tracing::debug!(peer = %peer, error = %e, "TLS handshake failed");
                        }
                        Err(_) => return tracing::debug!(peer = %peer, "TLS handshake timed out"),
                    };
                    // a TLS-ALPN-01 validation ends with the handshake
                    if stream.get_ref().1.alpn_protocol() == Some(crate::tls::ACME_TLS_ALPN) {
                        return tracing::info!(peer = %peer, "answered an ACME TLS-ALPN-01 challenge");
                    }
                    let io = TokioIo::new(conn::Watched::new(stream, act, limits));
                    let conn = builder.serve_connection_with_upgrades(io, svc).into_owned();
                    let _ = watcher.watch(conn).await;
                });
            }
        }
    }
    drop(listener);
    if tokio::time::timeout(drain, graceful.shutdown()).await.is_err() {
        tracing::warn!("open connections did not finish in time");
    }
}

/// Run one request's handling; a panic in it becomes a 500 for that request alone (the process and every other
/// connection go on; `panic = "unwind"` in the release profile).
async fn guarded(fut: impl std::future::Future<Output = Response<Body>>) -> Response<Body> {
    use futures_util::FutureExt;
    match std::panic::AssertUnwindSafe(fut).catch_unwind().await {
        Ok(r) => r,
        Err(p) => {
            let what = p
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| p.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            let id = uuid::Uuid::new_v4().to_string();
            metrics::counter!("hearth_panics_total", "where" => "request").increment(1);
            tracing::error!(panic = %what, error_id = %id, "a request handler panicked");
            let mut r = Response::new(Body::from(format!("500 Internal Server Error (error id {id})\n")));
            *r.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
            r
        }
    }
}

#[cfg(test)]
mod tests {
    /// Item 15: a panic while handling one request is that request's 500 with an error id; the caller (the
    /// connection, the process) goes on.
    #[tokio::test]
    async fn a_panicking_handler_is_one_500() {
        use axum::body::Body;
        use axum::http::StatusCode;
        use axum::response::Response;
        let boom = async {
            if std::hint::black_box(true) {
                panic!("a bug in a handler");
            }
            Response::new(Body::empty())
        };
        let r = super::guarded(boom).await;
        assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let body = axum::body::to_bytes(r.into_body(), 1024).await.unwrap();
        assert!(String::from_utf8_lossy(&body).contains("error id"), "{body:?}");
        let ok = super::guarded(async { Response::new(Body::from("fine")) }).await;
        assert_eq!(ok.status(), StatusCode::OK);
    }

    #[test]
    fn request_ids_are_sanitised() {
        assert!(super::valid_request_id("abc-123_x.y:z"));
        assert!(!super::valid_request_id(""));
        assert!(!super::valid_request_id("a b"));
        assert!(!super::valid_request_id(&"a".repeat(65)));
        assert!(!super::valid_request_id("<script>"));
    }
}
