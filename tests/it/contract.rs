//! The subsystem contract, against the real binary: config edits are atomic (concurrent route creations all
//! survive; a stale `If-Match` is refused with 412), routes are addressed by a stable id, and a change whose
//! sockets cannot be bound (a busy UDP port for `dns.listen`) is refused before anything is written.

use crate::common::*;
use serde_json::{Value, json};

fn route(host: &str) -> Value {
    json!({"hosts": [host], "upstreams": ["http://127.0.0.1:9"]})
}

#[tokio::test]
async fn concurrent_route_creations_all_survive() {
    let inst = Instance::start("").await;
    let (c, csrf) = admin_session(&inst).await;
    let mut tasks = vec![];
    for i in 0..8 {
        let (c, csrf, url) = (c.clone(), csrf.clone(), inst.url("/api/v1/proxy/routes"));
        tasks.push(tokio::spawn(async move {
            let r = c.post(url).header("x-csrf-token", csrf).json(&route(&format!("app{i}.home.arpa"))).send().await;
            r.unwrap().status().as_u16()
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 201);
    }
    let routes: Vec<Value> = c.get(inst.url("/api/v1/proxy/routes")).send().await.unwrap().json().await.unwrap();
    assert_eq!(routes.len(), 8, "every creation kept: {routes:?}");
    let text = std::fs::read_to_string(inst.config_path()).unwrap();
    for i in 0..8 {
        assert!(text.contains(&format!("app{i}.home.arpa")), "route {i} in the file:\n{text}");
    }
}

#[tokio::test]
async fn routes_are_addressed_by_a_stable_id() {
    let inst = Instance::start("").await;
    let (c, csrf) = admin_session(&inst).await;
    for h in ["a.home.arpa", "b.home.arpa", "c.home.arpa"] {
        let r = c.post(inst.url("/api/v1/proxy/routes")).header("x-csrf-token", &csrf).json(&route(h)).send().await;
        assert_eq!(r.unwrap().status(), 201);
    }
    let routes: Vec<Value> = c.get(inst.url("/api/v1/proxy/routes")).send().await.unwrap().json().await.unwrap();
    let id_of = |routes: &[Value], host: &str| {
        routes.iter().find(|r| r["route"]["hosts"][0] == host).unwrap()["id"].as_str().unwrap().to_string()
    };
    let c_id = id_of(&routes, "c.home.arpa");
    // deleting the first route shifts the indexes, not the ids
    let a_id = id_of(&routes, "a.home.arpa");
    let r = c.delete(inst.url(&format!("/api/v1/proxy/routes/{a_id}"))).header("x-csrf-token", &csrf).send().await;
    assert_eq!(r.unwrap().status(), 200);
    let r = c
        .patch(inst.url(&format!("/api/v1/proxy/routes/{c_id}")))
        .header("x-csrf-token", &csrf)
        .json(&json!({"upstreams": ["http://127.0.0.1:10"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let routes: Vec<Value> = r.json().await.unwrap();
    let c_route = routes.iter().find(|r| r["id"] == c_id.as_str()).expect("same id after the edit");
    assert_eq!(c_route["route"]["hosts"][0], "c.home.arpa");
    assert_eq!(c_route["route"]["upstreams"][0], "http://127.0.0.1:10");
    assert!(routes.iter().any(|r| r["route"]["hosts"][0] == "b.home.arpa"), "b untouched");
    // the deleted route's id is gone
    let r = c.delete(inst.url(&format!("/api/v1/proxy/routes/{a_id}"))).header("x-csrf-token", &csrf).send().await;
    expect_error(r.unwrap(), 404, "not_found").await;
}

#[tokio::test]
async fn a_stale_config_edit_is_refused() {
    let inst = Instance::start("").await;
    let (c, csrf) = admin_session(&inst).await;
    let r = c.get(inst.url("/api/v1/config")).send().await.unwrap();
    let tag = r.headers().get("etag").expect("GET /api/v1/config has an ETag").to_str().unwrap().to_string();
    // tab 1 changes the log level with the tag it read
    let r = c
        .patch(inst.url("/api/v1/config"))
        .header("x-csrf-token", &csrf)
        .header("if-match", &tag)
        .json(&json!({"log": {"level": "debug"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let new_tag = r.headers().get("etag").unwrap().to_str().unwrap().to_string();
    assert_ne!(new_tag, tag);
    // tab 2 still holds the old tag: refused, nothing changes
    let before = std::fs::read_to_string(inst.config_path()).unwrap();
    let r = c
        .patch(inst.url("/api/v1/config"))
        .header("x-csrf-token", &csrf)
        .header("if-match", &tag)
        .json(&json!({"log": {"level": "warn"}}))
        .send()
        .await
        .unwrap();
    expect_error(r, 412, "stale_config").await;
    assert_eq!(std::fs::read_to_string(inst.config_path()).unwrap(), before);
    let cfg: Value = c.get(inst.url("/api/v1/config")).send().await.unwrap().json().await.unwrap();
    assert_eq!(cfg["config"]["log"]["level"], "debug", "{cfg}");
    // without If-Match a change applies as before
    let r = c
        .patch(inst.url("/api/v1/config"))
        .header("x-csrf-token", &csrf)
        .json(&json!({"log": {"level": "info"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn a_busy_udp_port_refuses_the_change_before_the_file_is_written() {
    let inst = Instance::start("").await;
    let (c, csrf) = admin_session(&inst).await;
    // a port whose TCP side is free and whose UDP side someone else holds
    let busy = loop {
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = udp.local_addr().unwrap().port();
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            break udp;
        }
    };
    let addr = busy.local_addr().unwrap().to_string();
    let before = std::fs::read_to_string(inst.config_path()).unwrap();
    let r = c
        .patch(inst.url("/api/v1/config"))
        .header("x-csrf-token", &csrf)
        .json(&json!({"dns": {"listen": [inst.dns.to_string(), addr]}}))
        .send()
        .await
        .unwrap();
    let v = expect_error(r, 422, "invalid_config").await;
    assert_eq!(v["error"]["key"], "dns.listen[1]", "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("UDP"), "{v}");
    assert_eq!(std::fs::read_to_string(inst.config_path()).unwrap(), before, "the file is untouched");
    // DNS still runs, healthy, on its old address
    let h: Value = c.get(inst.url("/api/v1/status")).send().await.unwrap().json().await.unwrap();
    assert!(!h.to_string().contains("\"failed\""), "{h}");
    let out = std::process::Command::new("dig")
        .args(["+tries=1", "+time=3", "-p", &inst.dns.port().to_string(), "@127.0.0.1", "nothing.home.arpa"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("status: NXDOMAIN"), "DNS answers (a local name) on its old address:\n{text}");
    drop(busy);
}

fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.split(' ').nth(1)?.parse().ok())
}

fn dig_a(port: u16, name: &str) -> String {
    let out = std::process::Command::new("dig")
        .args(["+short", "+tries=1", "+time=3", "-p", &port.to_string(), "@127.0.0.1", name, "A"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// `hearth_dns_cache_entries` follows a flush and a cache rebuild (it kept its old value before).
#[tokio::test]
async fn the_cache_gauge_follows_flushes_and_rebuilds() {
    // upstream: another hearth with a local record for a name the forwarder does not treat as local
    let upstream = Instance::start(
        "[dns]\nlisten = [\"127.0.0.1:{dns_port}\"]\nupstreams = [\"udp://127.0.0.1:9\"]\ndnssec = false\n\n[[dns.records]]\nname = \"cached.example.net\"\ntype = \"A\"\nvalue = \"192.0.2.7\"\n",
    )
    .await;
    let inst = Instance::start(&format!(
        "[dns]\nlisten = [\"127.0.0.1:{{dns_port}}\"]\nupstreams = [\"udp://{}\"]\ndnssec = false\n",
        upstream.dns
    ))
    .await;
    let (c, csrf) = admin_session(&inst).await;
    let entries = |c: reqwest::Client| {
        let url = inst.url("/metrics");
        async move { metric(&c.get(url).send().await.unwrap().text().await.unwrap(), "hearth_dns_cache_entries") }
    };
    assert_eq!(dig_a(inst.dns.port(), "cached.example.net"), "192.0.2.7");
    assert_eq!(entries(c.clone()).await, Some(1.0));
    let r = c.post(inst.url("/api/v1/dns/cache/flush")).header("x-csrf-token", &csrf).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(entries(c.clone()).await, Some(0.0), "a flush empties the gauge too");
    assert_eq!(dig_a(inst.dns.port(), "cached.example.net"), "192.0.2.7");
    assert_eq!(entries(c.clone()).await, Some(1.0));
    // a new cache policy rebuilds the cache empty
    let r = c
        .patch(inst.url("/api/v1/config"))
        .header("x-csrf-token", &csrf)
        .json(&json!({"dns": {"cache": {"size": 5000}}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(entries(c.clone()).await, Some(0.0), "a rebuilt cache starts at zero");
}
