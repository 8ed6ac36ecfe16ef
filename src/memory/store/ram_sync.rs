//! Keeping a collection's in-memory index ([`RamIndex`], `memory.ram_index`) equal to its lance table.
//!
//! Two halves: every committed write is applied to the live index (and, while a new one is being filled, to the
//! journal of it) under the collection's write lock, right after lance commits it; and [`refresh_ram_index`]
//! (called by upkeep) trains and fills a new index by scanning the table without blocking writers, then replays the
//! journal under the write lock before swapping it in — so no write falls between the scan and the swap, and a
//! query the index answers sees exactly what a lance query would.

use std::time::Instant;

use futures_util::TryStreamExt;
use lancedb::query::{ExecutableQuery, QueryBase, Select};

use super::super::MemoryError;
use super::super::ram_index::{self, RamIndex};
use super::arrow::{strings, vectors};
use super::{Collection, Doc, IndexPolicy, store_err};

/// A write to replay onto an in-memory index that was being filled when it was committed.
pub(super) enum Journaled {
    Upsert(ram_index::Row, Vec<f32>),
    Remove(String),
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

impl Collection {
    pub(super) fn ram(&self) -> std::sync::RwLockReadGuard<'_, Option<RamIndex>> {
        self.ram.read().unwrap_or_else(|p| p.into_inner())
    }

    fn ram_mut(&self) -> std::sync::RwLockWriteGuard<'_, Option<RamIndex>> {
        self.ram.write().unwrap_or_else(|p| p.into_inner())
    }

    fn journal(&self) -> std::sync::MutexGuard<'_, Option<Vec<Journaled>>> {
        self.journal.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether writes must reach an in-memory index (the live one, or one being filled).
    pub(super) fn keeps_ram(&self) -> bool {
        self.ram().is_some() || self.journal().is_some()
    }

    /// Apply committed upserts to the in-memory index. Call under `write`, after lance has committed.
    pub(super) fn ram_upserted(&self, docs: &[Doc]) {
        self.ram_apply(|| docs.iter().map(|d| Journaled::Upsert(ram_row(d), d.vector.clone())).collect());
    }

    /// Apply committed removals (by id) to the in-memory index. Call under `write`, after lance has committed.
    pub(super) fn ram_removed(&self, ids: Vec<String>) {
        self.ram_apply(|| ids.into_iter().map(Journaled::Remove).collect());
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

fn ram_row(d: &Doc) -> ram_index::Row {
    ram_index::Row {
        id: d.id.as_str().into(),
        text: d.text.as_deref().map(Into::into),
        metadata: (!d.metadata.is_null()).then(|| d.metadata.to_string().into()),
    }
}

/// Give a collection past the policy's threshold its in-memory index, or a retrained one once it has doubled since
/// the last training; drop it when the policy says none. Training and the fill run without blocking writers; the
/// writes committed during the fill are journaled and replayed under the write lock before the swap, so no write
/// falls between the scan and the swap.
pub(super) async fn refresh_ram_index(
    c: &Collection,
    name: &str,
    rows: usize,
    policy: &IndexPolicy,
) -> Result<(), MemoryError> {
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::RecordBatch;

    use super::super::Store;
    use super::*;
    use crate::config::AnnIndex;

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
}
