//! The admin API, driven over HTTP against the real binary.

mod common;

use common::*;
use serde_json::{Value, json};
use std::time::Duration;

#[tokio::test]
async fn setup_login_token_logout() {
    let inst = Instance::start("").await;
    let c = client();
    let v: Value = c.get(inst.url("/api/v1/setup")).send().await.unwrap().json().await.unwrap();
    assert_eq!(v["needs_setup"], true);

    // weak passwords and bad names are refused with a JSON error
    let r = c
        .post(inst.url("/api/v1/setup"))
        .json(&json!({"username": "admin", "password": "short"}))
        .send()
        .await
        .unwrap();
    expect_error(r, 422, "invalid_input").await;

    let (c, csrf) = admin_session(&inst).await;
    let v: Value = c.get(inst.url("/api/v1/setup")).send().await.unwrap().json().await.unwrap();
    assert_eq!(v["needs_setup"], false);
    let r = c
        .post(inst.url("/api/v1/setup"))
        .json(&json!({"username": "x", "password": "long enough"}))
        .send()
        .await
        .unwrap();
    expect_error(r, 409, "conflict").await;

    // wrong password
    let r = client()
        .post(inst.url("/api/v1/auth/login"))
        .json(&json!({"username": "admin", "password": "nope nope"}))
        .send()
        .await
        .unwrap();
    expect_error(r, 401, "invalid_credentials").await;

    // the session works for reads; writes need the CSRF token
    let v: Value = c.get(inst.url("/api/v1/auth/session")).send().await.unwrap().json().await.unwrap();
    assert_eq!(v["user"], "admin");
    assert_eq!(v["csrf_token"], csrf.as_str());
    let r = c.post(inst.url("/api/v1/tokens")).json(&json!({"name": "ci"})).send().await.unwrap();
    expect_error(r, 403, "csrf_failed").await;
    let r = c
        .post(inst.url("/api/v1/tokens"))
        .header("x-csrf-token", "wrong")
        .json(&json!({"name": "ci"}))
        .send()
        .await
        .unwrap();
    expect_error(r, 403, "csrf_failed").await;
    let r = c
        .post(inst.url("/api/v1/tokens"))
        .header("x-csrf-token", &csrf)
        .json(&json!({"name": "ci"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let created: Value = r.json().await.unwrap();
    let token = created["token"].as_str().unwrap().to_string();
    let id = created["info"]["id"].as_i64().unwrap();
    let r = c
        .post(inst.url("/api/v1/tokens"))
        .header("x-csrf-token", &csrf)
        .json(&json!({"name": "ci"}))
        .send()
        .await
        .unwrap();
    expect_error(r, 409, "conflict").await;

    // the token authenticates without cookies (and without CSRF), and its last use is recorded
    let bare = reqwest::Client::new();
    let list: Value =
        bare.get(inst.url("/api/v1/tokens")).bearer_auth(&token).send().await.unwrap().json().await.unwrap();
    assert_eq!(list[0]["name"], "ci");
    assert!(list[0]["last_used_at"].is_i64(), "{list}");
    assert!(list.to_string().find(&token).is_none(), "secrets are never listed");
    let r = bare.get(inst.url("/api/v1/status")).bearer_auth("hth_forged").send().await.unwrap();
    expect_error(r, 401, "invalid_token").await;

    // revocation takes effect at once
    let r = bare.delete(inst.url(&format!("/api/v1/tokens/{id}"))).bearer_auth(&token).send().await.unwrap();
    assert_eq!(r.status(), 204);
    let r = bare.get(inst.url("/api/v1/tokens")).bearer_auth(&token).send().await.unwrap();
    expect_error(r, 401, "invalid_token").await;
    let r = c.delete(inst.url(&format!("/api/v1/tokens/{id}"))).header("x-csrf-token", &csrf).send().await.unwrap();
    expect_error(r, 404, "not_found").await;

    // logout ends the session
    let r = c.post(inst.url("/api/v1/auth/logout")).header("x-csrf-token", &csrf).send().await.unwrap();
    assert_eq!(r.status(), 204);
    let r = c.get(inst.url("/api/v1/status")).send().await.unwrap();
    expect_error(r, 401, "unauthenticated").await;
}

#[tokio::test]
async fn session_cookie_attributes() {
    let inst = Instance::start("").await;
    let c = client();
    c.post(inst.url("/api/v1/setup"))
        .json(&json!({"username": "admin", "password": "correct horse"}))
        .send()
        .await
        .unwrap();
    let r = c
        .post(inst.url("/api/v1/auth/login"))
        .json(&json!({"username": "ADMIN", "password": "correct horse"}))
        .send()
        .await
        .unwrap();
    let cookie = r.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(cookie.starts_with("hearth_session="), "{cookie}");
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age=604800"] {
        assert!(cookie.contains(attr), "{attr} in {cookie}");
    }
    assert!(!cookie.contains("Secure"), "plain HTTP cookies cannot be Secure");
}

/// Every route in the OpenAPI document answers 401 without credentials, except the public ones.
#[tokio::test]
async fn every_documented_route_requires_auth_except_public_ones() {
    let inst = Instance::start("").await;
    let c = reqwest::Client::new();
    let doc: Value = c.get(inst.url("/api/v1/openapi.json")).send().await.unwrap().json().await.unwrap();
    let mut public = vec![];
    let mut protected = 0;
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for (method, op) in ops.as_object().unwrap() {
            let url = inst.url(&path.replace("{id}", "1"));
            let m = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let mut req = c.request(m, &url);
            if matches!(method.as_str(), "post" | "patch" | "put") {
                req = req.json(&json!({}));
            }
            let r = req.send().await.unwrap();
            let secured = op.get("security").is_some_and(|s| s.as_array().is_some_and(|a| !a.is_empty()));
            if secured {
                protected += 1;
                expect_error(r, 401, "unauthenticated").await;
            } else {
                assert_ne!(r.status(), 401, "{method} {path} is public");
                public.push(format!("{} {path}", method.to_uppercase()));
            }
        }
    }
    public.sort();
    assert_eq!(
        public,
        [
            "GET /api/v1/openapi.json",
            "GET /api/v1/setup",
            "GET /ca.crt",
            "GET /dns-query",
            "GET /healthz",
            "GET /metrics",
            "GET /readyz",
            "POST /api/v1/auth/login",
            "POST /api/v1/setup",
            "POST /dns-query",
        ]
    );
    assert_eq!(protected, 39, "protected operations");
    // every /api/v1 route is in the document
    for p in [
        "/api/v1/tokens",
        "/api/v1/tokens/{id}",
        "/api/v1/config",
        "/api/v1/config/reload",
        "/api/v1/status",
        "/api/v1/auth/logout",
        "/api/v1/system/resolved",
    ] {
        assert!(doc["paths"].get(p).is_some(), "{p} documented");
    }
}

#[tokio::test]
async fn bad_input_gets_json_errors_with_ids() {
    let inst = Instance::start_with(|_| "max_body_bytes = 2048\n".into(), "").await;
    let c = reqwest::Client::new();
    let url = inst.url("/api/v1/auth/login");
    let r = c.post(&url).header("content-type", "application/json").body("{bad").send().await.unwrap();
    expect_error(r, 400, "invalid_json").await;
    let r = c.post(&url).body("{}").send().await.unwrap();
    expect_error(r, 415, "unsupported_media_type").await;
    let r = c.post(&url).json(&json!({"username": 5})).send().await.unwrap();
    expect_error(r, 422, "invalid_input").await;
    let r = c.post(&url).json(&json!({"username": "a", "password": "b", "extra": 1})).send().await.unwrap();
    expect_error(r, 422, "invalid_input").await;
    let big = json!({"username": "a", "password": "x".repeat(5000)});
    let r = c.post(&url).json(&big).send().await.unwrap();
    expect_error(r, 413, "payload_too_large").await;
    // a body without Content-Length is cut off at the limit too
    let raw = raw_chunked(inst.http, "/api/v1/auth/login", &"x".repeat(4096)).await;
    assert!(raw.starts_with("HTTP/1.1 413"), "{raw}");
    assert!(raw.contains("\"payload_too_large\""), "{raw}");
    let r = c.get(inst.url("/api/v1/nope")).send().await.unwrap();
    expect_error(r, 404, "not_found").await;
    let r = c.put(inst.url("/api/v1/setup")).send().await.unwrap();
    expect_error(r, 405, "method_not_allowed").await;
    // the error id is in the log, with the request id
    let r = c.post(&url).header("x-request-id", "trace-me-42").json(&json!({})).send().await.unwrap();
    assert_eq!(r.headers()["x-request-id"], "trace-me-42");
    let v = expect_error(r, 422, "invalid_input").await;
    let id = v["error"]["id"].as_str().unwrap().to_string();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let logs = inst.log_text();
    let line = logs.lines().find(|l| l.contains(&id)).unwrap_or_else(|| panic!("error id {id} logged:\n{logs}"));
    assert!(line.contains("trace-me-42"), "{line}");
}

async fn raw_chunked(addr: std::net::SocketAddr, path: &str, body: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    );
    s.write_all(head.as_bytes()).await.unwrap();
    let chunk = format!("{:x}\r\n{body}\r\n0\r\n\r\n", body.len());
    let _ = s.write_all(chunk.as_bytes()).await;
    let mut out = vec![];
    let _ = s.read_to_end(&mut out).await;
    String::from_utf8_lossy(&out).to_string()
}

