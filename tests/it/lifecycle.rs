//! Configuration changes, signals and the command line, against the real binary.

use crate::common::*;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

#[tokio::test]
async fn bad_config_is_rejected_with_the_key_and_the_old_one_keeps_serving() {
    let inst = Instance::start("").await;
    let (c, csrf) = admin_session(&inst).await;
    let before = std::fs::read_to_string(inst.config_path()).unwrap();
    let patch = |body: Value| c.patch(inst.url("/api/v1/config")).header("x-csrf-token", &csrf).json(&body).send();

    // invalid values: 422 naming the key, nothing changes
    for (body, key) in [
        (json!({"log": {"level": "loud["}}), "log.level"),
        (json!({"auth": {"session_ttl": "forever"}}), "auth.session_ttl"),
        (json!({"server": {"http_listen": ["nowhere"]}}), "server.http_listen[0]"),
        (json!({"server": {"nonsense": 1}}), "server.nonsense"),
    ] {
        let v = expect_error(patch(body).await.unwrap(), 422, "invalid_config").await;
        assert_eq!(v["error"]["key"], key, "{v}");
        assert!(v["error"]["message"].as_str().unwrap().starts_with(key), "{v}");
    }
    // an address that cannot be bound (in use by someone else) is refused before anything changes
    let squatter = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = squatter.local_addr().unwrap().to_string();
    let v =
        expect_error(patch(json!({"server": {"http_listen": [taken]}})).await.unwrap(), 422, "invalid_config").await;
    assert_eq!(v["error"]["key"], "server.http_listen[0]");
    assert!(v["error"]["message"].as_str().unwrap().contains("cannot listen"), "{v}");
    assert_eq!(std::fs::read_to_string(inst.config_path()).unwrap(), before, "file untouched");

    // a good change applies live and is written back with the comments kept
    let r = patch(json!({"log": {"level": "debug"}, "auth": {"session_ttl": "12h"}})).await.unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["config"]["log"]["level"], "debug");
    assert_eq!(v["report"]["persisted"], true);
    let after = std::fs::read_to_string(inst.config_path()).unwrap();
    assert!(after.contains("# chatty for tests\nlevel = \"debug\" # keep this comment"), "{after}");
    assert!(after.contains("[auth]\nsession_ttl = \"12h\""), "{after}");
    assert!(after.starts_with("# test instance\n"));

    // a broken file on SIGHUP or API reload is refused; the running config stays
    std::fs::write(inst.config_path(), after.replace("level = \"debug\"", "level = 42")).unwrap();
    inst.signal("HUP");
    inst.wait_log("configuration rejected", Duration::from_secs(10)).await;
    let r = c.post(inst.url("/api/v1/config/reload")).header("x-csrf-token", &csrf).send().await.unwrap();
    let v = expect_error(r, 422, "invalid_config").await;
    assert_eq!(v["error"]["key"], "log.level");
    let v: Value = c.get(inst.url("/api/v1/config")).send().await.unwrap().json().await.unwrap();
    assert_eq!(v["config"]["log"]["level"], "debug");
    assert_eq!(c.get(inst.url("/readyz")).send().await.unwrap().status(), 200);

    // fixing the file and sending SIGHUP applies it
    std::fs::write(inst.config_path(), after.replace("level = \"debug\"", "level = \"warn\"")).unwrap();
    inst.signal("HUP");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let v: Value = c.get(inst.url("/api/v1/config")).send().await.unwrap().json().await.unwrap();
        if v["config"]["log"]["level"] == "warn" {
            break;
        }
        assert!(Instant::now() < deadline, "SIGHUP reload");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn listeners_move_when_the_config_changes() {
    let inst = Instance::start("").await;
    let (c, csrf) = admin_session(&inst).await;
    let new_port = free_port();
    let r = c
        .patch(inst.url("/api/v1/config"))
        .header("x-csrf-token", &csrf)
        .json(&json!({"server": {"http_listen": [format!("127.0.0.1:{new_port}")]}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let moved = format!("http://127.0.0.1:{new_port}/healthz");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let old_gone = reqwest::get(inst.url("/healthz")).await.is_err();
        let new_up = reqwest::get(&moved).await.is_ok_and(|r| r.status() == 200);
        if old_gone && new_up {
            break;
        }
        assert!(Instant::now() < deadline, "old_gone={old_gone} new_up={new_up}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A backend behind a plain-HTTP proxy route that takes one request and holds it: `arrived` fires once the request
/// (through hearth) is in, and the answer (200 "finished") goes out only when `release` is sent.
struct HeldBackend {
    port: u16,
    arrived: tokio::sync::oneshot::Receiver<()>,
    release: std::sync::mpsc::Sender<()>,
}

impl HeldBackend {
    fn start() -> HeldBackend {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let (arrived_tx, arrived) = tokio::sync::oneshot::channel();
        let (release, release_rx) = std::sync::mpsc::channel::<()>();
        std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut head = vec![];
            let mut buf = [0u8; 4096];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                match s.read(&mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => head.extend_from_slice(&buf[..n]),
                }
            }
            let _ = arrived_tx.send(());
            if release_rx.recv().is_ok() {
                let _ = s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 9\r\nconnection: close\r\n\r\nfinished\n");
            }
        });
        HeldBackend { port, arrived, release }
    }

    /// A plain-HTTP route for slow.home.arpa to this backend.
    fn route(&self) -> String {
        format!(
            "[[proxy.routes]]\nhosts = [\"slow.home.arpa\"]\nupstreams = [\"http://127.0.0.1:{}\"]\ntls = \"none\"\n",
            self.port
        )
    }
}

/// Send GET http://slow.home.arpa/ through `inst`'s HTTP listener in the background: (status, body).
fn request_slow(inst: &Instance) -> tokio::task::JoinHandle<reqwest::Result<(u16, String)>> {
    let url = inst.url("/");
    tokio::spawn(async move {
        let r = reqwest::Client::new().get(url).header("host", "slow.home.arpa").send().await?;
        let status = r.status().as_u16();
        Ok((status, r.text().await?))
    })
}

/// SIGTERM while a request is in flight: hearth stops listening but lets the request finish (its answer reaches
/// the client in full), then exits cleanly.
#[tokio::test]
async fn sigterm_lets_the_request_in_flight_finish_then_exits_cleanly() {
    let mut backend = HeldBackend::start();
    // a shutdown deadline far above the backend's hold below
    let mut inst = Instance::start_with(|_| "shutdown_timeout = \"20s\"\n".into(), &backend.route()).await;
    let in_flight = request_slow(&inst);
    tokio::time::timeout(Duration::from_secs(20), &mut backend.arrived)
        .await
        .expect("the request reached the backend through hearth")
        .unwrap();
    inst.signal("TERM");
    inst.wait_log("shutting down", Duration::from_secs(10)).await;
    // the listener is closed: shutdown is under way while the request is still held by the backend
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(inst.http).is_ok() {
        assert!(Instant::now() < deadline, "hearth kept accepting connections after SIGTERM");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // a slow request: the backend answers a second into the shutdown (nothing here measures time; the hold is the
    // scenario, well inside the 20 s deadline, and a hearth that does not wait for it has exited by then)
    tokio::time::sleep(Duration::from_secs(1)).await;
    backend.release.send(()).unwrap();
    let answer = tokio::time::timeout(Duration::from_secs(20), in_flight)
        .await
        .expect("the request in flight finished")
        .unwrap()
        .expect("the request in flight got its answer");
    assert_eq!(answer, (200, "finished\n".to_string()), "the answer came through in full");
    let status = inst.wait_exit(Duration::from_secs(20)).expect("hearth exited once the request was done");
    assert!(status.success(), "{status:?}");
    let logs = inst.log_text();
    assert!(logs.contains("\"signal\":\"SIGTERM\""), "{logs}");
    assert!(logs.contains("stopped cleanly"), "{logs}");
}

/// A request that never finishes does not hold the shutdown: at `server.shutdown_timeout` (3 s here) hearth gives
/// up on it, says so, and exits; the client sees its request cut.
#[tokio::test]
async fn sigterm_does_not_wait_past_the_deadline_for_a_stuck_request() {
    let mut backend = HeldBackend::start();
    let mut inst = Instance::start(&backend.route()).await;
    let stuck = request_slow(&inst);
    tokio::time::timeout(Duration::from_secs(20), &mut backend.arrived)
        .await
        .expect("the request reached the backend through hearth")
        .unwrap();
    inst.signal("TERM");
    // generous: the deadline is 3 s; without one, hearth would wait for the backend for ever
    let status = inst.wait_exit(Duration::from_secs(30)).expect("hearth exited although a request never finished");
    assert!(status.success(), "{status:?}");
    let logs = inst.log_text();
    assert!(
        logs.contains("open connections did not finish in time")
            || logs.contains("some subsystems did not stop within the shutdown deadline"),
        "{logs}"
    );
    assert!(stuck.await.unwrap().is_err(), "the stuck request was cut, not answered");
    drop(backend);
}

#[tokio::test]
async fn cli_token_create_works_while_running_and_healthcheck() {
    let inst = Instance::start("").await;
    let cfg = inst.config_path();
    let cfg = cfg.to_str().unwrap();
    let out = inst.cli(&["healthcheck", "--config", cfg], None);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));

    let out = inst.cli(&["token", "create", "from-cli", "--config", cfg], None);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let token = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert!(token.starts_with("hth_"), "{token}");
    let list: Value = reqwest::Client::new()
        .get(inst.url("/api/v1/tokens"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list[0]["name"], "from-cli");
    assert_eq!(list[0]["created_by"], "cli");

    // set-password creates the admin (no wizard needed) and can reset it
    let out = inst.cli(&["admin", "set-password", "root", "--config", cfg], Some("first password\n"));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let login = |pw: &str| {
        reqwest::Client::new()
            .post(inst.url("/api/v1/auth/login"))
            .json(&json!({"username": "root", "password": pw}))
            .send()
    };
    assert_eq!(login("first password").await.unwrap().status(), 200);
    let out = inst.cli(&["admin", "set-password", "root", "--config", cfg], Some("second password"));
    assert!(out.status.success());
    assert_eq!(login("second password").await.unwrap().status(), 200);
    let out = inst.cli(&["admin", "set-password", "root", "--config", cfg], Some("short\n"));
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("at least 8"));

    drop(inst);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("h.toml"), format!("[server]\nhttp_listen = [\"127.0.0.1:{}\"]\n", free_port()))
        .unwrap();
    let out = cli_in(dir.path(), &["healthcheck", "--config", "h.toml", "--timeout", "1s"], None);
    assert!(!out.status.success(), "nothing listens: unhealthy");
}

