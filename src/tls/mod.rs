//! Certificates for every TLS listener (security-critical): ACME certificates, hearth's internal CA, the TLS-ALPN-01
//! challenge answers, and one SNI resolver ([`Certs`]) that picks among them for each handshake.
//!
//! Which certificate a handshake gets, for the name it asks for (SNI; without SNI: the default names):
//! 1. a pending TLS-ALPN-01 challenge for that name, when the client offers only `acme-tls/1`;
//! 2. a valid ACME certificate for the name (exact, then `*.parent`);
//! 3. with `tls.internal_ca`: an internal-CA certificate, issued on demand for names hearth serves — route hosts,
//!    `server.admin_hosts`, names of `dns.records`, the default names (`localhost`, this host, `<host>.local`,
//!    `hearth.local`, the box's addresses) — when they lie inside the root's name constraints ([`ca::Constraints`]),
//!    and cached until two thirds of its lifetime; the chain is leaf + intermediate;
//! 4. otherwise the default certificate (internal-CA issued for the default names, or self-signed when the
//!    internal CA is off).
//!
//! Invariant: issuance on demand is bounded (only names hearth serves, at most `MAX_INTERNAL` cached) so that
//! random SNI values cannot make hearth mint certificates without end.
//! Invariant: no lock shared between names is held while a certificate is issued in the handshake: each name has
//! its own slot (single flight per name); the slot map's lock is held only to find or add a slot.
//! Invariant: what the policy allows ⊆ the root's constraints; a changed set replaces root and intermediate.

pub(crate) mod acme;
pub(crate) mod applier;
pub(crate) mod ca;
pub(crate) mod dns01;
pub(crate) mod renewal;
pub(crate) mod selfsigned;

use crate::util::{Locked, RwLocked};
use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

pub(crate) const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";
const MAX_INTERNAL: usize = 4096;

#[derive(Debug, thiserror::Error)]
pub(crate) enum TlsError {
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
    #[error("{0} is outside the names hearth's internal CA may certify")]
    NotPermitted(String),
}

pub(crate) fn write_private(path: &Path, data: &[u8]) -> Result<(), TlsError> {
    // a crash never leaves half a key
    crate::util::write_atomic(path, data, Some(0o600))
        .map_err(|e| TlsError::Io { path: path.display().to_string(), reason: e.to_string() })
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

pub(crate) fn certified_key(
    chain: Vec<CertificateDer<'static>>,
    key: &PrivateKeyDer<'static>,
) -> Result<CertifiedKey, TlsError> {
    Ok(CertifiedKey::from_der(chain, key.clone_key(), &provider())?)
}

/// Like [`certified_key`] without the key/certificate consistency check, which parses the certificate with webpki
/// and so refuses the TLS-ALPN-01 answer (its critical `acmeIdentifier` extension is unknown to webpki).
pub(crate) fn certified_key_unchecked(
    chain: Vec<CertificateDer<'static>>,
    key: &PrivateKeyDer<'static>,
) -> Result<CertifiedKey, TlsError> {
    let signer = provider().key_provider.load_private_key(key.clone_key())?;
    Ok(CertifiedKey::new(chain, signer))
}

/// Facts read from a certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CertInfo {
    pub not_before: i64,
    pub not_after: i64,
    pub issuer: String,
    pub names: Vec<String>,
}

