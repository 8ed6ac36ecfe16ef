//! Alerts (Alertmanager for a homelab): rules in PromQL evaluated over the metrics history (or LogQL metric queries
//! over the logs), the state machine
//! (`state.rs`, pure), persisted state, history and silences in `hearth.db`, and a notification outbox delivered to
//! the channels (`channel.rs`) with retries and backoff.
//!
//! This subsystem knows neither the metrics nor the logs subsystem: the wiring hands it an [`Evaluator`] (an
//! instant query in the rule's language) and a [`Checker`] (does an expression parse).
//!
//! Invariants: an evaluation round's state changes, history rows and notices are written in one transaction, so a
//! kill -9 neither loses a notice (it is in the outbox, delivered after the restart) nor repeats one (the round
//! that would send it again is not committed); a notice leaves the outbox only once its channel accepted it or
//! after [`GIVE_UP_MS`] of retries.

pub(crate) mod channel;
pub(crate) mod state;
pub(crate) mod task;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, params};

use crate::config::QueryLanguage;
use crate::storage::{Db, Migration};
use crate::util::Locked;
use state::{Active, LabelSet, Silence};

#[derive(Debug, thiserror::Error)]
pub(crate) enum AlertsError {
    #[error("storage: {0}")]
    Storage(#[from] crate::storage::StorageError),
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("{0}")]
    Invalid(String),
    #[error("no channel named {0:?}")]
    NoChannel(String),
    #[error("no silence {0}")]
    NoSilence(i64),
    #[error("the channel refused the notice: {0}")]
    Delivery(String),
}

pub(crate) const MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    name: "alert state, outbox, history and silences",
    sql: "CREATE TABLE alerts_active (key TEXT PRIMARY KEY, data TEXT NOT NULL);
          CREATE TABLE alerts_outbox (id INTEGER PRIMARY KEY, channel TEXT NOT NULL, notice TEXT NOT NULL,
              attempts INTEGER NOT NULL DEFAULT 0, next_ms INTEGER NOT NULL, created_ms INTEGER NOT NULL,
              last_error TEXT);
          CREATE TABLE alerts_history (id INTEGER PRIMARY KEY, ts_ms INTEGER NOT NULL, kind TEXT NOT NULL,
              rule TEXT NOT NULL, labels TEXT NOT NULL, summary TEXT NOT NULL, value REAL NOT NULL,
              silenced INTEGER NOT NULL);
          CREATE INDEX alerts_history_ts ON alerts_history (ts_ms);
          CREATE TABLE alerts_silences (id INTEGER PRIMARY KEY, matchers TEXT NOT NULL, until_ms INTEGER NOT NULL,
              comment TEXT NOT NULL, created_by TEXT NOT NULL, created_ms INTEGER NOT NULL);",
}];

/// Retries of a notice stop after a day.
pub(crate) const GIVE_UP_MS: i64 = 24 * 3600 * 1000;
/// History kept: 30 days, at most this many rows.
const HISTORY_ROWS: i64 = 5000;

/// An instant query (PromQL over the metrics, or a LogQL metric query over the logs) at a time (ms): the label
/// sets and values it returns.
pub(crate) type Evaluator = Arc<dyn Fn(QueryLanguage, &str, i64) -> Result<Vec<(LabelSet, f64)>, String> + Send + Sync>;
/// Whether an expression parses in its language (for the config check).
pub(crate) type Checker = Arc<dyn Fn(QueryLanguage, &str) -> Result<(), String> + Send + Sync>;

/// A channel's last delivery, for the UI.
#[derive(Debug, Clone, Default, serde::Serialize, utoipa::ToSchema)]
pub(crate) struct ChannelStatus {
    pub last_ok_ms: Option<i64>,
    pub last_error: Option<String>,
    pub last_error_ms: Option<i64>,
}

/// One history row.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub(crate) struct HistoryEntry {
    pub ts_ms: i64,
    /// `firing`, `repeat`, `resolved`
    pub kind: String,
    pub rule: String,
    pub labels: LabelSet,
    pub summary: String,
    pub value: f64,
    pub silenced: bool,
}

pub(crate) struct Alerts {
    pub(crate) db: Db,
    pub(crate) active: Mutex<HashMap<String, Active>>,
    pub(crate) channels: Mutex<HashMap<String, ChannelStatus>>,
    /// the last round's errors by rule (an expression that fails to evaluate)
    pub(crate) rule_errors: Mutex<HashMap<String, String>>,
    pub(crate) evaluate: Evaluator,
    /// wakes the delivery loop when a round queued notices
    pub(crate) wake: tokio::sync::Notify,
}

impl Alerts {
    /// Load the persisted state.
    pub(crate) async fn open(db: Db, evaluate: Evaluator) -> Result<Arc<Alerts>, AlertsError> {
        let active = db
            .call(|c| {
                let mut st = c.prepare("SELECT data FROM alerts_active")?;
                let rows = st.query_map([], |r| r.get::<_, String>(0))?;
                let mut m = HashMap::new();
                for r in rows {
                    if let Ok(a) = serde_json::from_str::<Active>(&r?) {
                        m.insert(a.key(), a);
                    }
                }
                Ok::<_, crate::storage::StorageError>(m)
            })
            .await?;
        Ok(Arc::new(Alerts {
            db,
            active: Mutex::new(active),
            channels: Mutex::default(),
            rule_errors: Mutex::default(),
            evaluate,
            wake: tokio::sync::Notify::new(),
        }))
    }

