//! DNS wire format helpers (pure). The fast path works over bytes: read a query's question and EDNS facts, find
//! the TTL fields of a response, patch ids and TTLs in place, cut a response down to a truncated one and write
//! simple answers — so a cached answer is served without decoding and re-encoding the message. The slow path
//! (forwarding with DNSSEC validation, the recursor) works on hickory [`Message`]s: query names, the query hearth
//! sends upstream, RRset grouping of a section, and what a client sees of a decoded answer.
//!
//! Response codes and Extended DNS Error codes (RFC 8914) are named here, once, for every part of `dns` that
//! writes or reads them as numbers (`RCODE_*`, `EDE_*`).

use hickory_proto::dnssec::rdata::{DNSSECRData, RRSIG};
use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query};
use hickory_proto::rr::{Name, RData, Record, RecordType};

/// What the pipeline needs to know about a query, read straight from the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct QueryInfo {
    pub id: u16,
    /// Lowercased name without the trailing dot ("" for the root).
    pub name: String,
    pub qtype: u16,
    pub qclass: u16,
    /// End of the question section (offset of the first byte after it).
    pub question_end: usize,
    /// The client's EDNS UDP payload size, when it sent an OPT record.
    pub edns_payload: Option<u16>,
    pub dnssec_ok: bool,
    pub checking_disabled: bool,
    /// The client set AD: it understands the AD bit in the answer (RFC 6840 §5.7).
    pub authentic_data: bool,
    pub recursion_desired: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum WireError {
    #[error("message too short")]
    Short,
    #[error("not a standard query with one question")]
    NotAQuery,
    #[error("malformed name")]
    BadName,
}

const HEADER: usize = 12;
pub(crate) const TYPE_OPT: u16 = 41;
pub(crate) const TYPE_A: u16 = 1;
pub(crate) const TYPE_AAAA: u16 = 28;
pub(crate) const TYPE_SOA: u16 = 6;

/// Response codes (RFC 1035 §4.1.1), as the header's four RCODE bits carry them (the `rcode` of [`synthesize`];
/// [`ResponseInfo::rcode`] holds the same values widened to u16).
pub(crate) const RCODE_NOERROR: u8 = 0;
pub(crate) const RCODE_FORMERR: u8 = 1;
pub(crate) const RCODE_SERVFAIL: u8 = 2;
pub(crate) const RCODE_NXDOMAIN: u8 = 3;
pub(crate) const RCODE_REFUSED: u8 = 5;

/// The EDNS option code of an Extended DNS Error (RFC 8914 §2).
pub(crate) const OPTION_EDE: u16 = 15;

/// Extended DNS Error info codes (RFC 8914 §4) that hearth sends.
pub(crate) const EDE_OTHER: u16 = 0;
pub(crate) const EDE_DNSSEC_BOGUS: u16 = 6;
pub(crate) const EDE_SIGNATURE_EXPIRED: u16 = 7;
pub(crate) const EDE_SIGNATURE_NOT_YET_VALID: u16 = 8;
pub(crate) const EDE_DNSKEY_MISSING: u16 = 9;
pub(crate) const EDE_RRSIGS_MISSING: u16 = 10;
pub(crate) const EDE_NSEC_MISSING: u16 = 12;
/// Refused by the operator's policy (a block list), with the reason.
pub(crate) const EDE_BLOCKED: u16 = 15;
pub(crate) const EDE_NETWORK_ERROR: u16 = 23;

fn u16_at(b: &[u8], i: usize) -> Result<u16, WireError> {
    b.get(i..i + 2).map(|s| u16::from_be_bytes([s[0], s[1]])).ok_or(WireError::Short)
}

fn u32_at(b: &[u8], i: usize) -> Result<u32, WireError> {
    b.get(i..i + 4).map(|s| u32::from_be_bytes([s[0], s[1], s[2], s[3]])).ok_or(WireError::Short)
}

/// Skip a (possibly compressed) name starting at `i`; returns the offset after it.
fn skip_name(b: &[u8], mut i: usize) -> Result<usize, WireError> {
    for _ in 0..128 {
        let len = *b.get(i).ok_or(WireError::Short)? as usize;
        match len {
            0 => return Ok(i + 1),
            l if l & 0xC0 == 0xC0 => return if i + 2 <= b.len() { Ok(i + 2) } else { Err(WireError::Short) },
            l if l & 0xC0 != 0 => return Err(WireError::BadName),
            l => i += 1 + l,
        }
    }
    Err(WireError::BadName)
}

