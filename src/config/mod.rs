//! `hearth.toml`: the typed configuration, its defaults, validation and loading.
//!
//! The commented default file (`assets/hearth.default.toml`) is the config reference; a test checks that it parses
//! to exactly `Config::default()` and documents every key. Errors always name the key (`server.http_listen[0]`).
//!
//! This file holds [`Config`], [`ConfigError`] and loading ([`ConfigSource`], [`Config::from_toml`]/`from_json`,
//! [`parse_document`], [`merge_patch`], [`redact`]/[`unredact`]); the section structs are in `sections.rs`, listen
//! addresses in `listen.rs`, [`Config::validate`] in `validate.rs`, durations in `duration.rs`, schema upgrades in
//! `migrate.rs`, writing back in `persist.rs` and the running config in `live.rs`.
//!
//! Invariants: a `Config` value that exists has passed [`Config::validate`]; this module does no socket IO.

mod duration;
mod listen;
pub(crate) mod live;
pub(crate) mod migrate;
pub(crate) mod persist;
mod sections;
mod size;
mod validate;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub(crate) use duration::Duration;
pub(crate) use listen::ListenAddr;
pub use sections::*;
pub(crate) use size::ByteSize;

/// The configuration schema this binary writes and understands.
pub(crate) const SCHEMA_VERSION: i64 = 1;

/// The fully commented default configuration (also printed by `hearth config default`).
pub(crate) const DEFAULT_TOML: &str = include_str!("../../assets/hearth.default.toml");

/// The production configuration installed by the .deb (binds the standard ports on the LAN).
#[cfg(test)]
pub(crate) const PRODUCTION_TOML: &str = include_str!("../../packaging/hearth.production.toml");

#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub(crate) enum ConfigError {
    #[error("cannot read {path}: {reason}")]
    Read { path: String, reason: String },
    #[error("{path}: TOML syntax error: {reason}")]
    Syntax { path: String, reason: String },
    #[error("{key}: {reason}")]
    Invalid { key: String, reason: String },
    #[error("cannot write {path}: {reason}")]
    Write { path: String, reason: String },
    /// `If-Match` named another version than the running one.
    #[error("the configuration changed since it was read (now {current}); reload it and apply the change again")]
    Stale { current: String },
    /// An edit addressed something that is not there (e.g. a route id).
    #[error("{0}")]
    NotFound(String),
}

impl ConfigError {
    pub(crate) fn invalid(key: impl Into<String>, reason: impl Into<String>) -> Self {
        ConfigError::Invalid { key: key.into(), reason: reason.into() }
    }

    /// The offending key, when the error is about one.
    #[cfg(test)]
    pub(crate) fn key(&self) -> Option<&str> {
        match self {
            ConfigError::Invalid { key, .. } => Some(key),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct Config {
    pub schema_version: i64,
    pub server: ServerConfig,
    pub log: LogConfig,
    pub auth: AuthConfig,
    pub storage: StorageConfig,
    pub dns: DnsConfig,
    pub tls: TlsConfig,
    pub proxy: ProxyConfig,
    pub memory: MemoryConfig,
    pub metrics: MetricsConfig,
    pub alerts: AlertsConfig,
    pub logs: LogsConfig,
    pub tracing: TracingConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            schema_version: SCHEMA_VERSION,
            server: ServerConfig::default(),
            log: LogConfig::default(),
            auth: AuthConfig::default(),
            storage: StorageConfig::default(),
            dns: DnsConfig::default(),
            tls: TlsConfig::default(),
            proxy: ProxyConfig::default(),
            memory: MemoryConfig::default(),
            metrics: MetricsConfig::default(),
            alerts: AlertsConfig::default(),
            logs: LogsConfig::default(),
            tracing: TracingConfig::default(),
        }
    }
}

impl Config {
    /// Parse, migrate and validate a configuration text. `origin` names the file in errors.
    pub(crate) fn from_toml(text: &str, origin: &str) -> Result<Config, ConfigError> {
        let mut doc = parse_document(text, origin)?;
        migrate::migrate(&mut doc)?;
        Self::from_document(&doc)
    }

