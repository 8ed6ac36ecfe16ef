//! Collection upkeep: which ANN index a collection gets ([`IndexPolicy`]) and building it once the collection is
//! past the threshold, refreshing the in-memory index, compaction and pruning of old versions — one round per
//! collection ([`Store::maintain`]), or every collection ([`Store::maintain_all`], the periodic task).

use std::time::Instant;

use lancedb::DistanceType;
use lancedb::index::Index;
use lancedb::index::IndexType;
use lancedb::index::vector::{IvfHnswSqIndexBuilder, IvfPqIndexBuilder, IvfSqIndexBuilder};
use lancedb::table::{OptimizeAction, OptimizeOptions};

use super::super::MemoryError;
use super::ram_sync::refresh_ram_index;
use super::{Collection, Store, VECTOR_INDEX, store_err};
use crate::config::{AnnIndex, MemoryConfig};

/// Which ANN index a collection gets, and past how many rows.
#[derive(Debug, Clone, Copy)]
pub(crate) struct IndexPolicy {
    pub threshold: usize,
    pub kind: AnnIndex,
    /// Keep a [`RamIndex`](super::super::ram_index::RamIndex) of collections past the threshold.
    pub ram: bool,
}

impl IndexPolicy {
    pub(crate) fn of(cfg: &MemoryConfig) -> Self {
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

impl Store {
    /// Upkeep of one collection: build the policy's ANN index once it is past the threshold (or rebuild it when the
    /// configured type changed); with `full`, also compact, fold new rows into the indexes and prune versions older
    /// than an hour. Returns whether an index was built.
    ///
    /// The round is one task on the store's runtime: a caller that stops waiting (a request past its timeout, a
    /// client that leaves) never cuts it between the index build and the compaction.
    pub(crate) async fn maintain(&self, name: &str, policy: &IndexPolicy, full: bool) -> Result<bool, MemoryError> {
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
    pub(crate) async fn maintain_all(&self, policy: &IndexPolicy, full: bool) {
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

#[cfg(test)]
mod tests {
    use futures_util::FutureExt;
    use serde_json::Value;

    use super::super::Doc;
    use super::*;

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
}
