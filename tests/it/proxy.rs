//! The HTTPS front against real peers: nginx backends, curl (HTTP/1.1, HTTP/2, TLS trusting only hearth's
//! internal root), dig for the DNS integration, a Python WebSocket echo server, and Python backends that say their
//! name and can be held busy (`tests/peers/named.py`).

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{self, Instance, admin_session, free_port, wait_port};

/// An nginx backend that says its name, echoes the forwarding headers, and has a health endpoint.
struct Backend {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
}

impl Backend {
    fn start(name: &str) -> Backend {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        std::fs::create_dir(dir.path().join("www")).unwrap();
        std::fs::write(dir.path().join("www/index.html"), format!("backend {name}\n")).unwrap();
        let conf = format!(
            "user root;\nworker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\nevents {{}}\n\
             http {{ access_log off; server {{ listen 127.0.0.1:{port}; root {d}/www;\n\
               location = /health {{ return 200 \"ok\\n\"; }}\n\
               location /base/ {{ return 200 \"base uri=$request_uri\\n\"; }}\n\
               location /echo {{ return 200 \"{name} xff=$http_x_forwarded_for proto=$http_x_forwarded_proto host=$host xfh=$http_x_forwarded_host fwd=$http_forwarded uri=$request_uri \
               cookie=$http_cookie ru=$http_remote_user xfu=$http_x_forwarded_user xri=$http_x_real_ip \
               pa=$http_proxy_authorization up=$http_upgrade xfp=$http_x_forwarded_prefix end\\n\"; }}\n\
             }} }}\n",
            d = dir.path().display()
        );
        std::fs::write(dir.path().join("nginx.conf"), conf).unwrap();
        let mut b = Backend { child: None, port, dir };
        b.spawn();
        b
    }

    fn spawn(&mut self) {
        let child = Command::new("nginx")
            .arg("-p")
            .arg(self.dir.path())
            .arg("-c")
            .arg(self.dir.path().join("nginx.conf"))
            .args(["-g", "daemon off;"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nginx (Debian package nginx-light) is needed: .ci/deps installs it");
        self.child = Some(child);
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("nginx did not start");
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill").args(["-TERM", &c.id().to_string()]).status();
            let _ = c.wait();
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.stop();
    }
}

struct Curl {
    status: u16,
    headers: String,
    body: String,
}

impl Curl {
    fn header(&self, name: &str) -> Option<String> {
        self.headers.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then(|| v.trim().to_string())
        })
    }
}

/// curl through hearth's HTTPS listener for `host`, trusting only hearth's internal root.
fn curl(inst: &Instance, host: &str, path: &str, extra: &[&str]) -> Curl {
    let root = inst.dir.path().join("data/ca/root.crt");
    let port = inst.https.port();
    let url = format!("https://{host}:{port}{path}");
    let resolve = format!("{host}:{port}:127.0.0.1");
    curl_raw(&[&["--cacert", root.to_str().unwrap(), "--resolve", &resolve], extra, &[url.as_str()]].concat())
}

fn curl_raw(args: &[&str]) -> Curl {
    try_curl(args).unwrap_or_else(|e| panic!("curl {args:?} failed: {e}"))
}

/// curl that may fail (a TLS handshake refused): Err with curl's message and output.
fn try_curl(args: &[&str]) -> Result<Curl, String> {
    let out = Command::new("curl").args(["-sS", "-D", "-", "--max-time", "20"]).args(args).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    if !out.status.success() {
        return Err(format!("{}{}", String::from_utf8_lossy(&out.stderr), text));
    }
    // skip interim 100/1xx blocks
    let mut rest = text.as_str();
    loop {
        let (head, body) = rest.split_once("\r\n\r\n").unwrap_or((rest, ""));
        let status: u16 = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
        if (100..200).contains(&status) && status != 101 {
            rest = body;
            continue;
        }
        return Ok(Curl { status, headers: head.to_string(), body: body.to_string() });
    }
}

