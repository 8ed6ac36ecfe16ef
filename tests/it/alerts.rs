//! Alerts (issue 23): a rule over a scraped gauge fires, notifies an Alertmanager-style webhook and an ntfy server
//! (both a local HTTP sink), resolves; a kill -9 while pending or firing neither repeats nor loses a notice; a
//! channel that refuses is retried after a restart; silences mute; "send test" reports the channel's answer; e-mail
//! goes through a real mail server (aiosmtpd) with a login.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::common::{Instance, admin_session, token};

#[derive(Clone, Debug)]
struct Req {
    path: String,
    headers: Vec<(String, String)>,
    body: String,
}

#[derive(Clone, Default)]
struct Sink {
    reqs: Arc<Mutex<Vec<Req>>>,
    status: Arc<AtomicU16>,
}

impl Sink {
    fn start() -> (Sink, u16) {
        let sink = Sink { reqs: Arc::default(), status: Arc::new(AtomicU16::new(200)) };
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let s = sink.clone();
        std::thread::spawn(move || {
            for conn in l.incoming().flatten() {
                let s = s.clone();
                std::thread::spawn(move || {
                    let mut conn = conn;
                    let mut r = BufReader::new(conn.try_clone().unwrap());
                    let mut line = String::new();
                    if r.read_line(&mut line).is_err() {
                        return;
                    }
                    let path = line.split(' ').nth(1).unwrap_or("").to_string();
                    let mut headers = vec![];
                    loop {
                        let mut h = String::new();
                        if r.read_line(&mut h).unwrap_or(0) <= 2 {
                            break;
                        }
                        if let Some((k, v)) = h.trim_end().split_once(':') {
                            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
                        }
                    }
                    let len: usize = headers
                        .iter()
                        .find(|(k, _)| k == "content-length")
                        .and_then(|(_, v)| v.parse().ok())
                        .unwrap_or(0);
                    let mut body = vec![0; len];
                    let _ = r.read_exact(&mut body);
                    let status = s.status.load(Ordering::SeqCst);
                    s.reqs.lock().unwrap().push(Req { path, headers, body: String::from_utf8_lossy(&body).into() });
                    let _ = write!(conn, "HTTP/1.1 {status} X\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok");
                });
            }
        });
        (sink, port)
    }

    fn on(&self, path: &str) -> Vec<Req> {
        self.reqs.lock().unwrap().iter().filter(|r| r.path.starts_with(path)).cloned().collect()
    }

    /// Webhook notices (accepted or not) with this status.
    fn webhook(&self, status: &str) -> Vec<Value> {
        self.on("/hook")
            .iter()
            .map(|r| serde_json::from_str::<Value>(&r.body).unwrap())
            .filter(|v| v["status"] == status)
            .collect()
    }

    async fn wait(&self, what: &str, limit: Duration, f: impl Fn(&Sink) -> bool) {
        let t = Instant::now();
        while !f(self) {
            assert!(t.elapsed() < limit, "timed out waiting for {what}: {:?}", self.reqs.lock().unwrap());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// An exporter with one gauge the test sets.
fn exporter(v: Arc<AtomicU64>) -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in l.incoming().flatten() {
            let v = v.clone();
            std::thread::spawn(move || {
                let mut conn = conn;
                let mut r = BufReader::new(conn.try_clone().unwrap());
                let mut line = String::new();
                while r.read_line(&mut line).is_ok_and(|n| n > 2) {
                    line.clear();
                }
                let body = format!("fixture_gauge{{room=\"attic\"}} {}\n", v.load(Ordering::SeqCst));
                let _ = write!(
                    conn,
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            });
        }
    });
    port
}

fn config(exporter: u16, sink: u16, for_: &str) -> String {
    format!(
        "[metrics]\ninterval = \"1s\"\nstorage = \"memory\"\n\n[[metrics.scrape]]\nname = \"fixture\"\nurl = \"http://127.0.0.1:{exporter}/metrics\"\ninterval = \"1s\"\n\n\
         [alerts]\ndefault_rules = false\nevaluation_interval = \"1s\"\nexternal_url = \"https://hearth.home.arpa\"\n\n\
         [[alerts.rules]]\nname = \"AtticHot\"\nexpr = \"fixture_gauge > 0\"\nfor = \"{for_}\"\nseverity = \"critical\"\nsummary = \"the {{{{ $labels.room }}}} reads {{{{ $value }}}}\"\n\n\
         [[alerts.channels]]\nname = \"am\"\nurl = \"http://127.0.0.1:{sink}/hook\"\n\n\
         [[alerts.channels]]\nname = \"phone\"\nurl = \"ntfy://127.0.0.1:{sink}/attic?scheme=http\"\n"
    )
}

#[tokio::test]
async fn a_rule_fires_notifies_the_channels_on_time_and_resolves() {
    let gauge = Arc::new(AtomicU64::new(0));
    let (sink, sink_port) = Sink::start();
    let inst = Instance::start(&config(exporter(gauge.clone()), sink_port, "3s")).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(sink.on("/").is_empty(), "nothing fires while the gauge is 0");

    gauge.store(7, Ordering::SeqCst);
    let hot = Instant::now();
    sink.wait("the firing webhook", Duration::from_secs(20), |s| !s.webhook("firing").is_empty()).await;
    // scrape (≤ 1 s) + `for` (3 s) + delivery: within 5 s of `for` elapsing
    assert!(hot.elapsed() < Duration::from_secs(3 + 1 + 5), "{:?}", hot.elapsed());
    let w = &sink.webhook("firing")[0];
    assert_eq!(w["version"], "4");
    assert_eq!(w["receiver"], "am");
    assert_eq!(w["alerts"][0]["labels"]["alertname"], "AtticHot");
    assert_eq!(w["alerts"][0]["labels"]["room"], "attic");
    assert_eq!(w["alerts"][0]["labels"]["severity"], "critical");
    assert_eq!(w["alerts"][0]["annotations"]["summary"], "the attic reads 7");
    sink.wait("the ntfy notice", Duration::from_secs(5), |s| !s.on("/attic").is_empty()).await;
    let n = &sink.on("/attic")[0];
    let h = |k: &str| n.headers.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()).unwrap_or_default();
    assert_eq!(h("title"), "[FIRING:1] AtticHot");
    assert_eq!(h("priority"), "5");
    assert_eq!(h("click"), "https://hearth.home.arpa/alerts");
    assert!(n.body.contains("the attic reads 7"), "{}", n.body);

