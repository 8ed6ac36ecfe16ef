//! The admin API (`/api/v1`) and the operational endpoints (`/healthz`, `/readyz`, `/metrics`), each documented in
//! the OpenAPI document served at `/api/v1/openapi.json`. Later subsystems add their own route modules here.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::{AdminAuth, AuthVia, clear_session_cookie, set_session_cookie};
use super::error::{ApiError, ApiJson, ErrorBody};
use super::{AppState, ConnInfo};
use crate::auth::{self as core, TokenInfo, User};
use crate::config::live::ApplyReport;
use crate::supervisor::TaskStatus;
use crate::telemetry::{ProcessStats, Sample};
use crate::util::unix_now;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "hearth admin API",
        description = "Authenticate with the session cookie from `POST /api/v1/auth/login` (and send its CSRF token \
                       in `X-CSRF-Token` on changes) or with `Authorization: Bearer hth_…` API tokens. Errors are \
                       `{\"error\":{\"code\",\"message\",\"id\"}}`."
    ),
    modifiers(&SecuritySchemes),
    tags(
        (name = "health", description = "Liveness, readiness and metrics (public)"),
        (name = "auth", description = "First-run setup, login, sessions"),
        (name = "tokens", description = "API tokens"),
        (name = "system", description = "Status and configuration"),
        (name = "dns", description = "The DNS resolver: query log, stats, cache"),
        (name = "memory", description = "Embeddings (OpenAI and TEI shapes) and vector collections"),
    )
)]
struct ApiDoc;

struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let c = openapi.components.get_or_insert_with(Default::default);
        c.add_security_scheme("token", SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()));
        c.add_security_scheme(
            "session",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::new(super::auth::SESSION_COOKIE))),
        );
    }
}

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(healthz))
        .routes(routes!(readyz))
        .routes(routes!(metrics))
        .routes(routes!(openapi_json))
        .routes(routes!(setup_state, setup))
        .routes(routes!(login))
        .routes(routes!(logout))
        .routes(routes!(session))
        .routes(routes!(status))
        .routes(routes!(list_tokens, create_token))
        .routes(routes!(revoke_token))
        .routes(routes!(get_config, patch_config))
        .routes(routes!(reload_config))
        .merge(super::dns_api::routes())
        .merge(super::proxy_api::routes())
        .merge(super::system_api::routes())
        .merge(super::doh::routes())
        .merge(super::memory_api::routes())
}

pub async fn method_not_allowed() -> ApiError {
    ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "method not allowed on this route")
}

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", tag = "health", responses((status = 200, description = "alive", body = String)))]
async fn healthz() -> &'static str {
    "ok\n"
}

#[derive(Serialize, ToSchema)]
struct Readiness {
    /// `ready` when every subsystem is ready or degraded, else `not_ready`.
    status: &'static str,
    subsystems: BTreeMap<&'static str, TaskStatus>,
    /// Conditions that do not stop serving but need the owner's attention (e.g. an implausible clock).
    warnings: Vec<String>,
}

/// Readiness: 200 when every subsystem serves, 503 otherwise, with each subsystem's state.
#[utoipa::path(get, path = "/readyz", tag = "health", responses(
    (status = 200, body = Readiness), (status = 503, body = Readiness)))]
async fn readyz(State(s): State<AppState>) -> Response {
    let ready = s.health.is_ready();
    let mut warnings = vec![];
    if s.config.current().dns.dnssec && !crate::dns::dnssec::Clock::system(crate::build_epoch()).check_times {
        warnings.push(format!(
            "dnssec: the system clock is earlier than this build ({}); signature validity periods are not checked \
             until the clock is set (NTP)",
            crate::BUILD_DATE
        ));
    }
    let body =
        Readiness { status: if ready { "ready" } else { "not_ready" }, subsystems: s.health.snapshot(), warnings };
    let code = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (code, Json(body)).into_response()
}

/// Prometheus metrics (text format 0.0.4).
#[utoipa::path(get, path = "/metrics", tag = "health", responses((status = 200, body = String)))]
async fn metrics(State(s): State<AppState>) -> Response {
    let body =
        tokio::task::spawn_blocking(move || crate::telemetry::render(s.metrics.as_ref())).await.unwrap_or_default();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], body).into_response()
}

/// This document.
#[utoipa::path(get, path = "/api/v1/openapi.json", tag = "health", responses((status = 200, body = Object)))]
async fn openapi_json(State(s): State<AppState>) -> Response {
    let doc = s.openapi.get().cloned().unwrap_or_default();
    ([(header::CONTENT_TYPE, "application/json")], doc).into_response()
}

