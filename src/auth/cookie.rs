//! hearth's cookies, one helper for each (security-critical): the admin session cookie is `__Host-hearth_session`
//! over HTTPS (Secure, Path=/, no Domain: no other host and no plain-HTTP page can set or shadow it) and
//! `hearth_session` over plain HTTP; the reverse proxy's forward-auth session is `__Host-hearth_fwd` /
//! `hearth_fwd`. Both are HttpOnly and SameSite=Strict.

use axum::http::{HeaderMap, header};

use crate::net::ConnInfo;

/// The admin session cookie over plain HTTP.
pub(crate) const SESSION_COOKIE: &str = "hearth_session";
/// The admin session cookie over HTTPS.
pub(crate) const SECURE_SESSION_COOKIE: &str = "__Host-hearth_session";
/// The reverse proxy's forward-auth session cookie (plain HTTP / HTTPS).
pub(crate) const FORWARD_COOKIE: &str = "hearth_fwd";
pub(crate) const SECURE_FORWARD_COOKIE: &str = "__Host-hearth_fwd";
pub(crate) const CSRF_HEADER: &str = "x-csrf-token";

/// Whether a cookie is one of hearth's own session cookies (the proxy strips them before forwarding a request).
pub(crate) fn is_hearth_cookie(name: &str) -> bool {
    [SESSION_COOKIE, SECURE_SESSION_COOKIE, FORWARD_COOKIE, SECURE_FORWARD_COOKIE].contains(&name)
}

/// The admin session cookie's name for a connection.
pub(crate) fn session_cookie_name(tls: bool) -> &'static str {
    if tls { SECURE_SESSION_COOKIE } else { SESSION_COOKIE }
}

/// The forward-auth session cookie's name for a connection.
pub(crate) fn forward_cookie_name(tls: bool) -> &'static str {
    if tls { SECURE_FORWARD_COOKIE } else { FORWARD_COOKIE }
}

/// The value of cookie `name`.
pub(crate) fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim().to_string())
}

/// The admin session cookie of a request: over TLS only `__Host-hearth_session` counts (a plain `hearth_session`
/// may have been planted over HTTP or by a sibling host), over plain HTTP `hearth_session`.
pub(crate) fn session_cookie(headers: &HeaderMap, tls: bool) -> Option<String> {
    cookie(headers, session_cookie_name(tls)).filter(|v| !v.is_empty())
}

/// The `SameSite` attribute of a cookie.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SameSite {
    /// The admin session: never sent on a request another site starts.
    Strict,
    /// The forward-auth session: sent when the user follows a link into a route from another site.
    Lax,
}

/// `Set-Cookie` for cookie `name`: HttpOnly, Path=/, Secure over TLS, never a Domain attribute.
pub(crate) fn set_cookie(name: &str, value: &str, max_age: i64, same_site: SameSite, tls: bool) -> String {
    let secure = if tls { "; Secure" } else { "" };
    format!("{name}={value}; Path=/; HttpOnly; SameSite={same_site:?}; Max-Age={max_age}{secure}")
}

/// `Set-Cookie` for a new admin session: `__Host-hearth_session` with Secure over TLS, `hearth_session` over
/// plain HTTP (SameSite=Strict).
pub(crate) fn set_session_cookie(id: &str, max_age: i64, conn: &ConnInfo) -> String {
    set_cookie(session_cookie_name(conn.tls), id, max_age, SameSite::Strict, conn.tls)
}

/// `Set-Cookie` for a new forward-auth session (SameSite=Lax).
pub(crate) fn set_forward_cookie(id: &str, max_age: i64, conn: &ConnInfo) -> String {
    set_cookie(forward_cookie_name(conn.tls), id, max_age, SameSite::Lax, conn.tls)
}

pub(crate) fn clear_session_cookie(conn: &ConnInfo) -> String {
    set_session_cookie("", 0, conn)
}
