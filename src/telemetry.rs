//! Metrics and the dashboard's live series: the Prometheus recorder (the `metrics` facade), process statistics
//! read from `/proc`, and a bounded in-memory ring of recent samples (pure core) for the UI charts.
//!
//! Invariants: every metric hearth emits is described here (HELP text, unit-suffixed names, counters end in
//! `_total`), so `/metrics` passes `promtool check metrics`. The facade's recorder is process-wide by design; it is
//! installed once, from `app.rs`.

use std::collections::VecDeque;
use std::fmt::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use serde::Serialize;

pub(crate) const LATENCY_BUCKETS: &[f64] =
    &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];

/// Install the Prometheus recorder as the process's metrics recorder. Returns `None` if one is already installed
/// (only in tests that start several instances in one process).
pub(crate) fn install_recorder() -> Option<PrometheusHandle> {
    let recorder = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)
        .expect("non-empty buckets")
        .build_recorder();
    let handle = recorder.handle();
    metrics::set_global_recorder(recorder).ok()?;
    describe();
    Some(handle)
}

fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!("hearth_http_requests_total", "HTTP requests answered, by route, method and status.");
    describe_counter!(
        "hearth_http_connections_refused_total",
        "HTTP(S) connections closed at accept: over server.max_connections or max_connections_per_client."
    );
    describe_counter!("hearth_panics_total", "Panics caught (a request answered 500), by where they happened.");
    describe_histogram!(
        "hearth_http_request_duration_seconds",
        Unit::Seconds,
        "Time to answer an HTTP request, by route and method."
    );
    describe_gauge!("hearth_subsystem_state", "1 for the state each subsystem is in, 0 for the others.");
    describe_counter!("hearth_proxy_requests_total", "Proxied requests, by route and status.");
    describe_histogram!(
        "hearth_proxy_request_duration_seconds",
        Unit::Seconds,
        "Time from a proxied request to its response headers, by route."
    );
    describe_gauge!("hearth_proxy_upstream_healthy", "1 when a backend passes its active health check, else 0.");
    describe_counter!(
        "hearth_memory_embed_requests_total",
        "Embedding calls answered (OpenAI, TEI, documents, queries)."
    );
    describe_counter!("hearth_memory_embed_inputs_total", "Texts embedded or answered from the cache.");
    describe_counter!("hearth_memory_embed_tokens_total", "Tokens run through the embedding model.");
    describe_histogram!(
        "hearth_memory_embed_duration_seconds",
        Unit::Seconds,
        "Time to embed one call's inputs, queue wait included."
    );
    describe_histogram!("hearth_memory_batch_size", "Inputs per forward pass of the embedding model.");
    describe_histogram!(
        "hearth_memory_queue_wait_seconds",
        Unit::Seconds,
        "Time a request waited for the batcher before its batch ran."
    );
    describe_counter!("hearth_memory_cache_hits_total", "Embeddings answered from the LRU cache.");
    describe_counter!("hearth_memory_cache_misses_total", "Embeddings the model had to compute.");
    describe_gauge!("hearth_memory_model_ready", "1 when the embedding model is loaded and serving, else 0.");
    describe_histogram!(
        "hearth_memory_query_duration_seconds",
        Unit::Seconds,
        "Collection queries, by kind (vector or hybrid)."
    );
    describe_histogram!("hearth_memory_write_duration_seconds", Unit::Seconds, "Collection upserts.");
    describe_counter!("hearth_memory_documents_upserted_total", "Documents inserted or replaced.");
    describe_counter!("hearth_memory_collections_created_total", "Collections created.");
    describe_counter!("hearth_memory_index_builds_total", "Approximate vector indexes built.");
    describe_counter!("hearth_memory_ram_index_builds_total", "In-memory vector indexes built or retrained.");
    describe_counter!("hearth_memory_ram_index_queries_total", "Vector queries answered by an in-memory index.");
    describe_gauge!("hearth_memory_ram_index_bytes", "Memory held by a collection's in-memory vector index.");
    describe_gauge!("hearth_memory_collection_rows", "Rows per collection (updated by the upkeep task).");
    describe_gauge!("hearth_proxy_upstream_active_requests", "Requests (and open upgraded connections) per backend.");
    describe_counter!("hearth_tls_handshakes_total", "TLS handshakes started, by whether the client sent SNI.");
    describe_counter!("hearth_tls_internal_issued_total", "Certificates issued by the internal CA.");
    describe_gauge!(
        "hearth_tls_certificate_expiry_timestamp_seconds",
        "Expiry (Unix time) of each ACME certificate, by name."
    );
    describe_counter!("hearth_acme_orders_total", "ACME orders, by outcome (issued, failed).");
    describe_counter!("hearth_subsystem_restarts_total", "Restarts of a subsystem after a failure.");
    describe_counter!("hearth_login_attempts_total", "Admin login attempts, by result.");
    describe_gauge!("hearth_build_info", "Always 1; labels carry the version, commit and build date.");
    describe_counter!("hearth_config_reloads_total", "Configuration reloads and API changes, by result.");
    describe_counter!("hearth_dns_queries_total", "DNS queries answered, by outcome.");
    describe_histogram!("hearth_dns_query_duration_seconds", Unit::Seconds, "Time to answer a DNS query, by outcome.");
    describe_counter!("hearth_dns_cache_total", "DNS cache lookups, by result (hit, miss).");
    describe_counter!(
        "hearth_dns_dnssec_total",
        "DNSSEC verdicts on forwarded answers, by result (secure, insecure, bogus)."
    );
    describe_gauge!("hearth_dns_cache_entries", "Answers in the DNS cache.");
    describe_counter!("hearth_dns_prefetch_total", "Cached answers refreshed before they expired (prefetch).");
    describe_gauge!("hearth_dns_list_rules", "Rules in the compiled block/allow lists, by kind.");
    describe_histogram!(
        "hearth_dns_upstream_duration_seconds",
        Unit::Seconds,
        "Time an upstream took to answer, by upstream."
    );
    describe_counter!("hearth_dns_upstream_failures_total", "Upstream exchanges that failed, by upstream.");
    describe_gauge!("hearth_dns_upstream_healthy", "1 while an upstream answers, 0 after three failures in a row.");
    describe_counter!("hearth_dns_querylog_written_total", "Query log entries written to the database.");
    describe_counter!("hearth_dns_list_downloads_total", "List downloads (including not-modified checks), by result.");
    describe_counter!(
        "hearth_dns_querylog_dropped_total",
        "Query log entries dropped because the writer fell behind (answering never waits for the log)."
    );
    describe_gauge!("hearth_metrics_collect_duration_seconds", Unit::Seconds, "Time the last collection round took.");
    describe_gauge!(
        "hearth_metrics_collected_samples",
        "Samples the last collection round stored (host, services, hearth)."
    );
    describe_gauge!("hearth_logs_queued_lines", "Log lines waiting for the log store's next write.");
    describe_counter!("hearth_logs_syslog_messages_total", "Syslog messages received, by transport.");
    describe_counter!("hearth_logs_push_lines_total", "Lines received on the Loki push API.");
    describe_counter!("hearth_logs_docker_lines_total", "Lines read from Docker containers' output.");
    describe_counter!("hearth_traces_exported_spans_total", "Spans the OTLP collector accepted.");
    describe_counter!(
        "hearth_traces_failed_spans_total",
        "Spans in batches the OTLP collector refused or did not answer."
    );
    describe_gauge!("hearth_traces_dropped_spans", "Spans dropped since the start because the export queue was full.");
    describe_gauge!(
        "hearth_logs_tap_dropped_events",
        "hearth's own log events dropped before the log store because its tap was full."
    );
    describe_counter!("hearth_metrics_scrapes_total", "Scrapes of [[metrics.scrape]] targets, by job and result.");
    describe_counter!(
        "hearth_metrics_remote_write_samples_total",
        "Samples a remote-write receiver accepted, by receiver."
    );
    describe_counter!("hearth_metrics_remote_write_failures_total", "Remote-write rounds that failed, by receiver.");
    metrics::gauge!(
        "hearth_build_info",
        "version" => env!("CARGO_PKG_VERSION"),
        "commit" => crate::BUILD_COMMIT,
        "build_date" => crate::BUILD_DATE
    )
    .set(1.0);
}

