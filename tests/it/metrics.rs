//! Metrics history (issue 23): a fixture exporter scraped by both hearth and a real Prometheus (Debian's
//! `prometheus`), a table of PromQL expressions compared value by value between the two, `promtool query` against
//! hearth as a second real client, the API's auth and errors, and a bad target that costs only itself.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;

use crate::common::{Instance, expect_error, free_port, token};

/// Counters that grow linearly with the wall clock (so two scrapers at different instants agree on every rate),
/// constant gauges, and a histogram.
fn exposition() -> String {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs_f64();
    let c = |per_s: f64| (now * per_s).floor();
    format!(
        "# HELP fixture_requests_total Requests.\n# TYPE fixture_requests_total counter\n\
         fixture_requests_total{{code=\"200\",path=\"/a\"}} {}\n\
         fixture_requests_total{{code=\"500\",path=\"/a\"}} {}\n\
         fixture_requests_total{{code=\"200\",path=\"/b\"}} {}\n\
         # TYPE fixture_temperature_celsius gauge\n\
         fixture_temperature_celsius{{sensor=\"cpu\"}} 51.5\n\
         fixture_temperature_celsius{{sensor=\"ssd\"}} 40\n\
         # TYPE fixture_latency_seconds histogram\n\
         fixture_latency_seconds_bucket{{le=\"0.1\"}} {}\n\
         fixture_latency_seconds_bucket{{le=\"0.5\"}} {}\n\
         fixture_latency_seconds_bucket{{le=\"1\"}} {}\n\
         fixture_latency_seconds_bucket{{le=\"+Inf\"}} {}\n\
         fixture_latency_seconds_sum {}\n\
         fixture_latency_seconds_count {}\n",
        c(100.0),
        c(10.0),
        c(40.0),
        c(30.0),
        c(80.0),
        c(90.0),
        c(100.0),
        c(25.0),
        c(100.0),
    )
}

/// A minimal HTTP server answering every request with `body()`.
fn serve(body: fn() -> String) -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            std::thread::spawn(move || {
                let mut s = s;
                let mut r = BufReader::new(s.try_clone().unwrap());
                let mut line = String::new();
                while r.read_line(&mut line).is_ok_and(|n| n > 2) {
                    line.clear();
                }
                let b = body();
                let _ = write!(
                    s,
                    "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{b}",
                    b.len()
                );
            });
        }
    });
    port
}

struct Prometheus {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn prometheus(target_port: u16) -> Prometheus {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let cfg = format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: fixture\n    static_configs:\n      - targets: ['127.0.0.1:{target_port}']\n"
    );
    std::fs::write(dir.path().join("prometheus.yml"), cfg).unwrap();
    let child = Command::new("prometheus")
        .arg(format!("--config.file={}", dir.path().join("prometheus.yml").display()))
        .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("prometheus (Debian package prometheus) is needed: .ci/deps installs it");
    Prometheus { child, port, _dir: dir }
}

fn hearth_config(target: u16, bad: u16) -> String {
    format!(
        "[metrics]\ninterval = \"1s\"\nstorage = \"memory\"\n\n\
         [[metrics.scrape]]\nname = \"fixture\"\nurl = \"http://127.0.0.1:{target}/metrics\"\n\n\
         [[metrics.scrape]]\nname = \"broken\"\nurl = \"http://127.0.0.1:{bad}/metrics\"\n"
    )
}

async fn instant(c: &reqwest::Client, base: &str, token: Option<&str>, q: &str, t: f64) -> Value {
    let mut r = c.get(format!("{base}/api/v1/query")).query(&[("query", q), ("time", &t.to_string())]);
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    let v: Value = r.send().await.unwrap().json().await.unwrap();
    assert_eq!(v["status"], "success", "{q}: {v}");
    v["data"].clone()
}

/// `{labels → value}` of a vector or scalar answer.
fn by_labels(data: &Value) -> Vec<(String, f64)> {
    let num = |s: &Value| s.as_str().unwrap().parse::<f64>().unwrap();
    let mut out: Vec<(String, f64)> = match data["resultType"].as_str().unwrap() {
        "scalar" => vec![(String::new(), num(&data["result"][1]))],
        _ => data["result"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                let mut m: Vec<(String, String)> = s["metric"]
                    .as_object()
                    .unwrap()
                    .iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
                    .collect();
                m.sort();
                (format!("{m:?}"), num(&s["value"][1]))
            })
            .collect(),
    };
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

