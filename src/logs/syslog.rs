//! Syslog messages (pure): RFC 5424 and RFC 3164 as routers, NAS boxes, OpenWrt and `logger` send them, parsed
//! tolerantly — whatever does not fit is kept as the message, never refused — and TCP framing (RFC 6587 octet
//! counting, or one message per line).

/// A parsed syslog message.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Message {
    /// when it was sent (ms), if the message said so with a zone (RFC 5424); RFC 3164 stamps have no year and no
    /// zone, so the receive time is used for them
    pub t_ms: Option<i64>,
    pub severity: u8,
    pub facility: u8,
    pub host: String,
    pub app: String,
    pub pid: String,
    pub text: String,
}

/// The `level` label of a syslog severity (0–7), in the words Grafana's log panels colour.
pub(crate) fn level(severity: u8) -> &'static str {
    match severity {
        0..=2 => "critical",
        3 => "error",
        4 => "warning",
        5 | 6 => "info",
        _ => "debug",
    }
}

const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

/// Parse one message (without its framing). Never fails: a message without a `<PRI>` is a user.notice message
/// whose text is the whole input.
pub(crate) fn parse(raw: &str) -> Message {
    let raw = raw.trim_end_matches(['\r', '\n', '\0']);
    let mut m = Message {
        t_ms: None,
        severity: 5,
        facility: 1,
        host: String::new(),
        app: String::new(),
        pid: String::new(),
        text: raw.to_string(),
    };
    let Some((pri, rest)) = pri(raw) else { return m };
    m.severity = (pri % 8) as u8;
    m.facility = (pri / 8) as u8;
    m.text = rest.to_string();
    if let Some(after) = rest.strip_prefix("1 ") {
        rfc5424(after, &mut m);
    } else {
        rfc3164(rest, &mut m);
    }
    m
}

fn pri(raw: &str) -> Option<(u16, &str)> {
    let rest = raw.strip_prefix('<')?;
    let close = rest.find('>')?;
    if close == 0 || close > 3 {
        return None;
    }
    let pri: u16 = rest[..close].parse().ok()?;
    (pri <= 191).then_some((pri, &rest[close + 1..]))
}

/// `TIMESTAMP HOSTNAME APP-NAME PROCID MSGID STRUCTURED-DATA [MSG]`, each `-` when absent.
fn rfc5424(s: &str, m: &mut Message) {
    let mut fields = s.splitn(6, ' ');
    let (Some(ts), Some(host), Some(app), Some(pid), Some(_msgid), Some(rest)) =
        (fields.next(), fields.next(), fields.next(), fields.next(), fields.next(), fields.next())
    else {
        return;
    };
    let nil = |v: &str| if v == "-" { String::new() } else { v.to_string() };
    m.t_ms = time::OffsetDateTime::parse(ts, &time::format_description::well_known::Rfc3339)
        .ok()
        .map(|t| (t.unix_timestamp_nanos() / 1_000_000) as i64);
    m.host = nil(host);
    m.app = nil(app);
    m.pid = nil(pid);
    let msg = skip_structured_data(rest);
    let msg = msg.strip_prefix('\u{feff}').unwrap_or(msg); // the BOM RFC 5424 puts before UTF-8 text
    m.text = msg.to_string();
}

/// The message after the structured data: `-` or one or more `[id k="v" …]` elements (with `\]` escapes).
fn skip_structured_data(s: &str) -> &str {
    if let Some(rest) = s.strip_prefix('-') {
        return rest.strip_prefix(' ').unwrap_or(rest);
    }
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() && b[i] == b'[' {
        let mut in_quotes = false;
        i += 1;
        while i < b.len() {
            match b[i] {
                b'\\' => i += 1,
                b'"' => in_quotes = !in_quotes,
                b']' if !in_quotes => break,
                _ => {}
            }
            i += 1;
        }
        i += 1; // past ']'
    }
    let rest = s.get(i.min(s.len())..).unwrap_or("");
    rest.strip_prefix(' ').unwrap_or(rest)
}

