//! The routing table (pure core): which route serves a request, by host and path prefix. Built once per config
//! and swapped atomically; a lookup never allocates.
//!
//! Rules: an exact host beats a `*.domain` wildcard (which matches exactly one more label); among the routes of a
//! host the longest matching path prefix wins. A prefix ending in `/` matches by string prefix; `/app` matches
//! `/app`, `/app/…` and `/app?…` but not `/apple`.

use std::collections::HashMap;

use crate::config::ProxyRoute;
use crate::net::Cidr;

pub(crate) use crate::net::{normalize_host, request_host};

fn prefix_matches(prefix: &str, path: &str) -> bool {
    if prefix.ends_with('/') {
        return path.starts_with(prefix);
    }
    match path.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || rest.starts_with('/') || rest.starts_with('?'),
        None => false,
    }
}

#[derive(Debug, Default, Clone)]
pub(crate) struct RouteTable {
    /// host → route indexes, longest prefix first
    exact: HashMap<String, Vec<(String, usize)>>,
    /// parent domain of a `*.domain` host → route indexes, longest prefix first
    wildcard: HashMap<String, Vec<(String, usize)>>,
}

impl RouteTable {
    /// Compile the routes; errors name the key (`proxy.routes[2].hosts[0]`).
    pub(crate) fn build(routes: &[ProxyRoute]) -> Result<RouteTable, (String, String)> {
        let mut t = RouteTable::default();
        for (i, r) in routes.iter().enumerate() {
            let key = |k: &str| format!("proxy.routes[{i}].{k}");
            if r.hosts.is_empty() {
                return Err((key("hosts"), "at least one host is required".into()));
            }
            if !r.path_prefix.starts_with('/') {
                return Err((key("path_prefix"), "must start with /".into()));
            }
            // requests are matched on their normalised path, so a prefix must be normalised too
            match super::path::normalize(&r.path_prefix) {
                Ok(n) if n == r.path_prefix => {}
                Ok(n) => return Err((key("path_prefix"), format!("must be written as {n:?} (normalised)"))),
                Err(e) => return Err((key("path_prefix"), e.to_string())),
            }
            for (j, h) in r.hosts.iter().enumerate() {
                let h = normalize_host(h).map_err(|e| (key(&format!("hosts[{j}]")), e))?;
                let (map, name) = match h.strip_prefix("*.") {
                    Some(parent) => (&mut t.wildcard, parent.to_string()),
                    None => (&mut t.exact, h.clone()),
                };
                let list = map.entry(name).or_default();
                if list.iter().any(|(p, _)| *p == r.path_prefix) {
                    return Err((
                        key(&format!("hosts[{j}]")),
                        format!("{h}{} is already served by another route", r.path_prefix),
                    ));
                }
                list.push((r.path_prefix.clone(), i));
                list.sort_by_key(|(p, _)| std::cmp::Reverse(p.len()));
            }
        }
        Ok(t)
    }

    /// Every check of a route list, for config validation.
    pub(crate) fn check(routes: &[ProxyRoute]) -> Result<(), (String, String)> {
        Self::build(routes)?;
        for (i, r) in routes.iter().enumerate() {
            let key = |k: &str| format!("proxy.routes[{i}].{k}");
            if r.upstreams.is_empty() {
                return Err((key("upstreams"), "at least one upstream is required".into()));
            }
            for (j, u) in r.upstreams.iter().enumerate() {
                super::pool::UpstreamAddr::parse(u).map_err(|e| (key(&format!("upstreams[{j}]")), e))?;
            }
            super::pool::Strategy::parse(&r.strategy).map_err(|e| (key("strategy"), e))?;
            if !r.health_path.is_empty() && !r.health_path.starts_with('/') {
                return Err((key("health_path"), "must start with / (or be empty: no active checks)".into()));
            }
            if r.health_status != 0 && !(100..=599).contains(&r.health_status) {
                return Err((key("health_status"), "must be an HTTP status (or 0: any 2xx/3xx)".into()));
            }
            let secs = |d: crate::config::Duration| d.as_std().as_secs_f64();
            if !(1.0..=3600.0).contains(&secs(r.health_interval)) {
                return Err((key("health_interval"), "must be between 1s and 1h".into()));
            }
            if !(0.0..=86_400.0).contains(&secs(r.fail_timeout)) {
                return Err((key("fail_timeout"), "must be at most 1d".into()));
            }
            if r.max_fails == 0 {
                return Err((key("max_fails"), "must be at least 1".into()));
            }
            if r.retries > 10 {
                return Err((key("retries"), "must be at most 10".into()));
            }
            if !(0.1..=300.0).contains(&secs(r.connect_timeout)) {
                return Err((key("connect_timeout"), "must be between 100ms and 5m".into()));
            }
            if !(1.0..=86_400.0).contains(&secs(r.timeout)) {
                return Err((key("timeout"), "must be between 1s and 1d".into()));
            }
            for (name, value) in &r.headers {
                if axum::http::HeaderName::try_from(name.as_str()).is_err() {
                    return Err((key(&format!("headers.{name}")), "is not a valid header name".into()));
                }
                if axum::http::HeaderValue::try_from(value.as_str()).is_err() {
                    return Err((key(&format!("headers.{name}")), "is not a valid header value".into()));
                }
            }
            for (j, b) in r.basic_auth.iter().enumerate() {
                super::mw::parse_basic_user(b).map_err(|e| (key(&format!("basic_auth[{j}]")), e))?;
            }
            for (field, list) in [("allow", &r.allow), ("deny", &r.deny)] {
                for (j, c) in list.iter().enumerate() {
                    Cidr::parse(c).map_err(|e| (key(&format!("{field}[{j}]")), e))?;
                }
            }
        }
        Ok(())
    }

