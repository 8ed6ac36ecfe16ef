//! The self-signed fallback certificate (security-critical) for this host's local names, created on first start in
//! `<data_dir>/tls/` (key mode 0600) and renewed a month before it expires. Served only when `tls.internal_ca` is
//! off and no ACME certificate matches (see `crate::tls`).

use std::path::Path;
use std::time::{Duration, SystemTime};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

const VALIDITY_DAYS: i64 = 365;
const RENEW_AFTER: Duration = Duration::from_secs(335 * 86_400);

use super::{TlsError, write_private};

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> TlsError + '_ {
    move |e| TlsError::Io { path: path.display().to_string(), reason: e.to_string() }
}

/// The names the self-signed certificate covers.
fn local_names() -> Vec<String> {
    let mut names =
        vec!["localhost".to_string(), "127.0.0.1".to_string(), "::1".to_string(), "hearth.local".to_string()];
    {
        let h = crate::util::host_name();
        let h = h.as_str();
        if !h.is_empty() && !names.iter().any(|n| n == h) {
            names.push(h.to_string());
            names.push(format!("{h}.local"));
        }
    }
    names.dedup();
    names
}

/// Load `<dir>/selfsigned.{crt,key}`, creating or renewing them when missing or old.
pub(crate) fn load_or_create(dir: &Path) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), TlsError> {
    crate::storage::ensure_private_dir(dir)
        .map_err(|e| TlsError::Io { path: dir.display().to_string(), reason: e.to_string() })?;
    let crt = dir.join("selfsigned.crt");
    let key = dir.join("selfsigned.key");
    let fresh = std::fs::metadata(&crt)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| SystemTime::now().duration_since(t).ok())
        .is_some_and(|age| age < RENEW_AFTER);
    if !(fresh && key.exists()) {
        let mut params = rcgen::CertificateParams::new(local_names())?;
        params.distinguished_name.push(rcgen::DnType::CommonName, "hearth (self-signed)");
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::days(1);
        params.not_after = now + time::Duration::days(VALIDITY_DAYS);
        let signing_key = rcgen::KeyPair::generate()?;
        let cert = params.self_signed(&signing_key)?;
        write_private(&key, signing_key.serialize_pem().as_bytes())?;
        std::fs::write(&crt, cert.pem()).map_err(io(&crt))?;
        tracing::info!(path = %crt.display(), "created a self-signed certificate for the HTTPS listener");
    }
    let certs = CertificateDer::pem_file_iter(&crt)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| TlsError::Pem { path: crt.display().to_string(), reason: e.to_string() })?;
    let key = PrivateKeyDer::from_pem_file(&key)
        .map_err(|e| TlsError::Pem { path: key.display().to_string(), reason: e.to_string() })?;
    Ok((certs, key))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_once_with_private_key() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let tls = dir.path().join("tls");
        load_or_create(&tls).unwrap();
        let key_mode = std::fs::metadata(tls.join("selfsigned.key")).unwrap().permissions().mode() & 0o777;
        assert_eq!(key_mode, 0o600);
        let first = std::fs::read(tls.join("selfsigned.crt")).unwrap();
        load_or_create(&tls).unwrap();
        assert_eq!(first, std::fs::read(tls.join("selfsigned.crt")).unwrap(), "reused, not re-issued");
    }
}
