//! The DNS resolver against real peers: `dig` as the client, dnsmasq as the upstream, both started here.
//! dnsmasq serves an unsigned private zone and no root keys, so these instances run with `dnssec = false`;
//! validation is tested against a signed tree in tests/dnssec.rs.

use crate::common::*;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A dnsmasq upstream with a few records, stopped on drop.
struct Upstream {
    child: Child,
    port: u16,
}

impl Upstream {
    fn start() -> Upstream {
        Self::start_ttl(300)
    }

    fn start_ttl(ttl: u32) -> Upstream {
        let port = free_port();
        let big: Vec<String> = ["a", "b", "c"].iter().map(|c| format!("\"{}\"", c.repeat(200))).collect();
        // over 1232 bytes: more than hearth sends over UDP whatever the client's EDNS size
        let huge: Vec<String> = (0..8).map(|i| format!("\"{}\"", i.to_string().repeat(200))).collect();
        let child = Command::new("dnsmasq")
            .args(["-k", "--listen-address=127.0.0.1", "--bind-interfaces", "--no-resolv", "--no-hosts"])
            .args(["--conf-file=/dev/null", "--pid-file=", "--user=root", "--local=/example.test/"])
            .arg(format!("--local-ttl={ttl}"))
            .arg(format!("--port={port}"))
            .arg("--host-record=www.example.test,192.0.2.10,2001:db8::10")
            .arg("--host-record=ads.example.test,192.0.2.66")
            .arg("--host-record=keep.ads.example.test,192.0.2.67")
            .arg("--host-record=cdn.example.test,192.0.2.68")
            .arg("--host-record=img.cdn.example.test,192.0.2.69")
            .arg("--host-record=track42.example.test,192.0.2.70")
            .arg(format!("--txt-record=big.example.test,{}", big.join(",")))
            .arg(format!("--txt-record=huge.example.test,{}", huge.join(",")))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("dnsmasq (Debian package dnsmasq-base) is needed: .ci/deps installs it");
        let up = Upstream { child, port };
        for _ in 0..100 {
            if dig(port, &["www.example.test", "+short", "+tries=1", "+time=1"]).contains("192.0.2.10") {
                return up;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("dnsmasq did not start");
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn dig(port: u16, args: &[&str]) -> String {
    let out = Command::new("dig")
        .args(["@127.0.0.1", "-p", &port.to_string(), "+tries=1", "+time=3"])
        .args(args)
        .output()
        .expect("dig (Debian package bind9-dnsutils) is needed: .ci/deps installs it");
    String::from_utf8_lossy(&out.stdout).to_string()
}

fn lists(dir: &std::path::Path) -> String {
    std::fs::write(
        dir.join("block.txt"),
        "# a mixed list\n||ads.example.test^\n@@||keep.ads.example.test^\n*.cdn.example.test\n/^track[0-9]+\\./\n0.0.0.0 hosts-style.example.test\njunk that is not a rule\n",
    )
    .unwrap();
    std::fs::write(dir.join("allow.txt"), "allowed.hosts-style.example.test\n").unwrap();
    format!(
        "[[dns.lists]]\nname = \"ads\"\nkind = \"block\"\nsource = \"{}\"\n\n[[dns.lists]]\nname = \"mine\"\nkind = \"allow\"\nsource = \"{}\"\n",
        dir.join("block.txt").display(),
        dir.join("allow.txt").display()
    )
}

async fn instance(up: &Upstream, upstreams: &str, lists_dir: &std::path::Path) -> Instance {
    instance_with(up, upstreams, lists_dir, "sqlite").await
}

async fn instance_with(up: &Upstream, upstreams: &str, lists_dir: &std::path::Path, storage: &str) -> Instance {
    let _ = up;
    let extra = format!(
        "[dns]\nlisten = [\"127.0.0.1:{{dns_port}}\"]\ndnssec = false\nupstreams = [{upstreams}]\nupstream_timeout = \"500ms\"\n\n{}\n[dns.querylog]\nstorage = \"{storage}\"\nflush_interval = \"100ms\"\n",
        lists(lists_dir)
    );
    Instance::start(&extra).await
}

#[tokio::test]
async fn forwards_caches_and_filters_every_format() {
    let up = Upstream::start();
    let tmp = tempfile::tempdir().unwrap();
    let inst = instance(&up, &format!("\"udp://127.0.0.1:{}\"", up.port), tmp.path()).await;
    let p = inst.dns.port();

    // forwarded, then cached
    assert_eq!(dig(p, &["www.example.test", "+short"]).trim(), "192.0.2.10");
    assert_eq!(dig(p, &["www.example.test", "AAAA", "+short"]).trim(), "2001:db8::10");
    let cached = dig(p, &["WWW.Example.TEST"]);
    assert!(cached.contains("192.0.2.10") && cached.contains("WWW.Example.TEST."), "0x20 case echoed: {cached}");
    assert!(!cached.contains(" ad;") && !cached.contains(" ad "), "no AD bit without validation: {cached}");
    let nx = dig(p, &["nothing.example.test"]);
    assert!(nx.contains("status: NXDOMAIN"), "{nx}");

    // blocked: the name and its subdomains, null IP of the queried type, EDE 15 naming list and rule
    let b = dig(p, &["ads.example.test"]);
    assert!(b.contains("ads.example.test.\t10\tIN\tA\t0.0.0.0"), "{b}");
    assert!(b.contains("EDE: 15 (Blocked): (blocked by ads: ||ads.example.test^)"), "{b}");
    assert_eq!(dig(p, &["deep.ads.example.test", "AAAA", "+short"]).trim(), "::");
    // @@ exception beats the block rule
    assert_eq!(dig(p, &["keep.ads.example.test", "+short"]).trim(), "192.0.2.67");
    // *.domain blocks subdomains only
    assert_eq!(dig(p, &["cdn.example.test", "+short"]).trim(), "192.0.2.68");
    assert_eq!(dig(p, &["img.cdn.example.test", "+short"]).trim(), "0.0.0.0");
    // regex
    assert_eq!(dig(p, &["track42.example.test", "+short"]).trim(), "0.0.0.0");
    // hosts format, and an allow list beats it
    assert_eq!(dig(p, &["hosts-style.example.test", "+short"]).trim(), "0.0.0.0");
    assert!(dig(p, &["allowed.hosts-style.example.test"]).contains("status: NXDOMAIN"), "allowed: forwarded");
    // other types of a blocked name: no data
    let mx = dig(p, &["ads.example.test", "MX"]);
    assert!(mx.contains("status: NOERROR") && mx.contains("ANSWER: 0"), "{mx}");

    // metrics count it all
    let m = reqwest::get(inst.url("/metrics")).await.unwrap().text().await.unwrap();
    for outcome in ["forwarded", "cached", "blocked"] {
        assert!(m.contains(&format!("hearth_dns_queries_total{{outcome=\"{outcome}\"}}")), "{outcome} counted");
    }
    for (kind, n) in [("block", 3), ("allow", 2), ("regex", 1)] {
        assert!(m.contains(&format!("hearth_dns_list_rules{{kind=\"{kind}\"}} {n}")), "{kind} rules counted");
    }

    promtool_check(&m);

    // the junk line did not stop the list; the readiness says so plainly
    let ready: serde_json::Value = reqwest::get(inst.url("/readyz")).await.unwrap().json().await.unwrap();
    assert_eq!(ready["subsystems"]["dns"]["state"], "ready", "{ready}");
}

#[tokio::test]
async fn blocking_modes_change_live() {
    let up = Upstream::start();
    let tmp = tempfile::tempdir().unwrap();
    let inst = instance(&up, &format!("\"udp://127.0.0.1:{}\"", up.port), tmp.path()).await;
    let p = inst.dns.port();
    let (c, csrf) = admin_session(&inst).await;
    for (mode, expect) in [
        ("nxdomain", "status: NXDOMAIN"),
        ("refused", "status: REFUSED"),
        ("custom:10.1.2.3", "IN\tA\t10.1.2.3"),
        ("null_ip", "IN\tA\t0.0.0.0"),
    ] {
        let r = c
            .patch(inst.url("/api/v1/config"))
            .header("x-csrf-token", &csrf)
            .json(&serde_json::json!({"dns": {"blocking_mode": mode}}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{mode}");
        let out = dig(p, &["ads.example.test"]);
        assert!(out.contains(expect), "{mode}: {out}");
    }
    let r = c
        .patch(inst.url("/api/v1/config"))
        .header("x-csrf-token", &csrf)
        .json(&serde_json::json!({"dns": {"blocking_mode": "sinkhole"}}))
        .send()
        .await
        .unwrap();
    let v = expect_error(r, 422, "invalid_config").await;
    assert_eq!(v["error"]["key"], "dns.blocking_mode");
}

#[tokio::test]
async fn truncation_leads_to_tcp() {
    let up = Upstream::start();
    let tmp = tempfile::tempdir().unwrap();
    let inst = instance(&up, &format!("\"udp://127.0.0.1:{}\"", up.port), tmp.path()).await;
    let p = inst.dns.port();
    // without EDNS a UDP client gets 512 bytes at most: truncated, and dig's TCP retry gets it all
    let udp = dig(p, &["big.example.test", "TXT", "+noedns", "+ignore"]);
    assert!(udp.contains(" tc"), "{udp}");
    let full = dig(p, &["big.example.test", "TXT", "+noedns"]);
    assert!(full.contains(&"c".repeat(200)), "{full}");
    let tcp = dig(p, &["big.example.test", "TXT", "+tcp"]);
    assert!(tcp.contains(&"a".repeat(200)) && tcp.contains("ANSWER: 1"), "{tcp}");
}

/// UDP answers stay within min(the client's EDNS size, 1232 bytes); a truncated answer keeps its OPT record
/// (RFC 6891 §7), and the same question over TCP gets it all.
#[tokio::test]
async fn udp_answers_fit_1232_bytes_and_truncation_keeps_edns() {
    let up = Upstream::start();
    let tmp = tempfile::tempdir().unwrap();
    let inst = instance(&up, &format!("\"udp://127.0.0.1:{}\"", up.port), tmp.path()).await;
    let p = inst.dns.port();
    // the client offers 4096 bytes; the answer (about 1.7 kB) is more than 1232: TC, with EDNS still there
    for _ in 0..2 {
        // the first comes from the upstream, the second from the cache: both are cut the same way
        let udp = dig(p, &["huge.example.test", "TXT", "+bufsize=4096", "+notcp", "+ignore"]);
        let flags = udp.lines().find(|l| l.starts_with(";; flags:")).unwrap_or_default();
        assert!(flags.contains(" tc"), "{udp}");
        assert!(udp.contains("EDNS: version: 0"), "the OPT record is kept: {udp}");
        let size: usize = udp.split("MSG SIZE  rcvd: ").nth(1).and_then(|s| s.trim().parse().ok()).unwrap_or(0);
        assert!(size > 0 && size <= 1232, "{udp}");
    }
    // dig retries over TCP by itself and gets all of it; +tcp too
    for args in [&["huge.example.test", "TXT", "+bufsize=4096"][..], &["huge.example.test", "TXT", "+tcp"][..]] {
        let full = dig(p, args);
        assert!(full.contains("ANSWER: 1") || full.contains("ANSWER: 8"), "{full}");
        for i in 0..8 {
            assert!(full.contains(&i.to_string().repeat(200)), "{i} missing: {full}");
        }
    }
    // an answer that fits the client's smaller size is not cut
    let small = dig(p, &["www.example.test", "+bufsize=1232", "+notcp", "+ignore"]);
    assert!(small.contains("192.0.2.10") && !small.contains(" tc"), "{small}");
}

/// ANY gets RFC 8482's minimal answer (one HINFO "RFC8482"), from hearth itself: nothing is forwarded.
#[tokio::test]
async fn any_queries_get_the_rfc8482_answer() {
    let up = Upstream::start();
    let tmp = tempfile::tempdir().unwrap();
    let inst = instance(&up, &format!("\"udp://127.0.0.1:{}\"", up.port), tmp.path()).await;
    let p = inst.dns.port();
    for args in [&["www.example.test", "ANY"][..], &["www.example.test", "ANY", "+tcp"][..]] {
        let out = dig(p, args);
        assert!(out.contains("status: NOERROR") && out.contains("ANSWER: 1,"), "{out}");
        assert!(out.contains("HINFO\t\"RFC8482\" \"\""), "{out}");
        assert!(!out.contains("192.0.2.10") && !out.contains("2001:db8::10"), "{out}");
    }
    let m = reqwest::get(inst.url("/metrics")).await.unwrap().text().await.unwrap();
    assert!(m.contains("hearth_dns_queries_total{outcome=\"forwarded\"} 0\n"), "nothing was forwarded: {m}");
}

/// The questions a silent upstream has received since the last call (lowercased: hearth may send them 0x20-mixed).
fn questions(silent: &std::net::UdpSocket) -> Vec<String> {
    let mut names = vec![];
    let mut buf = [0u8; 4096];
    while let Ok(n) = silent.recv(&mut buf) {
        let (mut i, mut labels) = (12, vec![]);
        while i < n && buf[i] != 0 {
            let len = buf[i] as usize;
            labels.push(String::from_utf8_lossy(&buf[i + 1..(i + 1 + len).min(n)]).to_ascii_lowercase());
            i += 1 + len;
        }
        names.push(labels.join("."));
    }
    names
}

/// Failover with an upstream that takes every question and never answers (a bound UDP socket that stays silent:
/// only hearth's timeout can tell it is dead). Each answer comes from the second upstream; after three failures in a
/// row the silent one is asked last, so the next question never reaches it; its failures are counted. Then with
/// the second upstream gone too: SERVFAIL with EDE 23.
#[tokio::test]
async fn upstream_failover_and_servfail() {
    let up = Upstream::start();
    let tmp = tempfile::tempdir().unwrap();
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    silent.set_nonblocking(true).unwrap();
    let dead = silent.local_addr().unwrap().port();
    let dead_label = format!("udp://127.0.0.1:{dead}");
    let upstreams = format!("\"{dead_label}\", \"udp://127.0.0.1:{}\"", up.port);
    let inst = instance(&up, &upstreams, tmp.path()).await;
    // three different questions (no cache hits): each is sent to the silent upstream first, times out there and is
    // answered by the second one
    assert_dns_answer(inst.dns, "www.example.test", "A", &["192.0.2.10"]);
    assert_dns_answer(inst.dns, "www.example.test", "AAAA", &["2001:db8::10"]);
    assert_dns_answer(inst.dns, "cdn.example.test", "A", &["192.0.2.68"]);
    assert_eq!(
        questions(&silent),
        ["www.example.test", "www.example.test", "cdn.example.test"],
        "every question went to the first upstream first"
    );
    // three failures in a row: the silent upstream is asked last now. The answer is back, so whatever hearth was
    // going to send the silent upstream for it is already in that socket: nothing.
    assert_dns_answer(inst.dns, "keep.ads.example.test", "A", &["192.0.2.67"]);
    assert_eq!(questions(&silent), Vec::<String>::new(), "the failing upstream is no longer asked first");
    let (c, _) = admin_session(&inst).await;
    let health: serde_json::Value =
        c.get(inst.url("/api/v1/dns/upstreams")).send().await.unwrap().json().await.unwrap();
    assert_eq!(health["mode"], "forward");
    assert_eq!(health["strategy"], "failover");
    let ups = health["upstreams"].as_array().unwrap();
    assert_eq!((ups[0]["healthy"].as_bool(), ups[0]["failures"].as_u64()), (Some(false), Some(3)), "{health}");
    assert_eq!(ups[0]["queries"], 0, "{health}");
    assert!(ups[0]["last_error"].as_str().unwrap().contains("timed out"), "{health}");
    assert_eq!(ups[1]["healthy"], true);
    assert!(ups[1]["queries"].as_u64().unwrap() >= 4 && ups[1]["latency_ms"].as_f64().unwrap() > 0.0, "{health}");
    let metrics = reqwest::get(inst.url("/metrics")).await.unwrap().text().await.unwrap();
    assert!(metrics.contains(&format!("hearth_dns_upstream_healthy{{upstream=\"{dead_label}\"}} 0\n")), "{metrics}");
    assert!(
        metrics.contains(&format!("hearth_dns_upstream_failures_total{{upstream=\"{dead_label}\"}} 3\n")),
        "{metrics}"
    );
    drop(up);
    let out = dns_ask(inst.dns, "other.example.test", "A");
    assert_eq!(out.status, "SERVFAIL", "{}", out.text);
    assert!(out.text.contains("EDE: 23 (Network Error)"), "{}", out.text);
    // asked last, but still asked: it may come back
    assert_eq!(questions(&silent), ["other.example.test"]);
    // a garbage datagram gets no answer and harms nothing
    let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    s.send_to(b"\x01\x02garbage", inst.dns).unwrap();
    assert_dns_answer(inst.dns, "www.example.test", "A", &["192.0.2.10"]);
}

#[tokio::test]
async fn query_log_stats_and_live_tail() {
    for storage in ["sqlite", "memory"] {
        let up = Upstream::start();
        let tmp = tempfile::tempdir().unwrap();
        let inst = instance_with(&up, &format!("\"udp://127.0.0.1:{}\"", up.port), tmp.path(), storage).await;
        let p = inst.dns.port();
        let (c, csrf) = admin_session(&inst).await;
        // a live-tail subscriber, started before the queries
        let mut tail = c.get(inst.url("/api/v1/dns/querylog/stream")).send().await.unwrap();
        assert_eq!(tail.headers()["content-type"], "text/event-stream");
        dig(p, &["www.example.test"]);
        dig(p, &["www.example.test"]);
        dig(p, &["ads.example.test"]);
        let mut seen = String::new();
        while !seen.contains("ads.example.test") {
            let chunk = tokio::time::timeout(Duration::from_secs(5), tail.chunk()).await.expect("live tail").unwrap();
            seen.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
        }
        assert!(seen.contains("event: query"), "{seen}");
        let log: serde_json::Value =
            c.get(inst.url("/api/v1/dns/querylog?limit=10")).send().await.unwrap().json().await.unwrap();
        let outcomes: Vec<&str> = log.as_array().unwrap().iter().map(|e| e["outcome"].as_str().unwrap()).collect();
        assert_eq!(outcomes, ["blocked", "cached", "forwarded"], "{storage}: newest first: {log}");
        let blocked = &log[0];
        assert_eq!(blocked["name"], "ads.example.test");
        assert_eq!(blocked["list"], "ads");
        assert_eq!(blocked["rule"], "||ads.example.test^");
        assert_eq!(blocked["client"], "127.0.0.1");
        assert_eq!(log[2]["upstream"], format!("udp://127.0.0.1:{}", up.port));
        // what a name resolved to is in its entry; a blocked one has hearth's own answer, not listed
        assert_eq!(log[2]["answers"], serde_json::json!(["192.0.2.10"]), "{log}");
        assert_eq!(log[1]["answers"], serde_json::json!(["192.0.2.10"]), "cached: {log}");
        assert_eq!(blocked["answers"], serde_json::json!([]), "{log}");
        let only: serde_json::Value = c
            .get(inst.url("/api/v1/dns/querylog?outcome=cached&search=WWW"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(only.as_array().unwrap().len(), 1, "{only}");
        let stats: serde_json::Value = c.get(inst.url("/api/v1/dns/stats")).send().await.unwrap().json().await.unwrap();
        assert_eq!(stats["total"], 3, "{stats}");
        assert_eq!(stats["blocked"], 1);
        assert_eq!(stats["top_blocked"][0][0], "ads.example.test");
        // cache flush: the next query goes upstream again
        let r = c.post(inst.url("/api/v1/dns/cache/flush")).header("x-csrf-token", &csrf).send().await.unwrap();
        let v: serde_json::Value = r.json().await.unwrap();
        assert_eq!(v["flushed"], 1);
        dig(p, &["www.example.test"]);
        // once flushed, the 4th entry is the newest
        let log = wait_querylog(&c, &inst, "limit=10", |log| log.as_array().unwrap().len() == 4).await;
        assert_eq!(log[0]["name"], "www.example.test", "{log}");
        assert_eq!(log[0]["outcome"], "forwarded", "{log}");
        // a name an allow rule let through names that list and rule (the block list's own @@ exception here)
        dig(p, &["keep.ads.example.test"]);
        let log = wait_querylog(&c, &inst, "limit=10", |log| log.as_array().unwrap().len() == 5).await;
        let e = &log[0];
        assert_eq!(
            (&e["name"], &e["outcome"]),
            (&serde_json::json!("keep.ads.example.test"), &serde_json::json!("forwarded")),
            "{log}"
        );
        assert_eq!(
            (&e["list"], &e["rule"]),
            (&serde_json::json!("ads"), &serde_json::json!("||keep.ads.example.test^")),
            "{e}"
        );
        assert_eq!(e["answers"], serde_json::json!(["192.0.2.67"]), "{e}");
    }
}

/// The query log (`GET /api/v1/dns/querylog?{params}`) once `ready` holds (entries are flushed in batches), at most 10 s.
async fn wait_querylog(
    c: &reqwest::Client,
    inst: &Instance,
    params: &str,
    ready: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let log: serde_json::Value =
            c.get(inst.url(&format!("/api/v1/dns/querylog?{params}"))).send().await.unwrap().json().await.unwrap();
        if ready(&log) {
            return log;
        }
        assert!(std::time::Instant::now() < deadline, "query log ({params}) never got there: {log}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// kill -9 while queries are being logged heavily: the database stays consistent and hearth starts again on it.
#[tokio::test]
async fn kill_9_during_heavy_logging_leaves_a_consistent_database() {
    use hickory_proto::op::{Message, MessageType, OpCode, Query};
    use hickory_proto::rr::{Name, RecordType};
    let up = Upstream::start();
    let tmp = tempfile::tempdir().unwrap();
    let mut inst = instance_with(&up, &format!("\"udp://127.0.0.1:{}\"", up.port), tmp.path(), "sqlite").await;
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 512];
    // blocked names answer locally, so the log fills as fast as we can send
    let started = std::time::Instant::now();
    let mut sent = 0u32;
    while started.elapsed() < Duration::from_millis(1500) {
        let mut m = Message::new(sent as u16, MessageType::Query, OpCode::Query);
        m.add_query(Query::query(Name::from_ascii(format!("n{sent}.ads.example.test.")).unwrap(), RecordType::A));
        let _ = sock.send_to(&m.to_vec().unwrap(), inst.dns);
        while sock.recv(&mut buf).is_ok() {}
        sent += 1;
    }
    inst.signal("KILL");
    assert!(inst.wait_exit(Duration::from_secs(5)).is_some());
    let db = rusqlite::Connection::open(inst.dir.path().join("data/hearth.db")).unwrap();
    let check: String = db.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
    assert_eq!(check, "ok");
    let rows: i64 = db.query_row("SELECT count(*) FROM dns_queries", [], |r| r.get(0)).unwrap();
    assert!(rows > 100, "{rows} of {sent} logged before the kill");
    drop(db);
    // and it starts again on the same data
    let out = inst.cli(&["token", "create", "after-crash", "--config", inst.config_path().to_str().unwrap()], None);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// When every upstream is gone, expired answers are served stale (RFC 8767) with a 30 s TTL.
#[tokio::test]
async fn serve_stale_when_all_upstreams_are_down() {
    let up = Upstream::start_ttl(1);
    let tmp = tempfile::tempdir().unwrap();
    let inst = instance(&up, &format!("\"udp://127.0.0.1:{}\"", up.port), tmp.path()).await;
    let p = inst.dns.port();
    assert_eq!(dig(p, &["www.example.test", "+short"]).trim(), "192.0.2.10");
    drop(up);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let out = dig(p, &["www.example.test"]);
    assert!(out.contains("status: NOERROR") && out.contains("www.example.test.\t30\tIN\tA\t192.0.2.10"), "{out}");
    // a name never seen has nothing stale to give
    assert!(dig(p, &["never.example.test"]).contains("status: SERVFAIL"));
    let (c, _) = admin_session(&inst).await;
    let log = wait_querylog(&c, &inst, "outcome=stale", |log| !log.as_array().unwrap().is_empty()).await;
    assert_eq!(log[0]["name"], "www.example.test", "{log}");
}

/// A name asked for in the last tenth of its TTL is refreshed in the background: it never leaves the cache.
#[tokio::test]
async fn popular_names_are_prefetched_before_they_expire() {
    let up = Upstream::start_ttl(10);
    let tmp = tempfile::tempdir().unwrap();
    let inst = instance(&up, &format!("\"udp://127.0.0.1:{}\"", up.port), tmp.path()).await;
    let p = inst.dns.port();
    assert_eq!(dig(p, &["www.example.test", "+short"]).trim(), "192.0.2.10");
    tokio::time::sleep(Duration::from_millis(9100)).await;
    // a hit with 1 s left: answered from the cache, and refreshed behind it
    let out = dig(p, &["www.example.test"]);
    assert!(norm(&out).contains("www.example.test. 1 IN A 192.0.2.10"), "{out}");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // past the first answer's expiry: still a cache hit, with the refreshed TTL
    let out = dig(p, &["www.example.test"]);
    assert!(norm(&out).contains("www.example.test. 9 IN A 192.0.2.10"), "{out}");
    let metrics = reqwest::get(inst.url("/metrics")).await.unwrap().text().await.unwrap();
    assert!(metrics.contains("hearth_dns_prefetch_total 1"), "{metrics}");
    let (c, _) = admin_session(&inst).await;
    let log = wait_querylog(&c, &inst, "search=www.example.test", |log| log.as_array().unwrap().len() >= 3).await;
    let outcomes: Vec<&str> = log.as_array().unwrap().iter().map(|e| e["outcome"].as_str().unwrap()).collect();
    assert_eq!(outcomes, ["cached", "cached", "forwarded"], "the refresh is not a client query: {log}");
}

/// Local records, CNAME rewrites and home.arpa: answered here, never forwarded, never filtered.
#[tokio::test]
async fn local_records_and_home_arpa() {
    let up = Upstream::start();
    let extra = format!(
        "[dns]\nlisten = [\"127.0.0.1:{{dns_port}}\"]\ndnssec = false\nupstreams = [\"udp://127.0.0.1:{}\"]\nlocal_domains = [\"home.arpa\"]\n\n\
         [[dns.records]]\nname = \"nas.home.arpa\"\ntype = \"A\"\nvalue = \"192.168.1.10\"\n\n\
         [[dns.records]]\nname = \"nas.home.arpa\"\ntype = \"AAAA\"\nvalue = \"fd00::10\"\n\n\
         [[dns.records]]\nname = \"media.home.arpa\"\ntype = \"CNAME\"\nvalue = \"nas.home.arpa\"\nttl = \"1m\"\n\n\
         [[dns.records]]\nname = \"ads.example.test\"\ntype = \"A\"\nvalue = \"10.9.9.9\"\n",
        up.port
    );
    let inst = Instance::start(&extra).await;
    let p = inst.dns.port();
    let a = norm(&dig(p, &["NAS.home.arpa"]));
    assert!(a.contains("NAS.home.arpa. 300 IN A 192.168.1.10") && a.contains(" aa"), "{a}");
    assert_eq!(dig(p, &["nas.home.arpa", "AAAA", "+short"]).trim(), "fd00::10");
    let c = norm(&dig(p, &["media.home.arpa"]));
    assert!(c.contains("media.home.arpa. 60 IN CNAME nas.home.arpa."), "{c}");
    assert!(c.contains("nas.home.arpa. 300 IN A 192.168.1.10"), "{c}");
    let nx = dig(p, &["printer.home.arpa"]);
    assert!(nx.contains("status: NXDOMAIN"), "never forwarded: {nx}");
    let nodata = dig(p, &["nas.home.arpa", "MX"]);
    assert!(nodata.contains("status: NOERROR") && nodata.contains("ANSWER: 0"), "{nodata}");
    // a local record overrides the upstream's answer
    assert_eq!(dig(p, &["ads.example.test", "+short"]).trim(), "10.9.9.9");
    // forwarding still works for the rest
    assert_eq!(dig(p, &["www.example.test", "+short"]).trim(), "192.0.2.10");

    // a bad record is refused with its key; the running records stay
    let (cl, csrf) = admin_session(&inst).await;
    let r = cl
        .patch(inst.url("/api/v1/config"))
        .header("x-csrf-token", &csrf)
        .json(&serde_json::json!({"dns": {"records": [{"name": "x.home.arpa", "type": "A", "value": "not-an-ip"}]}}))
        .send()
        .await
        .unwrap();
    let v = expect_error(r, 422, "invalid_config").await;
    assert_eq!(v["error"]["key"], "dns.records[0].value", "the field it is about: {v}");
    assert_eq!(dig(p, &["nas.home.arpa", "+short"]).trim(), "192.168.1.10");
    // a good change applies live
    let r = cl
        .patch(inst.url("/api/v1/config"))
        .header("x-csrf-token", &csrf)
        .json(
            &serde_json::json!({"dns": {"records": [{"name": "tv.home.arpa", "type": "A", "value": "192.168.1.30"}]}}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(dig(p, &["tv.home.arpa", "+short"]).trim(), "192.168.1.30");
    assert!(dig(p, &["nas.home.arpa"]).contains("status: NXDOMAIN"));
    let file = std::fs::read_to_string(inst.config_path()).unwrap();
    assert!(file.contains("tv.home.arpa"), "{file}");
    hearth_config_parses(&file);
}

fn hearth_config_parses(text: &str) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("h.toml"), text).unwrap();
    let out = cli_in(dir.path(), &["check-config", "h.toml"], None);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// dig's output with every run of whitespace made one space.
fn norm(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Per-client groups: a client in the "kids" group gets only the kids list; everyone else gets every list.
#[tokio::test]
async fn client_groups_choose_lists() {
    let up = Upstream::start();
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("kids.txt"), "||www.example.test^\n").unwrap();
    let extra = format!(
        "[dns]\nlisten = [\"127.0.0.1:{{dns_port}}\"]\ndnssec = false\nupstreams = [\"udp://127.0.0.1:{}\"]\n\n{}\n\
         [[dns.lists]]\nname = \"kids\"\nkind = \"block\"\nsource = \"{}\"\n\n\
         [[dns.groups]]\nname = \"kids\"\nclients = [\"127.0.0.2\", \"127.0.0.64/30\"]\nlists = [\"kids\"]\n",
        up.port,
        lists(tmp.path()),
        tmp.path().join("kids.txt").display()
    );
    let inst = Instance::start(&extra).await;
    let p = inst.dns.port();
    let from = |src: &str, name: &str| dig(p, &["-b", src, name, "+short"]).trim().to_string();
    // the default client: every list
    assert_eq!(from("127.0.0.1", "ads.example.test"), "0.0.0.0");
    assert_eq!(from("127.0.0.1", "www.example.test"), "0.0.0.0");
    // the kids: only the kids list
    for kid in ["127.0.0.2", "127.0.0.65"] {
        assert_eq!(from(kid, "ads.example.test"), "192.0.2.66", "{kid}");
        assert_eq!(from(kid, "www.example.test"), "0.0.0.0", "{kid}");
    }
    // a group naming a list that does not exist is refused with the key
    let (c, csrf) = admin_session(&inst).await;
    let r = c
        .patch(inst.url("/api/v1/config"))
        .header("x-csrf-token", &csrf)
        .json(&serde_json::json!({"dns": {"groups": [{"name": "x", "clients": ["10.0.0.0/8"], "lists": ["nope"]}]}}))
        .send()
        .await
        .unwrap();
    let v = expect_error(r, 422, "invalid_config").await;
    assert_eq!(v["error"]["key"], "dns.groups[0].lists", "{v}");
    let r = c
        .patch(inst.url("/api/v1/config"))
        .header("x-csrf-token", &csrf)
        .json(&serde_json::json!({"dns": {"groups": [{"name": "x", "clients": ["10.0.0.0/40"], "lists": []}]}}))
        .send()
        .await
        .unwrap();
    let v = expect_error(r, 422, "invalid_config").await;
    assert_eq!(v["error"]["key"], "dns.groups[0].clients", "{v}");
}

/// A client above its rate gets REFUSED; exempt clients are never limited.
#[tokio::test]
async fn per_client_rate_limit() {
    let up = Upstream::start();
    let extra = format!(
        "[dns]\nlisten = [\"127.0.0.1:{{dns_port}}\"]\ndnssec = false\nupstreams = [\"udp://127.0.0.1:{}\"]\nrate_limit = 2\nrate_limit_burst = 3\n",
        up.port
    );
    let inst = Instance::start(&extra).await;
    let p = inst.dns.port();
    // six questions sent at once from one client (one datagram each, no process start between them: no token
    // refills meanwhile at 2 a second): the burst of 3 is answered, the rest REFUSED
    let queries: Vec<Vec<u8>> = (1..=6).map(|id| raw_query(id, "www.example.test")).collect();
    let got = burst_from("127.0.0.3", inst.dns, &queries, Duration::from_secs(5));
    let rcodes: Vec<u8> = got.iter().map(|(_, a)| a[3] & 0x0f).collect();
    assert_eq!(got.len(), 6, "every question answered: {rcodes:?}");
    assert_eq!(rcodes.iter().filter(|r| **r == 0).count(), 3, "the burst passes: {rcodes:?}");
    assert_eq!(rcodes.iter().filter(|r| **r == 5).count(), 3, "then REFUSED: {rcodes:?}");
    for _ in 0..10 {
        assert!(dig(p, &["www.example.test", "+short"]).contains("192.0.2.10"), "127.0.0.1 is exempt");
    }
    // a refused question takes no token: ask until the bucket has refilled (a token every 0.5 s)
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let r = dns_ask_with(inst.dns, &["-b", "127.0.0.3"], "www.example.test", "A");
        if r.status == "NOERROR" && r.answers == ["192.0.2.10"] {
            break;
        }
        assert_eq!(r.status, "REFUSED", "{}", r.text);
        assert!(std::time::Instant::now() < deadline, "the bucket never refilled: {}", r.text);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // the same limit over DoT and DoH (every transport goes through the same stage)
    let dot_port = free_port();
    drop(inst);
    let inst = Instance::start(&format!(
        "[dns]\nlisten = [\"127.0.0.1:{{dns_port}}\"]\ntls_listen = [\"127.0.0.1:{dot_port}\"]\ndnssec = false\n\
         upstreams = [\"udp://127.0.0.1:{}\"]\nrate_limit = 1\nrate_limit_burst = 2\n",
        up.port
    ))
    .await;
    let https = inst.https.port().to_string();
    let dot = dot_port.to_string();
    for (name, args) in [
        ("DoT", vec!["-b", "127.0.0.5", "@127.0.0.1", "-p", &dot, "+tls", "www.example.test", "A"]),
        ("DoH", vec!["-b", "127.0.0.6", "@127.0.0.1", "-p", &https, "+https", "www.example.test", "A"]),
    ] {
        let refused: Vec<bool> = (0..6).map(|_| kdig(&args).contains("status: REFUSED")).collect();
        // the burst of 2 passes; at 1 query a second, most of the rest is refused
        assert!(!refused[0] && refused.iter().filter(|r| **r).count() >= 2, "{name}: {refused:?}");
    }
}

/// `dns.allow_clients`: a client outside the list gets REFUSED over UDP, TCP, DoT and DoH; the default (the LAN
/// and loopback) answers loopback; a change applies live.
#[tokio::test]
async fn clients_outside_allow_clients_are_refused_on_every_transport() {
    let up = Upstream::start();
    let dot_port = free_port();
    let extra = format!(
        "[dns]\nlisten = [\"127.0.0.1:{{dns_port}}\"]\ntls_listen = [\"127.0.0.1:{dot_port}\"]\ndnssec = false\n\
         upstreams = [\"udp://127.0.0.1:{}\"]\nallow_clients = [\"10.9.9.0/24\"]\n",
        up.port
    );
    let inst = Instance::start(&extra).await;
    let p = inst.dns.port();
    let udp = dig(p, &["www.example.test"]);
    assert!(udp.contains("status: REFUSED") && !udp.contains("192.0.2.10"), "{udp}");
    let tcp = dig(p, &["www.example.test", "+tcp"]);
    assert!(tcp.contains("status: REFUSED") && !tcp.contains("192.0.2.10"), "{tcp}");
    let dot = kdig(&["@127.0.0.1", "-p", &dot_port.to_string(), "+tls", "www.example.test", "A"]);
    assert!(dot.contains("status: REFUSED") && !dot.contains("192.0.2.10"), "{dot}");
    let doh = kdig(&["@127.0.0.1", "-p", &inst.https.port().to_string(), "+https", "www.example.test", "A"]);
    assert!(doh.contains("status: REFUSED") && !doh.contains("192.0.2.10"), "{doh}");
    // counted apart
    let m = reqwest::get(inst.url("/metrics")).await.unwrap().text().await.unwrap();
    assert!(m.contains("hearth_dns_queries_total{outcome=\"refused\"} 4"), "{m}");
    // back to the default (loopback included), live
    let (c, csrf) = admin_session(&inst).await;
    let r = c
        .patch(inst.url("/api/v1/config"))
        .header("x-csrf-token", &csrf)
        .json(&serde_json::json!({"dns": {"allow_clients": ["127.0.0.0/8", "10.0.0.0/8"]}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(dig(p, &["www.example.test", "+short"]).trim(), "192.0.2.10");
    assert_eq!(dig(p, &["www.example.test", "+short", "+tcp"]).trim(), "192.0.2.10");
    let r = c
        .patch(inst.url("/api/v1/config"))
        .header("x-csrf-token", &csrf)
        .json(&serde_json::json!({"dns": {"allow_clients": ["10.0.0.0/33"]}}))
        .send()
        .await
        .unwrap();
    let v = expect_error(r, 422, "invalid_config").await;
    assert_eq!(v["error"]["key"], "dns.allow_clients[0]", "{v}");
}

/// A UDP upstream in Python that prints every question it gets (one name a line) and answers each A query with
/// 192.0.2.99 after a delay, from its own thread: slow enough for queries to pile up in flight.
const SLOW_UPSTREAM: &str = r#"
import socket, sys, threading, time
port, delay = int(sys.argv[1]), float(sys.argv[2])
out = threading.Lock()
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", port))
print("ready", flush=True)
def handle(q, addr):
    i, labels = 12, []
    while q[i]:
        labels.append(q[i + 1:i + 1 + q[i]].decode("ascii", "replace").lower())
        i += 1 + q[i]
    end = i + 5
    with out:
        sys.stdout.write(".".join(labels) + "\n")
        sys.stdout.flush()
    time.sleep(delay)
    head = q[:2] + bytes([0x80 | (q[2] & 0x01), 0x80]) + b"\x00\x01\x00\x01\x00\x00\x00\x00"
    rr = b"\xc0\x0c\x00\x01\x00\x01\x00\x00\x00\x3c\x00\x04" + bytes([192, 0, 2, 99])
    s.sendto(head + q[12:end] + rr, addr)
while True:
    q, addr = s.recvfrom(4096)
    threading.Thread(target=handle, args=(q, addr), daemon=True).start()
"#;

struct SlowUpstream {
    child: Child,
    port: u16,
    seen: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl SlowUpstream {
    fn start(delay: &str) -> SlowUpstream {
        let port = free_port();
        let mut child = Command::new("python3")
            .args(["-c", SLOW_UPSTREAM, &port.to_string(), delay])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3");
        let seen = std::sync::Arc::new(std::sync::Mutex::new(vec![]));
        let (out, lines) = (child.stdout.take().unwrap(), seen.clone());
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
                if line == "ready" {
                    let _ = ready_tx.send(());
                } else {
                    lines.lock().unwrap().push(line);
                }
            }
        });
        ready_rx.recv_timeout(Duration::from_secs(10)).expect("the Python upstream did not start");
        SlowUpstream { child, port, seen }
    }

    fn count(&self, pred: impl Fn(&str) -> bool) -> usize {
        self.seen.lock().unwrap().iter().filter(|l| pred(l)).count()
    }
}

impl Drop for SlowUpstream {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A query for `name` A with `id`, without EDNS.
fn raw_query(id: u16, name: &str) -> Vec<u8> {
    let mut q = id.to_be_bytes().to_vec();
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.split('.') {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]);
    q
}

/// Send every query at once from one socket and collect the answers (id → answer) until `wait` passes.
fn burst(to: std::net::SocketAddr, queries: &[Vec<u8>], wait: Duration) -> std::collections::HashMap<u16, Vec<u8>> {
    burst_from("127.0.0.1", to, queries, wait).into_iter().collect()
}

/// Send every query at once from a socket on `from` and collect the answers (id, answer) in the order they arrive,
/// until all are in or `wait` passes.
fn burst_from(from: &str, to: std::net::SocketAddr, queries: &[Vec<u8>], wait: Duration) -> Vec<(u16, Vec<u8>)> {
    let s = std::net::UdpSocket::bind((from, 0)).unwrap();
    for q in queries {
        s.send_to(q, to).unwrap();
    }
    let mut got: Vec<(u16, Vec<u8>)> = vec![];
    let deadline = std::time::Instant::now() + wait;
    let mut buf = [0u8; 4096];
    while got.len() < queries.len() {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            break;
        }
        s.set_read_timeout(Some(left)).unwrap();
        match s.recv(&mut buf) {
            Ok(n) if n >= 12 => {
                let id = u16::from_be_bytes([buf[0], buf[1]]);
                if !got.iter().any(|(i, _)| *i == id) {
                    got.push((id, buf[..n].to_vec()));
                }
            }
            Ok(_) => {}
            Err(_) => break,
        }
    }
    got
}

/// 50 identical questions at once, all cache misses: one upstream query, 50 answers with their own ids. A burst of
/// distinct names beyond `dns.max_inflight`: the excess gets SERVFAIL at once, counted, and never reaches the
/// upstream.
#[tokio::test]
async fn identical_queries_in_flight_share_one_upstream_query() {
    let up = SlowUpstream::start("0.4");
    let inst = Instance::start(&format!(
        "[dns]\nlisten = [\"127.0.0.1:{{dns_port}}\"]\ndnssec = false\nupstreams = [\"udp://127.0.0.1:{}\"]\n\
         upstream_timeout = \"3s\"\nmax_inflight = 64\n",
        up.port
    ))
    .await;
    let queries: Vec<Vec<u8>> = (1..=50).map(|id| raw_query(id, "same.example.test")).collect();
    let got = burst(inst.dns, &queries, Duration::from_secs(5));
    assert_eq!(got.len(), 50, "every query answered");
    for (id, a) in &got {
        assert_eq!(a[3] & 0x0f, 0, "NOERROR for {id}");
        assert!(a.ends_with(&[192, 0, 2, 99]), "the answer for {id}: {a:?}");
    }
    assert_eq!(up.count(|l| l == "same.example.test"), 1, "one upstream query: {:?}", up.seen.lock().unwrap());
    // cached now: no further upstream query
    let got = burst(inst.dns, &[raw_query(77, "same.example.test")], Duration::from_secs(2));
    assert!(got[&77].ends_with(&[192, 0, 2, 99]));
    assert_eq!(up.count(|l| l == "same.example.test"), 1);

    // 100 distinct names at once with 64 places in flight
    let queries: Vec<Vec<u8>> = (0..100).map(|i| raw_query(1000 + i, &format!("n{i}.example.test"))).collect();
    let arrived = burst_from("127.0.0.1", inst.dns, &queries, Duration::from_secs(5));
    assert_eq!(arrived.len(), 100, "every query answered");
    let is_servfail = |a: &Vec<u8>| a[3] & 0x0f == 2;
    let servfail = arrived.iter().filter(|(_, a)| is_servfail(a)).count();
    let answered = arrived.iter().filter(|(_, a)| a.ends_with(&[192, 0, 2, 99])).count();
    assert!(servfail >= 36 && answered + servfail == 100, "{servfail} SERVFAIL, {answered} answered");
    // the excess is refused at once, not queued behind the slow upstream: every SERVFAIL arrives before the first
    // upstream answer (which the upstream holds back 0.4 s)
    let first_answer = arrived.iter().position(|(_, a)| !is_servfail(a)).unwrap();
    let last_servfail = arrived.iter().rposition(|(_, a)| is_servfail(a)).unwrap();
    assert!(last_servfail < first_answer, "SERVFAIL #{last_servfail} came after answer #{first_answer}");
    let asked = up.count(|l| l.starts_with('n'));
    assert!(asked <= 64 && asked == answered, "{asked} upstream queries for {answered} answers");
    let m = reqwest::get(inst.url("/metrics")).await.unwrap().text().await.unwrap();
    let rejected: u64 = m
        .lines()
        .find_map(|l| l.strip_prefix("hearth_dns_inflight_rejected_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    assert_eq!(rejected, servfail as u64, "{m}");
    let coalesced: u64 = m
        .lines()
        .find_map(|l| l.strip_prefix("hearth_dns_coalesced_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    assert_eq!(coalesced, 49, "{m}");
}

/// `POST /dns-query` reads at most a DNS message's 65535 bytes: a larger declared body gets 413 before it is read,
/// a larger chunked one 413 once the limit is passed, a longer `dns` parameter 413 (or 414 from the HTTP layer,
/// whose URI limit is lower); hearth's peak memory barely moves.
#[tokio::test]
async fn doh_refuses_oversized_messages_without_buffering_them() {
    let inst = Instance::start("").await;
    let hwm = || -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", inst.pid())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    };
    let before = hwm();
    // 8 MB POSTs from a raw HTTP/1.1 client that keeps sending whatever happens and then reads the answer (curl
    // gives up on the write error when hearth closes a connection whose body it will not read)
    let post = |chunked: bool| -> String {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(inst.http).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut w = s.try_clone().unwrap();
        let framing =
            if chunked { "transfer-encoding: chunked".to_string() } else { format!("content-length: {}", 8 << 20) };
        let writer = std::thread::spawn(move || {
            let head = format!(
                "POST /dns-query HTTP/1.1\r\nhost: hearth\r\ncontent-type: application/dns-message\r\n{framing}\r\n\r\n"
            );
            w.write_all(head.as_bytes())?;
            let block = vec![0u8; 64 << 10];
            for _ in 0..128 {
                if chunked {
                    w.write_all(format!("{:x}\r\n", block.len()).as_bytes())?;
                    w.write_all(&block)?;
                    w.write_all(b"\r\n")?;
                } else {
                    w.write_all(&block)?;
                }
            }
            if chunked {
                w.write_all(b"0\r\n\r\n")?;
            }
            Ok::<(), std::io::Error>(())
        });
        let mut answer = vec![];
        let _ = s.read_to_end(&mut answer); // ends with EOF or a reset, after the answer
        let _ = writer.join();
        String::from_utf8_lossy(&answer).lines().next().unwrap_or_default().to_string()
    };
    for _ in 0..2 {
        assert_eq!(post(false), "HTTP/1.1 413 Payload Too Large", "declared 8 MB");
        assert_eq!(post(true), "HTTP/1.1 413 Payload Too Large", "chunked 8 MB");
    }
    let url = inst.url("/dns-query");
    // GET: a dns parameter longer than the base64 of 65535 bytes gets 413 (a longer URI still is refused by
    // the HTTP layer itself, 414)
    let get = |len: usize| -> String {
        let out = Command::new("curl")
            .args(["-s", "-o", "/dev/null", "-w", "%{http_code}"])
            .arg(format!("{url}?dns={}", "A".repeat(len)))
            .output()
            .expect("curl");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let status = get(90_000);
    assert!(["413", "414"].contains(&status.as_str()), "{status}");
    let grown = hwm().saturating_sub(before);
    assert!(grown < 16 * 1024, "peak RSS grew by {grown} kB");
    // a real query still works, both ways
    let q = raw_query(0, "www.example.test");
    let r = reqwest::Client::new()
        .post(&url)
        .header("content-type", "application/dns-message")
        .body(q.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let b64 = data_encoding::BASE64URL_NOPAD.encode(&q);
    assert_eq!(reqwest::get(format!("{url}?dns={b64}")).await.unwrap().status(), 200);
}

/// nginx serving list files, stopped on drop.
struct Nginx {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl Nginx {
    fn start() -> Nginx {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        std::fs::create_dir(dir.path().join("www")).unwrap();
        let conf = format!(
            "user root;\nworker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\nevents {{}}\n\
             http {{ access_log {d}/access.log; server {{ listen 127.0.0.1:{port}; root {d}/www; }} }}\n",
            d = dir.path().display()
        );
        std::fs::write(dir.path().join("nginx.conf"), conf).unwrap();
        let mut child = Command::new("nginx")
            .arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(dir.path().join("nginx.conf"))
            .args(["-g", "daemon off;"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nginx (Debian package nginx-light) is needed: .ci/deps installs it");
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Nginx { child, port, dir };
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("nginx did not start");
    }

    /// SIGTERM: the master stops its workers too (SIGKILL would leave them serving).
    fn stop(&mut self) {
        if self.child.try_wait().is_ok_and(|s| s.is_some()) {
            return;
        }
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        let _ = self.child.wait();
    }

    fn put(&self, name: &str, text: &str) {
        std::fs::write(self.dir.path().join("www").join(name), text).unwrap();
    }

    fn access_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("access.log")).unwrap_or_default()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        self.stop();
    }
}

/// URL lists: downloaded at start (the host name resolved by hearth itself), conditional re-checks (304), updates on
/// demand, last good copy kept.
#[tokio::test]
async fn url_lists_download_update_and_survive_failures() {
    let up = Upstream::start();
    let mut web = Nginx::start();
    web.put("ads.txt", "||ads.example.test^\n");
    let extra = format!(
        "[dns]\nlisten = [\"127.0.0.1:{{dns_port}}\"]\ndnssec = false\nupstreams = [\"udp://127.0.0.1:{}\"]\n\n\
         [[dns.records]]\nname = \"lists.home.arpa\"\ntype = \"A\"\nvalue = \"127.0.0.1\"\n\n\
         [[dns.lists]]\nname = \"remote ads\"\nkind = \"block\"\nsource = \"http://lists.home.arpa:{}/ads.txt\"\nupdate = \"1h\"\n",
        up.port, web.port
    );
    let inst = Instance::start(&extra).await;
    let p = inst.dns.port();
    let blocked = |name: &str| dig(p, &[name, "+short"]).trim() == "0.0.0.0";
    let mut ok = false;
    for _ in 0..100 {
        if blocked("ads.example.test") {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(ok, "downloaded at start and compiled: {}", inst.log_text());
    // the list's host name was resolved by hearth itself (its local record), not by the system's resolver
    let (c, csrf) = admin_session(&inst).await;
    let update = || c.post(inst.url("/api/v1/dns/lists/update")).header("x-csrf-token", &csrf).send();
    // nothing changed: a conditional request, answered 304
    let v: serde_json::Value = update().await.unwrap().json().await.unwrap();
    assert_eq!(v[0]["download"]["result"], "not modified", "{v}");
    assert_eq!(v[0]["counts"]["rules"], 1, "{v}");
    // nginx writes its log line after the response has gone out: give it a moment on a loaded machine
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !web.access_log().contains("\" 304 ") && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(web.access_log().contains("\" 304 "), "{}", web.access_log());
    // a new version replaces the rules
    web.put("ads.txt", "# new\n||www.example.test^\n");
    let v: serde_json::Value = update().await.unwrap().json().await.unwrap();
    assert_eq!(v[0]["download"]["result"], "updated", "{v}");
    assert!(blocked("www.example.test") && !blocked("ads.example.test"));
    // the server is gone: the error is reported, the last good copy keeps serving
    web.stop();
    let v: serde_json::Value = update().await.unwrap().json().await.unwrap();
    assert_eq!(v[0]["download"]["ok"], false, "{v}");
    assert!(v[0]["download"]["last_success"].is_i64());
    assert!(blocked("www.example.test"));
    let files: Vec<_> = std::fs::read_dir(inst.dir.path().join("data/lists")).unwrap().collect();
    assert_eq!(files.len(), 2, "the copy and its metadata; no partial file left");
}

/// One-click rules: allow or block a name into hearth's own lists, effective at once.
#[tokio::test]
async fn one_click_allow_and_block() {
    let up = Upstream::start();
    let tmp = tempfile::tempdir().unwrap();
    let inst = instance(&up, &format!("\"udp://127.0.0.1:{}\"", up.port), tmp.path()).await;
    let p = inst.dns.port();
    let (c, csrf) = admin_session(&inst).await;
    let rule = |domain: &str, action: &str| {
        c.post(inst.url("/api/v1/dns/rules"))
            .header("x-csrf-token", &csrf)
            .json(&serde_json::json!({"domain": domain, "action": action}))
            .send()
    };
    assert_eq!(dig(p, &["www.example.test", "+short"]).trim(), "192.0.2.10");
    let r = rule("www.example.test", "block").await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(dig(p, &["www.example.test", "+short"]).trim(), "0.0.0.0", "blocked at once");
    assert_eq!(dig(p, &["ads.example.test", "+short"]).trim(), "0.0.0.0");
    let v: serde_json::Value = rule("ADS.example.test.", "allow").await.unwrap().json().await.unwrap();
    assert_eq!(dig(p, &["ads.example.test", "+short"]).trim(), "192.0.2.66", "allowed at once");
    let mine: Vec<&str> = v.as_array().unwrap().iter().map(|l| l["name"].as_str().unwrap()).collect();
    assert!(mine.contains(&"my allowlist") && mine.contains(&"my blocklist"), "{mine:?}");
    // twice is once
    rule("www.example.test", "block").await.unwrap();
    let text = std::fs::read_to_string(inst.dir.path().join("data/rules/block.txt")).unwrap();
    assert_eq!(text.matches("||www.example.test^").count(), 1, "{text}");
    let r = rule("not a domain", "block").await.unwrap();
    expect_error(r, 422, "invalid_input").await;
    let file = std::fs::read_to_string(inst.config_path()).unwrap();
    assert!(file.contains("my blocklist"), "registered in hearth.toml: {file}");
}

/// A CA and a certificate for "dns.test" and 127.0.0.1 signed by it, as PEM files in `dir`: (ca, cert, key).
fn test_pki(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.distinguished_name.push(rcgen::DnType::CommonName, "hearth test CA");
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca, ca_key);
    let key = rcgen::KeyPair::generate().unwrap();
    let leaf = rcgen::CertificateParams::new(vec!["dns.test".to_string(), "127.0.0.1".to_string()]).unwrap();
    let cert = leaf.signed_by(&key, &issuer).unwrap();
    let paths = (dir.join("ca.pem"), dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&paths.0, ca_cert.pem()).unwrap();
    std::fs::write(&paths.1, cert.pem()).unwrap();
    std::fs::write(&paths.2, key.serialize_pem()).unwrap();
    (paths.0, paths.1, paths.2)
}

/// An Unbound serving one local record over DNS over TLS and DNS over HTTPS: the real DoT/DoH upstream.
struct SecureUpstream {
    child: Child,
    dot: u16,
    doh: u16,
    ca: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl SecureUpstream {
    fn start() -> SecureUpstream {
        let dir = tempfile::tempdir().unwrap();
        let (ca, cert, key) = test_pki(dir.path());
        let (dot, doh) = (free_port(), free_port());
        let d = dir.path().display();
        let conf = format!(
            "server:\n  interface: 127.0.0.1@{dot}\n  interface: 127.0.0.1@{doh}\n  tls-port: {dot}\n  https-port: {doh}\n  \
             tls-service-key: \"{}\"\n  tls-service-pem: \"{}\"\n  http-endpoint: \"/dns-query\"\n  username: \"\"\n  \
             chroot: \"\"\n  directory: \"{d}\"\n  pidfile: \"{d}/unbound.pid\"\n  use-syslog: no\n  logfile: \"{d}/unbound.log\"\n  \
             module-config: \"iterator\"\n  access-control: 127.0.0.0/8 allow\n  local-zone: \"example.test.\" static\n  \
             local-data: \"www.example.test. 300 IN A 192.0.2.10\"\nremote-control:\n  control-enable: no\n",
            key.display(),
            cert.display()
        );
        std::fs::write(dir.path().join("unbound.conf"), conf).unwrap();
        let child = Command::new("unbound")
            .args(["-d", "-c"])
            .arg(dir.path().join("unbound.conf"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("unbound (Debian package unbound) is needed: .ci/deps installs it");
        let up = SecureUpstream { child, dot, doh, ca, _dir: dir };
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", doh)).is_ok()
                && std::net::TcpStream::connect(("127.0.0.1", dot)).is_ok()
            {
                return up;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("unbound (DoT/DoH) did not start");
    }
}

impl Drop for SecureUpstream {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn kdig(args: &[&str]) -> String {
    let out = Command::new("kdig").args(args).output().expect("kdig (Debian package knot-dnsutils)");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// hearth's own DoT listener and DoH route (kdig as the client), and DoT/DoH upstreams (Unbound as the server,
/// its certificate from a private CA given as dns.upstream_ca).
#[tokio::test]
async fn dot_and_doh_listeners_and_upstreams() {
    let up = SecureUpstream::start();
    let lists = tempfile::tempdir().unwrap();
    std::fs::write(lists.path().join("ads.txt"), "ads.example.test\n").unwrap();
    let dot_port = free_port();
    for upstream in [format!("tls://127.0.0.1:{}#dns.test", up.dot), format!("https://127.0.0.1:{}/dns-query", up.doh)]
    {
        let inst = Instance::start(&format!(
            "[dns]\nlisten = [\"127.0.0.1:{{dns_port}}\"]\ntls_listen = [\"127.0.0.1:{dot_port}\"]\ndnssec = false\n\
             upstreams = [\"{upstream}\"]\nupstream_ca = \"{}\"\n\n[[dns.lists]]\nname = \"ads\"\nkind = \"block\"\n\
             source = \"{}\"\n",
            up.ca.display(),
            lists.path().join("ads.txt").display()
        ))
        .await;
        let p = inst.dns.port();
        // plain DNS through the encrypted upstream, twice (the second DoT query reuses the connection)
        for _ in 0..2 {
            assert_eq!(dig(p, &["www.example.test", "+short"]).trim(), "192.0.2.10", "via {upstream}");
        }
        // DoT listener
        let out = kdig(&["@127.0.0.1", "-p", &dot_port.to_string(), "+tls", "www.example.test", "A"]);
        assert!(out.contains("TLS session") && out.contains("192.0.2.10"), "{out}");
        let out = kdig(&["@127.0.0.1", "-p", &dot_port.to_string(), "+tls", "ads.example.test", "A"]);
        assert!(out.contains("0.0.0.0"), "blocked over DoT: {out}");
        // DoH, POST and GET
        let https = inst.https.port().to_string();
        let out = kdig(&["@127.0.0.1", "-p", &https, "+https", "www.example.test", "A"]);
        assert!(out.contains("HTTP/2-POST") && out.contains("192.0.2.10"), "{out}");
        let out = kdig(&["@127.0.0.1", "-p", &https, "+https-get", "ads.example.test", "A"]);
        assert!(out.contains("HTTP/2-GET") && out.contains("0.0.0.0"), "{out}");
        // bad DoH requests get JSON errors with an id
        let c = reqwest::Client::builder().danger_accept_invalid_certs(true).build().unwrap();
        let r = c.post(format!("https://127.0.0.1:{https}/dns-query")).body("x").send().await.unwrap();
        expect_error(r, 415, "unsupported_media_type").await;
        let r = c.get(format!("https://127.0.0.1:{https}/dns-query?dns=%40%40")).send().await.unwrap();
        expect_error(r, 400, "invalid_dns").await;
        let metrics = reqwest::get(inst.url("/metrics")).await.unwrap().text().await.unwrap();
        assert!(metrics.contains(&format!("upstream=\"{upstream}\"")), "per-upstream latency for {upstream}");
    }
    // a certificate that is not valid for the name given is refused: no answer, SERVFAIL
    let inst = Instance::start(&format!(
        "[dns]\nlisten = [\"127.0.0.1:{{dns_port}}\"]\ndnssec = false\nupstream_timeout = \"1s\"\n\
         upstreams = [\"tls://127.0.0.1:{}#wrong.test\"]\nupstream_ca = \"{}\"\n",
        up.dot,
        up.ca.display()
    ))
    .await;
    let out = dig(inst.dns.port(), &["www.example.test"]);
    assert!(out.contains("SERVFAIL"), "{out}");
}

/// Conditional forwarding: names under a forward zone go to that zone's server (a second dnsmasq standing in for
/// the router), everything else to the upstreams; a zone under a local domain is refused with its key.
#[tokio::test]
async fn forward_zones_send_a_domain_to_its_own_server() {
    let up = Upstream::start();
    let router_port = free_port();
    let mut router = Command::new("dnsmasq")
        .args(["-k", "--listen-address=127.0.0.1", "--bind-interfaces", "--no-resolv", "--no-hosts"])
        .args(["--conf-file=/dev/null", "--pid-file=", "--user=root", "--local=/fritz.box/"])
        .arg(format!("--port={router_port}"))
        .arg("--host-record=printer.fritz.box,192.168.178.20")
        .arg("--ptr-record=20.178.168.192.in-addr.arpa,printer.fritz.box")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    for _ in 0..100 {
        if dig(router_port, &["printer.fritz.box", "+short", "+tries=1", "+time=1"]).contains("192.168.178.20") {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let extra = format!(
        "[dns]\nlisten = [\"127.0.0.1:{{dns_port}}\"]\ndnssec = false\nupstreams = [\"udp://127.0.0.1:{}\"]\n\n\
         [[dns.forward_zones]]\ndomain = \"Fritz.Box.\"\nupstreams = [\"udp://127.0.0.1:{router_port}\"]\n\n\
         [[dns.forward_zones]]\ndomain = \"168.192.in-addr.arpa\"\nupstreams = [\"udp://127.0.0.1:{router_port}\"]\n",
        up.port
    );
    let inst = Instance::start(&extra).await;
    let p = inst.dns.port();
    assert_eq!(dig(p, &["printer.fritz.box", "+short"]).trim(), "192.168.178.20");
    assert_eq!(dig(p, &["-x", "192.168.178.20", "+short"]).trim(), "printer.fritz.box.");
    let nx = dig(p, &["nothing.fritz.box"]);
    assert!(nx.contains("status: NXDOMAIN"), "the router's answer: {nx}");
    // the rest still goes to the upstreams; the upstream does not know the router's names
    assert_eq!(dig(p, &["www.example.test", "+short"]).trim(), "192.0.2.10");
    assert_eq!(dig(up.port, &["printer.fritz.box", "+short"]).trim(), "");

    let (cl, csrf) = admin_session(&inst).await;
    let r = cl
        .patch(inst.url("/api/v1/config"))
        .header("x-csrf-token", &csrf)
        .json(&serde_json::json!({"dns": {"forward_zones": [
            {"domain": "fritz.box", "upstreams": ["udp://127.0.0.1:1"]},
            {"domain": "nas.home.arpa", "upstreams": ["udp://127.0.0.1:1"]}]}}))
        .send()
        .await
        .unwrap();
    let v = expect_error(r, 422, "invalid_config").await;
    assert_eq!(v["error"]["key"], "dns.forward_zones[1].domain", "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("home.arpa"), "{v}");
    // the running zones stay
    assert_eq!(dig(p, &["printer.fritz.box", "+short"]).trim(), "192.168.178.20");
    let _ = router.kill();
    let _ = router.wait();
}
