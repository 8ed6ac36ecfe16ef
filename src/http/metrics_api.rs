//! The metrics-history routes: Prometheus's HTTP query API under `/prometheus/api/v1/…` (same parameters, same
//! JSON, so Grafana's Prometheus data source and `promtool query` work against `https://hearth/prometheus`), and
//! `/api/v1/metrics/status` for the UI. Every route takes an admin session or a token with the `metrics` scope.

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{Value as Json, json};
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::auth::MetricsAuth;
use super::error::ErrorBody;
use super::form::{form, get};
use super::{AppState, MetricsApi};
use crate::metrics::model::Labels;
use crate::metrics::promql::{QueryError, Value};
use crate::metrics::{MetricsError, TargetStatus};

pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(query_get, query_post))
        .routes(routes!(query_range_get, query_range_post))
        .routes(routes!(series_get, series_post))
        .routes(routes!(labels_get, labels_post))
        .routes(routes!(label_values))
        .routes(routes!(buildinfo))
        .routes(routes!(metrics_status))
}

/// Prometheus's answer envelope: `{"status": "success", "data": …}` or
/// `{"status": "error", "errorType": "bad_data", "error": "…"}`.
#[derive(Serialize, ToSchema)]
struct PromEnvelope {
    /// `success` or `error`
    status: String,
    /// the result (`resultType` and `result`), a list of series, or a list of names; absent on errors
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<serde_json::Value>)]
    data: Option<Json>,
    #[serde(rename = "errorType", skip_serializing_if = "Option::is_none")]
    error_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// The form bodies of the POST variants (documentation: the handlers read the raw form, as Prometheus does).
#[derive(serde::Deserialize, ToSchema)]
#[allow(dead_code)]
struct QueryForm {
    query: String,
    time: Option<String>,
}

#[derive(serde::Deserialize, ToSchema)]
#[allow(dead_code)]
struct RangeForm {
    query: String,
    start: String,
    end: String,
    step: String,
}

#[derive(serde::Deserialize, ToSchema)]
#[allow(dead_code)]
struct MatchForm {
    #[serde(rename = "match[]")]
    matches: Option<Vec<String>>,
    start: Option<String>,
}

fn prom_error(status: StatusCode, kind: &str, msg: impl Into<String>) -> Response {
    (status, axum::Json(json!({"status": "error", "errorType": kind, "error": msg.into()}))).into_response()
}

fn bad(msg: impl Into<String>) -> Response {
    prom_error(StatusCode::BAD_REQUEST, "bad_data", msg)
}

fn from_error(e: MetricsError) -> Response {
    match e {
        MetricsError::Query(QueryError::Execution(m)) => prom_error(StatusCode::UNPROCESSABLE_ENTITY, "execution", m),
        MetricsError::Query(q) => bad(q.to_string()),
        MetricsError::BadRequest(m) => bad(m),
        MetricsError::Store(m) => prom_error(StatusCode::SERVICE_UNAVAILABLE, "unavailable", m),
    }
}

fn success(data: Json) -> Response {
    axum::Json(json!({"status": "success", "data": data})).into_response()
}

/// Times bounded well inside what milliseconds in an i64 can hold (Prometheus's own limits are wider, but no
/// sample of a homelab is from before 1970 or after 2262).
const MAX_TIME_S: f64 = 9.2e9;

/// A time: Unix seconds (with a fraction) or RFC 3339.
fn parse_time(s: &str) -> Result<i64, String> {
    if let Ok(x) = s.parse::<f64>() {
        if x.is_finite() && x.abs() <= MAX_TIME_S {
            return Ok((x * 1000.0).round() as i64);
        }
        return Err(format!("cannot parse {s:?} to a valid timestamp"));
    }
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .map(|t| (t.unix_timestamp_nanos() / 1_000_000) as i64)
        .map_err(|_| format!("cannot parse {s:?} to a valid timestamp"))
}

