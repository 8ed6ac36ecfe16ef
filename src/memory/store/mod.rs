//! The vector store: one lancedb table per collection under `<data_dir>/memory`, driven from its own small tokio
//! runtime so that scans, index builds and compaction never occupy the workers that answer DNS.
//!
//! Table layout (schema version 1, recorded in the table's schema metadata with the embedding model):
//! `id` (utf8), `text` (utf8), `vector` (fixed-size list of f32), `metadata` (the JSON object as given) and one
//! nullable typed column `m_<key>` per filterable top-level metadata key, added the first time the key appears.
//!
//! Invariants: writes to one collection are serialised (schema changes and upserts must not race); upserts are
//! `merge_insert` on `id`; a collection past `index_threshold` rows gets an ANN index, and the periodic
//! [`Store::maintain`] compacts, refreshes indexes and prunes old versions so tables do not grow without bound.
//! With `memory.ram_index`, an indexed collection also has a [`RamIndex`]: filled by a scan (writes meanwhile are
//! journaled and replayed before the swap) and then kept equal to the table by every write (applied after lance
//! commits it, under the same lock), so a query it answers sees exactly what a lance query would.
//!
//! This file holds the [`Store`] handle and its CRUD (open, create, drop, info, upsert, delete, query); beside it:
//! - `arrow`: the schema and record-batch encode/decode (pure);
//! - `upkeep`: [`IndexPolicy`], ANN index builds, compaction and pruning ([`Store::maintain`], [`Store::maintain_all`]);
//! - `ram_sync`: keeping the in-memory index equal to the table (write application, journal, fill and swap).

mod arrow;
mod ram_sync;
mod upkeep;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use arrow_array::{RecordBatch, RecordBatchIterator, RecordBatchReader};
use arrow_schema::{Field, Schema};
use futures_util::TryStreamExt;
use lancedb::DistanceType;
use lancedb::index::Index;
use lancedb::index::scalar::{FtsIndexBuilder, FullTextSearchQuery};
use lancedb::query::{ExecutableQuery, QueryBase, Select};
use lancedb::table::NewColumnTransform;
use serde::Serialize;
use serde_json::Value;

use super::MemoryError;
use super::filter::{self, Kind};
use super::ram_index::RamIndex;
use arrow::{describe, hit, hits_of, kind_type, new_schema, strings, to_batch};
use ram_sync::Journaled;

pub(crate) use upkeep::IndexPolicy;

const VECTOR_INDEX: &str = "vector_idx";
const TEXT_INDEX: &str = "text_idx";

