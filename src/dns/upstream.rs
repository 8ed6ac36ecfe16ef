//! Upstream exchange (IO): send a query to the configured upstreams in order (failover), over UDP with a fresh
//! random id from a fresh port, retrying over TCP when the answer is truncated; `tcp://` upstreams use TCP only.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

use super::wire;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upstream {
    Udp(SocketAddr),
    Tcp(SocketAddr),
}

impl Upstream {
    /// `udp://ip:port`, `tcp://ip:port`, or a bare `ip` / `ip:port` (UDP, port 53).
    pub fn parse(s: &str) -> Result<Upstream, String> {
        let (scheme, rest) = s.split_once("://").unwrap_or(("udp", s));
        if scheme == "tls" || scheme == "https" {
            return Err(format!("{scheme}:// upstreams (DoT/DoH) are not available yet"));
        }
        let addr = rest
            .parse::<SocketAddr>()
            .or_else(|_| rest.parse::<std::net::IpAddr>().map(|ip| SocketAddr::new(ip, 53)))
            .map_err(|_| format!("invalid upstream {s:?}: expected \"udp://ip:port\" or \"tcp://ip:port\""))?;
        match scheme {
            "udp" => Ok(Upstream::Udp(addr)),
            "tcp" => Ok(Upstream::Tcp(addr)),
            other => Err(format!("unknown upstream scheme {other:?}")),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        match self {
            Upstream::Udp(a) | Upstream::Tcp(a) => *a,
        }
    }
}

impl std::fmt::Display for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Upstream::Udp(a) => write!(f, "udp://{a}"),
            Upstream::Tcp(a) => write!(f, "tcp://{a}"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("no upstream answered ({0})")]
    AllFailed(String),
}

/// Ask the upstreams in order; returns the answer (with the query's own id) and who gave it.
pub async fn exchange(
    upstreams: &[Upstream],
    query: &[u8],
    timeout: Duration,
) -> Result<(Vec<u8>, Upstream), UpstreamError> {
    let mut errors = vec![];
    let client_id = u16::from_be_bytes([query[0], query[1]]);
    for u in upstreams {
        let started = Instant::now();
        let result = match u {
            Upstream::Udp(a) => match tokio::time::timeout(timeout, udp(*a, query)).await {
                Ok(Ok(resp)) if resp.len() > 3 && resp[2] & 0x02 != 0 => {
                    tokio::time::timeout(timeout, tcp(*a, query)).await.unwrap_or_else(|_| Err(timed_out()))
                }
                Ok(r) => r,
                Err(_) => Err(timed_out()),
            },
            Upstream::Tcp(a) => {
                tokio::time::timeout(timeout, tcp(*a, query)).await.unwrap_or_else(|_| Err(timed_out()))
            }
        };
        let label = u.to_string();
        match result {
            Ok(mut resp) => {
                metrics::histogram!("hearth_dns_upstream_duration_seconds", "upstream" => label)
                    .record(started.elapsed().as_secs_f64());
                wire::set_id(&mut resp, client_id);
                return Ok((resp, *u));
            }
            Err(e) => {
                metrics::counter!("hearth_dns_upstream_failures_total", "upstream" => label).increment(1);
                tracing::debug!(upstream = %u, error = %e, "upstream failed");
                errors.push(format!("{u}: {e}"));
            }
        }
    }
    Err(UpstreamError::AllFailed(errors.join("; ")))
}

/// One exchange with one server over UDP (TCP when the answer is truncated), no metrics: the recursor's way to
/// ask authoritative servers. The answer keeps the id of `query`.
pub async fn exchange_one(addr: SocketAddr, query: &[u8], timeout: Duration) -> std::io::Result<Vec<u8>> {
    let id = u16::from_be_bytes([query[0], query[1]]);
    let mut resp = match tokio::time::timeout(timeout, udp(addr, query)).await {
        Ok(Ok(resp)) if resp.len() > 3 && resp[2] & 0x02 != 0 => {
            tokio::time::timeout(timeout, tcp(addr, query)).await.unwrap_or_else(|_| Err(timed_out()))?
        }
        Ok(r) => r?,
        Err(_) => return Err(timed_out()),
    };
    wire::set_id(&mut resp, id);
    Ok(resp)
}

