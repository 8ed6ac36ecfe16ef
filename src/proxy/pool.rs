//! Upstream pools (pure core; the clock is passed in): which backend gets the next request, and what the
//! proxy learned about each backend.
//!
//! Strategies: round-robin, least connections (ties go round-robin), client-IP hash (rendezvous hashing, so a
//! backend leaving moves only its own clients). A backend is *available* when its last active health check passed
//! and its circuit is closed: `max_fails` failures in a row open the circuit for `fail_timeout`; after that, requests
//! flow again (half-open) and the next failure reopens it at once, a success closes it.

use crate::util::Locked;
use std::net::IpAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Strategy {
    RoundRobin,
    LeastConn,
    IpHash,
}

impl Strategy {
    pub(crate) fn parse(s: &str) -> Result<Strategy, String> {
        match s {
            "round_robin" => Ok(Strategy::RoundRobin),
            "least_conn" => Ok(Strategy::LeastConn),
            "ip_hash" => Ok(Strategy::IpHash),
            _ => Err("must be \"round_robin\", \"least_conn\" or \"ip_hash\"".into()),
        }
    }
}

/// `http://host:port[/base]`, `https://…` (TLS, HTTP/2 when the backend offers it) or `h2c://…` (HTTP/2 without
/// TLS).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct UpstreamAddr {
    pub scheme: &'static str,
    pub authority: String,
    pub base_path: String,
    pub h2c: bool,
}

impl UpstreamAddr {
    pub(crate) fn parse(s: &str) -> Result<UpstreamAddr, String> {
        let (scheme, rest, h2c) = if let Some(r) = s.strip_prefix("http://") {
            ("http", r, false)
        } else if let Some(r) = s.strip_prefix("https://") {
            ("https", r, false)
        } else if let Some(r) = s.strip_prefix("h2c://") {
            ("http", r, true)
        } else {
            return Err(format!("{s:?} must start with http://, https:// or h2c://"));
        };
        let (authority, path) =
            rest.split_once('/').map(|(a, p)| (a, format!("/{p}"))).unwrap_or((rest, String::new()));
        if authority.is_empty() || authority.contains(['@', ' ', '?', '#']) {
            return Err(format!("{s:?} has no valid host"));
        }
        let parsed = authority
            .parse::<axum::http::uri::Authority>()
            .map_err(|e| format!("{s:?} has an invalid host or port: {e}"))?;
        let port = parsed.as_str().rsplit_once(']').map(|(_, r)| r).unwrap_or(parsed.as_str());
        if let Some((_, p)) = port.rsplit_once(':')
            && p.parse::<u16>().is_err()
        {
            return Err(format!("{s:?} has an invalid port"));
        }
        if path.contains(['?', '#', ' ']) {
            return Err(format!("{s:?}: an upstream's path may not have a query or fragment"));
        }
        Ok(UpstreamAddr {
            scheme,
            authority: authority.to_string(),
            base_path: path.trim_end_matches('/').to_string(),
            h2c,
        })
    }
}

impl std::fmt::Display for UpstreamAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scheme = if self.h2c { "h2c" } else { self.scheme };
        write!(f, "{scheme}://{}{}", self.authority, self.base_path)
    }
}

#[derive(Debug, Default, Clone)]
struct State {
    /// A health check or a request has reached the backend at least once (before: "not checked yet").
    seen: bool,
    fails: u32,
    open_until: Option<Instant>,
    check_ok: bool,
    check_detail: String,
    last_error: String,
    latency_ms: f64,
}

#[derive(Debug)]
pub(crate) struct Upstream {
    pub addr: UpstreamAddr,
    pub active: AtomicUsize,
    pub requests: AtomicU64,
    pub failures: AtomicU64,
    state: Mutex<State>,
}

/// What the API shows about one backend.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub(crate) struct UpstreamStatus {
    pub url: String,
    /// False until a health check or a request has reached the backend: its state is not known yet.
    pub checked: bool,
    pub available: bool,
    pub circuit_open: bool,
    pub health_check_ok: bool,
    pub health_check: String,
    pub consecutive_failures: u32,
    pub active_requests: usize,
    pub requests: u64,
    pub failures: u64,
    pub latency_ms: f64,
    pub last_error: String,
}

#[derive(Debug)]
pub(crate) struct Pool {
    pub upstreams: Vec<Upstream>,
    pub strategy: Strategy,
    max_fails: u32,
    fail_timeout: Duration,
    next: AtomicUsize,
}