/// Process statistics from `/proc/self`.
#[derive(Debug, Clone, Copy, Default, Serialize, utoipa::ToSchema)]
pub(crate) struct ProcessStats {
    pub rss_bytes: u64,
    pub virtual_bytes: u64,
    pub cpu_seconds: f64,
    pub open_fds: u64,
    pub max_fds: u64,
    pub threads: u64,
    pub start_time_seconds: f64,
}

impl ProcessStats {
    pub(crate) fn read() -> ProcessStats {
        let mut s = ProcessStats::default();
        let ticks = 100.0; // USER_HZ on Linux
        let page = 4096u64;
        if let Ok(stat) = std::fs::read_to_string("/proc/self/stat")
            && let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r)
        {
            // fields after the command name, starting with field 3 (state)
            let f: Vec<&str> = rest.split_whitespace().collect();
            let num = |i: usize| f.get(i - 3).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
            s.cpu_seconds = (num(14) + num(15)) as f64 / ticks;
            s.threads = num(20);
            s.virtual_bytes = num(23);
            s.rss_bytes = num(24) * page;
            let boot = std::fs::read_to_string("/proc/stat")
                .ok()
                .and_then(|t| {
                    t.lines().find_map(|l| l.strip_prefix("btime ").and_then(|v| v.trim().parse::<u64>().ok()))
                })
                .unwrap_or(0);
            s.start_time_seconds = boot as f64 + num(22) as f64 / ticks;
        }
        s.open_fds = std::fs::read_dir("/proc/self/fd").map(|d| d.count() as u64).unwrap_or(0);
        s.max_fds = std::fs::read_to_string("/proc/self/limits")
            .ok()
            .and_then(|t| {
                t.lines()
                    .find(|l| l.starts_with("Max open files"))
                    .and_then(|l| l.split_whitespace().nth(3).and_then(|v| v.parse().ok()))
            })
            .unwrap_or(0);
        s
    }

    /// The standard `process_*` metrics, in Prometheus text format.
    pub(crate) fn render(&self, out: &mut String) {
        let mut m = |name: &str, kind: &str, help: &str, v: f64| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}");
        };
        m("process_cpu_seconds_total", "counter", "Total user and system CPU time spent in seconds.", self.cpu_seconds);
        m("process_resident_memory_bytes", "gauge", "Resident memory size in bytes.", self.rss_bytes as f64);
        m("process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes.", self.virtual_bytes as f64);
        m("process_open_fds", "gauge", "Number of open file descriptors.", self.open_fds as f64);
        m("process_max_fds", "gauge", "Maximum number of open file descriptors.", self.max_fds as f64);
        m("process_threads", "gauge", "Number of OS threads in the process.", self.threads as f64);
        m(
            "process_start_time_seconds",
            "gauge",
            "Start time of the process since unix epoch in seconds.",
            self.start_time_seconds,
        );
    }
}

