//! Notification channels as URLs (the forms shoutrrr and Apprise users know), parsed and turned into HTTP requests
//! (pure), then sent by [`send`]:
//!
//! - `ntfy://[user:pass@]host[:port]/topic[?scheme=http]` — an ntfy server (title, priority by severity, a click
//!   link to the alert);
//! - `gotify://host[:port][/path]/TOKEN[?scheme=http]` — a Gotify server;
//! - `discord://TOKEN@WEBHOOK_ID`, `slack://T…/B…/X…`, `telegram://BOT_TOKEN@telegram?chats=ID[,ID]`;
//! - `http://…` / `https://…` — Alertmanager's webhook JSON (version 4), so anything that takes Alertmanager's
//!   webhooks takes hearth's;
//! - `smtp://[user:pass@]host[:port]/?from=ADDR&to=ADDR[,ADDR][&tls=starttls|opportunistic|none]` — e-mail through
//!   a mail server (STARTTLS required by default, port 587; `tls=none` for a relay on the LAN, port 25), and
//!   `smtps://…` for TLS from the first byte (port 465). Sent with `lettre` over rustls.

use std::collections::BTreeMap;

use serde_json::json;

use super::state::{Active, EventKind, LabelSet};

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Channel {
    Ntfy { base: String, topic: String, auth: Option<(String, String)> },
    Gotify { base: String, token: String },
    Discord { url: String },
    Slack { url: String },
    Telegram { token: String, chats: Vec<String> },
    Webhook { url: String },
    Smtp(Smtp),
}

/// An e-mail channel: the server, how its connection is secured, the login, the envelope.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Smtp {
    pub host: String,
    pub port: u16,
    pub tls: SmtpTls,
    pub auth: Option<(String, String)>,
    pub from: String,
    pub to: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum SmtpTls {
    /// `smtps://`: TLS from the first byte
    Implicit,
    /// STARTTLS, refusing a server that does not offer it (the default)
    StartTls,
    /// STARTTLS when offered, plain otherwise
    Opportunistic,
    /// plain SMTP (a relay on the LAN)
    None,
}

fn decoded(s: &str) -> String {
    percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned()
}

fn parse_smtp(u: &reqwest::Url) -> Result<Smtp, String> {
    const FORM: &str = "expected smtp://[user:pass@]host[:port]/?from=ADDRESS&to=ADDRESS[,ADDRESS]";
    let host = u.host_str().filter(|h| !h.is_empty()).ok_or(FORM)?.trim_matches(['[', ']']).to_string();
    let query =
        |key: &str| -> Vec<String> { u.query_pairs().filter(|(k, _)| k == key).map(|(_, v)| v.into_owned()).collect() };
    let tls = if u.scheme() == "smtps" {
        SmtpTls::Implicit
    } else {
        match query("tls").last().map(String::as_str) {
            None | Some("starttls") | Some("required") => SmtpTls::StartTls,
            Some("opportunistic") => SmtpTls::Opportunistic,
            Some("none") => SmtpTls::None,
            Some(other) => return Err(format!("tls={other}: use starttls (the default), opportunistic or none")),
        }
    };
    let port = u.port().unwrap_or(match tls {
        SmtpTls::Implicit => 465,
        SmtpTls::None => 25,
        _ => 587,
    });
    let mailbox = |a: &str| {
        a.parse::<lettre::message::Mailbox>()
            .map(|_| a.to_string())
            .map_err(|e| format!("{a:?} is not an e-mail address: {e}"))
    };
    let from = mailbox(query("from").last().ok_or("smtp:// needs ?from=ADDRESS (the sender)")?)?;
    let to = query("to")
        .iter()
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .map(mailbox)
        .collect::<Result<Vec<_>, _>>()?;
    if to.is_empty() {
        return Err("smtp:// needs ?to=ADDRESS[,ADDRESS] (the recipients)".into());
    }
    let auth = (!u.username().is_empty()).then(|| (decoded(u.username()), decoded(u.password().unwrap_or(""))));
    Ok(Smtp { host, port, tls, auth, from, to })
}

fn scheme_of(u: &reqwest::Url) -> &'static str {
    if u.query_pairs().any(|(k, v)| k == "scheme" && v == "http") { "http" } else { "https" }
}

fn host_port(u: &reqwest::Url) -> Result<String, String> {
    let host = u.host_str().filter(|h| !h.is_empty()).ok_or("a host is required")?;
    Ok(match u.port() {
        Some(p) => format!("{host}:{p}"),
        None => host.to_string(),
    })
}

