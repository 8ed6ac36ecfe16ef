//! The auth extractor (security-critical): a handler that takes [`AdminAuth`] cannot run without a valid API token
//! (`Authorization: Bearer hth_…`) or session cookie; cookie-authenticated writes also need the session's CSRF token
//! in `X-CSRF-Token`.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, StatusCode, header};

use super::{AppState, ConnInfo, error::ApiError};
use crate::auth;
use crate::util::{ct_eq, unix_now};

pub const SESSION_COOKIE: &str = "hearth_session";
pub const CSRF_HEADER: &str = "x-csrf-token";

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum AuthVia {
    Session,
    Token,
}

/// An authenticated admin.
#[derive(Debug, Clone)]
pub struct AdminAuth {
    /// The user name, or `token:<name>` for API tokens.
    pub principal: String,
    pub via: AuthVia,
    /// The session cookie value (for logout) and the session's CSRF token.
    pub session: Option<(String, String)>,
    pub expires_at: Option<i64>,
}

pub fn session_cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == SESSION_COOKIE)
        .map(|(_, v)| v.to_string())
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, rest) = v.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
}

impl FromRequestParts<AppState> for AdminAuth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let now = unix_now();
        if let Some(token) = bearer(&parts.headers) {
            let token = token.to_string();
            let found = state.db.call(move |c| auth::check_token(c, &token, now)).await?;
            return match found {
                Some(t) => Ok(AdminAuth {
                    principal: format!("token:{}", t.name),
                    via: AuthVia::Token,
                    session: None,
                    expires_at: None,
                }),
                None => {
                    Err(ApiError::new(StatusCode::UNAUTHORIZED, "invalid_token", "the API token is invalid or revoked"))
                }
            };
        }
        let Some(sid) = session_cookie(&parts.headers) else {
            return Err(ApiError::unauthenticated("log in or send an API token"));
        };
        let lookup_id = sid.clone();
        let Some(session) = state.db.call(move |c| auth::lookup_session(c, &lookup_id, now)).await? else {
            return Err(ApiError::unauthenticated("the session has expired; log in again"));
        };
        let safe = matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS);
        if !safe {
            let sent = parts.headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok()).unwrap_or("");
            if !ct_eq(sent, &session.csrf_token) {
                return Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    "csrf_failed",
                    "missing or wrong X-CSRF-Token header for a cookie-authenticated change",
                ));
            }
        }
        Ok(AdminAuth {
            principal: session.user.username,
            via: AuthVia::Session,
            session: Some((sid, session.csrf_token)),
            expires_at: Some(session.expires_at),
        })
    }
}

/// `Set-Cookie` for a new session (Secure when the request came over TLS).
pub fn set_session_cookie(id: &str, max_age: i64, conn: &ConnInfo) -> String {
    let secure = if conn.tls { "; Secure" } else { "" };
    format!("{SESSION_COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}")
}

pub fn clear_session_cookie(conn: &ConnInfo) -> String {
    set_session_cookie("", 0, conn)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_cookie_and_bearer() {
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, "a=1; hearth_session=abc ; b=2".parse().unwrap());
        h.insert(header::AUTHORIZATION, "bearer hth_x".parse().unwrap());
        assert_eq!(session_cookie(&h).as_deref(), Some("abc"));
        assert_eq!(bearer(&h), Some("hth_x"));
        let c = set_session_cookie("v", 60, &ConnInfo { peer: "127.0.0.1:1".parse().unwrap(), tls: true });
        assert_eq!(c, "hearth_session=v; Path=/; HttpOnly; SameSite=Strict; Max-Age=60; Secure");
    }
}