/// A duration: seconds (with a fraction) or a Prometheus duration (`15s`, `1m`, `1h30m`).
fn parse_step(s: &str) -> Result<i64, String> {
    if let Ok(x) = s.parse::<f64>() {
        if x.is_finite() && x.abs() <= MAX_TIME_S {
            return Ok((x * 1000.0).round() as i64);
        }
        return Err(format!("cannot parse {s:?} to a valid duration"));
    }
    promql_parser::util::parse_duration(s)
        .ok()
        .and_then(|d| i64::try_from(d.as_millis()).ok())
        .filter(|&ms| ms as f64 <= MAX_TIME_S * 1000.0)
        .ok_or_else(|| format!("cannot parse {s:?} to a valid duration"))
}

fn fmt_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf".into() } else { "-Inf".into() }
    } else {
        format!("{v}")
    }
}

/// A timestamp as Prometheus writes it: whole seconds without a fraction, else seconds with milliseconds.
fn ts(ms: i64) -> Json {
    if ms % 1000 == 0 { json!(ms / 1000) } else { json!(ms as f64 / 1000.0) }
}

fn metric(l: &Labels) -> Json {
    Json::Object(l.to_map())
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, Response> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|_| prom_error(StatusCode::INTERNAL_SERVER_ERROR, "internal", "the query failed"))
}