/// Parse a query: header flags, the single question (name must be uncompressed), and the OPT record if any.
pub(crate) fn parse_query(b: &[u8]) -> Result<QueryInfo, WireError> {
    if b.len() < HEADER {
        return Err(WireError::Short);
    }
    let flags = u16_at(b, 2)?;
    let is_response = flags & 0x8000 != 0;
    let opcode = (flags >> 11) & 0xF;
    if is_response || opcode != 0 || u16_at(b, 4)? != 1 {
        return Err(WireError::NotAQuery);
    }
    let mut name = String::new();
    let mut i = HEADER;
    loop {
        let len = *b.get(i).ok_or(WireError::Short)? as usize;
        if len == 0 {
            i += 1;
            break;
        }
        if len & 0xC0 != 0 {
            return Err(WireError::BadName);
        }
        let label = b.get(i + 1..i + 1 + len).ok_or(WireError::Short)?;
        if !name.is_empty() {
            name.push('.');
        }
        for &c in label {
            // names are text for matching; bytes outside printable ASCII are escaped like dig does
            if c.is_ascii_graphic() && c != b'.' && c != b'\\' {
                name.push(c.to_ascii_lowercase() as char);
            } else {
                name.push_str(&format!("\\{c:03}"));
            }
        }
        i += 1 + len;
        if i - HEADER > 255 {
            return Err(WireError::BadName);
        }
    }
    let qtype = u16_at(b, i)?;
    let qclass = u16_at(b, i + 2)?;
    let question_end = i + 4;
    let mut info = QueryInfo {
        id: u16_at(b, 0)?,
        name,
        qtype,
        qclass,
        question_end,
        edns_payload: None,
        dnssec_ok: false,
        checking_disabled: flags & 0x0010 != 0,
        authentic_data: flags & 0x0020 != 0,
        recursion_desired: flags & 0x0100 != 0,
    };
    // the OPT record lives in the additional section (queries normally have no answers or authorities)
    let (an, ns, ar) = (u16_at(b, 6)?, u16_at(b, 8)?, u16_at(b, 10)?);
    let mut j = question_end;
    for n in 0..(an as usize + ns as usize + ar as usize) {
        let after_name = skip_name(b, j)?;
        let rtype = u16_at(b, after_name)?;
        let rdlen = u16_at(b, after_name + 8)? as usize;
        if rtype == TYPE_OPT && n >= an as usize + ns as usize {
            info.edns_payload = Some(u16_at(b, after_name + 2)?.max(512));
            info.dnssec_ok = u32_at(b, after_name + 4)? & 0x8000 != 0;
        }
        j = after_name + 10 + rdlen;
        if j > b.len() {
            return Err(WireError::Short);
        }
    }
    Ok(info)
}

/// Facts about a response needed to cache it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ResponseInfo {
    pub rcode: u16,
    pub truncated: bool,
    pub answers: u16,
    /// Offsets of every TTL field except the OPT pseudo-record's.
    pub ttl_offsets: Vec<usize>,
    /// The smallest TTL of the answer section (None if empty).
    pub min_answer_ttl: Option<u32>,
    /// For negative answers: min(SOA TTL, SOA MINIMUM) of the authority section's SOA (RFC 2308).
    pub negative_ttl: Option<u32>,
}

