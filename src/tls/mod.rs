//! Certificates for every TLS listener (security-critical): ACME certificates, hearth's internal CA, the TLS-ALPN-01
//! challenge answers, and one SNI resolver ([`Certs`]) that picks among them for each handshake.
//!
//! Which certificate a handshake gets, for the name it asks for (SNI; without SNI: the default names):
//! 1. a pending TLS-ALPN-01 challenge for that name, when the client offers only `acme-tls/1`;
//! 2. a valid ACME certificate for the name (exact, then `*.parent`);
//! 3. with `tls.internal_ca`: an internal-CA certificate, issued on demand for names hearth serves — route hosts,
//!    `server.admin_hosts`, local names (`localhost`, this host, `*.local`, `*.home.arpa`, `*.lan`, `*.internal`,
//!    `dns.local_domains`) and IP addresses — and cached until two thirds of its lifetime;
//! 4. otherwise the default certificate (internal-CA issued for the default names, or self-signed when the
//!    internal CA is off).
//!
//! Invariant: issuance on demand is bounded (only names hearth serves, at most `MAX_INTERNAL` cached) so that
//! random SNI values cannot make hearth mint certificates without end.

pub mod acme;
pub mod ca;
pub mod dns01;
pub mod renewal;

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use arc_swap::{ArcSwap, ArcSwapOption};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

pub const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";
const MAX_INTERNAL: usize = 4096;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("certificate generation failed: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("{path}: {reason}")]
    Io { path: String, reason: String },
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("{path}: invalid PEM: {reason}")]
    Pem { path: String, reason: String },
    #[error("certificate: {0}")]
    Parse(String),
}

pub(crate) fn write_private(path: &Path, data: &[u8]) -> Result<(), TlsError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let io = |e: std::io::Error| TlsError::Io { path: path.display().to_string(), reason: e.to_string() };
    // write a temporary file and rename it, so a crash never leaves half a key
    let tmp = path.with_extension("tmp");
    let mut f =
        std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp).map_err(io)?;
    f.write_all(data).map_err(io)?;
    f.sync_all().map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

pub(crate) fn parse_chain(pem: &str, origin: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem { path: origin.display().to_string(), reason: e.to_string() })?;
    if certs.is_empty() {
        return Err(TlsError::Pem { path: origin.display().to_string(), reason: "no certificate".into() });
    }
    Ok(certs)
}

pub(crate) fn parse_key(pem: &str, origin: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_slice(pem.as_bytes())
        .map_err(|e| TlsError::Pem { path: origin.display().to_string(), reason: e.to_string() })
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

pub fn certified_key(
    chain: Vec<CertificateDer<'static>>,
    key: &PrivateKeyDer<'static>,
) -> Result<CertifiedKey, TlsError> {
    Ok(CertifiedKey::from_der(chain, key.clone_key(), &provider())?)
}

/// Like [`certified_key`] without the key/certificate consistency check, which parses the certificate with webpki
/// and so refuses the TLS-ALPN-01 answer (its critical `acmeIdentifier` extension is unknown to webpki).
pub fn certified_key_unchecked(
    chain: Vec<CertificateDer<'static>>,
    key: &PrivateKeyDer<'static>,
) -> Result<CertifiedKey, TlsError> {
    let signer = provider().key_provider.load_private_key(key.clone_key())?;
    Ok(CertifiedKey::new(chain, signer))
}

/// Facts read from a certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    pub not_before: i64,
    pub not_after: i64,
    pub issuer: String,
    pub names: Vec<String>,
}

