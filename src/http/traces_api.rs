//! The traces routes: the ring of recent traces (`GET /api/v1/traces`, with the exporter's counters) and one trace's
//! spans (`GET /api/v1/traces/{trace_id}`), for the Traces page. Both take an admin session or a token with the
//! `logs` scope (traces are read like logs: paths, request ids, timings).

use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

use super::auth::LogsAuth;
use super::error::{ApiError, ErrorBody};
use super::{AppState, TracesApi};
use crate::traces::ring::{SpanRec, Trace};

pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list_traces)).routes(routes!(get_trace))
}

/// A kept trace, without its spans.
#[derive(Serialize, ToSchema)]
struct TraceSummary {
    /// 32 hex digits
    trace_id: String,
    /// the root span's name (`request`, `proxy`)
    root: String,
    /// the root's `http.request.method`, `url.path`, `server.address`, `http.response.status_code` and
    /// `request_id`, when it has them
    method: Option<String>,
    path: Option<String>,
    host: Option<String>,
    status: Option<String>,
    request_id: Option<String>,
    /// Unix time, ms
    start_ms: f64,
    duration_ms: f64,
    spans: usize,
    error: bool,
    /// sampled (and so exported when an OTLP endpoint is set)
    sampled: bool,
}

fn summary(t: &Trace) -> TraceSummary {
    TraceSummary {
        trace_id: format!("{:032x}", t.trace_id),
        root: t.root.to_string(),
        method: t.attr("http.request.method"),
        path: t.attr("url.path"),
        host: t.attr("server.address"),
        status: t.attr("http.response.status_code"),
        request_id: t.attr("request_id"),
        start_ms: t.start_ns as f64 / 1e6,
        duration_ms: t.duration_ns as f64 / 1e6,
        spans: t.spans.len(),
        error: t.error,
        sampled: t.sampled,
    }
}

/// One span of a trace.
#[derive(Serialize, ToSchema)]
struct SpanView {
    /// 16 hex digits
    span_id: String,
    /// empty for a root without a parent; a parent in another process (a caller's `traceparent`) is kept
    parent_id: String,
    name: String,
    /// from the trace's start, ms
    offset_ms: f64,
    duration_ms: f64,
    attributes: Vec<(String, String)>,
    error: bool,
}

fn span_view(s: &SpanRec, t0: i64) -> SpanView {
    SpanView {
        span_id: format!("{:016x}", s.span_id),
        parent_id: if s.parent_id == 0 { String::new() } else { format!("{:016x}", s.parent_id) },
        name: s.name.to_string(),
        offset_ms: (s.start_ns - t0) as f64 / 1e6,
        duration_ms: (s.end_ns - s.start_ns) as f64 / 1e6,
        attributes: s
            .attributes
            .iter()
            // tracing-opentelemetry's bookkeeping, not the request's
            .filter(|kv| !kv.key.as_str().starts_with("busy_ns") && !kv.key.as_str().starts_with("idle_ns"))
            .map(|kv| (kv.key.to_string(), kv.value.to_string()))
            .collect(),
        error: s.error,
    }
}

/// The kept traces and the exporter's counters.
#[derive(Serialize, ToSchema)]
struct TraceList {
    traces: Vec<TraceSummary>,
    /// spans sent to the collector, dropped (its queue full) and in refused batches, since the start
    exported: u64,
    dropped: u64,
    failed: u64,
    queued: usize,
    /// traces whose root never ended before newer ones pushed them out
    abandoned: u64,
    /// traces whose root has not ended yet
    pending: usize,
}

#[derive(Deserialize, IntoParams)]
struct ListParams {
    /// `errors` (only traces with an error), `slow` (slowest first) or `recent` (the default, newest first)
    show: Option<String>,
    /// at most this many (default 100)
    limit: Option<usize>,
}

/// The ring of recent traces: the newest, the slowest and the errored ones, each group bounded.
#[utoipa::path(get, path = "/api/v1/traces", tag = "traces", params(ListParams),
    responses((status = 200, description = "kept traces", body = TraceList),
              (status = 401, description = "not signed in", body = ErrorBody),
              (status = 403, description = "`insufficient_scope`", body = ErrorBody)),
    security(("session" = []), ("token" = ["logs"])))]
async fn list_traces(_a: LogsAuth, State(api): State<TracesApi>, Query(p): Query<ListParams>) -> Response {
    use std::sync::atomic::Ordering::Relaxed;
    let limit = p.limit.unwrap_or(100).min(1000);
    let (mut traces, abandoned, pending) =
        api.traces.with_ring(|r| (r.traces().into_iter().map(summary).collect::<Vec<_>>(), r.abandoned, r.pending()));
    match p.show.as_deref() {
        Some("errors") => traces.retain(|t| t.error),
        Some("slow") => traces.sort_by(|a, b| b.duration_ms.total_cmp(&a.duration_ms)),
        _ => {}
    }
    traces.truncate(limit);
    let c = api.traces.counters();
    axum::Json(TraceList {
        traces,
        exported: c.exported.load(Relaxed),
        dropped: c.dropped.load(Relaxed),
        failed: c.failed.load(Relaxed),
        queued: api.traces.queued(),
        abandoned,
        pending,
    })
    .into_response()
}

/// A trace with its spans, in start order.
#[derive(Serialize, ToSchema)]
struct TraceDetail {
    #[serde(flatten)]
    summary: TraceSummary,
    span_list: Vec<SpanView>,
    /// spans past the per-trace bound that were not kept
    dropped_spans: usize,
}

/// One kept trace, span by span.
#[utoipa::path(get, path = "/api/v1/traces/{trace_id}", tag = "traces",
    params(("trace_id" = String, Path, description = "32 hex digits")),
    responses((status = 200, description = "the trace", body = TraceDetail),
              (status = 400, description = "`invalid_trace_id`: not 32 hex digits", body = ErrorBody),
              (status = 404, description = "`not_found`: no longer kept (or never seen)", body = ErrorBody),
              (status = 401, description = "not signed in", body = ErrorBody),
              (status = 403, description = "`insufficient_scope`", body = ErrorBody)),
    security(("session" = []), ("token" = ["logs"])))]
async fn get_trace(_a: LogsAuth, State(api): State<TracesApi>, Path(id): Path<String>) -> Response {
    let Ok(tid) = u128::from_str_radix(&id, 16) else {
        return ApiError::bad_request("invalid_trace_id", "a trace id is 32 hex digits").into_response();
    };
    let found = api.traces.with_ring(|r| {
        r.get(tid).map(|t| TraceDetail {
            summary: summary(t),
            span_list: t.spans.iter().map(|s| span_view(s, t.start_ns)).collect(),
            dropped_spans: t.dropped_spans,
        })
    });
    match found {
        Some(d) => axum::Json(d).into_response(),
        None => ApiError::not_found(format!("trace {id} is not kept (any more)")).into_response(),
    }
}
