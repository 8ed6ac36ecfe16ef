//! DNS: the filtering resolver. A query runs through one visible list of stages: [`Dns::answer_local`] (1. parse,
//! the client allow list (`dns.allow_clients`: REFUSED outside) and the rate limit, 2. local records and local
//! domains, 3. filter — blocklists, allow beats block —, 3b. ANY answered minimally (RFC 8482), 4. cache, 4b. a
//! place among the queries in flight (`dns.max_inflight`: SERVFAIL when full)) and, for what is left,
//! [`Dns::forward`] (identical questions in flight share one upstream query; 5. upstream — UDP with TCP fallback,
//! failover, serve-stale —, 6. cache store, 7. account). Every transport (UDP, TCP, DoT, DoH) goes through the
//! same stages; UDP answers are cut to the client's EDNS size, at most 1232 bytes. Transports (`server.rs`) only
//! move bytes; the blocklist engine, the local zone, the cache policy and the wire helpers are pure cores.

pub mod blocklist;
pub mod cache;
pub mod dnssec;
pub mod groups;
pub mod inflight;
pub mod lists;
pub mod local;
pub mod querylog;
pub mod recursor;
pub mod server;
pub mod task;
pub mod upstream;
pub mod wire;

use crate::util::Locked;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use arc_swap::ArcSwap;
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::{Name, RecordType};

use crate::config::DnsConfig;
use blocklist::{Engine, ListInput, ListSet, ListStats, Verdict};
use cache::{Cache, CacheKey, CachePolicy};
use upstream::Upstream;

/// How blocked names are answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockingMode {
    /// 0.0.0.0 for A, :: for AAAA, no data for other types.
    NullIp,
    NxDomain,
    Refused,
    Custom(IpAddr),
}

impl BlockingMode {
    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "null_ip" => Ok(BlockingMode::NullIp),
            "nxdomain" => Ok(BlockingMode::NxDomain),
            "refused" => Ok(BlockingMode::Refused),
            other => match other.strip_prefix("custom:").map(str::parse::<IpAddr>) {
                Some(Ok(ip)) => Ok(BlockingMode::Custom(ip)),
                _ => Err(format!(
                    "{other:?} is not a blocking mode: use \"null_ip\", \"nxdomain\", \"refused\" or \"custom:<ip>\""
                )),
            },
        }
    }
}

/// The settings one query is answered with.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The upstreams, their health and strategy.
    pub upstreams: Arc<upstream::Pool>,
    pub blocking: BlockingMode,
    pub blocked_ttl: u32,
    /// List names by id, for logs.
    pub list_names: Vec<String>,
    /// Which lists apply to which clients.
    pub groups: groups::Groups,
    /// Queries per second per client (0: no limit), burst, and the clients never limited.
    pub rate_limit: (u32, u32),
    pub rate_limit_exempt: Vec<crate::net::Cidr>,
    /// The clients that may query at all (others get REFUSED).
    pub allow_clients: Vec<crate::net::Cidr>,
    /// Places for queries waiting on the network (`dns.max_inflight`): one per query past the cache, followers of
    /// a coalesced question included, so tasks, sockets and upstream queries are all bounded by it.
    pub inflight: Arc<tokio::sync::Semaphore>,
    pub log_queries: bool,
    /// The DNSSEC validator (None: `dns.dnssec = false`).
    pub dnssec: Option<Arc<dnssec::Validator>>,
    /// Recursive mode: the resolver that asks the authoritative servers (None: forward to the upstreams).
    pub recursor: Option<Arc<recursor::Recursor>>,
    /// Conditional forwarding: (domain, its servers), longest domain first.
    pub forward_zones: Vec<(String, Arc<upstream::Pool>)>,
}

/// The forward zone a name (lowercase, no trailing dot) falls in: the longest domain it equals or ends with.
pub fn forward_zone<'a, T>(zones: &'a [(String, T)], name: &str) -> Option<&'a T> {
    zones
        .iter()
        .find(|(d, _)| {
            name == d
                || (name.len() > d.len()
                    && name.ends_with(d.as_str())
                    && name.as_bytes()[name.len() - d.len() - 1] == b'.')
        })
        .map(|(_, t)| t)
}

