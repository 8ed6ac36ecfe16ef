//! Metrics store benchmark: `cargo bench --bench metrics` (issue 23's goals for 300 series).
//!
//! Writes 300 synthetic series (100 counters, 150 gauges, 50 histogram buckets: the mix a Pi's host, services and
//! hearth produce) every 10 s of simulated time for `HEARTH_BENCH_DAYS` days (default 31) through the real store
//! (WAL appends every 50 s, 2-hour blocks, daily and weekly roll-ups), then prints:
//! - bytes per sample (raw) and the disk needed at full retention (48 h raw + 14 d of 1-minute + 400 d of 1-hour
//!   roll-ups, extrapolated from the measured bytes per day of each tier);
//! - bytes written per hour (wchar and write_bytes from /proc/self/io over one simulated hour in steady state);
//! - p50/p95 of a 30-day chart of 10 series, and of a 24-hour range query;
//! - one collection round of this machine (CPU per 10 s interval);
//!
//! and, side by side with Prometheus (Debian's `promtool`/`prometheus`, when installed), the same synthetic day
//! stored by `promtool tsdb create-blocks-from openmetrics`: bytes per sample and the 24 h range query's server-side
//! time (`stats=all`'s execTotalTime).

use std::fmt::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use hearth::testing::{BenchStore, HostState, bench_collect_round};

const SERIES: usize = 300;
const STEP: i64 = 10_000;
const DAY: i64 = 86_400_000;

fn io() -> (u64, u64) {
    let s = std::fs::read_to_string("/proc/self/io").unwrap_or_default();
    let f = |k: &str| s.lines().find_map(|l| l.strip_prefix(k)?.trim().parse::<u64>().ok()).unwrap_or(0);
    (f("wchar:"), f("write_bytes:"))
}

/// The synthetic series: keys, and a value generator per series.
#[derive(Clone)]
struct Synth {
    keys: Vec<String>,
    state: Vec<f64>,
    rng: u64,
}

impl Synth {
    fn new() -> Synth {
        let mut keys = vec![];
        for i in 0..100 {
            keys.push(format!("bench_requests_total{{job=\"svc{}\",code=\"{}\"}}", i / 4, [200, 404, 500, 301][i % 4]));
        }
        for i in 0..150 {
            keys.push(format!("bench_gauge{{instance=\"host{}\",kind=\"{}\"}}", i / 3, ["temp", "mem", "load"][i % 3]));
        }
        for i in 0..50 {
            let le = ["0.005", "0.01", "0.05", "0.1", "0.5", "1", "2.5", "5", "10", "+Inf"][i % 10];
            keys.push(format!("bench_latency_seconds_bucket{{route=\"r{}\",le=\"{le}\"}}", i / 10));
        }
        let state = (0..SERIES).map(|i| if (100..250).contains(&i) { 40.0 } else { 0.0 }).collect();
        Synth { keys, state, rng: 0x9e37_79b9_7f4a_7c15 }
    }

    fn rand(&mut self) -> f64 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        (self.rng >> 11) as f64 / (1u64 << 53) as f64
    }

    fn next(&mut self) -> Vec<(String, f64)> {
        let mut out = Vec::with_capacity(SERIES);
        for i in 0..SERIES {
            let r = self.rand();
            let v = &mut self.state[i];
            if i < 100 {
                *v += (r * 20.0).floor(); // a counter, a few requests per 10 s
            } else if i < 250 {
                *v = (*v + (r - 0.5) * 0.4).clamp(0.0, 100.0); // a random walk, 0.1 resolution typical of gauges
                *v = (*v * 10.0).round() / 10.0;
            } else {
                *v += (r * 5.0 * ((i % 10) as f64 + 1.0)).floor(); // cumulative buckets
            }
            out.push((self.keys[i].clone(), *v));
        }
        out
    }
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

/// This process's resident set (MB).
fn rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:")?.trim().strip_suffix("kB")?.trim().parse::<f64>().ok())
        .unwrap_or(0.0)
        / 1024.0
}

