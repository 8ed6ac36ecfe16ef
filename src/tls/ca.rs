//! hearth's internal CA (security-critical): a root (ECDSA P-256, 10 years) created on first run in
//! `<data_dir>/ca/` (key mode 0600), issuing short-lived leaf certificates for LAN names and IP addresses on demand,
//! like Caddy's `tls internal`. Users install `root.crt` once on their devices.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use super::{TlsError, write_private};

const ROOT_YEARS: i64 = 10;

pub struct InternalCa {
    pub root_pem: String,
    pub root_der: CertificateDer<'static>,
    pub dir: PathBuf,
    issuer: Issuer<'static, KeyPair>,
}

impl std::fmt::Debug for InternalCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InternalCa").field("dir", &self.dir).finish_non_exhaustive()
    }
}

fn host_name() -> String {
    std::fs::read_to_string("/etc/hostname").map(|h| h.trim().to_string()).unwrap_or_default()
}

impl InternalCa {
    /// Load `<dir>/root.{crt,key}`, creating them on first run.
    pub fn load_or_create(dir: &Path) -> Result<InternalCa, TlsError> {
        crate::storage::ensure_private_dir(dir)
            .map_err(|e| TlsError::Io { path: dir.display().to_string(), reason: e.to_string() })?;
        let crt = dir.join("root.crt");
        let key = dir.join("root.key");
        if !crt.exists() || !key.exists() {
            let mut params = CertificateParams::new(Vec::<String>::new())?;
            let host = host_name();
            let cn = if host.is_empty() { "hearth Local CA".to_string() } else { format!("hearth Local CA ({host})") };
            params.distinguished_name.push(DnType::CommonName, cn);
            params.distinguished_name.push(DnType::OrganizationName, "hearth");
            params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
            params.key_usages =
                vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
            let now = time::OffsetDateTime::now_utc();
            params.not_before = now - time::Duration::days(1);
            params.not_after = now + time::Duration::days(365 * ROOT_YEARS);
            let kp = KeyPair::generate()?;
            let cert = params.self_signed(&kp)?;
            write_private(&key, kp.serialize_pem().as_bytes())?;
            std::fs::write(&crt, cert.pem())
                .map_err(|e| TlsError::Io { path: crt.display().to_string(), reason: e.to_string() })?;
            tracing::info!(path = %crt.display(), "created hearth's internal root CA");
        }
        let root_pem = std::fs::read_to_string(&crt)
            .map_err(|e| TlsError::Io { path: crt.display().to_string(), reason: e.to_string() })?;
        let key_pem = std::fs::read_to_string(&key)
            .map_err(|e| TlsError::Io { path: key.display().to_string(), reason: e.to_string() })?;
        let kp = KeyPair::from_pem(&key_pem)
            .map_err(|e| TlsError::Pem { path: key.display().to_string(), reason: e.to_string() })?;
        let issuer = Issuer::from_ca_cert_pem(&root_pem, kp)
            .map_err(|e| TlsError::Pem { path: crt.display().to_string(), reason: e.to_string() })?;
        let root_der = super::parse_chain(&root_pem, &crt)?
            .into_iter()
            .next()
            .ok_or_else(|| TlsError::Pem { path: crt.display().to_string(), reason: "no certificate".into() })?;
        Ok(InternalCa { root_pem, root_der, dir: dir.to_path_buf(), issuer })
    }

    /// A leaf certificate for `names` (DNS names or IP addresses) valid for `lifetime`; chain is leaf + root.
    pub fn issue(
        &self,
        names: &[String],
        lifetime: std::time::Duration,
    ) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), TlsError> {
        let mut params = CertificateParams::new(names.to_vec())?;
        params.distinguished_name.push(DnType::CommonName, names.first().cloned().unwrap_or_default());
        params.use_authority_key_identifier_extension = true;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let now = time::OffsetDateTime::now_utc();
        // a little slack for clients whose clocks run behind
        params.not_before = now - time::Duration::minutes(10);
        params.not_after = now + time::Duration::seconds(lifetime.as_secs() as i64);
        let kp = KeyPair::generate()?;
        let cert = params.signed_by(&kp, &self.issuer)?;
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(kp.serialize_der()));
        Ok((vec![cert.der().clone(), self.root_der.clone()], key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::client::danger::ServerCertVerifier;

    #[test]
    fn root_is_created_once_and_issues_verifiable_leaves() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let ca = InternalCa::load_or_create(&dir.path().join("ca")).unwrap();
        let mode = std::fs::metadata(dir.path().join("ca/root.key")).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let again = InternalCa::load_or_create(&dir.path().join("ca")).unwrap();
        assert_eq!(ca.root_pem, again.root_pem, "reused, not re-created");

        let (chain, _key) =
            again.issue(&["app.home.arpa".into(), "192.168.1.5".into()], std::time::Duration::from_secs(3600)).unwrap();
        // a rustls client that trusts only the root accepts the leaf for both names
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca.root_der.clone()).unwrap();
        let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
            std::sync::Arc::new(roots),
            std::sync::Arc::new(rustls::crypto::ring::default_provider()),
        )
        .build()
        .unwrap();
        let now = rustls::pki_types::UnixTime::now();
        for name in ["app.home.arpa", "192.168.1.5"] {
            let sn = rustls::pki_types::ServerName::try_from(name).unwrap();
            verifier.verify_server_cert(&chain[0], &chain[1..], &sn, &[], now).unwrap();
        }
        let other = rustls::pki_types::ServerName::try_from("other.home.arpa").unwrap();
        assert!(verifier.verify_server_cert(&chain[0], &chain[1..], &other, &[], now).is_err());
    }
}
