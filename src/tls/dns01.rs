//! DNS-01 through RFC 2136 dynamic updates signed with TSIG (RFC 8945): the `_acme-challenge` TXT record is added
//! at the zone's primary server before the challenge and removed after it, so wildcard certificates and names the
//! CA cannot reach over HTTP work with any RFC 2136 server (BIND, Knot, PowerDNS, …).
//!
//! Pure part: [`TsigKey::parse`] and [`update_message`]; IO part: [`publish`] / [`withdraw`] over TCP.

use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode, update_message};
use hickory_proto::rr::rdata::TXT;
use hickory_proto::rr::rdata::tsig::TsigAlgorithm;
use hickory_proto::rr::{Name, RData, Record, RecordSet, RecordType, TSigner};
use hickory_proto::serialize::binary::{BinDecodable, BinEncodable};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const TIMEOUT: Duration = Duration::from_secs(10);

/// `name:algorithm:base64-secret`, as BIND's `tsig-keygen` prints them (algorithm hmac-sha256, -384 or -512).
#[derive(Clone)]
pub(crate) struct TsigKey {
    pub name: String,
    pub algorithm: String,
    secret: Vec<u8>,
}

impl std::fmt::Debug for TsigKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TsigKey").field("name", &self.name).field("algorithm", &self.algorithm).finish_non_exhaustive()
    }
}

impl TsigKey {
    pub(crate) fn parse(s: &str) -> Result<TsigKey, String> {
        let mut parts = s.splitn(3, ':');
        let (Some(name), Some(alg), Some(secret)) = (parts.next(), parts.next(), parts.next()) else {
            return Err("must be \"key-name:hmac-sha256:base64-secret\"".into());
        };
        let algorithm = alg.trim().to_ascii_lowercase();
        if !["hmac-sha256", "hmac-sha384", "hmac-sha512"].contains(&algorithm.as_str()) {
            return Err(format!("unsupported algorithm {alg:?} (use hmac-sha256, hmac-sha384 or hmac-sha512)"));
        }
        let secret = data_encoding::BASE64
            .decode(secret.trim().as_bytes())
            .map_err(|e| format!("the secret is not base64: {e}"))?;
        if secret.is_empty() || name.trim().is_empty() {
            return Err("the key name and secret must be set".into());
        }
        Name::from_str(name.trim()).map_err(|e| format!("invalid key name: {e}"))?;
        Ok(TsigKey { name: name.trim().to_string(), algorithm, secret })
    }

    fn signer(&self) -> Result<TSigner, String> {
        let alg = match self.algorithm.as_str() {
            "hmac-sha384" => TsigAlgorithm::HmacSha384,
            "hmac-sha512" => TsigAlgorithm::HmacSha512,
            _ => TsigAlgorithm::HmacSha256,
        };
        let name = Name::from_str(&self.name).map_err(|e| e.to_string())?;
        TSigner::new(self.secret.clone(), alg, name, 300).map_err(|e| e.to_string())
    }
}

/// The record name for an identifier: `_acme-challenge.<name>` (a wildcard's `*.` dropped).
pub(crate) fn record_name(identifier: &str) -> String {
    format!("_acme-challenge.{}.", identifier.trim_start_matches("*.").trim_end_matches('.'))
}

/// An RFC 2136 update adding (or deleting) `value` as a TXT record at `name` in `zone`.
pub(crate) fn update_message(zone: &Name, name: &str, value: &str, add: bool) -> Result<Message, String> {
    let owner = Name::from_str(name).map_err(|e| e.to_string())?;
    let record = Record::from_rdata(owner.clone(), 60, RData::TXT(TXT::new(vec![value.to_string()])));
    let mut set = RecordSet::new(owner, RecordType::TXT, 0);
    set.insert(record, 0);
    let mut m = if add {
        update_message::append(set, zone.clone(), false, false)
    } else {
        update_message::delete_by_rdata(set, zone.clone(), false)
    };
    m.metadata.id = rand::random();
    Ok(m)
}

async fn exchange(server: SocketAddr, bytes: &[u8]) -> Result<Message, String> {
    let io = async {
        let mut s = tokio::net::TcpStream::connect(server).await?;
        let mut framed = (bytes.len() as u16).to_be_bytes().to_vec();
        framed.extend_from_slice(bytes);
        s.write_all(&framed).await?;
        let mut len = [0u8; 2];
        s.read_exact(&mut len).await?;
        let mut buf = vec![0u8; u16::from_be_bytes(len) as usize];
        s.read_exact(&mut buf).await?;
        Ok::<_, std::io::Error>(buf)
    };
    let buf = tokio::time::timeout(TIMEOUT, io)
        .await
        .map_err(|_| format!("{server} did not answer within {}s", TIMEOUT.as_secs()))?
        .map_err(|e| format!("{server}: {e}"))?;
    Message::from_bytes(&buf).map_err(|e| format!("{server}: malformed answer: {e}"))
}

