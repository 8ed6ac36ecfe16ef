//! List downloads (IO shell): lists whose source is an http(s) URL are fetched into `<data_dir>/lists/` with
//! conditional requests (ETag / If-Modified-Since), on their `update` schedule and on demand. A download goes to a
//! temporary file and replaces the copy only when complete, so a failed download keeps the last good copy; the
//! engine is recompiled only when something changed.

use crate::util::Locked;
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::DnsList;

/// Largest list accepted (bytes).
const MAX_BYTES: u64 = 256 * 1024 * 1024;

pub(crate) fn is_url(source: &str) -> bool {
    source.starts_with("http://") || source.starts_with("https://")
}

/// Where a downloaded list is kept: a file name derived from the list name (safe characters only).
pub(crate) fn cache_path(dir: &Path, name: &str) -> PathBuf {
    let safe: String =
        name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).collect();
    let tag = &crate::util::sha256_hex(name)[..8];
    dir.join(format!("{safe}-{tag}.txt"))
}

/// The file the engine reads for a list: the source itself, or the downloaded copy of a URL.
pub(crate) fn local_path(dir: &Path, l: &DnsList) -> PathBuf {
    if is_url(&l.source) { cache_path(dir, &l.name) } else { PathBuf::from(&l.source) }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Meta {
    url: String,
    etag: Option<String>,
    last_modified: Option<String>,
    fetched_at: i64,
}

fn meta_path(file: &Path) -> PathBuf {
    file.with_extension("meta.json")
}

fn read_meta(file: &Path) -> Option<Meta> {
    serde_json::from_slice(&std::fs::read(meta_path(file)).ok()?).ok()
}

/// The state of one URL list's downloads, for the API and the UI.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub(crate) struct DownloadStatus {
    pub name: String,
    pub url: String,
    /// Unix time of the last attempt and of the last good download (or confirmation that nothing changed).
    pub last_attempt: i64,
    pub last_success: Option<i64>,
    /// "downloading", "updated", "not modified", or the error.
    pub result: String,
    pub ok: bool,
    /// While downloading: bytes received so far, and the size announced by the server (if it did).
    pub received_bytes: Option<u64>,
    pub total_bytes: Option<u64>,
}

pub(crate) struct ListUpdater {
    client: reqwest::Client,
    running: tokio::sync::Mutex<()>,
    status: Mutex<HashMap<String, DownloadStatus>>,
}