impl Settings {
    /// Compile the `[dns]` settings; an error is `(key, reason)`, e.g. `("dns.upstreams[1]", "…")`.
    pub fn from_config(c: &DnsConfig) -> Result<Self, (String, String)> {
        let tls = upstream::client_tls(&c.upstream_ca).map_err(|e| ("dns.upstream_ca".to_string(), e))?;
        let bootstrap = Upstream::plain(&c.upstreams);
        let strategy =
            upstream::Strategy::parse(&c.upstream_strategy).map_err(|e| ("dns.upstream_strategy".to_string(), e))?;
        let upstreams = c
            .upstreams
            .iter()
            .enumerate()
            .map(|(i, u)| Upstream::parse(u, &tls, &bootstrap).map_err(|e| (format!("dns.upstreams[{i}]"), e)))
            .collect::<Result<_, _>>()?;
        let blocking = BlockingMode::parse(&c.blocking_mode).map_err(|e| ("dns.blocking_mode".to_string(), e))?;
        let mut enabled = ListSet::none();
        for (i, l) in c.lists.iter().enumerate() {
            if l.enabled {
                enabled.insert(i as u16);
            }
        }
        let mut groups = groups::Groups::new(enabled.clone());
        for (gi, g) in c.groups.iter().enumerate() {
            let clients = g
                .clients
                .iter()
                .map(|c| crate::net::Cidr::parse(c))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| (format!("dns.groups[{gi}].clients"), e))?;
            let mut lists = ListSet::none();
            for name in &g.lists {
                let id = c
                    .lists
                    .iter()
                    .position(|l| &l.name == name)
                    .ok_or_else(|| (format!("dns.groups[{gi}].lists"), format!("no list named {name:?}")))?;
                if c.lists[id].enabled {
                    lists.insert(id as u16);
                }
            }
            groups.add(g.name.clone(), clients, lists);
        }
        let rate_limit_exempt = c
            .rate_limit_exempt
            .iter()
            .map(|e| crate::net::Cidr::parse(e))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| ("dns.rate_limit_exempt".to_string(), e))?;
        let allow_clients = c
            .allow_clients
            .iter()
            .enumerate()
            .map(|(i, e)| crate::net::Cidr::parse(e).map_err(|e| (format!("dns.allow_clients[{i}]"), e)))
            .collect::<Result<Vec<_>, _>>()?;
        let mut forward_zones: Vec<(String, Arc<upstream::Pool>)> = vec![];
        for (i, z) in c.forward_zones.iter().enumerate() {
            let key = || format!("dns.forward_zones[{i}].domain");
            let domain = z.domain.trim().trim_end_matches('.').to_ascii_lowercase();
            if domain.is_empty() || Name::from_ascii(&domain).is_err() {
                return Err((key(), format!("{:?} is not a domain name", z.domain)));
            }
            if let Some(ld) = c
                .local_domains
                .iter()
                .map(|d| d.trim_end_matches('.').to_ascii_lowercase())
                .find(|ld| domain == *ld || domain.ends_with(&format!(".{ld}")))
            {
                return Err((
                    key(),
                    format!("{domain} is under the local domain {ld} (dns.local_domains), which hearth answers itself"),
                ));
            }
            if forward_zones.iter().any(|(d, _)| *d == domain) {
                return Err((key(), format!("{domain} is listed twice")));
            }
            if z.upstreams.is_empty() {
                return Err((format!("dns.forward_zones[{i}].upstreams"), "at least one server is needed".into()));
            }
            let servers = z
                .upstreams
                .iter()
                .enumerate()
                .map(|(j, u)| {
                    Upstream::parse(u, &tls, &bootstrap)
                        .map_err(|e| (format!("dns.forward_zones[{i}].upstreams[{j}]"), e))
                })
                .collect::<Result<_, _>>()?;
            let pool = upstream::Pool::new(servers, upstream::Strategy::Failover, c.upstream_timeout.as_std());
            forward_zones.push((domain, Arc::new(pool)));
        }
        forward_zones.sort_by_key(|(d, _)| std::cmp::Reverse(d.len()));
        let dnssec = if c.dnssec {
            let anchors = if c.trust_anchors.is_empty() {
                dnssec::Anchors::builtin()
            } else {
                let key = || "dns.trust_anchors".to_string();
                let text = std::fs::read_to_string(&c.trust_anchors)
                    .map_err(|e| (key(), format!("{}: {e}", c.trust_anchors)))?;
                dnssec::Anchors::parse(&text).map_err(|e| (key(), format!("{}: {e}", c.trust_anchors)))?
            };
            Some(Arc::new(dnssec::Validator::new(anchors)))
        } else {
            None
        };
        let recursor = if c.mode == crate::config::DnsMode::Recursive {
            let hints = if c.root_hints.is_empty() {
                recursor::builtin_hints()
            } else {
                let key = || "dns.root_hints".to_string();
                let text =
                    std::fs::read_to_string(&c.root_hints).map_err(|e| (key(), format!("{}: {e}", c.root_hints)))?;
                recursor::parse_hints(&text).map_err(|e| (key(), format!("{}: {e}", c.root_hints)))?
            };
            // the owner's own names may point at private addresses: local domains and the listed ones
            let allowed: Vec<String> = c.local_domains.iter().chain(&c.rebinding_allow).cloned().collect();
            let rebinding = recursor::Rebinding::new(c.rebinding_protection, &allowed);
            Some(Arc::new(recursor::Recursor::new(hints, c.upstream_timeout.as_std()).with_rebinding(rebinding)))
        } else {
            None
        };
        Ok(Settings {
            forward_zones,
            recursor,
            dnssec,
            rate_limit: (c.rate_limit, c.rate_limit_burst),
            rate_limit_exempt,
            allow_clients,
            inflight: Arc::new(tokio::sync::Semaphore::new(
                c.max_inflight.clamp(1, tokio::sync::Semaphore::MAX_PERMITS),
            )),
            upstreams: Arc::new(upstream::Pool::new(upstreams, strategy, c.upstream_timeout.as_std())),
            blocking,
            blocked_ttl: c.blocked_ttl.as_std().as_secs() as u32,
            list_names: c.lists.iter().map(|l| l.name.clone()).collect(),
            groups,
            log_queries: c.querylog.enabled,
        })
    }
}

/// "name: why" for every list a compilation report left out.
pub fn failures(report: &[(String, Result<ListStats, String>)]) -> Vec<String> {
    report.iter().filter_map(|(n, r)| r.as_ref().err().map(|e| format!("{n}: {e}"))).collect()
}

/// The local zone described by the config; errors carry the key (`dns.records[2]`).
pub fn local_zone(c: &DnsConfig) -> Result<local::LocalZone, (String, String)> {
    local_zone_with(c, &[])
}

/// The local zone with `extra` records after the configured ones (e.g. proxy routes on local names).
pub fn local_zone_with(
    c: &DnsConfig,
    extra: &[(String, String, String, u32)],
) -> Result<local::LocalZone, (String, String)> {
    let mut records: Vec<(String, String, String, u32)> = c
        .records
        .iter()
        .map(|r| (r.name.clone(), r.r#type.clone(), r.value.clone(), r.ttl.as_std().as_secs() as u32))
        .collect();
    // a configured record for the same name wins over a generated one
    records.extend(extra.iter().filter(|e| !c.records.iter().any(|r| r.name.eq_ignore_ascii_case(&e.0))).cloned());
    local::LocalZone::build(&records, &c.local_domains).map_err(|(i, e)| {
        let key = if i == usize::MAX { "dns.local_domains".to_string() } else { format!("dns.records[{i}]") };
        (key, e)
    })
}

pub fn querylog_policy(c: &DnsConfig) -> querylog::LogPolicy {
    querylog::LogPolicy {
        storage: match c.querylog.storage {
            crate::config::QueryLogStorage::Sqlite => querylog::Storage::Sqlite,
            crate::config::QueryLogStorage::Memory => querylog::Storage::Memory,
        },
        retention: c.querylog.retention.as_std(),
        max_entries: c.querylog.max_entries,
        flush_interval: c.querylog.flush_interval.as_std(),
    }
}

pub fn cache_policy(c: &DnsConfig) -> CachePolicy {
    CachePolicy {
        max_entries: c.cache.size,
        min_ttl: c.cache.min_ttl.as_std().as_secs() as u32,
        max_ttl: c.cache.max_ttl.as_std().as_secs() as u32,
        max_negative_ttl: c.cache.max_negative_ttl.as_std().as_secs() as u32,
        serve_stale: c.cache.serve_stale.as_std().as_secs() as u32,
        prefetch: c.cache.prefetch,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
    /// DNS over TLS (RFC 7858).
    Tls,
    /// DNS over HTTPS (RFC 8484).
    Https,
    /// hearth's own lookups ([`SelfResolver`]): never refused by `dns.allow_clients` nor rate-limited.
    Internal,
}

/// The outcome of a query, for metrics (and the query log to come). The discriminant indexes `Meters::outcomes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Blocked = 0,
    Cached = 1,
    Forwarded = 2,
    Failed = 3,
    Malformed = 4,
    Stale = 5,
    Local = 6,
    RateLimited = 7,
    /// DNSSEC validation failed: SERVFAIL with an EDE code.
    Bogus = 8,
    /// The client is not in `dns.allow_clients`.
    Refused = 9,
}

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Outcome::Blocked => "blocked",
            Outcome::Cached => "cached",
            Outcome::Forwarded => "forwarded",
            Outcome::Failed => "failed",
            Outcome::Malformed => "malformed",
            Outcome::Stale => "stale",
            Outcome::Local => "local",
            Outcome::RateLimited => "ratelimited",
            Outcome::Bogus => "bogus",
            Outcome::Refused => "refused",
        }
    }
}