pub(crate) fn parse_response(b: &[u8]) -> Result<ResponseInfo, WireError> {
    if b.len() < HEADER {
        return Err(WireError::Short);
    }
    let flags = u16_at(b, 2)?;
    let (qd, an, ns, ar) = (u16_at(b, 4)?, u16_at(b, 6)?, u16_at(b, 8)?, u16_at(b, 10)?);
    let mut i = HEADER;
    for _ in 0..qd {
        i = skip_name(b, i)? + 4;
    }
    let mut info = ResponseInfo {
        rcode: flags & 0xF,
        truncated: flags & 0x0200 != 0,
        answers: an,
        ttl_offsets: vec![],
        min_answer_ttl: None,
        negative_ttl: None,
    };
    for n in 0..(an as usize + ns as usize + ar as usize) {
        let after_name = skip_name(b, i)?;
        let rtype = u16_at(b, after_name)?;
        let ttl = u32_at(b, after_name + 4)?;
        let rdlen = u16_at(b, after_name + 8)? as usize;
        let rdata = after_name + 10;
        if rdata + rdlen > b.len() {
            return Err(WireError::Short);
        }
        if rtype != TYPE_OPT {
            info.ttl_offsets.push(after_name + 4);
        }
        if n < an as usize {
            info.min_answer_ttl = Some(info.min_answer_ttl.map_or(ttl, |m| m.min(ttl)));
        } else if n < an as usize + ns as usize && rtype == TYPE_SOA {
            // SOA RDATA: MNAME, RNAME, SERIAL, REFRESH, RETRY, EXPIRE, MINIMUM
            let k = skip_name(b, skip_name(b, rdata)?)?;
            let minimum = u32_at(b, k + 16)?;
            info.negative_ttl = Some(ttl.min(minimum));
        }
        i = rdata + rdlen;
    }
    Ok(info)
}

/// The addresses in a response's answer section (A and AAAA data, in order, at most `max`), for the query log:
/// what a name resolved to. A message that cannot be read gives what was read before the fault.
pub(crate) fn answer_addresses(b: &[u8], max: usize) -> Vec<std::net::IpAddr> {
    let mut out = vec![];
    let mut read = || -> Result<(), WireError> {
        let (qd, an) = (u16_at(b, 4)?, u16_at(b, 6)?);
        let mut i = HEADER;
        for _ in 0..qd {
            i = skip_name(b, i)? + 4;
        }
        for _ in 0..an {
            let after_name = skip_name(b, i)?;
            let rtype = u16_at(b, after_name)?;
            let rdlen = u16_at(b, after_name + 8)? as usize;
            let rdata = b.get(after_name + 10..after_name + 10 + rdlen).ok_or(WireError::Short)?;
            match (rtype, rdata.len()) {
                (TYPE_A, 4) => out.push(std::net::IpAddr::from(<[u8; 4]>::try_from(rdata).expect("4 bytes"))),
                (TYPE_AAAA, 16) => out.push(std::net::IpAddr::from(<[u8; 16]>::try_from(rdata).expect("16 bytes"))),
                _ => {}
            }
            if out.len() >= max {
                break;
            }
            i = after_name + 10 + rdlen;
        }
        Ok(())
    };
    // a fault ends the reading; what was read stays
    let _ = read();
    out
}

pub(crate) fn set_id(b: &mut [u8], id: u16) {
    b[..2].copy_from_slice(&id.to_be_bytes());
}

/// Subtract `age` seconds from every TTL (never below `floor`).
pub(crate) fn age_ttls(b: &mut [u8], offsets: &[usize], age: u32, floor: u32) {
    for &o in offsets {
        let ttl = u32::from_be_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
        let new = ttl.saturating_sub(age).max(floor);
        b[o..o + 4].copy_from_slice(&new.to_be_bytes());
    }
}

/// Clear the AD bit: hearth does not pass on an upstream's claim of validation it did not check itself.
pub(crate) fn clear_ad(b: &mut [u8]) {
    b[3] &= !0x20;
}

/// Copy the client's question bytes (same name, maybe other letter case: 0x20 mixing) over the response's.
pub(crate) fn copy_question(resp: &mut [u8], query: &[u8], question_end: usize) {
    if resp.len() >= question_end
        && query.len() >= question_end
        && resp[HEADER..question_end].eq_ignore_ascii_case(&query[HEADER..question_end])
    {
        resp[HEADER..question_end].copy_from_slice(&query[HEADER..question_end]);
    }
}

/// The largest UDP answer hearth sends: the DNS Flag Day 2020 size, which fits the common 1280-byte IPv6 MTU
/// without fragmentation, whatever larger size a client advertises.
pub(crate) const MAX_UDP_PAYLOAD: u16 = 1232;

/// The EDNS payload size hearth advertises, in its answers and in the queries it sends (the same flag day value).
pub(crate) const EDNS_PAYLOAD: u16 = MAX_UDP_PAYLOAD;

/// The most a UDP answer to `q` may weigh: the client's EDNS payload size capped at [`MAX_UDP_PAYLOAD`], or 512
/// bytes without EDNS (RFC 1035 §4.2.1).
pub(crate) fn udp_limit(q: &QueryInfo) -> usize {
    usize::from(q.edns_payload.map_or(512, |p| p.clamp(512, MAX_UDP_PAYLOAD)))
}

