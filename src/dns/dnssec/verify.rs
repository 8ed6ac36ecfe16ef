//! Signature verification (pure): an RRset's RRSIGs against a zone's DNSKEYs, within their validity periods as
//! the [`Clock`] judges them — a plausible system clock, or the build date as a floor while it is not — with the
//! most telling failure named by its EDE code.

use hickory_proto::dnssec::rdata::DNSKEY;
use hickory_proto::dnssec::{Algorithm, Verifier};
use hickory_proto::rr::{DNSClass, Name};

use super::super::wire::{
    EDE_DNSKEY_MISSING, EDE_DNSSEC_BOGUS, EDE_RRSIGS_MISSING, EDE_SIGNATURE_EXPIRED, EDE_SIGNATURE_NOT_YET_VALID, RrSet,
};
use super::{Bogus, bogus};

/// The time signatures are checked against. `check_times` is false while the system clock is not plausible
/// (before the binary was built: a Pi without RTC before NTP has synced); signatures are then verified
/// cryptographically and their validity periods are checked against `floor` instead — the build date, a time
/// the real clock is surely past —, so a signature that had expired before hearth was built is still refused
/// (an attacker cannot replay old signed data to a resolver that has just booted in 1970).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Clock {
    pub now: u32,
    pub check_times: bool,
    /// The earliest time the real clock can show (Unix seconds, the build date); 0 = no floor.
    pub floor: u32,
}

impl Clock {
    /// The system clock, plausible when not before `not_before` (Unix seconds, the build date), which is also the
    /// floor while it is not.
    pub(crate) fn system(not_before: u64) -> Clock {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        Clock::at(now, not_before)
    }

    /// The clock at `now` (Unix seconds) for a binary built at `not_before`.
    pub(crate) fn at(now: u64, not_before: u64) -> Clock {
        Clock { now: now as u32, check_times: now >= not_before, floor: not_before.min(u64::from(u32::MAX)) as u32 }
    }
}

/// RFC 1982 serial arithmetic, as RFC 4034 §3.1.5 requires for signature times.
fn serial_lt(a: u32, b: u32) -> bool {
    a != b && b.wrapping_sub(a) < 0x8000_0000
}

/// Verify an RRset against the zone's keys: some signature by `zone` must verify with one of `keys` and be
/// within its validity period. The error names the most telling failure.
pub(crate) fn verify_rrset(set: &RrSet<'_>, zone: &Name, keys: &[DNSKEY], clock: Clock) -> Result<(), Bogus> {
    let what = format!("{} {}", set.name, set.rtype);
    if set.sigs.is_empty() {
        return Err(bogus(EDE_RRSIGS_MISSING, format!("{what} has no signature")));
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
            keep(bogus(EDE_DNSSEC_BOGUS, format!("{what} is signed by {} not {zone}", input.signer_name)), &mut err);
            continue;
        }
        if usize::from(input.num_labels) > usize::from(set.name.num_labels()) {
            keep(bogus(EDE_DNSSEC_BOGUS, format!("{what}: signature has too many labels")), &mut err);
            continue;
        }
        if !clock.check_times && clock.floor != 0 && serial_lt(input.sig_expiration.get(), clock.floor) {
            // the clock is not plausible, but the signature expired before this binary was built
            keep(
                bogus(EDE_SIGNATURE_EXPIRED, format!("the signature of {what} expired before hearth was built")),
                &mut err,
            );
            continue;
        }
        if clock.check_times {
            let (inception, expiration) = (input.sig_inception.get(), input.sig_expiration.get());
            if serial_lt(expiration, clock.now) {
                keep(bogus(EDE_SIGNATURE_EXPIRED, format!("the signature of {what} expired")), &mut err);
                continue;
            }
            if serial_lt(clock.now, inception) {
                keep(bogus(EDE_SIGNATURE_NOT_YET_VALID, format!("the signature of {what} is not yet valid")), &mut err);
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
            keep(bogus(EDE_DNSSEC_BOGUS, format!("the signature of {what} does not verify")), &mut err);
        } else {
            keep(bogus(EDE_DNSKEY_MISSING, format!("{what}: no key {} in {zone}", input.key_tag)), &mut err);
        }
    }
    Err(err.unwrap_or_else(|| bogus(EDE_DNSSEC_BOGUS, format!("{what} does not verify"))))
}

fn rank(code: u16) -> u8 {
    match code {
        EDE_SIGNATURE_EXPIRED | EDE_SIGNATURE_NOT_YET_VALID => 4,
        EDE_DNSSEC_BOGUS => 3,
        EDE_DNSKEY_MISSING => 2,
        _ => 1,
    }
}

/// Whether a signature uses an algorithm we can check (RFC 4035 §5.2: otherwise the zone is treated as unsigned).
pub(super) fn supported(alg: Algorithm) -> bool {
    alg.is_supported()
}

#[cfg(test)]
mod tests {
    use hickory_proto::dnssec::rdata::RRSIG;
    use hickory_proto::rr::{RData, Record, RecordType};

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
            EDE_DNSSEC_BOGUS
        );
        // no key with the signature's tag
        let (other, _, _) = signed(now - 3600, now + 3600);
        assert_eq!(verify_rrset(&set(&records, &sig), &zone, &[other], clock).unwrap_err().ede, EDE_DNSKEY_MISSING);
        // signed by another zone
        assert_eq!(
            verify_rrset(&set(&records, &sig), &name("other."), std::slice::from_ref(&key), clock).unwrap_err().ede,
            EDE_DNSSEC_BOGUS
        );
        // no signature at all
        let unsigned = RrSet { sigs: vec![], ..set(&records, &sig) };
        assert_eq!(verify_rrset(&unsigned, &zone, &[key], clock).unwrap_err().ede, EDE_RRSIGS_MISSING);
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
            EDE_SIGNATURE_EXPIRED
        );
        let err = verify_rrset(&set(&records, &future), &zone, &keys, checked).unwrap_err();
        assert_eq!(err.ede, EDE_SIGNATURE_NOT_YET_VALID);
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
        assert_eq!(err.ede, EDE_SIGNATURE_EXPIRED, "{}", err.why);
        // valid around the build date, or expiring after it: accepted while the clock is implausible
        let (key, records, current) = signed(b - 3600, b + 30 * 86_400);
        assert_eq!(verify_rrset(&set(&records, &current), &zone, std::slice::from_ref(&key), clock), Ok(()));
        // and with a plausible clock the usual rules apply
        let later = Clock::at(built + 60 * 86_400, built);
        assert!(later.check_times);
        assert_eq!(
            verify_rrset(&set(&records, &current), &zone, &[key], later).unwrap_err().ede,
            EDE_SIGNATURE_EXPIRED
        );
    }
}
