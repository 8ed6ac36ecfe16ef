//! The embedded web UI (`web/dist`, built by `build.rs`): correct content types, precompressed brotli/gzip
//! variants, ETags, long cache for hashed assets, and `index.html` for the UI's client-side routes.
//! `HEARTH_WEB_DIR=web/dist` serves the files from disk instead (UI development).

use std::borrow::Cow;

use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::error::ApiError;

/// When the embedded UI was built (keeps the crate's fingerprint tied to `web/dist`, see build.rs).
pub(crate) const WEB_BUILD: &str = env!("HEARTH_WEB_BUILD");

#[derive(rust_embed::RustEmbed)]
#[folder = "web/dist"]
#[exclude = ".build-stamp"]
struct Assets;

struct Asset {
    data: Cow<'static, [u8]>,
    etag: String,
}

fn load(path: &str) -> Option<Asset> {
    if let Ok(dir) = std::env::var("HEARTH_WEB_DIR") {
        if path.split('/').any(|seg| seg == "..") {
            return None;
        }
        let data = std::fs::read(std::path::Path::new(&dir).join(path)).ok()?;
        let etag = format!("\"{}\"", &crate::util::sha256_hex(&String::from_utf8_lossy(&data))[..16]);
        return Some(Asset { data: Cow::Owned(data), etag });
    }
    let f = Assets::get(path)?;
    let etag = format!("\"{}\"", &data_encoding::HEXLOWER.encode(&f.metadata.sha256_hash())[..16]);
    Some(Asset { data: f.data, etag })
}

fn accepts(headers: &HeaderMap, enc: &str) -> bool {
    headers.get_all(header::ACCEPT_ENCODING).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(',')).any(
        |e| {
            let mut it = e.split(';');
            let name = it.next().unwrap_or("").trim();
            let q0 = it.any(|p| p.trim().replace(' ', "") == "q=0");
            name.eq_ignore_ascii_case(enc) && !q0
        },
    )
}

pub(crate) async fn serve(req: Request) -> Response {
    let path = req.uri().path().trim_start_matches('/').to_string();
    if path.starts_with("api/") {
        return ApiError::not_found("no such API route").into_response();
    }
    let is_file = path.rsplit('/').next().is_some_and(|last| last.contains('.'));
    let (name, asset) = match load(&path).filter(|_| !path.is_empty()) {
        Some(a) => (path.clone(), a),
        // client-side routes get the app shell; missing files are 404
        None if !is_file => match load("index.html") {
            Some(a) => ("index.html".to_string(), a),
            None => return (StatusCode::SERVICE_UNAVAILABLE, "web UI not built").into_response(),
        },
        None => return (StatusCode::NOT_FOUND, "not found").into_response(),
    };
    let headers = req.headers();
    if headers.get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok()) == Some(asset.etag.as_str()) {
        return (StatusCode::NOT_MODIFIED, [(header::ETAG, asset.etag)]).into_response();
    }
    let mime = mime_guess::from_path(&name).first_or_octet_stream();
    let mut content_type = mime.essence_str().to_string();
    if content_type.starts_with("text/") || content_type == "application/javascript" {
        content_type.push_str("; charset=utf-8");
    }
    let (body, encoding) = [("br", "br"), ("gzip", "gz")]
        .iter()
        .filter(|(enc, _)| accepts(headers, enc))
        .find_map(|(enc, ext)| load(&format!("{name}.{ext}")).map(|a| (a.data, Some(*enc))))
        .unwrap_or((asset.data, None));
    let cache = if name.starts_with("assets/") { "public, max-age=31536000, immutable" } else { "no-cache" };
    let mut resp = body.into_owned().into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_str(&content_type).unwrap_or(HeaderValue::from_static("application/octet-stream")),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    h.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    if let Ok(v) = HeaderValue::from_str(&asset.etag) {
        h.insert(header::ETAG, v);
    }
    if let Some(enc) = encoding {
        h.insert(header::CONTENT_ENCODING, HeaderValue::from_static(enc));
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_encoding_parsing() {
        let mut h = HeaderMap::new();
        h.insert(header::ACCEPT_ENCODING, "gzip, deflate, br;q=0".parse().unwrap());
        assert!(accepts(&h, "gzip"));
        assert!(!accepts(&h, "br"));
        assert!(!accepts(&HeaderMap::new(), "gzip"));
    }

    #[test]
    fn the_ui_is_embedded_with_compressed_variants() {
        assert!(Assets::get("index.html").is_some());
        let js: Vec<_> = Assets::iter().filter(|p| p.starts_with("assets/") && p.ends_with(".js")).collect();
        assert!(!js.is_empty());
        for p in js {
            assert!(Assets::get(&format!("{p}.br")).is_some(), "{p}.br");
            assert!(Assets::get(&format!("{p}.gz")).is_some(), "{p}.gz");
        }
    }
}