async fn do_query(m: MetricsApi, f: Vec<(String, String)>) -> Response {
    let Some(q) = get(&f, "query").map(str::to_string) else { return bad("query parameter is required") };
    let now = crate::util::unix_now_ms();
    let t = match get(&f, "time").map(parse_time).transpose() {
        Ok(t) => t.unwrap_or(now),
        Err(e) => return bad(format!("invalid parameter \"time\": {e}")),
    };
    let r = match blocking(move || m.metrics.query_instant(&q, t, now)).await {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    match r {
        Ok(Value::Scalar(v)) => success(json!({"resultType": "scalar", "result": [ts(t), fmt_value(v)]})),
        Ok(Value::String(s)) => success(json!({"resultType": "string", "result": [ts(t), s]})),
        Ok(Value::Vector(v)) => success(json!({"resultType": "vector", "result": v.iter().map(|(l, x)| json!({
            "metric": metric(l), "value": [ts(t), fmt_value(*x)]})).collect::<Vec<_>>()})),
        Ok(Value::Matrix(m)) => success(json!({"resultType": "matrix", "result": m.iter().map(|(l, pts)| json!({
            "metric": metric(l), "values": pts.iter().map(|(t, x)| json!([ts(*t), fmt_value(*x)])).collect::<Vec<_>>()
        })).collect::<Vec<_>>()})),
        Err(e) => from_error(e),
    }
}

async fn do_query_range(m: MetricsApi, f: Vec<(String, String)>) -> Response {
    let Some(q) = get(&f, "query").map(str::to_string) else { return bad("query parameter is required") };
    let param = |k: &str, p: fn(&str) -> Result<i64, String>| match get(&f, k) {
        Some(v) => p(v).map_err(|e| format!("invalid parameter \"{k}\": {e}")),
        None => Err(format!("invalid parameter \"{k}\": missing")),
    };
    let (start, end, step) = match (param("start", parse_time), param("end", parse_time), param("step", parse_step)) {
        (Ok(a), Ok(b), Ok(c)) => (a, b, c),
        (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => return bad(e),
    };
    let now = crate::util::unix_now_ms();
    let r = match blocking(move || m.metrics.query_range(&q, start, end, step, now)).await {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    match r {
        Ok(mx) => success(json!({"resultType": "matrix", "result": mx.iter().map(|(l, pts)| json!({
            "metric": metric(l), "values": pts.iter().map(|(t, x)| json!([ts(*t), fmt_value(*x)])).collect::<Vec<_>>()
        })).collect::<Vec<_>>()})),
        Err(e) => from_error(e),
    }
}

fn start_of(f: &[(String, String)]) -> Result<i64, String> {
    get(f, "start").map(parse_time).transpose().map(|t| t.unwrap_or(i64::MIN))
}

fn matchers(f: &[(String, String)]) -> Vec<String> {
    f.iter().filter(|(k, _)| k == "match[]").map(|(_, v)| v.clone()).collect()
}

async fn do_series(m: MetricsApi, f: Vec<(String, String)>) -> Response {
    let sel = matchers(&f);
    if sel.is_empty() {
        return bad("no match[] parameter provided");
    }
    let start = match start_of(&f) {
        Ok(s) => s,
        Err(e) => return bad(e),
    };
    match m.metrics.series(&sel, start) {
        Ok(v) => success(Json::Array(v.iter().map(metric).collect())),
        Err(e) => from_error(e),
    }
}

async fn do_labels(m: MetricsApi, f: Vec<(String, String)>, name: Option<String>) -> Response {
    let start = match start_of(&f) {
        Ok(s) => s,
        Err(e) => return bad(e),
    };
    let series = match m.metrics.series(&matchers(&f), start) {
        Ok(v) => v,
        Err(e) => return from_error(e),
    };
    let mut out = std::collections::BTreeSet::new();
    for l in &series {
        match &name {
            Some(n) => {
                if let Some(v) = l.get(n) {
                    out.insert(v.to_string());
                }
            }
            None => out.extend(l.pairs().iter().map(|(k, _)| k.clone())),
        }
    }
    success(json!(out))
}

const QUERY_DOC: &str = "PromQL (hearth's subset; unsupported features get a `bad_data` error naming them)";

/// Instant query, as Prometheus's `GET /api/v1/query`.
#[utoipa::path(get, path = "/prometheus/api/v1/query", tag = "metrics",
    params(("query" = String, Query, description = "PromQL (hearth's subset)"),
           ("time" = Option<String>, Query, description = "Unix seconds or RFC 3339; default now")),
    responses((status = 200, description = "result", body = PromEnvelope),
              (status = 400, description = "`bad_data`: the query or a parameter is invalid", body = PromEnvelope),
              (status = 422, description = "`execution`: the query failed while evaluating", body = PromEnvelope),
              (status = 401, description = "not signed in", body = ErrorBody),
              (status = 403, description = "`insufficient_scope`: the token lacks `metrics`", body = ErrorBody)),
    security(("session" = []), ("token" = ["metrics"])))]
async fn query_get(_a: MetricsAuth, State(m): State<MetricsApi>, RawQuery(q): RawQuery) -> Response {
    let _ = QUERY_DOC;
    do_query(m, form(q, b"")).await
}

/// Instant query with a form body, as Prometheus's `POST /api/v1/query`.
#[utoipa::path(post, path = "/prometheus/api/v1/query", tag = "metrics",
    request_body(content = QueryForm, content_type = "application/x-www-form-urlencoded"),
    responses((status = 200, description = "result", body = PromEnvelope),
              (status = 400, description = "`bad_data`", body = PromEnvelope),
              (status = 422, description = "`execution`", body = PromEnvelope),
              (status = 401, description = "not signed in", body = ErrorBody),
              (status = 403, description = "`insufficient_scope`", body = ErrorBody)),
    security(("session" = []), ("token" = ["metrics"])))]
async fn query_post(_a: MetricsAuth, State(m): State<MetricsApi>, RawQuery(q): RawQuery, body: Bytes) -> Response {
    do_query(m, form(q, &body)).await
}

/// Range query, as Prometheus's `GET /api/v1/query_range`: the resolution (raw, 1 m or 1 h roll-ups) is chosen
/// from the range and the step.
#[utoipa::path(get, path = "/prometheus/api/v1/query_range", tag = "metrics",
    params(("query" = String, Query, description = "PromQL (hearth's subset)"),
           ("start" = String, Query, description = "Unix seconds or RFC 3339"),
           ("end" = String, Query, description = "Unix seconds or RFC 3339"),
           ("step" = String, Query, description = "seconds or a duration such as 15s")),
    responses((status = 200, description = "a matrix", body = PromEnvelope),
              (status = 400, description = "`bad_data`", body = PromEnvelope),
              (status = 422, description = "`execution`", body = PromEnvelope),
              (status = 401, description = "not signed in", body = ErrorBody),
              (status = 403, description = "`insufficient_scope`", body = ErrorBody)),
    security(("session" = []), ("token" = ["metrics"])))]
