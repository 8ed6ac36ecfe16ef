//! The log store's routes: Loki's HTTP API under `/loki/api/v1/…` (same parameters, same JSON), so Grafana's Loki
//! data source, `logcli` and Loki shippers (Alloy, Promtail, Docker's Loki driver) work against hearth, and
//! `/api/v1/logs/status` for the UI. Every route takes an admin session or a token with the `logs` scope (a token
//! may also come as a basic-auth password, as shippers send it).

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{Value as Json, json};
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::auth::LogsAuth;
use super::error::ErrorBody;
use super::form::{form, get};
use super::{AppState, ConnInfo, LogsApi};
use crate::logs::model::Labels;
use crate::logs::{Answer, LogsError, Params};

pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(loki_push))
        .routes(routes!(loki_query_range_get, loki_query_range_post))
        .routes(routes!(loki_query_get))
        .routes(routes!(loki_labels))
        .routes(routes!(loki_label_values))
        .routes(routes!(loki_series_get, loki_series_post))
        .routes(routes!(logs_status))
}

/// Loki's answer envelope: `{"status": "success", "data": …}`, or `{"status": "error", "error": "…"}`.
#[derive(Serialize, ToSchema)]
struct LokiEnvelope {
    /// `success` or `error`
    status: String,
    /// `resultType` (`streams`, `matrix`, `vector`) and `result`, or a list of names; absent on errors
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<serde_json::Value>)]
    data: Option<Json>,
    #[serde(rename = "errorType", skip_serializing_if = "Option::is_none")]
    error_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// The form body of `POST /loki/api/v1/query_range` (documentation: the handler reads the raw form).
#[derive(serde::Deserialize, ToSchema)]
#[allow(dead_code)]
struct RangeForm {
    query: String,
    start: Option<String>,
    end: Option<String>,
    limit: Option<u32>,
    direction: Option<String>,
    step: Option<String>,
}

/// The form body of `POST /loki/api/v1/series` (documentation: the handler reads the raw form).
#[derive(serde::Deserialize, ToSchema)]
#[allow(dead_code)]
struct SeriesForm {
    #[serde(rename = "match[]")]
    matches: Option<Vec<String>>,
    start: Option<String>,
    end: Option<String>,
}

fn loki_error(status: StatusCode, kind: &str, msg: impl Into<String>) -> Response {
    (status, axum::Json(json!({"status": "error", "errorType": kind, "error": msg.into()}))).into_response()
}

fn bad(msg: impl Into<String>) -> Response {
    loki_error(StatusCode::BAD_REQUEST, "bad_data", msg)
}

fn from_error(e: LogsError) -> Response {
    match e {
        LogsError::Query(q) => bad(q.to_string()),
        LogsError::BadRequest(m) => bad(m),
        LogsError::Store(m) => loki_error(StatusCode::SERVICE_UNAVAILABLE, "unavailable", m),
    }
}

fn success(data: Json) -> Response {
    axum::Json(json!({"status": "success", "data": data})).into_response()
}

fn now_ns() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as i64)
}

/// A time as Loki takes it: Unix nanoseconds (an integer of more than 12 digits), Unix seconds (with a fraction),
/// or RFC 3339.
fn parse_time(s: &str) -> Result<i64, String> {
    let bad = || format!("cannot parse {s:?} to a valid timestamp");
    if let Ok(n) = s.parse::<i64>() {
        return Ok(if n.unsigned_abs() >= 10_000_000_000_000 {
            n
        } else {
            n.checked_mul(1_000_000_000).ok_or_else(bad)?
        });
    }
    if let Ok(x) = s.parse::<f64>() {
        if x.is_finite() && x.abs() < 9.2e9 {
            return Ok((x * 1e9).round() as i64);
        }
        return Err(bad());
    }
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .ok()
        .and_then(|t| i64::try_from(t.unix_timestamp_nanos()).ok())
        .ok_or_else(bad)
}

/// A step: seconds (with a fraction) or a duration (`15s`, `1m`).
fn parse_step(s: &str) -> Result<i64, String> {
    if let Ok(x) = s.parse::<f64>()
        && x.is_finite()
        && x > 0.0
        && x < 9.2e9
    {
        return Ok((x * 1e9).round() as i64);
    }
    crate::logs::logql::parse_duration(s).ok_or_else(|| format!("cannot parse {s:?} to a valid duration"))
}

