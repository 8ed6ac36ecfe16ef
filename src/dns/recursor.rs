//! Recursive resolution from the root (RFC 1034 §5.3.3) with QNAME minimisation (RFC 9156): hearth asks the
//! authoritative servers itself, one zone cut at a time, and only ever shows each server one label more than it
//! needs. Every query carries EDNS DO, so the signatures come along for the validator, which uses this same
//! recursor to fetch DS and DNSKEY sets ([`super::dnssec::Fetch`]).
//!
//! Pure core: [`next_name`] (the minimised name to ask), [`classify`] (answer, referral or lame), [`parse_hints`].
//! Shell: [`Recursor`] sends the queries (through `upstream::exchange_one`, UDP with TCP on truncation) and
//! remembers delegations (zone → server addresses) until their NS TTL runs out.
//!
//! Hardening (pure: [`scrub`], [`private_answer`], [`is_private`], [`Rebinding`]): every response keeps only the
//! records its server is authoritative for (in bailiwick: at or below the zone asked), so a server cannot slip
//! another zone's data into a CNAME chain; and with rebinding protection, a *public* server (one not on a
//! loopback, private, link-local or ULA address itself) may not put a name on such an address — neither in an
//! answer nor in glue — unless the name is under a domain the owner allowed (`dns.local_domains`,
//! `dns.rebinding_allow`). Servers on private addresses are the owner's own (reached only through configured root
//! hints or referrals by other private servers, since public referrers cannot hand out private glue), so their
//! data is trusted: a LAN's private tree works as it is. A refused answer is an error ([`Failure::Rebinding`]),
//! which the pipeline turns into SERVFAIL with EDE 15 (Blocked); stripping the records instead would leave an
//! answer that claims no data without proof (bogus in a signed zone, a silent NODATA otherwise).

use crate::util::Locked;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, Record, RecordType};

use super::dnssec::{BoxFuture, EDNS_PAYLOAD, Fetch};

/// IANA's root servers (named.root, 2024), IPv4 then IPv6.
const ROOT_HINTS: &[&str] = &[
    "198.41.0.4",
    "170.247.170.2",
    "192.33.4.12",
    "199.7.91.13",
    "192.203.230.10",
    "192.5.5.241",
    "192.112.36.4",
    "198.97.190.53",
    "192.36.148.17",
    "192.58.128.30",
    "193.0.14.129",
    "199.7.83.42",
    "202.12.27.33",
    "2001:503:ba3e::2:30",
    "2801:1b8:10::b",
    "2001:500:2::c",
    "2001:500:2d::d",
    "2001:500:a8::e",
    "2001:500:2f::f",
    "2001:500:12::d0d",
    "2001:500:1::53",
    "2001:7fe::53",
    "2001:503:c27::2:30",
    "2001:7fd::1",
    "2001:500:9f::42",
    "2001:dc3::35",
];

/// The built-in root server addresses.
pub(crate) fn builtin_hints() -> Vec<SocketAddr> {
    ROOT_HINTS.iter().filter_map(|a| a.parse::<IpAddr>().ok()).map(|ip| SocketAddr::new(ip, 53)).collect()
}

/// Root hints in zone-file syntax (named.root): the A and AAAA records give the addresses.
pub(crate) fn parse_hints(text: &str) -> Result<Vec<SocketAddr>, String> {
    let mut out = vec![];
    for (n, line) in text.lines().enumerate() {
        let line = line.split(';').next().unwrap_or("").trim();
        if line.is_empty() || line.starts_with('$') {
            continue;
        }
        let f: Vec<&str> = line.split_whitespace().collect();
        match f.iter().position(|t| t.eq_ignore_ascii_case("A") || t.eq_ignore_ascii_case("AAAA")) {
            Some(i) => {
                let ip = f.get(i + 1).and_then(|a| a.parse::<IpAddr>().ok());
                let ip = ip.ok_or_else(|| format!("line {}: bad address", n + 1))?;
                out.push(SocketAddr::new(ip, 53));
            }
            None if f.iter().any(|t| t.eq_ignore_ascii_case("NS")) => {}
            None => return Err(format!("line {}: expected an NS, A or AAAA record", n + 1)),
        }
    }
    if out.is_empty() {
        return Err("no root server addresses (A or AAAA records)".into());
    }
    // IPv4 first: many homes have no IPv6 route
    out.sort_by_key(|a| a.is_ipv6());
    Ok(out)
}

