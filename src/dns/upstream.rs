//! Upstream exchange (IO): send a query to the configured upstreams in order (failover), over UDP with a fresh
//! random id from a fresh port, retrying over TCP when the answer is truncated; `tcp://` upstreams use TCP only,
//! `tls://` DNS over TLS (RFC 7858, connections kept and reused) and `https://` DNS over HTTPS (RFC 8484, HTTP/2).
//! Certificates of DoT/DoH upstreams are checked against the Mozilla roots plus `dns.upstream_ca`.

use crate::util::Locked;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

use super::wire;

#[derive(Debug, Clone)]
pub(crate) enum Upstream {
    Udp(SocketAddr),
    Tcp(SocketAddr),
    Tls(Arc<Dot>),
    Https(Arc<Doh>),
}

/// A DNS-over-TLS upstream and its idle connections.
pub(crate) struct Dot {
    addr: SocketAddr,
    name: Option<String>,
    server_name: ServerName<'static>,
    connector: tokio_rustls::TlsConnector,
    idle: Mutex<Vec<tokio_rustls::client::TlsStream<TcpStream>>>,
}

impl std::fmt::Debug for Dot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Dot({}, {:?})", self.addr, self.name)
    }
}

/// A DNS-over-HTTPS upstream (reqwest keeps its HTTP/2 connection).
pub(crate) struct Doh {
    url: reqwest::Url,
    client: reqwest::Client,
}

impl std::fmt::Debug for Doh {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Doh({})", self.url)
    }
}

impl PartialEq for Upstream {
    fn eq(&self, other: &Self) -> bool {
        self.to_string() == other.to_string()
    }
}

/// Idle DoT connections kept per upstream.
const DOT_IDLE: usize = 4;

/// The TLS client configuration for DoT/DoH upstreams: Mozilla's roots (webpki-roots) plus the certificates of
/// `extra_ca` (PEM; for a resolver with a private CA).
pub(crate) fn client_tls(extra_ca: &str) -> Result<Arc<rustls::ClientConfig>, String> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
    if !extra_ca.is_empty() {
        let certs = CertificateDer::pem_file_iter(extra_ca)
            .map_err(|e| format!("{extra_ca}: {e}"))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("{extra_ca}: {e}"))?;
        if certs.is_empty() {
            return Err(format!("{extra_ca}: no certificates"));
        }
        for c in certs {
            roots.add(c).map_err(|e| format!("{extra_ca}: {e}"))?;
        }
    }
    let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(cfg))
}

impl Upstream {
    /// `udp://ip:port`, `tcp://ip:port`, a bare `ip` / `ip:port` (UDP, port 53), `tls://ip[:port][#name]` (DoT,
    /// port 853; the certificate must be valid for `name`, else for the IP) or `https://host[:port]/path` (DoH).
    /// `bootstrap` resolves DoH host names (the plain upstreams of the same list; empty: the system resolver).
    pub(crate) fn parse(
        s: &str,
        tls: &Arc<rustls::ClientConfig>,
        bootstrap: &[SocketAddr],
    ) -> Result<Upstream, String> {
        let (scheme, rest) = s.split_once("://").unwrap_or(("udp", s));
        let addr_of = |rest: &str, port: u16| {
            rest.parse::<SocketAddr>().or_else(|_| rest.parse::<IpAddr>().map(|ip| SocketAddr::new(ip, port))).map_err(
                |_| format!("invalid upstream {s:?}: expected \"udp://ip:port\", \"tcp://ip:port\", \"tls://ip:port#name\" or an https:// URL"),
            )
        };
        match scheme {
            "udp" => Ok(Upstream::Udp(addr_of(rest, 53)?)),
            "tcp" => Ok(Upstream::Tcp(addr_of(rest, 53)?)),
            "tls" => {
                let (host, name) = match rest.split_once('#') {
                    Some((h, n)) if !n.is_empty() => (h, Some(n.to_string())),
                    Some(_) => return Err(format!("invalid upstream {s:?}: empty name after #")),
                    None => (rest, None),
                };
                let addr = addr_of(host, 853)?;
                let server_name = match &name {
                    Some(n) => {
                        ServerName::try_from(n.clone()).map_err(|_| format!("invalid TLS name {n:?} in {s:?}"))?
                    }
                    None => ServerName::IpAddress(addr.ip().into()),
                };
                let mut cfg = (**tls).clone();
                cfg.alpn_protocols = vec![b"dot".to_vec()];
                let connector = tokio_rustls::TlsConnector::from(Arc::new(cfg));
                Ok(Upstream::Tls(Arc::new(Dot { addr, name, server_name, connector, idle: Mutex::default() })))
            }
            "https" => {
                let url = reqwest::Url::parse(s).map_err(|e| format!("invalid upstream {s:?}: {e}"))?;
                if url.host_str().is_none() {
                    return Err(format!("invalid upstream {s:?}: no host"));
                }
                let mut cfg = (**tls).clone();
                cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
                let mut b = reqwest::Client::builder()
                    .use_preconfigured_tls(cfg)
                    .pool_idle_timeout(Duration::from_secs(90))
                    .user_agent(concat!("hearth/", env!("CARGO_PKG_VERSION")));
                if !bootstrap.is_empty() {
                    b = b.dns_resolver(Arc::new(Bootstrap { servers: bootstrap.to_vec() }));
                }
                let client = b.build().map_err(|e| format!("{s}: {e}"))?;
                Ok(Upstream::Https(Arc::new(Doh { url, client })))
            }
            other => Err(format!("unknown upstream scheme {other:?}: use udp, tcp, tls or https")),
        }
    }

