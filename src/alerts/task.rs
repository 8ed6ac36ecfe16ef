//! The alerts applier and tasks: `alerts` (evaluate every rule every `alerts.evaluation_interval`, and exactly when a
//! pending alert's `for` ends; one transaction per round) and `notify` (deliver the outbox with retries and backoff).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::params;

use super::channel::{Channel, Notice, NoticeAlert};
use super::state::{self, Event, EventKind, RuleSpec};
use super::{Alerts, Checker, GIVE_UP_MS};
use crate::config::live::{Applier, LiveConfig};
use crate::config::{AlertChannel, AlertRule, AlertsConfig, Config, ConfigError};
use crate::supervisor::TaskCtx;
use crate::util::Locked;

/// The built-in rules (`alerts.default_rules`): what a homelab owner expects without writing PromQL.
pub(crate) fn default_rules() -> Vec<AlertRule> {
    let r = |name: &str, expr: &str, for_s: u64, severity: &str, summary: &str| AlertRule {
        name: name.into(),
        expr: expr.into(),
        language: Default::default(),
        for_: crate::config::Duration::from_secs(for_s),
        severity: severity.into(),
        summary: summary.into(),
    };
    vec![
        r(
            "DiskAlmostFull",
            "100 * (1 - node_filesystem_avail_bytes / node_filesystem_size_bytes) > 90",
            300,
            "critical",
            "{{ $labels.mountpoint }} is {{ $value }}% full",
        ),
        r(
            "HighTemperature",
            "node_thermal_zone_temp > 80",
            120,
            "critical",
            "{{ $labels.type }} is at {{ $value }} °C",
        ),
        r(
            "Throttled",
            "hearth_pi_throttled{flag=~\"under_voltage|throttled\"} == 1",
            60,
            "warning",
            "The Raspberry Pi reports {{ $labels.flag }}: check the power supply and cooling",
        ),
        r(
            "SubsystemFailed",
            "hearth_subsystem_state{state=\"failed\"} == 1",
            60,
            "critical",
            "hearth's {{ $labels.subsystem }} subsystem failed",
        ),
        r(
            "CertificateExpiresSoon",
            "(hearth_tls_certificate_expiry_timestamp_seconds - time()) / 86400 < 14",
            600,
            "warning",
            "The certificate for {{ $labels.name }} expires in {{ $value }} days",
        ),
        r("NoDnsUpstream", "max(hearth_dns_upstream_healthy) == 0", 120, "critical", "No DNS upstream is answering"),
        r(
            "ListUpdateFailing",
            "(sum(increase(hearth_dns_list_downloads_total{result=\"error\"}[1d])) > 0) unless on () (sum(increase(hearth_dns_list_downloads_total{result=\"ok\"}[1d])) > 0)",
            0,
            "warning",
            "Block-list downloads have failed for a day",
        ),
        r(
            "TargetDown",
            "up == 0",
            300,
            "warning",
            "The scrape target {{ $labels.job }} ({{ $labels.instance }}) is down",
        ),
    ]
}

/// The rules in effect: the built-ins (unless turned off) with the configured ones replacing those of the same name.
pub(crate) fn rules_of(a: &AlertsConfig) -> Vec<(AlertRule, bool)> {
    let mut out: Vec<(AlertRule, bool)> = vec![];
    if a.default_rules {
        out.extend(
            default_rules().into_iter().filter(|d| !a.rules.iter().any(|r| r.name == d.name)).map(|r| (r, true)),
        );
    }
    out.extend(a.rules.iter().cloned().map(|r| (r, false)));
    out
}

/// Everything `[alerts]` must pass: expressions parse, channel URLs parse.
pub(crate) fn check(cfg: &Config, parses: &Checker) -> Result<(), ConfigError> {
    for (i, r) in cfg.alerts.rules.iter().enumerate() {
        parses(r.language, &r.expr).map_err(|e| ConfigError::invalid(format!("alerts.rules[{i}].expr"), e))?;
    }
    for (i, c) in cfg.alerts.channels.iter().enumerate() {
        Channel::parse(&c.url).map_err(|e| ConfigError::invalid(format!("alerts.channels[{i}].url"), e))?;
    }
    Ok(())
}

/// The compiled `[alerts]`: rules and channels.
#[derive(Clone)]
pub(crate) struct Compiled {
    pub rules: Vec<(AlertRule, bool)>,
    pub channels: Vec<(AlertChannel, Channel)>,
    pub cfg: AlertsConfig,
}

pub(crate) fn compile(cfg: &AlertsConfig) -> Result<Compiled, ConfigError> {
    let mut channels = vec![];
    for (i, c) in cfg.channels.iter().enumerate() {
        let ch = Channel::parse(&c.url).map_err(|e| ConfigError::invalid(format!("alerts.channels[{i}].url"), e))?;
        channels.push((c.clone(), ch));
    }
    Ok(Compiled { rules: rules_of(cfg), channels, cfg: cfg.clone() })
}

