//! HTTPS-front routes of the admin API: proxy routes (list with backend health, create, replace, delete — all
//! through the config transaction), a live "test upstream" probe, certificates (ACME state with the CA's own
//! errors, renew now), and the internal CA's root certificate (`/ca.crt`, public: it holds no secret).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::auth::AdminAuth;
use super::error::{ApiError, ApiJson, ErrorBody};
use super::{AppState, ProxyApi};
use crate::config::{ConfigError, ProxyRoute};
use crate::proxy::pool::UpstreamStatus;
use crate::tls::acme::CertStatus;

pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_routes, create_route))
        .routes(routes!(replace_route, patch_route, delete_route))
        .routes(routes!(test_upstream))
        .routes(routes!(access_log))
        .routes(routes!(certificates))
        .routes(routes!(renew_certificate))
        .routes(routes!(ca_certificate))
        .routes(routes!(preflight))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct PreflightRequest {
    /// The public name a route wants an ACME certificate for.
    name: String,
}

#[derive(Serialize, ToSchema)]
struct Check {
    ok: bool,
    /// What was found, in words, and what to do about it.
    detail: String,
}

#[derive(Serialize, ToSchema)]
struct Preflight {
    name: String,
    /// The addresses public DNS gives for the name (through hearth's resolver: its upstreams or recursion).
    #[schema(value_type = Vec<String>)]
    addresses: Vec<std::net::IpAddr>,
    /// The name resolves to a public address.
    dns: Check,
    /// HTTP-01: port 80 of that address reaches hearth (a probe token hearth serves, asked over the address).
    http: Check,
    /// TLS-ALPN-01 and the site itself: port 443 of that address accepts connections.
    https: Check,
}

/// Whether an address is one a public CA can reach (not loopback, private, link-local or shared).
fn is_public(ip: std::net::IpAddr) -> bool {
    match ip {
        std::net::IpAddr::V4(v4) => {
            // 100.64.0.0/10: carrier-grade NAT, shared, not reachable from the internet
            let shared = v4.octets()[0] == 100 && (64..128).contains(&v4.octets()[1]);
            !(v4.is_loopback() || v4.is_private() || v4.is_link_local() || v4.is_unspecified() || shared)
        }
        std::net::IpAddr::V6(v6) => {
            !(v6.is_loopback() || v6.is_unspecified() || v6.is_unique_local() || v6.is_unicast_link_local())
        }
    }
}

/// Pre-flight check for ACME (Nginx Proxy Manager's "test server reachability"): does the name resolve to a public
/// address, and do ports 80 and 443 of that address reach hearth? Asked from hearth itself, so a router without NAT
/// loopback can make the port checks fail although the CA would get through; the answer says so.
#[utoipa::path(post, path = "/api/v1/tls/preflight", tag = "proxy", request_body = PreflightRequest,
    security(("session" = []), ("token" = [])),
    responses((status = 200, body = Preflight), (status = 401, body = ErrorBody),
        (status = 422, description = "`invalid_input`: not a domain name, or a local name (hearth's CA certifies those)",
            body = ErrorBody)))]
