//! Local records (pure core): names the home defines itself (`nas.home.arpa A 192.168.1.10`, CNAME rewrites), and
//! local domains answered only here — a name under `home.arpa` that has no record is NXDOMAIN, never forwarded
//! (RFC 8375). Built from config into an immutable zone; lookups follow CNAMEs to local targets.

use std::collections::HashMap;
use std::net::IpAddr;

use super::blocklist::normalize_domain;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Data {
    Addr(IpAddr),
    Cname(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Rec {
    ttl: u32,
    data: Data,
}

/// One record of an answer: owner name, type, TTL, RDATA in wire form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Rr {
    pub owner: String,
    pub rtype: u16,
    pub ttl: u32,
    pub rdata: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum LocalAnswer {
    Records(Vec<Rr>),
    /// The name exists here, but has no data of the asked type.
    NoData,
    /// Under a local domain and unknown.
    NxDomain,
}

#[derive(Debug, Default)]
pub(crate) struct LocalZone {
    by_name: HashMap<String, Vec<Rec>, foldhash::fast::RandomState>,
    domains: Vec<String>,
}

/// `name` in wire format (uncompressed).
pub(crate) fn encode_name(name: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(name.len() + 2);
    for label in name.split('.').filter(|l| !l.is_empty()) {
        out.push(label.len() as u8);
        out.extend_from_slice(label.as_bytes());
    }
    out.push(0);
    out
}

impl LocalZone {
    /// Build from `(name, type, value, ttl)` entries and local domains; errors name the entry's index.
    pub(crate) fn build(
        records: &[(String, String, String, u32)],
        domains: &[String],
    ) -> Result<LocalZone, (usize, &'static str, String)> {
        let mut zone = LocalZone::default();
        for (i, (name, rtype, value, ttl)) in records.iter().enumerate() {
            let name = normalize_domain(name).ok_or((i, "name", format!("{name:?} is not a valid name")))?;
            let data = match rtype.to_ascii_uppercase().as_str() {
                "A" => match value.parse::<IpAddr>() {
                    Ok(ip @ IpAddr::V4(_)) => Data::Addr(ip),
                    _ => return Err((i, "value", format!("{value:?} is not an IPv4 address"))),
                },
                "AAAA" => match value.parse::<IpAddr>() {
                    Ok(ip @ IpAddr::V6(_)) => Data::Addr(ip),
                    _ => return Err((i, "value", format!("{value:?} is not an IPv6 address"))),
                },
                "CNAME" => Data::Cname(normalize_domain(value).ok_or((
                    i,
                    "value",
                    format!("{value:?} is not a valid name"),
                ))?),
                other => return Err((i, "type", format!("type {other:?} is not supported (A, AAAA or CNAME)"))),
            };
            let recs = zone.by_name.entry(name.clone()).or_default();
            let has_cname = recs.iter().any(|r| matches!(r.data, Data::Cname(_)));
            if has_cname || (matches!(data, Data::Cname(_)) && !recs.is_empty()) {
                return Err((i, "name", format!("{name} cannot have a CNAME and other records")));
            }
            recs.push(Rec { ttl: *ttl, data });
        }
        for d in domains {
            let d = normalize_domain(d).ok_or((usize::MAX, "", format!("{d:?} is not a valid domain")))?;
            zone.domains.push(d);
        }
        Ok(zone)
    }

    fn is_local_domain(&self, name: &str) -> bool {
        self.domains.iter().any(|d| name == d || name.strip_suffix(d.as_str()).is_some_and(|p| p.ends_with('.')))
    }

    /// The local answer for `name` (lowercase, no trailing dot) and type, or `None` to continue the pipeline.
    pub(crate) fn lookup(&self, name: &str, qtype: u16) -> Option<LocalAnswer> {
        // the common case on the query path: not ours, decided without allocating
        if !self.by_name.contains_key(name) {
            return self.is_local_domain(name).then_some(LocalAnswer::NxDomain);
        }
        let mut out = vec![];
        let mut current = name.to_string();
        for _ in 0..8 {
            let Some(recs) = self.by_name.get(&current) else {
                if out.is_empty() {
                    return self.is_local_domain(name).then_some(LocalAnswer::NxDomain);
                }
                // a CNAME to a name outside: the client follows it
                return Some(LocalAnswer::Records(out));
            };
            if let Some(Rec { ttl, data: Data::Cname(target) }) =
                recs.first().filter(|r| matches!(r.data, Data::Cname(_)))
            {
                out.push(Rr { owner: current.clone(), rtype: 5, ttl: *ttl, rdata: encode_name(target) });
                if qtype == 5 {
                    return Some(LocalAnswer::Records(out));
                }
                current = target.clone();
                continue;
            }
            for r in recs {
                if let Data::Addr(ip) = r.data {
                    let (t, rdata) = match ip {
                        IpAddr::V4(v4) => (1, v4.octets().to_vec()),
                        IpAddr::V6(v6) => (28, v6.octets().to_vec()),
                    };
                    if t == qtype {
                        out.push(Rr { owner: current.clone(), rtype: t, ttl: r.ttl, rdata });
                    }
                }
            }
            return Some(if out.is_empty() { LocalAnswer::NoData } else { LocalAnswer::Records(out) });
        }
        Some(LocalAnswer::Records(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zone() -> LocalZone {
        let r = |n: &str, t: &str, v: &str| (n.to_string(), t.to_string(), v.to_string(), 300);
        LocalZone::build(
            &[
                r("nas.home.arpa", "A", "192.168.1.10"),
                r("nas.home.arpa", "AAAA", "fd00::10"),
                r("media.home.arpa", "CNAME", "nas.home.arpa"),
                r("Printer.LAN", "a", "192.168.1.20"),
                r("search.example", "CNAME", "safe.search.example"),
            ],
            &["home.arpa".to_string()],
        )
        .unwrap()
    }

    #[test]
    fn answers_records_cnames_and_local_domains() {
        let z = zone();
        match z.lookup("nas.home.arpa", 1) {
            Some(LocalAnswer::Records(r)) => {
                assert_eq!(r, [Rr { owner: "nas.home.arpa".into(), rtype: 1, ttl: 300, rdata: vec![192, 168, 1, 10] }])
            }
            other => panic!("{other:?}"),
        }
        match z.lookup("media.home.arpa", 28) {
            Some(LocalAnswer::Records(r)) => {
                assert_eq!(r.len(), 2);
                assert_eq!((r[0].rtype, r[0].rdata.clone()), (5, encode_name("nas.home.arpa")));
                assert_eq!(r[1].rtype, 28);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(z.lookup("nas.home.arpa", 16), Some(LocalAnswer::NoData));
        assert_eq!(z.lookup("printer.lan", 1).map(|a| matches!(a, LocalAnswer::Records(_))), Some(true));
        assert_eq!(z.lookup("unknown.home.arpa", 1), Some(LocalAnswer::NxDomain));
        assert_eq!(z.lookup("home.arpa", 1), Some(LocalAnswer::NxDomain));
        assert_eq!(z.lookup("example.com", 1), None, "not ours: continue");
        assert_eq!(z.lookup("nothome.arpa", 1), None);
        match z.lookup("search.example", 1) {
            Some(LocalAnswer::Records(r)) => assert_eq!(r.len(), 1, "CNAME to an outside name"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn build_errors_name_the_entry() {
        let r = |n: &str, t: &str, v: &str| (n.to_string(), t.to_string(), v.to_string(), 60);
        let e = LocalZone::build(&[r("a.lan", "A", "::1")], &[]).unwrap_err();
        assert_eq!((e.0, e.1), (0, "value"), "the entry and its field");
        let e = LocalZone::build(&[r("a.lan", "A", "10.0.0.1"), r("b..lan", "A", "10.0.0.1")], &[]).unwrap_err();
        assert_eq!((e.0, e.1), (1, "name"));
        assert!(e.2.contains("not a valid name"), "{e:?}");
        assert!(LocalZone::build(&[r("a.lan", "MX", "x")], &[]).unwrap_err().2.contains("not supported"));
        assert!(LocalZone::build(&[r("a.lan", "A", "10.0.0.1"), r("a.lan", "CNAME", "b.lan")], &[]).is_err());
        assert_eq!(encode_name("a.bc."), vec![1, b'a', 2, b'b', b'c', 0]);
    }
}
