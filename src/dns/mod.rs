//! DNS: the filtering resolver. Today the blocklist engine (pure core); the server, cache, upstreams, DNSSEC and
//! query log build on it as the DNS issue proceeds.

pub mod blocklist;
