//! Memory routes: embeddings in the OpenAI shape (`POST /v1/embeddings`, `GET /v1/models`) and the TEI shape
//! (`POST /api/v1/embed`), collections of documents (create, list, drop, upsert, delete, query with filters and
//! hybrid search), and the model's status for the UI. All behind hearth auth (session or `Bearer` API token).

use std::sync::atomic::Ordering;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::auth::{AdminAuth, MemoryAuth};
use super::error::{ApiError, ApiJson, ErrorBody};
use super::{AppState, MemoryApi};
use crate::memory::store::{CollectionInfo, Doc, Hit, IndexPolicy, Query};
use crate::memory::{Embedding, MemoryError, ModelState, model};

pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(openai_embeddings))
        .routes(routes!(openai_models))
        .routes(routes!(tei_embed))
        .routes(routes!(memory_status))
        .routes(routes!(list_collections, create_collection))
        .routes(routes!(get_collection, drop_collection))
        .routes(routes!(upsert_documents, delete_documents))
        .routes(routes!(query_collection))
        .routes(routes!(optimize_collection))
}

impl From<MemoryError> for ApiError {
    fn from(e: MemoryError) -> Self {
        use MemoryError as E;
        match &e {
            E::NotReady(_) => ApiError {
                retry_after: Some(2),
                ..ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "model_not_ready", e.to_string())
            },
            E::Overloaded => ApiError {
                retry_after: Some(1),
                ..ApiError::new(StatusCode::TOO_MANY_REQUESTS, "overloaded", e.to_string())
            },
            E::Timeout => ApiError::new(StatusCode::GATEWAY_TIMEOUT, "timeout", e.to_string()),
            E::TooLong { .. } => ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "input_too_long", e.to_string()),
            E::Invalid(_) => ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_input", e.to_string()),
            E::NoCollection(_) => ApiError::not_found(e.to_string()),
            E::CollectionExists(_) => ApiError::conflict(e.to_string()),
            E::Model(_) | E::Store(_) => ApiError::internal(e),
        }
    }
}

fn invalid(msg: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_input", msg)
}

/// A string or a list of strings (OpenAI `input`, TEI `inputs`).
fn texts_of(v: &Value, field: &str) -> Result<Vec<String>, ApiError> {
    match v {
        Value::String(s) => Ok(vec![s.clone()]),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, x)| match x {
                Value::String(s) => Ok(s.clone()),
                Value::Array(_) | Value::Number(_) => {
                    Err(invalid(format!("{field}[{i}]: token arrays are not supported; send text")))
                }
                _ => Err(invalid(format!("{field}[{i}] must be a string"))),
            })
            .collect(),
        Value::Null => Err(invalid(format!("{field} is required"))),
        _ => Err(invalid(format!("{field} must be a string or a list of strings"))),
    }
}

async fn embed_checked(s: &MemoryApi, texts: &[String], strict: bool) -> Result<Vec<Embedding>, ApiError> {
    s.memory.check_inputs(texts)?;
    Ok(s.memory.embed(texts, strict).await?)
}

fn normalized(e: &Embedding) -> Vec<f32> {
    let mut v = e.vector.to_vec();
    model::normalize(&mut v);
    v
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct OpenAiRequest {
    /// A string or a list of up to 32 strings.
    #[schema(value_type = Object)]
    #[serde(default)]
    input: Value,
    /// The model's name (`all-MiniLM-L6-v2`); other names are refused.
    #[serde(default)]
    model: Option<String>,
    /// `float` (default) or `base64` (little-endian f32).
    #[serde(default)]
    encoding_format: Option<String>,
    /// Must equal the model's dimension if given.
    #[serde(default)]
    dimensions: Option<usize>,
    #[serde(default)]
    user: Option<String>,
}

fn model_matches(asked: &str, loaded: &str) -> bool {
    let asked = asked.strip_prefix("sentence-transformers/").unwrap_or(asked);
    asked.eq_ignore_ascii_case(loaded)
}

/// OpenAI-compatible embeddings (normalised vectors).
#[utoipa::path(post, path = "/v1/embeddings", tag = "memory", request_body = OpenAiRequest,
    security(("session" = []), ("token" = ["memory"])),
    responses((status = 200, body = Object), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 422, body = ErrorBody), (status = 429, body = ErrorBody),
        (status = 503, body = ErrorBody), (status = 504, body = ErrorBody)))]
