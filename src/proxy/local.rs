//! DNS integration: the A/AAAA records hearth's own DNS gives route hosts that are local names, handed to the DNS
//! subsystem by the wiring (`dns::task::ExtraRecords`), never imported by it.
//!
//! Invariants: pure functions of the config (and, for [`advertised_address`] without `proxy.address` or a specific
//! HTTPS listener, the LAN interface's address); wildcard hosts, IP literals and public names get no record.

use std::net::IpAddr;

use crate::config::Config;

/// DNS integration: route hosts that are local names (`*.home.arpa`, `dns.local_domains`, …) resolve to
/// `address` in hearth's own DNS. Wildcard hosts are left out (the local zone has no wildcards).
pub(crate) fn local_records(cfg: &Config, address: Option<IpAddr>) -> Vec<(String, String, String, u32)> {
    let Some(ip) = address else { return vec![] };
    let rtype = if ip.is_ipv4() { "A" } else { "AAAA" };
    let mut out: Vec<(String, String, String, u32)> = vec![];
    for r in &cfg.proxy.routes {
        for h in &r.hosts {
            let h = h.trim().trim_end_matches('.').to_ascii_lowercase();
            if h.starts_with("*.") || h.parse::<IpAddr>().is_ok() || out.iter().any(|o| o.0 == h) {
                continue;
            }
            if crate::net::is_local_name(&h, &cfg.dns.local_domains) {
                out.push((h, rtype.into(), ip.to_string(), 60));
            }
        }
    }
    out
}

/// The address local route names resolve to: `proxy.address`, else the first HTTPS listener's specific address,
/// else the address of the interface with the default route.
pub(crate) fn advertised_address(cfg: &Config) -> Option<IpAddr> {
    if let Ok(ip) = cfg.proxy.address.parse() {
        return Some(ip);
    }
    if let Some(a) = cfg.server.https_listen.iter().find(|a| !a.0.ip().is_unspecified()) {
        return Some(a.0.ip());
    }
    crate::tls::lan_address()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ProxyRoute;

    #[test]
    fn local_route_names_resolve_to_hearth() {
        let mut cfg = Config::default();
        cfg.proxy.routes = vec![ProxyRoute {
            hosts: vec!["jelly.home.arpa".into(), "*.home.arpa".into(), "app.example.com".into()],
            upstreams: vec!["http://127.0.0.1:1".into()],
            ..Default::default()
        }];
        let recs = local_records(&cfg, Some("192.168.1.5".parse().unwrap()));
        assert_eq!(recs, [("jelly.home.arpa".to_string(), "A".to_string(), "192.168.1.5".to_string(), 60)]);
        assert!(local_records(&cfg, None).is_empty());
        let zone = crate::dns::local_zone_with(&cfg.dns, &recs).unwrap();
        assert!(zone.lookup("jelly.home.arpa", 1).is_some());
    }
}