/// The name to ask next (RFC 9156): one label below `cursor` (the deepest name known not to be a further cut),
/// or `qname` itself once there.
pub(crate) fn next_name(cursor: &Name, qname: &Name) -> Name {
    if cursor.num_labels() >= qname.num_labels() {
        return qname.clone();
    }
    qname.trim_to(usize::from(cursor.num_labels()) + 1)
}

/// What an authoritative server's response means for the iteration.
#[derive(Debug, PartialEq)]
pub(crate) enum Step {
    /// An answer, NXDOMAIN or NODATA: final for the name asked.
    Final,
    /// A referral to a child zone, with its server names and the glue addresses given.
    Referral { zone: Name, ns: Vec<Name>, glue: Vec<(Name, IpAddr)>, ttl: u32 },
    /// Neither (a lame or upward referral, REFUSED, SERVFAIL): try another server.
    Lame(String),
}

/// Classify a response from a server of `zone` to a question about `asked`.
pub(crate) fn classify(resp: &Message, zone: &Name, asked: &Name) -> Step {
    let rcode = resp.metadata.response_code;
    if rcode != ResponseCode::NoError && rcode != ResponseCode::NXDomain {
        return Step::Lame(format!("{rcode}"));
    }
    let soa = resp.authorities.iter().any(|r| r.record_type() == RecordType::SOA);
    if !resp.answers.is_empty() || rcode == ResponseCode::NXDomain || soa {
        return Step::Final;
    }
    let ns: Vec<&Record> = resp.authorities.iter().filter(|r| r.record_type() == RecordType::NS).collect();
    let Some(child) = ns.first().map(|r| r.name.clone()) else {
        // NOERROR with nothing at all: a NODATA without SOA (some servers): final
        return if resp.metadata.authoritative { Step::Final } else { Step::Lame("empty answer".into()) };
    };
    if !zone.zone_of(&child) || child == *zone || !child.zone_of(asked) {
        return Step::Lame(format!("referral to {child} from {zone}"));
    }
    let ns_names: Vec<Name> = ns
        .iter()
        .filter(|r| r.name == child)
        .filter_map(|r| match &r.data {
            RData::NS(n) => Some(n.0.clone()),
            _ => None,
        })
        .collect();
    let glue = resp
        .additionals
        .iter()
        .filter(|r| ns_names.contains(&r.name))
        .filter_map(|r| match &r.data {
            RData::A(a) => Some((r.name.clone(), IpAddr::V4(a.0))),
            RData::AAAA(a) => Some((r.name.clone(), IpAddr::V6(a.0))),
            _ => None,
        })
        .collect();
    let ttl = ns.iter().map(|r| r.ttl).min().unwrap_or(0);
    Step::Referral { zone: child, ns: ns_names, glue, ttl }
}

/// Loopback, unspecified, RFC 1918, link-local, ULA (and IPv4-mapped forms of these): addresses on the owner's
/// own networks, which public names must not point at (DNS rebinding).
pub(crate) fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            v4.is_loopback() || v4.is_private() || v4.is_link_local() || v4.is_broadcast() || v4.octets()[0] == 0 // 0.0.0.0/8, "this network"
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_private(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            v6.is_loopback() || v6.is_unspecified() || first & 0xfe00 == 0xfc00 || first & 0xffc0 == 0xfe80
        }
    }
}

/// The rebinding policy: on or off, and the domains whose names may point at private addresses.
#[derive(Debug, Clone, Default)]
pub(crate) struct Rebinding {
    pub enabled: bool,
    pub allow: Vec<Name>,
}

