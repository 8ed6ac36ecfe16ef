//! The time-series store's IO shell: `metrics.db` (series and blocks, its own SQLite file so that metric writes
//! never wait on the query log or sessions) and `metrics.wal` (an append-only file of write-ahead batches).
//!
//! Writes, kind to an SD card: samples go to the in-memory head; every [`FLUSH_EVERY`] the samples since the last
//! flush are appended to `metrics.wal` as one compressed record (a kill -9 loses at most that much); when a 2-hour
//! window ends its samples become one raw block per series in one transaction and the WAL is rewritten with what is
//! left. When a day (a week) of raw (1-minute) data is complete, its 1-minute (1-hour) roll-ups are written the same
//! way. Reads merge blocks, the head, and roll-ups computed on the fly for a tier's open window.
//!
//! Invariants: a sample is in exactly one of the head or a raw block; `done[k]` (persisted) is where tier k's
//! blocks end, and tier k's data after it is derived from tier k-1; the store never holds more than
//! [`MAX_SERIES`] series (new ones beyond are dropped and counted).

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rusqlite::{Connection, OptionalExtension, params};

use super::MetricsError;
use super::block::{self, Tier, TierUsage};
use super::model::{Labels, Point};

pub(crate) const MAX_SERIES: usize = 20_000;
pub(crate) const FLUSH_EVERY: std::time::Duration = std::time::Duration::from_secs(50);

pub(crate) const MIGRATIONS: &[crate::storage::Migration] = &[crate::storage::Migration {
    version: 1,
    name: "series, blocks and the roll-up progress",
    sql: "CREATE TABLE metrics_series (id INTEGER PRIMARY KEY, labels TEXT NOT NULL UNIQUE, name TEXT NOT NULL,
              last_ms INTEGER NOT NULL);
          CREATE INDEX metrics_series_name ON metrics_series (name);
          CREATE TABLE metrics_blocks (series INTEGER NOT NULL, tier INTEGER NOT NULL, start_ms INTEGER NOT NULL,
              end_ms INTEGER NOT NULL, data BLOB NOT NULL, PRIMARY KEY (series, tier, start_ms)) WITHOUT ROWID;
          CREATE INDEX metrics_blocks_tier ON metrics_blocks (tier, end_ms);
          CREATE TABLE metrics_meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);",
}];

struct Series {
    labels: Labels,
    /// raw samples not yet in a block (sorted by time)
    head: Vec<(i64, f64)>,
    last_ms: i64,
    persisted: bool,
}

struct Inner {
    series: Vec<Option<Series>>, // by id - 1
    by_key: HashMap<String, u32>,
    /// samples appended since the last flush
    pending: Vec<(u32, i64, f64)>,
    /// end of each tier's written blocks (tier 0: the open raw window's start)
    done: [i64; 3],
    tiers: [Tier; 3],
    dropped_series: u64,
    cap_shortened: bool,
}

/// What the UI and `/metrics` show about the store.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub(crate) struct StoreStats {
    pub series: usize,
    pub head_samples: usize,
    pub disk_bytes: u64,
    /// bytes of blocks per tier: raw, 1 m, 1 h
    pub tier_bytes: [u64; 3],
    /// oldest data per tier (Unix ms), if any
    pub tier_oldest_ms: [Option<i64>; 3],
    pub dropped_series: u64,
    /// whether `metrics.max_disk` shortened a tier below its retention
    pub cap_shortened: bool,
    pub in_memory: bool,
}

pub(crate) struct Store {
    conn: Mutex<Connection>,
    inner: Mutex<Inner>,
    wal: Option<PathBuf>,
    db_path: Option<PathBuf>,
}

fn sql(e: rusqlite::Error) -> MetricsError {
    MetricsError::Store(e.to_string())
}

fn align(t: i64, w: i64) -> i64 {
    t.div_euclid(w) * w
}