/// A document to upsert (its vector already computed).
#[derive(Debug, Clone)]
pub(crate) struct Doc {
    pub id: String,
    pub text: Option<String>,
    pub vector: Vec<f32>,
    pub metadata: Value,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub(crate) struct Hit {
    pub id: String,
    /// Cosine similarity for vector search; the reciprocal-rank-fusion score for hybrid search.
    pub score: f32,
    pub text: Option<String>,
    #[schema(value_type = Object)]
    pub metadata: Value,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub(crate) struct CollectionInfo {
    pub name: String,
    pub dimension: usize,
    pub model: Option<String>,
    pub rows: usize,
    pub bytes: usize,
    pub fragments: usize,
    pub version: u64,
    /// "none" (exact search), "building", or the ANN index type.
    pub vector_index: String,
    pub indexed_rows: usize,
    pub unindexed_rows: usize,
    /// Rows in the in-memory index (0: none) and the memory it holds.
    pub ram_index_rows: usize,
    pub ram_index_bytes: usize,
    pub text_index: bool,
    /// Filterable metadata keys and their kinds.
    #[schema(value_type = Object)]
    pub metadata_keys: BTreeMap<String, Kind>,
}

pub(crate) struct Query {
    pub vector: Vec<f32>,
    /// Terms for the full-text leg of a hybrid query.
    pub text: Option<String>,
    pub k: usize,
    pub filter: Option<Value>,
    pub hybrid: bool,
    /// Ignore the ANN index (exact search).
    pub exact: bool,
    /// ANN effort: partitions probed, and candidates re-ranked exactly as a multiple of `k` (0: none).
    pub nprobes: usize,
    pub refine_factor: u32,
    /// HNSW search breadth per partition (HNSW indexes only).
    pub ef: usize,
    /// Lists the in-memory index scans, when the collection has one; `None`: never use it.
    pub ram_probes: Option<usize>,
}

struct Collection {
    table: lancedb::Table,
    dim: usize,
    model: Option<String>,
    kinds: std::sync::RwLock<BTreeMap<String, Kind>>,
    write: tokio::sync::Mutex<()>,
    /// One upkeep at a time. Held without `write` while an index builds (minutes on a Pi): lance commits an index
    /// beside concurrent appends, so writers never wait for it.
    upkeep: tokio::sync::Mutex<()>,
    /// Changed only under `write` (or by the upkeep that holds it); read by queries for a few milliseconds.
    ram: std::sync::RwLock<Option<RamIndex>>,
    /// While an in-memory index is being filled (without the write lock): the writes committed since the fill
    /// began, replayed onto it under the write lock before it is swapped in. Changed only under `write`.
    journal: std::sync::Mutex<Option<Vec<Journaled>>>,
}

impl Collection {
    fn kinds(&self) -> BTreeMap<String, Kind> {
        self.kinds.read().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

pub(crate) struct Store {
    handle: tokio::runtime::Handle,
    db: lancedb::Connection,
    open: std::sync::Mutex<HashMap<String, Arc<Collection>>>,
}

fn store_err(e: impl std::fmt::Display) -> MemoryError {
    MemoryError::Store(e.to_string())
}

/// Collection names: 1–64 of letters, digits, `_`, `-` and `.`, starting with a letter or digit.
pub(crate) fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b))
}

impl Store {
    /// Open (or create) the store under `dir`, running its IO on a runtime of its own.
    pub(crate) fn open(dir: &Path) -> Result<Self, MemoryError> {
        std::fs::create_dir_all(dir).map_err(|e| MemoryError::Store(format!("{}: {e}", dir.display())))?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("hearth-store".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .thread_name("hearth-store")
                    .enable_all()
                    .build();
                match rt {
                    Ok(rt) => {
                        let _ = tx.send(Ok(rt.handle().clone()));
                        // the runtime lives for the process; it parks here
                        rt.block_on(std::future::pending::<()>());
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e));
                    }
                }
            })
            .map_err(store_err)?;
        let handle = rx.recv().map_err(store_err)?.map_err(store_err)?;
        let uri = dir.to_string_lossy().into_owned();
        let db = handle.block_on(async move { lancedb::connect(&uri).execute().await }).map_err(store_err)?;
        Ok(Store { handle, db, open: Default::default() })
    }

    /// Run `f` on the store's runtime and wait for it from any runtime.
    async fn on_store<T, F>(&self, f: F) -> Result<T, MemoryError>
    where
        T: Send + 'static,
        F: Future<Output = Result<T, MemoryError>> + Send + 'static,
    {
        self.handle.spawn(f).await.map_err(|e| MemoryError::Store(format!("store task failed: {e}")))?
    }

    async fn collection(&self, name: &str) -> Result<Arc<Collection>, MemoryError> {
        if let Some(c) = self.open.lock().unwrap_or_else(|p| p.into_inner()).get(name) {
            return Ok(c.clone());
        }
        if !valid_name(name) {
            return Err(MemoryError::NoCollection(name.to_string()));
        }
        let (db, n) = (self.db.clone(), name.to_string());
        let c = self
            .on_store(async move {
                let table = match db.open_table(&n).execute().await {
                    Ok(t) => t,
                    Err(lancedb::Error::TableNotFound { .. }) => return Err(MemoryError::NoCollection(n)),
                    Err(e) => return Err(store_err(e)),
                };
                let schema = table.schema().await.map_err(store_err)?;
                let (dim, model, kinds) = describe(&schema)?;
                Ok(Arc::new(Collection {
                    table,
                    dim,
                    model,
                    kinds: std::sync::RwLock::new(kinds),
                    write: Default::default(),
                    upkeep: Default::default(),
                    ram: Default::default(),
                    journal: Default::default(),
                }))
            })
            .await?;
        // two first opens may race: the first one in wins, so every caller shares one handle (and one write lock)
        Ok(self.open.lock().unwrap_or_else(|p| p.into_inner()).entry(name.to_string()).or_insert(c).clone())
    }

    pub(crate) async fn names(&self) -> Result<Vec<String>, MemoryError> {
        let db = self.db.clone();
        self.on_store(async move { db.table_names().execute().await.map_err(store_err) }).await
    }

    pub(crate) async fn create(
        &self,
        name: &str,
        dim: usize,
        model: Option<&str>,
    ) -> Result<CollectionInfo, MemoryError> {
        if !valid_name(name) {
            return Err(MemoryError::Invalid(
                "a collection name is 1-64 letters, digits, '_', '-' or '.', starting with a letter or digit".into(),
            ));
        }
        if !(1..=4096).contains(&dim) {
            return Err(MemoryError::Invalid("dimension must be between 1 and 4096".into()));
        }
        let schema = Arc::new(new_schema(dim, model));
        let (db, n) = (self.db.clone(), name.to_string());
        self.on_store(async move {
            if db.table_names().execute().await.map_err(store_err)?.contains(&n) {
                return Err(MemoryError::CollectionExists(n));
            }
            db.create_empty_table(&n, schema).execute().await.map_err(store_err)?;
            Ok(())
        })
        .await?;
        metrics::counter!("hearth_memory_collections_created_total").increment(1);
        self.info(name).await
    }

    pub(crate) async fn drop_collection(&self, name: &str) -> Result<(), MemoryError> {
        let c = self.collection(name).await?;
        let (db, n) = (self.db.clone(), name.to_string());
        self.on_store(async move {
            let _w = c.write.lock().await;
            db.drop_table(&n, &[]).await.map_err(store_err)
        })
        .await?;
        metrics::gauge!("hearth_memory_collection_rows", "collection" => name.to_string()).set(0.0);
        metrics::gauge!("hearth_memory_ram_index_bytes", "collection" => name.to_string()).set(0.0);
        self.open.lock().unwrap_or_else(|p| p.into_inner()).remove(name);
        Ok(())
    }

    pub(crate) async fn dimension(&self, name: &str) -> Result<(usize, Option<String>), MemoryError> {
        let c = self.collection(name).await?;
        Ok((c.dim, c.model.clone()))
    }

    pub(crate) async fn info(&self, name: &str) -> Result<CollectionInfo, MemoryError> {
        let c = self.collection(name).await?;
        let (n, c2) = (name.to_string(), c.clone());
        self.on_store(async move {
            let t = &c2.table;
            let stats = t.stats().await.map_err(store_err)?;
            let version = t.version().await.map_err(store_err)?;
            let indices = t.list_indices().await.map_err(store_err)?;
            let mut info = CollectionInfo {
                name: n,
                dimension: c2.dim,
                model: c2.model.clone(),
                rows: stats.num_rows,
                bytes: stats.total_bytes,
                fragments: stats.fragment_stats.num_fragments,
                version,
                vector_index: "none".into(),
                indexed_rows: 0,
                unindexed_rows: stats.num_rows,
                text_index: indices.iter().any(|i| i.name == TEXT_INDEX),
                metadata_keys: c2.kinds(),
                ram_index_rows: 0,
                ram_index_bytes: 0,
            };
            if let Some(ram) = c2.ram().as_ref() {
                (info.ram_index_rows, info.ram_index_bytes) = (ram.len(), ram.bytes());
            }
            if indices.iter().any(|i| i.name == VECTOR_INDEX)
                && let Some(s) = t.index_stats(VECTOR_INDEX).await.map_err(store_err)?
            {
                info.vector_index = format!("{:?}", s.index_type);
                info.indexed_rows = s.num_indexed_rows;
                info.unindexed_rows = s.num_unindexed_rows;
            }
            Ok(info)
        })
        .await
    }

    /// Insert or replace documents by id (the last of duplicate ids in one call wins).
    pub(crate) async fn upsert(&self, name: &str, docs: Vec<Doc>) -> Result<usize, MemoryError> {
        let c = self.collection(name).await?;
        for (i, d) in docs.iter().enumerate() {
            if d.vector.len() != c.dim {
                return Err(MemoryError::Invalid(format!(
                    "document {i}: the vector has {} dimensions, the collection {}",
                    d.vector.len(),
                    c.dim
                )));
            }
            if d.vector.iter().any(|x| !x.is_finite()) {
                return Err(MemoryError::Invalid(format!("document {i}: the vector has a non-finite value")));
            }
        }
        // last duplicate wins
        let mut seen = std::collections::HashSet::new();
        let mut docs: Vec<Doc> = docs.into_iter().rev().filter(|d| seen.insert(d.id.clone())).collect();
        docs.reverse();
        let n = docs.len();
        let has_text = docs.iter().any(|d| d.text.is_some());
        let c2 = c.clone();
        let started = Instant::now();
        self.on_store(async move {
            // the lock is taken by the store task itself: a caller that stops waiting (a timeout, a client that
            // left) must not release it while the write goes on
            let _w = c2.write.lock().await;
            // new filterable keys become columns first
            let mut kinds = c2.kinds();
            let mut added: Vec<(String, Kind)> = vec![];
            for (i, d) in docs.iter().enumerate() {
                let cols = filter::columns_of(&d.metadata, &kinds)
                    .map_err(|e| MemoryError::Invalid(format!("document {i}: {e}")))?;
                for (k, kind) in cols {
                    if !kinds.contains_key(&k) {
                        kinds.insert(k.clone(), kind);
                        added.push((k, kind));
                    }
                }
            }
            let kinds2 = kinds;
            let t = &c2.table;
            if !added.is_empty() {
                let fields: Vec<Field> = added
                    .iter()
                    .map(|(k, kind)| Field::new(format!("{}{k}", filter::PREFIX), kind_type(*kind), true))
                    .collect();
                t.add_columns()
                    .transform(NewColumnTransform::AllNulls(Arc::new(Schema::new(fields))))
                    .execute()
                    .await
                    .map_err(store_err)?;
                *c2.kinds.write().unwrap_or_else(|p| p.into_inner()) = kinds2;
            }
            let schema = t.schema().await.map_err(store_err)?;
            let batch = to_batch(&schema, &docs, c2.dim)?;
            // merge_insert joins against every column of every row (vectors included), so a bulk import into a
            // large collection slows to seconds per call; when none of the ids exists yet (checked on the id column
            // alone, under the collection's write lock) an append does the same
            if t.count_rows(Some(id_in(docs.iter().map(|d| d.id.as_str())))).await.map_err(store_err)? == 0 {
                t.add(batch).execute().await.map_err(store_err)?;
            } else {
                let reader: Box<dyn RecordBatchReader + Send> =
                    Box::new(RecordBatchIterator::new(vec![Ok(batch)], schema.clone()));
                let mut m = t.merge_insert(&["id"]);
                m.when_matched_update_all(None).when_not_matched_insert_all();
                m.execute(reader).await.map_err(store_err)?;
            }
            c2.ram_upserted(&docs);
            let indices = t.list_indices().await.map_err(store_err)?;
            if has_text && !indices.iter().any(|i| i.name == TEXT_INDEX) {
                t.create_index(&["text"], Index::FTS(FtsIndexBuilder::default()))
                    .name(TEXT_INDEX.into())
                    .execute()
                    .await
                    .map_err(store_err)?;
            }
            Ok(())
        })
        .await?;
        metrics::counter!("hearth_memory_documents_upserted_total").increment(n as u64);
        metrics::histogram!("hearth_memory_write_duration_seconds").record(started.elapsed().as_secs_f64());
        Ok(n)
    }

    /// Delete by ids and/or a metadata filter; returns the rows deleted.
    pub(crate) async fn delete(&self, name: &str, ids: &[String], filter: Option<&Value>) -> Result<u64, MemoryError> {
        let c = self.collection(name).await?;
        let mut preds = vec![];
        if !ids.is_empty() {
            preds.push(id_in(ids.iter().map(String::as_str)));
        }
        if let Some(f) = filter {
            preds.push(filter::to_sql(f, &c.kinds()).map_err(MemoryError::Invalid)?);
        }
        if preds.is_empty() {
            return Err(MemoryError::Invalid("give ids or a filter".into()));
        }
        let pred = preds.join(" AND ");
        let c2 = c.clone();
        let (ids, by_filter) = (ids.to_vec(), filter.is_some());
        self.on_store(async move {
            let _w = c2.write.lock().await;
            // the in-memory index needs the ids a filter matches: read under the write lock, before they go
            let gone = if by_filter && c2.keeps_ram() {
                let batches: Vec<RecordBatch> = c2
                    .table
                    .query()
                    .only_if(pred.as_str())
                    .select(Select::columns(&["id"]))
                    .execute()
                    .await
                    .map_err(store_err)?
                    .try_collect()
                    .await
                    .map_err(store_err)?;
                let mut gone = vec![];
                for b in &batches {
                    gone.extend(strings(b, "id")?.into_iter().flatten().map(str::to_string));
                }
                gone
            } else {
                ids
            };
            let r = c2.table.delete(pred.as_str()).await.map_err(store_err)?;
            c2.ram_removed(gone);
            Ok(r.num_deleted_rows)
        })
        .await
    }

    pub(crate) async fn query(&self, name: &str, q: Query) -> Result<Vec<Hit>, MemoryError> {
        let c = self.collection(name).await?;
        if q.vector.len() != c.dim {
            return Err(MemoryError::Invalid(format!(
                "the query vector has {} dimensions, the collection {}",
                q.vector.len(),
                c.dim
            )));
        }
        if q.vector.iter().all(|x| *x == 0.0) {
            return Err(MemoryError::Invalid("the query vector is all zeros: it has no direction".into()));
        }
        let sql = match &q.filter {
            Some(f) => Some(filter::to_sql(f, &c.kinds()).map_err(MemoryError::Invalid)?),
            None => None,
        };
        let started = Instant::now();
        let c2 = c.clone();
        let hybrid = q.hybrid;
        let (k, post_filter) = (q.k, if hybrid { q.filter.clone() } else { None });
        // hybrid + filter: fetch more, filter after fusion (the full-text leg ignores the filter)
        let limit = if q.hybrid && q.filter.is_some() { (q.k * 4).min(4000) } else { q.k };
        let use_ram = q.ram_probes.filter(|_| !q.exact && !q.hybrid && q.filter.is_none());
        let mut hits = self
            .on_store(async move {
                if let Some(probes) = use_ram
                    && let Some(ram) = c2.ram().as_ref()
                {
                    metrics::counter!("hearth_memory_ram_index_queries_total").increment(1);
                    return Ok(ram
                        .search(&q.vector, limit, probes, q.refine_factor as usize)
                        .into_iter()
                        .map(|(s, r)| hit(&r.id, s, r.text.as_deref(), r.metadata.as_deref()))
                        .collect());
                }
                let mut vq = c2
                    .table
                    .query()
                    .nearest_to(q.vector.as_slice())
                    .map_err(store_err)?
                    .distance_type(DistanceType::Cosine)
                    .limit(limit)
                    // `_distance` named explicitly: lance otherwise adds it anyway and logs a deprecation warning
                    // on every query (the hybrid path scores by `_relevance_score` and must not ask for it)
                    .select(Select::columns(if q.hybrid {
                        &["id", "text", "metadata"][..]
                    } else {
                        &["id", "text", "metadata", "_distance"][..]
                    }));
                if let Some(sql) = &sql {
                    vq = vq.only_if(sql);
                }
                if q.exact {
                    vq = vq.bypass_vector_index();
                } else {
                    // an HNSW partition must keep at least as many candidates as the refine step takes from it
                    let ef = q.ef.max(limit * (q.refine_factor.max(1) as usize));
                    vq = vq.nprobes(q.nprobes.max(1)).map_err(store_err)?.ef(ef);
                    if q.refine_factor > 0 {
                        vq = vq.refine_factor(q.refine_factor);
                    }
                }
                if q.hybrid {
                    let terms = q.text.unwrap_or_default();
                    let fts = FullTextSearchQuery::new(terms).with_column("text".into()).map_err(store_err)?;
                    vq = vq.full_text_search(fts);
                }
                let batches: Vec<RecordBatch> =
                    vq.execute().await.map_err(store_err)?.try_collect().await.map_err(store_err)?;
                hits_of(&batches, q.hybrid)
            })
            .await?;
        if let Some(f) = &post_filter {
            hits.retain(|h| filter::matches(f, &h.metadata));
            hits.truncate(k);
        }
        let kind = if hybrid { "hybrid" } else { "vector" };
        metrics::histogram!("hearth_memory_query_duration_seconds", "kind" => kind)
            .record(started.elapsed().as_secs_f64());
        Ok(hits)
    }
}

/// The SQL predicate `id IN ('a', 'b')`, quotes escaped.
fn id_in<'a>(ids: impl IntoIterator<Item = &'a str>) -> String {
    let list: Vec<String> = ids.into_iter().map(filter::sql_string).collect();
    format!("id IN ({})", list.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        assert!(valid_name("notes") && valid_name("a.b-c_1"));
        for bad in ["", ".x", "a/b", "a b", &"x".repeat(65), "é"] {
            assert!(!valid_name(bad), "{bad}");
        }
    }
}