async fn openai_embeddings(
    _auth: MemoryAuth,
    State(s): State<MemoryApi>,
    ApiJson(req): ApiJson<OpenAiRequest>,
) -> Result<Json<Value>, ApiError> {
    let _ = &req.user;
    let texts = texts_of(&req.input, "input")?;
    let base64 = match req.encoding_format.as_deref() {
        None | Some("float") => false,
        Some("base64") => true,
        Some(other) => return Err(invalid(format!("encoding_format must be float or base64, got {other:?}"))),
    };
    let engine = s.memory.engine();
    if let (Some(asked), Some(engine)) = (&req.model, &engine)
        && !model_matches(asked, &engine.model)
    {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "model_not_found",
            format!("the model {asked:?} is not served here; use {:?}", engine.model),
        ));
    }
    if let (Some(d), Some(engine)) = (req.dimensions, &engine)
        && d != engine.dim
    {
        return Err(invalid(format!("dimensions: this model gives {} dimensions, not {d}", engine.dim)));
    }
    let out = embed_checked(&s, &texts, false).await?;
    let tokens: u32 = out.iter().map(|e| e.tokens).sum();
    let data: Vec<Value> = out
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let v = normalized(e);
            let embedding = if base64 {
                let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
                json!(data_encoding::BASE64.encode(&bytes))
            } else {
                json!(v)
            };
            json!({"object": "embedding", "index": i, "embedding": embedding})
        })
        .collect();
    let model = engine.map(|e| e.model.clone()).unwrap_or_default();
    Ok(Json(json!({
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    })))
}

/// The models served (OpenAI shape).
#[utoipa::path(get, path = "/v1/models", tag = "memory", security(("session" = []), ("token" = ["memory"])),
    responses((status = 200, body = Object), (status = 401, body = ErrorBody)))]
async fn openai_models(_auth: MemoryAuth, State(s): State<MemoryApi>) -> Json<Value> {
    let data: Vec<Value> = s
        .memory
        .engine()
        .map(|e| json!({"id": e.model, "object": "model", "created": 0, "owned_by": "hearth"}))
        .into_iter()
        .collect();
    Json(json!({"object": "list", "data": data}))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct TeiRequest {
    #[schema(value_type = Object)]
    #[serde(default)]
    inputs: Value,
    /// L2-normalise (default true).
    #[serde(default = "yes")]
    normalize: bool,
    /// Cut inputs longer than the model's token limit instead of refusing them (default false, as TEI).
    #[serde(default)]
    truncate: bool,
    #[serde(default)]
    truncation_direction: Option<String>,
    #[serde(default)]
    prompt_name: Option<String>,
}

fn yes() -> bool {
    true
}

/// Text-embeddings-inference-compatible embeddings: a list of vectors.
#[utoipa::path(post, path = "/api/v1/embed", tag = "memory", request_body = TeiRequest,
    security(("session" = []), ("token" = ["memory"])),
    responses((status = 200, body = Vec<Vec<f32>>), (status = 401, body = ErrorBody), (status = 413, body = ErrorBody),
        (status = 422, body = ErrorBody), (status = 429, body = ErrorBody), (status = 503, body = ErrorBody),
        (status = 504, body = ErrorBody)))]
async fn tei_embed(
    _auth: MemoryAuth,
    State(s): State<MemoryApi>,
    ApiJson(req): ApiJson<TeiRequest>,
) -> Result<Json<Vec<Vec<f32>>>, ApiError> {
    if req.truncation_direction.as_deref().is_some_and(|d| !d.eq_ignore_ascii_case("right")) {
        return Err(invalid("truncation_direction: only \"right\" is supported"));
    }
    if req.prompt_name.is_some() {
        return Err(invalid("prompt_name: this model has no prompts"));
    }
    let texts = texts_of(&req.inputs, "inputs")?;
    let out = embed_checked(&s, &texts, !req.truncate).await?;
    Ok(Json(out.iter().map(|e| if req.normalize { normalized(e) } else { e.vector.to_vec() }).collect()))
}

