//! The logs applier and tasks: `logs` (the writer: a transaction a second, retention and the disk cap every ten
//! minutes), `own-logs` (hearth's own events from the tracing tap), `journal` (journalctl from the saved cursor),
//! `docker` (each running container's output, through the Docker API) and `syslog` (the `logs.syslog_listen`
//! sockets, UDP and TCP).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::Logs;
use super::model::{Entry, Labels};
use crate::config::live::{Applier, LiveConfig};
use crate::config::{Config, ConfigError};
use crate::supervisor::TaskCtx;
use crate::util::Locked;

/// How often queued lines are committed: a kill -9 loses at most this much.
pub(crate) const WRITE_EVERY: Duration = Duration::from_secs(1);
/// Longest syslog message kept.
const MAX_SYSLOG: usize = 64 * 1024;

/// A bound syslog address: its UDP socket and TCP listener (bound in `prepare`, so a busy port fails the change).
#[derive(Clone)]
pub(crate) struct Bound {
    pub addr: SocketAddr,
    udp: Arc<std::net::UdpSocket>,
    tcp: Arc<std::net::TcpListener>,
}

fn bind(addr: SocketAddr) -> std::io::Result<Bound> {
    let udp = std::net::UdpSocket::bind(addr)?;
    udp.set_nonblocking(true)?;
    let tcp = std::net::TcpListener::bind(addr)?;
    tcp.set_nonblocking(true)?;
    Ok(Bound { addr, udp: Arc::new(udp), tcp: Arc::new(tcp) })
}

/// Bind every address of `cfg.logs.syslog_listen`, reusing the sockets of `current` that stay; fails naming the key.
pub(crate) fn bind_all(cfg: &Config, current: &[Bound]) -> Result<Vec<Bound>, ConfigError> {
    let mut out = vec![];
    for (i, a) in cfg.logs.syslog_listen.iter().enumerate() {
        let key = format!("logs.syslog_listen[{i}]");
        let addr: SocketAddr =
            a.parse().map_err(|_| ConfigError::invalid(&key, format!("{a:?} is not an address:port")))?;
        if let Some(b) = current.iter().find(|b| b.addr == addr) {
            out.push(b.clone());
            continue;
        }
        out.push(
            bind(addr)
                .map_err(|e| ConfigError::invalid(&key, format!("cannot listen on {addr} (UDP and TCP): {e}")))?,
        );
    }
    Ok(out)
}

pub(crate) struct LogsApplier {
    logs: Arc<Logs>,
    sockets: watch::Sender<Vec<Bound>>,
    prepared: Mutex<Option<Vec<Bound>>>,
}

impl LogsApplier {
    pub(crate) fn new(logs: Arc<Logs>, sockets: watch::Sender<Vec<Bound>>) -> Self {
        LogsApplier { logs, sockets, prepared: Mutex::default() }
    }
}

impl Applier for LogsApplier {
    fn prepare(&self, _old: &Config, new: &Config) -> Result<(), ConfigError> {
        let current = self.sockets.borrow().clone();
        *self.prepared.locked() = Some(bind_all(new, &current)?);
        Ok(())
    }
    fn abort(&self, _old: &Config, _new: &Config) {
        self.prepared.locked().take();
    }
    fn commit(&self, _old: &Config, new: &Config) {
        if let Some(b) = self.prepared.locked().take() {
            self.sockets.send_replace(b);
        }
        self.logs.set_retention(new.logs.retention.as_std());
    }
}