#[derive(Serialize, ToSchema)]
struct SetupState {
    /// True until the first admin account exists: the UI then shows the setup wizard.
    needs_setup: bool,
    /// While setup is needed: systemd-resolved's stub listener holds port 53, where hearth's DNS is configured
    /// (the wizard explains it; the fix waits for the admin's consent after login).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    port53_held_by_resolved: bool,
}

/// Whether first-run setup is still needed.
#[utoipa::path(get, path = "/api/v1/setup", tag = "auth", responses((status = 200, body = SetupState)))]
async fn setup_state(State(s): State<AppState>) -> Result<Json<SetupState>, ApiError> {
    let n = s.db.call(|c| core::user_count(c)).await?;
    let on_53 = s.config.current().dns.listen.iter().any(|a| a.0.port() == 53);
    let port53_held_by_resolved =
        n == 0 && on_53 && tokio::task::spawn_blocking(crate::sysdns::stub_listening).await.unwrap_or(false);
    Ok(Json(SetupState { needs_setup: n == 0, port53_held_by_resolved }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct Credentials {
    username: String,
    password: String,
}

/// Create the first admin account (only while none exists).
#[utoipa::path(post, path = "/api/v1/setup", tag = "auth", request_body = Credentials, responses(
    (status = 201, body = User), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn setup(State(s): State<AppState>, ApiJson(body): ApiJson<Credentials>) -> Result<Response, ApiError> {
    core::validate_username(&body.username)?;
    core::validate_password(&body.password)?;
    if s.db.call(|c| core::user_count(c)).await? > 0 {
        return Err(core::AuthError::AlreadySetUp.into());
    }
    let pw = body.password;
    let phc = tokio::task::spawn_blocking(move || core::hash_password(&pw)).await.map_err(ApiError::internal)??;
    let name = body.username;
    let user = s.db.call(move |c| core::create_first_admin(c, &name, &phc, unix_now())).await?;
    tracing::info!(user = %user.username, "first admin account created");
    Ok((StatusCode::CREATED, Json(user)).into_response())
}

#[derive(Serialize, ToSchema)]
struct SessionView {
    user: String,
    via: AuthVia,
    /// Send this in `X-CSRF-Token` with every cookie-authenticated change.
    csrf_token: Option<String>,
    expires_at: Option<i64>,
}

/// Log in: sets the session cookie (HttpOnly, SameSite=Strict, Secure over HTTPS). Repeated failures are slowed
/// down per client and per user (429 with Retry-After).
#[utoipa::path(post, path = "/api/v1/auth/login", tag = "auth", request_body = Credentials, responses(
    (status = 200, body = SessionView), (status = 401, body = ErrorBody), (status = 429, body = ErrorBody)))]
async fn login(
    State(s): State<AppState>,
    axum::Extension(conn): axum::Extension<ConnInfo>,
    ApiJson(body): ApiJson<Credentials>,
) -> Result<Response, ApiError> {
    let client: IpAddr = conn.peer.ip();
    let user_key = body.username.to_lowercase();
    if let Err(wait) = s.throttle.lock().unwrap_or_else(|p| p.into_inner()).check(client, &user_key, Instant::now()) {
        metrics::counter!("hearth_login_attempts_total", "result" => "throttled").increment(1);
        let secs = wait.as_secs().max(1);
        return Err(ApiError {
            retry_after: Some(secs),
            ..ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                format!("too many failed logins; try again in {secs} s"),
            )
        });
    }
    let name = body.username.clone();
    let found = s.db.call(move |c| core::find_user(c, &name)).await?;
    let pw = body.password;
    let (user, ok) = tokio::task::spawn_blocking(move || match found {
        Some((user, phc)) => {
            let ok = core::verify_password(&pw, &phc);
            (Some(user), ok)
        }
        None => {
            core::verify_password(&pw, core::dummy_hash());
            (None, false)
        }
    })
    .await
    .map_err(ApiError::internal)?;
    let Some(user) = user.filter(|_| ok) else {
        s.throttle.lock().unwrap_or_else(|p| p.into_inner()).record_failure(client, &user_key, Instant::now());
        metrics::counter!("hearth_login_attempts_total", "result" => "failure").increment(1);
        tracing::warn!(user = %body.username, client = %client, "failed login");
        return Err(ApiError::new(StatusCode::UNAUTHORIZED, "invalid_credentials", "wrong user name or password"));
    };
    s.throttle.lock().unwrap_or_else(|p| p.into_inner()).record_success(client, &user_key);
    metrics::counter!("hearth_login_attempts_total", "result" => "success").increment(1);
    let ttl = s.config.current().auth.session_ttl.as_std().as_secs() as i64;
    let client_s = client.to_string();
    let u = user.clone();
    let sess = s.db.call(move |c| core::create_session(c, &u, ttl, &client_s, unix_now())).await?;
    tracing::info!(user = %user.username, client = %client, "login");
    let view = SessionView {
        user: user.username,
        via: AuthVia::Session,
        csrf_token: Some(sess.csrf_token),
        expires_at: Some(sess.expires_at),
    };
    Ok(([(header::SET_COOKIE, set_session_cookie(&sess.id, ttl, &conn))], Json(view)).into_response())
}

