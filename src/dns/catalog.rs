//! The block-list catalog (pure data): well-known lists a user adds with one click, in the wizard and on the lists
//! page, as AdGuard Home's "choose from the list" and Pi-hole's suggested lists do. Nothing here is downloaded: an
//! added entry becomes an ordinary `[[dns.lists]]` item (named by its id), fetched by the list updater like any URL.
//!
//! Sizes are approximate (the lists change daily; counted in late 2026) and shown as a hint of what a list costs:
//! hearth keeps about 8 bytes per domain.

use serde::Serialize;
use utoipa::ToSchema;

/// One list of the catalog.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
pub(crate) struct CatalogList {
    /// Stable id; the name the list gets in `dns.lists`.
    pub id: &'static str,
    pub name: &'static str,
    /// Where the publisher serves it.
    pub url: &'static str,
    /// The list's licence (SPDX id where it has one).
    pub licence: &'static str,
    /// About how many domains it blocks.
    pub approx_domains: u32,
    /// What it is for, and what it may break.
    pub description: &'static str,
    /// The one ticked by default in the wizard.
    pub recommended: bool,
}

/// The catalog, the recommended list first, then from fewest to most blocked domains within each publisher.
pub(crate) const CATALOG: &[CatalogList] = &[
    CatalogList {
        id: "adguard-dns",
        name: "AdGuard DNS filter",
        url: "https://adguardteam.github.io/HostlistsRegistry/assets/filter_1.txt",
        licence: "GPL-3.0",
        approx_domains: 140_000,
        description: "Ads and trackers, made for DNS-level blocking and the default of AdGuard Home. Few false \
                      positives: the safe first choice.",
        recommended: true,
    },
    CatalogList {
        id: "stevenblack-unified",
        name: "StevenBlack unified hosts",
        url: "https://raw.githubusercontent.com/StevenBlack/hosts/master/hosts",
        licence: "MIT",
        approx_domains: 80_000,
        description: "Ads and malware, merged from several curated hosts files (AdAway, URLhaus and others). The \
                      classic Pi-hole list.",
        recommended: false,
    },
    CatalogList {
        id: "oisd-small",
        name: "OISD small",
        url: "https://small.oisd.nl/",
        licence: "GPL-3.0",
        approx_domains: 55_000,
        description: "Ads, trackers and malware, tuned to break nothing; a good list for a household that never \
                      wants to ask why a site fails.",
        recommended: false,
    },
    CatalogList {
        id: "oisd-big",
        name: "OISD big",
        url: "https://big.oisd.nl/",
        licence: "GPL-3.0",
        approx_domains: 250_000,
        description: "OISD's full list: ads, trackers, malware, phishing, cryptojacking. Still careful about false \
                      positives.",
        recommended: false,
    },
    CatalogList {
        id: "hagezi-light",
        name: "HaGeZi Light",
        url: "https://raw.githubusercontent.com/hagezi/dns-blocklists/main/adblock/light.txt",
        licence: "GPL-3.0",
        approx_domains: 90_000,
        description: "Ads, trackers, metrics and badware, for devices where nothing may break.",
        recommended: false,
    },
    CatalogList {
        id: "hagezi-normal",
        name: "HaGeZi Normal",
        url: "https://raw.githubusercontent.com/hagezi/dns-blocklists/main/adblock/multi.txt",
        licence: "GPL-3.0",
        approx_domains: 200_000,
        description: "All-round protection against ads, tracking, metrics, phishing and malware; rarely breaks \
                      anything.",
        recommended: false,
    },
    CatalogList {
        id: "hagezi-pro",
        name: "HaGeZi Pro",
        url: "https://raw.githubusercontent.com/hagezi/dns-blocklists/main/adblock/pro.txt",
        licence: "GPL-3.0",
        approx_domains: 300_000,
        description: "Stricter: also affiliate and tracking links. Some shopping-comparison links may stop working.",
        recommended: false,
    },
    CatalogList {
        id: "hagezi-pro-plus",
        name: "HaGeZi Pro++",
        url: "https://raw.githubusercontent.com/hagezi/dns-blocklists/main/adblock/pro.plus.txt",
        licence: "GPL-3.0",
        approx_domains: 380_000,
        description: "Aggressive: for experienced users who will allow what breaks.",
        recommended: false,
    },
    CatalogList {
        id: "hagezi-tif",
        name: "HaGeZi Threat Intelligence Feeds",
        url: "https://raw.githubusercontent.com/hagezi/dns-blocklists/main/adblock/tif.txt",
        licence: "GPL-3.0",
        approx_domains: 600_000,
        description: "Malware, phishing, scam and command-and-control domains only (no ads); pairs with any ad list.",
        recommended: false,
    },
    CatalogList {
        id: "phishing-army",
        name: "Phishing Army (extended)",
        url: "https://phishing.army/download/phishing_army_blocklist_extended.txt",
        licence: "CC-BY-NC-4.0",
        approx_domains: 150_000,
        description: "Phishing sites, gathered from PhishTank, OpenPhish and others.",
        recommended: false,
    },
];

/// The catalog entry with this id.
pub(crate) fn find(id: &str) -> Option<&'static CatalogList> {
    CATALOG.iter().find(|l| l.id == id)
}

/// Where an added list is fetched from: the publisher's URL, or `<mirror>/<id>.txt` when `dns.catalog_mirror` (a
/// directory or an http(s) URL prefix holding local copies) is set.
pub(crate) fn source(list: &CatalogList, mirror: &str) -> String {
    if mirror.is_empty() { list.url.to_string() } else { format!("{}/{}.txt", mirror.trim_end_matches('/'), list.id) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_names_and_urls_are_https_and_one_is_recommended() {
        for (i, l) in CATALOG.iter().enumerate() {
            assert!(CATALOG[..i].iter().all(|o| o.id != l.id && o.url != l.url), "{} twice", l.id);
            assert!(l.url.starts_with("https://"), "{}", l.id);
            // the id is the list's name in dns.lists: the config's rules for names apply
            assert!(l.id.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'), "{}", l.id);
        }
        assert_eq!(CATALOG.iter().filter(|l| l.recommended).count(), 1);
        assert!(CATALOG[0].recommended, "the recommended list comes first");
    }

    #[test]
    fn a_mirror_replaces_the_publishers_url() {
        let l = find("oisd-small").unwrap();
        assert_eq!(source(l, ""), "https://small.oisd.nl/");
        assert_eq!(source(l, "/srv/lists/"), "/srv/lists/oisd-small.txt");
        assert_eq!(source(l, "http://nas.home.arpa/lists"), "http://nas.home.arpa/lists/oisd-small.txt");
        assert!(find("nope").is_none());
    }
}
