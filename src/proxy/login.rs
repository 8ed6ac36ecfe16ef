//! Authentication of a proxied request (stage 4, [`Proxy::authenticate`]): a route's basic-auth users, and
//! forward auth — hearth's own login form at `/.hearth/login` on the route's host ([`Proxy::login_page`]) and the
//! `forward` session it sets, checked on every request ([`Proxy::check_session`]).
//!
//! Invariants: every password check goes through the admin login's throttle and its bound on concurrent argon2
//! hashes (one login, `crate::auth::login`); a verified basic-auth header is cached for 5 minutes, keyed by its
//! hash; a forward-auth session is a `forward` session under its own cookie and is refused for users outside the
//! route's `forward_auth_users`; `next` after a login is only a same-origin path; the login form is the only body
//! the proxy buffers (8 KiB at most).

use std::net::IpAddr;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::BodyExt;
use hyper::body::Incoming;

use super::{Proxy, Route, mw, text};
use crate::auth::login::LoginError;
use crate::net::ConnInfo;
use crate::util::Locked;

impl Proxy {
    /// Stage 4: basic auth (when the route lists users), then forward auth (when the route has it): Ok(the
    /// forward-auth user, whose name goes to the backend), or the answer to send (401, 302 to the login form, 403,
    /// 429).
    pub(super) async fn authenticate(
        &self,
        route: &Route,
        req: &Request<Incoming>,
        conn: ConnInfo,
        client: IpAddr,
    ) -> Result<Option<String>, Response<Body>> {
        if !route.basic.is_empty()
            && let Some(denied) = self.check_basic(route, req.headers(), client).await
        {
            return Err(denied);
        }
        if route.cfg.forward_auth {
            return self.check_session(route, req, conn).await.map(Some);
        }
        Ok(None)
    }

