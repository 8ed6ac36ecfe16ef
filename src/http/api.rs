//! The admin API (`/api/v1`) and the operational endpoints (`/healthz`, `/readyz`, `/metrics`), each documented in
//! the OpenAPI document served at `/api/v1/openapi.json`. Later subsystems add their own route modules here.

use crate::util::Locked;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{Extensions, HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::{AdminAuth, AuthVia, authenticate, clear_session_cookie, set_session_cookie};
use super::error::{ApiError, ApiJson, ErrorBody};
use super::{AdminClient, AppState, ConnInfo};
use crate::auth::login::LoginError;
use crate::auth::verifier::Throttled;
use crate::auth::{self as core, Scope, SessionKind, SessionListing, TokenInfo, User, log_name};
use crate::config::live::ApplyReport;
use crate::supervisor::TaskStatus;
use crate::telemetry::{ProcessStats, Sample};
use crate::util::unix_now;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "hearth admin API",
        description = "Authenticate with the session cookie from `POST /api/v1/auth/login` (`hearth_session` over \
                       HTTP, `__Host-hearth_session` over HTTPS; send its CSRF token in `X-CSRF-Token` on changes) \
                       or with `Authorization: Bearer hth_…` API tokens. A token has scopes: `admin` (everything), \
                       `memory`, `metrics`, `dns:read`, `logs`; an operation's `token` requirement names the scope it needs \
                       besides `admin`. A token without it gets 403 `insufficient_scope`. Errors are \
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

/// The statuses every operation of a kind can answer, added to the finished document (`super::document`, after
/// every route module is in it): the annotations list what a handler decides itself (404 for an unknown id, 409,
/// 412, 422 of its own checks, 429, 503…), this adds what the layers around the handlers answer, so that the
/// document names every status a client can get (`tests/it/openapi.rs` checks it with schemathesis):
///
/// - every operation: 408 (`server.request_timeout`, the limits middleware) and 500 (an unexpected failure);
/// - with a request body: 413 (the body limits of the limits middleware and of the extractor); with a JSON body
///   also 400, 415 and 422 (the `ApiJson` rejections);
/// - with a security requirement: 401 and 403 (`insufficient_scope`, `csrf_failed`);
/// - with a path parameter: 400 in plain text (the front door's path check, or a parameter that does not decode)
///   and 404; 405 when segments follow the parameter (an empty one is collapsed away and leads to another route);
/// - with query parameters: 400 in plain text (a value that does not parse);
/// - every 429, and every 503 error: the `Retry-After` header.
///
/// Error answers are [`ErrorBody`] JSON unless said otherwise.
pub(crate) struct CommonAnswers;

/// One reason an operation can answer `status`; `plain_text`: the answer is `text/plain`, not [`ErrorBody`].
struct Answer {
    status: u16,
    why: &'static str,
    plain_text: bool,
}

const fn json(status: u16, why: &'static str) -> Answer {
    Answer { status, why, plain_text: false }
}

const fn text(status: u16, why: &'static str) -> Answer {
    Answer { status, why, plain_text: true }
}

/// What the layers around the handler make `op` (at `path`) answer.
fn common_answers(path: &str, op: &utoipa::openapi::path::Operation) -> Vec<Answer> {
    use utoipa::openapi::path::ParameterIn;
    let mut out = vec![
        json(408, "`timeout`: the request took longer than `server.request_timeout`"),
        json(500, "`internal`: an unexpected failure; the server log has the details under the error's id"),
    ];
    if let Some(body) = &op.request_body {
        out.push(json(
            413,
            "`payload_too_large`: the body is larger than the limit (`server.max_body_bytes`; \
             `memory.max_body_bytes` for the memory API)",
        ));
        if body.content.contains_key("application/json") {
            out.push(json(400, "`invalid_json`: the body is not JSON"));
            out.push(json(415, "`unsupported_media_type`: the body is not sent as `Content-Type: application/json`"));
            out.push(json(422, "`invalid_input`: the JSON does not have the expected shape"));
        }
    }
    if op.security.as_ref().is_some_and(|s| !s.is_empty()) {
        out.push(json(401, "`unauthenticated`, `invalid_token`: no valid admin session or API token"));
        out.push(json(
            403,
            "`insufficient_scope`: the API token lacks the scope; `csrf_failed`: a session's change without its \
             `X-CSRF-Token`",
        ));
    }
    if let Some((_, after)) = path.split_once('{') {
        out.push(text(
            400,
            "a path refused before routing (a control character, an encoded `/`, a `\\`, `..` above the root) or a \
             path parameter that does not decode: plain text",
        ));
        out.push(json(404, "`not_found`: nothing has this id or name, or the path leads to no route"));
        if after.contains('/') {
            out.push(json(405, "`method_not_allowed`: an empty path parameter leads to another route"));
        }
    }
    if op.parameters.iter().flatten().any(|p| p.parameter_in == ParameterIn::Query) {
        out.push(text(400, "a query parameter that does not parse: plain text"));
    }
    out
}

/// The description of an error status the annotation left without one and no rule of [`common_answers`] covers.
fn default_description(status: &str) -> &'static str {
    match status {
        "400" => "`bad_request`",
        "401" => "`unauthenticated`",
        "403" => "forbidden",
        "404" => "`not_found`",
        "409" => "`conflict`",
        "412" => "`stale_config`: the configuration changed since the `If-Match` ETag was read",
        "413" => "`payload_too_large`",
        "422" => "`invalid_input`, `invalid_config` (with the offending `key`)",
        "429" => "`rate_limited`, `overloaded`: try again after `Retry-After` seconds",
        "503" => "`model_not_ready`: try again after `Retry-After` seconds",
        "504" => "`timeout`: the embedding model did not answer within `memory.request_timeout`",
        _ => "",
    }
}