impl Rebinding {
    /// From domain names as written in the config ("home.example", "*.lab.example"); unusable ones are skipped.
    pub(crate) fn new(enabled: bool, allow: &[String]) -> Rebinding {
        let allow = allow
            .iter()
            .map(|d| d.trim().trim_start_matches("*.").trim_end_matches('.').to_ascii_lowercase())
            .filter(|d| !d.is_empty()) // never the root: that would allow every name
            .filter_map(|d| super::dnssec::fqdn(&d))
            .collect();
        Rebinding { enabled, allow }
    }

    /// Whether `name` may resolve to a private address.
    pub(crate) fn allows(&self, name: &Name) -> bool {
        !self.enabled || self.allow.iter().any(|d| d.zone_of(name))
    }
}

/// Keep only what a server of `zone` is authoritative for (its bailiwick): answer and authority records at or
/// below `zone`. Returns how many records were dropped. The additional section is left alone (the recursor
/// reads only glue from it, checked against the referral's own names, and clears it in answers).
pub(crate) fn scrub(resp: &mut Message, zone: &Name) -> usize {
    let before = resp.answers.len() + resp.authorities.len();
    resp.answers.retain(|r| zone.zone_of(&r.name));
    resp.authorities.retain(|r| zone.zone_of(&r.name));
    before - resp.answers.len() - resp.authorities.len()
}

/// The first address record of the answer section that points at a private address, as (owner, address).
pub(crate) fn private_answer(resp: &Message) -> Option<(Name, IpAddr)> {
    resp.answers.iter().find_map(|r| match &r.data {
        RData::A(a) if is_private(IpAddr::V4(a.0)) => Some((r.name.clone(), IpAddr::V4(a.0))),
        RData::AAAA(a) if is_private(IpAddr::V6(a.0)) => Some((r.name.clone(), IpAddr::V6(a.0))),
        _ => None,
    })
}

/// Why a resolution gave no answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Failure {
    /// No usable answer from the servers (timeouts, lame servers, loops, limits).
    Failed(String),
    /// A public server put the name on a private address (DNS rebinding protection).
    Rebinding(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Failed(e) | Failure::Rebinding(e) => f.write_str(e),
        }
    }
}

impl From<String> for Failure {
    fn from(e: String) -> Failure {
        Failure::Failed(e)
    }
}

/// Limits that keep one query from wandering (RFC 9156 §2.3 caps minimisation; loops and chains are bounded).
const MAX_STEPS: usize = 40;
const MAX_CNAMES: usize = 8;
const MAX_DEPTH: u8 = 6;

/// The recursive resolver's state: root hints and the delegations learned.
pub(crate) struct Recursor {
    roots: Vec<SocketAddr>,
    timeout: Duration,
    delegations: Mutex<HashMap<Name, (Vec<SocketAddr>, Instant)>>,
    max_delegations: usize,
    rebinding: Rebinding,
}

impl std::fmt::Debug for Recursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recursor").field("roots", &self.roots).finish_non_exhaustive()
    }
}

fn query_bytes(name: &Name, qtype: RecordType) -> Vec<u8> {
    let mut m = Message::new(rand::random(), MessageType::Query, OpCode::Query);
    m.metadata.recursion_desired = false;
    m.add_query(Query::query(name.clone(), qtype));
    let mut edns = Edns::new();
    edns.set_max_payload(EDNS_PAYLOAD);
    edns.set_dnssec_ok(true);
    m.set_edns(edns);
    m.to_vec().unwrap_or_default()
}

impl Recursor {
    pub(crate) fn new(roots: Vec<SocketAddr>, timeout: Duration) -> Recursor {
        Recursor {
            roots,
            timeout,
            delegations: Mutex::default(),
            max_delegations: 10_000,
            rebinding: Rebinding::default(),
        }
    }

    /// The same with a rebinding policy.
    pub(crate) fn with_rebinding(mut self, rebinding: Rebinding) -> Recursor {
        self.rebinding = rebinding;
        self
    }

    /// Forget the learned delegations.
    pub(crate) fn clear(&self) {
        self.delegations.locked().clear();
    }

