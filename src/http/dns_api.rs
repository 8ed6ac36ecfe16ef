//! DNS routes of the admin API: the query log (filtered pages and a live tail), stats, cache flush.

use std::convert::Infallible;

use axum::Json;
use axum::extract::{Query, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::auth::AdminAuth;
use super::error::{ApiError, ErrorBody};
use crate::dns::querylog::{Entry, Filter, Stats};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(querylog))
        .routes(routes!(querylog_stream))
        .routes(routes!(stats))
        .routes(routes!(flush_cache))
}

/// The query log, newest first, filtered; page backwards with `before`.
#[utoipa::path(get, path = "/api/v1/dns/querylog", tag = "dns", params(Filter),
    security(("session" = []), ("token" = [])),
    responses((status = 200, body = [Entry]), (status = 401, body = ErrorBody)))]
async fn querylog(
    _auth: AdminAuth,
    State(s): State<AppState>,
    Query(f): Query<Filter>,
) -> Result<Json<Vec<Entry>>, ApiError> {
    Ok(Json(s.querylog.query(f).await.map_err(ApiError::internal)?))
}

/// Live tail of the query log (Server-Sent Events, one `query` event per entry as it is written).
#[utoipa::path(get, path = "/api/v1/dns/querylog/stream", tag = "dns",
    security(("session" = []), ("token" = [])),
    responses((status = 200, description = "text/event-stream of Entry objects"), (status = 401, body = ErrorBody)))]
async fn querylog_stream(
    _auth: AdminAuth,
    State(s): State<AppState>,
) -> Sse<impl futures_util::Stream<Item = Result<Event, Infallible>>> {
    let rx = s.querylog.subscribe();
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        loop {
            match rx.recv().await {
                Ok(e) => {
                    let ev = Event::default().event("query").json_data(&e).unwrap_or_default();
                    return Some((Ok(ev), rx));
                }
                // a slow reader skips what it missed rather than holding the writer back
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
            }
        }
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}

#[derive(Deserialize, IntoParams)]
struct StatsParams {
    /// The window, in hours (default 24, at most 720).
    hours: Option<i64>,
}

/// Totals, percentage blocked, top domains, top blocked, top clients and an hourly series.
#[utoipa::path(get, path = "/api/v1/dns/stats", tag = "dns", params(StatsParams),
    security(("session" = []), ("token" = [])),
    responses((status = 200, body = Stats), (status = 401, body = ErrorBody)))]
async fn stats(
    _auth: AdminAuth,
    State(s): State<AppState>,
    Query(p): Query<StatsParams>,
) -> Result<Json<Stats>, ApiError> {
    let hours = p.hours.unwrap_or(24).clamp(1, 720);
    Ok(Json(s.querylog.stats(hours).await.map_err(ApiError::internal)?))
}

#[derive(Serialize, ToSchema)]
struct Flushed {
    /// How many answers were dropped from the cache.
    flushed: usize,
}

/// Empty the DNS answer cache.
#[utoipa::path(post, path = "/api/v1/dns/cache/flush", tag = "dns",
    security(("session" = []), ("token" = [])),
    responses((status = 200, body = Flushed), (status = 401, body = ErrorBody)))]
async fn flush_cache(auth: AdminAuth, State(s): State<AppState>) -> Json<Flushed> {
    let flushed = {
        let mut cache = s.dns.cache.lock().unwrap_or_else(|p| p.into_inner());
        let n = cache.len();
        cache.clear();
        n
    };
    tracing::info!(by = %auth.principal, flushed, "DNS cache flushed");
    Json(Flushed { flushed })
}
