//! The shared network vocabulary (pure, bottom layer): what several subsystems and the front door must agree on
//! without importing each other — a connection's facts ([`ConnInfo`], [`AdminClient`]), request ids, address
//! prefixes ([`Cidr`]), host names and the local-name rule, and sockets reserved while a config change is prepared
//! ([`Reserved`]), which the task that serves them takes after the commit; and this machine's LAN addresses
//! ([`lan_addresses`]), which the device guide tells the user to give the router.
//!
//! Invariant: this module imports nothing from the crate but `util`.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;

use crate::util::Locked;

/// Per-connection facts, inserted into every request by the accept loop.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConnInfo {
    pub peer: SocketAddr,
    /// The box's address the client connected to (an IP literal `Host` must be this one to reach the admin).
    pub local: SocketAddr,
    pub tls: bool,
}

/// Inserted by the front door into every request the admin router serves: whether the client's address is in
/// `server.admin_allow` (the UI and API need it; `/metrics` and `/readyz` details check it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct AdminClient(pub bool);

/// The request-id header, taken from the client when valid and echoed back.
pub(crate) const REQUEST_ID_HEADER: &str = "x-request-id";

/// Whether a client-sent request id may be kept (it goes into log lines and response headers).
pub(crate) fn valid_request_id(v: &str) -> bool {
    !v.is_empty() && v.len() <= 64 && v.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
}

/// A new request id: a v4 UUID from the thread's CSPRNG (no getrandom syscall per request).
pub(crate) fn new_request_id() -> String {
    uuid::Builder::from_random_bytes(rand::random()).into_uuid().to_string()
}

/// The request's id: the client's `X-Request-Id` when valid, else a new one.
pub(crate) fn request_id(headers: &axum::http::HeaderMap) -> String {
    headers
        .get(REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| valid_request_id(v))
        .map(str::to_string)
        .unwrap_or_else(new_request_id)
}

/// An IPv4 client on a dual-stack socket arrives as `::ffff:a.b.c.d`: compare and count it as the IPv4 address.
pub(crate) fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

/// An address prefix such as `192.168.1.0/24` or `fd00::/8` (a bare address is a full-length prefix).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    pub(crate) fn parse(s: &str) -> Result<Cidr, String> {
        let (a, p) = s.split_once('/').unwrap_or((s, ""));
        let addr: IpAddr = a.trim().parse().map_err(|_| format!("{s:?} is not an address or CIDR prefix"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = if p.is_empty() {
            max
        } else {
            p.parse::<u8>().ok().filter(|p| *p <= max).ok_or_else(|| format!("{s:?} has an invalid prefix length"))?
        };
        Ok(Cidr { addr, prefix })
    }

    pub(crate) fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, canonical(ip)) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX.checked_shl(32 - self.prefix as u32).unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX.checked_shl(128 - self.prefix as u32).unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// Lower-case a host name, drop a trailing dot, check its syntax. `*.` is allowed as the first label.
pub(crate) fn normalize_host(h: &str) -> Result<String, String> {
    let h = h.trim().trim_end_matches('.').to_ascii_lowercase();
    if h.is_empty() || h.len() > 253 {
        return Err("must be a host name".into());
    }
    if h.parse::<IpAddr>().is_ok() {
        return Ok(h);
    }
    let rest = h.strip_prefix("*.").unwrap_or(&h);
    for label in rest.split('.') {
        let ok = !label.is_empty()
            && label.len() <= 63
            && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            && !label.starts_with('-')
            && !label.ends_with('-');
        if !ok {
            return Err(format!("{h:?} is not a valid host name"));
        }
    }
    Ok(h)
}

/// The host part of a `Host` header or URI authority, lower-cased, without port or trailing dot.
pub(crate) fn request_host(authority: &str) -> String {
    let a = authority.trim();
    let host = if let Some(rest) = a.strip_prefix('[') {
        rest.split(']').next().unwrap_or("")
    } else {
        a.rsplit_once(':').filter(|(_, p)| p.bytes().all(|b| b.is_ascii_digit())).map(|(h, _)| h).unwrap_or(a)
    };
    host.trim_end_matches('.').to_ascii_lowercase()
}

