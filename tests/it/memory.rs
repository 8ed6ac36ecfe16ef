//! Memory: the embedding model against sentence-transformers' own vectors, the OpenAI and TEI shapes (with the
//! official `openai` Python client), limits and errors, and collections (upsert, filters, hybrid search, ANN
//! recall, persistence, concurrency), all over HTTP against the real binary.

use crate::common::*;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// An admin, and an API token for `Authorization: Bearer`.
async fn token(inst: &Instance) -> String {
    let (c, csrf) = admin_session(inst).await;
    let r = c.post(inst.url("/api/v1/tokens")).header("x-csrf-token", csrf).json(&json!({"name": "memory"}));
    let v: Value = r.send().await.unwrap().json().await.unwrap();
    v["token"].as_str().unwrap().to_string()
}

struct Api {
    c: reqwest::Client,
    base: String,
    token: String,
}

impl Api {
    async fn new(inst: &Instance) -> Api {
        Api { c: reqwest::Client::new(), base: inst.base(), token: token(inst).await }
    }
    async fn post(&self, path: &str, body: Value) -> reqwest::Response {
        self.c.post(format!("{}{path}", self.base)).bearer_auth(&self.token).json(&body).send().await.unwrap()
    }
    async fn delete(&self, path: &str, body: Value) -> reqwest::Response {
        self.c.delete(format!("{}{path}", self.base)).bearer_auth(&self.token).json(&body).send().await.unwrap()
    }
    async fn patch(&self, path: &str, body: Value) -> reqwest::Response {
        self.c.patch(format!("{}{path}", self.base)).bearer_auth(&self.token).json(&body).send().await.unwrap()
    }
    async fn get(&self, path: &str) -> Value {
        let r = self.c.get(format!("{}{path}", self.base)).bearer_auth(&self.token).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
        r.json().await.unwrap()
    }
    async fn ok(&self, path: &str, body: Value) -> Value {
        let r = self.post(path, body).await;
        let status = r.status();
        let text = r.text().await.unwrap();
        assert!(status.is_success(), "{path}: {status} {text}");
        serde_json::from_str(&text).unwrap()
    }
}

const MEMORY: &str = "[memory]\nenabled = true\n";

fn reference() -> Vec<(String, u64, Vec<f32>)> {
    let v: Value =
        serde_json::from_str(include_str!("../fixtures/minilm_reference.json")).expect("the reference fixture parses");
    v["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            let vec = i["vector"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect();
            (i["text"].as_str().unwrap().to_string(), i["tokens"].as_u64().unwrap(), vec)
        })
        .collect()
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let n = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (n(a) * n(b))
}

fn floats(v: &Value) -> Vec<f32> {
    v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect()
}

#[tokio::test]
async fn vectors_match_sentence_transformers() {
    let inst = Instance::start(MEMORY).await;
    let api = Api::new(&inst).await;
    let refs = reference();
    let texts: Vec<&str> = refs.iter().map(|r| r.0.as_str()).collect();

    // TEI shape, all in one request (batched and padded together), truncating the long ones
    let got: Value = api.ok("/api/v1/embed", json!({"inputs": texts, "truncate": true})).await;
    let got = got.as_array().unwrap();
    assert_eq!(got.len(), refs.len());
    let mut worst = 1.0f32;
    for ((text, _, want), g) in refs.iter().zip(got) {
        let g = floats(g);
        assert_eq!(g.len(), 384);
        let cos = cosine(&g, want);
        worst = worst.min(cos);
        assert!(cos >= 0.999, "cosine {cos} for {text:?}");
        let norm: f32 = g.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4, "normalised");
    }
    eprintln!("worst cosine against sentence-transformers: {worst}");

    // OpenAI shape, one input per request (no padding at all): same vectors, token usage as the reference counts
    for (text, tokens, want) in refs.iter().take(6) {
        let v = api.ok("/v1/embeddings", json!({"input": text, "model": "all-MiniLM-L6-v2"})).await;
        assert_eq!(v["object"], "list");
        assert_eq!(v["model"], "all-MiniLM-L6-v2");
        assert_eq!(v["data"][0]["object"], "embedding");
        assert_eq!(v["data"][0]["index"], 0);
        assert_eq!(v["usage"]["prompt_tokens"], *tokens, "{text:?}");
        assert!(cosine(&floats(&v["data"][0]["embedding"]), want) >= 0.999);
    }

    // base64: little-endian f32
    let v = api.ok("/v1/embeddings", json!({"input": ["hello"], "encoding_format": "base64"})).await;
    let bytes = data_encoding::BASE64.decode(v["data"][0]["embedding"].as_str().unwrap().as_bytes()).unwrap();
    let vec: Vec<f32> = bytes.chunks(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect();
    assert!(cosine(&vec, &refs[0].2) >= 0.999);

    // normalize=false returns the raw mean-pooled vector (same direction, not unit length)
    let v: Value = api.ok("/api/v1/embed", json!({"inputs": "hello", "normalize": false})).await;
    let raw = floats(&v[0]);
    assert!(cosine(&raw, &refs[0].2) >= 0.999);
    assert!((raw.iter().map(|x| x * x).sum::<f32>().sqrt() - 1.0).abs() > 0.01);

    // status and metrics saw the work; the cache answered the repeats
    let st = api.get("/api/v1/memory/status").await;
    assert_eq!(st["model"]["state"], "ready", "{st}");
    assert_eq!(st["model"]["dim"], 384);
    assert!(st["tokens"].as_u64().unwrap() > 100, "{st}");
    assert!(st["cache_hit_rate"].as_f64().unwrap() > 0.0, "{st}");
    let m = reqwest::get(inst.url("/metrics")).await.unwrap().text().await.unwrap();
    for name in [
        "hearth_memory_embed_requests_total",
        "hearth_memory_batch_size",
        "hearth_memory_queue_wait_seconds",
        "hearth_memory_embed_tokens_total",
        "hearth_memory_cache_hits_total",
        "hearth_memory_model_ready 1",
    ] {
        assert!(m.contains(name), "{name} missing from /metrics");
    }
    promtool_check(&m);
}

