//! Traces (issue 24): hearth's spans reach a real OTLP/HTTP collector (`tests/peers/otlp.py`, decoding with
//! opentelemetry-proto from PyPI) with their parent ids; the proxy continues a caller's `traceparent` and passes its
//! own on to the backend, which sees the upstream span as its parent; the trace id is in the access log; the
//! Traces API shows the span tree; a collector that refuses everything costs dropped spans, never a request.

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::{Instance, admin_session, free_port, wait_port};

struct Peer(std::process::Child);

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The collector and the backend; `refuse`: the collector answers 503 to every export.
fn peers(out: &std::path::Path, refuse: bool) -> (Peer, u16, u16) {
    let (collector, backend) = (free_port(), free_port());
    let python = std::env::var("HEARTH_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let mut cmd = Command::new(python);
    cmd.arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/peers/otlp.py")).args([
        collector.to_string(),
        backend.to_string(),
        out.display().to_string(),
    ]);
    if refuse {
        cmd.arg("refuse");
    }
    let p = Peer(cmd.spawn().expect("python with opentelemetry-proto"));
    wait_port(collector);
    wait_port(backend);
    (p, collector, backend)
}

fn route(backend: u16) -> String {
    format!(
        "[[proxy.routes]]\nhosts = [\"app.home.arpa\"]\nupstreams = [\"http://127.0.0.1:{backend}\"]\ntls = \"internal\"\n"
    )
}

/// A client of the proxied site over hearth's HTTPS with its internal CA.
fn site_client(inst: &Instance) -> reqwest::Client {
    let root = std::fs::read(inst.dir.path().join("data/ca/root.crt")).unwrap();
    reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&root).unwrap())
        .resolve("app.home.arpa", inst.https)
        .build()
        .unwrap()
}

fn spans(out: &std::path::Path) -> Vec<Value> {
    std::fs::read_to_string(out).unwrap_or_default().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

#[tokio::test]
async fn spans_reach_an_otlp_collector_and_the_backend_continues_the_trace() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("spans.jsonl");
    let (_peer, collector, backend) = peers(&out, false);
    let inst = Instance::start(&format!(
        "[tracing]\notlp_endpoint = \"http://127.0.0.1:{collector}\"\nsample_ratio = 1.0\n\n{}",
        route(backend)
    ))
    .await;
    // a caller that traces: its span is the parent of hearth's
    let caller_trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let caller_span = "00f067aa0ba902b7";
    let port = inst.https.port();
    let r = site_client(&inst)
        .get(format!("https://app.home.arpa:{port}/hello"))
        .header("traceparent", format!("00-{caller_trace}-{caller_span}-01"))
        .header("tracestate", "vendor=abc")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let seen: Value = r.json().await.unwrap();
    let tp = seen["traceparent"].as_str().expect("the backend got a traceparent");
    let parts: Vec<&str> = tp.split('-').collect();
    assert_eq!((parts[0], parts[1], parts[3]), ("00", caller_trace, "01"), "{tp}");
    assert_eq!(seen["tracestate"], "vendor=abc");
    assert!(seen["x-request-id"].as_str().is_some_and(|r| !r.is_empty()), "X-Request-Id is kept: {seen}");

    // the collector decoded both spans of the trace, with their parents
    let deadline = Instant::now() + Duration::from_secs(15);
    let (proxy, upstream) = loop {
        let got: Vec<Value> = spans(&out).into_iter().filter(|s| s["trace_id"] == caller_trace).collect();
        let find = |n: &str| got.iter().find(|s| s["name"] == n).cloned();
        if let (Some(p), Some(u)) = (find("proxy"), find("upstream")) {
            break (p, u);
        }
        assert!(Instant::now() < deadline, "no spans of the trace reached the collector: {:?}", spans(&out));
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(proxy["service"], "hearth");
    assert_eq!(proxy["path"], "/v1/traces");
    assert_eq!(proxy["content_type"], "application/x-protobuf");
    assert_eq!(proxy["parent_id"], caller_span, "the caller's span is the proxy span's parent");
    assert_eq!(upstream["parent_id"], proxy["span_id"]);
    assert_eq!(parts[2], upstream["span_id"].as_str().unwrap(), "the backend's parent is the upstream span");
    assert_eq!(proxy["attributes"]["url.path"], "/hello");
    assert_eq!(proxy["attributes"]["http.response.status_code"], 200);
    assert_eq!(proxy["attributes"]["request_id"], seen["x-request-id"]);
    assert_eq!(proxy["kind"], 2, "SPAN_KIND_SERVER");
    assert_eq!(upstream["kind"], 3, "SPAN_KIND_CLIENT");

    // the access log names the trace; the Traces API shows its tree
    let (admin, _) = admin_session(&inst).await;
    let log: Value = admin.get(inst.url("/api/v1/proxy/access-log")).send().await.unwrap().json().await.unwrap();
    let entry = log.as_array().unwrap().iter().find(|e| e["path"] == "/hello").expect("the request in the access log");
    assert_eq!(entry["trace_id"], caller_trace);
    let list: Value = admin.get(inst.url("/api/v1/traces")).send().await.unwrap().json().await.unwrap();
    let t = list["traces"].as_array().unwrap().iter().find(|t| t["trace_id"] == caller_trace).expect("kept");
    assert_eq!(
        (t["spans"].as_u64(), t["path"].as_str(), t["sampled"].as_bool()),
        (Some(2), Some("/hello"), Some(true))
    );
    let d: Value =
        admin.get(inst.url(&format!("/api/v1/traces/{caller_trace}"))).send().await.unwrap().json().await.unwrap();
    let names: Vec<&str> = d["span_list"].as_array().unwrap().iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["proxy", "upstream"], "{d}");
    let r = admin.get(inst.url("/api/v1/traces/0123")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    let r = reqwest::get(inst.url("/api/v1/traces")).await.unwrap();
    assert_eq!(r.status(), 401, "not without a session or a logs token");
}

#[tokio::test]
async fn a_collector_that_refuses_costs_spans_never_requests() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("spans.jsonl");
    let (_peer, collector, backend) = peers(&out, true);
    let inst = Instance::start(&format!(
        "[tracing]\notlp_endpoint = \"http://127.0.0.1:{collector}\"\nsample_ratio = 1.0\n\n{}",
        route(backend)
    ))
    .await;
    let c = site_client(&inst);
    let port = inst.https.port();
    for _ in 0..20 {
        let r = c.get(format!("https://app.home.arpa:{port}/x")).send().await.unwrap();
        assert_eq!(r.status(), 200);
    }
    let (admin, _) = admin_session(&inst).await;
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let v: Value = admin.get(inst.url("/api/v1/traces")).send().await.unwrap().json().await.unwrap();
        if v["failed"].as_u64().unwrap_or(0) >= 40 {
            assert_eq!(v["exported"], 0, "{v}");
            break;
        }
        assert!(Instant::now() < deadline, "the refused spans are counted: {v}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // the task says so on the status page, and the proxy still answers
    let st: Value = admin.get(inst.url("/api/v1/status")).send().await.unwrap().json().await.unwrap();
    let text = st.to_string();
    assert!(text.contains("the collector at http://127.0.0.1:"), "{text}");
    let r = c.get(format!("https://app.home.arpa:{port}/y")).send().await.unwrap();
    assert_eq!(r.status(), 200);
}
