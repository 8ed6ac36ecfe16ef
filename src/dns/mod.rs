//! DNS: the filtering resolver. A query runs through one visible list of stages, each a named function of [`Dns`].
//! [`Dns::answer_local`] runs those that need no network: `stage_allowed` (the client allow list,
//! `dns.allow_clients`: REFUSED outside), `stage_parse` (FORMERR for what cannot be read; the size the answer must
//! fit), `stage_rate_limit` (per client), `stage_local` (local records and local domains), `stage_filter`
//! (blocklists, allow beats block; skipped while blocking is paused), `stage_any` (ANY answered minimally, RFC 8482), `stage_cache` (which may queue a
//! prefetch), `stage_inflight` (a place among the queries in flight, `dns.max_inflight`: SERVFAIL when full).
//! [`Dns::forward`] runs the rest: identical questions in flight share one upstream query, whose leader runs
//! `fetch` (`stage_upstream` — a forward zone's servers, the upstream pool or the recursor —, then
//! `stage_validate` — DNSSEC and the answer shaped for the client) and `stage_store` (the cache); `finish` then
//! serves each waiting query (serve-stale, account, log). Every transport (UDP, TCP, DoT, DoH) goes through the
//! same stages; UDP answers are cut to the client's EDNS size, at most 1232 bytes.
//!
//! Beside the pipeline: `settings.rs` compiles the `[dns]` section, `answer.rs` builds the answers hearth writes
//! itself, `meters.rs` counts, `resolver.rs` is hearth's own name resolution, `blocking.rs` the blocking pause,
//! `catalog.rs` the block-list catalog (data). Transports (`server.rs`) only move
//! bytes; the blocklist engine, the local zone, the cache policy, the answer builders and the wire helpers are pure
//! cores.

mod answer;
pub(crate) mod blocking;
pub(crate) mod blocklist;
pub(crate) mod cache;
pub(crate) mod catalog;
pub(crate) mod dnssec;
pub(crate) mod groups;
pub(crate) mod inflight;
pub(crate) mod lists;
pub(crate) mod local;
mod meters;
pub(crate) mod querylog;
pub(crate) mod recursor;
mod resolver;
pub(crate) mod server;
mod settings;
pub(crate) mod task;
pub(crate) mod upstream;
pub(crate) mod wire;

pub(crate) use meters::Outcome;
pub(crate) use resolver::SelfResolver;
pub(crate) use settings::{Settings, cache_policy, forward_zone, local_zone, local_zone_with, querylog_policy};

use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use arc_swap::ArcSwap;
use hickory_proto::op::Message;
use hickory_proto::rr::{Name, RecordType};

use crate::config::DnsConfig;
use crate::util::Locked;
use answer::{blocked_answer, error_answer, fit, formerr, local_answer};
use blocklist::{Engine, ListInput, ListStats, Verdict};
use cache::{Cache, CacheKey, CachePolicy};
use meters::Meters;
use wire::{EDE_BLOCKED, EDE_NETWORK_ERROR, EDE_OTHER, RCODE_NOERROR, RCODE_REFUSED, RCODE_SERVFAIL};

