//! hearth's internal CA (security-critical), like Caddy's `tls internal`: a root and an intermediate (ECDSA P-256,
//! 10 years) in `<data_dir>/ca/`, the intermediate issuing short-lived leaf certificates for LAN names and addresses
//! on demand. Users install `root.crt` once on their devices.
//!
//! - Both CA certificates carry critical X.509 name constraints ([`Constraints`]): the root (for clients that
//!   enforce a trust anchor's constraints) and the intermediate (for those that enforce them only below the anchor).
//!   Even someone holding the intermediate's key cannot mint a certificate for `www.google.com` that a device trusting
//!   hearth's root accepts.
//! - The root's key signs the intermediate once, at creation, and is never written to disk: there is no key on the box
//!   that could make an unconstrained CA. A new set of constraints therefore means a new root (and intermediate);
//!   devices must install it again from `/ca.crt`. The previous root is kept as `root.crt.old`.
//! - `constraints.json` records the set the root carries and the SHA-256 of `root.crt` and `intermediate.crt`, so a
//!   start or a config change compares the wanted set with the one on disk, and files that do not belong together
//!   (an interrupted replacement) are replaced as a whole.
//! - A root from an older hearth (`root.crt` + `root.key`, no constraints) is replaced at start; its key is deleted.
//! - Files: `root.crt` (public), `intermediate.crt`, `intermediate.key` (mode 0600), `constraints.json`,
//!   `root.crt.old` (the previous root, if any).

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CidrSubnet, DnType, ExtendedKeyUsagePurpose, GeneralSubtree, IsCa, Issuer,
    KeyPair, KeyUsagePurpose, NameConstraints, PublicKeyData,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use serde::{Deserialize, Serialize};

use super::{TlsError, write_private};

const CA_YEARS: i64 = 10;
/// A CA that expires within this time is replaced at start (devices need the new root before the old one ends).
const RENEW_MARGIN_DAYS: i64 = 60;

const ROOT_CRT: &str = "root.crt";
const ROOT_OLD: &str = "root.crt.old";
/// The root key an older hearth kept on disk; deleted once the root it belonged to is replaced.
const LEGACY_ROOT_KEY: &str = "root.key";
const INTERMEDIATE_CRT: &str = "intermediate.crt";
const INTERMEDIATE_KEY: &str = "intermediate.key";
const STATE: &str = "constraints.json";

/// The fixed part of the constraints: loopback, RFC 1918, link-local, ULA.
pub(crate) const PRIVATE_NETWORKS: [&str; 8] = [
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "fc00::/7",
    "fe80::/10",
    "::1/128",
];
/// The fixed DNS subtrees: names no public CA issues for.
pub(crate) const LOCAL_SUFFIXES: [&str; 5] = ["home.arpa", "local", "lan", "internal", "localhost"];

/// An address prefix (the address masked to its length).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Net {
    addr: IpAddr,
    prefix: u8,
}

impl Net {
    fn parse(s: &str) -> Option<Net> {
        let (a, p) = s.split_once('/').unwrap_or((s, ""));
        let addr: IpAddr = a.parse().ok()?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = if p.is_empty() { max } else { p.parse::<u8>().ok().filter(|p| *p <= max)? };
        let addr = match addr {
            IpAddr::V4(v4) => {
                let mask = u32::MAX.checked_shl(32 - prefix as u32).unwrap_or(0);
                IpAddr::V4(std::net::Ipv4Addr::from(u32::from(v4) & mask))
            }
            IpAddr::V6(v6) => {
                let mask = u128::MAX.checked_shl(128 - prefix as u32).unwrap_or(0);
                IpAddr::V6(std::net::Ipv6Addr::from(u128::from(v6) & mask))
            }
        };
        Some(Net { addr, prefix })
    }

    fn contains(&self, ip: IpAddr) -> bool {
        Net::parse(&format!("{ip}/{}", self.prefix)).is_some_and(|n| n.addr == self.addr)
    }

    fn covers(&self, other: &Net) -> bool {
        other.prefix >= self.prefix && self.contains(other.addr)
    }
}