impl Modify for CommonAnswers {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{Content, Object, Ref, RefOr, Type, header::Header, response::Response};
        for (path, item) in openapi.paths.paths.iter_mut() {
            let ops = [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.options,
                &mut item.head,
                &mut item.patch,
                &mut item.trace,
            ];
            for op in ops.into_iter().flatten() {
                let mut answers: BTreeMap<String, (Vec<&str>, bool, bool)> = BTreeMap::new();
                for a in common_answers(path, op) {
                    let e = answers.entry(a.status.to_string()).or_default();
                    e.0.push(a.why);
                    if a.plain_text {
                        e.2 = true;
                    } else {
                        e.1 = true;
                    }
                }
                for (status, (whys, json, plain_text)) in answers {
                    let r = op.responses.responses.entry(status).or_insert_with(|| RefOr::T(Response::new("")));
                    let RefOr::T(r) = r else { continue };
                    let whys = whys.join("; ");
                    r.description = if r.description.is_empty() { whys } else { format!("{}; {whys}", r.description) };
                    if json && !r.content.contains_key("application/json") {
                        r.content.insert(
                            "application/json".into(),
                            Content::new(Some(RefOr::Ref(Ref::from_schema_name("ErrorBody")))),
                        );
                    }
                    if plain_text && !r.content.contains_key("text/plain") {
                        r.content.insert("text/plain".into(), Content::new(Some(Object::with_type(Type::String))));
                    }
                }
                for (status, r) in op.responses.responses.iter_mut() {
                    let RefOr::T(r) = r else { continue };
                    if !status.starts_with(['4', '5']) {
                        continue;
                    }
                    if r.description.is_empty() {
                        r.description = default_description(status).into();
                    }
                    let is_error = r
                        .content
                        .get("application/json")
                        .and_then(|c| c.schema.as_ref())
                        .is_some_and(|s| matches!(s, RefOr::Ref(r) if r.ref_location.ends_with("/ErrorBody")));
                    if status == "429" || (status == "503" && is_error) {
                        let mut h = Header::new(Object::with_type(Type::Integer));
                        h.description = Some("Seconds to wait before trying again".into());
                        r.headers.entry("Retry-After".into()).or_insert(h);
                    }
                }
            }
        }
    }
}

pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(healthz))
        .routes(routes!(readyz))
        .routes(routes!(metrics))
        .routes(routes!(openapi_json))
        .routes(routes!(setup_state, setup))
        .routes(routes!(login))
        .routes(routes!(logout))
        .routes(routes!(session))
        .routes(routes!(list_sessions))
        .routes(routes!(revoke_session))
        .routes(routes!(change_password))
        .routes(routes!(hash_password))
        .routes(routes!(status))
        .routes(routes!(list_tokens, create_token))
        .routes(routes!(revoke_token))
        .routes(routes!(get_config, patch_config))
        .routes(routes!(reload_config))
        .merge(super::dns_api::routes())
        .merge(super::dns_rules_api::routes())
        .merge(super::proxy_api::routes())
        .merge(super::system_api::routes())
        .merge(super::doh::routes())
        .merge(super::metrics_api::routes())
        .merge(super::alerts_api::routes())
        .merge(super::logs_api::routes())
        .merge(super::traces_api::routes())
}

pub(crate) async fn method_not_allowed() -> ApiError {
    ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "method not allowed on this route")
}

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", tag = "health", responses((status = 200, description = "alive", body = String)))]
async fn healthz() -> &'static str {
    "ok\n"
}

#[derive(Serialize, ToSchema)]
struct Readiness {
    /// True when every subsystem is ready or degraded (the status code says the same: 200 or 503).
    ready: bool,
    /// `ready` or `not_ready`. This and the fields below are shown only to admin clients (`server.admin_allow`)
    /// and to an admin session or a `metrics`/`admin` token.
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    subsystems: Option<BTreeMap<&'static str, TaskStatus>>,
    /// Conditions that do not stop serving but need the owner's attention (e.g. an implausible clock).
    #[serde(skip_serializing_if = "Option::is_none")]
    warnings: Option<Vec<String>>,
}

fn is_admin_client(ext: &Extensions) -> bool {
    ext.get::<AdminClient>().is_some_and(|a| a.0)
}

/// Readiness: 200 when every subsystem serves, 503 otherwise. Admin clients (and callers with an admin session or
/// a `metrics` token) also get each subsystem's state; everybody else gets `{"ready": bool}` only.
#[utoipa::path(get, path = "/readyz", tag = "health", responses(
    (status = 200, body = Readiness), (status = 503, body = Readiness)))]
async fn readyz(State(s): State<AppState>, headers: HeaderMap, ext: Extensions) -> Response {
    let ready = s.health.is_ready();
    let code = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    // (the credential check only when there are credentials: health probes stay cheap)
    let detailed = is_admin_client(&ext)
        || ((headers.contains_key(header::AUTHORIZATION) || headers.contains_key(header::COOKIE))
            && authenticate(&headers, &ext, &Method::GET, &s, Scope::Metrics).await.is_ok());
    if !detailed {
        return (code, Json(Readiness { ready, status: None, subsystems: None, warnings: None })).into_response();
    }
    let mut warnings = vec![];
    if s.config.current().dns.dnssec && !crate::dns::dnssec::Clock::system(crate::build_epoch()).check_times {
        warnings.push(format!(
            "dnssec: the system clock is earlier than this build ({}); signature validity periods are not checked \
             until the clock is set (NTP)",
            crate::BUILD_DATE
        ));
    }
    let body = Readiness {
        ready,
        status: Some(if ready { "ready" } else { "not_ready" }),
        subsystems: Some(s.health.snapshot()),
        warnings: Some(warnings),
    };
    (code, Json(body)).into_response()
}

/// Prometheus metrics (text format 0.0.4): open to admin clients (`server.admin_allow`); other clients need an
/// admin session or a token with the `metrics` scope (401 without, 403 with a token lacking it).
#[utoipa::path(get, path = "/metrics", tag = "health", responses(
    (status = 200, body = String), (status = 401, body = ErrorBody),
    (status = 403, description = "`insufficient_scope`: the API token lacks the `metrics` scope", body = ErrorBody)))]