    /// Deserialize an already migrated document.
    pub(crate) fn from_document(doc: &toml_edit::DocumentMut) -> Result<Config, ConfigError> {
        let value: toml::Value = toml::from_str(&doc.to_string())
            .map_err(|e| ConfigError::Syntax { path: "config".into(), reason: e.to_string() })?;
        Self::from_value(value)
    }

    fn from_value<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Config, ConfigError>
    where
        D::Error: std::fmt::Display,
    {
        let cfg: Config = serde_path_to_error::deserialize(d).map_err(|e| {
            let key = e.path().to_string();
            let key = if key == "." { "config".to_string() } else { key };
            ConfigError::invalid(key, e.inner().to_string())
        })?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Build a config from its JSON form (the API's view), validating it.
    pub(crate) fn from_json(value: serde_json::Value) -> Result<Config, ConfigError> {
        Self::from_value(value)
    }

    /// The data directory, resolved against the current directory.
    pub(crate) fn data_dir(&self) -> PathBuf {
        absolute(&self.server.data_dir)
    }
}

fn absolute(p: &Path) -> PathBuf {
    let joined = if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir().map(|d| d.join(p)).unwrap_or_else(|_| p.to_path_buf())
    };
    // drops interior "." segments: /srv/./data → /srv/data
    joined.components().collect()
}

/// What secrets look like in the API's view of the configuration (`GET /api/v1/config`, the proxy routes).
pub(crate) const REDACTED: &str = "(redacted)";

/// Hide the secrets of a config's JSON form: `tls.dns01_tsig_key` keeps its name and algorithm, a route's
/// `basic_auth` entries keep their user. [`unredact`] puts them back, so a client can send back what it read.
pub(crate) fn redact(json: &mut serde_json::Value) {
    if let Some(k) = json.pointer_mut("/tls/dns01_tsig_key") {
        *k = redact_tsig(k.as_str().unwrap_or(""));
    }
    if let Some(routes) = json.pointer_mut("/proxy/routes").and_then(|r| r.as_array_mut()) {
        for r in routes {
            redact_route(r);
        }
    }
    // channel URLs carry tokens: only their scheme shows
    if let Some(chs) = json.pointer_mut("/alerts/channels").and_then(|r| r.as_array_mut()) {
        for c in chs {
            if let Some(u) = c.get_mut("url")
                && let Some((scheme, _)) = u.as_str().and_then(|s| s.split_once("://"))
            {
                *u = serde_json::Value::String(format!("{scheme}://{REDACTED}"));
            }
        }
    }
}

/// A route's JSON form with its `basic_auth` hashes hidden.
pub(crate) fn redact_route(route: &mut serde_json::Value) {
    if let Some(list) = route.get_mut("basic_auth").and_then(|b| b.as_array_mut()) {
        for e in list {
            if let Some((user, _)) = e.as_str().and_then(|s| s.split_once(':')) {
                *e = serde_json::Value::String(format!("{user}:{REDACTED}"));
            }
        }
    }
}

fn redact_tsig(key: &str) -> serde_json::Value {
    if key.is_empty() {
        return serde_json::Value::String(String::new());
    }
    match key.rsplit_once(':') {
        Some((name_alg, _)) => serde_json::Value::String(format!("{name_alg}:{REDACTED}")),
        None => serde_json::Value::String(REDACTED.into()),
    }
}

/// Undo [`redact`] on a JSON config about to be applied: every value still redacted takes the running value.
pub(crate) fn unredact(json: &mut serde_json::Value, current: &Config) {
    if let Some(k) = json.pointer_mut("/tls/dns01_tsig_key")
        && k.as_str().is_some_and(|s| s.ends_with(REDACTED))
    {
        *k = serde_json::Value::String(current.tls.dns01_tsig_key.clone());
    }
    if let Some(routes) = json.pointer_mut("/proxy/routes").and_then(|r| r.as_array_mut()) {
        for r in routes {
            unredact_route(r, &current.proxy.routes);
        }
    }
    // a redacted channel URL takes the running URL of the channel with the same name
    if let Some(chs) = json.pointer_mut("/alerts/channels").and_then(|r| r.as_array_mut()) {
        for c in chs {
            let name = c.get("name").and_then(|n| n.as_str()).unwrap_or("").to_string();
            if let Some(u) = c.get_mut("url")
                && u.as_str().is_some_and(|s| s.ends_with(REDACTED))
                && let Some(real) = current.alerts.channels.iter().find(|x| x.name == name)
            {
                *u = serde_json::Value::String(real.url.clone());
            }
        }
    }
}

/// A route's redacted `basic_auth` entries take the hash the running config has for that user (in any route with
/// the same hosts and path, else in any route); an entry whose user has no hash is left as it is and then fails
/// validation with the key named.
pub(crate) fn unredact_route(route: &mut serde_json::Value, current: &[ProxyRoute]) {
    let hosts: Vec<String> = route
        .get("hosts")
        .and_then(|h| h.as_array())
        .map(|a| a.iter().filter_map(|v| v.as_str().map(String::from)).collect())
        .unwrap_or_default();
    let prefix = route.get("path_prefix").and_then(|p| p.as_str()).unwrap_or("/").to_string();
    let Some(list) = route.get_mut("basic_auth").and_then(|b| b.as_array_mut()) else { return };
    for e in list {
        let Some(user) = e.as_str().and_then(|s| s.strip_suffix(REDACTED)?.strip_suffix(':')).map(String::from) else {
            continue;
        };
        fn find<'a>(r: &'a ProxyRoute, user: &str) -> Option<&'a String> {
            r.basic_auth.iter().find(|b| b.split_once(':').is_some_and(|(u, _)| u == user))
        }
        let same = current.iter().filter(|r| r.hosts == hosts && r.path_prefix == prefix).find_map(|r| find(r, &user));
        if let Some(real) = same.or_else(|| current.iter().find_map(|r| find(r, &user))) {
            *e = serde_json::Value::String(real.clone());
        }
    }
}