/// Whether a name is only meaningful inside the home (an IP literal, `.local`, `.home.arpa`, `.lan`, `.internal`,
/// `localhost`, or one of `dns.local_domains`): no public CA can certify it, the internal CA does.
pub(crate) fn is_local_name(name: &str, local_domains: &[String]) -> bool {
    if name.parse::<IpAddr>().is_ok() {
        return true;
    }
    ["local", "home.arpa", "lan", "internal", "localhost"]
        .iter()
        .map(|s| s.to_string())
        .chain(local_domains.iter().map(|d| d.trim_end_matches('.').to_ascii_lowercase()))
        .any(|s| name == s || name.ends_with(&format!(".{s}")))
}

/// Sockets bound while a config change is prepared (so an address that cannot be bound rejects the change before
/// anything is written), waiting for the task that serves them to take them after the commit.
#[derive(Debug, Default)]
pub(crate) struct Reserved {
    tcp: Mutex<HashMap<SocketAddr, std::net::TcpListener>>,
    udp: Mutex<HashMap<SocketAddr, std::net::UdpSocket>>,
}

impl Reserved {
    /// Bind `addr` for TCP (non-blocking, ready for tokio) unless it is already reserved.
    pub(crate) fn reserve_tcp(&self, addr: SocketAddr) -> std::io::Result<()> {
        if let std::collections::hash_map::Entry::Vacant(e) = self.tcp.locked().entry(addr) {
            let l = std::net::TcpListener::bind(addr)?;
            l.set_nonblocking(true)?;
            e.insert(l);
        }
        Ok(())
    }

    /// Bind `addr` for UDP (non-blocking) unless it is already reserved.
    pub(crate) fn reserve_udp(&self, addr: SocketAddr) -> std::io::Result<()> {
        if let std::collections::hash_map::Entry::Vacant(e) = self.udp.locked().entry(addr) {
            let s = std::net::UdpSocket::bind(addr)?;
            s.set_nonblocking(true)?;
            e.insert(s);
        }
        Ok(())
    }

    /// Drop a reservation (a change that was not committed).
    pub(crate) fn release(&self, addr: SocketAddr) {
        self.tcp.locked().remove(&addr);
        self.udp.locked().remove(&addr);
    }

    pub(crate) fn take_tcp(&self, addr: SocketAddr) -> Option<std::net::TcpListener> {
        self.tcp.locked().remove(&addr)
    }

    pub(crate) fn take_udp(&self, addr: SocketAddr) -> Option<std::net::UdpSocket> {
        self.udp.locked().remove(&addr)
    }

    /// A TCP listener for `addr`: the reserved one, else bound now. An address moving between two of hearth's own
    /// listeners (e.g. from `server.http_listen` to `dns.tls_listen`) may still be held for a moment by the old
    /// accept loop, so a busy address is retried for two seconds.
    pub(crate) async fn tcp(&self, addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
        if let Some(l) = self.take_tcp(addr) {
            return tokio::net::TcpListener::from_std(l);
        }
        let mut last = None;
        for _ in 0..20 {
            match tokio::net::TcpListener::bind(addr).await {
                Ok(l) => return Ok(l),
                Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
                    last = Some(e);
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| std::io::Error::other("address in use")))
    }

    /// A UDP socket for `addr`: the reserved one, else bound now.
    pub(crate) async fn udp(&self, addr: SocketAddr) -> std::io::Result<tokio::net::UdpSocket> {
        if let Some(s) = self.take_udp(addr) {
            return tokio::net::UdpSocket::from_std(s);
        }
        tokio::net::UdpSocket::bind(addr).await
    }
}

/// One address other devices can reach this machine at.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub(crate) struct LanAddress {
    pub interface: String,
    #[schema(value_type = String)]
    pub address: IpAddr,
}

/// Interfaces that are not the LAN: containers' and VMs' bridges and veths, VPN tunnels stay (a user may mean them).
const VIRTUAL_PREFIXES: &[&str] = &["docker", "veth", "br-", "virbr", "cni", "flannel", "cali", "podman", "lxc"];

