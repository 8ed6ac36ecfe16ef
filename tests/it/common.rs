//! Test fixture: the real `hearth` binary on free loopback ports in a temp dir, driven over HTTP.

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_hearth");

/// A loopback port free for both TCP and UDP that this test process has not handed out before.
/// Tests run in parallel threads, and the kernel may give the same ephemeral port to two binds
/// made one after the other, so every port handed out is remembered.
pub fn free_port() -> u16 {
    static GIVEN: Mutex<Vec<u16>> = Mutex::new(Vec::new());
    let mut given = GIVEN.lock().unwrap();
    loop {
        let tcp = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = tcp.local_addr().unwrap().port();
        if given.contains(&port) || std::net::UdpSocket::bind(("127.0.0.1", port)).is_err() {
            continue;
        }
        given.push(port);
        return port;
    }
}

pub struct Instance {
    pub child: Option<Child>,
    pub dir: tempfile::TempDir,
    pub http: SocketAddr,
    pub https: SocketAddr,
    pub dns: SocketAddr,
    pub logs: Arc<Mutex<Vec<String>>>,
}

impl Instance {
    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("hearth.toml")
    }

    pub fn base(&self) -> String {
        format!("http://{}", self.http)
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.http)
    }

    /// Start with the default test config; `extra` is appended (whole sections, e.g. "[auth]\n...").
    pub async fn start(extra: &str) -> Instance {
        Self::start_with(|_| String::new(), extra).await
    }

    /// `server_extra` gets the chosen ports and returns lines for the `[server]` section.
    pub async fn start_with(server_extra: impl Fn(&Ports) -> String, extra: &str) -> Instance {
        Self::start_env(server_extra, extra, &[]).await
    }

    /// Like `start_with`, with extra environment variables for the process.
    pub async fn start_env(server_extra: impl Fn(&Ports) -> String, extra: &str, env: &[(&str, String)]) -> Instance {
        let inst = Self::launch(server_extra, extra, env);
        inst.wait_ready().await;
        inst
    }

    /// Start without waiting for readiness (e.g. to watch the model load).
    pub fn launch(server_extra: impl Fn(&Ports) -> String, extra: &str, env: &[(&str, String)]) -> Instance {
        let dir = tempfile::tempdir().unwrap();
        let ports = Ports { http: free_port(), https: free_port(), dns: free_port() };
        // every instance gets its own DNS port (upstream: a closed port) unless the test writes its own [dns]
        let dns = if extra.contains("[dns]") {
            String::new()
        } else {
            format!("[dns]\nlisten = [\"127.0.0.1:{}\"]\nupstreams = [\"udp://127.0.0.1:9\"]\n\n", ports.dns)
        };
        // the embedding model costs a second of CPU and 90 MB per instance: only tests that write [memory] load it
        let memory = if extra.contains("[memory]") { "" } else { "[memory]\nenabled = false\n\n" };
        let extra = format!("{dns}{memory}{}", extra.replace("{dns_port}", &ports.dns.to_string()));
        let server_extra = server_extra(&ports);
        // 3 s unless the test sets its own
        let shutdown = if server_extra.contains("shutdown_timeout") { "" } else { "shutdown_timeout = \"3s\"\n" };
        let text = format!(
            "# test instance\nschema_version = 1\n\n[server]\nhttp_listen = [\"127.0.0.1:{}\"]\nhttps_listen = [\"127.0.0.1:{}\"]\ndata_dir = \"{}\"\n{shutdown}{server_extra}\n[log]\n# chatty for tests\nlevel = \"info\" # keep this comment\nformat = \"json\"\n\n{extra}",
            ports.http,
            ports.https,
            dir.path().join("data").display(),
        );
        std::fs::write(dir.path().join("hearth.toml"), text).unwrap();
        let mut inst = Instance {
            child: None,
            dns: ([127, 0, 0, 1], ports.dns).into(),
            http: ([127, 0, 0, 1], ports.http).into(),
            https: ([127, 0, 0, 1], ports.https).into(),
            dir,
            logs: Arc::default(),
        };
        inst.spawn(env);
        inst
    }

    fn spawn(&mut self, env: &[(&str, String)]) {
        let mut child = Command::new(BIN)
            .args(["run", "--config"])
            .arg(self.config_path())
            .current_dir(self.dir.path())
            .env_remove("RUST_LOG")
            .env_remove("NOTIFY_SOCKET")
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        for pipe in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let logs = self.logs.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                    logs.lock().unwrap().push(line);
                }
            });
        }
        self.child = Some(child);
    }

    /// Stop the process (SIGTERM) and start it again on the same config and data dir.
    pub async fn restart(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill").args(["-TERM", &c.id().to_string()]).status();
            let _ = c.wait();
        }
        self.logs.lock().unwrap().clear();
        self.spawn(&[]);
        self.wait_ready().await;
    }

    pub async fn wait_ready(&self) {
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(r) = client.get(self.url("/readyz")).send().await
                && r.status() == 200
            {
                return;
            }
            assert!(Instant::now() < deadline, "hearth did not become ready; logs:\n{}", self.log_text());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn log_text(&self) -> String {
        self.logs.lock().unwrap().join("\n")
    }

    /// Wait (up to `limit`) until the process has logged a line containing `text`.
    pub async fn wait_log(&self, text: &str, limit: Duration) {
        let deadline = Instant::now() + limit;
        while !self.logs.lock().unwrap().iter().any(|l| l.contains(text)) {
            assert!(
                Instant::now() < deadline,
                "no log line with {text:?} within {limit:?}; logs:\n{}",
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill").args([&format!("-{sig}"), &self.pid().to_string()]).status().unwrap();
        assert!(ok.success());
    }

    /// Wait for the process to exit, at most `limit`.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let child = self.child.as_mut().unwrap();
        let deadline = Instant::now() + limit;
        loop {
            if let Some(st) = child.try_wait().unwrap() {
                return Some(st);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Run a `hearth` CLI command against this instance's config.
    pub fn cli(&self, args: &[&str], stdin: Option<&str>) -> std::process::Output {
        cli_in(self.dir.path(), args, stdin)
    }
}

pub struct Ports {
    pub http: u16,
    pub https: u16,
    pub dns: u16,
}

pub fn cli_in(dir: &Path, args: &[&str], stdin: Option<&str>) -> std::process::Output {
    use std::io::Write;
    let mut child = Command::new(BIN)
        .args(args)
        .current_dir(dir)
        .env_remove("HEARTH_CONFIG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    if let Some(s) = stdin {
        input.write_all(s.as_bytes()).unwrap();
    }
    drop(input);
    child.wait_with_output().unwrap()
}

impl Drop for Instance {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A client with a cookie jar (for session tests).
pub fn client() -> reqwest::Client {
    reqwest::Client::builder().cookie_store(true).build().unwrap()
}

/// The one-time setup code hearth wrote to its data dir at start (while no admin exists).
pub fn setup_code(inst: &Instance) -> String {
    let path = inst.dir.path().join("data/setup-code");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).trim().to_string()
}

/// Create the admin (the setup answer logs it in), return (client with session cookie, csrf token).
/// A new API token (`hearth token create NAME --scope SCOPE`) for this instance.
pub fn token(inst: &Instance, name: &str, scope: &str) -> String {
    let cfg = inst.config_path();
    let out = inst.cli(&["token", "create", name, "--scope", scope, "--config", cfg.to_str().unwrap()], None);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

pub async fn admin_session(inst: &Instance) -> (reqwest::Client, String) {
    let c = client();
    let r = c
        .post(inst.url("/api/v1/setup"))
        .json(&serde_json::json!({"username": "admin", "password": "correct horse", "setup_code": setup_code(inst)}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    let r = c.get(inst.url("/api/v1/auth/session")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = r.json().await.unwrap();
    (c, v["csrf_token"].as_str().unwrap().to_string())
}

/// Log in as the admin `admin_session` created (e.g. after a restart).
pub async fn admin_login(inst: &Instance) -> (reqwest::Client, String) {
    let c = client();
    let r = c
        .post(inst.url("/api/v1/auth/login"))
        .json(&serde_json::json!({"username": "admin", "password": "correct horse"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = r.json().await.unwrap();
    (c, v["csrf_token"].as_str().unwrap().to_string())
}

/// Assert a JSON error answer with the given status and code; returns its body.
pub async fn expect_error(r: reqwest::Response, status: u16, code: &str) -> serde_json::Value {
    assert_eq!(r.status().as_u16(), status);
    assert!(
        r.headers().get("content-type").is_some_and(|v| v.to_str().unwrap().starts_with("application/json")),
        "error answers are JSON"
    );
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], code, "{v}");
    assert!(v["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
    assert!(v["error"]["id"].as_str().is_some_and(|m| m.len() >= 8), "{v}");
    v
}

/// `promtool check metrics` must accept the text silently.
pub fn promtool_check(text: &str) {
    use std::io::Write;
    let mut p = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian package prometheus) is needed: .ci/deps installs it");
    p.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = p.wait_with_output().unwrap();
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "promtool: {} {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// What a DNS server said to one question (dig's reading of it).
#[derive(Debug)]
pub struct DnsReply {
    /// The response code: NOERROR, NXDOMAIN, SERVFAIL, REFUSED… (empty when no answer came at all).
    pub status: String,
    /// The data of each record in the answer section, in order (e.g. "192.0.2.10").
    pub answers: Vec<String>,
    /// dig's whole output, for failure messages.
    pub text: String,
}

/// Ask `server` for `name` `rtype` with dig (one try, 3 s). dig's exit code is 0 for any answer, SERVFAIL included,
/// so callers look at `status` and `answers`.
pub fn dns_ask(server: SocketAddr, name: &str, rtype: &str) -> DnsReply {
    dns_ask_with(server, &[], name, rtype)
}

/// `dns_ask` with more dig options (e.g. `["-b", "127.0.0.3"]` to ask as another client).
pub fn dns_ask_with(server: SocketAddr, options: &[&str], name: &str, rtype: &str) -> DnsReply {
    let out = Command::new("dig")
        .args([&format!("@{}", server.ip()), "-p", &server.port().to_string(), "+tries=1", "+time=3"])
        .args(options)
        .args([name, rtype])
        .output()
        .expect("dig (Debian package bind9-dnsutils) is needed: .ci/deps installs it");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let status = text
        .lines()
        .find_map(|l| l.split_once(", status: ").map(|(_, rest)| rest.split(',').next().unwrap_or("").to_string()))
        .unwrap_or_default();
    let answers = text
        .split(";; ANSWER SECTION:\n")
        .nth(1)
        .map(|section| {
            section
                .lines()
                .take_while(|l| !l.trim().is_empty())
                .map(|l| l.split_whitespace().skip(4).collect::<Vec<_>>().join(" "))
                .collect()
        })
        .unwrap_or_default();
    DnsReply { status, answers, text }
}

/// Assert that `server` answers `name` `rtype` with NOERROR and exactly `want` (the records' data, in order).
pub fn assert_dns_answer(server: SocketAddr, name: &str, rtype: &str, want: &[&str]) {
    let r = dns_ask(server, name, rtype);
    assert_eq!(
        (r.status.as_str(), r.answers.iter().map(String::as_str).collect::<Vec<_>>()),
        ("NOERROR", want.to_vec()),
        "{name} {rtype}:\n{}",
        r.text
    );
}

/// Wait (up to 10 s) until something accepts TCP connections on 127.0.0.1:`port`.
pub fn wait_port(port: u16) {
    for _ in 0..200 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("nothing listens on {port}");
}