impl std::fmt::Display for Net {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

fn dns_covers(base: &str, name: &str) -> bool {
    name == base || name.strip_suffix(base).is_some_and(|rest| rest.ends_with('.'))
}

/// What the internal CA may certify: the permitted subtrees of its name constraints. A DNS entry permits the name
/// and every name below it; an address entry permits the addresses in its prefix. Kept minimal (no entry covered
/// by another) and sorted, so equal sets compare equal.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub(crate) struct Constraints {
    pub dns: Vec<String>,
    /// `address/prefix-length`
    pub ip: Vec<String>,
}

impl Constraints {
    /// The set of DNS names (`*.parent` counts as `parent`), addresses and address prefixes in `entries`; entries
    /// that are neither are skipped.
    pub(crate) fn new<S: AsRef<str>>(entries: impl IntoIterator<Item = S>) -> Constraints {
        let mut dns: Vec<String> = vec![];
        let mut nets: Vec<Net> = vec![];
        for e in entries {
            let e = e.as_ref().trim().trim_end_matches('.').to_ascii_lowercase();
            let e = e.strip_prefix("*.").unwrap_or(&e);
            if let Some(n) = Net::parse(e) {
                nets.push(n);
            } else if !e.is_empty() && !e.contains(['/', '*', ' ']) {
                dns.push(e.to_string());
            }
        }
        dns.sort();
        dns.dedup();
        let dns: Vec<String> =
            dns.iter().filter(|d| !dns.iter().any(|b| b != *d && dns_covers(b, d))).cloned().collect();
        nets.sort_by_key(|n| (n.addr.is_ipv6(), n.prefix));
        let mut kept: Vec<Net> = vec![];
        for n in nets {
            if !kept.iter().any(|k| k.covers(&n)) {
                kept.push(n);
            }
        }
        let mut ip: Vec<String> = kept.iter().map(Net::to_string).collect();
        ip.sort();
        Constraints { dns, ip }
    }

    /// Whether a certificate for `name` (a DNS name or an address) satisfies the constraints.
    pub(crate) fn permits(&self, name: &str) -> bool {
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        if let Ok(ip) = name.parse::<IpAddr>() {
            return self.ip.iter().filter_map(|n| Net::parse(n)).any(|n| n.contains(ip));
        }
        let name = name.strip_prefix("*.").unwrap_or(&name);
        self.dns.iter().any(|d| dns_covers(d, name))
    }

    fn extension(&self) -> NameConstraints {
        let mut permitted: Vec<GeneralSubtree> = self.dns.iter().map(|d| GeneralSubtree::DnsName(d.clone())).collect();
        permitted.extend(
            self.ip
                .iter()
                .filter_map(|n| Net::parse(n))
                .map(|n| GeneralSubtree::IpAddress(CidrSubnet::from_addr_prefix(n.addr, n.prefix))),
        );
        NameConstraints { permitted_subtrees: permitted, excluded_subtrees: vec![] }
    }
}

/// `constraints.json`: the set the root carries and the certificates it was written with.
#[derive(Debug, Serialize, Deserialize)]
struct State {
    constraints: Constraints,
    root_sha256: String,
    intermediate_sha256: String,
}

fn sha256_hex(der: &[u8]) -> String {
    use sha2::Digest;
    data_encoding::HEXLOWER.encode(&sha2::Sha256::digest(der))
}

pub(crate) struct InternalCa {
    /// The root (PEM), what `/ca.crt` serves and devices trust.
    pub root_pem: String,
    /// The issuing CA, sent after every leaf.
    pub intermediate_der: CertificateDer<'static>,
    pub constraints: Constraints,
    pub dir: PathBuf,
    issuer: Issuer<'static, KeyPair>,
}

impl std::fmt::Debug for InternalCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InternalCa")
            .field("dir", &self.dir)
            .field("constraints", &self.constraints)
            .finish_non_exhaustive()
    }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> TlsError + '_ {
    move |e| TlsError::Io { path: path.display().to_string(), reason: e.to_string() }
}

/// Write a public file through a temporary file and a rename.
fn write_public(path: &Path, data: &[u8]) -> Result<(), TlsError> {
    crate::util::write_atomic(path, data, Some(0o644)).map_err(io_err(path))
}

fn validity(der: &[u8]) -> Result<(i64, Vec<u8>), String> {
    let (_, c) = x509_parser::parse_x509_certificate(der).map_err(|e| e.to_string())?;
    Ok((c.validity().not_after.timestamp(), c.tbs_certificate.subject_pki.raw.to_vec()))
}

