//! DNSSEC against real peers, started here: our own signed tree served by three BIND instances (root on
//! 127.0.1.1, `test.` on 127.0.1.2, leaf zones on 127.0.1.3, built by tests/dnssec/mktree.sh with BIND's
//! signing tools), a non-validating Unbound as hearth's upstream (forward mode), and a validating Unbound with
//! the same trust anchor as the reference every answer is compared with; then hearth in recursive mode on the same
//! tree from its root hints, including DNS rebinding protection against `rebind.test`, whose server is on a
//! public-looking address (198.18.0.53, added to lo). Needs root (loopback addresses, port 53).

use crate::common::*;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The tree and both Unbounds; every process is stopped on drop.
struct Tree {
    dir: tempfile::TempDir,
    children: Vec<Child>,
}

const ITERATOR: &str = "127.0.1.10";
const VALIDATOR: &str = "127.0.1.11";
const UNBOUND_PORT: u16 = 5300;
/// The "public" authoritative server of rebind.test (the leaf BIND listens here too): not loopback or private.
const PUBLIC: &str = "198.18.0.53";

impl Tree {
    fn start() -> Tree {
        let dir = tempfile::tempdir().unwrap();
        for a in ["1", "2", "3", "10", "11"] {
            // BIND only listens on addresses configured on an interface; "exists" is fine
            let _ = Command::new("ip")
                .args(["addr", "add", &format!("127.0.1.{a}/8"), "dev", "lo"])
                .stderr(Stdio::null())
                .status();
        }
        let _ = Command::new("ip")
            .args(["addr", "add", &format!("{PUBLIC}/32"), "dev", "lo"])
            .stderr(Stdio::null())
            .status();
        let addrs = Command::new("ip").args(["-o", "addr", "show", "dev", "lo"]).output().expect("ip (iproute2)");
        let addrs = String::from_utf8_lossy(&addrs.stdout);
        for a in ["127.0.1.1/", "127.0.1.2/", "127.0.1.3/", "198.18.0.53/"] {
            assert!(addrs.contains(a), "{a} is not on lo: this test needs root (CAP_NET_ADMIN) to add it:\n{addrs}");
        }
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/dnssec/mktree.sh");
        let out = Command::new("sh").arg(script).arg(dir.path()).output().expect("sh");
        assert!(out.status.success(), "mktree.sh failed: {}", String::from_utf8_lossy(&out.stderr));
        let mut tree = Tree { dir, children: vec![] };
        for n in ["root", "tld", "leaf"] {
            let conf = tree.path().join(format!("named-{n}.conf"));
            let child = Command::new("named")
                .args(["-f", "-u", "root", "-c"])
                .arg(&conf)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("named (Debian package bind9) is needed: .ci/deps installs it");
            tree.children.push(child);
        }
        tree.unbound("iter", ITERATOR, "iterator", "");
        let anchor = format!("trust-anchor-file: \"{}\"", tree.path().join("root.ds").display());
        tree.unbound("val", VALIDATOR, "validator iterator", &anchor);
        // readiness probes (the root is only asked about itself: the test checks what it saw)
        let probes: [(&str, u16, &[&str], &str); 6] = [
            ("127.0.1.1", 53, &[".", "SOA", "+short", "+norec"], "ns.root."),
            ("127.0.1.3", 53, &["www.secure.test", "+short", "+norec"], "192.0.2.1"),
            (PUBLIC, 53, &["www.rebind.test", "+short", "+norec"], "192.168.1.1"),
            ("127.0.1.2", 53, &["www.sub.rebind.test", "+short", "+norec"], "192.0.2.21"),
            (ITERATOR, UNBOUND_PORT, &["www.secure.test", "+short"], "192.0.2.1"),
            (VALIDATOR, UNBOUND_PORT, &["www.secure.test", "+short"], "192.0.2.1"),
        ];
        for (addr, port, args, expect) in probes {
            let ready = (0..100).any(|_| {
                let up = dig_at(addr, port, args).contains(expect);
                if !up {
                    std::thread::sleep(Duration::from_millis(100));
                }
                up
            });
            assert!(ready, "{addr}:{port} did not start");
        }
        tree
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn unbound(&mut self, name: &str, addr: &str, modules: &str, extra: &str) {
        let d = self.path().display().to_string();
        let conf = format!(
            "server:\n  interface: {addr}\n  port: {UNBOUND_PORT}\n  username: \"\"\n  chroot: \"\"\n  directory: \"{d}\"\n  \
             pidfile: \"{d}/unbound-{name}.pid\"\n  logfile: \"{d}/unbound-{name}.log\"\n  use-syslog: no\n  \
             do-not-query-localhost: no\n  module-config: \"{modules}\"\n  root-hints: \"{d}/root.hints\"\n  \
             local-zone: \"test.\" nodefault\n  access-control: 127.0.0.0/8 allow\n  ede: yes\n  {extra}\n\
             remote-control:\n  control-enable: no\n"
        );
        let path: PathBuf = self.path().join(format!("unbound-{name}.conf"));
        std::fs::write(&path, conf).unwrap();
        let child = Command::new("unbound")
            .args(["-d", "-c"])
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("unbound (Debian package unbound) is needed: .ci/deps installs it");
        self.children.push(child);
    }
}

impl Drop for Tree {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = Command::new("kill").arg(c.id().to_string()).status();
        }
        for c in &mut self.children {
            let _ = c.wait();
        }
    }
}