async fn metrics(State(s): State<AppState>, headers: HeaderMap, ext: Extensions) -> Result<Response, ApiError> {
    if !is_admin_client(&ext) {
        authenticate(&headers, &ext, &Method::GET, &s, Scope::Metrics).await?;
    }
    let body =
        tokio::task::spawn_blocking(move || crate::telemetry::render(s.metrics.as_ref())).await.unwrap_or_default();
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], body).into_response())
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
    /// While setup is needed: `POST /api/v1/setup` wants the one-time setup code hearth printed to its log at
    /// start-up (`journalctl -u hearth | grep setup`), also shown by `hearth admin setup-code` and kept in this file.
    #[serde(skip_serializing_if = "Option::is_none")]
    setup_code_file: Option<String>,
    /// While setup is needed: systemd-resolved's stub listener holds port 53, where hearth's DNS is configured
    /// (the wizard explains it; the fix waits for the admin's consent after login).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    port53_held_by_resolved: bool,
}

/// Whether first-run setup is still needed (and where the setup code is).
#[utoipa::path(get, path = "/api/v1/setup", tag = "auth", responses((status = 200, body = SetupState)))]
async fn setup_state(State(s): State<AppState>) -> Result<Json<SetupState>, ApiError> {
    let n = s.db.call(|c| core::user_count(c)).await?;
    let on_53 = s.config.current().dns.listen.iter().any(|a| a.0.port() == 53);
    let port53_held_by_resolved =
        n == 0 && on_53 && tokio::task::spawn_blocking(crate::sysdns::stub_listening).await.unwrap_or(false);
    let setup_code_file =
        (n == 0).then(|| core::setup_code::path(&s.config.current().data_dir()).display().to_string());
    Ok(Json(SetupState { needs_setup: n == 0, setup_code_file, port53_held_by_resolved }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct Credentials {
    username: String,
    password: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct SetupRequest {
    username: String,
    password: String,
    /// The one-time setup code (`XXXX-XXXX-XXXX`; case, spaces and dashes do not matter).
    #[serde(default)]
    setup_code: Option<String>,
}

fn throttled(t: Throttled, what: &str) -> ApiError {
    let secs = t.retry_after_secs.max(1);
    ApiError {
        retry_after: Some(secs),
        ..ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            format!("too many {what}; try again in {secs} s"),
        )
    }
}

/// Create the first admin account (only while none exists), with the one-time setup code from the log or
/// `hearth admin setup-code`, and log it in (the session cookie, as `POST /api/v1/auth/login` sets it). A missing code is 403 `setup_code_required`, a wrong one 403 `invalid_setup_code`
/// (repeated wrong codes are slowed down like logins: 429).
#[utoipa::path(post, path = "/api/v1/setup", tag = "auth", request_body = SetupRequest, responses(
    (status = 201, body = User),
    (status = 403, description = "`setup_code_required`, `invalid_setup_code`", body = ErrorBody),
    (status = 409, description = "`conflict`: an admin account exists already", body = ErrorBody),
    (status = 422, body = ErrorBody), (status = 429, body = ErrorBody)))]
