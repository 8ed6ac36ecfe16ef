//! DNSSEC validation (RFC 4033–4035, NSEC3 RFC 5155/9276, Extended DNS Errors RFC 8914).
//!
//! The cryptography, canonical forms, key tags and NSEC3 hashing are hickory-proto's (`dnssec-ring`). The
//! validation logic is ours, because hickory's validator takes no clock (a Pi without a real-time clock must
//! not lock itself out), reports no EDE codes and keeps no zone-cut cache we could share between forward and
//! recursive mode.
//!
//! Pure core: [`verify_rrset`] (signatures), [`deny_name`]/[`deny_type`] (NSEC and NSEC3 proofs), [`Anchors`]
//! (trust anchors). Shell: [`Validator`] walks the chain of trust from a trust anchor down to a name, asking a
//! [`Fetch`] (the upstreams in forward mode, the recursor in recursive mode) for DS and DNSKEY sets, and
//! remembers every zone cut it proved (and every name it proved is not one) until the records' TTLs run out.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hickory_proto::dnssec::rdata::{DNSKEY, DNSSECRData, DS, NSEC, NSEC3, RRSIG};
use hickory_proto::dnssec::{Algorithm, DigestType, Nsec3HashAlgorithm, PublicKeyBuf, TrustAnchors, Verifier};
use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType, RecordTypeSet};

/// What validation concluded about an answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Security {
    /// Proven by a chain of signatures from a trust anchor: the answer may carry AD.
    Secure,
    /// Proven to be outside any signed zone (an unsigned delegation, no anchor above it, or an algorithm we
    /// cannot check): answered without AD.
    Insecure,
    /// Should be signed but is not, or does not verify: SERVFAIL with the EDE code.
    Bogus(Bogus),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bogus {
    /// The Extended DNS Error code (RFC 8914).
    pub ede: u16,
    pub why: String,
}

/// Extended DNS Error codes used here.
pub mod ede {
    pub const DNSSEC_BOGUS: u16 = 6;
    pub const SIGNATURE_EXPIRED: u16 = 7;
    pub const SIGNATURE_NOT_YET_VALID: u16 = 8;
    pub const DNSKEY_MISSING: u16 = 9;
    pub const RRSIGS_MISSING: u16 = 10;
    pub const NSEC_MISSING: u16 = 12;
}

fn bogus(ede: u16, why: impl Into<String>) -> Bogus {
    Bogus { ede, why: why.into() }
}

impl Security {
    pub fn as_str(&self) -> &'static str {
        match self {
            Security::Secure => "secure",
            Security::Insecure => "insecure",
            Security::Bogus(_) => "bogus",
        }
    }
}

/// The time signatures are checked against. `check_times` is false while the system clock is not plausible
/// (before the binary was built: a Pi without RTC before NTP has synced); signatures are then verified
/// cryptographically and their validity periods are checked against `floor` instead — the build date, a time
/// the real clock is surely past —, so a signature that had expired before hearth was built is still refused
/// (an attacker cannot replay old signed data to a resolver that has just booted in 1970).
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    pub now: u32,
    pub check_times: bool,
    /// The earliest time the real clock can show (Unix seconds, the build date); 0 = no floor.
    pub floor: u32,
}

impl Clock {
    /// The system clock, plausible when not before `not_before` (Unix seconds, the build date), which is also the
    /// floor while it is not.
    pub fn system(not_before: u64) -> Clock {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        Clock::at(now, not_before)
    }

    /// The clock at `now` (Unix seconds) for a binary built at `not_before`.
    pub fn at(now: u64, not_before: u64) -> Clock {
        Clock { now: now as u32, check_times: now >= not_before, floor: not_before.min(u64::from(u32::MAX)) as u32 }
    }
}

/// RFC 1982 serial arithmetic, as RFC 4034 §3.1.5 requires for signature times.
fn serial_lt(a: u32, b: u32) -> bool {
    a != b && b.wrapping_sub(a) < 0x8000_0000
}

/// One RRset of a message section with the signatures that cover it.
#[derive(Debug)]
pub struct RrSet<'a> {
    pub name: Name,
    pub rtype: RecordType,
    pub records: Vec<&'a Record>,
    pub sigs: Vec<&'a RRSIG>,
    pub ttl: u32,
}

/// Group a section into RRsets (RRSIGs attached to what they cover; OPT and stray RRSIGs dropped).
pub fn rrsets(section: &[Record]) -> Vec<RrSet<'_>> {
    let mut sets: Vec<RrSet<'_>> = vec![];
    for r in section {
        if matches!(r.record_type(), RecordType::RRSIG | RecordType::OPT) {
            continue;
        }
        match sets.iter_mut().find(|s| s.rtype == r.record_type() && s.name == r.name) {
            Some(s) => {
                s.records.push(r);
                s.ttl = s.ttl.min(r.ttl);
            }
            None => sets.push(RrSet {
                name: r.name.clone(),
                rtype: r.record_type(),
                records: vec![r],
                sigs: vec![],
                ttl: r.ttl,
            }),
        }
    }
    for r in section {
        if let RData::DNSSEC(DNSSECRData::RRSIG(sig)) = &r.data
            && let Some(s) = sets.iter_mut().find(|s| s.rtype == sig.input().type_covered && s.name == r.name)
        {
            s.sigs.push(sig);
        }
    }
    sets
}

