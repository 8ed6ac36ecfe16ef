//! DNS transports (IO shell): UDP, TCP and DNS-over-TLS listeners that move bytes to [`Dns::handle`] and back. No DNS
//! logic here. (DNS over HTTPS is a route of the HTTP server: `http::doh`.)

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};
use tokio_util::sync::CancellationToken;

use super::{Dns, Step, Transport};

/// Answer UDP queries on `sock` until `stop` fires. Local answers (blocked, cached, refused, over the in-flight
/// bound) are sent from the loop itself; queries that go upstream get their own task, so a slow upstream never
/// holds up the rest. Such a task exists only with a place in flight (`dns.max_inflight`, taken in
/// [`Dns::answer_local`]), so a flood of cache misses cannot grow tasks and sockets without bound.
pub(crate) async fn serve_udp(sock: UdpSocket, dns: Arc<Dns>, stop: CancellationToken) {
    let sock = Arc::new(sock);
    let mut buf = vec![0u8; 4096];
    loop {
        let (n, peer) = tokio::select! {
            _ = stop.cancelled() => return,
            r = sock.recv_from(&mut buf) => match r {
                Ok(v) => v,
                Err(e) => {
                    // ICMP errors from earlier sends surface here on Linux; keep serving
                    tracing::debug!(error = %e, "udp recv failed");
                    continue;
                }
            },
        };
        match dns.answer_local(&buf[..n], peer.ip(), Transport::Udp) {
            // blocked and cached answers go out from this loop: no task, no copy of the query
            Step::Done(Some(answer)) => {
                let _ = sock.send_to(&answer, peer).await;
            }
            Step::Done(None) => {}
            Step::Forward(pending) => {
                let (sock, dns) = (sock.clone(), dns.clone());
                tokio::spawn(async move {
                    if let Some(answer) = dns.forward(pending).await {
                        let _ = sock.send_to(&answer, peer).await;
                    }
                });
            }
        }
    }
}

/// Answer TCP connections (length-prefixed messages, several per connection, 10 s idle timeout); with an acceptor,
/// DNS over TLS (RFC 7858) on the same framing.
pub(crate) async fn serve_tcp(
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    dns: Arc<Dns>,
    stop: CancellationToken,
) {
    loop {
        let (stream, peer) = tokio::select! {
            _ = stop.cancelled() => return,
            r = listener.accept() => match r {
                Ok(v) => v,
                Err(e) => {
                    tracing::warn!(error = %e, "dns tcp accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let (dns, stop, tls) = (dns.clone(), stop.clone(), tls.clone());
        tokio::spawn(async move {
            let serve = async {
                match tls {
                    None => connection(stream, peer.ip(), dns, Transport::Tcp).await,
                    Some(acceptor) => {
                        match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(stream)).await {
                            Ok(Ok(s)) => connection(s, peer.ip(), dns, Transport::Tls).await,
                            Ok(Err(e)) => tracing::debug!(peer = %peer, error = %e, "DoT handshake failed"),
                            Err(_) => tracing::debug!(peer = %peer, "DoT handshake timed out"),
                        }
                    }
                }
            };
            tokio::select! {
                _ = stop.cancelled() => {}
                _ = serve => {}
            }
        });
    }
}

async fn connection<S: AsyncRead + AsyncWrite + Unpin>(
    mut s: S,
    client: std::net::IpAddr,
    dns: Arc<Dns>,
    t: Transport,
) {
    loop {
        let len = match tokio::time::timeout(Duration::from_secs(10), s.read_u16()).await {
            Ok(Ok(l)) => l as usize,
            _ => return,
        };
        let mut msg = vec![0u8; len];
        if tokio::time::timeout(Duration::from_secs(10), s.read_exact(&mut msg)).await.is_err() {
            return;
        }
        let Some(answer) = dns.handle(&msg, client, t).await else { return };
        let mut framed = (answer.len() as u16).to_be_bytes().to_vec();
        framed.extend_from_slice(&answer);
        if s.write_all(&framed).await.is_err() {
            return;
        }
    }
}