    /// The deepest delegation known for `name` (the root when none).
    fn closest(&self, name: &Name) -> (Name, Vec<SocketAddr>) {
        let now = Instant::now();
        let cache = self.delegations.locked();
        let mut n = name.clone();
        loop {
            if let Some((addrs, until)) = cache.get(&n)
                && *until > now
                && !addrs.is_empty()
            {
                return (n, addrs.clone());
            }
            if n.is_root() {
                return (Name::root(), self.roots.clone());
            }
            n = n.base_name();
        }
    }

    fn remember(&self, zone: &Name, addrs: &[SocketAddr], ttl: u32) {
        let now = Instant::now();
        let mut cache = self.delegations.locked();
        if cache.len() >= self.max_delegations {
            cache.retain(|_, (_, until)| *until > now);
            if cache.len() >= self.max_delegations {
                cache.clear();
            }
        }
        let ttl = Duration::from_secs(u64::from(ttl.clamp(60, 86_400)));
        cache.insert(zone.clone(), (addrs.to_vec(), now + ttl));
    }

    /// Resolve `name`/`qtype` from the root: the final authoritative response, with the answers of a CNAME chain
    /// across zones gathered in front.
    pub(crate) async fn resolve(&self, name: &Name, qtype: RecordType) -> Result<Message, Failure> {
        self.resolve_depth(name, qtype, 0).await
    }