/// Metric handles registered once, so that answering costs atomic increments, not registry lookups.
struct Meters {
    outcomes: [metrics::Counter; 10],
    /// DNSSEC verdicts: secure, insecure, bogus.
    dnssec: [metrics::Counter; 3],
    prefetch: metrics::Counter,
    cache_hit: metrics::Counter,
    cache_miss: metrics::Counter,
    cache_entries: metrics::Gauge,
    forwarded_latency: metrics::Histogram,
    /// Queries that found no place in flight (`dns.max_inflight`) and got SERVFAIL.
    overload: metrics::Counter,
    /// Queries answered by another's upstream query for the same question.
    coalesced: metrics::Counter,
}

impl Meters {
    fn new() -> Self {
        metrics::describe_counter!(
            "hearth_dns_inflight_rejected_total",
            "DNS queries answered SERVFAIL at once because dns.max_inflight queries were already waiting upstream."
        );
        metrics::describe_counter!(
            "hearth_dns_coalesced_total",
            "DNS queries answered by another query's upstream answer to the same question (in flight together)."
        );
        let outcome = |o: Outcome| metrics::counter!("hearth_dns_queries_total", "outcome" => o.as_str());
        Meters {
            outcomes: [
                Outcome::Blocked,
                Outcome::Cached,
                Outcome::Forwarded,
                Outcome::Failed,
                Outcome::Malformed,
                Outcome::Stale,
                Outcome::Local,
                Outcome::RateLimited,
                Outcome::Bogus,
                Outcome::Refused,
            ]
            .map(outcome),
            dnssec: ["secure", "insecure", "bogus"]
                .map(|r| metrics::counter!("hearth_dns_dnssec_total", "result" => r)),
            prefetch: metrics::counter!("hearth_dns_prefetch_total"),
            cache_hit: metrics::counter!("hearth_dns_cache_total", "result" => "hit"),
            cache_miss: metrics::counter!("hearth_dns_cache_total", "result" => "miss"),
            cache_entries: metrics::gauge!("hearth_dns_cache_entries"),
            forwarded_latency: metrics::histogram!("hearth_dns_query_duration_seconds", "outcome" => "forwarded"),
            overload: metrics::counter!("hearth_dns_inflight_rejected_total"),
            coalesced: metrics::counter!("hearth_dns_coalesced_total"),
        }
    }

    fn count(&self, o: Outcome) {
        self.outcomes[o as usize].increment(1);
    }
}

/// What a config change built for [`Dns::apply`] (see [`task::compile`]); `None`: unchanged.
#[derive(Default)]
pub struct Prepared {
    pub settings: Option<Settings>,
    pub zone: Option<local::LocalZone>,
    pub cache: Option<CachePolicy>,
    pub rate_limit: Option<(u32, u32)>,
}

/// The resolver's shared state.
pub struct Dns {
    engine: ArcSwap<Engine>,
    local: ArcSwap<local::LocalZone>,
    limiter: Mutex<crate::ratelimit::RateLimiter>,
    /// The last list compilation: each list's counts or why it was left out.
    list_report: Mutex<Vec<(String, Result<ListStats, String>)>>,
    /// Counts list compilations, so a caller can wait for the one its change caused.
    list_generation: std::sync::atomic::AtomicU64,
    settings: ArcSwap<Settings>,
    cache: Mutex<Cache>,
    meters: Meters,
    log: Option<querylog::QueryLog>,
    /// Refreshes the cache asked for (see [`Dns::take_prefetches`]).
    prefetch: tokio::sync::mpsc::Sender<Pending>,
    prefetch_rx: Mutex<Option<tokio::sync::mpsc::Receiver<Pending>>>,
    /// The questions being asked upstream, with the queries waiting for the same answer.
    inflight: inflight::Inflight<CacheKey, Arc<Fetched>>,
}

/// After the synchronous stages: either the answer, or a query that must go upstream.
pub enum Step {
    Done(Option<Vec<u8>>),
    Forward(Pending),
}

/// A query on its way upstream (owns its bytes, so the receive buffer can be reused).
pub struct Pending {
    query: Vec<u8>,
    q: wire::QueryInfo,
    key: CacheKey,
    limit: usize,
    started: Instant,
    client: IpAddr,
    /// A background refresh of a cached answer: stored, not sent, not logged.
    prefetch: bool,
    /// Its place among the queries in flight (`dns.max_inflight`), given back when it is answered.
    _permit: tokio::sync::OwnedSemaphorePermit,
}

/// What the network gave for a question: shared by every query that asked it meanwhile.
#[derive(Debug)]
enum Fetched {
    /// The answer as the leader's client gets it, before its id, question case and size are fitted to each client.
    Answer { resp: Vec<u8>, from: String, security: Option<&'static str> },
    /// No server answered.
    Failed(String),
    /// DNSSEC validation failed (EDE code, why).
    Bogus { code: u16, why: String, from: String },
    /// Refused by policy (DNS rebinding protection): SERVFAIL with EDE 15 "Blocked".
    Blocked(String),
}

impl Dns {
    pub fn new(settings: Settings, policy: CachePolicy, log: Option<querylog::QueryLog>) -> Self {
        let (prefetch, prefetch_rx) = tokio::sync::mpsc::channel(256);
        Dns {
            prefetch,
            prefetch_rx: Mutex::new(Some(prefetch_rx)),
            engine: ArcSwap::from_pointee(Engine::default()),
            local: ArcSwap::from_pointee(local::LocalZone::default()),
            list_report: Mutex::default(),
            list_generation: Default::default(),
            limiter: Mutex::new(crate::ratelimit::RateLimiter::new(settings.rate_limit.0, settings.rate_limit.1)),
            settings: ArcSwap::from_pointee(settings),
            cache: Mutex::new(Cache::new(policy)),
            meters: Meters::new(),
            log,
            inflight: inflight::Inflight::default(),
        }
    }

