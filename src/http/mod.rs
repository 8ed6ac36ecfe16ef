//! The admin HTTP shell: one router (API, UI, health, metrics) behind middleware for request ids, access logs,
//! metrics, limits and security headers. The front door (`front`) serves it for the requests no proxy
//! route claims.
//!
//! Invariants: every `/api/v1` handler that is not public takes [`auth::AdminAuth`] (checked by a test against the
//! OpenAPI document); every error answer is JSON with an id; every log line of a request carries its request id.

pub(crate) mod alerts_api;
pub(crate) mod api;
pub(crate) mod auth;
pub(crate) mod dns_api;
pub(crate) mod dns_rules_api;
pub(crate) mod doh;
pub(crate) mod error;
mod form;
pub(crate) mod logs_api;
pub(crate) mod memory_api;
pub(crate) mod metrics_api;
pub(crate) mod proxy_api;
pub(crate) mod system_api;
pub(crate) mod traces_api;
pub(crate) mod ui;

use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tracing::Instrument;

use crate::config::live::LiveConfig;
use crate::storage::Db;
use crate::supervisor::Health;
use crate::telemetry::{RequestCounter, Series};
use error::ApiError;

/// Shared state of the admin HTTP shell. Handlers take the part they use: [`DnsApi`], [`ProxyApi`] and
/// [`MemoryApi`] are extracted from it (`State<DnsApi>`, …); the auth extractors read `db`, `config` and `verifier`.
#[derive(Clone)]
pub(crate) struct AppState {
    pub db: Db,
    pub health: Health,
    pub config: Arc<LiveConfig>,
    pub verifier: Arc<crate::auth::verifier::Verifier>,
    pub metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
    pub requests: RequestCounter,
    pub series: Arc<Mutex<Series>>,
    pub started_at: i64,
    pub openapi: Arc<OnceLock<String>>,
    pub dns: DnsApi,
    pub proxy: ProxyApi,
    pub memory: MemoryApi,
    pub history: MetricsApi,
    pub alerts: AlertsApi,
    pub logs: LogsApi,
    pub traces: TracesApi,
}

/// What the traces routes (`traces_api`) use.
#[derive(Clone)]
pub(crate) struct TracesApi {
    pub traces: Arc<crate::traces::Traces>,
}

impl axum::extract::FromRef<AppState> for TracesApi {
    fn from_ref(s: &AppState) -> Self {
        s.traces.clone()
    }
}

/// What the log-store routes (`logs_api`) use.
#[derive(Clone)]
pub(crate) struct LogsApi {
    pub logs: Arc<crate::logs::Logs>,
}

impl axum::extract::FromRef<AppState> for LogsApi {
    fn from_ref(s: &AppState) -> Self {
        s.logs.clone()
    }
}

/// What the alerts routes (`alerts_api`) use.
#[derive(Clone)]
pub(crate) struct AlertsApi {
    pub alerts: Arc<crate::alerts::Alerts>,
    pub compiled: Arc<Mutex<crate::alerts::task::Compiled>>,
}

impl axum::extract::FromRef<AppState> for AlertsApi {
    fn from_ref(s: &AppState) -> Self {
        s.alerts.clone()
    }
}

/// What the metrics-history routes (`metrics_api`) use.
#[derive(Clone)]
pub(crate) struct MetricsApi {
    pub metrics: Arc<crate::metrics::Metrics>,
}

/// What the DNS routes (`dns_api`, `doh`) use.
#[derive(Clone)]
pub(crate) struct DnsApi {
    pub config: Arc<LiveConfig>,
    pub dns: Arc<crate::dns::Dns>,
    pub querylog: crate::dns::querylog::LogReader,
    pub lists: Arc<crate::dns::lists::ListUpdater>,
    /// The DNS state that outlives a restart (`dns::blocking`).
    pub db: crate::storage::Db,
}

/// What the HTTPS-front routes (`proxy_api`) use.
#[derive(Clone)]
pub(crate) struct ProxyApi {
    pub config: Arc<LiveConfig>,
    pub proxy: Arc<crate::proxy::Proxy>,
    pub certs: Arc<crate::tls::Certs>,
}

/// What the memory routes (`memory_api`) use.
#[derive(Clone)]
pub(crate) struct MemoryApi {
    pub config: Arc<LiveConfig>,
    pub memory: Arc<crate::memory::Memory>,
}

impl axum::extract::FromRef<AppState> for DnsApi {
    fn from_ref(s: &AppState) -> DnsApi {
        s.dns.clone()
    }
}