#[test]
fn check_config_and_default_config() {
    let dir = tempfile::tempdir().unwrap();
    let out = cli_in(dir.path(), &["config", "default"], None);
    assert!(out.status.success());
    std::fs::write(dir.path().join("default.toml"), &out.stdout).unwrap();
    let out = cli_in(dir.path(), &["check-config", "default.toml"], None);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    std::fs::write(dir.path().join("bad.toml"), "[server]\nhttps_listen = [\"127.0.0.1:99999\"]\n").unwrap();
    let out = cli_in(dir.path(), &["check-config", "bad.toml"], None);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("server.https_listen[0]"), "{err}");

    std::fs::write(dir.path().join("syntax.toml"), "[server\n").unwrap();
    let out = cli_in(dir.path(), &["check-config", "syntax.toml"], None);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("syntax.toml"));

    // `run` refuses a bad config before binding anything
    let out = cli_in(dir.path(), &["run", "--config", "bad.toml"], None);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("server.https_listen[0]"));

    let out = cli_in(dir.path(), &["--version"], None);
    let v = String::from_utf8_lossy(&out.stdout);
    assert!(v.starts_with("hearth 0.") && v.contains("commit") && v.contains("built"), "{v}");

    // the production config installed by the package passes
    let prod = concat!(env!("CARGO_MANIFEST_DIR"), "/packaging/hearth.production.toml");
    let out = cli_in(dir.path(), &["check-config", prod], None);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[tokio::test]