#[derive(Serialize, ToSchema)]
pub(crate) struct MemoryStatus {
    model: ModelState,
    requests: u64,
    inputs: u64,
    tokens: u64,
    batches: u64,
    /// Tokens per second of model time since start.
    tokens_per_second: f64,
    cache_entries: usize,
    cache_capacity: usize,
    cache_hit_rate: f64,
}

/// Model state, throughput and cache.
#[utoipa::path(get, path = "/api/v1/memory/status", tag = "memory", security(("session" = []), ("token" = [])),
    responses((status = 200, body = MemoryStatus), (status = 401, body = ErrorBody)))]
async fn memory_status(_auth: AdminAuth, State(s): State<MemoryApi>) -> Json<MemoryStatus> {
    let (hit_rate, entries, capacity) = s.memory.cache_stats();
    let (mut requests, mut inputs, mut tokens, mut batches, mut busy) = (0, 0, 0, 0, 0);
    if let Some(e) = s.memory.engine() {
        requests = e.stats.requests.load(Ordering::Relaxed);
        inputs = e.stats.inputs.load(Ordering::Relaxed);
        tokens = e.stats.tokens.load(Ordering::Relaxed);
        batches = e.stats.batches.load(Ordering::Relaxed);
        busy = e.stats.busy_micros.load(Ordering::Relaxed);
    }
    Json(MemoryStatus {
        model: s.memory.state(),
        requests,
        inputs,
        tokens,
        batches,
        tokens_per_second: if busy == 0 { 0.0 } else { tokens as f64 / (busy as f64 / 1e6) },
        cache_entries: entries,
        cache_capacity: capacity,
        cache_hit_rate: hit_rate,
    })
}

/// Collections with their size and index state.
#[utoipa::path(get, path = "/api/v1/collections", tag = "memory", security(("session" = []), ("token" = ["memory"])),
    responses((status = 200, body = [CollectionInfo]), (status = 401, body = ErrorBody)))]
async fn list_collections(
    _auth: MemoryAuth,
    State(s): State<MemoryApi>,
) -> Result<Json<Vec<CollectionInfo>>, ApiError> {
    let mut out = vec![];
    for n in s.memory.store.names().await? {
        out.push(s.memory.store.info(&n).await?);
    }
    Ok(Json(out))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewCollection {
    name: String,
    /// Vector dimension; default: the embedding model's.
    #[serde(default)]
    dimension: Option<usize>,
}

/// Create a collection.
#[utoipa::path(post, path = "/api/v1/collections", tag = "memory", request_body = NewCollection,
    security(("session" = []), ("token" = ["memory"])),
    responses((status = 201, body = CollectionInfo), (status = 401, body = ErrorBody), (status = 409, body = ErrorBody),
        (status = 422, body = ErrorBody),
        (status = 503, description = "`model_not_ready`: no `dimension` given while the model loads", body = ErrorBody)))]
async fn create_collection(
    auth: MemoryAuth,
    State(s): State<MemoryApi>,
    ApiJson(req): ApiJson<NewCollection>,
) -> Result<(StatusCode, Json<CollectionInfo>), ApiError> {
    let engine = s.memory.engine();
    let (dim, model) = match (req.dimension, &engine) {
        (Some(d), Some(e)) if d == e.dim => (d, Some(e.model.clone())),
        (Some(d), _) => (d, None),
        (None, Some(e)) => (e.dim, Some(e.model.clone())),
        (None, None) => return Err(MemoryError::NotReady("give a dimension, or wait for the model".into()).into()),
    };
    let info = s.memory.store.create(&req.name, dim, model.as_deref()).await?;
    tracing::info!(by = auth.principal, collection = req.name, dim, "collection created");
    Ok((StatusCode::CREATED, Json(info)))
}