    /// Hand an answered query to the query log (never waits).
    #[allow(clippy::too_many_arguments, reason = "one call per outcome; a struct would only move the list")]
    fn log(
        &self,
        client: IpAddr,
        q: Option<&wire::QueryInfo>,
        outcome: Outcome,
        answer: Option<&[u8]>,
        list: Option<&str>,
        rule: Option<&str>,
        upstream: Option<String>,
        started: Instant,
        dnssec: Option<&'static str>,
    ) {
        let Some(log) = &self.log else { return };
        if !self.settings.load().log_queries {
            return;
        }
        log.record(querylog::Entry {
            id: 0,
            ts_ms: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as i64)
                .unwrap_or(0),
            client,
            name: q.map(|q| q.name.clone()).unwrap_or_default(),
            qtype: q.map(|q| q.qtype).unwrap_or(0),
            outcome: std::borrow::Cow::Borrowed(outcome.as_str()),
            rcode: answer.filter(|a| a.len() > 3).map(|a| (a[3] & 0x0F) as u16).unwrap_or(0),
            list: list.map(str::to_string),
            rule: rule.map(str::to_string),
            upstream,
            latency_us: started.elapsed().as_micros() as u64,
            dnssec,
        });
    }

    /// Answer one query. `None` means drop it (unparseable garbage gets no answer).
    pub async fn handle(&self, query: &[u8], client: IpAddr, transport: Transport) -> Option<Vec<u8>> {
        match self.answer_local(query, client, transport) {
            Step::Done(answer) => answer,
            Step::Forward(p) => self.forward(p).await,
        }
    }

    /// The stages that need no network, in order: 1. parse (and the per-client rate limit), 2. local records,
    /// 3. filter, 4. cache. Cheap enough to run inline in a
    /// receive loop; what is left is [`Dns::forward`].
    pub fn answer_local(&self, query: &[u8], client: IpAddr, transport: Transport) -> Step {
        let started = Instant::now();
        let settings = self.settings.load();
        // 1a. the clients allowed (like Unbound's access-control): others get REFUSED, garbage from them nothing
        if transport != Transport::Internal && !settings.allow_clients.iter().any(|c| c.contains(client)) {
            let Ok(q) = wire::parse_query(query) else { return Step::Done(None) };
            self.meters.count(Outcome::Refused);
            let answer = wire::synthesize(&q, query, 5, &[], None);
            self.log(client, Some(&q), Outcome::Refused, Some(&answer), None, None, None, started, None);
            return Step::Done(Some(answer));
        }
        // 1. parse
        let q = match wire::parse_query(query) {
            Ok(q) => q,
            Err(_) => {
                self.meters.count(Outcome::Malformed);
                let answer = formerr(query);
                self.log(client, None, Outcome::Malformed, answer.as_deref(), None, None, None, started, None);
                return Step::Done(answer);
            }
        };
        let limit = match transport {
            // RFC 6891 §6.2.5 and DNS Flag Day 2020: the client's size, at most 1232 bytes; 512 without EDNS
            Transport::Udp => wire::udp_limit(&q),
            Transport::Tcp | Transport::Tls | Transport::Https | Transport::Internal => usize::from(u16::MAX),
        };
        // 1b. per-client rate limit (every transport: UDP, TCP, DoT and DoH all pass here)
        if settings.rate_limit.0 > 0
            && transport != Transport::Internal
            && !settings.rate_limit_exempt.iter().any(|c| c.contains(client))
            && !self.limiter.locked().allow(client, started)
        {
            self.meters.count(Outcome::RateLimited);
            let answer = wire::synthesize(&q, query, 5, &[], None);
            self.log(client, Some(&q), Outcome::RateLimited, Some(&answer), None, None, None, started, None);
            return Step::Done(Some(answer));
        }
        // 2. local records and local domains (never forwarded, never filtered)
        if let Some(ans) = self.local.load().lookup(&q.name, q.qtype) {
            let answer = local_answer(query, &q, &ans);
            self.meters.count(Outcome::Local);
            self.log(client, Some(&q), Outcome::Local, Some(&answer), None, None, None, started, None);
            return Step::Done(Some(fit(answer, &q, limit)));
        }
        // 3. filter
        let (_group, lists) = settings.groups.lists_for(client);
        if let Verdict::Blocked(m) = self.engine.load().check(&q.name, lists) {
            let list = settings.list_names.get(m.list as usize).map(String::as_str).unwrap_or("?");
            tracing::debug!(name = %q.name, list, rule = %m.rule, "blocked");
            self.meters.count(Outcome::Blocked);
            let answer = blocked_answer(query, &q, &settings, list, &m.rule).map(|a| fit(a, &q, limit));
            self.log(
                client,
                Some(&q),
                Outcome::Blocked,
                answer.as_deref(),
                Some(list),
                Some(&m.rule),
                None,
                started,
                None,
            );
            return Step::Done(answer);
        }
        // 3b. ANY (RFC 8482): one small synthesized record, never a forwarded query with a big answer (ANY is the
        // favourite of amplification attacks, and its answers were never complete anyway)
        if q.qtype == wire::TYPE_ANY {
            let answer = wire::synthesize(&q, query, 0, &[(None, wire::TYPE_HINFO, 3600, wire::RFC8482_HINFO)], None);
            self.meters.count(Outcome::Local);
            self.log(client, Some(&q), Outcome::Local, Some(&answer), None, None, None, started, None);
            return Step::Done(Some(fit(answer, &q, limit)));
        }
        // 4. cache
        let key = CacheKey::of(&q);
        let hit = {
            let mut cache = self.cache.locked();
            cache.get(&key, &q, query, started).map(|hit| (hit, cache.prefetch_due.take()))
        };
        if let Some((hit, due)) = hit {
            if let Some(key) = due {
                // refreshed in the background (the task in app.rs); when the queue is full or no place is free in
                // flight, the next hit asks again
                if let Ok(permit) = settings.inflight.clone().try_acquire_owned() {
                    let p = Pending {
                        query: query.to_vec(),
                        q: q.clone(),
                        key,
                        limit,
                        started,
                        client,
                        prefetch: true,
                        _permit: permit,
                    };
                    if self.prefetch.try_send(p).is_ok() {
                        self.meters.prefetch.increment(1);
                    }
                }
            }
            self.meters.cache_hit.increment(1);
            self.meters.count(Outcome::Cached);
            let answer = fit(hit, &q, limit);
            self.log(client, Some(&q), Outcome::Cached, Some(&answer), None, None, None, started, None);
            return Step::Done(Some(answer));
        }
        self.meters.cache_miss.increment(1);
        // 4b. a place among the queries in flight: a flood of distinct names must not grow tasks and sockets
        // without bound (nor hold up the answers from the cache); over the bound, SERVFAIL at once
        let Ok(permit) = settings.inflight.clone().try_acquire_owned() else {
            self.meters.overload.increment(1);
            self.meters.count(Outcome::Failed);
            let why = "too many queries in flight (dns.max_inflight)";
            let answer = wire::synthesize(&q, query, 2, &[], Some((0, why)));
            self.log(client, Some(&q), Outcome::Failed, Some(&answer), None, Some(why), None, started, None);
            return Step::Done(Some(answer));
        };
        Step::Forward(Pending {
            query: query.to_vec(),
            q,
            key,
            limit,
            started,
            client,
            prefetch: false,
            _permit: permit,
        })
    }

