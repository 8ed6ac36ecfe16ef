//! Listen addresses (`server.http_listen`, `dns.listen`, …): [`ListenAddr`] and its text form.
//!
//! Invariant: the text form round-trips (`:port` for every interface, IPv6 and IPv4; `ip:port`; `[v6]:port`);
//! host names are refused (no DNS lookups in the config).

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A listen address: `host:port`, `[v6]:port`, or `:port` for every interface (IPv6 and IPv4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct ListenAddr(pub SocketAddr);

impl ListenAddr {
    pub(super) fn local(port: u16) -> Self {
        ListenAddr(SocketAddr::from(([127, 0, 0, 1], port)))
    }

    /// The address a local client (`hearth healthcheck`) should connect to.
    pub(crate) fn connect_addr(&self) -> SocketAddr {
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