async fn setup(
    State(s): State<AppState>,
    axum::Extension(conn): axum::Extension<ConnInfo>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<SetupRequest>,
) -> Result<Response, ApiError> {
    if s.db.call(|c| core::user_count(c)).await? > 0 {
        return Err(core::AuthError::AlreadySetUp.into());
    }
    let dir = s.config.current().data_dir();
    let file = core::setup_code::path(&dir);
    let d = dir.clone();
    // the code file is made at start-up; should it have gone missing, a new one is made (and logged) now
    let expected = tokio::task::spawn_blocking(move || core::setup_code::ensure(&d))
        .await
        .map_err(ApiError::internal)?
        .map_err(|e| ApiError::internal(format!("setup code file {}: {e}", file.display())))?;
    let Some(given) = body.setup_code.filter(|c| !c.trim().is_empty()) else {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "setup_code_required",
            format!(
                "enter the setup code: it is in hearth's log (journalctl -u hearth | grep setup), shown by \
                 `sudo hearth admin setup-code`, and in {}",
                file.display()
            ),
        ));
    };
    let (expected, given) = (core::setup_code::normalize(&expected), core::setup_code::normalize(&given));
    match s.verifier.check_setup_code(conn.peer.ip(), &expected, &given, Instant::now()) {
        Err(t) => return Err(throttled(t, "wrong setup codes")),
        Ok(false) => {
            tracing::warn!(client = %conn.peer.ip(), "wrong setup code");
            return Err(ApiError::new(StatusCode::FORBIDDEN, "invalid_setup_code", "the setup code is wrong"));
        }
        Ok(true) => {}
    }
    core::validate_username(&body.username)?;
    core::validate_password(&body.password)?;
    let phc = s.verifier.hash(body.password).await?;
    let name = body.username;
    let ttl = s.config.current().auth.session_ttl.as_std().as_secs() as i64;
    let client = conn.peer.ip().to_string();
    let agent = headers.get(header::USER_AGENT).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    // the wizard goes on as the new admin: the account and its first session are made together
    let (user, sess) =
        s.db.call(move |c| {
            let now = unix_now();
            let user = core::create_first_admin(c, &name, &phc, now)?;
            let sess = core::create_session_with_agent(c, &user, ttl, &client, &agent, now, SessionKind::Admin)?;
            Ok::<_, core::AuthError>((user, sess))
        })
        .await?;
    if let Err(e) = tokio::task::spawn_blocking(move || core::setup_code::remove(&dir))
        .await
        .map_err(|e| e.to_string())
        .and_then(|r| r.map_err(|e| e.to_string()))
    {
        tracing::error!(error = %e, "could not delete the setup code file");
    }
    tracing::info!(user = %user.username, client = %conn.peer.ip(), "first admin account created");
    Ok((StatusCode::CREATED, [(header::SET_COOKIE, set_session_cookie(&sess.id, ttl, &conn))], Json(user))
        .into_response())
}

#[derive(Serialize, ToSchema)]
struct SessionView {
    user: String,
    via: AuthVia,
    /// Send this in `X-CSRF-Token` with every cookie-authenticated change.
    csrf_token: Option<String>,
    expires_at: Option<i64>,
    /// The session's public id (as in `GET /api/v1/auth/sessions`).
    #[serde(skip_serializing_if = "Option::is_none")]
    session_id: Option<String>,
    /// A token's scopes.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    scopes: Vec<Scope>,
}

/// Log in: sets the session cookie (`__Host-hearth_session` over HTTPS, `hearth_session` over HTTP; HttpOnly,
/// SameSite=Strict). Repeated failures are slowed down per client and per user (429 with Retry-After); an attempt
/// counts before its password is checked, so parallel guesses get no more tries.
#[utoipa::path(post, path = "/api/v1/auth/login", tag = "auth", request_body = Credentials, responses(
    (status = 200, body = SessionView),
    (status = 401, description = "`invalid_credentials`: wrong user name or password", body = ErrorBody),
    (status = 429, body = ErrorBody)))]
async fn login(
    State(s): State<AppState>,
    axum::Extension(conn): axum::Extension<ConnInfo>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<Credentials>,
) -> Result<Response, ApiError> {
    let ttl = s.config.current().auth.session_ttl.as_std().as_secs() as i64;
    let attempt = crate::auth::login::Attempt {
        username: body.username,
        password: body.password,
        client: conn.peer.ip(),
        user_agent: headers.get(header::USER_AGENT).and_then(|v| v.to_str().ok()).unwrap_or("").to_string(),
        ttl_secs: ttl,
        kind: SessionKind::Admin,
    };
    let (user, sess) = match crate::auth::login::login(&s.db, &s.verifier, attempt).await {
        Ok(v) => v,
        Err(LoginError::Throttled { retry_after_secs }) => {
            return Err(throttled(Throttled { retry_after_secs }, "failed logins"));
        }
        Err(LoginError::Invalid) => {
            return Err(ApiError::new(StatusCode::UNAUTHORIZED, "invalid_credentials", "wrong user name or password"));
        }
        Err(LoginError::Auth(e)) => return Err(e.into()),
    };
    let view = SessionView {
        user: user.username,
        via: AuthVia::Session,
        csrf_token: Some(sess.csrf_token),
        expires_at: Some(sess.expires_at),
        session_id: Some(sess.public_id),
        scopes: vec![],
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
        session_id: auth.session_id,
        scopes: auth.scopes,
    })
}

