//! The auth extractors (security-critical): a handler that takes [`AdminAuth`] cannot run without an API token with
//! the `admin` scope (`Authorization: Bearer hth_…`) or an admin session cookie; [`ScopedAuth`] (`MemoryAuth`,
//! `DnsReadAuth`) also accepts a token holding that one scope (`GET /metrics` checks its optional `metrics` token
//! itself). Cookie-authenticated writes need the
//! session's CSRF token in `X-CSRF-Token`. Forward-auth sessions (the reverse proxy's login form) never reach the
//! admin API.
//!
//! The admin session cookie is `__Host-hearth_session` over HTTPS (Secure, Path=/, no Domain: no other host and no
//! plain-HTTP page can set or shadow it) and `hearth_session` over plain HTTP.

use std::marker::PhantomData;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{Extensions, HeaderMap, Method, StatusCode, header};

use super::{AppState, error::ApiError};
pub(crate) use crate::auth::cookie::*;
use crate::auth::{self, Scope, SessionKind, TokenInfo};
use crate::net::ConnInfo;
use crate::util::{ct_eq, unix_now};

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub(crate) enum AuthVia {
    Session,
    Token,
}

/// An authenticated admin: an admin session, or a token with the `admin` scope.
#[derive(Debug, Clone)]
pub(crate) struct AdminAuth {
    /// The user name, or `token:<name>` for API tokens.
    pub principal: String,
    pub via: AuthVia,
    /// The session cookie value (for logout) and the session's CSRF token.
    pub session: Option<(String, String)>,
    pub expires_at: Option<i64>,
    /// The logged-in user (sessions only).
    pub user: Option<auth::User>,
    /// The session's public id (sessions only), as listed by `GET /api/v1/auth/sessions`.
    pub session_id: Option<String>,
    /// The token's scopes (tokens only).
    pub scopes: Vec<Scope>,
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, rest) = v.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
}

/// The API token of a request: `Authorization: Bearer hth_…`, or HTTP basic auth with the token as the password
/// (any user name), for clients that speak only basic auth (`promtool query`, some Grafana and exporter setups).
fn token_of(headers: &HeaderMap) -> Option<String> {
    if let Some(t) = bearer(headers) {
        return Some(t.to_string());
    }
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, rest) = v.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = data_encoding::BASE64.decode(rest.trim().as_bytes()).ok()?;
    let (_, password) = std::str::from_utf8(&decoded).ok()?.split_once(':')?;
    password.starts_with("hth_").then(|| password.to_string())
}

fn insufficient_scope(t: &TokenInfo, need: Scope) -> ApiError {
    let has: Vec<&str> = t.scopes.iter().map(|s| s.as_str()).collect();
    ApiError::new(
        StatusCode::FORBIDDEN,
        "insufficient_scope",
        format!("this API token lacks the {need} scope (it has: {})", has.join(", ")),
    )
}

/// Check the bearer token of a request for `scope`: `Ok(None)` without a bearer token, 401 for an unknown token,
/// 403 `insufficient_scope` for one without the scope (`admin` tokens have every scope).
pub(crate) async fn bearer_with_scope(
    headers: &HeaderMap,
    state: &AppState,
    scope: Scope,
) -> Result<Option<TokenInfo>, ApiError> {
    let Some(token) = token_of(headers) else {
        return Ok(None);
    };
    let now = unix_now();
    match state.db.call(move |c| auth::check_token(c, &token, now)).await? {
        Some(t) if t.allows(scope) => Ok(Some(t)),
        Some(t) => Err(insufficient_scope(&t, scope)),
        None => Err(ApiError::new(StatusCode::UNAUTHORIZED, "invalid_token", "the API token is invalid or revoked")),
    }
}

/// Authenticate a request for an endpoint that needs `scope`: a token with that scope (or `admin`), or an admin
/// session (with the CSRF header on unsafe methods). What the extractors run; handlers that serve the public too
/// (`/metrics`, `/readyz`) call it themselves.
pub(crate) async fn authenticate(
    headers: &HeaderMap,
    extensions: &Extensions,
    method: &Method,
    state: &AppState,
    scope: Scope,
) -> Result<AdminAuth, ApiError> {
    if let Some(t) = bearer_with_scope(headers, state, scope).await? {
        return Ok(AdminAuth {
            principal: format!("token:{}", t.name),
            via: AuthVia::Token,
            session: None,
            expires_at: None,
            user: None,
            session_id: None,
            scopes: t.scopes,
        });
    }
    let tls = extensions.get::<ConnInfo>().is_some_and(|c| c.tls);
    let Some(sid) = session_cookie(headers, tls) else {
        return Err(ApiError::unauthenticated("log in or send an API token"));
    };
    let now = unix_now();
    let lookup_id = sid.clone();
    let Some(session) = state.db.call(move |c| auth::lookup_session(c, &lookup_id, now)).await? else {
        return Err(ApiError::unauthenticated("the session has expired; log in again"));
    };
    if session.kind != SessionKind::Admin {
        return Err(ApiError::unauthenticated("this session is for proxied sites only; log in to the admin UI"));
    }
    let safe = matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS);
    if !safe {
        let sent = headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok()).unwrap_or("");
        if !ct_eq(sent, &session.csrf_token) {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "csrf_failed",
                "missing or wrong X-CSRF-Token header for a cookie-authenticated change",
            ));
        }
    }
    Ok(AdminAuth {
        principal: session.user.username.clone(),
        via: AuthVia::Session,
        session: Some((sid, session.csrf_token)),
        expires_at: Some(session.expires_at),
        user: Some(session.user),
        session_id: Some(session.public_id),
        scopes: vec![],
    })
}