pub(crate) struct AlertsApplier {
    pub current: Arc<Mutex<Compiled>>,
    pub checker: Checker,
    prepared: Mutex<Option<Compiled>>,
}

impl AlertsApplier {
    pub(crate) fn new(current: Arc<Mutex<Compiled>>, checker: Checker) -> Self {
        AlertsApplier { current, checker, prepared: Mutex::default() }
    }
}

impl Applier for AlertsApplier {
    fn prepare(&self, _old: &Config, new: &Config) -> Result<(), ConfigError> {
        check(new, &self.checker)?;
        *self.prepared.locked() = Some(compile(&new.alerts)?);
        Ok(())
    }
    fn abort(&self, _old: &Config, _new: &Config) {
        self.prepared.locked().take();
    }
    fn commit(&self, _old: &Config, _new: &Config) {
        if let Some(c) = self.prepared.locked().take() {
            *self.current.locked() = c;
        }
    }
}

fn severity_rank(s: &str) -> u8 {
    match s {
        "critical" => 3,
        "warning" => 2,
        _ => 1,
    }
}

/// The notices one round's events make: per channel, the unsilenced events at or above its severity (resolved ones
/// only where `send_resolved`).
pub(crate) fn notices(
    events: &[Event],
    channels: &[(AlertChannel, Channel)],
    external_url: &str,
    now: i64,
) -> Vec<(String, Notice)> {
    let mut out = vec![];
    for (c, _) in channels {
        let alerts: Vec<NoticeAlert> = events
            .iter()
            .filter(|e| !e.silenced)
            .filter(|e| e.kind != EventKind::Resolved || c.send_resolved)
            .filter(|e| {
                severity_rank(e.alert.labels.get("severity").map(String::as_str).unwrap_or("warning"))
                    >= severity_rank(&c.min_severity)
            })
            .map(|e| NoticeAlert::of(e.kind, &e.alert, now))
            .collect();
        if !alerts.is_empty() {
            out.push((c.name.clone(), Notice { alerts, external_url: external_url.to_string(), test: false }));
        }
    }
    out
}

/// One evaluation round at `now`: every rule, then one transaction with the state, the history and the notices.
/// `grace`: right after a start the metrics are not collected yet, so alerts whose series are missing are kept as
/// they are (neither dropped nor counted clear) instead of being resolved by the restart.
pub(crate) async fn round(
    alerts: &Alerts,
    compiled: &Compiled,
    now: i64,
    grace: bool,
) -> Result<usize, super::AlertsError> {
    let silences = alerts.silences(now).await?;
    let mut results = vec![];
    for (rule, _) in &compiled.rules {
        let (eval, expr, language) = (alerts.evaluate.clone(), rule.expr.clone(), rule.language);
        let r = tokio::task::spawn_blocking(move || eval(language, &expr, now))
            .await
            .unwrap_or_else(|_| Err("the query panicked".into()));
        results.push(r);
    }
    let repeat = compiled.cfg.repeat_interval.as_std().as_millis() as i64;
    let (events, snapshot) = {
        let mut active = alerts.active.locked();
        // alerts of rules that left the config are dropped (resolved without a notice)
        active.retain(|_, a| compiled.rules.iter().any(|(r, _)| r.name == a.rule));
        let mut events = vec![];
        let mut errors = alerts.rule_errors.locked();
        errors.clear();
        for ((rule, _), res) in compiled.rules.iter().zip(results) {
            match res {
                Ok(rows) => {
                    let spec = RuleSpec {
                        name: &rule.name,
                        for_ms: rule.for_.as_std().as_millis() as i64,
                        severity: &rule.severity,
                        summary: &rule.summary,
                    };
                    events.extend(state::evaluate(&mut active, &spec, rows, now, repeat, &silences, grace));
                }
                Err(e) => {
                    // a rule that cannot be evaluated keeps its alerts as they are
                    errors.insert(rule.name.clone(), e);
                }
            }
        }
        let notices = notices(&events, &compiled.channels, &compiled.cfg.external_url, now);
        // what is being notified now is not repeated before repeat_interval
        for e in events.iter().filter(|e| e.kind != EventKind::Resolved) {
            if let Some(a) = active.get_mut(&e.alert.key()) {
                a.notified_ms = Some(now);
            }
        }
        let snapshot: Vec<(String, String)> =
            active.values().map(|a| (a.key(), serde_json::to_string(a).expect("alerts serialize"))).collect();
        ((events, notices), snapshot)
    };
    let (events, notices) = events;
    let n = events.len();
    let history: Vec<(String, String, String, String, f64, bool)> = events
        .iter()
        .map(|e| {
            let kind = match e.kind {
                EventKind::Firing => "firing",
                EventKind::Repeat => "repeat",
                EventKind::Resolved => "resolved",
            };
            (
                kind.to_string(),
                e.alert.rule.clone(),
                serde_json::to_string(&e.alert.labels).expect("labels serialize"),
                e.alert.summary.clone(),
                e.alert.value,
                e.silenced,
            )
        })
        .collect();
    let queued = !notices.is_empty();
    alerts
        .db
        .call(move |c| {
            let tx = c.transaction()?;
            tx.execute("DELETE FROM alerts_active", [])?;
            for (k, data) in &snapshot {
                tx.execute("INSERT INTO alerts_active (key, data) VALUES (?1, ?2)", params![k, data])?;
            }
            for (kind, rule, labels, summary, value, silenced) in &history {
                // repeats are notices, not history
                if kind != "repeat" {
                    tx.execute(
                        "INSERT INTO alerts_history (ts_ms, kind, rule, labels, summary, value, silenced) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                        params![now, kind, rule, labels, summary, value, *silenced as i64],
                    )?;
                }
            }
            for (channel, notice) in &notices {
                tx.execute(
                    "INSERT INTO alerts_outbox (channel, notice, next_ms, created_ms) VALUES (?1, ?2, ?3, ?3)",
                    params![channel, serde_json::to_string(notice).expect("notices serialize"), now],
                )?;
            }
            tx.commit()?;
            Ok::<_, crate::storage::StorageError>(())
        })
        .await?;
    if queued {
        alerts.wake.notify_one();
    }
    Ok(n)
}