    /// Basic auth: anything but a well-formed `Basic` credential of a listed user with the right password gets 401
    /// + `WWW-Authenticate` (no header, another scheme, bad base64, no colon, non-UTF-8, empty user, wrong password).
    async fn check_basic(&self, route: &Route, headers: &HeaderMap, client: IpAddr) -> Option<Response<Body>> {
        let deny = || {
            let mut r = text(StatusCode::UNAUTHORIZED, "401 Unauthorized");
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"hearth\", charset=\"UTF-8\""),
            );
            Some(r)
        };
        let Some(raw) = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) else {
            return deny();
        };
        let Some((user, pw)) = mw::basic_credentials(raw).filter(|(u, _)| !u.is_empty()) else {
            return deny();
        };
        let key = crate::util::sha256_hex(raw);
        let now = Instant::now();
        if route.basic_ok.locked().get(&key).is_some_and(|t| *t > now) {
            return None;
        }
        let hash = route.basic.iter().find(|(u, _)| *u == user).map(|(_, h)| h.clone());
        match self.verify(client, &user, pw, hash).await {
            Ok(true) => {}
            Ok(false) => {
                tracing::warn!(user = crate::auth::log_name(&user), client = %client, route = %route.name, "basic auth failed");
                return deny();
            }
            Err(retry) => return Some(throttled(retry)),
        }
        let mut cache = route.basic_ok.locked();
        if cache.len() > 1000 {
            cache.retain(|_, t| *t > now);
        }
        cache.insert(key, now + Duration::from_secs(300));
        None
    }

    /// A password check through the shared login throttle and the bound on concurrent argon2 hashes; `hash` None
    /// (unknown user) costs the same work. Err: throttled, retry after that many seconds.
    async fn verify(&self, client: IpAddr, user: &str, pw: String, hash: Option<String>) -> Result<bool, u64> {
        self.verifier.verify(client, user, pw, hash, std::time::Instant::now()).await.map_err(|t| t.retry_after_secs)
    }

    /// A forward-auth route's session: Ok(user name), or the answer to send (302 to the login form, 403).
    async fn check_session(
        &self,
        route: &Route,
        req: &Request<Incoming>,
        conn: ConnInfo,
    ) -> Result<String, Response<Body>> {
        let login = || {
            let next = req.uri().path_and_query().map(|p| p.as_str()).unwrap_or("/");
            let loc = format!("/.hearth/login?next={}", urlencode(next));
            let mut r = text(StatusCode::FOUND, "302: please log in");
            r.headers_mut().insert(
                header::LOCATION,
                HeaderValue::try_from(loc).unwrap_or(HeaderValue::from_static("/.hearth/login")),
            );
            r
        };
        let Some(id) = crate::auth::cookie::cookie(req.headers(), crate::auth::cookie::forward_cookie_name(conn.tls))
        else {
            return Err(login());
        };
        let now = crate::util::unix_now();
        let found = self.db.call(move |c| crate::auth::lookup_session(c, &id, now)).await.ok().flatten();
        let Some(s) = found.filter(|s| s.kind == crate::auth::SessionKind::Forward) else {
            return Err(login());
        };
        if !route.cfg.forward_auth_users.is_empty() && !route.cfg.forward_auth_users.contains(&s.user.username) {
            return Err(text(
                StatusCode::FORBIDDEN,
                format!("403 Forbidden: {} may not use this site", s.user.username),
            ));
        }
        Ok(s.user.username)
    }

    /// hearth's own login form on a forward-auth route's host: the session cookie then belongs to that host.
    pub(super) async fn login_page(
        &self,
        route: &Route,
        req: Request<Incoming>,
        conn: ConnInfo,
        client: IpAddr,
    ) -> Response<Body> {
        let next = req
            .uri()
            .query()
            .and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("next=")))
            .map(urldecode)
            .filter(|n| safe_next(n).is_some())
            .unwrap_or_else(|| "/".into());
        let form = |msg: &str| {
            let html = format!(
                "<!doctype html><meta charset=utf-8><meta name=viewport content='width=device-width'><title>Log in · hearth</title>\
                 <style>:root{{color-scheme:light dark;--bg:light-dark(#f6f5f3,#151412);--fg:light-dark(#1d1b19,#ece9e4);\
                 --card:light-dark(#fff,#1f1d1a);--line:light-dark(#e2ded8,#34312c);--muted:light-dark(#6b655e,#a39d94);\
                 --accent:light-dark(#c4521f,#e8763f)}}*{{box-sizing:border-box}}\
                 body{{margin:0;font:15px/1.5 system-ui,sans-serif;background:var(--bg);color:var(--fg);display:grid;\
                 place-items:center;min-height:100vh;padding:1rem}}form{{display:grid;gap:.8rem;width:min(100%,22rem);\
                 background:var(--card);border:1px solid var(--line);border-radius:10px;padding:1.25rem 1.5rem}}\
                 h1{{margin:0;font-size:1.3rem;overflow-wrap:anywhere}}p{{margin:0;color:var(--muted)}}\
                 label{{display:grid;gap:.25rem;font-weight:600}}input{{font:inherit;padding:.5rem .6rem;border-radius:6px;\
                 border:1px solid var(--line);background:var(--bg);color:var(--fg)}}button{{font:inherit;font-weight:600;\
                 padding:.55rem;border:0;border-radius:6px;background:var(--accent);color:#fff;cursor:pointer}}\
                 .e{{color:light-dark(#b42318,#f87171)}}.e:empty{{display:none}}</style>\
                 <form method=post action='/.hearth/login?next={}'><h1>{}</h1><p>Log in with your hearth account.</p>\
                 <p class=e role=alert>{}</p><label>User name<input name=username autocomplete=username required></label>\
                 <label>Password<input name=password type=password autocomplete=current-password required></label><button>Log in</button></form>",
                urlencode(&next),
                html_escape(&route.name),
                html_escape(msg)
            );
            let mut r = Response::new(Body::from(html));
            r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
            r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            r.headers_mut().insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
            r
        };
        if req.uri().path() != "/.hearth/login" {
            return text(StatusCode::NOT_FOUND, "404 Not Found");
        }
        if req.method() == Method::GET {
            return form("");
        }
        if req.method() != Method::POST {
            return text(StatusCode::METHOD_NOT_ALLOWED, "405 Method Not Allowed");
        }
        let agent: String = req
            .headers()
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.chars().take(256).collect())
            .unwrap_or_default();
        let body = match http_body_util::Limited::new(req.into_body(), 8192).collect().await {
            Ok(b) => b.to_bytes(),
            Err(_) => return text(StatusCode::PAYLOAD_TOO_LARGE, "413: the form is too large"),
        };
        let fields: std::collections::HashMap<String, String> = String::from_utf8_lossy(&body)
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (urldecode(k), urldecode(v)))
            .collect();
        let (user, pw) =
            (fields.get("username").cloned().unwrap_or_default(), fields.get("password").cloned().unwrap_or_default());
        let ttl = self.table.load().session_ttl;
        let attempt = crate::auth::login::Attempt {
            username: user,
            password: pw,
            client,
            user_agent: agent,
            ttl_secs: ttl,
            kind: crate::auth::SessionKind::Forward,
        };
        let session = match crate::auth::login::login(&self.db, &self.verifier, attempt).await {
            Ok((_, session)) => session,
            Err(LoginError::Throttled { retry_after_secs }) => {
                let mut r = form(&format!("Too many failed logins: try again in {retry_after_secs} s."));
                *r.status_mut() = StatusCode::TOO_MANY_REQUESTS;
                r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
                return r;
            }
            Err(LoginError::Invalid) => {
                let mut r = form("Wrong user name or password.");
                *r.status_mut() = StatusCode::UNAUTHORIZED;
                return r;
            }
            Err(LoginError::Auth(e)) => {
                tracing::error!(error = %e, "could not check a login");
                return text(StatusCode::INTERNAL_SERVER_ERROR, "500: could not create a session");
            }
        };
        let cookie = crate::auth::cookie::set_forward_cookie(&session.id, ttl, &conn);
        let mut r = text(StatusCode::SEE_OTHER, "303: logged in");
        r.headers_mut().insert(header::LOCATION, HeaderValue::try_from(next).unwrap_or(HeaderValue::from_static("/")));
        if let Ok(v) = HeaderValue::try_from(cookie) {
            r.headers_mut().insert(header::SET_COOKIE, v);
        }
        r
    }
}