/// The `logs` task: commit the queue every [`WRITE_EVERY`]; retention and the cap every ten minutes.
pub(crate) async fn writer(ctx: TaskCtx, logs: Arc<Logs>, live: Arc<LiveConfig>) -> anyhow::Result<()> {
    ctx.ready("writing");
    let mut last_enforce: Option<Instant> = None;
    loop {
        let stop = tokio::select! {
            _ = ctx.shutdown.cancelled() => true,
            _ = tokio::time::sleep(WRITE_EVERY) => false,
        };
        let l = logs.clone();
        let r = tokio::task::spawn_blocking(move || l.flush()).await?;
        if let Err(e) = r {
            ctx.degraded(format!("could not write the log store: {e}"));
        }
        if stop {
            return Ok(());
        }
        if last_enforce.is_none_or(|t| t.elapsed() >= Duration::from_secs(600)) {
            last_enforce = Some(Instant::now());
            let cfg = live.current().logs.clone();
            let l = logs.clone();
            let r = tokio::task::spawn_blocking(move || {
                l.store.enforce(
                    crate::util::unix_now_ms() * 1_000_000,
                    cfg.retention.as_std().as_nanos() as i64,
                    cfg.max_disk.bytes(),
                )
            })
            .await?;
            match r {
                Ok(_) => match logs.store.usage() {
                    Ok(u) => ctx.ready(format!("{} streams, {:.1} MB", u.streams, u.bytes as f64 / 1e6)),
                    Err(e) => ctx.degraded(e.to_string()),
                },
                Err(e) => ctx.degraded(format!("retention failed: {e}")),
            }
        }
        metrics::gauge!("hearth_logs_queued_lines").set(logs.queued() as f64);
    }
}

/// The `own-logs` task: hearth's own tracing events, from the tap that `logging` installed, into the store.
pub(crate) async fn own_events(
    ctx: TaskCtx,
    logs: Arc<Logs>,
    events: Arc<tokio::sync::Mutex<tokio::sync::mpsc::Receiver<crate::logging::OwnEvent>>>,
    dropped: Arc<std::sync::atomic::AtomicU64>,
) -> anyhow::Result<()> {
    ctx.ready("following hearth's events");
    let mut rx = events.lock().await;
    let mut batch = Vec::with_capacity(256);
    loop {
        tokio::select! {
            _ = ctx.shutdown.cancelled() => return Ok(()),
            n = rx.recv_many(&mut batch, 1024) => {
                if n == 0 {
                    return Ok(());
                }
            }
        }
        logs.push(batch.drain(..).map(|e| own_entry(&logs.host, e)));
        metrics::gauge!("hearth_logs_tap_dropped_events")
            .set(dropped.load(std::sync::atomic::Ordering::Relaxed) as f64);
    }
}

fn own_entry(host: &str, e: crate::logging::OwnEvent) -> (Entry, bool) {
    let labels = Labels::new([
        ("source".to_string(), "hearth".to_string()),
        ("host".to_string(), host.to_string()),
        ("level".to_string(), e.level.to_string()),
        ("subsystem".to_string(), e.subsystem),
    ]);
    Entry::new(e.t_ns, labels, &e.text)
}

/// The `syslog` task: every bound address, UDP datagrams and TCP connections; restarted on each change of the
/// socket set (the sockets that stay are the same ones).
pub(crate) async fn syslog(
    ctx: TaskCtx,
    logs: Arc<Logs>,
    mut sockets: watch::Receiver<Vec<Bound>>,
) -> anyhow::Result<()> {
    loop {
        let bound = sockets.borrow_and_update().clone();
        ctx.ready(if bound.is_empty() {
            "no syslog address (logs.syslog_listen)".to_string()
        } else {
            format!("listening on {}", bound.iter().map(|b| b.addr.to_string()).collect::<Vec<_>>().join(", "))
        });
        let mut set = tokio::task::JoinSet::new();
        for b in bound {
            let udp = tokio::net::UdpSocket::from_std(b.udp.try_clone()?)?;
            let tcp = tokio::net::TcpListener::from_std(b.tcp.try_clone()?)?;
            set.spawn(udp_loop(udp, logs.clone()));
            set.spawn(tcp_loop(tcp, logs.clone()));
        }
        tokio::select! {
            _ = ctx.shutdown.cancelled() => return Ok(()),
            r = sockets.changed() => {
                if r.is_err() {
                    return Ok(());
                }
            }
        }
        set.shutdown().await;
    }
}