pub(crate) async fn run(
    ctx: TaskCtx,
    alerts: Arc<Alerts>,
    current: Arc<Mutex<Compiled>>,
    live: Arc<LiveConfig>,
) -> anyhow::Result<()> {
    ctx.ready("evaluating");
    let started = std::time::Instant::now();
    loop {
        let compiled = current.locked().clone();
        let interval = compiled.cfg.evaluation_interval.as_std();
        if live.current().alerts.enabled {
            let now = crate::util::unix_now_ms();
            // the startup grace: three evaluations or three collection rounds, whichever is longer
            let collect = live.current().metrics.interval.as_std();
            let grace = started.elapsed() < (interval * 3).max(collect * 3);
            match round(&alerts, &compiled, now, grace).await {
                Ok(_) => {
                    let errors = alerts.rule_errors.locked().len();
                    let firing = alerts.active.locked().values().filter(|a| a.phase == state::Phase::Firing).count();
                    if errors > 0 {
                        ctx.degraded(format!("{errors} rule(s) could not be evaluated"));
                    } else {
                        ctx.ready(format!("{} rules, {firing} firing", compiled.rules.len()));
                    }
                }
                Err(e) => ctx.degraded(format!("evaluation failed: {e}")),
            }
        } else {
            ctx.ready("off (alerts.enabled = false)");
        }
        // the next round: the interval, or sooner when a pending alert's `for` ends (delivery on time)
        let now = crate::util::unix_now_ms();
        let due = {
            let active = alerts.active.locked();
            state::next_due(&active, &|rule| {
                compiled.rules.iter().find(|(r, _)| r.name == rule).map(|(r, _)| r.for_.as_std().as_millis() as i64)
            })
        };
        let mut wait = interval;
        if let Some(d) = due {
            wait = wait.min(Duration::from_millis((d - now).max(0) as u64 + 50));
        }
        tokio::select! {
            _ = ctx.shutdown.cancelled() => return Ok(()),
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

/// Backoff after `attempts` failures: 5 s doubling, at most 10 minutes.
pub(crate) fn backoff_ms(attempts: i64) -> i64 {
    (5_000i64 << attempts.clamp(0, 10)).min(600_000)
}

pub(crate) async fn deliver(ctx: TaskCtx, alerts: Arc<Alerts>, current: Arc<Mutex<Compiled>>) -> anyhow::Result<()> {
    let client = reqwest::Client::builder().user_agent(concat!("hearth/", env!("CARGO_PKG_VERSION"))).build()?;
    ctx.ready("idle");
    loop {
        let now = crate::util::unix_now_ms();
        let due: Vec<(i64, String, String, i64, i64)> = alerts
            .db
            .call(move |c| {
                let mut st = c.prepare(
                    "SELECT id, channel, notice, attempts, created_ms FROM alerts_outbox WHERE next_ms <= ?1 ORDER BY id LIMIT 50",
                )?;
                let rows = st.query_map([now], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)))?;
                Ok::<_, crate::storage::StorageError>(rows.collect::<Result<Vec<_>, _>>()?)
            })
            .await
            .unwrap_or_default();
        let channels: HashMap<String, Channel> =
            current.locked().channels.iter().map(|(c, ch)| (c.name.clone(), ch.clone())).collect();
        let mut failed = 0;
        for (id, name, notice, attempts, created) in due {
            let result = match (channels.get(&name), serde_json::from_str::<Notice>(&notice)) {
                (Some(ch), Ok(n)) => channel_send(&client, ch, &name, &n).await,
                (None, _) => Err(format!("the channel {name:?} is no longer configured")),
                (_, Err(e)) => Err(format!("unreadable notice: {e}")),
            };
            let now = crate::util::unix_now_ms();
            {
                let mut st = alerts.channels.locked();
                let s = st.entry(name.clone()).or_default();
                match &result {
                    Ok(()) => s.last_ok_ms = Some(now),
                    Err(e) => {
                        s.last_error = Some(e.clone());
                        s.last_error_ms = Some(now);
                    }
                }
            }
            let give_up = result.is_err() && (now - created >= GIVE_UP_MS || !channels.contains_key(&name));
            if let Err(e) = &result {
                failed += 1;
                tracing::warn!(channel = %name, attempts = attempts + 1, error = %e, give_up, "alert notice not delivered");
            }
            let err = result.err();
            let _ = alerts
                .db
                .call(move |c| {
                    if err.is_none() || give_up {
                        c.execute("DELETE FROM alerts_outbox WHERE id = ?1", [id])?;
                    } else {
                        c.execute(
                            "UPDATE alerts_outbox SET attempts = attempts + 1, next_ms = ?2, last_error = ?3 WHERE id = ?1",
                            params![id, now + backoff_ms(attempts), err],
                        )?;
                    }
                    Ok::<_, crate::storage::StorageError>(())
                })
                .await;
        }
        if failed > 0 {
            ctx.degraded(format!("{failed} notice(s) not delivered; retrying"));
        } else {
            ctx.ready("idle");
        }
        tokio::select! {
            _ = ctx.shutdown.cancelled() => return Ok(()),
            _ = alerts.wake.notified() => {}
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

async fn channel_send(client: &reqwest::Client, ch: &Channel, name: &str, n: &Notice) -> Result<(), String> {
    super::channel::send(client, ch, name, n).await
}

/// "Send test" from the UI: straight to the channel, not through the outbox.
pub(crate) async fn send_test(alerts: &Alerts, compiled: &Compiled, name: &str) -> Result<(), super::AlertsError> {
    let (_, ch) = compiled
        .channels
        .iter()
        .find(|(c, _)| c.name == name)
        .ok_or_else(|| super::AlertsError::NoChannel(name.to_string()))?;
    let client = reqwest::Client::builder()
        .user_agent(concat!("hearth/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| super::AlertsError::Delivery(e.to_string()))?;
    let n = Notice { alerts: vec![], external_url: compiled.cfg.external_url.clone(), test: true };
    let r = super::channel::send(&client, ch, name, &n).await;
    let now = crate::util::unix_now_ms();
    let mut st = alerts.channels.locked();
    let s = st.entry(name.to_string()).or_default();
    match r {
        Ok(()) => {
            s.last_ok_ms = Some(now);
            Ok(())
        }
        Err(e) => {
            s.last_error = Some(e.clone());
            s.last_error_ms = Some(now);
            Err(super::AlertsError::Delivery(e))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configured_rules_replace_built_ins_of_the_same_name() {
        let mut a = AlertsConfig::default();
        a.rules.push(AlertRule {
            name: "HighTemperature".into(),
            expr: "node_thermal_zone_temp > 85".into(),
            language: Default::default(),
            for_: crate::config::Duration::from_secs(0),
            severity: "critical".into(),
            summary: String::new(),
        });
        let rules = rules_of(&a);
        let t: Vec<_> = rules.iter().filter(|(r, _)| r.name == "HighTemperature").collect();
        assert_eq!(t.len(), 1);
        assert!(!t[0].1 && t[0].0.expr.contains("85"));
        assert!(rules.len() >= 8);
        a.default_rules = false;
        assert_eq!(rules_of(&a).len(), 1);
        // every built-in parses in hearth's PromQL
        for r in default_rules() {
            crate::metrics::promql::Query::parse(&r.expr).unwrap_or_else(|e| panic!("{}: {e}", r.name));
        }
    }

    #[test]
    fn backoff_doubles_to_ten_minutes() {
        assert_eq!(backoff_ms(0), 5_000);
        assert_eq!(backoff_ms(1), 10_000);
        assert_eq!(backoff_ms(20), 600_000);
    }
}