/// The byte range of the OPT pseudo-record in a message's additional section, if it has one.
pub(crate) fn find_opt(b: &[u8]) -> Option<std::ops::Range<usize>> {
    let (qd, an, ns, ar) = (u16_at(b, 4).ok()?, u16_at(b, 6).ok()?, u16_at(b, 8).ok()?, u16_at(b, 10).ok()?);
    let mut i = HEADER;
    for _ in 0..qd {
        i = skip_name(b, i).ok()? + 4;
    }
    for n in 0..(an as usize + ns as usize + ar as usize) {
        let start = i;
        let after_name = skip_name(b, i).ok()?;
        let rtype = u16_at(b, after_name).ok()?;
        let rdlen = u16_at(b, after_name + 8).ok()? as usize;
        i = after_name + 10 + rdlen;
        if i > b.len() {
            return None;
        }
        if rtype == TYPE_OPT && n >= an as usize + ns as usize {
            return Some(start..i);
        }
    }
    None
}

/// The response cut to header + question with TC set, for a UDP client whose limit it exceeds. The OPT record
/// stays (RFC 6891 §7: a truncated answer still carries EDNS, so the client keeps its payload size and sees the
/// extended rcode and EDE options): the response's own when the result stays within 512 bytes, else — when the
/// client sent EDNS — a plain one like [`synthesize`] writes. The result never exceeds 512 bytes.
pub(crate) fn truncated(resp: &[u8], q: &QueryInfo) -> Vec<u8> {
    if resp.len() < HEADER {
        return resp.to_vec();
    }
    let question_end = q.question_end.min(resp.len()).max(HEADER);
    let mut out = resp[..question_end].to_vec();
    out[2] |= 0x02;
    out[6..12].fill(0);
    if q.edns_payload.is_none() {
        return out;
    }
    // the response's OPT when the cut answer stays within 512 bytes with it (a long EDE text could push it over)
    match find_opt(resp).filter(|r| question_end + r.len() <= 512) {
        Some(r) => out.extend_from_slice(&resp[r]),
        None => {
            out.push(0);
            out.extend_from_slice(&TYPE_OPT.to_be_bytes());
            out.extend_from_slice(&EDNS_PAYLOAD.to_be_bytes());
            out.extend_from_slice(&[0, 0, if q.dnssec_ok { 0x80 } else { 0 }, 0]);
            out.extend_from_slice(&0u16.to_be_bytes());
        }
    }
    out[10..12].copy_from_slice(&1u16.to_be_bytes());
    out
}

/// Query type ANY (RFC 1035 "*").
pub(crate) const TYPE_ANY: u16 = 255;
/// HINFO: the record type of the RFC 8482 answer to ANY.
pub(crate) const TYPE_HINFO: u16 = 13;

/// The RDATA of RFC 8482's minimal answer to ANY: HINFO with CPU "RFC8482" and an empty OS (as Cloudflare and
/// Unbound answer).
pub(crate) const RFC8482_HINFO: &[u8] = b"\x07RFC8482\x00";

/// One answer record for [`synthesize`]: owner (wire form; `None` = the question's name), type, TTL, RDATA.
pub(crate) type Answer<'a> = (Option<&'a [u8]>, u16, u32, &'a [u8]);