/// `Mmm dd hh:mm:ss HOSTNAME TAG[PID]: MSG`, where any part may be missing (many devices drop the host name,
/// some the stamp).
fn rfc3164(s: &str, m: &mut Message) {
    let mut rest = s;
    // the stamp: "Dec  7 18:10:00 " (16 bytes), sometimes with a year or milliseconds, sometimes absent
    if s.len() >= 16 && MONTHS.iter().any(|mo| s.starts_with(mo)) && s.as_bytes()[3] == b' ' {
        let after = &s[15..];
        let after = after.trim_start_matches(|c: char| c.is_ascii_digit() || c == '.');
        rest = after.strip_prefix(' ').unwrap_or(after);
    }
    // "host tag[pid]: msg" or "tag[pid]: msg" — a first word followed by a tag ending in ':' is a host name
    let (first, after_first) = rest.split_once(' ').unwrap_or((rest, ""));
    let is_tag = |w: &str| w.ends_with(':') || (w.contains('[') && w.ends_with("]:"));
    let tag_part = if !is_tag(first) && after_first.split(' ').next().is_some_and(is_tag) {
        m.host = first.to_string();
        after_first
    } else {
        rest
    };
    let (tag, msg) = match tag_part.split_once(' ') {
        Some((t, msg)) if is_tag(t) => (t.trim_end_matches(':'), msg),
        _ if is_tag(tag_part) => (tag_part.trim_end_matches(':'), ""),
        _ => ("", tag_part),
    };
    if let Some((app, pid)) = tag.split_once('[') {
        m.app = app.to_string();
        m.pid = pid.trim_end_matches(']').to_string();
    } else {
        m.app = tag.to_string();
    }
    m.text = msg.to_string();
}

/// Split TCP bytes into messages: RFC 6587 octet counting (`LEN SP MSG`) when a frame starts with a digit, else
/// one message per line. Returns the messages and how many bytes were consumed (the rest waits for more).
pub(crate) fn frames(buf: &[u8], max: usize) -> (Vec<String>, usize) {
    let mut out = vec![];
    let mut at = 0;
    while at < buf.len() {
        let rest = &buf[at..];
        if rest[0].is_ascii_digit() {
            let Some(sp) = rest.iter().take(8).position(|&c| c == b' ') else {
                if rest.len() >= 8 {
                    // not a length: treat as a line
                    match line(rest, max) {
                        Some((msg, used)) => {
                            out.push(msg);
                            at += used;
                            continue;
                        }
                        None => break,
                    }
                }
                break;
            };
            let len: usize = match std::str::from_utf8(&rest[..sp]).ok().and_then(|t| t.parse().ok()) {
                Some(n) => n,
                None => match line(rest, max) {
                    Some((msg, used)) => {
                        out.push(msg);
                        at += used;
                        continue;
                    }
                    None => break,
                },
            };
            if rest.len() < sp + 1 + len {
                if len > max && rest.len() >= sp + 1 + max {
                    // an oversized frame: keep its head, skip the rest once it has arrived
                    out.push(String::from_utf8_lossy(&rest[sp + 1..sp + 1 + max]).into_owned());
                }
                break;
            }
            let body = &rest[sp + 1..sp + 1 + len];
            let text = String::from_utf8_lossy(&body[..body.len().min(max)]);
            out.push(text.trim_end_matches(['\r', '\n']).to_string());
            at += sp + 1 + len;
        } else {
            match line(rest, max) {
                Some((msg, used)) => {
                    if !msg.trim().is_empty() {
                        out.push(msg);
                    }
                    at += used;
                }
                None => {
                    // no newline yet; a line longer than `max` is cut and kept
                    if rest.len() > max {
                        out.push(String::from_utf8_lossy(&rest[..max]).into_owned());
                        at += rest.len();
                    }
                    break;
                }
            }
        }
    }
    (out, at)
}

