//! The answer cache (pure core; the clock is passed in): wire-format answers keyed by name, type, class and the
//! query's DNSSEC/EDNS facts, TTLs clamped to `[min_ttl, max_ttl]`, negative answers (NXDOMAIN, NODATA) cached for
//! the SOA's negative TTL (RFC 2308), bounded in entries with oldest-first eviction. A hit is the stored bytes
//! with the id, the question's letter case and the TTLs patched — no re-encoding.

use std::collections::{HashMap, VecDeque};

/// Seeded per process, so names chosen by an attacker cannot be made to collide.
type Hasher = foldhash::fast::RandomState;
use std::time::{Duration, Instant};

use super::wire;

#[derive(Debug, Clone, Copy)]
pub(crate) struct CachePolicy {
    pub max_entries: usize,
    pub min_ttl: u32,
    pub max_ttl: u32,
    /// Cap for negative answers (RFC 2308 recommends at most a few hours).
    pub max_negative_ttl: u32,
    /// Expired answers are kept this much longer, to be served when no upstream answers (RFC 8767); 0 = never.
    pub serve_stale: u32,
    /// Refresh an answer asked for in the last tenth of its TTL, before it expires (as Unbound's prefetch).
    pub prefetch: bool,
}

/// TTL of a stale answer (RFC 8767 recommends 30 s).
pub(crate) const STALE_TTL: u32 = 30;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct CacheKey {
    pub name: String,
    pub qtype: u16,
    pub qclass: u16,
    pub dnssec_ok: bool,
    pub checking_disabled: bool,
    /// AD in the query: a validated answer carries AD for such clients even without DO.
    pub authentic_data: bool,
    pub edns: bool,
}

impl CacheKey {
    pub(crate) fn of(q: &wire::QueryInfo) -> Self {
        CacheKey {
            name: q.name.clone(),
            qtype: q.qtype,
            qclass: q.qclass,
            dnssec_ok: q.dnssec_ok,
            checking_disabled: q.checking_disabled,
            authentic_data: q.authentic_data,
            edns: q.edns_payload.is_some(),
        }
    }
}

#[derive(Debug)]
struct Entry {
    wire: Vec<u8>,
    ttl_offsets: Vec<usize>,
    stored: Instant,
    ttl: u32,
    /// A refresh is on its way.
    prefetching: bool,
}

#[derive(Debug)]
pub(crate) struct Cache {
    policy: CachePolicy,
    map: HashMap<CacheKey, Entry, Hasher>,
    order: VecDeque<(CacheKey, Instant)>,
    /// Set by [`Cache::get`] when the hit should be refreshed; taken by the caller.
    pub prefetch_due: Option<CacheKey>,
}

/// Why an answer was not cached (for metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NotCached {
    Truncated,
    ServerError,
    Malformed,
    ZeroTtl,
}

impl Cache {
    pub(crate) fn new(policy: CachePolicy) -> Self {
        Cache { policy, map: HashMap::default(), order: VecDeque::new(), prefetch_due: None }
    }

    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub(crate) fn clear(&mut self) {
        self.map.clear();
        self.order.clear();
    }

    /// The TTL an answer is cached for, or why it is not cached.
    fn ttl_for(&self, info: &wire::ResponseInfo) -> Result<u32, NotCached> {
        if info.truncated {
            return Err(NotCached::Truncated);
        }
        let (noerror, nxdomain) = (u16::from(wire::RCODE_NOERROR), u16::from(wire::RCODE_NXDOMAIN));
        let ttl = match info.rcode {
            r if r == noerror && info.answers > 0 => info.min_answer_ttl.unwrap_or(0),
            // NOERROR without answers is NODATA; NXDOMAIN: both negative, timed by the SOA
            r if r == noerror || r == nxdomain => {
                info.negative_ttl.ok_or(NotCached::ZeroTtl)?.min(self.policy.max_negative_ttl)
            }
            _ => return Err(NotCached::ServerError),
        };
        let ttl = ttl.clamp(self.policy.min_ttl, self.policy.max_ttl.max(self.policy.min_ttl));
        if ttl == 0 { Err(NotCached::ZeroTtl) } else { Ok(ttl) }
    }

    pub(crate) fn insert(&mut self, key: CacheKey, wire: Vec<u8>, now: Instant) -> Result<u32, NotCached> {
        let info = wire::parse_response(&wire).map_err(|_| NotCached::Malformed)?;
        let ttl = self.ttl_for(&info)?;
        while self.map.len() >= self.policy.max_entries.max(1) {
            let Some((old, at)) = self.order.pop_front() else { break };
            // skip queue entries for keys that were replaced since
            if self.map.get(&old).is_some_and(|e| e.stored == at) {
                self.map.remove(&old);
            }
        }
        self.order.push_back((key.clone(), now));
        self.map.insert(key, Entry { wire, ttl_offsets: info.ttl_offsets, stored: now, ttl, prefetching: false });
        if self.order.len() > 2 * self.policy.max_entries.max(16) {
            let map = &self.map;
            self.order.retain(|(k, at)| map.get(k).is_some_and(|e| e.stored == *at));
        }
        Ok(ttl)
    }