/// Verify an RRset against the zone's keys: some signature by `zone` must verify with one of `keys` and be
/// within its validity period. The error names the most telling failure.
pub fn verify_rrset(set: &RrSet<'_>, zone: &Name, keys: &[DNSKEY], clock: Clock) -> Result<(), Bogus> {
    let what = format!("{} {}", set.name, set.rtype);
    if set.sigs.is_empty() {
        return Err(bogus(ede::RRSIGS_MISSING, format!("{what} has no signature")));
    }
    let mut err: Option<Bogus> = None;
    let keep = |e: Bogus, err: &mut Option<Bogus>| {
        // a verification failure says more than a missing key, which says more than a wrong signer
        if err.as_ref().is_none_or(|old| rank(e.ede) > rank(old.ede)) {
            *err = Some(e);
        }
    };
    for sig in &set.sigs {
        let input = sig.input();
        if input.signer_name != *zone || !zone.zone_of(&set.name) {
            keep(bogus(ede::DNSSEC_BOGUS, format!("{what} is signed by {} not {zone}", input.signer_name)), &mut err);
            continue;
        }
        if usize::from(input.num_labels) > usize::from(set.name.num_labels()) {
            keep(bogus(ede::DNSSEC_BOGUS, format!("{what}: signature has too many labels")), &mut err);
            continue;
        }
        if !clock.check_times && clock.floor != 0 && serial_lt(input.sig_expiration.get(), clock.floor) {
            // the clock is not plausible, but the signature expired before this binary was built
            keep(
                bogus(ede::SIGNATURE_EXPIRED, format!("the signature of {what} expired before hearth was built")),
                &mut err,
            );
            continue;
        }
        if clock.check_times {
            let (inception, expiration) = (input.sig_inception.get(), input.sig_expiration.get());
            if serial_lt(expiration, clock.now) {
                keep(bogus(ede::SIGNATURE_EXPIRED, format!("the signature of {what} expired")), &mut err);
                continue;
            }
            if serial_lt(clock.now, inception) {
                keep(
                    bogus(ede::SIGNATURE_NOT_YET_VALID, format!("the signature of {what} is not yet valid")),
                    &mut err,
                );
                continue;
            }
        }
        let mut tried = false;
        for key in keys.iter().filter(|k| {
            k.zone_key()
                && !k.revoke()
                && k.algorithm() == input.algorithm
                && k.calculate_key_tag().ok() == Some(input.key_tag)
        }) {
            tried = true;
            if key.verify_rrsig(&set.name, DNSClass::IN, sig, set.records.iter().copied()).is_ok() {
                return Ok(());
            }
        }
        if tried {
            keep(bogus(ede::DNSSEC_BOGUS, format!("the signature of {what} does not verify")), &mut err);
        } else {
            keep(bogus(ede::DNSKEY_MISSING, format!("{what}: no key {} in {zone}", input.key_tag)), &mut err);
        }
    }
    Err(err.unwrap_or_else(|| bogus(ede::DNSSEC_BOGUS, format!("{what} does not verify"))))
}

fn rank(code: u16) -> u8 {
    match code {
        ede::SIGNATURE_EXPIRED | ede::SIGNATURE_NOT_YET_VALID => 4,
        ede::DNSSEC_BOGUS => 3,
        ede::DNSKEY_MISSING => 2,
        _ => 1,
    }
}

/// Whether a signature uses an algorithm we can check (RFC 4035 §5.2: otherwise the zone is treated as unsigned).
fn supported(alg: Algorithm) -> bool {
    alg.is_supported()
}

// ----- denial of existence (pure) -----

/// Canonical "covers": `owner < name < next`, with the wrap-around of the last NSEC in the chain.
fn nsec_covers(owner: &Name, next: &Name, name: &Name) -> bool {
    if owner < next { owner < name && name < next } else { owner < name || name < next }
}

fn common_ancestor(a: &Name, b: &Name) -> Name {
    let mut n = a.clone();
    while !n.zone_of(b) && !n.is_root() {
        n = n.base_name();
    }
    n
}

fn wildcard_of(name: &Name) -> Option<Name> {
    Name::from_ascii("*").ok()?.append_domain(name).ok()
}

/// The hashed owner of an NSEC3 record (its first label, base32hex).
fn nsec3_owner_hash(owner: &Name) -> Option<Vec<u8>> {
    let label = owner.iter().next()?;
    data_encoding::BASE32HEX_NOPAD.decode(label.to_ascii_uppercase().as_slice()).ok()
}

struct Nsec3View<'a> {
    owner: Vec<u8>,
    rec: &'a NSEC3,
}

fn nsec3_views<'a>(nsec3s: &[(&'a Name, &'a NSEC3)], zone: &Name) -> Vec<Nsec3View<'a>> {
    nsec3s
        .iter()
        .filter(|(owner, _)| owner.base_name() == *zone)
        .filter_map(|(owner, rec)| Some(Nsec3View { owner: nsec3_owner_hash(owner)?, rec }))
        .collect()
}

fn nsec3_hash(v: &Nsec3View<'_>, name: &Name) -> Option<Vec<u8>> {
    if v.rec.hash_algorithm() != Nsec3HashAlgorithm::SHA1 {
        return None;
    }
    v.rec.hash_algorithm().hash(v.rec.salt(), name, v.rec.iterations()).ok().map(|d| d.as_ref().to_vec())
}

fn nsec3_matching<'a, 'b>(views: &'b [Nsec3View<'a>], name: &Name) -> Option<&'b Nsec3View<'a>> {
    views.iter().find(|v| nsec3_hash(v, name).is_some_and(|h| h == v.owner))
}

fn nsec3_covering<'a, 'b>(views: &'b [Nsec3View<'a>], name: &Name) -> Option<&'b Nsec3View<'a>> {
    views.iter().find(|v| {
        let Some(h) = nsec3_hash(v, name) else { return false };
        let next = v.rec.next_hashed_owner_name();
        if v.owner.as_slice() < next { v.owner < h && h.as_slice() < next } else { v.owner < h || h.as_slice() < next }
    })
}

/// RFC 9276: above this many extra iterations an NSEC3 proof is treated as insecure (as Unbound does).
const NSEC3_MAX_ITERATIONS: u16 = 150;

/// What a set of (already verified) NSEC/NSEC3 records proves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denial {
    /// The proof holds.
    Proven,
    /// The proof relies on an NSEC3 opt-out span or an iteration count above the limit: no AD, not bogus.
    Insecure,
    /// No proof.
    Missing,
}

/// The NSEC/NSEC3 records of a section, by owner.
pub struct Proofs<'a> {
    nsecs: Vec<(&'a Name, &'a NSEC)>,
    nsec3s: Vec<(&'a Name, &'a NSEC3)>,
}

impl<'a> Proofs<'a> {
    pub fn of(section: &'a [Record]) -> Self {
        let mut p = Proofs { nsecs: vec![], nsec3s: vec![] };
        for r in section {
            match &r.data {
                RData::DNSSEC(DNSSECRData::NSEC(n)) => p.nsecs.push((&r.name, n)),
                RData::DNSSEC(DNSSECRData::NSEC3(n)) => p.nsec3s.push((&r.name, n)),
                _ => {}
            }
        }
        p
    }

