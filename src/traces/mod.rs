//! Traces (Jaeger for a homelab): hearth's `tracing` spans become OpenTelemetry spans (through
//! `tracing-opentelemetry`, installed by `logging`), every finished trace goes to an in-memory ring shown in the UI,
//! and the sampled ones are exported over OTLP/HTTP when `tracing.otlp_endpoint` is set.
//!
//! Layout: the pure core in `ring.rs` (gathering spans per trace, keeping the recent, slowest and errored ones) and
//! the sampling decision below ([`sampled`]); the IO shell in `task.rs` (the applier that builds the exporter, and
//! the `traces` task that sends batches). The span context on HTTP (W3C `traceparent`) is the vocabulary module
//! `tracecontext`, used by the proxy and the admin API.
//!
//! Invariants: recording a span never blocks and never waits for the collector — finished sampled spans go to a
//! bounded queue ([`MAX_QUEUE`]) and past it they are dropped and counted; the ring's memory is bounded whatever
//! the traffic (`ring.rs`); a caller's sampled `traceparent` is followed (its trace is sampled here too).

pub(crate) mod ring;
pub(crate) mod task;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use opentelemetry::trace::{Link, SamplingDecision, SamplingResult, SpanId, SpanKind, TraceContextExt, TraceId};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{ShouldSample, SpanData, SpanProcessor};

use crate::util::Locked;
use ring::{Ring, SpanRec};

/// Paths whose traces the ring skips (health probes and metric scrapes; they are still exported when sampled).
const PROBES: &[&str] = &["/healthz", "/readyz", "/metrics"];

/// A probe, a scrape, or the Traces page reading the ring (looking at traces would fill it with itself).
fn is_probe(path: &str) -> bool {
    PROBES.contains(&path) || path.starts_with("/api/v1/traces")
}

/// Finished sampled spans waiting for the exporter, at most.
pub(crate) const MAX_QUEUE: usize = 4096;

#[derive(Debug, thiserror::Error)]
pub(crate) enum TracesError {
    #[error("the OTLP exporter: {0}")]
    Exporter(String),
}

/// Counters shown in the UI and on `/metrics`.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub exported: AtomicU64,
    /// dropped because the queue was full (the collector slow or down)
    pub dropped: AtomicU64,
    /// in batches the collector refused or did not answer
    pub failed: AtomicU64,
}

/// What the tracer's processor and sampler share with the task and the API.
#[derive(Debug)]
struct Shared {
    ring: Mutex<Ring>,
    /// `tracing.sample_ratio` as f64 bits
    ratio: AtomicU64,
    /// an exporter is configured: sampled spans are queued for it
    exporting: AtomicBool,
    queue: tokio::sync::mpsc::Sender<SpanData>,
    counters: Counters,
}

/// The traces subsystem's state: the ring, the export queue and the tracer that feeds them.
pub(crate) struct Traces {
    shared: Arc<Shared>,
    queue: tokio::sync::Mutex<tokio::sync::mpsc::Receiver<SpanData>>,
    provider: opentelemetry_sdk::trace::SdkTracerProvider,
}

impl Traces {
    pub(crate) fn new(cfg: &crate::config::TracingConfig) -> Arc<Traces> {
        let (tx, rx) = tokio::sync::mpsc::channel(MAX_QUEUE);
        let shared = Arc::new(Shared {
            ring: Mutex::default(),
            ratio: AtomicU64::new(cfg.sample_ratio.to_bits()),
            exporting: AtomicBool::new(false),
            queue: tx,
            counters: Counters::default(),
        });
        let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
            .with_sampler(Sampler(shared.clone()))
            .with_span_processor(Processor(shared.clone()))
            .with_resource(resource())
            .build();
        Arc::new(Traces { shared, queue: tokio::sync::Mutex::new(rx), provider })
    }

    /// The tracer `logging` installs under `tracing`.
    pub(crate) fn tracer(&self) -> opentelemetry_sdk::trace::SdkTracer {
        use opentelemetry::trace::TracerProvider as _;
        self.provider.tracer("hearth")
    }

    pub(crate) fn set_ratio(&self, ratio: f64) {
        self.shared.ratio.store(ratio.clamp(0.0, 1.0).to_bits(), Ordering::Relaxed);
    }

    fn set_exporting(&self, on: bool) {
        self.shared.exporting.store(on, Ordering::Relaxed);
    }

    pub(crate) fn counters(&self) -> &Counters {
        &self.shared.counters
    }

    /// The kept traces (newest first) through `f`, under the ring's lock.
    pub(crate) fn with_ring<T>(&self, f: impl FnOnce(&Ring) -> T) -> T {
        f(&self.shared.ring.locked())
    }

    pub(crate) fn queued(&self) -> usize {
        MAX_QUEUE - self.shared.queue.capacity()
    }
}

/// The resource every exported span carries: `service.name = "hearth"`, its version and the host.
pub(crate) fn resource() -> opentelemetry_sdk::Resource {
    opentelemetry_sdk::Resource::builder()
        .with_service_name("hearth")
        .with_attributes([
            KeyValue::new("service.version", env!("CARGO_PKG_VERSION")),
            KeyValue::new("host.name", crate::util::host_name()),
        ])
        .build()
}

/// Whether a trace is sampled (pure): a parent's decision is followed (`parent`: whether there is a valid parent
/// and it was sampled); a new trace is sampled when the low 63 bits of its id fall under `ratio` of their range —
/// OpenTelemetry's `TraceIdRatioBased`, so every process on the trace agrees.
pub(crate) fn sampled(parent: Option<bool>, trace_id: u128, ratio: f64) -> bool {
    if let Some(p) = parent {
        return p;
    }
    if ratio >= 1.0 {
        return true;
    }
    let bound = (ratio.max(0.0) * (1u64 << 63) as f64) as u64;
    let low = (trace_id as u64) >> 1;
    low < bound
}