    /// The plain (UDP/TCP) upstream addresses of a list: the bootstrap for DoH host names.
    pub(crate) fn plain(list: &[String]) -> Vec<SocketAddr> {
        list.iter()
            .filter_map(|u| {
                let (scheme, rest) = u.split_once("://").unwrap_or(("udp", u));
                if scheme != "udp" && scheme != "tcp" {
                    return None;
                }
                rest.parse::<SocketAddr>()
                    .ok()
                    .or_else(|| rest.parse::<IpAddr>().ok().map(|ip| SocketAddr::new(ip, 53)))
            })
            .collect()
    }
}

impl std::fmt::Display for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Upstream::Udp(a) => write!(f, "udp://{a}"),
            Upstream::Tcp(a) => write!(f, "tcp://{a}"),
            Upstream::Tls(d) => match &d.name {
                Some(n) => write!(f, "tls://{}#{n}", d.addr),
                None => write!(f, "tls://{}", d.addr),
            },
            Upstream::Https(d) => write!(f, "{}", d.url),
        }
    }
}

/// Resolves DoH host names through the plain upstreams, so that a machine whose own resolver is hearth does not
/// ask itself to find its upstream.
struct Bootstrap {
    servers: Vec<SocketAddr>,
}

impl reqwest::dns::Resolve for Bootstrap {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let servers = self.servers.clone();
        let host = name.as_str().to_string();
        Box::pin(async move {
            let qname = super::dnssec::fqdn(&host.to_ascii_lowercase()).ok_or("bad host name")?;
            let mut addrs: Vec<SocketAddr> = vec![];
            for qtype in [hickory_proto::rr::RecordType::A, hickory_proto::rr::RecordType::AAAA] {
                let q = super::dnssec::upstream_query(rand::random(), &qname, qtype);
                for s in &servers {
                    if let Ok(bytes) = exchange_one(*s, &q, Duration::from_secs(2)).await
                        && let Ok(m) = hickory_proto::op::Message::from_vec(&bytes)
                    {
                        addrs.extend(m.answers.iter().filter_map(|r| match &r.data {
                            hickory_proto::rr::RData::A(a) => Some(SocketAddr::new(IpAddr::V4(a.0), 0)),
                            hickory_proto::rr::RData::AAAA(a) => Some(SocketAddr::new(IpAddr::V6(a.0), 0)),
                            _ => None,
                        }));
                        break;
                    }
                }
            }
            if addrs.is_empty() {
                return Err(format!("{host}: not resolved by the bootstrap upstreams").into());
            }
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum UpstreamError {
    #[error("no upstream answered ({0})")]
    AllFailed(String),
}

/// How the upstreams are ordered for each query.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Strategy {
    /// In the configured order; the next one only when one fails.
    Failover,
    /// Each query starts at the next upstream.
    RoundRobin,
    /// Lowest smoothed latency first (an upstream not measured yet is tried first, to be measured).
    Fastest,
}

impl Strategy {
    pub(crate) fn parse(s: &str) -> Result<Strategy, String> {
        match s {
            "failover" => Ok(Strategy::Failover),
            "round_robin" => Ok(Strategy::RoundRobin),
            "fastest" => Ok(Strategy::Fastest),
            other => Err(format!("{other:?} is not a strategy: use \"failover\", \"round_robin\" or \"fastest\"")),
        }
    }
}

/// Consecutive failures after which an upstream is asked last (it is still asked: it may come back).
const SICK_AFTER: u32 = 3;

/// The order to ask upstreams in (pure): `stats[i]` is (smoothed latency in µs, 0 when unknown; consecutive
/// failures) of upstream `i`, `turn` counts queries (round robin).
pub(crate) fn order(strategy: Strategy, stats: &[(u64, u32)], turn: usize) -> Vec<usize> {
    let n = stats.len();
    let mut idx: Vec<usize> = (0..n).collect();
    match strategy {
        Strategy::Failover => {}
        Strategy::RoundRobin if n > 0 => idx.rotate_left(turn % n),
        Strategy::RoundRobin => {}
        Strategy::Fastest => idx.sort_by_key(|&i| stats[i].0),
    }
    // a stable sort: failing upstreams go last, the rest keep the strategy's order
    idx.sort_by_key(|&i| stats[i].1 >= SICK_AFTER);
    idx
}

#[derive(Debug, Default)]
struct Health {
    ewma_us: AtomicU64,
    queries: AtomicU64,
    failures: AtomicU64,
    consecutive: AtomicU32,
    last_error: Mutex<Option<String>>,
}

/// One upstream's health, for the API and the UI.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub(crate) struct UpstreamHealth {
    pub upstream: String,
    /// Answers received and failures (timeouts, refused connections, bad certificates) since the last config change.
    pub queries: u64,
    pub failures: u64,
    /// Smoothed latency in milliseconds (none until measured).
    pub latency_ms: Option<f64>,
    /// False after three failures in a row (then asked last).
    pub healthy: bool,
    pub last_error: Option<String>,
}

/// The configured upstreams with their health and the strategy that orders them.
#[derive(Debug)]
pub(crate) struct Pool {
    pub upstreams: Vec<Upstream>,
    pub strategy: Strategy,
    pub timeout: Duration,
    health: Vec<Health>,
    turn: AtomicUsize,
}

impl Pool {
    pub(crate) fn new(upstreams: Vec<Upstream>, strategy: Strategy, timeout: Duration) -> Pool {
        let health = upstreams.iter().map(|_| Health::default()).collect();
        Pool { upstreams, strategy, timeout, health, turn: AtomicUsize::new(0) }
    }

