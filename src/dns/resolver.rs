//! [`SelfResolver`], hearth's own outbound name resolution (a reqwest resolver for list downloads): each name is
//! asked as A and AAAA through [`Dns::handle`] like a client's query from 127.0.0.1 ([`Transport::Internal`]).

use std::net::IpAddr;
use std::sync::Arc;

use hickory_proto::op::Message;
use hickory_proto::rr::RecordType;

use super::{Dns, Transport, dnssec};

/// hearth's own outbound name resolution (list downloads): the names go through the same pipeline as a client's
/// query from 127.0.0.1 — local records, cache, upstreams or recursion, DNSSEC — so a static binary never needs
/// glibc's NSS, and the lookups show in the query log like any other.
pub(crate) struct SelfResolver(pub Arc<Dns>);

impl reqwest::dns::Resolve for SelfResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let dns = self.0.clone();
        let host = name.as_str().trim_end_matches('.').to_ascii_lowercase();
        Box::pin(async move {
            let qname = dnssec::fqdn(&host).ok_or_else(|| format!("{host}: not a valid host name"))?;
            let mut addrs: Vec<std::net::SocketAddr> = vec![];
            let mut rcode = None;
            for qtype in [RecordType::A, RecordType::AAAA] {
                let mut m = Message::new(
                    rand::random(),
                    hickory_proto::op::MessageType::Query,
                    hickory_proto::op::OpCode::Query,
                );
                m.metadata.recursion_desired = true;
                m.add_query(hickory_proto::op::Query::query(qname.clone(), qtype));
                let query = m.to_vec().map_err(|e| e.to_string())?;
                let Some(answer) = dns.handle(&query, IpAddr::from([127, 0, 0, 1]), Transport::Internal).await else {
                    continue;
                };
                let Ok(resp) = Message::from_vec(&answer) else { continue };
                rcode = Some(resp.metadata.response_code);
                addrs.extend(resp.answers.iter().filter_map(|r| match &r.data {
                    hickory_proto::rr::RData::A(a) => Some(std::net::SocketAddr::new(IpAddr::V4(a.0), 0)),
                    hickory_proto::rr::RData::AAAA(a) => Some(std::net::SocketAddr::new(IpAddr::V6(a.0), 0)),
                    _ => None,
                }));
            }
            if addrs.is_empty() {
                let why = rcode.map(|r| r.to_string()).unwrap_or_else(|| "no answer".into());
                return Err(format!("{host}: not resolved ({why})").into());
            }
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}
