//! Connection hygiene for the HTTP(S) listeners (slow-client defence): a cap on open connections overall and per
//! client address ([`ConnGate`]), and per connection ([`Watched`]) a header-read timeout and an idle keep-alive
//! timeout.
//!
//! hyper's own `header_read_timeout` also runs while a keep-alive connection waits for its next request, so it
//! cannot tell "slow header" from "idle"; the wrapper here can, because the service marks when a request starts
//! and when its response ends ([`Activity`]):
//! - before the first request of a connection: closed `header_read_timeout` after accept;
//! - HTTP/1 bytes of a next request but no complete head: closed `header_read_timeout` after its first byte;
//! - no request in flight and nothing received: closed `idle_timeout` after the last response ended;
//! - a request in flight or an upgraded connection (WebSocket): no deadline here (the routes' own timeouts apply).

use crate::util::Locked;
use std::collections::HashMap;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// The limits in force; read from the live config by the accept loop for every connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ConnLimits {
    pub max_total: usize,
    pub max_per_client: usize,
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
}

impl ConnLimits {
    pub(crate) fn from_config(c: &crate::config::ServerConfig) -> ConnLimits {
        ConnLimits {
            max_total: c.max_connections,
            max_per_client: c.max_connections_per_client,
            header_read_timeout: c.header_read_timeout.as_std(),
            idle_timeout: c.idle_timeout.as_std(),
        }
    }
}

impl Default for ConnLimits {
    fn default() -> Self {
        ConnLimits::from_config(&crate::config::ServerConfig::default())
    }
}

/// Open connections, overall and per client address; shared by every listener.
#[derive(Default)]
pub(crate) struct ConnGate {
    total: AtomicUsize,
    per_client: Mutex<HashMap<IpAddr, usize>>,
}

/// One admitted connection; gives its place back when dropped.
pub(crate) struct ConnPermit {
    gate: Arc<ConnGate>,
    ip: IpAddr,
}

impl ConnGate {
    /// Admit a connection from `ip` under `limits`, or refuse it (None).
    pub(crate) fn admit(self: &Arc<Self>, ip: IpAddr, limits: &ConnLimits) -> Option<ConnPermit> {
        let mut map = self.per_client.locked();
        if self.total.load(Ordering::Relaxed) >= limits.max_total {
            return None;
        }
        let n = map.entry(ip).or_insert(0);
        if *n >= limits.max_per_client {
            return None;
        }
        *n += 1;
        self.total.fetch_add(1, Ordering::Relaxed);
        Some(ConnPermit { gate: self.clone(), ip })
    }

    #[cfg(test)]
    pub(crate) fn open(&self) -> usize {
        self.total.load(Ordering::Relaxed)
    }
}

impl Drop for ConnPermit {
    fn drop(&mut self) {
        let mut map = self.gate.per_client.locked();
        if let Some(n) = map.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.ip);
            }
        }
        self.gate.total.fetch_sub(1, Ordering::Relaxed);
    }
}

/// What the service tells the connection wrapper: requests started, in flight, upgraded.
#[derive(Default)]
pub(crate) struct Activity {
    in_flight: AtomicUsize,
    started: AtomicU64,
    /// Milliseconds since the connection's start when the last response ended.
    idle_since_ms: AtomicU64,
    upgraded: AtomicBool,
    epoch: std::sync::OnceLock<Instant>,
}

impl Activity {
    fn epoch(&self) -> Instant {
        *self.epoch.get_or_init(Instant::now)
    }

    /// A request head was read; the returned guard marks its end when dropped (keep it in the response body).
    pub(crate) fn begin(self: &Arc<Self>) -> RequestGuard {
        self.started.fetch_add(1, Ordering::Relaxed);
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        RequestGuard(self.clone())
    }

    /// The connection switched protocols: no deadlines from now on.
    pub(crate) fn upgraded(&self) {
        self.upgraded.store(true, Ordering::Relaxed);
    }
}

/// Marks the end of one request when dropped (when its response body is done or abandoned).
pub(crate) struct RequestGuard(Arc<Activity>);