pub fn cert_info(der: &CertificateDer<'_>) -> Result<CertInfo, TlsError> {
    use x509_parser::prelude::*;
    let (_, c) = parse_x509_certificate(der.as_ref()).map_err(|e| TlsError::Parse(e.to_string()))?;
    let mut names = vec![];
    if let Ok(Some(san)) = c.subject_alternative_name() {
        for n in &san.value.general_names {
            match n {
                GeneralName::DNSName(d) => names.push(d.to_string()),
                GeneralName::IPAddress(b) => match b.len() {
                    4 => names.push(IpAddr::from(<[u8; 4]>::try_from(*b).expect("4")).to_string()),
                    16 => names.push(IpAddr::from(<[u8; 16]>::try_from(*b).expect("16")).to_string()),
                    _ => {}
                },
                _ => {}
            }
        }
    }
    Ok(CertInfo {
        not_before: c.validity().not_before.timestamp(),
        not_after: c.validity().not_after.timestamp(),
        issuer: c.issuer().to_string(),
        names,
    })
}

/// The address of the interface that carries the default route (no packet is sent).
pub fn lan_address() -> Option<IpAddr> {
    let s = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    s.connect("192.0.2.1:9").ok()?;
    s.local_addr().ok().map(|a| a.ip()).filter(|ip| !ip.is_unspecified())
}

/// Which names may get an internal certificate, and the names of the default certificate.
#[derive(Debug, Clone, Default)]
pub struct NamePolicy {
    pub internal_ca: bool,
    pub lifetime: Duration,
    /// exact hosts and `*.parent` hosts of routes
    pub hosts: Vec<String>,
    pub local_suffixes: Vec<String>,
    pub default_names: Vec<String>,
}

impl NamePolicy {
    pub fn from_config(c: &crate::config::Config) -> NamePolicy {
        let mut hosts: Vec<String> = c.server.admin_hosts.iter().map(|h| h.trim().to_ascii_lowercase()).collect();
        for r in &c.proxy.routes {
            hosts.extend(r.hosts.iter().map(|h| h.trim().trim_end_matches('.').to_ascii_lowercase()));
        }
        let mut local_suffixes: Vec<String> =
            ["local", "home.arpa", "lan", "internal", "localhost"].iter().map(|s| s.to_string()).collect();
        local_suffixes.extend(c.dns.local_domains.iter().map(|d| d.trim_end_matches('.').to_ascii_lowercase()));
        let mut default_names = vec!["localhost".to_string(), "127.0.0.1".into(), "::1".into(), "hearth.local".into()];
        let host = ca_host_name();
        if !host.is_empty() {
            default_names.push(host.clone());
            default_names.push(format!("{host}.local"));
        }
        if let Ok(ip) = c.proxy.address.parse::<IpAddr>() {
            default_names.push(ip.to_string());
        }
        for a in &c.server.https_listen {
            if !a.0.ip().is_unspecified() {
                default_names.push(a.0.ip().to_string());
            }
        }
        if let Some(ip) = lan_address() {
            default_names.push(ip.to_string());
        }
        default_names.extend(c.server.admin_hosts.iter().cloned());
        let mut seen = std::collections::HashSet::new();
        default_names.retain(|n| seen.insert(n.clone()));
        NamePolicy {
            internal_ca: c.tls.internal_ca,
            lifetime: c.tls.internal_lifetime.as_std(),
            hosts,
            local_suffixes,
            default_names,
        }
    }

    /// Whether `name` may get its own internal certificate.
    pub fn allows(&self, name: &str) -> bool {
        if name.parse::<IpAddr>().is_ok() || self.default_names.iter().any(|d| d == name) {
            return true;
        }
        let parent = name.split_once('.').map(|(_, p)| p).unwrap_or("");
        if self.hosts.iter().any(|h| h == name || h.strip_prefix("*.") == Some(parent)) {
            return true;
        }
        self.local_suffixes.iter().any(|s| name == s || name.ends_with(&format!(".{s}")))
    }
}

fn ca_host_name() -> String {
    std::fs::read_to_string("/etc/hostname").map(|h| h.trim().to_ascii_lowercase()).unwrap_or_default()
}

