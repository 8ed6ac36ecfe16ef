//! DNSSEC validation (RFC 4033–4035, NSEC3 RFC 5155/9276, Extended DNS Errors RFC 8914).
//!
//! The cryptography, canonical forms, key tags and NSEC3 hashing are hickory-proto's (`dnssec-ring`). The
//! validation logic is ours, because hickory's validator takes no clock (a Pi without a real-time clock must
//! not lock itself out), reports no EDE codes and keeps no zone-cut cache we could share between forward and
//! recursive mode.
//!
//! Pure core: `verify` ([`verify_rrset`]: signatures against keys and a [`Clock`]), `denial` ([`deny_name`] and
//! [`deny_type`]: NSEC and NSEC3 proofs), `anchors` ([`Anchors`]: trust anchors). Shell: `chain` ([`Validator`])
//! walks the chain of trust from a trust anchor down to a name, asking a [`Fetch`] (the upstreams in forward mode,
//! the recursor in recursive mode) for DS and DNSKEY sets, and remembers every zone cut it proved (and every name
//! it proved is not one) until the records' TTLs run out. This file holds the verdicts ([`Security`], [`Bogus`]).
//!
//! The DNS message helpers validation uses (query names, the upstream query, RRset grouping, the client's view of
//! an answer) and the EDE codes live in [`super::wire`]; the message helpers are re-exported here for the callers
//! that still name them by this path.

mod anchors;
mod chain;
mod denial;
mod verify;

pub(crate) use super::wire::{EDNS_PAYLOAD, client_view, fqdn, upstream_query};
pub(crate) use anchors::Anchors;
pub(crate) use chain::{BoxFuture, Fetch, Validator};
pub(crate) use verify::Clock;

/// What validation concluded about an answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Security {
    /// Proven by a chain of signatures from a trust anchor: the answer may carry AD.
    Secure,
    /// Proven to be outside any signed zone (an unsigned delegation, no anchor above it, or an algorithm we
    /// cannot check): answered without AD.
    Insecure,
    /// Should be signed but is not, or does not verify: SERVFAIL with the EDE code.
    Bogus(Bogus),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Bogus {
    /// The Extended DNS Error code (RFC 8914; `wire::EDE_*`).
    pub ede: u16,
    pub why: String,
}

fn bogus(ede: u16, why: impl Into<String>) -> Bogus {
    Bogus { ede, why: why.into() }
}

impl Security {
    pub(crate) fn as_str(&self) -> &'static str {
        match self {
            Security::Secure => "secure",
            Security::Insecure => "insecure",
            Security::Bogus(_) => "bogus",
        }
    }
}
