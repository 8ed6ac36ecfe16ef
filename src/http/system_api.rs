//! System routes of the admin API: this machine on the network (the device guide's addresses), and port 53 and
//! systemd-resolved. GET shows whether resolved's stub listener keeps
//! hearth off port 53; POST asks — with the admin's consent, which is the click — for the stub to be turned off
//! or for the change to be undone. hearth runs unprivileged, so the request goes into the data dir for the
//! package's root helper (`hearth-resolved.path` → `hearth system apply-request`); see `sysdns`.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::AppState;
use super::auth::AdminAuth;
use super::error::{ApiError, ApiJson, ErrorBody};
use crate::sysdns::{self, Request, StubState};

pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(resolved_state, resolved_change)).routes(routes!(network))
}

#[derive(Serialize, ToSchema)]
struct NetworkView {
    hostname: String,
    /// `<hostname>.local`, the name the admin answers to on the LAN (mDNS), when the machine has a host name.
    mdns_name: Option<String>,
    /// The addresses devices can reach this machine at, the likeliest LAN address first.
    addresses: Vec<crate::net::LanAddress>,
    /// `dns.listen`, as configured.
    dns_listen: Vec<String>,
    /// The port devices must ask (the first `dns.listen` address that is not loopback-only).
    dns_port: Option<u16>,
    /// Whether some `dns.listen` address is reachable from other devices (not loopback only).
    dns_reachable: bool,
    /// DNS over TLS (`dns.tls_listen`), for Android's "Private DNS".
    dot_port: Option<u16>,
    /// The HTTPS listener: DNS over HTTPS at `/dns-query`, and the admin.
    https_port: Option<u16>,
}

/// This machine on the network: its LAN addresses and the DNS, DoT and HTTPS ports devices are to use (the
/// wizard's "Configure your devices" guide).
#[utoipa::path(get, path = "/api/v1/system/network", tag = "system",
    security(("session" = []), ("token" = [])),
    responses((status = 200, body = NetworkView), (status = 401, body = ErrorBody)))]
async fn network(_auth: AdminAuth, State(s): State<AppState>) -> Json<NetworkView> {
    let cfg = s.config.current();
    let (hostname, found) =
        tokio::task::spawn_blocking(|| (crate::util::host_name(), crate::net::interface_addresses()))
            .await
            .unwrap_or_default();
    let reachable = |a: &&crate::config::ListenAddr| !a.0.ip().is_loopback();
    let first_port = |l: &[crate::config::ListenAddr]| l.iter().find(reachable).or(l.first()).map(|a| a.0.port());
    Json(NetworkView {
        mdns_name: (!hostname.is_empty()).then(|| format!("{hostname}.local")),
        hostname,
        addresses: crate::net::lan_addresses(found),
        dns_listen: cfg.dns.listen.iter().map(|a| a.to_string()).collect(),
        dns_port: first_port(&cfg.dns.listen),
        dns_reachable: cfg.dns.listen.iter().any(|a| reachable(&a)),
        dot_port: first_port(&cfg.dns.tls_listen),
        https_port: first_port(&cfg.server.https_listen),
    })
}

#[derive(Serialize, ToSchema)]
struct ResolvedView {
    #[serde(flatten)]
    state: StubState,
    /// hearth's DNS is configured on port 53 (the production set-up), so the stub is in its way.
    dns_on_port_53: bool,
    /// A request waiting for the root helper (`disable-stub` or `restore`).
    pending: Option<String>,
    /// The helper's answer to the last request: `ok <request> <unix time>` or `error <unix time> <why>`.
    last_result: Option<String>,
}

async fn view(s: &AppState) -> ResolvedView {
    let cfg = s.config.current();
    let dir = cfg.data_dir();
    let dns_on_port_53 = cfg.dns.listen.iter().any(|a| a.0.port() == 53);
    tokio::task::spawn_blocking(move || {
        let read = |f: &str| std::fs::read_to_string(dir.join(f)).ok().map(|t| t.trim().to_string());
        ResolvedView {
            state: sysdns::Host::new("/").state(sysdns::stub_listening()),
            dns_on_port_53,
            pending: read(sysdns::REQUEST_FILE),
            last_result: read(sysdns::RESULT_FILE),
        }
    })
    .await
    .expect("state probe does not panic")
}

/// Port 53 and systemd-resolved on this machine.
#[utoipa::path(get, path = "/api/v1/system/resolved", tag = "system",
    security(("session" = []), ("token" = [])),
    responses((status = 200, body = ResolvedView), (status = 401, body = ErrorBody)))]
async fn resolved_state(_auth: AdminAuth, State(s): State<AppState>) -> Json<ResolvedView> {
    Json(view(&s).await)
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct ResolvedChange {
    /// `disable_stub` (a resolved.conf.d drop-in: DNSStubListener=no, DNS=127.0.0.1) or `restore` (undo it).
    action: String,
}

/// Ask the root helper to turn resolved's stub listener off, or to undo that. Answers 202 with the request
/// pending; the helper restarts systemd-resolved and then hearth, and leaves its result in `last_result`.
#[utoipa::path(post, path = "/api/v1/system/resolved", tag = "system", request_body = ResolvedChange,
    security(("session" = []), ("token" = [])),
    responses((status = 202, body = ResolvedView), (status = 401, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn resolved_change(
    auth: AdminAuth,
    State(s): State<AppState>,
    ApiJson(body): ApiJson<ResolvedChange>,
) -> Result<(StatusCode, Json<ResolvedView>), ApiError> {
    let req = match body.action.as_str() {
        "disable_stub" => Request::DisableStub,
        "restore" => Request::Restore,
        other => {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_input",
                format!("action: {other:?} is neither disable_stub nor restore"),
            ));
        }
    };
    let current = view(&s).await;
    let refusal = match req {
        Request::DisableStub if !current.state.resolved => Some(sysdns::SysDnsError::NotResolved.to_string()),
        Request::Restore if !current.state.changed_by_hearth => Some(sysdns::SysDnsError::NotChanged.to_string()),
        _ => None,
    };
    if let Some(why) = refusal {
        return Err(ApiError::new(StatusCode::CONFLICT, "conflict", why));
    }
    // whole (temporary file + rename), so the path unit never starts the helper on a half-written request
    let dir = s.config.current().data_dir();
    tokio::task::spawn_blocking(move || sysdns::write_request(&dir, req))
        .await
        .map_err(|e| ApiError::internal(format!("writing the request: {e}")))?
        .map_err(|e| ApiError::internal(format!("writing the request: {e}")))?;
    tracing::info!(by = %auth.principal, request = req.as_str(), "systemd-resolved change requested");
    Ok((StatusCode::ACCEPTED, Json(view(&s).await)))
}