/// One collection's statistics.
#[utoipa::path(get, path = "/api/v1/collections/{name}", tag = "memory", params(("name" = String, Path)),
    security(("session" = []), ("token" = ["memory"])),
    responses((status = 200, body = CollectionInfo), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn get_collection(
    _auth: MemoryAuth,
    State(s): State<MemoryApi>,
    Path(name): Path<String>,
) -> Result<Json<CollectionInfo>, ApiError> {
    Ok(Json(s.memory.store.info(&name).await?))
}

/// Delete a collection and its documents.
#[utoipa::path(delete, path = "/api/v1/collections/{name}", tag = "memory", params(("name" = String, Path)),
    security(("session" = []), ("token" = ["memory"])),
    responses((status = 204), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn drop_collection(
    auth: MemoryAuth,
    State(s): State<MemoryApi>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    s.memory.store.drop_collection(&name).await?;
    tracing::info!(by = auth.principal, collection = name, "collection deleted");
    Ok(StatusCode::NO_CONTENT)
}

/// Upkeep now: build the ANN index if the collection is past `memory.index_threshold` rows, compact, refresh
/// indexes, prune old versions.
#[utoipa::path(post, path = "/api/v1/collections/{name}/optimize", tag = "memory", params(("name" = String, Path)),
    security(("session" = []), ("token" = ["memory"])),
    responses((status = 200, body = CollectionInfo), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn optimize_collection(
    _auth: MemoryAuth,
    State(s): State<MemoryApi>,
    Path(name): Path<String>,
) -> Result<Json<CollectionInfo>, ApiError> {
    let policy = IndexPolicy::of(&s.config.current().memory);
    // the round runs to its end even when this request times out or the client leaves (Store::maintain)
    s.memory.store.maintain(&name, &policy, true).await?;
    Ok(Json(s.memory.store.info(&name).await?))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct DocIn {
    id: String,
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    #[schema(value_type = Object)]
    metadata: Value,
    /// Your own vector; without it the text is embedded.
    #[serde(default)]
    vector: Option<Vec<f32>>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct Upserted {
    upserted: usize,
    embedded: usize,
}

const MAX_DOCS: usize = 1000;

/// Insert or replace documents by id, embedding their text (or storing the `vector` given).
#[utoipa::path(post, path = "/api/v1/collections/{name}/documents", tag = "memory", params(("name" = String, Path)),
    request_body = Vec<DocIn>, security(("session" = []), ("token" = ["memory"])),
    responses((status = 200, body = Upserted), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 422, body = ErrorBody), (status = 429, body = ErrorBody), (status = 503, body = ErrorBody),
        (status = 504, body = ErrorBody)))]
async fn upsert_documents(
    _auth: MemoryAuth,
    State(s): State<MemoryApi>,
    Path(name): Path<String>,
    ApiJson(mut req): ApiJson<Value>,
) -> Result<Json<Upserted>, ApiError> {
    // a bare list, or {"documents": [...]}
    if let Some(d) = req.get_mut("documents") {
        req = d.take();
    }
    let docs: Vec<DocIn> = serde_path_to_error::deserialize(req)
        .map_err(|e| invalid(format!("documents{}: {}", e.path().to_string().trim_start_matches('.'), e.inner())))?;
    if docs.is_empty() || docs.len() > MAX_DOCS {
        return Err(invalid(format!("send 1 to {MAX_DOCS} documents")));
    }
    let (dim, _) = s.memory.store.dimension(&name).await?;
    let max_chars = s.config.current().memory.max_input_chars;
    let mut to_embed = vec![];
    for (i, d) in docs.iter().enumerate() {
        if d.id.is_empty() || d.id.len() > 256 {
            return Err(invalid(format!("document {i}: id must be 1 to 256 bytes")));
        }
        if !(d.metadata.is_object() || d.metadata.is_null()) {
            return Err(invalid(format!("document {i}: metadata must be an object")));
        }
        match (&d.text, &d.vector) {
            (None, None) => return Err(invalid(format!("document {i}: give text or a vector"))),
            (Some(t), _) if t.chars().count() > max_chars => {
                return Err(invalid(format!("document {i}: text is longer than {max_chars} characters")));
            }
            (Some(t), None) if t.trim().is_empty() => return Err(invalid(format!("document {i}: text is empty"))),
            (Some(_), None) => to_embed.push(i),
            (_, Some(v)) if v.len() != dim => {
                return Err(invalid(format!("document {i}: vector has {} dimensions, the collection {dim}", v.len())));
            }
            _ => {}
        }
    }
    let mut vectors: Vec<Option<Vec<f32>>> = docs.iter().map(|d| d.vector.clone()).collect();
    if !to_embed.is_empty() {
        let engine = s.memory.engine().ok_or_else(|| MemoryError::NotReady("the model is loading".into()))?;
        if engine.dim != dim {
            return Err(invalid(format!(
                "the collection holds {dim}-dimensional vectors, the model makes {}: send vectors",
                engine.dim
            )));
        }
        let chunk = s.config.current().memory.max_inputs;
        for ids in to_embed.chunks(chunk) {
            let texts: Vec<String> = ids.iter().map(|&i| docs[i].text.clone().unwrap_or_default()).collect();
            let out = s.memory.embed(&texts, false).await?;
            for (&i, e) in ids.iter().zip(&out) {
                vectors[i] = Some(normalized(e));
            }
        }
    }
    let docs: Vec<Doc> = docs
        .into_iter()
        .zip(vectors)
        .map(|(d, v)| Doc { id: d.id, text: d.text, vector: v.unwrap_or_default(), metadata: d.metadata })
        .collect();
    let n = s.memory.store.upsert(&name, docs).await?;
    Ok(Json(Upserted { upserted: n, embedded: to_embed.len() }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct DeleteDocs {
    #[serde(default)]
    ids: Vec<String>,
    #[serde(default)]
    #[schema(value_type = Object)]
    filter: Option<Value>,
}

/// Delete documents by ids and/or a metadata filter.
#[utoipa::path(delete, path = "/api/v1/collections/{name}/documents", tag = "memory", params(("name" = String, Path)),
    request_body = DeleteDocs, security(("session" = []), ("token" = ["memory"])),
    responses((status = 200, body = Object), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 422, body = ErrorBody)))]
async fn delete_documents(
    _auth: MemoryAuth,
    State(s): State<MemoryApi>,
    Path(name): Path<String>,
    ApiJson(req): ApiJson<DeleteDocs>,
) -> Result<Json<Value>, ApiError> {
    if req.ids.len() > 10_000 {
        return Err(invalid("at most 10000 ids at once"));
    }
    let n = s.memory.store.delete(&name, &req.ids, req.filter.as_ref()).await?;
    Ok(Json(json!({"deleted": n})))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct QueryIn {
    /// Question text (embedded; with `hybrid`, also the full-text terms).
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    vector: Option<Vec<f32>>,
    /// Results (1 to 1000, default 10).
    #[serde(default = "ten")]
    k: usize,
    #[serde(default)]
    #[schema(value_type = Object)]
    filter: Option<Value>,
    /// Full-text (BM25) and vector search fused with reciprocal-rank fusion.
    #[serde(default)]
    hybrid: bool,
    /// Exact search even when the collection has an ANN index.
    #[serde(default)]
    exact: bool,
}

fn ten() -> usize {
    10
}

/// Nearest documents by cosine similarity, optionally filtered, optionally hybrid.
#[utoipa::path(post, path = "/api/v1/collections/{name}/query", tag = "memory", params(("name" = String, Path)),
    request_body = QueryIn, security(("session" = []), ("token" = ["memory"])),
    responses((status = 200, body = [Hit]), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 422, body = ErrorBody), (status = 429, body = ErrorBody), (status = 503, body = ErrorBody),
        (status = 504, body = ErrorBody)))]