/// "name: why" for every list a compilation report left out.
pub(crate) fn failures(report: &[(String, Result<ListStats, String>)]) -> Vec<String> {
    report.iter().filter_map(|(n, r)| r.as_ref().err().map(|e| format!("{n}: {e}"))).collect()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Transport {
    Udp,
    Tcp,
    /// DNS over TLS (RFC 7858).
    Tls,
    /// DNS over HTTPS (RFC 8484).
    Https,
    /// hearth's own lookups ([`SelfResolver`]): never refused by `dns.allow_clients` nor rate-limited.
    Internal,
}

/// What a config change built for [`Dns::apply`] (see [`task::compile`]); `None`: unchanged.
#[derive(Default)]
pub(crate) struct Prepared {
    pub settings: Option<Settings>,
    pub zone: Option<local::LocalZone>,
    pub cache: Option<CachePolicy>,
    pub rate_limit: Option<(u32, u32)>,
}

/// The resolver's shared state.
pub(crate) struct Dns {
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
    /// A blocking pause: until this Unix second (0: none; see [`blocking`]).
    paused_until: std::sync::atomic::AtomicI64,
}

/// What the lists say about a name ([`Dns::check_name`]).
pub(crate) struct NameCheck {
    /// "blocked", "allowed" or "none".
    pub verdict: &'static str,
    pub list: Option<String>,
    pub rule: Option<String>,
    pub group: Option<String>,
}

/// After the synchronous stages: either the answer, or a query that must go upstream.
pub(crate) enum Step {
    Done(Option<Vec<u8>>),
    Forward(Pending),
}

/// A query on its way upstream (owns its bytes, so the receive buffer can be reused).
pub(crate) struct Pending {
    query: Vec<u8>,
    q: wire::QueryInfo,
    key: CacheKey,
    limit: usize,
    started: Instant,
    client: IpAddr,
    /// A background refresh of a cached answer: stored, not sent, not logged.
    prefetch: bool,
    /// The allow rule that let the name through the filter (its list and rule), for the query log.
    allowed: Option<Box<(String, String)>>,
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

/// A stage's early end: the query's answer (`None`: no answer at all, for garbage).
type Answered = Option<Vec<u8>>;

/// One query as the local stages see it: borrowed, nothing is copied unless it goes upstream.
#[derive(Clone, Copy)]
struct Asked<'a> {
    query: &'a [u8],
    client: IpAddr,
    transport: Transport,
    started: Instant,
}

/// How `stage_upstream` asks and whether `stage_validate` judges, decided once per fetch from the settings in force.
struct Plan<'s> {
    qtype: RecordType,
    /// The forward zone the name falls in: its servers, asked as the client asked, not validated.
    zone: Option<&'s Arc<upstream::Pool>>,
    /// The validator, unless DNSSEC is off, the client set CD, or the name is in a forward zone.
    validator: Option<&'s dnssec::Validator>,
    /// The name, when hearth reshapes the answer for the client (validated, or recursive: fetched with DO).
    shaped: Option<Name>,
}