#[tokio::test]
async fn every_log_line_of_a_request_carries_its_id() {
    let inst = Instance::start("").await;
    let c = reqwest::Client::new();
    let r = c.get(inst.url("/api/v1/setup")).send().await.unwrap();
    let id = r.headers()["x-request-id"].to_str().unwrap().to_string();
    assert_eq!(id.len(), 36, "a generated UUID");
    // an unusable incoming id is replaced
    let r = c.get(inst.url("/readyz")).header("x-request-id", "bad id with spaces").send().await.unwrap();
    assert_ne!(r.headers()["x-request-id"], "bad id with spaces");
    let r = c
        .post(inst.url("/api/v1/auth/login"))
        .header("x-request-id", "login-1")
        .json(&json!({"username": "who", "password": "whatever1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let logs = inst.log_text();
    let lines: Vec<&str> = logs.lines().filter(|l| l.contains("login-1")).collect();
    assert!(lines.len() >= 2, "failed-login warning and access log: {lines:?}");
    for l in &lines {
        let v: Value = serde_json::from_str(l).unwrap_or_else(|_| panic!("JSON log line: {l}"));
        assert_eq!(v["span"]["request_id"], "login-1", "{l}");
    }
    assert!(lines.iter().any(|l| l.contains("failed login")));
    assert!(lines.iter().any(|l| l.contains("http request")));
}

#[tokio::test]
async fn login_is_rate_limited_per_user_and_client() {
    let inst = Instance::start("[auth]\nlogin_free_attempts = 2\n").await;
    let (_, _) = admin_session(&inst).await;
    let c = reqwest::Client::new();
    let login = |pw: &'static str| {
        c.post(inst.url("/api/v1/auth/login")).json(&json!({"username": "admin", "password": pw})).send()
    };
    assert_eq!(login("wrong one").await.unwrap().status(), 401);
    assert_eq!(login("wrong two").await.unwrap().status(), 401);
    let r = login("correct horse").await.unwrap();
    let retry: u64 = r.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=2).contains(&retry), "{retry}");
    expect_error(r, 429, "rate_limited").await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(login("wrong three").await.unwrap().status(), 401);
    let r = login("correct horse").await.unwrap();
    assert_eq!(r.status(), 429, "the wait doubled to 2 s");
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(login("correct horse").await.unwrap().status(), 200);
}

