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

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use arrow_array::builder::{BooleanBuilder, Float64Builder, StringBuilder};
use arrow_array::{
    Array, ArrayRef, FixedSizeListArray, Float32Array, RecordBatch, RecordBatchIterator, RecordBatchReader, StringArray,
};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use futures_util::TryStreamExt;
use lancedb::DistanceType;
use lancedb::index::Index;
use lancedb::index::IndexType;
use lancedb::index::scalar::{FtsIndexBuilder, FullTextSearchQuery};
use lancedb::index::vector::{IvfHnswSqIndexBuilder, IvfPqIndexBuilder, IvfSqIndexBuilder};
use lancedb::query::{ExecutableQuery, QueryBase, Select};
use lancedb::table::{NewColumnTransform, OptimizeAction, OptimizeOptions};
use serde::Serialize;
use serde_json::Value;

use super::MemoryError;
use super::filter::{self, Kind};
use super::ram_index::{self, RamIndex};
use crate::config::{AnnIndex, MemoryConfig};

pub const SCHEMA_VERSION: &str = "1";
const META_VERSION: &str = "hearth.schema_version";
const META_MODEL: &str = "hearth.model";
const VECTOR_INDEX: &str = "vector_idx";
const TEXT_INDEX: &str = "text_idx";

/// A document to upsert (its vector already computed).
#[derive(Debug, Clone)]
pub struct Doc {
    pub id: String,
    pub text: Option<String>,
    pub vector: Vec<f32>,
    pub metadata: Value,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Hit {
    pub id: String,
    /// Cosine similarity for vector search; the reciprocal-rank-fusion score for hybrid search.
    pub score: f32,
    pub text: Option<String>,
    #[schema(value_type = Object)]
    pub metadata: Value,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct CollectionInfo {
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

pub struct Query {
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

/// Which ANN index a collection gets, and past how many rows.
#[derive(Debug, Clone, Copy)]
pub struct IndexPolicy {
    pub threshold: usize,
    pub kind: AnnIndex,
    /// Keep a [`RamIndex`] of collections past the threshold.
    pub ram: bool,
}

impl IndexPolicy {
    pub fn of(cfg: &MemoryConfig) -> Self {
        IndexPolicy { threshold: cfg.index_threshold, kind: cfg.ann_index, ram: cfg.ram_index }
    }
}

fn index_type(kind: AnnIndex) -> IndexType {
    match kind {
        AnnIndex::IvfPq => IndexType::IvfPq,
        AnnIndex::IvfSq => IndexType::IvfSq,
        AnnIndex::IvfHnswSq => IndexType::IvfHnswSq,
    }
}

/// The index to build over `rows` vectors of `dim` dimensions.
fn ann_index(kind: AnnIndex, rows: usize, dim: usize) -> Index {
    match kind {
        // ~1000 rows per partition, 8 dimensions per sub-vector; queries probe `ann_nprobes` partitions (10) and
        // re-rank `ann_refine_factor` × k candidates (10) exactly: recall@10 0.999 against exact search at 100k,
        // p50 16–23 ms on the 2-core bench machine; 3 × k only 0.70
        AnnIndex::IvfPq => Index::IvfPq(
            IvfPqIndexBuilder::default()
                .distance_type(DistanceType::Cosine)
                .num_partitions((rows / 1000).clamp(1, 4096) as u32)
                .num_sub_vectors(if dim.is_multiple_of(8) { dim / 8 } else { dim } as u32),
        ),
        AnnIndex::IvfSq => Index::IvfSq(
            IvfSqIndexBuilder::default()
                .distance_type(DistanceType::Cosine)
                .num_partitions((rows / 1000).clamp(1, 4096) as u32),
        ),
        // a graph finds its way through a large partition: few partitions, each built on its own core. The default:
        // at 100k (2-core bench machine, refine 10) recall@10 0.990–1.000 at p50 11–19 ms, built in 75–85 s;
        // without the re-ranking 6–8 ms but recall 0.93 (the 8-bit codes blur close neighbours)
        AnnIndex::IvfHnswSq => Index::IvfHnswSq(
            IvfHnswSqIndexBuilder::default()
                .distance_type(DistanceType::Cosine)
                .num_partitions((rows / 25_000).clamp(1, 4096) as u32),
        ),
    }
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

/// A write to replay onto an in-memory index that was being filled when it was committed.
enum Journaled {
    Upsert(ram_index::Row, Vec<f32>),
    Remove(String),
}

impl Collection {
    fn kinds(&self) -> BTreeMap<String, Kind> {
        self.kinds.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn ram(&self) -> std::sync::RwLockReadGuard<'_, Option<RamIndex>> {
        self.ram.read().unwrap_or_else(|p| p.into_inner())
    }

    fn ram_mut(&self) -> std::sync::RwLockWriteGuard<'_, Option<RamIndex>> {
        self.ram.write().unwrap_or_else(|p| p.into_inner())
    }

    fn journal(&self) -> std::sync::MutexGuard<'_, Option<Vec<Journaled>>> {
        self.journal.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether writes must reach an in-memory index (the live one, or one being filled).
    fn keeps_ram(&self) -> bool {
        self.ram().is_some() || self.journal().is_some()
    }

    /// Apply a committed write (`ops`, made only when needed) to the in-memory index and, while one is being
    /// filled, to its journal. Call under `write`, after lance has committed.
    fn ram_apply(&self, ops: impl FnOnce() -> Vec<Journaled>) {
        let (mut ram, mut journal) = (self.ram_mut(), self.journal());
        if ram.is_none() && journal.is_none() {
            return;
        }
        let ops = ops();
        if let Some(r) = ram.as_mut() {
            ops.iter().for_each(|op| op.apply(r));
            metrics::gauge!("hearth_memory_ram_index_bytes", "collection" => self.table.name().to_string())
                .set(r.bytes() as f64);
        }
        if let Some(j) = journal.as_mut() {
            j.extend(ops);
        }
    }
}

impl Journaled {
    fn apply(&self, r: &mut RamIndex) {
        match self {
            Journaled::Upsert(row, v) => r.upsert(row.clone(), v),
            Journaled::Remove(id) => {
                r.remove(id);
            }
        }
    }
}

pub struct Store {
    handle: tokio::runtime::Handle,
    db: lancedb::Connection,
    dir: PathBuf,
    open: std::sync::Mutex<HashMap<String, Arc<Collection>>>,
}

fn store_err(e: impl std::fmt::Display) -> MemoryError {
    MemoryError::Store(e.to_string())
}

/// Collection names: 1–64 of letters, digits, `_`, `-` and `.`, starting with a letter or digit.
pub fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b))
}

fn base_fields(dim: usize) -> Vec<Field> {
    vec![
        Field::new("id", DataType::Utf8, false),
        Field::new("text", DataType::Utf8, true),
        Field::new(
            "vector",
            DataType::FixedSizeList(Arc::new(Field::new("item", DataType::Float32, true)), dim as i32),
            false,
        ),
        Field::new("metadata", DataType::Utf8, true),
    ]
}

fn kind_type(k: Kind) -> DataType {
    match k {
        Kind::String => DataType::Utf8,
        Kind::Number => DataType::Float64,
        Kind::Bool => DataType::Boolean,
    }
}

/// What a table's schema says: dimension, embedding model, filterable metadata keys.
type Described = (usize, Option<String>, BTreeMap<String, Kind>);

/// Read a table's schema back; refuse schema versions this hearth does not know.
fn describe(schema: &Schema) -> Result<Described, MemoryError> {
    let version = schema.metadata().get(META_VERSION).map(String::as_str).unwrap_or(SCHEMA_VERSION);
    if version != SCHEMA_VERSION {
        return Err(MemoryError::Store(format!(
            "collection schema version {version} is not understood by this hearth (it knows {SCHEMA_VERSION})"
        )));
    }
    let dim = match schema.field_with_name("vector").map(|f| f.data_type().clone()) {
        Ok(DataType::FixedSizeList(_, n)) => n as usize,
        _ => return Err(MemoryError::Store("table has no vector column".into())),
    };
    let mut kinds = BTreeMap::new();
    for f in schema.fields() {
        if let Some(key) = f.name().strip_prefix(filter::PREFIX) {
            let kind = match f.data_type() {
                DataType::Utf8 => Kind::String,
                DataType::Float64 => Kind::Number,
                DataType::Boolean => Kind::Bool,
                _ => continue,
            };
            kinds.insert(key.to_string(), kind);
        }
    }
    Ok((dim, schema.metadata().get(META_MODEL).cloned(), kinds))
}

impl Store {
    /// Open (or create) the store under `dir`, running its IO on a runtime of its own.
    pub fn open(dir: &Path) -> Result<Self, MemoryError> {
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
        Ok(Store { handle, db, dir: dir.to_path_buf(), open: Default::default() })
    }

