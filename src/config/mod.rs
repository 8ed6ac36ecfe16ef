//! `hearth.toml`: the typed configuration, its defaults, validation and loading.
//!
//! The commented default file (`assets/hearth.default.toml`) is the config reference; a test checks that it parses
//! to exactly `Config::default()` and documents every key. Errors always name the key (`server.http_listen[0]`).
//!
//! Invariants: a `Config` value that exists has passed [`Config::validate`]; this module does no socket IO.

mod duration;
pub mod live;
pub mod migrate;
pub mod persist;

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

pub use duration::Duration;

/// The configuration schema this binary writes and understands.
pub const SCHEMA_VERSION: i64 = 1;

/// The fully commented default configuration (also printed by `hearth config default`).
pub const DEFAULT_TOML: &str = include_str!("../../assets/hearth.default.toml");

/// The production configuration installed by the .deb (binds the standard ports on the LAN).
#[cfg(test)]
pub const PRODUCTION_TOML: &str = include_str!("../../packaging/hearth.production.toml");

#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum ConfigError {
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
    pub fn invalid(key: impl Into<String>, reason: impl Into<String>) -> Self {
        ConfigError::Invalid { key: key.into(), reason: reason.into() }
    }

    /// The offending key, when the error is about one.
    #[cfg(test)]
    pub fn key(&self) -> Option<&str> {
        match self {
            ConfigError::Invalid { key, .. } => Some(key),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub schema_version: i64,
    pub server: ServerConfig,
    pub log: LogConfig,
    pub auth: AuthConfig,
    pub storage: StorageConfig,
    pub dns: DnsConfig,
    pub tls: TlsConfig,
    pub proxy: ProxyConfig,
    pub memory: MemoryConfig,
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
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    pub http_listen: Vec<ListenAddr>,
    pub https_listen: Vec<ListenAddr>,
    pub data_dir: PathBuf,
    pub shutdown_timeout: Duration,
    pub max_body_bytes: u64,
    pub request_timeout: Duration,
    /// Host names the admin UI answers for (besides the box's IP literals, `localhost` and `<hostname>.local`).
    pub admin_hosts: Vec<String>,
    /// Clients (addresses or CIDR prefixes) that may reach the admin UI/API, `/metrics` and `/readyz` details.
    pub admin_allow: Vec<String>,
    /// A connection that has not sent a whole request header within this time is closed.
    pub header_read_timeout: Duration,
    /// An idle keep-alive connection is closed after this time.
    pub idle_timeout: Duration,
    /// Open HTTP(S) connections at most, over all listeners; further ones are closed at once.
    pub max_connections: usize,
    /// Open HTTP(S) connections at most from one client address.
    pub max_connections_per_client: usize,
}

/// Loopback, RFC 1918, CGNAT-free private ranges, ULA and link-local: the LAN.
pub fn private_networks() -> Vec<String> {
    [
        "127.0.0.0/8",
        "::1/128",
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "fc00::/7",
        "169.254.0.0/16",
        "fe80::/10",
    ]
    .map(String::from)
    .to_vec()
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            http_listen: vec![ListenAddr::local(8080)],
            https_listen: vec![ListenAddr::local(8443)],
            data_dir: PathBuf::from("./hearth-data"),
            shutdown_timeout: Duration::from_secs(10),
            max_body_bytes: 1024 * 1024,
            request_timeout: Duration::from_secs(30),
            admin_hosts: vec![],
            admin_allow: private_networks(),
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_connections: 4096,
            max_connections_per_client: 256,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    pub acme_directory: String,
    pub acme_email: String,
    /// Extra PEM roots trusted for the ACME server's own HTTPS API (tests: pebble).
    pub acme_ca_roots: String,
    /// Challenge types, tried in this order among those the CA offers: "http-01", "tls-alpn-01", "dns-01".
    pub acme_challenges: Vec<String>,
    /// DNS-01 through RFC 2136 dynamic updates: the zone's primary server "ip:port".
    pub dns01_server: String,
    /// The TSIG key for those updates: "name:algorithm:base64-secret".
    pub dns01_tsig_key: String,
    /// hearth's own CA for LAN names and IPs.
    pub internal_ca: bool,
    /// Lifetime of the certificates the internal CA issues; they are replaced after two thirds of it.
    pub internal_lifetime: Duration,
}

impl Default for TlsConfig {
    fn default() -> Self {
        TlsConfig {
            acme_directory: "https://acme-v02.api.letsencrypt.org/directory".into(),
            acme_email: String::new(),
            acme_ca_roots: String::new(),
            acme_challenges: vec!["http-01".into(), "tls-alpn-01".into()],
            dns01_server: String::new(),
            dns01_tsig_key: String::new(),
            internal_ca: true,
            internal_lifetime: Duration::from_secs(7 * 86_400),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProxyConfig {
    /// The address hearth's DNS gives for route hosts that are local names; empty: the HTTPS listener's address,
    /// or the address of the interface that carries the default route.
    pub address: String,
    /// Clients (addresses or CIDR prefixes) whose `X-Forwarded-*`, `Forwarded`, `X-Real-IP` and identity headers
    /// are passed on; every other client's copies are removed.
    pub trusted_proxies: Vec<String>,
    pub routes: Vec<ProxyRoute>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RouteTls {
    Acme,
    Internal,
    None,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProxyRoute {
    pub hosts: Vec<String>,
    pub path_prefix: String,
    pub upstreams: Vec<String>,
    pub tls: RouteTls,
    /// "round_robin", "least_conn" or "ip_hash".
    pub strategy: String,
    pub strip_prefix: bool,
    pub health_path: String,
    pub health_interval: Duration,
    /// Expected status of a health check; 0: any 2xx or 3xx.
    pub health_status: u16,
    pub max_fails: u32,
    pub fail_timeout: Duration,
    pub retries: u32,
    pub connect_timeout: Duration,
    pub timeout: Duration,
    pub max_body_bytes: u64,
    pub hsts: bool,
    pub headers: std::collections::BTreeMap<String, String>,
    pub rate_limit: u32,
    pub rate_limit_burst: u32,
    pub basic_auth: Vec<String>,
    pub forward_auth: bool,
    pub forward_auth_users: Vec<String>,
    pub allow: Vec<String>,
    pub deny: Vec<String>,
}

impl ProxyRoute {
    /// The route's id in the API (`/api/v1/proxy/routes/{id}`): derived from what routes a request to it — its
    /// hosts (normalised, in any order) and path prefix —, so it does not shift when another route is added or
    /// removed, and two routes never share one (the routing table refuses duplicates).
    pub fn id(&self) -> String {
        let mut hosts: Vec<String> =
            self.hosts.iter().map(|h| h.trim().trim_end_matches('.').to_ascii_lowercase()).collect();
        hosts.sort();
        let key = format!("{}\n{}", hosts.join(","), self.path_prefix);
        crate::util::sha256_hex(&key)[..12].to_string()
    }
}

impl Default for ProxyRoute {
    fn default() -> Self {
        ProxyRoute {
            hosts: vec![],
            path_prefix: "/".into(),
            upstreams: vec![],
            tls: RouteTls::Acme,
            strategy: "round_robin".into(),
            strip_prefix: false,
            health_path: String::new(),
            health_interval: Duration::from_secs(10),
            health_status: 0,
            max_fails: 3,
            fail_timeout: Duration::from_secs(30),
            retries: 1,
            connect_timeout: Duration::from_secs(5),
            timeout: Duration::from_secs(60),
            max_body_bytes: 0,
            hsts: true,
            headers: Default::default(),
            rate_limit: 0,
            rate_limit_burst: 0,
            basic_auth: vec![],
            forward_auth: false,
            forward_auth_users: vec![],
            allow: vec![],
            deny: vec![],
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Auto,
    Json,
    Text,
}

/// `memory.ann_index`: the approximate-nearest-neighbour index a collection gets past `memory.index_threshold`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AnnIndex {
    /// IVF partitions (~1000 rows each) of product-quantized codes (48 bytes per 384-d vector).
    IvfPq,
    /// IVF partitions (~1000 rows each) of 8-bit scalar-quantized vectors (one byte per dimension).
    IvfSq,
    /// IVF partitions (~25,000 rows each), each an HNSW graph over 8-bit scalar-quantized vectors.
    IvfHnswSq,
}

/// `[memory]`: the embedding model and the vector store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MemoryConfig {
    pub enabled: bool,
    /// "all-MiniLM-L6-v2" (built into the binary) or a directory with a sentence-transformers BERT model.
    pub model: String,
    /// Threads that run the model; 0 = one per CPU core.
    pub threads: usize,
    /// Tokens per input the model sees (at most the model's own limit, 256 for all-MiniLM-L6-v2).
    pub max_tokens: usize,
    /// Padded tokens in one forward pass of the batcher.
    pub max_batch_tokens: usize,
    /// How long the batcher holds a batch open for concurrent requests.
    pub max_batch_wait: Duration,
    /// Embedding requests waiting for the model; beyond this, 429.
    pub queue: usize,
    pub max_inputs: usize,
    pub max_input_chars: usize,
    /// Body limit of the embedding and collection endpoints.
    pub max_body_bytes: u64,
    pub request_timeout: Duration,
    /// Embeddings kept in the LRU cache; 0 disables it.
    pub cache_entries: usize,
    /// Rows past which a collection gets an approximate (ANN) vector index; below it, search is exact.
    pub index_threshold: usize,
    /// The ANN index type.
    pub ann_index: AnnIndex,
    /// Index partitions probed per ANN query.
    pub ann_nprobes: usize,
    /// ANN candidates re-ranked by exact distance, as a multiple of k (0: none).
    pub ann_refine_factor: u32,
    /// Candidates an HNSW search keeps per partition (`ivf_hnsw_sq` only).
    pub ann_ef: usize,
    /// Indexed collections also keep an in-memory IVF index (8-bit codes, ids, text, metadata) that answers plain
    /// vector queries (no filter, not hybrid) without lance's query planner.
    pub ram_index: bool,
    /// Lists (of ~1000 rows each) the in-memory index scans per query.
    pub ram_index_probes: usize,
    /// Compaction, index refresh and old-version pruning of every collection.
    pub optimize_interval: Duration,
}

impl Default for MemoryConfig {
    fn default() -> Self {
        MemoryConfig {
            enabled: true,
            model: "all-MiniLM-L6-v2".into(),
            threads: 0,
            max_tokens: 256,
            max_batch_tokens: 8192,
            max_batch_wait: Duration::from_millis(2),
            queue: 256,
            max_inputs: 32,
            max_input_chars: 10_000,
            max_body_bytes: 8 * 1024 * 1024,
            request_timeout: Duration::from_secs(30),
            cache_entries: 10_000,
            index_threshold: 50_000,
            ann_index: AnnIndex::IvfHnswSq,
            ann_nprobes: 10,
            ann_refine_factor: 10,
            ann_ef: 64,
            ram_index: true,
            ram_index_probes: 10,
            optimize_interval: Duration::from_secs(3600),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    pub level: String,
    pub format: LogFormat,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig { level: "info".into(), format: LogFormat::Auto }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    pub session_ttl: Duration,
    pub login_free_attempts: u32,
    pub login_max_delay: Duration,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            session_ttl: Duration::from_secs(7 * 24 * 3600),
            login_free_attempts: 3,
            login_max_delay: Duration::from_secs(300),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    pub busy_timeout: Duration,
    pub maintenance_interval: Duration,
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig { busy_timeout: Duration::from_secs(5), maintenance_interval: Duration::from_secs(3600) }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DnsConfig {
    pub listen: Vec<ListenAddr>,
    /// DNS-over-TLS listeners (RFC 7858).
    pub tls_listen: Vec<ListenAddr>,
    pub mode: DnsMode,
    pub upstreams: Vec<String>,
    pub upstream_timeout: Duration,
    /// "failover", "round_robin" or "fastest".
    pub upstream_strategy: String,
    /// Extra CA certificates (PEM) trusted for tls:// and https:// upstreams.
    pub upstream_ca: String,
    /// Recursive mode: a root hints file (named.root); empty: the built-in IANA root servers.
    pub root_hints: String,
    /// Validate answers with DNSSEC.
    pub dnssec: bool,
    /// A file of DS or DNSKEY records; empty: the built-in IANA root anchors.
    pub trust_anchors: String,
    pub blocking_mode: String,
    pub blocked_ttl: Duration,
    pub cache: DnsCacheConfig,
    pub querylog: QueryLogConfig,
    pub local_domains: Vec<String>,
    pub records: Vec<DnsRecord>,
    /// Conditional forwarding: names under a domain go to that domain's own servers.
    pub forward_zones: Vec<DnsForwardZone>,
    pub lists: Vec<DnsList>,
    pub groups: Vec<DnsGroup>,
    pub rate_limit: u32,
    pub rate_limit_burst: u32,
    pub rate_limit_exempt: Vec<String>,
    /// Clients (addresses or CIDR prefixes) that may query; others get REFUSED (like Unbound's access-control).
    pub allow_clients: Vec<String>,
    /// Recursive mode: drop answers and glue that put a public name on a loopback or private address.
    pub rebinding_protection: bool,
    /// Domains whose names may resolve to private addresses despite `rebinding_protection`.
    pub rebinding_allow: Vec<String>,
    /// Upstream queries in flight at most; identical questions in flight share one upstream query.
    pub max_inflight: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DnsGroup {
    pub name: String,
    /// Addresses or CIDR prefixes.
    pub clients: Vec<String>,
    /// Names of the lists (from dns.lists) that apply to these clients instead of all of them.
    pub lists: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DnsForwardZone {
    /// The domain (and every name under it), e.g. "fritz.box" or "168.192.in-addr.arpa".
    pub domain: String,
    /// Its servers, in the `dns.upstreams` syntax, asked in order (failover).
    pub upstreams: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DnsRecord {
    pub name: String,
    /// "A", "AAAA" or "CNAME".
    pub r#type: String,
    pub value: String,
    #[serde(default = "default_record_ttl")]
    pub ttl: Duration,
}

fn default_record_ttl() -> Duration {
    Duration::from_secs(300)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum QueryLogStorage {
    Sqlite,
    Memory,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QueryLogConfig {
    pub enabled: bool,
    pub storage: QueryLogStorage,
    pub retention: Duration,
    pub max_entries: usize,
    pub flush_interval: Duration,
}

impl Default for QueryLogConfig {
    fn default() -> Self {
        QueryLogConfig {
            enabled: true,
            storage: QueryLogStorage::Sqlite,
            retention: Duration::from_secs(7 * 86_400),
            max_entries: 1_000_000,
            flush_interval: Duration::from_secs(5),
        }
    }
}

impl Default for DnsConfig {
    fn default() -> Self {
        DnsConfig {
            listen: vec![ListenAddr::local(5353)],
            tls_listen: vec![],
            mode: DnsMode::Forward,
            upstreams: vec!["udp://9.9.9.9:53".into(), "udp://149.112.112.112:53".into()],
            upstream_timeout: Duration::from_secs(2),
            upstream_strategy: "failover".into(),
            upstream_ca: String::new(),
            root_hints: String::new(),
            dnssec: true,
            trust_anchors: String::new(),
            blocking_mode: "null_ip".into(),
            blocked_ttl: Duration::from_secs(10),
            cache: DnsCacheConfig::default(),
            querylog: QueryLogConfig::default(),
            local_domains: vec!["home.arpa".into()],
            records: vec![],
            forward_zones: vec![],
            lists: vec![],
            groups: vec![],
            rate_limit: 100,
            rate_limit_burst: 1000,
            rate_limit_exempt: vec!["127.0.0.1".into(), "::1".into()],
            allow_clients: private_networks(),
            rebinding_protection: true,
            rebinding_allow: vec![],
            max_inflight: 1024,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DnsMode {
    Forward,
    Recursive,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DnsCacheConfig {
    pub size: usize,
    pub min_ttl: Duration,
    pub max_ttl: Duration,
    pub max_negative_ttl: Duration,
    pub serve_stale: Duration,
    /// Refresh popular answers before they expire.
    pub prefetch: bool,
}

/// Whether a list blocks or allows what it names (`dns.lists[].kind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ListKind {
    Block,
    Allow,
}

impl Default for DnsCacheConfig {
    fn default() -> Self {
        DnsCacheConfig {
            size: 10_000,
            min_ttl: Duration::from_secs(0),
            max_ttl: Duration::from_secs(86_400),
            max_negative_ttl: Duration::from_secs(3600),
            serve_stale: Duration::from_secs(86_400),
            prefetch: true,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DnsList {
    pub name: String,
    pub kind: ListKind,
    /// A file path, or an http(s) URL downloaded into the data dir.
    pub source: String,
    #[serde(default = "yes")]
    pub enabled: bool,
    /// How often a URL list is checked for a new version.
    #[serde(default = "default_list_update")]
    pub update: Duration,
}

fn default_list_update() -> Duration {
    Duration::from_secs(86_400)
}

fn yes() -> bool {
    true
}

/// A listen address: `host:port`, `[v6]:port`, or `:port` for every interface (IPv6 and IPv4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ListenAddr(pub SocketAddr);

impl ListenAddr {
    fn local(port: u16) -> Self {
        ListenAddr(SocketAddr::from(([127, 0, 0, 1], port)))
    }

    /// The address a local client (`hearth healthcheck`) should connect to.
    pub fn connect_addr(&self) -> SocketAddr {
        let mut a = self.0;
        if a.ip().is_unspecified() {
            a.set_ip(match a.ip() {
                IpAddr::V4(_) => IpAddr::from([127, 0, 0, 1]),
                IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
            });
        }
        a
    }
}

impl FromStr for ListenAddr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if let Some(port) = s.strip_prefix(':') {
            let port: u16 = port.parse().map_err(|_| format!("invalid port in listen address {s:?}"))?;
            return Ok(ListenAddr(SocketAddr::from((Ipv6Addr::UNSPECIFIED, port))));
        }
        s.parse::<SocketAddr>()
            .map(ListenAddr)
            .map_err(|_| format!("invalid listen address {s:?}: expected \"ip:port\", \"[ipv6]:port\" or \":port\""))
    }
}

impl std::fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.0.ip() == IpAddr::V6(Ipv6Addr::UNSPECIFIED) {
            write!(f, ":{}", self.0.port())
        } else {
            write!(f, "{}", self.0)
        }
    }
}

impl Serialize for ListenAddr {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ListenAddr {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl Config {
    /// Parse, migrate and validate a configuration text. `origin` names the file in errors.
    pub fn from_toml(text: &str, origin: &str) -> Result<Config, ConfigError> {
        let mut doc = parse_document(text, origin)?;
        migrate::migrate(&mut doc)?;
        Self::from_document(&doc)
    }

    /// Deserialize an already migrated document.
    pub fn from_document(doc: &toml_edit::DocumentMut) -> Result<Config, ConfigError> {
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
    pub fn from_json(value: serde_json::Value) -> Result<Config, ConfigError> {
        Self::from_value(value)
    }

    /// Semantic checks that types alone cannot express. Every error names its key.
    pub fn validate(&self) -> Result<(), ConfigError> {
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
        // compiled, once, when a change is prepared (`crate::dns::task`): one parser each
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

    /// The data directory, resolved against the current directory.
    pub fn data_dir(&self) -> PathBuf {
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
pub const REDACTED: &str = "(redacted)";

/// Hide the secrets of a config's JSON form: `tls.dns01_tsig_key` keeps its name and algorithm, a route's
/// `basic_auth` entries keep their user. [`unredact`] puts them back, so a client can send back what it read.
pub fn redact(json: &mut serde_json::Value) {
    if let Some(k) = json.pointer_mut("/tls/dns01_tsig_key") {
        *k = redact_tsig(k.as_str().unwrap_or(""));
    }
    if let Some(routes) = json.pointer_mut("/proxy/routes").and_then(|r| r.as_array_mut()) {
        for r in routes {
            redact_route(r);
        }
    }
}

/// A route's JSON form with its `basic_auth` hashes hidden.
pub fn redact_route(route: &mut serde_json::Value) {
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
pub fn unredact(json: &mut serde_json::Value, current: &Config) {
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
}

/// A route's redacted `basic_auth` entries take the hash the running config has for that user (in any route with
/// the same hosts and path, else in any route); an entry whose user has no hash is left as it is and then fails
/// validation with the key named.
pub fn unredact_route(route: &mut serde_json::Value, current: &[ProxyRoute]) {
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
pub fn parse_document(text: &str, origin: &str) -> Result<toml_edit::DocumentMut, ConfigError> {
    let syntax = |reason: String| ConfigError::Syntax { path: origin.into(), reason };
    toml::from_str::<toml::Table>(text).map_err(|e| syntax(e.to_string()))?;
    match std::panic::catch_unwind(|| text.parse::<toml_edit::DocumentMut>()) {
        Ok(r) => r.map_err(|e| syntax(e.to_string())),
        Err(_) => Err(syntax("the TOML parser failed on this text".into())),
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

/// Where the configuration comes from: a file that may not exist yet (then the embedded default applies, and the
/// first change made through the API creates it from the commented template).
#[derive(Debug, Clone)]
pub struct ConfigSource {
    pub path: PathBuf,
}

impl ConfigSource {
    pub fn new(path: PathBuf) -> Self {
        ConfigSource { path: absolute(&path) }
    }

    pub fn exists(&self) -> bool {
        self.path.exists()
    }

    /// The current text: the file, or the commented default when there is no file.
    pub fn read_text(&self) -> Result<String, ConfigError> {
        match std::fs::read_to_string(&self.path) {
            Ok(t) => Ok(t),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(DEFAULT_TOML.to_string()),
            Err(e) => Err(ConfigError::Read { path: self.path.display().to_string(), reason: e.to_string() }),
        }
    }

    pub fn load(&self) -> Result<Config, ConfigError> {
        Config::from_toml(&self.read_text()?, &self.path.display().to_string())
    }
}

/// Apply an RFC 7396 JSON merge patch to a JSON document.
pub fn merge_patch(target: &mut serde_json::Value, patch: &serde_json::Value) {
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
    fn listen_addr_forms() {
        assert_eq!(":53".parse::<ListenAddr>().unwrap().0, "[::]:53".parse::<std::net::SocketAddr>().unwrap());
        assert_eq!(":53".parse::<ListenAddr>().unwrap().to_string(), ":53");
        assert_eq!("[::1]:8080".parse::<ListenAddr>().unwrap().to_string(), "[::1]:8080");
        assert!("localhost:80".parse::<ListenAddr>().is_err());
        assert!(":99999".parse::<ListenAddr>().is_err());
        let any = ":80".parse::<ListenAddr>().unwrap();
        assert_eq!(any.connect_addr(), "[::1]:80".parse::<std::net::SocketAddr>().unwrap());
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
