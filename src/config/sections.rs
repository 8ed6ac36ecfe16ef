//! The sections of `hearth.toml`: one struct per table (`[server]`, `[dns]`, `[proxy]`, …) with its `Default`,
//! which is the value of every key the file leaves out.
//!
//! Invariants: every struct is `#[serde(deny_unknown_fields)]` and, except list entries whose keys are required
//! (`dns.lists[]`, `dns.records[]`, …), `#[serde(default)]`; every default here is also written, with a comment,
//! in `assets/hearth.default.toml` (a test in `mod.rs` checks both). Types only: checks are in `validate.rs`.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{Duration, ListenAddr};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct ServerConfig {
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
pub(crate) fn private_networks() -> Vec<String> {
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
pub(crate) struct TlsConfig {
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
pub(crate) struct ProxyConfig {
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
pub(crate) enum RouteTls {
    Acme,
    Internal,
    None,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct ProxyRoute {
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
    pub(crate) fn id(&self) -> String {
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
pub(crate) enum LogFormat {
    Auto,
    Json,
    Text,
}

// the names are lancedb's index types (IvfPq, IvfSq, IvfHnswSq) and the config values (ivf_pq, …)
#[allow(clippy::enum_variant_names)]
/// `memory.ann_index`: the approximate-nearest-neighbour index a collection gets past `memory.index_threshold`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum AnnIndex {
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
pub(crate) struct MemoryConfig {
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
pub(crate) struct LogConfig {
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
pub(crate) struct AuthConfig {
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
pub(crate) struct StorageConfig {
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
pub(crate) struct DnsConfig {
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
    /// Where catalog lists are fetched from instead of their publishers: a directory or an http(s) URL prefix
    /// holding `<id>.txt` copies (an offline mirror); empty: the publishers' URLs.
    pub catalog_mirror: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DnsGroup {
    pub name: String,
    /// Addresses or CIDR prefixes.
    pub clients: Vec<String>,
    /// Names of the lists (from dns.lists) that apply to these clients instead of all of them.
    pub lists: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DnsForwardZone {
    /// The domain (and every name under it), e.g. "fritz.box" or "168.192.in-addr.arpa".
    pub domain: String,
    /// Its servers, in the `dns.upstreams` syntax, asked in order (failover).
    pub upstreams: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DnsRecord {
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
pub(crate) enum QueryLogStorage {
    Sqlite,
    Memory,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct QueryLogConfig {
    pub enabled: bool,
    pub storage: QueryLogStorage,
    pub retention: Duration,
    pub max_entries: usize,
    pub flush_interval: Duration,
    /// Log (and count in the stats) clients by their network only: the last octet of an IPv4 address and the last
    /// 80 bits of an IPv6 address are zeroed (AdGuard Home's "anonymize client IP").
    pub anonymize_clients: bool,
}

impl Default for QueryLogConfig {
    fn default() -> Self {
        QueryLogConfig {
            enabled: true,
            storage: QueryLogStorage::Sqlite,
            retention: Duration::from_secs(7 * 86_400),
            max_entries: 1_000_000,
            flush_interval: Duration::from_secs(5),
            anonymize_clients: false,
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
            catalog_mirror: String::new(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum DnsMode {
    Forward,
    Recursive,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct DnsCacheConfig {
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
pub(crate) struct DnsList {
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

/// `[logs]`: the box's log store (`logs/`): hearth's own events, the journal, containers, syslog and Loki pushes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct LogsConfig {
    /// How long lines are kept (whole days are dropped; younger lines past it are no longer answered).
    pub retention: Duration,
    /// The store's size cap: past it the oldest lines go first.
    pub max_disk: super::ByteSize,
    /// "sqlite" (`logs.db` in the data dir) or "memory" (nothing written; lines end at a restart).
    pub storage: MetricsStorage,
    /// Follow the systemd journal of the box (from a saved cursor: nothing read twice or lost across restarts).
    pub journal: bool,
    /// Read journal files in this directory instead of the system journal (empty: the system journal).
    pub journal_directory: PathBuf,
    /// Follow the running Docker containers' output (through the Docker API when its socket is readable).
    pub docker: bool,
    /// The Docker API's socket (hearth never asks for it: the admin grants it, or points this at a socket proxy).
    pub docker_socket: PathBuf,
    /// Addresses to receive syslog on, UDP and TCP each (e.g. "0.0.0.0:514"); none by default.
    pub syslog_listen: Vec<String>,
}

impl Default for LogsConfig {
    fn default() -> Self {
        LogsConfig {
            retention: Duration::from_secs(14 * 86_400),
            max_disk: super::ByteSize::mib(512),
            storage: MetricsStorage::Sqlite,
            journal: true,
            journal_directory: PathBuf::new(),
            docker: true,
            docker_socket: PathBuf::from(crate::docker::DEFAULT_SOCKET),
            syslog_listen: vec![],
        }
    }
}

/// `[tracing]`: hearth's spans as traces (`traces/`): a ring of recent ones in the UI, and OTLP/HTTP export.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct TracingConfig {
    /// An OpenTelemetry collector's OTLP/HTTP address ("http://collector:4318", spans go to `/v1/traces`; a URL
    /// with a path is used as it is); empty: no export.
    pub otlp_endpoint: String,
    /// The share of traces sampled (0 to 1) and so exported; a caller's sampled `traceparent` is followed.
    pub sample_ratio: f64,
}

impl Default for TracingConfig {
    fn default() -> Self {
        TracingConfig { otlp_endpoint: String::new(), sample_ratio: 0.1 }
    }
}

/// `[metrics]`: the machine's, the services' and hearth's own metrics, kept as history (`metrics/`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct MetricsConfig {
    pub enabled: bool,
    /// How often the host, services and hearth itself are sampled (and the default scrape interval).
    pub interval: Duration,
    /// How long each resolution is kept: raw samples, 1-minute and 1-hour roll-ups.
    pub retention_raw: Duration,
    pub retention_1m: Duration,
    pub retention_1h: Duration,
    /// The store's size cap: past it the oldest tier is shortened first.
    pub max_disk: super::ByteSize,
    /// "sqlite" (`metrics.db` in the data dir) or "memory" (nothing written; history ends at a restart).
    pub storage: MetricsStorage,
    /// Collect the machine's metrics (CPU, memory, disks, network, temperatures, throttling).
    pub host: bool,
    /// Collect per systemd unit and per container metrics from cgroup v2.
    pub services: bool,
    pub scrape: Vec<ScrapeConfig>,
    pub remote_write: Vec<RemoteWriteConfig>,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            enabled: true,
            interval: Duration::from_secs(10),
            retention_raw: Duration::from_secs(48 * 3600),
            retention_1m: Duration::from_secs(14 * 86_400),
            retention_1h: Duration::from_secs(400 * 86_400),
            max_disk: super::ByteSize::mib(256),
            storage: MetricsStorage::Sqlite,
            host: true,
            services: true,
            scrape: vec![],
            remote_write: vec![],
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum MetricsStorage {
    Sqlite,
    Memory,
}

/// `[[metrics.scrape]]`: a Prometheus text / OpenMetrics endpoint hearth scrapes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ScrapeConfig {
    /// The `job` label of every series scraped here.
    pub name: String,
    pub url: String,
    /// Defaults to `metrics.interval`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<Duration>,
    /// Defaults to the interval, at most 10 s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Duration>,
    /// A file holding a bearer token sent with each scrape.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bearer_token_file: Option<PathBuf>,
}

/// `[[metrics.remote_write]]`: a Prometheus remote-write 1.0 receiver that gets every raw sample (VictoriaMetrics,
/// Mimir, Prometheus with `--web.enable-remote-write-receiver`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RemoteWriteConfig {
    pub url: String,
    /// Basic auth: the user, with the password read from `password_file`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_file: Option<PathBuf>,
    /// A file holding a bearer token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bearer_token_file: Option<PathBuf>,
}

/// `[alerts]`: rules over the metrics history and where their notices go (`alerts/`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct AlertsConfig {
    pub enabled: bool,
    /// The built-in rules (disk full, temperature, throttling, a failed subsystem, certificates, DNS upstreams,
    /// list downloads, scrape targets); a rule in `[[alerts.rules]]` with the same name replaces one.
    pub default_rules: bool,
    /// How often every rule is evaluated (a pending alert is also evaluated the moment its `for` ends).
    pub evaluation_interval: Duration,
    /// A firing alert is notified again after this long.
    pub repeat_interval: Duration,
    /// The admin UI's address as users reach it (e.g. "https://hearth.home.arpa"), for links in notices.
    pub external_url: String,
    pub rules: Vec<AlertRule>,
    pub channels: Vec<AlertChannel>,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        AlertsConfig {
            enabled: true,
            default_rules: true,
            evaluation_interval: Duration::from_secs(15),
            repeat_interval: Duration::from_secs(4 * 3600),
            external_url: String::new(),
            rules: vec![],
            channels: vec![],
        }
    }
}

/// `[[alerts.rules]]`: fires while `expr` returns anything for at least `for`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AlertRule {
    pub name: String,
    pub expr: String,
    /// What `expr` is written in: "promql" (over the metrics history) or "logql" (a metric query over the logs,
    /// e.g. `sum by (unit) (count_over_time({source="journal", level="error"}[5m])) > 10`).
    #[serde(default)]
    pub language: QueryLanguage,
    #[serde(default = "zero_duration", rename = "for")]
    pub for_: Duration,
    /// "info", "warning" or "critical"
    #[serde(default = "warning")]
    pub severity: String,
    /// The notice's text; `{{ $labels.name }}` and `{{ $value }}` are filled in.
    #[serde(default)]
    pub summary: String,
}

/// The language of an alert rule's expression.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub(crate) enum QueryLanguage {
    #[default]
    Promql,
    Logql,
}

fn zero_duration() -> Duration {
    Duration::from_secs(0)
}
fn warning() -> String {
    "warning".into()
}

/// `[[alerts.channels]]`: where notices go, as a URL (`ntfy://`, `gotify://`, `discord://`, `slack://`,
/// `telegram://`, or an `https://` Alertmanager-style webhook).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AlertChannel {
    pub name: String,
    pub url: String,
    /// Also tell when an alert is resolved.
    #[serde(default = "yes")]
    pub send_resolved: bool,
    /// The lowest severity sent here: "info", "warning" or "critical".
    #[serde(default = "info")]
    pub min_severity: String,
}

fn info() -> String {
    "info".into()
}
