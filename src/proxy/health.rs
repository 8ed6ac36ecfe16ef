//! Active health checks (IO shell): every route with a `health_path` has its backends probed every
//! `health_interval`; the expected status is `health_status` (0: any 2xx or 3xx). Results go to the route's pool,
//! which stops sending requests to failing backends and takes them back when they pass again.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, header};
use tokio_util::sync::CancellationToken;

use super::pool::UpstreamAddr;
use super::send::{HttpsClient, error_chain};
use super::{Proxy, Route};

/// One GET of `path` on a backend: (status, milliseconds) or why it failed.
pub(crate) async fn probe(
    client: &HttpsClient,
    addr: &UpstreamAddr,
    path: &str,
    timeout: Duration,
) -> Result<(u16, f64), String> {
    let uri = format!("{}://{}{}{}", addr.scheme, addr.authority, addr.base_path, path);
    let req = Request::get(uri)
        .header(header::USER_AGENT, concat!("hearth-health-check/", env!("CARGO_PKG_VERSION")))
        .body(Body::empty())
        .map_err(|e| e.to_string())?;
    let started = Instant::now();
    match tokio::time::timeout(timeout, client.request(req)).await {
        Ok(Ok(resp)) => Ok((resp.status().as_u16(), started.elapsed().as_secs_f64() * 1000.0)),
        Ok(Err(e)) => Err(error_chain(&e)),
        Err(_) => Err(format!("no answer within {}s", timeout.as_secs_f64())),
    }
}

fn expected(route: &Route, status: u16) -> bool {
    match route.cfg.health_status {
        0 => (200..400).contains(&status),
        want => status == want,
    }
}

async fn check_route(route: Arc<Route>) {
    let path = route.cfg.health_path.clone();
    let timeout = route.cfg.health_interval.as_std().min(route.cfg.timeout.as_std()).max(Duration::from_secs(1));
    for i in 0..route.pool.upstreams.len() {
        let addr = route.pool.upstreams[i].addr.clone();
        let (ok, detail) = match probe(&route.clients[i], &addr, &path, timeout).await {
            Ok((status, ms)) if expected(&route, status) => (true, format!("{status} in {ms:.1} ms")),
            Ok((status, _)) => (false, format!("unexpected status {status}")),
            Err(e) => (false, e),
        };
        metrics::gauge!("hearth_proxy_upstream_healthy", "route" => route.name.clone(), "upstream" => addr.to_string())
            .set(if ok { 1.0 } else { 0.0 });
        if route.pool.checked(i, ok, detail.clone()) {
            if ok {
                tracing::info!(route = %route.name, upstream = %addr, detail, "backend is healthy again");
            } else {
                tracing::warn!(route = %route.name, upstream = %addr, detail, "backend failed its health check");
            }
        }
    }
}

/// The `proxy` task: health checks, and the route count in the subsystem's status (kept current across changes).
pub(crate) async fn task(ctx: crate::supervisor::TaskCtx, proxy: Arc<Proxy>) -> anyhow::Result<()> {
    let status = |n: usize| format!("{n} route(s); health checks running");
    let mut shown = proxy.table.load().routes.len();
    ctx.ready(status(shown));
    let checks = tokio::spawn(run(proxy.clone(), ctx.shutdown.clone()));
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = ctx.shutdown.cancelled() => break,
            _ = tick.tick() => {}
        }
        let n = proxy.table.load().routes.len();
        if n != shown {
            shown = n;
            ctx.ready(status(n));
        }
    }
    let _ = checks.await;
    Ok(())
}

/// Runs until `stop`: probes each route when its interval has passed.
pub(crate) async fn run(proxy: Arc<Proxy>, stop: CancellationToken) {
    let mut last: std::collections::HashMap<usize, Instant> = Default::default();
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let table = proxy.table.load_full();
        let now = Instant::now();
        // keyed by the route's address: a reloaded route is a new route and is checked at once
        last.retain(|k, _| table.routes.iter().any(|r| Arc::as_ptr(r) as usize == *k));
        for route in &table.routes {
            if route.cfg.health_path.is_empty() {
                continue;
            }
            let key = Arc::as_ptr(route) as usize;
            if last.get(&key).is_some_and(|t| now.duration_since(*t) < route.cfg.health_interval.as_std()) {
                continue;
            }
            last.insert(key, now);
            tokio::spawn(check_route(route.clone()));
        }
        for route in &table.routes {
            for u in &route.pool.upstreams {
                metrics::gauge!("hearth_proxy_upstream_active_requests", "route" => route.name.clone(), "upstream" => u.addr.to_string())
                    .set(u.active.load(std::sync::atomic::Ordering::Relaxed) as f64);
            }
        }
    }
}
