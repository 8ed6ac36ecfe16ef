//! A small client of the Docker Engine API over its unix socket: the running containers with their names, images
//! and labels. Blocking (callers run it on the blocking pool), one short HTTP/1.0 request per call, with a timeout,
//! so a stuck daemon costs one call and never a task.
//!
//! The socket is root-equivalent: hearth never asks for it. When the admin has made it readable (the `docker`
//! group, or a socket proxy that allows `GET /containers/json`), container metrics carry names instead of ids.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

/// Where Docker's daemon listens by default.
pub(crate) const DEFAULT_SOCKET: &str = "/var/run/docker.sock";

#[derive(Debug, thiserror::Error)]
pub(crate) enum DockerError {
    #[error("cannot reach the Docker socket {0}: {1}")]
    Connect(String, std::io::Error),
    #[error("the Docker API: {0}")]
    Io(#[from] std::io::Error),
    #[error("the Docker API answered {0}: {1}")]
    Status(u16, String),
    #[error("the Docker API answered something else than HTTP: {0}")]
    Protocol(String),
    #[error("the Docker API's JSON: {0}")]
    Json(#[from] serde_json::Error),
}

/// A container as `GET /containers/json` lists it.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
pub(crate) struct Container {
    #[serde(rename = "Id")]
    pub id: String,
    #[serde(rename = "Names", default)]
    pub names: Vec<String>,
    #[serde(rename = "Image", default)]
    pub image: String,
    #[serde(rename = "State", default)]
    pub state: String,
    #[serde(rename = "Labels", default)]
    pub labels: Option<BTreeMap<String, String>>,
}

impl Container {
    /// The name users know: the first of `Names` without Docker's leading `/`, else the short id.
    pub(crate) fn name(&self) -> String {
        self.names
            .first()
            .map(|n| n.trim_start_matches('/').to_string())
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| self.id.chars().take(12).collect())
    }
}

/// The running containers.
pub(crate) fn containers(socket: &Path, timeout: Duration) -> Result<Vec<Container>, DockerError> {
    let body = get(socket, "/containers/json", timeout)?;
    Ok(serde_json::from_slice(&body)?)
}

/// Follow a container's output: `GET /containers/<id>/logs?follow=1&stdout=1&stderr=1&timestamps=1` from
/// `since_ns` (exclusive), or its last `tail` lines when there is no position yet. Returns the stream after the
/// answer's headers and whether it is multiplexed (8-byte frame headers: a container without a TTY) or raw, when
/// the daemon says (API ≥ 1.42). The stream ends when the container stops.
pub(crate) async fn follow_logs(
    socket: &Path,
    id: &str,
    since_ns: Option<i64>,
    tail: usize,
    timeout: Duration,
) -> Result<(tokio::io::BufReader<tokio::net::UnixStream>, Option<bool>), DockerError> {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
    let mut s = tokio::time::timeout(timeout, tokio::net::UnixStream::connect(socket))
        .await
        .map_err(|_| DockerError::Connect(socket.display().to_string(), std::io::ErrorKind::TimedOut.into()))?
        .map_err(|e| DockerError::Connect(socket.display().to_string(), e))?;
    let from = match since_ns {
        // `since` is inclusive: one nanosecond after the last line kept
        Some(ns) => format!("since={}.{:09}", (ns + 1).div_euclid(1_000_000_000), (ns + 1).rem_euclid(1_000_000_000)),
        None => format!("tail={tail}"),
    };
    let id: String = id.chars().filter(|c| c.is_ascii_alphanumeric()).collect();
    // HTTP/1.0: the daemon streams the body and closes when the container stops, never chunked
    let req = format!(
        "GET /containers/{id}/logs?follow=1&stdout=1&stderr=1&timestamps=1&{from} HTTP/1.0\r\nHost: docker\r\nUser-Agent: hearth\r\n\r\n"
    );
    tokio::time::timeout(timeout, s.write_all(req.as_bytes()))
        .await
        .map_err(|_| DockerError::Io(std::io::ErrorKind::TimedOut.into()))??;
    let mut r = tokio::io::BufReader::new(s);
    let mut head = String::new();
    loop {
        let mut line = String::new();
        let n = tokio::time::timeout(timeout, r.read_line(&mut line))
            .await
            .map_err(|_| DockerError::Io(std::io::ErrorKind::TimedOut.into()))??;
        if n == 0 || head.len() > 64 * 1024 {
            return Err(DockerError::Protocol("no end of the headers".into()));
        }
        if line == "\r\n" || line == "\n" {
            break;
        }
        head.push_str(&line);
    }
    let status: u16 = head.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    if !(200..300).contains(&status) {
        use tokio::io::AsyncReadExt;
        let mut body = vec![];
        let _ = tokio::time::timeout(timeout, (&mut r).take(4096).read_to_end(&mut body)).await;
        let msg = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v["message"].as_str().map(String::from))
            .unwrap_or_else(|| String::from_utf8_lossy(&body).chars().take(200).collect());
        return Err(DockerError::Status(status, msg));
    }
    // API ≥ 1.42 names the framing; older daemons multiplex unless the container has a TTY
    let content_type = head.lines().find_map(|l| {
        l.split_once(':').filter(|(k, _)| k.trim().eq_ignore_ascii_case("content-type")).map(|(_, v)| v.trim())
    });
    let multiplexed = match content_type {
        Some(t) if t.starts_with("application/vnd.docker.multiplexed-stream") => Some(true),
        Some(t) if t.starts_with("application/vnd.docker.raw-stream") => Some(false),
        _ => None,
    };
    Ok((r, multiplexed))
}