impl InternalCa {
    /// The CA in `dir` when it carries exactly `wanted`; otherwise a new root and intermediate carrying `wanted`
    /// (the previous root kept as `root.crt.old`, with a warning: devices must install the new one).
    pub(crate) fn load_or_create(dir: &Path, wanted: &Constraints) -> Result<InternalCa, TlsError> {
        crate::storage::ensure_private_dir(dir)
            .map_err(|e| TlsError::Io { path: dir.display().to_string(), reason: e.to_string() })?;
        let reason = match InternalCa::load(dir) {
            Ok(ca) if ca.constraints == *wanted => {
                // a replacement interrupted after its state was written
                let _ = std::fs::remove_file(dir.join(LEGACY_ROOT_KEY));
                return Ok(ca);
            }
            Ok(ca) => format!(
                "the names it may certify changed (from dns {:?} ip {:?} to dns {:?} ip {:?})",
                ca.constraints.dns, ca.constraints.ip, wanted.dns, wanted.ip
            ),
            Err(reason) => reason,
        };
        let replacing = dir.join(ROOT_CRT).exists();
        let ca = InternalCa::create(dir, wanted)?;
        if replacing {
            tracing::warn!(
                reason,
                old = %dir.join(ROOT_OLD).display(),
                new = %dir.join(ROOT_CRT).display(),
                "replaced hearth's internal root CA: devices must install the new root from /ca.crt"
            );
        } else {
            tracing::info!(path = %dir.join(ROOT_CRT).display(), dns = ?wanted.dns, ip = ?wanted.ip,
                "created hearth's internal root CA");
        }
        Ok(ca)
    }

    /// The CA on disk, or why it cannot be used.
    fn load(dir: &Path) -> Result<InternalCa, String> {
        if !dir.join(STATE).exists() {
            return Err(if dir.join(ROOT_CRT).exists() || dir.join(LEGACY_ROOT_KEY).exists() {
                "it carries no name constraints (created by an older hearth)".into()
            } else {
                "there is none yet".into()
            });
        }
        let read = |name: &str| {
            std::fs::read_to_string(dir.join(name)).map_err(|e| format!("{}: {e}", dir.join(name).display()))
        };
        let state: State = serde_json::from_str(&read(STATE)?).map_err(|e| format!("{STATE}: {e}"))?;
        let root_pem = read(ROOT_CRT)?;
        let inter_pem = read(INTERMEDIATE_CRT)?;
        let key_pem = read(INTERMEDIATE_KEY)?;
        let first = |pem: &str, name: &str| {
            super::parse_chain(pem, &dir.join(name)).map_err(|e| e.to_string()).map(|mut c| c.swap_remove(0))
        };
        let root_der = first(&root_pem, ROOT_CRT)?;
        let intermediate_der = first(&inter_pem, INTERMEDIATE_CRT)?;
        if sha256_hex(&root_der) != state.root_sha256 || sha256_hex(&intermediate_der) != state.intermediate_sha256 {
            return Err("its files do not belong together (an interrupted replacement?)".into());
        }
        let kp = KeyPair::from_pem(&key_pem).map_err(|e| format!("{INTERMEDIATE_KEY}: {e}"))?;
        let (inter_end, inter_spki) = validity(&intermediate_der)?;
        let (root_end, _) = validity(&root_der)?;
        if kp.subject_public_key_info() != inter_spki {
            return Err(format!("{INTERMEDIATE_KEY} is not the key of {INTERMEDIATE_CRT}"));
        }
        let soon = time::OffsetDateTime::now_utc().unix_timestamp() + RENEW_MARGIN_DAYS * 86_400;
        if inter_end.min(root_end) < soon {
            return Err("it expires soon".into());
        }
        let issuer = Issuer::from_ca_cert_pem(&inter_pem, kp).map_err(|e| format!("{INTERMEDIATE_CRT}: {e}"))?;
        Ok(InternalCa { root_pem, intermediate_der, constraints: state.constraints, dir: dir.to_path_buf(), issuer })
    }