fn ts_seconds(ns: i64) -> Json {
    let s = ns as f64 / 1e9;
    if ns % 1_000_000_000 == 0 { json!(ns / 1_000_000_000) } else { json!(s) }
}

fn fmt_value(v: f64) -> String {
    if v.is_nan() { "NaN".into() } else { format!("{v}") }
}

fn metric(l: &Labels) -> Json {
    Json::Object(l.to_map())
}

fn answer(a: Answer) -> Response {
    match a {
        Answer::Streams(s) => {
            let n: usize = s.iter().map(|(_, v)| v.len()).sum();
            success(json!({
                "resultType": "streams",
                "result": s.iter().map(|(l, lines)| json!({
                    "stream": metric(l),
                    "values": lines.iter().map(|(t, line)| json!([t.to_string(), line])).collect::<Vec<_>>(),
                })).collect::<Vec<_>>(),
                "stats": {"summary": {"totalEntriesReturned": n}},
            }))
        }
        Answer::Matrix(m) => success(json!({
            "resultType": "matrix",
            "result": m.iter().map(|(l, pts)| json!({
                "metric": metric(l),
                "values": pts.iter().map(|(t, v)| json!([ts_seconds(*t), fmt_value(*v)])).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
            "stats": {},
        })),
        Answer::Vector(v) => success(json!({
            "resultType": "vector",
            "result": v.iter().map(|(l, t, x)| json!({"metric": metric(l), "value": [ts_seconds(*t), fmt_value(*x)]})).collect::<Vec<_>>(),
            "stats": {},
        })),
    }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, Response> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|_| loki_error(StatusCode::INTERNAL_SERVER_ERROR, "internal", "the query failed"))
}

fn limit_and_direction(f: &[(String, String)]) -> Result<(usize, bool), String> {
    let limit = match get(f, "limit") {
        Some(l) => l.parse::<usize>().map_err(|_| format!("invalid parameter \"limit\": {l:?}"))?,
        None => 100,
    };
    if limit == 0 || limit > 50_000 {
        return Err("limit must be between 1 and 50000".into());
    }
    let backward = match get(f, "direction").map(|d| d.to_ascii_lowercase()) {
        None => true,
        Some(d) if d == "backward" => true,
        Some(d) if d == "forward" => false,
        Some(d) => return Err(format!("invalid direction {d:?}: backward or forward")),
    };
    Ok((limit, backward))
}

async fn do_query_range(api: LogsApi, f: Vec<(String, String)>) -> Response {
    let Some(q) = get(&f, "query").map(str::to_string) else { return bad("query parameter is required") };
    let now = now_ns();
    let time = |k: &str, default: i64| match get(&f, k) {
        Some(v) => parse_time(v).map_err(|e| format!("invalid parameter \"{k}\": {e}")),
        None => Ok(default),
    };
    let (start, end) = match (time("start", now - 3_600_000_000_000), time("end", now)) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(e), _) | (_, Err(e)) => return bad(e),
    };
    let (limit, backward) = match limit_and_direction(&f) {
        Ok(x) => x,
        Err(e) => return bad(e),
    };
    // Loki's default step: the range over 250 points, at least a second
    let step = match get(&f, "step").map(parse_step).transpose() {
        Ok(s) => s.unwrap_or_else(|| ((end - start) / 250).max(1_000_000_000)),
        Err(e) => return bad(format!("invalid parameter \"step\": {e}")),
    };
    let p = Params { start, end, limit, backward, step };
    match blocking(move || api.logs.query_range(&q, &p, now)).await {
        Ok(Ok(a)) => answer(a),
        Ok(Err(e)) => from_error(e),
        Err(resp) => resp,
    }
}