fn query(name: &str, rtype: RecordType) -> Result<Vec<u8>, String> {
    let mut m = Message::new(rand::random(), MessageType::Query, OpCode::Query);
    m.add_query(Query::query(Name::from_str(name).map_err(|e| e.to_string())?, rtype));
    m.to_bytes().map_err(|e| e.to_string())
}

/// The zone that contains `name` on `server`: the owner of the SOA in the answer or authority section.
async fn zone_of(server: SocketAddr, name: &str) -> Result<Name, String> {
    let answer = exchange(server, &query(name, RecordType::SOA)?).await?;
    answer
        .answers
        .iter()
        .chain(answer.authorities.iter())
        .find(|r| r.record_type() == RecordType::SOA)
        .map(|r| r.name.clone())
        .ok_or_else(|| format!("{server} is not authoritative for {name} (no SOA in its answer)"))
}

async fn update(server: SocketAddr, key: &TsigKey, name: &str, value: &str, add: bool) -> Result<(), String> {
    let zone = zone_of(server, name).await?;
    let mut m = update_message(&zone, name, value, add)?;
    let now = crate::util::unix_now() as u64;
    m.finalize(&key.signer()?, now).map_err(|e| e.to_string())?;
    let bytes = m.to_bytes().map_err(|e| e.to_string())?;
    let answer = exchange(server, &bytes).await?;
    match answer.response_code {
        ResponseCode::NoError => Ok(()),
        code => Err(format!(
            "{server} refused the update of {name} in zone {zone}: {code} (rcode {}); check tls.dns01_tsig_key and the zone's update policy",
            u16::from(code)
        )),
    }
}

/// Whether `server` answers `value` among the TXT records of `name`.
async fn visible(server: SocketAddr, name: &str, value: &str) -> bool {
    let Ok(q) = query(name, RecordType::TXT) else { return false };
    match exchange(server, &q).await {
        Ok(m) => m.answers.iter().any(|r| match &r.data {
            RData::TXT(t) => t.txt_data.iter().any(|d| d.as_ref() == value.as_bytes()),
            _ => false,
        }),
        Err(_) => false,
    }
}

/// Add the challenge record and wait until the primary serves it.
pub(crate) async fn publish(server: SocketAddr, key: &TsigKey, identifier: &str, value: &str) -> Result<(), String> {
    let name = record_name(identifier);
    update(server, key, &name, value, true).await?;
    for _ in 0..50 {
        if visible(server, &name, value).await {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Err(format!("{server} accepted the update but does not serve the TXT record at {name}"))
}

/// Remove the challenge record (best effort: a leftover TXT record does no harm).
pub(crate) async fn withdraw(server: SocketAddr, key: &TsigKey, identifier: &str, value: &str) {
    if let Err(e) = update(server, key, &record_name(identifier), value, false).await {
        tracing::warn!(identifier, error = %e, "could not remove the DNS-01 record");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_parse_like_tsig_keygen_prints_them() {
        let k = TsigKey::parse("hearth-key:hmac-sha256:c2VjcmV0c2VjcmV0c2VjcmV0").unwrap();
        assert_eq!((k.name.as_str(), k.algorithm.as_str()), ("hearth-key", "hmac-sha256"));
        assert!(k.signer().is_ok());
        assert!(TsigKey::parse("k:hmac-md5:c2VjcmV0").is_err());
        assert!(TsigKey::parse("k:hmac-sha256:not base64!").is_err());
        assert!(TsigKey::parse("k:hmac-sha256").is_err());
        assert!(!format!("{k:?}").contains("c2Vj"), "the secret is not printed");
    }

    #[test]
    fn updates_are_signed() {
        assert_eq!(record_name("*.example.com"), "_acme-challenge.example.com.");
        let zone = Name::from_str("example.com.").unwrap();
        let mut m = update_message(&zone, "_acme-challenge.example.com.", "token", true).unwrap();
        let key = TsigKey::parse("hearth-key:hmac-sha256:c2VjcmV0c2VjcmV0c2VjcmV0").unwrap();
        m.finalize(&key.signer().unwrap(), 1_700_000_000).unwrap();
        let bytes = m.to_bytes().unwrap();
        let back = Message::from_bytes(&bytes).unwrap();
        assert_eq!(back.op_code, OpCode::Update);
        assert!(back.signature().is_some());
    }
}
