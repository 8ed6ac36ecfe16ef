//! The query log: every answered query becomes an [`Entry`], handed to a bounded channel without waiting (when the
//! writer falls behind, entries are dropped and counted — answering never slows down). The writer task batches
//! entries into SQLite (one transaction per flush, kind to SD cards) or, in RAM-only mode, into a bounded ring;
//! it prunes by age and by count, and fans entries out to live-tail subscribers.
//!
//! Invariants: `record` never blocks or allocates beyond the entry; the database only ever sees whole batches
//! (a crash loses at most the unflushed batch, never consistency); queries and stats are read-only.

use crate::util::Locked;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::{Connection, params};
use serde::Serialize;
use tokio::sync::{broadcast, mpsc};

use crate::storage::{Db, Migration, StorageError};

/// The `dns` component's tables: the query log, and the DNS state that outlives a restart (`blocking`).
pub(crate) const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "dns query log",
        sql: "
        CREATE TABLE dns_queries (
            id INTEGER PRIMARY KEY,
            ts_ms INTEGER NOT NULL,
            client TEXT NOT NULL,
            name TEXT NOT NULL,
            qtype INTEGER NOT NULL,
            outcome TEXT NOT NULL,
            rcode INTEGER NOT NULL,
            list TEXT,
            rule TEXT,
            upstream TEXT,
            latency_us INTEGER NOT NULL
        );
        CREATE INDEX dns_queries_ts ON dns_queries(ts_ms);
    ",
    },
    Migration { version: 2, name: "dns query log: dnssec verdict", sql: "ALTER TABLE dns_queries ADD dnssec TEXT;" },
    Migration {
        version: 3,
        name: "dns state (a blocking pause)",
        sql: "CREATE TABLE dns_state (key TEXT PRIMARY KEY, value INTEGER NOT NULL);",
    },
    Migration { version: 4, name: "dns query log: answer addresses", sql: "ALTER TABLE dns_queries ADD answers TEXT;" },
];

/// One answered query.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub(crate) struct Entry {
    /// Row id (0 until stored; in RAM-only mode a running counter).
    pub id: i64,
    /// Unix time in milliseconds.
    pub ts_ms: i64,
    #[schema(value_type = String)]
    pub client: std::net::IpAddr,
    pub name: String,
    /// Query type number (1 = A, 28 = AAAA, ...).
    pub qtype: u16,
    /// blocked, local, cached, forwarded, stale, ratelimited, bogus, failed, malformed.
    #[schema(value_type = String)]
    pub outcome: std::borrow::Cow<'static, str>,
    pub rcode: u16,
    /// For blocked and allowed names: the list and the rule that decided.
    pub list: Option<String>,
    pub rule: Option<String>,
    pub upstream: Option<String>,
    pub latency_us: u64,
    /// The DNSSEC verdict on a forwarded answer: secure, insecure or bogus (none when not validated).
    #[schema(value_type = Option<String>)]
    pub dnssec: Option<&'static str>,
    /// The addresses the answer gave (A and AAAA records, at most 8).
    #[schema(value_type = Vec<String>)]
    pub answers: Vec<std::net::IpAddr>,
}