/// Counts requests for the dashboard's rate chart (the Prometheus counter cannot be read back).
#[derive(Clone, Default)]
pub(crate) struct RequestCounter(Arc<AtomicU64>);

impl RequestCounter {
    pub(crate) fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

#[derive(Debug, Clone, Copy, Serialize, PartialEq, utoipa::ToSchema)]
pub(crate) struct Sample {
    /// Unix time of the sample, seconds.
    pub t: i64,
    pub rss_bytes: u64,
    /// CPU use since the previous sample, percent of one core.
    pub cpu_percent: f64,
    /// HTTP requests per second since the previous sample.
    pub requests_per_second: f64,
}

/// A bounded ring of samples (pure: inputs in, derived rates out).
#[derive(Debug)]
pub(crate) struct Series {
    cap: usize,
    samples: VecDeque<Sample>,
    last: Option<(i64, f64, u64)>,
}

impl Series {
    pub(crate) fn new(cap: usize) -> Self {
        Series { cap, samples: VecDeque::with_capacity(cap), last: None }
    }

    /// Record raw readings taken at `t_ms` (milliseconds): cumulative CPU seconds and request count.
    pub(crate) fn push(&mut self, t_ms: i64, rss_bytes: u64, cpu_seconds: f64, requests: u64) {
        if let Some((t0, cpu0, req0)) = self.last {
            let dt = (t_ms - t0) as f64 / 1000.0;
            if dt > 0.0 {
                let s = Sample {
                    t: t_ms / 1000,
                    rss_bytes,
                    cpu_percent: ((cpu_seconds - cpu0).max(0.0) / dt * 100.0 * 10.0).round() / 10.0,
                    requests_per_second: (requests.saturating_sub(req0) as f64 / dt * 100.0).round() / 100.0,
                };
                if self.samples.len() == self.cap {
                    self.samples.pop_front();
                }
                self.samples.push_back(s);
            }
        }
        self.last = Some((t_ms, cpu_seconds, requests));
    }