    /// A new root and intermediate carrying `constraints`, written to `dir`; the root's key is dropped here.
    fn create(dir: &Path, constraints: &Constraints) -> Result<InternalCa, TlsError> {
        let now = time::OffsetDateTime::now_utc();
        let host: String = crate::util::host_name().chars().take(24).collect();
        // a distinct name per root, so devices (and people) tell a replaced root from its successor
        let stamp = format!(
            "{}-{:02}-{:02} {:02}:{:02}:{:02}",
            now.year(),
            u8::from(now.month()),
            now.day(),
            now.hour(),
            now.minute(),
            now.second()
        );
        let who = if host.is_empty() { stamp } else { format!("{host}, {stamp}") };
        let ca_params = |cn: String, path_len: u8| -> Result<CertificateParams, TlsError> {
            let mut p = CertificateParams::new(Vec::<String>::new())?;
            p.distinguished_name.push(DnType::CommonName, cn);
            p.distinguished_name.push(DnType::OrganizationName, "hearth");
            p.is_ca = IsCa::Ca(BasicConstraints::Constrained(path_len));
            p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
            p.name_constraints = Some(constraints.extension());
            p.not_before = now - time::Duration::days(1);
            p.not_after = now + time::Duration::days(365 * CA_YEARS);
            Ok(p)
        };
        let root_params = ca_params(format!("hearth Local CA ({who})"), 1)?;
        let root_key = KeyPair::generate()?;
        let root = root_params.self_signed(&root_key)?;
        let mut inter_params = ca_params(format!("hearth Intermediate CA ({who})"), 0)?;
        inter_params.use_authority_key_identifier_extension = true;
        inter_params.not_after -= time::Duration::days(1);
        let inter_key = KeyPair::generate()?;
        let inter = {
            let root_issuer = Issuer::new(root_params, root_key);
            inter_params.signed_by(&inter_key, &root_issuer)?
            // the root's key ends here: nothing on disk can sign another intermediate
        };

        write_private(&dir.join(INTERMEDIATE_KEY), inter_key.serialize_pem().as_bytes())?;
        write_public(&dir.join(INTERMEDIATE_CRT), inter.pem().as_bytes())?;
        let crt = dir.join(ROOT_CRT);
        if crt.exists() {
            let old = dir.join(ROOT_OLD);
            std::fs::rename(&crt, &old).map_err(io_err(&old))?;
        }
        write_public(&crt, root.pem().as_bytes())?;
        let state = State {
            constraints: constraints.clone(),
            root_sha256: sha256_hex(root.der()),
            intermediate_sha256: sha256_hex(inter.der()),
        };
        let json = serde_json::to_string_pretty(&state).map_err(|e| TlsError::Parse(e.to_string()))?;
        write_public(&dir.join(STATE), json.as_bytes())?;
        let legacy = dir.join(LEGACY_ROOT_KEY);
        if legacy.exists() {
            std::fs::remove_file(&legacy).map_err(io_err(&legacy))?;
        }
        Ok(InternalCa {
            root_pem: root.pem(),
            intermediate_der: inter.der().clone(),
            constraints: constraints.clone(),
            dir: dir.to_path_buf(),
            issuer: Issuer::new(inter_params, inter_key),
        })
    }

    /// A leaf certificate for `names` (DNS names or IP addresses) valid for `lifetime`; the chain is leaf +
    /// intermediate. Names outside the constraints are refused (clients would reject the certificate anyway).
    pub(crate) fn issue(
        &self,
        names: &[String],
        lifetime: std::time::Duration,
    ) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), TlsError> {
        if let Some(n) = names.iter().find(|n| !self.constraints.permits(n)) {
            return Err(TlsError::NotPermitted(n.clone()));
        }
        self.sign_leaf(names, lifetime)
    }

    fn sign_leaf(
        &self,
        names: &[String],
        lifetime: std::time::Duration,
    ) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), TlsError> {
        let mut params = CertificateParams::new(names.to_vec())?;
        // the common name only for a DNS name: some verifiers check a host-like CN against the DNS constraints
        if let Some(cn) = names.iter().find(|n| n.parse::<IpAddr>().is_err()) {
            params.distinguished_name.push(DnType::CommonName, cn.clone());
        }
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
        Ok((vec![cert.der().clone(), self.intermediate_der.clone()], key))
    }
}