fn close(a: f64, b: f64, rel: f64) -> bool {
    (a.is_nan() && b.is_nan()) || (a - b).abs() <= rel * a.abs().max(b.abs()).max(1e-9)
}

#[tokio::test]
async fn promql_answers_match_a_real_prometheus_on_the_same_exporter() {
    let target = serve(exposition);
    let bad = serve(|| "this is { not an exposition\n".to_string());
    let prom = prometheus(target);
    let inst = Instance::start(&hearth_config(target, bad)).await;
    let token = token(&inst, "grafana", "metrics");
    let c = reqwest::Client::new();
    let hearth = inst.url("/prometheus");
    let prom_base = format!("http://127.0.0.1:{}", prom.port);
    // both have scraped for a while
    tokio::time::sleep(Duration::from_secs(25)).await;
    let t = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs_f64().floor() - 2.0;

    // (expression, relative tolerance): counters are read at different instants by the two scrapers
    let table: &[(&str, f64)] = &[
        ("fixture_temperature_celsius", 0.0),
        ("fixture_temperature_celsius * 2 + 1", 0.0),
        ("fixture_temperature_celsius > 45", 0.0),
        ("fixture_temperature_celsius > bool 45", 0.0),
        ("avg without (sensor) (fixture_temperature_celsius)", 0.0),
        ("max_over_time(fixture_temperature_celsius[10s])", 0.0),
        ("count(fixture_requests_total)", 0.0),
        (r#"up{job="fixture"}"#, 0.0),
        ("rate(fixture_requests_total[10s])", 0.05),
        ("irate(fixture_requests_total[5s])", 0.15),
        ("increase(fixture_requests_total[10s])", 0.05),
        ("sum by (code) (rate(fixture_requests_total[10s]))", 0.05),
        ("sum without (path) (rate(fixture_requests_total[10s])) > 50", 0.05),
        (
            "rate(fixture_requests_total[10s]) / on (code) group_left sum by (code) (rate(fixture_requests_total[10s]))",
            0.08,
        ),
        ("topk(2, rate(fixture_requests_total[10s]))", 0.05),
        ("histogram_quantile(0.5, rate(fixture_latency_seconds_bucket[10s]))", 0.08),
        ("histogram_quantile(0.95, sum by (le) (rate(fixture_latency_seconds_bucket[10s])))", 0.08),
        ("fixture_latency_seconds_sum / fixture_latency_seconds_count", 0.05),
        ("count_over_time(fixture_temperature_celsius[10s])", 0.25),
        ("scalar(sum(fixture_temperature_celsius))", 0.0),
    ];
    let mut failures = vec![];
    for (q, tol) in table {
        let want = by_labels(&instant(&c, &prom_base, None, q, t).await);
        let got = by_labels(&instant(&c, &hearth, Some(&token), q, t).await);
        assert!(!want.is_empty(), "{q}: Prometheus returned nothing");
        let labels = |v: &[(String, f64)]| v.iter().map(|x| x.0.clone()).collect::<Vec<_>>();
        if labels(&want) != labels(&got) {
            failures.push(format!("{q}: series differ\n  prometheus {want:?}\n  hearth     {got:?}"));
            continue;
        }
        for (w, g) in want.iter().zip(&got) {
            if !close(w.1, g.1, *tol) {
                failures.push(format!("{q}: {} prometheus {} hearth {}", w.0, w.1, g.1));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    // a range query: same steps, same series, values within tolerance
    let range = |base: String, tok: Option<String>| {
        let c = c.clone();
        async move {
            let mut r = c.get(format!("{base}/api/v1/query_range")).query(&[
                ("query", "sum by (code) (rate(fixture_requests_total[5s]))"),
                ("start", &(t - 10.0).to_string()),
                ("end", &t.to_string()),
                ("step", "2s"),
            ]);
            if let Some(tok) = tok {
                r = r.bearer_auth(tok);
            }
            let v: Value = r.send().await.unwrap().json().await.unwrap();
            assert_eq!(v["data"]["resultType"], "matrix", "{v}");
            v["data"]["result"].clone()
        }
    };
    let want = range(prom_base.clone(), None).await;
    let got = range(hearth.clone(), Some(token.clone())).await;
    assert_eq!(want.as_array().unwrap().len(), got.as_array().unwrap().len(), "{want}\n{got}");
    for (w, g) in want.as_array().unwrap().iter().zip(got.as_array().unwrap()) {
        assert_eq!(w["metric"], g["metric"]);
        let (wv, gv) = (w["values"].as_array().unwrap(), g["values"].as_array().unwrap());
        assert_eq!(wv.len(), gv.len(), "{w}\n{g}");
        for (a, b) in wv.iter().zip(gv) {
            assert_eq!(a[0], b[0], "same step timestamps");
            let (a, b) =
                (a[1].as_str().unwrap().parse::<f64>().unwrap(), b[1].as_str().unwrap().parse::<f64>().unwrap());
            assert!(close(a, b, 0.1), "{a} vs {b}");
        }
    }

    // series, labels and label values answer as Prometheus's do
    let get = |path: &str| {
        let c = c.clone();
        let url = format!("{hearth}{path}");
        let token = token.clone();
        async move { c.get(url).bearer_auth(token).send().await.unwrap().json::<Value>().await.unwrap() }
    };
    let v = get("/api/v1/label/job/values").await;
    assert_eq!(v["data"], serde_json::json!(["broken", "fixture"]), "{v}");
    let v = get("/api/v1/series?match[]=fixture_temperature_celsius").await;
    assert_eq!(v["data"].as_array().unwrap().len(), 2, "{v}");
    assert_eq!(v["data"][0]["instance"], format!("127.0.0.1:{target}"));
    let v = get("/api/v1/labels").await;
    assert!(v["data"].as_array().unwrap().iter().any(|l| l == "sensor"), "{v}");
    let v = get("/api/v1/series").await;
    assert_eq!(v["errorType"], "bad_data", "{v}");

    // the host's own metrics are there too (node_exporter names)
    let d = instant(&c, &hearth, Some(&token), "count(node_cpu_seconds_total) > 0", t).await;
    assert_eq!(d["result"].as_array().unwrap().len(), 1, "{d}");
    let d = instant(&c, &hearth, Some(&token), "hearth_build_info", t).await;
    assert_eq!(d["result"].as_array().unwrap().len(), 1, "{d}");

    // errors in Prometheus's shape: unsupported features are named
    let r = c
        .get(format!("{hearth}/api/v1/query"))
        .bearer_auth(&token)
        .query(&[("query", "rate(x[5m])[30m:1m]")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["errorType"], "bad_data");
    assert!(v["error"].as_str().unwrap().contains("subqueries"), "{v}");

    // the broken target: up 0, its error shown, the other target unaffected
    let d = instant(&c, &hearth, Some(&token), r#"up{job="broken"}"#, t).await;
    assert_eq!(by_labels(&d)[0].1, 0.0);
    let s: Value =
        c.get(inst.url("/api/v1/metrics/status")).bearer_auth(&token).send().await.unwrap().json().await.unwrap();
    let broken = s["targets"].as_array().unwrap().iter().find(|t| t["name"] == "broken").unwrap();
    assert_eq!(broken["health"], "down");
    assert!(broken["last_error"].as_str().unwrap().contains("line 1"), "{broken}");
    assert!(s["store"]["series"].as_u64().unwrap() > 50, "{s}");

    // promtool, a second real client: it speaks only basic auth, with the token as the password
    let authed = hearth.replace("http://", &format!("http://promtool:{token}@"));
    let out = Command::new("promtool")
        .args(["query", "instant"])
        .arg(&authed)
        .arg(r#"fixture_temperature_celsius{sensor="cpu"}"#)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.contains("51.5"), "{text}{}", String::from_utf8_lossy(&out.stderr));
    let out = Command::new("promtool")
        .args(["query", "range"])
        .args(["--start", &(t - 10.0).to_string(), "--end", &t.to_string(), "--step", "5s"])
        .arg(&authed)
        .arg("sum(fixture_temperature_celsius)")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.contains("91.5"), "{text}{}", String::from_utf8_lossy(&out.stderr));
}

#[tokio::test]
async fn the_query_api_needs_a_session_or_a_metrics_token() {
    let inst = Instance::start("[metrics]\nstorage = \"memory\"\n").await;
    let cfg = inst.config_path();
    let token = |name: &str, scope: &str| {
        let out = inst.cli(&["token", "create", name, "--scope", scope, "--config", cfg.to_str().unwrap()], None);
        assert!(out.status.success());
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };
    let (metrics, dns) = (token("m", "metrics"), token("d", "dns:read"));
    let c = reqwest::Client::new();
    for path in ["/prometheus/api/v1/query?query=up", "/prometheus/api/v1/labels", "/api/v1/metrics/status"] {
        expect_error(c.get(inst.url(path)).send().await.unwrap(), 401, "unauthenticated").await;
        expect_error(c.get(inst.url(path)).bearer_auth(&dns).send().await.unwrap(), 403, "insufficient_scope").await;
        let r = c.get(inst.url(path)).bearer_auth(&metrics).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
    }
    // POST with a form body, as Grafana sends it
    let r = c
        .post(inst.url("/prometheus/api/v1/query"))
        .bearer_auth(&metrics)
        .form(&[("query", "1 + 1")])
        .send()
        .await
        .unwrap();
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["data"]["result"][1], "2", "{v}");
    // bad parameters: Prometheus's error shape
    let r = c
        .get(inst.url("/prometheus/api/v1/query_range?query=up&start=1&end=0&step=1"))
        .bearer_auth(&metrics)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = c
        .get(inst.url("/prometheus/api/v1/query_range?query=up&start=0&end=1e9&step=1"))
        .bearer_auth(&metrics)
        .send()
        .await
        .unwrap();
    let v: Value = r.json().await.unwrap();
    assert!(v["error"].as_str().unwrap().contains("11,000 points"), "{v}");
}

fn prometheus_receiver(dir: &std::path::Path, port: u16) -> Child {
    std::fs::write(dir.join("prometheus.yml"), "global:\n  scrape_interval: 1m\n").unwrap();
    Command::new("prometheus")
        .arg(format!("--config.file={}", dir.join("prometheus.yml").display()))
        .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg("--web.enable-remote-write-receiver")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// `[[metrics.remote_write]]` to a real Prometheus: the receiver is down for a while, and once it is back every
/// sample of that time arrives (sent from hearth's store, not from a memory queue).
#[tokio::test]
async fn remote_write_leaves_no_gap_after_a_receiver_outage() {
    let target = serve(exposition);
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut prom = prometheus_receiver(dir.path(), port);
    let inst = Instance::start(&format!(
        "[metrics]\ninterval = \"1s\"\nstorage = \"memory\"\n\n[[metrics.scrape]]\nname = \"fixture\"\nurl = \"http://127.0.0.1:{target}/metrics\"\ninterval = \"1s\"\n\n\
         [[metrics.remote_write]]\nurl = \"http://127.0.0.1:{port}/api/v1/write\"\n"
    ))
    .await;
    let start = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(12)).await;
    // stopped as a service manager stops it (a kill -9 would also lose the samples Prometheus had acknowledged
    // but not yet written to its own WAL)
    let _ = Command::new("kill").args(["-TERM", &prom.id().to_string()]).status();
    let _ = prom.wait();
    // the issue's outage: two minutes without a receiver
    tokio::time::sleep(Duration::from_secs(120)).await;
    let mut prom = prometheus_receiver(dir.path(), port);
    tokio::time::sleep(Duration::from_secs(25)).await;
    // a time the last push (every 10 s) has certainly covered
    let t = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs_f64().floor() - 15.0;
    let window = (t - start - 5.0).floor() as u64;
    let q = format!(r#"count_over_time(fixture_temperature_celsius{{sensor="cpu"}}[{window}s])"#);
    let c = reqwest::Client::new();
    let want: Value = c
        .get(format!("http://127.0.0.1:{port}/api/v1/query"))
        .query(&[("query", q.as_str()), ("time", &t.to_string())])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let (admin, _) = crate::common::admin_session(&inst).await;
    let got: Value = admin
        .get(inst.url("/prometheus/api/v1/query"))
        .query(&[("query", q.as_str()), ("time", &t.to_string())])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let count = |v: &Value| v["data"]["result"][0]["value"][1].as_str().map(|s| s.parse::<f64>().unwrap());
    let (w, g) = (count(&want), count(&got));
    assert!(g.unwrap_or(0.0) >= (window - 2) as f64, "hearth scraped every second: {got}");
    assert_eq!(w, g, "the receiver has every sample hearth has, the outage's too\nprometheus {want}\nhearth {got}");
    let _ = prom.kill();
    let _ = prom.wait();
}