/// Loki's range query: lines of a log query (`resultType` `streams`, at most `limit`, newest first unless
/// `direction=forward`) or the series of a metric query (`matrix`).
#[utoipa::path(get, path = "/loki/api/v1/query_range", tag = "logs",
    params(("query" = String, Query, description = "LogQL (hearth's subset)"),
           ("start" = Option<String>, Query, description = "Unix ns, Unix seconds or RFC 3339; default an hour ago"),
           ("end" = Option<String>, Query, description = "default now"),
           ("limit" = Option<u32>, Query, description = "most lines, default 100"),
           ("direction" = Option<String>, Query, description = "backward (default) or forward"),
           ("step" = Option<String>, Query, description = "metric queries: seconds or a duration")),
    responses((status = 200, description = "streams or a matrix", body = LokiEnvelope),
              (status = 400, description = "`bad_data`: the query or a parameter is invalid", body = LokiEnvelope),
              (status = 401, description = "not signed in", body = ErrorBody),
              (status = 403, description = "`insufficient_scope`: the token lacks `logs`", body = ErrorBody)),
    security(("session" = []), ("token" = ["logs"])))]
async fn loki_query_range_get(_a: LogsAuth, State(api): State<LogsApi>, RawQuery(q): RawQuery) -> Response {
    do_query_range(api, form(q, b"")).await
}

/// The range query with a form body.
#[utoipa::path(post, path = "/loki/api/v1/query_range", tag = "logs",
    request_body(content = RangeForm, content_type = "application/x-www-form-urlencoded"),
    responses((status = 200, description = "streams or a matrix", body = LokiEnvelope),
              (status = 400, description = "`bad_data`", body = LokiEnvelope),
              (status = 401, description = "not signed in", body = ErrorBody),
              (status = 403, description = "`insufficient_scope`", body = ErrorBody)),
    security(("session" = []), ("token" = ["logs"])))]
async fn loki_query_range_post(
    _a: LogsAuth,
    State(api): State<LogsApi>,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> Response {
    do_query_range(api, form(q, &body)).await
}

/// Loki's instant query: a metric query's value at `time` (`vector`), or a log query's lines in the hour before it.
#[utoipa::path(get, path = "/loki/api/v1/query", tag = "logs",
    params(("query" = String, Query, description = "LogQL (hearth's subset)"),
           ("time" = Option<String>, Query, description = "Unix ns, Unix seconds or RFC 3339; default now"),
           ("limit" = Option<u32>, Query, description = "most lines, default 100"),
           ("direction" = Option<String>, Query, description = "backward (default) or forward")),
    responses((status = 200, description = "a vector or streams", body = LokiEnvelope),
              (status = 400, description = "`bad_data`", body = LokiEnvelope),
              (status = 401, description = "not signed in", body = ErrorBody),
              (status = 403, description = "`insufficient_scope`", body = ErrorBody)),
    security(("session" = []), ("token" = ["logs"])))]
async fn loki_query_get(_a: LogsAuth, State(api): State<LogsApi>, RawQuery(q): RawQuery) -> Response {
    let f = form(q, b"");
    let Some(q) = get(&f, "query").map(str::to_string) else { return bad("query parameter is required") };
    let now = now_ns();
    let t = match get(&f, "time").map(parse_time).transpose() {
        Ok(t) => t.unwrap_or(now),
        Err(e) => return bad(format!("invalid parameter \"time\": {e}")),
    };
    let (limit, backward) = match limit_and_direction(&f) {
        Ok(x) => x,
        Err(e) => return bad(e),
    };
    match blocking(move || api.logs.query_instant(&q, t, limit, backward, now)).await {
        Ok(Ok(a)) => answer(a),
        Ok(Err(e)) => from_error(e),
        Err(resp) => resp,
    }
}

fn window(f: &[(String, String)]) -> Result<(i64, i64), String> {
    let now = now_ns();
    let start = get(f, "start").map(parse_time).transpose()?.unwrap_or(now - 6 * 3_600_000_000_000);
    let end = get(f, "end").map(parse_time).transpose()?.unwrap_or(now);
    Ok((start, end.max(start) + 1))
}

/// The label names of the streams with lines in the window (default the last 6 hours).
#[utoipa::path(get, path = "/loki/api/v1/labels", tag = "logs",
    params(("start" = Option<String>, Query, description = "default 6 hours ago"),
           ("end" = Option<String>, Query, description = "default now")),
    responses((status = 200, description = "names", body = LokiEnvelope),
              (status = 400, description = "`bad_data`", body = LokiEnvelope),
              (status = 401, description = "not signed in", body = ErrorBody),
              (status = 403, description = "`insufficient_scope`", body = ErrorBody)),
    security(("session" = []), ("token" = ["logs"])))]