async fn routes_state(c: &reqwest::Client, inst: &Instance) -> serde_json::Value {
    c.get(inst.url("/api/v1/proxy/routes")).send().await.unwrap().json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn routes_balance_fail_over_and_forward_headers() {
    let a = Backend::start("A");
    let mut b = Backend::start("B");
    let only = Backend::start("STATIC");
    let extra = format!(
        "[[proxy.routes]]\nhosts = [\"app.home.arpa\"]\nupstreams = [\"{}\", \"{}\"]\ntls = \"internal\"\n\
         health_path = \"/health\"\nhealth_interval = \"1s\"\n\n\
         [[proxy.routes]]\nhosts = [\"app.home.arpa\"]\npath_prefix = \"/static\"\nupstreams = [\"{}/\"]\nstrip_prefix = true\n\n\
         [[proxy.routes]]\nhosts = [\"limited.home.arpa\"]\nupstreams = [\"{}\"]\nrate_limit = 1\nrate_limit_burst = 2\n\
         headers = {{ \"X-Frame-Options\" = \"\", \"X-Served-By\" = \"hearth\" }}\n",
        a.url(),
        b.url(),
        only.url(),
        a.url()
    );
    let inst = Instance::start(&extra).await;
    let (c, _) = admin_session(&inst).await;

    // TLS with an internal-CA certificate that curl accepts trusting only hearth's root; both backends serve
    let mut seen = std::collections::HashSet::new();
    for _ in 0..6 {
        let r = curl(&inst, "app.home.arpa", "/", &[]);
        assert_eq!(r.status, 200, "{}", r.body);
        seen.insert(r.body.trim().to_string());
        assert_eq!(r.header("strict-transport-security").as_deref(), Some("max-age=31536000"));
        assert_eq!(r.header("x-content-type-options").as_deref(), Some("nosniff"));
        assert!(r.header("x-request-id").is_some());
    }
    assert_eq!(
        seen,
        ["backend A", "backend B"].iter().map(|s| s.to_string()).collect::<std::collections::HashSet<_>>(),
        "round-robin"
    );

    // forwarding headers, and the path route with its prefix stripped
    let r = curl(
        &inst,
        "app.home.arpa",
        "/echo?q=1",
        &["-H", "X-Forwarded-For: 6.6.6.6", "-H", "X-Request-Id: trace-me-1"],
    );
    assert_eq!(r.header("x-request-id").as_deref(), Some("trace-me-1"));
    let log: serde_json::Value =
        c.get(inst.url("/api/v1/proxy/access-log?limit=5")).send().await.unwrap().json().await.unwrap();
    let entry = log.as_array().unwrap().iter().find(|e| e["request_id"] == "trace-me-1").expect("in the access log");
    assert_eq!(
        (entry["status"].as_u64(), entry["path"].as_str(), entry["route"].as_str()),
        (Some(200), Some("/echo"), Some("app.home.arpa/"))
    );
    assert!(
        inst.log_text().lines().any(|l| l.contains("trace-me-1") && l.contains("proxy request")),
        "the access log line carries the request id"
    );
    assert!(r.body.contains("xff=127.0.0.1 "), "client-supplied X-Forwarded-For is replaced: {}", r.body);
    let host = format!("app.home.arpa:{}", inst.https.port());
    assert!(r.body.contains(&format!("proto=https host=app.home.arpa xfh={host} ")), "{}", r.body);
    assert!(r.body.contains(&format!("fwd=for=127.0.0.1;host=\"{host}\";proto=https")), "{}", r.body);
    assert!(r.body.contains("uri=/echo?q=1"), "{}", r.body);
    let r = curl(&inst, "app.home.arpa", "/static/echo", &[]);
    assert!(r.body.starts_with("STATIC ") && r.body.contains("uri=/echo"), "{}", r.body);

    // HTTP/2 from the client
    let r = curl(&inst, "app.home.arpa", "/", &["--http2"]);
    assert!(r.headers.starts_with("HTTP/2 200"), "{}", r.headers);

    // plain HTTP: 308 to HTTPS, keeping the path
    let r = curl_raw(&["-H", "Host: app.home.arpa", &format!("http://{}/some/path?x=1", inst.http)]);
    assert_eq!(r.status, 308);
    assert_eq!(r.header("location"), Some(format!("https://app.home.arpa:{}/some/path?x=1", inst.https.port())));
    // …while the admin API on the same listener still answers for other hosts
    let r = curl_raw(&[&inst.url("/healthz")]);
    assert_eq!(r.status, 200);

    // hearth's DNS answers the local route name with hearth's address
    let dig = Command::new("dig")
        .args(["+short", "-p", &inst.dns.port().to_string(), "@127.0.0.1", "app.home.arpa", "A"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&dig.stdout).trim(), "127.0.0.1");

    // failover: with B stopped every request still succeeds (connect failures retry on A) …
    b.stop();
    for _ in 0..6 {
        let r = curl(&inst, "app.home.arpa", "/", &[]);
        assert_eq!((r.status, r.body.trim()), (200, "backend A"));
    }
    // … and the health check takes B out
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let v = routes_state(&c, &inst).await;
        let up = &v[0]["upstreams"][1];
        if up["available"] == false && up["health_check_ok"] == false {
            assert!(up["health_check"].as_str().unwrap().contains("refused"), "{up}");
            break;
        }
        assert!(Instant::now() < deadline, "B was not ejected: {v}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // B comes back: the health check returns it to the pool
    b.spawn();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let v = routes_state(&c, &inst).await;
        if v[0]["upstreams"][1]["available"] == true {
            break;
        }
        assert!(Instant::now() < deadline, "B did not return: {v}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut seen = std::collections::HashSet::new();
    for _ in 0..6 {
        seen.insert(curl(&inst, "app.home.arpa", "/", &[]).body.trim().to_string());
    }
    assert_eq!(seen.len(), 2, "balanced again: {seen:?}");

    // rate limit: burst 2, then 429 with the headers; route headers set and removed
    let r = curl(&inst, "limited.home.arpa", "/", &[]);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-ratelimit-limit").as_deref(), Some("2"));
    assert_eq!(r.header("x-served-by").as_deref(), Some("hearth"));
    assert_eq!(r.header("x-frame-options"), None, "removed by the route's headers");
    let _ = curl(&inst, "limited.home.arpa", "/", &[]);
    let r = curl(&inst, "limited.home.arpa", "/", &[]);
    assert_eq!(r.status, 429);
    assert!(r.header("retry-after").is_some());
    assert_eq!(r.header("x-ratelimit-remaining").as_deref(), Some("0"));
    // health endpoints are exempt
    assert_eq!(curl(&inst, "limited.home.arpa", "/health", &[]).status, 200);

    // metrics: requests by route and status, certificates, upstream health
    let m = c.get(inst.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(m.contains("hearth_proxy_requests_total{route=\"app.home.arpa/\",status=\"200\"}"), "{m}");
    assert!(m.contains("hearth_proxy_upstream_healthy"));
    common::promtool_check(&m);
}

#[tokio::test(flavor = "multi_thread")]
async fn websocket_survives_a_config_reload() {
    let port = free_port();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/peers/ws_echo.py");
    let mut echo = Command::new("python3").arg(script).arg(port.to_string()).spawn().unwrap();
    wait_port(port);
    let extra = format!(
        "[[proxy.routes]]\nhosts = [\"ws.example.net\"]\nupstreams = [\"http://127.0.0.1:{port}\"]\ntls = \"none\"\n"
    );
    let inst = Instance::start(&extra).await;
    let (c, csrf) = admin_session(&inst).await;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(inst.http).await.unwrap();
    s.write_all(
        b"GET /chat HTTP/1.1\r\nHost: ws.example.net\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    )
    .await
    .unwrap();
    let mut head = vec![];
    while !head.ends_with(b"\r\n\r\n") {
        let mut b = [0u8; 1];
        s.read_exact(&mut b).await.unwrap();
        head.push(b[0]);
    }
    let head = String::from_utf8_lossy(&head);
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(head.contains("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="), "the backend's accept key passes through: {head}");

    async fn echo_once(s: &mut tokio::net::TcpStream, text: &str) -> String {
        let mask = [1u8, 2, 3, 4];
        let mut frame = vec![0x81, 0x80 | text.len() as u8];
        frame.extend_from_slice(&mask);
        frame.extend(text.bytes().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        s.write_all(&frame).await.unwrap();
        let mut h = [0u8; 2];
        s.read_exact(&mut h).await.unwrap();
        let mut data = vec![0u8; (h[1] & 0x7f) as usize];
        s.read_exact(&mut data).await.unwrap();
        String::from_utf8(data).unwrap()
    }
    assert_eq!(echo_once(&mut s, "hello").await, "hello");

    // a config change swaps the routing table; the open WebSocket keeps its backend
    let r = c
        .post(inst.url("/api/v1/proxy/routes"))
        .header("x-csrf-token", &csrf)
        .json(&serde_json::json!({"hosts": ["other.example.net"], "upstreams": ["http://127.0.0.1:9"], "tls": "none"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    assert_eq!(echo_once(&mut s, "still here").await, "still here");
    inst.signal("HUP");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(echo_once(&mut s, "after SIGHUP").await, "after SIGHUP");
    let _ = echo.kill();
    let _ = echo.wait();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_1gb_upload_streams_without_memory_growth() {
    let port = free_port();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/peers/sink.py");
    let mut sink = Command::new("python3").arg(script).arg(port.to_string()).spawn().unwrap();
    wait_port(port);
    let extra = format!(
        "[[proxy.routes]]\nhosts = [\"upload.home.arpa\"]\nupstreams = [\"http://127.0.0.1:{port}\"]\ntls = \"internal\"\n"
    );
    let inst = Instance::start(&extra).await;
    let before = vm(&inst, "VmRSS:");
    let file = inst.dir.path().join("big.bin");
    std::fs::File::create(&file).unwrap().set_len(1 << 30).unwrap();
    let r = curl(&inst, "upload.home.arpa", "/", &["-T", file.to_str().unwrap()]);
    assert_eq!((r.status, r.body.trim()), (200, (1u64 << 30).to_string().as_str()));
    let peak = vm(&inst, "VmHWM:");
    assert!(peak < before + 64 * 1024, "peak RSS {peak} kB vs {before} kB before: the upload was buffered");
    let _ = sink.kill();
    let _ = sink.wait();
}

fn vm(inst: &Instance, what: &str) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{}/status", inst.pid())).unwrap();
    s.lines().find(|l| l.starts_with(what)).unwrap().split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_1gb_download_streams_without_memory_growth() {
    let big = Backend::start("BIG");
    let f = std::fs::File::create(big.dir.path().join("www/big.bin")).unwrap();
    f.set_len(1 << 30).unwrap(); // sparse: nginx sends 1 GiB of zeros
    let extra = format!(
        "[[proxy.routes]]\nhosts = [\"files.home.arpa\"]\nupstreams = [\"{}\"]\ntls = \"internal\"\n",
        big.url()
    );
    let inst = Instance::start(&extra).await;
    let before = vm(&inst, "VmRSS:");
    let root = inst.dir.path().join("data/ca/root.crt");
    let out = Command::new("curl")
        .args(["-sS", "-o", "/dev/null", "-w", "%{http_code} %{size_download}", "--cacert", root.to_str().unwrap()])
        .arg("--resolve")
        .arg(format!("files.home.arpa:{}:127.0.0.1", inst.https.port()))
        .arg(format!("https://files.home.arpa:{}/big.bin", inst.https.port()))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), format!("200 {}", 1u64 << 30));
    let peak = vm(&inst, "VmHWM:");
    assert!(peak < before + 64 * 1024, "peak RSS {peak} kB vs {before} kB before: the body was buffered");
}

#[tokio::test(flavor = "multi_thread")]
async fn route_api_validates_and_persists() {
    let inst = Instance::start("").await;
    let (c, csrf) = admin_session(&inst).await;
    let post = |body: serde_json::Value| {
        c.post(inst.url("/api/v1/proxy/routes")).header("x-csrf-token", &csrf).json(&body).send()
    };
    // errors name the key
    let r = post(serde_json::json!({"hosts": ["a.home.arpa"], "upstreams": ["ftp://x"]})).await.unwrap();
    let e = common::expect_error(r, 422, "invalid_config").await;
    assert!(e["error"]["message"].as_str().unwrap().contains("proxy.routes[0].upstreams[0]"), "{e}");
    let r = post(serde_json::json!({"hosts": ["a.home.arpa"], "upstreams": ["http://127.0.0.1:1"], "strategy": "x"}))
        .await
        .unwrap();
    common::expect_error(r, 422, "invalid_config").await;
    let r = post(serde_json::json!({"hosts": ["a.home.arpa"], "upstream": []})).await.unwrap();
    let e = common::expect_error(r, 422, "invalid_config").await;
    assert!(e["error"]["message"].as_str().unwrap().contains("upstream"), "{e}");
    // a good one is applied and written to hearth.toml, keeping comments
    let r = post(serde_json::json!({"hosts": ["a.home.arpa"], "upstreams": ["http://127.0.0.1:1"], "tls": "internal"}))
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    // the new local name resolves in hearth's DNS at once
    let dig = Command::new("dig")
        .args(["+short", "-p", &inst.dns.port().to_string(), "@127.0.0.1", "a.home.arpa", "A"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&dig.stdout).trim(), "127.0.0.1");
    let text = std::fs::read_to_string(inst.config_path()).unwrap();
    assert!(text.contains("[[proxy.routes]]") && text.contains("a.home.arpa"), "{text}");
    assert!(text.contains("# keep this comment"));
    // the same host and prefix twice is refused
    let r = post(serde_json::json!({"hosts": ["A.home.arpa."], "upstreams": ["http://127.0.0.1:2"]})).await.unwrap();
    common::expect_error(r, 422, "invalid_config").await;
    // the test button reports the connection error
    let r: serde_json::Value = c
        .post(inst.url("/api/v1/proxy/test-upstream"))
        .header("x-csrf-token", &csrf)
        .json(&serde_json::json!({"url": "http://127.0.0.1:1"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["ok"], false);
    assert!(r["error"].as_str().unwrap().to_lowercase().contains("refused"), "{r}");
    // delete, by the route's id
    let id = routes_state(&c, &inst).await[0]["id"].as_str().unwrap().to_string();
    let url = inst.url(&format!("/api/v1/proxy/routes/{id}"));
    let r = c.delete(&url).header("x-csrf-token", &csrf).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let r = c.delete(&url).header("x-csrf-token", &csrf).send().await.unwrap();
    common::expect_error(r, 404, "not_found").await;
    // the internal root is downloadable without logging in
    let r = reqwest::get(inst.url("/ca.crt")).await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().starts_with("-----BEGIN CERTIFICATE-----"));
}

/// Issue 20 items 0–2, 4, 9, 10, 14: the front door as an attacker on the LAN tries it.
#[tokio::test(flavor = "multi_thread")]
async fn the_front_door_refuses_what_an_attacker_tries() {
    let b64 = |s: &[u8]| data_encoding::BASE64.encode(s);
    let a = Backend::start("A");
    let hash = hearth::testing::hash_password("s3cret pass").unwrap();
    let extra = format!(
        "[proxy]\n\
         [[proxy.routes]]\nhosts = [\"basic.home.arpa\"]\npath_prefix = \"/admin\"\nupstreams = [\"{a}\"]\ntls = \"internal\"\n\
         basic_auth = [\"alice:{hash}\"]\n\n\
         [[proxy.routes]]\nhosts = [\"basic.home.arpa\"]\nupstreams = [\"{a}\"]\ntls = \"internal\"\n\n\
         [[proxy.routes]]\nhosts = [\"fwd.home.arpa\"]\npath_prefix = \"/app\"\nupstreams = [\"{a}\"]\ntls = \"internal\"\n\
         forward_auth = true\nstrip_prefix = true\n\n\
         [[proxy.routes]]\nhosts = [\"strip.home.arpa\"]\npath_prefix = \"/api\"\nstrip_prefix = true\n\
         upstreams = [\"{a}/base/\"]\ntls = \"internal\"\n\n\
         [[proxy.routes]]\nhosts = [\"down.home.arpa\"]\nupstreams = [\"http://127.0.0.1:9\"]\ntls = \"internal\"\n",
        a = a.url()
    );
    let inst = Instance::start_with(
        |_| "admin_hosts = [\"hearth.home.arpa\"]\nadmin_allow = [\"127.0.0.1/32\", \"::1/128\"]\n".into(),
        &extra,
    )
    .await;
    let (c, _) = admin_session(&inst).await;
    let pa = ["--path-as-is"];

    // 1. basic auth: every malformed or wrong credential is 401 with a challenge; only the right one passes
    let good = format!("Basic {}", b64(b"alice:s3cret pass"));
    let bad = [
        None,
        Some("x".to_string()),
        Some("Bearer abc".into()),
        Some("Basic !!!".into()),
        Some(format!("Basic {}", b64(b"alice"))),
        Some(format!("Basic {}", b64(&[0xff, 0xfe, b':', b'a']))),
        Some(format!("Basic {}", b64(b":s3cret pass"))),
        Some(format!("Basic {}", b64(b"alice:wrong"))),
        Some(format!("Basic {}", b64(b"bob:s3cret pass"))),
    ];
    for h in &bad {
        let hv = h.as_ref().map(|h| format!("Authorization: {h}"));
        let args: Vec<&str> = hv.iter().flat_map(|h| ["-H", h.as_str()]).collect();
        let r = curl(&inst, "basic.home.arpa", "/admin/x", &args);
        assert_eq!(r.status, 401, "{h:?}: {}", r.body);
        assert!(r.header("www-authenticate").is_some_and(|w| w.starts_with("Basic")), "{h:?}");
    }
    let auth = format!("Authorization: {good}");
    // the right credential reaches the backend (which has no /admin: its own 404)
    let r = curl(&inst, "basic.home.arpa", "/admin/echo", &["-H", &auth]);
    assert!(r.status == 404 && r.body.contains("nginx"), "{}: {}", r.status, r.body);

    // 9. the path is normalised before matching: no spelling of /admin gets past its basic auth …
    for p in ["/%61dmin/x", "//admin/x", "/x/../admin/x", "/./admin/x", "/%2e/admin/x", "/admin/./x"] {
        let r = curl(&inst, "basic.home.arpa", p, &pa);
        assert_eq!(r.status, 401, "{p}: {}", r.body);
    }
    // … what cannot be normalised safely is refused …
    for p in ["/admin%2fx", "/x%5cadmin", "/../admin/x", "/a/%2e%2e/%2e%2e/admin"] {
        let r = curl(&inst, "basic.home.arpa", p, &pa);
        assert_eq!(r.status, 400, "{p}: {}", r.body);
    }
    // … and the backend gets the normalised path; with strip_prefix `..` cannot leave the upstream's base path
    let r = curl(&inst, "strip.home.arpa", "/api/./x//y/%7Efoo?q=1", &pa);
    assert_eq!((r.status, r.body.trim()), (200, "base uri=/base/x/y/~foo?q=1"), "{}", r.body);
    let r = curl(&inst, "strip.home.arpa", "/api/../base/x", &pa);
    assert_eq!(r.status, 404, "not under /api once normalised, so no route: {}", r.body);

    // 10. forwarding, identity and proxy headers from the client do not reach the backend; hearth's cookies neither
    let r = curl(
        &inst,
        "basic.home.arpa",
        "/echo",
        &[
            "-H",
            "X-Real-IP: 6.6.6.6",
            "-H",
            "Remote-User: admin",
            "-H",
            "X-Forwarded-User: admin",
            "-H",
            "X-Forwarded-Prefix: /evil",
            "-H",
            "Forwarded: for=6.6.6.6",
            "-H",
            "Proxy-Authorization: Basic eDp5",
            "-H",
            "Cookie: hearth_session=abc; theirs=1; __Host-hearth_session=x; hearth_fwd=y",
            "-H",
            "Connection: Upgrade",
            "-H",
            "Upgrade: h2c",
        ],
    );
    assert_eq!(r.status, 200, "{}", r.body);
    for gone in ["xri= ", "ru= ", "xfu= ", "pa= ", "up= ", "xfp= ", "cookie=theirs=1 "] {
        assert!(r.body.contains(gone), "{gone}: {}", r.body);
    }
    assert!(r.body.contains("fwd=for=127.0.0.1;host="), "{}", r.body);

    // 14. a backend that is down: the client learns a request id, not the backend's address or the OS error
    let r = curl(&inst, "down.home.arpa", "/", &[]);
    assert_eq!(r.status, 502, "{}", r.body);
    assert!(
        r.body.contains("request id") && !r.body.contains("127.0.0.1") && !r.body.contains("refused"),
        "{}",
        r.body
    );

    // 2. forward auth: the login form on the route's host whatever the prefix, its own cookie, a safe `next`
    let r = curl(&inst, "fwd.home.arpa", "/app/echo", &[]);
    assert_eq!(r.status, 302);
    assert!(r.header("location").unwrap().starts_with("/.hearth/login?next="), "{:?}", r.header("location"));
    assert_eq!(curl(&inst, "fwd.home.arpa", "/.hearth/login", &[]).status, 200, "served outside /app too");
    let login = |next: &str, pw: &str| {
        curl(
            &inst,
            "fwd.home.arpa",
            &format!("/.hearth/login?next={next}"),
            &["--data", &format!("username=admin&password={pw}")],
        )
    };
    assert_eq!(login("/app/echo", "wrong").status, 401);
    for evil in ["/%5Cevil.com", "//evil.com", "https://evil.com", "/%5C%5Cevil.com", "/x:y@evil.com"] {
        let r = login(evil, "correct+horse");
        assert_eq!(r.status, 303);
        assert_eq!(r.header("location").as_deref(), Some("/"), "next={evil}");
    }
    let r = login("/app/echo", "correct+horse");
    assert_eq!((r.status, r.header("location").as_deref()), (303, Some("/app/echo")));
    let cookie = r.header("set-cookie").unwrap();
    assert!(cookie.starts_with("__Host-hearth_fwd=") && cookie.contains("Secure"), "{cookie}");
    let pair = cookie.split(';').next().unwrap().to_string();
    let r = curl(
        &inst,
        "fwd.home.arpa",
        "/app/echo",
        &["-H", &format!("Cookie: {pair}; theirs=2"), "-H", "Remote-User: root"],
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("ru=admin xfu=admin") && r.body.contains("cookie=theirs=2 "), "{}", r.body);
    // a forward-auth session is not an admin session, under either cookie name
    let id = pair.split_once('=').unwrap().1;
    for name in ["hearth_session", "__Host-hearth_session"] {
        let r = common::client()
            .get(inst.url("/api/v1/auth/session"))
            .header("cookie", format!("{name}={id}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{name}");
    }

    // 4. the admin answers only for its names, never on a route's host, and only to admin_allow clients
    let admin = |host: &str, path: &str, extra: &[&str]| {
        curl_raw(&[&["-H", &format!("Host: {host}")], extra, &[inst.url(path).as_str()]].concat())
    };
    assert_eq!(admin("evil.example", "/api/v1/setup", &[]).status, 421, "DNS rebinding");
    assert_eq!(admin("evil.example", "/", &[]).status, 421);
    assert_eq!(admin("192.168.77.1", "/", &[]).status, 421, "not an address of this box");
    assert_eq!(admin("fwd.home.arpa", "/api/v1/setup", &[]).status, 404, "a route's host");
    assert_eq!(admin("hearth.home.arpa", "/api/v1/setup", &[]).status, 200);
    assert_eq!(admin("localhost", "/api/v1/setup", &[]).status, 200);
    assert_eq!(admin(&inst.http.to_string(), "/api/v1/setup", &[]).status, 200);
    assert_eq!(admin("evil.example", "/healthz", &[]).status, 200, "liveness answers for any name");
    // from a client outside admin_allow (127.0.0.2 is not in it here)
    let other = ["--interface", "127.0.0.2"];
    assert_eq!(admin("hearth.home.arpa", "/api/v1/setup", &other).status, 403);
    assert_eq!(admin("hearth.home.arpa", "/", &other).status, 403);
    assert_eq!(admin("hearth.home.arpa", "/healthz", &other).status, 200);
    let m = admin("hearth.home.arpa", "/metrics", &other);
    assert!(m.status == 401 || m.status == 403, "/metrics needs a metrics token from outside: {}", m.status);
    let r = admin("hearth.home.arpa", "/readyz", &other);
    assert!(!r.body.contains("subsystems") && !r.body.contains("\"dns\""), "no details: {}", r.body);
    let m = c.get(inst.url("/metrics")).send().await.unwrap();
    assert_eq!(m.status(), 200, "an admin_allow client reads /metrics");
}

/// Item 0: the UI's edit form sends the whole route; a PATCH merges; nothing the form does not show is lost,
/// secrets come back redacted and keep their value, and `headers` never corrupts hearth.toml.
#[tokio::test(flavor = "multi_thread")]
async fn editing_a_route_keeps_every_key_and_the_file_loads() {
    let inst = Instance::start("").await;
    let (c, csrf) = admin_session(&inst).await;
    let hash = hearth::testing::hash_password("s3cret pass").unwrap();
    let full = serde_json::json!({
        "hosts": ["full.home.arpa"], "path_prefix": "/app", "upstreams": ["http://127.0.0.1:1"], "tls": "internal",
        "strategy": "least_conn", "strip_prefix": true, "health_path": "/h", "max_fails": 5, "fail_timeout": "1m",
        "timeout": "2m", "connect_timeout": "3s", "hsts": false, "rate_limit": 7, "rate_limit_burst": 9,
        "basic_auth": [format!("alice:{hash}")], "forward_auth": true, "forward_auth_users": ["admin"],
        "allow": ["127.0.0.0/8"], "deny": ["127.0.0.9"],
        "headers": {"X-Robots-Tag": "noindex", "X-Frame-Options": ""}
    });
    let r = c.post(inst.url("/api/v1/proxy/routes")).header("x-csrf-token", &csrf).json(&full).send().await.unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    // the file reads back as the running config (the headers table once landed under [server])
    let out = common::cli_in(inst.dir.path(), &["check-config", inst.config_path().to_str().unwrap()], None);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let route = routes_state(&c, &inst).await[0]["route"].clone();
    assert_eq!(route["basic_auth"][0], "alice:(redacted)", "hashes are write-only");
    // what the UI does on Edit → Save without changes: send back what it read, with the form's six keys
    let mut edited = route.clone();
    edited["upstreams"] = serde_json::json!(["http://127.0.0.1:2"]);
    let url = inst.url(&format!("/api/v1/proxy/routes/{}", routes_state(&c, &inst).await[0]["id"].as_str().unwrap()));
    let r = c.put(&url).header("x-csrf-token", &csrf).json(&edited).send().await.unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    // a partial change merges
    let r = c
        .patch(&url)
        .header("x-csrf-token", &csrf)
        .json(&serde_json::json!({"health_path": "/health"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let text = std::fs::read_to_string(inst.config_path()).unwrap();
    let cfg: toml::Value = toml::from_str(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let saved = &cfg["proxy"]["routes"][0];
    for (k, v) in full.as_object().unwrap() {
        let want = match k.as_str() {
            "upstreams" => serde_json::json!(["http://127.0.0.1:2"]),
            "health_path" => serde_json::json!("/health"),
            _ => v.clone(),
        };
        let got = serde_json::to_value(&saved[k.as_str()]).unwrap();
        assert_eq!(got, want, "{k} in\n{text}");
    }
    let out = common::cli_in(inst.dir.path(), &["check-config", inst.config_path().to_str().unwrap()], None);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // and the route still asks for credentials (basic auth first, then the forward-auth login)
    let r = curl(&inst, "full.home.arpa", "/app/x", &[]);
    assert_eq!(r.status, 401, "{}", r.body);
}

/// Item 8: 2 000 connections that send half a request are closed (the per-client cap at once, the rest by the
/// header-read timeout) while /healthz, a proxied route and DNS keep answering.
#[tokio::test(flavor = "multi_thread")]
async fn slow_clients_are_cut_off_while_everything_keeps_answering() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let a = Backend::start("A");
    let extra = format!(
        "[proxy]\n[[proxy.routes]]\nhosts = [\"app.home.arpa\"]\nupstreams = [\"{}\"]\ntls = \"internal\"\n",
        a.url()
    );
    let inst =
        Instance::start_with(|_| "header_read_timeout = \"2s\"\nmax_connections_per_client = 500\n".into(), &extra)
            .await;
    let started = Instant::now();
    let mut conns = Vec::new();
    for i in 0..2000 {
        let sock = tokio::net::TcpSocket::new_v4().unwrap();
        // the attacker's address; the checks below come from 127.0.0.1
        sock.bind("127.0.0.2:0".parse().unwrap()).unwrap();
        // half a request header on HTTP; on HTTPS a TLS handshake that never starts
        let target = if i % 2 == 0 { inst.http } else { inst.https };
        let Ok(mut s) = sock.connect(target).await else { continue };
        if i % 2 == 0 {
            let _ = s.write_all(b"GET / HTTP/1.1\r\nHost: app.home.arpa\r\nX-Slow: ").await;
        }
        conns.push(s);
    }
    assert!(conns.len() >= 1900, "{} connected", conns.len());
    // everything answers meanwhile
    assert_eq!(reqwest::get(inst.url("/healthz")).await.unwrap().status(), 200);
    assert_eq!(curl(&inst, "app.home.arpa", "/", &[]).status, 200);
    let dig = Command::new("dig")
        .args(["+short", "+time=2", "-p", &inst.dns.port().to_string(), "@127.0.0.1", "app.home.arpa", "A"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&dig.stdout).trim(), "127.0.0.1");
    // every slow connection ends: refused over the cap, or closed by the timeout
    let mut closed = 0;
    for s in &mut conns {
        let mut buf = [0u8; 256];
        let left = Duration::from_secs(6).saturating_sub(started.elapsed()).max(Duration::from_millis(100));
        match tokio::time::timeout(left, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => closed += 1,
            Ok(Ok(_)) => closed += 1, // a 408/400 answer, then the close
            Err(_) => {}
        }
    }
    assert_eq!(closed, conns.len(), "all slow connections closed within 6 s");
    assert!(started.elapsed() < Duration::from_secs(30));
    assert_eq!(reqwest::get(inst.url("/healthz")).await.unwrap().status(), 200);
    // the connections over the per-client cap were counted
    let m = reqwest::get(inst.url("/metrics")).await.unwrap().text().await.unwrap();
    let refused: f64 = m
        .lines()
        .find_map(|l| l.strip_prefix("hearth_http_connections_refused_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0);
    assert!(refused >= 1000.0, "{refused} refused");
    common::promtool_check(&m);
}

#[tokio::test(flavor = "multi_thread")]
async fn http2_to_an_h2c_backend() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    std::fs::create_dir(dir.path().join("www")).unwrap();
    std::fs::write(dir.path().join("www/index.html"), "over h2\n").unwrap();
    let conf = format!(
        "user root;\nworker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\nevents {{}}\n\
         http {{ log_format p '$server_protocol $host'; access_log {d}/access.log p;\n\
           server {{ listen 127.0.0.1:{port} http2; root {d}/www; }} }}\n",
        d = dir.path().display()
    );
    std::fs::write(dir.path().join("nginx.conf"), conf).unwrap();
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = Command::new("kill").args(["-TERM", &self.0.id().to_string()]).status();
            let _ = self.0.wait();
        }
    }
    let child = Kill(
        Command::new("nginx")
            .arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(dir.path().join("nginx.conf"))
            .args(["-g", "daemon off;"])
            .spawn()
            .unwrap(),
    );
    wait_port(port);
    let extra = format!(
        "[[proxy.routes]]\nhosts = [\"h2.home.arpa\"]\nupstreams = [\"h2c://127.0.0.1:{port}\"]\ntls = \"internal\"\n"
    );
    let inst = Instance::start(&extra).await;
    for _ in 0..3 {
        let r = curl(&inst, "h2.home.arpa", "/", &["--http1.1"]);
        assert_eq!((r.status, r.body.as_str()), (200, "over h2\n"));
    }
    drop(child);
    let log = std::fs::read_to_string(dir.path().join("access.log")).unwrap();
    assert_eq!(
        log.lines().collect::<Vec<_>>(),
        ["HTTP/2.0 h2.home.arpa"; 3],
        "an HTTP/1.1 client, HTTP/2 with the client's host to the backend"
    );
}

/// The internal CA: a name-constrained root (what `/ca.crt` serves) and an intermediate that signs the leaves, served
/// as leaf + intermediate; a route with tls = "internal" and a public name widens the constraints; a change of the
/// constraint set (admin hosts) replaces the root live, keeping the old one as root.crt.old.
#[tokio::test(flavor = "multi_thread")]
async fn internal_ca_is_name_constrained_and_replaced_when_its_names_change() {
    let a = Backend::start("A");
    let extra = format!(
        "[[proxy.routes]]\nhosts = [\"app.home.arpa\"]\nupstreams = [\"{0}\"]\ntls = \"internal\"\n\n\
         [[proxy.routes]]\nhosts = [\"wiki.example.net\"]\nupstreams = [\"{0}\"]\ntls = \"internal\"\n",
        a.url()
    );
    let inst = Instance::start(&extra).await;
    let ca = inst.dir.path().join("data/ca");
    let served = reqwest::get(inst.url("/ca.crt")).await.unwrap().text().await.unwrap();
    assert_eq!(served, std::fs::read_to_string(ca.join("root.crt")).unwrap(), "/ca.crt is the root");
    assert!(!ca.join("root.key").exists(), "the root's key is not kept");
    for host in ["app.home.arpa", "wiki.example.net"] {
        let r = curl(&inst, host, "/", &[]);
        assert_eq!((r.status, r.body.as_str()), (200, "backend A\n"), "{host}");
    }

    // the handshake sends leaf + intermediate, and openssl checks them against the constrained root
    let s_client = |host: &str, root: &std::path::Path| {
        let out = Command::new("openssl")
            .args(["s_client", "-showcerts", "-verify_return_error", "-connect"])
            .arg(inst.https.to_string())
            .args(["-servername", host, "-verify_hostname", host, "-CAfile"])
            .arg(root)
            .stdin(Stdio::null())
            .output()
            .expect("openssl is needed");
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr)
    };
    let text = s_client("app.home.arpa", &ca.join("root.crt"));
    assert_eq!(text.matches("-----BEGIN CERTIFICATE-----").count(), 2, "{text}");
    assert!(text.contains("Verify return code: 0 (ok)"), "{text}");
    assert!(text.contains("hearth Intermediate CA"), "{text}");

    // another admin host changes what the root may certify: a new root, live
    let old_root = served;
    let (c, csrf) = admin_session(&inst).await;
    let r = c
        .patch(inst.url("/api/v1/config"))
        .header("x-csrf-token", &csrf)
        .json(&serde_json::json!({"server": {"admin_hosts": ["hearth.example.org"]}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let new_root = reqwest::get(inst.url("/ca.crt")).await.unwrap().text().await.unwrap();
    assert_ne!(new_root, old_root, "replaced");
    assert_eq!(std::fs::read_to_string(ca.join("root.crt.old")).unwrap(), old_root);
    assert!(inst.log_text().contains("devices must install the new root"), "{}", inst.log_text());
    let r = curl(&inst, "app.home.arpa", "/", &[]);
    assert_eq!((r.status, r.body.as_str()), (200, "backend A\n"), "trusting the new root");
    let text = s_client("app.home.arpa", &ca.join("root.crt.old"));
    assert!(!text.contains("Verify return code: 0 (ok)"), "the old root no longer verifies: {text}");
    let text = s_client("hearth.example.org", &ca.join("root.crt"));
    assert!(text.contains("Verify return code: 0 (ok)"), "the new admin host: {text}");
}

/// A peer process, stopped (SIGTERM) and reaped when dropped.
struct Peer(Child);

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.0.id().to_string()]).status();
        let _ = self.0.wait();
    }
}

/// `tests/peers/named.py`: a backend that answers "backend NAME", can be held busy (`/hold` until `/release`) and
/// answers how many body bytes arrived.
struct Named {
    _peer: Peer,
    port: u16,
    name: String,
}

impl Named {
    fn start(name: &str) -> Named {
        let port = free_port();
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/peers/named.py");
        let child = Command::new("python3").arg(script).arg(port.to_string()).arg(name).spawn().unwrap();
        let peer = Peer(child);
        wait_port(port);
        Named { _peer: peer, port, name: name.to_string() }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// A request straight to the backend, not through hearth.
    async fn direct(&self, path: &str) -> String {
        reqwest::get(format!("{}{path}", self.url())).await.unwrap().text().await.unwrap().trim().to_string()
    }

    async fn holding(&self) -> u32 {
        self.direct("/holding").await.parse().unwrap()
    }

    async fn release(&self) {
        assert_eq!(self.direct("/release").await, "released");
    }
}

/// A plain-HTTP request through hearth's HTTP listener (for `tls = "none"` routes).
fn plain(inst: &Instance, host: &str, path: &str, extra: &[&str]) -> Curl {
    curl_raw(&[&["-H", &format!("Host: {host}")], extra, &[inst.url(path).as_str()]].concat())
}

/// Wait (up to 10 s) until one of `backends` holds a `/hold` request; returns its index.
async fn wait_holding(backends: &[&Named]) -> usize {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        for (i, b) in backends.iter().enumerate() {
            if b.holding().await > 0 {
                return i;
            }
        }
        assert!(Instant::now() < deadline, "the held request reached no backend");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Issue 21 part 10: a route's `allow`/`deny` lists (client addresses or CIDRs; deny beats allow; an empty allow
/// list allows everyone not denied), from two loopback clients, 127.0.0.1 and 127.0.0.2.
#[tokio::test(flavor = "multi_thread")]
async fn route_allow_and_deny_lists_decide_by_client_address() {
    let a = Backend::start("A");
    let route = |host: &str, lists: &str| {
        format!("[[proxy.routes]]\nhosts = [\"{host}\"]\nupstreams = [\"{}\"]\ntls = \"internal\"\n{lists}\n", a.url())
    };
    let extra = [
        route("open.home.arpa", ""),
        route("loopback.home.arpa", "allow = [\"127.0.0.0/8\"]\n"),
        route("lan.home.arpa", "allow = [\"10.0.0.0/8\", \"192.168.0.0/16\"]\n"),
        route("one.home.arpa", "allow = [\"127.0.0.1\"]\n"),
        route("but.home.arpa", "allow = [\"127.0.0.0/8\"]\ndeny = [\"127.0.0.2\"]\n"),
        route("denied.home.arpa", "deny = [\"127.0.0.0/8\"]\n"),
        route("elsewhere.home.arpa", "deny = [\"10.0.0.0/8\"]\n"),
    ]
    .concat();
    let inst = Instance::start(&extra).await;
    let from = |ip: &str, host: &str, path: &str| curl(&inst, host, path, &["--interface", ip]);
    // (route, 127.0.0.1 gets through, 127.0.0.2 gets through)
    for (host, one, two) in [
        ("open.home.arpa", true, true),
        ("loopback.home.arpa", true, true),
        ("lan.home.arpa", false, false),
        ("one.home.arpa", true, false),
        ("but.home.arpa", true, false),
        ("denied.home.arpa", false, false),
        ("elsewhere.home.arpa", true, true),
    ] {
        for (ip, through) in [("127.0.0.1", one), ("127.0.0.2", two)] {
            let r = from(ip, host, "/");
            if through {
                assert_eq!((r.status, r.body.as_str()), (200, "backend A\n"), "{host} from {ip}");
            } else {
                assert_eq!(r.status, 403, "{host} from {ip}: {}", r.body);
                assert!(
                    r.body.contains("your address may not use this site"),
                    "hearth refuses, not the backend: {}",
                    r.body
                );
            }
        }
    }
    // the filter holds on every path, health paths too (those are exempt from rate limits only)
    assert_eq!(from("127.0.0.2", "but.home.arpa", "/health").status, 403);
    assert_eq!(from("127.0.0.1", "lan.home.arpa", "/healthz").status, 403);
}

/// `strategy = "ip_hash"`: each client address always lands on the same backend, and the clients spread over both.
#[tokio::test(flavor = "multi_thread")]
async fn ip_hash_keeps_each_client_on_one_backend() {
    let a = Backend::start("A");
    let b = Backend::start("B");
    let extra = format!(
        "[[proxy.routes]]\nhosts = [\"sticky.home.arpa\"]\nupstreams = [\"{}\", \"{}\"]\ntls = \"internal\"\n\
         strategy = \"ip_hash\"\n",
        a.url(),
        b.url()
    );
    let inst = Instance::start(&extra).await;
    let mut clients_of = std::collections::BTreeMap::<String, Vec<String>>::new();
    for i in 1..=16 {
        let ip = format!("127.0.0.{i}");
        let seen: std::collections::BTreeSet<String> = (0..3)
            .map(|_| {
                let r = curl(&inst, "sticky.home.arpa", "/", &["--interface", &ip]);
                assert_eq!(r.status, 200, "{}", r.body);
                r.body.trim().to_string()
            })
            .collect();
        assert_eq!(seen.len(), 1, "{ip} was sent to {seen:?}");
        clients_of.entry(seen.into_iter().next().unwrap()).or_default().push(ip);
    }
    // 16 clients on one backend: 1 chance in 2^15 with a fair hash
    assert_eq!(clients_of.len(), 2, "every client hashed to one backend: {clients_of:?}");
}

/// `strategy = "least_conn"`: while a slow request holds one backend, new requests go to the other; once it is
/// free, both serve again.
#[tokio::test(flavor = "multi_thread")]
async fn least_conn_sends_new_requests_past_a_busy_backend() {
    let a = Named::start("A");
    let b = Named::start("B");
    let extra = format!(
        "[[proxy.routes]]\nhosts = [\"busy.home.arpa\"]\nupstreams = [\"{}\", \"{}\"]\ntls = \"none\"\n\
         strategy = \"least_conn\"\n",
        a.url(),
        b.url()
    );
    let inst = Instance::start(&extra).await;
    let url = inst.url("/hold?max=15");
    let held = std::thread::spawn(move || curl_raw(&["-H", "Host: busy.home.arpa", &url]));
    let backends = [&a, &b];
    let busy = wait_holding(&backends).await;
    let (busy, idle) = (backends[busy], backends[1 - busy]);
    // round-robin would alternate; least_conn sends every one of these to the idle backend
    for _ in 0..6 {
        let r = plain(&inst, "busy.home.arpa", "/", &[]);
        assert_eq!((r.status, r.body.trim()), (200, format!("backend {}", idle.name).as_str()));
    }
    busy.release().await;
    let r = held.join().unwrap();
    assert_eq!((r.status, r.body.trim()), (200, format!("{} held", busy.name).as_str()));
    let seen: std::collections::BTreeSet<String> =
        (0..4).map(|_| plain(&inst, "busy.home.arpa", "/", &[]).body.trim().to_string()).collect();
    assert_eq!(seen.len(), 2, "both idle: ties are shared: {seen:?}");
}

/// A route's `max_body_bytes`: a body at the limit passes whole, a declared larger one gets 413 from hearth; the
/// limit is per route.
#[tokio::test(flavor = "multi_thread")]
async fn a_routes_body_limit_answers_413_past_it_and_passes_bodies_within() {
    let a = Named::start("A");
    let extra = format!(
        "[[proxy.routes]]\nhosts = [\"small.home.arpa\"]\nupstreams = [\"{0}\"]\ntls = \"none\"\nmax_body_bytes = 1000\n\n\
         [[proxy.routes]]\nhosts = [\"big.home.arpa\"]\nupstreams = [\"{0}\"]\ntls = \"none\"\n",
        a.url()
    );
    let inst = Instance::start(&extra).await;
    let post = |host: &str, n: usize, extra: &[&str]| {
        let file = inst.dir.path().join(format!("body-{n}"));
        std::fs::write(&file, vec![b'x'; n]).unwrap();
        let data = format!("@{}", file.display());
        plain(&inst, host, "/upload", &[&["--data-binary", data.as_str()], extra].concat())
    };
    let r = post("small.home.arpa", 1000, &[]);
    assert_eq!((r.status, r.body.trim()), (200, "A got 1000"), "at the limit");
    let r = post("small.home.arpa", 1001, &[]);
    assert_eq!(r.status, 413, "one byte over: {}", r.body);
    assert!(r.body.contains("larger than 1000 bytes"), "{}", r.body);
    let r = post("small.home.arpa", 999, &["-H", "Transfer-Encoding: chunked"]);
    assert_eq!((r.status, r.body.trim()), (200, "A got 999"), "a streamed body within the limit");
    let r = post("big.home.arpa", 1 << 20, &[]);
    assert_eq!((r.status, r.body.trim()), (200, "A got 1048576"), "another route, no limit");
}

/// A request body that fails on the client's side — it outgrows the route's `max_body_bytes` while streaming (no
/// Content-Length), or the client abandons the upload — is not the backend's failure: the client gets 413, and the
/// backend's circuit stays closed (it used to count: 502, and after `max_fails` (3) such requests every client got
/// 503 for `fail_timeout` — one client could take any route down).
#[tokio::test(flavor = "multi_thread")]
async fn a_clients_oversized_or_abandoned_upload_is_not_the_backends_failure() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let a = Named::start("A");
    let extra = format!(
        "[[proxy.routes]]\nhosts = [\"small.home.arpa\"]\nupstreams = [\"{0}\"]\ntls = \"none\"\nmax_body_bytes = 1000\n\n\
         [[proxy.routes]]\nhosts = [\"any.home.arpa\"]\nupstreams = [\"{0}\"]\ntls = \"none\"\n",
        a.url()
    );
    let inst = Instance::start(&extra).await;
    let file = inst.dir.path().join("body");
    std::fs::write(&file, vec![b'x'; 5000]).unwrap();
    let data = format!("@{}", file.display());
    let mut streamed = vec![];
    for _ in 0..3 {
        let r = plain(&inst, "small.home.arpa", "/", &["--data-binary", &data, "-H", "Transfer-Encoding: chunked"]);
        streamed.push(r.status);
    }
    for _ in 0..3 {
        let mut s = tokio::net::TcpStream::connect(inst.http).await.unwrap();
        s.write_all(b"POST / HTTP/1.1\r\nHost: any.home.arpa\r\nContent-Length: 100000\r\n\r\n0123456789")
            .await
            .unwrap();
        // hearth has passed the request on and waits for the rest of the body; the client goes away
        let mut buf = [0u8; 64];
        let _ = tokio::time::timeout(Duration::from_millis(300), s.read(&mut buf)).await;
    }
    // the backend is healthy: both routes still reach it
    let after: Vec<u16> =
        ["small.home.arpa", "any.home.arpa"].iter().map(|h| plain(&inst, h, "/", &[]).status).collect();
    assert_eq!(
        (streamed, after),
        (vec![413; 3], vec![200, 200]),
        "(a body streamed past max_body_bytes ×3, then GET on the two routes)"
    );
}

/// A route's `timeout` (waiting for the response headers): a backend slower than it gets 504 with a request id, the
/// route keeps serving, and a route with the default timeout waits for the same backend.
#[tokio::test(flavor = "multi_thread")]
async fn a_backend_slower_than_the_routes_timeout_gets_504() {
    let a = Named::start("A");
    let extra = format!(
        "[[proxy.routes]]\nhosts = [\"hasty.home.arpa\"]\nupstreams = [\"{0}\"]\ntls = \"none\"\ntimeout = \"1s\"\n\n\
         [[proxy.routes]]\nhosts = [\"patient.home.arpa\"]\nupstreams = [\"{0}\"]\ntls = \"none\"\n",
        a.url()
    );
    let inst = Instance::start(&extra).await;
    let r = plain(&inst, "hasty.home.arpa", "/hold?max=15", &[]);
    assert_eq!(r.status, 504, "{}", r.body);
    assert!(r.body.contains("request id") && !r.body.contains("127.0.0.1"), "{}", r.body);
    a.release().await;
    let r = plain(&inst, "hasty.home.arpa", "/", &[]);
    assert_eq!((r.status, r.body.trim()), (200, "backend A"), "one timeout does not take the backend out");
    // the backend answers by itself after 2 s, past the other route's 1 s
    let r = plain(&inst, "patient.home.arpa", "/hold?max=2", &[]);
    assert_eq!((r.status, r.body.trim()), (200, "A held"), "the default timeout (60s) waits");
}

/// `https://` upstreams: the backend's certificate is verified against hearth's trust store (the Mozilla roots and
/// hearth's internal root; a route has no setting of its own): one issued under hearth's internal CA is accepted
/// (HTTP/2 when the backend offers it), a self-signed one or one for another name is refused with 502.
#[tokio::test(flavor = "multi_thread")]
async fn https_backends_are_verified_against_hearths_trust_store() {
    let (good, bad) = (free_port(), free_port());
    let route = |host: &str, upstream: String| {
        format!("[[proxy.routes]]\nhosts = [\"{host}\"]\nupstreams = [\"{upstream}\"]\ntls = \"internal\"\n\n")
    };
    let extra = [
        route("secure.home.arpa", format!("https://127.0.0.1:{good}")),
        route("selfsigned.home.arpa", format!("https://127.0.0.1:{bad}")),
        route("wrongname.home.arpa", format!("https://localhost:{good}")),
    ]
    .concat();
    let inst = Instance::start(&extra).await;

    // the backend's key and two certificates for 127.0.0.1: one signed by hearth's intermediate, one self-signed
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let p = |f: &str| d.join(f).to_str().unwrap().to_string();
    let ca = inst.dir.path().join("data/ca");
    let (ca_crt, ca_key) = (ca.join("intermediate.crt"), ca.join("intermediate.key"));
    std::fs::write(
        d.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    let openssl = |args: &[&str]| {
        let out = Command::new("openssl").args(args).output().expect("openssl is needed");
        assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    openssl(&[
        "req",
        "-new",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        &p("key.pem"),
        "-out",
        &p("csr.pem"),
        "-subj",
        "/CN=backend",
    ]);
    openssl(&[
        "x509",
        "-req",
        "-in",
        &p("csr.pem"),
        "-CA",
        ca_crt.to_str().unwrap(),
        "-CAkey",
        ca_key.to_str().unwrap(),
        "-set_serial",
        "4242",
        "-days",
        "2",
        "-extfile",
        &p("ext.cnf"),
        "-out",
        &p("leaf.pem"),
    ]);
    let chain = std::fs::read_to_string(d.join("leaf.pem")).unwrap() + &std::fs::read_to_string(&ca_crt).unwrap();
    std::fs::write(d.join("chain.pem"), chain).unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        &p("csr.pem"),
        "-signkey",
        &p("key.pem"),
        "-days",
        "2",
        "-extfile",
        &p("ext.cnf"),
        "-out",
        &p("self.pem"),
    ]);
    std::fs::create_dir(d.join("www")).unwrap();
    std::fs::write(d.join("www/index.html"), "secure\n").unwrap();
    let conf = format!(
        "user root;\nworker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\nevents {{}}\n\
         http {{ log_format p '$server_port $server_protocol'; access_log {d}/access.log p; root {d}/www;\n\
           ssl_certificate_key {d}/key.pem;\n\
           server {{ listen 127.0.0.1:{good} ssl http2; ssl_certificate {d}/chain.pem; }}\n\
           server {{ listen 127.0.0.1:{bad} ssl; ssl_certificate {d}/self.pem; }} }}\n",
        d = d.display()
    );
    std::fs::write(d.join("nginx.conf"), conf).unwrap();
    let _nginx = Peer(
        Command::new("nginx")
            .arg("-p")
            .arg(d)
            .arg("-c")
            .arg(d.join("nginx.conf"))
            .args(["-g", "daemon off;"])
            .spawn()
            .expect("nginx is needed"),
    );
    wait_port(good);
    wait_port(bad);
    // both serve (to a client that does not verify)
    for port in [good, bad] {
        let r = curl_raw(&["-k", "--http1.1", &format!("https://127.0.0.1:{port}/")]);
        assert_eq!((r.status, r.body.as_str()), (200, "secure\n"), "{port}");
    }

    for _ in 0..2 {
        let r = curl(&inst, "secure.home.arpa", "/", &[]);
        assert_eq!((r.status, r.body.as_str()), (200, "secure\n"));
    }
    for (host, why) in [("selfsigned.home.arpa", "UnknownIssuer"), ("wrongname.home.arpa", "not valid for name")] {
        let r = curl(&inst, host, "/", &[]);
        assert_eq!(r.status, 502, "{host}: {}", r.body);
        assert!(r.body.contains("request id"), "{}", r.body);
        assert!(inst.log_text().contains(why), "{host}: the log says why ({why}):\n{}", inst.log_text());
    }
    // the refused handshakes carried no request; the accepted ones went over HTTP/2
    let log = std::fs::read_to_string(d.join("access.log")).unwrap();
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(
        lines,
        [format!("{good} HTTP/1.1"), format!("{bad} HTTP/1.1"), format!("{good} HTTP/2.0"), format!("{good} HTTP/2.0")],
        "{log}"
    );
}

/// `server.admin_hosts` over HTTPS: a listed name gets a certificate from the internal CA and the admin UI/API; an
/// unlisted name gets no certificate and, past that, 421 (the check is on the Host header, not the TLS name); a
/// change through the API applies at once. (Plain HTTP is covered by `the_front_door_refuses_what_an_attacker_tries`.)
#[tokio::test(flavor = "multi_thread")]
async fn admin_hosts_decide_where_the_admin_answers_over_https_and_follow_changes() {
    let inst = Instance::start_with(|_| "admin_hosts = [\"hearth.example.org\"]\n".into(), "").await;
    let unverified = |host: &str, path: &str| {
        let resolve = format!("{host}:{}:127.0.0.1", inst.https.port());
        curl_raw(&["-k", "--resolve", &resolve, &format!("https://{host}:{}{path}", inst.https.port())])
    };
    let r = curl(&inst, "hearth.example.org", "/api/v1/setup", &[]);
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("needs_setup"), "{}", r.body);
    assert_eq!(curl(&inst, "hearth.example.org", "/", &[]).status, 200, "the UI");

    let root = inst.dir.path().join("data/ca/root.crt");
    let resolve = format!("other.example.org:{}:127.0.0.1", inst.https.port());
    let url = format!("https://other.example.org:{}/api/v1/setup", inst.https.port());
    let e = try_curl(&["--cacert", root.to_str().unwrap(), "--resolve", &resolve, &url]).err();
    assert!(e.is_some(), "no trusted certificate for an unlisted name");
    assert_eq!(unverified("other.example.org", "/api/v1/setup").status, 421);
    assert_eq!(unverified("other.example.org", "/").status, 421);
    let r = curl(&inst, "hearth.example.org", "/api/v1/setup", &["-H", "Host: other.example.org"]);
    assert_eq!(r.status, 421, "the listed name's TLS connection, another Host");

    let (c, csrf) = admin_session(&inst).await;
    let r = c
        .patch(inst.url("/api/v1/config"))
        .header("x-csrf-token", &csrf)
        .json(&serde_json::json!({"server": {"admin_hosts": ["box.example.org"]}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let r = curl(&inst, "box.example.org", "/api/v1/setup", &[]);
    assert_eq!(r.status, 200, "the new name, with a certificate under the new root: {}", r.body);
    assert_eq!(unverified("hearth.example.org", "/api/v1/setup").status, 421, "the old name is refused");
}

/// `hsts = false`: no `Strict-Transport-Security` on that route over HTTPS while a default route sends it; the other
/// security headers stay.
#[tokio::test(flavor = "multi_thread")]
async fn hsts_false_leaves_strict_transport_security_off_that_route() {
    let a = Backend::start("A");
    let extra = format!(
        "[[proxy.routes]]\nhosts = [\"hsts.home.arpa\"]\nupstreams = [\"{0}\"]\ntls = \"internal\"\n\n\
         [[proxy.routes]]\nhosts = [\"nohsts.home.arpa\"]\nupstreams = [\"{0}\"]\ntls = \"internal\"\nhsts = false\n",
        a.url()
    );
    let inst = Instance::start(&extra).await;
    let r = curl(&inst, "hsts.home.arpa", "/", &[]);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("strict-transport-security").as_deref(), Some("max-age=31536000"));
    let r = curl(&inst, "nohsts.home.arpa", "/", &[]);
    assert_eq!((r.status, r.body.as_str()), (200, "backend A\n"));
    assert_eq!(r.header("strict-transport-security"), None, "{}", r.headers);
    assert_eq!(r.header("x-content-type-options").as_deref(), Some("nosniff"));
    assert_eq!(r.header("x-frame-options").as_deref(), Some("SAMEORIGIN"));
}

/// Which paths a route's rate limit never counts (README: "health paths exempt"), exactly as it is today: the
/// route's own `health_path` and `/healthz`, `/readyz`, `/health`, `/livez`, `/ping` on every route, matched whole
/// and case-sensitively on the normalised path (the query does not matter). They take nothing from the budget and
/// carry no `X-RateLimit-*` headers; anything else, near misses included, is limited.
#[tokio::test(flavor = "multi_thread")]
async fn health_paths_are_exempt_from_a_routes_rate_limit() {
    let a = Backend::start("A");
    let extra = format!(
        "[[proxy.routes]]\nhosts = [\"limited.home.arpa\"]\nupstreams = [\"{}\"]\ntls = \"none\"\nrate_limit = 1\n\
         rate_limit_burst = 2\nhealth_path = \"/base/alive\"\n",
        a.url()
    );
    let inst = Instance::start(&extra).await;
    let get = |path: &str| plain(&inst, "limited.home.arpa", path, &["--path-as-is"]);
    let exempt =
        ["/healthz", "/readyz", "/health", "/livez", "/ping", "/base/alive", "/health?deep=1", "/%68ealth", "/./ping"];
    let limited = [
        "/",
        "/health/",
        "/healthz/x",
        "/HEALTH",
        "/api/health",
        "/pingz",
        "/live",
        "/base/alive/",
        "/status",
        "/metrics",
    ];
    // exempt requests spend nothing: after many, the whole burst of 2 is left
    for p in exempt {
        for _ in 0..3 {
            let r = get(p);
            assert_ne!(r.status, 429, "{p}");
            assert_eq!(r.header("x-ratelimit-limit"), None, "{p}");
        }
    }
    assert_eq!(get("/").status, 200);
    assert_eq!(get("/").status, 200);
    // with the budget spent, an exempt path still passes and anything else is refused
    let spend = || {
        for _ in 0..10 {
            if get("/").status == 429 {
                return;
            }
        }
        panic!("the rate limit never refused");
    };
    for p in exempt {
        spend();
        let r = get(p);
        assert_ne!(r.status, 429, "{p} is exempt");
    }
    // A limited path counts against the budget: it always carries the limit headers, and right after the budget is
    // spent it is refused. One token comes back each second, so on a loaded machine the request after `spend` can
    // land just after a refill; that is the limiter working, and the next try (budget spent again) shows the 429.
    for p in limited {
        let refused = (0..5).any(|_| {
            spend();
            let r = get(p);
            assert!(r.header("x-ratelimit-limit").is_some(), "{p} carries no limit header");
            r.status == 429 && r.header("x-ratelimit-remaining").as_deref() == Some("0")
        });
        assert!(refused, "{p} is limited");
    }
}