    fn order(&self) -> Vec<usize> {
        let stats: Vec<(u64, u32)> =
            self.health.iter().map(|h| (h.ewma_us.load(Relaxed), h.consecutive.load(Relaxed))).collect();
        order(self.strategy, &stats, self.turn.fetch_add(1, Relaxed))
    }

    fn record(&self, i: usize, result: Result<Duration, &str>) {
        let h = &self.health[i];
        let label = self.upstreams[i].to_string();
        match result {
            Ok(took) => {
                let us = took.as_micros().max(1) as u64;
                let old = h.ewma_us.load(Relaxed);
                h.ewma_us.store(if old == 0 { us } else { (old * 7 + us) / 8 }, Relaxed);
                h.queries.fetch_add(1, Relaxed);
                h.consecutive.store(0, Relaxed);
                metrics::histogram!("hearth_dns_upstream_duration_seconds", "upstream" => label.clone())
                    .record(took.as_secs_f64());
                metrics::gauge!("hearth_dns_upstream_healthy", "upstream" => label).set(1.0);
            }
            Err(e) => {
                h.failures.fetch_add(1, Relaxed);
                let n = h.consecutive.fetch_add(1, Relaxed) + 1;
                *h.last_error.locked() = Some(e.to_string());
                metrics::counter!("hearth_dns_upstream_failures_total", "upstream" => label.clone()).increment(1);
                metrics::gauge!("hearth_dns_upstream_healthy", "upstream" => label)
                    .set(f64::from(u8::from(n < SICK_AFTER)));
            }
        }
    }