async fn query_range_get(_a: MetricsAuth, State(m): State<MetricsApi>, RawQuery(q): RawQuery) -> Response {
    do_query_range(m, form(q, b"")).await
}

/// Range query with a form body.
#[utoipa::path(post, path = "/prometheus/api/v1/query_range", tag = "metrics",
    request_body(content = RangeForm, content_type = "application/x-www-form-urlencoded"),
    responses((status = 200, description = "a matrix", body = PromEnvelope),
              (status = 400, description = "`bad_data`", body = PromEnvelope),
              (status = 422, description = "`execution`", body = PromEnvelope),
              (status = 401, description = "not signed in", body = ErrorBody),
              (status = 403, description = "`insufficient_scope`", body = ErrorBody)),
    security(("session" = []), ("token" = ["metrics"])))]
async fn query_range_post(
    _a: MetricsAuth,
    State(m): State<MetricsApi>,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> Response {
    do_query_range(m, form(q, &body)).await
}

/// The series matching `match[]` selectors.
#[utoipa::path(get, path = "/prometheus/api/v1/series", tag = "metrics",
    params(("match[]" = Vec<String>, Query, description = "series selectors (at least one)"),
           ("start" = Option<String>, Query, description = "Unix seconds or RFC 3339")),
    responses((status = 200, description = "label sets", body = PromEnvelope),
              (status = 400, description = "`bad_data`", body = PromEnvelope),
              (status = 401, description = "not signed in", body = ErrorBody),
              (status = 403, description = "`insufficient_scope`", body = ErrorBody)),
    security(("session" = []), ("token" = ["metrics"])))]
async fn series_get(_a: MetricsAuth, State(m): State<MetricsApi>, RawQuery(q): RawQuery) -> Response {
    do_series(m, form(q, b"")).await
}

/// The series matching `match[]` selectors (form body).
#[utoipa::path(post, path = "/prometheus/api/v1/series", tag = "metrics",
    request_body(content = MatchForm, content_type = "application/x-www-form-urlencoded"),
    responses((status = 200, description = "label sets", body = PromEnvelope),
              (status = 400, description = "`bad_data`", body = PromEnvelope),
              (status = 401, description = "not signed in", body = ErrorBody),
              (status = 403, description = "`insufficient_scope`", body = ErrorBody)),
    security(("session" = []), ("token" = ["metrics"])))]
async fn series_post(_a: MetricsAuth, State(m): State<MetricsApi>, RawQuery(q): RawQuery, body: Bytes) -> Response {
    do_series(m, form(q, &body)).await
}

/// Label names (of the series matching the optional `match[]`).
#[utoipa::path(get, path = "/prometheus/api/v1/labels", tag = "metrics",
    params(("match[]" = Option<Vec<String>>, Query, description = "series selectors")),
    responses((status = 200, description = "names", body = PromEnvelope),
              (status = 400, description = "`bad_data`", body = PromEnvelope),
              (status = 401, description = "not signed in", body = ErrorBody),
              (status = 403, description = "`insufficient_scope`", body = ErrorBody)),
    security(("session" = []), ("token" = ["metrics"])))]
async fn labels_get(_a: MetricsAuth, State(m): State<MetricsApi>, RawQuery(q): RawQuery) -> Response {
    do_labels(m, form(q, b""), None).await
}

/// Label names (form body).
#[utoipa::path(post, path = "/prometheus/api/v1/labels", tag = "metrics",
    request_body(content = MatchForm, content_type = "application/x-www-form-urlencoded"),
    responses((status = 200, description = "names", body = PromEnvelope),
              (status = 400, description = "`bad_data`", body = PromEnvelope),
              (status = 401, description = "not signed in", body = ErrorBody),
              (status = 403, description = "`insufficient_scope`", body = ErrorBody)),
    security(("session" = []), ("token" = ["metrics"])))]
