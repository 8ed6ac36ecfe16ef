//! The first hour (issue 22): the wizard's account step logs the admin in, the block-list catalog adds a list (from
//! a local mirror, never a download) that blocks at once, blocking pauses and resumes (a pause until resumed
//! outlives a restart), and the device guide's network facts.

use serde_json::{Value, json};

use crate::common::{DnsReply, Instance, client, dns_ask, expect_error, setup_code};

/// A local mirror of the catalog: `adguard-dns.txt` blocks `catalog-ad.example`.
fn mirror() -> tempfile::TempDir {
    let m = tempfile::tempdir().unwrap();
    std::fs::write(m.path().join("adguard-dns.txt"), "! local copy\n||catalog-ad.example^\n").unwrap();
    m
}

fn dns_with_mirror(m: &tempfile::TempDir) -> String {
    format!(
        "[dns]\nlisten = [\"127.0.0.1:{{dns_port}}\"]\nupstreams = [\"udp://127.0.0.1:9\"]\ncatalog_mirror = \"{}\"\n",
        m.path().display()
    )
}

fn blocked(r: &DnsReply) -> bool {
    r.answers == ["0.0.0.0"]
}

/// The account step answers with the session cookie: the wizard goes on as the new admin, no login in between.
async fn setup_logged_in(inst: &Instance) -> (reqwest::Client, String) {
    let c = client();
    let r = c
        .post(inst.url("/api/v1/setup"))
        .json(&json!({"username": "admin", "password": "correct horse", "setup_code": setup_code(inst)}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let cookie =
        r.headers().get("set-cookie").expect("the setup answer logs the admin in").to_str().unwrap().to_string();
    assert!(cookie.starts_with("hearth_session=") && cookie.contains("HttpOnly"), "{cookie}");
    let s: Value = c.get(inst.url("/api/v1/auth/session")).send().await.unwrap().json().await.unwrap();
    assert_eq!(s["user"], "admin", "{s}");
    (c, s["csrf_token"].as_str().unwrap().to_string())
}

#[tokio::test]
async fn a_catalog_list_added_in_one_click_blocks_at_once() {
    let m = mirror();
    let inst = Instance::start(&dns_with_mirror(&m)).await;
    let (c, csrf) = setup_logged_in(&inst).await;

    let catalog: Value = c.get(inst.url("/api/v1/dns/catalog")).send().await.unwrap().json().await.unwrap();
    let first = &catalog[0];
    assert_eq!(
        (&first["id"], &first["recommended"], &first["added"]),
        (&json!("adguard-dns"), &json!(true), &json!(false))
    );
    assert!(catalog.as_array().unwrap().len() >= 8, "{catalog}");
    assert!(!blocked(&dns_ask(inst.dns, "www.catalog-ad.example", "A")));

    let add = |id: &str| c.post(inst.url(&format!("/api/v1/dns/catalog/{id}"))).header("X-CSRF-Token", &csrf).send();
    let r = add("adguard-dns").await.unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    // a file in the mirror: compiled by the change itself, no download to wait for
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !blocked(&dns_ask(inst.dns, "www.catalog-ad.example", "A")) {
        assert!(std::time::Instant::now() < deadline, "the catalog list never blocked");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let toml = std::fs::read_to_string(inst.config_path()).unwrap();
    assert!(toml.contains("name = \"adguard-dns\""), "{toml}");
    assert!(toml.contains(&format!("source = \"{}/adguard-dns.txt\"", m.path().display())), "{toml}");
    let catalog: Value = c.get(inst.url("/api/v1/dns/catalog")).send().await.unwrap().json().await.unwrap();
    assert_eq!(catalog[0]["added"], true);

    expect_error(add("adguard-dns").await.unwrap(), 409, "conflict").await;
    expect_error(add("no-such-list").await.unwrap(), 404, "not_found").await;
    // no CSRF token, no change
    let r = c.post(inst.url("/api/v1/dns/catalog/oisd-small")).send().await.unwrap();
    assert_eq!(r.status(), 403);
}

#[tokio::test]
async fn blocking_pauses_for_minutes_or_until_resumed_across_a_restart() {
    let m = mirror();
    let extra = format!(
        "{}\n[[dns.lists]]\nname = \"ads\"\nkind = \"block\"\nsource = \"{}/adguard-dns.txt\"\n",
        dns_with_mirror(&m),
        m.path().display()
    );
    let mut inst = Instance::start(&extra).await;
    let (c, csrf) = setup_logged_in(&inst).await;
    let put = |body: Value| c.put(inst.url("/api/v1/dns/blocking")).header("X-CSRF-Token", &csrf).json(&body).send();
    let state =
        || async { c.get(inst.url("/api/v1/dns/blocking")).send().await.unwrap().json::<Value>().await.unwrap() };

    assert_eq!(state().await, json!({"enabled": true, "paused_until": null}));
    assert!(blocked(&dns_ask(inst.dns, "a.catalog-ad.example", "A")));

    // five minutes
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    let r: Value = put(json!({"enabled": false, "minutes": 5})).await.unwrap().json().await.unwrap();
    assert_eq!(r["enabled"], false, "{r}");
    let until = r["paused_until"].as_i64().unwrap();
    assert!((now + 299..=now + 302).contains(&until), "{r}");
    let paused = dns_ask(inst.dns, "b.catalog-ad.example", "A");
    assert!(!blocked(&paused), "paused: let through to the (dead) upstream: {}", paused.text);
    // local answers and the rest of the pipeline still work: the name goes upstream, which is down here
    assert_eq!(paused.status, "SERVFAIL", "{}", paused.text);

    // bad input names the field
    let r = put(json!({"enabled": false, "minutes": 0})).await.unwrap();
    let v = expect_error(r, 422, "invalid_input").await;
    assert_eq!(v["error"]["key"], "minutes");

    // until resumed: it outlives a restart
    let r: Value = put(json!({"enabled": false})).await.unwrap().json().await.unwrap();
    assert_eq!(r, json!({"enabled": false, "paused_until": null}));
    inst.restart().await;
    let (c2, csrf2) = crate::common::admin_login(&inst).await;
    let r: Value = c2.get(inst.url("/api/v1/dns/blocking")).send().await.unwrap().json().await.unwrap();
    assert_eq!(r, json!({"enabled": false, "paused_until": null}), "still paused after the restart");
    assert!(!blocked(&dns_ask(inst.dns, "c.catalog-ad.example", "A")));

    // resumed
    let r: Value = c2
        .put(inst.url("/api/v1/dns/blocking"))
        .header("X-CSRF-Token", &csrf2)
        .json(&json!({"enabled": true}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r, json!({"enabled": true, "paused_until": null}));
    assert!(blocked(&dns_ask(inst.dns, "d.catalog-ad.example", "A")));
}

#[tokio::test]
async fn a_dns_read_token_sees_the_catalog_and_the_pause_but_changes_neither() {
    let inst = Instance::start("").await;
    let (c, csrf) = setup_logged_in(&inst).await;
    let r = c
        .post(inst.url("/api/v1/tokens"))
        .header("X-CSRF-Token", &csrf)
        .json(&json!({"name": "reader", "scopes": ["dns:read"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let token = r.json::<Value>().await.unwrap()["token"].as_str().unwrap().to_string();
    let t = reqwest::Client::new();
    for path in ["/api/v1/dns/catalog", "/api/v1/dns/blocking"] {
        let r = t.get(inst.url(path)).bearer_auth(&token).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
    }
    let r = t
        .put(inst.url("/api/v1/dns/blocking"))
        .bearer_auth(&token)
        .json(&json!({"enabled": false}))
        .send()
        .await
        .unwrap();
    expect_error(r, 403, "insufficient_scope").await;
    let r = t.post(inst.url("/api/v1/dns/catalog/adguard-dns")).bearer_auth(&token).send().await.unwrap();
    expect_error(r, 403, "insufficient_scope").await;
    let r = t.get(inst.url("/api/v1/system/network")).bearer_auth(&token).send().await.unwrap();
    expect_error(r, 403, "insufficient_scope").await;
}

#[tokio::test]
async fn the_device_guide_knows_this_machines_addresses_and_ports() {
    let inst = Instance::start("").await;
    let (c, _) = setup_logged_in(&inst).await;
    let n: Value = c.get(inst.url("/api/v1/system/network")).send().await.unwrap().json().await.unwrap();
    let addrs = n["addresses"].as_array().unwrap();
    assert!(addrs.iter().all(|a| !a["address"].as_str().unwrap().starts_with("127.")), "{n}");
    assert!(addrs.iter().all(|a| a["address"] != "::1"), "{n}");
    // the test instance listens on loopback only: other devices cannot use it, and the guide says so
    assert_eq!(n["dns_reachable"], false, "{n}");
    assert_eq!(n["dns_port"], inst.dns.port(), "{n}");
    assert_eq!(n["https_port"], inst.https.port(), "{n}");
    assert_eq!(n["dns_listen"], json!([inst.dns.to_string()]), "{n}");
    // anonymous: no
    let r = reqwest::Client::new().get(inst.url("/api/v1/system/network")).send().await.unwrap();
    assert_eq!(r.status(), 401);
}

#[tokio::test]
async fn my_rules_are_listed_removed_edited_and_checked() {
    let m = mirror();
    let extra = format!(
        "{}\n[[dns.lists]]\nname = \"ads\"\nkind = \"block\"\nsource = \"{}/adguard-dns.txt\"\n",
        dns_with_mirror(&m),
        m.path().display()
    );
    let inst = Instance::start(&extra).await;
    let (c, csrf) = setup_logged_in(&inst).await;
    let get = |path: String| {
        let c = c.clone();
        let url = inst.url(&path);
        async move { c.get(url).send().await.unwrap() }
    };

    // one click from the log: allowed at once, and listed
    let r = c
        .post(inst.url("/api/v1/dns/rules"))
        .header("X-CSRF-Token", &csrf)
        .json(&json!({"domain": "x.catalog-ad.example", "action": "allow"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(!blocked(&dns_ask(inst.dns, "x.catalog-ad.example", "A")));
    let mine: Value = get("/api/v1/dns/rules".into()).await.json().await.unwrap();
    assert_eq!(mine["allow"]["domains"], json!(["x.catalog-ad.example"]), "{mine}");
    assert_eq!(mine["allow"]["name"], "my allowlist");
    assert_eq!(mine["block"]["domains"], json!([]));

    // check a domain: the deciding list and rule
    let v: Value = get("/api/v1/dns/check?name=x.catalog-ad.example".into()).await.json().await.unwrap();
    assert_eq!((&v["verdict"], &v["list"]), (&json!("allowed"), &json!("my allowlist")), "{v}");
    let v: Value = get("/api/v1/dns/check?name=Y.Catalog-Ad.Example.".into()).await.json().await.unwrap();
    assert_eq!(
        (&v["verdict"], &v["list"], &v["rule"], &v["name"]),
        (&json!("blocked"), &json!("ads"), &json!("||catalog-ad.example^"), &json!("y.catalog-ad.example")),
        "{v}"
    );
    let v: Value = get("/api/v1/dns/check?name=example.org".into()).await.json().await.unwrap();
    assert_eq!(v["verdict"], "none");
    let v = expect_error(get("/api/v1/dns/check?name=not..a..name".into()).await, 422, "invalid_input").await;
    assert_eq!(v["error"]["key"], "name");
    let v = expect_error(get("/api/v1/dns/check?name=a.example&client=nope".into()).await, 422, "invalid_input").await;
    assert_eq!(v["error"]["key"], "client");

    // remove: blocked again; removing it twice is 404
    let del = || {
        c.delete(inst.url("/api/v1/dns/rules?domain=x.catalog-ad.example&action=allow"))
            .header("X-CSRF-Token", &csrf)
            .send()
    };
    let r = del().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(blocked(&dns_ask(inst.dns, "x.catalog-ad.example", "A")));
    expect_error(del().await.unwrap(), 404, "not_found").await;

    // the text editor: a bad line is refused, naming it, and nothing changes; a good text is in force at once
    let put = |text: &str| {
        c.put(inst.url("/api/v1/dns/rules/allow")).header("X-CSRF-Token", &csrf).json(&json!({ "text": text })).send()
    };
    let v = expect_error(put("||ok.example^\nnot a rule at all\n").await.unwrap(), 422, "invalid_input").await;
    assert_eq!(v["error"]["key"], "text");
    assert!(v["error"]["message"].as_str().unwrap().contains("line 2"), "{v}");
    let r = put("# mine\nz.catalog-ad.example\n").await.unwrap();
    assert_eq!(r.status(), 200);
    let mine: Value = r.json().await.unwrap();
    assert_eq!(mine["allow"]["domains"], json!(["z.catalog-ad.example"]), "{mine}");
    assert_eq!(mine["allow"]["text"], "# mine\nz.catalog-ad.example\n");
    assert!(!blocked(&dns_ask(inst.dns, "z.catalog-ad.example", "A")));
    let r = c
        .put(inst.url("/api/v1/dns/rules/sideways"))
        .header("X-CSRF-Token", &csrf)
        .json(&json!({"text": ""}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400, "an unknown list");

    // basic-auth passwords are hashed by hearth for the route editor
    let hash = |p: &str| {
        c.post(inst.url("/api/v1/auth/hash-password"))
            .header("X-CSRF-Token", &csrf)
            .json(&json!({ "password": p }))
            .send()
    };
    let v = expect_error(hash("short").await.unwrap(), 422, "invalid_input").await;
    assert_eq!(v["error"]["key"], "password");
    let v: Value = hash("long enough pass").await.unwrap().json().await.unwrap();
    assert!(v["hash"].as_str().unwrap().starts_with("$argon2id$"), "{v}");
}

#[tokio::test]
async fn a_token_with_an_expiry_says_when_and_is_refused_afterwards() {
    let inst = Instance::start("").await;
    let (c, csrf) = setup_logged_in(&inst).await;
    let create = |body: Value| c.post(inst.url("/api/v1/tokens")).header("X-CSRF-Token", &csrf).json(&body).send();
    let v = expect_error(create(json!({"name": "x", "expires_in_days": 0})).await.unwrap(), 422, "invalid_input").await;
    assert_eq!(v["error"]["key"], "expires_in_days");
    let r = create(json!({"name": "monthly", "scopes": ["metrics"], "expires_in_days": 30})).await.unwrap();
    assert_eq!(r.status(), 201);
    let v: Value = r.json().await.unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    let expires = v["info"]["expires_at"].as_i64().unwrap();
    assert!((now + 30 * 86_400 - 5..=now + 30 * 86_400 + 5).contains(&expires), "{v}");
    let token = v["token"].as_str().unwrap().to_string();
    let m = reqwest::Client::new().get(inst.url("/metrics")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(m.status(), 200, "valid until then");
    // an expired token (moved into the past in the database) is refused, and still listed
    let db = hearth::testing::Db::open(
        &inst.dir.path().join("data"),
        std::time::Duration::from_secs(5),
        &hearth::testing::migrations(),
    )
    .unwrap();
    db.blocking(|c| c.execute("UPDATE api_tokens SET expires_at = 1 WHERE name = 'monthly'", []).unwrap());
    let r = reqwest::Client::new().get(inst.url("/api/v1/dns/stats")).bearer_auth(&token).send().await.unwrap();
    expect_error(r, 401, "invalid_token").await;
    let list: Value = c.get(inst.url("/api/v1/tokens")).send().await.unwrap().json().await.unwrap();
    assert_eq!(list[0]["expires_at"], 1, "{list}");
    // the command line makes them too
    let cfg = inst.config_path();
    let out = inst.cli(&["token", "create", "cli-made", "--expires-in-days", "7", "-c", cfg.to_str().unwrap()], None);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let list: Value = c.get(inst.url("/api/v1/tokens")).send().await.unwrap().json().await.unwrap();
    assert!(list[1]["expires_at"].as_i64().unwrap() > now, "{list}");
}

#[tokio::test]
async fn anonymized_clients_are_logged_by_their_network() {
    let m = mirror();
    let extra = format!(
        "{}\n[[dns.lists]]\nname = \"ads\"\nkind = \"block\"\nsource = \"{}/adguard-dns.txt\"\n\n[dns.querylog]\nflush_interval = \"100ms\"\nanonymize_clients = true\n",
        dns_with_mirror(&m),
        m.path().display()
    );
    let inst = Instance::start(&extra).await;
    let (c, _) = setup_logged_in(&inst).await;
    assert!(blocked(&crate::common::dns_ask_with(inst.dns, &["-b", "127.0.0.5"], "a.catalog-ad.example", "A")));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let log: Value = c.get(inst.url("/api/v1/dns/querylog")).send().await.unwrap().json().await.unwrap();
        if let Some(e) = log.as_array().unwrap().first() {
            assert_eq!(e["client"], "127.0.0.0", "{e}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "nothing logged");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let stats: Value = c.get(inst.url("/api/v1/dns/stats")).send().await.unwrap().json().await.unwrap();
    assert_eq!(stats["top_clients"][0][0], "127.0.0.0", "{stats}");
}

/// A CA that cannot be reached is said so, with the cause, not as "client error (Connect)".
#[tokio::test]
async fn an_unreachable_ca_is_worded_as_such() {
    let port = crate::common::free_port();
    let extra = format!(
        "[tls]\nacme_directory = \"https://127.0.0.1:{port}/directory\"\n\n[proxy]\n[[proxy.routes]]\nhosts = [\"public.example.com\"]\nupstreams = [\"http://127.0.0.1:9\"]\ntls = \"acme\"\n"
    );
    let inst = Instance::start(&extra).await;
    let (c, _) = setup_logged_in(&inst).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let v: Value = c.get(inst.url("/api/v1/tls/certificates")).send().await.unwrap().json().await.unwrap();
        let cert = &v["acme"][0];
        if cert["status"] == "failed" {
            let err = cert["last_error"].as_str().unwrap();
            assert!(err.starts_with("the CA could not be reached: "), "{err}");
            assert!(err.to_lowercase().contains("refused"), "the cause is named: {err}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no failure reported: {v}");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

/// The ACME pre-flight check: a local name is refused, a name with no public address or a private one is named
/// as the problem, and a public address whose port 80 does not answer hearth's probe is said so.
#[tokio::test]
async fn the_acme_preflight_names_what_is_missing() {
    let extra = "[dns]\nlisten = [\"127.0.0.1:{dns_port}\"]\nupstreams = [\"udp://127.0.0.1:9\"]\nupstream_timeout = \"300ms\"\n\n\
                 [[dns.records]]\nname = \"lan.example.com\"\ntype = \"A\"\nvalue = \"192.168.1.50\"\n\n\
                 [[dns.records]]\nname = \"far.example.com\"\ntype = \"A\"\nvalue = \"192.0.2.1\"\n";
    let inst = Instance::start(extra).await;
    let (c, csrf) = setup_logged_in(&inst).await;
    let check = |name: &str| {
        c.post(inst.url("/api/v1/tls/preflight")).header("X-CSRF-Token", &csrf).json(&json!({ "name": name })).send()
    };
    let v = expect_error(check("nas.home.arpa").await.unwrap(), 422, "invalid_input").await;
    assert!(v["error"]["message"].as_str().unwrap().contains("local name"), "{v}");
    assert_eq!(v["error"]["key"], "name");
    expect_error(check("not a name").await.unwrap(), 422, "invalid_input").await;

    let v: Value = check("lan.example.com").await.unwrap().json().await.unwrap();
    assert_eq!((&v["dns"]["ok"], &v["http"]["ok"]), (&json!(false), &json!(false)), "{v}");
    assert!(v["dns"]["detail"].as_str().unwrap().contains("192.168.1.50, a private address"), "{v}");
    assert!(v["http"]["detail"].as_str().unwrap().starts_with("not checked"), "{v}");

    let v: Value = check("nowhere.example.com").await.unwrap().json().await.unwrap();
    assert!(v["dns"]["detail"].as_str().unwrap().contains("does not resolve"), "{v}");

    let v: Value = check("far.example.com").await.unwrap().json().await.unwrap();
    assert_eq!((&v["dns"]["ok"], &v["addresses"]), (&json!(true), &json!(["192.0.2.1"])), "{v}");
    assert_eq!(v["http"]["ok"], false, "{v}");
    assert!(v["http"]["detail"].as_str().unwrap().contains("port 80 of 192.0.2.1"), "{v}");
    assert!(v["http"]["detail"].as_str().unwrap().contains("NAT loopback"), "the limit of the check is said: {v}");
}
