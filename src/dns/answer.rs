//! The answers hearth writes itself (pure): local records, blocked names, errors with their Extended DNS Error,
//! FORMERR for unreadable questions, and [`fit`], which keeps a UDP answer within the client's limit.

use std::net::IpAddr;

use super::local;
use super::settings::{BlockingMode, Settings};
use super::wire::{self, EDE_BLOCKED, RCODE_NOERROR, RCODE_NXDOMAIN, RCODE_REFUSED};

/// Keep a UDP answer within the client's limit: cut it to a truncated one that keeps its OPT record (the client
/// retries over TCP).
#[inline]
pub(super) fn fit(resp: Vec<u8>, q: &wire::QueryInfo, limit: usize) -> Vec<u8> {
    if resp.len() > limit { wire::truncated(&resp, q) } else { resp }
}

/// A local zone's answer: NXDOMAIN, NODATA, or its records, authoritative.
pub(super) fn local_answer(query: &[u8], q: &wire::QueryInfo, ans: &local::LocalAnswer) -> Vec<u8> {
    match ans {
        local::LocalAnswer::NxDomain => wire::synthesize(q, query, RCODE_NXDOMAIN, &[], None),
        local::LocalAnswer::NoData => wire::synthesize(q, query, RCODE_NOERROR, &[], None),
        local::LocalAnswer::Records(rrs) => {
            let owners: Vec<Vec<u8>> = rrs.iter().map(|r| local::encode_name(&r.owner)).collect();
            let answers: Vec<wire::Answer<'_>> = rrs
                .iter()
                .zip(&owners)
                .map(|(r, o)| {
                    (if r.owner == q.name { None } else { Some(o.as_slice()) }, r.rtype, r.ttl, r.rdata.as_slice())
                })
                .collect();
            let mut out = wire::synthesize(q, query, RCODE_NOERROR, &answers, None);
            out[2] |= 0x04; // authoritative: these names are ours
            out
        }
    }
}

/// An answer without records: `rcode` (a `wire::RCODE_*`) and, when given, an Extended DNS Error (code, text).
pub(super) fn error_answer(query: &[u8], q: &wire::QueryInfo, rcode: u8, ede: Option<(u16, &str)>) -> Option<Vec<u8>> {
    Some(wire::synthesize(q, query, rcode, &[], ede))
}

/// A blocked name's answer in the configured [`BlockingMode`], with EDE 15 "Blocked" naming the list and rule.
pub(super) fn blocked_answer(
    query: &[u8],
    q: &wire::QueryInfo,
    s: &Settings,
    list: &str,
    rule: &str,
) -> Option<Vec<u8>> {
    let rcode = match s.blocking {
        BlockingMode::NxDomain => RCODE_NXDOMAIN,
        BlockingMode::Refused => RCODE_REFUSED,
        _ => RCODE_NOERROR,
    };
    let (v4, v6);
    let rdata: Option<(u16, &[u8])> = match (s.blocking, q.qtype) {
        (BlockingMode::NullIp, 1) => Some((1, &[0; 4])),
        (BlockingMode::NullIp, 28) => Some((28, &[0; 16])),
        (BlockingMode::Custom(IpAddr::V4(ip)), 1) => {
            v4 = ip.octets();
            Some((1, &v4))
        }
        (BlockingMode::Custom(IpAddr::V6(ip)), 28) => {
            v6 = ip.octets();
            Some((28, &v6))
        }
        _ => None,
    };
    // EDE 15 "Blocked": the list and rule, so the user sees why
    let why = format!("blocked by {list}: {rule}");
    let answers: Vec<wire::Answer<'_>> = rdata.map(|(t, d)| (None, t, s.blocked_ttl, d)).into_iter().collect();
    Some(wire::synthesize(q, query, rcode, &answers, Some((EDE_BLOCKED, &why))))
}

/// FORMERR for a query whose header is readable; nothing for garbage.
pub(super) fn formerr(query: &[u8]) -> Option<Vec<u8>> {
    if query.len() < 12 || query[2] & 0x80 != 0 {
        return None;
    }
    let mut out = query[..12].to_vec();
    out[2] = 0x80 | (query[2] & 0x79);
    out[3] = wire::RCODE_FORMERR;
    for b in &mut out[4..12] {
        *b = 0;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formerr_only_for_readable_headers() {
        assert_eq!(formerr(&[1, 2, 3]), None);
        let out = formerr(&[0xab, 0xcd, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 0xff]).unwrap();
        assert_eq!(out[..4], [0xab, 0xcd, 0x81, 0x01]);
    }
}