    /// The stages that wait for the network: 5. upstream, 6. cache store, 7. account. Identical questions in
    /// flight (same cache key) share one upstream query: the first leads, the others wait for its answer and get
    /// it with their own id, question case and size.
    pub async fn forward(&self, p: Pending) -> Option<Vec<u8>> {
        loop {
            match self.inflight.join(&p.key) {
                inflight::Role::Follow(rx) => {
                    if p.prefetch {
                        return None; // the refresh is on its way already
                    }
                    match rx.await {
                        Ok(fetched) => {
                            self.meters.coalesced.increment(1);
                            return self.finish(p, &fetched);
                        }
                        Err(_) => continue, // the leader was cancelled: ask again (likely leading now)
                    }
                }
                inflight::Role::Lead(lead) => {
                    let fetched = Arc::new(self.fetch(&p).await);
                    // 6. cache store, before the key is freed: a query arriving now hits the cache
                    if let Fetched::Answer { resp, .. } = fetched.as_ref() {
                        let mut cache = self.cache.locked();
                        if cache.insert(p.key.clone(), resp.clone(), p.started).is_ok() {
                            self.meters.cache_entries.set(cache.len() as f64);
                        }
                    }
                    lead.finish(fetched.clone());
                    return self.finish(p, &fetched);
                }
            }
        }
    }

    /// Stage 5, upstream (forward mode) or the authoritative servers (recursive mode), and 5b, DNSSEC validation
    /// and shaping. With DNSSEC on, hearth asks with DO and CD and judges the signatures itself; a client that sets
    /// CD gets the data unchecked, as it asked.
    async fn fetch(&self, p: &Pending) -> Fetched {
        let settings = self.settings.load_full();
        let qtype = RecordType::from(p.q.qtype);
        // A name in a forward zone goes to that zone's servers as the client asked, and is not validated: such
        // zones are the LAN's private, unsigned ones (like Unbound's forward-zone with domain-insecure).
        let zone = forward_zone(&settings.forward_zones, &p.q.name);
        let validator = settings.dnssec.clone().filter(|_| !p.q.checking_disabled && zone.is_none());
        // answers hearth reshapes for the client (validated, or recursive: always fetched with DO)
        let shaped = match dnssec::fqdn(&p.q.name) {
            Some(name) if zone.is_none() && (validator.is_some() || settings.recursor.is_some()) => Some(name),
            _ => None,
        };
        let fetched: Result<(Vec<u8>, String), Fetched> = match (zone, &settings.recursor, &shaped) {
            (Some(pool), _, _) => pool
                .exchange(&p.query)
                .await
                .map(|(mut r, u)| {
                    wire::clear_ad(&mut r); // another server's AD bit is not hearth's verdict
                    (r, u.to_string())
                })
                .map_err(|e| Fetched::Failed(e.to_string())),
            (None, Some(r), Some(name)) => match r.resolve(name, qtype).await {
                Ok(mut m) => {
                    m.metadata.id = p.q.id;
                    m.to_vec().map(|b| (b, "recursive".to_string())).map_err(|e| Fetched::Failed(e.to_string()))
                }
                Err(recursor::Failure::Rebinding(why)) => Err(Fetched::Blocked(why)),
                Err(recursor::Failure::Failed(e)) => Err(Fetched::Failed(e)),
            },
            (None, Some(_), None) => Err(Fetched::Failed(format!("unusable name {:?}", p.q.name))),
            (None, None, _) => {
                let sent = match &shaped {
                    Some(name) => dnssec::upstream_query(p.q.id, name, qtype),
                    None => p.query.clone(),
                };
                settings
                    .upstreams
                    .exchange(&sent)
                    .await
                    .map(|(r, u)| (r, u.to_string()))
                    .map_err(|e| Fetched::Failed(e.to_string()))
            }
        };
        let (mut resp, from) = match fetched {
            Ok(r) => r,
            Err(f) => return f,
        };
        // 5b. DNSSEC validation
        let mut security = None;
        if let Some(name) = shaped {
            let verdict = match Message::from_vec(&resp) {
                Ok(msg) => {
                    let verdict = match &validator {
                        Some(v) => {
                            let clock = dnssec::Clock::system(crate::build_epoch());
                            let forward_fetch;
                            let fetch: &dyn dnssec::Fetch = match &settings.recursor {
                                Some(r) => r.as_ref(),
                                None => {
                                    forward_fetch = upstream::Fetcher(settings.upstreams.clone());
                                    &forward_fetch
                                }
                            };
                            Some(v.validate(fetch, &msg, &name, qtype, clock).await)
                        }
                        None => None,
                    };
                    let shown = verdict.clone().unwrap_or(dnssec::Security::Insecure);
                    match &shown {
                        dnssec::Security::Bogus(_) => None,
                        ok => dnssec::client_view(msg, &p.q, *ok == dnssec::Security::Secure)
                            .map(|view| (verdict.clone(), view)),
                    }
                    .ok_or(shown)
                }
                Err(e) => {
                    Err(dnssec::Security::Bogus(dnssec::Bogus { ede: 0, why: format!("unreadable answer: {e}") }))
                }
            };
            match verdict {
                Ok((verdict, view)) => {
                    if let Some(s) = &verdict {
                        self.meters.dnssec[usize::from(*s != dnssec::Security::Secure)].increment(1);
                    }
                    security = verdict;
                    resp = view;
                }
                Err(s) => {
                    let (code, why) = match &s {
                        dnssec::Security::Bogus(b) => (b.ede, b.why.clone()),
                        _ => (0, "the answer could not be shaped".to_string()),
                    };
                    tracing::info!(name = %p.q.name, ede = code, why, "DNSSEC validation failed");
                    if !p.prefetch {
                        self.meters.dnssec[2].increment(1);
                    }
                    return Fetched::Bogus { code, why, from };
                }
            }
        } else {
            wire::clear_ad(&mut resp);
        }
        wire::copy_question(&mut resp, &p.query, p.q.question_end);
        Fetched::Answer { resp, from, security: security.as_ref().map(dnssec::Security::as_str) }
    }