/// The `journal` task: journalctl follows the journal from the saved cursor; each batch of lines is queued with
/// the cursor after it (saved in the same transaction). Restarted when `logs.journal` or `logs.journal_directory`
/// change, and 30 s after journalctl ends (a box without a journal is not an error).
pub(crate) async fn journal(ctx: TaskCtx, logs: Arc<Logs>, live: Arc<LiveConfig>) -> anyhow::Result<()> {
    use super::journal::{CURSOR_KEY, args, parse_line};
    use tokio::io::AsyncBufReadExt;
    loop {
        let cfg = live.current().logs.clone();
        if !cfg.journal {
            ctx.ready("off (logs.journal = false)");
            tokio::select! {
                _ = ctx.shutdown.cancelled() => return Ok(()),
                _ = tokio::time::sleep(Duration::from_secs(5)) => continue,
            }
        }
        let l = logs.clone();
        let cursor = tokio::task::spawn_blocking(move || l.store.meta(CURSOR_KEY)).await??;
        let dir = (!cfg.journal_directory.as_os_str().is_empty()).then_some(cfg.journal_directory.as_path());
        let spawned = tokio::process::Command::new("journalctl")
            .args(args(cursor.as_deref(), dir))
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn();
        let mut child = match spawned {
            Ok(c) => c,
            Err(e) => {
                ctx.ready(format!("no journal to read: journalctl: {e}"));
                tokio::select! {
                    _ = ctx.shutdown.cancelled() => return Ok(()),
                    _ = tokio::time::sleep(Duration::from_secs(60)) => continue,
                }
            }
        };
        let Some(stdout) = child.stdout.take() else { continue };
        let mut lines = tokio::io::BufReader::new(stdout).lines();
        ctx.ready("following the journal");
        let mut batch: Vec<(super::model::Entry, bool)> = vec![];
        let mut last: Option<String> = None;
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        let queue = |batch: &mut Vec<_>, last: &mut Option<String>| {
            if let Some(c) = last.take() {
                logs.push_at(std::mem::take(batch), super::journal::CURSOR_KEY, c);
            }
        };
        let ended = loop {
            tokio::select! {
                _ = ctx.shutdown.cancelled() => {
                    queue(&mut batch, &mut last);
                    return Ok(());
                }
                line = lines.next_line() => match line {
                    Ok(Some(l)) => {
                        let now = crate::util::unix_now_ms() * 1_000_000;
                        if let Some((e, c)) = parse_line(&l, now) {
                            batch.push(e);
                            last = Some(c);
                            if batch.len() >= 1000 {
                                queue(&mut batch, &mut last);
                            }
                        }
                    }
                    Ok(None) => break "journalctl ended".to_string(),
                    Err(e) => break format!("reading journalctl: {e}"),
                },
                _ = tick.tick() => {
                    queue(&mut batch, &mut last);
                    let now = live.current();
                    if !now.logs.journal || now.logs.journal_directory != cfg.journal_directory {
                        break "the journal settings changed".to_string();
                    }
                }
            }
        };
        queue(&mut batch, &mut last);
        let _ = child.kill().await;
        if ended != "the journal settings changed" {
            ctx.ready(format!("{ended}; trying again in 30 s"));
            tokio::select! {
                _ = ctx.shutdown.cancelled() => return Ok(()),
                _ = tokio::time::sleep(Duration::from_secs(30)) => {}
            }
        }
    }
}

