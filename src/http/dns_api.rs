//! DNS routes of the admin API: the query log (filtered pages and a live tail), stats, cache flush.

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
        .routes(routes!(add_rule))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct RuleRequest {
    /// The name to allow or block (with its subdomains).
    domain: String,
    /// "allow" or "block".
    action: crate::dns::blocklist::ListKind,
}

/// The hearth-managed list for one-click rules of this kind: its name and file.
fn managed_list(
    data_dir: &std::path::Path,
    kind: crate::dns::blocklist::ListKind,
) -> (&'static str, std::path::PathBuf) {
    use crate::dns::blocklist::ListKind;
    match kind {
        ListKind::Allow => ("my allowlist", data_dir.join("rules/allow.txt")),
        ListKind::Block => ("my blocklist", data_dir.join("rules/block.txt")),
    }
}

/// Allow or block a name with one click (from a query log row): the rule goes into hearth's own list of that kind
/// (created in the data dir and added to `dns.lists` the first time), and the lists are recompiled at once.
#[utoipa::path(post, path = "/api/v1/dns/rules", tag = "dns", request_body = RuleRequest,
    security(("session" = []), ("token" = [])),
    responses((status = 200, body = [ListView]), (status = 401, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn add_rule(
    auth: AdminAuth,
    State(s): State<DnsApi>,
    super::error::ApiJson(req): super::error::ApiJson<RuleRequest>,
) -> Result<Json<Vec<ListView>>, ApiError> {
    let domain = crate::dns::blocklist::normalize_domain(req.domain.trim()).ok_or_else(|| {
        ApiError::new(axum::http::StatusCode::UNPROCESSABLE_ENTITY, "invalid_input", "not a valid domain name")
    })?;
    let cfg = s.config.current();
    let (name, file) = managed_list(&cfg.data_dir(), req.action);
    // 1. the rule, appended once
    let rule = format!("||{domain}^");
    let (f, r) = (file.clone(), rule.clone());
    tokio::task::spawn_blocking(move || -> std::io::Result<()> {
        use std::io::Write;
        if let Some(dir) = f.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let existing = std::fs::read_to_string(&f).unwrap_or_default();
        if !existing.lines().any(|l| l.trim() == r) {
            let mut out = std::fs::OpenOptions::new().create(true).append(true).open(&f)?;
            if existing.is_empty() {
                writeln!(out, "# Rules added from the hearth UI")?;
            }
            writeln!(out, "{r}")?;
        }
        Ok(())
    })
    .await
    .map_err(ApiError::internal)?
    .map_err(ApiError::internal)?;
    // 2. the list itself, registered through the config transaction the first time (that recompiles too)
    let source = file.display().to_string();
    let registered = cfg.dns.lists.iter().find(|l| l.name == name);
    match registered {
        Some(l) if l.source == source && l.enabled => {
            let (dns, c, dir) = (s.dns.clone(), cfg.dns.clone(), cfg.data_dir().join("lists"));
            tokio::task::spawn_blocking(move || dns.reload_lists(&c, &dir)).await.map_err(ApiError::internal)?;
        }
        _ => {
            let generation = s.dns.list_generation();
            // registered inside the config transaction: a concurrent change of dns.lists is kept, not overwritten
            let list = crate::config::DnsList {
                name: name.to_string(),
                kind: req.action,
                source,
                enabled: true,
                update: crate::config::Duration::from_secs(86_400),
            };
            s.config
                .edit(move |cfg| {
                    cfg.dns.lists.retain(|l| l.name != list.name);
                    cfg.dns.lists.push(list);
                    Ok(())
                })
                .await?;
            // the DNS task recompiles on the change; wait (briefly) for that compilation, not an earlier one
            for _ in 0..100 {
                if s.dns.list_generation() > generation {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
        }
    }
    tracing::info!(by = %auth.principal, rule = %rule, list = name, "rule added");
    Ok(Json(list_views(&s)))
}

#[derive(Serialize, ToSchema)]
struct ListView {
    name: String,
    kind: crate::dns::blocklist::ListKind,
    source: String,
    enabled: bool,
    /// Rules, comments and invalid lines counted at the last compilation.
    #[schema(value_type = Object)]
    counts: Option<crate::dns::blocklist::ListStats>,
    /// Why the list is not in use, if it is not.
    error: Option<String>,
    /// For URL lists: the last download.
    download: Option<crate::dns::lists::DownloadStatus>,
}

fn list_views(s: &DnsApi) -> Vec<ListView> {
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