    pub(crate) fn health(&self) -> Vec<UpstreamHealth> {
        self.upstreams
            .iter()
            .zip(&self.health)
            .map(|(u, h)| {
                let ewma = h.ewma_us.load(Relaxed);
                UpstreamHealth {
                    upstream: u.to_string(),
                    queries: h.queries.load(Relaxed),
                    failures: h.failures.load(Relaxed),
                    latency_ms: (ewma > 0).then(|| (ewma as f64 / 10.0).round() / 100.0),
                    healthy: h.consecutive.load(Relaxed) < SICK_AFTER,
                    last_error: h.last_error.locked().clone(),
                }
            })
            .collect()
    }

    /// Ask the upstreams in the strategy's order until one answers; returns the answer (with the query's own id)
    /// and who gave it.
    pub(crate) async fn exchange(&self, query: &[u8]) -> Result<(Vec<u8>, Upstream), UpstreamError> {
        let mut errors = vec![];
        let client_id = u16::from_be_bytes([query[0], query[1]]);
        let timeout = self.timeout;
        for i in self.order() {
            let u = &self.upstreams[i];
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
                Upstream::Tls(d) => {
                    tokio::time::timeout(timeout, dot(d, query)).await.unwrap_or_else(|_| Err(timed_out()))
                }
                Upstream::Https(d) => {
                    tokio::time::timeout(timeout, doh(d, query)).await.unwrap_or_else(|_| Err(timed_out()))
                }
            };
            match result {
                Ok(mut resp) => {
                    self.record(i, Ok(started.elapsed()));
                    wire::set_id(&mut resp, client_id);
                    return Ok((resp, u.clone()));
                }
                Err(e) => {
                    let e = e.to_string();
                    self.record(i, Err(&e));
                    tracing::debug!(upstream = %u, error = %e, "upstream failed");
                    errors.push(format!("{u}: {e}"));
                }
            }
        }
        Err(UpstreamError::AllFailed(errors.join("; ")))
    }
}

/// One exchange with one server over UDP (TCP when the answer is truncated), no metrics: the recursor's way to
/// ask authoritative servers. The answer keeps the id of `query`.
pub(crate) async fn exchange_one(addr: SocketAddr, query: &[u8], timeout: Duration) -> std::io::Result<Vec<u8>> {
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
    framed(&mut s, query).await
}

/// One length-prefixed exchange (RFC 1035 §4.2.2) with a fresh id on a stream.
async fn framed<S: AsyncRead + AsyncWrite + Unpin>(s: &mut S, query: &[u8]) -> std::io::Result<Vec<u8>> {
    let id: u16 = rand::random();
    let q = with_id(query, id);
    let mut out = (q.len() as u16).to_be_bytes().to_vec();
    out.extend_from_slice(&q);
    s.write_all(&out).await?;
    s.flush().await?;
    let len = s.read_u16().await? as usize;
    let mut buf = vec![0u8; len];
    s.read_exact(&mut buf).await?;
    if buf.len() < 12 || buf[..2] != id.to_be_bytes() {
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, "answer with the wrong id"));
    }
    Ok(buf)
}

/// DNS over TLS: an idle connection if there is one (a stale one is replaced once), else a new one.
async fn dot(d: &Dot, query: &[u8]) -> std::io::Result<Vec<u8>> {
    let reused = d.idle.locked().pop();
    let fresh = reused.is_none();
    let mut conn = match reused {
        Some(c) => c,
        None => dot_connect(d).await?,
    };
    let resp = match framed(&mut conn, query).await {
        Ok(r) => r,
        Err(_) if !fresh => {
            conn = dot_connect(d).await?;
            framed(&mut conn, query).await?
        }
        Err(e) => return Err(e),
    };
    let mut idle = d.idle.locked();
    if idle.len() < DOT_IDLE {
        idle.push(conn);
    }
    Ok(resp)
}

async fn dot_connect(d: &Dot) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(d.addr).await?;
    tcp.set_nodelay(true)?;
    d.connector.connect(d.server_name.clone(), tcp).await
}