/// The `docker` task: every ten seconds, the running containers (from the Docker API when `logs.docker_socket` is
/// readable; no Docker is not an error); each one followed from its saved position by its own follower, which ends
/// when the container stops and starts again with it.
pub(crate) async fn docker(ctx: TaskCtx, logs: Arc<Logs>, live: Arc<LiveConfig>) -> anyhow::Result<()> {
    use std::collections::HashMap;
    // per container id: its follower, and the time of the last line it queued (ahead of the saved position)
    let mut followers: HashMap<String, tokio::task::JoinHandle<Option<i64>>> = HashMap::new();
    let mut last: HashMap<String, i64> = HashMap::new();
    let mut socket_seen = std::path::PathBuf::new();
    loop {
        let cfg = live.current().logs.clone();
        // finished followers hand back their position
        for (id, h) in followers.extract_if(|_, h| h.is_finished()) {
            if let Ok(Some(t)) = h.await {
                last.insert(id, t);
            }
        }
        let listed = if !cfg.docker {
            Err("off (logs.docker = false)".to_string())
        } else {
            let socket = cfg.docker_socket.clone();
            tokio::task::spawn_blocking(move || crate::docker::containers(&socket, Duration::from_secs(2)))
                .await?
                .map_err(|e| format!("no containers to follow: {e}"))
        };
        if socket_seen != cfg.docker_socket {
            // another daemon: its containers are others
            followers.drain().for_each(|(_, h)| h.abort());
            socket_seen = cfg.docker_socket.clone();
        }
        match listed {
            Err(why) => {
                followers.drain().for_each(|(_, h)| h.abort());
                ctx.ready(why);
            }
            Ok(containers) => {
                let running: Vec<_> =
                    containers.into_iter().filter(|c| c.state.is_empty() || c.state == "running").collect();
                for c in &running {
                    if followers.contains_key(&c.id) {
                        continue;
                    }
                    let since = match last.get(&c.id) {
                        Some(&t) => Some(t),
                        None => {
                            let (l, key) = (logs.clone(), super::docker::position_key(&c.id));
                            tokio::task::spawn_blocking(move || l.store.meta(&key))
                                .await??
                                .and_then(|v| v.parse::<i64>().ok())
                        }
                    };
                    let h = tokio::spawn(follow_container(logs.clone(), cfg.docker_socket.clone(), c.clone(), since));
                    followers.insert(c.id.clone(), h);
                }
                ctx.ready(format!("following {} containers", followers.len()));
            }
        }
        tokio::select! {
            _ = ctx.shutdown.cancelled() => {
                // followers queue what they have every 250 ms; stopping them now loses at most that
                followers.drain().for_each(|(_, h)| h.abort());
                return Ok(());
            }
            _ = tokio::time::sleep(Duration::from_secs(10)) => {}
        }
    }
}

/// Follow one container's output from `since` (ns, exclusive) until it stops; returns the last line's time.
async fn follow_container(
    logs: Arc<Logs>,
    socket: std::path::PathBuf,
    c: crate::docker::Container,
    mut since: Option<i64>,
) -> Option<i64> {
    use super::docker::{Demux, FIRST_TAIL, entry, labels, position_key};
    use tokio::io::AsyncReadExt;
    let (mut stream, multiplexed) =
        match crate::docker::follow_logs(&socket, &c.id, since, FIRST_TAIL, Duration::from_secs(5)).await {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!(container = %c.name(), "cannot follow its logs: {e}");
                return since;
            }
        };
    let base = labels(&logs.host, &c);
    let key = position_key(&c.id);
    let mut demux = Demux::new(multiplexed);
    let floor = since;
    let mut buf = vec![0u8; 32 * 1024];
    let mut batch = vec![];
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    let queue = |batch: &mut Vec<(Entry, bool)>, since: Option<i64>| {
        if let (false, Some(t)) = (batch.is_empty(), since) {
            let n = batch.len() as u64;
            logs.push_at(std::mem::take(batch), &key, t.to_string());
            metrics::counter!("hearth_logs_docker_lines_total").increment(n);
        }
    };
    loop {
        tokio::select! {
            n = stream.read(&mut buf) => {
                let n = match n {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                for (s, line) in demux.feed(&buf[..n]) {
                    if let Some((e, cut)) = entry(s, &line, &base[(s - 1) as usize]) {
                        // Docker may repeat lines up to the position (its filter is by the second on old daemons);
                        // lines of one stream that share a time after it are all kept
                        if floor.is_some_and(|t| e.t_ns <= t) {
                            continue;
                        }
                        since = Some(e.t_ns);
                        batch.push((e, cut));
                    }
                }
                if batch.len() >= 1000 {
                    queue(&mut batch, since);
                }
            }
            _ = tick.tick() => queue(&mut batch, since),
        }
    }
    queue(&mut batch, since);
    since
}