/// A TOML text as an editable document, or the syntax error naming `origin`. The text is checked by `toml`'s
/// parser first: toml_edit 0.23 panics ("all items have spans") on some invalid texts (found by the config_loader
/// fuzz target), and a hand-edited hearth.toml must get an error, never a crash; the panic is also caught.
pub(crate) fn parse_document(text: &str, origin: &str) -> Result<toml_edit::DocumentMut, ConfigError> {
    let syntax = |reason: String| ConfigError::Syntax { path: origin.into(), reason };
    toml::from_str::<toml::Table>(text).map_err(|e| syntax(e.to_string()))?;
    match std::panic::catch_unwind(|| text.parse::<toml_edit::DocumentMut>()) {
        Ok(r) => r.map_err(|e| syntax(e.to_string())),
        Err(_) => Err(syntax("the TOML parser failed on this text".into())),
    }
}

/// Where the configuration comes from: a file that may not exist yet (then the embedded default applies, and the
/// first change made through the API creates it from the commented template).
#[derive(Debug, Clone)]
pub(crate) struct ConfigSource {
    pub path: PathBuf,
}

impl ConfigSource {
    pub(crate) fn new(path: PathBuf) -> Self {
        ConfigSource { path: absolute(&path) }
    }

    pub(crate) fn exists(&self) -> bool {
        self.path.exists()
    }

    /// The current text: the file, or the commented default when there is no file.
    pub(crate) fn read_text(&self) -> Result<String, ConfigError> {
        match std::fs::read_to_string(&self.path) {
            Ok(t) => Ok(t),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(DEFAULT_TOML.to_string()),
            Err(e) => Err(ConfigError::Read { path: self.path.display().to_string(), reason: e.to_string() }),
        }
    }