async fn labels_post(_a: MetricsAuth, State(m): State<MetricsApi>, RawQuery(q): RawQuery, body: Bytes) -> Response {
    do_labels(m, form(q, &body), None).await
}

/// The values of one label (of the series matching the optional `match[]`).
#[utoipa::path(get, path = "/prometheus/api/v1/label/{name}/values", tag = "metrics",
    params(("name" = String, Path, description = "a label name, e.g. `__name__` or `job`"),
           ("match[]" = Option<Vec<String>>, Query, description = "series selectors")),
    responses((status = 200, description = "values", body = PromEnvelope),
              (status = 400, description = "`bad_data`", body = PromEnvelope),
              (status = 401, description = "not signed in", body = ErrorBody),
              (status = 403, description = "`insufficient_scope`", body = ErrorBody)),
    security(("session" = []), ("token" = ["metrics"])))]
async fn label_values(
    _a: MetricsAuth,
    State(m): State<MetricsApi>,
    Path(name): Path<String>,
    RawQuery(q): RawQuery,
) -> Response {
    do_labels(m, form(q, b""), Some(name)).await
}

/// Build information in Prometheus's shape (Grafana reads it to pick its query features).
#[utoipa::path(get, path = "/prometheus/api/v1/status/buildinfo", tag = "metrics",
    responses((status = 200, description = "version", body = PromEnvelope),
              (status = 401, description = "not signed in", body = ErrorBody),
              (status = 403, description = "`insufficient_scope`", body = ErrorBody)),
    security(("session" = []), ("token" = ["metrics"])))]
async fn buildinfo(_a: MetricsAuth) -> Response {
    // the Prometheus API version hearth's subset follows
    success(json!({"version": "2.42.0", "revision": crate::BUILD_COMMIT, "branch": "hearth",
        "buildUser": "hearth", "buildDate": crate::BUILD_DATE, "goVersion": "none"}))
}

#[derive(Serialize, ToSchema)]
pub(crate) struct MetricsStatus {
    store: crate::metrics::store::StoreStats,
    targets: Vec<TargetStatus>,
    /// The resolution of each tier in seconds (0: raw) and how long it is kept (seconds).
    tiers: Vec<[i64; 2]>,
}

/// The store (series, bytes per tier, whether the disk cap shortened a tier) and the scrape targets.
#[utoipa::path(get, path = "/api/v1/metrics/status", tag = "metrics",
    responses((status = 200, description = "store and targets", body = MetricsStatus),
              (status = 401, description = "not signed in", body = ErrorBody),
              (status = 403, description = "`insufficient_scope`", body = ErrorBody)),
    security(("session" = []), ("token" = ["metrics"])))]
async fn metrics_status(_a: MetricsAuth, State(m): State<MetricsApi>) -> axum::Json<MetricsStatus> {
    let mm = m.metrics.clone();
    let store = tokio::task::spawn_blocking(move || mm.store.stats()).await.expect("stats do not panic");
    let mut targets: Vec<TargetStatus> =
        m.metrics.targets.lock().map(|t| t.values().cloned().collect()).unwrap_or_default();
    targets.sort_by(|a, b| a.name.cmp(&b.name));
    let tiers = m.metrics.store.tiers().iter().map(|t| [t.step_ms / 1000, t.retention_ms / 1000]).collect();
    axum::Json(MetricsStatus { store, targets, tiers })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_and_steps_parse_like_prometheus() {
        assert_eq!(parse_time("1700000000.5"), Ok(1_700_000_000_500));
        assert_eq!(parse_time("2023-11-14T22:13:20Z"), Ok(1_700_000_000_000));
        assert!(parse_time("1e300").is_err());
        assert!(parse_time("NaN").is_err());
        assert!(parse_time("yesterday").is_err());
        assert_eq!(parse_step("15"), Ok(15_000));
        assert_eq!(parse_step("1m30s"), Ok(90_000));
        assert!(parse_step("fast").is_err());
        assert_eq!(fmt_value(0.1), "0.1");
        assert_eq!(fmt_value(f64::NEG_INFINITY), "-Inf");
        assert_eq!(fmt_value(3.0), "3");
    }
}