/// The live sessions of every account (all accounts are admins): admin UI logins and forward-auth logins of
/// proxied sites, newest first; `current` marks the caller's own.
#[utoipa::path(get, path = "/api/v1/auth/sessions", tag = "auth",
    security(("session" = []), ("token" = [])),
    responses((status = 200, body = [SessionListing]), (status = 401, body = ErrorBody)))]
async fn list_sessions(auth: AdminAuth, State(s): State<AppState>) -> Result<Json<Vec<SessionListing>>, ApiError> {
    let me = auth.session_id;
    Ok(Json(s.db.call(move |c| core::list_sessions(c, None, me.as_deref(), unix_now())).await?))
}

/// End a session by its public id (from `GET /api/v1/auth/sessions`). Ending one's own session logs out.
#[utoipa::path(delete, path = "/api/v1/auth/sessions/{id}", tag = "auth",
    params(("id" = String, Path, description = "the session's public id")),
    security(("session" = []), ("token" = [])),
    responses((status = 204), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn revoke_session(
    auth: AdminAuth,
    State(s): State<AppState>,
    axum::Extension(conn): axum::Extension<ConnInfo>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let target = id.clone();
    if !s.db.call(move |c| core::revoke_session(c, &target, None)).await? {
        return Err(ApiError::not_found("no live session with this id"));
    }
    tracing::info!(session = %log_name(&id), by = %auth.principal, "session revoked");
    if auth.session_id.as_deref() == Some(id.as_str()) {
        return Ok((StatusCode::NO_CONTENT, [(header::SET_COOKIE, clear_session_cookie(&conn))]).into_response());
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct PasswordChange {
    current_password: String,
    new_password: String,
    /// Also revoke the API tokens this user created.
    #[serde(default)]
    revoke_tokens: bool,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct HashRequest {
    password: String,
}

#[derive(Serialize, ToSchema)]
struct Hashed {
    /// The password's argon2id hash (PHC string), e.g. for a route's `basic_auth` (`"user:<hash>"`).
    hash: String,
}

/// Hash a password for a route's basic-auth users (the route editor sends `user:<hash>`, never the password),
/// as `hearth admin hash-password` does. At most two hashes run at once, like logins.
#[utoipa::path(post, path = "/api/v1/auth/hash-password", tag = "auth", request_body = HashRequest,
    security(("session" = []), ("token" = [])),
    responses((status = 200, body = Hashed), (status = 401, body = ErrorBody),
        (status = 422, description = "`invalid_input`: fewer than 8 characters", body = ErrorBody)))]
async fn hash_password(
    _auth: AdminAuth,
    State(s): State<AppState>,
    ApiJson(body): ApiJson<HashRequest>,
) -> Result<Json<Hashed>, ApiError> {
    core::validate_password(&body.password).map_err(|e| ApiError::from(e).with_key("password"))?;
    Ok(Json(Hashed { hash: s.verifier.hash(body.password).await? }))
}

#[derive(Serialize, ToSchema)]
struct PasswordChanged {
    /// How many API tokens were revoked (with `revoke_tokens`).
    revoked_tokens: usize,
}

/// Change the logged-in user's password (a session is needed: tokens have no password). Every session of the
/// user ends, this one included (log in again); with `revoke_tokens` the tokens the user created are revoked too.
#[utoipa::path(post, path = "/api/v1/auth/password", tag = "auth", request_body = PasswordChange,
    security(("session" = []), ("token" = [])),
    responses((status = 200, body = PasswordChanged), (status = 401, body = ErrorBody),
        (status = 403, description = "`session_required`: a token has no password; `invalid_credentials`: the \
                                      current password is wrong", body = ErrorBody),
        (status = 422, body = ErrorBody), (status = 429, body = ErrorBody)))]