/// A client address with the host part zeroed: the last octet of IPv4, the last 80 bits of IPv6 (a /48 keeps the
/// site, not the device), as AdGuard Home's "anonymize client IP" does.
pub(crate) fn anonymize(ip: std::net::IpAddr) -> std::net::IpAddr {
    match ip {
        std::net::IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            std::net::Ipv4Addr::new(a, b, c, 0).into()
        }
        std::net::IpAddr::V6(v6) => {
            let s = v6.segments();
            std::net::Ipv6Addr::new(s[0], s[1], s[2], 0, 0, 0, 0, 0).into()
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Storage {
    Sqlite,
    Memory,
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct LogPolicy {
    pub storage: Storage,
    pub retention: Duration,
    pub max_entries: usize,
    pub flush_interval: Duration,
}

/// The pipeline's handle: cheap to clone, never blocks.
#[derive(Clone)]
pub(crate) struct QueryLog {
    tx: mpsc::Sender<Entry>,
    dropped: metrics::Counter,
}

impl QueryLog {
    pub(crate) fn record(&self, e: Entry) {
        if self.tx.try_send(e).is_err() {
            self.dropped.increment(1);
        }
    }
}

/// The reading side: queries, stats, live tail.
#[derive(Clone)]
pub(crate) struct LogReader {
    db: Db,
    ring: Arc<Mutex<VecDeque<Entry>>>,
    policy: Arc<Mutex<LogPolicy>>,
    live: broadcast::Sender<Entry>,
}

/// Filters for the log view.
#[derive(Debug, Clone, Default, serde::Deserialize, utoipa::IntoParams)]
pub(crate) struct Filter {
    /// Only entries with a smaller id (paging backwards).
    pub before: Option<i64>,
    /// At most this many (default 100, at most 1000).
    pub limit: Option<usize>,
    /// Substring of the name.
    pub search: Option<String>,
    pub client: Option<String>,
    pub outcome: Option<String>,
}

impl Filter {
    fn limit(&self) -> usize {
        self.limit.unwrap_or(100).clamp(1, 1000)
    }

    fn matches(&self, e: &Entry) -> bool {
        self.before.is_none_or(|b| e.id < b)
            && self.search.as_deref().is_none_or(|s| e.name.contains(&s.to_ascii_lowercase()))
            && self.client.as_deref().is_none_or(|c| e.client.to_string() == c)
            && self.outcome.as_deref().is_none_or(|o| e.outcome == o)
    }
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub(crate) struct Stats {
    pub total: u64,
    pub blocked: u64,
    pub blocked_percent: f64,
    pub cached: u64,
    pub clients: u64,
    pub top_domains: Vec<(String, u64)>,
    pub top_blocked: Vec<(String, u64)>,
    pub top_clients: Vec<(String, u64)>,
    /// (hour start as Unix seconds, queries, blocked), oldest first, over the window.
    pub per_hour: Vec<(i64, u64, u64)>,
}

/// The writer's side: restartable (the supervisor may run it again after a failure; the channel survives).
pub(crate) struct Writer {
    reader: LogReader,
    rx: Arc<tokio::sync::Mutex<mpsc::Receiver<Entry>>>,
    next_id: Arc<std::sync::atomic::AtomicI64>,
}

/// Create the log; returns the pipeline's handle, the reader, and the writer (run [`Writer::run`] as a task).
pub(crate) fn start(db: Db, policy: LogPolicy, capacity: usize) -> (QueryLog, LogReader, Writer) {
    let (tx, rx) = mpsc::channel(capacity.max(1));
    let (live, _) = broadcast::channel(1024);
    let reader = LogReader { db, ring: Arc::default(), policy: Arc::new(Mutex::new(policy)), live };
    let log = QueryLog { tx, dropped: metrics::counter!("hearth_dns_querylog_dropped_total") };
    let writer = Writer {
        reader: reader.clone(),
        rx: Arc::new(tokio::sync::Mutex::new(rx)),
        next_id: Arc::new(std::sync::atomic::AtomicI64::new(1)),
    };
    (log, reader, writer)
}

impl Writer {
    /// Batch entries into storage until every `QueryLog` handle is gone or `stop` fires.
    pub(crate) async fn run(&self, stop: tokio_util::sync::CancellationToken) -> Result<(), StorageError> {
        let r = &self.reader;
        let mut rx = self.rx.lock().await;
        let written = metrics::counter!("hearth_dns_querylog_written_total");
        let mut last_prune = std::time::Instant::now() - Duration::from_secs(3600);
        loop {
            let policy = *r.policy.locked();
            let mut batch = Vec::with_capacity(512);
            // wait for the first entry, then gather what arrives within the flush interval
            tokio::select! {
                e = rx.recv() => match e {
                    Some(e) => batch.push(e),
                    None => return Ok(()),
                },
                _ = stop.cancelled() => return Ok(()),
            }
            let deadline = tokio::time::Instant::now() + policy.flush_interval;
            while batch.len() < 10_000 {
                tokio::select! {
                    e = tokio::time::timeout_at(deadline, rx.recv()) => match e {
                        Ok(Some(e)) => batch.push(e),
                        Ok(None) | Err(_) => break,
                    },
                    // on shutdown, write what was gathered and stop
                    _ = stop.cancelled() => break,
                }
            }
            let now_ms = crate::util::unix_now() * 1000;
            let cutoff = now_ms - policy.retention.as_millis() as i64;
            match policy.storage {
                Storage::Memory => {
                    let mut ring = r.ring.locked();
                    for mut e in batch {
                        e.id = self.next_id.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let _ = r.live.send(e.clone());
                        ring.push_back(e);
                    }
                    while ring.len() > policy.max_entries || ring.front().is_some_and(|e| e.ts_ms < cutoff) {
                        ring.pop_front();
                    }
                }
                Storage::Sqlite => {
                    let n = batch.len() as u64;
                    let prune = last_prune.elapsed() >= Duration::from_secs(60);
                    let max = policy.max_entries;
                    let stored =
                        r.db.call(move |c| {
                            let stored = insert_batch(c, batch)?;
                            if prune {
                                prune_rows(c, cutoff, max)?;
                            }
                            Ok::<_, StorageError>(stored)
                        })
                        .await?;
                    if prune {
                        last_prune = std::time::Instant::now();
                    }
                    written.increment(n);
                    for e in stored {
                        let _ = r.live.send(e);
                    }
                }
            }
            if stop.is_cancelled() {
                return Ok(());
            }
        }
    }
}

fn insert_batch(c: &mut Connection, batch: Vec<Entry>) -> Result<Vec<Entry>, StorageError> {
    let tx = c.transaction()?;
    let mut out = Vec::with_capacity(batch.len());
    {
        let mut st = tx.prepare_cached(
            "INSERT INTO dns_queries (ts_ms, client, name, qtype, outcome, rcode, list, rule, upstream, latency_us, dnssec,
             answers) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
        )?;
        for mut e in batch {
            st.execute(params![
                e.ts_ms,
                e.client.to_string(),
                e.name,
                e.qtype,
                e.outcome,
                e.rcode,
                e.list,
                e.rule,
                e.upstream,
                e.latency_us as i64,
                e.dnssec,
                (!e.answers.is_empty()).then(|| e.answers.iter().map(|a| a.to_string()).collect::<Vec<_>>().join(","))
            ])?;
            e.id = tx.last_insert_rowid();
            out.push(e);
        }
    }
    tx.commit()?;
    Ok(out)
}

/// Delete entries older than `cutoff_ms`, then the oldest beyond `max` rows.
fn prune_rows(c: &Connection, cutoff_ms: i64, max: usize) -> Result<usize, StorageError> {
    let mut n = c.execute("DELETE FROM dns_queries WHERE ts_ms < ?1", [cutoff_ms])?;
    n += c.execute(
        "DELETE FROM dns_queries WHERE id <= (SELECT id FROM dns_queries ORDER BY id DESC LIMIT 1 OFFSET ?1)",
        [max as i64],
    )?;
    Ok(n)
}

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Entry> {
    Ok(Entry {
        id: r.get(0)?,
        ts_ms: r.get(1)?,
        client: r.get::<_, String>(2)?.parse().unwrap_or(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED)),
        name: r.get(3)?,
        qtype: r.get(4)?,
        outcome: std::borrow::Cow::Owned(r.get(5)?),
        rcode: r.get(6)?,
        list: r.get(7)?,
        rule: r.get(8)?,
        upstream: r.get(9)?,
        latency_us: r.get::<_, i64>(10)? as u64,
        dnssec: match r.get::<_, Option<String>>(11)?.as_deref() {
            Some("secure") => Some("secure"),
            Some("insecure") => Some("insecure"),
            Some("bogus") => Some("bogus"),
            _ => None,
        },
        answers: r
            .get::<_, Option<String>>(12)?
            .map(|t| t.split(',').filter_map(|a| a.parse().ok()).collect())
            .unwrap_or_default(),
    })
}

impl LogReader {
    pub(crate) fn set_policy(&self, p: LogPolicy) {
        *self.policy.locked() = p;
    }

    pub(crate) fn subscribe(&self) -> broadcast::Receiver<Entry> {
        self.live.subscribe()
    }

    fn storage(&self) -> Storage {
        self.policy.locked().storage
    }

    /// Newest first.
    pub(crate) async fn query(&self, f: Filter) -> Result<Vec<Entry>, StorageError> {
        if self.storage() == Storage::Memory {
            let ring = self.ring.locked();
            return Ok(ring.iter().rev().filter(|e| f.matches(e)).take(f.limit()).cloned().collect());
        }
        self.db
            .call(move |c| {
                let mut sql =
                    "SELECT id, ts_ms, client, name, qtype, outcome, rcode, list, rule, upstream, latency_us, dnssec,
                    answers FROM dns_queries WHERE 1=1"
                        .to_string();
                let mut args: Vec<rusqlite::types::Value> = vec![];
                if let Some(b) = f.before {
                    sql += " AND id < ?";
                    args.push(b.into());
                }
                if let Some(s) = &f.search {
                    sql += " AND instr(name, ?) > 0";
                    args.push(s.to_ascii_lowercase().into());
                }
                if let Some(cl) = &f.client {
                    sql += " AND client = ?";
                    args.push(cl.clone().into());
                }
                if let Some(o) = &f.outcome {
                    sql += " AND outcome = ?";
                    args.push(o.clone().into());
                }
                sql += " ORDER BY id DESC LIMIT ?";
                args.push((f.limit() as i64).into());
                let mut st = c.prepare(&sql)?;
                let rows = st.query_map(rusqlite::params_from_iter(args), row)?;
                Ok::<_, StorageError>(rows.collect::<Result<Vec<_>, _>>()?)
            })
            .await
    }

    /// Totals, tops and an hourly series over the last `hours`.
    pub(crate) async fn stats(&self, hours: i64) -> Result<Stats, StorageError> {
        let since_ms = (crate::util::unix_now() - hours * 3600) * 1000;
        if self.storage() == Storage::Memory {
            let ring = self.ring.locked();
            return Ok(stats_of(ring.iter().filter(|e| e.ts_ms >= since_ms), since_ms));
        }
        self.db
            .call(move |c| {
                let mut st = c.prepare_cached(
                    "SELECT id, ts_ms, client, name, qtype, outcome, rcode, list, rule, upstream, latency_us, dnssec,
                     answers FROM dns_queries WHERE ts_ms >= ?1",
                )?;
                let rows: Vec<Entry> = st.query_map([since_ms], row)?.collect::<Result<_, _>>()?;
                Ok::<_, StorageError>(stats_of(rows.iter(), since_ms))
            })
            .await
    }
}

fn top(counts: std::collections::HashMap<String, u64>, n: usize) -> Vec<(String, u64)> {
    let mut v: Vec<(String, u64)> = counts.into_iter().collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    v.truncate(n);
    v
}

/// Pure aggregation over entries.
pub(crate) fn stats_of<'a>(entries: impl Iterator<Item = &'a Entry>, since_ms: i64) -> Stats {
    use std::collections::{BTreeMap, HashMap};
    let (mut total, mut blocked, mut cached) = (0u64, 0u64, 0u64);
    let (mut domains, mut blocked_domains, mut clients) = (HashMap::new(), HashMap::new(), HashMap::new());
    let mut hours: BTreeMap<i64, (u64, u64)> = BTreeMap::new();
    for e in entries {
        total += 1;
        let is_blocked = e.outcome == "blocked";
        blocked += is_blocked as u64;
        cached += (e.outcome == "cached") as u64;
        *domains.entry(e.name.clone()).or_insert(0) += 1;
        if is_blocked {
            *blocked_domains.entry(e.name.clone()).or_insert(0) += 1;
        }
        *clients.entry(e.client.to_string()).or_insert(0) += 1;
        let h = hours.entry(e.ts_ms / 3_600_000 * 3600).or_insert((0, 0));
        h.0 += 1;
        h.1 += is_blocked as u64;
    }
    let first_hour = since_ms / 3_600_000 * 3600;
    let last_hour = crate::util::unix_now() / 3600 * 3600;
    let per_hour = (0..)
        .map(|i| first_hour + i * 3600)
        .take_while(|h| *h <= last_hour)
        .map(|h| {
            let (q, b) = hours.get(&h).copied().unwrap_or((0, 0));
            (h, q, b)
        })
        .collect();
    Stats {
        total,
        blocked,
        blocked_percent: if total == 0 { 0.0 } else { (blocked as f64 * 1000.0 / total as f64).round() / 10.0 },
        cached,
        clients: clients.len() as u64,
        top_domains: top(domains, 10),
        top_blocked: top(blocked_domains, 10),
        top_clients: top(clients, 10),
        per_hour,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str, outcome: &str, client: &str, ts_ms: i64) -> Entry {
        Entry {
            id: 0,
            ts_ms,
            client: client.parse().unwrap(),
            name: name.into(),
            qtype: 1,
            outcome: outcome.to_string().into(),
            rcode: 0,
            list: None,
            rule: None,
            upstream: None,
            latency_us: 5,
            dnssec: None,
            answers: vec![],
        }
    }

    fn policy(storage: Storage) -> LogPolicy {
        LogPolicy {
            storage,
            retention: Duration::from_secs(3600),
            max_entries: 5,
            flush_interval: Duration::from_millis(20),
        }
    }

    #[tokio::test]
    async fn batches_into_sqlite_prunes_by_count_and_filters() {
        let db = Db::open_in_memory(&[("dns", MIGRATIONS)]).unwrap();
        let (log, reader, writer) = start(db.clone(), policy(Storage::Sqlite), 100);
        let task = tokio::spawn(async move { writer.run(Default::default()).await });
        let now = crate::util::unix_now() * 1000;
        let mut live = reader.subscribe();
        // all recent: only the count bound (5) can remove rows here; age is `prunes_by_age_alone`
        for i in 0..8 {
            log.record(entry(&format!("n{i}.example"), if i % 2 == 0 { "blocked" } else { "cached" }, "10.0.0.1", now));
        }
        // the first flush stores the batch in one transaction and prunes before it tells the live tail: once the
        // tail has seen all 8, the pruning is done
        for i in 0..8 {
            assert_eq!(live.recv().await.unwrap().name, format!("n{i}.example"), "the live tail, in order");
        }
        let all = reader.query(Filter::default()).await.unwrap();
        assert_eq!(all.len(), 5, "{all:?}");
        assert_eq!(all[0].name, "n7.example", "newest first");
        let blocked = reader.query(Filter { outcome: Some("blocked".into()), ..Default::default() }).await.unwrap();
        assert!(blocked.iter().all(|e| e.outcome == "blocked") && !blocked.is_empty());
        let found = reader.query(Filter { search: Some("N6".into()), ..Default::default() }).await.unwrap();
        assert_eq!(found.len(), 1);
        let page =
            reader.query(Filter { before: Some(all[1].id), limit: Some(2), ..Default::default() }).await.unwrap();
        assert_eq!(page.iter().map(|e| e.id).collect::<Vec<_>>(), [all[2].id, all[3].id]);
        let s = reader.stats(24).await.unwrap();
        assert_eq!(s.total, 5);
        assert_eq!(s.top_clients, [("10.0.0.1".to_string(), 5)]);
        drop(log);
        task.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn memory_mode_is_bounded_and_writes_nothing() {
        let db = Db::open_in_memory(&[("dns", MIGRATIONS)]).unwrap();
        let (log, reader, writer) = start(db.clone(), policy(Storage::Memory), 100);
        let task = tokio::spawn(async move { writer.run(Default::default()).await });
        let now = crate::util::unix_now() * 1000;
        for i in 0..9 {
            log.record(entry(&format!("m{i}.example"), "cached", "10.0.0.2", now));
        }
        drop(log);
        task.await.unwrap().unwrap();
        let all = reader.query(Filter::default()).await.unwrap();
        assert_eq!(all.len(), 5);
        assert_eq!(all[0].name, "m8.example");
        let rows: i64 = db.blocking(|c| c.query_row("SELECT count(*) FROM dns_queries", [], |r| r.get(0))).unwrap();
        assert_eq!(rows, 0, "RAM-only mode never touches the disk");
    }

    /// Age retention on its own: the count bound (1000) is far away, so only the age rule can remove the 2-hour-old
    /// entry (retention 1 hour), in SQLite and in RAM-only mode.
    #[test]
    fn anonymizing_keeps_the_network_not_the_device() {
        let a = |s: &str| anonymize(s.parse().unwrap()).to_string();
        assert_eq!(a("192.168.1.57"), "192.168.1.0");
        assert_eq!(a("2001:db8:aa:bb:1:2:3:4"), "2001:db8:aa::");
    }

    #[tokio::test]
    async fn prunes_by_age_alone() {
        for storage in [Storage::Sqlite, Storage::Memory] {
            let db = Db::open_in_memory(&[("dns", MIGRATIONS)]).unwrap();
            let (log, reader, writer) = start(db, LogPolicy { max_entries: 1000, ..policy(storage) }, 100);
            let now = crate::util::unix_now() * 1000;
            log.record(entry("old.example", "forwarded", "10.0.0.9", now - 7_200_000));
            log.record(entry("new.example", "forwarded", "10.0.0.9", now));
            // the writer stores (and prunes) everything, then stops when the last handle is gone
            drop(log);
            writer.run(Default::default()).await.unwrap();
            let names: Vec<String> =
                reader.query(Filter::default()).await.unwrap().into_iter().map(|e| e.name).collect();
            assert_eq!(names, ["new.example"], "{storage:?}: the entry past the retention is gone");
        }
    }

    #[tokio::test]
    async fn a_full_channel_drops_instead_of_waiting() {
        let db = Db::open_in_memory(&[("dns", MIGRATIONS)]).unwrap();
        let (log, reader, writer) = start(db, LogPolicy { max_entries: 10_000, ..policy(Storage::Sqlite) }, 2);
        // the writer is not running: the channel takes 2 entries and the other 998 must be dropped at once. Recorded
        // from a thread of its own, so a `record` that waits shows up as this deadline passing, not as a hung test.
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for i in 0..1000 {
                log.record(entry(&format!("x{i}"), "cached", "10.9.9.9", crate::util::unix_now() * 1000));
            }
            drop(log);
            let _ = done_tx.send(());
        });
        done_rx.recv_timeout(Duration::from_secs(10)).expect("record waited for the writer instead of dropping");
        writer.run(Default::default()).await.unwrap();
        let kept: Vec<String> = reader
            .query(Filter { limit: Some(1000), ..Default::default() })
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.name)
            .collect();
        assert_eq!(kept, ["x1", "x0"], "the first two were queued, the rest dropped");
    }

    /// A log written by the first schema keeps its rows through every migration and gains the DNSSEC verdict
    /// (2) and the answer addresses (4); the state table (3) comes with them.
    #[test]
    fn migrations_keep_old_rows_and_add_the_verdict_and_the_answers() {
        let mut c = rusqlite::Connection::open_in_memory().unwrap();
        crate::storage::configure(&c, std::time::Duration::from_secs(1)).unwrap();
        crate::storage::apply_migrations(&mut c, "dns", &MIGRATIONS[..1]).unwrap();
        c.execute(
            "INSERT INTO dns_queries (ts_ms, client, name, qtype, outcome, rcode, latency_us)
             VALUES (1, '10.0.0.1', 'old.example', 1, 'cached', 0, 5)",
            [],
        )
        .unwrap();
        assert_eq!(crate::storage::apply_migrations(&mut c, "dns", MIGRATIONS).unwrap(), 3);
        assert_eq!(crate::storage::schema_version(&c, "dns").unwrap(), 4);
        let mut e = entry("new.example", "forwarded", "10.0.0.2", 2);
        e.dnssec = Some("secure");
        e.answers = vec!["192.0.2.1".parse().unwrap(), "2001:db8::1".parse().unwrap()];
        insert_batch(&mut c, vec![e]).unwrap();
        let rows: Vec<Entry> = c
            .prepare("SELECT id, ts_ms, client, name, qtype, outcome, rcode, list, rule, upstream, latency_us, dnssec, answers FROM dns_queries ORDER BY id")
            .unwrap()
            .query_map([], row)
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(rows[0].answers, Vec::<std::net::IpAddr>::new());
        assert_eq!(rows[1].answers.iter().map(|a| a.to_string()).collect::<Vec<_>>(), ["192.0.2.1", "2001:db8::1"]);
        crate::dns::blocking::save(&c, 5).unwrap();
        assert_eq!((rows[0].name.as_str(), rows[0].dnssec), ("old.example", None));
        assert_eq!((rows[1].name.as_str(), rows[1].dnssec), ("new.example", Some("secure")));
    }

    #[test]
    fn stats_aggregate() {
        let now = crate::util::unix_now() * 1000;
        let es = [
            entry("a.example", "blocked", "10.0.0.1", now),
            entry("a.example", "blocked", "10.0.0.1", now),
            entry("b.example", "forwarded", "10.0.0.2", now),
            entry("c.example", "cached", "10.0.0.2", now - 3_600_000),
        ];
        let s = stats_of(es.iter(), now - 2 * 3_600_000);
        assert_eq!((s.total, s.blocked, s.cached, s.clients), (4, 2, 1, 2));
        assert_eq!(s.blocked_percent, 50.0);
        assert_eq!(s.top_blocked, [("a.example".to_string(), 2)]);
        assert_eq!(s.per_hour.len(), 3);
        assert_eq!(s.per_hour.iter().map(|h| h.1).sum::<u64>(), 4);
    }
}