    pub(crate) fn active(&self) -> Vec<Active> {
        let mut v: Vec<Active> = self.active.locked().values().cloned().collect();
        v.sort_by(|a, b| a.rule.cmp(&b.rule).then(a.since_ms.cmp(&b.since_ms)));
        v
    }

    pub(crate) async fn silences(&self, now: i64) -> Result<Vec<Silence>, AlertsError> {
        Ok(self.db.call(move |c| load_silences(c, now)).await?)
    }

    pub(crate) async fn add_silence(&self, s: Silence) -> Result<Silence, AlertsError> {
        if s.matchers.is_empty() || s.matchers.iter().any(|m| m.name.trim().is_empty()) {
            return Err(AlertsError::Invalid("a silence needs at least one matcher, each with a label name".into()));
        }
        for m in s.matchers.iter().filter(|m| m.regex) {
            regex::Regex::new(&m.value).map_err(|e| AlertsError::Invalid(format!("matcher {}: {e}", m.name)))?;
        }
        let json = serde_json::to_string(&s.matchers).expect("matchers serialize");
        let mut s2 = s.clone();
        let id = self
            .db
            .call(move |c| {
                c.execute(
                    "INSERT INTO alerts_silences (matchers, until_ms, comment, created_by, created_ms) VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![json, s.until_ms, s.comment, s.created_by, s.created_ms],
                )?;
                Ok::<_, crate::storage::StorageError>(c.last_insert_rowid())
            })
            .await?;
        s2.id = id;
        Ok(s2)
    }

    pub(crate) async fn expire_silence(&self, id: i64, now: i64) -> Result<(), AlertsError> {
        let n = self
            .db
            .call(move |c| {
                Ok::<_, crate::storage::StorageError>(c.execute(
                    "UPDATE alerts_silences SET until_ms = ?2 WHERE id = ?1 AND until_ms > ?2",
                    params![id, now],
                )?)
            })
            .await?;
        if n == 0 { Err(AlertsError::NoSilence(id)) } else { Ok(()) }
    }

    pub(crate) async fn history(&self, limit: usize) -> Result<Vec<HistoryEntry>, AlertsError> {
        Ok(self
            .db
            .call(move |c| {
                let mut st = c.prepare(
                    "SELECT ts_ms, kind, rule, labels, summary, value, silenced FROM alerts_history ORDER BY id DESC LIMIT ?1",
                )?;
                let rows = st.query_map([limit as i64], |r| {
                    Ok(HistoryEntry {
                        ts_ms: r.get(0)?,
                        kind: r.get(1)?,
                        rule: r.get(2)?,
                        labels: serde_json::from_str(&r.get::<_, String>(3)?).unwrap_or_default(),
                        summary: r.get(4)?,
                        value: r.get(5)?,
                        silenced: r.get::<_, i64>(6)? != 0,
                    })
                })?;
                Ok::<_, crate::storage::StorageError>(rows.collect::<Result<Vec<_>, _>>()?)
            })
            .await?)
    }

    /// Notices waiting in the outbox (by channel).
    pub(crate) async fn pending_notices(&self) -> Result<HashMap<String, i64>, AlertsError> {
        Ok(self
            .db
            .call(|c| {
                let mut st = c.prepare("SELECT channel, COUNT(*) FROM alerts_outbox GROUP BY channel")?;
                let rows = st.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
                Ok::<_, crate::storage::StorageError>(rows.collect::<Result<HashMap<_, _>, _>>()?)
            })
            .await?)
    }
}

pub(crate) fn load_silences(c: &Connection, now: i64) -> Result<Vec<Silence>, crate::storage::StorageError> {
    let mut st = c.prepare(
        "SELECT id, matchers, until_ms, comment, created_by, created_ms FROM alerts_silences WHERE until_ms > ?1 ORDER BY id",
    )?;
    let rows = st.query_map([now], |r| {
        Ok(Silence {
            id: r.get(0)?,
            matchers: serde_json::from_str(&r.get::<_, String>(1)?).unwrap_or_default(),
            until_ms: r.get(2)?,
            comment: r.get(3)?,
            created_by: r.get(4)?,
            created_ms: r.get(5)?,
        })
    })?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

/// Trim the history to 30 days and [`HISTORY_ROWS`] rows, and forget silences that ended a week ago.
pub(crate) fn prune(c: &Connection, now_s: i64) -> Result<usize, String> {
    let now = now_s * 1000;
    let mut n =
        c.execute("DELETE FROM alerts_history WHERE ts_ms < ?1", [now - 30 * 86_400_000]).map_err(|e| e.to_string())?;
    n += c
        .execute(
            "DELETE FROM alerts_history WHERE id <= (SELECT id FROM alerts_history ORDER BY id DESC LIMIT 1 OFFSET ?1)",
            [HISTORY_ROWS],
        )
        .map_err(|e| e.to_string())?;
    n += c
        .execute("DELETE FROM alerts_silences WHERE until_ms < ?1", [now - 7 * 86_400_000])
        .map_err(|e| e.to_string())?;
    Ok(n)
}