/// The certificate store and SNI resolver shared by the HTTPS and DoT listeners.
pub struct Certs {
    ca: ArcSwapOption<ca::InternalCa>,
    policy: ArcSwap<NamePolicy>,
    acme: RwLock<HashMap<String, Arc<CertifiedKey>>>,
    internal: Mutex<HashMap<String, (Arc<CertifiedKey>, SystemTime)>>,
    challenges: Mutex<HashMap<String, Arc<CertifiedKey>>>,
    default: ArcSwap<CertifiedKey>,
}

impl std::fmt::Debug for Certs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Certs").finish_non_exhaustive()
    }
}

impl Certs {
    /// Load (or create) the internal CA under `<data_dir>/ca` and the self-signed fallback under `<data_dir>/tls`.
    pub fn new(data_dir: &Path, policy: NamePolicy) -> Result<Certs, TlsError> {
        let (chain, key) = crate::http::tls::load_or_create(&data_dir.join("tls"))?;
        let selfsigned = Arc::new(certified_key(chain, &key)?);
        let certs = Certs {
            ca: ArcSwapOption::empty(),
            policy: ArcSwap::from_pointee(NamePolicy::default()),
            acme: RwLock::default(),
            internal: Mutex::default(),
            challenges: Mutex::default(),
            default: ArcSwap::new(selfsigned),
        };
        certs.set_policy(data_dir, policy)?;
        Ok(certs)
    }

    /// A new config: load the CA when it is switched on, re-issue the default certificate, forget cached leaves.
    pub fn set_policy(&self, data_dir: &Path, policy: NamePolicy) -> Result<(), TlsError> {
        if policy.internal_ca && self.ca.load().is_none() {
            self.ca.store(Some(Arc::new(ca::InternalCa::load_or_create(&data_dir.join("ca"))?)));
        }
        let default = match (&*self.ca.load(), policy.internal_ca) {
            (Some(ca), true) => {
                let (chain, key) = ca.issue(&policy.default_names, policy.lifetime)?;
                Arc::new(certified_key(chain, &key)?)
            }
            _ => {
                let (chain, key) = crate::http::tls::load_or_create(&data_dir.join("tls"))?;
                Arc::new(certified_key(chain, &key)?)
            }
        };
        self.default.store(default);
        self.policy.store(Arc::new(policy));
        self.internal.lock().unwrap_or_else(|p| p.into_inner()).clear();
        Ok(())
    }

    pub fn root_pem(&self) -> Option<String> {
        self.ca.load().as_ref().map(|c| c.root_pem.clone())
    }

    pub fn set_acme(&self, name: &str, key: Arc<CertifiedKey>) {
        self.acme.write().unwrap_or_else(|p| p.into_inner()).insert(name.to_string(), key);
    }

    pub fn remove_acme(&self, name: &str) {
        self.acme.write().unwrap_or_else(|p| p.into_inner()).remove(name);
    }

    pub fn set_challenge(&self, name: &str, key: Option<Arc<CertifiedKey>>) {
        let mut c = self.challenges.lock().unwrap_or_else(|p| p.into_inner());
        match key {
            Some(k) => c.insert(name.to_string(), k),
            None => c.remove(name),
        };
    }

    fn acme_for(&self, name: &str) -> Option<Arc<CertifiedKey>> {
        let m = self.acme.read().unwrap_or_else(|p| p.into_inner());
        if let Some(k) = m.get(name) {
            return Some(k.clone());
        }
        let parent = name.split_once('.')?.1;
        m.get(&format!("*.{parent}")).cloned()
    }