/// `GET path` on the socket; the body of a 2xx answer.
fn get(socket: &Path, path: &str, timeout: Duration) -> Result<Vec<u8>, DockerError> {
    let mut s = UnixStream::connect(socket).map_err(|e| DockerError::Connect(socket.display().to_string(), e))?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    // HTTP/1.0: the daemon answers with the whole body and closes, never chunked
    write!(s, "GET {path} HTTP/1.0\r\nHost: docker\r\nUser-Agent: hearth\r\n\r\n")?;
    let mut raw = vec![];
    s.take(64 << 20).read_to_end(&mut raw)?;
    parse_response(&raw)
}

fn parse_response(raw: &[u8]) -> Result<Vec<u8>, DockerError> {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| DockerError::Protocol("no end of the headers".into()))?;
    let head = String::from_utf8_lossy(&raw[..split]);
    let body = &raw[split + 4..];
    let status: u16 = head
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| DockerError::Protocol(head.lines().next().unwrap_or("").chars().take(80).collect()))?;
    let chunked = head.lines().any(|l| {
        l.split_once(':').is_some_and(|(k, v)| {
            k.trim().eq_ignore_ascii_case("transfer-encoding") && v.trim().eq_ignore_ascii_case("chunked")
        })
    });
    let body = if chunked { dechunk(body)? } else { body.to_vec() };
    if !(200..300).contains(&status) {
        let msg = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v["message"].as_str().map(String::from))
            .unwrap_or_else(|| String::from_utf8_lossy(&body).chars().take(200).collect());
        return Err(DockerError::Status(status, msg));
    }
    Ok(body)
}

fn dechunk(mut b: &[u8]) -> Result<Vec<u8>, DockerError> {
    let bad = || DockerError::Protocol("a bad chunk".into());
    let mut out = vec![];
    loop {
        let eol = b.windows(2).position(|w| w == b"\r\n").ok_or_else(bad)?;
        let size_text = String::from_utf8_lossy(&b[..eol]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16).map_err(|_| bad())?;
        b = &b[eol + 2..];
        if size == 0 {
            return Ok(out);
        }
        if b.len() < size + 2 {
            return Err(bad());
        }
        out.extend_from_slice(&b[..size]);
        b = &b[size + 2..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;

    /// A fake daemon on a socket in a temp dir that answers one request with `answer`.
    fn daemon(answer: &'static [u8]) -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("docker.sock");
        let l = UnixListener::bind(&path).unwrap();
        std::thread::spawn(move || {
            let (mut c, _) = l.accept().unwrap();
            let mut buf = [0u8; 1024];
            let n = c.read(&mut buf).unwrap();
            assert!(buf[..n].starts_with(b"GET /containers/json HTTP/1.0\r\n"));
            c.write_all(answer).unwrap();
        });
        (dir, path)
    }

    #[test]
    fn lists_containers_with_their_names() {
        let (_d, p) = daemon(
            b"HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n[{\"Id\":\"4f66ad9a0b2e\",\"Names\":[\"/pihole\"],\"Image\":\"pihole/pihole\",\"State\":\"running\",\"Labels\":{\"com.docker.compose.service\":\"dns\"}},{\"Id\":\"0123456789abcdef\",\"Names\":[],\"Labels\":null}]",
        );
        let c = containers(&p, Duration::from_secs(2)).unwrap();
        assert_eq!(c.len(), 2);
        assert_eq!((c[0].name(), c[0].image.as_str()), ("pihole".to_string(), "pihole/pihole"));
        assert_eq!(c[0].labels.as_ref().unwrap()["com.docker.compose.service"], "dns");
        assert_eq!(c[1].name(), "0123456789ab");
    }

    #[test]
    fn errors_say_what_the_daemon_said() {
        let (_d, p) = daemon(b"HTTP/1.0 403 Forbidden\r\n\r\n{\"message\":\"access denied by the socket proxy\"}");
        let e = containers(&p, Duration::from_secs(2)).unwrap_err().to_string();
        assert!(e.contains("403") && e.contains("access denied"), "{e}");
        let e = containers(Path::new("/nonexistent/docker.sock"), Duration::from_secs(1)).unwrap_err().to_string();
        assert!(e.contains("/nonexistent/docker.sock"), "{e}");
        assert_eq!(dechunk(b"4\r\nWiki\r\n5\r\npedia\r\n0\r\n\r\n").unwrap(), b"Wikipedia");
        assert!(dechunk(b"zz\r\n").is_err());
    }
}
