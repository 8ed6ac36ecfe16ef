//! Trust anchors (pure): the DS and DNSKEY records validation starts from — IANA's root keys built in, or a file
//! of them in zone-file syntax — and which of a zone's DNSKEYs they vouch for.

use hickory_proto::dnssec::rdata::{DNSKEY, DS};
use hickory_proto::dnssec::{Algorithm, DigestType, PublicKeyBuf, TrustAnchors};
use hickory_proto::rr::Name;

/// Trust anchors: DS or DNSKEY records for zones (normally just the root).
#[derive(Debug, Clone, Default)]
pub(crate) struct Anchors {
    ds: Vec<(Name, DS)>,
    keys: Vec<(Name, DNSKEY)>,
}

impl Anchors {
    /// IANA's root key-signing keys (KSK-2017, tag 20326, and KSK-2024, tag 38696), as hickory ships them.
    pub(crate) fn builtin() -> Anchors {
        let roots = TrustAnchors::default();
        let keys = (0..roots.len())
            .filter_map(|i| roots.get(i))
            .map(|k| (Name::root(), DNSKEY::new(true, true, false, k.clone())))
            .collect();
        Anchors { ds: vec![], keys }
    }

    /// Parse a file of DS and DNSKEY records in zone-file syntax (`owner [ttl] [IN] DS tag alg digest-type hex`,
    /// `owner [ttl] [IN] DNSKEY flags 3 alg base64`), e.g. Unbound's `root.key`. `;` starts a comment.
    pub(crate) fn parse(text: &str) -> Result<Anchors, String> {
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
    pub(super) fn closest(&self, name: &Name) -> Option<Name> {
        self.ds
            .iter()
            .map(|(n, _)| n)
            .chain(self.keys.iter().map(|(n, _)| n))
            .filter(|n| n.zone_of(name))
            .max_by_key(|n| n.num_labels())
            .cloned()
    }

    /// The DNSKEYs of `zone` that an anchor vouches for.
    pub(super) fn trusted<'k>(&self, zone: &Name, keys: &'k [DNSKEY]) -> Vec<&'k DNSKEY> {
        keys.iter()
            .filter(|k| {
                self.ds.iter().any(|(n, ds)| n == zone && ds.covers(zone, k).unwrap_or(false))
                    || self.keys.iter().any(|(n, a)| n == zone && a.public_key() == k.public_key())
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> Name {
        Name::from_ascii(s).unwrap()
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

    #[test]
    fn builtin_anchors_are_the_root_ksks() {
        let a = Anchors::builtin();
        let tags: Vec<u16> = a.keys.iter().map(|(_, k)| k.calculate_key_tag().unwrap()).collect();
        assert!(tags.contains(&20326) && tags.contains(&38696), "{tags:?}");
    }
}