    pub fn is_empty(&self) -> bool {
        self.nsecs.is_empty() && self.nsec3s.is_empty()
    }
}

/// Proof that `name` does not exist in `zone` (NXDOMAIN): the name and the wildcard at its closest encloser
/// are covered.
pub fn deny_name(p: &Proofs<'_>, zone: &Name, name: &Name) -> Denial {
    // NSEC
    if let Some((owner, nsec)) = p.nsecs.iter().find(|(o, n)| nsec_covers(o, n.next_domain_name(), name)) {
        let ce = {
            let a = common_ancestor(owner, name);
            let b = common_ancestor(nsec.next_domain_name(), name);
            if a.num_labels() >= b.num_labels() { a } else { b }
        };
        if let Some(wild) = wildcard_of(&ce)
            && p.nsecs.iter().any(|(o, n)| nsec_covers(o, n.next_domain_name(), &wild))
        {
            return Denial::Proven;
        }
    }
    // NSEC3: closest encloser proof (RFC 5155 §8.4)
    let views = nsec3_views(&p.nsec3s, zone);
    if views.is_empty() {
        return Denial::Missing;
    }
    if views.iter().any(|v| v.rec.iterations() > NSEC3_MAX_ITERATIONS) {
        return Denial::Insecure;
    }
    let mut ce = name.base_name();
    let mut next_closer = name.clone();
    while zone.zone_of(&ce) {
        if nsec3_matching(&views, &ce).is_some() {
            let Some(cover) = nsec3_covering(&views, &next_closer) else { return Denial::Missing };
            if cover.rec.opt_out() {
                return Denial::Insecure;
            }
            let covered_wild = wildcard_of(&ce).is_some_and(|w| nsec3_covering(&views, &w).is_some());
            return if covered_wild { Denial::Proven } else { Denial::Missing };
        }
        if ce.is_root() {
            break;
        }
        next_closer = ce.clone();
        ce = ce.base_name();
    }
    Denial::Missing
}

/// Proof that `name` exists but has no `rtype` records (NODATA) in `zone`.
pub fn deny_type(p: &Proofs<'_>, zone: &Name, name: &Name, rtype: RecordType) -> Denial {
    let lacks = |types: &RecordTypeSet| !types.contains(rtype) && !types.contains(RecordType::CNAME);
    // NSEC at the name
    if let Some((_, nsec)) = p.nsecs.iter().find(|(o, _)| *o == name) {
        return if lacks(nsec.type_set()) { Denial::Proven } else { Denial::Missing };
    }
    // an empty non-terminal: an NSEC covers the name and its next name is below it
    if p.nsecs.iter().any(|(o, n)| nsec_covers(o, n.next_domain_name(), name) && name.zone_of(n.next_domain_name())) {
        return Denial::Proven;
    }
    // wildcard NODATA: the name is covered and the wildcard has no such type
    if p.nsecs.iter().any(|(o, n)| nsec_covers(o, n.next_domain_name(), name))
        && let Some((_, wn)) = p.nsecs.iter().find(|(o, _)| o.is_wildcard() && o.base_name().zone_of(name))
    {
        return if lacks(wn.type_set()) { Denial::Proven } else { Denial::Missing };
    }
    let views = nsec3_views(&p.nsec3s, zone);
    if views.is_empty() {
        return Denial::Missing;
    }
    if views.iter().any(|v| v.rec.iterations() > NSEC3_MAX_ITERATIONS) {
        return Denial::Insecure;
    }
    if let Some(v) = nsec3_matching(&views, name) {
        return if lacks(v.rec.type_set()) { Denial::Proven } else { Denial::Missing };
    }
    // DS at an unsigned delegation inside an opt-out span (RFC 5155 §8.6)
    if rtype == RecordType::DS && nsec3_covering(&views, name).is_some_and(|v| v.rec.opt_out()) {
        return Denial::Insecure;
    }
    Denial::Missing
}

// ----- message shaping (pure) -----

/// The EDNS payload size hearth advertises (the DNS flag day 2020 value).
pub const EDNS_PAYLOAD: u16 = 1232;

/// A query name in hickory's form ("" is the root).
pub fn fqdn(name: &str) -> Option<Name> {
    if name.is_empty() { Some(Name::root()) } else { Name::from_ascii(format!("{name}.")).ok() }
}

/// The query hearth sends to validate an answer: RD, CD (the upstream must hand over even bogus data, the
/// verdict is ours) and EDNS with DO (so the signatures and denial proofs come along).
pub fn upstream_query(id: u16, name: &Name, qtype: RecordType) -> Vec<u8> {
    let mut m = Message::new(id, MessageType::Query, OpCode::Query);
    m.metadata.recursion_desired = true;
    m.metadata.checking_disabled = true;
    m.add_query(Query::query(name.clone(), qtype));
    let mut edns = Edns::new();
    edns.set_max_payload(EDNS_PAYLOAD);
    edns.set_dnssec_ok(true);
    m.set_edns(edns);
    m.to_vec().unwrap_or_default()
}

/// What the client sees of a validated answer: its own id and flags, AD when secure and the client
/// understands AD (it set DO or AD), DNSSEC records only when it set DO, EDNS only when it used EDNS.
pub fn client_view(mut msg: Message, q: &super::wire::QueryInfo, secure: bool) -> Option<Vec<u8>> {
    msg.metadata.id = q.id;
    msg.metadata.authentic_data = secure && (q.dnssec_ok || q.authentic_data);
    msg.metadata.checking_disabled = q.checking_disabled;
    msg.metadata.recursion_desired = q.recursion_desired;
    if !q.dnssec_ok {
        let qtype = RecordType::from(q.qtype);
        let keep = |r: &Record| {
            let t = r.record_type();
            t == qtype || !matches!(t, RecordType::RRSIG | RecordType::NSEC | RecordType::NSEC3)
        };
        msg.answers.retain(keep);
        msg.authorities.retain(keep);
        msg.additionals.retain(keep);
    }
    msg.edns = q.edns_payload.map(|_| {
        let mut e = Edns::new();
        e.set_max_payload(EDNS_PAYLOAD);
        e.set_dnssec_ok(q.dnssec_ok);
        e
    });
    msg.to_vec().ok()
}