/// The addresses of `found` (interface, address) that devices on the network can use: no loopback, no link-local,
/// no container bridge; private IPv4 first, then other IPv4, then IPv6 (unique-local before global).
pub(crate) fn lan_addresses(found: impl IntoIterator<Item = (String, IpAddr)>) -> Vec<LanAddress> {
    let mut out: Vec<LanAddress> = found
        .into_iter()
        .filter(|(name, ip)| {
            let link_local = match ip {
                IpAddr::V4(v4) => v4.is_link_local(),
                IpAddr::V6(v6) => v6.is_unicast_link_local(),
            };
            // the loopback interface may carry other addresses too (a local resolver's, say): none is the LAN's
            name != "lo"
                && !ip.is_loopback()
                && !ip.is_unspecified()
                && !link_local
                && !VIRTUAL_PREFIXES.iter().any(|p| name.starts_with(p))
        })
        .map(|(interface, address)| LanAddress { interface, address })
        .collect();
    let rank = |a: &LanAddress| match a.address {
        IpAddr::V4(v4) if v4.is_private() => 0,
        IpAddr::V4(_) => 1,
        IpAddr::V6(v6) if v6.is_unique_local() => 2,
        IpAddr::V6(_) => 3,
    };
    out.sort_by_key(|a| (rank(a), a.interface.clone(), a.address));
    out.dedup();
    out
}

/// This machine's interface addresses (getifaddrs); empty when they cannot be read.
pub(crate) fn interface_addresses() -> Vec<(String, IpAddr)> {
    let Ok(addrs) = nix::ifaddrs::getifaddrs() else { return vec![] };
    addrs
        .filter_map(|a| {
            let s = a.address?;
            let ip = match (s.as_sockaddr_in(), s.as_sockaddr_in6()) {
                (Some(v4), _) => IpAddr::V4(v4.ip()),
                (_, Some(v6)) => IpAddr::V6(v6.ip()),
                _ => return None,
            };
            Some((a.interface_name, ip))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn lan_addresses_leave_out_loopback_link_local_and_container_bridges() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let found = [
            ("lo", "127.0.0.1"),
            ("lo", "::1"),
            ("lo", "198.18.0.53"),
            ("eth0", "fe80::1"),
            ("eth0", "2001:db8::5"),
            ("eth0", "fd00::5"),
            ("docker0", "172.17.0.1"),
            ("veth12ab", "10.0.3.1"),
            ("wlan0", "169.254.3.3"),
            ("wlan0", "192.168.1.20"),
            ("eth0", "192.168.1.10"),
            ("wg0", "100.64.0.2"),
        ]
        .map(|(n, a)| (n.to_string(), ip(a)));
        let got: Vec<String> = lan_addresses(found).iter().map(|a| format!("{} {}", a.interface, a.address)).collect();
        assert_eq!(
            got,
            ["eth0 192.168.1.10", "wlan0 192.168.1.20", "wg0 100.64.0.2", "eth0 fd00::5", "eth0 2001:db8::5"]
        );
    }

    #[test]
    fn this_machine_has_interface_addresses() {
        assert!(interface_addresses().iter().any(|(_, a)| a.is_loopback()), "getifaddrs reads at least lo");
    }

    use super::*;

    #[test]
    fn request_ids_are_sanitised() {
        assert!(valid_request_id("abc-123_x.y:z"));
        assert!(!valid_request_id(""));
        assert!(!valid_request_id("a b"));
        assert!(!valid_request_id(&"a".repeat(65)));
        assert!(!valid_request_id("<script>"));
        let mut h = axum::http::HeaderMap::new();
        h.insert(REQUEST_ID_HEADER, "<bad>".parse().unwrap());
        assert_eq!(request_id(&h).len(), 36, "an invalid id is replaced by a UUID");
        h.insert(REQUEST_ID_HEADER, "mine-1".parse().unwrap());
        assert_eq!(request_id(&h), "mine-1");
    }

    #[test]
    fn cidrs_match_mapped_addresses() {
        let c = Cidr::parse("192.168.1.0/24").unwrap();
        assert!(c.contains("192.168.1.9".parse().unwrap()));
        assert!(c.contains("::ffff:192.168.1.9".parse().unwrap()));
        assert!(!c.contains("192.168.2.9".parse().unwrap()));
        assert!(Cidr::parse("10.0.0.0/33").is_err());
        assert!(Cidr::parse("fd00::/8").unwrap().contains("fd12::1".parse().unwrap()));
    }

    #[test]
    fn a_reserved_udp_address_is_taken_not_rebound() {
        let r = Reserved::default();
        let probe = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = probe.local_addr().unwrap();
        assert!(r.reserve_udp(addr).is_err(), "a busy UDP port is refused while preparing");
        drop(probe);
        r.reserve_udp(addr).unwrap();
        assert!(r.take_udp(addr).is_some());
        assert!(r.take_udp(addr).is_none());
    }
}