impl Channel {
    /// Parse a channel URL; the error says what is wrong in the user's terms.
    pub(crate) fn parse(url: &str) -> Result<Channel, String> {
        let u = reqwest::Url::parse(url).map_err(|e| format!("not a URL: {e}"))?;
        let path: Vec<&str> = u.path().split('/').filter(|s| !s.is_empty()).collect();
        match u.scheme() {
            "ntfy" => {
                let topic = path.last().ok_or("expected ntfy://host/topic")?.to_string();
                let prefix = path[..path.len() - 1].join("/");
                let base = format!("{}://{}/{}", scheme_of(&u), host_port(&u)?, prefix);
                let auth = (!u.username().is_empty())
                    .then(|| (u.username().to_string(), u.password().unwrap_or("").to_string()));
                Ok(Channel::Ntfy { base: base.trim_end_matches('/').to_string(), topic, auth })
            }
            "gotify" => {
                let token = path.last().ok_or("expected gotify://host/TOKEN")?.to_string();
                let prefix = path[..path.len() - 1].join("/");
                let base = format!("{}://{}/{}", scheme_of(&u), host_port(&u)?, prefix);
                Ok(Channel::Gotify { base: base.trim_end_matches('/').to_string(), token })
            }
            "discord" => {
                let token = u.username();
                let id = u.host_str().unwrap_or("");
                if token.is_empty() || id.is_empty() {
                    return Err("expected discord://TOKEN@WEBHOOK_ID".into());
                }
                Ok(Channel::Discord { url: format!("https://discord.com/api/webhooks/{id}/{token}") })
            }
            "slack" => {
                let parts: Vec<&str> =
                    std::iter::once(u.host_str().unwrap_or("")).chain(path.iter().copied()).collect();
                if parts.len() != 3 || parts.iter().any(|p| p.is_empty()) {
                    return Err("expected slack://T…/B…/X… (the three parts of the incoming webhook URL)".into());
                }
                Ok(Channel::Slack { url: format!("https://hooks.slack.com/services/{}", parts.join("/")) })
            }
            "telegram" => {
                let token = match u.password() {
                    Some(p) => format!("{}:{p}", u.username()),
                    None => u.username().to_string(),
                };
                let chats: Vec<String> = u
                    .query_pairs()
                    .filter(|(k, _)| k == "chats")
                    .flat_map(|(_, v)| v.split(',').map(str::to_string).collect::<Vec<_>>())
                    .filter(|c| !c.is_empty())
                    .collect();
                if token.is_empty() || chats.is_empty() {
                    return Err("expected telegram://BOT_TOKEN@telegram?chats=CHAT_ID".into());
                }
                Ok(Channel::Telegram { token, chats })
            }
            "http" | "https" => Ok(Channel::Webhook { url: url.to_string() }),
            "smtp" | "smtps" => parse_smtp(&u).map(Channel::Smtp),
            other => Err(format!(
                "unknown channel type {other}://; use ntfy://, gotify://, discord://, slack://, telegram://, smtp:// \
                 or an https:// webhook"
            )),
        }
    }
}

/// One notice: the alerts of one evaluation round for one channel.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub(crate) struct Notice {
    pub alerts: Vec<NoticeAlert>,
    /// the admin UI's address, for links (may be empty)
    pub external_url: String,
    pub test: bool,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub(crate) struct NoticeAlert {
    pub kind: String,
    pub labels: LabelSet,
    pub summary: String,
    pub value: f64,
    pub since_ms: i64,
    pub resolved_ms: Option<i64>,
}

impl NoticeAlert {
    pub(crate) fn of(kind: EventKind, a: &Active, now: i64) -> NoticeAlert {
        NoticeAlert {
            kind: match kind {
                EventKind::Resolved => "resolved",
                _ => "firing",
            }
            .into(),
            labels: a.labels.clone(),
            summary: a.summary.clone(),
            value: a.value,
            since_ms: a.fired_ms.unwrap_or(a.since_ms),
            resolved_ms: (kind == EventKind::Resolved).then_some(now),
        }
    }

    fn severity(&self) -> &str {
        self.labels.get("severity").map(String::as_str).unwrap_or("warning")
    }
}

fn rfc3339(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000)
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_default()
}