// ----- trust anchors -----

/// Trust anchors: DS or DNSKEY records for zones (normally just the root).
#[derive(Debug, Clone, Default)]
pub struct Anchors {
    ds: Vec<(Name, DS)>,
    keys: Vec<(Name, DNSKEY)>,
}

impl Anchors {
    /// IANA's root key-signing keys (KSK-2017, tag 20326, and KSK-2024, tag 38696), as hickory ships them.
    pub fn builtin() -> Anchors {
        let roots = TrustAnchors::default();
        let keys = (0..roots.len())
            .filter_map(|i| roots.get(i))
            .map(|k| (Name::root(), DNSKEY::new(true, true, false, k.clone())))
            .collect();
        Anchors { ds: vec![], keys }
    }

    /// Parse a file of DS and DNSKEY records in zone-file syntax (`owner [ttl] [IN] DS tag alg digest-type hex`,
    /// `owner [ttl] [IN] DNSKEY flags 3 alg base64`), e.g. Unbound's `root.key`. `;` starts a comment.
    pub fn parse(text: &str) -> Result<Anchors, String> {
        let mut a = Anchors::default();
        for (n, line) in text.lines().enumerate() {
            let line = line.split(';').next().unwrap_or("").trim();
            if line.is_empty() || line.starts_with('$') {
                continue;
            }
            let err = |what: &str| format!("line {}: {what}", n + 1);
            let mut f: Vec<&str> = line.split_whitespace().collect();
            let owner = Name::from_ascii(f.remove(0)).map_err(|e| err(&format!("bad owner name: {e}")))?;
            while let Some(first) = f.first()
                && (first.parse::<u32>().is_ok() || first.eq_ignore_ascii_case("IN"))
                && f.len() > 4
            {
                f.remove(0);
            }
            match f.first().map(|s| s.to_ascii_uppercase()).as_deref() {
                Some("DS") if f.len() >= 5 => {
                    let tag = f[1].parse::<u16>().map_err(|_| err("bad key tag"))?;
                    let alg = Algorithm::from_u8(f[2].parse::<u8>().map_err(|_| err("bad algorithm"))?);
                    let dt = DigestType::from(f[3].parse::<u8>().map_err(|_| err("bad digest type"))?);
                    let hex: String = f[4..].concat();
                    let digest = data_encoding::HEXUPPER_PERMISSIVE
                        .decode(hex.to_ascii_uppercase().as_bytes())
                        .map_err(|_| err("bad digest"))?;
                    a.ds.push((owner, DS::new(tag, alg, dt, digest)));
                }
                Some("DNSKEY") if f.len() >= 5 => {
                    let flags = f[1].parse::<u16>().map_err(|_| err("bad flags"))?;
                    let alg = Algorithm::from_u8(f[3].parse::<u8>().map_err(|_| err("bad algorithm"))?);
                    let b64: String = f[4..].concat();
                    let key = data_encoding::BASE64.decode(b64.as_bytes()).map_err(|_| err("bad base64 key"))?;
                    a.keys.push((owner, DNSKEY::with_flags(flags, PublicKeyBuf::new(key, alg))));
                }
                _ => return Err(err("expected a DS or DNSKEY record")),
            }
        }
        if a.ds.is_empty() && a.keys.is_empty() {
            return Err("no DS or DNSKEY records".into());
        }
        Ok(a)
    }

    /// The deepest anchored zone at or above `name`.
    fn closest(&self, name: &Name) -> Option<Name> {
        self.ds
            .iter()
            .map(|(n, _)| n)
            .chain(self.keys.iter().map(|(n, _)| n))
            .filter(|n| n.zone_of(name))
            .max_by_key(|n| n.num_labels())
            .cloned()
    }

    /// The DNSKEYs of `zone` that an anchor vouches for.
    fn trusted<'k>(&self, zone: &Name, keys: &'k [DNSKEY]) -> Vec<&'k DNSKEY> {
        keys.iter()
            .filter(|k| {
                self.ds.iter().any(|(n, ds)| n == zone && ds.covers(zone, k).unwrap_or(false))
                    || self.keys.iter().any(|(n, a)| n == zone && a.public_key() == k.public_key())
            })
            .collect()
    }
}

// ----- the chain of trust (shell) -----

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Where the validator gets DS and DNSKEY sets: a query with DO and CD set, answered by the upstreams (forward
/// mode) or the recursor.
pub trait Fetch: Send + Sync {
    fn fetch<'a>(&'a self, name: &'a Name, rtype: RecordType) -> BoxFuture<'a, Result<Message, String>>;
}

/// What the walk learned about one name.
#[derive(Debug, Clone)]
enum Node {
    /// A zone apex with its verified keys.
    Cut(Arc<Vec<DNSKEY>>),
    /// Inside the parent zone (proven: no DS and no delegation here).
    NotCut,
    /// An unsigned delegation (or keys we cannot check): everything below is insecure.
    Insecure,
    Bogus(Bogus),
}

/// The validator's state: trust anchors and the zone cuts proven so far.
pub struct Validator {
    anchors: Anchors,
    nodes: Mutex<HashMap<Name, (Node, Instant)>>,
    max_nodes: usize,
}

/// The secure zone a walk ended in (or why it did not).
enum Zone {
    Secure(Name, Arc<Vec<DNSKEY>>),
    Insecure,
    Bogus(Bogus),
}

impl std::fmt::Debug for Validator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Validator").field("anchors", &self.anchors).finish_non_exhaustive()
    }
}

const MIN_NODE_TTL: u32 = 30;
const MAX_NODE_TTL: u32 = 3600;
const BOGUS_TTL: u32 = 60;

impl Validator {
    pub fn new(anchors: Anchors) -> Validator {
        Validator { anchors, nodes: Mutex::default(), max_nodes: 10_000 }
    }

    /// Forget every proven zone cut (with a cache flush).
    pub fn clear(&self) {
        self.nodes.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }

    fn remembered(&self, name: &Name, now: Instant) -> Option<Node> {
        let nodes = self.nodes.lock().unwrap_or_else(|p| p.into_inner());
        nodes.get(name).filter(|(_, until)| *until > now).map(|(n, _)| n.clone())
    }