/// Log out: ends this session and clears the cookie.
#[utoipa::path(post, path = "/api/v1/auth/logout", tag = "auth",
    security(("session" = []), ("token" = [])),
    responses((status = 204), (status = 401, body = ErrorBody)))]
async fn logout(
    auth: AdminAuth,
    State(s): State<AppState>,
    axum::Extension(conn): axum::Extension<ConnInfo>,
) -> Result<Response, ApiError> {
    if let Some((sid, _)) = auth.session {
        s.db.call(move |c| core::delete_session(c, &sid)).await?;
    }
    Ok((StatusCode::NO_CONTENT, [(header::SET_COOKIE, clear_session_cookie(&conn))]).into_response())
}

/// Who is logged in (and the CSRF token for this session).
#[utoipa::path(get, path = "/api/v1/auth/session", tag = "auth",
    security(("session" = []), ("token" = [])),
    responses((status = 200, body = SessionView), (status = 401, body = ErrorBody)))]
async fn session(auth: AdminAuth) -> Json<SessionView> {
    Json(SessionView {
        user: auth.principal,
        via: auth.via,
        csrf_token: auth.session.map(|(_, csrf)| csrf),
        expires_at: auth.expires_at,
    })
}

#[derive(Serialize, ToSchema)]
struct Status {
    version: &'static str,
    commit: &'static str,
    build_date: &'static str,
    /// When the embedded web UI was built.
    ui_build: &'static str,
    started_at: i64,
    uptime_seconds: i64,
    process: ProcessStats,
    http_requests_total: u64,
    subsystems: BTreeMap<&'static str, TaskStatus>,
    /// Recent samples (every few seconds) for the dashboard charts.
    series: Vec<Sample>,
}

/// The dashboard's data: build, uptime, process, subsystem states and recent samples.
#[utoipa::path(get, path = "/api/v1/status", tag = "system",
    security(("session" = []), ("token" = [])),
    responses((status = 200, body = Status), (status = 401, body = ErrorBody)))]
async fn status(_auth: AdminAuth, State(s): State<AppState>) -> Json<Status> {
    let process = tokio::task::spawn_blocking(ProcessStats::read).await.unwrap_or_default();
    Json(Status {
        version: env!("CARGO_PKG_VERSION"),
        commit: crate::BUILD_COMMIT,
        build_date: crate::BUILD_DATE,
        ui_build: super::ui::WEB_BUILD,
        started_at: s.started_at,
        uptime_seconds: unix_now() - s.started_at,
        process,
        http_requests_total: s.requests.get(),
        subsystems: s.health.snapshot(),
        series: s.series.lock().unwrap_or_else(|p| p.into_inner()).samples(),
    })
}

/// All API tokens (never the secrets).
#[utoipa::path(get, path = "/api/v1/tokens", tag = "tokens",
    security(("session" = []), ("token" = [])),
    responses((status = 200, body = [TokenInfo]), (status = 401, body = ErrorBody)))]