async fn loki_labels(_a: LogsAuth, State(api): State<LogsApi>, RawQuery(q): RawQuery) -> Response {
    let f = form(q, b"");
    match window(&f) {
        Ok((start, end)) => success(json!(api.logs.label_names(start, end))),
        Err(e) => bad(e),
    }
}

/// The values of one label on the streams with lines in the window, optionally of the streams a selector picks.
#[utoipa::path(get, path = "/loki/api/v1/label/{name}/values", tag = "logs",
    params(("name" = String, Path, description = "label name"),
           ("start" = Option<String>, Query, description = "default 6 hours ago"),
           ("end" = Option<String>, Query, description = "default now"),
           ("query" = Option<String>, Query, description = "a stream selector narrowing the streams")),
    responses((status = 200, description = "values", body = LokiEnvelope),
              (status = 400, description = "`bad_data`", body = LokiEnvelope),
              (status = 401, description = "not signed in", body = ErrorBody),
              (status = 403, description = "`insufficient_scope`", body = ErrorBody)),
    security(("session" = []), ("token" = ["logs"])))]
async fn loki_label_values(
    _a: LogsAuth,
    State(api): State<LogsApi>,
    Path(name): Path<String>,
    RawQuery(q): RawQuery,
) -> Response {
    let f = form(q, b"");
    let (start, end) = match window(&f) {
        Ok(w) => w,
        Err(e) => return bad(e),
    };
    match api.logs.label_values(&name, start, end, get(&f, "query")) {
        Ok(v) => success(json!(v)),
        Err(e) => from_error(e),
    }
}

/// The streams (label sets) with lines in the window that any `match[]` selector picks, as Loki's `/series`
/// answers (logcli `series`, Grafana's label browser).
#[utoipa::path(get, path = "/loki/api/v1/series", tag = "logs",
    params(("match[]" = Option<Vec<String>>, Query, description = "stream selectors; none: every stream"),
           ("start" = Option<String>, Query, description = "default 6 hours ago"),
           ("end" = Option<String>, Query, description = "default now")),
    responses((status = 200, description = "label sets", body = LokiEnvelope),
              (status = 400, description = "`bad_data`", body = LokiEnvelope),
              (status = 401, description = "not signed in", body = ErrorBody),
              (status = 403, description = "`insufficient_scope`", body = ErrorBody)),
    security(("session" = []), ("token" = ["logs"])))]
async fn loki_series_get(_a: LogsAuth, State(api): State<LogsApi>, RawQuery(q): RawQuery) -> Response {
    series(api, form(q, b""))
}

/// `/loki/api/v1/series` with its parameters in a form body.
#[utoipa::path(post, path = "/loki/api/v1/series", tag = "logs",
    request_body(content = SeriesForm, content_type = "application/x-www-form-urlencoded"),
    responses((status = 200, description = "label sets", body = LokiEnvelope),
              (status = 400, description = "`bad_data`", body = LokiEnvelope),
              (status = 401, description = "not signed in", body = ErrorBody),
              (status = 403, description = "`insufficient_scope`", body = ErrorBody)),
    security(("session" = []), ("token" = ["logs"])))]
async fn loki_series_post(_a: LogsAuth, State(api): State<LogsApi>, RawQuery(q): RawQuery, body: Bytes) -> Response {
    series(api, form(q, &body))
}

fn series(api: LogsApi, f: Vec<(String, String)>) -> Response {
    let (start, end) = match window(&f) {
        Ok(w) => w,
        Err(e) => return bad(e),
    };
    let selectors: Vec<&str> =
        f.iter().filter(|(k, _)| k == "match[]" || k == "match").map(|(_, v)| v.as_str()).collect();
    match api.logs.series(&selectors, start, end) {
        Ok(v) => success(json!(v.iter().map(|l| l.to_map()).collect::<Vec<_>>())),
        Err(e) => from_error(e),
    }
}