    fn remember(&self, name: &Name, node: Node, ttl: u32, now: Instant) {
        let ttl = if matches!(node, Node::Bogus(_)) { BOGUS_TTL } else { ttl.clamp(MIN_NODE_TTL, MAX_NODE_TTL) };
        let mut nodes = self.nodes.lock().unwrap_or_else(|p| p.into_inner());
        if nodes.len() >= self.max_nodes {
            nodes.retain(|_, (_, until)| *until > now);
            if nodes.len() >= self.max_nodes {
                nodes.clear();
            }
        }
        nodes.insert(name.clone(), (node, now + Duration::from_secs(u64::from(ttl))));
    }

    /// Validate a response to `qname`/`qtype` (fetched with DO and CD set).
    pub async fn validate(
        &self,
        fetch: &dyn Fetch,
        msg: &Message,
        qname: &Name,
        qtype: RecordType,
        clock: Clock,
    ) -> Security {
        let mut result = Security::Secure;
        let weaken = |s: Security, result: &mut Security| match (&*result, s) {
            (Security::Bogus(_), _) => {}
            (_, b @ Security::Bogus(_)) => *result = b,
            (_, Security::Insecure) => *result = Security::Insecure,
            _ => {}
        };
        // the answer section, RRset by RRset; the CNAME chain tells which name the rest is about
        let mut target = qname.clone();
        let answers = rrsets(&msg.answers);
        for _ in 0..answers.len() {
            let Some(c) = answers.iter().find(|s| s.rtype == RecordType::CNAME && s.name == target) else { break };
            match c.records.first().map(|r| &r.data) {
                Some(RData::CNAME(t)) => target = t.0.clone(),
                _ => break,
            }
        }
        for set in &answers {
            let s = self.check_rrset(fetch, set, msg, clock).await;
            weaken(s, &mut result);
        }
        let rcode = msg.metadata.response_code;
        let has_final = answers.iter().any(|s| s.name == target && (s.rtype == qtype || qtype == RecordType::ANY));
        if has_final && rcode == ResponseCode::NoError {
            return result;
        }
        if rcode != ResponseCode::NoError && rcode != ResponseCode::NXDomain {
            return Security::Insecure;
        }
        // a denial: NXDOMAIN or NODATA for the target, proven by the authority section
        let s = self.check_denial(fetch, msg, &target, qtype, rcode == ResponseCode::NXDomain, clock).await;
        weaken(s, &mut result);
        result
    }

    async fn check_rrset(&self, fetch: &dyn Fetch, set: &RrSet<'_>, msg: &Message, clock: Clock) -> Security {
        let Some(signer) =
            set.sigs.iter().find(|s| supported(s.input().algorithm)).map(|s| s.input().signer_name.clone())
        else {
            // unsigned, or signed only with algorithms we cannot check: fine only outside any secure zone. Inside
            // one, the zone's keys are of an algorithm we checked, so a signature we cannot check proves nothing
            // (a forger could otherwise add one with an unknown algorithm number to pass as insecure).
            return match self.walk(fetch, &set.name, clock).await {
                Zone::Secure(zone, _) => Security::Bogus(bogus(
                    ede::RRSIGS_MISSING,
                    format!("{} {} has no signature that {zone}'s keys can check", set.name, set.rtype),
                )),
                Zone::Bogus(b) => Security::Bogus(b),
                Zone::Insecure => Security::Insecure,
            };
        };
        if !signer.zone_of(&set.name) {
            return Security::Bogus(bogus(ede::DNSSEC_BOGUS, format!("{} is signed by {signer}", set.name)));
        }
        let keys = match self.walk(fetch, &signer, clock).await {
            Zone::Secure(zone, keys) if zone == signer => keys,
            Zone::Secure(zone, _) => {
                return Security::Bogus(bogus(
                    ede::DNSKEY_MISSING,
                    format!("{} is signed by {signer}, which is not a zone (inside {zone})", set.name),
                ));
            }
            Zone::Insecure => return Security::Insecure,
            Zone::Bogus(b) => return Security::Bogus(b),
        };
        if let Err(b) = verify_rrset(set, &signer, &keys, clock) {
            return Security::Bogus(b);
        }
        // a wildcard expansion: the name itself must be proven not to exist (RFC 4035 §5.3.4)
        let labels = set.sigs.iter().map(|s| s.input().num_labels).min().unwrap_or(0);
        if usize::from(labels) < usize::from(set.name.num_labels()) {
            let proofs = Proofs::of(&msg.authorities);
            let verified = self.verify_section(&msg.authorities, &signer, &keys, clock);
            if let Err(b) = verified {
                return Security::Bogus(b);
            }
            let next_closer = set.name.trim_to(usize::from(labels) + 1);
            let covered = proofs.nsecs.iter().any(|(o, n)| nsec_covers(o, n.next_domain_name(), &set.name)) || {
                let views = nsec3_views(&proofs.nsec3s, &signer);
                nsec3_covering(&views, &next_closer).is_some()
            };
            if !covered {
                return Security::Bogus(bogus(
                    ede::NSEC_MISSING,
                    format!("{} comes from a wildcard without proof that the name does not exist", set.name),
                ));
            }
        }
        Security::Secure
    }

    /// Verify the NSEC/NSEC3/SOA RRsets of a section with the zone's keys.
    fn verify_section(&self, section: &[Record], zone: &Name, keys: &[DNSKEY], clock: Clock) -> Result<(), Bogus> {
        for set in rrsets(section) {
            if matches!(set.rtype, RecordType::NSEC | RecordType::NSEC3 | RecordType::SOA) {
                verify_rrset(&set, zone, keys, clock)?;
            }
        }
        Ok(())
    }