async fn change_password(
    auth: AdminAuth,
    State(s): State<AppState>,
    axum::Extension(conn): axum::Extension<ConnInfo>,
    ApiJson(body): ApiJson<PasswordChange>,
) -> Result<Response, ApiError> {
    let Some(user) = auth.user else {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "session_required",
            "log in as the user to change its password (or use `hearth admin set-password`)",
        ));
    };
    core::validate_password(&body.new_password)?;
    let n = user.username.clone();
    let phc = s.db.call(move |c| core::find_user(c, &n)).await?.map(|(_, h)| h);
    let client = conn.peer.ip();
    match s.verifier.verify(client, &user.username, body.current_password, phc, Instant::now()).await {
        Err(t) => return Err(throttled(t, "wrong passwords")),
        Ok(false) => {
            tracing::warn!(user = %user.username, client = %client, "wrong current password when changing it");
            return Err(ApiError::new(StatusCode::FORBIDDEN, "invalid_credentials", "the current password is wrong"));
        }
        Ok(true) => {}
    }
    let phc = s.verifier.hash(body.new_password).await?;
    let (name, revoke) = (user.username.clone(), body.revoke_tokens);
    let revoked_tokens =
        s.db.call(move |c| {
            core::set_password(c, &name, &phc, unix_now())?;
            if revoke { core::revoke_user_tokens(c, &name) } else { Ok(0) }
        })
        .await?;
    tracing::info!(user = %user.username, client = %client, revoked_tokens, "password changed; the user's sessions ended");
    Ok((StatusCode::OK, [(header::SET_COOKIE, clear_session_cookie(&conn))], Json(PasswordChanged { revoked_tokens }))
        .into_response())
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
        series: s.series.locked().samples(),
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
    /// What the token may do: `admin` (everything, the default), `memory`, `metrics`, `dns:read`, `logs`.
    #[serde(default = "admin_scope")]
    scopes: Vec<Scope>,
    /// The token stops working this many days after it is made (1 to 3650); absent: it works until revoked.
    #[serde(default)]
    expires_in_days: Option<u32>,
}

fn admin_scope() -> Vec<Scope> {
    vec![Scope::Admin]
}

#[derive(Serialize, ToSchema)]
struct CreatedToken {
    /// The secret, shown only in this answer.
    token: String,
    info: TokenInfo,
}

/// Create an API token with scopes (default `["admin"]`) and an optional expiry; the answer is the only time its
/// secret is shown. An expired token is refused like a revoked one (401 `invalid_token`) and stays listed.
#[utoipa::path(post, path = "/api/v1/tokens", tag = "tokens", request_body = NewToken,
    security(("session" = []), ("token" = [])),
    responses((status = 201, body = CreatedToken), (status = 401, body = ErrorBody), (status = 409, body = ErrorBody),
        (status = 422, body = ErrorBody)))]