async fn preflight(
    _auth: AdminAuth,
    State(s): State<AppState>,
    ApiJson(req): ApiJson<PreflightRequest>,
) -> Result<Json<Preflight>, ApiError> {
    use reqwest::dns::Resolve;
    let cfg = s.config.current();
    let name = crate::dns::blocklist::normalize_domain(req.name.trim()).ok_or_else(|| {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_input", "not a domain name").with_key("name")
    })?;
    if crate::net::is_local_name(&name, &cfg.dns.local_domains) {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_input",
            format!("{name} is a local name: no public CA certifies it, hearth's own CA does"),
        )
        .with_key("name"));
    }
    let resolver = crate::dns::SelfResolver(s.dns.dns.clone());
    let looked_up = match name.parse::<reqwest::dns::Name>() {
        Ok(n) => tokio::time::timeout(std::time::Duration::from_secs(10), resolver.resolve(n))
            .await
            .map_err(|_| "no answer within 10 s".to_string())
            .and_then(|r| r.map_err(|e| e.to_string())),
        Err(e) => Err(e.to_string()),
    };
    let addresses: Vec<std::net::IpAddr> = match looked_up {
        Ok(addrs) => addrs.map(|a| a.ip()).collect(),
        Err(ref e) => {
            let why = e.clone();
            let skipped = || Check { ok: false, detail: "not checked: the name must resolve first".into() };
            return Ok(Json(Preflight {
                dns: Check {
                    ok: false,
                    detail: format!(
                        "{name} does not resolve in public DNS ({why}): create an A (or AAAA) record for it pointing at your public address"
                    ),
                },
                http: skipped(),
                https: skipped(),
                name,
                addresses: vec![],
            }));
        }
    };
    let skipped = |why: &str| Check { ok: false, detail: format!("not checked: {why}") };
    let private: Vec<String> = addresses.iter().filter(|a| !is_public(**a)).map(|a| a.to_string()).collect();
    let Some(addr) = addresses.iter().copied().find(|a| is_public(*a)) else {
        let detail = if addresses.is_empty() {
            format!("{name} has no address record: create an A (or AAAA) record pointing at your public address")
        } else {
            format!(
                "{name} resolves to {}, a private address: the CA looks it up in public DNS and must reach a public \
                 address (a local DNS record can hide the public one from this check)",
                private.join(", ")
            )
        };
        return Ok(Json(Preflight {
            dns: Check { ok: false, detail },
            http: skipped("the name must resolve to a public address first"),
            https: skipped("the name must resolve to a public address first"),
            name,
            addresses,
        }));
    };
    let dns = Check { ok: true, detail: format!("{name} resolves to {addr}") };
    // port 80: a probe token hearth serves, asked over the public address
    let (guard, token, answer) = s.proxy.proxy.acme.probe();
    let client = reqwest::Client::builder()
        .resolve(&name, std::net::SocketAddr::new(addr, 80))
        .timeout(std::time::Duration::from_secs(5))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(ApiError::internal)?;
    let loopback =
        "checked from hearth itself: a router without NAT loopback fails this although the CA may get through";
    let http = match client.get(format!("http://{name}/.well-known/acme-challenge/{token}")).send().await {
        Ok(r) => {
            let status = r.status();
            let body = r.text().await.unwrap_or_default();
            if status.is_success() && body.trim() == answer {
                Check { ok: true, detail: format!("port 80 of {addr} reaches hearth") }
            } else {
                Check {
                    ok: false,
                    detail: format!(
                        "port 80 of {addr} answers, but not as hearth (status {status}): is it forwarded to another machine?"
                    ),
                }
            }
        }
        Err(e) => Check {
            ok: false,
            detail: format!(
                "port 80 of {addr} did not answer ({}): forward port 80 of your router to this machine ({loopback})",
                crate::util::error_chain(&e)
            ),
        },
    };
    drop(guard);
    let https = match tokio::time::timeout(
        std::time::Duration::from_secs(5),
        tokio::net::TcpStream::connect(std::net::SocketAddr::new(addr, 443)),
    )
    .await
    {
        Ok(Ok(_)) => Check { ok: true, detail: format!("port 443 of {addr} accepts connections") },
        Ok(Err(e)) => Check {
            ok: false,
            detail: format!(
                "port 443 of {addr} refused or failed ({e}): forward port 443 to this machine ({loopback})"
            ),
        },
        Err(_) => Check {
            ok: false,
            detail: format!(
                "port 443 of {addr} did not answer within 5 s: forward port 443 to this machine ({loopback})"
            ),
        },
    };
    Ok(Json(Preflight { name, addresses, dns, http, https }))
}