/// Build a response to `query` directly on the wire: the query's id and question, RD and CD copied, RA set,
/// `rcode`, the answer records, and — when the client sent EDNS — an OPT record (our payload size, its DO bit)
/// carrying an Extended DNS Error (RFC 8914) if given.
pub(crate) fn synthesize(
    q: &QueryInfo,
    query: &[u8],
    rcode: u8,
    answers: &[Answer<'_>],
    ede: Option<(u16, &str)>,
) -> Vec<u8> {
    let edns = q.edns_payload.is_some();
    let mut out = Vec::with_capacity(q.question_end + 64);
    out.extend_from_slice(&q.id.to_be_bytes());
    let rd = if q.recursion_desired { 0x01 } else { 0 };
    let cd = if q.checking_disabled { 0x10 } else { 0 };
    out.push(0x80 | rd);
    out.push(0x80 | cd | (rcode & 0x0F));
    out.extend_from_slice(&1u16.to_be_bytes());
    out.extend_from_slice(&(answers.len() as u16).to_be_bytes());
    out.extend_from_slice(&0u16.to_be_bytes());
    out.extend_from_slice(&(edns as u16).to_be_bytes());
    out.extend_from_slice(&query[HEADER..q.question_end]);
    for &(owner, rtype, ttl, rdata) in answers {
        match owner {
            Some(name) => out.extend_from_slice(name),
            None => out.extend_from_slice(&[0xC0, 0x0C]), // the question's name
        }
        out.extend_from_slice(&rtype.to_be_bytes());
        out.extend_from_slice(&q.qclass.to_be_bytes());
        out.extend_from_slice(&ttl.to_be_bytes());
        out.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
        out.extend_from_slice(rdata);
    }
    if edns {
        out.push(0); // root name
        out.extend_from_slice(&TYPE_OPT.to_be_bytes());
        out.extend_from_slice(&EDNS_PAYLOAD.to_be_bytes());
        out.extend_from_slice(&[0, 0, if q.dnssec_ok { 0x80 } else { 0 }, 0]);
        match ede {
            Some((code, text)) => {
                let text = &text.as_bytes()[..text.len().min(400)];
                out.extend_from_slice(&((4 + 2 + text.len()) as u16).to_be_bytes());
                out.extend_from_slice(&OPTION_EDE.to_be_bytes());
                out.extend_from_slice(&((2 + text.len()) as u16).to_be_bytes());
                out.extend_from_slice(&code.to_be_bytes());
                out.extend_from_slice(text);
            }
            None => out.extend_from_slice(&0u16.to_be_bytes()),
        }
    }
    out
}

// ----- messages (hickory, the slow path) -----

/// A query name in hickory's form ("" is the root).
pub(crate) fn fqdn(name: &str) -> Option<Name> {
    if name.is_empty() { Some(Name::root()) } else { Name::from_ascii(format!("{name}.")).ok() }
}

/// The closest name at or above both `a` and `b`.
pub(crate) fn common_ancestor(a: &Name, b: &Name) -> Name {
    let mut n = a.clone();
    while !n.zone_of(b) && !n.is_root() {
        n = n.base_name();
    }
    n
}

/// The wildcard name directly below `name` (`*.name`).
pub(crate) fn wildcard_of(name: &Name) -> Option<Name> {
    Name::from_ascii("*").ok()?.append_domain(name).ok()
}

/// The query hearth sends to validate an answer: RD, CD (the upstream must hand over even bogus data, the
/// verdict is ours) and EDNS with DO (so the signatures and denial proofs come along).
pub(crate) fn upstream_query(id: u16, name: &Name, qtype: RecordType) -> Vec<u8> {
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

/// What the client sees of a decoded (and validated) answer: its own id and flags, AD when `secure` and the
/// client understands AD (it set DO or AD), DNSSEC records only when it set DO, EDNS only when it used EDNS.
pub(crate) fn client_view(mut msg: Message, q: &QueryInfo, secure: bool) -> Option<Vec<u8>> {
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

/// One RRset of a message section with the signatures that cover it.
#[derive(Debug)]
pub(crate) struct RrSet<'a> {
    pub name: Name,
    pub rtype: RecordType,
    pub records: Vec<&'a Record>,
    pub sigs: Vec<&'a RRSIG>,
    pub ttl: u32,
}

/// Group a section into RRsets (RRSIGs attached to what they cover; OPT and stray RRSIGs dropped).
pub(crate) fn rrsets(section: &[Record]) -> Vec<RrSet<'_>> {
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

#[cfg(test)]
mod tests {
    #[test]
    fn answer_addresses_reads_a_and_aaaa_and_survives_garbage() {
        use hickory_proto::op::{Message, MessageType, Query};
        use hickory_proto::rr::{Name, RData, Record, RecordType, rdata};
        let name = Name::from_ascii("www.example.").unwrap();
        let mut m = Message::new(7, MessageType::Response, hickory_proto::op::OpCode::Query);
        m.add_query(Query::query(name.clone(), RecordType::A));
        m.add_answer(Record::from_rdata(
            name.clone(),
            60,
            RData::CNAME(rdata::CNAME(Name::from_ascii("cdn.example.").unwrap())),
        ));
        m.add_answer(Record::from_rdata(name.clone(), 60, RData::A(rdata::A::new(192, 0, 2, 1))));
        m.add_answer(Record::from_rdata(
            name.clone(),
            60,
            RData::AAAA(rdata::AAAA::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1)),
        ));
        let b = m.to_vec().unwrap();
        let got: Vec<String> = answer_addresses(&b, 8).iter().map(|a| a.to_string()).collect();
        assert_eq!(got, ["192.0.2.1", "2001:db8::1"]);
        assert_eq!(answer_addresses(&b, 1).len(), 1, "at most max");
        assert!(answer_addresses(&b[..20], 8).is_empty(), "a cut message gives what it has");
        assert!(answer_addresses(&[], 8).is_empty());
    }

    use hickory_proto::rr::DNSClass;
    use hickory_proto::rr::rdata::{A, SOA};

    use super::*;

    /// Found by the dns_message fuzz target: answer and authority counts whose sum overflows 16 bits panicked in
    /// debug builds (and miscounted in release) while looking for the OPT record.
    #[test]
    fn record_counts_near_u16_max_do_not_overflow() {
        let q = data_encoding::BASE64.decode(b"EjQBAAABIADxAAABAXgDbGFuAAD/AAEAACkQQTV6AQAAAAA=").unwrap();
        let _ = parse_query(&q);
        let mut r = q.clone();
        r[2] |= 0x80;
        r[6..12].copy_from_slice(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
        let _ = parse_response(&r);
        let _ = find_opt(&r);
        helpers_hold(&q);
        helpers_hold(&r);
    }

    /// What the `dns_message` fuzz target asks of these helpers, on any bytes taken as a query and as a response:
    /// none panics, and what hearth would send back is readable by its own parser and within the UDP limit.
    fn helpers_hold(data: &[u8]) {
        if let Ok(q) = parse_query(data) {
            let t = truncated(data, &q);
            assert!(t.len() <= 512 && t.len() <= udp_limit(&q), "a truncated answer of {} bytes", t.len());
            let info = parse_response(&t).expect("a truncated answer reads back");
            assert!(info.truncated && info.answers == 0);
            let refused = synthesize(&q, data, RCODE_REFUSED, &[], Some((EDE_OTHER, "refused")));
            assert_eq!(parse_response(&refused).map(|i| i.rcode), Ok(u16::from(RCODE_REFUSED)));
            let mut copy = data.to_vec();
            copy_question(&mut copy, data, q.question_end);
            assert_eq!(copy, data);
        }
        if let Ok(info) = parse_response(data) {
            let mut copy = data.to_vec();
            age_ttls(&mut copy, &info.ttl_offsets, 5, 0);
            assert_eq!(parse_response(&copy).map(|i| i.ttl_offsets), Ok(info.ttl_offsets));
        }
        if let Some(opt) = find_opt(data) {
            assert!(opt.end <= data.len());
        }
    }

    /// [`helpers_hold`] over byte-level mutations (flip, insert, delete, overwrite) of valid queries and responses.
    #[test]
    fn helpers_hold_on_mutated_messages() {
        let seeds = [
            query("example.com.", Some((4096, true))),
            query("a.b.c.d.e.f.g.", None),
            query(".", Some((512, false))),
            big_response(2),
        ];
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let mut rnd = |n: usize| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % n.max(1) as u64) as usize
        };
        for i in 0..4000 {
            let mut d = seeds[i % seeds.len()].clone();
            for _ in 0..1 + rnd(4) {
                let at = rnd(d.len());
                match rnd(4) {
                    0 if !d.is_empty() => d[at] ^= 1 << rnd(8),
                    1 => d.insert(at, rnd(256) as u8),
                    2 if !d.is_empty() => {
                        d.remove(at);
                    }
                    _ if !d.is_empty() => d[at] = [0, 0xff, 0xc0, 0x29, 0x3f][rnd(5)],
                    _ => d.push(0),
                }
            }
            helpers_hold(&d);
        }
    }

    fn query(name: &str, edns: Option<(u16, bool)>) -> Vec<u8> {
        let mut m = Message::new(0x1234, MessageType::Query, OpCode::Query);
        m.metadata.recursion_desired = true;
        m.add_query(Query::query(Name::from_ascii(name).unwrap(), RecordType::AAAA));
        if let Some((size, dnssec)) = edns {
            let mut e = Edns::new();
            e.set_max_payload(size);
            e.set_dnssec_ok(dnssec);
            m.set_edns(e);
        }
        m.to_vec().unwrap()
    }

    #[test]
    fn reads_queries() {
        let b = query("WWW.Example.COM.", Some((1232, true)));
        helpers_hold(&b);
        let q = parse_query(&b).unwrap();
        assert_eq!(q.id, 0x1234);
        assert_eq!(q.name, "www.example.com");
        assert_eq!(q.qtype, 28);
        assert_eq!(q.qclass, 1);
        assert_eq!(q.edns_payload, Some(1232));
        assert!(q.dnssec_ok && q.recursion_desired && !q.checking_disabled);
        let q = parse_query(&query("a.b.", None)).unwrap();
        assert_eq!((q.edns_payload, q.dnssec_ok), (None, false));
        assert_eq!(parse_query(&[0; 5]), Err(WireError::Short));
        let mut resp = query("a.b.", None);
        resp[2] |= 0x80;
        assert_eq!(parse_query(&resp), Err(WireError::NotAQuery));
        let mut cut = query("example.com.", None);
        cut.truncate(20);
        assert!(parse_query(&cut).is_err());
    }

    #[test]
    fn finds_ttls_and_negative_ttl() {
        let name = Name::from_ascii("example.com.").unwrap();
        let mut m = Message::new(7, MessageType::Response, OpCode::Query);
        m.add_query(Query::query(name.clone(), RecordType::A));
        m.add_answer(Record::from_rdata(name.clone(), 300, RData::A(A::new(192, 0, 2, 1))));
        m.add_answer(Record::from_rdata(name.clone(), 60, RData::A(A::new(192, 0, 2, 2))));
        let mut e = Edns::new();
        e.set_max_payload(1232);
        m.set_edns(e);
        let mut wire = m.to_vec().unwrap();
        helpers_hold(&wire);
        let info = parse_response(&wire).unwrap();
        assert_eq!(info.ttl_offsets.len(), 2, "the OPT record has no TTL");
        assert_eq!(info.min_answer_ttl, Some(60));
        age_ttls(&mut wire, &info.ttl_offsets, 100, 0);
        let back = Message::from_vec(&wire).unwrap();
        let ttls: Vec<u32> = back.answers.iter().map(|r| r.ttl).collect();
        assert_eq!(ttls, [200, 0]);

        let mut neg = Message::new(8, MessageType::Response, OpCode::Query);
        neg.metadata.response_code = hickory_proto::op::ResponseCode::NXDomain;
        neg.add_query(Query::query(Name::from_ascii("nope.example.com.").unwrap(), RecordType::A));
        let soa = SOA::new(name.clone(), Name::from_ascii("h.example.com.").unwrap(), 1, 2, 3, 4, 120);
        neg.add_authority(Record::from_rdata(name, 900, RData::SOA(soa)));
        let info = parse_response(&neg.to_vec().unwrap()).unwrap();
        assert_eq!(info.rcode, u16::from(RCODE_NXDOMAIN));
        assert_eq!(info.negative_ttl, Some(120));
        let _ = DNSClass::IN;
    }

    #[test]
    fn synthesized_answers_decode() {
        let b = query("Ads.Example.", Some((1232, true)));
        let q = parse_query(&b).unwrap();
        let out = synthesize(
            &q,
            &b,
            RCODE_NOERROR,
            &[(None, 28, 10, &[0u8; 16])],
            Some((EDE_BLOCKED, "blocked by ads: ||ads.example^")),
        );
        let m = Message::from_vec(&out).unwrap();
        assert_eq!(m.metadata.id, 0x1234);
        assert!(m.metadata.recursion_available && m.metadata.recursion_desired);
        assert_eq!(m.queries[0].name().to_ascii(), "Ads.Example.");
        assert_eq!(m.answers[0].name.to_ascii(), "Ads.Example.");
        assert_eq!(m.answers[0].ttl, 10);
        assert_eq!(m.answers[0].data, RData::AAAA(hickory_proto::rr::rdata::AAAA(std::net::Ipv6Addr::UNSPECIFIED)));
        let edns = m.edns.unwrap();
        assert!(edns.flags().dnssec_ok);
        let opt =
            edns.options().as_ref().iter().find(|(c, _)| u16::from(*c) == OPTION_EDE).map(|(_, o)| o.clone()).unwrap();
        match opt {
            hickory_proto::rr::rdata::opt::EdnsOption::Unknown(OPTION_EDE, data) => {
                assert_eq!(data[..2], EDE_BLOCKED.to_be_bytes());
                assert_eq!(&data[2..], b"blocked by ads: ||ads.example^");
            }
            other => panic!("{other:?}"),
        }
        let plain = query("x.example.", None);
        let q = parse_query(&plain).unwrap();
        let out = synthesize(&q, &plain, RCODE_NXDOMAIN, &[], Some((EDE_BLOCKED, "ignored without EDNS")));
        let m = Message::from_vec(&out).unwrap();
        assert_eq!(m.metadata.response_code, hickory_proto::op::ResponseCode::NXDomain);
        assert!(m.answers.is_empty() && m.edns.is_none());
    }

    #[test]
    fn truncation_and_question_case() {
        let q = query("MiXeD.example.", None);
        let info = parse_query(&q).unwrap();
        let mut resp = query("mixed.example.", None);
        resp[2] |= 0x80;
        copy_question(&mut resp, &q, info.question_end);
        assert_eq!(&resp[12..info.question_end], &q[12..info.question_end]);
        let t = truncated(&resp, &info);
        let m = Message::from_vec(&t).unwrap();
        assert!(m.metadata.truncation);
        assert_eq!(m.queries.len(), 1);
        assert!(m.answers.is_empty() && m.additionals.is_empty() && m.edns.is_none());
    }

    /// A response with `n` TXT records of 200 bytes and an OPT record with an EDE option.
    fn big_response(n: usize) -> Vec<u8> {
        let name = Name::from_ascii("big.example.").unwrap();
        let mut m = Message::new(0x1234, MessageType::Response, OpCode::Query);
        m.add_query(Query::query(name.clone(), RecordType::TXT));
        for i in 0..n {
            let txt = hickory_proto::rr::rdata::TXT::new(vec![format!("{i}").repeat(200)]);
            m.add_answer(Record::from_rdata(name.clone(), 300, RData::TXT(txt)));
        }
        let mut e = Edns::new();
        e.set_max_payload(1232);
        e.set_dnssec_ok(true);
        m.set_edns(e);
        m.to_vec().unwrap()
    }

    #[test]
    fn truncated_answers_keep_their_opt_record() {
        let mut q = Message::new(0x1234, MessageType::Query, OpCode::Query);
        q.add_query(Query::query(Name::from_ascii("big.example.").unwrap(), RecordType::TXT));
        let mut e = Edns::new();
        e.set_max_payload(4096);
        e.set_dnssec_ok(true);
        q.set_edns(e);
        let qb = q.to_vec().unwrap();
        let info = parse_query(&qb).unwrap();
        // the client offers 4096 bytes; hearth sends at most 1232 over UDP
        assert_eq!(udp_limit(&info), 1232);
        let resp = big_response(8);
        assert!(resp.len() > 1232);
        helpers_hold(&qb);
        helpers_hold(&resp);
        let t = truncated(&resp, &info);
        assert!(t.len() <= 1232);
        let m = Message::from_vec(&t).unwrap();
        assert!(m.metadata.truncation && m.answers.is_empty());
        let edns = m.edns.expect("the OPT record is kept (RFC 6891 §7)");
        assert_eq!(edns.max_payload(), 1232);
        assert!(edns.flags().dnssec_ok);
        // an upstream answer without OPT to an EDNS client: hearth adds its own
        let mut plain = big_response(2);
        let opt = find_opt(&plain).unwrap();
        plain.truncate(opt.start);
        plain[10..12].copy_from_slice(&0u16.to_be_bytes());
        assert_eq!(find_opt(&plain), None);
        let m = Message::from_vec(&truncated(&plain, &info)).unwrap();
        assert!(m.metadata.truncation && m.edns.is_some_and(|e| e.flags().dnssec_ok));
        // limits: 512 without EDNS, the client's size below 1232, never under 512
        let mut small = info.clone();
        small.edns_payload = None;
        assert_eq!(udp_limit(&small), 512);
        small.edns_payload = Some(800);
        assert_eq!(udp_limit(&small), 800);
        small.edns_payload = Some(100);
        assert_eq!(udp_limit(&small), 512);
        // garbage in, no panic
        assert_eq!(truncated(&[1, 2, 3], &info), vec![1, 2, 3]);
        let _ = truncated(&resp[..40], &info);
    }
}