async fn create_token(
    auth: AdminAuth,
    State(s): State<AppState>,
    ApiJson(body): ApiJson<NewToken>,
) -> Result<Response, ApiError> {
    if body.scopes.is_empty() {
        return Err(ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_input", "choose at least one scope"));
    }
    let now = unix_now();
    let expires_at = match body.expires_in_days {
        None => None,
        Some(d @ 1..=3650) => Some(now + 86_400 * i64::from(d)),
        Some(_) => {
            return Err(ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_input", "from 1 to 3650 days")
                .with_key("expires_in_days"));
        }
    };
    let by = auth.principal.clone();
    let scopes = body.scopes;
    let (token, info) =
        s.db.call(move |c| core::create_token(c, body.name.trim(), &scopes, &by, now, expires_at)).await?;
    let scopes: Vec<&str> = info.scopes.iter().map(|s| s.as_str()).collect();
    tracing::info!(token = %info.name, scopes = %scopes.join(","), by = %auth.principal, "API token created");
    Ok((StatusCode::CREATED, Json(CreatedToken { token, info })).into_response())
}

/// Revoke an API token.
#[utoipa::path(delete, path = "/api/v1/tokens/{id}", tag = "tokens",
    params(("id" = i64, Path, description = "token id")),
    security(("session" = []), ("token" = [])),
    responses((status = 204), (status = 400, description = "`invalid_input`: the id is not a number", body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
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
    /// The running configuration; secrets (`tls.dns01_tsig_key`'s key, routes' `basic_auth` hashes) read
    /// `(redacted)` and keep their value when sent back so.
    #[schema(value_type = Object)]
    config: serde_json::Value,
    /// The file it is read from and written to.
    path: String,
    /// False while the embedded default is in use (the first change creates the file).
    file_exists: bool,
}

/// The running configuration with its secrets redacted (`crate::config::redact`; a PATCH that sends them back
/// unchanged keeps them).
fn config_view(s: &AppState) -> Result<ConfigView, ApiError> {
    let mut config = serde_json::to_value(&*s.config.current()).map_err(ApiError::internal)?;
    crate::config::redact(&mut config);
    Ok(ConfigView {
        config,
        path: s.config.source().path.display().to_string(),
        file_exists: s.config.source().exists(),
    })
}

/// The running configuration.
#[utoipa::path(get, path = "/api/v1/config", tag = "system",
    security(("session" = []), ("token" = [])),
    responses((status = 200, body = ConfigView, headers(("ETag" = String, description = "The config's version: send it back in If-Match with a change"))),
        (status = 401, body = ErrorBody)))]
async fn get_config(_auth: AdminAuth, State(s): State<AppState>) -> Result<Response, ApiError> {
    let etag = s.config.etag();
    Ok(([(header::ETAG, etag)], Json(config_view(&s)?)).into_response())
}

#[derive(Serialize, ToSchema)]
struct ConfigChange {
    #[serde(flatten)]
    view: ConfigView,
    report: ApplyReport,
}

/// Change settings with an RFC 7396 merge patch, e.g. `{"log":{"level":"debug"}}`: validated, applied, then
/// written to the file keeping its comments. On error (422 names the key) nothing changes. With `If-Match` (the
/// `ETag` of `GET /api/v1/config`), a change made meanwhile by someone else refuses this one with 412.
#[utoipa::path(patch, path = "/api/v1/config", tag = "system",
    request_body(content = Object, description = "RFC 7396 merge patch of the configuration's JSON form"),
    params(("If-Match" = Option<String>, Header, description = "The ETag the change was made against")),
    security(("session" = []), ("token" = [])),
    responses((status = 200, body = ConfigChange, headers(("ETag" = String))), (status = 401, body = ErrorBody),
        (status = 412, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn patch_config(
    auth: AdminAuth,
    State(s): State<AppState>,
    headers: HeaderMap,
    ApiJson(patch): ApiJson<serde_json::Value>,
) -> Result<Response, ApiError> {
    let if_match = headers.get(header::IF_MATCH).map(|v| v.to_str().unwrap_or("\u{0}"));
    let report = s.config.patch_if(&patch, if_match).await?;
    let mut logged = patch.clone();
    crate::config::redact(&mut logged);
    tracing::info!(by = %auth.principal, change = %logged, "configuration changed through the API");
    let etag = s.config.etag();
    Ok(([(header::ETAG, etag)], Json(ConfigChange { view: config_view(&s)?, report })).into_response())
}

/// Re-read the configuration file (like SIGHUP).
#[utoipa::path(post, path = "/api/v1/config/reload", tag = "system",
    security(("session" = []), ("token" = [])),
    responses((status = 200, body = ConfigChange, headers(("ETag" = String, description = "The new version of the config"))),
        (status = 401, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn reload_config(_auth: AdminAuth, State(s): State<AppState>) -> Result<Response, ApiError> {
    let report = s.config.reload().await?;
    let etag = s.config.etag();
    Ok(([(header::ETAG, etag)], Json(ConfigChange { view: config_view(&s)?, report })).into_response())
}

/// Used by `hearth healthcheck`: GET `path` on `addr` with a plain HTTP/1.1 request; returns the status code.
pub(crate) async fn probe(addr: std::net::SocketAddr, path: &str, timeout: Duration) -> std::io::Result<(u16, String)> {
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
