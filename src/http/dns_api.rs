//! DNS routes of the admin API: the query log (filtered pages and a live tail), stats, cache flush, lists and
//! one-click rules, the block-list catalog, and the blocking pause.

use std::convert::Infallible;

use axum::Json;
use axum::extract::{Query, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::{AdminAuth, DnsReadAuth};
use super::error::{ApiError, ErrorBody};
use super::{AppState, DnsApi};
use crate::dns::querylog::{Entry, Filter, Stats};

pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(querylog))
        .routes(routes!(querylog_stream))
        .routes(routes!(stats))
        .routes(routes!(flush_cache))
        .routes(routes!(upstreams))
        .routes(routes!(lists))
        .routes(routes!(update_lists))
        .routes(routes!(catalog))
        .routes(routes!(add_from_catalog))
        .routes(routes!(blocking, pause_blocking))
}

#[derive(Serialize, ToSchema)]
struct CatalogEntry {
    #[serde(flatten)]
    list: crate::dns::catalog::CatalogList,
    /// Whether `dns.lists` has it already (by its id as the name, or by its source).
    added: bool,
}

fn in_config(cfg: &crate::config::Config, l: &crate::dns::catalog::CatalogList) -> bool {
    let source = crate::dns::catalog::source(l, &cfg.dns.catalog_mirror);
    cfg.dns.lists.iter().any(|c| c.name == l.id || c.source == l.url || c.source == source)
}

/// The block-list catalog: well-known lists to add with one click (the recommended one first).
#[utoipa::path(get, path = "/api/v1/dns/catalog", tag = "dns",
    security(("session" = []), ("token" = ["dns:read"])),
    responses((status = 200, body = [CatalogEntry]), (status = 401, body = ErrorBody)))]
async fn catalog(_auth: DnsReadAuth, State(s): State<DnsApi>) -> Json<Vec<CatalogEntry>> {
    let cfg = s.config.current();
    Json(crate::dns::catalog::CATALOG.iter().map(|l| CatalogEntry { list: *l, added: in_config(&cfg, l) }).collect())
}

