//! The `memory-upkeep` task: collection indexes, compaction and pruning on a schedule read from the live config.
//! (The `memory` task itself, which loads the model, is `Memory::run`.)

use std::sync::Arc;
use std::time::Duration;

use super::Memory;
use crate::config::live::LiveConfig;
use crate::supervisor::TaskCtx;

/// Every minute: an ANN index for collections past the threshold. Every `memory.optimize_interval`: compaction,
/// index refresh and version pruning of every collection.
pub(crate) async fn upkeep(ctx: TaskCtx, memory: Arc<Memory>, live: Arc<LiveConfig>) -> anyhow::Result<()> {
    ctx.ready("waiting for the first round");
    let mut last_full = std::time::Instant::now();
    loop {
        tokio::select! {
            _ = ctx.shutdown.cancelled() => return Ok(()),
            _ = tokio::time::sleep(Duration::from_secs(60)) => {}
        }
        let cfg = live.current().memory.clone();
        let full = last_full.elapsed() >= cfg.optimize_interval.as_std();
        let started = std::time::Instant::now();
        memory.store.maintain_all(&super::store::IndexPolicy::of(&cfg), full).await;
        // index builds and compaction free hundreds of MB of buffers that glibc would otherwise keep
        let _ = tokio::task::spawn_blocking(crate::util::release_free_heap).await;
        if full {
            last_full = std::time::Instant::now();
            ctx.ready(format!("last full round took {:.1}s", started.elapsed().as_secs_f64()));
        }
    }
}