    fn internal_for(&self, name: &str) -> Option<Arc<CertifiedKey>> {
        let policy = self.policy.load();
        if !policy.internal_ca || !policy.allows(name) {
            return None;
        }
        let ca = self.ca.load_full()?;
        let now = SystemTime::now();
        let mut cache = self.internal.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((k, replace_at)) = cache.get(name)
            && now < *replace_at
        {
            return Some(k.clone());
        }
        match ca.issue(&[name.to_string()], policy.lifetime).and_then(|(chain, key)| certified_key(chain, &key)) {
            Ok(k) => {
                let k = Arc::new(k);
                if cache.len() >= MAX_INTERNAL {
                    cache.retain(|_, (_, at)| now < *at);
                    if cache.len() >= MAX_INTERNAL {
                        cache.clear();
                    }
                }
                cache.insert(name.to_string(), (k.clone(), now + policy.lifetime * 2 / 3));
                metrics::counter!("hearth_tls_internal_issued_total").increment(1);
                Some(k)
            }
            Err(e) => {
                tracing::error!(name, error = %e, "the internal CA could not issue a certificate");
                None
            }
        }
    }

    /// The certificate for `name` (None: no SNI); `acme_alpn`: the client offered only `acme-tls/1`.
    pub fn pick(&self, name: Option<&str>, acme_alpn: bool) -> Arc<CertifiedKey> {
        if let Some(name) = name {
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            if acme_alpn && let Some(k) = self.challenges.lock().unwrap_or_else(|p| p.into_inner()).get(&name) {
                return k.clone();
            }
            if let Some(k) = self.acme_for(&name).or_else(|| self.internal_for(&name)) {
                return k;
            }
        }
        self.default.load_full()
    }
}

impl ResolvesServerCert for Certs {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let acme = hello.alpn().is_some_and(|mut a| a.all(|p| p == ACME_TLS_ALPN));
        metrics::counter!("hearth_tls_handshakes_total", "sni" => if hello.server_name().is_some() { "yes" } else { "no" })
            .increment(1);
        Some(self.pick(hello.server_name(), acme))
    }
}

/// A rustls server config over the shared resolver (TLS 1.2 + 1.3) offering `alpn`.
pub fn server_config(certs: Arc<Certs>, alpn: &[&[u8]]) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_cert_resolver(certs);
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(cfg))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> NamePolicy {
        NamePolicy {
            internal_ca: true,
            lifetime: Duration::from_secs(3600),
            hosts: vec!["app.example.com".into(), "*.svc.example.com".into()],
            local_suffixes: vec!["home.arpa".into()],
            default_names: vec!["localhost".into()],
        }
    }

    #[test]
    fn only_names_hearth_serves_get_internal_certificates() {
        let p = policy();
        assert!(p.allows("app.example.com"));
        assert!(p.allows("x.svc.example.com"));
        assert!(!p.allows("a.x.svc.example.com"));
        assert!(p.allows("nas.home.arpa"));
        assert!(p.allows("10.1.2.3"));
        assert!(!p.allows("random.example.org"));
    }

    #[test]
    fn picks_acme_then_internal_then_default() {
        let dir = tempfile::tempdir().unwrap();
        let certs = Certs::new(dir.path(), policy()).unwrap();
        let default = certs.pick(None, false);
        assert!(Arc::ptr_eq(&default, &certs.pick(Some("random.example.org"), false)));
        let internal = certs.pick(Some("nas.home.arpa"), false);
        assert!(!Arc::ptr_eq(&default, &internal));
        assert!(Arc::ptr_eq(&internal, &certs.pick(Some("NAS.home.arpa."), false)), "cached");
        let info = cert_info(&internal.cert[0]).unwrap();
        assert_eq!(info.names, ["nas.home.arpa"]);
        assert!(info.issuer.contains("hearth"));
        let acme = certs.pick(Some("other.home.arpa"), false);
        certs.set_acme("*.svc.example.com", acme.clone());
        assert!(Arc::ptr_eq(&acme, &certs.pick(Some("x.svc.example.com"), false)), "wildcard ACME certificate");
        certs.set_challenge("app.example.com", Some(default.clone()));
        assert!(Arc::ptr_eq(&default, &certs.pick(Some("app.example.com"), true)), "TLS-ALPN-01 answer");
        assert!(!Arc::ptr_eq(&default, &certs.pick(Some("app.example.com"), false)));
    }
}
