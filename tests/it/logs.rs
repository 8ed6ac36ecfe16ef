//! The log store (issue 24) against real clients: util-linux `logger` sends syslog over UDP (RFC 5424) and TCP
//! (RFC 3164, and octet-counted); python-logging-loki (PyPI) pushes Loki JSON; a protobuf + snappy push is built as
//! Promtail sends it; the lines come back through Loki's query API (streams, label values, a metric query), hearth's
//! own events carry request ids, and only an admin session or a `logs` token gets in.

use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use crate::common::{Instance, expect_error, free_port, token};

/// A range query's lines (newest first), polled until `want` lines came back or 10 s passed.
async fn lines(inst: &Instance, token: &str, query: &str, want: usize) -> Vec<(Value, String)> {
    let c = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let v: Value = c
            .get(inst.url("/loki/api/v1/query_range"))
            .query(&[("query", query), ("limit", "1000")])
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(v["status"], "success", "{v}");
        assert_eq!(v["data"]["resultType"], "streams");
        let mut out: Vec<(i64, Value, String)> = vec![];
        for s in v["data"]["result"].as_array().unwrap() {
            for e in s["values"].as_array().unwrap() {
                let t: i64 = e[0].as_str().unwrap().parse().unwrap();
                out.push((t, s["stream"].clone(), e[1].as_str().unwrap().to_string()));
            }
        }
        out.sort_by_key(|e| std::cmp::Reverse(e.0));
        if out.len() >= want || Instant::now() > deadline {
            return out.into_iter().map(|(_, l, s)| (l, s)).collect();
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// A protobuf field: tag and wire type, then the payload (varint or length-delimited).
fn field(out: &mut Vec<u8>, tag: u32, bytes: &[u8]) {
    varint(out, (tag << 3 | 2) as u64);
    varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// `logproto.PushRequest` with one stream and one entry, as Promtail encodes it.
fn promtail_push(labels: &str, secs: i64, line: &str) -> Vec<u8> {
    let mut ts = vec![];
    varint(&mut ts, 1 << 3); // seconds, varint
    varint(&mut ts, secs as u64);
    let mut entry = vec![];
    field(&mut entry, 1, &ts);
    field(&mut entry, 2, line.as_bytes());
    let mut stream = vec![];
    field(&mut stream, 1, labels.as_bytes());
    field(&mut stream, 2, &entry);
    let mut req = vec![];
    field(&mut req, 1, &stream);
    req
}

#[tokio::test]
async fn syslog_and_loki_pushes_come_back_through_loki_queries() {
    let port = free_port();
    let inst = Instance::start(&format!("[logs]\njournal = false\nsyslog_listen = [\"127.0.0.1:{port}\"]\n")).await;
    let tok = token(&inst, "grafana", "logs");

    // syslog: logger over UDP (RFC 5424) and TCP (RFC 3164, and octet-counted RFC 5424)
    let logger = |args: &[&str]| {
        let st = Command::new("logger")
            .args(["--server", "127.0.0.1", "--port", &port.to_string(), "--tag", "backup"])
            .args(args)
            .status()
            .expect("logger (util-linux)");
        assert!(st.success());
    };
    logger(&["--udp", "--rfc5424", "-p", "user.err", "nightly backup failed on 192.168.1.20"]);
    logger(&["--tcp", "--rfc3164", "-p", "daemon.warning", "disk sda at 91% full"]);
    logger(&["--tcp", "--octet-count", "--rfc5424", "-p", "user.info", "rotation done id=4f3a9c01"]);
    let got = lines(&inst, &tok, r#"{source="syslog"}"#, 3).await;
    assert_eq!(got.len(), 3, "{got:?}");
    let by_text =
        |needle: &str| got.iter().find(|(_, l)| l.contains(needle)).unwrap_or_else(|| panic!("{needle}: {got:?}"));
    let (labels, _) = by_text("nightly backup failed");
    assert_eq!((labels["service"].as_str(), labels["level"].as_str()), (Some("backup"), Some("error")));
    assert!(labels["host"].as_str().is_some_and(|h| !h.is_empty()));
    assert_eq!(by_text("disk sda").0["level"], "warning");
    assert_eq!(by_text("rotation done").0["level"], "info");
    // search: a cut IP, a word inside a token, a regex, a negative filter
    for (q, want) in [
        (r#"{source="syslog"} |= "68.1.2""#, vec!["nightly backup failed"]),
        (r#"{source="syslog"} |= "3a9c""#, vec!["rotation done"]),
        (r#"{source="syslog", level=~"warning|error"} |~ "\\d+%" "#, vec!["disk sda"]),
        (r#"{source="syslog"} != "backup" != "rotation""#, vec!["disk sda"]),
    ] {
        let got = lines(&inst, &tok, q, want.len()).await;
        assert_eq!(got.len(), want.len(), "{q}: {got:?}");
        assert!(got[0].1.contains(want[0]), "{q}: {got:?}");
    }

    // a real Loki client from PyPI: python-logging-loki pushes JSON with basic auth (the token as the password)
    let python = std::env::var("HEARTH_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let script = format!(
        r#"
import logging, logging_loki
h = logging_loki.LokiHandler(url="{url}", tags={{"app": "nas-script"}}, auth=("shipper", "{tok}"), version="1")
log = logging.getLogger("t"); log.addHandler(h); log.setLevel(logging.INFO)
log.warning("smart: reallocated sectors grew to 8", extra={{"tags": {{"disk": "sdb"}}}})
"#,
        url = inst.url("/loki/api/v1/push")
    );
    let out = Command::new(&python).args(["-c", &script]).output().expect("python with python-logging-loki");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let got = lines(&inst, &tok, r#"{app="nas-script"}"#, 1).await;
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].0["source"], "push");
    assert_eq!(got[0].0["disk"], "sdb");
    assert_eq!(got[0].0["host"], "127.0.0.1", "no host label: the sender's address");
    assert!(got[0].1.contains("reallocated sectors"));

    // protobuf + snappy, as Promtail sends it
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    let body = snap::raw::Encoder::new()
        .compress_vec(&promtail_push(r#"{job="varlogs", host="pi"}"#, now, "level=error msg=\"fan stopped\" rpm=0"))
        .unwrap();
    let c = reqwest::Client::new();
    let r = c
        .post(inst.url("/loki/api/v1/push"))
        .bearer_auth(&tok)
        .header("content-type", "application/x-protobuf")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let got = lines(&inst, &tok, r#"{job="varlogs"} | logfmt | rpm < 100"#, 1).await;
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!((got[0].0["level"].as_str(), got[0].0["msg"].as_str()), (Some("error"), Some("fan stopped")));
    // a bad push is refused with the reason; nothing of it is kept
    let r = c
        .post(inst.url("/loki/api/v1/push"))
        .bearer_auth(&tok)
        .json(&json!({"streams": [{"stream": {"a": "b"}, "values": [["not a time", "x"]]}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert!(v["error"].as_str().unwrap().contains("values[0]"), "{v}");

    // labels, values, a metric query
    let v: Value = c.get(inst.url("/loki/api/v1/labels")).bearer_auth(&tok).send().await.unwrap().json().await.unwrap();
    for name in ["source", "host", "level", "service", "app", "job"] {
        assert!(v["data"].as_array().unwrap().iter().any(|n| n == name), "{name}: {v}");
    }
    let v: Value = c
        .get(inst.url("/loki/api/v1/label/source/values"))
        .bearer_auth(&tok)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["data"], json!(["hearth", "push", "syslog"]));
    // the streams a selector picks, as logcli `series` asks (and a bad selector is bad_data)
    let v: Value = c
        .get(inst.url("/loki/api/v1/series"))
        .query(&[("match[]", r#"{app="nas-script"}"#), ("match[]", r#"{job="varlogs"}"#)])
        .bearer_auth(&tok)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let sets = v["data"].as_array().unwrap();
    assert_eq!(sets.len(), 2, "{v}");
    assert!(sets.iter().any(|s| s["app"] == "nas-script" && s["disk"] == "sdb"), "{v}");
    assert!(sets.iter().any(|s| s["job"] == "varlogs"), "{v}");
    let r = c.get(inst.url("/loki/api/v1/series")).query(&[("match[]", "{")]).bearer_auth(&tok).send().await.unwrap();
    assert_eq!(r.status(), 400);
    let v: Value = c
        .get(inst.url("/loki/api/v1/query"))
        .query(&[("query", r#"sum by (level) (count_over_time({source="syslog"}[5m]))"#)])
        .bearer_auth(&tok)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["data"]["resultType"], "vector", "{v}");
    let mut counts: Vec<(String, String)> = v["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["metric"]["level"].as_str().unwrap().to_string(), r["value"][1].as_str().unwrap().to_string()))
        .collect();
    counts.sort();
    assert_eq!(counts, vec![("error".into(), "1".into()), ("info".into(), "1".into()), ("warning".into(), "1".into())]);
    // an unsupported stage is named
    let r = c
        .get(inst.url("/loki/api/v1/query_range"))
        .query(&[("query", r#"{source="syslog"} | line_format "{{.x}}""#)])
        .bearer_auth(&tok)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("line_format"));
}

#[tokio::test]
async fn hearths_own_events_carry_request_ids_and_the_api_needs_a_logs_token() {
    let inst = Instance::start("[logs]\nstorage = \"memory\"\n").await;
    let (logs, metrics) = (token(&inst, "l", "logs"), token(&inst, "m", "metrics"));
    let c = reqwest::Client::new();
    for path in
        ["/loki/api/v1/labels", "/loki/api/v1/query_range?query=%7Bsource%3D%22hearth%22%7D", "/api/v1/logs/status"]
    {
        expect_error(c.get(inst.url(path)).send().await.unwrap(), 401, "unauthenticated").await;
        expect_error(c.get(inst.url(path)).bearer_auth(&metrics).send().await.unwrap(), 403, "insufficient_scope")
            .await;
    }
    // a request with our own id: its access-log line is found by that id
    let rid = "it-logs-7f3e9a";
    let r = c.get(inst.url("/api/v1/logs/status")).bearer_auth(&logs).header("x-request-id", rid).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let status: Value = r.json().await.unwrap();
    assert_eq!(status["usage"]["in_memory"], true);
    let got = lines(&inst, &logs, &format!(r#"{{source="hearth"}} |= "{rid}""#), 1).await;
    assert!(!got.is_empty(), "no line with the request id");
    assert!(
        got.iter().all(|(l, line)| line.contains(&format!("request_id={rid}")) && l["subsystem"] == "http"),
        "{got:?}"
    );
    // and the start-up line of the process is there too
    let got = lines(&inst, &logs, r#"{source="hearth", subsystem="app"} |= "hearth starting""#, 1).await;
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].0["level"], "info");
}

/// A journal file in `dir`, written by systemd-journal-remote from journal export text.
fn journal_file(dir: &std::path::Path, name: &str, entries: &[(&str, &str, &str)]) {
    let now_us = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_micros();
    let mut export = String::new();
    for (i, (unit, prio, msg)) in entries.iter().enumerate() {
        export.push_str(&format!(
            "__REALTIME_TIMESTAMP={}\n__MONOTONIC_TIMESTAMP={}\n_BOOT_ID=0123456789abcdef0123456789abcdef\n\
             _HOSTNAME=pi\n_SYSTEMD_UNIT={unit}\nPRIORITY={prio}\n_PID=811\nMESSAGE={msg}\n\n",
            now_us + i as u128,
            // one boot: journalctl orders its entries by this clock, so each file's must come after the last's
            now_us + i as u128
        ));
    }
    let src = dir.join(format!("{name}.export"));
    std::fs::write(&src, export).unwrap();
    let out = Command::new("/lib/systemd/systemd-journal-remote")
        .arg(format!("--output={}", dir.join(format!("{name}.journal")).display()))
        .arg(&src)
        .output()
        .expect("systemd-journal-remote (.ci/deps installs it)");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    std::fs::remove_file(src).unwrap();
}

#[tokio::test]
async fn the_journal_is_followed_from_its_cursor_without_repeats_across_a_restart() {
    let journal = tempfile::tempdir().unwrap();
    journal_file(
        journal.path(),
        "a",
        &[("nginx.service", "3", "upstream timed out"), ("sshd.service", "6", "accepted key")],
    );
    let mut inst = Instance::start(&format!("[logs]\njournal_directory = \"{}\"\n", journal.path().display())).await;
    let tok = token(&inst, "j", "logs");
    let got = lines(&inst, &tok, r#"{source="journal"}"#, 2).await;
    assert_eq!(got.len(), 2, "{got:?}");
    let nginx = got.iter().find(|(l, _)| l["unit"] == "nginx.service").expect("the nginx line");
    assert_eq!((nginx.0["level"].as_str(), nginx.0["host"].as_str()), (Some("error"), Some("pi")));
    assert_eq!(nginx.1, "[811] upstream timed out");
    // followed: a new journal file's entries arrive while hearth runs
    journal_file(journal.path(), "b", &[("cron.service", "6", "job ran")]);
    let got = lines(&inst, &tok, r#"{source="journal"}"#, 3).await;
    assert_eq!(got.len(), 3, "{got:?}");
    // a restart continues after the saved cursor: nothing twice
    inst.restart().await;
    journal_file(journal.path(), "c", &[("cron.service", "4", "job slow")]);
    let got = lines(&inst, &tok, r#"{source="journal"}"#, 4).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let again = lines(&inst, &tok, r#"{source="journal"}"#, 5).await;
    assert_eq!(got.len(), 4, "{got:?}");
    assert_eq!(again.len(), 4, "no entry read twice: {again:?}");
}

/// The stand-in Docker API (`tests/peers/dockerd.py`) with its state file; killed on drop.
struct Dockerd {
    dir: tempfile::TempDir,
    proc: std::process::Child,
}

impl Dockerd {
    fn start(state: &Value) -> Dockerd {
        let dir = tempfile::tempdir().unwrap();
        let d = Dockerd {
            proc: Command::new("python3")
                .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/peers/dockerd.py"))
                .args(["docker.sock", "state.json", "requests.log"].map(|f| dir.path().join(f)))
                .spawn()
                .unwrap(),
            dir,
        };
        d.set(state);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !d.socket().exists() {
            assert!(Instant::now() < deadline, "dockerd.py did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        d
    }
    fn socket(&self) -> std::path::PathBuf {
        self.dir.path().join("docker.sock")
    }
    /// Rewrite the daemon's state (atomically: it re-reads it every 100 ms).
    fn set(&self, state: &Value) {
        let tmp = self.dir.path().join("state.tmp");
        std::fs::write(&tmp, state.to_string()).unwrap();
        std::fs::rename(tmp, self.dir.path().join("state.json")).unwrap();
    }
    fn requests(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("requests.log")).unwrap_or_default()
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        let _ = self.proc.kill();
        let _ = self.proc.wait();
    }
}

#[tokio::test]
async fn containers_output_is_followed_by_name_and_service_without_repeats_across_a_restart() {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as i64 - 60_000_000_000;
    let web = |lines: Vec<Value>| {
        json!({"Id": "4f66ad9a0b2e11", "Names": ["/web"], "State": "running",
               "Labels": {"com.docker.compose.service": "site"}, "lines": lines})
    };
    let shell = json!({"Id": "77aa", "Names": ["/shell"], "State": "running", "Tty": true, "Labels": null,
                       "lines": [[now + 5, 1, "$ ls -l"]]});
    let mut web_lines = vec![
        json!([now + 1, 1, "GET / 200"]),
        json!([now + 2, 2, "time=now level=error msg=\"db down\""]),
        // two lines with one time (a coarse clock): both kept
        json!([now + 3, 1, "GET /a 200"]),
        json!([now + 3, 1, "GET /a2 200"]),
    ];
    let d = Dockerd::start(&json!({"containers": [web(web_lines.clone()), shell]}));
    let mut inst =
        Instance::start(&format!("[logs]\njournal = false\ndocker_socket = \"{}\"\n", d.socket().display())).await;
    let tok = token(&inst, "d", "logs");
    let got = lines(&inst, &tok, r#"{source="docker"}"#, 5).await;
    assert_eq!(got.len(), 5, "{got:?}");
    let err = got.iter().find(|(l, _)| l["stream"] == "stderr").expect("the stderr line");
    assert_eq!(
        (err.0["container"].as_str(), err.0["service"].as_str(), err.0["level"].as_str()),
        (Some("web"), Some("site"), Some("error"))
    );
    assert_eq!(err.1, "time=now level=error msg=\"db down\"");
    let tty = lines(&inst, &tok, r#"{container="shell"}"#, 1).await;
    assert_eq!((tty[0].1.as_str(), tty[0].0["stream"].as_str()), ("$ ls -l", Some("stdout")), "{tty:?}");
    // followed: a new line arrives while hearth runs
    web_lines.push(json!([now + 10, 1, "GET /b 404"]));
    d.set(&json!({"containers": [web(web_lines.clone())]}));
    let got = lines(&inst, &tok, r#"{container="web"}"#, 5).await;
    assert_eq!(got[0].1, "GET /b 404", "{got:?}");
    // a restart resumes after the last line kept: nothing twice, nothing lost while hearth was down
    inst.restart().await;
    web_lines.push(json!([now + 20, 1, "GET /c 200"]));
    d.set(&json!({"containers": [web(web_lines.clone())]}));
    let got = lines(&inst, &tok, r#"{container="web"}"#, 6).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let again = lines(&inst, &tok, r#"{container="web"}"#, 7).await;
    assert_eq!(got.len(), 6, "{got:?}");
    assert_eq!(again.len(), 6, "no line read twice: {again:?}");
    let resumed =
        d.requests().lines().filter(|l| l.contains("/containers/4f66ad9a0b2e11/logs") && l.contains("since=")).count();
    assert!(resumed >= 1, "the restart asked from its position: {}", d.requests());
    // the API's filter is by time: a name is never a path
    assert!(d.requests().lines().all(|l| l.starts_with("GET /containers/")), "{}", d.requests());
}