pub(crate) fn cert_info(der: &CertificateDer<'_>) -> Result<CertInfo, TlsError> {
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
pub(crate) fn lan_address() -> Option<IpAddr> {
    let s = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    s.connect("192.0.2.1:9").ok()?;
    s.local_addr().ok().map(|a| a.ip()).filter(|ip| !ip.is_unspecified())
}

/// Which names may get an internal certificate, the names of the default certificate, and what the internal CA's
/// root may certify.
///
/// Invariant: every name [`NamePolicy::allows`] and every default name is inside `constraints`, so hearth never
/// issues a certificate that its own root's name constraints make clients reject.
#[derive(Debug, Clone, Default)]
pub(crate) struct NamePolicy {
    pub internal_ca: bool,
    pub lifetime: Duration,
    /// Names hearth serves or answers for, exact or `*.parent`: route hosts, `server.admin_hosts`, the names of
    /// `dns.records`.
    pub hosts: Vec<String>,
    /// The default certificate's names: `localhost`, this host (`<host>`, `<host>.local`, `hearth.local`), the box's
    /// addresses, the admin hosts. They may also get their own certificate.
    pub default_names: Vec<String>,
    /// The internal root's name constraints.
    pub constraints: ca::Constraints,
}

impl NamePolicy {
    pub(crate) fn from_config(c: &crate::config::Config) -> NamePolicy {
        let norm = |h: &String| h.trim().trim_end_matches('.').to_ascii_lowercase();
        let mut hosts: Vec<String> = c.server.admin_hosts.iter().map(norm).collect();
        for r in &c.proxy.routes {
            hosts.extend(r.hosts.iter().map(norm));
        }
        hosts.extend(c.dns.records.iter().map(|r| norm(&r.name)));
        let mut default_names = vec!["localhost".to_string(), "127.0.0.1".into(), "::1".into(), "hearth.local".into()];
        let host = crate::util::host_name();
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
        default_names.extend(c.server.admin_hosts.iter().map(norm));
        let mut seen = std::collections::HashSet::new();
        default_names.retain(|n| seen.insert(n.clone()));

        // what the root may certify: the local suffixes and private networks, and beyond them only what hearth
        // itself serves under a name of its own: this host, its addresses, the admin hosts, routes with tls = "internal"
        let mut permitted: Vec<String> =
            ca::LOCAL_SUFFIXES.iter().chain(ca::PRIVATE_NETWORKS.iter()).map(|s| s.to_string()).collect();
        permitted.extend(c.dns.local_domains.iter().map(norm));
        permitted.extend(default_names.iter().cloned());
        // routes whose certificates come from hearth: tls = "internal", and the local names (addresses among them)
        // that tls = "acme" leaves to the internal CA
        for r in &c.proxy.routes {
            let hosts = r.hosts.iter().map(norm);
            match r.tls {
                crate::config::RouteTls::Internal => permitted.extend(hosts),
                crate::config::RouteTls::Acme => permitted.extend(
                    hosts.filter(|h| crate::net::is_local_name(h.trim_start_matches("*."), &c.dns.local_domains)),
                ),
                crate::config::RouteTls::None => {}
            }
        }
        NamePolicy {
            internal_ca: c.tls.internal_ca,
            lifetime: c.tls.internal_lifetime.as_std(),
            hosts,
            default_names,
            constraints: ca::Constraints::new(permitted),
        }
    }

    /// Whether `name` may get its own internal certificate: a name hearth serves, inside the root's constraints.
    /// Names hearth merely could answer (any `*.home.arpa`) do not: random SNI values must not mint certificates.
    pub(crate) fn allows(&self, name: &str) -> bool {
        let parent = name.split_once('.').map(|(_, p)| p).unwrap_or("");
        let served = self.default_names.iter().any(|d| d == name)
            || self.hosts.iter().any(|h| h == name || h.strip_prefix("*.") == Some(parent));
        served && self.constraints.permits(name)
    }
}

/// One name's on-demand certificate: its own lock, so a handshake waits only for an issuance of the same name.
type Slot = Mutex<Option<(Arc<CertifiedKey>, SystemTime)>>;

/// What a config gives the resolver, swapped as a whole: a new policy starts with no cached leaves.
struct Active {
    policy: NamePolicy,
    ca: Option<Arc<ca::InternalCa>>,
    /// name → its slot; this map's lock is held only to find or add a slot, never while issuing
    slots: Mutex<HashMap<String, Arc<Slot>>>,
}

/// A certificate policy built by [`Certs::prepare_policy`], waiting for [`Certs::commit_policy`].
pub(crate) struct PreparedPolicy {
    policy: NamePolicy,
    ca: Option<Arc<ca::InternalCa>>,
    default: Arc<CertifiedKey>,
}

impl PreparedPolicy {
    /// The internal root (PEM) this policy serves under, if the internal CA is on.
    pub(crate) fn root_pem(&self) -> Option<String> {
        self.ca.as_ref().map(|c| c.root_pem.clone())
    }
}

/// The certificate store and SNI resolver shared by the HTTPS and DoT listeners.
pub(crate) struct Certs {
    active: ArcSwap<Active>,
    /// serialises `set_policy` (CA replacement); never taken in a handshake
    update: Mutex<()>,
    acme: RwLock<HashMap<String, Arc<CertifiedKey>>>,
    challenges: Mutex<HashMap<String, Arc<CertifiedKey>>>,
    default: ArcSwap<CertifiedKey>,
    issued: AtomicU64,
}

impl std::fmt::Debug for Certs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Certs").finish_non_exhaustive()
    }
}