#[tokio::test]
async fn official_openai_python_client_round_trip() {
    let python = std::env::var("HEARTH_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let inst = Instance::start(MEMORY).await;
    let api = Api::new(&inst).await;
    let want = reference();
    let script = r#"
import json, sys
from openai import OpenAI
client = OpenAI(base_url=sys.argv[1], api_key=sys.argv[2])
r = client.embeddings.create(model="all-MiniLM-L6-v2", input=["hello", "The quick brown fox jumps over the lazy dog."])
print(json.dumps({"model": r.model, "tokens": r.usage.prompt_tokens, "vectors": [d.embedding for d in r.data]}))
"#;
    let out = std::process::Command::new(&python)
        .args(["-c", script, &format!("{}/v1", inst.base()), &api.token])
        .output()
        .unwrap_or_else(|e| panic!("{python}: {e} (run .ci/deps to make the venv with the openai client)"));
    assert!(out.status.success(), "openai client failed:\n{}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["model"], "all-MiniLM-L6-v2");
    assert_eq!(v["tokens"], want[0].1 + want[1].1);
    for (got, (_, _, w)) in v["vectors"].as_array().unwrap().iter().zip(&want) {
        assert!(cosine(&floats(got), w) >= 0.999);
    }
    // a wrong key is refused the way the client understands
    let out = std::process::Command::new(&python)
        .args(["-c", script, &format!("{}/v1", inst.base()), "hth_wrong"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("401"), "{}", String::from_utf8_lossy(&out.stderr));
}

#[tokio::test]
async fn limits_and_bad_input_get_json_errors() {
    // a small body limit, so that the over-limit body is still small enough to be written whole
    let inst = Instance::start("[memory]\nmax_body_bytes = 65536\n").await;
    let api = Api::new(&inst).await;
    let many: Vec<String> = (0..33).map(|i| format!("text {i}")).collect();
    for (path, body, status, code) in [
        ("/v1/embeddings", json!({"input": many}), 422, "invalid_input"),
        ("/api/v1/embed", json!({"inputs": many}), 422, "invalid_input"),
        ("/v1/embeddings", json!({"input": "x".repeat(10_001)}), 422, "invalid_input"),
        ("/v1/embeddings", json!({"input": ""}), 422, "invalid_input"),
        ("/v1/embeddings", json!({"input": []}), 422, "invalid_input"),
        ("/v1/embeddings", json!({"input": ["ok", "  "]}), 422, "invalid_input"),
        ("/v1/embeddings", json!({"input": 5}), 422, "invalid_input"),
        ("/v1/embeddings", json!({"input": [[1, 2, 3]]}), 422, "invalid_input"),
        ("/v1/embeddings", json!({"input": [null]}), 422, "invalid_input"),
        ("/v1/embeddings", json!({}), 422, "invalid_input"),
        ("/v1/embeddings", json!({"input": "x", "encoding_format": "int8"}), 422, "invalid_input"),
        ("/v1/embeddings", json!({"input": "x", "dimensions": 1536}), 422, "invalid_input"),
        ("/v1/embeddings", json!({"input": "x", "model": "text-embedding-3-small"}), 404, "model_not_found"),
        ("/v1/embeddings", json!({"input": "x", "bogus": 1}), 422, "invalid_input"),
        ("/api/v1/embed", json!({"inputs": {"a": 1}}), 422, "invalid_input"),
        ("/api/v1/embed", json!({"inputs": "x", "normalize": "yes"}), 422, "invalid_input"),
        // TEI refuses over-long input unless asked to truncate
        ("/api/v1/embed", json!({"inputs": "word ".repeat(400)}), 413, "input_too_long"),
    ] {
        let r = api.post(path, body.clone()).await;
        let v = expect_error(r, status, code).await;
        eprintln!("{path} {}: {}", &body.to_string().chars().take(60).collect::<String>(), v["error"]["message"]);
    }
    // 10,000 characters is fine
    api.ok("/v1/embeddings", json!({"input": "y".repeat(10_000)})).await;
    // truncate=true accepts the over-long input, and the cached truncated vector does not slip past a strict call
    api.ok("/api/v1/embed", json!({"inputs": "word ".repeat(400), "truncate": true})).await;
    expect_error(api.post("/api/v1/embed", json!({"inputs": "word ".repeat(400)})).await, 413, "input_too_long").await;
    // not JSON, no auth, too large
    let r = api
        .c
        .post(inst.url("/v1/embeddings"))
        .bearer_auth(&api.token)
        .header("content-type", "application/json")
        .body("{nope")
        .send()
        .await
        .unwrap();
    expect_error(r, 400, "invalid_json").await;
    let r = reqwest::Client::new().post(inst.url("/v1/embeddings")).json(&json!({"input": "x"})).send().await.unwrap();
    expect_error(r, 401, "unauthenticated").await;
    let huge = "z ".repeat(40_000);
    let r = api.post("/v1/embeddings", json!({"input": huge})).await;
    expect_error(r, 413, "payload_too_large").await;
}

#[tokio::test]
async fn embedding_answers_503_until_the_model_is_loaded() {
    // a model directory whose config.json is a FIFO: loading blocks until the test writes it
    let dir = tempfile::tempdir().unwrap();
    let assets = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/models/all-MiniLM-L6-v2");
    for f in ["tokenizer.json", "model.f16.safetensors", "sentence_bert_config.json"] {
        std::fs::copy(assets.join(f), dir.path().join(f)).unwrap();
    }
    std::fs::create_dir(dir.path().join("1_Pooling")).unwrap();
    std::fs::copy(assets.join("1_Pooling/config.json"), dir.path().join("1_Pooling/config.json")).unwrap();
    let fifo = dir.path().join("config.json");
    assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    let inst = Instance::launch(|_| String::new(), &format!("[memory]\nmodel = \"{}\"\n", dir.path().display()), &[]);
    let c = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while c.get(inst.url("/healthz")).send().await.is_err() {
        assert!(Instant::now() < deadline, "{}", inst.log_text());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // DNS and the API do not wait for the model
    let api = Api::new(&inst).await;
    let r = api.post("/v1/embeddings", json!({"input": "hello"})).await;
    assert_eq!(r.headers().get("retry-after").map(|v| v.to_str().unwrap()), Some("2"));
    let v = expect_error(r, 503, "model_not_ready").await;
    assert!(v["error"]["message"].as_str().unwrap().contains("loading"), "{v}");
    let ready = c.get(inst.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 503);
    let text = ready.text().await.unwrap();
    assert!(text.contains("memory") && text.contains("loading the embedding model"), "{text}");
    let st = api.get("/api/v1/memory/status").await;
    assert_eq!(st["model"]["state"], "loading");

    // release the load
    std::fs::write(&fifo, std::fs::read(assets.join("config.json")).unwrap()).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = api.post("/v1/embeddings", json!({"input": "hello"})).await;
        if r.status() == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "{}", inst.log_text());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    inst.wait_ready().await;
}

#[tokio::test]
async fn a_model_that_fails_to_load_says_why() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("config.json"), "{ not json").unwrap();
    let inst = Instance::launch(|_| String::new(), &format!("[memory]\nmodel = \"{}\"\n", dir.path().display()), &[]);
    let c = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(r) = c.get(inst.url("/readyz")).send().await {
            let t = r.text().await.unwrap();
            if t.contains("config.json") {
                break;
            }
        }
        assert!(Instant::now() < deadline, "{}", inst.log_text());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let api = Api::new(&inst).await;
    let v = expect_error(api.post("/v1/embeddings", json!({"input": "x"})).await, 503, "model_not_ready").await;
    assert!(v["error"]["message"].as_str().unwrap().contains("failed to load"), "{v}");
    let st = api.get("/api/v1/memory/status").await;
    assert_eq!(st["model"]["state"], "failed", "{st}");
    // DNS still answers
    let out = std::process::Command::new("dig")
        .args(["+short", "+tries=1", "+time=2", "-p", &inst.dns.port().to_string(), "@127.0.0.1", "hearth.home.arpa"])
        .output()
        .unwrap();
    assert!(out.status.success());
}

async fn ids(api: &Api, coll: &str, body: Value) -> Vec<String> {
    let v = api.ok(&format!("/api/v1/collections/{coll}/query"), body).await;
    v.as_array().unwrap().iter().map(|h| h["id"].as_str().unwrap().to_string()).collect()
}

#[tokio::test]
async fn collections_upsert_filter_hybrid_and_persist() {
    let mut inst = Instance::start(MEMORY).await;
    let api = Api::new(&inst).await;
    let created = api.post("/api/v1/collections", json!({"name": "notes"})).await;
    assert_eq!(created.status(), 201);
    let info: Value = created.json().await.unwrap();
    assert_eq!(info["dimension"], 384);
    assert_eq!(info["model"], "all-MiniLM-L6-v2");
    expect_error(api.post("/api/v1/collections", json!({"name": "notes"})).await, 409, "conflict").await;
    expect_error(api.post("/api/v1/collections", json!({"name": "../x"})).await, 422, "invalid_input").await;

    let docs = json!([
        {"id": "dns", "text": "Point the router's DNS server setting at the Raspberry Pi to filter ads.", "metadata": {"topic": "dns", "year": 2024, "pinned": true}},
        {"id": "tls", "text": "Certificates from Let's Encrypt renew automatically before they expire.", "metadata": {"topic": "tls", "year": 2023}},
        {"id": "backup", "text": "Back up the SD card every night; restore by copying the snapshot.", "metadata": {"topic": "ops", "year": 2022}},
        {"id": "garden", "text": "Tomatoes need sun, water and a stake to climb.", "metadata": {"topic": "garden", "year": 2021}},
        {"id": "code", "text": "The spare key is in the blue box, code ZX-4471-QP.", "metadata": {"topic": "home", "year": 2020}},
    ]);
    let v = api.ok("/api/v1/collections/notes/documents", docs).await;
    assert_eq!(v["upserted"], 5);
    assert_eq!(v["embedded"], 5);

    // semantic search
    assert_eq!(
        ids(&api, "notes", json!({"text": "how do I block advertisements on my network?", "k": 1})).await,
        ["dns"]
    );
    let hits = api.ok("/api/v1/collections/notes/query", json!({"text": "renewing https certificates", "k": 5})).await;
    assert_eq!(hits[0]["id"], "tls");
    assert_eq!(hits[0]["metadata"]["year"], 2023);
    assert!(hits[0]["text"].as_str().unwrap().contains("Let's Encrypt"));
    let scores: Vec<f64> = hits.as_array().unwrap().iter().map(|h| h["score"].as_f64().unwrap()).collect();
    assert!(scores.windows(2).all(|w| w[0] >= w[1]) && scores[0] <= 1.0001, "{scores:?}");

    // filters: equality, ranges, in, and/or, booleans; a key nobody has matches nothing
    let q = |f: Value| json!({"text": "anything at home", "k": 10, "filter": f});
    let sorted = |mut v: Vec<String>| {
        v.sort();
        v
    };
    assert_eq!(ids(&api, "notes", q(json!({"topic": "tls"}))).await, ["tls"]);
    assert_eq!(sorted(ids(&api, "notes", q(json!({"year": {"$gte": 2023}}))).await), ["dns", "tls"]);
    assert_eq!(sorted(ids(&api, "notes", q(json!({"topic": {"$in": ["ops", "garden"]}}))).await), ["backup", "garden"]);
    assert_eq!(
        sorted(ids(&api, "notes", q(json!({"$or": [{"pinned": true}, {"$and": [{"year": {"$lt": 2022}}, {"topic": {"$ne": "garden"}}]}]}))).await),
        ["code", "dns"]
    );
    assert!(ids(&api, "notes", q(json!({"color": "red"}))).await.is_empty());
    for bad in [json!({"year": "2020"}), json!({"topic": {"$regex": "x"}}), json!([]), json!({"pinned": {"$gt": true}})]
    {
        expect_error(api.post("/api/v1/collections/notes/query", q(bad)).await, 422, "invalid_input").await;
    }
    // a metadata key changing type is refused and nothing is written
    let r = api
        .post("/api/v1/collections/notes/documents", json!([{"id": "x", "text": "x y z", "metadata": {"year": "old"}}]))
        .await;
    expect_error(r, 422, "invalid_input").await;

    // hybrid: an exact code that embeddings do not capture, found by BM25 and fused with RRF
    let hybrid = api.ok("/api/v1/collections/notes/query", json!({"text": "ZX-4471-QP", "k": 3, "hybrid": true})).await;
    assert_eq!(hybrid[0]["id"], "code", "{hybrid}");
    assert!(hybrid[0]["score"].as_f64().unwrap() > 0.0);
    expect_error(
        api.post("/api/v1/collections/notes/query", json!({"vector": vec![0.1; 384], "hybrid": true})).await,
        422,
        "invalid_input",
    )
    .await;

    // hybrid with a filter: only matching documents, even those the full-text leg found
    let hits =
        ids(&api, "notes", json!({"text": "ZX-4471-QP", "k": 5, "hybrid": true, "filter": {"topic": "dns"}})).await;
    assert_eq!(hits, ["dns"]);

    // overwrite by id: same count, new text wins
    api.ok("/api/v1/collections/notes/documents", json!({"documents": [{"id": "garden", "text": "Peppers like warm soil.", "metadata": {"topic": "garden", "year": 2025}}]})).await;
    let info = api.get("/api/v1/collections/notes").await;
    assert_eq!(info["rows"], 5, "{info}");
    let hits = api.ok("/api/v1/collections/notes/query", json!({"text": "peppers", "k": 1})).await;
    assert_eq!((hits[0]["id"].as_str(), hits[0]["metadata"]["year"].as_i64()), (Some("garden"), Some(2025)));

    // delete by ids and by filter
    let r = api.delete("/api/v1/collections/notes/documents", json!({"ids": ["backup"]})).await;
    assert_eq!(r.json::<Value>().await.unwrap()["deleted"], 1);
    let r = api.delete("/api/v1/collections/notes/documents", json!({"filter": {"year": {"$lte": 2020}}})).await;
    assert_eq!(r.json::<Value>().await.unwrap()["deleted"], 1);
    expect_error(api.delete("/api/v1/collections/notes/documents", json!({})).await, 422, "invalid_input").await;

    // your own vectors, in a collection of another dimension
    assert_eq!(api.post("/api/v1/collections", json!({"name": "points", "dimension": 3})).await.status(), 201);
    api.ok("/api/v1/collections/points/documents", json!([
        {"id": "x", "vector": [1.0, 0.0, 0.0]}, {"id": "y", "vector": [0.0, 1.0, 0.0]}, {"id": "xy", "vector": [1.0, 1.0, 0.0]}
    ])).await;
    let hits = api.ok("/api/v1/collections/points/query", json!({"vector": [1.0, 0.1, 0.0], "k": 3})).await;
    let order: Vec<&str> = hits.as_array().unwrap().iter().map(|h| h["id"].as_str().unwrap()).collect();
    assert_eq!(order, ["x", "xy", "y"]);
    assert!((hits[0]["score"].as_f64().unwrap() - 0.995).abs() < 0.01);
    let r = api.post("/api/v1/collections/points/documents", json!([{"id": "bad", "vector": [1.0, 2.0]}])).await;
    expect_error(r, 422, "invalid_input").await;
    let r = api.post("/api/v1/collections/points/documents", json!([{"id": "t", "text": "needs 384 dims"}])).await;
    expect_error(r, 422, "invalid_input").await;
    expect_error(api.post("/api/v1/collections/nope/query", json!({"vector": [1.0]})).await, 404, "not_found").await;

    // everything survives a restart
    inst.restart().await;
    let api = Api { token: api.token.clone(), ..Api::new_anon(&inst) };
    let list = api.get("/api/v1/collections").await;
    let names: Vec<&str> = list.as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(sorted(names.iter().map(|s| s.to_string()).collect()), ["notes", "points"]);
    let info = api.get("/api/v1/collections/notes").await;
    assert_eq!(info["rows"], 3);
    assert_eq!(info["metadata_keys"]["year"], "number");
    assert_eq!(ids(&api, "notes", json!({"text": "how do I block advertisements?", "k": 1})).await, ["dns"]);
    // upkeep (compaction, pruning) keeps the answers
    api.ok("/api/v1/collections/notes/optimize", json!({})).await;
    assert_eq!(ids(&api, "notes", json!({"text": "how do I block advertisements?", "k": 1})).await, ["dns"]);
    let r = api.c.delete(inst.url("/api/v1/collections/points")).bearer_auth(&api.token).send().await.unwrap();
    assert_eq!(r.status(), 204);
    expect_error(
        api.post("/api/v1/collections/points/query", json!({"vector": [1.0, 0.0, 0.0]})).await,
        404,
        "not_found",
    )
    .await;
}

impl Api {
    fn new_anon(inst: &Instance) -> Api {
        Api { c: reqwest::Client::new(), base: inst.base(), token: String::new() }
    }
}

/// Deterministic clustered vectors, unit length: 64 topics of 32 sub-topics each, points scattered around their
/// sub-topic — the local structure real embeddings have (near-paraphrases, topics). On structureless data (points
/// with isotropic noise as large as the topics themselves) the same index reaches recall@10 ≈ 0.85 only.
fn clustered(n: usize, dim: usize, seed: u64) -> Vec<Vec<f32>> {
    let mut s = seed;
    let mut rnd = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        (s >> 11) as f64 / (1u64 << 53) as f64
    };
    let mut gauss = move || {
        let (u, v) = (rnd().max(1e-12), rnd());
        ((-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()) as f32
    };
    let topics: Vec<Vec<f32>> = (0..64).map(|_| (0..dim).map(|_| gauss()).collect()).collect();
    let subs: Vec<Vec<f32>> =
        (0..64 * 32).map(|i| topics[i / 32].iter().map(|x| x + 0.5 * gauss()).collect()).collect();
    (0..n)
        .map(|i| {
            let c = &subs[(i * 7919) % subs.len()];
            let mut v: Vec<f32> = c.iter().map(|x| x + 0.2 * gauss()).collect();
            let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
            v.iter_mut().for_each(|x| *x /= norm);
            v
        })
        .collect()
}

/// Recall@10 of the collection's default query path against the exact neighbours, and its mean latency (printed).
/// Recall@10 of hearth's answers against `exact`; `label` "exact search" asks hearth for its exact (flat) search.
async fn recall_at_10(api: &Api, queries: &[Vec<f32>], exact: &[Vec<String>], label: &str) -> f64 {
    let (mut found, mut total) = (0usize, 0usize);
    let started = Instant::now();
    for (q, exact) in queries.iter().zip(exact) {
        let flat = label.starts_with("exact search");
        let ann = ids(api, "big", json!({"vector": q, "k": 10, "exact": flat})).await;
        total += exact.len();
        found += ann.iter().filter(|id| exact.contains(id)).count();
    }
    let recall = found as f64 / total as f64;
    eprintln!(
        "{label}: recall@10 = {recall:.3}; mean latency {:.1} ms (debug build, over HTTP)",
        started.elapsed().as_secs_f64() * 1000.0 / queries.len() as f64
    );
    recall
}

#[tokio::test]
async fn ann_index_recall_against_exact_search_on_50k_vectors() {
    let inst = Instance::start_with(
        |_| "request_timeout = \"600s\"\n".into(),
        "[memory]\nenabled = false\nindex_threshold = 20000\nram_index = false\n",
    )
    .await;
    let api = Api::new(&inst).await;
    let dim = 128;
    api.ok("/api/v1/collections", json!({"name": "big", "dimension": dim})).await;
    // the last 100 points are the queries: near the data, as real questions are, but not in it
    let mut data = clustered(50_100, dim, 7);
    let queries = data.split_off(50_000);
    let started = Instant::now();
    for (b, chunk) in data.chunks(1000).enumerate() {
        let docs: Vec<Value> = chunk
            .iter()
            .enumerate()
            .map(|(i, v)| json!({"id": format!("v{}", b * 1000 + i), "vector": v, "metadata": {"shard": b % 4}}))
            .collect();
        api.ok("/api/v1/collections/big/documents", Value::Array(docs)).await;
    }
    eprintln!("50k vectors upserted in {:.1}s", started.elapsed().as_secs_f64());
    // the reference: the true 10 nearest by cosine (the vectors are unit length: the dot product), computed here by
    // brute force, not taken from hearth; hearth's own exact search must agree with it
    let exact: Vec<Vec<String>> = queries
        .iter()
        .map(|q| {
            let mut scored: Vec<(f32, usize)> =
                data.iter().enumerate().map(|(i, v)| (v.iter().zip(q).map(|(a, b)| a * b).sum(), i)).collect();
            scored.select_nth_unstable_by(10, |a, b| b.0.total_cmp(&a.0));
            scored[..10].iter().map(|(_, i)| format!("v{i}")).collect()
        })
        .collect();
    let flat = recall_at_10(&api, &queries, &exact, "exact search (no index)").await;
    assert!(flat >= 0.995, "hearth's exact search finds the true nearest: recall@10 {flat}");
    // every memory.ann_index type in turn: the optimize call builds the configured one, replacing the last
    for (kind, shown) in [("ivf_pq", "IvfPq"), ("ivf_hnsw_sq", "IvfHnswSq"), ("ivf_sq", "IvfSq")] {
        let r = api.patch("/api/v1/config", json!({"memory": {"ann_index": kind}})).await;
        assert!(r.status().is_success(), "{kind}: {}", r.text().await.unwrap());
        let started = Instant::now();
        let info = api.ok("/api/v1/collections/big/optimize", json!({})).await;
        eprintln!("{kind} index built in {:.1}s: {info}", started.elapsed().as_secs_f64());
        assert_eq!(info["vector_index"], shown, "{info}");
        assert_eq!(info["rows"], 50_000);
        assert_eq!(info["unindexed_rows"], 0, "{info}");

        let recall = recall_at_10(&api, &queries, &exact, kind).await;
        assert!(recall >= 0.95, "{kind}: recall@10 {recall}");
        // the index also serves filtered queries
        let hits = ids(&api, "big", json!({"vector": queries[0], "k": 5, "filter": {"shard": 1}})).await;
        assert_eq!(hits.len(), 5);
    }

    // the in-memory index: built by the upkeep round, then it answers plain vector queries
    let r = api.patch("/api/v1/config", json!({"memory": {"ram_index": true}})).await;
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    let started = Instant::now();
    let info = api.ok("/api/v1/collections/big/optimize", json!({})).await;
    eprintln!("in-memory index built in {:.1}s: {info}", started.elapsed().as_secs_f64());
    assert_eq!(info["ram_index_rows"], 50_000, "{info}");
    let recall = recall_at_10(&api, &queries, &exact, "in-memory index").await;
    assert!(recall >= 0.95, "in-memory index: recall@10 {recall}");

    // every write reaches it: an insert, an overwrite, a delete by filter and one by id
    let top = |q: &Vec<f32>| json!({"vector": q, "k": 1});
    let hits = |v: Value| v.as_array().unwrap().clone();
    api.ok("/api/v1/collections/big/documents", json!([{"id": "fresh", "vector": queries[0], "text": "new"}])).await;
    let h = hits(api.ok("/api/v1/collections/big/query", top(&queries[0])).await);
    assert_eq!((h[0]["id"].as_str(), h[0]["text"].as_str()), (Some("fresh"), Some("new")), "{h:?}");
    assert!(h[0]["score"].as_f64().unwrap() > 0.99, "{h:?}");
    let v0 = json!([{"id": "v0", "vector": queries[1], "metadata": {"shard": 9}}]);
    api.ok("/api/v1/collections/big/documents", v0).await;
    let h = hits(api.ok("/api/v1/collections/big/query", top(&queries[1])).await);
    assert_eq!((h[0]["id"].as_str(), &h[0]["metadata"]), (Some("v0"), &json!({"shard": 9})), "{h:?}");
    let gone = api.delete("/api/v1/collections/big/documents", json!({"filter": {"shard": 9}})).await;
    assert!(gone.status().is_success(), "{}", gone.text().await.unwrap());
    assert_ne!(ids(&api, "big", top(&queries[1])).await, vec!["v0".to_string()]);
    let gone = api.delete("/api/v1/collections/big/documents", json!({"ids": ["fresh"]})).await;
    assert!(gone.status().is_success(), "{}", gone.text().await.unwrap());
    assert_ne!(ids(&api, "big", top(&queries[0])).await, vec!["fresh".to_string()]);
    let info = api.get("/api/v1/collections/big").await;
    assert_eq!((&info["rows"], &info["ram_index_rows"]), (&json!(49_999), &json!(49_999)), "{info}");

    // switched off, the next upkeep round drops it
    let r = api.patch("/api/v1/config", json!({"memory": {"ram_index": false}})).await;
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    let info = api.ok("/api/v1/collections/big/optimize", json!({})).await;
    assert_eq!(info["ram_index_rows"], 0, "{info}");
}

#[tokio::test]
async fn concurrent_writers_and_readers() {
    let inst = Instance::start("[memory]\nenabled = false\n").await;
    let api = std::sync::Arc::new(Api::new(&inst).await);
    api.ok("/api/v1/collections", json!({"name": "shared", "dimension": 8})).await;
    let mut tasks = vec![];
    for w in 0..4 {
        let api = api.clone();
        tasks.push(tokio::spawn(async move {
            for round in 0..10 {
                let docs: Vec<Value> = (0..25)
                    .map(|i| {
                        let v: Vec<f32> = (0..8).map(|d| ((w * 31 + round * 7 + i + d) % 13) as f32 + 1.0).collect();
                        json!({"id": format!("w{w}-{round}-{i}"), "vector": v, "metadata": {"writer": w, format!("k{w}"): true}})
                    })
                    .collect();
                api.ok("/api/v1/collections/shared/documents", Value::Array(docs)).await;
            }
        }));
    }
    for _ in 0..3 {
        let api = api.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..20 {
                let v = api.ok("/api/v1/collections/shared/query", json!({"vector": vec![1.0; 8], "k": 5})).await;
                assert!(v.as_array().unwrap().len() <= 5);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let info = api.get("/api/v1/collections/shared").await;
    assert_eq!(info["rows"], 4 * 10 * 25, "{info}");
    // every writer's own metadata column arrived despite the races
    for w in 0..4 {
        assert_eq!(info["metadata_keys"][format!("k{w}")], "bool", "{info}");
        let hits =
            ids(&api, "shared", json!({"vector": vec![1.0; 8], "k": 1000, "filter": {format!("k{w}"): true}})).await;
        assert_eq!(hits.len(), 250);
    }
}

/// `n` texts no cache has seen, each `tag`, its index and `words` words.
fn fresh_texts(tag: &str, n: usize, words: usize) -> Vec<String> {
    const W: [&str; 16] = [
        "the", "quick", "brown", "fox", "jumps", "over", "a", "lazy", "dog", "while", "seven", "wizards", "quietly",
        "hex", "jolly", "zebras",
    ];
    (0..n)
        .map(|i| {
            let mut t = format!("{tag} {i}");
            for k in 0..words {
                t.push(' ');
                t.push_str(W[(k * 7 + i) % W.len()]);
            }
            t
        })
        .collect()
}

/// `memory.queue`: with one model thread busy and a queue of 1, a burst of concurrent requests is partly refused at
/// once with 429 `overloaded` and `Retry-After: 1`; the admitted ones are answered, and so is the next request.
#[tokio::test]
async fn a_full_embedding_queue_answers_429_and_the_service_recovers() {
    let inst = Instance::start("[memory]\nthreads = 1\nqueue = 1\n").await;
    let api = std::sync::Arc::new(Api::new(&inst).await);
    let mut statuses = vec![];
    // bursts of 12 requests of 4 inputs each (a second of work per request on a debug build); 32 inputs only if the
    // model drained the first burst as fast as it arrived
    for (burst, inputs) in [4usize, 32].into_iter().enumerate() {
        let mut set = tokio::task::JoinSet::new();
        for i in 0..12 {
            let api = api.clone();
            let input = fresh_texts(&format!("burst {burst} request {i}"), inputs, 40);
            set.spawn(async move { api.post("/v1/embeddings", json!({"input": input})).await });
        }
        while let Some(r) = set.join_next().await {
            let r = r.unwrap();
            let status = r.status().as_u16();
            if status == 429 {
                assert_eq!(r.headers().get("retry-after").map(|v| v.to_str().unwrap()), Some("1"));
                expect_error(r, 429, "overloaded").await;
            } else {
                assert_eq!(status, 200, "{}", r.text().await.unwrap());
            }
            statuses.push(status);
        }
        if statuses.contains(&429) {
            break;
        }
    }
    eprintln!("statuses of the bursts: {statuses:?}");
    assert!(statuses.contains(&429), "no request was refused: {statuses:?}");
    assert!(statuses.contains(&200), "admitted requests are answered: {statuses:?}");
    let v = api.ok("/v1/embeddings", json!({"input": "after the burst"})).await;
    assert_eq!(v["data"][0]["embedding"].as_array().unwrap().len(), 384);
}

/// `memory.request_timeout`: a request that waits for the model longer than that gets 504 `timeout` (not the API's
/// 408), and the service answers again once the model is through with the work it holds.
#[tokio::test]
async fn an_embedding_that_outlasts_the_request_timeout_gets_504_and_the_service_recovers() {
    let inst = Instance::start("[memory]\nthreads = 1\nrequest_timeout = \"1s\"\n").await;
    let api = Api::new(&inst).await;
    // requests of growing cost until one takes the one model thread longer than a second (a few hundred tokens on a
    // debug build, thousands on a release build)
    let steps = [(1, 40), (2, 40), (4, 40), (8, 40), (16, 40), (32, 40), (32, 120), (32, 250)];
    let mut answered = vec![];
    let mut timed_out = false;
    for (step, (inputs, words)) in steps.into_iter().enumerate() {
        let r = api.post("/v1/embeddings", json!({"input": fresh_texts(&format!("step {step}"), inputs, words)})).await;
        if r.status() == 504 {
            expect_error(r, 504, "timeout").await;
            eprintln!("504 for {inputs} inputs of {words} words, after 200 for {answered:?}");
            timed_out = true;
            break;
        }
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
        answered.push((inputs, words));
    }
    assert!(timed_out, "no request outlasted memory.request_timeout = 1s: {answered:?}");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let r = api.post("/v1/embeddings", json!({"input": "still here"})).await;
        match r.status().as_u16() {
            200 => break,
            // the model is still busy with the abandoned work
            504 => assert!(Instant::now() < deadline, "no answer after the timeout"),
            s => panic!("{s}: {}", r.text().await.unwrap()),
        }
    }
    let st = api.get("/api/v1/memory/status").await;
    assert_eq!(st["model"]["state"], "ready", "{st}");
}
