//! The systemd journal as a source: `journalctl -o json --follow` from the saved cursor (`--after-cursor`), so
//! nothing is read twice or lost across restarts. journalctl is the reader systemd maintains for every journal
//! format and compression it writes (a pure-Rust reader would have to track those); a line of its JSON is parsed
//! here (pure), the process is run by the `journal` task.
//!
//! Labels: `source="journal"`, `host` (`_HOSTNAME`), `level` (from `PRIORITY`), `unit` (`_SYSTEMD_UNIT`, else the
//! syslog identifier), `container` (`CONTAINER_NAME`, Docker's journald driver). The pid goes in the line (`[pid]`)
//! rather than a label: a label per process would make a stream per process.

use super::model::{Entry, Labels, level_of};

/// The key the cursor is saved under in `logs_meta`.
pub(crate) const CURSOR_KEY: &str = "journal.cursor";

/// One journal entry from journalctl's JSON: the entry and its cursor. `None` for a line that is not an entry.
pub(crate) fn parse_line(line: &str, now_ns: i64) -> Option<((Entry, bool), String)> {
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    let o = v.as_object()?;
    let cursor = o.get("__CURSOR")?.as_str()?.to_string();
    let field = |k: &str| o.get(k).and_then(text);
    let t_ns = field("__REALTIME_TIMESTAMP").and_then(|t| t.parse::<i64>().ok()).map(|us| us * 1000).unwrap_or(now_ns);
    let mut pairs = vec![
        ("source".to_string(), "journal".to_string()),
        ("host".to_string(), field("_HOSTNAME").unwrap_or_default()),
        ("level".to_string(), level_of(&field("PRIORITY").unwrap_or_else(|| "6".into())).to_string()),
    ];
    let unit = field("_SYSTEMD_UNIT").or_else(|| field("SYSLOG_IDENTIFIER")).or_else(|| field("_COMM"));
    if let Some(u) = unit {
        pairs.push(("unit".to_string(), u));
    }
    if let Some(c) = field("CONTAINER_NAME") {
        pairs.push(("container".to_string(), c));
    }
    let message = field("MESSAGE").unwrap_or_default();
    let line = match field("_PID") {
        Some(pid) => format!("[{pid}] {message}"),
        None => message,
    };
    Some((Entry::new(t_ns, Labels::new(pairs), &line), cursor))
}

/// A journal field's text: a string, or (for binary or non-UTF-8 messages) an array of bytes.
fn text(v: &serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Array(a) => {
            let bytes: Vec<u8> = a.iter().filter_map(|b| b.as_u64().map(|b| b as u8)).collect();
            Some(String::from_utf8_lossy(&bytes).into_owned())
        }
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// journalctl's arguments: follow from `cursor`, or start with the last 1,000 entries; `directory` reads journal
/// files there instead of the system's.
pub(crate) fn args(cursor: Option<&str>, directory: Option<&std::path::Path>) -> Vec<String> {
    let mut a =
        vec!["--output=json".to_string(), "--follow".to_string(), "--no-pager".to_string(), "--all".to_string()];
    match cursor {
        Some(c) => a.push(format!("--after-cursor={c}")),
        None => a.push("--lines=1000".to_string()),
    }
    if let Some(d) = directory {
        a.push(format!("--directory={}", d.display()));
    }
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn journal_json_becomes_labelled_entries() {
        let line = r#"{"__CURSOR":"s=1;i=2","__REALTIME_TIMESTAMP":"1796667000000000","_HOSTNAME":"pi","PRIORITY":"3","_SYSTEMD_UNIT":"nginx.service","_PID":"811","MESSAGE":"upstream timed out"}"#;
        let ((e, _), cursor) = parse_line(line, 0).unwrap();
        assert_eq!(cursor, "s=1;i=2");
        assert_eq!(e.t_ns, 1_796_667_000_000_000_000);
        assert_eq!(e.labels.get("source"), Some("journal"));
        assert_eq!(e.labels.get("unit"), Some("nginx.service"));
        assert_eq!(e.labels.get("level"), Some("error"));
        assert_eq!(e.labels.get("host"), Some("pi"));
        assert_eq!(e.line, "[811] upstream timed out");
        // a binary message, no unit but an identifier, a container
        let line = r#"{"__CURSOR":"c","MESSAGE":[104,105,255],"SYSLOG_IDENTIFIER":"kernel","CONTAINER_NAME":"pihole"}"#;
        let ((e, _), _) = parse_line(line, 7).unwrap();
        assert_eq!((e.t_ns, e.line.as_str()), (7, "hi\u{fffd}"));
        assert_eq!(
            (e.labels.get("unit"), e.labels.get("container"), e.labels.get("level")),
            (Some("kernel"), Some("pihole"), Some("info"))
        );
        assert!(parse_line("-- No entries --", 0).is_none());
        assert!(parse_line(r#"{"MESSAGE":"no cursor"}"#, 0).is_none());
        assert_eq!(args(Some("s=1"), None)[4], "--after-cursor=s=1");
        assert!(args(None, Some(std::path::Path::new("/j"))).contains(&"--directory=/j".to_string()));
    }
}