async fn no_config_file_runs_the_embedded_default_on_given_data_dir() {
    // the README's run command, with --data-dir; ports come from the default, so only check what does not bind
    let dir = tempfile::tempdir().unwrap();
    let out = cli_in(dir.path(), &["check-config", "hearth.toml"], None);
    assert_eq!(out.status.code(), Some(2), "no file to check");
    let out = cli_in(dir.path(), &["token", "create", "t", "--data-dir", "state"], None);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(dir.path().join("state/hearth.db").exists());
    assert!(!dir.path().join("hearth.toml").exists(), "the CLI never writes the config");
}

/// systemd's notify protocol: READY once serving, STATUS, WATCHDOG pings, STOPPING on shutdown.
#[tokio::test]
async fn sd_notify_ready_watchdog_and_stopping() {
    let dir = tempfile::tempdir().unwrap();
    let sock_path = dir.path().join("notify.sock");
    let sock = std::os::unix::net::UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let env = [("NOTIFY_SOCKET", sock_path.display().to_string()), ("WATCHDOG_USEC", "2000000".to_string())];
    let mut inst = Instance::start_env(|_| String::new(), "", &env).await;
    let mut seen = String::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut buf = [0u8; 4096];
    while !(seen.contains("READY=1") && seen.contains("WATCHDOG=1")) {
        assert!(Instant::now() < deadline, "got only: {seen}");
        let n = sock.recv(&mut buf).unwrap();
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
        seen.push('\n');
    }
    assert!(seen.contains("READY=1\nSTATUS=") && seen.contains("http: ready"), "{seen}");
    inst.signal("TERM");
    let mut stopping = false;
    while !stopping {
        let n = sock.recv(&mut buf).unwrap();
        stopping = String::from_utf8_lossy(&buf[..n]).contains("STOPPING=1");
    }
    assert!(inst.wait_exit(Duration::from_secs(5)).is_some_and(|s| s.success()));
}

