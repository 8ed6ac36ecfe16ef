//! The fuzz targets' bodies, in the library so that the same code runs two ways: coverage-guided under cargo-fuzz
//! (`tests/fuzz/`, `RUSTC_BOOTSTRAP=1 cargo fuzz run --fuzz-dir tests/fuzz <target>`), and as a short smoke run on
//! stable in the test suite (`smoke` below: seeded random inputs and mutations of valid ones), so CI exercises
//! every target without a second build of the dependency tree.
//!
//! Each function takes arbitrary bytes and panics only when a property fails.

use std::sync::OnceLock;

use crate::config::DnsConfig;
use crate::dns::blocklist::{Engine, ListInput, ListKind, ListSet, parse_line};
use crate::dns::{Dns, Settings, Step, Transport, cache_policy, wire};
use crate::proxy::path::{normalize, strip_prefix};

fn dns() -> &'static Dns {
    static DNS: OnceLock<Dns> = OnceLock::new();
    DNS.get_or_init(|| {
        let c = DnsConfig { dnssec: false, rate_limit: 0, ..DnsConfig::default() };
        let dns = Dns::new(Settings::from_config(&c).expect("the default settings"), cache_policy(&c), None);
        let zone = crate::dns::local_zone(&DnsConfig {
            records: vec![],
            local_domains: vec!["home.arpa".into(), "lan".into()],
            ..c
        })
        .expect("the local zone");
        dns.apply(crate::dns::Prepared { zone: Some(zone), ..Default::default() });
        dns
    })
}

/// The DNS message handler on arbitrary bytes: queries come from anyone on the network, so no input may panic.
/// Runs the stages that need no network (`Dns::answer_local`: parse, allow list, rate limit, local zone, filter,
/// ANY, cache, in-flight bound) over every transport, and the wire helpers that read and cut responses, on the same
/// bytes taken as a response.
pub fn dns_message(data: &[u8]) {
    let dns = dns();
    for (client, t) in [
        ("127.0.0.1", Transport::Udp),
        ("192.168.1.2", Transport::Tcp),
        ("203.0.113.9", Transport::Tls),
        ("::1", Transport::Https),
    ] {
        match dns.answer_local(data, client.parse().expect("an address"), t) {
            Step::Done(Some(answer)) => {
                // what hearth sends must be readable by its own parser, and within the UDP limit
                let _ = wire::parse_response(&answer);
                if t == Transport::Udp
                    && let Ok(q) = wire::parse_query(data)
                {
                    assert!(answer.len() <= wire::udp_limit(&q), "a UDP answer over the client's limit");
                }
            }
            Step::Done(None) => {}
            Step::Forward(_) => {} // dropped: gives its place in flight back
        }
    }
    if let Ok(q) = wire::parse_query(data) {
        let _ = wire::truncated(data, &q);
        let mut copy = data.to_vec();
        wire::copy_question(&mut copy, data, q.question_end);
    }
    if let Ok(info) = wire::parse_response(data) {
        let mut copy = data.to_vec();
        wire::age_ttls(&mut copy, &info.ttl_offsets, 5, 0);
    }
    let _ = wire::find_opt(data);
}

/// The blocklist parser and compiler: lists come from the internet, so no input may panic, and the compiled
/// engine must answer for any name.
pub fn list_parser(data: &[u8]) {
    for line in String::from_utf8_lossy(data).lines() {
        let _ = parse_line(line);
    }
    let (block, allow) = data.split_at(data.len() / 2);
    let lists = vec![
        ListInput { id: 0, kind: ListKind::Block, reader: block },
        ListInput { id: 1, kind: ListKind::Allow, reader: allow },
    ];
    if let Ok((engine, _)) = Engine::compile(lists) {
        for name in ["example.com", "ads.example.com", "a.b.c.d", "", "xn--bcher-kva.example"] {
            let _ = engine.check(name, &ListSet::all());
        }
    }
}

fn check_normal(n: &str) {
    assert!(n.starts_with('/'), "{n:?}");
    assert!(!n.contains("//") && !n.contains("/./") && !n.contains("/../"), "{n:?}");
    assert!(!n.ends_with("/.") && !n.ends_with("/.."), "{n:?}");
    assert!(n.is_ascii() && !n.contains('\\'), "{n:?}");
    assert_eq!(normalize(n).as_deref(), Ok(n), "not a fixed point");
}