impl FromRequestParts<AppState> for AdminAuth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        authenticate(&parts.headers, &parts.extensions, &parts.method, state, Scope::Admin).await
    }
}

/// The scope an endpoint needs, as a type for [`ScopedAuth`].
pub(crate) trait NeedsScope: Send + Sync + 'static {
    const SCOPE: Scope;
}

/// `memory`: embeddings and collections.
pub(crate) struct MemoryScope;
impl NeedsScope for MemoryScope {
    const SCOPE: Scope = Scope::Memory;
}

/// `dns:read`: the read-only DNS endpoints.
pub(crate) struct DnsReadScope;
impl NeedsScope for DnsReadScope {
    const SCOPE: Scope = Scope::DnsRead;
}

/// `metrics`: `/metrics` and the Prometheus-compatible query API.
pub(crate) struct MetricsScope;
impl NeedsScope for MetricsScope {
    const SCOPE: Scope = Scope::Metrics;
}

/// `logs`: the Loki-compatible push and query API.
pub(crate) struct LogsScope;
impl NeedsScope for LogsScope {
    const SCOPE: Scope = Scope::Logs;
}

/// An admin session, or a token holding `S::SCOPE` (or `admin`). Wrong-scope tokens get 403 `insufficient_scope`.
#[derive(Debug, Clone)]
pub(crate) struct ScopedAuth<S> {
    /// The user name, or `token:<name>` for API tokens.
    pub principal: String,
    _scope: PhantomData<fn() -> S>,
}

pub(crate) type MemoryAuth = ScopedAuth<MemoryScope>;
pub(crate) type DnsReadAuth = ScopedAuth<DnsReadScope>;
pub(crate) type MetricsAuth = ScopedAuth<MetricsScope>;
pub(crate) type LogsAuth = ScopedAuth<LogsScope>;

impl<S: NeedsScope> FromRequestParts<AppState> for ScopedAuth<S> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let a = authenticate(&parts.headers, &parts.extensions, &parts.method, state, S::SCOPE).await?;
        Ok(ScopedAuth { principal: a.principal, _scope: PhantomData })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn(tls: bool) -> ConnInfo {
        let a = "127.0.0.1:1".parse().unwrap();
        ConnInfo { peer: a, local: a, tls }
    }

    #[test]
    fn parses_cookie_and_bearer() {
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, "a=1; hearth_session=abc ; b=2".parse().unwrap());
        h.insert(header::AUTHORIZATION, "bearer hth_x".parse().unwrap());
        assert_eq!(session_cookie(&h, false).as_deref(), Some("abc"));
        assert_eq!(cookie(&h, "b").as_deref(), Some("2"));
        assert_eq!(bearer(&h), Some("hth_x"));
        // a token as the password of basic auth (promtool); a basic-auth password that is not a token is not one
        let mut h = HeaderMap::new();
        let basic = |up: &str| format!("Basic {}", data_encoding::BASE64.encode(up.as_bytes())).parse().unwrap();
        h.insert(header::AUTHORIZATION, basic("prom:hth_abc"));
        assert_eq!(token_of(&h).as_deref(), Some("hth_abc"));
        h.insert(header::AUTHORIZATION, basic("alice:secret"));
        assert_eq!(token_of(&h), None);
    }

    #[test]
    fn host_prefixed_cookie_over_https() {
        let c = set_session_cookie("v", 60, &conn(true));
        assert_eq!(c, "__Host-hearth_session=v; Path=/; HttpOnly; SameSite=Strict; Max-Age=60; Secure");
        assert!(!c.to_lowercase().contains("domain"));
        let c = set_session_cookie("v", 60, &conn(false));
        assert_eq!(c, "hearth_session=v; Path=/; HttpOnly; SameSite=Strict; Max-Age=60");
        assert_eq!(
            clear_session_cookie(&conn(true)),
            "__Host-hearth_session=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0; Secure"
        );
    }

    #[test]
    fn tls_requests_read_only_the_host_prefixed_cookie() {
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, "hearth_session=planted; __Host-hearth_session=real".parse().unwrap());
        assert_eq!(session_cookie(&h, true).as_deref(), Some("real"));
        assert_eq!(session_cookie(&h, false).as_deref(), Some("planted"));
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, "hearth_session=planted".parse().unwrap());
        assert_eq!(session_cookie(&h, true), None);
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, "__Host-hearth_session=".parse().unwrap());
        assert_eq!(session_cookie(&h, true), None, "a cleared cookie is no session");
    }

    #[test]
    fn hearth_cookies_are_recognised() {
        for n in ["hearth_session", "__Host-hearth_session", "hearth_fwd", "__Host-hearth_fwd"] {
            assert!(is_hearth_cookie(n), "{n}");
        }
        for n in ["hearth", "session", "__Host-hearth_sessions", "HEARTH_SESSION", "__Secure-hearth_session"] {
            assert!(!is_hearth_cookie(n), "{n}");
        }
        assert_eq!(forward_cookie_name(true), "__Host-hearth_fwd");
        assert_eq!(forward_cookie_name(false), "hearth_fwd");
    }
}