    /// Run `f` on the store's runtime and wait for it from any runtime.
    async fn on_store<T, F>(&self, f: F) -> Result<T, MemoryError>
    where
        T: Send + 'static,
        F: Future<Output = Result<T, MemoryError>> + Send + 'static,
    {
        self.handle.spawn(f).await.map_err(|e| MemoryError::Store(format!("store task failed: {e}")))?
    }

    pub fn dir(&self) -> &Path {
        &self.dir
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

    pub async fn names(&self) -> Result<Vec<String>, MemoryError> {
        let db = self.db.clone();
        self.on_store(async move { db.table_names().execute().await.map_err(store_err) }).await
    }

    pub async fn create(&self, name: &str, dim: usize, model: Option<&str>) -> Result<CollectionInfo, MemoryError> {
        if !valid_name(name) {
            return Err(MemoryError::Invalid(
                "a collection name is 1-64 letters, digits, '_', '-' or '.', starting with a letter or digit".into(),
            ));
        }
        if !(1..=4096).contains(&dim) {
            return Err(MemoryError::Invalid("dimension must be between 1 and 4096".into()));
        }
        let mut meta = HashMap::from([(META_VERSION.to_string(), SCHEMA_VERSION.to_string())]);
        if let Some(m) = model {
            meta.insert(META_MODEL.to_string(), m.to_string());
        }
        let schema = Arc::new(Schema::new_with_metadata(base_fields(dim), meta));
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

    pub async fn drop_collection(&self, name: &str) -> Result<(), MemoryError> {
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

    pub async fn dimension(&self, name: &str) -> Result<(usize, Option<String>), MemoryError> {
        let c = self.collection(name).await?;
        Ok((c.dim, c.model.clone()))
    }

    pub async fn info(&self, name: &str) -> Result<CollectionInfo, MemoryError> {
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
    pub async fn upsert(&self, name: &str, docs: Vec<Doc>) -> Result<usize, MemoryError> {
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
            c2.ram_apply(|| docs.iter().map(|d| Journaled::Upsert(ram_row(d), d.vector.clone())).collect());
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
    pub async fn delete(&self, name: &str, ids: &[String], filter: Option<&Value>) -> Result<u64, MemoryError> {
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
            c2.ram_apply(|| gone.into_iter().map(Journaled::Remove).collect());
            Ok(r.num_deleted_rows)
        })
        .await
    }

    pub async fn query(&self, name: &str, q: Query) -> Result<Vec<Hit>, MemoryError> {
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

    /// Upkeep of one collection: build the policy's ANN index once it is past the threshold (or rebuild it when the
    /// configured type changed); with `full`, also compact, fold new rows into the indexes and prune versions older
    /// than an hour. Returns whether an index was built.
    ///
    /// The round is one task on the store's runtime: a caller that stops waiting (a request past its timeout, a
    /// client that leaves) never cuts it between the index build and the compaction.
    pub async fn maintain(&self, name: &str, policy: &IndexPolicy, full: bool) -> Result<bool, MemoryError> {
        let c = self.collection(name).await?;
        let (n, policy) = (name.to_string(), *policy);
        self.on_store(async move {
            let _u = c.upkeep.lock().await;
            let rows = c.table.count_rows(None).await.map_err(store_err)?;
            metrics::gauge!("hearth_memory_collection_rows", "collection" => n.clone()).set(rows as f64);
            let built = build_vector_index_if_due(&c, &n, rows, &policy).await?;
            // the in-memory index is an accelerator: failing to build it must not cost the round its compaction
            if let Err(e) = refresh_ram_index(&c, &n, rows, &policy).await {
                tracing::warn!(collection = n, error = %e, "in-memory index build failed");
            }
            if full {
                // compaction rewrites fragments a concurrent delete or overwrite may touch: writers wait for it
                let _w = c.write.lock().await;
                compact(&c.table).await?;
            }
            Ok(built)
        })
        .await
    }

    /// Maintain every collection; errors are logged per collection.
    pub async fn maintain_all(&self, policy: &IndexPolicy, full: bool) {
        let Ok(names) = self.names().await else { return };
        for n in names {
            if let Err(e) = self.maintain(&n, policy, full).await {
                tracing::warn!(collection = n, error = %e, "collection upkeep failed");
            }
        }
    }
}

/// Build the ANN index of a collection past the policy's threshold that has none, or one of another type than the
/// policy's (under the collection's upkeep lock, not its write lock: lance commits an index beside concurrent
/// appends, and a rebuilt index replaces the old one in one commit). Returns whether it built one.
async fn build_vector_index_if_due(
    c: &Collection,
    name: &str,
    rows: usize,
    policy: &IndexPolicy,
) -> Result<bool, MemoryError> {
    let t = &c.table;
    if rows < policy.threshold {
        return Ok(false);
    }
    // the index listing already carries each index's type: no per-minute `index_stats` (which counts rows) needed
    let indices = t.list_indices().await.map_err(store_err)?;
    if let Some(i) = indices.into_iter().find(|i| i.name == VECTOR_INDEX) {
        let current = i.index_type;
        if current == index_type(policy.kind) {
            return Ok(false);
        }
        tracing::info!(
            collection = name,
            from = ?current,
            to = ?policy.kind,
            "the configured vector index type changed"
        );
    }
    let started = Instant::now();
    tracing::info!(collection = name, rows, kind = ?policy.kind, "building the vector index");
    t.create_index(&["vector"], ann_index(policy.kind, rows, c.dim))
        .name(VECTOR_INDEX.into())
        .execute()
        .await
        .map_err(store_err)?;
    metrics::counter!("hearth_memory_index_builds_total").increment(1);
    tracing::info!(collection = name, rows, secs = started.elapsed().as_secs_f64(), "vector index built");
    Ok(true)
}

/// Give a collection past the policy's threshold its in-memory index, or a retrained one once it has doubled since
/// the last training; drop it when the policy says none. Training and the fill run without blocking writers; the
/// writes committed during the fill are journaled and replayed under the write lock before the swap, so no write
/// falls between the scan and the swap.
async fn refresh_ram_index(c: &Collection, name: &str, rows: usize, policy: &IndexPolicy) -> Result<(), MemoryError> {
    let gauge = || metrics::gauge!("hearth_memory_ram_index_bytes", "collection" => name.to_string());
    if !policy.ram || rows < policy.threshold {
        if c.ram_mut().take().is_some() {
            gauge().set(0.0);
            tracing::info!(collection = name, "in-memory index dropped");
        }
        return Ok(());
    }
    if c.ram().as_ref().is_some_and(|r| rows < 2 * r.trained_rows().max(1)) {
        return Ok(());
    }
    let started = Instant::now();
    let (t, dim) = (&c.table, c.dim);
    // ~1000 rows per list, trained on a reservoir sample of 64 points per list, at least 10k and at most 50k
    // points or 64 MB
    let lists = (rows / 1000).clamp(1, 4096);
    let want = (lists * 64).clamp(10_000, 50_000).min((64 << 20) / (4 * dim)).min(rows);
    let mut sample: Vec<f32> = Vec::with_capacity(want * dim);
    let (mut seen, mut rng) = (0usize, ram_index::Rng(rows as u64 | 1));
    let mut stream = t.query().select(Select::columns(&["vector"])).execute().await.map_err(store_err)?;
    while let Some(b) = stream.try_next().await.map_err(store_err)? {
        let values = vectors(&b, dim)?;
        for v in values.chunks_exact(dim) {
            seen += 1;
            if sample.len() < want * dim {
                sample.extend_from_slice(v);
            } else {
                // reservoir sampling: every row equally likely to be kept
                let j = rng.below(seen);
                if j < want {
                    sample[j * dim..(j + 1) * dim].copy_from_slice(v);
                }
            }
        }
    }
    let trained = tokio::task::spawn_blocking(move || RamIndex::train(dim, sample, lists, 10, 0x5eed, rows))
        .await
        .map_err(store_err)?;
    // fill without the write lock (placing 100k rows takes seconds, far longer on a Pi): writes committed from
    // here on are journaled (started under the lock, so none is half-way), and replayed under the lock before the
    // swap — a write the scan already saw is applied twice, which upserts by id and removals by id make harmless
    {
        let _w = c.write.lock().await;
        *c.journal() = Some(vec![]);
    }
    let filled = fill_ram_index(t, trained, dim).await;
    let _w = c.write.lock().await;
    let journal = c.journal().take().unwrap_or_default();
    let mut ram = filled?;
    journal.iter().for_each(|op| op.apply(&mut ram));
    ram.shrink_to_fit();
    let (len, bytes) = (ram.len(), ram.bytes());
    *c.ram_mut() = Some(ram);
    gauge().set(bytes as f64);
    metrics::counter!("hearth_memory_ram_index_builds_total").increment(1);
    tracing::info!(
        collection = name,
        rows = len,
        lists,
        mb = bytes as f64 / 1e6,
        secs = started.elapsed().as_secs_f64(),
        "in-memory index built"
    );
    Ok(())
}

/// Every row of the table into a trained, empty index.
async fn fill_ram_index(t: &lancedb::Table, mut ram: RamIndex, dim: usize) -> Result<RamIndex, MemoryError> {
    let mut stream =
        t.query().select(Select::columns(&["id", "text", "metadata", "vector"])).execute().await.map_err(store_err)?;
    while let Some(b) = stream.try_next().await.map_err(store_err)? {
        // placing rows in their lists is CPU work: off the store runtime's workers
        ram = tokio::task::spawn_blocking(move || -> Result<RamIndex, MemoryError> {
            let (ids, texts, metas, values) =
                (strings(&b, "id")?, strings(&b, "text")?, strings(&b, "metadata")?, vectors(&b, dim)?);
            for (i, v) in values.chunks_exact(dim).enumerate() {
                let Some(id) = ids.get(i).copied().flatten() else { continue };
                let row = ram_index::Row {
                    id: id.into(),
                    text: texts.get(i).copied().flatten().map(Into::into),
                    metadata: metas.get(i).copied().flatten().map(Into::into),
                };
                ram.upsert(row, v);
            }
            Ok(ram)
        })
        .await
        .map_err(store_err)??;
    }
    Ok(ram)
}

/// A text column of a result batch as optional strings.
fn strings<'a>(b: &'a RecordBatch, name: &str) -> Result<Vec<Option<&'a str>>, MemoryError> {
    let col = b.column_by_name(name).ok_or_else(|| store_err(format!("no {name} column in results")))?;
    let a = col.as_any().downcast_ref::<StringArray>().ok_or_else(|| store_err(format!("{name} is not utf8")))?;
    Ok(a.iter().collect())
}

/// The vector column of a result batch, row-major.
fn vectors(b: &RecordBatch, dim: usize) -> Result<Vec<f32>, MemoryError> {
    let col = b.column_by_name("vector").ok_or_else(|| store_err("no vector column in results"))?;
    let list = col.as_any().downcast_ref::<FixedSizeListArray>().ok_or_else(|| store_err("vector is not a list"))?;
    let values =
        list.values().as_any().downcast_ref::<Float32Array>().ok_or_else(|| store_err("vector is not float32"))?;
    let start = list.offset() * dim;
    Ok(values.values()[start..start + list.len() * dim].to_vec())
}

fn ram_row(d: &Doc) -> ram_index::Row {
    ram_index::Row {
        id: d.id.as_str().into(),
        text: d.text.as_deref().map(Into::into),
        metadata: (!d.metadata.is_null()).then(|| d.metadata.to_string().into()),
    }
}

/// A hit from a stored row (lance's columns or the in-memory index's copy of them).
fn hit(id: &str, score: f32, text: Option<&str>, metadata: Option<&str>) -> Hit {
    Hit {
        id: id.to_string(),
        score,
        text: text.map(str::to_string),
        metadata: metadata.and_then(|m| serde_json::from_str(m).ok()).unwrap_or(Value::Null),
    }
}

/// Compact fragments, fold rows added since into the indexes, prune versions older than an hour.
async fn compact(t: &lancedb::Table) -> Result<(), MemoryError> {
    t.optimize(OptimizeAction::Compact { options: Default::default(), remap_options: None })
        .await
        .map_err(store_err)?;
    t.optimize(OptimizeAction::Index(OptimizeOptions::default())).await.map_err(store_err)?;
    t.optimize(OptimizeAction::Prune {
        older_than: lancedb::table::Duration::try_hours(1),
        delete_unverified: Some(false),
        error_if_tagged_old_versions: Some(false),
    })
    .await
    .map_err(store_err)?;
    Ok(())
}

/// The SQL predicate `id IN ('a', 'b')`, quotes escaped.
fn id_in<'a>(ids: impl IntoIterator<Item = &'a str>) -> String {
    let list: Vec<String> = ids.into_iter().map(filter::sql_string).collect();
    format!("id IN ({})", list.join(", "))
}

fn to_batch(schema: &SchemaRef, docs: &[Doc], dim: usize) -> Result<RecordBatch, MemoryError> {
    let mut columns: Vec<ArrayRef> = vec![];
    for field in schema.fields() {
        let col: ArrayRef = match field.name().as_str() {
            "id" => Arc::new(StringArray::from_iter_values(docs.iter().map(|d| d.id.as_str()))),
            "text" => Arc::new(StringArray::from_iter(docs.iter().map(|d| d.text.as_deref()))),
            "metadata" => Arc::new(StringArray::from_iter(
                docs.iter().map(|d| (!d.metadata.is_null()).then(|| d.metadata.to_string())),
            )),
            "vector" => {
                let values = Float32Array::from_iter_values(docs.iter().flat_map(|d| d.vector.iter().copied()));
                let item = Arc::new(Field::new("item", DataType::Float32, true));
                Arc::new(FixedSizeListArray::try_new(item, dim as i32, Arc::new(values), None).map_err(store_err)?)
            }
            other => {
                let key = other.strip_prefix(filter::PREFIX).unwrap_or(other);
                let get = |d: &Doc| d.metadata.get(key).cloned().unwrap_or(Value::Null);
                match field.data_type() {
                    DataType::Utf8 => {
                        let mut b = StringBuilder::new();
                        docs.iter().for_each(|d| b.append_option(get(d).as_str()));
                        Arc::new(b.finish())
                    }
                    DataType::Float64 => {
                        let mut b = Float64Builder::new();
                        docs.iter().for_each(|d| b.append_option(get(d).as_f64()));
                        Arc::new(b.finish())
                    }
                    DataType::Boolean => {
                        let mut b = BooleanBuilder::new();
                        docs.iter().for_each(|d| b.append_option(get(d).as_bool()));
                        Arc::new(b.finish())
                    }
                    t => return Err(MemoryError::Store(format!("unexpected column {other} of type {t}"))),
                }
            }
        };
        columns.push(col);
    }
    RecordBatch::try_new(schema.clone(), columns).map_err(store_err)
}

fn hits_of(batches: &[RecordBatch], hybrid: bool) -> Result<Vec<Hit>, MemoryError> {
    let mut hits = vec![];
    for b in batches {
        let (ids, texts, metas) = (strings(b, "id")?, strings(b, "text")?, strings(b, "metadata")?);
        let name = if hybrid { "_relevance_score" } else { "_distance" };
        let score_col = b.column_by_name(name).ok_or_else(|| store_err(format!("no {name} column in results")))?;
        let scores =
            score_col.as_any().downcast_ref::<Float32Array>().ok_or_else(|| store_err("score is not float32"))?;
        for i in 0..b.num_rows() {
            let raw = scores.value(i);
            let score = if hybrid { raw } else { 1.0 - raw };
            hits.push(hit(ids[i].unwrap_or_default(), score, texts[i], metas[i]));
        }
    }
    Ok(hits)
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::FutureExt;

    #[test]
    fn names_are_checked() {
        assert!(valid_name("notes") && valid_name("a.b-c_1"));
        for bad in ["", ".x", "a/b", "a b", &"x".repeat(65), "é"] {
            assert!(!valid_name(bad), "{bad}");
        }
    }

    #[test]
    fn an_upkeep_round_finishes_when_its_caller_stops_waiting() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            store.create("c", 4, None).await.unwrap();
            for i in 0..3 {
                let doc = Doc {
                    id: format!("d{i}"),
                    text: None,
                    vector: vec![1.0, i as f32, 0.0, 0.5],
                    metadata: Value::Null,
                };
                store.upsert("c", vec![doc]).await.unwrap();
            }
            assert_eq!(store.info("c").await.unwrap().fragments, 3);
            // the caller gives up at once (a request timeout, a client that left); the round goes on without it
            let policy = IndexPolicy { threshold: usize::MAX, kind: AnnIndex::IvfPq, ram: true };
            // polled once (which hands the round to the store runtime), then dropped
            assert!(store.maintain("c", &policy, true).now_or_never().is_none());
            let deadline = Instant::now() + std::time::Duration::from_secs(60);
            while store.info("c").await.unwrap().fragments != 1 {
                assert!(Instant::now() < deadline, "the abandoned round never compacted");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            assert_eq!(store.info("c").await.unwrap().rows, 3);
        });
    }

