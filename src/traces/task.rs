//! The traces applier and task: `prepare` builds the OTLP/HTTP exporter for `tracing.otlp_endpoint` (a bad URL fails
//! the change, naming the key), `commit` hands it to the `traces` task and sets the sample ratio; the task sends the
//! queued spans in batches (at most [`BATCH`] spans, at least once a second), one batch at a time with a timeout,
//! and a batch the collector refuses is counted and dropped (the queue behind it stays bounded).

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::trace::SpanExporter as _;
use tokio::sync::watch;

use super::{Traces, TracesError};
use crate::config::live::Applier;
use crate::config::{Config, ConfigError, TracingConfig};
use crate::supervisor::TaskCtx;
use crate::util::Locked;

/// Spans per export request, at most.
pub(crate) const BATCH: usize = 512;
/// How long one export may take.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

/// An exporter and where it sends.
#[derive(Clone)]
pub(crate) struct Export {
    pub url: String,
    exporter: Arc<opentelemetry_otlp::SpanExporter>,
}

/// The URL spans are posted to: the endpoint's `/v1/traces` when it is a bare address, else the URL as given.
pub(crate) fn traces_url(endpoint: &str) -> String {
    match reqwest::Url::parse(endpoint) {
        Ok(u) if u.path() == "/" || u.path().is_empty() => format!("{}/v1/traces", endpoint.trim_end_matches('/')),
        _ => endpoint.to_string(),
    }
}

/// The exporter for `cfg`, or none when no endpoint is set.
pub(crate) fn build(cfg: &TracingConfig) -> Result<Option<Export>, TracesError> {
    if cfg.otlp_endpoint.is_empty() {
        return Ok(None);
    }
    let url = traces_url(&cfg.otlp_endpoint);
    // hearth's own reqwest (rustls, ring): no second HTTP client stack
    let client = reqwest::Client::builder()
        .timeout(EXPORT_TIMEOUT)
        .user_agent(concat!("hearth/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| TracesError::Exporter(e.to_string()))?;
    let mut exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_http_client(client)
        .with_endpoint(url.clone())
        .with_timeout(EXPORT_TIMEOUT)
        .build()
        .map_err(|e| TracesError::Exporter(e.to_string()))?;
    exporter.set_resource(&super::resource());
    Ok(Some(Export { url, exporter: Arc::new(exporter) }))
}

/// What `[tracing]` must pass beyond `validate`: the exporter builds.
pub(crate) fn check(cfg: &Config) -> Result<(), ConfigError> {
    build(&cfg.tracing).map(|_| ()).map_err(|e| ConfigError::invalid("tracing.otlp_endpoint", e.to_string()))
}

pub(crate) struct TracingApplier {
    traces: Arc<Traces>,
    export: watch::Sender<Option<Export>>,
    prepared: Mutex<Option<Option<Export>>>,
}

impl TracingApplier {
    pub(crate) fn new(traces: Arc<Traces>, export: watch::Sender<Option<Export>>) -> Self {
        TracingApplier { traces, export, prepared: Mutex::default() }
    }
}

impl Applier for TracingApplier {
    fn prepare(&self, old: &Config, new: &Config) -> Result<(), ConfigError> {
        // the exporter of the running endpoint stays (built at start or by an earlier change)
        if old.tracing.otlp_endpoint == new.tracing.otlp_endpoint {
            return Ok(());
        }
        let e = build(&new.tracing).map_err(|e| ConfigError::invalid("tracing.otlp_endpoint", e.to_string()))?;
        *self.prepared.locked() = Some(e);
        Ok(())
    }
    fn abort(&self, _old: &Config, _new: &Config) {
        self.prepared.locked().take();
    }
    fn commit(&self, _old: &Config, new: &Config) {
        if let Some(e) = self.prepared.locked().take() {
            self.traces.set_exporting(e.is_some());
            self.export.send_replace(e);
        }
        self.traces.set_ratio(new.tracing.sample_ratio);
    }
}

/// The `traces` task: send what the queue holds to the current exporter, a batch at a time.
pub(crate) async fn run(
    ctx: TaskCtx,
    traces: Arc<Traces>,
    mut export: watch::Receiver<Option<Export>>,
) -> anyhow::Result<()> {
    let mut rx = traces.queue.lock().await;
    traces.set_exporting(export.borrow().is_some());
    let mut batch = Vec::with_capacity(BATCH);
    let status = |ctx: &TaskCtx, e: &Option<Export>| match e {
        None => ctx.ready("no export (tracing.otlp_endpoint is empty); recent traces are kept for the UI"),
        Some(e) => ctx.ready(format!("exporting to {}", e.url)),
    };
    status(&ctx, &export.borrow_and_update());
    loop {
        tokio::select! {
            _ = ctx.shutdown.cancelled() => return Ok(()),
            r = export.changed() => {
                if r.is_err() {
                    return Ok(());
                }
                status(&ctx, &export.borrow_and_update());
                continue;
            }
            n = rx.recv_many(&mut batch, BATCH) => {
                if n == 0 {
                    return Ok(());
                }
            }
        }
        // a moment for the rest of a burst, so a busy second is one request
        if batch.len() < BATCH {
            tokio::time::sleep(Duration::from_millis(200)).await;
            while batch.len() < BATCH {
                match rx.try_recv() {
                    Ok(s) => batch.push(s),
                    Err(_) => break,
                }
            }
        }
        let current = export.borrow().clone();
        let Some(e) = current else {
            batch.clear(); // the export was turned off: what was queued for it goes
            continue;
        };
        let n = batch.len() as u64;
        let sent = tokio::time::timeout(
            EXPORT_TIMEOUT + Duration::from_secs(1),
            e.exporter.export(std::mem::take(&mut batch)),
        )
        .await;
        let c = traces.counters();
        match sent {
            Ok(Ok(())) => {
                c.exported.fetch_add(n, Ordering::Relaxed);
                metrics::counter!("hearth_traces_exported_spans_total").increment(n);
                status(&ctx, &Some(e));
            }
            Ok(Err(err)) => {
                c.failed.fetch_add(n, Ordering::Relaxed);
                metrics::counter!("hearth_traces_failed_spans_total").increment(n);
                ctx.degraded(format!("the collector at {}: {err}", e.url));
            }
            Err(_) => {
                c.failed.fetch_add(n, Ordering::Relaxed);
                metrics::counter!("hearth_traces_failed_spans_total").increment(n);
                ctx.degraded(format!("the collector at {} did not answer in {}s", e.url, EXPORT_TIMEOUT.as_secs()));
            }
        }
        metrics::gauge!("hearth_traces_dropped_spans").set(c.dropped.load(Ordering::Relaxed) as f64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_endpoint_gets_the_traces_path_unless_it_has_one() {
        assert_eq!(traces_url("http://collector:4318"), "http://collector:4318/v1/traces");
        assert_eq!(traces_url("http://collector:4318/"), "http://collector:4318/v1/traces");
        assert_eq!(traces_url("https://otel.example/otlp/v1/traces"), "https://otel.example/otlp/v1/traces");
        assert!(build(&TracingConfig::default()).unwrap().is_none());
        let e = build(&TracingConfig { otlp_endpoint: "http://127.0.0.1:4318".into(), sample_ratio: 1.0 }).unwrap();
        assert_eq!(e.unwrap().url, "http://127.0.0.1:4318/v1/traces");
    }
}
