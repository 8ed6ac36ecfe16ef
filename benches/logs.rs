//! Log store benchmark: `cargo bench --bench logs` (issue 24's goals). `HEARTH_BENCH_LINES` sets the stored lines
//! (default 1,000,000).
//!
//! Generates journal-like lines (services, levels, client addresses, request ids, durations) and prints:
//! - ingest: the CPU time (user + system, from /proc/self/stat) to queue and write them in one-second batches of
//!   2,000, as a share of one core at 2,000 lines/s;
//! - search over all of them (newest 100 matches, as the Logs page asks): a word, a cut address, a request id,
//!   p50/p95 — side by side with `grep -F` over the same lines as a text file;
//! - writes at 10 lines/s: one simulated hour in a fresh store, bytes passed to write() and to the block layer
//!   (/proc/self/io);
//! - the bytes per line stored.

use std::io::Write;
use std::process::Command;
use std::time::Instant;

use hearth::testing::BenchLogs;

const SEC: i64 = 1_000_000_000;

struct Gen {
    rng: u64,
}

impl Gen {
    fn next(&mut self) -> u64 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng
    }

    fn pick<'a>(&mut self, xs: &[&'a str]) -> &'a str {
        xs[(self.next() % xs.len() as u64) as usize]
    }

    /// A line and its labels.
    fn line(&mut self) -> (String, [(&'static str, &'static str); 3]) {
        const UNITS: [&str; 8] = [
            "nginx.service",
            "sshd.service",
            "hearth.service",
            "docker.service",
            "smbd.service",
            "cron.service",
            "kernel",
            "systemd-timesyncd.service",
        ];
        const LEVELS: [&str; 4] = ["info", "info", "warning", "error"];
        const WORDS: [&str; 16] = [
            "connection",
            "accepted",
            "closed",
            "request",
            "upstream",
            "query",
            "forwarded",
            "cached",
            "session",
            "opened",
            "backup",
            "completed",
            "certificate",
            "renewed",
            "retry",
            "started",
        ];
        let unit = UNITS[(self.next() % 8) as usize];
        let level = LEVELS[(self.next() % 4) as usize];
        let mut s = String::new();
        for _ in 0..3 + self.next() % 5 {
            s.push_str(self.pick(&WORDS));
            s.push(' ');
        }
        let (a, b) = (self.next() % 4, 1 + self.next() % 254);
        s.push_str(&format!("from 192.168.{a}.{b} id={:016x} in {} ms", self.next(), self.next() % 900));
        if self.next().is_multiple_of(1000) {
            s.push_str(" timeout");
        }
        (s, [("source", "journal"), ("unit", unit), ("level", level)])
    }
}

/// CPU seconds (user + system) this process has used.
fn cpu() -> f64 {
    let s = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = s.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0 // utime, stime (fields 14, 15; clock ticks at 100 Hz)
}

fn io() -> (u64, u64) {
    let s = std::fs::read_to_string("/proc/self/io").unwrap_or_default();
    let f = |k: &str| s.lines().find_map(|l| l.strip_prefix(k)?.trim().parse::<u64>().ok()).unwrap_or(0);
    (f("wchar:"), f("write_bytes:"))
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[((v.len() - 1) as f64 * p).round() as usize]
}

fn main() {
    let n: usize = std::env::var("HEARTH_BENCH_LINES").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000);
    let dir = tempfile::tempdir().unwrap();
    let store = BenchLogs::open(Some(dir.path()));
    let mut g = Gen { rng: 0x9e3779b97f4a7c15 };
    let t0 = 1_796_000_000 * SEC;
    let text_path = dir.path().join("lines.txt");
    let mut text = std::io::BufWriter::new(std::fs::File::create(&text_path).unwrap());
    // the lines first (their generation is not the store's cost), also as a text file for grep
    let mut lines = Vec::with_capacity(n);
    let mut text_bytes = 0usize;
    for _ in 0..n {
        let (line, labels) = g.line();
        writeln!(text, "{line}").unwrap();
        text_bytes += line.len() + 1;
        lines.push((line, labels));
    }
    text.flush().unwrap();
    let probe_id = lines[n / 2].0.split("id=").nth(1).unwrap()[..16].to_string();
    let started = Instant::now();
    let c0 = cpu();
    for (i, (line, labels)) in lines.iter().enumerate() {
        // 2,000 lines a second of simulated time, written once a second as the writer does
        store.push(t0 + (i as i64 / 2000) * SEC + (i as i64 % 2000) * 100_000, labels, line);
        if i % 2000 == 1999 {
            store.flush();
        }
    }
    store.flush();
    drop(lines);
    let ingest_cpu = cpu() - c0;
    let secs_of_lines = n as f64 / 2000.0;
    println!(
        "log store: {n} lines ({:.1} MB of text) in {:.1} s wall",
        text_bytes as f64 / 1e6,
        started.elapsed().as_secs_f64()
    );
    println!(
        "  ingest at 2,000 lines/s: {:.1} % of one core (queue + one transaction a second)   (goal ≤ 15 %)",
        ingest_cpu / secs_of_lines * 100.0
    );
    println!(
        "  stored: {:.1} MB, {:.0} bytes per line (text {:.0})",
        store.bytes() as f64 / 1e6,
        store.bytes() as f64 / n as f64,
        text_bytes as f64 / n as f64
    );

    // search: newest 100 matches of a needle over everything, as the Logs page asks
    let end = t0 + (n as i64 / 2000 + 1) * SEC;
    let now = end;
    for (what, needle) in
        [("a rare word", "timeout"), ("a cut address", "168.3.17 "), ("a request id", probe_id.as_str())]
    {
        let q = format!("{{source=\"journal\"}} |= \"{needle}\"");
        let mut times = vec![];
        let mut got = 0;
        for _ in 0..20 {
            let s = Instant::now();
            got = store.query(&q, t0, end, 100, now).unwrap();
            times.push(s.elapsed().as_secs_f64() * 1000.0);
        }
        let mut grep_times = vec![];
        for _ in 0..5 {
            let s = Instant::now();
            let out = Command::new("grep").args(["-F", "-c", needle]).arg(&text_path).output().unwrap();
            assert!(out.status.success() || out.status.code() == Some(1));
            grep_times.push(s.elapsed().as_secs_f64() * 1000.0);
        }
        let (p50, p95, g50) = (pct(&mut times.clone(), 0.5), pct(&mut times, 0.95), pct(&mut grep_times, 0.5));
        println!(
            "  search {what} ({needle:?}, {got} lines): p50 {p50:.1} ms, p95 {p95:.1} ms; grep -F over the text {g50:.1} ms (ratio {:.2})   (goal p95 ≤ 100 ms)",
            p95 / g50
        );
    }

    // writes at 10 lines/s: one hour in a fresh store
    let dir2 = tempfile::tempdir().unwrap();
    let slow = BenchLogs::open(Some(dir2.path()));
    let before = io();
    for s in 0..3600i64 {
        for k in 0..10 {
            let (line, labels) = g.line();
            slow.push(t0 + s * SEC + k * 100_000_000, &labels, &line);
        }
        slow.flush();
    }
    let after = io();
    println!(
        "  one hour at 10 lines/s: {:.2} MB passed to write(), {:.2} MB to the block layer   (goal ≤ 4 MB/h)",
        (after.0 - before.0) as f64 / 1e6,
        (after.1 - before.1) as f64 / 1e6
    );
}