fn timed_out() -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::TimedOut, "timed out")
}

fn with_id(query: &[u8], id: u16) -> Vec<u8> {
    let mut q = query.to_vec();
    wire::set_id(&mut q, id);
    q
}

async fn udp(addr: SocketAddr, query: &[u8]) -> std::io::Result<Vec<u8>> {
    let bind: SocketAddr = if addr.is_ipv4() { ([0, 0, 0, 0], 0).into() } else { ([0u16; 8], 0).into() };
    let sock = UdpSocket::bind(bind).await?;
    sock.connect(addr).await?;
    let id: u16 = rand::random();
    let q = with_id(query, id);
    sock.send(&q).await?;
    let mut buf = vec![0u8; 65535];
    loop {
        let n = sock.recv(&mut buf).await?;
        // a connected socket only sees this upstream's datagrams; the id must match and the question be ours
        if n >= 12 && buf[..2] == id.to_be_bytes() && buf[2] & 0x80 != 0 && question_matches(&q, &buf[..n]) {
            buf.truncate(n);
            return Ok(buf);
        }
    }
}

fn question_matches(query: &[u8], resp: &[u8]) -> bool {
    let Ok(q) = wire::parse_query(query) else { return false };
    resp.len() >= q.question_end && resp[12..q.question_end].eq_ignore_ascii_case(&query[12..q.question_end])
}

async fn tcp(addr: SocketAddr, query: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut s = TcpStream::connect(addr).await?;
    let id: u16 = rand::random();
    let q = with_id(query, id);
    let mut framed = (q.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(&q);
    s.write_all(&framed).await?;
    let len = s.read_u16().await? as usize;
    let mut buf = vec![0u8; len];
    s.read_exact(&mut buf).await?;
    if buf.len() < 12 || buf[..2] != id.to_be_bytes() {
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, "answer with the wrong id"));
    }
    Ok(buf)
}

/// The validator's source of DS and DNSKEY sets in forward mode: the same upstreams, asked with DO and CD.
pub struct Fetcher {
    pub upstreams: Vec<Upstream>,
    pub timeout: Duration,
}

impl super::dnssec::Fetch for Fetcher {
    fn fetch<'a>(
        &'a self,
        name: &'a hickory_proto::rr::Name,
        rtype: hickory_proto::rr::RecordType,
    ) -> super::dnssec::BoxFuture<'a, Result<hickory_proto::op::Message, String>> {
        Box::pin(async move {
            let q = super::dnssec::upstream_query(rand::random(), name, rtype);
            let (resp, _) = exchange(&self.upstreams, &q, self.timeout).await.map_err(|e| e.to_string())?;
            hickory_proto::op::Message::from_vec(&resp).map_err(|e| format!("unreadable answer: {e}"))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_upstreams() {
        assert_eq!(Upstream::parse("udp://127.0.0.1:5300"), Ok(Upstream::Udp("127.0.0.1:5300".parse().unwrap())));
        assert_eq!(Upstream::parse("tcp://[::1]:53"), Ok(Upstream::Tcp("[::1]:53".parse().unwrap())));
        assert_eq!(Upstream::parse("9.9.9.9"), Ok(Upstream::Udp("9.9.9.9:53".parse().unwrap())));
        assert!(Upstream::parse("tls://9.9.9.9:853#dns.quad9.net").unwrap_err().contains("not available yet"));
        assert!(Upstream::parse("udp://dns.example").is_err());
        assert!(Upstream::parse("quic://1.1.1.1").is_err());
    }
}