impl Certs {
    /// Load (or create) the internal CA under `<data_dir>/ca` and the self-signed fallback under `<data_dir>/tls`.
    pub(crate) fn new(data_dir: &Path, policy: NamePolicy) -> Result<Certs, TlsError> {
        let (chain, key) = selfsigned::load_or_create(&data_dir.join("tls"))?;
        let selfsigned = Arc::new(certified_key(chain, &key)?);
        let certs = Certs {
            active: ArcSwap::from_pointee(Active { policy: NamePolicy::default(), ca: None, slots: Mutex::default() }),
            update: Mutex::default(),
            acme: RwLock::default(),
            challenges: Mutex::default(),
            default: ArcSwap::new(selfsigned),
            issued: AtomicU64::new(0),
        };
        certs.set_policy(data_dir, policy)?;
        Ok(certs)
    }

    /// A new config, at once (start-up): [`Certs::prepare_policy`] then [`Certs::commit_policy`].
    pub(crate) fn set_policy(&self, data_dir: &Path, policy: NamePolicy) -> Result<(), TlsError> {
        let p = self.prepare_policy(data_dir, policy)?;
        self.commit_policy(p);
        Ok(())
    }

    /// Build what a new policy needs, with the disk IO that takes: load the CA when it is switched on — replacing
    /// root and intermediate when the constraints changed — and issue the default certificate. Nothing is swapped.
    pub(crate) fn prepare_policy(&self, data_dir: &Path, policy: NamePolicy) -> Result<PreparedPolicy, TlsError> {
        let _serial = self.update.locked();
        let mut ca = self.active.load().ca.clone();
        if policy.internal_ca && ca.as_ref().is_none_or(|c| c.constraints != policy.constraints) {
            ca = Some(Arc::new(ca::InternalCa::load_or_create(&data_dir.join("ca"), &policy.constraints)?));
        }
        let default = match (&ca, policy.internal_ca) {
            (Some(ca), true) => {
                let (chain, key) = ca.issue(&policy.default_names, policy.lifetime)?;
                Arc::new(certified_key(chain, &key)?)
            }
            _ => {
                let (chain, key) = selfsigned::load_or_create(&data_dir.join("tls"))?;
                Arc::new(certified_key(chain, &key)?)
            }
        };
        Ok(PreparedPolicy { policy, ca, default })
    }

    /// Swap in a prepared policy (re-issues nothing, forgets cached leaves). Cannot fail.
    pub(crate) fn commit_policy(&self, p: PreparedPolicy) {
        let _serial = self.update.locked();
        self.default.store(p.default);
        self.active.store(Arc::new(Active { policy: p.policy, ca: p.ca, slots: Mutex::default() }));
    }

    /// The internal root (PEM) that devices trust, once the internal CA has been loaded.
    pub(crate) fn root_pem(&self) -> Option<String> {
        self.active.load().ca.as_ref().map(|c| c.root_pem.clone())
    }

    #[cfg(test)]
    /// How many certificates the internal CA issued on demand (the default certificates not counted).
    pub(crate) fn internal_issued(&self) -> u64 {
        self.issued.load(Ordering::Relaxed)
    }

    pub(crate) fn set_acme(&self, name: &str, key: Arc<CertifiedKey>) {
        self.acme.write_locked().insert(name.to_string(), key);
    }

    pub(crate) fn set_challenge(&self, name: &str, key: Option<Arc<CertifiedKey>>) {
        let mut c = self.challenges.locked();
        match key {
            Some(k) => c.insert(name.to_string(), k),
            None => c.remove(name),
        };
    }

