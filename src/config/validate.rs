//! [`Config::validate`]: the semantic checks types alone cannot express — ranges, syntax, uniqueness, keys that
//! depend on each other.
//!
//! Invariants: pure (no IO, no subsystem: what only a subsystem can check is compiled in its `prepare`); every
//! error names its key (`server.http_listen[0]: …`, `dns.lists[2].name: …`).

use std::net::{IpAddr, SocketAddr};

use super::{Config, ConfigError, DnsMode, Duration, ListenAddr, RouteTls, SCHEMA_VERSION};

impl Config {
    /// Semantic checks that types alone cannot express. Every error names its key.
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        if self.schema_version != SCHEMA_VERSION {
            return Err(ConfigError::invalid(
                "schema_version",
                format!("this hearth understands schema_version {SCHEMA_VERSION}, got {}", self.schema_version),
            ));
        }
        let s = &self.server;
        if s.http_listen.is_empty() {
            return Err(ConfigError::invalid("server.http_listen", "at least one address is required"));
        }
        check_unique("server.http_listen", &s.http_listen)?;
        check_unique("server.https_listen", &s.https_listen)?;
        // every TCP listener needs its own address
        let tcp: [(&str, &[ListenAddr]); 4] = [
            ("server.http_listen", &s.http_listen),
            ("server.https_listen", &s.https_listen),
            ("dns.listen", &self.dns.listen),
            ("dns.tls_listen", &self.dns.tls_listen),
        ];
        for (k, (key, addrs)) in tcp.iter().enumerate() {
            for (i, a) in addrs.iter().enumerate() {
                if let Some((other, _)) = tcp[..k].iter().find(|(_, earlier)| earlier.contains(a)) {
                    return Err(ConfigError::invalid(format!("{key}[{i}]"), format!("{a} is also in {other}")));
                }
            }
        }
        if s.data_dir.as_os_str().is_empty() {
            return Err(ConfigError::invalid("server.data_dir", "must not be empty"));
        }
        in_range("server.shutdown_timeout", s.shutdown_timeout, 1, 600)?;
        in_range("server.request_timeout", s.request_timeout, 1, 3600)?;
        if !(1024..=1024 * 1024 * 1024).contains(&s.max_body_bytes) {
            return Err(ConfigError::invalid("server.max_body_bytes", "must be between 1024 and 1073741824"));
        }
        if let Err(e) = tracing_subscriber::EnvFilter::builder().parse(&self.log.level) {
            return Err(ConfigError::invalid("log.level", format!("not a valid level or filter: {e}")));
        }
        in_range("auth.session_ttl", self.auth.session_ttl, 300, 366 * 24 * 3600)?;
        in_range("auth.login_max_delay", self.auth.login_max_delay, 1, 24 * 3600)?;
        if self.auth.login_free_attempts > 100 {
            return Err(ConfigError::invalid("auth.login_free_attempts", "must be at most 100"));
        }
        check_cidrs("server.admin_allow", &s.admin_allow)?;
        in_range("server.header_read_timeout", s.header_read_timeout, 1, 600)?;
        in_range("server.idle_timeout", s.idle_timeout, 1, 3600)?;
        if !(16..=1_000_000).contains(&s.max_connections) {
            return Err(ConfigError::invalid("server.max_connections", "must be between 16 and 1000000"));
        }
        if !(1..=s.max_connections).contains(&s.max_connections_per_client) {
            return Err(ConfigError::invalid(
                "server.max_connections_per_client",
                "must be between 1 and server.max_connections",
            ));
        }
        check_cidrs("proxy.trusted_proxies", &self.proxy.trusted_proxies)?;
        check_cidrs("dns.allow_clients", &self.dns.allow_clients)?;
        if !(1..=1_000_000).contains(&self.dns.max_inflight) {
            return Err(ConfigError::invalid("dns.max_inflight", "must be between 1 and 1000000"));
        }
        for (i, d) in self.dns.rebinding_allow.iter().enumerate() {
            crate::net::normalize_host(d.trim_start_matches("*."))
                .map_err(|e| ConfigError::invalid(format!("dns.rebinding_allow[{i}]"), e))?;
        }
        in_range("storage.busy_timeout", self.storage.busy_timeout, 1, 600)?;
        in_range("storage.maintenance_interval", self.storage.maintenance_interval, 60, 7 * 24 * 3600)?;
        check_unique("dns.listen", &self.dns.listen)?;
        check_unique("dns.tls_listen", &self.dns.tls_listen)?;
        self.validate_dns()?;
        self.validate_tls_proxy()?;
        self.validate_memory()?;
        self.validate_metrics()?;
        self.validate_alerts()?;
        self.validate_logs()?;
        self.validate_tracing()?;
        Ok(())
    }

    fn validate_tracing(&self) -> Result<(), ConfigError> {
        let t = &self.tracing;
        if !(0.0..=1.0).contains(&t.sample_ratio) {
            return Err(ConfigError::invalid("tracing.sample_ratio", "must be between 0 and 1"));
        }
        if !t.otlp_endpoint.is_empty() {
            let ok = reqwest::Url::parse(&t.otlp_endpoint)
                .is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some());
            if !ok {
                return Err(ConfigError::invalid(
                    "tracing.otlp_endpoint",
                    format!("{:?} is not an http(s) URL (e.g. \"http://collector:4318\")", t.otlp_endpoint),
                ));
            }
        }
        Ok(())
    }

    fn validate_logs(&self) -> Result<(), ConfigError> {
        let l = &self.logs;
        if l.retention.as_std().as_secs() < 3600 {
            return Err(ConfigError::invalid("logs.retention", "must be at least 1h"));
        }
        if l.max_disk.bytes() < 1 << 20 {
            return Err(ConfigError::invalid("logs.max_disk", "must be at least 1MB"));
        }
        for (i, a) in l.syslog_listen.iter().enumerate() {
            if a.parse::<std::net::SocketAddr>().is_err() {
                return Err(ConfigError::invalid(
                    format!("logs.syslog_listen[{i}]"),
                    format!("{a:?} is not an address:port (e.g. \"0.0.0.0:514\" or \"[::]:1514\")"),
                ));
            }
        }
        Ok(())
    }

    fn validate_metrics(&self) -> Result<(), ConfigError> {
        let m = &self.metrics;
        let secs = |d: super::Duration| d.as_std().as_secs();
        if !(1..=3600).contains(&secs(m.interval)) {
            return Err(ConfigError::invalid("metrics.interval", "must be between 1s and 1h"));
        }
        // each tier's open window is rebuilt from the finer tier, which must still hold it
        if secs(m.retention_raw) < 26 * 3600 {
            return Err(ConfigError::invalid(
                "metrics.retention_raw",
                "must be at least 26h (a day of 1-minute roll-ups is built from it)",
            ));
        }
        if secs(m.retention_1m) < 8 * 86_400 {
            return Err(ConfigError::invalid(
                "metrics.retention_1m",
                "must be at least 8d (a week of 1-hour roll-ups is built from it)",
            ));
        }
        if secs(m.retention_1h) < 7 * 86_400 {
            return Err(ConfigError::invalid("metrics.retention_1h", "must be at least 7d"));
        }
        if m.max_disk.bytes() < 1 << 20 {
            return Err(ConfigError::invalid("metrics.max_disk", "must be at least 1MB"));
        }
        let mut names = std::collections::HashSet::new();
        for (i, s) in m.scrape.iter().enumerate() {
            let key = |k: &str| format!("metrics.scrape[{i}].{k}");
            if s.name.trim().is_empty() {
                return Err(ConfigError::invalid(key("name"), "must not be empty (it becomes the job label)"));
            }
            if !names.insert(&s.name) {
                return Err(ConfigError::invalid(key("name"), format!("{:?} is used by another scrape", s.name)));
            }
            if !(s.url.starts_with("http://") || s.url.starts_with("https://")) {
                return Err(ConfigError::invalid(key("url"), "must be an http:// or https:// URL"));
            }
            if let Some(iv) = s.interval
                && !(1..=3600).contains(&secs(iv))
            {
                return Err(ConfigError::invalid(key("interval"), "must be between 1s and 1h"));
            }
            if let Some(t) = s.timeout
                && (t.as_std().is_zero() || t > s.interval.unwrap_or(m.interval))
            {
                return Err(ConfigError::invalid(key("timeout"), "must be above zero and at most the interval"));
            }
        }
        for (i, r) in m.remote_write.iter().enumerate() {
            let key = |k: &str| format!("metrics.remote_write[{i}].{k}");
            if !(r.url.starts_with("http://") || r.url.starts_with("https://")) {
                return Err(ConfigError::invalid(key("url"), "must be an http:// or https:// URL"));
            }
            if r.username.is_some() != r.password_file.is_some() {
                return Err(ConfigError::invalid(key("password_file"), "username and password_file go together"));
            }
            if r.username.is_some() && r.bearer_token_file.is_some() {
                return Err(ConfigError::invalid(
                    key("bearer_token_file"),
                    "use basic auth or a bearer token, not both",
                ));
            }
        }
        Ok(())
    }

    fn validate_alerts(&self) -> Result<(), ConfigError> {
        let a = &self.alerts;
        let secs = |d: super::Duration| d.as_std().as_secs();
        if !(1..=3600).contains(&secs(a.evaluation_interval)) {
            return Err(ConfigError::invalid("alerts.evaluation_interval", "must be between 1s and 1h"));
        }
        if secs(a.repeat_interval) < 60 {
            return Err(ConfigError::invalid("alerts.repeat_interval", "must be at least 1m"));
        }
        if !(a.external_url.is_empty()
            || a.external_url.starts_with("http://")
            || a.external_url.starts_with("https://"))
        {
            return Err(ConfigError::invalid("alerts.external_url", "must be an http:// or https:// URL, or empty"));
        }
        let severities = ["info", "warning", "critical"];
        let mut names = std::collections::HashSet::new();
        for (i, r) in a.rules.iter().enumerate() {
            let key = |k: &str| format!("alerts.rules[{i}].{k}");
            if r.name.trim().is_empty() || !r.name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
                return Err(ConfigError::invalid(key("name"), "must be letters, digits, '_' or '-'"));
            }
            if !names.insert(&r.name) {
                return Err(ConfigError::invalid(key("name"), format!("{:?} is used by another rule", r.name)));
            }
            if r.expr.trim().is_empty() {
                return Err(ConfigError::invalid(key("expr"), "must not be empty"));
            }
            if !severities.contains(&r.severity.as_str()) {
                return Err(ConfigError::invalid(key("severity"), "must be \"info\", \"warning\" or \"critical\""));
            }
        }
        let mut names = std::collections::HashSet::new();
        for (i, c) in a.channels.iter().enumerate() {
            let key = |k: &str| format!("alerts.channels[{i}].{k}");
            if c.name.trim().is_empty() {
                return Err(ConfigError::invalid(key("name"), "must not be empty"));
            }
            if !names.insert(&c.name) {
                return Err(ConfigError::invalid(key("name"), format!("{:?} is used by another channel", c.name)));
            }
            if !severities.contains(&c.min_severity.as_str()) {
                return Err(ConfigError::invalid(key("min_severity"), "must be \"info\", \"warning\" or \"critical\""));
            }
        }
        Ok(())
    }

    fn validate_memory(&self) -> Result<(), ConfigError> {
        let m = &self.memory;
        let count = |key: &str, v: usize, min: usize, max: usize| {
            if (min..=max).contains(&v) {
                Ok(())
            } else {
                Err(ConfigError::invalid(key, format!("must be between {min} and {max}")))
            }
        };
        if m.model.trim().is_empty() {
            return Err(ConfigError::invalid("memory.model", "must not be empty"));
        }
        if m.model != "all-MiniLM-L6-v2" && !std::path::Path::new(&m.model).is_absolute() {
            return Err(ConfigError::invalid(
                "memory.model",
                "expected \"all-MiniLM-L6-v2\" or the absolute path of a model directory",
            ));
        }
        count("memory.threads", m.threads, 0, 256)?;
        count("memory.max_tokens", m.max_tokens, 8, 8192)?;
        count("memory.max_batch_tokens", m.max_batch_tokens, 256, 1 << 20)?;
        count("memory.queue", m.queue, 1, 100_000)?;
        count("memory.max_inputs", m.max_inputs, 1, 4096)?;
        count("memory.max_input_chars", m.max_input_chars, 1, 1_000_000)?;
        count("memory.cache_entries", m.cache_entries, 0, 10_000_000)?;
        count("memory.index_threshold", m.index_threshold, 256, 1 << 30)?;
        count("memory.ann_nprobes", m.ann_nprobes, 1, 4096)?;
        count("memory.ann_refine_factor", m.ann_refine_factor as usize, 0, 100)?;
        count("memory.ann_ef", m.ann_ef, 1, 10_000)?;
        count("memory.ram_index_probes", m.ram_index_probes, 1, 4096)?;
        if !(1024..=1024 * 1024 * 1024).contains(&m.max_body_bytes) {
            return Err(ConfigError::invalid("memory.max_body_bytes", "must be between 1024 and 1073741824"));
        }
        if m.max_batch_wait.as_std() > std::time::Duration::from_secs(1) {
            return Err(ConfigError::invalid("memory.max_batch_wait", "must be at most 1s"));
        }
        in_range("memory.request_timeout", m.request_timeout, 1, 3600)?;
        in_range("memory.optimize_interval", m.optimize_interval, 60, 7 * 24 * 3600)?;
        Ok(())
    }

    fn validate_tls_proxy(&self) -> Result<(), ConfigError> {
        for (i, h) in self.server.admin_hosts.iter().enumerate() {
            crate::net::normalize_host(h).map_err(|e| ConfigError::invalid(format!("server.admin_hosts[{i}]"), e))?;
        }
        let t = &self.tls;
        let uses_acme = self.proxy.routes.iter().any(|r| r.tls == RouteTls::Acme);
        if uses_acme && !t.acme_directory.starts_with("https://") {
            return Err(ConfigError::invalid("tls.acme_directory", "must be an https:// URL"));
        }
        if !t.acme_email.is_empty() && (!t.acme_email.contains('@') || t.acme_email.contains(char::is_whitespace)) {
            return Err(ConfigError::invalid("tls.acme_email", "must be an e-mail address"));
        }
        if t.acme_challenges.is_empty() {
            return Err(ConfigError::invalid("tls.acme_challenges", "at least one challenge type is needed"));
        }
        for (i, c) in t.acme_challenges.iter().enumerate() {
            if !["http-01", "tls-alpn-01", "dns-01"].contains(&c.as_str()) {
                return Err(ConfigError::invalid(
                    format!("tls.acme_challenges[{i}]"),
                    "must be \"http-01\", \"tls-alpn-01\" or \"dns-01\"",
                ));
            }
        }
        if (t.acme_challenges.iter().any(|c| c == "dns-01") || !t.dns01_server.is_empty())
            && t.dns01_server.parse::<SocketAddr>().is_err()
        {
            return Err(ConfigError::invalid("tls.dns01_server", "must be ip:port (the zone's primary server)"));
        }
        for (i, r) in self.proxy.routes.iter().enumerate() {
            let wildcard = r.hosts.iter().position(|h| h.trim().starts_with("*."));
            if let Some(j) = wildcard
                && r.tls == RouteTls::Acme
                && !t.acme_challenges.iter().any(|c| c == "dns-01")
                && !crate::net::is_local_name(r.hosts[j].trim().trim_start_matches("*."), &self.dns.local_domains)
            {
                return Err(ConfigError::invalid(
                    format!("proxy.routes[{i}].hosts[{j}]"),
                    "an ACME wildcard certificate needs the dns-01 challenge (tls.acme_challenges, tls.dns01_server)",
                ));
            }
        }
        in_range("tls.internal_lifetime", t.internal_lifetime, 3600, 366 * 86_400)?;
        if !self.proxy.address.is_empty() && self.proxy.address.parse::<IpAddr>().is_err() {
            return Err(ConfigError::invalid("proxy.address", "must be an IP address or empty"));
        }
        Ok(())
    }

    fn validate_dns(&self) -> Result<(), ConfigError> {
        let d = &self.dns;
        if d.mode == DnsMode::Forward && d.upstreams.is_empty() && !d.listen.is_empty() {
            return Err(ConfigError::invalid("dns.upstreams", "at least one upstream is needed in forward mode"));
        }
        in_range("dns.upstream_timeout", d.upstream_timeout, 0, 30)?;
        if d.upstream_timeout.as_std() < std::time::Duration::from_millis(100) {
            return Err(ConfigError::invalid("dns.upstream_timeout", "must be at least 100ms"));
        }
        in_range("dns.blocked_ttl", d.blocked_ttl, 0, 86_400)?;
        if d.cache.size > 10_000_000 {
            return Err(ConfigError::invalid("dns.cache.size", "must be at most 10000000 entries"));
        }
        in_range("dns.cache.max_ttl", d.cache.max_ttl, 0, 7 * 86_400)?;
        in_range("dns.cache.min_ttl", d.cache.min_ttl, 0, 86_400)?;
        if d.cache.min_ttl > d.cache.max_ttl {
            return Err(ConfigError::invalid("dns.cache.min_ttl", "must not exceed dns.cache.max_ttl"));
        }
        in_range("dns.cache.max_negative_ttl", d.cache.max_negative_ttl, 0, 86_400)?;
        in_range("dns.cache.serve_stale", d.cache.serve_stale, 0, 30 * 86_400)?;
        in_range("dns.querylog.retention", d.querylog.retention, 60, 366 * 86_400)?;
        in_range("dns.querylog.flush_interval", d.querylog.flush_interval, 0, 600)?;
        if !(100..=100_000_000).contains(&d.querylog.max_entries) {
            return Err(ConfigError::invalid("dns.querylog.max_entries", "must be between 100 and 100000000"));
        }
        for (i, g) in d.groups.iter().enumerate() {
            if g.name.trim().is_empty() || d.groups[..i].iter().any(|o| o.name == g.name) {
                return Err(ConfigError::invalid(format!("dns.groups[{i}].name"), "must be set and unique"));
            }
        }
        // upstreams, blocking mode, groups, exemptions, records and the list count are checked where they are
        // compiled, once, when a change is prepared (`dns::task`): one parser each
        for (i, l) in d.lists.iter().enumerate() {
            if l.name.trim().is_empty() || d.lists[..i].iter().any(|o| o.name == l.name) {
                return Err(ConfigError::invalid(format!("dns.lists[{i}].name"), "must be set and unique"));
            }
            in_range(&format!("dns.lists[{i}].update"), l.update, 60, 30 * 86_400)?;
            if l.source.trim().is_empty() {
                return Err(ConfigError::invalid(format!("dns.lists[{i}].source"), "must be a file path"));
            }
        }
        Ok(())
    }
}