/// DNS over HTTPS: POST with id 0 (RFC 8484 §4.1), the answer gets the query's id back.
async fn doh(d: &Doh, query: &[u8]) -> std::io::Result<Vec<u8>> {
    let err = |e: reqwest::Error| std::io::Error::other(e.without_url().to_string());
    let resp = d
        .client
        .post(d.url.clone())
        .header(reqwest::header::CONTENT_TYPE, "application/dns-message")
        .header(reqwest::header::ACCEPT, "application/dns-message")
        .body(with_id(query, 0))
        .send()
        .await
        .map_err(err)?
        .error_for_status()
        .map_err(err)?;
    let body = resp.bytes().await.map_err(err)?.to_vec();
    if body.len() < 12 {
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, "not a DNS message"));
    }
    let mut body = body;
    wire::set_id(&mut body, u16::from_be_bytes([query[0], query[1]]));
    Ok(body)
}

/// The validator's source of DS and DNSKEY sets in forward mode: the same upstreams, asked with DO and CD.
pub(crate) struct Fetcher(pub Arc<Pool>);

impl super::dnssec::Fetch for Fetcher {
    fn fetch<'a>(
        &'a self,
        name: &'a hickory_proto::rr::Name,
        rtype: hickory_proto::rr::RecordType,
    ) -> super::dnssec::BoxFuture<'a, Result<hickory_proto::op::Message, String>> {
        Box::pin(async move {
            let q = super::dnssec::upstream_query(rand::random(), name, rtype);
            let (resp, _) = self.0.exchange(&q).await.map_err(|e| e.to_string())?;
            hickory_proto::op::Message::from_vec(&resp).map_err(|e| format!("unreadable answer: {e}"))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strategies_order_upstreams_and_failing_ones_go_last() {
        let fresh = [(0, 0), (0, 0), (0, 0)];
        assert_eq!(order(Strategy::Failover, &fresh, 7), [0, 1, 2]);
        assert_eq!(order(Strategy::RoundRobin, &fresh, 0), [0, 1, 2]);
        assert_eq!(order(Strategy::RoundRobin, &fresh, 4), [1, 2, 0]);
        // fastest: unmeasured first (to measure it), then by latency
        assert_eq!(order(Strategy::Fastest, &[(900, 0), (0, 0), (300, 0)], 0), [1, 2, 0]);
        // three failures in a row: asked last whatever the strategy
        assert_eq!(order(Strategy::Failover, &[(100, 3), (200, 0), (300, 1)], 0), [1, 2, 0]);
        assert_eq!(order(Strategy::Fastest, &[(100, 5), (200, 0), (300, 0)], 0), [1, 2, 0]);
        assert!(order(Strategy::RoundRobin, &[], 3).is_empty());
        assert!(Strategy::parse("random").is_err());
        assert_eq!(Strategy::parse("round_robin"), Ok(Strategy::RoundRobin));
    }

    #[test]
    fn parses_upstreams() {
        let tls = client_tls("").unwrap();
        let p = |s: &str| Upstream::parse(s, &tls, &[]);
        assert_eq!(p("udp://127.0.0.1:5300"), Ok(Upstream::Udp("127.0.0.1:5300".parse().unwrap())));
        assert_eq!(p("tcp://[::1]:53"), Ok(Upstream::Tcp("[::1]:53".parse().unwrap())));
        assert_eq!(p("9.9.9.9"), Ok(Upstream::Udp("9.9.9.9:53".parse().unwrap())));
        assert_eq!(p("tls://9.9.9.9#dns.quad9.net").unwrap().to_string(), "tls://9.9.9.9:853#dns.quad9.net");
        assert_eq!(p("tls://[2620:fe::fe]:853").unwrap().to_string(), "tls://[2620:fe::fe]:853");
        assert_eq!(p("https://dns.quad9.net/dns-query").unwrap().to_string(), "https://dns.quad9.net/dns-query");
        assert!(p("tls://9.9.9.9#").is_err());
        assert!(p("tls://dns.quad9.net").is_err());
        assert!(p("udp://dns.example").is_err());
        assert!(p("quic://1.1.1.1").unwrap_err().contains("unknown upstream scheme"));
        assert_eq!(
            Upstream::plain(&["tls://1.1.1.1".into(), "9.9.9.9".into(), "tcp://[::1]:5353".into()]),
            vec!["9.9.9.9:53".parse::<SocketAddr>().unwrap(), "[::1]:5353".parse().unwrap()]
        );
        assert!(client_tls("/nonexistent.pem").is_err());
    }
}
