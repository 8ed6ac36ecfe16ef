//! The log store's IO shell: `logs.db` (its own SQLite file, so log writes never wait on the query log or the
//! metrics), partitioned by UTC day, or the same schema in memory (`logs.storage = "memory"`).
//!
//! Per day `D` (days since the Unix epoch) there are two tables: `logs_dD` (the lines: time, stream, text; the
//! rowid is the time in microseconds, bumped on a collision, so the table's own b-tree is the time index) and
//! `logs_fD` (an FTS5 index of the text: unicode61 words without positions, ~0.4× the text). Retention and the disk
//! cap drop whole days — a table drop, immediate — and, when one day alone is over the cap, its oldest lines.
//!
//! Search is exact: `|= "needle"` keeps the lines that contain `needle`, case-sensitively, as Loki does; the FTS
//! index only narrows the candidates first ([`terms`]): the needle's whole words, and the word it ends inside as a
//! prefix. A needle that is one word cut at both ends (`|= "timeout"` may be inside `readtimeout`) is a scan of the
//! lines, newest first, stopping at the limit.
//!
//! Invariants: streams are never deleted (their ids stay stable; a stream without lines costs one row); a day table
//! exists only with its FTS table; at most [`MAX_STREAMS`] streams (beyond, an entry keeps only
//! its main labels, and past a tenth more it goes to one overflow stream per source).

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::Path;
use std::sync::Mutex;

use rusqlite::{Connection, OptionalExtension, params};

use super::LogsError;
use super::model::{Entry, Labels};

pub(crate) const MAX_STREAMS: usize = 10_000;
const DAY_NS: i64 = 86_400 * 1_000_000_000;
/// Labels an entry keeps when the stream cap is reached.
const MAIN_LABELS: &[&str] = &["source", "host", "level", "unit", "container", "service", "subsystem"];

pub(crate) const MIGRATIONS: &[crate::storage::Migration] = &[crate::storage::Migration {
    version: 1,
    name: "streams and source cursors (lines live in per-day tables)",
    sql: "CREATE TABLE logs_streams (id INTEGER PRIMARY KEY, key TEXT NOT NULL UNIQUE, labels TEXT NOT NULL,
              first_ns INTEGER NOT NULL, last_ns INTEGER NOT NULL, lines INTEGER NOT NULL DEFAULT 0);
          CREATE TABLE logs_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);",
}];

fn sql(e: rusqlite::Error) -> LogsError {
    LogsError::Store(e.to_string())
}

/// A stream as the store knows it.
#[derive(Debug, Clone)]
pub(crate) struct Stream {
    pub id: i64,
    pub labels: Labels,
    pub first_ns: i64,
    pub last_ns: i64,
    pub lines: i64,
}

struct Inner {
    streams: Vec<Stream>,
    by_key: HashMap<String, usize>,
    days: BTreeSet<i64>,
    /// the last rowid handed out per day for a given microsecond, so equal stamps in a burst cost no probing
    last_id: HashMap<i64, (i64, i64)>,
    capped_entries: u64,
}

/// What a read asks for: the streams, a time window `[start_ns, end_ns)`, the order, and needles every line must
/// contain (they use the FTS index; other filters are the caller's).
#[derive(Debug, Clone, Default)]
pub(crate) struct Select {
    pub streams: Vec<i64>,
    pub start_ns: i64,
    pub end_ns: i64,
    pub backward: bool,
    pub contains: Vec<String>,
}

/// Disk use and contents, for the UI, `/metrics` and the cap.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub(crate) struct Usage {
    /// bytes of pages in use (the file may be larger until freed pages are returned)
    pub bytes: u64,
    pub days: usize,
    pub streams: usize,
    /// oldest day kept (Unix ms of its start), if any
    pub oldest_ms: Option<i64>,
    pub in_memory: bool,
    /// entries that lost labels to the stream cap
    pub capped_entries: u64,
}

pub(crate) struct Store {
    conn: Mutex<Connection>,
    inner: Mutex<Inner>,
    in_memory: bool,
}

fn day_of(t_ns: i64) -> i64 {
    t_ns.div_euclid(DAY_NS)
}

