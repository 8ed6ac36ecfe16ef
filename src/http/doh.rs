//! DNS over HTTPS (RFC 8484): `GET /dns-query?dns=<base64url>` and `POST /dns-query` with an
//! `application/dns-message` body, answered by the same pipeline as UDP and TCP. Public (no auth), like port 53.
//! A DNS message is at most 65535 bytes: larger bodies (and `dns` parameters) get 413 before more is read — the
//! admin router has no global body limit and its `limits` middleware covers only `/api/` and `/v1/`, so this
//! route bounds its own body.

use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::{ApiError, ErrorBody};
use super::{AppState, ConnInfo, DnsApi};
use crate::dns::Transport;

const DNS_MESSAGE: &str = "application/dns-message";
/// The largest DNS message (its length is a u16 on TCP).
const MAX_MESSAGE: usize = u16::MAX as usize;
/// The longest `dns` parameter: unpadded base64url of [`MAX_MESSAGE`] bytes.
const MAX_PARAM: usize = MAX_MESSAGE.div_ceil(3) * 4;

fn too_large() -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        format!("a DNS message is at most {MAX_MESSAGE} bytes"),
    )
}

pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(doh_get, doh_post))
}

/// A DNS message in wire format (RFC 1035 §4.1), at most 65535 bytes.
#[derive(utoipa::ToSchema)]
#[schema(value_type = String, format = Binary)]
#[allow(dead_code)] // the document's name for the raw body
struct DnsMessage(Vec<u8>);

#[derive(Deserialize, IntoParams)]
struct DohQuery {
    /// The DNS query in wire format, base64url without padding.
    dns: Option<String>,
}

/// DNS over HTTPS, GET form: the query in the `dns` parameter.
#[utoipa::path(get, path = "/dns-query", tag = "dns", params(DohQuery), responses(
    (status = 200, description = "The DNS answer (application/dns-message)", content_type = "application/dns-message"),
    (status = 400, body = ErrorBody), (status = 413, body = ErrorBody)))]
async fn doh_get(
    State(s): State<DnsApi>,
    axum::Extension(conn): axum::Extension<ConnInfo>,
    Query(q): Query<DohQuery>,
) -> Result<Response, ApiError> {
    let Some(b64) = q.dns else {
        return Err(ApiError::bad_request("missing_dns", "the dns parameter (a base64url DNS message) is required"));
    };
    if b64.len() > MAX_PARAM {
        return Err(too_large());
    }
    let msg = data_encoding::BASE64URL_NOPAD
        .decode(b64.trim_end_matches('=').as_bytes())
        .map_err(|_| ApiError::bad_request("invalid_dns", "the dns parameter is not base64url"))?;
    answer(&s, &conn, &msg).await
}

/// DNS over HTTPS, POST form: the query is the body.
#[utoipa::path(post, path = "/dns-query", tag = "dns", request_body(content = DnsMessage, content_type = "application/dns-message"),
    responses(
        (status = 200, description = "The DNS answer (application/dns-message)", content_type = "application/dns-message"),
        (status = 400, body = ErrorBody), (status = 413, body = ErrorBody), (status = 415, body = ErrorBody)))]
async fn doh_post(
    State(s): State<DnsApi>,
    axum::Extension(conn): axum::Extension<ConnInfo>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let ct = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    if !ct.starts_with(DNS_MESSAGE) {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            format!("the body must be {DNS_MESSAGE}"),
        ));
    }
    // a declared length too large is refused before a byte of the body is read; an undeclared (chunked) one is
    // read up to the limit and no further
    let declared =
        headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_MESSAGE as u64) {
        return Err(too_large());
    }
    let body = match http_body_util::BodyExt::collect(http_body_util::Limited::new(body, MAX_MESSAGE)).await {
        Ok(b) => b.to_bytes(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => return Err(too_large()),
        Err(_) => return Err(ApiError::bad_request("invalid_body", "the request body could not be read")),
    };
    answer(&s, &conn, &body).await
}

async fn answer(s: &DnsApi, conn: &ConnInfo, msg: &[u8]) -> Result<Response, ApiError> {
    if msg.len() < 12 || msg.len() > usize::from(u16::MAX) {
        return Err(ApiError::bad_request("invalid_dns", "not a DNS message"));
    }
    // RFC 8484 §4.1: clients should use id 0 (for HTTP caching); the answer echoes whatever id was sent
    let Some(resp) = s.dns.handle(msg, conn.peer.ip(), Transport::Https).await else {
        return Err(ApiError::bad_request("invalid_dns", "not a DNS query"));
    };
    let max_age =
        crate::dns::wire::parse_response(&resp).ok().and_then(|i| i.min_answer_ttl.or(i.negative_ttl)).unwrap_or(0);
    Ok(([(header::CONTENT_TYPE, DNS_MESSAGE.to_string()), (header::CACHE_CONTROL, format!("max-age={max_age}"))], resp)
        .into_response())
}