    /// A fresh answer for the query `q` (raw bytes `query`), ready to send: id, question case and TTLs patched.
    pub(crate) fn get(&mut self, key: &CacheKey, q: &wire::QueryInfo, query: &[u8], now: Instant) -> Option<Vec<u8>> {
        let e = self.map.get_mut(key)?;
        let age = now.saturating_duration_since(e.stored);
        if age >= Duration::from_secs(e.ttl as u64) {
            // expired: kept for serve-stale while within the window, else dropped
            if age >= Duration::from_secs(e.ttl as u64 + self.policy.serve_stale as u64) {
                self.map.remove(key);
            }
            return None;
        }
        let mut out = e.wire.clone();
        wire::set_id(&mut out, q.id);
        wire::copy_question(&mut out, query, q.question_end);
        // TTLs count down from what was stored, clamped to the cached lifetime
        wire::age_ttls(&mut out, &e.ttl_offsets, age.as_secs() as u32, 0);
        let left = e.ttl - age.as_secs() as u32;
        // asked for in its last tenth: refresh it now, so popular names never expire (answers living under 10 s
        // are not worth it)
        if self.policy.prefetch && !e.prefetching && e.ttl >= 10 && left * 10 <= e.ttl {
            e.prefetching = true;
            self.prefetch_due = Some(key.clone());
        }
        for &o in &e.ttl_offsets {
            let t = u32::from_be_bytes([out[o], out[o + 1], out[o + 2], out[o + 3]]);
            if t > left {
                out[o..o + 4].copy_from_slice(&left.to_be_bytes());
            }
        }
        Some(out)
    }

