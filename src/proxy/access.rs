//! The access log (the last stage of a proxied request, [`Proxy::log_access`]): one `tracing` line and the route's
//! metrics per request, and the last [`ACCESS_KEPT`] requests in a ring for the UI ([`Proxy::access_log`]).
//!
//! Invariant: nothing is written to disk per request here; the ring is bounded and holds no bodies or headers.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::http::{Method, Request, Response};
use hyper::body::Incoming;

use super::route::{Route, RouteMetrics};
use super::{Proxy, canonical};
use crate::net::ConnInfo;
use crate::util::Locked;

/// Requests kept for the UI.
const ACCESS_KEPT: usize = 1000;

/// One line of the access log.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub(crate) struct AccessEntry {
    pub ts_ms: i64,
    pub request_id: String,
    /// the request's trace (32 hex digits; in the Traces page while it is kept)
    pub trace_id: String,
    pub route: String,
    pub client: String,
    pub method: String,
    pub host: String,
    pub path: String,
    pub status: u16,
    pub upstream: String,
    pub latency_ms: f64,
}

/// What the access log line needs of a request, taken when it enters [`Proxy::forward`] (before the request is
/// consumed).
pub(super) struct Started {
    at: Instant,
    method: Method,
    path: String,
    host: String,
    route: String,
    metrics: Arc<RouteMetrics>,
}

impl Started {
    pub(super) fn new(route: &Route, req: &Request<Incoming>, host: String) -> Started {
        Started {
            at: Instant::now(),
            method: req.method().clone(),
            path: req.uri().path().to_string(),
            host,
            route: route.name.clone(),
            metrics: route.metrics.clone(),
        }
    }
}

impl Proxy {
    /// Newest first, optionally only one route's, at most `limit`.
    pub(crate) fn access_log(&self, route: Option<&str>, limit: usize) -> Vec<AccessEntry> {
        let log = self.access.locked();
        log.iter().rev().filter(|e| route.is_none_or(|r| e.route == r)).take(limit).cloned().collect()
    }

    /// The last stage: the route's metrics, the access log line and the ring's entry for an answered request
    /// (`upstream`: the backend's URL, empty when no backend was asked).
    pub(super) fn log_access(
        &self,
        s: Started,
        conn: ConnInfo,
        resp: &Response<Body>,
        upstream: String,
        request_id: String,
    ) {
        let Started { at, method, path, host, route, metrics } = s;
        let status = resp.status().as_u16();
        let elapsed = at.elapsed().as_secs_f64();
        metrics.requests(status).increment(1);
        metrics.duration.record(elapsed);
        let trace_id = crate::tracecontext::trace_id(&tracing::Span::current()).unwrap_or_default();
        tracing::info!(
            trace_id,
            route = %route,
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
            request_id,
            trace_id,
            route,
            client: canonical(conn.peer.ip()).to_string(),
            method: method.to_string(),
            host,
            path,
            status,
            upstream,
            latency_ms: (elapsed * 10_000.0).round() / 10.0,
        });
    }

    fn remember(&self, e: AccessEntry) {
        let mut log = self.access.locked();
        if log.len() >= ACCESS_KEPT {
            log.pop_front();
        }
        log.push_back(e);
    }
}
