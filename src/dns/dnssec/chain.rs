//! The chain of trust (the shell): [`Validator`] judges a response by walking from the closest trust anchor down
//! to the names it is about, asking a [`Fetch`] for DNSKEY and DS sets, verifying each step with the pure core
//! (`verify`, `denial`), and remembering every zone cut it proved (and every name it proved is not one, every
//! unsigned delegation, every failure) until the records' TTLs run out.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hickory_proto::dnssec::rdata::{DNSKEY, DNSSECRData, DS};
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::{Name, RData, Record, RecordType};

use super::super::wire::{EDE_DNSKEY_MISSING, EDE_DNSSEC_BOGUS, EDE_NSEC_MISSING, EDE_RRSIGS_MISSING, RrSet, rrsets};
use super::anchors::Anchors;
use super::denial::{Denial, Proofs, deny_name, deny_type, nsec_covers, nsec3_covering, nsec3_matching, nsec3_views};
use super::verify::{Clock, supported, verify_rrset};
use super::{Bogus, Security, bogus};

pub(crate) type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Where the validator gets DS and DNSKEY sets: a query with DO and CD set, answered by the upstreams (forward
/// mode) or the recursor.
pub(crate) trait Fetch: Send + Sync {
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
pub(crate) struct Validator {
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
    pub(crate) fn new(anchors: Anchors) -> Validator {
        Validator { anchors, nodes: Mutex::default(), max_nodes: 10_000 }
    }

    /// Forget every proven zone cut (with a cache flush).
    pub(crate) fn clear(&self) {
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
    pub(crate) async fn validate(
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
                    EDE_RRSIGS_MISSING,
                    format!("{} {} has no signature that {zone}'s keys can check", set.name, set.rtype),
                )),
                Zone::Bogus(b) => Security::Bogus(b),
                Zone::Insecure => Security::Insecure,
            };
        };
        if !signer.zone_of(&set.name) {
            return Security::Bogus(bogus(EDE_DNSSEC_BOGUS, format!("{} is signed by {signer}", set.name)));
        }
        let keys = match self.walk(fetch, &signer, clock).await {
            Zone::Secure(zone, keys) if zone == signer => keys,
            Zone::Secure(zone, _) => {
                return Security::Bogus(bogus(
                    EDE_DNSKEY_MISSING,
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
                    EDE_NSEC_MISSING,
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
                    EDE_NSEC_MISSING,
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
            return Security::Bogus(bogus(EDE_DNSSEC_BOGUS, format!("the denial for {target} is signed by {signer}")));
        }
        let keys = match self.walk(fetch, &signer, clock).await {
            Zone::Secure(zone, keys) if zone == signer => keys,
            Zone::Secure(..) => {
                return Security::Bogus(bogus(EDE_DNSKEY_MISSING, format!("{signer} is not a zone")));
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
                EDE_NSEC_MISSING,
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
            Err(e) => return (Node::Bogus(bogus(EDE_DNSKEY_MISSING, format!("DNSKEY {zone}: {e}"))), 0),
        };
        let sets = rrsets(&msg.answers);
        let Some(set) = sets.iter().find(|s| s.rtype == RecordType::DNSKEY && s.name == *zone) else {
            return (Node::Bogus(bogus(EDE_DNSKEY_MISSING, format!("no DNSKEY set for the anchored zone {zone}"))), 0);
        };
        let all = dnskeys(set);
        let trusted: Vec<DNSKEY> = self.anchors.trusted(zone, &all).into_iter().cloned().collect();
        if trusted.is_empty() {
            return (
                Node::Bogus(bogus(EDE_DNSKEY_MISSING, format!("no DNSKEY of {zone} matches the trust anchor"))),
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
            Err(e) => return (Node::Bogus(bogus(EDE_DNSSEC_BOGUS, format!("DS {n}: {e}"))), 0),
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
                Err(e) => return (Node::Bogus(bogus(EDE_DNSKEY_MISSING, format!("DNSKEY {n}: {e}"))), 0),
            };
            let sets = rrsets(&msg.answers);
            let Some(key_set) = sets.iter().find(|s| s.rtype == RecordType::DNSKEY && s.name == *n) else {
                return (Node::Bogus(bogus(EDE_DNSKEY_MISSING, format!("{n} has a DS but no DNSKEY set"))), 0);
            };
            let all = dnskeys(key_set);
            let entry: Vec<DNSKEY> =
                all.iter().filter(|k| ds.iter().any(|d| d.covers(n, k).unwrap_or(false))).cloned().collect();
            if entry.is_empty() {
                return (Node::Bogus(bogus(EDE_DNSKEY_MISSING, format!("no DNSKEY of {n} matches its DS"))), 0);
            }
            return match verify_rrset(key_set, n, &entry, clock) {
                Ok(()) => (Node::Cut(Arc::new(all)), ds_set.ttl.min(key_set.ttl)),
                Err(b) => (Node::Bogus(b), 0),
            };
        }
        // no DS: the parent must prove it, and say whether `n` is a delegation at all
        let rcode = msg.metadata.response_code;
        if rcode != ResponseCode::NoError && rcode != ResponseCode::NXDomain {
            return (Node::Bogus(bogus(EDE_DNSSEC_BOGUS, format!("DS {n}: {rcode}"))), 0);
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
                Node::Bogus(bogus(EDE_RRSIGS_MISSING, format!("the answer for DS {n} is not signed by {zone}"))),
                0,
            );
        }
        if signers.iter().any(|s| *s != zone) {
            // the answer came from below the zone: `n` (or a name between) is a cut the parent did not vouch for
            return (Node::Bogus(bogus(EDE_DNSSEC_BOGUS, format!("the answer for DS {n} is not from {zone}"))), 0);
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
                    (Node::Bogus(bogus(EDE_NSEC_MISSING, format!("no proof that {n} does not exist"))), 0)
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
            Denial::Missing => (Node::Bogus(bogus(EDE_NSEC_MISSING, format!("no proof that {n} has no DS"))), 0),
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