    async fn check_denial(
        &self,
        fetch: &dyn Fetch,
        msg: &Message,
        target: &Name,
        qtype: RecordType,
        nxdomain: bool,
        clock: Clock,
    ) -> Security {
        let signer = msg
            .authorities
            .iter()
            .filter_map(|r| match &r.data {
                RData::DNSSEC(DNSSECRData::RRSIG(s)) if supported(s.input().algorithm) => {
                    Some(s.input().signer_name.clone())
                }
                _ => None,
            })
            .next();
        let Some(signer) = signer else {
            return match self.walk(fetch, target, clock).await {
                Zone::Secure(zone, _) => Security::Bogus(bogus(
                    ede::NSEC_MISSING,
                    if nxdomain {
                        format!("no signed proof that {target} does not exist in {zone}")
                    } else {
                        format!("no signed proof that {target} has no {qtype} records in {zone}")
                    },
                )),
                Zone::Bogus(b) => Security::Bogus(b),
                Zone::Insecure => Security::Insecure,
            };
        };
        if !signer.zone_of(target) {
            return Security::Bogus(bogus(ede::DNSSEC_BOGUS, format!("the denial for {target} is signed by {signer}")));
        }
        let keys = match self.walk(fetch, &signer, clock).await {
            Zone::Secure(zone, keys) if zone == signer => keys,
            Zone::Secure(..) => {
                return Security::Bogus(bogus(ede::DNSKEY_MISSING, format!("{signer} is not a zone")));
            }
            Zone::Insecure => return Security::Insecure,
            Zone::Bogus(b) => return Security::Bogus(b),
        };
        if let Err(b) = self.verify_section(&msg.authorities, &signer, &keys, clock) {
            return Security::Bogus(b);
        }
        let proofs = Proofs::of(&msg.authorities);
        let denial =
            if nxdomain { deny_name(&proofs, &signer, target) } else { deny_type(&proofs, &signer, target, qtype) };
        match denial {
            Denial::Proven => Security::Secure,
            Denial::Insecure => Security::Insecure,
            Denial::Missing => Security::Bogus(bogus(
                ede::NSEC_MISSING,
                if nxdomain {
                    format!("no proof that {target} does not exist")
                } else {
                    format!("no proof that {target} has no {qtype} records")
                },
            )),
        }
    }

    /// Walk the chain of trust from the closest anchor down to `name`: the secure zone `name` is in, or why not.
    async fn walk(&self, fetch: &dyn Fetch, name: &Name, clock: Clock) -> Zone {
        let Some(anchor) = self.anchors.closest(name) else { return Zone::Insecure };
        let now = Instant::now();
        let mut keys = match self.remembered(&anchor, now) {
            Some(Node::Cut(keys)) => keys,
            Some(Node::Bogus(b)) => return Zone::Bogus(b),
            Some(_) => return Zone::Insecure,
            None => {
                let node = self.anchor_keys(fetch, &anchor, clock).await;
                let (n, ttl) = node;
                self.remember(&anchor, n.clone(), ttl, now);
                match n {
                    Node::Cut(keys) => keys,
                    Node::Bogus(b) => return Zone::Bogus(b),
                    _ => return Zone::Insecure,
                }
            }
        };
        let mut zone = anchor.clone();
        let depth = name.num_labels();
        for labels in anchor.num_labels() + 1..=depth {
            let n = name.trim_to(usize::from(labels));
            let node = match self.remembered(&n, now) {
                Some(node) => node,
                None => {
                    let (node, ttl) = self.step(fetch, &zone, &keys, &n, clock).await;
                    self.remember(&n, node.clone(), ttl, now);
                    node
                }
            };
            match node {
                Node::Cut(k) => {
                    zone = n;
                    keys = k;
                }
                Node::NotCut => {}
                Node::Insecure => return Zone::Insecure,
                Node::Bogus(b) => return Zone::Bogus(b),
            }
        }
        Zone::Secure(zone, keys)
    }

    /// The anchored zone's keys: its DNSKEY set, vouched for by an anchor and signed by a key the anchor trusts.
    async fn anchor_keys(&self, fetch: &dyn Fetch, zone: &Name, clock: Clock) -> (Node, u32) {
        let msg = match fetch.fetch(zone, RecordType::DNSKEY).await {
            Ok(m) => m,
            Err(e) => return (Node::Bogus(bogus(ede::DNSKEY_MISSING, format!("DNSKEY {zone}: {e}"))), 0),
        };
        let sets = rrsets(&msg.answers);
        let Some(set) = sets.iter().find(|s| s.rtype == RecordType::DNSKEY && s.name == *zone) else {
            return (Node::Bogus(bogus(ede::DNSKEY_MISSING, format!("no DNSKEY set for the anchored zone {zone}"))), 0);
        };
        let all = dnskeys(set);
        let trusted: Vec<DNSKEY> = self.anchors.trusted(zone, &all).into_iter().cloned().collect();
        if trusted.is_empty() {
            return (
                Node::Bogus(bogus(ede::DNSKEY_MISSING, format!("no DNSKEY of {zone} matches the trust anchor"))),
                0,
            );
        }
        match verify_rrset(set, zone, &trusted, clock) {
            Ok(()) => (Node::Cut(Arc::new(all)), set.ttl),
            Err(b) => (Node::Bogus(b), 0),
        }
    }