fn main() {
    let rss_start = rss_mb();
    let days: i64 = std::env::var("HEARTH_BENCH_DAYS").ok().and_then(|d| d.parse().ok()).unwrap_or(31);
    let dir = tempfile::tempdir().unwrap();
    let t0 = 20_000 * DAY; // a Thursday at midnight UTC: the week's 1-hour roll-up windows start here
    let store = BenchStore::open(dir.path(), t0);
    let mut synth = Synth::new();
    let end = t0 + days * DAY;
    let started = Instant::now();
    let mut last_flush = t0;
    let mut hour_io: Option<((u64, u64), i64)> = None;
    let mut hour_written = (0u64, 0u64);
    // the generator as it was when the last day began: that day is generated again for promtool at the end
    let mut last_day_gen: Option<Synth> = None;
    let mut t = t0;
    while t < end {
        if t == end - DAY {
            last_day_gen = Some(synth.clone());
        }
        let samples = synth.next();
        store.append(t, &samples);
        if t - last_flush >= 50_000 {
            store.flush(t);
            last_flush = t;
        }
        // one steady-state hour (day 3, 10:00–11:00) measured from /proc/self/io
        if t == t0 + 2 * DAY + 10 * 3_600_000 {
            hour_io = Some((io(), t));
        }
        if let Some((at, from)) = hour_io
            && t == from + 3_600_000
        {
            let now = io();
            hour_written = (now.0 - at.0, now.1 - at.1);
            hour_io = None;
        }
        t += STEP;
    }
    store.flush(end);
    let write_time = started.elapsed();
    let rss_written = rss_mb();
    let samples = (days * DAY / STEP) as u64 * SERIES as u64;
    let (disk, tiers) = store.bytes();
    // tier bytes per day (raw: all written days but the open window; roll-ups: their completed windows)
    let raw_per_day = tiers[0] as f64 / days as f64;
    let m1_per_day = tiers[1] as f64 / days as f64;
    let h1_per_day = tiers[2] as f64 / ((days / 7) * 7).max(1) as f64;
    let full = 2.0 * raw_per_day + 14.0 * m1_per_day + 400.0 * h1_per_day;
    println!(
        "metrics store, {SERIES} series every 10 s, {days} simulated days ({samples} samples) in {:.1} s",
        write_time.as_secs_f64()
    );
    println!("  raw blocks: {:.3} bytes/sample ({:.2} MB/day)", tiers[0] as f64 / samples as f64, raw_per_day / 1e6);
    println!("  1-minute roll-ups: {:.2} MB/day; 1-hour roll-ups: {:.3} MB/day", m1_per_day / 1e6, h1_per_day / 1e6);
    println!("  disk at full retention (48 h raw + 14 d 1 m + 400 d 1 h): {:.1} MB   (goal ≤ 64 MB)", full / 1e6);
    println!("  files now ({days} days kept of every tier): {:.1} MB", disk as f64 / 1e6);
    println!(
        "  written in one steady hour: {:.2} MB passed to write() (wchar), {:.2} MB to the block layer (write_bytes)   (goal ≤ 2 MB)",
        hour_written.0 as f64 / 1e6,
        hour_written.1 as f64 / 1e6
    );
    println!("  a kill -9 loses at most 50 s (the WAL append interval)   (goal ≤ 60 s)");

    // a 30-day chart of 10 series: ~500 points each
    let now = end;
    let start30 = now - 30 * DAY;
    let step30 = 30 * DAY / 500;
    let q10 = r#"rate(bench_requests_total{job=~"svc[0-2]"}[2h])"#;
    let mut times = vec![];
    for _ in 0..30 {
        let s = Instant::now();
        let n = store.query_range(q10, start30, now, step30, now).unwrap();
        assert!(n > 0);
        times.push(s.elapsed().as_secs_f64() * 1000.0);
    }
    let tier = store.tier_for(now, start30, step30);
    println!(
        "  30-day chart of 12 series (tier {tier}): p50 {:.2} ms, p95 {:.2} ms   (goal p95 ≤ 10 ms)",
        pct(&mut times.clone(), 0.5),
        pct(&mut times, 0.95)
    );
    let q24 = "sum by (job) (rate(bench_requests_total[5m]))";
    let mut times = vec![];
    for _ in 0..10 {
        let s = Instant::now();
        store.query_range(q24, now - DAY, now, 15_000, now).unwrap();
        times.push(s.elapsed().as_secs_f64() * 1000.0);
    }
    let hearth_24h = pct(&mut times, 0.5);
    println!("  24 h range query (100 counters, step 15 s, raw): {hearth_24h:.1} ms");

    // collection: one round of this machine's host + services
    let mut st = HostState::default();
    let mut times = vec![];
    let mut n = 0;
    for _ in 0..50 {
        let s = Instant::now();
        n = bench_collect_round(&mut st);
        times.push(s.elapsed().as_secs_f64());
    }
    let round = pct(&mut times, 0.5);
    println!(
        "  one collection round on this machine: {n} samples in {:.2} ms = {:.3} % of a core at a 10 s interval   (goal ≤ 1 %)",
        round * 1000.0,
        round / 10.0 * 100.0
    );
    let rss_end = rss_mb();
    println!(
        "  RSS: {rss_start:.1} MB at the start, {rss_written:.1} MB after the writes (store: {:.1} MB of head, caches, \
         SQLite), {rss_end:.1} MB after the queries (their buffers kept by malloc)   (goal: the store ≤ 15 MB)",
        rss_written - rss_start
    );

    // side by side: the same last day in Prometheus's TSDB
    if Command::new("promtool").arg("--version").output().is_err() {
        println!("  (promtool not installed: no Prometheus comparison)");
        return;
    }
    let mut replay = last_day_gen.expect("at least one day");
    let mut last_day: Vec<Vec<(i64, f64)>> = vec![vec![]; SERIES];
    let mut t = end - DAY;
    while t < end {
        for (i, (_, v)) in replay.next().into_iter().enumerate() {
            last_day[i].push((t, v));
        }
        t += STEP;
    }
    let pdir = tempfile::tempdir().unwrap();
    let om = pdir.path().join("day.om");
    // OpenMetrics: one family after the other (never interleaved), each series' samples in time order, # EOF
    let mut text = String::new();
    for (family, kind, range) in [
        ("bench_requests", "counter", 0..100),
        ("bench_gauge", "gauge", 100..250),
        ("bench_latency_seconds_bucket", "gauge", 250..300),
    ] {
        let _ = writeln!(text, "# TYPE {family} {kind}");
        for i in range {
            for (t, v) in &last_day[i] {
                let _ = writeln!(text, "{} {v} {}", replay.keys[i], *t as f64 / 1000.0);
            }
        }
    }
    text.push_str("# EOF\n");
    std::fs::write(&om, text).unwrap();
    let out = Command::new("promtool")
        .args(["tsdb", "create-blocks-from", "openmetrics"])
        .arg(&om)
        .arg(pdir.path().join("data"))
        .output()
        .unwrap();
    if !out.status.success() {
        println!("  promtool failed: {}", String::from_utf8_lossy(&out.stderr));
        return;
    }
    let du = |p: &std::path::Path| -> u64 {
        fn walk(p: &std::path::Path) -> u64 {
            std::fs::read_dir(p)
                .map(|rd| {
                    rd.flatten()
                        .map(|e| if e.path().is_dir() { walk(&e.path()) } else { e.metadata().map_or(0, |m| m.len()) })
                        .sum()
                })
                .unwrap_or(0)
        }
        walk(p)
    };
    let prom_bytes = du(&pdir.path().join("data"));
    let day_samples = (DAY / STEP) as f64 * SERIES as f64;
    // hearth's raw bytes for one day (blocks only; Prometheus's figure includes its index)
    println!(
        "  one day in Prometheus's TSDB: {:.3} bytes/sample ({:.2} MB); hearth raw: {:.3} bytes/sample   (ratio hearth/Prometheus {:.2}, goal ≤ 1.0)",
        prom_bytes as f64 / day_samples,
        prom_bytes as f64 / 1e6,
        raw_per_day / day_samples,
        (raw_per_day / day_samples) / (prom_bytes as f64 / day_samples)
    );
    let port = 19090 + (std::process::id() % 1000) as u16;
    let mut prom = Command::new("prometheus")
        .arg(format!("--storage.tsdb.path={}", pdir.path().join("data").display()))
        .arg(format!("--config.file={}", write_prom_cfg(pdir.path())))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg("--storage.tsdb.retention.time=100y")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}/api/v1/query_range");
    let mut exec = vec![];
    for _ in 0..40 {
        let out = Command::new("curl")
            .args(["-s", "--get", &url])
            .args(["--data-urlencode", &format!("query={q24}")])
            .args(["--data-urlencode", &format!("start={}", (now - DAY) / 1000)])
            .args(["--data-urlencode", &format!("end={}", now / 1000)])
            .args(["--data-urlencode", "step=15", "--data-urlencode", "stats=all"])
            .output();
        let Ok(out) = out else { break };
        let text = String::from_utf8_lossy(&out.stdout);
        if let Some(v) = text
            .split("\"execTotalTime\":")
            .nth(1)
            .and_then(|r| r.split([',', '}']).next())
            .and_then(|v| v.parse::<f64>().ok())
        {
            exec.push(v * 1000.0);
            if exec.len() >= 10 {
                break;
            }
        } else {
            std::thread::sleep(Duration::from_millis(500));
        }
    }
    let _ = prom.kill();
    let _ = prom.wait();
    if exec.is_empty() {
        println!("  Prometheus did not answer the range query");
    } else {
        let p = pct(&mut exec, 0.5);
        println!(
            "  24 h range query: Prometheus {p:.1} ms (server-side), hearth {hearth_24h:.1} ms (in-process)   (ratio {:.2}, goal ≤ 1.0)",
            hearth_24h / p
        );
    }
}

fn write_prom_cfg(dir: &std::path::Path) -> String {
    let p = dir.join("prometheus.yml");
    std::fs::write(&p, "global:\n  scrape_interval: 1m\n").unwrap();
    p.display().to_string()
}
