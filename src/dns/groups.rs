//! Client groups (pure core): each group names the clients it covers (addresses or CIDR prefixes) and the lists
//! that apply to them; the first matching group wins, and clients in no group get every enabled list.

use std::net::IpAddr;

use super::blocklist::ListSet;
use crate::net::Cidr;

#[derive(Debug, Clone)]
pub(crate) struct Groups {
    groups: Vec<(String, Vec<Cidr>, ListSet)>,
    default: ListSet,
}

impl Groups {
    pub(crate) fn new(default: ListSet) -> Self {
        Groups { groups: vec![], default }
    }

    pub(crate) fn add(&mut self, name: String, clients: Vec<Cidr>, lists: ListSet) {
        self.groups.push((name, clients, lists));
    }

    /// The lists that apply to a client in no group (every enabled list).
    pub(crate) fn default_lists(&self) -> &ListSet {
        &self.default
    }

    /// The group name (None for the default) and the lists that apply to `client`.
    pub(crate) fn lists_for(&self, client: IpAddr) -> (Option<&str>, &ListSet) {
        self.groups
            .iter()
            .find(|(_, cidrs, _)| cidrs.iter().any(|c| c.contains(client)))
            .map(|(n, _, l)| (Some(n.as_str()), l))
            .unwrap_or((None, &self.default))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_matching() {
        let c = Cidr::parse("192.168.1.0/24").unwrap();
        assert!(c.contains("192.168.1.77".parse().unwrap()));
        assert!(c.contains("::ffff:192.168.1.77".parse().unwrap()), "v4-mapped");
        assert!(!c.contains("192.168.2.1".parse().unwrap()));
        assert!(!c.contains("fd00::1".parse().unwrap()));
        assert!(Cidr::parse("0.0.0.0/0").unwrap().contains("8.8.8.8".parse().unwrap()));
        assert!(Cidr::parse("fd00::/8").unwrap().contains("fd12::1".parse().unwrap()));
        assert!(Cidr::parse("10.0.0.1").unwrap().contains("10.0.0.1".parse().unwrap()));
        assert!(!Cidr::parse("10.0.0.1").unwrap().contains("10.0.0.2".parse().unwrap()));
        assert!(Cidr::parse("10.0.0.0/33").is_err());
        assert!(Cidr::parse("kids").is_err());
    }

    #[test]
    fn first_group_wins_else_default() {
        let mut g = Groups::new(ListSet::none().with(0).with(1));
        g.add("kids".into(), vec![Cidr::parse("10.0.0.0/24").unwrap()], ListSet::none().with(2));
        g.add("all-ten".into(), vec![Cidr::parse("10.0.0.0/8").unwrap()], ListSet::none());
        let (n, l) = g.lists_for("10.0.0.5".parse().unwrap());
        assert_eq!(n, Some("kids"));
        assert!(l.contains(2) && !l.contains(0));
        assert_eq!(g.lists_for("10.1.0.5".parse().unwrap()).0, Some("all-ten"));
        let (n, l) = g.lists_for("192.168.1.1".parse().unwrap());
        assert_eq!(n, None);
        assert!(l.contains(0) && l.contains(1));
    }
}