    fn resolve_depth<'a>(
        &'a self,
        name: &'a Name,
        qtype: RecordType,
        depth: u8,
    ) -> BoxFuture<'a, Result<Message, Failure>> {
        Box::pin(async move {
            if depth > MAX_DEPTH {
                return Err(format!("{name}: name server lookups nest too deep").into());
            }
            let mut chain: Vec<Record> = vec![];
            let mut target = name.clone();
            for _ in 0..MAX_CNAMES {
                let (mut resp, zone, server) = self.iterate(&target, qtype, depth).await?;
                // only what the server speaks for: another zone's records in a CNAME chain are dropped (and the
                // chain is followed to that zone's own servers below)
                let dropped = scrub(&mut resp, &zone);
                if dropped > 0 {
                    tracing::debug!(name = %target, %zone, %server, dropped, "out-of-bailiwick records dropped");
                }
                // the name the client asked is what a browser trusts as its origin: it decides
                if !is_private(server.ip())
                    && !self.rebinding.allows(name)
                    && let Some((owner, ip)) = private_answer(&resp)
                {
                    tracing::info!(%name, %owner, %ip, %server, "DNS rebinding protection: private address refused");
                    return Err(Failure::Rebinding(format!(
                        "rebinding protection: {owner} points to the private address {ip} (allow the domain in dns.rebinding_allow)"
                    )));
                }
                // follow the CNAMEs this response already holds
                let mut t = target.clone();
                for _ in 0..MAX_CNAMES {
                    let next = resp.answers.iter().find_map(|r| match &r.data {
                        RData::CNAME(c) if r.name == t && qtype != RecordType::CNAME => Some(c.0.clone()),
                        _ => None,
                    });
                    match next {
                        Some(n) => t = n,
                        None => break,
                    }
                }
                let done = t == target
                    || resp.answers.iter().any(|r| r.name == t && r.record_type() == qtype)
                    || resp.metadata.response_code != ResponseCode::NoError
                    || resp.authorities.iter().any(|r| r.record_type() == RecordType::SOA);
                chain.append(&mut resp.answers);
                if done {
                    // minimal responses, as Unbound gives: no NS sets or glue, only what answers or proves
                    let ns_or_its_sig = |r: &Record| match &r.data {
                        RData::NS(_) => true,
                        RData::DNSSEC(hickory_proto::dnssec::rdata::DNSSECRData::RRSIG(s)) => {
                            s.input().type_covered == RecordType::NS
                        }
                        _ => false,
                    };
                    if qtype != RecordType::NS {
                        resp.authorities.retain(|r| !ns_or_its_sig(r));
                    }
                    resp.additionals.clear();
                    resp.answers = chain;
                    resp.metadata.message_type = MessageType::Response;
                    resp.metadata.authoritative = false;
                    resp.metadata.recursion_available = true;
                    resp.queries = vec![Query::query(name.clone(), qtype)];
                    return Ok(resp);
                }
                target = t;
            }
            Err(format!("{name}: CNAME chain too long").into())
        })
    }

    /// Walk down from the closest known delegation to the servers of `qname` and ask them: the final response,
    /// the zone whose server gave it, and that server.
    async fn iterate(&self, qname: &Name, qtype: RecordType, depth: u8) -> Result<(Message, Name, SocketAddr), String> {
        // DS records live in the parent zone: start above the name and stop at its cut
        let start = if qtype == RecordType::DS && !qname.is_root() { qname.base_name() } else { qname.clone() };
        let (mut zone, mut servers) = self.closest(&start);
        let mut cursor = zone.clone();
        for _ in 0..MAX_STEPS {
            let asked = next_name(&cursor, qname);
            let full = asked == *qname;
            // minimised queries ask for A (RFC 9156 §2.1 recommends it over NS: fewer broken servers)
            let ask_type = if full { qtype } else { RecordType::A };
            let (resp, step, server) = self.ask(&servers, &zone, &asked, ask_type).await?;
            match step {
                Step::Referral { zone: child, ns, mut glue, ttl } => {
                    if qtype == RecordType::DS && child == *qname {
                        // the parent answers for the DS of its child
                        return self.ask(&servers, &zone, qname, qtype).await.map(|(m, _, a)| (m, zone, a));
                    }
                    if !is_private(server.ip()) && !self.rebinding.allows(&child) {
                        // a public server may not send us to the owner's own networks
                        glue.retain(|(n, ip)| {
                            let keep = !is_private(*ip) || self.rebinding.allows(n);
                            if !keep {
                                tracing::info!(zone = %child, ns = %n, %ip, %server, "private glue from a public server ignored");
                            }
                            keep
                        });
                    }
                    let addrs = self.addresses(&ns, &glue, depth).await?;
                    self.remember(&child, &addrs, ttl);
                    cursor = child.clone();
                    zone = child;
                    servers = addrs;
                }
                Step::Final if full => return Ok((resp, zone, server)),
                Step::Final if resp.metadata.response_code == ResponseCode::NXDomain => {
                    // nothing exists below a name that does not exist (RFC 8020); ask for the full name anyway so
                    // the answer carries the denial proof for it
                    return self.ask(&servers, &zone, qname, qtype).await.map(|(m, _, a)| (m, zone, a));
                }
                Step::Final => cursor = asked,
                Step::Lame(why) => return Err(format!("{asked}: {why}")),
            }
        }
        Err(format!("{qname}: too many referrals"))
    }

    /// Ask the servers of `zone` in turn until one gives a usable response.
    async fn ask(
        &self,
        servers: &[SocketAddr],
        zone: &Name,
        name: &Name,
        qtype: RecordType,
    ) -> Result<(Message, Step, SocketAddr), String> {
        let query = query_bytes(name, qtype);
        let mut errors = vec![];
        // spread the load: start at a random server
        let offset = if servers.is_empty() { 0 } else { rand::random::<u32>() as usize % servers.len() };
        for i in 0..servers.len().min(6) {
            let addr = servers[(offset + i) % servers.len()];
            match super::upstream::exchange_one(addr, &query, self.timeout).await {
                Ok(bytes) => match Message::from_vec(&bytes) {
                    Ok(m) => match classify(&m, zone, name) {
                        Step::Lame(why) => errors.push(format!("{addr}: {why}")),
                        step => return Ok((m, step, addr)),
                    },
                    Err(e) => errors.push(format!("{addr}: {e}")),
                },
                Err(e) => errors.push(format!("{addr}: {e}")),
            }
        }
        Err(format!("no server of {zone} answered {name} {qtype} ({})", errors.join("; ")))
    }

    /// The addresses of a zone's servers: the glue, or else the servers' names resolved from the top.
    async fn addresses(&self, ns: &[Name], glue: &[(Name, IpAddr)], depth: u8) -> Result<Vec<SocketAddr>, String> {
        let mut out: Vec<SocketAddr> = glue.iter().map(|(_, ip)| SocketAddr::new(*ip, 53)).collect();
        if out.is_empty() {
            for n in ns.iter().take(3) {
                if let Ok(m) = self.resolve_depth(n, RecordType::A, depth + 1).await {
                    out.extend(m.answers.iter().filter_map(|r| match &r.data {
                        RData::A(a) if r.name == *n => Some(SocketAddr::new(IpAddr::V4(a.0), 53)),
                        _ => None,
                    }));
                }
                if !out.is_empty() {
                    break;
                }
            }
        }
        out.sort_by_key(|a| a.is_ipv6());
        out.dedup();
        if out.is_empty() {
            return Err(format!("no address for any of {ns:?}"));
        }
        Ok(out)
    }
}