impl Notice {
    fn title(&self) -> String {
        let firing = self.alerts.iter().filter(|a| a.kind == "firing").count();
        let names: Vec<&str> =
            self.alerts.iter().filter_map(|a| a.labels.get("alertname").map(String::as_str)).collect();
        let mut names = names;
        names.dedup();
        let what = names.join(", ");
        if self.test {
            "hearth: test notification".into()
        } else if firing > 0 {
            format!("[FIRING:{firing}] {what}")
        } else {
            format!("[RESOLVED] {what}")
        }
    }

    fn text(&self) -> String {
        if self.test {
            return "This is a test from hearth's Alerts page: this channel works.".into();
        }
        let mut lines = vec![];
        for a in &self.alerts {
            let mark = if a.kind == "firing" { "🔥" } else { "✅" };
            let s = if a.summary.is_empty() {
                a.labels.get("alertname").cloned().unwrap_or_default()
            } else {
                a.summary.clone()
            };
            lines.push(format!("{mark} {s}"));
        }
        if !self.external_url.is_empty() {
            lines.push(format!("{}/alerts", self.external_url.trim_end_matches('/')));
        }
        lines.join("\n")
    }

    fn max_severity(&self) -> &str {
        let rank = |s: &str| match s {
            "critical" => 3,
            "warning" => 2,
            _ => 1,
        };
        self.alerts.iter().map(|a| a.severity()).max_by_key(|s| rank(s)).unwrap_or("info")
    }

    /// Alertmanager's webhook payload (version 4).
    pub(crate) fn alertmanager(&self, receiver: &str) -> serde_json::Value {
        let firing = self.alerts.iter().any(|a| a.kind == "firing");
        let common = |f: &dyn Fn(&NoticeAlert) -> &LabelSet| -> BTreeMap<String, String> {
            let mut it = self.alerts.iter();
            let Some(first) = it.next() else { return BTreeMap::new() };
            let mut c = f(first).clone();
            for a in it {
                c.retain(|k, v| f(a).get(k) == Some(v));
            }
            c
        };
        let alerts: Vec<serde_json::Value> = self
            .alerts
            .iter()
            .map(|a| {
                json!({
                    "status": a.kind,
                    "labels": a.labels,
                    "annotations": {"summary": a.summary},
                    "startsAt": rfc3339(a.since_ms),
                    "endsAt": a.resolved_ms.map(rfc3339).unwrap_or_else(|| "0001-01-01T00:00:00Z".into()),
                    "generatorURL": if self.external_url.is_empty() { String::new() } else { format!("{}/alerts", self.external_url.trim_end_matches('/')) },
                    "fingerprint": format!("{:016x}", xxhash_rust::xxh3::xxh3_64(super::state::key("", &a.labels).as_bytes())),
                })
            })
            .collect();
        let common_labels = common(&|a| &a.labels);
        json!({
            "version": "4",
            "groupKey": format!("{{}}:{{alertname=\"{}\"}}", common_labels.get("alertname").cloned().unwrap_or_default()),
            "truncatedAlerts": 0,
            "status": if firing { "firing" } else { "resolved" },
            "receiver": receiver,
            "groupLabels": {},
            "commonLabels": common_labels,
            "commonAnnotations": {},
            "externalURL": self.external_url,
            "alerts": alerts,
        })
    }
}

/// The HTTP request a channel makes for a notice (method POST; url, headers, body).
pub(crate) fn request(ch: &Channel, receiver: &str, n: &Notice) -> (String, Vec<(String, String)>, Vec<u8>) {
    let title = n.title();
    let text = n.text();
    let json_body = |v: serde_json::Value| {
        (vec![("content-type".to_string(), "application/json".to_string())], v.to_string().into_bytes())
    };
    match ch {
        Channel::Ntfy { base, topic, auth } => {
            let prio = match n.max_severity() {
                "critical" => "5",
                "warning" => "4",
                _ => "3",
            };
            let mut h = vec![
                ("title".to_string(), title),
                ("priority".to_string(), prio.to_string()),
                (
                    "tags".to_string(),
                    if n.alerts.iter().any(|a| a.kind == "firing") { "rotating_light" } else { "white_check_mark" }
                        .to_string(),
                ),
            ];
            if !n.external_url.is_empty() {
                h.push(("click".into(), format!("{}/alerts", n.external_url.trim_end_matches('/'))));
            }
            if let Some((u, p)) = auth {
                h.push((
                    "authorization".into(),
                    format!("Basic {}", data_encoding::BASE64.encode(format!("{u}:{p}").as_bytes())),
                ));
            }
            (format!("{base}/{topic}"), h, text.into_bytes())
        }
        Channel::Gotify { base, token } => {
            let prio = match n.max_severity() {
                "critical" => 8,
                "warning" => 5,
                _ => 2,
            };
            let (h, b) = json_body(json!({"title": title, "message": text, "priority": prio}));
            (format!("{base}/message?token={token}"), h, b)
        }
        Channel::Discord { url } => {
            let (h, b) = json_body(json!({"username": "hearth", "content": format!("**{title}**\n{text}")}));
            (url.clone(), h, b)
        }
        Channel::Slack { url } => {
            let (h, b) = json_body(json!({"text": format!("*{title}*\n{text}")}));
            (url.clone(), h, b)
        }
        Channel::Telegram { token, .. } => {
            // one request per chat: `send` makes them
            (format!("https://api.telegram.org/bot{token}/sendMessage"), vec![], vec![])
        }
        // not HTTP: `send` mails it
        Channel::Smtp(_) => (String::new(), vec![], vec![]),
        Channel::Webhook { url } => {
            let (h, b) = json_body(n.alertmanager(receiver));
            (url.clone(), h, b)
        }
    }
}

