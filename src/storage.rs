//! The SQLite database in the data dir (`hearth.db`): opening with the pragmas an SD card wants, numbered
//! transactional migrations per component, and running queries off the async workers.
//!
//! Invariants: every schema change is a numbered migration of one component, applied in one transaction together
//! with its row in `schema_migrations`; a database written by a newer hearth is refused, never modified. Async code
//! reaches the connection only through [`Db::call`], which runs on tokio's blocking pool.

use crate::util::Locked;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, params};

pub(crate) const DB_FILE: &str = "hearth.db";

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("cannot create data dir {path}: {reason}")]
    DataDir { path: String, reason: String },
    #[error(
        "database component {component} is at schema {found}, newer than this hearth understands ({known}); refusing to touch it"
    )]
    TooNew { component: String, found: i64, known: i64 },
    #[error("migration {component} #{version} ({name}) failed: {source}")]
    Migration { component: String, version: i64, name: String, source: rusqlite::Error },
    #[error("database task panicked or was cancelled")]
    Join,
    #[error("upkeep job {job}: {reason}")]
    Upkeep { job: &'static str, reason: String },
}

/// One numbered schema change of one component.
pub struct Migration {
    pub version: i64,
    pub name: &'static str,
    pub sql: &'static str,
}

/// The migrations of every component, named by component: handed in by the wiring code (`app::migrations`),
/// so this module knows no subsystem.
pub(crate) type Components<'a> = &'a [(&'static str, &'static [Migration])];

#[derive(Clone)]
pub struct Db {
    conn: Arc<Mutex<Connection>>,
    path: PathBuf,
}

impl Db {
    /// Open (creating if needed) `<data_dir>/hearth.db` and apply pending migrations.
    pub fn open(data_dir: &Path, busy_timeout: Duration, components: Components<'_>) -> Result<Db, StorageError> {
        ensure_private_dir(data_dir)?;
        let path = data_dir.join(DB_FILE);
        let mut conn = Connection::open(&path)?;
        configure(&conn, busy_timeout)?;
        for (component, list) in components.iter().copied() {
            apply_migrations(&mut conn, component, list)?;
        }
        Ok(Db { conn: Arc::new(Mutex::new(conn)), path })
    }

    /// An in-memory database with `components`' migrations applied (tests).
    #[cfg(test)]
    pub fn open_in_memory(components: Components<'_>) -> Result<Db, StorageError> {
        let mut conn = Connection::open_in_memory()?;
        configure(&conn, Duration::from_secs(1))?;
        for (component, list) in components.iter().copied() {
            apply_migrations(&mut conn, component, list)?;
        }
        Ok(Db { conn: Arc::new(Mutex::new(conn)), path: PathBuf::from(":memory:") })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Run `f` with the connection on the blocking pool.
    pub async fn call<T, E, F>(&self, f: F) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<StorageError> + Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, E> + Send + 'static,
    {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            let mut guard = conn.locked();
            f(&mut guard)
        })
        .await
        .map_err(|_| E::from(StorageError::Join))?
    }

    /// Synchronous access for CLI commands (never call from an async worker).
    pub fn blocking<T>(&self, f: impl FnOnce(&mut Connection) -> T) -> T {
        let mut guard = self.conn.locked();
        f(&mut guard)
    }

    /// Periodic upkeep: a passive WAL checkpoint and `PRAGMA optimize`.
    pub async fn maintain(&self) -> Result<(), StorageError> {
        self.call(|c| {
            c.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))?;
            c.execute_batch("PRAGMA optimize;")?;
            Ok::<_, StorageError>(())
        })
        .await
    }
}

/// Create the data dir with mode 0700 if missing, and force it back to 0700 if it is not (every start: a data dir
/// made readable by hand or by a restore would expose keys and sessions to every local user).
pub(crate) fn ensure_private_dir(dir: &Path) -> Result<(), StorageError> {
    let was = crate::util::private_dir(dir)
        .map_err(|e| StorageError::DataDir { path: dir.display().to_string(), reason: e.to_string() })?;
    if let Some(mode) = was {
        tracing::warn!(path = %dir.display(), mode = format!("{mode:o}"), "the data directory was not private: set to 0700");
    }
    Ok(())
}

pub(crate) fn configure(conn: &Connection, busy_timeout: Duration) -> Result<(), StorageError> {
    conn.busy_timeout(busy_timeout)?;
    // WAL: readers never block the writer; NORMAL: fsync at checkpoints only (safe with WAL, kind to SD cards).
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
            component TEXT NOT NULL,
            version INTEGER NOT NULL,
            name TEXT NOT NULL,
            applied_at INTEGER NOT NULL,
            PRIMARY KEY (component, version)
        );",
    )?;
    Ok(())
}

/// The highest applied migration of `component` (0 when none).
pub(crate) fn schema_version(conn: &Connection, component: &str) -> Result<i64, StorageError> {
    Ok(conn
        .query_row("SELECT max(version) FROM schema_migrations WHERE component = ?1", [component], |r| {
            r.get::<_, Option<i64>>(0)
        })
        .optional()?
        .flatten()
        .unwrap_or(0))
}

/// Apply the pending migrations of one component, each in its own transaction.
pub(crate) fn apply_migrations(
    conn: &mut Connection,
    component: &str,
    list: &[Migration],
) -> Result<usize, StorageError> {
    let known = list.iter().map(|m| m.version).max().unwrap_or(0);
    let current = schema_version(conn, component)?;
    if current > known {
        return Err(StorageError::TooNew { component: component.into(), found: current, known });
    }
    let mut applied = 0;
    for m in list.iter().filter(|m| m.version > current) {
        let fail = |source| StorageError::Migration {
            component: component.into(),
            version: m.version,
            name: m.name.into(),
            source,
        };
        let tx = conn.transaction().map_err(fail)?;
        tx.execute_batch(m.sql).map_err(fail)?;
        tx.execute(
            "INSERT INTO schema_migrations (component, version, name, applied_at) VALUES (?1, ?2, ?3, ?4)",
            params![component, m.version, m.name, crate::util::unix_now()],
        )
        .map_err(fail)?;
        tx.commit().map_err(fail)?;
        applied += 1;
    }
    Ok(applied)
}