    /// One step down from the secure `zone` (keys `keys`) to its child name `n`: ask for DS at `n`.
    async fn step(&self, fetch: &dyn Fetch, zone: &Name, keys: &[DNSKEY], n: &Name, clock: Clock) -> (Node, u32) {
        let msg = match fetch.fetch(n, RecordType::DS).await {
            Ok(m) => m,
            Err(e) => return (Node::Bogus(bogus(ede::DNSSEC_BOGUS, format!("DS {n}: {e}"))), 0),
        };
        let sets = rrsets(&msg.answers);
        if let Some(ds_set) = sets.iter().find(|s| s.rtype == RecordType::DS && s.name == *n) {
            // a signed delegation: the DS set is the parent's, the DNSKEY set must match it
            if let Err(b) = verify_rrset(ds_set, zone, keys, clock) {
                return (Node::Bogus(b), 0);
            }
            let ds: Vec<&DS> = ds_set
                .records
                .iter()
                .filter_map(|r| match &r.data {
                    RData::DNSSEC(DNSSECRData::DS(d)) => Some(d),
                    _ => None,
                })
                .filter(|d| supported(d.algorithm()) && d.digest_type().is_supported())
                .collect();
            if ds.is_empty() {
                // only algorithms or digests we cannot check: treat as unsigned (RFC 4035 §5.2)
                return (Node::Insecure, ds_set.ttl);
            }
            let msg = match fetch.fetch(n, RecordType::DNSKEY).await {
                Ok(m) => m,
                Err(e) => return (Node::Bogus(bogus(ede::DNSKEY_MISSING, format!("DNSKEY {n}: {e}"))), 0),
            };
            let sets = rrsets(&msg.answers);
            let Some(key_set) = sets.iter().find(|s| s.rtype == RecordType::DNSKEY && s.name == *n) else {
                return (Node::Bogus(bogus(ede::DNSKEY_MISSING, format!("{n} has a DS but no DNSKEY set"))), 0);
            };
            let all = dnskeys(key_set);
            let entry: Vec<DNSKEY> =
                all.iter().filter(|k| ds.iter().any(|d| d.covers(n, k).unwrap_or(false))).cloned().collect();
            if entry.is_empty() {
                return (Node::Bogus(bogus(ede::DNSKEY_MISSING, format!("no DNSKEY of {n} matches its DS"))), 0);
            }
            return match verify_rrset(key_set, n, &entry, clock) {
                Ok(()) => (Node::Cut(Arc::new(all)), ds_set.ttl.min(key_set.ttl)),
                Err(b) => (Node::Bogus(b), 0),
            };
        }
        // no DS: the parent must prove it, and say whether `n` is a delegation at all
        let rcode = msg.metadata.response_code;
        if rcode != ResponseCode::NoError && rcode != ResponseCode::NXDomain {
            return (Node::Bogus(bogus(ede::DNSSEC_BOGUS, format!("DS {n}: {rcode}"))), 0);
        }
        let ttl = msg.authorities.iter().map(|r| r.ttl).min().unwrap_or(MIN_NODE_TTL);
        let signers: Vec<&Name> = msg
            .authorities
            .iter()
            .filter_map(|r| match &r.data {
                RData::DNSSEC(DNSSECRData::RRSIG(s)) => Some(&s.input().signer_name),
                _ => None,
            })
            .collect();
        if signers.is_empty() {
            return (
                Node::Bogus(bogus(ede::RRSIGS_MISSING, format!("the answer for DS {n} is not signed by {zone}"))),
                0,
            );
        }
        if signers.iter().any(|s| *s != zone) {
            // the answer came from below the zone: `n` (or a name between) is a cut the parent did not vouch for
            return (Node::Bogus(bogus(ede::DNSSEC_BOGUS, format!("the answer for DS {n} is not from {zone}"))), 0);
        }
        if let Err(b) = self.verify_section(&msg.authorities, zone, keys, clock) {
            return (Node::Bogus(b), 0);
        }
        let proofs = Proofs::of(&msg.authorities);
        if rcode == ResponseCode::NXDomain {
            return match deny_name(&proofs, zone, n) {
                Denial::Proven => (Node::NotCut, ttl),
                Denial::Insecure => (Node::Insecure, ttl),
                Denial::Missing => {
                    (Node::Bogus(bogus(ede::NSEC_MISSING, format!("no proof that {n} does not exist"))), 0)
                }
            };
        }
        // NODATA: is `n` a delegation (NS without DS) or just a name in the zone?
        let delegation = proofs
            .nsecs
            .iter()
            .find(|(o, _)| *o == n)
            .map(|(_, x)| x.type_set().contains(RecordType::NS) && !x.type_set().contains(RecordType::SOA))
            .or_else(|| {
                let views = nsec3_views(&proofs.nsec3s, zone);
                nsec3_matching(&views, n)
                    .map(|v| v.rec.type_set().contains(RecordType::NS) && !v.rec.type_set().contains(RecordType::SOA))
            });
        match deny_type(&proofs, zone, n, RecordType::DS) {
            Denial::Proven if delegation == Some(true) => (Node::Insecure, ttl),
            Denial::Proven => (Node::NotCut, ttl),
            Denial::Insecure => (Node::Insecure, ttl),
            Denial::Missing => (Node::Bogus(bogus(ede::NSEC_MISSING, format!("no proof that {n} has no DS"))), 0),
        }
    }
}