    // the API shows it firing
    let (c, _) = admin_session(&inst).await;
    let v: Value = c.get(inst.url("/api/v1/alerts")).send().await.unwrap().json().await.unwrap();
    let rule = v["rules"].as_array().unwrap().iter().find(|r| r["name"] == "AtticHot").unwrap();
    assert_eq!(rule["state"], "firing", "{v}");
    assert_eq!(v["channels"][0]["kind"], "http");

    gauge.store(0, Ordering::SeqCst);
    sink.wait("the resolved webhook", Duration::from_secs(15), |s| !s.webhook("resolved").is_empty()).await;
    assert_eq!(sink.webhook("firing").len(), 1, "one firing notice, no repeat");
    let hist: Value = c.get(inst.url("/api/v1/alerts/history")).send().await.unwrap().json().await.unwrap();
    let kinds: Vec<&str> = hist.as_array().unwrap().iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["resolved", "firing"], "{hist}");
}

#[tokio::test]
async fn kill_9_while_pending_or_firing_neither_repeats_nor_loses_a_notice() {
    let gauge = Arc::new(AtomicU64::new(1));
    let (sink, sink_port) = Sink::start();
    let mut inst = Instance::start(&config(exporter(gauge.clone()), sink_port, "6s")).await;
    // pending for ~3 s, then killed: the restart keeps the pending alert's start, so it fires once, on time
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(sink.webhook("firing").is_empty());
    inst.signal("KILL");
    inst.restart().await;
    let back = Instant::now();
    sink.wait("the firing webhook", Duration::from_secs(20), |s| !s.webhook("firing").is_empty()).await;
    assert!(back.elapsed() < Duration::from_secs(6), "the pending time before the kill counted: {:?}", back.elapsed());

    // firing and notified, then killed: no second notice after the restart
    inst.signal("KILL");
    inst.restart().await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(sink.webhook("firing").len(), 1, "no duplicate after a kill -9 while firing");

    // the channel refuses the resolved notice; hearth is killed while it waits in the outbox; after the restart
    // it is delivered
    sink.status.store(503, Ordering::SeqCst);
    gauge.store(0, Ordering::SeqCst);
    sink.wait("a refused resolved notice", Duration::from_secs(15), |s| !s.webhook("resolved").is_empty()).await;
    inst.signal("KILL");
    sink.status.store(200, Ordering::SeqCst);
    let refused = sink.webhook("resolved").len();
    inst.restart().await;
    sink.wait("the resolved notice delivered after the restart", Duration::from_secs(20), |s| {
        s.webhook("resolved").len() > refused
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(sink.webhook("resolved").len(), refused + 1, "delivered once");
    assert_eq!(sink.webhook("firing").len(), 1);
}

#[tokio::test]
async fn silences_mute_and_send_test_reports_the_channel() {
    let gauge = Arc::new(AtomicU64::new(0));
    let (sink, sink_port) = Sink::start();
    let inst = Instance::start(&config(exporter(gauge.clone()), sink_port, "0s")).await;
    let (c, csrf) = admin_session(&inst).await;
    let r = c
        .post(inst.url("/api/v1/alerts/silences"))
        .header("X-CSRF-Token", &csrf)
        .json(&json!({"matchers": [{"name": "room", "value": "att.*", "regex": true}], "minutes": 60, "comment": "renovation"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let sil: Value = r.json().await.unwrap();
    gauge.store(3, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(sink.webhook("firing").is_empty(), "silenced");
    let v: Value = c.get(inst.url("/api/v1/alerts")).send().await.unwrap().json().await.unwrap();
    assert_eq!(v["rules"][0]["state"], "firing", "still tracked");
    assert_eq!(v["silences"][0]["comment"], "renovation");
    let hist: Value = c.get(inst.url("/api/v1/alerts/history")).send().await.unwrap().json().await.unwrap();
    assert_eq!(hist[0]["silenced"], true);
    // a bad matcher is refused with the reason
    let r = c
        .post(inst.url("/api/v1/alerts/silences"))
        .header("X-CSRF-Token", &csrf)
        .json(&json!({"matchers": [], "minutes": 60}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    let r = c
        .delete(inst.url(&format!("/api/v1/alerts/silences/{}", sil["id"])))
        .header("X-CSRF-Token", &csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);

    // send test: delivered; then the channel answers 500 and the error is reported
    let r = c.post(inst.url("/api/v1/alerts/channels/phone/test")).header("X-CSRF-Token", &csrf).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(sink.on("/attic").iter().any(|r| r.body.contains("test")));
    sink.status.store(500, Ordering::SeqCst);
    let r = c.post(inst.url("/api/v1/alerts/channels/am/test")).header("X-CSRF-Token", &csrf).send().await.unwrap();
    assert_eq!(r.status(), 502);
    let v: Value = r.json().await.unwrap();
    assert!(v["error"]["message"].as_str().unwrap().contains("500"), "{v}");
    let r = c.post(inst.url("/api/v1/alerts/channels/nope/test")).header("X-CSRF-Token", &csrf).send().await.unwrap();
    assert_eq!(r.status(), 404);
    // the channel URL (which may hold a token) is redacted in the config API
    let cfg: Value = c.get(inst.url("/api/v1/config")).send().await.unwrap().json().await.unwrap();
    assert_eq!(cfg["config"]["alerts"]["channels"][1]["url"], "ntfy://(redacted)", "{cfg}");
}

/// A real mail server (aiosmtpd, `tests/peers/smtp.py`, which requires a login) on loopback.
struct MailServer {
    child: std::process::Child,
    port: u16,
    mails: Arc<Mutex<Vec<Value>>>,
}

impl MailServer {
    fn start() -> MailServer {
        let python = std::env::var("HEARTH_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
        let port = crate::common::free_port();
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/peers/smtp.py");
        let mut child = std::process::Command::new(python)
            .args([script, &port.to_string(), "alerts@home.arpa", "s3cret/pass"])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("python with aiosmtpd (.ci/deps installs it; HEARTH_TEST_PYTHON names the venv's python)");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        assert_eq!(lines.next().and_then(Result::ok).as_deref(), Some("ready"), "smtp.py did not start");
        let mails: Arc<Mutex<Vec<Value>>> = Arc::default();
        let m = mails.clone();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                m.lock().unwrap().push(serde_json::from_str(&line).unwrap());
            }
        });
        MailServer { child, port, mails }
    }

    async fn wait(&self, subject: &str, limit: Duration) -> Value {
        let deadline = Instant::now() + limit;
        loop {
            let found = self.mails.lock().unwrap().iter().find(|m| m["subject"] == subject).cloned();
            if let Some(m) = found {
                return m;
            }
            assert!(Instant::now() < deadline, "no mail with {subject:?}: {:?}", self.mails.lock().unwrap());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for MailServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn e_mail_alerts_go_through_a_real_mail_server_with_a_login() {
    let mail = MailServer::start();
    let gauge = Arc::new(AtomicU64::new(0));
    let (_sink, sink_port) = Sink::start();
    let channels = format!(
        "[[alerts.channels]]\nname = \"mail\"\nurl = \"smtp://alerts%40home.arpa:s3cret%2Fpass@127.0.0.1:{p}/?tls=none&from=hearth@home.arpa&to=me@home.arpa,partner@home.arpa\"\n\n\
         [[alerts.channels]]\nname = \"wrong-login\"\nurl = \"smtp://alerts%40home.arpa:guess@127.0.0.1:{p}/?tls=none&from=hearth@home.arpa&to=me@home.arpa\"\n",
        p = mail.port
    );
    let cfg = config(exporter(gauge.clone()), sink_port, "0s")
        .replace("[[alerts.channels]]\nname = \"am\"", &format!("{channels}\n[[alerts.channels]]\nname = \"am\""));
    let inst = Instance::start(&cfg).await;
    let (c, csrf) = admin_session(&inst).await;

    // send test: a real message through a login
    let r = c.post(inst.url("/api/v1/alerts/channels/mail/test")).header("X-CSRF-Token", &csrf).send().await.unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let m = mail.wait("hearth: test notification", Duration::from_secs(5)).await;
    assert_eq!(m["from"], "hearth@home.arpa");
    assert_eq!(m["to"], json!(["me@home.arpa", "partner@home.arpa"]));
    assert_eq!(m["login"], "alerts@home.arpa");

    // a wrong password: the mail server's refusal is the error the UI shows
    let r = c
        .post(inst.url("/api/v1/alerts/channels/wrong-login/test"))
        .header("X-CSRF-Token", &csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 502);
    let v: Value = r.json().await.unwrap();
    assert!(v["error"]["message"].as_str().unwrap().contains("535"), "{v}");

    // a firing alert and its resolution arrive as mail, with the link back to the Alerts page
    gauge.store(3, Ordering::SeqCst);
    let m = mail.wait("[FIRING:1] AtticHot", Duration::from_secs(15)).await;
    let body = m["body"].as_str().unwrap();
    assert!(body.contains("the attic reads 3"), "{body}");
    assert!(body.contains("https://hearth.home.arpa/alerts"), "{body}");
    gauge.store(0, Ordering::SeqCst);
    mail.wait("[RESOLVED] AtticHot", Duration::from_secs(20)).await;
}

#[tokio::test]
async fn a_logql_rule_counts_log_lines_per_service_and_fires() {
    let (sink, sink_port) = Sink::start();
    let inst = Instance::start(&format!(
        "[logs]\njournal = false\ndocker = false\nstorage = \"memory\"\n\n\
         [alerts]\ndefault_rules = false\nevaluation_interval = \"1s\"\n\n\
         [[alerts.rules]]\nname = \"BackupsFailing\"\nlanguage = \"logql\"\n\
         expr = 'sum by (service) (count_over_time({{source=\"push\"}} |= \"failed\" [1m])) > 2'\n\
         summary = \"{{{{ $labels.service }}}} failed {{{{ $value }}}} times\"\n\n\
         [[alerts.channels]]\nname = \"am\"\nurl = \"http://127.0.0.1:{sink_port}/hook\"\n"
    ))
    .await;
    let cfg = inst.config_path();
    let tok = token(&inst, "shipper", "logs");
    let push = |service: &'static str, n: usize| {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
        let values: Vec<Value> =
            (0..n).map(|i| json!([(now + i as u128).to_string(), format!("rsync to nas failed ({i})")])).collect();
        let body = json!({"streams": [{"stream": {"service": service}, "values": values}]});
        let (c, tok, url) = (reqwest::Client::new(), tok.clone(), inst.url("/loki/api/v1/push"));
        async move {
            let r = c.post(url).bearer_auth(tok).json(&body).send().await.unwrap();
            assert_eq!(r.status(), 204);
        }
    };
    // two failures is under the threshold; a third service's five are over it
    push("photos", 2).await;
    push("nas-backup", 5).await;
    sink.wait("the firing webhook", Duration::from_secs(15), |s| !s.webhook("firing").is_empty()).await;
    let w = &sink.webhook("firing")[0];
    let alerts = w["alerts"].as_array().unwrap();
    assert_eq!(alerts.len(), 1, "only the service over the threshold: {w}");
    assert_eq!(alerts[0]["labels"]["service"], "nas-backup");
    assert_eq!(alerts[0]["annotations"]["summary"], "nas-backup failed 5 times");
    let (c, _) = admin_session(&inst).await;
    let v: Value = c.get(inst.url("/api/v1/alerts")).send().await.unwrap().json().await.unwrap();
    assert_eq!(v["rules"][0]["language"], "logql", "{v}");
    // a log query (lines, not numbers) is refused naming the key
    let r = inst.cli(&["check-config", cfg.to_str().unwrap()], None);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let bad = std::fs::read_to_string(&cfg).unwrap().replace(
        r#"sum by (service) (count_over_time({source="push"} |= "failed" [1m])) > 2"#,
        r#"{source="push"} |= "failed""#,
    );
    std::fs::write(&cfg, bad).unwrap();
    let r = inst.cli(&["check-config", cfg.to_str().unwrap()], None);
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(!r.status.success() && err.contains("alerts.rules[0].expr") && err.contains("not numbers"), "{err}");
}