/// Loki's push: JSON (optionally gzip-compressed) or protobuf + snappy (`application/x-protobuf`). Lines get
/// `source="push"`, a `host` (their label, else the client's address) and a `level`.
#[utoipa::path(post, path = "/loki/api/v1/push", tag = "logs",
    request_body(content = String, description = "Loki's push body: JSON `{\"streams\": [...]}` or snappy protobuf", content_type = "application/json"),
    responses((status = 204, description = "taken (queued for the next write, within a second)"),
              (status = 400, description = "the body is not a Loki push; nothing of it was kept", body = LokiEnvelope),
              (status = 429, description = "the queue is full: lines were dropped", body = LokiEnvelope),
              (status = 401, description = "not signed in", body = ErrorBody),
              (status = 403, description = "`insufficient_scope`", body = ErrorBody)),
    security(("session" = []), ("token" = ["logs"])))]
async fn loki_push(
    _a: LogsAuth,
    State(api): State<LogsApi>,
    conn: Option<axum::Extension<ConnInfo>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let ctype = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_ascii_lowercase();
    let encoding =
        headers.get(header::CONTENT_ENCODING).and_then(|v| v.to_str().ok()).unwrap_or("").to_ascii_lowercase();
    let client = conn.map(|c| c.0.peer.ip().to_string()).unwrap_or_else(|| "unknown".into());
    let parsed = if ctype.starts_with("application/x-protobuf") {
        match snap::raw::Decoder::new().decompress_vec(&body) {
            Ok(raw) => crate::logs::push::from_proto(&raw, &client),
            Err(e) => Err(format!("the protobuf body is not snappy-compressed: {e}")),
        }
    } else {
        let raw = if encoding == "gzip" {
            let mut out = vec![];
            let mut gz = std::io::Read::take(flate2::read::GzDecoder::new(&body[..]), 64 << 20);
            match std::io::Read::read_to_end(&mut gz, &mut out) {
                Ok(_) => out,
                Err(e) => return bad(format!("the gzip body does not decompress: {e}")),
            }
        } else {
            body.to_vec()
        };
        crate::logs::push::from_json(&raw, &client)
    };
    let entries = match parsed {
        Ok(e) => e,
        Err(e) => return bad(e),
    };
    let n = entries.len();
    let taken = api.logs.push(entries);
    metrics::counter!("hearth_logs_push_lines_total").increment(n as u64);
    if taken < n {
        return loki_error(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_requests",
            format!("the log queue is full: {} of {n} lines were dropped", n - taken),
        );
    }
    StatusCode::NO_CONTENT.into_response()
}

/// What the Logs page shows about the store.
#[derive(Serialize, ToSchema)]
struct LogsStatus {
    usage: crate::logs::store::Usage,
    /// lines taken by the store since the start (received), written, dropped (queue full or a failed write) and
    /// cut to the line size limit
    received: u64,
    written: u64,
    dropped: u64,
    truncated: u64,
    queued: usize,
    retention_seconds: u64,
}

/// The log store's size, contents and counters.
#[utoipa::path(get, path = "/api/v1/logs/status", tag = "logs",
    responses((status = 200, description = "status", body = LogsStatus),
              (status = 401, description = "not signed in", body = ErrorBody),
              (status = 403, description = "`insufficient_scope`", body = ErrorBody)),
    security(("session" = []), ("token" = ["logs"])))]
async fn logs_status(_a: LogsAuth, State(api): State<LogsApi>) -> Response {
    use std::sync::atomic::Ordering::Relaxed;
    let l = api.logs.clone();
    let usage = match blocking(move || l.store.usage()).await {
        Ok(Ok(u)) => u,
        Ok(Err(e)) => return from_error(e),
        Err(resp) => return resp,
    };
    let c = &api.logs.counters;
    axum::Json(LogsStatus {
        usage,
        received: c.received.load(Relaxed),
        written: c.written.load(Relaxed),
        dropped: c.dropped.load(Relaxed),
        truncated: c.truncated.load(Relaxed),
        queued: api.logs.queued(),
        retention_seconds: (api.logs.retention_ns() / 1_000_000_000) as u64,
    })
    .into_response()
}