async fn query_collection(
    _auth: MemoryAuth,
    State(s): State<MemoryApi>,
    Path(name): Path<String>,
    ApiJson(req): ApiJson<QueryIn>,
) -> Result<Json<Vec<Hit>>, ApiError> {
    if !(1..=1000).contains(&req.k) {
        return Err(invalid("k must be between 1 and 1000"));
    }
    if req.hybrid && req.text.as_deref().is_none_or(|t| t.trim().is_empty()) {
        return Err(invalid("hybrid search needs text"));
    }
    let vector = match (req.vector, &req.text) {
        (Some(v), _) => v,
        (None, Some(t)) => {
            let texts = vec![t.clone()];
            s.memory.check_inputs(&texts)?;
            let out = s.memory.embed(&texts, false).await?;
            normalized(&out[0])
        }
        (None, None) => return Err(invalid("give text or a vector")),
    };
    let cfg = s.config.current();
    let q = Query {
        vector,
        text: req.text,
        k: req.k,
        filter: req.filter,
        hybrid: req.hybrid,
        exact: req.exact,
        nprobes: cfg.memory.ann_nprobes,
        refine_factor: cfg.memory.ann_refine_factor,
        ef: cfg.memory.ann_ef,
        ram_probes: cfg.memory.ram_index.then_some(cfg.memory.ram_index_probes),
    };
    Ok(Json(s.memory.store.query(&name, q).await?))
}