impl Store {
    /// Open `<dir>/metrics.db` and replay `metrics.wal`; `dir = None` keeps everything in memory.
    pub(crate) fn open(dir: Option<&Path>, tiers: [Tier; 3], now: i64) -> Result<Store, MetricsError> {
        let mut conn = match dir {
            Some(d) => {
                crate::storage::ensure_private_dir(d).map_err(|e| MetricsError::Store(e.to_string()))?;
                let c = Connection::open(d.join("metrics.db")).map_err(sql)?;
                // freed pages go back to the file system a few at a time (retention deletes whole days)
                c.pragma_update(None, "auto_vacuum", "INCREMENTAL").map_err(sql)?;
                c
            }
            None => Connection::open_in_memory().map_err(sql)?,
        };
        crate::storage::configure(&conn, std::time::Duration::from_secs(5))
            .map_err(|e| MetricsError::Store(e.to_string()))?;
        crate::storage::apply_migrations(&mut conn, "metrics", MIGRATIONS)
            .map_err(|e| MetricsError::Store(e.to_string()))?;
        let mut inner = Inner {
            series: vec![],
            by_key: HashMap::new(),
            pending: vec![],
            done: [align(now, tiers[0].window_ms), align(now, tiers[1].window_ms), align(now, tiers[2].window_ms)],
            tiers,
            dropped_series: 0,
            cap_shortened: false,
        };
        {
            let mut st = conn.prepare("SELECT id, labels, last_ms FROM metrics_series").map_err(sql)?;
            let rows = st
                .query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?, r.get::<_, i64>(2)?)))
                .map_err(sql)?;
            for row in rows {
                let (id, key, last_ms) = row.map_err(sql)?;
                let Some(labels) = Labels::from_key(&key) else { continue };
                let idx = id as usize - 1;
                if inner.series.len() <= idx {
                    inner.series.resize_with(idx + 1, || None);
                }
                inner.by_key.insert(key, id as u32);
                inner.series[idx] = Some(Series { labels, head: vec![], last_ms, persisted: true });
            }
            for (k, key) in ["done_0", "done_1", "done_2"].iter().enumerate() {
                if let Some(v) = conn
                    .query_row("SELECT value FROM metrics_meta WHERE key = ?1", [key], |r| r.get::<_, i64>(0))
                    .optional()
                    .map_err(sql)?
                {
                    inner.done[k] = v;
                }
            }
        }
        let wal = dir.map(|d| d.join("metrics.wal"));
        let store =
            Store { conn: Mutex::new(conn), inner: Mutex::new(inner), wal, db_path: dir.map(|d| d.join("metrics.db")) };
        store.replay()?;
        Ok(store)
    }

    /// Read `metrics.wal` back into the head; a torn last record (a crash mid-append) is ignored.
    fn replay(&self) -> Result<(), MetricsError> {
        let Some(path) = &self.wal else { return Ok(()) };
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(MetricsError::Store(format!("{}: {e}", path.display()))),
        };
        let mut inner = self.inner.lock().expect("metrics store lock");
        let mut rest = &bytes[..];
        let mut n = 0usize;
        while rest.len() >= 12 {
            let len = u32::from_le_bytes(rest[..4].try_into().expect("4")) as usize;
            let sum = u64::from_le_bytes(rest[4..12].try_into().expect("8"));
            if rest.len() < 12 + len || xxhash_rust::xxh3::xxh3_64(&rest[12..12 + len]) != sum {
                tracing::warn!(path = %path.display(), "metrics.wal ends in a torn record; ignoring it");
                break;
            }
            match block::decode_batch(&rest[12..12 + len]) {
                Ok(rows) => {
                    let open = inner.done[0];
                    for (id, t, v) in rows {
                        if let Some(Some(s)) = inner.series.get_mut((id as usize).wrapping_sub(1))
                            && t >= open
                        {
                            insert_sorted(&mut s.head, t, v);
                            s.last_ms = s.last_ms.max(t);
                            n += 1;
                        }
                    }
                }
                Err(e) => tracing::warn!(error = %e, "skipping an unreadable metrics.wal record"),
            }
            rest = &rest[12 + len..];
        }
        tracing::debug!(samples = n, "metrics.wal replayed");
        Ok(())
    }

    /// Add samples taken at `t` (Unix ms).
    pub(crate) fn append(&self, t: i64, samples: impl IntoIterator<Item = (Labels, f64)>) {
        let mut inner = self.inner.lock().expect("metrics store lock");
        for (labels, v) in samples {
            let key = labels.key();
            let id = match inner.by_key.get(&key) {
                Some(id) => *id,
                None => {
                    if inner.by_key.len() >= MAX_SERIES {
                        inner.dropped_series += 1;
                        continue;
                    }
                    inner.series.push(Some(Series { labels, head: vec![], last_ms: t, persisted: false }));
                    let id = inner.series.len() as u32;
                    inner.by_key.insert(key, id);
                    id
                }
            };
            if t < inner.done[0] {
                continue; // older than the open window: its block is written
            }
            let s = inner.series[id as usize - 1].as_mut().expect("indexed series exist");
            insert_sorted(&mut s.head, t, v);
            s.last_ms = s.last_ms.max(t);
            inner.pending.push((id, t, v));
        }
    }

    /// Append the pending samples to the WAL, and close every raw window that ended before `now` (blocks, roll-ups,
    /// WAL rewrite). Called every [`FLUSH_EVERY`] and at shutdown.
    pub(crate) fn flush(&self, now: i64) -> Result<(), MetricsError> {
        let (pending, new_series) = {
            let mut inner = self.inner.lock().expect("metrics store lock");
            let pending = std::mem::take(&mut inner.pending);
            let mut new_series = vec![];
            for (i, s) in inner.series.iter_mut().enumerate() {
                if let Some(s) = s
                    && !s.persisted
                {
                    new_series.push((i as i64 + 1, s.labels.key(), s.labels.name().to_string(), s.last_ms));
                    s.persisted = true;
                }
            }
            (pending, new_series)
        };
        if !new_series.is_empty() {
            let mut conn = self.conn.lock().expect("metrics db lock");
            let tx = conn.transaction().map_err(sql)?;
            for (id, key, name, last) in &new_series {
                tx.execute(
                    "INSERT OR IGNORE INTO metrics_series (id, labels, name, last_ms) VALUES (?1, ?2, ?3, ?4)",
                    params![id, key, name, last],
                )
                .map_err(sql)?;
            }
            tx.commit().map_err(sql)?;
        }
        if let Some(path) = &self.wal
            && !pending.is_empty()
        {
            let rec = block::encode_batch(&pending);
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|e| MetricsError::Store(format!("{}: {e}", path.display())))?;
            let mut buf = Vec::with_capacity(rec.len() + 12);
            buf.extend_from_slice(&(rec.len() as u32).to_le_bytes());
            buf.extend_from_slice(&xxhash_rust::xxh3::xxh3_64(&rec).to_le_bytes());
            buf.extend_from_slice(&rec);
            f.write_all(&buf).map_err(|e| MetricsError::Store(format!("{}: {e}", path.display())))?;
        }
        self.close_windows(now)
    }

    fn close_windows(&self, now: i64) -> Result<(), MetricsError> {
        loop {
            let (tiers, done) = {
                let inner = self.inner.lock().expect("metrics store lock");
                (inner.tiers, inner.done)
            };
            let end0 = done[0] + tiers[0].window_ms;
            if now < end0 {
                return Ok(());
            }
            // raw blocks for [done0, end0)
            let blocks: Vec<(u32, Vec<u8>, i64)> = {
                let inner = self.inner.lock().expect("metrics store lock");
                inner
                    .series
                    .iter()
                    .enumerate()
                    .filter_map(|(i, s)| {
                        let s = s.as_ref()?;
                        let n = s.head.partition_point(|p| p.0 < end0);
                        (n > 0).then(|| (i as u32 + 1, block::encode_raw(&s.head[..n]), s.last_ms))
                    })
                    .collect()
            };
            {
                let mut conn = self.conn.lock().expect("metrics db lock");
                let tx = conn.transaction().map_err(sql)?;
                for (id, data, last) in &blocks {
                    tx.execute(
                        "INSERT OR REPLACE INTO metrics_blocks (series, tier, start_ms, end_ms, data) VALUES (?1, 0, ?2, ?3, ?4)",
                        params![id, done[0], end0, data],
                    )
                    .map_err(sql)?;
                    tx.execute("UPDATE metrics_series SET last_ms = ?2 WHERE id = ?1", params![id, last])
                        .map_err(sql)?;
                }
                set_meta(&tx, "done_0", end0)?;
                tx.commit().map_err(sql)?;
            }
            let remaining = {
                let mut inner = self.inner.lock().expect("metrics store lock");
                inner.done[0] = end0;
                let mut rest = vec![];
                for (i, s) in inner.series.iter_mut().enumerate() {
                    if let Some(s) = s {
                        let n = s.head.partition_point(|p| p.0 < end0);
                        s.head.drain(..n);
                        rest.extend(s.head.iter().map(|&(t, v)| (i as u32 + 1, t, v)));
                    }
                }
                // samples still pending are in `rest` too
                inner.pending.clear();
                rest
            };
            self.rewrite_wal(&remaining)?;
            // coarser tiers whose window is now complete
            for k in 1..3 {
                loop {
                    let (done_k, done_prev, win) = {
                        let inner = self.inner.lock().expect("metrics store lock");
                        (inner.done[k], inner.done[k - 1], inner.tiers[k].window_ms)
                    };
                    if done_k + win > done_prev {
                        break;
                    }
                    self.write_rollups(k, done_k, done_k + win)?;
                }
            }
        }
    }

    fn rewrite_wal(&self, rows: &[(u32, i64, f64)]) -> Result<(), MetricsError> {
        let Some(path) = &self.wal else { return Ok(()) };
        let tmp = path.with_extension("wal.tmp");
        let io = |e: std::io::Error| MetricsError::Store(format!("{}: {e}", path.display()));
        let mut buf = vec![];
        if !rows.is_empty() {
            let rec = block::encode_batch(rows);
            buf.extend_from_slice(&(rec.len() as u32).to_le_bytes());
            buf.extend_from_slice(&xxhash_rust::xxh3::xxh3_64(&rec).to_le_bytes());
            buf.extend_from_slice(&rec);
        }
        std::fs::write(&tmp, &buf).map_err(io)?;
        std::fs::rename(&tmp, path).map_err(io)
    }

    /// Tier `k`'s blocks for `[start, end)`, rolled up from tier `k - 1`.
    fn write_rollups(&self, k: usize, start: i64, end: i64) -> Result<(), MetricsError> {
        let (ids, step) = {
            let inner = self.inner.lock().expect("metrics store lock");
            let ids: Vec<u32> =
                inner.series.iter().enumerate().filter_map(|(i, s)| s.as_ref().map(|_| i as u32 + 1)).collect();
            (ids, inner.tiers[k].step_ms)
        };
        let mut out = vec![];
        for id in ids {
            let pts = self.read(id, k - 1, start, end - 1)?;
            if !pts.is_empty() {
                out.push((id, block::encode_rollup(&block::rollup(&pts, step))));
            }
        }
        let mut conn = self.conn.lock().expect("metrics db lock");
        let tx = conn.transaction().map_err(sql)?;
        for (id, data) in &out {
            tx.execute(
                "INSERT OR REPLACE INTO metrics_blocks (series, tier, start_ms, end_ms, data) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![id, k as i64, start, end, data],
            )
            .map_err(sql)?;
        }
        set_meta(&tx, &format!("done_{k}"), end)?;
        tx.commit().map_err(sql)?;
        self.inner.lock().expect("metrics store lock").done[k] = end;
        Ok(())
    }

    /// The points of series `id` at tier `k` with `start <= t <= end`.
    fn read(&self, id: u32, k: usize, start: i64, end: i64) -> Result<Vec<Point>, MetricsError> {
        let (done_k, step) = {
            let inner = self.inner.lock().expect("metrics store lock");
            (inner.done[k], inner.tiers[k].step_ms)
        };
        let mut pts = vec![];
        if start < done_k {
            let conn = self.conn.lock().expect("metrics db lock");
            let mut st = conn
                .prepare_cached(
                    "SELECT data FROM metrics_blocks WHERE series = ?1 AND tier = ?2 AND start_ms <= ?4 AND end_ms > ?3
                     ORDER BY start_ms",
                )
                .map_err(sql)?;
            let rows = st.query_map(params![id, k as i64, start, end], |r| r.get::<_, Vec<u8>>(0)).map_err(sql)?;
            for data in rows {
                let data = data.map_err(sql)?;
                match block::decode(&data) {
                    Ok(b) => pts.extend(b.into_iter().filter(|p| p.t >= start && p.t <= end)),
                    Err(e) => tracing::warn!(series = id, tier = k, error = %e, "skipping an unreadable metrics block"),
                }
            }
        }
        if end >= done_k {
            let from = start.max(done_k);
            if k == 0 {
                let inner = self.inner.lock().expect("metrics store lock");
                if let Some(Some(s)) = inner.series.get(id as usize - 1) {
                    let a = s.head.partition_point(|p| p.0 < from);
                    let b = s.head.partition_point(|p| p.0 <= end);
                    pts.extend(s.head[a..b].iter().map(|&(t, v)| Point::raw(t, v)));
                }
            } else {
                // the open window: roll up the finer tier, from the step boundary so the first step is whole
                let finer = self.read(id, k - 1, align(from, step), end)?;
                pts.extend(block::rollup(&finer, step).into_iter().filter(|p| p.t >= from));
            }
        }
        Ok(pts)
    }

    /// Every series whose labels pass `matches` (the name, when given, narrows first), with its points at tier
    /// `k` in `[start, end]`; series without points there are left out.
    pub(crate) fn select(
        &self,
        name: Option<&str>,
        matches: &dyn Fn(&Labels) -> bool,
        k: usize,
        start: i64,
        end: i64,
    ) -> Result<Vec<(Labels, Vec<Point>)>, MetricsError> {
        let ids: Vec<(u32, Labels)> = {
            let inner = self.inner.lock().expect("metrics store lock");
            inner
                .series
                .iter()
                .enumerate()
                .filter_map(|(i, s)| {
                    let s = s.as_ref()?;
                    if name.is_some_and(|n| s.labels.name() != n) || s.last_ms < start || !matches(&s.labels) {
                        return None;
                    }
                    Some((i as u32 + 1, s.labels.clone()))
                })
                .collect()
        };
        let mut out = vec![];
        for (id, labels) in ids {
            let pts = self.read(id, k, start, end)?;
            if !pts.is_empty() {
                out.push((labels, pts));
            }
        }
        Ok(out)
    }

    /// Labels of the series that pass `matches` and have data in `[start, end]` (by their last sample time and
    /// the oldest data kept; exact enough for `/series` and `/labels`).
    pub(crate) fn series(&self, matches: &dyn Fn(&Labels) -> bool, start: i64) -> Vec<Labels> {
        let inner = self.inner.lock().expect("metrics store lock");
        let mut v: Vec<Labels> = inner
            .series
            .iter()
            .filter_map(|s| s.as_ref())
            .filter(|s| s.last_ms >= start && matches(&s.labels))
            .map(|s| s.labels.clone())
            .collect();
        v.sort();
        v
    }

    /// A value kept in `metrics_meta` (e.g. a remote-write receiver's cursor).
    pub(crate) fn meta(&self, key: &str) -> Result<Option<i64>, MetricsError> {
        let conn = self.conn.lock().expect("metrics db lock");
        conn.query_row("SELECT value FROM metrics_meta WHERE key = ?1", [key], |r| r.get(0)).optional().map_err(sql)
    }

    pub(crate) fn set_meta(&self, key: &str, v: i64) -> Result<(), MetricsError> {
        let mut conn = self.conn.lock().expect("metrics db lock");
        let tx = conn.transaction().map_err(sql)?;
        set_meta(&tx, key, v)?;
        tx.commit().map_err(sql)
    }

    pub(crate) fn tiers(&self) -> [Tier; 3] {
        self.inner.lock().expect("metrics store lock").tiers
    }

    pub(crate) fn set_tiers(&self, tiers: [Tier; 3]) {
        self.inner.lock().expect("metrics store lock").tiers = tiers;
    }

    /// Apply retention by age and the disk cap; forget series that have no data left.
    pub(crate) fn enforce_retention(&self, now: i64, max_bytes: u64) -> Result<(), MetricsError> {
        let tiers = self.tiers();
        let conn = self.conn.lock().expect("metrics db lock");
        // the retention plan counts each block's row overhead too (about 40 bytes in SQLite)
        let usage =
            tier_usage(&conn)?.map(|(data, blocks, oldest_ms)| TierUsage { bytes: data + blocks * 40, oldest_ms });
        let (cut, shortened) = block::retention_plan(now, &tiers, &usage, max_bytes);
        for (k, c) in cut.iter().enumerate() {
            conn.execute("DELETE FROM metrics_blocks WHERE tier = ?1 AND end_ms <= ?2", params![k as i64, c])
                .map_err(sql)?;
        }
        // series with no block and no recent sample are forgotten
        let oldest_kept = cut.iter().copied().min().unwrap_or(now);
        let gone: Vec<i64> = {
            let mut st = conn
                .prepare(
                    "SELECT id FROM metrics_series s WHERE last_ms < ?1
                     AND NOT EXISTS (SELECT 1 FROM metrics_blocks b WHERE b.series = s.id)",
                )
                .map_err(sql)?;
            st.query_map([oldest_kept], |r| r.get(0)).map_err(sql)?.collect::<Result<_, _>>().map_err(sql)?
        };
        for id in &gone {
            conn.execute("DELETE FROM metrics_series WHERE id = ?1", [id]).map_err(sql)?;
        }
        conn.execute_batch("PRAGMA incremental_vacuum;").map_err(sql)?;
        drop(conn);
        let mut inner = self.inner.lock().expect("metrics store lock");
        inner.cap_shortened = shortened;
        for id in gone {
            if let Some(slot) = inner.series.get_mut(id as usize - 1)
                && let Some(s) = slot.take()
            {
                inner.by_key.remove(&s.labels.key());
            }
        }
        Ok(())
    }

    pub(crate) fn stats(&self) -> StoreStats {
        let (series, head_samples, dropped_series, cap_shortened) = {
            let inner = self.inner.lock().expect("metrics store lock");
            let live = inner.series.iter().flatten();
            (inner.by_key.len(), live.map(|s| s.head.len()).sum(), inner.dropped_series, inner.cap_shortened)
        };
        let conn = self.conn.lock().expect("metrics db lock");
        let usage = tier_usage(&conn).unwrap_or_default();
        let tier_bytes = usage.map(|(data, _, _)| data);
        let tier_oldest_ms = usage.map(|(_, _, oldest)| oldest);
        drop(conn);
        let file = |p: &Option<PathBuf>| p.as_ref().and_then(|p| std::fs::metadata(p).ok()).map_or(0, |m| m.len());
        let wal_side = self.db_path.as_ref().map(|p| p.with_extension("db-wal"));
        let disk_bytes = file(&self.db_path) + file(&wal_side) + file(&self.wal);
        StoreStats {
            series,
            head_samples,
            disk_bytes,
            tier_bytes,
            tier_oldest_ms,
            dropped_series,
            cap_shortened,
            in_memory: self.wal.is_none(),
        }
    }
}