impl Drop for RequestGuard {
    fn drop(&mut self) {
        let ms = self.0.epoch().elapsed().as_millis() as u64;
        self.0.idle_since_ms.store(ms, Ordering::Relaxed);
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// An IO stream with the deadlines described in the module docs.
pub(crate) struct Watched<S> {
    inner: S,
    act: Arc<Activity>,
    limits: ConnLimits,
    sleep: Pin<Box<Sleep>>,
    /// Bytes arrived while no request was in flight: (requests started at the time, when).
    partial: Option<(u64, Instant)>,
    h2: Option<bool>,
}

impl<S> Watched<S> {
    pub(crate) fn new(inner: S, act: Arc<Activity>, limits: ConnLimits) -> Watched<S> {
        let start = act.epoch();
        Watched {
            inner,
            act,
            limits,
            sleep: Box::pin(tokio::time::sleep_until(start + limits.header_read_timeout)),
            partial: None,
            h2: None,
        }
    }

    /// The deadline that applies now, if any.
    fn deadline(&self) -> Option<Instant> {
        if self.act.upgraded.load(Ordering::Relaxed) || self.act.in_flight.load(Ordering::Relaxed) > 0 {
            return None;
        }
        let started = self.act.started.load(Ordering::Relaxed);
        let epoch = self.act.epoch();
        if started == 0 {
            return Some(epoch + self.limits.header_read_timeout);
        }
        if let Some((at, since)) = self.partial
            && at == started
            && self.h2 != Some(true)
        {
            return Some(since + self.limits.header_read_timeout);
        }
        let idle = epoch + Duration::from_millis(self.act.idle_since_ms.load(Ordering::Relaxed));
        Some(idle + self.limits.idle_timeout)
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                let got = &buf.filled()[before..];
                if !got.is_empty() {
                    if this.h2.is_none() {
                        this.h2 = Some(got.starts_with(b"PRI * HTTP/2.0"));
                    }
                    let started = this.act.started.load(Ordering::Relaxed);
                    if this.act.in_flight.load(Ordering::Relaxed) == 0
                        && this.partial.is_none_or(|(at, _)| at != started)
                    {
                        this.partial = Some((started, Instant::now()));
                    }
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => {
                let Some(deadline) = this.deadline() else { return Poll::Pending };
                if this.sleep.deadline() != deadline {
                    this.sleep.as_mut().reset(deadline);
                }
                if this.sleep.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "closed: no complete request in time (header_read_timeout / idle_timeout)",
                    )));
                }
                Poll::Pending
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn limits() -> ConnLimits {
        ConnLimits {
            max_total: 3,
            max_per_client: 2,
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
        }
    }

    #[test]
    fn gate_caps_total_and_per_client() {
        let gate = Arc::new(ConnGate::default());
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let p1 = gate.admit(a, &limits()).unwrap();
        let _p2 = gate.admit(a, &limits()).unwrap();
        assert!(gate.admit(a, &limits()).is_none(), "per client");
        let _p3 = gate.admit(b, &limits()).unwrap();
        assert!(gate.admit(b, &limits()).is_none(), "total");
        drop(p1);
        assert_eq!(gate.open(), 2);
        assert!(gate.admit(b, &limits()).is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn half_a_request_is_cut_but_a_request_in_flight_is_not() {
        // before the first request: header_read_timeout from the start, whatever trickles in
        let (client, server) = tokio::io::duplex(1024);
        let act = Arc::new(Activity::default());
        let mut w = Watched::new(server, act.clone(), limits());
        let mut client = client;
        client.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
        let mut buf = [0u8; 64];
        assert!(w.read(&mut buf).await.unwrap() > 0);
        let t0 = Instant::now();
        let e = w.read(&mut buf).await.unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::TimedOut);
        assert!(t0.elapsed() >= Duration::from_secs(9) && t0.elapsed() <= Duration::from_secs(11));

        // a request in flight: no deadline; after it ends the idle timeout applies
        let (mut client, server) = tokio::io::duplex(1024);
        let act = Arc::new(Activity::default());
        let mut w = Watched::new(server, act.clone(), limits());
        client.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
        assert!(w.read(&mut buf).await.unwrap() > 0);
        let guard = act.begin();
        let r = tokio::time::timeout(Duration::from_secs(600), w.read(&mut buf)).await;
        assert!(r.is_err(), "no deadline while a request is in flight");
        drop(guard);
        let t0 = Instant::now();
        let e = w.read(&mut buf).await.unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::TimedOut);
        assert!(t0.elapsed() >= Duration::from_secs(59), "{:?}", t0.elapsed());

        // an upgraded connection has no deadline
        let (_client, server) = tokio::io::duplex(1024);
        let act = Arc::new(Activity::default());
        let mut w = Watched::new(server, act.clone(), limits());
        drop(act.begin());
        act.upgraded();
        let r = tokio::time::timeout(Duration::from_secs(600), w.read(&mut buf)).await;
        assert!(r.is_err());
    }
}