fn check_cidrs(key: &str, list: &[String]) -> Result<(), ConfigError> {
    for (i, c) in list.iter().enumerate() {
        crate::net::Cidr::parse(c).map_err(|e| ConfigError::invalid(format!("{key}[{i}]"), e))?;
    }
    Ok(())
}

fn check_unique(key: &str, addrs: &[ListenAddr]) -> Result<(), ConfigError> {
    for (i, a) in addrs.iter().enumerate() {
        if addrs[..i].contains(a) {
            return Err(ConfigError::invalid(format!("{key}[{i}]"), format!("{a} is listed twice")));
        }
    }
    Ok(())
}

fn in_range(key: &str, d: Duration, min_secs: u64, max_secs: u64) -> Result<(), ConfigError> {
    let secs = d.as_std().as_secs_f64();
    if secs < min_secs as f64 || secs > max_secs as f64 {
        return Err(ConfigError::invalid(
            key,
            format!("{d} is out of range ({} to {})", Duration::from_secs(min_secs), Duration::from_secs(max_secs)),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::AnnIndex;

    fn err(text: &str) -> ConfigError {
        Config::from_toml(text, "t.toml").unwrap_err()
    }

    #[test]
    fn ann_index_types_parse_and_bad_ones_name_their_key() {
        let c = Config::from_toml("[memory]\nann_index = \"ivf_hnsw_sq\"\nann_ef = 100\n", "t.toml").unwrap();
        assert_eq!((c.memory.ann_index, c.memory.ann_ef), (AnnIndex::IvfHnswSq, 100));
        let c = Config::from_toml("[memory]\nann_index = \"ivf_sq\"\n", "t.toml").unwrap();
        assert_eq!(c.memory.ann_index, AnnIndex::IvfSq);
        assert_eq!(err("[memory]\nann_index = \"hnsw\"\n").key(), Some("memory.ann_index"));
        assert_eq!(err("[memory]\nann_ef = 0\n").key(), Some("memory.ann_ef"));
        assert_eq!(err("[memory]\nann_refine_factor = 101\n").key(), Some("memory.ann_refine_factor"));
        let c = Config::from_toml("[memory]\nram_index = false\nram_index_probes = 20\n", "t.toml").unwrap();
        assert_eq!((c.memory.ram_index, c.memory.ram_index_probes), (false, 20));
        assert_eq!(err("[memory]\nram_index_probes = 0\n").key(), Some("memory.ram_index_probes"));
        assert_eq!(err("[memory]\nram_index = 1\n").key(), Some("memory.ram_index"));
    }
}