impl ListUpdater {
    /// `resolver` resolves the lists' host names (hearth's own resolver in the app: a static binary cannot rely on
    /// glibc's NSS); None: the system resolver.
    pub(crate) fn new(resolver: Option<Arc<super::SelfResolver>>) -> Self {
        let mut b = reqwest::Client::builder()
            .user_agent(concat!("hearth/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(15))
            .timeout(Duration::from_secs(120));
        if let Some(r) = resolver {
            b = b.dns_resolver(r);
        }
        let client = b.build().expect("HTTP client");
        ListUpdater { client, running: tokio::sync::Mutex::new(()), status: Mutex::default() }
    }

    pub(crate) fn statuses(&self) -> Vec<DownloadStatus> {
        let mut v: Vec<_> = self.status.locked().values().cloned().collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    /// Download the URL lists that are due (all of them with `force`); returns whether any copy changed.
    pub(crate) async fn update(&self, lists: &[DnsList], dir: &Path, force: bool) -> bool {
        let _one_at_a_time = self.running.lock().await;
        let now = crate::util::unix_now();
        let mut changed = false;
        for l in lists.iter().filter(|l| l.enabled && is_url(&l.source)) {
            let file = cache_path(dir, &l.name);
            let meta = read_meta(&file).filter(|m| m.url == l.source && file.exists());
            let due = meta.as_ref().is_none_or(|m| now - m.fetched_at >= l.update.as_std().as_secs() as i64);
            if !(force || due) {
                continue;
            }
            let prev_success = {
                let mut status = self.status.locked();
                let prev_success = status.get(&l.name).and_then(|s| s.last_success);
                status.insert(
                    l.name.clone(),
                    DownloadStatus {
                        name: l.name.clone(),
                        url: l.source.clone(),
                        last_attempt: now,
                        last_success: prev_success,
                        result: "downloading".into(),
                        ok: true,
                        received_bytes: Some(0),
                        total_bytes: None,
                    },
                );
                prev_success
            };
            let result = self.fetch(&l.name, &l.source, &file, meta).await;
            let mut status = self.status.locked();
            let (text, ok) = match &result {
                Ok(true) => ("updated".to_string(), true),
                Ok(false) => ("not modified".to_string(), true),
                Err(e) => (e.clone(), false),
            };
            if let Err(e) = &result {
                tracing::warn!(list = %l.name, url = %l.source, error = %e, "list download failed; keeping the last good copy");
            } else {
                tracing::info!(list = %l.name, result = %text, "list checked");
            }
            metrics::counter!("hearth_dns_list_downloads_total", "result" => if ok { "ok" } else { "error" })
                .increment(1);
            changed |= matches!(result, Ok(true));
            status.insert(
                l.name.clone(),
                DownloadStatus {
                    name: l.name.clone(),
                    url: l.source.clone(),
                    last_attempt: now,
                    last_success: if ok { Some(now) } else { prev_success },
                    result: text,
                    ok,
                    received_bytes: None,
                    total_bytes: None,
                },
            );
        }
        changed
    }

    /// One conditional GET; `Ok(true)` when a new copy was stored, `Ok(false)` when the server said 304.
    async fn fetch(&self, name: &str, url: &str, file: &Path, meta: Option<Meta>) -> Result<bool, String> {
        let mut req = self.client.get(url);
        if let Some(m) = &meta {
            if let Some(e) = &m.etag {
                req = req.header(reqwest::header::IF_NONE_MATCH, e);
            }
            if let Some(lm) = &m.last_modified {
                req = req.header(reqwest::header::IF_MODIFIED_SINCE, lm);
            }
        }
        let mut resp = req.send().await.map_err(|e| format!("{e}"))?;
        let header = |h: reqwest::header::HeaderName, r: &reqwest::Response| {
            r.headers().get(h).and_then(|v| v.to_str().ok()).map(str::to_string)
        };
        let now = crate::util::unix_now();
        if resp.status() == reqwest::StatusCode::NOT_MODIFIED {
            if let Some(mut m) = meta {
                m.fetched_at = now;
                write_meta(file, &m)?;
            }
            return Ok(false);
        }
        if !resp.status().is_success() {
            return Err(format!("the server answered HTTP {}", resp.status()));
        }
        let new_meta = Meta {
            url: url.to_string(),
            etag: header(reqwest::header::ETAG, &resp),
            last_modified: header(reqwest::header::LAST_MODIFIED, &resp),
            fetched_at: now,
        };
        if let Some(dir) = file.parent() {
            crate::storage::ensure_private_dir(dir).map_err(|e| e.to_string())?;
        }
        let tmp = file.with_extension("part");
        let mut out = std::fs::File::create(&tmp).map_err(|e| format!("{}: {e}", tmp.display()))?;
        let mut total = 0u64;
        let announced = resp.content_length();
        let progress = |received: u64| {
            if let Some(st) = self.status.locked().get_mut(name) {
                st.received_bytes = Some(received);
                st.total_bytes = announced;
            }
        };
        progress(0);
        while let Some(chunk) = resp.chunk().await.map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            format!("download interrupted: {e}")
        })? {
            total += chunk.len() as u64;
            if total > MAX_BYTES {
                let _ = std::fs::remove_file(&tmp);
                return Err(format!("the list is larger than {} MB", MAX_BYTES / 1024 / 1024));
            }
            out.write_all(&chunk).map_err(|e| format!("{}: {e}", tmp.display()))?;
            progress(total);
        }
        out.sync_all().map_err(|e| e.to_string())?;
        std::fs::rename(&tmp, file).map_err(|e| format!("{}: {e}", file.display()))?;
        write_meta(file, &new_meta)?;
        Ok(true)
    }
}

fn write_meta(file: &Path, m: &Meta) -> Result<(), String> {
    let text = serde_json::to_vec(m).map_err(|e| e.to_string())?;
    std::fs::write(meta_path(file), text).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_names_are_safe_and_distinct() {
        let d = Path::new("/x");
        let a = cache_path(d, "../etc/passwd");
        assert_eq!(a.parent(), Some(d));
        assert!(a.file_name().unwrap().to_str().unwrap().starts_with("___etc_passwd-"));
        assert_ne!(cache_path(d, "a b"), cache_path(d, "a_b"), "the hash keeps similar names apart");
        assert!(is_url("https://x") && !is_url("/etc/hosts"));
    }
}