/// Send a notice; the error is the reason in words (HTTP status and body, or the connection error).
pub(crate) async fn send(client: &reqwest::Client, ch: &Channel, receiver: &str, n: &Notice) -> Result<(), String> {
    let mut reqs = vec![];
    if let Channel::Smtp(s) = ch {
        return mail(s, n).await;
    }
    if let Channel::Telegram { token, chats } = ch {
        for chat in chats {
            let body =
                json!({"chat_id": chat, "text": format!("{}\n{}", n.title(), n.text())}).to_string().into_bytes();
            reqs.push((
                format!("https://api.telegram.org/bot{token}/sendMessage"),
                vec![("content-type".to_string(), "application/json".to_string())],
                body,
            ));
        }
    } else {
        reqs.push(request(ch, receiver, n));
    }
    for (url, headers, body) in reqs {
        let mut r = client.post(&url).timeout(std::time::Duration::from_secs(10));
        for (k, v) in headers {
            r = r.header(k, v);
        }
        let resp = r.body(body).send().await.map_err(|e| crate::util::error_chain(&e))?;
        if !resp.status().is_success() {
            let status = resp.status();
            let text: String = resp.text().await.unwrap_or_default().chars().take(200).collect();
            return Err(format!("HTTP {status}: {text}"));
        }
    }
    Ok(())
}

/// The notice as a plain-text e-mail.
pub(crate) fn message(s: &Smtp, n: &Notice) -> Result<lettre::Message, String> {
    let addr = |a: &str| a.parse::<lettre::message::Mailbox>().map_err(|e| format!("{a}: {e}"));
    let mut b = lettre::Message::builder()
        .from(addr(&s.from)?)
        .subject(n.title())
        .header(lettre::message::header::ContentType::TEXT_PLAIN);
    for to in &s.to {
        b = b.to(addr(to)?);
    }
    b.body(n.text()).map_err(|e| e.to_string())
}