    /// Serve what the network gave to one query (the leader's or a follower's): its id and question case, its
    /// size limit, counted and logged. A prefetch answers nobody.
    fn finish(&self, p: Pending, fetched: &Fetched) -> Option<Vec<u8>> {
        if p.prefetch {
            return None; // the cached answer lives on until it expires (or was just refreshed)
        }
        match fetched {
            Fetched::Answer { resp, from, security } => {
                let mut answer = resp.clone();
                wire::set_id(&mut answer, p.q.id);
                wire::copy_question(&mut answer, &p.query, p.q.question_end);
                // 7. account
                self.meters.count(Outcome::Forwarded);
                self.meters.forwarded_latency.record(p.started.elapsed().as_secs_f64());
                let answer = fit(answer, &p.q, p.limit);
                self.log(
                    p.client,
                    Some(&p.q),
                    Outcome::Forwarded,
                    Some(&answer),
                    None,
                    None,
                    Some(from.clone()),
                    p.started,
                    *security,
                );
                Some(answer)
            }
            Fetched::Failed(e) => {
                // serve-stale (RFC 8767): an expired answer beats no answer
                let stale = self.cache.locked().get_stale(&p.key, &p.q, &p.query, Instant::now());
                if let Some(mut answer) = stale {
                    tracing::info!(name = %p.q.name, error = %e, "no upstream answered; serving a stale answer");
                    wire::clear_ad(&mut answer);
                    self.meters.count(Outcome::Stale);
                    let answer = fit(answer, &p.q, p.limit);
                    self.log(p.client, Some(&p.q), Outcome::Stale, Some(&answer), None, None, None, p.started, None);
                    return Some(answer);
                }
                tracing::warn!(name = %p.q.name, error = %e, "no upstream answered");
                self.meters.count(Outcome::Failed);
                let answer = error_answer(&p.query, &p.q, ResponseCode::ServFail, Some((23, "no upstream answered")));
                self.log(p.client, Some(&p.q), Outcome::Failed, answer.as_deref(), None, None, None, p.started, None);
                answer
            }
            Fetched::Bogus { code, why, from } => {
                self.meters.count(Outcome::Bogus);
                let answer = error_answer(&p.query, &p.q, ResponseCode::ServFail, Some((*code, why)));
                self.log(
                    p.client,
                    Some(&p.q),
                    Outcome::Bogus,
                    answer.as_deref(),
                    None,
                    Some(why),
                    Some(from.clone()),
                    p.started,
                    Some("bogus"),
                );
                answer.map(|a| fit(a, &p.q, p.limit))
            }
            Fetched::Blocked(why) => {
                // EDE 15 "Blocked": refused by the operator's security policy, with the reason
                self.meters.count(Outcome::Blocked);
                let answer = error_answer(&p.query, &p.q, ResponseCode::ServFail, Some((15, why)));
                self.log(
                    p.client,
                    Some(&p.q),
                    Outcome::Blocked,
                    answer.as_deref(),
                    Some("rebinding protection"),
                    Some(why),
                    Some("recursive".into()),
                    p.started,
                    None,
                );
                answer.map(|a| fit(a, &p.q, p.limit))
            }
        }
    }

    /// The queue of cache refreshes, for the task that runs them (once).
    pub fn take_prefetches(&self) -> Option<tokio::sync::mpsc::Receiver<Pending>> {
        self.prefetch_rx.locked().take()
    }

    pub fn cache_len(&self) -> usize {
        self.cache.locked().len()
    }

    /// The compiled `[dns]` settings in force.
    pub fn settings(&self) -> Arc<Settings> {
        self.settings.load_full()
    }

    /// Swap in what a config change prepared (see [`task::DnsApplier`]); `None` keeps the current one. Cannot fail.
    pub fn apply(&self, p: Prepared) {
        if let Some(settings) = p.settings {
            self.settings.store(Arc::new(settings));
        }
        if let Some(zone) = p.zone {
            self.local.store(Arc::new(zone));
        }
        if let Some((rate, burst)) = p.rate_limit {
            *self.limiter.locked() = crate::ratelimit::RateLimiter::new(rate, burst);
        }
        if let Some(policy) = p.cache {
            *self.cache.locked() = Cache::new(policy);
            self.meters.cache_entries.set(0.0);
        }
    }

    /// Empty the answer cache, and what the validator and the recursor learned (a flush is how an owner retries
    /// after a fix upstream). Returns how many answers were dropped.
    pub fn flush_cache(&self) -> usize {
        let flushed = {
            let mut cache = self.cache.locked();
            let n = cache.len();
            cache.clear();
            n
        };
        self.meters.cache_entries.set(0.0);
        let settings = self.settings.load();
        if let Some(v) = &settings.dnssec {
            v.clear();
        }
        if let Some(r) = &settings.recursor {
            r.clear();
        }
        flushed
    }

    /// Each list's counts at the last compilation, or why it was left out.
    pub fn list_report(&self) -> Vec<(String, Result<ListStats, String>)> {
        self.list_report.locked().clone()
    }

