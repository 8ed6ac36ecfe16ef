//! The alerts routes: rules with their state and active alerts, history, silences, channels and "send test".
//! Reading takes an admin session or a `metrics` token; changes take an admin session (or an `admin` token).

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::auth::{AdminAuth, MetricsAuth};
use super::error::{ApiError, ApiJson, ErrorBody};
use super::{AlertsApi, AppState};
use crate::alerts::state::{Active, Matcher, Phase, Silence};
use crate::alerts::{AlertsError, ChannelStatus, HistoryEntry};
use crate::util::Locked;

pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(alerts_overview))
        .routes(routes!(alerts_history))
        .routes(routes!(create_silence))
        .routes(routes!(expire_silence))
        .routes(routes!(test_channel))
}

impl From<AlertsError> for ApiError {
    fn from(e: AlertsError) -> Self {
        match e {
            AlertsError::Invalid(m) => ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_input", m),
            AlertsError::NoChannel(_) | AlertsError::NoSilence(_) => {
                ApiError::new(StatusCode::NOT_FOUND, "not_found", e.to_string())
            }
            AlertsError::Delivery(m) => ApiError::new(StatusCode::BAD_GATEWAY, "delivery_failed", m),
            other => ApiError::internal(other.to_string()),
        }
    }
}

#[derive(Serialize, ToSchema)]
struct RuleView {
    name: String,
    expr: String,
    /// `promql` (over the metrics) or `logql` (a metric query over the logs)
    language: crate::config::QueryLanguage,
    /// seconds
    for_seconds: u64,
    severity: String,
    summary: String,
    /// one of hearth's built-in rules
    builtin: bool,
    /// `inactive`, `pending` or `firing`
    state: String,
    /// why the last evaluation failed, if it did
    error: Option<String>,
    alerts: Vec<Active>,
}

#[derive(Serialize, ToSchema)]
struct ChannelView {
    name: String,
    /// the scheme only (`ntfy`, `https`, …): the rest may hold a token
    kind: String,
    send_resolved: bool,
    min_severity: String,
    status: ChannelStatus,
    /// notices waiting for this channel (retrying)
    queued: i64,
}

#[derive(Serialize, ToSchema)]
struct AlertsOverview {
    enabled: bool,
    rules: Vec<RuleView>,
    silences: Vec<Silence>,
    channels: Vec<ChannelView>,
}

/// Rules with their state and alerts, active silences, channels with their last delivery.
#[utoipa::path(get, path = "/api/v1/alerts", tag = "alerts",
    responses((status = 200, description = "rules, silences, channels", body = AlertsOverview),
              (status = 401, description = "not signed in", body = ErrorBody),
              (status = 403, description = "`insufficient_scope`: the token lacks `metrics`", body = ErrorBody)),
    security(("session" = []), ("token" = ["metrics"])))]
async fn alerts_overview(_a: MetricsAuth, State(s): State<AlertsApi>) -> Result<Json<AlertsOverview>, ApiError> {
    let now = crate::util::unix_now_ms();
    let compiled = s.compiled.locked().clone();
    let active = s.alerts.active();
    let errors = s.alerts.rule_errors.locked().clone();
    let rules = compiled
        .rules
        .iter()
        .map(|(r, builtin)| {
            let alerts: Vec<Active> = active.iter().filter(|a| a.rule == r.name).cloned().collect();
            let state = if alerts.iter().any(|a| a.phase == Phase::Firing) {
                "firing"
            } else if alerts.is_empty() {
                "inactive"
            } else {
                "pending"
            };
            RuleView {
                name: r.name.clone(),
                expr: r.expr.clone(),
                language: r.language,
                for_seconds: r.for_.as_std().as_secs(),
                severity: r.severity.clone(),
                summary: r.summary.clone(),
                builtin: *builtin,
                state: state.into(),
                error: errors.get(&r.name).cloned(),
                alerts,
            }
        })
        .collect();
    let queued = s.alerts.pending_notices().await?;
    let status = s.alerts.channels.locked().clone();
    let channels = compiled
        .channels
        .iter()
        .map(|(c, _)| ChannelView {
            name: c.name.clone(),
            kind: c.url.split_once("://").map(|x| x.0.to_string()).unwrap_or_default(),
            send_resolved: c.send_resolved,
            min_severity: c.min_severity.clone(),
            status: status.get(&c.name).cloned().unwrap_or_default(),
            queued: queued.get(&c.name).copied().unwrap_or(0),
        })
        .collect();
    Ok(Json(AlertsOverview { enabled: compiled.cfg.enabled, rules, silences: s.alerts.silences(now).await?, channels }))
}

