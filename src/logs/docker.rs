//! Docker containers' output as a source (pure): the log stream the Engine API answers for
//! `GET /containers/<id>/logs?follow=1&timestamps=1` cut into lines (8-byte frame headers demultiplexed for
//! containers without a TTY, raw bytes for those with one), each line's Docker timestamp read, its level guessed
//! from the text. The `docker` task in `task.rs` lists the containers and follows each one.
//!
//! Labels: `source="docker"`, `host`, `container` (the name), `service` (Compose's
//! `com.docker.compose.service`), `stream` (`stdout`/`stderr`), `level` (from the line: `level=error`,
//! `"level":"warn"`, `[ERROR]`, `E1207`, …; else `info` on stdout and `unknown` on stderr).
//!
//! Position: per container, the time of its last line kept, saved in `logs_meta` with the lines
//! (`docker.since.<id>`), so a restart resumes after it: nothing read twice or lost while hearth was down (as long
//! as Docker still has the lines).

use super::model::{Entry, Labels, MAX_LINE};
use crate::docker::Container;

/// The `logs_meta` key of a container's position.
pub(crate) fn position_key(id: &str) -> String {
    format!("docker.since.{id}")
}

/// Lines shown from a container met for the first time.
pub(crate) const FIRST_TAIL: usize = 1000;

/// Cuts Docker's log stream into (stream, line) pairs, across reads of any size.
#[derive(Debug)]
pub(crate) struct Demux {
    /// `None` until the first bytes say (an old daemon that does not name its framing)
    multiplexed: Option<bool>,
    /// bytes of a frame not yet complete (multiplexed) or of a line not yet ended (raw)
    buf: Vec<u8>,
    /// per stream (stdout, stderr), the start of a line whose end has not come yet
    partial: [Vec<u8>; 2],
}

impl Demux {
    pub(crate) fn new(multiplexed: Option<bool>) -> Demux {
        Demux { multiplexed, buf: vec![], partial: [vec![], vec![]] }
    }

    /// Feed bytes read from the stream; the lines they complete as (1 = stdout, 2 = stderr, text).
    pub(crate) fn feed(&mut self, bytes: &[u8]) -> Vec<(u8, String)> {
        self.buf.extend_from_slice(bytes);
        let multiplexed = match self.multiplexed {
            Some(m) => m,
            None if self.buf.len() < 8 => return vec![],
            // a frame header is a stream byte (0-2), three zeros and a size; a timestamped raw line starts with a
            // digit
            None => *self.multiplexed.insert(self.buf[0] <= 2 && self.buf[1..4] == [0, 0, 0]),
        };
        let mut out = vec![];
        if !multiplexed {
            let data = std::mem::take(&mut self.buf);
            self.lines(1, &data, &mut out);
            return out;
        }
        let mut at = 0;
        while self.buf.len() - at >= 8 {
            let h = &self.buf[at..at + 8];
            let size = u32::from_be_bytes([h[4], h[5], h[6], h[7]]) as usize;
            if self.buf.len() - at - 8 < size {
                break;
            }
            let stream = if h[0] == 2 { 2 } else { 1 };
            let payload = self.buf[at + 8..at + 8 + size].to_vec();
            self.lines(stream, &payload, &mut out);
            at += 8 + size;
        }
        self.buf.drain(..at);
        out
    }

    fn lines(&mut self, stream: u8, data: &[u8], out: &mut Vec<(u8, String)>) {
        let partial = &mut self.partial[(stream - 1) as usize];
        let mut rest = data;
        while let Some(nl) = rest.iter().position(|&b| b == b'\n') {
            partial.extend_from_slice(&rest[..nl]);
            out.push((stream, String::from_utf8_lossy(partial).trim_end_matches('\r').to_string()));
            partial.clear();
            rest = &rest[nl + 1..];
        }
        partial.extend_from_slice(rest);
        // a line that never ends is kept in pieces (the entry cuts it further and says so)
        if partial.len() > MAX_LINE + 64 {
            out.push((stream, String::from_utf8_lossy(partial).into_owned()));
            partial.clear();
        }
    }
}

/// A container's two streams' labels on this `host`, before the level.
pub(crate) fn labels(host: &str, c: &Container) -> [Labels; 2] {
    let service = c.labels.as_ref().and_then(|l| l.get("com.docker.compose.service")).cloned().unwrap_or_default();
    ["stdout", "stderr"].map(|stream| {
        Labels::new([
            ("source".to_string(), "docker".to_string()),
            ("host".to_string(), host.to_string()),
            ("container".to_string(), c.name()),
            ("service".to_string(), service.clone()),
            ("stream".to_string(), stream.to_string()),
        ])
    })
}

/// One line of the stream (`<RFC 3339 time> <text>`) as an entry with `base`'s labels and its level; `None` for a
/// line without Docker's timestamp (not from a `timestamps=1` stream).
pub(crate) fn entry(stream: u8, line: &str, base: &Labels) -> Option<(Entry, bool)> {
    let (stamp, text) = line.split_once(' ').unwrap_or((line, ""));
    let t = time::OffsetDateTime::parse(stamp, &time::format_description::well_known::Rfc3339).ok()?;
    let t_ns = i64::try_from(t.unix_timestamp_nanos()).ok()?;
    let mut labels = base.clone();
    let level = guess_level(text).unwrap_or(if stream == 2 { "unknown" } else { "info" });
    labels.set("level", level);
    Some(Entry::new(t_ns, labels, text))
}