    fn acme_for(&self, name: &str) -> Option<Arc<CertifiedKey>> {
        let m = self.acme.read_locked();
        if let Some(k) = m.get(name) {
            return Some(k.clone());
        }
        let parent = name.split_once('.')?.1;
        m.get(&format!("*.{parent}")).cloned()
    }

    /// The name's slot in `active`, added when missing (the map stays under `MAX_INTERNAL` entries).
    fn slot(active: &Active, name: &str, now: SystemTime) -> Arc<Slot> {
        let mut slots = active.slots.locked();
        if let Some(s) = slots.get(name) {
            return s.clone();
        }
        if slots.len() >= MAX_INTERNAL {
            // keep the slots still valid and those being issued right now (locked)
            slots.retain(|_, s| s.try_lock().map_or(true, |g| g.as_ref().is_some_and(|(_, at)| now < *at)));
            if slots.len() >= MAX_INTERNAL {
                slots.clear();
            }
        }
        slots.entry(name.to_string()).or_default().clone()
    }

    /// An internal certificate for `name`, issued on first use under that name's own lock (single flight: two
    /// handshakes for one new name issue once; handshakes for other names never wait for it).
    fn internal_for(&self, name: &str) -> Option<Arc<CertifiedKey>> {
        let active = self.active.load_full();
        let policy = &active.policy;
        if !policy.internal_ca || !policy.allows(name) {
            return None;
        }
        let ca = active.ca.clone()?;
        let now = SystemTime::now();
        let slot = Certs::slot(&active, name, now);
        let mut cached = slot.locked();
        if let Some((k, replace_at)) = &*cached
            && now < *replace_at
        {
            return Some(k.clone());
        }
        match ca.issue(&[name.to_string()], policy.lifetime).and_then(|(chain, key)| certified_key(chain, &key)) {
            Ok(k) => {
                let k = Arc::new(k);
                *cached = Some((k.clone(), now + policy.lifetime * 2 / 3));
                self.issued.fetch_add(1, Ordering::Relaxed);
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
    pub(crate) fn pick(&self, name: Option<&str>, acme_alpn: bool) -> Arc<CertifiedKey> {
        if let Some(name) = name {
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            if acme_alpn && let Some(k) = self.challenges.locked().get(&name) {
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
pub(crate) fn server_config(certs: Arc<Certs>, alpn: &[&[u8]]) -> Result<Arc<rustls::ServerConfig>, TlsError> {
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
        let mut p = NamePolicy {
            internal_ca: true,
            lifetime: Duration::from_secs(3600),
            hosts: vec![
                "app.example.com".into(),
                "*.svc.example.com".into(),
                "nas.home.arpa".into(),
                "other.home.arpa".into(),
                "public.example.org".into(),
            ],
            default_names: vec!["localhost".into(), "127.0.0.1".into()],
            constraints: ca::Constraints::default(),
        };
        let mut permitted: Vec<String> =
            ca::LOCAL_SUFFIXES.iter().chain(ca::PRIVATE_NETWORKS.iter()).map(|s| s.to_string()).collect();
        permitted.extend(["app.example.com".into(), "*.svc.example.com".into()]);
        p.constraints = ca::Constraints::new(permitted);
        p
    }

    #[test]
    fn only_names_hearth_serves_get_internal_certificates() {
        let p = policy();
        assert!(p.allows("app.example.com"));
        assert!(p.allows("x.svc.example.com"));
        assert!(!p.allows("a.x.svc.example.com"));
        assert!(p.allows("nas.home.arpa"));
        assert!(p.allows("localhost") && p.allows("127.0.0.1"));
        assert!(!p.allows("random.home.arpa"), "a local name nobody serves");
        assert!(!p.allows("10.1.2.3"), "an address that is not the box's");
        assert!(!p.allows("random.example.org"));
        assert!(!p.allows("public.example.org"), "served, but outside the root's constraints (an ACME route)");
    }

    #[test]
    fn the_policy_of_a_config_stays_inside_the_constraints() {
        let mut c = crate::config::Config::default();
        c.server.admin_hosts = vec!["Hearth.Example.net".into()];
        c.dns.local_domains = vec!["corp.test".into()];
        c.dns.records = vec![
            crate::config::DnsRecord {
                name: "printer.home.arpa".into(),
                r#type: "A".into(),
                value: "192.168.1.9".into(),
                ttl: crate::config::Duration::from_secs(60),
            },
            crate::config::DnsRecord {
                name: "ads.example.test".into(),
                r#type: "A".into(),
                value: "10.9.9.9".into(),
                ttl: crate::config::Duration::from_secs(60),
            },
        ];
        let route = |hosts: &[&str], tls| crate::config::ProxyRoute {
            hosts: hosts.iter().map(|h| h.to_string()).collect(),
            tls,
            ..Default::default()
        };
        use crate::config::RouteTls;
        c.proxy.routes = vec![
            route(&["app.home.arpa", "*.apps.example.net"], RouteTls::Internal),
            route(&["www.example.com"], RouteTls::Acme),
            route(&["media.lan"], RouteTls::Acme),
            route(&["203.0.113.80"], RouteTls::Acme),
            route(&["198.51.100.1", "plain.example.com"], RouteTls::None),
        ];
        let p = NamePolicy::from_config(&c);
        let k = &p.constraints;
        for d in [
            "home.arpa",
            "local",
            "lan",
            "internal",
            "localhost",
            "corp.test",
            "hearth.example.net",
            "apps.example.net",
        ] {
            assert!(k.dns.contains(&d.to_string()), "{d} in {:?}", k.dns);
        }
        assert!(!k.permits("www.example.com"), "ACME routes are not the internal CA's");
        assert!(!k.permits("ads.example.test"), "a local record for a public name does not widen the root");
        for ip in ca::PRIVATE_NETWORKS {
            assert!(k.ip.contains(&ip.to_string()), "{ip}");
        }
        for n in [
            "app.home.arpa",
            "x.apps.example.net",
            "hearth.example.net",
            "printer.home.arpa",
            "media.lan",
            "localhost",
            "203.0.113.80",
        ] {
            assert!(p.allows(n), "{n}");
        }
        for n in [
            "www.example.com",
            "ads.example.test",
            "nobody.home.arpa",
            "y.x.apps.example.net",
            "198.51.100.1",
            "plain.example.com",
        ] {
            assert!(!p.allows(n), "{n}");
        }
        for n in &p.default_names {
            assert!(k.permits(n), "default name {n} inside the constraints");
        }
    }

    #[test]
    fn picks_acme_then_internal_then_default() {
        let dir = tempfile::tempdir().unwrap();
        let certs = Certs::new(dir.path(), policy()).unwrap();
        let default = certs.pick(None, false);
        assert_eq!(default.cert.len(), 2, "leaf + intermediate");
        assert!(Arc::ptr_eq(&default, &certs.pick(Some("random.example.org"), false)));
        let internal = certs.pick(Some("nas.home.arpa"), false);
        assert!(!Arc::ptr_eq(&default, &internal));
        assert!(Arc::ptr_eq(&internal, &certs.pick(Some("NAS.home.arpa."), false)), "cached");
        let info = cert_info(&internal.cert[0]).unwrap();
        assert_eq!(info.names, ["nas.home.arpa"]);
        assert!(info.issuer.contains("hearth Intermediate CA"), "{}", info.issuer);
        let acme = certs.pick(Some("other.home.arpa"), false);
        certs.set_acme("*.svc.example.com", acme.clone());
        assert!(Arc::ptr_eq(&acme, &certs.pick(Some("x.svc.example.com"), false)), "wildcard ACME certificate");
        certs.set_challenge("app.example.com", Some(default.clone()));
        assert!(Arc::ptr_eq(&default, &certs.pick(Some("app.example.com"), true)), "TLS-ALPN-01 answer");
        assert!(!Arc::ptr_eq(&default, &certs.pick(Some("app.example.com"), false)));
        // /ca.crt serves the root, not the intermediate that signs the leaves
        let root = certs.root_pem().unwrap();
        let root_der = CertificateDer::from_pem_slice(root.as_bytes()).unwrap();
        assert_ne!(root_der, internal.cert[1]);
        assert!(cert_info(&root_der).unwrap().issuer.contains("hearth Local CA"));
    }

    #[test]
    fn concurrent_handshakes_for_one_new_name_issue_once() {
        let dir = tempfile::tempdir().unwrap();
        let certs = Certs::new(dir.path(), policy()).unwrap();
        let n = 16;
        let barrier = std::sync::Barrier::new(n);
        let keys: Vec<Arc<CertifiedKey>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..n)
                .map(|_| {
                    s.spawn(|| {
                        barrier.wait();
                        certs.pick(Some("x.svc.example.com"), false)
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(certs.internal_issued(), 1, "one issuance for {n} handshakes");
        assert!(keys.iter().all(|k| Arc::ptr_eq(k, &keys[0])));
        assert_eq!(cert_info(&keys[0].cert[0]).unwrap().names, ["x.svc.example.com"]);

        // names outside the policy issue nothing, however many handshakes ask
        let default = certs.pick(None, false);
        for name in ["random.example.org", "www.google.com", "nobody.home.arpa", "10.1.2.3", "public.example.org"] {
            assert!(Arc::ptr_eq(&default, &certs.pick(Some(name), false)), "{name}");
        }
        assert_eq!(certs.internal_issued(), 1);
        assert_eq!(certs.active.load().slots.lock().unwrap().len(), 1, "no slot for refused names");
    }

    #[test]
    fn an_issuance_in_progress_blocks_only_its_own_name() {
        let dir = tempfile::tempdir().unwrap();
        let certs = Certs::new(dir.path(), policy()).unwrap();
        // hold app.example.com's slot as an issuance in progress would
        let active = certs.active.load_full();
        let slot = Certs::slot(&active, "app.example.com", SystemTime::now());
        let held = slot.lock().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let c = &certs;
        std::thread::scope(|s| {
            s.spawn(|| tx.send(c.pick(Some("nas.home.arpa"), false)).unwrap());
            let other = rx.recv_timeout(Duration::from_secs(10)).expect("another name is not held up");
            assert_eq!(cert_info(&other.cert[0]).unwrap().names, ["nas.home.arpa"]);
            let (tx2, rx2) = std::sync::mpsc::channel();
            s.spawn(move || tx2.send(c.pick(Some("app.example.com"), false)).unwrap());
            assert!(rx2.recv_timeout(Duration::from_millis(300)).is_err(), "the same name waits for the issuance");
            drop(held);
            let same = rx2.recv_timeout(Duration::from_secs(10)).unwrap();
            assert_eq!(cert_info(&same.cert[0]).unwrap().names, ["app.example.com"]);
        });
        assert_eq!(certs.internal_issued(), 2);
    }

    #[test]
    fn a_changed_constraint_set_replaces_the_root_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let p = policy();
        let certs = Certs::new(dir.path(), p.clone()).unwrap();
        let first = certs.root_pem().unwrap();
        let cached = certs.pick(Some("nas.home.arpa"), false);
        certs.set_policy(dir.path(), p.clone()).unwrap();
        assert_eq!(certs.root_pem().unwrap(), first, "same constraints: same root");
        let mut q = p.clone();
        q.hosts.push("admin.example.org".into());
        q.constraints = ca::Constraints::new(
            q.constraints.dns.iter().chain(&q.constraints.ip).cloned().chain(["admin.example.org".to_string()]),
        );
        certs.set_policy(dir.path(), q).unwrap();
        let second = certs.root_pem().unwrap();
        assert_ne!(second, first);
        assert_eq!(std::fs::read_to_string(dir.path().join("ca/root.crt.old")).unwrap(), first);
        let fresh = certs.pick(Some("nas.home.arpa"), false);
        assert!(!Arc::ptr_eq(&cached, &fresh), "leaves of the old intermediate are forgotten");
        assert!(
            cert_info(&certs.pick(Some("admin.example.org"), false).cert[0]).unwrap().names == ["admin.example.org"]
        );
        // and a restart with the same policy keeps it
        let again = Certs::new(dir.path(), certs.active.load().policy.clone()).unwrap();
        assert_eq!(again.root_pem().unwrap(), second);
    }
}