/// A same-origin path to go to after login: `/…`, not `//…` (another host), no `\` (browsers read it as `/`),
/// no scheme, no control characters.
fn safe_next(next: &str) -> Option<&str> {
    let ok = next.starts_with('/')
        && !next.starts_with("//")
        && !next.contains('\\')
        && !next.bytes().any(|b| b.is_ascii_control())
        && !next.split(['?', '#']).next().unwrap_or("").contains(':');
    ok.then_some(next)
}

/// 429 for a password check the login throttle refused.
fn throttled(retry_after: u64) -> Response<Body> {
    let mut r = text(StatusCode::TOO_MANY_REQUESTS, "429 Too Many Requests: too many failed logins, wait a little");
    r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(retry_after.max(1)));
    r
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~/".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn urldecode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                let hex = |c: u8| (c as char).to_digit(16);
                match (hex(b[i + 1]), hex(b[i + 2])) {
                    (Some(h), Some(l)) => {
                        out.push((h * 16 + l) as u8);
                        i += 2;
                    }
                    _ => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;").replace('\'', "&#39;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn login_targets_stay_on_the_site() {
        for ok in ["/", "/app/x?y=1", "/a#b"] {
            assert_eq!(safe_next(ok), Some(ok));
        }
        for bad in ["//evil.com", "/\\evil.com", "\\evil.com", "https://evil.com", "/x:y@evil.com", "evil", "/a\nb", ""]
        {
            assert_eq!(safe_next(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn url_coding_round_trips() {
        let s = "/a b/?x=1&y=ä";
        assert_eq!(urldecode(&urlencode(s)), s);
        assert_eq!(urldecode("a+b%2"), "a b%2");
    }
}