    /// How many list compilations have run (a caller waits for the one its change caused).
    pub fn list_generation(&self) -> u64 {
        self.list_generation.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Compile the configured lists (call on the blocking pool) and swap the engine in. A list that cannot be read
    /// is reported and left out; the previous engine keeps serving until the new one is complete.
    pub fn reload_lists(&self, c: &DnsConfig, dir: &std::path::Path) -> Vec<(String, Result<ListStats, String>)> {
        let mut inputs = vec![];
        let mut report = vec![];
        for (i, l) in c.lists.iter().enumerate() {
            let path = lists::local_path(dir, l);
            match std::fs::File::open(&path) {
                Ok(f) => inputs.push((
                    l.name.clone(),
                    ListInput { id: i as u16, kind: l.kind, reader: std::io::BufReader::new(f) },
                )),
                Err(_) if lists::is_url(&l.source) => {
                    report.push((l.name.clone(), Err(format!("{} is not downloaded yet", l.source))))
                }
                Err(e) => report.push((l.name.clone(), Err(format!("{}: {e}", l.source)))),
            }
        }
        let names: Vec<String> = inputs.iter().map(|(n, _)| n.clone()).collect();
        let started = Instant::now();
        match Engine::compile(inputs.into_iter().map(|(_, i)| i).collect()) {
            Ok((engine, stats)) => {
                let size = engine.size();
                tracing::info!(
                    block_rules = size.block_rules,
                    allow_rules = size.allow_rules,
                    regex_rules = size.regex_rules,
                    bytes = size.bytes,
                    ms = started.elapsed().as_millis() as u64,
                    "blocklists compiled"
                );
                metrics::gauge!("hearth_dns_list_rules", "kind" => "block").set(size.block_rules as f64);
                metrics::gauge!("hearth_dns_list_rules", "kind" => "allow").set(size.allow_rules as f64);
                metrics::gauge!("hearth_dns_list_rules", "kind" => "regex").set(size.regex_rules as f64);
                self.engine.store(Arc::new(engine));
                report.extend(names.into_iter().zip(stats.into_iter().map(Ok)));
            }
            Err(e) => report.push(("lists".into(), Err(e.to_string()))),
        }
        *self.list_report.locked() = report.clone();
        self.list_generation.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        report
    }

    /// The lists left out of the last compilation, as "name: why".
    pub fn list_failures(&self) -> Vec<String> {
        failures(&self.list_report.locked())
    }
}

/// hearth's own outbound name resolution (list downloads): the names go through the same pipeline as a client's
/// query from 127.0.0.1 — local records, cache, upstreams or recursion, DNSSEC — so a static binary never needs
/// glibc's NSS, and the lookups show in the query log like any other.
pub struct SelfResolver(pub Arc<Dns>);

impl reqwest::dns::Resolve for SelfResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let dns = self.0.clone();
        let host = name.as_str().trim_end_matches('.').to_ascii_lowercase();
        Box::pin(async move {
            let qname = dnssec::fqdn(&host).ok_or_else(|| format!("{host}: not a valid host name"))?;
            let mut addrs: Vec<std::net::SocketAddr> = vec![];
            let mut rcode = None;
            for qtype in [RecordType::A, RecordType::AAAA] {
                let mut m = Message::new(
                    rand::random(),
                    hickory_proto::op::MessageType::Query,
                    hickory_proto::op::OpCode::Query,
                );
                m.metadata.recursion_desired = true;
                m.add_query(hickory_proto::op::Query::query(qname.clone(), qtype));
                let query = m.to_vec().map_err(|e| e.to_string())?;
                let Some(answer) = dns.handle(&query, IpAddr::from([127, 0, 0, 1]), Transport::Internal).await else {
                    continue;
                };
                let Ok(resp) = Message::from_vec(&answer) else { continue };
                rcode = Some(resp.metadata.response_code);
                addrs.extend(resp.answers.iter().filter_map(|r| match &r.data {
                    hickory_proto::rr::RData::A(a) => Some(std::net::SocketAddr::new(IpAddr::V4(a.0), 0)),
                    hickory_proto::rr::RData::AAAA(a) => Some(std::net::SocketAddr::new(IpAddr::V6(a.0), 0)),
                    _ => None,
                }));
            }
            if addrs.is_empty() {
                let why = rcode.map(|r| r.to_string()).unwrap_or_else(|| "no answer".into());
                return Err(format!("{host}: not resolved ({why})").into());
            }
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// Keep a UDP answer within the client's limit: cut it to a truncated one that keeps its OPT record (the client
/// retries over TCP).
fn fit(resp: Vec<u8>, q: &wire::QueryInfo, limit: usize) -> Vec<u8> {
    if resp.len() > limit { wire::truncated(&resp, q) } else { resp }
}

fn local_answer(query: &[u8], q: &wire::QueryInfo, ans: &local::LocalAnswer) -> Vec<u8> {
    match ans {
        local::LocalAnswer::NxDomain => wire::synthesize(q, query, 3, &[], None),
        local::LocalAnswer::NoData => wire::synthesize(q, query, 0, &[], None),
        local::LocalAnswer::Records(rrs) => {
            let owners: Vec<Vec<u8>> = rrs.iter().map(|r| local::encode_name(&r.owner)).collect();
            let answers: Vec<wire::Answer<'_>> = rrs
                .iter()
                .zip(&owners)
                .map(|(r, o)| {
                    (if r.owner == q.name { None } else { Some(o.as_slice()) }, r.rtype, r.ttl, r.rdata.as_slice())
                })
                .collect();
            let mut out = wire::synthesize(q, query, 0, &answers, None);
            out[2] |= 0x04; // authoritative: these names are ours
            out
        }
    }
}

fn error_answer(query: &[u8], q: &wire::QueryInfo, rcode: ResponseCode, ede: Option<(u16, &str)>) -> Option<Vec<u8>> {
    Some(wire::synthesize(q, query, u16::from(rcode) as u8, &[], ede))
}

fn blocked_answer(query: &[u8], q: &wire::QueryInfo, s: &Settings, list: &str, rule: &str) -> Option<Vec<u8>> {
    let rcode = match s.blocking {
        BlockingMode::NxDomain => ResponseCode::NXDomain,
        BlockingMode::Refused => ResponseCode::Refused,
        _ => ResponseCode::NoError,
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
    Some(wire::synthesize(q, query, u16::from(rcode) as u8, &answers, Some((15, &why))))
}

/// FORMERR for a query whose header is readable; nothing for garbage.
fn formerr(query: &[u8]) -> Option<Vec<u8>> {
    if query.len() < 12 || query[2] & 0x80 != 0 {
        return None;
    }
    let mut out = query[..12].to_vec();
    out[2] = 0x80 | (query[2] & 0x79);
    out[3] = 0x01; // FORMERR
    for b in &mut out[4..12] {
        *b = 0;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forward_zones_match_whole_labels_longest_first() {
        let zones = vec![("a.fritz.box".to_string(), 2), ("fritz.box".to_string(), 1)];
        assert_eq!(forward_zone(&zones, "fritz.box"), Some(&1));
        assert_eq!(forward_zone(&zones, "printer.fritz.box"), Some(&1));
        assert_eq!(forward_zone(&zones, "x.a.fritz.box"), Some(&2));
        assert_eq!(forward_zone(&zones, "notfritz.box"), None);
        assert_eq!(forward_zone(&zones, "box"), None);
        assert_eq!(forward_zone::<i32>(&[], "fritz.box"), None);
    }

    #[test]
    fn blocking_modes_parse() {
        assert_eq!(BlockingMode::parse("null_ip"), Ok(BlockingMode::NullIp));
        assert_eq!(BlockingMode::parse("custom:10.0.0.1"), Ok(BlockingMode::Custom("10.0.0.1".parse().unwrap())));
        assert!(BlockingMode::parse("custom:nope").is_err());
        assert!(BlockingMode::parse("sinkhole").is_err());
    }

    fn dns_with(f: impl FnOnce(&mut DnsConfig)) -> Dns {
        let mut c = DnsConfig { dnssec: false, ..DnsConfig::default() };
        f(&mut c);
        Dns::new(Settings::from_config(&c).unwrap(), cache_policy(&c), None)
    }

    fn query(name: &str, qtype: RecordType) -> Vec<u8> {
        let mut m = Message::new(0x4242, hickory_proto::op::MessageType::Query, hickory_proto::op::OpCode::Query);
        m.metadata.recursion_desired = true;
        m.add_query(hickory_proto::op::Query::query(Name::from_ascii(name).unwrap(), qtype));
        m.to_vec().unwrap()
    }

    /// The answer of a step that must be done: (rcode, message).
    fn done(step: Step) -> Message {
        match step {
            Step::Done(Some(a)) => Message::from_vec(&a).unwrap(),
            Step::Done(None) => panic!("no answer"),
            Step::Forward(_) => panic!("forwarded"),
        }
    }

    #[test]
    fn clients_outside_the_allow_list_are_refused_on_every_transport() {
        let dns = dns_with(|c| c.allow_clients = vec!["10.9.9.0/24".into(), "fd00:9::/32".into()]);
        let q = query("www.example.com.", RecordType::A);
        for t in [Transport::Udp, Transport::Tcp, Transport::Tls, Transport::Https] {
            for outside in ["127.0.0.1", "192.168.1.5", "10.9.8.1", "::1", "::ffff:10.9.8.1"] {
                let m = done(dns.answer_local(&q, outside.parse().unwrap(), t));
                assert_eq!(m.metadata.response_code, ResponseCode::Refused, "{outside} over {t:?}");
                assert_eq!(m.metadata.id, 0x4242);
            }
            for inside in ["10.9.9.7", "fd00:9::1", "::ffff:10.9.9.7"] {
                assert!(matches!(dns.answer_local(&q, inside.parse().unwrap(), t), Step::Forward(_)), "{inside}");
            }
        }
        // hearth's own lookups are never refused
        let own = dns.answer_local(&q, "127.0.0.1".parse().unwrap(), Transport::Internal);
        assert!(matches!(own, Step::Forward(_)));
        // garbage from outside gets nothing at all
        assert!(matches!(
            dns.answer_local(b"\x01\x02garbage", "127.0.0.1".parse().unwrap(), Transport::Udp),
            Step::Done(None)
        ));
        // the default: the LAN and loopback
        let dns = dns_with(|_| {});
        for ip in ["127.0.0.1", "192.168.1.5", "10.1.2.3", "fd12::1", "fe80::1"] {
            assert!(matches!(dns.answer_local(&q, ip.parse().unwrap(), Transport::Udp), Step::Forward(_)), "{ip}");
        }
        let m = done(dns.answer_local(&q, "8.8.8.8".parse().unwrap(), Transport::Udp));
        assert_eq!(m.metadata.response_code, ResponseCode::Refused);
    }

    #[test]
    fn any_gets_the_rfc8482_answer_and_is_never_forwarded() {
        let dns = dns_with(|_| {});
        let m = done(dns.answer_local(
            &query("example.com.", RecordType::ANY),
            "127.0.0.1".parse().unwrap(),
            Transport::Udp,
        ));
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
        assert_eq!(m.answers.len(), 1);
        match &m.answers[0].data {
            hickory_proto::rr::RData::HINFO(h) => {
                assert_eq!(&*h.cpu, b"RFC8482");
                assert!(h.os.is_empty());
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn queries_past_the_cache_are_bounded_in_flight() {
        let dns = dns_with(|c| c.max_inflight = 2);
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let a = dns.answer_local(&query("a.example.", RecordType::A), ip, Transport::Udp);
        let b = dns.answer_local(&query("b.example.", RecordType::A), ip, Transport::Tcp);
        assert!(matches!((&a, &b), (Step::Forward(_), Step::Forward(_))));
        // the third finds no place: SERVFAIL at once, with the reason
        let m = done(dns.answer_local(&query("c.example.", RecordType::A), ip, Transport::Udp));
        assert_eq!(m.metadata.response_code, ResponseCode::ServFail);
        // an answered query gives its place back
        drop(a);
        assert!(matches!(dns.answer_local(&query("c.example.", RecordType::A), ip, Transport::Udp), Step::Forward(_)));
        drop(b);
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        /// A query-shaped prefix (header with one question) then anything: reaches past the parser more often
        /// than bytes alone.
        fn message() -> impl Strategy<Value = Vec<u8>> {
            let head = (any::<u16>(), any::<u8>(), 0u16..3, 0u16..3, 0u16..3);
            let labels = prop::collection::vec(prop::collection::vec(any::<u8>(), 0..70), 0..5);
            (head, labels, any::<u16>(), prop::collection::vec(any::<u8>(), 0..600)).prop_map(
                |((id, flags, an, ns, ar), labels, qtype, tail)| {
                    let mut m = id.to_be_bytes().to_vec();
                    m.extend_from_slice(&[flags & 0x79, 0, 0, 1]);
                    for n in [an, ns, ar] {
                        m.extend_from_slice(&n.to_be_bytes());
                    }
                    for l in labels {
                        m.push(l.len() as u8);
                        m.extend_from_slice(&l);
                    }
                    m.push(0);
                    m.extend_from_slice(&qtype.to_be_bytes());
                    m.extend_from_slice(&[0, 1]);
                    m.extend_from_slice(&tail);
                    m
                },
            )
        }

        proptest! {
            /// The same property as the fuzz target `tests/fuzz/fuzz_targets/dns_message.rs`, on stable: no bytes
            /// make the local stages or the wire helpers panic, and UDP answers stay within the client's limit.
            #[test]
            fn answer_local_never_panics_and_udp_answers_fit(
                data in prop_oneof![prop::collection::vec(any::<u8>(), 0..700), message()]
            ) {
                let dns = dns_with(|c| c.rate_limit = 0);
                for (client, t) in [("127.0.0.1", Transport::Udp), ("192.168.1.2", Transport::Tcp),
                    ("203.0.113.9", Transport::Tls), ("::1", Transport::Https)]
                {
                    if let Step::Done(Some(answer)) = dns.answer_local(&data, client.parse().unwrap(), t) {
                        let _ = wire::parse_response(&answer);
                        if t == Transport::Udp && let Ok(q) = wire::parse_query(&data) {
                            prop_assert!(answer.len() <= wire::udp_limit(&q));
                        }
                    }
                }
                if let Ok(q) = wire::parse_query(&data) {
                    prop_assert!(wire::truncated(&data, &q).len() <= 512);
                }
                if let Ok(info) = wire::parse_response(&data) {
                    let mut copy = data.clone();
                    wire::age_ttls(&mut copy, &info.ttl_offsets, 5, 0);
                }
                let _ = wire::find_opt(&data);
            }
        }
    }

    #[test]
    fn formerr_only_for_readable_headers() {
        assert_eq!(formerr(&[1, 2, 3]), None);
        let out = formerr(&[0xab, 0xcd, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 0xff]).unwrap();
        assert_eq!(out[..4], [0xab, 0xcd, 0x81, 0x01]);
    }
}