#[tokio::test]
async fn status_metrics_and_ui() {
    let inst = Instance::start("").await;
    let (c, _) = admin_session(&inst).await;
    let v: Value = c.get(inst.url("/api/v1/status")).send().await.unwrap().json().await.unwrap();
    for s in ["storage", "http", "https", "metrics"] {
        assert_eq!(v["subsystems"][s]["state"], "ready", "{s}: {v}");
    }
    assert!(v["process"]["rss_bytes"].as_u64().unwrap() > 1_000_000);
    let ready: Value = c.get(inst.url("/readyz")).send().await.unwrap().json().await.unwrap();
    assert_eq!(ready["status"], "ready");

    // /metrics passes promtool
    let text = c.get(inst.url("/metrics")).send().await.unwrap().text().await.unwrap();
    for m in [
        "hearth_http_requests_total{",
        "hearth_http_request_duration_seconds_bucket{",
        "hearth_subsystem_state{",
        "hearth_build_info{",
        "process_resident_memory_bytes",
        "process_open_fds",
        "process_cpu_seconds_total",
        "hearth_subsystem_restarts_total{",
    ] {
        assert!(text.contains(m), "{m} in /metrics");
    }
    promtool_check(&text);

    // the UI: app shell for client routes, hashed assets cached for long, precompressed variants
    let r = c.get(inst.url("/tokens")).header("accept-encoding", "br").send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-encoding"], "br");
    assert_eq!(r.headers()["cache-control"], "no-cache");
    let plain = reqwest::Client::builder().no_brotli().no_gzip().build().unwrap();
    let html = plain.get(inst.url("/")).send().await.unwrap().text().await.unwrap();
    let js = html.split("src=\"").nth(1).unwrap().split('"').next().unwrap().to_string();
    let r = plain.get(inst.url(&js)).send().await.unwrap();
    assert_eq!(r.headers()["content-type"], "text/javascript; charset=utf-8");
    assert_eq!(r.headers()["cache-control"], "public, max-age=31536000, immutable");
    let etag = r.headers()["etag"].clone();
    let r = plain.get(inst.url(&js)).header("if-none-match", etag).send().await.unwrap();
    assert_eq!(r.status(), 304);
    let r = plain.get(inst.url("/assets/missing.js")).send().await.unwrap();
    assert_eq!(r.status(), 404);
}