/// Add a catalog list to `dns.lists` (named by its id; fetched from `dns.catalog_mirror` when that is set). It is
/// downloaded and compiled in the background: its state shows in `GET /api/v1/dns/lists`.
#[utoipa::path(post, path = "/api/v1/dns/catalog/{id}", tag = "dns", params(("id" = String, Path)),
    security(("session" = []), ("token" = [])),
    responses((status = 201, body = [ListView]), (status = 401, body = ErrorBody),
        (status = 404, description = "`not_found`: no catalog list has this id", body = ErrorBody),
        (status = 409, description = "`conflict`: the list is in dns.lists already", body = ErrorBody),
        (status = 412, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn add_from_catalog(
    auth: AdminAuth,
    State(s): State<DnsApi>,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> Result<(axum::http::StatusCode, Json<Vec<ListView>>), ApiError> {
    use axum::http::StatusCode;
    let Some(l) = crate::dns::catalog::find(&id) else {
        return Err(ApiError::new(StatusCode::NOT_FOUND, "not_found", format!("no catalog list is called {id:?}")));
    };
    let (added, _) = s
        .config
        .edit(move |cfg| {
            if in_config(cfg, l) {
                return Ok(false);
            }
            let source = crate::dns::catalog::source(l, &cfg.dns.catalog_mirror);
            cfg.dns.lists.push(crate::config::DnsList {
                name: l.id.to_string(),
                kind: crate::dns::blocklist::ListKind::Block,
                source,
                enabled: true,
                update: crate::config::Duration::from_secs(86_400),
            });
            Ok(true)
        })
        .await?;
    if !added {
        return Err(ApiError::new(StatusCode::CONFLICT, "conflict", format!("{} is in your lists already", l.name)));
    }
    tracing::info!(by = %auth.principal, list = l.id, "catalog list added");
    Ok((StatusCode::CREATED, Json(list_views(&s))))
}

#[derive(Serialize, ToSchema)]
struct BlockingState {
    /// False while blocking is paused.
    enabled: bool,
    /// The end of the pause (Unix seconds); null while blocking is on or when the pause lasts until resumed.
    paused_until: Option<i64>,
}

fn blocking_state(s: &DnsApi) -> BlockingState {
    let until = s.dns.blocking_paused_until();
    BlockingState {
        enabled: until.is_none(),
        paused_until: until.filter(|u| *u != crate::dns::blocking::UNTIL_RESUMED),
    }
}

/// Whether blocking is on, or paused and until when.
#[utoipa::path(get, path = "/api/v1/dns/blocking", tag = "dns",
    security(("session" = []), ("token" = ["dns:read"])),
    responses((status = 200, body = BlockingState), (status = 401, body = ErrorBody)))]
async fn blocking(_auth: DnsReadAuth, State(s): State<DnsApi>) -> Json<BlockingState> {
    Json(blocking_state(&s))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct BlockingChange {
    /// true: resume blocking; false: pause it.
    enabled: bool,
    /// With `enabled: false`: pause for this many minutes (1 to 1440); absent: until resumed.
    minutes: Option<u32>,
}

/// Pause blocking for some minutes or until resumed, or resume it. Local records, client rules and rate limits
/// still apply while paused; the pause outlives a restart.
#[utoipa::path(put, path = "/api/v1/dns/blocking", tag = "dns", request_body = BlockingChange,
    security(("session" = []), ("token" = [])),
    responses((status = 200, body = BlockingState), (status = 401, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn pause_blocking(
    auth: AdminAuth,
    State(s): State<DnsApi>,
    super::error::ApiJson(req): super::error::ApiJson<BlockingChange>,
) -> Result<Json<BlockingState>, ApiError> {
    let until = match (req.enabled, req.minutes) {
        (true, _) => 0,
        (false, None) => crate::dns::blocking::UNTIL_RESUMED,
        (false, Some(m @ 1..=1440)) => crate::util::unix_now() + 60 * i64::from(m),
        (false, Some(_)) => {
            return Err(ApiError::new(
                axum::http::StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_input",
                "minutes: from 1 to 1440 (or leave it out to pause until resumed)",
            )
            .with_key("minutes"));
        }
    };
    s.db.call(move |c| crate::dns::blocking::save(c, until)).await.map_err(ApiError::internal)?;
    s.dns.pause_blocking(until);
    tracing::info!(by = %auth.principal, until, "blocking {}", if until == 0 { "resumed" } else { "paused" });
    Ok(Json(blocking_state(&s)))
}

#[derive(Serialize, ToSchema)]
pub(super) struct ListView {
    name: String,
    kind: crate::dns::blocklist::ListKind,
    source: String,
    enabled: bool,
    /// Rules, comments and invalid lines counted at the last compilation.
    #[schema(value_type = Option<Object>)]
    counts: Option<crate::dns::blocklist::ListStats>,
    /// Why the list is not in use, if it is not.
    error: Option<String>,
    /// For URL lists: the last download.
    download: Option<crate::dns::lists::DownloadStatus>,
}

pub(super) fn list_views(s: &DnsApi) -> Vec<ListView> {
    let cfg = s.config.current();
    let report = s.dns.list_report();
    let downloads = s.lists.statuses();
    cfg.dns
        .lists
        .iter()
        .map(|l| {
            let compiled = report.iter().find(|(n, _)| n == &l.name).map(|(_, r)| r.clone());
            ListView {
                name: l.name.clone(),
                kind: l.kind,
                source: l.source.clone(),
                enabled: l.enabled,
                counts: compiled.clone().and_then(|r| r.ok()),
                error: compiled.and_then(|r| r.err()),
                download: downloads.iter().find(|d| d.name == l.name).cloned(),
            }
        })
        .collect()
}

/// The configured lists with their counts, errors and last download.
#[utoipa::path(get, path = "/api/v1/dns/lists", tag = "dns",
    security(("session" = []), ("token" = ["dns:read"])),
    responses((status = 200, body = [ListView]), (status = 401, body = ErrorBody)))]
async fn lists(_auth: DnsReadAuth, State(s): State<DnsApi>) -> Json<Vec<ListView>> {
    Json(list_views(&s))
}

/// Download every URL list now (conditional requests), recompile if anything changed, and report.
#[utoipa::path(post, path = "/api/v1/dns/lists/update", tag = "dns",
    security(("session" = []), ("token" = [])),
    responses((status = 200, body = [ListView]), (status = 401, body = ErrorBody)))]