fn dnskeys(set: &RrSet<'_>) -> Vec<DNSKEY> {
    set.records
        .iter()
        .filter_map(|r| match &r.data {
            RData::DNSSEC(DNSSECRData::DNSKEY(k)) => Some(k.clone()),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> Name {
        Name::from_ascii(s).unwrap()
    }

    #[test]
    fn serial_arithmetic_wraps() {
        assert!(serial_lt(1, 2));
        assert!(!serial_lt(2, 1));
        assert!(serial_lt(u32::MAX - 5, 3));
        assert!(!serial_lt(7, 7));
    }

    #[test]
    fn nsec_cover_is_canonical_and_wraps() {
        assert!(nsec_covers(&name("a.example."), &name("c.example."), &name("b.example.")));
        assert!(!nsec_covers(&name("a.example."), &name("c.example."), &name("d.example.")));
        // the last NSEC points back to the apex
        assert!(nsec_covers(&name("z.example."), &name("example."), &name("zz.example.")));
        // canonical order sorts by the rightmost label first
        assert!(nsec_covers(&name("a.example."), &name("b.example."), &name("x.a.example.")));
    }

    #[test]
    fn anchors_parse_ds_and_dnskey_and_name_the_line() {
        let a = Anchors::parse(
            "; root.key\n. 172800 IN DS 20326 8 2 E06D44B80B8F1D39A95C0B0D7C65D08458E880409BBC683457104237C7F8EC8D\n\
             test. IN DNSKEY 257 3 13 mdsswUyr3DPW132mOi8V9xESWE8jTo0dxCjjnopKl+GqJxpVXckHAeF+KkxLbxILfDLUT0rAK9iUzy1L53eKGQ==\n",
        )
        .unwrap();
        assert_eq!(a.ds.len(), 1);
        assert_eq!(a.keys.len(), 1);
        assert_eq!(a.closest(&name("www.test.")), Some(name("test.")));
        assert_eq!(a.closest(&name("example.com.")), Some(Name::root()));
        let e = Anchors::parse(". IN DS 20326 8 2 E06D\nbroken line here\n").unwrap_err();
        assert!(e.starts_with("line 2"), "{e}");
        assert!(Anchors::parse("; nothing\n").is_err());
    }

    /// A zone key and an A record signed by it, with the given validity period.
    fn signed(inception: u32, expiration: u32) -> (DNSKEY, Vec<Record>, RRSIG) {
        use hickory_proto::dnssec::crypto::EcdsaSigningKey;
        use hickory_proto::dnssec::rdata::SigInput;
        use hickory_proto::dnssec::{SigningKey, TBS};
        use hickory_proto::rr::SerialNumber;
        let pkcs8 = EcdsaSigningKey::generate_pkcs8(Algorithm::ECDSAP256SHA256).unwrap();
        let key = EcdsaSigningKey::from_pkcs8(&pkcs8, Algorithm::ECDSAP256SHA256).unwrap();
        let dnskey = DNSKEY::new(true, false, false, key.to_public_key().unwrap());
        let owner = name("www.example.");
        let records =
            vec![Record::from_rdata(owner.clone(), 300, RData::A(hickory_proto::rr::rdata::A::new(192, 0, 2, 1)))];
        let input = SigInput {
            type_covered: RecordType::A,
            algorithm: Algorithm::ECDSAP256SHA256,
            num_labels: 2,
            original_ttl: 300,
            sig_expiration: SerialNumber::new(expiration),
            sig_inception: SerialNumber::new(inception),
            key_tag: dnskey.calculate_key_tag().unwrap(),
            signer_name: name("example."),
        };
        let tbs = TBS::from_input(&owner, DNSClass::IN, &input, records.iter()).unwrap();
        let sig = key.sign(&tbs).unwrap();
        (dnskey, records, RRSIG::from_sig(input, sig))
    }

    fn set<'a>(records: &'a [Record], sig: &'a RRSIG) -> RrSet<'a> {
        RrSet {
            name: records[0].name.clone(),
            rtype: RecordType::A,
            records: records.iter().collect(),
            sigs: vec![sig],
            ttl: 300,
        }
    }

    #[test]
    fn signatures_verify_and_failures_name_their_ede() {
        let zone = name("example.");
        let now = 1_800_000_000;
        let clock = Clock { now, check_times: true, floor: 0 };
        let (key, records, sig) = signed(now - 3600, now + 3600);
        assert_eq!(verify_rrset(&set(&records, &sig), &zone, std::slice::from_ref(&key), clock), Ok(()));
        // a different record set under the same signature
        let forged =
            vec![Record::from_rdata(name("www.example."), 300, RData::A(hickory_proto::rr::rdata::A::new(6, 6, 6, 6)))];
        assert_eq!(
            verify_rrset(&set(&forged, &sig), &zone, std::slice::from_ref(&key), clock).unwrap_err().ede,
            ede::DNSSEC_BOGUS
        );
        // no key with the signature's tag
        let (other, _, _) = signed(now - 3600, now + 3600);
        assert_eq!(verify_rrset(&set(&records, &sig), &zone, &[other], clock).unwrap_err().ede, ede::DNSKEY_MISSING);
        // signed by another zone
        assert_eq!(
            verify_rrset(&set(&records, &sig), &name("other."), std::slice::from_ref(&key), clock).unwrap_err().ede,
            ede::DNSSEC_BOGUS
        );
        // no signature at all
        let unsigned = RrSet { sigs: vec![], ..set(&records, &sig) };
        assert_eq!(verify_rrset(&unsigned, &zone, &[key], clock).unwrap_err().ede, ede::RRSIGS_MISSING);
    }

    #[test]
    fn validity_periods_are_enforced_only_with_a_plausible_clock() {
        let zone = name("example.");
        let now = 1_800_000_000;
        let (key, records, expired) = signed(now - 7200, now - 3600);
        let (_, _, future) = signed(now + 3600, now + 7200);
        let checked = Clock { now, check_times: true, floor: 0 };
        let relaxed = Clock { now, check_times: false, floor: 0 };
        let keys = [key];
        assert_eq!(
            verify_rrset(&set(&records, &expired), &zone, &keys, checked).unwrap_err().ede,
            ede::SIGNATURE_EXPIRED
        );
        let err = verify_rrset(&set(&records, &future), &zone, &keys, checked).unwrap_err();
        assert_eq!(err.ede, ede::SIGNATURE_NOT_YET_VALID);
        // a Pi that booted in 1970: the signatures still have to verify, their dates are not held against them
        assert_eq!(verify_rrset(&set(&records, &expired), &zone, &keys, relaxed), Ok(()));
        assert!(!Clock::system(u64::MAX).check_times);
        assert!(Clock::system(0).check_times);
    }

    #[test]
    fn an_implausible_clock_still_refuses_signatures_expired_before_the_build() {
        let zone = name("example.");
        let built = 1_800_000_000u64;
        // a Pi booted in 1970 (no RTC, no NTP yet): the clock is before the build date, so not plausible
        let clock = Clock::at(86_400, built);
        assert!(!clock.check_times);
        assert_eq!(clock.floor, built as u32);
        let b = built as u32;
        // expired a year before the build: refused all the same
        let (key, records, old) = signed(b - 2 * 31_536_000, b - 31_536_000);
        let keys = [key];
        let err = verify_rrset(&set(&records, &old), &zone, &keys, clock).unwrap_err();
        assert_eq!(err.ede, ede::SIGNATURE_EXPIRED, "{}", err.why);
        // valid around the build date, or expiring after it: accepted while the clock is implausible
        let (key, records, current) = signed(b - 3600, b + 30 * 86_400);
        assert_eq!(verify_rrset(&set(&records, &current), &zone, std::slice::from_ref(&key), clock), Ok(()));
        // and with a plausible clock the usual rules apply
        let later = Clock::at(built + 60 * 86_400, built);
        assert!(later.check_times);
        assert_eq!(
            verify_rrset(&set(&records, &current), &zone, &[key], later).unwrap_err().ede,
            ede::SIGNATURE_EXPIRED
        );
    }

    #[test]
    fn builtin_anchors_are_the_root_ksks() {
        let a = Anchors::builtin();
        let tags: Vec<u16> = a.keys.iter().map(|(_, k)| k.calculate_key_tag().unwrap()).collect();
        assert!(tags.contains(&20326) && tags.contains(&38696), "{tags:?}");
    }
}