fn dig_at(addr: &str, port: u16, args: &[&str]) -> String {
    let out = Command::new("dig")
        .args([&format!("@{addr}"), "-p", &port.to_string(), "+tries=1", "+time=3"])
        .args(args)
        .output()
        .expect("dig");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// What a client sees: rcode, whether AD is set, the EDE code if any.
#[derive(Debug, PartialEq)]
struct Seen {
    status: String,
    ad: bool,
    ede: Option<u16>,
}

fn ask(addr: &str, port: u16, name: &str, qtype: &str, flags: &[&str]) -> (Seen, String) {
    let mut args = vec![name, qtype];
    args.extend_from_slice(flags);
    let text = dig_at(addr, port, &args);
    let status = text.split("status: ").nth(1).and_then(|s| s.split(',').next()).unwrap_or("none").to_string();
    let flag_line = text.lines().find(|l| l.starts_with(";; flags:")).unwrap_or("");
    let ad = flag_line.split(';').nth(2).unwrap_or("").split_whitespace().any(|f| f == "ad");
    let ede = text.split("; EDE: ").nth(1).and_then(|s| s.split_whitespace().next()).and_then(|c| c.parse().ok());
    (Seen { status, ad, ede }, text)
}

/// (name, type, status, AD, EDE) — what hearth must answer with `+dnssec`.
const CASES: &[(&str, &str, &str, bool, Option<u16>)] = &[
    ("www.secure.test", "A", "NOERROR", true, None),
    ("alias.secure.test", "A", "NOERROR", true, None),
    ("x.a.b.secure.test", "A", "NOERROR", true, None),
    ("x.wild.secure.test", "A", "NOERROR", true, None),
    ("nx.secure.test", "A", "NXDOMAIN", true, None),
    ("txt.secure.test", "AAAA", "NOERROR", true, None),
    ("b.secure.test", "A", "NOERROR", true, None),
    ("secure.test", "DNSKEY", "NOERROR", true, None),
    ("secure.test", "DS", "NOERROR", true, None),
    ("www.nsec3.test", "A", "NOERROR", true, None),
    ("nx.nsec3.test", "A", "NXDOMAIN", true, None),
    ("www.nsec3.test", "AAAA", "NOERROR", true, None),
    ("nx.wild.nsec3.test", "A", "NOERROR", true, None),
    ("nx.optout.test", "A", "NXDOMAIN", false, None),
    ("www.child.optout.test", "A", "NOERROR", false, None),
    ("www.insecure.test", "A", "NOERROR", false, None),
    ("nx.insecure.test", "A", "NXDOMAIN", false, None),
    ("insecure.test", "DS", "NOERROR", true, None),
    ("www.bad.test", "A", "SERVFAIL", false, Some(6)),
    ("ok.bad.test", "A", "NOERROR", true, None),
    ("www.expired.test", "A", "SERVFAIL", false, Some(7)),
    ("nope", "A", "NXDOMAIN", true, None),
    ("ns.test", "A", "NOERROR", true, None),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dnssec_in_forward_and_recursive_mode_matches_a_validating_unbound() {
    let tree = Tree::start();
    let anchors = tree.path().join("root.ds");
    let inst = Instance::start(&format!(
        "[dns]\nlisten = [\"127.0.0.1:{{dns_port}}\"]\nupstreams = [\"udp://{ITERATOR}:{UNBOUND_PORT}\"]\ntrust_anchors = \"{}\"\n\n[dns.querylog]\nflush_interval = \"100ms\"\n",
        anchors.display()
    ))
    .await;
    let port = inst.dns.port();
    for &(name, qtype, status, ad, ede) in CASES {
        let (seen, text) = ask("127.0.0.1", port, name, qtype, &["+dnssec"]);
        assert_eq!(seen, Seen { status: status.into(), ad, ede }, "{name} {qtype}:\n{text}");
        // the reference: same status and AD from a validating Unbound (its EDE codes may differ: it reports the
        // expired DNSKEY signature of expired.test as 9 "DNSKEY Missing", hearth as 7 "Signature Expired")
        let (reference, rtext) = ask(VALIDATOR, UNBOUND_PORT, name, qtype, &["+dnssec"]);
        assert_eq!(
            (&seen.status, seen.ad),
            (&reference.status, reference.ad),
            "{name} {qtype} vs Unbound:\n{text}\n{rtext}"
        );
    }
    // without DO: no signatures in the answer, AD only because dig sets AD in the query; without AD: none
    let (seen, text) = ask("127.0.0.1", port, "www.secure.test", "A", &[]);
    assert!(seen.ad && !text.contains("RRSIG"), "{text}");
    let (seen, _) = ask("127.0.0.1", port, "www.secure.test", "A", &["+noadflag"]);
    assert!(!seen.ad);
    let (_, text) = ask("127.0.0.1", port, "www.secure.test", "A", &["+dnssec"]);
    assert!(text.contains("RRSIG"), "{text}");
    // the cache keeps the verdict: asked again, still secure / still bogus
    let (seen, _) = ask("127.0.0.1", port, "www.secure.test", "A", &["+dnssec"]);
    assert!(seen.ad);
    let (seen, _) = ask("127.0.0.1", port, "www.bad.test", "A", &["+dnssec"]);
    assert_eq!(seen.status, "SERVFAIL");
    // CD: the client takes responsibility and gets the bogus data unchecked
    let (seen, text) = ask("127.0.0.1", port, "www.bad.test", "A", &["+dnssec", "+cd"]);
    assert_eq!(seen.status, "NOERROR", "{text}");
    assert!(!seen.ad && text.contains("192.0.2.9"));
    // the query log records the verdict
    let (c, _) = admin_session(&inst).await;
    let mut seen = (false, false);
    for _ in 0..50 {
        let rows: serde_json::Value =
            c.get(inst.url("/api/v1/dns/querylog?limit=200")).send().await.unwrap().json().await.unwrap();
        let rows = rows.as_array().cloned().unwrap_or_default();
        let has = |name: &str, outcome: &str, verdict: &str| {
            rows.iter().any(|r| r["name"] == name && r["outcome"] == outcome && r["dnssec"] == verdict)
        };
        seen = (has("www.secure.test", "forwarded", "secure"), has("www.bad.test", "bogus", "bogus"));
        if seen == (true, true) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(seen, (true, true), "query log lacks the DNSSEC verdicts");
    // verdicts are counted
    let metrics = reqwest::get(inst.url("/metrics")).await.unwrap().text().await.unwrap();
    for result in ["secure", "insecure", "bogus"] {
        assert!(metrics.contains(&format!("hearth_dns_dnssec_total{{result=\"{result}\"}}")), "{result}");
    }
    promtool_check(&metrics);
    drop(inst);

    // recursive mode: hearth itself walks from our root (root hints file) with the same trust anchor
    let inst = Instance::start(&format!(
        "[dns]\nlisten = [\"127.0.0.1:{{dns_port}}\"]\nmode = \"recursive\"\nroot_hints = \"{}\"\ntrust_anchors = \"{}\"\n",
        tree.path().join("root.hints").display(),
        anchors.display()
    ))
    .await;
    let port = inst.dns.port();
    for &(name, qtype, status, ad, ede) in CASES {
        let (seen, text) = ask("127.0.0.1", port, name, qtype, &["+dnssec"]);
        assert_eq!(seen, Seen { status: status.into(), ad, ede }, "recursive: {name} {qtype}:\n{text}");
    }
    let (seen, text) = ask("127.0.0.1", port, "www.secure.test", "A", &[]);
    assert!(seen.ad && text.contains("192.0.2.1") && !text.contains("RRSIG"), "{text}");
    // QNAME minimisation: the root only ever saw top-level names, never the full names asked
    let root_log = std::fs::read_to_string(tree.path().join("queries-root.log")).unwrap_or_default();
    assert!(root_log.contains("query: test IN"), "the root was asked nothing about test.:\n{root_log}");
    for &(name, ..) in CASES.iter().filter(|c| c.0.contains('.')) {
        assert!(!root_log.contains(&format!("query: {name} ")), "the root saw {name}:\n{root_log}");
    }
    // DNS rebinding protection (on by default). The tree's own servers are on loopback addresses, so their data
    // is trusted (ns.test A 127.0.1.2 above); rebind.test is served from a public address and may not put its
    // names on private ones: SERVFAIL with EDE 15 (Blocked), not an empty answer (see recursor.rs)
    let (seen, text) = ask("127.0.0.1", port, "www.rebind.test", "A", &[]);
    assert_eq!((seen.status.as_str(), seen.ede), ("SERVFAIL", Some(15)), "{text}");
    assert!(text.contains("rebinding") && text.contains("ANSWER: 0,"), "{text}");
    // a public address from the public server is fine
    let (seen, text) = ask("127.0.0.1", port, "pub.rebind.test", "A", &["+short"]);
    assert!(seen.status == "none" && text.trim() == "192.0.2.20", "{text}");
    // nor may it send hearth to a loopback server through glue (nor through the server's address looked up)
    let (seen, text) = ask("127.0.0.1", port, "www.sub.rebind.test", "A", &[]);
    assert_eq!(seen.status, "SERVFAIL", "{text}");
    assert!(!text.contains("192.0.2.21"), "{text}");
    drop(inst);

    // rebinding_allow: the owner's domain may point inside, glue included
    let inst = Instance::start(&format!(
        "[dns]\nlisten = [\"127.0.0.1:{{dns_port}}\"]\nmode = \"recursive\"\nroot_hints = \"{}\"\ntrust_anchors = \"{}\"\n\
         rebinding_allow = [\"rebind.test\"]\n",
        tree.path().join("root.hints").display(),
        anchors.display()
    ))
    .await;
    let port = inst.dns.port();
    let (_, text) = ask("127.0.0.1", port, "www.rebind.test", "A", &["+short"]);
    assert_eq!(text.trim(), "192.168.1.1");
    let (_, text) = ask("127.0.0.1", port, "www.sub.rebind.test", "A", &["+short"]);
    assert_eq!(text.trim(), "192.0.2.21");
    drop(inst);

    // rebinding_protection = false: no check at all
    let inst = Instance::start(&format!(
        "[dns]\nlisten = [\"127.0.0.1:{{dns_port}}\"]\nmode = \"recursive\"\nroot_hints = \"{}\"\ntrust_anchors = \"{}\"\n\
         rebinding_protection = false\n",
        tree.path().join("root.hints").display(),
        anchors.display()
    ))
    .await;
    let (_, text) = ask("127.0.0.1", inst.dns.port(), "www.rebind.test", "A", &["+short"]);
    assert_eq!(text.trim(), "192.168.1.1");
    drop(inst);
    drop(tree);
}