    pub(crate) fn samples(&self) -> Vec<Sample> {
        self.samples.iter().copied().collect()
    }
}

/// `/metrics`: the recorder's metrics followed by the process metrics.
pub(crate) fn render(handle: Option<&PrometheusHandle>) -> String {
    let mut out = handle.map(|h| h.render()).unwrap_or_default();
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
    ProcessStats::read().render(&mut out);
    out
}

/// How often the dashboard's process samples are taken.
pub(crate) const SAMPLE_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// The `metrics` task: a process sample for the dashboard every [`SAMPLE_EVERY`], and the recorder's upkeep.
pub(crate) async fn sampler(
    ctx: crate::supervisor::TaskCtx,
    series: Arc<std::sync::Mutex<Series>>,
    requests: RequestCounter,
    handle: Option<PrometheusHandle>,
) -> anyhow::Result<()> {
    ctx.ready(format!("sampling every {}s", SAMPLE_EVERY.as_secs()));
    let mut tick = tokio::time::interval(SAMPLE_EVERY);
    loop {
        tokio::select! {
            _ = ctx.shutdown.cancelled() => return Ok(()),
            _ = tick.tick() => {}
        }
        let p = tokio::task::spawn_blocking(ProcessStats::read).await?;
        let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_millis() as i64;
        crate::util::Locked::locked(&*series).push(now_ms, p.rss_bytes, p.cpu_seconds, requests.get());
        if let Some(h) = &handle {
            h.run_upkeep();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_derives_rates_and_stays_bounded() {
        let mut s = Series::new(3);
        s.push(0, 100, 1.0, 10);
        assert!(s.samples().is_empty(), "first reading is a baseline");
        s.push(5000, 200, 1.5, 60);
        assert_eq!(s.samples(), [Sample { t: 5, rss_bytes: 200, cpu_percent: 10.0, requests_per_second: 10.0 }]);
        for i in 2..10 {
            s.push(i * 5000, 300, 1.5, 60);
        }
        assert_eq!(s.samples().len(), 3);
        assert_eq!(s.samples()[2].t, 45);
        assert_eq!(s.samples()[2].requests_per_second, 0.0);
        // a clock that stands still produces no sample
        s.push(45_000, 1, 9.0, 99);
        assert_eq!(s.samples()[2].t, 45);
    }

    #[test]
    fn process_stats_are_plausible() {
        let p = ProcessStats::read();
        assert!(p.rss_bytes > 1_000_000);
        assert!(p.open_fds >= 3);
        assert!(p.threads >= 1);
        assert!(p.start_time_seconds > 1.6e9);
        let mut out = String::new();
        p.render(&mut out);
        assert!(out.contains("# TYPE process_cpu_seconds_total counter\n"));
    }
}