    /// An expired answer still within the serve-stale window, with every TTL set to [`STALE_TTL`] — for when no
    /// upstream answers (RFC 8767).
    pub(crate) fn get_stale(
        &mut self,
        key: &CacheKey,
        q: &wire::QueryInfo,
        query: &[u8],
        now: Instant,
    ) -> Option<Vec<u8>> {
        let e = self.map.get(key)?;
        let age = now.saturating_duration_since(e.stored).as_secs();
        if age >= e.ttl as u64 + self.policy.serve_stale as u64 {
            self.map.remove(key);
            return None;
        }
        let mut out = e.wire.clone();
        wire::set_id(&mut out, q.id);
        wire::copy_question(&mut out, query, q.question_end);
        for &o in &e.ttl_offsets {
            out[o..o + 4].copy_from_slice(&STALE_TTL.to_be_bytes());
        }
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
    use hickory_proto::rr::rdata::{A, SOA};
    use hickory_proto::rr::{Name, RData, Record, RecordType};

    fn policy() -> CachePolicy {
        CachePolicy {
            max_entries: 3,
            min_ttl: 0,
            max_ttl: 86400,
            max_negative_ttl: 3600,
            serve_stale: 0,
            prefetch: true,
        }
    }

    fn query(name: &str, id: u16) -> (Vec<u8>, wire::QueryInfo) {
        let mut m = Message::new(id, MessageType::Query, OpCode::Query);
        m.add_query(Query::query(Name::from_ascii(name).unwrap(), RecordType::A));
        let b = m.to_vec().unwrap();
        let q = wire::parse_query(&b).unwrap();
        (b, q)
    }

    fn answer(name: &str, ttl: u32, rcode: ResponseCode) -> Vec<u8> {
        let n = Name::from_ascii(name).unwrap();
        let mut m = Message::new(1, MessageType::Response, OpCode::Query);
        m.metadata.response_code = rcode;
        m.add_query(Query::query(n.clone(), RecordType::A));
        if rcode == ResponseCode::NoError {
            m.add_answer(Record::from_rdata(n, ttl, RData::A(A::new(192, 0, 2, 1))));
        } else {
            let soa = SOA::new(n.clone(), n.clone(), 1, 2, 3, 4, ttl);
            m.add_authority(Record::from_rdata(n, 86400, RData::SOA(soa)));
        }
        m.to_vec().unwrap()
    }

    #[test]
    fn hits_in_the_last_tenth_of_the_ttl_ask_for_one_refresh() {
        let mut c = Cache::new(policy());
        let t0 = Instant::now();
        let (b, q) = query("example.com.", 1);
        let k = CacheKey::of(&q);
        c.insert(k.clone(), answer("example.com.", 100, ResponseCode::NoError), t0).unwrap();
        c.get(&k, &q, &b, t0 + Duration::from_secs(50)).unwrap();
        assert_eq!(c.prefetch_due.take(), None, "not yet");
        c.get(&k, &q, &b, t0 + Duration::from_secs(91)).unwrap();
        assert_eq!(c.prefetch_due.take(), Some(k.clone()));
        c.get(&k, &q, &b, t0 + Duration::from_secs(92)).unwrap();
        assert_eq!(c.prefetch_due.take(), None, "one refresh at a time");
        // the refreshed answer starts over
        c.insert(k.clone(), answer("example.com.", 100, ResponseCode::NoError), t0 + Duration::from_secs(93)).unwrap();
        c.get(&k, &q, &b, t0 + Duration::from_secs(94)).unwrap();
        assert_eq!(c.prefetch_due.take(), None);
        // short-lived answers and a policy without prefetch: never
        let mut off = Cache::new(CachePolicy { prefetch: false, ..policy() });
        off.insert(k.clone(), answer("example.com.", 100, ResponseCode::NoError), t0).unwrap();
        off.get(&k, &q, &b, t0 + Duration::from_secs(95)).unwrap();
        assert_eq!(off.prefetch_due, None);
        c.insert(k.clone(), answer("example.com.", 5, ResponseCode::NoError), t0).unwrap();
        c.get(&k, &q, &b, t0 + Duration::from_secs(4)).unwrap();
        assert_eq!(c.prefetch_due, None);
    }

    #[test]
    fn hit_patches_id_case_and_ttl_then_expires() {
        let mut c = Cache::new(policy());
        let t0 = Instant::now();
        let (_, q) = query("example.com.", 1);
        c.insert(CacheKey::of(&q), answer("example.com.", 100, ResponseCode::NoError), t0).unwrap();
        let (b, q2) = query("EXAMPLE.com.", 999);
        assert_eq!(CacheKey::of(&q2), CacheKey::of(&q), "keys are case-insensitive");
        let hit = c.get(&CacheKey::of(&q2), &q2, &b, t0 + Duration::from_secs(30)).unwrap();
        let m = Message::from_vec(&hit).unwrap();
        assert_eq!(m.metadata.id, 999);
        assert_eq!(m.queries[0].name().to_ascii(), "EXAMPLE.com.");
        assert_eq!(m.answers[0].ttl, 70);
        assert!(c.get(&CacheKey::of(&q2), &q2, &b, t0 + Duration::from_secs(100)).is_none());
        assert!(c.is_empty(), "expired entries are dropped");
    }

    #[test]
    fn stale_answers_within_the_window() {
        let mut c = Cache::new(CachePolicy { serve_stale: 600, ..policy() });
        let t0 = Instant::now();
        let (b, q) = query("example.com.", 1);
        let k = CacheKey::of(&q);
        c.insert(k.clone(), answer("example.com.", 100, ResponseCode::NoError), t0).unwrap();
        let later = t0 + Duration::from_secs(200);
        assert!(c.get(&k, &q, &b, later).is_none(), "expired for normal use");
        let stale = c.get_stale(&k, &q, &b, later).expect("kept for serve-stale");
        assert_eq!(Message::from_vec(&stale).unwrap().answers[0].ttl, STALE_TTL);
        assert!(c.get_stale(&k, &q, &b, t0 + Duration::from_secs(701)).is_none(), "beyond the window");
        assert!(c.is_empty());
    }

    #[test]
    fn clamps_negative_and_refuses_errors() {
        let p = CachePolicy { min_ttl: 60, max_ttl: 3600, ..policy() };
        let mut c = Cache::new(p);
        let now = Instant::now();
        let (_, q) = query("a.example.", 1);
        let k = CacheKey::of(&q);
        assert_eq!(c.insert(k.clone(), answer("a.example.", 5, ResponseCode::NoError), now), Ok(60));
        assert_eq!(c.insert(k.clone(), answer("a.example.", 99999, ResponseCode::NoError), now), Ok(3600));
        assert_eq!(c.insert(k.clone(), answer("a.example.", 300, ResponseCode::NXDomain), now), Ok(300));
        assert_eq!(
            c.insert(k.clone(), answer("a.example.", 300, ResponseCode::ServFail), now),
            Err(NotCached::ServerError)
        );
        let mut tc = answer("a.example.", 300, ResponseCode::NoError);
        tc[2] |= 0x02;
        assert_eq!(c.insert(k, tc, now), Err(NotCached::Truncated));
    }

    #[test]
    fn bounded_oldest_first() {
        let mut c = Cache::new(policy());
        let now = Instant::now();
        for (i, n) in ["a.", "b.", "c.", "d."].iter().enumerate() {
            let (_, q) = query(n, 1);
            c.insert(CacheKey::of(&q), answer(n, 100, ResponseCode::NoError), now + Duration::from_millis(i as u64))
                .unwrap();
        }
        assert_eq!(c.len(), 3);
        let (b, q) = query("a.", 1);
        assert!(c.get(&CacheKey::of(&q), &q, &b, now).is_none(), "the oldest was evicted");
        let (b, q) = query("d.", 1);
        assert!(c.get(&CacheKey::of(&q), &q, &b, now + Duration::from_secs(1)).is_some());
    }
}