/// The level a line announces, read as people and log libraries write it: `level=warn`, `"level":"error"`,
/// `[ERROR]`, `ERROR:`, `<error>`, glog's `E1207`, nginx's `[error]`; `None` when it says nothing.
pub(crate) fn guess_level(line: &str) -> Option<&'static str> {
    let head = super::model::cut(line, 256);
    let lower = head.to_ascii_lowercase();
    for key in ["level=", "\"level\":\"", "\"level\": \"", "lvl=", "severity=", "\"severity\":\""] {
        if let Some(i) = lower.find(key) {
            let v: String = lower[i + key.len()..]
                .trim_start_matches('"')
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric())
                .collect();
            let l = super::model::level_of(&v);
            if l != "unknown" {
                return Some(l);
            }
        }
    }
    // glog/klog: a letter and the month and day ("E1207 18:10:00.123 …")
    let b = head.as_bytes();
    if b.len() > 6 && b"IWEF".contains(&b[0]) && b[1..5].iter().all(u8::is_ascii_digit) && b[5] == b' ' {
        return Some(match b[0] {
            b'I' => "info",
            b'W' => "warning",
            b'E' => "error",
            _ => "critical",
        });
    }
    // a level word as a word of its own among the first few
    for word in lower.split(|c: char| !c.is_ascii_alphanumeric()).filter(|w| !w.is_empty()).take(8) {
        let l = match word {
            "fatal" | "panic" | "crit" | "critical" | "emerg" | "alert" => "critical",
            "error" | "err" | "eror" => "error",
            "warn" | "warning" => "warning",
            "debug" | "dbug" | "trace" => "debug",
            "info" | "notice" => "info",
            _ => continue,
        };
        return Some(l);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(stream: u8, payload: &[u8]) -> Vec<u8> {
        let mut f = vec![stream, 0, 0, 0];
        f.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        f.extend_from_slice(payload);
        f
    }

    #[test]
    fn multiplexed_frames_become_lines_across_any_read_size() {
        let mut bytes = frame(1, b"2026-12-07T18:10:00.000000001Z ready\n2026-12-07T18:10:01Z half");
        bytes.extend(frame(2, b"2026-12-07T18:10:02Z oops\n"));
        bytes.extend(frame(1, b" a line\n"));
        for size in [1, 3, 7, 8, 9, 100] {
            let mut d = Demux::new(None);
            let lines: Vec<_> = bytes.chunks(size).flat_map(|c| d.feed(c)).collect();
            assert_eq!(
                lines,
                vec![
                    (1, "2026-12-07T18:10:00.000000001Z ready".to_string()),
                    (2, "2026-12-07T18:10:02Z oops".to_string()),
                    (1, "2026-12-07T18:10:01Z half a line".to_string()),
                ],
                "read {size} bytes at a time"
            );
        }
    }

    #[test]
    fn a_tty_containers_raw_stream_is_split_on_newlines() {
        let mut d = Demux::new(None);
        let mut lines = d.feed(b"2026-12-07T18:10:00Z one\r\n2026-12-");
        lines.extend(d.feed(b"07T18:10:01Z two\n"));
        assert_eq!(lines, vec![(1, "2026-12-07T18:10:00Z one".into()), (1, "2026-12-07T18:10:01Z two".into())]);
        let mut d = Demux::new(Some(false));
        assert_eq!(d.feed(b"x\n"), vec![(1, "x".to_string())], "the daemon said raw: even a short first read");
        // a line without an end is kept in pieces
        let mut d = Demux::new(Some(true));
        let n = d.feed(&frame(1, &vec![b'a'; MAX_LINE + 100])).len();
        assert_eq!(n, 1);
    }

    #[test]
    fn lines_carry_the_containers_labels_its_time_and_a_level() {
        let c = Container {
            id: "4f66ad9a0b2e".into(),
            names: vec!["/pihole".into()],
            image: "pihole/pihole".into(),
            state: "running".into(),
            labels: Some([("com.docker.compose.service".to_string(), "dns".to_string())].into()),
        };
        let [out, err] = labels("pi", &c);
        let (e, _) = entry(1, "2026-12-07T18:10:00.123456789Z FTL started", &out).unwrap();
        assert_eq!(e.t_ns, 1_796_667_000_123_456_789);
        assert_eq!(e.line, "FTL started");
        let l = |e: &Entry, k: &str| e.labels.get(k).map(String::from);
        assert_eq!(l(&e, "container").as_deref(), Some("pihole"));
        assert_eq!(l(&e, "service").as_deref(), Some("dns"));
        assert_eq!(l(&e, "source").as_deref(), Some("docker"));
        assert_eq!(l(&e, "stream").as_deref(), Some("stdout"));
        assert_eq!(l(&e, "level").as_deref(), Some("info"));
        let (e, _) = entry(2, "2026-12-07T18:10:00Z something odd", &err).unwrap();
        assert_eq!(l(&e, "level").as_deref(), Some("unknown"));
        let (e, _) = entry(2, r#"2026-12-07T18:10:00Z {"level":"error","msg":"db down"}"#, &err).unwrap();
        assert_eq!(l(&e, "level").as_deref(), Some("error"));
        assert!(entry(1, "no stamp here", &out).is_none());
    }

    #[test]
    fn levels_are_read_as_libraries_write_them() {
        for (line, want) in [
            ("time=2026 level=warn msg=slow", Some("warning")),
            (r#"{"time":"x","level": "debug"}"#, Some("debug")),
            ("2026/12/07 18:10:00 [error] 29#29: *1 connect() failed", Some("error")),
            ("E1207 18:10:00.123456 1 main.go:10] boom", Some("error")),
            ("W1207 18:10:00 x", Some("warning")),
            ("[FATAL] out of memory", Some("critical")),
            ("INFO: Started server process [1]", Some("info")),
            ("GET /index.html 200", None),
            ("Errors are counted elsewhere and this word is past the head", None),
        ] {
            assert_eq!(guess_level(line), want, "{line}");
        }
        assert_eq!(position_key("ab"), "docker.since.ab");
    }
}