/// Port 53 vs systemd-resolved: the API refuses what does not apply here (no resolved on this machine), queues
/// nothing on bad input; the root helper carries out a request on a machine tree (`--root`) and undoes it exactly.
#[tokio::test]
async fn resolved_stub_request_api_and_helper() {
    let inst = Instance::start("").await;
    let (c, csrf) = admin_session(&inst).await;
    let v: Value = c.get(inst.url("/api/v1/system/resolved")).send().await.unwrap().json().await.unwrap();
    assert_eq!(v["dns_on_port_53"], false, "{v}");
    assert_eq!(v["pending"], Value::Null);
    let post =
        |body: Value| c.post(inst.url("/api/v1/system/resolved")).header("x-csrf-token", &csrf).json(&body).send();
    expect_error(post(json!({"action": "format_disk"})).await.unwrap(), 422, "invalid_input").await;
    let resolved_here = std::path::Path::new("/run/systemd/resolve").is_dir();
    if !resolved_here {
        let e = expect_error(post(json!({"action": "disable_stub"})).await.unwrap(), 409, "conflict").await;
        assert!(e["error"]["message"].as_str().unwrap().contains("not running"), "{e}");
    }
    expect_error(post(json!({"action": "restore"})).await.unwrap(), 409, "conflict").await;
    let r = reqwest::Client::new().get(inst.url("/api/v1/system/resolved")).send().await.unwrap();
    expect_error(r, 401, "unauthenticated").await;

    // the helper, on an Ubuntu-like tree
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(root.path().join("run/systemd/resolve")).unwrap();
    std::fs::create_dir_all(root.path().join("etc")).unwrap();
    std::os::unix::fs::symlink("../run/systemd/resolve/stub-resolv.conf", root.path().join("etc/resolv.conf")).unwrap();
    let data = tempfile::tempdir().unwrap();
    let request = data.path().join("resolved-request");
    let helper = |text: &str| {
        std::fs::write(&request, text).unwrap();
        let out = std::process::Command::new(BIN)
            .args(["system", "apply-request"])
            .arg(&request)
            .arg("--root")
            .arg(root.path())
            .arg("--no-restart")
            .output()
            .unwrap();
        assert!(!request.exists(), "the request is consumed");
        (out.status.success(), std::fs::read_to_string(data.path().join("resolved-result")).unwrap())
    };
    let (ok, result) = helper("disable-stub\n");
    assert!(ok && result.starts_with("ok disable-stub"), "{result}");
    let drop_in = std::fs::read_to_string(root.path().join("etc/systemd/resolved.conf.d/hearth.conf")).unwrap();
    assert!(drop_in.contains("DNSStubListener=no"), "{drop_in}");
    assert_eq!(
        std::fs::read_link(root.path().join("etc/resolv.conf")).unwrap().to_str(),
        Some("../run/systemd/resolve/resolv.conf")
    );
    let (ok, result) = helper("something else");
    assert!(!ok && result.starts_with("error") && result.contains("expected disable-stub or restore"), "{result}");
    let (ok, result) = helper("restore");
    assert!(ok && result.starts_with("ok restore"), "{result}");
    assert!(!root.path().join("etc/systemd/resolved.conf.d/hearth.conf").exists());
    assert_eq!(
        std::fs::read_link(root.path().join("etc/resolv.conf")).unwrap().to_str(),
        Some("../run/systemd/resolve/stub-resolv.conf")
    );
    // the status command reads the same tree
    let out = std::process::Command::new(BIN)
        .args(["system", "resolved-stub", "status", "--root"])
        .arg(root.path())
        .output()
        .unwrap();
    let s: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((s["resolved"].as_bool(), s["changed_by_hearth"].as_bool()), (Some(true), Some(false)));
}