fn lock(m: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    m.locked()
}

impl Pool {
    pub(crate) fn new(addrs: Vec<UpstreamAddr>, strategy: Strategy, max_fails: u32, fail_timeout: Duration) -> Pool {
        let upstreams = addrs
            .into_iter()
            .map(|addr| Upstream {
                addr,
                active: AtomicUsize::new(0),
                requests: AtomicU64::new(0),
                failures: AtomicU64::new(0),
                state: Mutex::new(State { check_ok: true, ..Default::default() }),
            })
            .collect();
        Pool { upstreams, strategy, max_fails: max_fails.max(1), fail_timeout, next: AtomicUsize::new(0) }
    }

    /// Carry health knowledge over from the pool this one replaces (same backend URL → same state).
    pub(crate) fn inherit(&self, old: &Pool) {
        for u in &self.upstreams {
            if let Some(o) = old.upstreams.iter().find(|o| o.addr == u.addr) {
                *lock(&u.state) = lock(&o.state).clone();
            }
        }
    }

    fn available(&self, i: usize, now: Instant) -> bool {
        let s = lock(&self.upstreams[i].state);
        s.check_ok && s.open_until.is_none_or(|t| now >= t)
    }

    /// The backend for the next request, skipping those already `tried`; `None` when no backend is available.
    pub(crate) fn pick(&self, client: IpAddr, now: Instant, tried: &[usize]) -> Option<usize> {
        let n = self.upstreams.len();
        let ok: Vec<usize> = (0..n).filter(|i| !tried.contains(i) && self.available(*i, now)).collect();
        if ok.is_empty() {
            return None;
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        Some(match self.strategy {
            Strategy::RoundRobin => ok[start % ok.len()],
            Strategy::LeastConn => {
                let min = ok.iter().map(|i| self.upstreams[*i].active.load(Ordering::Relaxed)).min().unwrap_or(0);
                let least: Vec<usize> =
                    ok.into_iter().filter(|i| self.upstreams[*i].active.load(Ordering::Relaxed) == min).collect();
                least[start % least.len()]
            }
            Strategy::IpHash => *ok
                .iter()
                .max_by_key(|i| xxhash_rust::xxh3::xxh3_64(format!("{client}|{}", self.upstreams[**i].addr).as_bytes()))
                .expect("not empty"),
        })
    }

    pub(crate) fn success(&self, i: usize, latency: Duration) {
        let mut s = lock(&self.upstreams[i].state);
        s.seen = true;
        s.fails = 0;
        s.open_until = None;
        let ms = latency.as_secs_f64() * 1000.0;
        s.latency_ms = if s.latency_ms == 0.0 { ms } else { s.latency_ms * 0.8 + ms * 0.2 };
    }

    /// A failed request (connect error, timeout, 502-class answer); returns true when this opened the circuit.
    pub(crate) fn failure(&self, i: usize, now: Instant, error: String) -> bool {
        let u = &self.upstreams[i];
        u.failures.fetch_add(1, Ordering::Relaxed);
        let mut s = lock(&u.state);
        s.seen = true;
        s.fails = s.fails.saturating_add(1);
        s.last_error = error;
        let half_open = s.open_until.is_some_and(|t| now >= t);
        if s.fails >= self.max_fails && (s.open_until.is_none() || half_open) {
            s.open_until = Some(now + self.fail_timeout);
            return true;
        }
        false
    }

    /// The result of an active health check; a backend that passes again after failing also gets its circuit closed.
    pub(crate) fn checked(&self, i: usize, ok: bool, detail: String) -> bool {
        let mut s = lock(&self.upstreams[i].state);
        s.seen = true;
        let changed = s.check_ok != ok;
        s.check_ok = ok;
        if changed && ok {
            // back from a failed check: the passive failures it explains are forgiven
            s.fails = 0;
            s.open_until = None;
        }
        s.check_detail = detail;
        changed
    }

    pub(crate) fn status(&self, now: Instant) -> Vec<UpstreamStatus> {
        (0..self.upstreams.len())
            .map(|i| {
                let u = &self.upstreams[i];
                let s = lock(&u.state).clone();
                let open = s.open_until.is_some_and(|t| now < t);
                UpstreamStatus {
                    url: u.addr.to_string(),
                    checked: s.seen,
                    available: s.check_ok && !open,
                    circuit_open: open,
                    health_check_ok: s.check_ok,
                    health_check: s.check_detail,
                    consecutive_failures: s.fails,
                    active_requests: u.active.load(Ordering::Relaxed),
                    requests: u.requests.load(Ordering::Relaxed),
                    failures: u.failures.load(Ordering::Relaxed),
                    latency_ms: (s.latency_ms * 10.0).round() / 10.0,
                    last_error: s.last_error,
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(n: usize, strategy: Strategy) -> Pool {
        let addrs = (0..n).map(|i| UpstreamAddr::parse(&format!("http://10.0.0.{i}:80")).unwrap()).collect();
        Pool::new(addrs, strategy, 2, Duration::from_secs(30))
    }

    const C: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 168, 1, 7));

    #[test]
    fn round_robin_skips_open_circuits_and_half_opens() {
        let p = pool(3, Strategy::RoundRobin);
        let t = Instant::now();
        let picks: Vec<usize> = (0..6).map(|_| p.pick(C, t, &[]).unwrap()).collect();
        assert_eq!(picks, [0, 1, 2, 0, 1, 2]);
        assert!(!p.failure(1, t, "refused".into()), "one failure is not enough");
        assert!(p.failure(1, t, "refused".into()), "the second opens the circuit");
        assert!((0..6).all(|_| p.pick(C, t, &[]).unwrap() != 1));
        let later = t + Duration::from_secs(31);
        assert!((0..6).any(|_| p.pick(C, later, &[]) == Some(1)), "half-open after fail_timeout");
        assert!(p.failure(1, later, "refused".into()), "one failure in half-open reopens");
        assert!((0..6).all(|_| p.pick(C, later, &[]).unwrap() != 1));
        p.success(1, Duration::from_millis(3));
        assert!((0..6).any(|_| p.pick(C, later, &[]) == Some(1)), "a success closes it");
        assert_eq!(p.pick(C, t, &[0, 1, 2]), None, "everything tried");
    }

    #[test]
    fn least_conn_prefers_idle_backends() {
        let p = pool(3, Strategy::LeastConn);
        p.upstreams[0].active.store(5, Ordering::Relaxed);
        p.upstreams[2].active.store(1, Ordering::Relaxed);
        let t = Instant::now();
        assert!((0..10).all(|_| p.pick(C, t, &[]) == Some(1)));
    }

    #[test]
    fn ip_hash_is_sticky_and_moves_only_the_lost_clients() {
        let p = pool(4, Strategy::IpHash);
        let t = Instant::now();
        let clients: Vec<IpAddr> = (0..200).map(|i| IpAddr::from([10, 1, (i / 250) as u8, (i % 250) as u8])).collect();
        let before: Vec<usize> = clients.iter().map(|c| p.pick(*c, t, &[]).unwrap()).collect();
        assert!(clients.iter().zip(&before).all(|(c, b)| p.pick(*c, t, &[]) == Some(*b)), "sticky");
        for k in 0..4 {
            assert!(before.iter().filter(|b| **b == k).count() > 20, "spread over all backends");
        }
        p.checked(2, false, "503".into());
        for (c, b) in clients.iter().zip(&before) {
            let now = p.pick(*c, t, &[]).unwrap();
            if *b != 2 {
                assert_eq!(now, *b, "clients of healthy backends stay");
            } else {
                assert_ne!(now, 2);
            }
        }
    }

    #[test]
    fn health_carries_over_reloads() {
        let old = pool(2, Strategy::RoundRobin);
        old.checked(1, false, "connection refused".into());
        let new = pool(3, Strategy::RoundRobin);
        new.inherit(&old);
        let s = new.status(Instant::now());
        assert!(s[0].available && !s[1].available && s[2].available);
        assert_eq!(s[1].health_check, "connection refused");
    }

    #[test]
    fn upstream_urls() {
        let u = UpstreamAddr::parse("http://127.0.0.1:9000/base/").unwrap();
        assert_eq!((u.scheme, u.authority.as_str(), u.base_path.as_str()), ("http", "127.0.0.1:9000", "/base"));
        assert!(UpstreamAddr::parse("h2c://[::1]:80").unwrap().h2c);
        assert!(UpstreamAddr::parse("ftp://x").is_err());
        assert!(UpstreamAddr::parse("http://").is_err());
        assert!(UpstreamAddr::parse("http://a:99999").is_err());
        assert!(UpstreamAddr::parse("http://u@a:1").is_err());
    }
}