/// The tracer's sampler: every span is recorded (the ring sees every trace, errored and slow ones included); the
/// sampled ones are also exported.
#[derive(Debug, Clone)]
struct Sampler(Arc<Shared>);

impl ShouldSample for Sampler {
    fn should_sample(
        &self,
        parent: Option<&Context>,
        trace_id: TraceId,
        _name: &str,
        _kind: &SpanKind,
        _attributes: &[KeyValue],
        _links: &[Link],
    ) -> SamplingResult {
        let parent_sc = parent.filter(|c| c.has_active_span()).map(|c| c.span().span_context().clone());
        let parent_valid = parent_sc.as_ref().filter(|sc| sc.is_valid());
        let ratio = f64::from_bits(self.0.ratio.load(Ordering::Relaxed));
        let yes = sampled(parent_valid.map(|sc| sc.is_sampled()), u128::from_be_bytes(trace_id.to_bytes()), ratio);
        SamplingResult {
            decision: if yes { SamplingDecision::RecordAndSample } else { SamplingDecision::RecordOnly },
            attributes: vec![],
            trace_state: parent_valid.map(|sc| sc.trace_state().clone()).unwrap_or_default(),
        }
    }
}

/// The tracer's span processor: each finished span to the ring, and (sampled, with an exporter) to the queue.
#[derive(Debug)]
struct Processor(Arc<Shared>);

fn unix_ns(t: SystemTime) -> i64 {
    t.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as i64)
}

impl SpanProcessor for Processor {
    fn on_start(&self, _span: &mut opentelemetry_sdk::trace::Span, _cx: &Context) {}

    fn on_end(&self, span: SpanData) {
        let sc = &span.span_context;
        let sampled = sc.is_sampled();
        let trace_id = u128::from_be_bytes(sc.trace_id().to_bytes());
        let parent = u64::from_be_bytes(span.parent_span_id.to_bytes());
        let root = span.parent_span_id == SpanId::INVALID || span.parent_span_is_remote;
        let rec = SpanRec {
            span_id: u64::from_be_bytes(sc.span_id().to_bytes()),
            parent_id: parent,
            name: span.name.clone(),
            start_ns: unix_ns(span.start_time),
            end_ns: unix_ns(span.end_time),
            attributes: span.attributes.clone(),
            error: matches!(span.status, opentelemetry::trace::Status::Error { .. }),
        };
        // probes and scrapes would push every request worth seeing out of the ring
        let probe =
            root && rec.attributes.iter().any(|kv| kv.key.as_str() == "url.path" && is_probe(&kv.value.as_str()));
        if sampled && self.0.exporting.load(Ordering::Relaxed) && self.0.queue.try_send(span).is_err() {
            self.0.counters.dropped.fetch_add(1, Ordering::Relaxed);
        }
        if !probe {
            self.0.ring.locked().add(trace_id, rec, root, sampled);
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        Ok(())
    }

    fn shutdown_with_timeout(&self, _timeout: Duration) -> OTelSdkResult {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sampling_follows_the_parent_else_the_trace_ids_ratio() {
        assert!(sampled(Some(true), 0, 0.0), "a sampled caller is followed");
        assert!(!sampled(Some(false), u128::MAX, 1.0), "so is an unsampled one");
        assert!(sampled(None, u128::MAX, 1.0));
        assert!(!sampled(None, 0, 0.0));
        // about the ratio over many ids, and the same answer for the same id
        let ids = (0..10_000u128).map(|i| i.wrapping_mul(0x9E37_79B9_7F4A_7C15_F39C_C060_5CED_C835));
        let n = ids.clone().filter(|&id| sampled(None, id, 0.1)).count();
        assert!((800..1200).contains(&n), "{n} of 10000 at 0.1");
        assert!(ids.clone().all(|id| sampled(None, id, 0.1) == sampled(None, id, 0.1)));
    }

    #[tokio::test]
    async fn spans_reach_the_ring_and_sampled_ones_the_queue() {
        use tracing_subscriber::layer::SubscriberExt;
        let traces = Traces::new(&crate::config::TracingConfig { otlp_endpoint: String::new(), sample_ratio: 1.0 });
        traces.set_exporting(true);
        let sub = tracing_subscriber::registry().with(tracing_opentelemetry::layer().with_tracer(traces.tracer()));
        tracing::subscriber::with_default(sub, || {
            let root = tracing::info_span!("proxy", request_id = "r1", otel.status_code = "ERROR");
            root.in_scope(|| {
                let _child = tracing::info_span!("upstream").entered();
            });
        });
        let (n, error, names) = traces.with_ring(|r| {
            let t = r.traces();
            (t.len(), t[0].error, t[0].spans.iter().map(|s| s.name.to_string()).collect::<Vec<_>>())
        });
        assert_eq!((n, error), (1, true));
        assert_eq!(names, ["proxy", "upstream"]);
        assert_eq!(traces.queued(), 2, "both sampled spans wait for the exporter");
        // at ratio 0 they are recorded for the ring, not queued
        traces.set_ratio(0.0);
        tracing::subscriber::with_default(
            tracing_subscriber::registry().with(tracing_opentelemetry::layer().with_tracer(traces.tracer())),
            || drop(tracing::info_span!("proxy").entered()),
        );
        assert_eq!(traces.with_ring(|r| r.traces().len()), 2);
        assert_eq!(traces.queued(), 2);
    }
}