    /// The route serving `host` (already normalised by [`request_host`]) and `path`.
    pub(crate) fn lookup(&self, host: &str, path: &str) -> Option<usize> {
        let pick = |list: &Vec<(String, usize)>| list.iter().find(|(p, _)| prefix_matches(p, path)).map(|(_, i)| *i);
        if let Some(i) = self.exact.get(host).and_then(pick) {
            return Some(i);
        }
        let parent = host.split_once('.')?.1;
        self.wildcard.get(parent).and_then(pick)
    }

    /// Whether any route claims `host` (for any path).
    /// The routes serving `host` (its exact entry, else its wildcard), longest path prefix first.
    pub(crate) fn host_routes(&self, host: &str) -> impl Iterator<Item = usize> + '_ {
        let list = self.exact.get(host).or_else(|| self.wildcard.get(host.split_once('.')?.1));
        list.into_iter().flatten().map(|(_, i)| *i)
    }

    pub(crate) fn has_host(&self, host: &str) -> bool {
        self.exact.contains_key(host) || host.split_once('.').is_some_and(|(_, p)| self.wildcard.contains_key(p))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(hosts: &[&str], prefix: &str) -> ProxyRoute {
        ProxyRoute {
            hosts: hosts.iter().map(|h| h.to_string()).collect(),
            path_prefix: prefix.into(),
            upstreams: vec!["http://127.0.0.1:1".into()],
            ..Default::default()
        }
    }

    #[test]
    fn exact_beats_wildcard_and_longest_prefix_wins() {
        let t = RouteTable::build(&[
            route(&["*.example.com"], "/"),
            route(&["app.example.com"], "/"),
            route(&["app.example.com"], "/api"),
            route(&["App.Example.com."], "/api"),
        ])
        .unwrap_err();
        assert_eq!(t.0, "proxy.routes[3].hosts[0]", "names are normalised before the duplicate check: {}", t.1);
        let t = RouteTable::build(&[
            route(&["*.example.com"], "/"),
            route(&["app.example.com"], "/"),
            route(&["app.example.com"], "/api"),
            route(&["app.example.com"], "/api/v2/"),
        ])
        .unwrap();
        assert_eq!(t.lookup("app.example.com", "/"), Some(1));
        assert_eq!(t.lookup("app.example.com", "/api"), Some(2));
        assert_eq!(t.lookup("app.example.com", "/api/x"), Some(2));
        assert_eq!(t.lookup("app.example.com", "/apix"), Some(1), "/api does not match /apix");
        assert_eq!(t.lookup("app.example.com", "/api/v2/x"), Some(3));
        assert_eq!(t.lookup("other.example.com", "/api"), Some(0));
        assert_eq!(t.lookup("a.b.example.com", "/"), None, "a wildcard covers one label");
        assert_eq!(t.lookup("example.com", "/"), None);
        assert!(t.has_host("zzz.example.com") && !t.has_host("example.org"));
    }

    #[test]
    fn a_host_without_a_root_route_falls_through() {
        let t = RouteTable::build(&[route(&["app.example.com"], "/api")]).unwrap();
        assert_eq!(t.lookup("app.example.com", "/"), None);
        assert_eq!(t.lookup("app.example.com", "/api?x=1"), Some(0));
    }

    #[test]
    fn hosts_from_headers() {
        assert_eq!(request_host("App.Example.COM:8443"), "app.example.com");
        assert_eq!(request_host("app.example.com."), "app.example.com");
        assert_eq!(request_host("[::1]:443"), "::1");
        assert_eq!(request_host("192.168.1.2"), "192.168.1.2");
    }

    #[test]
    fn checks_name_the_key() {
        let mut r = route(&["ok.example.com"], "/");
        r.upstreams = vec!["ftp://x".into()];
        assert_eq!(RouteTable::check(&[r]).unwrap_err().0, "proxy.routes[0].upstreams[0]");
        let r = route(&["bad host"], "/");
        assert_eq!(RouteTable::check(&[r]).unwrap_err().0, "proxy.routes[0].hosts[0]");
        let mut r = route(&["ok.example.com"], "/");
        r.strategy = "random".into();
        assert_eq!(RouteTable::check(&[r]).unwrap_err().0, "proxy.routes[0].strategy");
        let mut r = route(&["ok.example.com"], "/");
        r.deny = vec!["10.0.0.0/33".into()];
        assert_eq!(RouteTable::check(&[r]).unwrap_err().0, "proxy.routes[0].deny[0]");
        let r = route(&[], "/");
        assert_eq!(RouteTable::check(&[r]).unwrap_err().0, "proxy.routes[0].hosts");
    }
}