/// Over HTTPS (HTTP/2, self-signed certificate) the session cookie is Secure and HSTS is sent.
#[tokio::test]
async fn https_listener_serves_h2_with_secure_cookies() {
    let inst = Instance::start("").await;
    admin_session(&inst).await;
    let out = std::process::Command::new("curl")
        .args(["-sk", "--http2", "-D", "-", "-o", "/dev/null", "-w", "%{http_version}\n"])
        .args(["-H", "content-type: application/json", "--data", r#"{"username":"admin","password":"correct horse"}"#])
        .arg(format!("https://{}/api/v1/auth/login", inst.https))
        .output()
        .expect("curl is needed: .ci/deps installs it");
    let text = String::from_utf8_lossy(&out.stdout).to_lowercase();
    assert!(text.starts_with("http/2 200"), "{text}");
    let cookie = text.lines().find(|l| l.starts_with("set-cookie:")).unwrap_or_default();
    assert!(cookie.contains("; secure") && cookie.contains("httponly") && cookie.contains("samesite=strict"), "{text}");
    assert!(text.contains("strict-transport-security: max-age="), "{text}");
    assert!(text.trim_end().ends_with('2'), "negotiated HTTP/2 via ALPN: {text}");
    let key = inst.dir.path().join("data/tls/selfsigned.key");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(key).unwrap().permissions().mode() & 0o777, 0o600);
}
