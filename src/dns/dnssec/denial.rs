//! Authenticated denial of existence (pure): what a section's (already verified) NSEC and NSEC3 records prove —
//! that a name does not exist ([`deny_name`], NXDOMAIN) or has no records of a type ([`deny_type`], NODATA) — in
//! canonical order (RFC 4034 §6.1), with NSEC3 closest-encloser proofs (RFC 5155 §8), opt-out spans and the
//! RFC 9276 iteration limit.

use hickory_proto::dnssec::Nsec3HashAlgorithm;
use hickory_proto::dnssec::rdata::{DNSSECRData, NSEC, NSEC3};
use hickory_proto::rr::{Name, RData, Record, RecordType, RecordTypeSet};

use super::super::wire::{common_ancestor, wildcard_of};

/// Canonical "covers": `owner < name < next`, with the wrap-around of the last NSEC in the chain.
pub(super) fn nsec_covers(owner: &Name, next: &Name, name: &Name) -> bool {
    if owner < next { owner < name && name < next } else { owner < name || name < next }
}

/// The hashed owner of an NSEC3 record (its first label, base32hex).
fn nsec3_owner_hash(owner: &Name) -> Option<Vec<u8>> {
    let label = owner.iter().next()?;
    data_encoding::BASE32HEX_NOPAD.decode(label.to_ascii_uppercase().as_slice()).ok()
}

/// An NSEC3 record of a zone with its owner hash decoded.
pub(super) struct Nsec3View<'a> {
    owner: Vec<u8>,
    pub(super) rec: &'a NSEC3,
}

/// The NSEC3 records whose owners are directly below `zone`.
pub(super) fn nsec3_views<'a>(nsec3s: &[(&'a Name, &'a NSEC3)], zone: &Name) -> Vec<Nsec3View<'a>> {
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

/// The NSEC3 record whose owner is the hash of `name`.
pub(super) fn nsec3_matching<'a, 'b>(views: &'b [Nsec3View<'a>], name: &Name) -> Option<&'b Nsec3View<'a>> {
    views.iter().find(|v| nsec3_hash(v, name).is_some_and(|h| h == v.owner))
}

/// The NSEC3 record whose span covers the hash of `name`.
pub(super) fn nsec3_covering<'a, 'b>(views: &'b [Nsec3View<'a>], name: &Name) -> Option<&'b Nsec3View<'a>> {
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
pub(crate) enum Denial {
    /// The proof holds.
    Proven,
    /// The proof relies on an NSEC3 opt-out span or an iteration count above the limit: no AD, not bogus.
    Insecure,
    /// No proof.
    Missing,
}

/// The NSEC/NSEC3 records of a section, by owner.
pub(crate) struct Proofs<'a> {
    pub(super) nsecs: Vec<(&'a Name, &'a NSEC)>,
    pub(super) nsec3s: Vec<(&'a Name, &'a NSEC3)>,
}

impl<'a> Proofs<'a> {
    pub(crate) fn of(section: &'a [Record]) -> Self {
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
}

/// Proof that `name` does not exist in `zone` (NXDOMAIN): the name and the wildcard at its closest encloser
/// are covered.
pub(crate) fn deny_name(p: &Proofs<'_>, zone: &Name, name: &Name) -> Denial {
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
pub(crate) fn deny_type(p: &Proofs<'_>, zone: &Name, name: &Name, rtype: RecordType) -> Denial {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> Name {
        Name::from_ascii(s).unwrap()
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
}