#[derive(Serialize, ToSchema)]
pub(crate) struct RouteView {
    /// The route's id for `PUT`/`PATCH`/`DELETE /api/v1/proxy/routes/{id}`: derived from its hosts and path prefix,
    /// so it stays the same when other routes are added or removed (changing the hosts or prefix gives a new id).
    pub id: String,
    /// Its place in `proxy.routes` (informational: it shifts when routes before it are removed).
    pub index: usize,
    /// The route as in hearth.toml, with its `basic_auth` hashes redacted (`user:(redacted)`; sent back as they
    /// are, they keep their value).
    #[schema(value_type = Object)]
    pub route: serde_json::Value,
    pub upstreams: Vec<UpstreamStatus>,
}

/// Proxy routes with the live state of their backends.
#[utoipa::path(get, path = "/api/v1/proxy/routes", tag = "proxy",
    security(("session" = []), ("token" = [])),
    responses((status = 200, body = [RouteView]), (status = 401, body = ErrorBody)))]
async fn list_routes(_auth: AdminAuth, State(s): State<ProxyApi>) -> Json<Vec<RouteView>> {
    let table = s.proxy.table.load();
    let now = std::time::Instant::now();
    Json(
        table
            .routes
            .iter()
            .enumerate()
            .map(|(index, r)| {
                let mut route = serde_json::to_value(&r.cfg).unwrap_or_default();
                crate::config::redact_route(&mut route);
                RouteView { id: r.cfg.id(), index, route, upstreams: r.pool.status(now) }
            })
            .collect(),
    )
}

/// Change `proxy.routes` with `f` inside the config transaction (atomic against concurrent edits).
async fn edit_routes(
    s: &ProxyApi,
    who: &str,
    what: &str,
    f: impl FnOnce(&mut Vec<ProxyRoute>) -> Result<(), ConfigError>,
) -> Result<(), ApiError> {
    let (n, _) = s
        .config
        .edit(|cfg| {
            f(&mut cfg.proxy.routes)?;
            Ok(cfg.proxy.routes.len())
        })
        .await?;
    tracing::info!(by = who, routes = n, what, "proxy routes changed through the API");
    Ok(())
}

/// A route from its JSON form; errors name the key as `proxy.routes[i].…`.
fn parse_route(mut v: serde_json::Value, current: &[ProxyRoute], i: usize) -> Result<ProxyRoute, ConfigError> {
    crate::config::unredact_route(&mut v, current);
    serde_path_to_error::deserialize(v)
        .map_err(|e| ConfigError::invalid(format!("proxy.routes[{i}].{}", e.path()), e.inner().to_string()))
}

fn position(routes: &[ProxyRoute], id: &str) -> Result<usize, ConfigError> {
    routes.iter().position(|r| r.id() == id).ok_or_else(|| ConfigError::NotFound(format!("there is no route {id}")))
}

