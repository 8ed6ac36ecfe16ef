//! The compiled `[dns]` settings: [`Settings::from_config`] is the one parser of the section (upstreams, strategy,
//! forward zones, trust anchors, root hints, blocking mode, groups, exemptions), run once per config change in the
//! applier's prepare; an error is `(key, reason)`. Beside it the other compilers of the section: the local zone
//! ([`local_zone`], [`local_zone_with`]), the cache and query-log policies, and the pure [`forward_zone`] match.

use std::net::IpAddr;
use std::sync::Arc;

use hickory_proto::rr::Name;

use super::blocklist::ListSet;
use super::cache::CachePolicy;
use super::upstream::{self, Upstream};
use super::{dnssec, groups, local, querylog, recursor};
use crate::config::DnsConfig;

/// How blocked names are answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BlockingMode {
    /// 0.0.0.0 for A, :: for AAAA, no data for other types.
    NullIp,
    NxDomain,
    Refused,
    Custom(IpAddr),
}

impl BlockingMode {
    pub(crate) fn parse(s: &str) -> Result<Self, String> {
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
pub(crate) struct Settings {
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
    /// The query log keeps only the client's network (`dns.querylog.anonymize_clients`).
    pub anonymize_clients: bool,
    /// The DNSSEC validator (None: `dns.dnssec = false`).
    pub dnssec: Option<Arc<dnssec::Validator>>,
    /// Recursive mode: the resolver that asks the authoritative servers (None: forward to the upstreams).
    pub recursor: Option<Arc<recursor::Recursor>>,
    /// Conditional forwarding: (domain, its servers), longest domain first.
    pub forward_zones: Vec<(String, Arc<upstream::Pool>)>,
}

/// The forward zone a name (lowercase, no trailing dot) falls in: the longest domain it equals or ends with.
pub(crate) fn forward_zone<'a, T>(zones: &'a [(String, T)], name: &str) -> Option<&'a T> {
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
    pub(crate) fn from_config(c: &DnsConfig) -> Result<Self, (String, String)> {
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
            anonymize_clients: c.querylog.anonymize_clients,
        })
    }
}

/// The local zone described by the config; errors carry the key (`dns.records[2].value`).
pub(crate) fn local_zone(c: &DnsConfig) -> Result<local::LocalZone, (String, String)> {
    local_zone_with(c, &[])
}

/// The local zone with `extra` records after the configured ones (e.g. proxy routes on local names).
pub(crate) fn local_zone_with(
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
    local::LocalZone::build(&records, &c.local_domains).map_err(|(i, field, e)| {
        let key = if i == usize::MAX { "dns.local_domains".to_string() } else { format!("dns.records[{i}].{field}") };
        (key, e)
    })
}

pub(crate) fn querylog_policy(c: &DnsConfig) -> querylog::LogPolicy {
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

pub(crate) fn cache_policy(c: &DnsConfig) -> CachePolicy {
    CachePolicy {
        max_entries: c.cache.size,
        min_ttl: c.cache.min_ttl.as_std().as_secs() as u32,
        max_ttl: c.cache.max_ttl.as_std().as_secs() as u32,
        max_negative_ttl: c.cache.max_negative_ttl.as_std().as_secs() as u32,
        serve_stale: c.cache.serve_stale.as_std().as_secs() as u32,
        prefetch: c.cache.prefetch,
    }
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
}