async fn list_tokens(_auth: AdminAuth, State(s): State<AppState>) -> Result<Json<Vec<TokenInfo>>, ApiError> {
    Ok(Json(s.db.call(|c| core::list_tokens(c)).await?))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct NewToken {
    name: String,
}

#[derive(Serialize, ToSchema)]
struct CreatedToken {
    /// The secret, shown only in this answer.
    token: String,
    info: TokenInfo,
}

/// Create an API token; the answer is the only time its secret is shown.
#[utoipa::path(post, path = "/api/v1/tokens", tag = "tokens", request_body = NewToken,
    security(("session" = []), ("token" = [])),
    responses((status = 201, body = CreatedToken), (status = 401, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn create_token(
    auth: AdminAuth,
    State(s): State<AppState>,
    ApiJson(body): ApiJson<NewToken>,
) -> Result<Response, ApiError> {
    let by = auth.principal.clone();
    let (token, info) = s.db.call(move |c| core::create_token(c, body.name.trim(), &by, unix_now())).await?;
    tracing::info!(token = %info.name, by = %auth.principal, "API token created");
    Ok((StatusCode::CREATED, Json(CreatedToken { token, info })).into_response())
}

/// Revoke an API token.
#[utoipa::path(delete, path = "/api/v1/tokens/{id}", tag = "tokens",
    params(("id" = i64, Path, description = "token id")),
    security(("session" = []), ("token" = [])),
    responses((status = 204), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn revoke_token(
    auth: AdminAuth,
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id: i64 = id.parse().map_err(|_| ApiError::bad_request("invalid_input", "token id must be a number"))?;
    if !s.db.call(move |c| core::revoke_token(c, id)).await? {
        return Err(ApiError::not_found(format!("no API token with id {id}")));
    }
    tracing::info!(token_id = id, by = %auth.principal, "API token revoked");
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Serialize, ToSchema)]
struct ConfigView {
    /// The running configuration.
    #[schema(value_type = Object)]
    config: serde_json::Value,
    /// The file it is read from and written to.
    path: String,
    /// False while the embedded default is in use (the first change creates the file).
    file_exists: bool,
}

fn config_view(s: &AppState) -> Result<ConfigView, ApiError> {
    Ok(ConfigView {
        config: serde_json::to_value(&*s.config.current()).map_err(ApiError::internal)?,
        path: s.config.source().path.display().to_string(),
        file_exists: s.config.source().exists(),
    })
}

/// The running configuration.
#[utoipa::path(get, path = "/api/v1/config", tag = "system",
    security(("session" = []), ("token" = [])),
    responses((status = 200, body = ConfigView), (status = 401, body = ErrorBody)))]
async fn get_config(_auth: AdminAuth, State(s): State<AppState>) -> Result<Json<ConfigView>, ApiError> {
    Ok(Json(config_view(&s)?))
}

#[derive(Serialize, ToSchema)]
struct ConfigChange {
    #[serde(flatten)]
    view: ConfigView,
    report: ApplyReport,
}

/// Change settings with an RFC 7396 merge patch, e.g. `{"log":{"level":"debug"}}`: validated, applied, then
/// written to the file keeping its comments. On error (422 names the key) nothing changes.
#[utoipa::path(patch, path = "/api/v1/config", tag = "system",
    request_body(content = Object, description = "RFC 7396 merge patch of the configuration's JSON form"),
    security(("session" = []), ("token" = [])),
    responses((status = 200, body = ConfigChange), (status = 401, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn patch_config(
    auth: AdminAuth,
    State(s): State<AppState>,
    ApiJson(patch): ApiJson<serde_json::Value>,
) -> Result<Json<ConfigChange>, ApiError> {
    let report = s.config.patch(&patch).await?;
    tracing::info!(by = %auth.principal, change = %patch, "configuration changed through the API");
    Ok(Json(ConfigChange { view: config_view(&s)?, report }))
}

/// Re-read the configuration file (like SIGHUP).
#[utoipa::path(post, path = "/api/v1/config/reload", tag = "system",
    security(("session" = []), ("token" = [])),
    responses((status = 200, body = ConfigChange), (status = 401, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn reload_config(_auth: AdminAuth, State(s): State<AppState>) -> Result<Json<ConfigChange>, ApiError> {
    let report = s.config.reload().await?;
    Ok(Json(ConfigChange { view: config_view(&s)?, report }))
}

/// Used by `hearth healthcheck`: GET `path` on `addr` with a plain HTTP/1.1 request; returns the status code.
pub async fn probe(addr: std::net::SocketAddr, path: &str, timeout: Duration) -> std::io::Result<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let fut = async {
        let mut s = tokio::net::TcpStream::connect(addr).await?;
        let req = format!(
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nUser-Agent: hearth-healthcheck\r\n\r\n"
        );
        s.write_all(req.as_bytes()).await?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await?;
        let text = String::from_utf8_lossy(&buf).to_string();
        let code = text
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| std::io::Error::other("not an HTTP answer"))?;
        let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
        Ok((code, body))
    };
    tokio::time::timeout(timeout, fut).await.map_err(|_| std::io::Error::other("timed out"))?
}
