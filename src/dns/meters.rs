//! What the resolver counts: [`Outcome`] (one per answered query, the `outcome` label of
//! `hearth_dns_queries_total` and the query log's outcome) and `Meters`, the metric handles registered once so
//! that answering a query costs atomic increments, not registry lookups.

/// The outcome of a query, for metrics (and the query log to come). The discriminant indexes `Meters::outcomes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
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
    pub(super) fn as_str(self) -> &'static str {
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
pub(super) struct Meters {
    outcomes: [metrics::Counter; 10],
    /// DNSSEC verdicts: secure, insecure, bogus.
    dnssec: [metrics::Counter; 3],
    pub(super) prefetch: metrics::Counter,
    pub(super) cache_hit: metrics::Counter,
    pub(super) cache_miss: metrics::Counter,
    pub(super) cache_entries: metrics::Gauge,
    pub(super) forwarded_latency: metrics::Histogram,
    /// Queries that found no place in flight (`dns.max_inflight`) and got SERVFAIL.
    pub(super) overload: metrics::Counter,
    /// Queries answered by another's upstream query for the same question.
    pub(super) coalesced: metrics::Counter,
}

impl Meters {
    pub(super) fn new() -> Self {
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

    #[inline]
    pub(super) fn count(&self, o: Outcome) {
        self.outcomes[o as usize].increment(1);
    }

    /// A DNSSEC verdict the client was served: secure or insecure.
    #[inline]
    pub(super) fn dnssec_verdict(&self, secure: bool) {
        self.dnssec[usize::from(!secure)].increment(1);
    }

    /// A DNSSEC validation that failed.
    #[inline]
    pub(super) fn dnssec_bogus(&self) {
        self.dnssec[2].increment(1);
    }
}
