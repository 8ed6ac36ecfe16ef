//! W3C trace context on HTTP (vocabulary): a caller's `traceparent`/`tracestate` become the parent of a request's
//! span, a span's context goes on to a backend in the same headers, and a span's trace id is readable for the
//! access log. Pure functions of headers and the current `tracing` span; the traces subsystem (`traces/`) records
//! and exports the spans, this module only moves their context.

use axum::http::HeaderMap;
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::TraceContextExt;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing_opentelemetry::OpenTelemetrySpanExt;

struct Get<'a>(&'a HeaderMap);

impl Extractor for Get<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }
    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

struct Put<'a>(&'a mut HeaderMap);

impl Injector for Put<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(k), Ok(v)) =
            (axum::http::HeaderName::from_bytes(key.as_bytes()), axum::http::HeaderValue::from_str(&value))
        {
            self.0.insert(k, v);
        }
    }
}

/// Make a caller's trace context (a valid `traceparent`, and its `tracestate`) the parent of `span`; a missing or
/// malformed header leaves the span a root.
pub(crate) fn adopt(span: &tracing::Span, headers: &HeaderMap) {
    if !headers.contains_key("traceparent") {
        return;
    }
    let cx = TraceContextPropagator::new().extract(&Get(headers));
    if cx.span().span_context().is_valid() {
        let _ = span.set_parent(cx);
    }
}

/// Put `span`'s context in `headers` (`traceparent`, `tracestate`), replacing what the client sent: the backend's
/// parent is hearth's span. Nothing when `span` is not traced.
pub(crate) fn pass_on(span: &tracing::Span, headers: &mut HeaderMap) {
    let cx = span.context();
    if !cx.span().span_context().is_valid() {
        return;
    }
    headers.remove("traceparent");
    headers.remove("tracestate");
    TraceContextPropagator::new().inject_context(&cx, &mut Put(headers));
}

/// `span`'s trace id (32 hex digits), when it is traced.
pub(crate) fn trace_id(span: &tracing::Span) -> Option<String> {
    let cx = span.context();
    let sc = cx.span().span_context().clone();
    sc.is_valid().then(|| sc.trace_id().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_traceparent_is_read_and_written_in_w3c_form() {
        let mut h = HeaderMap::new();
        h.insert("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".parse().unwrap());
        h.insert("tracestate", "vendor=x".parse().unwrap());
        let cx = TraceContextPropagator::new().extract(&Get(&h));
        let sc = cx.span().span_context().clone();
        assert!(sc.is_valid() && sc.is_sampled() && sc.is_remote());
        assert_eq!(sc.trace_id().to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
        let mut out = HeaderMap::new();
        TraceContextPropagator::new().inject_context(&cx, &mut Put(&mut out));
        assert_eq!(out["traceparent"], "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
        assert_eq!(out["tracestate"], "vendor=x");
        // malformed: no context, and a span outside any tracer has no trace id
        let mut bad = HeaderMap::new();
        bad.insert("traceparent", "00-zz-00f067aa0ba902b7-01".parse().unwrap());
        assert!(!TraceContextPropagator::new().extract(&Get(&bad)).span().span_context().is_valid());
        assert_eq!(trace_id(&tracing::Span::none()), None);
    }
}