/// The proxy's path normalisation: no input may panic, and every normalised path is a fixed point that starts with
/// '/' and holds no `//`, `/./` or `/../` — also after a route's prefix is stripped.
pub fn path_normalise(data: &[u8]) {
    let raw = String::from_utf8_lossy(data);
    for raw in [raw.to_string(), format!("/{raw}")] {
        if let Ok(n) = normalize(&raw) {
            check_normal(&n);
            for prefix in ["/", "/a", "/a/", "/api/v1"] {
                check_normal(&strip_prefix(&n, prefix));
            }
        }
    }
}

/// The configuration loader: hearth.toml is edited by hand and through the API, so no text may panic — parse,
/// schema migration and validation answer with an error at worst.
pub fn config_loader(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = crate::config::Config::from_toml(text, "fuzz");
    }
}

#[cfg(test)]
mod smoke {
    use rand::{Rng, SeedableRng};

    /// A valid query for `name`/`qtype`, with EDNS (4096 bytes) when `edns`.
    fn query(name: &str, qtype: u16, edns: bool) -> Vec<u8> {
        let mut q = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, u8::from(edns)];
        for l in name.split('.').filter(|l| !l.is_empty()) {
            q.push(l.len() as u8);
            q.extend_from_slice(l.as_bytes());
        }
        q.push(0);
        q.extend_from_slice(&qtype.to_be_bytes());
        q.extend_from_slice(&[0, 1]);
        if edns {
            q.extend_from_slice(&[0, 0, 41, 0x10, 0, 0, 0, 0x80, 0, 0, 0]);
        }
        q
    }

    /// Random bytes and byte-level mutations (flip, insert, delete, splice) of the seeds, for `runs` inputs.
    fn run(seeds: &[Vec<u8>], runs: usize, target: fn(&[u8])) {
        let mut rng = rand::rngs::StdRng::seed_from_u64(20);
        for seed in seeds {
            target(seed);
        }
        for i in 0..runs {
            let mut d = if i % 4 == 0 || seeds.is_empty() {
                let n = rng.random_range(0..300);
                (0..n).map(|_| rng.random()).collect::<Vec<u8>>()
            } else {
                seeds[rng.random_range(0..seeds.len())].clone()
            };
            for _ in 0..rng.random_range(1..6) {
                let at = if d.is_empty() { 0 } else { rng.random_range(0..d.len()) };
                match rng.random_range(0..4) {
                    0 if !d.is_empty() => d[at] ^= 1 << rng.random_range(0..8),
                    1 => d.insert(at, rng.random()),
                    2 if !d.is_empty() => {
                        d.remove(at);
                    }
                    _ if !d.is_empty() => {
                        d[at] = [0, 0xff, b'.', b'/', b'%', b'"', b'[', b'=', 0xc0][rng.random_range(0..9)]
                    }
                    _ => d.push(rng.random()),
                }
            }
            target(&d);
        }
    }

    #[test]
    fn dns_message() {
        let seeds = vec![
            query("example.com", 1, true),
            query("nas.home.arpa", 28, false),
            query("x.lan", 255, true),
            query("", 2, true),
            query("a.b.c.d.e.f.g", 16, false),
        ];
        run(&seeds, 10_000, super::dns_message);
    }

    #[test]
    fn list_parser() {
        let seeds = vec![
            b"0.0.0.0 ads.example\n||tracker.example^\n@@||ok.example^$important\n*.wild.example\n/ad[s]+\\./\n"
                .to_vec(),
            b"# comment\n! adblock comment\nexample.com\n127.0.0.1 localhost\n".to_vec(),
        ];
        run(&seeds, 20_000, super::list_parser);
    }

    #[test]
    fn path_normalise() {
        let seeds: Vec<Vec<u8>> = ["/a/b/../c", "/%61dmin//x/./y", "/x/%2e%2e/y?q", "/~user/%7E/", "/a;b/..;/c"]
            .iter()
            .map(|s| s.as_bytes().to_vec())
            .collect();
        run(&seeds, 50_000, super::path_normalise);
    }

    #[test]
    fn config_loader() {
        let seeds = vec![
            crate::config::DEFAULT_TOML.as_bytes().to_vec(),
            b"schema_version = 1\n[server]\nadmin_allow = [\"10.0.0.0/8\"]\n[[proxy.routes]]\nhosts = [\"a.home.arpa\"]\nupstreams = [\"http://127.0.0.1:1\"]\nheaders = { X = \"1\" }\n".to_vec(),
            b"[dns]\nrecords = [{ name = \"nas.home.arpa\", type = \"A\", value = \"192.168.1.10\" }]\n".to_vec(),
        ];
        run(&seeds, 500, super::config_loader);
    }
}