async fn mail(s: &Smtp, n: &Notice) -> Result<(), String> {
    use lettre::AsyncTransport;
    use lettre::transport::smtp::authentication::Credentials;
    use lettre::transport::smtp::client::{Tls, TlsParameters};
    let msg = message(s, n)?;
    let params = || TlsParameters::new(s.host.clone()).map_err(|e| crate::util::error_chain(&e));
    let tls = match s.tls {
        SmtpTls::Implicit => Tls::Wrapper(params()?),
        SmtpTls::StartTls => Tls::Required(params()?),
        SmtpTls::Opportunistic => Tls::Opportunistic(params()?),
        SmtpTls::None => Tls::None,
    };
    let mut t = lettre::AsyncSmtpTransport::<lettre::Tokio1Executor>::builder_dangerous(&s.host)
        .port(s.port)
        .tls(tls)
        .timeout(Some(std::time::Duration::from_secs(10)));
    if let Some((user, pass)) = &s.auth {
        t = t.credentials(Credentials::new(user.clone(), pass.clone()));
    }
    t.build().send(msg).await.map(|_| ()).map_err(|e| crate::util::error_chain(&e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_urls_parse_into_their_endpoints() {
        assert_eq!(
            Channel::parse("ntfy://ntfy.sh/homelab").unwrap(),
            Channel::Ntfy { base: "https://ntfy.sh".into(), topic: "homelab".into(), auth: None }
        );
        assert_eq!(
            Channel::parse("ntfy://u:p@10.0.0.5:8080/alerts?scheme=http").unwrap(),
            Channel::Ntfy {
                base: "http://10.0.0.5:8080".into(),
                topic: "alerts".into(),
                auth: Some(("u".into(), "p".into()))
            }
        );
        assert_eq!(
            Channel::parse("gotify://push.example/sub/AbC123").unwrap(),
            Channel::Gotify { base: "https://push.example/sub".into(), token: "AbC123".into() }
        );
        assert_eq!(
            Channel::parse("discord://tok@123456").unwrap(),
            Channel::Discord { url: "https://discord.com/api/webhooks/123456/tok".into() }
        );
        assert_eq!(
            Channel::parse("slack://T000/B000/XXX").unwrap(),
            Channel::Slack { url: "https://hooks.slack.com/services/T000/B000/XXX".into() }
        );
        assert_eq!(
            Channel::parse("telegram://123:abc@telegram?chats=42,-100").unwrap(),
            Channel::Telegram { token: "123:abc".into(), chats: vec!["42".into(), "-100".into()] }
        );
        for bad in [
            "ntfy://host",
            "discord://123456",
            "slack://T/B",
            "telegram://t@telegram",
            "smtp://mail",
            "smtp://mail/?from=a@example.org",
            "smtp://mail/?from=nobody&to=b@example.org",
            "smtp://mail/?from=a@example.org&to=b@example.org&tls=ssl3",
            "ftp://x",
            "nope",
        ] {
            assert!(Channel::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn smtp_urls_name_the_server_the_security_and_the_envelope() {
        assert_eq!(
            Channel::parse("smtp://me%40example.org:p%2Fss@mail.example.org/?from=hearth@example.org&to=a@example.org,b@example.org")
                .unwrap(),
            Channel::Smtp(Smtp {
                host: "mail.example.org".into(),
                port: 587,
                tls: SmtpTls::StartTls,
                auth: Some(("me@example.org".into(), "p/ss".into())),
                from: "hearth@example.org".into(),
                to: vec!["a@example.org".into(), "b@example.org".into()],
            })
        );
        let Channel::Smtp(s) = Channel::parse("smtps://mail.example.org/?from=h@x.org&to=a@x.org").unwrap() else {
            panic!()
        };
        assert_eq!((s.port, s.tls, s.auth), (465, SmtpTls::Implicit, None));
        let Channel::Smtp(s) = Channel::parse("smtp://10.0.0.2/?from=h@x.org&to=a@x.org&tls=none").unwrap() else {
            panic!()
        };
        assert_eq!((s.port, s.tls), (25, SmtpTls::None));
        let Channel::Smtp(s) = Channel::parse("smtp://relay:2525/?from=h@x.org&to=a@x.org&tls=opportunistic").unwrap()
        else {
            panic!()
        };
        assert_eq!((s.host.as_str(), s.port, s.tls), ("relay", 2525, SmtpTls::Opportunistic));
        let n = Notice { alerts: vec![], external_url: String::new(), test: true };
        let m = String::from_utf8(message(&s, &n).unwrap().formatted()).unwrap();
        assert!(m.contains("Subject: hearth: test notification"), "{m}");
        assert!(m.contains("To: a@x.org"), "{m}");
    }

    #[test]
    fn the_webhook_speaks_alertmanager() {
        let labels: LabelSet = [("alertname", "DiskFull"), ("severity", "critical"), ("mountpoint", "/")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let n = Notice {
            alerts: vec![NoticeAlert {
                kind: "firing".into(),
                labels,
                summary: "/ is 93% full".into(),
                value: 93.0,
                since_ms: 1_700_000_000_000,
                resolved_ms: None,
            }],
            external_url: "https://hearth.home.arpa".into(),
            test: false,
        };
        let v = n.alertmanager("ops");
        assert_eq!(v["version"], "4");
        assert_eq!(v["status"], "firing");
        assert_eq!(v["receiver"], "ops");
        assert_eq!(v["commonLabels"]["alertname"], "DiskFull");
        assert_eq!(v["alerts"][0]["startsAt"], "2023-11-14T22:13:20Z");
        assert_eq!(v["alerts"][0]["annotations"]["summary"], "/ is 93% full");
        let (url, h, body) = request(&Channel::parse("ntfy://ntfy.sh/t").unwrap(), "ops", &n);
        assert_eq!(url, "https://ntfy.sh/t");
        assert!(h.contains(&("priority".into(), "5".into())));
        assert!(h.contains(&("click".into(), "https://hearth.home.arpa/alerts".into())));
        assert!(String::from_utf8(body).unwrap().contains("/ is 93% full"));
    }
}
