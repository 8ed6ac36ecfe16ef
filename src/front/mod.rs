//! The HTTP(S) front door (IO shell), above the reverse proxy and the admin API: the accept loop on the HTTP and
//! HTTPS listeners (connection caps and timeouts: [`conn`]; TLS handshakes; ACME TLS-ALPN-01), a panic boundary
//! per request, and the dispatch of every request — [`crate::proxy::Proxy::dispatch`] answers ACME HTTP-01
//! challenges and proxied routes and admits what is left to the admin router ([`crate::http::router`]) through the
//! admin's front door. [`listeners`] owns the listener sockets: its applier reserves new addresses while a config
//! change is prepared, its tasks serve them.
//!
//! Invariant: the only module that imports both `proxy` and `http`; neither of them imports it.

pub(crate) mod conn;
pub(crate) mod listeners;

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use axum::body::Body;
use axum::http::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::net::ConnInfo;
use crate::proxy::{Dispatch, Proxy};

/// Everything the HTTP(S) listeners serve: ACME challenges, proxied routes, the admin router.
pub(crate) struct Front {
    pub admin: axum::Router,
    pub proxy: Arc<Proxy>,
    /// Open connections of every HTTP(S) listener (`server.max_connections`, `max_connections_per_client`).
    pub conns: Arc<conn::ConnGate>,
    /// Connection limits and timeouts in force (`server.*`), swapped by [`listeners::ListenerApplier`].
    pub limits: ArcSwap<conn::ConnLimits>,
}

impl Front {
    pub(crate) fn new(admin: axum::Router, proxy: Arc<Proxy>, cfg: &crate::config::Config) -> Front {
        Front {
            admin,
            proxy,
            conns: Arc::default(),
            limits: ArcSwap::from_pointee(conn::ConnLimits::from_config(&cfg.server)),
        }
    }

    pub(crate) async fn handle(&self, req: Request<hyper::body::Incoming>, conn: ConnInfo) -> Response<Body> {
        match self.proxy.dispatch(req, conn).await {
            Dispatch::Done(resp) => resp,
            Dispatch::Admin(req) => {
                tower::ServiceExt::oneshot(self.admin.clone(), req).await.unwrap_or_else(|e| match e {})
            }
        }
    }
}

/// Serve `front` (ACME challenges, proxied routes, the admin router) on `listener` until `stop` fires, then let
/// open connections finish for up to `drain`.
pub(crate) async fn serve(
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    front: Arc<Front>,
    stop: CancellationToken,
    drain: Duration,
) {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    loop {
        let (stream, peer) = tokio::select! {
            _ = stop.cancelled() => break,
            r = listener.accept() => match r {
                Ok(v) => v,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let limits = **front.limits.load();
        let Some(permit) = front.conns.admit(crate::net::canonical(peer.ip()), &limits) else {
            // over server.max_connections or max_connections_per_client: closed at once
            metrics::counter!("hearth_http_connections_refused_total").increment(1);
            tracing::debug!(peer = %peer, "connection refused: too many open connections");
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let local = stream.local_addr().unwrap_or(peer);
        let info = ConnInfo { peer, local, tls: tls.is_some() };
        let act = Arc::new(conn::Activity::default());
        let front = front.clone();
        let svc_act = act.clone();
        let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
            let front = front.clone();
            let act = svc_act.clone();
            let guard = act.begin();
            async move {
                let resp = guarded(front.handle(req, info)).await;
                if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
                    act.upgraded();
                    return Ok::<_, std::convert::Infallible>(resp);
                }
                // the request counts as in flight until its response body is done
                Ok(resp.map(|b| {
                    Body::new(http_body_util::BodyExt::map_frame(b, move |f| {
                        let _ = &guard;
                        f
                    }))
                }))
            }
        });
        let builder = builder.clone();
        match &tls {
            None => {
                let io = TokioIo::new(conn::Watched::new(stream, act, limits));
                let conn = builder.serve_connection_with_upgrades(io, svc).into_owned();
                let watched = graceful.watch(conn);
                tokio::spawn(async move {
                    let _permit = permit;
                    let _ = watched.await;
                });
            }
            Some(acceptor) => {
                let acceptor = acceptor.clone();
                let watcher = graceful.watcher();
                tokio::spawn(async move {
                    let _permit = permit;
                    let handshake = limits.header_read_timeout.min(Duration::from_secs(10));
                    let stream = match tokio::time::timeout(handshake, acceptor.accept(stream)).await {
                        Ok(Ok(s)) => s,
                        Ok(Err(e)) => {
                            return tracing::debug!(peer = %peer, error = %e, "TLS handshake failed");
                        }
                        Err(_) => return tracing::debug!(peer = %peer, "TLS handshake timed out"),
                    };
                    // a TLS-ALPN-01 validation ends with the handshake
                    if stream.get_ref().1.alpn_protocol() == Some(crate::tls::ACME_TLS_ALPN) {
                        return tracing::info!(peer = %peer, "answered an ACME TLS-ALPN-01 challenge");
                    }
                    let io = TokioIo::new(conn::Watched::new(stream, act, limits));
                    let conn = builder.serve_connection_with_upgrades(io, svc).into_owned();
                    let _ = watcher.watch(conn).await;
                });
            }
        }
    }
    drop(listener);
    if tokio::time::timeout(drain, graceful.shutdown()).await.is_err() {
        tracing::warn!("open connections did not finish in time");
    }
}

/// Run one request's handling; a panic in it becomes a 500 for that request alone (the process and every other
/// connection go on; `panic = "unwind"` in the release profile).
async fn guarded(fut: impl std::future::Future<Output = Response<Body>>) -> Response<Body> {
    use futures_util::FutureExt;
    match std::panic::AssertUnwindSafe(fut).catch_unwind().await {
        Ok(r) => r,
        Err(p) => {
            let what = p
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| p.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            let id = uuid::Uuid::new_v4().to_string();
            metrics::counter!("hearth_panics_total", "where" => "request").increment(1);
            tracing::error!(panic = %what, error_id = %id, "a request handler panicked");
            let mut r = Response::new(Body::from(format!("500 Internal Server Error (error id {id})\n")));
            *r.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
            r
        }
    }
}

#[cfg(test)]
mod tests {
    /// Item 15: a panic while handling one request is that request's 500 with an error id; the caller (the
    /// connection, the process) goes on.
    #[tokio::test]
    async fn a_panicking_handler_is_one_500() {
        use axum::body::Body;
        use axum::http::StatusCode;
        use axum::response::Response;
        let boom = async {
            if std::hint::black_box(true) {
                panic!("a bug in a handler");
            }
            Response::new(Body::empty())
        };
        let r = super::guarded(boom).await;
        assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let body = axum::body::to_bytes(r.into_body(), 1024).await.unwrap();
        assert!(String::from_utf8_lossy(&body).contains("error id"), "{body:?}");
        let ok = super::guarded(async { Response::new(Body::from("fine")) }).await;
        assert_eq!(ok.status(), StatusCode::OK);
    }
}