fn line(rest: &[u8], max: usize) -> Option<(String, usize)> {
    let nl = rest.iter().position(|&c| c == b'\n')?;
    let body = &rest[..nl.min(max)];
    Some((String::from_utf8_lossy(body).trim_end_matches('\r').to_string(), nl + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc5424_messages() {
        let m =
            parse("<34>1 2003-10-11T22:14:15.003Z mymachine.example.com su - ID47 - 'su root' failed on /dev/pts/8");
        assert_eq!((m.facility, m.severity, level(m.severity)), (4, 2, "critical"));
        assert_eq!(m.t_ms, Some(1_065_910_455_003));
        assert_eq!((m.host.as_str(), m.app.as_str(), m.pid.as_str()), ("mymachine.example.com", "su", ""));
        assert_eq!(m.text, "'su root' failed on /dev/pts/8");
        // what util-linux logger sends, structured data with a quoted ']' and the BOM
        let m = parse(
            "<13>1 2026-12-07T18:10:00.123456+01:00 nas backup 4242 - [timeQuality tzKnown=\"1\" x=\"a]b\"][e@1 k=\"v\"] \u{feff}done in 3 s",
        );
        assert_eq!(m.t_ms, Some(1_796_663_400_123));
        assert_eq!((m.app.as_str(), m.pid.as_str(), m.text.as_str()), ("backup", "4242", "done in 3 s"));
        assert_eq!(level(m.severity), "info");
        // nil fields and no message
        let m = parse("<165>1 - - - - - -");
        assert_eq!((m.t_ms, m.host.as_str(), m.text.as_str()), (None, "", ""));
    }

    #[test]
    fn rfc3164_messages_as_devices_send_them() {
        let m = parse("<13>Dec  7 18:10:00 router dnsmasq[812]: query[A] example.com from 192.168.1.20");
        assert_eq!((m.host.as_str(), m.app.as_str(), m.pid.as_str()), ("router", "dnsmasq", "812"));
        assert_eq!(m.text, "query[A] example.com from 192.168.1.20");
        assert_eq!(m.t_ms, None);
        // no host name (OpenWrt's logread -r, many cameras)
        let m = parse("<30>Dec 17 03:01:02 kernel: eth0: link up");
        assert_eq!((m.host.as_str(), m.app.as_str(), m.text.as_str()), ("", "kernel", "eth0: link up"));
        assert_eq!(level(m.severity), "info");
        // no stamp, no tag: the whole rest is the message
        let m = parse("<11>something broke");
        assert_eq!((m.app.as_str(), m.text.as_str(), level(m.severity)), ("", "something broke", "error"));
        // no PRI at all: kept whole
        let m = parse("plain text line\n");
        assert_eq!((m.severity, m.text.as_str()), (5, "plain text line"));
        // a bad PRI is text too
        assert_eq!(parse("<999>x").text, "<999>x");
    }

    #[test]
    fn tcp_framing_counts_octets_or_splits_lines() {
        let (msgs, used) = frames(b"11 <13>1 - - -17 <13>hello world!\n", 1024);
        assert_eq!(msgs, vec!["<13>1 - - -", "<13>hello world!"]);
        assert_eq!(used, 34);
        let (msgs, used) = frames(b"<13>a\n<13>b\r\n<13>partial", 1024);
        assert_eq!(msgs, vec!["<13>a", "<13>b"]);
        assert_eq!(used, 13);
        // a frame not complete yet waits
        let (msgs, used) = frames(b"20 <13>short", 1024);
        assert!(msgs.is_empty());
        assert_eq!(used, 0);
        // an endless line is cut at max and kept
        let long = vec![b'x'; 100];
        let (msgs, used) = frames(&long, 10);
        assert_eq!((msgs[0].len(), used), (10, 100));
        // invalid UTF-8 is replaced, not refused
        let (msgs, _) = frames(b"<13>caf\xe9\n", 1024);
        assert_eq!(msgs, vec!["<13>caf\u{fffd}"]);
    }
}