impl axum::extract::FromRef<AppState> for ProxyApi {
    fn from_ref(s: &AppState) -> ProxyApi {
        s.proxy.clone()
    }
}

impl axum::extract::FromRef<AppState> for MetricsApi {
    fn from_ref(s: &AppState) -> Self {
        s.history.clone()
    }
}

impl axum::extract::FromRef<AppState> for MemoryApi {
    fn from_ref(s: &AppState) -> MemoryApi {
        s.memory.clone()
    }
}

pub(crate) use crate::net::{AdminClient, ConnInfo};

static X_REQUEST_ID: HeaderName = HeaderName::from_static(crate::net::REQUEST_ID_HEADER);

/// The OpenAPI document of every route (served at `/api/v1/openapi.json`) and the routers: the admin API and the
/// memory API, each with its own body limit.
pub(crate) fn document() -> (Router<AppState>, Router<AppState>, utoipa::openapi::OpenApi) {
    let (api, mut doc) = api::routes().split_for_parts();
    let (memory, memory_doc) = memory_api::routes().split_for_parts();
    doc.merge(memory_doc);
    utoipa::Modify::modify(&api::CommonAnswers, &mut doc);
    (api, memory, doc)
}

pub(crate) fn router(state: AppState) -> Router {
    let (api, memory, openapi) = document();
    let _ = state.openapi.set(openapi.to_pretty_json().unwrap_or_default());
    Router::new()
        .merge(
            api.method_not_allowed_fallback(api::method_not_allowed)
                .layer(axum::middleware::from_fn_with_state(state.clone(), api_limits)),
        )
        .merge(
            memory
                .method_not_allowed_fallback(api::method_not_allowed)
                .layer(axum::middleware::from_fn_with_state(state.clone(), memory_limits)),
        )
        .fallback(ui::serve)
        .layer(axum::extract::DefaultBodyLimit::disable())
        .layer(axum::middleware::from_fn(security_headers))
        .layer(axum::middleware::from_fn_with_state(state.clone(), observe))
        .layer(axum::middleware::from_fn(request_id))
        .with_state(state)
}

/// Outermost: take or generate the request id, open the request's span, echo the id back.
async fn request_id(req: Request, next: Next) -> Response {
    let id = crate::net::request_id(req.headers());
    let span = tracing::info_span!(
        "request",
        request_id = %id,
        otel.kind = "server",
        http.request.method = %req.method(),
        url.path = req.uri().path(),
        http.response.status_code = tracing::field::Empty,
        otel.status_code = tracing::field::Empty,
    );
    crate::tracecontext::adopt(&span, req.headers());
    let mut resp = next.run(req).instrument(span.clone()).await;
    span.record("http.response.status_code", i64::from(resp.status().as_u16()));
    if resp.status().is_server_error() {
        span.record("otel.status_code", "ERROR");
    }
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

/// The admin API's body limit (`server.max_body_bytes`) and timeout, read from the live config per request.
async fn api_limits(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let c = state.config.current();
    limited(c.server.max_body_bytes, c.server.request_timeout.as_std(), req, next).await
}

/// The memory API's own body limit (`memory.max_body_bytes`: batches of documents are larger than settings) and
/// timeout: `server.request_timeout`, as for the rest of the API (it bounds upkeep calls such as `optimize`, which
/// have no timeout of their own), but never before 5 s after `memory.request_timeout`, at which the model-bound
/// handlers answer 504 themselves (with equal timeouts the two raced and a slow model gave 408 or 504 by chance).
async fn memory_limits(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let c = state.config.current();
    let backstop = c.server.request_timeout.as_std().max(c.memory.request_timeout.as_std() + Duration::from_secs(5));
    limited(c.memory.max_body_bytes, backstop, req, next).await
}

async fn limited(max_body: u64, timeout: Duration, req: Request, next: Next) -> Response {
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

#[cfg(test)]
mod tests {
    /// The web UI's API types are generated from `web/openapi.json` when it is built (`web/scripts/gen-api.mjs`);
    /// that file must be the document this build serves at `/api/v1/openapi.json`. A stale file is rewritten
    /// here and the test fails, so the change is seen, rebuilt and committed.
    #[test]
    fn the_ui_types_come_from_the_served_document() {
        let (_, _, doc) = super::document();
        let json = doc.to_pretty_json().unwrap();
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/web/openapi.json");
        let on_disk = std::fs::read_to_string(path).unwrap_or_default();
        if on_disk.trim_end() != json.trim_end() {
            std::fs::write(path, format!("{json}\n")).unwrap();
            panic!("web/openapi.json did not match the API: it is rewritten now; rebuild the UI and commit the file");
        }
    }
}