    fn doc(id: String, x: f32) -> Doc {
        let v = vec![1.0, x, (x * 0.37).sin(), (x * 0.11).cos()];
        Doc { id, text: Some("t".into()), vector: v, metadata: serde_json::json!({"k": x as i64 % 7}) }
    }

    #[test]
    fn the_in_memory_index_matches_the_table_when_writes_race_its_build() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(dir.path()).unwrap());
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        rt.block_on(async {
            store.create("c", 4, None).await.unwrap();
            let docs: Vec<Doc> = (0..3000).map(|i| doc(format!("d{i}"), i as f32)).collect();
            for chunk in docs.chunks(1000) {
                store.upsert("c", chunk.to_vec()).await.unwrap();
            }
            let policy = IndexPolicy { threshold: 1000, kind: AnnIndex::IvfSq, ram: true };
            // a build (and rebuilds: each round whose table doubled) while inserts, overwrites and deletes land
            let writer = {
                let store = store.clone();
                tokio::spawn(async move {
                    for round in 0..30 {
                        let fresh: Vec<Doc> =
                            (0..50).map(|i| doc(format!("n{round}-{i}"), 5000.0 + i as f32)).collect();
                        store.upsert("c", fresh).await.unwrap();
                        store.upsert("c", vec![doc(format!("d{round}"), -1.0 - round as f32)]).await.unwrap();
                        store.delete("c", &[format!("d{}", 100 + round)], None).await.unwrap();
                        let filter = serde_json::json!({"k": round % 7});
                        store.delete("c", &[format!("n{round}-{}", round % 50)], Some(&filter)).await.unwrap();
                    }
                })
            };
            for _ in 0..3 {
                store.maintain("c", &policy, false).await.unwrap();
            }
            writer.await.unwrap();
            store.maintain("c", &policy, false).await.unwrap();
            let info = store.info("c").await.unwrap();
            assert!(info.ram_index_rows > 0, "{info:?}");
            assert_eq!(info.ram_index_rows, info.rows, "{info:?}");
            // row for row what the table holds: the same ids, each with its latest metadata (overwrites change it)
            let c = store.collection("c").await.unwrap();
            let select = Select::columns(&["id", "metadata"]);
            let batches: Vec<RecordBatch> =
                c.table.query().select(select).execute().await.unwrap().try_collect().await.unwrap();
            let ram = c.ram();
            let ram = ram.as_ref().unwrap();
            let mut n = 0;
            for b in &batches {
                for (id, meta) in strings(b, "id").unwrap().into_iter().zip(strings(b, "metadata").unwrap()) {
                    let row = ram.row(id.unwrap()).unwrap_or_else(|| panic!("{id:?} is not in the index"));
                    assert_eq!(row.metadata.as_deref(), meta, "{id:?}");
                    n += 1;
                }
            }
            assert_eq!(ram.len(), n);
            assert!(ram.row("d129").is_none() && ram.row("d29").is_some());
        });
    }

    #[test]
    fn schema_describes_itself_and_refuses_future_versions() {
        let mut fields = base_fields(3);
        fields.push(Field::new("m_year", DataType::Float64, true));
        fields.push(Field::new("m_tag", DataType::Utf8, true));
        let meta = HashMap::from([(META_VERSION.to_string(), "1".to_string()), (META_MODEL.into(), "m".into())]);
        let (dim, model, kinds) = describe(&Schema::new_with_metadata(fields.clone(), meta)).unwrap();
        assert_eq!((dim, model.as_deref()), (3, Some("m")));
        assert_eq!(kinds.get("year"), Some(&Kind::Number));
        assert_eq!(kinds.get("tag"), Some(&Kind::String));
        let future = HashMap::from([(META_VERSION.to_string(), "2".to_string())]);
        assert!(describe(&Schema::new_with_metadata(fields, future)).is_err());
    }
}