/// The entry of one syslog message from `peer`.
pub(crate) fn syslog_entry(raw: &str, peer: std::net::IpAddr, now_ns: i64) -> (Entry, bool) {
    let m = super::syslog::parse(raw);
    let host = if m.host.is_empty() { peer.to_string() } else { m.host.clone() };
    let mut pairs = vec![
        ("source".to_string(), "syslog".to_string()),
        ("host".to_string(), host),
        ("level".to_string(), super::syslog::level(m.severity).to_string()),
        ("facility".to_string(), m.facility.to_string()),
    ];
    if !m.app.is_empty() {
        pairs.push(("service".to_string(), m.app.clone()));
    }
    // a sender's stamp is kept unless it is more than an hour in the future (a wrong clock)
    let t = m.t_ms.map(|t| t * 1_000_000).filter(|&t| t <= now_ns + 3_600_000_000_000).unwrap_or(now_ns);
    let line = if m.pid.is_empty() { m.text } else { format!("[{}] {}", m.pid, m.text) };
    Entry::new(t, Labels::new(pairs), &line)
}

async fn udp_loop(sock: tokio::net::UdpSocket, logs: Arc<Logs>) {
    let mut buf = vec![0u8; MAX_SYSLOG];
    loop {
        let Ok((n, peer)) = sock.recv_from(&mut buf).await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let raw = String::from_utf8_lossy(&buf[..n]);
        logs.push([syslog_entry(&raw, peer.ip(), crate::util::unix_now_ms() * 1_000_000)]);
        metrics::counter!("hearth_logs_syslog_messages_total", "transport" => "udp").increment(1);
    }
}

async fn tcp_loop(listener: tokio::net::TcpListener, logs: Arc<Logs>) {
    // at most 64 senders at once; each connection is bounded by its buffer
    let slots = Arc::new(tokio::sync::Semaphore::new(64));
    loop {
        let Ok((mut conn, peer)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else { continue };
        let logs = logs.clone();
        tokio::spawn(async move {
            use tokio::io::AsyncReadExt;
            let _permit = permit;
            let mut buf: Vec<u8> = Vec::with_capacity(8192);
            let mut chunk = vec![0u8; 16 * 1024];
            loop {
                let read = tokio::time::timeout(Duration::from_secs(600), conn.read(&mut chunk)).await;
                let n = match read {
                    Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
                    Ok(Ok(n)) => n,
                };
                buf.extend_from_slice(&chunk[..n]);
                let (msgs, used) = super::syslog::frames(&buf, MAX_SYSLOG);
                buf.drain(..used);
                if buf.len() > 2 * MAX_SYSLOG {
                    buf.clear(); // a frame that never ends: its head was kept by `frames`
                }
                let now = crate::util::unix_now_ms() * 1_000_000;
                let count = msgs.len() as u64;
                logs.push(msgs.iter().map(|m| syslog_entry(m, peer.ip(), now)));
                metrics::counter!("hearth_logs_syslog_messages_total", "transport" => "tcp").increment(count);
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syslog_messages_become_labelled_entries() {
        let now = 1_800_000_000_000_000_000;
        let (e, _) = syslog_entry(
            "<11>1 2026-12-07T18:10:00Z nas smartd 77 - - sda: 8 bad sectors",
            "10.0.0.9".parse().unwrap(),
            now,
        );
        assert_eq!(e.labels.get("source"), Some("syslog"));
        assert_eq!(e.labels.get("host"), Some("nas"));
        assert_eq!(e.labels.get("service"), Some("smartd"));
        assert_eq!(e.labels.get("level"), Some("error"));
        assert_eq!(e.line, "[77] sda: 8 bad sectors");
        assert_eq!(e.t_ns, 1_796_667_000_000_000_000);
        let (e, _) = syslog_entry("<30>Dec  7 18:10:00 dropbear[9]: login", "10.0.0.1".parse().unwrap(), now);
        assert_eq!((e.labels.get("host"), e.t_ns), (Some("10.0.0.1"), now), "no host name: the sender's address");
        // a stamp far in the future is the sender's wrong clock
        let (e, _) = syslog_entry("<13>1 2099-01-01T00:00:00Z h a - - - x", "10.0.0.1".parse().unwrap(), now);
        assert_eq!(e.t_ns, now);
    }
}