    pub(crate) fn load(&self) -> Result<Config, ConfigError> {
        Config::from_toml(&self.read_text()?, &self.path.display().to_string())
    }
}

/// Apply an RFC 7396 JSON merge patch to a JSON document.
pub(crate) fn merge_patch(target: &mut serde_json::Value, patch: &serde_json::Value) {
    use serde_json::Value;
    match patch {
        Value::Object(p) => {
            if !target.is_object() {
                *target = Value::Object(Default::default());
            }
            let t = target.as_object_mut().expect("object");
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        other => *target = other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by the config_loader fuzz target: toml_edit 0.23.10 panics on this text ("all items have spans").
    #[test]
    fn a_text_that_crashed_the_toml_parser_is_a_syntax_error() {
        let bytes = data_encoding::BASE64.decode("IyBoZWFydGgudG9tbDogdGhlIGNvbmZuLXVwZGF0ZXMsICJpcDpwb3J0IiAoZS5nLiBCSU5ELCBLbm90LCBQb3dlckROUykuCmRuczAxX3NlcnZlciA9ICIiCiMgRE5TLTAxOiB0aGVAcm9kdWN0aW9uOiBbIjo4MCJdLgo9PT09PT09PT1jdDB1Y3Rpb246IFsiOjgwIl0KLj09PT09PT09dHJvZHVjdDB1Y3Rpb246IFsiOjgwIl0uCj09PT09PT09PT09PWh0dHBfbGlzdGVuID0nWyIxMmFuZCBIVFRQLzIpIHNlcnZkIEFQSSwgL21ldHxvZHVjdDEuMTo4MGlvODBu".as_bytes()).unwrap();
        let text = std::str::from_utf8(&bytes).unwrap();
        let e = Config::from_toml(text, "crash.toml").unwrap_err();
        assert!(matches!(e, ConfigError::Syntax { .. }), "{e}");
    }

    #[test]
    fn default_file_is_the_default_config() {
        let parsed = Config::from_toml(DEFAULT_TOML, "default").unwrap();
        assert_eq!(parsed, Config::default());
    }

    /// The production file is the commented default with exactly these lines changed, so a new key documented in
    /// one cannot be forgotten in the other.
    #[test]
    fn production_file_is_the_default_with_production_addresses() {
        let expected: Vec<String> = DEFAULT_TOML
            .lines()
            .map(|l| match l {
                "# hearth.toml: the configuration of one hearth instance." => {
                    "# /etc/hearth/hearth.toml: the production configuration installed by the hearth package.".into()
                }
                l if l.starts_with("http_listen = ") => "http_listen = [\":80\"]".into(),
                l if l.starts_with("https_listen = ") => "https_listen = [\":443\"]".into(),
                l if l.starts_with("data_dir = ") => "data_dir = \"/var/lib/hearth\"".into(),
                "listen = [\"127.0.0.1:5353\"]" => "listen = [\":53\"]".into(),
                l => l.to_string(),
            })
            .collect();
        assert_eq!(PRODUCTION_TOML.lines().collect::<Vec<_>>(), expected);
    }

    #[test]
    fn production_file_is_valid_and_binds_standard_ports() {
        let c = Config::from_toml(PRODUCTION_TOML, "production").unwrap();
        assert_eq!(c.server.http_listen[0].0.port(), 80);
        assert_eq!(c.server.https_listen[0].0.port(), 443);
        assert_eq!(c.dns.listen[0].0.port(), 53);
        assert_eq!(c.server.data_dir, PathBuf::from("/var/lib/hearth"));
    }

    /// Every leaf key of the default config appears, with its default value, in the commented reference file.
    #[test]
    fn reference_documents_every_key() {
        let value = toml::Value::try_from(Config::default()).unwrap();
        let mut leaves = Vec::new();
        collect_leaves("", &value, &mut leaves);
        assert!(leaves.len() > 10);
        for (key, _) in &leaves {
            let (section, name) = key.rsplit_once('.').unwrap_or(("", key));
            let header = format!("[{section}]");
            assert!(section.is_empty() || DEFAULT_TOML.contains(&header), "missing section {header}");
            let documented = DEFAULT_TOML.lines().any(|l| l.starts_with(&format!("{name} =")));
            assert!(documented, "assets/hearth.default.toml does not document {key}");
            // and a comment line right above it explains it
            let lines: Vec<&str> = DEFAULT_TOML.lines().collect();
            let i = lines.iter().position(|l| l.starts_with(&format!("{name} ="))).unwrap();
            assert!(lines[i - 1].starts_with('#'), "{key} has no comment above it");
        }
    }

    fn collect_leaves(prefix: &str, v: &toml::Value, out: &mut Vec<(String, toml::Value)>) {
        match v {
            toml::Value::Table(t) => {
                for (k, v) in t {
                    let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                    collect_leaves(&key, v, out);
                }
            }
            other => out.push((prefix.to_string(), other.clone())),
        }
    }

    fn err(text: &str) -> ConfigError {
        Config::from_toml(text, "t.toml").unwrap_err()
    }

    #[test]
    fn errors_name_the_key() {
        let e = err("[server]\nhttp_listen = [\"nope\"]\n");
        assert_eq!(e.key(), Some("server.http_listen[0]"), "{e}");
        assert!(e.to_string().contains("invalid listen address"), "{e}");

        let e = err("[server]\nshutdown_timeout = \"ten\"\n");
        assert_eq!(e.key(), Some("server.shutdown_timeout"), "{e}");

        let e = err("[server]\nbogus = 1\n");
        assert_eq!(e.key(), Some("server.bogus"), "{e}");

        let e = err("[log]\nlevel = \"loud[\"\n");
        assert_eq!(e.key(), Some("log.level"), "{e}");

        let e = err("[server]\nhttp_listen = []\n");
        assert_eq!(e.key(), Some("server.http_listen"), "{e}");

        let e = err("[server]\nhttps_listen = [\"127.0.0.1:8080\"]\n");
        assert_eq!(e.key(), Some("server.https_listen[0]"), "{e}");

        let e = err("[auth]\nsession_ttl = \"1s\"\n");
        assert_eq!(e.key(), Some("auth.session_ttl"), "{e}");

        let e = err("[server]\nmax_body_bytes = \"big\"\n");
        assert_eq!(e.key(), Some("server.max_body_bytes"), "{e}");

        let e = err("[log]\nformat = \"xml\"\n");
        assert_eq!(e.key(), Some("log.format"), "{e}");

        let e = err("[dns]\nlisten = [\":53\", \":53\"]\n");
        assert_eq!(e.key(), Some("dns.listen[1]"), "{e}");
    }

    #[test]
    fn syntax_errors_name_the_file_and_line() {
        let e = err("[server\n");
        match e {
            ConfigError::Syntax { path, reason } => {
                assert_eq!(path, "t.toml");
                assert!(reason.contains("line 1"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn json_round_trip_and_merge_patch() {
        let mut v = serde_json::to_value(Config::default()).unwrap();
        merge_patch(&mut v, &serde_json::json!({"log": {"level": "debug"}, "auth": {"session_ttl": "1d"}}));
        let c = Config::from_json(v).unwrap();
        assert_eq!(c.log.level, "debug");
        assert_eq!(c.auth.session_ttl, Duration::from_secs(86400));
        assert_eq!(c.server, ServerConfig::default());

        let mut v = serde_json::to_value(Config::default()).unwrap();
        merge_patch(&mut v, &serde_json::json!({"server": {"http_listen": ["x"]}}));
        assert_eq!(Config::from_json(v).unwrap_err().key(), Some("server.http_listen[0]"));
    }
}