impl Store {
    /// Open `<dir>/logs.db`; `dir = None` keeps everything in memory.
    pub(crate) fn open(dir: Option<&Path>) -> Result<Store, LogsError> {
        let mut conn = match dir {
            Some(d) => {
                crate::storage::ensure_private_dir(d).map_err(|e| LogsError::Store(e.to_string()))?;
                let c = Connection::open(d.join("logs.db")).map_err(sql)?;
                // dropped days go back to the file system a few pages at a time
                c.pragma_update(None, "auto_vacuum", "INCREMENTAL").map_err(sql)?;
                c
            }
            None => Connection::open_in_memory().map_err(sql)?,
        };
        crate::storage::configure(&conn, std::time::Duration::from_secs(5))
            .map_err(|e| LogsError::Store(e.to_string()))?;
        crate::storage::apply_migrations(&mut conn, "logs", MIGRATIONS).map_err(|e| LogsError::Store(e.to_string()))?;
        let mut inner = Inner {
            streams: vec![],
            by_key: HashMap::new(),
            days: BTreeSet::new(),
            last_id: HashMap::new(),
            capped_entries: 0,
        };
        {
            let mut st = conn
                .prepare("SELECT id, key, labels, first_ns, last_ns, lines FROM logs_streams ORDER BY id")
                .map_err(sql)?;
            let rows = st
                .query_map([], |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                        r.get(3)?,
                        r.get(4)?,
                        r.get(5)?,
                    ))
                })
                .map_err(sql)?;
            for row in rows {
                let (id, key, labels, first_ns, last_ns, lines) = row.map_err(sql)?;
                let map: Vec<(String, String)> = serde_json::from_str(&labels).unwrap_or_default();
                inner.by_key.insert(key, inner.streams.len());
                inner.streams.push(Stream { id, labels: Labels::new(map), first_ns, last_ns, lines });
            }
            let mut st = conn
                .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name GLOB 'logs_d[0-9]*'")
                .map_err(sql)?;
            let names = st.query_map([], |r| r.get::<_, String>(0)).map_err(sql)?;
            for n in names {
                if let Some(d) = n.map_err(sql)?.strip_prefix("logs_d").and_then(|d| d.parse().ok()) {
                    inner.days.insert(d);
                }
            }
        }
        Ok(Store { conn: Mutex::new(conn), inner: Mutex::new(inner), in_memory: dir.is_none() })
    }

    /// The stream an entry goes to: its own, or past the cap its main labels', or its source's overflow stream.
    fn stream_for(
        inner: &mut Inner,
        tx: &rusqlite::Transaction<'_>,
        labels: &Labels,
        t_ns: i64,
    ) -> Result<usize, LogsError> {
        let key = labels.key();
        if let Some(&i) = inner.by_key.get(&key) {
            return Ok(i);
        }
        let mut labels = labels.clone();
        let mut key = key;
        if inner.streams.len() >= MAX_STREAMS {
            inner.capped_entries += 1;
            let main = Labels::new(labels.pairs().iter().filter(|(k, _)| MAIN_LABELS.contains(&k.as_str())).cloned());
            let main_key = main.key();
            if let Some(&i) = inner.by_key.get(&main_key) {
                return Ok(i);
            }
            if inner.streams.len() < MAX_STREAMS + MAX_STREAMS / 10 {
                return Self::insert_stream(inner, tx, main, main_key, t_ns);
            }
            let mut over = Labels::new([("overflow".to_string(), "true".to_string())]);
            over.set("source", labels.get("source").unwrap_or("unknown"));
            let over_key = over.key();
            if let Some(&i) = inner.by_key.get(&over_key) {
                return Ok(i);
            }
            // the overflow streams may pass the cap by one per source
            (labels, key) = (over, over_key);
        }
        Self::insert_stream(inner, tx, labels, key, t_ns)
    }

    fn insert_stream(
        inner: &mut Inner,
        tx: &rusqlite::Transaction<'_>,
        labels: Labels,
        key: String,
        t_ns: i64,
    ) -> Result<usize, LogsError> {
        let json = serde_json::to_string(labels.pairs()).unwrap_or_else(|_| "[]".into());
        tx.execute(
            "INSERT INTO logs_streams (key, labels, first_ns, last_ns, lines) VALUES (?1, ?2, ?3, ?3, 0)",
            params![key, json, t_ns],
        )
        .map_err(sql)?;
        let id = tx.last_insert_rowid();
        inner.by_key.insert(key, inner.streams.len());
        inner.streams.push(Stream { id, labels, first_ns: t_ns, last_ns: t_ns, lines: 0 });
        Ok(inner.streams.len() - 1)
    }

    fn create_day(tx: &rusqlite::Transaction<'_>, day: i64) -> Result<(), LogsError> {
        tx.execute_batch(&format!(
            "CREATE TABLE IF NOT EXISTS logs_d{day} (id INTEGER PRIMARY KEY, t INTEGER NOT NULL, stream INTEGER NOT NULL,
                 line TEXT NOT NULL);
             CREATE INDEX IF NOT EXISTS logs_d{day}_stream ON logs_d{day} (stream, t);
             CREATE VIRTUAL TABLE IF NOT EXISTS logs_f{day} USING fts5(line, content='logs_d{day}', content_rowid='id',
                 detail=none, tokenize='unicode61 remove_diacritics 0');"
        ))
        .map_err(sql)
    }

    /// Write a batch in one transaction, with the sources' positions (`meta`: the journal's cursor after these
    /// lines), so a crash keeps both or neither; returns how many entries were written.
    pub(crate) fn write(&self, entries: &[Entry], meta: &[(String, String)]) -> Result<usize, LogsError> {
        if entries.is_empty() && meta.is_empty() {
            return Ok(0);
        }
        let mut conn = self.conn.lock().map_err(|_| LogsError::Store("the store's lock is poisoned".into()))?;
        let mut inner = self.inner.lock().map_err(|_| LogsError::Store("the store's lock is poisoned".into()))?;
        let tx = conn.transaction().map_err(sql)?;
        let mut touched: HashMap<usize, (i64, i64, i64)> = HashMap::new(); // stream index -> (first, last, n)
        for e in entries {
            let day = day_of(e.t_ns);
            if !inner.days.contains(&day) {
                Self::create_day(&tx, day)?;
                inner.days.insert(day);
            }
            let si = Self::stream_for(&mut inner, &tx, &e.labels, e.t_ns)?;
            let stream_id = inner.streams[si].id;
            let base = e.t_ns.div_euclid(1000);
            let mut id = match inner.last_id.get(&day) {
                Some(&(b, last)) if b == base => last + 1,
                _ => base,
            };
            {
                let mut ins = tx
                    .prepare_cached(&format!(
                        "INSERT OR IGNORE INTO logs_d{day} (id, t, stream, line) VALUES (?1, ?2, ?3, ?4)"
                    ))
                    .map_err(sql)?;
                while ins.execute(params![id, e.t_ns, stream_id, e.line]).map_err(sql)? == 0 {
                    id += 1;
                }
                let mut fts = tx
                    .prepare_cached(&format!("INSERT INTO logs_f{day} (rowid, line) VALUES (?1, ?2)"))
                    .map_err(sql)?;
                fts.execute(params![id, e.line]).map_err(sql)?;
            }
            inner.last_id.insert(day, (base, id));
            let t = touched.entry(si).or_insert((e.t_ns, e.t_ns, 0));
            t.0 = t.0.min(e.t_ns);
            t.1 = t.1.max(e.t_ns);
            t.2 += 1;
        }
        {
            let mut up = tx
                .prepare_cached(
                    "UPDATE logs_streams SET first_ns = min(first_ns, ?2), last_ns = max(last_ns, ?3), lines = lines + ?4
                     WHERE id = ?1",
                )
                .map_err(sql)?;
            for (&si, &(first, last, n)) in &touched {
                let s = &mut inner.streams[si];
                up.execute(params![s.id, first, last, n]).map_err(sql)?;
                s.first_ns = s.first_ns.min(first);
                s.last_ns = s.last_ns.max(last);
                s.lines += n;
            }
        }
        for (k, v) in meta {
            tx.execute(
                "INSERT INTO logs_meta (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                params![k, v],
            )
            .map_err(sql)?;
        }
        tx.commit().map_err(sql)?;
        Ok(entries.len())
    }

    /// The streams `pred` accepts that have lines in `[start_ns, end_ns)` (by their first and last line).
    pub(crate) fn streams(&self, start_ns: i64, end_ns: i64, pred: &dyn Fn(&Labels) -> bool) -> Vec<Stream> {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner
            .streams
            .iter()
            .filter(|s| s.last_ns >= start_ns && s.first_ns < end_ns && pred(&s.labels))
            .cloned()
            .collect()
    }

    /// Read lines in time order (newest first when `backward`), handing each to `each` until it returns false.
    pub(crate) fn select(&self, q: &Select, each: &mut dyn FnMut(i64, i64, &str) -> bool) -> Result<(), LogsError> {
        if q.streams.is_empty() || q.end_ns <= q.start_ns {
            return Ok(());
        }
        let days: Vec<i64> = {
            let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
            let mut d: Vec<i64> = inner.days.range(day_of(q.start_ns)..=day_of(q.end_ns - 1)).copied().collect();
            if q.backward {
                d.reverse();
            }
            d
        };
        let (share, wanted): (f64, HashSet<i64>) = {
            let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
            let total: i64 = inner.streams.iter().map(|s| s.lines).sum::<i64>().max(1);
            let wanted: HashSet<i64> = q.streams.iter().copied().collect();
            let mine: i64 = inner.streams.iter().filter(|s| wanted.contains(&s.id)).map(|s| s.lines).sum();
            (mine as f64 / total as f64, wanted)
        };
        let conn = self.conn.lock().map_err(|_| LogsError::Store("the store's lock is poisoned".into()))?;
        for day in days {
            let mut clauses = vec!["t >= ?1 AND t < ?2".to_string()];
            let mut args: Vec<rusqlite::types::Value> = vec![q.start_ns.into(), q.end_ns.into()];
            if q.streams.len() <= 500 {
                let ids: Vec<String> = q.streams.iter().map(|i| i.to_string()).collect();
                clauses.push(format!("stream IN ({})", ids.join(",")));
            }
            let mut matches = vec![];
            for needle in &q.contains {
                if let FtsPlan::Match(m) = fts_match(needle) {
                    matches.push(m);
                }
                args.push(needle.clone().into());
                clauses.push(format!("instr(line, ?{}) > 0", args.len()));
            }
            if !matches.is_empty() {
                args.push(matches.join(" AND ").into());
                clauses.push(format!("id IN (SELECT rowid FROM logs_f{day} WHERE logs_f{day} MATCH ?{})", args.len()));
            }
            // rare streams through their index, everything else in time order along the rowid
            let index = if share < 0.05 && q.streams.len() <= 500 && q.contains.is_empty() {
                format!("INDEXED BY logs_d{day}_stream")
            } else {
                String::new()
            };
            let order = if q.backward { "DESC" } else { "ASC" };
            let text = format!(
                "SELECT t, stream, line FROM logs_d{day} {index} WHERE {} ORDER BY id {order}",
                clauses.join(" AND ")
            );
            let mut st = conn.prepare(&text).map_err(sql)?;
            let mut rows = st.query(rusqlite::params_from_iter(args)).map_err(sql)?;
            while let Some(r) = rows.next().map_err(sql)? {
                let stream: i64 = r.get(1).map_err(sql)?;
                if !wanted.contains(&stream) {
                    continue;
                }
                let line = r.get_ref(2).map_err(sql)?.as_str().unwrap_or("");
                if !each(r.get(0).map_err(sql)?, stream, line) {
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    pub(crate) fn usage(&self) -> Result<Usage, LogsError> {
        let conn = self.conn.lock().map_err(|_| LogsError::Store("the store's lock is poisoned".into()))?;
        let bytes = used_bytes(&conn)?;
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        Ok(Usage {
            bytes,
            days: inner.days.len(),
            streams: inner.streams.len(),
            oldest_ms: inner.days.first().map(|d| d * 86_400_000),
            in_memory: self.in_memory,
            capped_entries: inner.capped_entries,
        })
    }

    /// Apply retention (days wholly older than `now - retention` are dropped; younger lines past it are hidden by
    /// the queries) and the disk cap (oldest days dropped, then the oldest lines of the last day left, until the
    /// pages in use are at most `max_bytes`). Returns the lines' days dropped.
    pub(crate) fn enforce(&self, now_ns: i64, retention_ns: i64, max_bytes: u64) -> Result<usize, LogsError> {
        let conn = self.conn.lock().map_err(|_| LogsError::Store("the store's lock is poisoned".into()))?;
        let mut dropped = 0;
        let cutoff = now_ns - retention_ns;
        loop {
            let oldest = {
                let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
                inner.days.first().copied()
            };
            let Some(day) = oldest else { break };
            let whole_day_old = (day + 1) * DAY_NS <= cutoff;
            let used = used_bytes(&conn)?;
            let over = max_bytes > 0 && used > max_bytes;
            if !whole_day_old && !over {
                break;
            }
            let last_day = self.inner.lock().unwrap_or_else(|p| p.into_inner()).days.len() == 1;
            if whole_day_old || !last_day {
                conn.execute_batch(&format!("DROP TABLE IF EXISTS logs_f{day}; DROP TABLE IF EXISTS logs_d{day};"))
                    .map_err(sql)?;
                let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
                inner.days.remove(&day);
                inner.last_id.remove(&day);
                dropped += 1;
                continue;
            }
            // one day left and still over the cap: drop its oldest lines, a share sized by the excess
            let rows: i64 =
                conn.query_row(&format!("SELECT count(*) FROM logs_d{day}"), [], |r| r.get(0)).map_err(sql)?;
            if rows == 0 {
                break;
            }
            let excess = used - max_bytes * 97 / 100;
            let n = ((excess as f64 / used as f64) * rows as f64).ceil().max(1.0) as i64;
            let upto: Option<i64> = conn
                .query_row(
                    &format!("SELECT id FROM logs_d{day} ORDER BY id LIMIT 1 OFFSET ?1"),
                    [n.min(rows) - 1],
                    |r| r.get(0),
                )
                .optional()
                .map_err(sql)?;
            let Some(upto) = upto else { break };
            conn.execute_batch("BEGIN").map_err(sql)?;
            let r = (|| {
                conn.execute(
                    &format!("INSERT INTO logs_f{day} (logs_f{day}, rowid, line) SELECT 'delete', id, line FROM logs_d{day} WHERE id <= ?1"),
                    [upto],
                )?;
                conn.execute(&format!("DELETE FROM logs_d{day} WHERE id <= ?1"), [upto])
            })();
            match r {
                Ok(_) => conn.execute_batch("COMMIT").map_err(sql)?,
                Err(e) => {
                    let _ = conn.execute_batch("ROLLBACK");
                    return Err(sql(e));
                }
            }
            if n >= rows {
                break;
            }
        }
        if !self.in_memory {
            conn.execute_batch("PRAGMA incremental_vacuum").map_err(sql)?;
        }
        Ok(dropped)
    }
}

impl Store {
    /// A source's saved position (the journal's cursor).
    pub(crate) fn meta(&self, key: &str) -> Result<Option<String>, LogsError> {
        let conn = self.conn.lock().map_err(|_| LogsError::Store("the store's lock is poisoned".into()))?;
        conn.query_row("SELECT value FROM logs_meta WHERE key = ?1", [key], |r| r.get(0)).optional().map_err(sql)
    }
}

fn used_bytes(conn: &Connection) -> Result<u64, LogsError> {
    let pages: i64 = conn.query_row("PRAGMA page_count", [], |r| r.get(0)).map_err(sql)?;
    let free: i64 = conn.query_row("PRAGMA freelist_count", [], |r| r.get(0)).map_err(sql)?;
    let size: i64 = conn.query_row("PRAGMA page_size", [], |r| r.get(0)).map_err(sql)?;
    Ok(((pages - free).max(0) * size) as u64)
}

/// How one word of a needle is found in the index.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Term {
    /// the whole word
    Exact(String),
    /// the needle ends inside a word: a word starting with this
    Prefix(String),
    /// the needle starts inside a word: a word ending with this
    Suffix(String),
    /// the needle is inside one word
    Infix(String),
}

/// The words of `needle` as the index knows them (unicode61: letters and digits, lower case), each with how it may
/// be cut by the needle's edges.
pub(crate) fn terms(needle: &str) -> Vec<Term> {
    let words: Vec<&str> = needle.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()).collect();
    let starts_inside = needle.chars().next().is_some_and(char::is_alphanumeric);
    let ends_inside = needle.chars().last().is_some_and(char::is_alphanumeric);
    let n = words.len();
    words
        .iter()
        .enumerate()
        .map(|(i, w)| {
            let w = w.to_lowercase();
            match (i == 0 && starts_inside, i + 1 == n && ends_inside) {
                (true, true) => Term::Infix(w),
                (true, false) => Term::Suffix(w),
                (false, true) => Term::Prefix(w),
                (false, false) => Term::Exact(w),
            }
        })
        .collect()
}

enum FtsPlan {
    /// an FTS5 MATCH expression every containing line satisfies
    Match(String),
    /// the index cannot narrow it down
    Scan,
}

fn quote(w: &str) -> String {
    format!("\"{}\"", w.replace('"', "\"\""))
}

/// The index narrows a needle by its whole words and by the word it ends inside (a prefix); a word the needle
/// starts inside could be the end of any indexed word, so it narrows nothing (looking it up would mean scanning the
/// vocabulary, which grows with every request id and costs more than scanning the lines).
fn fts_match(needle: &str) -> FtsPlan {
    let groups: Vec<String> = terms(needle)
        .into_iter()
        .filter_map(|t| match t {
            Term::Exact(w) => Some(quote(&w)),
            Term::Prefix(w) => Some(format!("{}*", quote(&w))),
            Term::Suffix(_) | Term::Infix(_) => None,
        })
        .collect();
    if groups.is_empty() { FtsPlan::Scan } else { FtsPlan::Match(groups.join(" AND ")) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(t_s: i64, labels: &[(&str, &str)], line: &str) -> Entry {
        Entry::new(t_s * 1_000_000_000, Labels::new(labels.iter().map(|(k, v)| (k.to_string(), v.to_string()))), line).0
    }

    fn read(s: &Store, q: &Select) -> Vec<String> {
        let mut out = vec![];
        s.select(q, &mut |_, _, l| {
            out.push(l.to_string());
            true
        })
        .unwrap();
        out
    }

    #[test]
    fn needles_become_index_terms_cut_at_the_edges() {
        assert_eq!(terms("error"), vec![Term::Infix("error".into())]);
        assert_eq!(
            terms("192.168.1.20"),
            vec![
                Term::Suffix("192".into()),
                Term::Exact("168".into()),
                Term::Exact("1".into()),
                Term::Prefix("20".into())
            ]
        );
        assert_eq!(terms(" Timeout "), vec![Term::Exact("timeout".into())]);
        assert_eq!(terms("id=ab"), vec![Term::Suffix("id".into()), Term::Prefix("ab".into())]);
        assert!(terms("..//").is_empty());
    }

    #[test]
    fn search_is_exact_substring_through_the_index() {
        let s = Store::open(None).unwrap();
        let day = 20_000 * 86_400;
        let l = [("source", "push"), ("unit", "web")];
        s.write(
            &[
                entry(day + 1, &l, "GET /index.html from 192.168.1.20 in 3 ms"),
                entry(day + 2, &l, "an example of a Timeout"),
                entry(day + 3, &[("source", "push"), ("unit", "db")], "request 4f3a9c01 failed: timeout"),
                entry(day + 4, &l, "café au lait"),
            ],
            &[],
        )
        .unwrap();
        let all: Vec<i64> = s.streams(0, i64::MAX, &|_| true).iter().map(|s| s.id).collect();
        let q = |needle: &str| Select {
            streams: all.clone(),
            start_ns: 0,
            end_ns: i64::MAX,
            backward: false,
            contains: vec![needle.to_string()],
        };
        assert_eq!(read(&s, &q("ampl")), vec!["an example of a Timeout"]);
        assert_eq!(read(&s, &q("Timeout")), vec!["an example of a Timeout"], "case-sensitive like Loki");
        assert_eq!(read(&s, &q("timeout")), vec!["request 4f3a9c01 failed: timeout"]);
        assert_eq!(read(&s, &q("68.1.2")), vec!["GET /index.html from 192.168.1.20 in 3 ms"]);
        assert_eq!(read(&s, &q("3a9c")), vec!["request 4f3a9c01 failed: timeout"]);
        assert_eq!(read(&s, &q("é au")), vec!["café au lait"]);
        assert_eq!(read(&s, &q(" ms")), vec!["GET /index.html from 192.168.1.20 in 3 ms"]);
        assert!(read(&s, &q("nowhere")).is_empty());
        assert_eq!(read(&s, &q("/")).len(), 1, "no word: a scan");
        // backward order, a stream subset, a window
        let web: Vec<i64> = s.streams(0, i64::MAX, &|l| l.get("unit") == Some("web")).iter().map(|s| s.id).collect();
        let lines = read(
            &s,
            &Select { streams: web, start_ns: 0, end_ns: (day + 4) * 1_000_000_000, backward: true, contains: vec![] },
        );
        assert_eq!(lines, vec!["an example of a Timeout", "GET /index.html from 192.168.1.20 in 3 ms"]);
    }

    #[test]
    fn equal_stamps_keep_their_order_and_a_reopen_keeps_everything() {
        let dir = tempfile::tempdir().unwrap();
        let t = 20_001 * 86_400;
        {
            let s = Store::open(Some(dir.path())).unwrap();
            let batch: Vec<Entry> = (0..500).map(|i| entry(t, &[("source", "push")], &format!("line {i}"))).collect();
            assert_eq!(s.write(&batch, &[("journal.cursor".into(), "s=abc".into())]).unwrap(), 500);
        }
        let s = Store::open(Some(dir.path())).unwrap();
        let ids: Vec<i64> = s.streams(0, i64::MAX, &|_| true).iter().map(|s| s.id).collect();
        let lines =
            read(&s, &Select { streams: ids, start_ns: 0, end_ns: i64::MAX, backward: false, contains: vec![] });
        assert_eq!(lines.len(), 500);
        assert_eq!(s.meta("journal.cursor").unwrap().as_deref(), Some("s=abc"));
        assert_eq!((lines[0].as_str(), lines[499].as_str()), ("line 0", "line 499"));
        assert_eq!(s.streams(0, i64::MAX, &|_| true)[0].lines, 500);
    }

    #[test]
    fn retention_drops_days_and_the_cap_comes_back_within_five_percent() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(Some(dir.path())).unwrap();
        let day0 = 20_000 * 86_400;
        for d in 0..3 {
            let batch: Vec<Entry> = (0..3000)
                .map(|i| {
                    entry(
                        day0 + d * 86_400 + i,
                        &[("source", "push")],
                        &format!("day {d} line {i} {}", "x".repeat(200)),
                    )
                })
                .collect();
            s.write(&batch, &[]).unwrap();
        }
        assert_eq!(s.usage().unwrap().days, 3);
        // retention 1 day at the start of day 2: day 0 goes (day 1 is younger than a whole day past the cutoff)
        let now = (day0 + 2 * 86_400 + 10) * 1_000_000_000;
        assert_eq!(s.enforce(now, DAY_NS, 0).unwrap(), 1);
        assert_eq!(s.usage().unwrap().days, 2);
        // a cap below one day's size: whole days go first, then the oldest lines of the last day
        let used = s.usage().unwrap().bytes;
        let cap = used / 4;
        s.enforce(now, 30 * DAY_NS, cap).unwrap();
        let u = s.usage().unwrap();
        assert!(u.bytes <= cap, "{} > {cap}", u.bytes);
        assert!(u.bytes as f64 >= cap as f64 * 0.95 - 8192.0, "{} much below {cap}", u.bytes);
        assert_eq!(u.days, 1);
        let ids: Vec<i64> = s.streams(0, i64::MAX, &|_| true).iter().map(|s| s.id).collect();
        let left = read(
            &s,
            &Select { streams: ids, start_ns: 0, end_ns: i64::MAX, backward: true, contains: vec!["line".into()] },
        );
        assert!(!left.is_empty() && left[0].starts_with("day 2 line 2999"), "the newest lines stay");
    }

    #[test]
    fn the_stream_cap_keeps_main_labels_then_overflows() {
        let s = Store::open(None).unwrap();
        let t = 20_000 * 86_400;
        let mut batch = vec![];
        for i in 0..MAX_STREAMS + 5 {
            batch.push(entry(t, &[("source", "push"), ("user", &format!("u{i}"))], "x"));
        }
        batch.push(entry(t, &[("source", "push"), ("unit", "a"), ("user", "new")], "kept with its unit"));
        s.write(&batch, &[]).unwrap();
        let u = s.usage().unwrap();
        assert!(u.streams <= MAX_STREAMS + MAX_STREAMS / 10 + 1, "{}", u.streams);
        assert!(u.streams > MAX_STREAMS, "the capped entries kept their main labels in new streams");
        assert!(u.capped_entries >= 5);
        let unit_a = s.streams(0, i64::MAX, &|l| l.get("unit") == Some("a"));
        assert_eq!(unit_a.len(), 1);
        assert_eq!(unit_a[0].labels.get("user"), None);
    }
}