/// Per tier: bytes of block data, number of blocks, and the oldest block's start.
fn tier_usage(conn: &Connection) -> Result<[(u64, u64, Option<i64>); 3], MetricsError> {
    let mut out = [(0, 0, None); 3];
    let mut st = conn
        .prepare_cached("SELECT tier, SUM(length(data)), COUNT(*), MIN(start_ms) FROM metrics_blocks GROUP BY tier")
        .map_err(sql)?;
    let rows = st
        .query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?, r.get::<_, i64>(2)?, r.get::<_, i64>(3)?)))
        .map_err(sql)?;
    for row in rows {
        let (k, data, blocks, oldest) = row.map_err(sql)?;
        if let Some(slot) = out.get_mut(k as usize) {
            *slot = (data as u64, blocks as u64, Some(oldest));
        }
    }
    Ok(out)
}

fn set_meta(tx: &rusqlite::Transaction<'_>, key: &str, v: i64) -> Result<(), MetricsError> {
    tx.execute(
        "INSERT INTO metrics_meta (key, value) VALUES (?1, ?2) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        params![key, v],
    )
    .map_err(sql)?;
    Ok(())
}

fn insert_sorted(v: &mut Vec<(i64, f64)>, t: i64, x: f64) {
    match v.last() {
        Some(&(last, _)) if last < t => v.push((t, x)),
        None => v.push((t, x)),
        _ => {
            let i = v.partition_point(|p| p.0 < t);
            if v.get(i).is_some_and(|p| p.0 == t) {
                v[i].1 = x; // the same timestamp again: the newer value wins
            } else {
                v.insert(i, (t, x));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::block::{DAY, HOUR, tiers};

    fn l(name: &str, i: usize) -> Labels {
        Labels::from_pairs(name, &[("i", &i.to_string())])
    }

    fn all(s: &Store, k: usize, a: i64, b: i64) -> Vec<(Labels, Vec<Point>)> {
        s.select(None, &|_| true, k, a, b).unwrap()
    }

    #[test]
    fn samples_survive_a_restart_through_the_wal_and_blocks() {
        let dir = tempfile::tempdir().unwrap();
        let t0 = 10 * DAY;
        let tiers = tiers(48 * HOUR, 14 * DAY, 400 * DAY);
        {
            let s = Store::open(Some(dir.path()), tiers, t0).unwrap();
            for step in 0..1003i64 {
                let t = t0 + step * 10_000;
                s.append(t, (0..3).map(|i| (l("m", i), (step * (i as i64 + 1)) as f64)));
                if step % 5 == 4 {
                    s.flush(t).unwrap();
                }
            }
            // the last 3 samples of each series were never flushed: a kill -9 loses them
        }
        let s = Store::open(Some(dir.path()), tiers, t0 + 10_000 * 1000).unwrap();
        let got = all(&s, 0, t0, t0 + DAY);
        assert_eq!(got.len(), 3);
        for (labels, pts) in &got {
            let i: f64 = labels.get("i").unwrap().parse().unwrap();
            assert_eq!(pts.len(), 1000, "{labels:?}");
            assert!(
                pts.iter().enumerate().all(|(n, p)| p.last == n as f64 * (i + 1.0) && p.t == t0 + n as i64 * 10_000)
            );
        }
        // the first two 2-hour windows are blocks now
        assert!(s.stats().tier_bytes[0] > 0);
        assert!(dir.path().join("metrics.wal").metadata().unwrap().len() < 20_000);
    }

    #[test]
    fn rollup_tiers_agree_with_raw_and_are_written_when_a_day_ends() {
        let tiers = tiers(48 * HOUR, 14 * DAY, 400 * DAY);
        let t0 = 70 * DAY; // a week boundary (the epoch's week)
        let s = Store::open(None, tiers, t0).unwrap();
        let mut t = t0;
        while t < t0 + 2 * DAY + 3 * HOUR {
            s.append(t, [(l("g", 0), ((t - t0) / 60_000) as f64)]);
            t += 10_000;
            if (t - t0) % 600_000 == 0 {
                s.flush(t).unwrap();
            }
        }
        // 1-minute tier: day 1 is a block, day 3 is rolled up on the fly; both agree with raw
        for (a, b) in [(t0, t0 + DAY - 1), (t0 + 2 * DAY, t0 + 2 * DAY + HOUR)] {
            let m1 = &all(&s, 1, a, b)[0].1;
            assert_eq!(m1.len(), ((b - a + 1) / 60_000) as usize + usize::from(b - a + 1 < DAY), "{a}");
            let raw = &all(&s, 0, a, b)[0].1;
            assert_eq!(block::rollup(raw, 60_000)[..m1.len() - 1], m1[..m1.len() - 1]);
            assert!(m1[..m1.len() - 1].iter().all(|p| p.count == 6.0 && p.min == p.max));
        }
        let h1 = &all(&s, 2, t0, t0 + 2 * DAY - 1)[0].1;
        assert_eq!(h1.len(), 48);
        assert_eq!(h1[1].min, 60.0);
        assert_eq!(h1[1].max, 119.0);
        assert_eq!(h1[1].count, 360.0);
        assert!(s.stats().tier_bytes[1] > 0);
    }

    #[test]
    fn retention_removes_old_blocks_and_forgets_dead_series() {
        let tiers = tiers(26 * HOUR, 8 * DAY, 30 * DAY);
        let t0 = 7 * DAY;
        let s = Store::open(None, tiers, t0).unwrap();
        s.append(t0, [(l("gone", 0), 1.0)]);
        let mut t = t0;
        while t < t0 + 3 * DAY {
            s.append(t, [(l("kept", 0), 1.0)]);
            t += 60_000;
            if (t - t0) % HOUR == 0 {
                s.flush(t).unwrap();
            }
        }
        s.enforce_retention(t, u64::MAX).unwrap();
        assert!(all(&s, 0, 0, t0 + DAY).is_empty(), "raw older than 26 h is gone");
        assert_eq!(s.series(&|_| true, 0).len(), 2, "the old series still has roll-ups");
        let kept = s.select(Some("kept"), &|_| true, 1, 0, t).unwrap();
        assert_eq!(kept[0].1.len() as i64, 3 * 24 * 60);
    }

    #[test]
    fn the_series_cap_drops_new_series_and_counts_them() {
        let s = Store::open(None, tiers(48 * HOUR, 14 * DAY, 400 * DAY), 0).unwrap();
        s.append(1, (0..MAX_SERIES + 5).map(|i| (l("x", i), 1.0)));
        assert_eq!(s.stats().series, MAX_SERIES);
        assert_eq!(s.stats().dropped_series, 5);
    }
}