async fn update_lists(auth: AdminAuth, State(s): State<DnsApi>) -> Result<Json<Vec<ListView>>, ApiError> {
    let cfg = s.config.current();
    let dir = cfg.data_dir().join("lists");
    let changed = s.lists.update(&cfg.dns.lists, &dir, true).await;
    if changed {
        let (dns, c) = (s.dns.clone(), cfg.dns.clone());
        tokio::task::spawn_blocking(move || dns.reload_lists(&c, &dir)).await.map_err(ApiError::internal)?;
    }
    tracing::info!(by = %auth.principal, changed, "lists updated on demand");
    Ok(Json(list_views(&s)))
}

/// The query log, newest first, filtered; page backwards with `before`.
#[utoipa::path(get, path = "/api/v1/dns/querylog", tag = "dns", params(Filter),
    security(("session" = []), ("token" = ["dns:read"])),
    responses((status = 200, body = [Entry]), (status = 401, body = ErrorBody)))]
async fn querylog(
    _auth: DnsReadAuth,
    State(s): State<DnsApi>,
    Query(f): Query<Filter>,
) -> Result<Json<Vec<Entry>>, ApiError> {
    Ok(Json(s.querylog.query(f).await.map_err(ApiError::internal)?))
}

/// Live tail of the query log (Server-Sent Events, one `query` event per entry as it is written).
#[utoipa::path(get, path = "/api/v1/dns/querylog/stream", tag = "dns",
    security(("session" = []), ("token" = ["dns:read"])),
    responses((status = 200, description = "`query` events, each an Entry as JSON", content_type = "text/event-stream"),
        (status = 401, body = ErrorBody)))]
async fn querylog_stream(
    _auth: DnsReadAuth,
    State(s): State<DnsApi>,
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
    security(("session" = []), ("token" = ["dns:read"])),
    responses((status = 200, body = Stats), (status = 401, body = ErrorBody)))]
async fn stats(
    _auth: DnsReadAuth,
    State(s): State<DnsApi>,
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
async fn flush_cache(auth: AdminAuth, State(s): State<DnsApi>) -> Json<Flushed> {
    let flushed = s.dns.flush_cache();
    tracing::info!(by = %auth.principal, flushed, "DNS cache flushed");
    Json(Flushed { flushed })
}

#[derive(Serialize, ToSchema)]
struct Resolution {
    /// "forward" or "recursive".
    mode: &'static str,
    /// How upstreams are ordered (forward mode).
    #[schema(value_type = String)]
    strategy: crate::dns::upstream::Strategy,
    /// Whether answers are DNSSEC-validated.
    dnssec: bool,
    /// False while the system clock reads earlier than the build date: signature times are then not checked.
    clock_plausible: bool,
    upstreams: Vec<crate::dns::upstream::UpstreamHealth>,
}

/// How names are resolved: mode, DNSSEC, and each upstream's health and latency.
#[utoipa::path(get, path = "/api/v1/dns/upstreams", tag = "dns",
    security(("session" = []), ("token" = ["dns:read"])),
    responses((status = 200, body = Resolution), (status = 401, body = ErrorBody)))]
async fn upstreams(_auth: DnsReadAuth, State(s): State<DnsApi>) -> Json<Resolution> {
    let settings = s.dns.settings();
    Json(Resolution {
        mode: if settings.recursor.is_some() { "recursive" } else { "forward" },
        strategy: settings.upstreams.strategy,
        dnssec: settings.dnssec.is_some(),
        clock_plausible: crate::dns::dnssec::Clock::system(crate::build_epoch()).check_times,
        upstreams: if settings.recursor.is_some() { vec![] } else { settings.upstreams.health() },
    })
}