#[cfg(test)]
impl InternalCa {
    /// The root certificate (DER), read back from the PEM it is kept as.
    fn root_der(&self) -> CertificateDer<'static> {
        super::parse_chain(&self.root_pem, std::path::Path::new(ROOT_CRT)).unwrap().swap_remove(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::client::danger::ServerCertVerifier;

    fn wanted() -> Constraints {
        Constraints::new(
            LOCAL_SUFFIXES
                .iter()
                .chain(PRIVATE_NETWORKS.iter())
                .copied()
                .chain(["nas.example.com", "*.svc.example.net"]),
        )
    }

    fn verifier(root: &CertificateDer<'static>) -> std::sync::Arc<rustls::client::WebPkiServerVerifier> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(root.clone()).unwrap();
        rustls::client::WebPkiServerVerifier::builder_with_provider(
            std::sync::Arc::new(roots),
            std::sync::Arc::new(rustls::crypto::ring::default_provider()),
        )
        .build()
        .unwrap()
    }

    fn pem(der: &[u8]) -> String {
        let b = data_encoding::BASE64.encode(der);
        let lines: Vec<&str> = b.as_bytes().chunks(64).map(|c| std::str::from_utf8(c).unwrap()).collect();
        format!("-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n", lines.join("\n"))
    }

    #[test]
    fn constraints_are_minimal_sorted_and_match_like_rfc_5280() {
        let c = Constraints::new([
            "home.arpa",
            "nas.home.arpa",
            "*.svc.example.com",
            "App.Example.com.",
            "10.0.0.0/8",
            "10.1.2.3",
            "203.0.113.7",
            "fd00::1",
            "fc00::/7",
            "bad/x",
        ]);
        assert_eq!(c.dns, ["app.example.com", "home.arpa", "svc.example.com"]);
        assert_eq!(c.ip, ["10.0.0.0/8", "203.0.113.7/32", "fc00::/7"]);
        assert!(c.permits("home.arpa") && c.permits("a.b.home.arpa") && c.permits("x.svc.example.com"));
        assert!(!c.permits("evilhome.arpa"), "whole labels only");
        assert!(!c.permits("example.com") && !c.permits("www.google.com"));
        assert!(c.permits("10.200.1.1") && c.permits("fd12::5") && c.permits("203.0.113.7"));
        assert!(!c.permits("203.0.113.8") && !c.permits("8.8.8.8"));
        assert_eq!(
            c,
            Constraints::new([
                "svc.example.com",
                "fc00::/7",
                "app.example.com",
                "203.0.113.7/32",
                "10.0.0.0/8",
                "home.arpa"
            ])
        );
    }

    #[test]
    fn root_and_intermediate_carry_critical_name_constraints_and_leaves_come_from_the_intermediate() {
        use x509_parser::prelude::*;
        let dir = tempfile::tempdir().unwrap();
        let ca = InternalCa::load_or_create(&dir.path().join("ca"), &wanted()).unwrap();
        let root_der = ca.root_der();
        let (_, root) = parse_x509_certificate(&root_der).unwrap();
        let (_, inter) = parse_x509_certificate(&ca.intermediate_der).unwrap();
        for (c, path_len) in [(&root, 1), (&inter, 0)] {
            let bc = c.basic_constraints().unwrap().unwrap();
            assert!(bc.value.ca);
            assert_eq!(bc.value.path_len_constraint, Some(path_len));
            let ext =
                c.get_extension_unique(&x509_parser::oid_registry::OID_X509_EXT_NAME_CONSTRAINTS).unwrap().unwrap();
            assert!(ext.critical, "name constraints are critical");
            let ParsedExtension::NameConstraints(nc) = ext.parsed_extension() else { panic!("not parsed") };
            assert!(nc.excluded_subtrees.is_none());
            let mut dns = vec![];
            let mut ips = vec![];
            for s in nc.permitted_subtrees.as_ref().unwrap() {
                match &s.base {
                    GeneralName::DNSName(d) => dns.push(d.to_string()),
                    GeneralName::IPAddress(b) => ips.push(b.to_vec()),
                    other => panic!("unexpected subtree {other:?}"),
                }
            }
            dns.sort();
            assert_eq!(
                dns,
                ["home.arpa", "internal", "lan", "local", "localhost", "nas.example.com", "svc.example.net"],
                "DNS subtrees"
            );
            // address + mask, as RFC 5280 encodes a prefix
            for want in [
                vec![10, 0, 0, 0, 255, 0, 0, 0],
                vec![172, 16, 0, 0, 255, 240, 0, 0],
                vec![192, 168, 0, 0, 255, 255, 0, 0],
                vec![127, 0, 0, 0, 255, 0, 0, 0],
                vec![169, 254, 0, 0, 255, 255, 0, 0],
            ] {
                assert!(ips.contains(&want), "{want:?} in {ips:?}");
            }
            let mut fc00 = vec![0xfc; 1];
            fc00.extend([0; 15]);
            fc00.push(0xfe);
            fc00.extend([0; 15]);
            assert!(ips.contains(&fc00), "fc00::/7");
            let mut loopback = vec![0; 15];
            loopback.push(1);
            loopback.extend([0xff; 16]);
            assert!(ips.contains(&loopback), "::1/128");
            assert_eq!(ips.len(), PRIVATE_NETWORKS.len());
        }
        assert_eq!(inter.issuer(), root.subject(), "the root signs the intermediate");
        inter.verify_signature(Some(root.public_key())).unwrap();

        let (chain, _key) =
            ca.issue(&["app.home.arpa".into(), "192.168.1.5".into()], std::time::Duration::from_secs(3600)).unwrap();
        assert_eq!(chain.len(), 2, "leaf + intermediate");
        assert_eq!(chain[1], ca.intermediate_der);
        let (_, leaf) = parse_x509_certificate(&chain[0]).unwrap();
        assert_eq!(leaf.issuer(), inter.subject(), "leaves come from the intermediate");
        leaf.verify_signature(Some(inter.public_key())).unwrap();
        assert!(leaf.verify_signature(Some(root.public_key())).is_err());

        // a rustls client that trusts only the root accepts the leaf for both names, and no other name
        let v = verifier(&ca.root_der());
        let now = rustls::pki_types::UnixTime::now();
        for name in ["app.home.arpa", "192.168.1.5"] {
            let sn = rustls::pki_types::ServerName::try_from(name).unwrap();
            v.verify_server_cert(&chain[0], &chain[1..], &sn, &[], now).unwrap();
        }
        let other = rustls::pki_types::ServerName::try_from("other.home.arpa").unwrap();
        assert!(v.verify_server_cert(&chain[0], &chain[1..], &other, &[], now).is_err());
        // the CA refuses names outside its constraints
        assert!(matches!(
            ca.issue(&["www.google.com".into()], std::time::Duration::from_secs(3600)),
            Err(TlsError::NotPermitted(n)) if n == "www.google.com"
        ));
        assert!(ca.issue(&["8.8.8.8".into()], std::time::Duration::from_secs(3600)).is_err());
    }

    #[test]
    fn openssl_accepts_a_local_leaf_and_rejects_a_forged_one() {
        let dir = tempfile::tempdir().unwrap();
        let ca = InternalCa::load_or_create(&dir.path().join("ca"), &wanted()).unwrap();
        let day = std::time::Duration::from_secs(86_400);
        let verify = |file: &str, chain: &[CertificateDer<'static>]| {
            let leaf = dir.path().join(file);
            std::fs::write(&leaf, pem(&chain[0])).unwrap();
            let out = std::process::Command::new("openssl")
                .args(["verify", "-CAfile"])
                .arg(dir.path().join("ca/root.crt"))
                .arg("-untrusted")
                .arg(dir.path().join("ca/intermediate.crt"))
                .arg(&leaf)
                .output()
                .expect("openssl is needed");
            (
                out.status.success(),
                format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)),
            )
        };
        for names in
            [vec!["app.home.arpa".to_string()], vec!["x.svc.example.net".into(), "10.1.2.3".into(), "fd00::5".into()]]
        {
            let (chain, _) = ca.issue(&names, day).unwrap();
            let (ok, text) = verify("good.crt", &chain);
            assert!(ok, "{names:?}: {text}");
        }
        // with the intermediate's key and no policy in the way: still refused by anyone trusting the root
        for forged in [
            vec!["www.google.com".to_string()],
            vec!["app.home.arpa".into(), "8.8.8.8".into()],
            vec!["example.net".into()],
        ] {
            let (chain, _) = ca.sign_leaf(&forged, day).unwrap();
            let (ok, text) = verify("forged.crt", &chain);
            assert!(!ok, "{forged:?} must fail: {text}");
            assert!(
                text.to_lowercase().contains("subtree violation") || text.contains("name constraint"),
                "{forged:?}: {text}"
            );
            // and by rustls/webpki
            let sn = rustls::pki_types::ServerName::try_from(forged[0].as_str()).unwrap();
            let r = verifier(&ca.root_der()).verify_server_cert(
                &chain[0],
                &chain[1..],
                &sn,
                &[],
                rustls::pki_types::UnixTime::now(),
            );
            assert!(r.is_err(), "{forged:?}");
        }
    }

    #[test]
    fn reused_while_the_constraints_stay_replaced_when_they_change() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("ca");
        let ca = InternalCa::load_or_create(&d, &wanted()).unwrap();
        let mode = |f: &str| std::fs::metadata(d.join(f)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(INTERMEDIATE_KEY), 0o600);
        assert_eq!(mode(".") & 0o077, 0, "private directory");
        assert!(!d.join(LEGACY_ROOT_KEY).exists(), "the root key never reaches the disk");
        let again = InternalCa::load_or_create(&d, &wanted()).unwrap();
        assert_eq!(ca.root_pem, again.root_pem, "reused, not re-created");
        assert_eq!(ca.intermediate_der, again.intermediate_der);
        assert!(!d.join(ROOT_OLD).exists());
        // a leaf from the reloaded intermediate still chains to the root
        let (chain, _) = again.issue(&["nas.home.arpa".into()], std::time::Duration::from_secs(3600)).unwrap();
        let sn = rustls::pki_types::ServerName::try_from("nas.home.arpa").unwrap();
        verifier(&ca.root_der())
            .verify_server_cert(&chain[0], &chain[1..], &sn, &[], rustls::pki_types::UnixTime::now())
            .unwrap();

        // another admin host: a new root, the previous one kept beside it
        let mut more = LOCAL_SUFFIXES.iter().chain(PRIVATE_NETWORKS.iter()).copied().collect::<Vec<_>>();
        more.extend(["nas.example.com", "*.svc.example.net", "admin.example.org"]);
        let changed = InternalCa::load_or_create(&d, &Constraints::new(more)).unwrap();
        assert_ne!(changed.root_pem, ca.root_pem);
        assert!(changed.constraints.permits("admin.example.org"));
        assert_eq!(std::fs::read_to_string(d.join(ROOT_OLD)).unwrap(), ca.root_pem);
        assert_eq!(std::fs::read_to_string(d.join(ROOT_CRT)).unwrap(), changed.root_pem);
        // the old intermediate no longer chains to the root on disk
        let sn = rustls::pki_types::ServerName::try_from("nas.home.arpa").unwrap();
        assert!(
            verifier(&changed.root_der())
                .verify_server_cert(&chain[0], &chain[1..], &sn, &[], rustls::pki_types::UnixTime::now())
                .is_err()
        );

        // files that do not belong together are replaced as a whole
        std::fs::write(d.join(INTERMEDIATE_CRT), pem(&ca.intermediate_der)).unwrap();
        let fixed = InternalCa::load_or_create(&d, &changed.constraints).unwrap();
        assert_ne!(fixed.root_pem, changed.root_pem);
    }

    #[test]
    fn an_unconstrained_root_from_an_older_hearth_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("ca");
        crate::storage::ensure_private_dir(&d).unwrap();
        // what hearth wrote before: a self-signed root and its key, nothing else
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name.push(DnType::CommonName, "hearth Local CA");
        p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        let kp = KeyPair::generate().unwrap();
        let old = p.self_signed(&kp).unwrap();
        std::fs::write(d.join(ROOT_CRT), old.pem()).unwrap();
        write_private(&d.join(LEGACY_ROOT_KEY), kp.serialize_pem().as_bytes()).unwrap();

        let ca = InternalCa::load_or_create(&d, &wanted()).unwrap();
        assert_ne!(ca.root_pem, old.pem());
        assert_eq!(std::fs::read_to_string(d.join(ROOT_OLD)).unwrap(), old.pem(), "the old root is kept");
        assert!(!d.join(LEGACY_ROOT_KEY).exists(), "the old root's key is gone");
        let root_der = ca.root_der();
        let (_, root) = x509_parser::parse_x509_certificate(&root_der).unwrap();
        assert!(root.name_constraints().unwrap().is_some());
    }
}