/// A periodic job on the database handed in by the wiring (e.g. removing expired sessions): returns how many rows
/// it touched.
pub(crate) type Upkeep = (&'static str, fn(&Connection, i64) -> Result<usize, String>);

/// The `storage` task: every `every()` (the live `storage.maintenance_interval`), the handed-in jobs, then a passive
/// WAL checkpoint and `PRAGMA optimize`. A failed round leaves the database usable: the task reports degraded and
/// tries again next round.
pub(crate) async fn task(
    ctx: crate::supervisor::TaskCtx,
    db: Db,
    every: Arc<dyn Fn() -> Duration + Send + Sync>,
    jobs: Vec<Upkeep>,
) -> Result<(), StorageError> {
    let ok = format!("{} (WAL)", db.path().display());
    ctx.ready(ok.clone());
    loop {
        // A failed upkeep round leaves the database usable: report degraded and try again next round.
        let now = crate::util::unix_now();
        let round = async {
            for (name, job) in jobs.iter().copied() {
                let n =
                    db.call(move |c| job(c, now).map_err(|e| StorageError::Upkeep { job: name, reason: e })).await?;
                tracing::debug!(job = name, rows = n, "storage upkeep job done");
            }
            db.maintain().await
        };
        match round.await {
            Ok(()) => {
                tracing::debug!("storage maintenance done");
                ctx.ready(ok.clone());
            }
            Err(e) => {
                tracing::warn!(error = %e, "storage maintenance failed");
                ctx.degraded(format!("maintenance failed: {e}"));
            }
        }
        let every = every();
        tokio::select! {
            _ = ctx.shutdown.cancelled() => return Ok(()),
            _ = tokio::time::sleep(every) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const V1: Migration = Migration { version: 1, name: "things", sql: "CREATE TABLE things (id INTEGER);" };
    const V2: Migration = Migration { version: 2, name: "things.name", sql: "ALTER TABLE things ADD name TEXT;" };
    const BAD: Migration =
        Migration { version: 3, name: "broken", sql: "ALTER TABLE things ADD other TEXT; SELECT * FROM nowhere;" };

    const COMPONENTS: Components<'static> = &[("things", &[V1, V2])];

    fn conn() -> Connection {
        let c = Connection::open_in_memory().unwrap();
        configure(&c, Duration::from_secs(1)).unwrap();
        c
    }

    #[test]
    fn migrations_apply_once_in_order() {
        let mut c = conn();
        assert_eq!(apply_migrations(&mut c, "t", &[V1]).unwrap(), 1);
        assert_eq!(apply_migrations(&mut c, "t", &[V1, V2]).unwrap(), 1);
        assert_eq!(apply_migrations(&mut c, "t", &[V1, V2]).unwrap(), 0);
        assert_eq!(schema_version(&c, "t").unwrap(), 2);
        assert_eq!(schema_version(&c, "other").unwrap(), 0);
        c.execute("INSERT INTO things (id, name) VALUES (1, 'a')", []).unwrap();
    }

    #[test]
    fn failed_migration_rolls_back_whole() {
        let mut c = conn();
        apply_migrations(&mut c, "t", &[V1, V2]).unwrap();
        let e = apply_migrations(&mut c, "t", &[V1, V2, BAD]).unwrap_err();
        assert!(e.to_string().contains("t #3 (broken)"), "{e}");
        assert_eq!(schema_version(&c, "t").unwrap(), 2);
        // the ALTER before the failing statement was rolled back
        assert!(c.prepare("SELECT other FROM things").is_err());
    }

    #[test]
    fn refuses_newer_database() {
        let mut c = conn();
        apply_migrations(&mut c, "t", &[V1, V2]).unwrap();
        let e = apply_migrations(&mut c, "t", &[V1]).unwrap_err();
        assert!(matches!(e, StorageError::TooNew { found: 2, known: 1, .. }), "{e}");
    }

    #[tokio::test]
    async fn file_database_uses_wal_and_private_dir() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let db = Db::open(&data, Duration::from_secs(1), COMPONENTS).unwrap();
        assert_eq!(std::fs::metadata(&data).unwrap().permissions().mode() & 0o777, 0o700);
        // an existing data dir opened up by hand is made private again at the next start
        std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
        drop(Db::open(&data, Duration::from_secs(1), COMPONENTS).unwrap());
        assert_eq!(std::fs::metadata(&data).unwrap().permissions().mode() & 0o777, 0o700);
        let (mode, sync): (String, i64) = db
            .call(|c| {
                let m = c.query_row("PRAGMA journal_mode", [], |r| r.get(0))?;
                let s = c.query_row("PRAGMA synchronous", [], |r| r.get(0))?;
                Ok::<_, StorageError>((m, s))
            })
            .await
            .unwrap();
        assert_eq!(mode, "wal");
        assert_eq!(sync, 1, "NORMAL");
        db.maintain().await.unwrap();
        // reopening applies nothing new
        drop(db);
        let db = Db::open(&data, Duration::from_secs(1), COMPONENTS).unwrap();
        let v = db.blocking(|c| schema_version(c, "things")).unwrap();
        assert_eq!(v, 2);
    }
}
