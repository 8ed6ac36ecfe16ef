//! The DNS message handler on arbitrary bytes: queries come from anyone on the network, so no input may panic.
//! Runs the stages that need no network ([`Dns::answer_local`]: parse, allow list, rate limit, local zone, filter,
//! ANY, cache, in-flight bound) over every transport, and the wire helpers that read and cut responses, on the
//! same bytes taken as a response.
#![no_main]

use std::sync::OnceLock;

use hearth::config::DnsConfig;
use hearth::dns::{Dns, Settings, Step, Transport, cache_policy, wire};
use libfuzzer_sys::fuzz_target;

fn dns() -> &'static Dns {
    static DNS: OnceLock<Dns> = OnceLock::new();
    DNS.get_or_init(|| {
        let c = DnsConfig { dnssec: false, rate_limit: 0, ..DnsConfig::default() };
        let dns = Dns::new(Settings::from_config(&c).expect("the default settings"), cache_policy(&c), None);
        let zone = hearth::dns::local_zone(&DnsConfig {
            records: vec![],
            local_domains: vec!["home.arpa".into(), "lan".into()],
            ..c
        })
        .expect("the local zone");
        dns.local.store(std::sync::Arc::new(zone));
        dns
    })
}

fuzz_target!(|data: &[u8]| {
    let dns = dns();
    for (client, t) in [
        ("127.0.0.1", Transport::Udp),
        ("192.168.1.2", Transport::Tcp),
        ("203.0.113.9", Transport::Tls),
        ("::1", Transport::Https),
    ] {
        match dns.answer_local(data, client.parse().unwrap(), t) {
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
    // the same bytes as an upstream's response
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
});