impl Dns {
    pub(crate) fn new(settings: Settings, policy: CachePolicy, log: Option<querylog::QueryLog>) -> Self {
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
            paused_until: Default::default(),
        }
    }

    /// Pause blocking until the Unix second `until` ([`blocking::UNTIL_RESUMED`]: no end), or resume it (0). The
    /// caller stores it ([`blocking::save`]).
    pub(crate) fn pause_blocking(&self, until: i64) {
        self.paused_until.store(until, std::sync::atomic::Ordering::Relaxed);
        tracing::info!(until, "blocking {}", if until == 0 { "resumed" } else { "paused" });
    }

    /// What the lists say about `name` for `client` (None: a client in no group): "Check a domain".
    pub(crate) fn check_name(&self, name: &str, client: Option<IpAddr>) -> NameCheck {
        let s = self.settings.load();
        let (group, lists) = match client {
            Some(ip) => s.groups.lists_for(ip),
            None => (None, s.groups.default_lists()),
        };
        let list_name = |m: &blocklist::Match| s.list_names.get(m.list as usize).cloned();
        let (verdict, m) = match self.engine.load().check(name, lists) {
            Verdict::None => ("none", None),
            Verdict::Allowed(m) => ("allowed", Some(m)),
            Verdict::Blocked(m) => ("blocked", Some(m)),
        };
        NameCheck {
            verdict,
            list: m.as_ref().and_then(list_name),
            rule: m.map(|m| m.rule),
            group: group.map(str::to_string),
        }
    }

    /// The end of the blocking pause in force (None: blocking is on).
    pub(crate) fn blocking_paused_until(&self) -> Option<i64> {
        let until = self.paused_until.load(std::sync::atomic::Ordering::Relaxed);
        blocking::is_paused(until, crate::util::unix_now()).then_some(until)
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
        let settings = self.settings.load();
        if !settings.log_queries {
            return;
        }
        let client = if settings.anonymize_clients { querylog::anonymize(client) } else { client };
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
            // what the name resolved to (blocked answers are hearth's own 0.0.0.0: not worth a column)
            answers: match (outcome, answer) {
                (Outcome::Forwarded | Outcome::Cached | Outcome::Stale | Outcome::Local, Some(a)) => {
                    wire::answer_addresses(a, 8)
                }
                _ => vec![],
            },
        });
    }

    /// Answer one query. `None` means drop it (unparseable garbage gets no answer).
    pub(crate) async fn handle(&self, query: &[u8], client: IpAddr, transport: Transport) -> Option<Vec<u8>> {
        match self.answer_local(query, client, transport) {
            Step::Done(answer) => answer,
            Step::Forward(p) => self.forward(p).await,
        }
    }

    /// The stages that need no network, in this order; cheap enough to run inline in a receive loop. A stage either
    /// passes the query on or ends it with its answer (`Err`); what passes them all is [`Dns::forward`]'s.
    pub(crate) fn answer_local(&self, query: &[u8], client: IpAddr, transport: Transport) -> Step {
        let a = Asked { query, client, transport, started: Instant::now() };
        let settings = self.settings.load();
        let stages = || -> Result<Pending, Answered> {
            self.stage_allowed(a, &settings)?;
            let (q, limit) = self.stage_parse(a)?;
            self.stage_rate_limit(a, &q, &settings)?;
            self.stage_local(a, &q, limit)?;
            let allowed = self.stage_filter(a, &q, limit, &settings)?;
            self.stage_any(a, &q, limit)?;
            let key = CacheKey::of(&q);
            self.stage_cache(a, &q, limit, &key, &settings, allowed.as_ref())?;
            let permit = self.stage_inflight(a, &q, &settings)?;
            Ok(Pending {
                query: query.to_vec(),
                q,
                key,
                limit,
                started: a.started,
                client,
                prefetch: false,
                allowed: allowed.map(Box::new),
                _permit: permit,
            })
        };
        match stages() {
            Ok(pending) => Step::Forward(pending),
            Err(answer) => Step::Done(answer),
        }
    }

    /// The clients allowed (like Unbound's access-control): others get REFUSED, garbage from them nothing.
    /// hearth's own lookups ([`Transport::Internal`]) always pass.
    #[inline]
    fn stage_allowed(&self, a: Asked<'_>, s: &Settings) -> Result<(), Answered> {
        if a.transport == Transport::Internal || s.allow_clients.iter().any(|c| c.contains(a.client)) {
            return Ok(());
        }
        let Ok(q) = wire::parse_query(a.query) else { return Err(None) };
        self.meters.count(Outcome::Refused);
        let answer = wire::synthesize(&q, a.query, RCODE_REFUSED, &[], None);
        self.log(a.client, Some(&q), Outcome::Refused, Some(&answer), None, None, None, a.started, None);
        Err(Some(answer))
    }

    /// Read the question (FORMERR when the header is readable, nothing for garbage) and the size the answer must
    /// fit in.
    #[inline]
    fn stage_parse(&self, a: Asked<'_>) -> Result<(wire::QueryInfo, usize), Answered> {
        let q = match wire::parse_query(a.query) {
            Ok(q) => q,
            Err(_) => {
                self.meters.count(Outcome::Malformed);
                let answer = formerr(a.query);
                self.log(a.client, None, Outcome::Malformed, answer.as_deref(), None, None, None, a.started, None);
                return Err(answer);
            }
        };
        let limit = match a.transport {
            // RFC 6891 §6.2.5 and DNS Flag Day 2020: the client's size, at most 1232 bytes; 512 without EDNS
            Transport::Udp => wire::udp_limit(&q),
            Transport::Tcp | Transport::Tls | Transport::Https | Transport::Internal => usize::from(u16::MAX),
        };
        Ok((q, limit))
    }

    /// The per-client rate limit, the same for every transport (UDP, TCP, DoT and DoH all pass here): REFUSED over
    /// it. hearth's own lookups and `dns.rate_limit_exempt` clients are never limited.
    #[inline]
    fn stage_rate_limit(&self, a: Asked<'_>, q: &wire::QueryInfo, s: &Settings) -> Result<(), Answered> {
        if s.rate_limit.0 > 0
            && a.transport != Transport::Internal
            && !s.rate_limit_exempt.iter().any(|c| c.contains(a.client))
            && !self.limiter.locked().allow(a.client, a.started)
        {
            self.meters.count(Outcome::RateLimited);
            let answer = wire::synthesize(q, a.query, RCODE_REFUSED, &[], None);
            self.log(a.client, Some(q), Outcome::RateLimited, Some(&answer), None, None, None, a.started, None);
            return Err(Some(answer));
        }
        Ok(())
    }

    /// Local records and local domains: answered here, never forwarded, never filtered.
    #[inline]
    fn stage_local(&self, a: Asked<'_>, q: &wire::QueryInfo, limit: usize) -> Result<(), Answered> {
        let Some(ans) = self.local.load().lookup(&q.name, q.qtype) else { return Ok(()) };
        let answer = local_answer(a.query, q, &ans);
        self.meters.count(Outcome::Local);
        self.log(a.client, Some(q), Outcome::Local, Some(&answer), None, None, None, a.started, None);
        Err(Some(fit(answer, q, limit)))
    }

    /// The blocklists of the client's group (allow beats block): a blocked name is answered in the blocking mode.
    #[inline]
    /// Ok: the name passes; with the allow rule that let it through, if one did (list, rule), for the log.
    fn stage_filter(
        &self,
        a: Asked<'_>,
        q: &wire::QueryInfo,
        limit: usize,
        s: &Settings,
    ) -> Result<Option<(String, String)>, Answered> {
        // a pause lets everything through (the clock is read only while one is set)
        if self.paused_until.load(std::sync::atomic::Ordering::Relaxed) != 0 && self.blocking_paused_until().is_some() {
            return Ok(None);
        }
        let (_group, lists) = s.groups.lists_for(a.client);
        let m = match self.engine.load().check(&q.name, lists) {
            Verdict::None => return Ok(None),
            Verdict::Allowed(m) => {
                let list = s.list_names.get(m.list as usize).cloned().unwrap_or_default();
                return Ok(Some((list, m.rule)));
            }
            Verdict::Blocked(m) => m,
        };
        let list = s.list_names.get(m.list as usize).map(String::as_str).unwrap_or("?");
        tracing::debug!(name = %q.name, list, rule = %m.rule, "blocked");
        self.meters.count(Outcome::Blocked);
        let answer = blocked_answer(a.query, q, s, list, &m.rule).map(|answer| fit(answer, q, limit));
        self.log(
            a.client,
            Some(q),
            Outcome::Blocked,
            answer.as_deref(),
            Some(list),
            Some(&m.rule),
            None,
            a.started,
            None,
        );
        Err(answer)
    }

    /// ANY (RFC 8482): one small synthesized record, never a forwarded query with a big answer (ANY is the
    /// favourite of amplification attacks, and its answers were never complete anyway).
    #[inline]
    fn stage_any(&self, a: Asked<'_>, q: &wire::QueryInfo, limit: usize) -> Result<(), Answered> {
        if q.qtype != wire::TYPE_ANY {
            return Ok(());
        }
        let hinfo = [(None, wire::TYPE_HINFO, 3600, wire::RFC8482_HINFO)];
        let answer = wire::synthesize(q, a.query, RCODE_NOERROR, &hinfo, None);
        self.meters.count(Outcome::Local);
        self.log(a.client, Some(q), Outcome::Local, Some(&answer), None, None, None, a.started, None);
        Err(Some(fit(answer, q, limit)))
    }

    /// The answer cache: a hit is answered here (its TTLs aged); a hit in the last tenth of its TTL also queues one
    /// background refresh.
    #[inline]
    fn stage_cache(
        &self,
        a: Asked<'_>,
        q: &wire::QueryInfo,
        limit: usize,
        key: &CacheKey,
        s: &Settings,
        allowed: Option<&(String, String)>,
    ) -> Result<(), Answered> {
        let hit = {
            let mut cache = self.cache.locked();
            cache.get(key, q, a.query, a.started).map(|hit| (hit, cache.prefetch_due.take()))
        };
        let Some((hit, due)) = hit else {
            self.meters.cache_miss.increment(1);
            return Ok(());
        };
        if let Some(key) = due {
            self.queue_prefetch(a, q, limit, key, s);
        }
        self.meters.cache_hit.increment(1);
        self.meters.count(Outcome::Cached);
        let answer = fit(hit, q, limit);
        let (list, rule) = (allowed.map(|a| a.0.as_str()), allowed.map(|a| a.1.as_str()));
        self.log(a.client, Some(q), Outcome::Cached, Some(&answer), list, rule, None, a.started, None);
        Err(Some(answer))
    }

    /// Hand a cache refresh to the prefetch task (in app.rs); when the queue is full or no place is free in flight,
    /// the next hit asks again.
    fn queue_prefetch(&self, a: Asked<'_>, q: &wire::QueryInfo, limit: usize, key: CacheKey, s: &Settings) {
        if let Ok(permit) = s.inflight.clone().try_acquire_owned() {
            let p = Pending {
                query: a.query.to_vec(),
                q: q.clone(),
                key,
                limit,
                started: a.started,
                client: a.client,
                prefetch: true,
                allowed: None,
                _permit: permit,
            };
            if self.prefetch.try_send(p).is_ok() {
                self.meters.prefetch.increment(1);
            }
        }
    }

    /// A place among the queries in flight: a flood of distinct names must not grow tasks and sockets without
    /// bound (nor hold up the answers from the cache); over the bound, SERVFAIL at once.
    #[inline]
    fn stage_inflight(
        &self,
        a: Asked<'_>,
        q: &wire::QueryInfo,
        s: &Settings,
    ) -> Result<tokio::sync::OwnedSemaphorePermit, Answered> {
        let Ok(permit) = s.inflight.clone().try_acquire_owned() else {
            self.meters.overload.increment(1);
            self.meters.count(Outcome::Failed);
            let why = "too many queries in flight (dns.max_inflight)";
            let answer = wire::synthesize(q, a.query, RCODE_SERVFAIL, &[], Some((EDE_OTHER, why)));
            self.log(a.client, Some(q), Outcome::Failed, Some(&answer), None, Some(why), None, a.started, None);
            return Err(Some(answer));
        };
        Ok(permit)
    }

    /// The stages that wait for the network. Identical questions in flight (same cache key) share one upstream
    /// query: the first leads — `fetch` (upstream, validation), `stage_store` —, the others wait for its result;
    /// `finish` serves each with its own id, question case and size.
    pub(crate) async fn forward(&self, p: Pending) -> Option<Vec<u8>> {
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
                    self.stage_store(&p, &fetched);
                    lead.finish(fetched.clone());
                    return self.finish(p, &fetched);
                }
            }
        }
    }

    /// What the network gives for the question: `stage_upstream` (forward mode: a forward zone's servers or the
    /// upstream pool; recursive mode: the authoritative servers), then `stage_validate`. With DNSSEC on, hearth asks
    /// with DO and CD and judges the signatures itself; a client that sets CD gets the data unchecked, as it asked.
    async fn fetch(&self, p: &Pending) -> Fetched {
        let settings = self.settings.load_full();
        // A name in a forward zone goes to that zone's servers as the client asked, and is not validated: such
        // zones are the LAN's private, unsigned ones (like Unbound's forward-zone with domain-insecure).
        let zone = forward_zone(&settings.forward_zones, &p.q.name);
        let validator = settings.dnssec.as_deref().filter(|_| !p.q.checking_disabled && zone.is_none());
        // answers hearth reshapes for the client (validated, or recursive: always fetched with DO)
        let shaped = match dnssec::fqdn(&p.q.name) {
            Some(name) if zone.is_none() && (validator.is_some() || settings.recursor.is_some()) => Some(name),
            _ => None,
        };
        let plan = Plan { qtype: RecordType::from(p.q.qtype), zone, validator, shaped };
        let (resp, from) = match self.stage_upstream(p, &settings, &plan).await {
            Ok(fetched) => fetched,
            Err(failed) => return failed,
        };
        self.stage_validate(p, &settings, plan, resp, from).await
    }

    /// Ask the network: the answer and who gave it, or why there is none.
    async fn stage_upstream(&self, p: &Pending, s: &Settings, plan: &Plan<'_>) -> Result<(Vec<u8>, String), Fetched> {
        match (plan.zone, &s.recursor, &plan.shaped) {
            (Some(pool), _, _) => pool
                .exchange(&p.query)
                .await
                .map(|(mut r, u)| {
                    wire::clear_ad(&mut r); // another server's AD bit is not hearth's verdict
                    (r, u.to_string())
                })
                .map_err(|e| Fetched::Failed(e.to_string())),
            (None, Some(r), Some(name)) => match r.resolve(name, plan.qtype).await {
                Ok(mut m) => {
                    m.metadata.id = p.q.id;
                    m.to_vec().map(|b| (b, "recursive".to_string())).map_err(|e| Fetched::Failed(e.to_string()))
                }
                Err(recursor::Failure::Rebinding(why)) => Err(Fetched::Blocked(why)),
                Err(recursor::Failure::Failed(e)) => Err(Fetched::Failed(e)),
            },
            (None, Some(_), None) => Err(Fetched::Failed(format!("unusable name {:?}", p.q.name))),
            (None, None, _) => {
                let sent = match &plan.shaped {
                    Some(name) => dnssec::upstream_query(p.q.id, name, plan.qtype),
                    None => p.query.clone(),
                };
                s.upstreams
                    .exchange(&sent)
                    .await
                    .map(|(r, u)| (r, u.to_string()))
                    .map_err(|e| Fetched::Failed(e.to_string()))
            }
        }
    }

    /// DNSSEC validation and the answer shaped for the client (AD only when secure and asked for, DNSSEC records
    /// only with DO); an answer hearth does not shape loses the AD bit. Bogus: SERVFAIL with its EDE code.
    async fn stage_validate(
        &self,
        p: &Pending,
        s: &Settings,
        plan: Plan<'_>,
        mut resp: Vec<u8>,
        from: String,
    ) -> Fetched {
        let mut security = None;
        if let Some(name) = plan.shaped {
            let verdict = match Message::from_vec(&resp) {
                Ok(msg) => {
                    let verdict = match plan.validator {
                        Some(v) => {
                            let clock = dnssec::Clock::system(crate::build_epoch());
                            let forward_fetch;
                            let fetch: &dyn dnssec::Fetch = match &s.recursor {
                                Some(r) => r.as_ref(),
                                None => {
                                    forward_fetch = upstream::Fetcher(s.upstreams.clone());
                                    &forward_fetch
                                }
                            };
                            Some(v.validate(fetch, &msg, &name, plan.qtype, clock).await)
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
                Err(e) => Err(dnssec::Security::Bogus(dnssec::Bogus {
                    ede: EDE_OTHER,
                    why: format!("unreadable answer: {e}"),
                })),
            };
            match verdict {
                Ok((verdict, view)) => {
                    if let Some(s) = &verdict {
                        self.meters.dnssec_verdict(*s == dnssec::Security::Secure);
                    }
                    security = verdict;
                    resp = view;
                }
                Err(s) => {
                    let (code, why) = match &s {
                        dnssec::Security::Bogus(b) => (b.ede, b.why.clone()),
                        _ => (EDE_OTHER, "the answer could not be shaped".to_string()),
                    };
                    tracing::info!(name = %p.q.name, ede = code, why, "DNSSEC validation failed");
                    if !p.prefetch {
                        self.meters.dnssec_bogus();
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

    /// The cache store, by the leader before the question is freed: a query arriving now hits the cache.
    fn stage_store(&self, p: &Pending, fetched: &Fetched) {
        if let Fetched::Answer { resp, .. } = fetched {
            let mut cache = self.cache.locked();
            if cache.insert(p.key.clone(), resp.clone(), p.started).is_ok() {
                self.meters.cache_entries.set(cache.len() as f64);
            }
        }
    }

    /// Serve what the network gave to one query (the leader's or a follower's): its id and question case, its
    /// size limit, counted and logged. A failure serves a stale answer when the cache has one (RFC 8767). A
    /// prefetch answers nobody.
    fn finish(&self, p: Pending, fetched: &Fetched) -> Option<Vec<u8>> {
        if p.prefetch {
            return None; // the cached answer lives on until it expires (or was just refreshed)
        }
        match fetched {
            Fetched::Answer { resp, from, security } => {
                let mut answer = resp.clone();
                wire::set_id(&mut answer, p.q.id);
                wire::copy_question(&mut answer, &p.query, p.q.question_end);
                self.meters.count(Outcome::Forwarded);
                self.meters.forwarded_latency.record(p.started.elapsed().as_secs_f64());
                let answer = fit(answer, &p.q, p.limit);
                self.log(
                    p.client,
                    Some(&p.q),
                    Outcome::Forwarded,
                    Some(&answer),
                    p.allowed.as_ref().map(|a| a.0.as_str()),
                    p.allowed.as_ref().map(|a| a.1.as_str()),
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
                    let (list, rule) =
                        (p.allowed.as_ref().map(|a| a.0.as_str()), p.allowed.as_ref().map(|a| a.1.as_str()));
                    self.log(p.client, Some(&p.q), Outcome::Stale, Some(&answer), list, rule, None, p.started, None);
                    return Some(answer);
                }
                tracing::warn!(name = %p.q.name, error = %e, "no upstream answered");
                self.meters.count(Outcome::Failed);
                let answer =
                    error_answer(&p.query, &p.q, RCODE_SERVFAIL, Some((EDE_NETWORK_ERROR, "no upstream answered")));
                self.log(p.client, Some(&p.q), Outcome::Failed, answer.as_deref(), None, None, None, p.started, None);
                answer
            }
            Fetched::Bogus { code, why, from } => {
                self.meters.count(Outcome::Bogus);
                let answer = error_answer(&p.query, &p.q, RCODE_SERVFAIL, Some((*code, why)));
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
                let answer = error_answer(&p.query, &p.q, RCODE_SERVFAIL, Some((EDE_BLOCKED, why)));
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
    pub(crate) fn take_prefetches(&self) -> Option<tokio::sync::mpsc::Receiver<Pending>> {
        self.prefetch_rx.locked().take()
    }

    /// The compiled `[dns]` settings in force.
    pub(crate) fn settings(&self) -> Arc<Settings> {
        self.settings.load_full()
    }

    /// Swap in what a config change prepared (see [`task::DnsApplier`]); `None` keeps the current one. Cannot fail.
    pub(crate) fn apply(&self, p: Prepared) {
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
    pub(crate) fn flush_cache(&self) -> usize {
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
    pub(crate) fn list_report(&self) -> Vec<(String, Result<ListStats, String>)> {
        self.list_report.locked().clone()
    }

    /// How many list compilations have run (a caller waits for the one its change caused).
    pub(crate) fn list_generation(&self) -> u64 {
        self.list_generation.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Compile the configured lists (call on the blocking pool) and swap the engine in. A list that cannot be read
    /// is reported and left out; the previous engine keeps serving until the new one is complete.
    pub(crate) fn reload_lists(
        &self,
        c: &DnsConfig,
        dir: &std::path::Path,
    ) -> Vec<(String, Result<ListStats, String>)> {
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
    pub(crate) fn list_failures(&self) -> Vec<String> {
        failures(&self.list_report.locked())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::ResponseCode;

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
}