#[derive(Deserialize, utoipa::IntoParams)]
struct HistoryParams {
    /// at most this many entries, newest first (default 200, at most 1000)
    limit: Option<usize>,
}

/// Alerts that fired and resolved, newest first (30 days kept).
#[utoipa::path(get, path = "/api/v1/alerts/history", tag = "alerts", params(HistoryParams),
    responses((status = 200, description = "history", body = Vec<HistoryEntry>),
              (status = 401, description = "not signed in", body = ErrorBody),
              (status = 403, description = "`insufficient_scope`", body = ErrorBody)),
    security(("session" = []), ("token" = ["metrics"])))]
async fn alerts_history(
    _a: MetricsAuth,
    State(s): State<AlertsApi>,
    Query(p): Query<HistoryParams>,
) -> Result<Json<Vec<HistoryEntry>>, ApiError> {
    Ok(Json(s.alerts.history(p.limit.unwrap_or(200).clamp(1, 1000)).await?))
}

#[derive(Deserialize, ToSchema)]
struct NewSilence {
    /// every matcher must match an alert's labels (e.g. `alertname`, `mountpoint`)
    matchers: Vec<Matcher>,
    /// how long the silence lasts, in minutes (1 minute to 1 year)
    minutes: u64,
    #[serde(default)]
    comment: String,
}

/// Silence the alerts whose labels match, for a while: they are still tracked and shown, nobody is notified.
#[utoipa::path(post, path = "/api/v1/alerts/silences", tag = "alerts", request_body = NewSilence,
    responses((status = 201, description = "created", body = Silence),
              (status = 422, description = "`invalid_input`: no matcher, a bad regex, or a duration out of range", body = ErrorBody),
              (status = 401, description = "not signed in", body = ErrorBody),
              (status = 403, description = "`insufficient_scope`", body = ErrorBody)),
    security(("session" = []), ("token" = ["admin"])))]
async fn create_silence(
    a: AdminAuth,
    State(s): State<AlertsApi>,
    ApiJson(n): ApiJson<NewSilence>,
) -> Result<(StatusCode, Json<Silence>), ApiError> {
    if !(1..=525_600).contains(&n.minutes) {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_input",
            "minutes must be between 1 and 525600",
        ));
    }
    let now = crate::util::unix_now_ms();
    let sil = Silence {
        id: 0,
        matchers: n.matchers,
        until_ms: now + n.minutes as i64 * 60_000,
        comment: n.comment.chars().take(500).collect(),
        created_by: a.principal,
        created_ms: now,
    };
    Ok((StatusCode::CREATED, Json(s.alerts.add_silence(sil).await?)))
}

/// End a silence now.
#[utoipa::path(delete, path = "/api/v1/alerts/silences/{id}", tag = "alerts",
    params(("id" = i64, Path, description = "the silence's id")),
    responses((status = 204, description = "ended"),
              (status = 404, description = "`not_found`: no active silence with that id", body = ErrorBody),
              (status = 401, description = "not signed in", body = ErrorBody),
              (status = 403, description = "`insufficient_scope`", body = ErrorBody)),
    security(("session" = []), ("token" = ["admin"])))]
async fn expire_silence(
    _a: AdminAuth,
    State(s): State<AlertsApi>,
    Path(id): Path<i64>,
) -> Result<StatusCode, ApiError> {
    s.alerts.expire_silence(id, crate::util::unix_now_ms()).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Serialize, ToSchema)]
struct Delivered {
    delivered: bool,
}

/// Send a test notice to a channel now (not through the outbox): 200 when the channel accepted it, 502 with its
/// answer or the connection error when not.
#[utoipa::path(post, path = "/api/v1/alerts/channels/{name}/test", tag = "alerts",
    params(("name" = String, Path, description = "the channel's name")),
    responses((status = 200, description = "delivered", body = Delivered),
              (status = 404, description = "`not_found`: no channel with that name", body = ErrorBody),
              (status = 502, description = "`delivery_failed`: what the channel answered", body = ErrorBody),
              (status = 401, description = "not signed in", body = ErrorBody),
              (status = 403, description = "`insufficient_scope`", body = ErrorBody)),
    security(("session" = []), ("token" = ["admin"])))]
async fn test_channel(
    _a: AdminAuth,
    State(s): State<AlertsApi>,
    Path(name): Path<String>,
) -> Result<Json<Delivered>, ApiError> {
    let compiled = s.compiled.locked().clone();
    crate::alerts::task::send_test(&s.alerts, &compiled, &name).await?;
    Ok(Json(Delivered { delivered: true }))
}