/// Add a route (validated, applied and written to hearth.toml, or refused with the key at fault).
#[utoipa::path(post, path = "/api/v1/proxy/routes", tag = "proxy", request_body = Object,
    security(("session" = []), ("token" = [])),
    responses((status = 201, body = [RouteView]), (status = 401, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn create_route(
    auth: AdminAuth,
    State(s): State<ProxyApi>,
    ApiJson(v): ApiJson<serde_json::Value>,
) -> Result<(StatusCode, Json<Vec<RouteView>>), ApiError> {
    edit_routes(&s, &auth.principal, "created", |routes| {
        let route = parse_route(v, routes, routes.len())?;
        routes.push(route);
        Ok(())
    })
    .await?;
    Ok((StatusCode::CREATED, list_routes(auth, State(s)).await))
}

/// Replace route `id` with the route sent, whole: keys left out take their defaults (send what
/// `GET /api/v1/proxy/routes` gave, changed; or use `PATCH` to change some keys only).
#[utoipa::path(put, path = "/api/v1/proxy/routes/{id}", tag = "proxy", request_body = Object,
    params(("id" = String, Path)), security(("session" = []), ("token" = [])),
    responses((status = 200, body = [RouteView]), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn replace_route(
    auth: AdminAuth,
    State(s): State<ProxyApi>,
    Path(id): Path<String>,
    ApiJson(v): ApiJson<serde_json::Value>,
) -> Result<Json<Vec<RouteView>>, ApiError> {
    edit_routes(&s, &auth.principal, "replaced", |routes| {
        let i = position(routes, &id)?;
        routes[i] = parse_route(v, routes, i)?;
        Ok(())
    })
    .await?;
    Ok(list_routes(auth, State(s)).await)
}

/// Change some keys of route `id` (RFC 7396 merge patch of its JSON form): every key not sent keeps its value.
#[utoipa::path(patch, path = "/api/v1/proxy/routes/{id}", tag = "proxy", request_body = Object,
    params(("id" = String, Path)), security(("session" = []), ("token" = [])),
    responses((status = 200, body = [RouteView]), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn patch_route(
    auth: AdminAuth,
    State(s): State<ProxyApi>,
    Path(id): Path<String>,
    ApiJson(patch): ApiJson<serde_json::Value>,
) -> Result<Json<Vec<RouteView>>, ApiError> {
    if !patch.is_object() {
        return Err(ApiError::bad_request("invalid_patch", "a route change must be a JSON object (RFC 7396)"));
    }
    edit_routes(&s, &auth.principal, "changed", |routes| {
        let i = position(routes, &id)?;
        let mut merged =
            serde_json::to_value(&routes[i]).map_err(|e| ConfigError::invalid("proxy.routes", e.to_string()))?;
        crate::config::merge_patch(&mut merged, &patch);
        routes[i] = parse_route(merged, routes, i)?;
        Ok(())
    })
    .await?;
    Ok(list_routes(auth, State(s)).await)
}

/// Delete route `id`.
#[utoipa::path(delete, path = "/api/v1/proxy/routes/{id}", tag = "proxy",
    params(("id" = String, Path)), security(("session" = []), ("token" = [])),
    responses((status = 200, body = [RouteView]), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn delete_route(
    auth: AdminAuth,
    State(s): State<ProxyApi>,
    Path(id): Path<String>,
) -> Result<Json<Vec<RouteView>>, ApiError> {
    edit_routes(&s, &auth.principal, "deleted", |routes| {
        let i = position(routes, &id)?;
        routes.remove(i);
        Ok(())
    })
    .await?;
    Ok(list_routes(auth, State(s)).await)
}

#[derive(Deserialize, utoipa::IntoParams)]
pub(crate) struct AccessQuery {
    /// Only this route (its label: first host + path prefix).
    pub route: Option<String>,
    /// At most this many entries (default 200, at most 1000).
    pub limit: Option<usize>,
}

/// The most recent proxied requests (newest first; the last 1000 are kept in memory).
#[utoipa::path(get, path = "/api/v1/proxy/access-log", tag = "proxy", params(AccessQuery),
    security(("session" = []), ("token" = [])),
    responses((status = 200, body = [crate::proxy::AccessEntry]), (status = 401, body = ErrorBody)))]
async fn access_log(
    _auth: AdminAuth,
    State(s): State<ProxyApi>,
    axum::extract::Query(q): axum::extract::Query<AccessQuery>,
) -> Json<Vec<crate::proxy::AccessEntry>> {
    Json(s.proxy.access_log(q.route.as_deref(), q.limit.unwrap_or(200).min(1000)))
}

#[derive(Deserialize, ToSchema)]
pub(crate) struct TestUpstream {
    pub url: String,
    #[serde(default = "slash")]
    pub path: String,
}

fn slash() -> String {
    "/".into()
}

#[derive(Serialize, ToSchema)]
pub(crate) struct TestResult {
    pub ok: bool,
    pub status: Option<u16>,
    pub latency_ms: Option<f64>,
    pub error: Option<String>,
}

/// Try a backend now: one GET, with the status or the exact connection error.
#[utoipa::path(post, path = "/api/v1/proxy/test-upstream", tag = "proxy", request_body = TestUpstream,
    security(("session" = []), ("token" = [])),
    responses((status = 200, body = TestResult), (status = 401, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn test_upstream(
    _auth: AdminAuth,
    State(s): State<ProxyApi>,
    ApiJson(t): ApiJson<TestUpstream>,
) -> Result<Json<TestResult>, ApiError> {
    crate::proxy::pool::UpstreamAddr::parse(&t.url)
        .map_err(|e| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_input", format!("url: {e}")))?;
    if !t.path.starts_with('/') {
        return Err(ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_input", "path: must start with /"));
    }
    Ok(Json(match s.proxy.probe(&t.url, &t.path).await {
        Ok((status, ms)) => TestResult {
            ok: status < 500,
            status: Some(status),
            latency_ms: Some((ms * 10.0).round() / 10.0),
            error: None,
        },
        Err(e) => TestResult { ok: false, status: None, latency_ms: None, error: Some(e) },
    }))
}

#[derive(Serialize, ToSchema)]
pub(crate) struct CertificatesView {
    /// ACME-managed names.
    pub acme: Vec<CertStatus>,
    pub acme_directory: String,
    pub internal_ca: bool,
    /// SHA-256 fingerprint of the internal root, to compare when installing it.
    pub internal_root_sha256: Option<String>,
}

/// Certificates: every ACME name with validity, next renewal and the CA's last error; the internal CA.
#[utoipa::path(get, path = "/api/v1/tls/certificates", tag = "proxy",
    security(("session" = []), ("token" = [])),
    responses((status = 200, body = CertificatesView), (status = 401, body = ErrorBody)))]
async fn certificates(_auth: AdminAuth, State(s): State<ProxyApi>) -> Json<CertificatesView> {
    let cfg = s.config.current();
    let root = s.certs.root_pem().and_then(|pem| {
        use rustls::pki_types::pem::PemObject;
        use sha2::Digest;
        let der = rustls::pki_types::CertificateDer::from_pem_slice(pem.as_bytes()).ok()?;
        let d = sha2::Sha256::digest(der.as_ref());
        Some(d.iter().map(|b| format!("{b:02X}")).collect::<Vec<_>>().join(":"))
    });
    Json(CertificatesView {
        acme: s.proxy.acme.status(&cfg).await,
        acme_directory: cfg.tls.acme_directory.clone(),
        internal_ca: cfg.tls.internal_ca,
        internal_root_sha256: root,
    })
}

/// Order a new certificate for `name` now (after a fix, or to test).
#[utoipa::path(post, path = "/api/v1/tls/certificates/{name}/renew", tag = "proxy",
    params(("name" = String, Path)), security(("session" = []), ("token" = [])),
    responses((status = 202), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn renew_certificate(
    auth: AdminAuth,
    State(s): State<ProxyApi>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    let cfg = s.config.current();
    let acme = s.proxy.acme.clone();
    let n = name.clone();
    let known = tokio::task::spawn_blocking(move || acme.renew(&cfg, &n)).await.map_err(ApiError::internal)?;
    if !known {
        return Err(ApiError::new(StatusCode::NOT_FOUND, "not_found", format!("{name} has no ACME certificate")));
    }
    tracing::info!(by = %auth.principal, name, "certificate renewal requested");
    Ok(StatusCode::ACCEPTED)
}

/// The internal CA's root certificate (PEM), to install on phones and computers.
#[utoipa::path(get, path = "/ca.crt", tag = "proxy",
    responses((status = 200, content_type = "application/x-x509-ca-cert"), (status = 404, body = ErrorBody)))]
async fn ca_certificate(State(s): State<ProxyApi>) -> Result<Response, ApiError> {
    let pem = s.certs.root_pem().ok_or_else(|| {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", "the internal CA is switched off (tls.internal_ca)")
    })?;
    let mut r = pem.into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/x-x509-ca-cert"));
    h.insert(header::CONTENT_DISPOSITION, HeaderValue::from_static("attachment; filename=\"hearth-root-ca.crt\""));
    Ok(r)
}