impl Fetch for Recursor {
    fn fetch<'a>(&'a self, name: &'a Name, rtype: RecordType) -> BoxFuture<'a, Result<Message, String>> {
        Box::pin(async move { self.resolve(name, rtype).await.map_err(|e| e.to_string()) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::rr::rdata::{A, NS, SOA};

    fn name(s: &str) -> Name {
        Name::from_ascii(s).unwrap()
    }

    #[test]
    fn minimisation_adds_one_label_at_a_time() {
        let q = name("a.b.example.com.");
        assert_eq!(next_name(&Name::root(), &q), name("com."));
        assert_eq!(next_name(&name("com."), &q), name("example.com."));
        assert_eq!(next_name(&name("example.com."), &q), name("b.example.com."));
        assert_eq!(next_name(&name("b.example.com."), &q), q);
        assert_eq!(next_name(&q, &q), q);
    }

    #[test]
    fn hints_parse_named_root_and_put_ipv4_first() {
        let text = ".  3600000  NS  A.ROOT-SERVERS.NET.\nA.ROOT-SERVERS.NET. 3600000 AAAA 2001:503:ba3e::2:30\n\
                    A.ROOT-SERVERS.NET. 3600000 IN A 198.41.0.4\n; comment\n";
        let h = parse_hints(text).unwrap();
        assert_eq!(
            h,
            vec!["198.41.0.4:53".parse::<std::net::SocketAddr>().unwrap(), "[2001:503:ba3e::2:30]:53".parse().unwrap()]
        );
        assert!(parse_hints("; nothing\n").is_err());
        assert!(parse_hints("x. 1 IN A not-an-ip\n").unwrap_err().starts_with("line 1"));
        assert_eq!(builtin_hints().len(), 26);
    }

    #[test]
    fn private_addresses() {
        for a in [
            "127.0.0.1",
            "127.0.1.3",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.1.1",
            "0.0.0.0",
            "0.1.2.3",
            "::1",
            "::",
            "fd00::1",
            "fc12::1",
            "fe80::1",
            "::ffff:192.168.1.1",
        ] {
            assert!(is_private(a.parse().unwrap()), "{a}");
        }
        for a in [
            "8.8.8.8",
            "192.0.2.1",
            "172.32.0.1",
            "100.64.0.1",
            "198.18.0.53",
            "2001:db8::1",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
        ] {
            assert!(!is_private(a.parse().unwrap()), "{a}");
        }
    }

    #[test]
    fn rebinding_policy_allows_listed_domains_only() {
        let r = Rebinding::new(true, &["Home.Example.".into(), "*.lab.example".into(), "".into()]);
        assert!(r.allows(&name("home.example.")));
        assert!(r.allows(&name("nas.home.example.")));
        assert!(r.allows(&name("x.lab.example.")));
        assert!(!r.allows(&name("example.")));
        assert!(!r.allows(&name("evilhome.example.")));
        assert!(Rebinding::new(false, &[]).allows(&name("anything.example.")));
        assert!(!Rebinding::new(true, &[]).allows(&name("anything.example.")));
        // the default (a recursor built without a policy) is off
        assert!(Rebinding::default().allows(&name("x.")));
    }

    #[test]
    fn scrub_drops_out_of_bailiwick_records_and_finds_private_answers() {
        let zone = name("attacker.example.");
        let mut m = response(ResponseCode::NoError);
        m.add_query(Query::query(name("www.attacker.example."), RecordType::A));
        m.answers.push(Record::from_rdata(
            name("www.attacker.example."),
            300,
            RData::CNAME(hickory_proto::rr::rdata::CNAME(name("www.bank.example."))),
        ));
        // the attacker's server answers for the bank's name too: out of bailiwick
        m.answers.push(Record::from_rdata(name("www.bank.example."), 86400, RData::A(A::new(6, 6, 6, 6))));
        m.authorities.push(Record::from_rdata(
            name("bank.example."),
            86400,
            RData::NS(NS(name("ns.attacker.example."))),
        ));
        m.authorities.push(Record::from_rdata(zone.clone(), 300, RData::NS(NS(name("ns.attacker.example.")))));
        assert_eq!(scrub(&mut m, &zone), 2);
        assert_eq!(m.answers.len(), 1);
        assert_eq!(m.answers[0].record_type(), RecordType::CNAME);
        assert_eq!(m.authorities.len(), 1);
        assert_eq!(private_answer(&m), None);
        // everything in bailiwick stays
        assert_eq!(scrub(&mut m, &Name::root()), 0);

        let mut p = response(ResponseCode::NoError);
        p.answers.push(Record::from_rdata(name("a.example."), 60, RData::A(A::new(192, 0, 2, 1))));
        assert_eq!(private_answer(&p), None);
        p.answers.push(Record::from_rdata(name("a.example."), 60, RData::A(A::new(192, 168, 1, 1))));
        assert_eq!(private_answer(&p), Some((name("a.example."), "192.168.1.1".parse().unwrap())));
        let mut v6 = response(ResponseCode::NoError);
        v6.answers.push(Record::from_rdata(
            name("b.example."),
            60,
            RData::AAAA(hickory_proto::rr::rdata::AAAA("fd00::5".parse().unwrap())),
        ));
        assert!(private_answer(&v6).is_some());
    }

    fn response(rcode: ResponseCode) -> Message {
        let mut m = Message::new(1, MessageType::Response, OpCode::Query);
        m.metadata.response_code = rcode;
        m
    }

    #[test]
    fn responses_classify_as_final_referral_or_lame() {
        let zone = name("com.");
        let asked = name("example.com.");
        // a referral with glue
        let mut m = response(ResponseCode::NoError);
        m.authorities.push(Record::from_rdata(asked.clone(), 172800, RData::NS(NS(name("ns1.example.com.")))));
        m.additionals.push(Record::from_rdata(name("ns1.example.com."), 172800, RData::A(A::new(192, 0, 2, 53))));
        match classify(&m, &zone, &asked) {
            Step::Referral { zone, ns, glue, ttl } => {
                assert_eq!(zone, asked);
                assert_eq!(ns, vec![name("ns1.example.com.")]);
                assert_eq!(glue, vec![(name("ns1.example.com."), "192.0.2.53".parse().unwrap())]);
                assert_eq!(ttl, 172800);
            }
            other => panic!("{other:?}"),
        }
        // an upward (or sideways) referral is lame
        assert!(matches!(classify(&m, &name("example.com."), &asked), Step::Lame(_)));
        assert!(matches!(classify(&m, &zone, &name("other.com.")), Step::Lame(_)));
        // NODATA with SOA, NXDOMAIN and answers are final; REFUSED is lame
        let mut nodata = response(ResponseCode::NoError);
        nodata.authorities.push(Record::from_rdata(
            zone.clone(),
            900,
            RData::SOA(SOA::new(name("a.gtld."), name("n.gtld."), 1, 1, 1, 1, 1)),
        ));
        assert_eq!(classify(&nodata, &zone, &asked), Step::Final);
        assert_eq!(classify(&response(ResponseCode::NXDomain), &zone, &asked), Step::Final);
        assert!(matches!(classify(&response(ResponseCode::Refused), &zone, &asked), Step::Lame(_)));
    }
}
