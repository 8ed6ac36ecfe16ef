//! The alert state machine (pure): for each rule and each label set its expression returns, inactive → pending →
//! firing → resolved, with `for`, repeat notices, flap damping (a firing alert must be clear on two evaluations in a
//! row before it resolves), and silences. The clock is passed in; the shell persists [`Active`] and the events.

use std::collections::{BTreeMap, HashMap};

pub(crate) type LabelSet = BTreeMap<String, String>;

/// Evaluations in a row an alert must be clear before it is resolved.
pub(crate) const CLEAR_TO_RESOLVE: u32 = 2;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Phase {
    Pending,
    Firing,
}

/// One alert: a rule's label set while its condition holds (or until it is resolved).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub(crate) struct Active {
    pub rule: String,
    /// the expression's labels plus `alertname` and `severity`
    pub labels: LabelSet,
    pub phase: Phase,
    /// when the condition first held (ms)
    pub since_ms: i64,
    /// when it started firing (ms)
    pub fired_ms: Option<i64>,
    pub value: f64,
    pub summary: String,
    /// clear evaluations in a row while firing
    pub clear: u32,
    /// when a notice about it was last queued (ms)
    pub notified_ms: Option<i64>,
}

impl Active {
    pub(crate) fn key(&self) -> String {
        key(&self.rule, &self.labels)
    }
}

pub(crate) fn key(rule: &str, labels: &LabelSet) -> String {
    let mut s = String::from(rule);
    for (k, v) in labels {
        s.push('\u{1f}');
        s.push_str(k);
        s.push('=');
        s.push_str(v);
    }
    s
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub(crate) enum EventKind {
    Firing,
    /// still firing after `repeat_interval`
    Repeat,
    Resolved,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Event {
    pub kind: EventKind,
    pub alert: Active,
    /// a matching silence: the event is recorded but nobody is notified
    pub silenced: bool,
}

/// What a rule needs here.
pub(crate) struct RuleSpec<'a> {
    pub name: &'a str,
    pub for_ms: i64,
    pub severity: &'a str,
    pub summary: &'a str,
}

/// A silence: every matcher must match an alert's labels (`name`, value, regex or not), until `until_ms`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub(crate) struct Silence {
    pub id: i64,
    pub matchers: Vec<Matcher>,
    pub until_ms: i64,
    pub comment: String,
    pub created_by: String,
    pub created_ms: i64,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub(crate) struct Matcher {
    pub name: String,
    pub value: String,
    /// `value` is a regular expression (fully anchored)
    #[serde(default)]
    pub regex: bool,
}

impl Matcher {
    pub(crate) fn matches(&self, labels: &LabelSet) -> bool {
        let v = labels.get(&self.name).map(String::as_str).unwrap_or("");
        if self.regex {
            regex::Regex::new(&format!("^(?:{})$", self.value)).is_ok_and(|r| r.is_match(v))
        } else {
            v == self.value
        }
    }
}

pub(crate) fn silenced(silences: &[Silence], labels: &LabelSet, now: i64) -> bool {
    silences.iter().any(|s| s.until_ms > now && !s.matchers.is_empty() && s.matchers.iter().all(|m| m.matches(labels)))
}

/// Fill `{{ $labels.x }}` and `{{ $value }}` in a summary, as Prometheus's templates are commonly written.
pub(crate) fn render(summary: &str, labels: &LabelSet, value: f64) -> String {
    let mut out = summary.replace("{{ $value }}", &fmt_value(value)).replace("{{$value}}", &fmt_value(value));
    for (k, v) in labels {
        out = out.replace(&format!("{{{{ $labels.{k} }}}}"), v).replace(&format!("{{{{$labels.{k}}}}}"), v);
    }
    out
}

fn fmt_value(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 { format!("{v:.0}") } else { format!("{v:.2}") }
}

/// One evaluation of `rule` at `now` with the expression's `results`: updates `active` (this rule's entries) and
/// returns the events to record and notify.
pub(crate) fn evaluate(
    active: &mut HashMap<String, Active>,
    rule: &RuleSpec<'_>,
    results: Vec<(LabelSet, f64)>,
    now: i64,
    repeat_ms: i64,
    silences: &[Silence],
    keep_absent: bool,
) -> Vec<Event> {
    let mut events = vec![];
    let mut seen = std::collections::HashSet::new();
    for (mut labels, value) in results {
        labels.remove("__name__");
        labels.insert("alertname".into(), rule.name.into());
        labels.insert("severity".into(), rule.severity.into());
        let k = key(rule.name, &labels);
        seen.insert(k.clone());
        let summary = render(rule.summary, &labels, value);
        let a = active.entry(k).or_insert_with(|| Active {
            rule: rule.name.into(),
            labels: labels.clone(),
            phase: Phase::Pending,
            since_ms: now,
            fired_ms: None,
            value,
            summary: summary.clone(),
            clear: 0,
            notified_ms: None,
        });
        a.value = value;
        a.summary = summary;
        a.clear = 0;
        match a.phase {
            Phase::Pending if now - a.since_ms >= rule.for_ms => {
                a.phase = Phase::Firing;
                a.fired_ms = Some(now);
                events.push(Event {
                    kind: EventKind::Firing,
                    alert: a.clone(),
                    silenced: silenced(silences, &a.labels, now),
                });
            }
            Phase::Firing if a.notified_ms.is_some_and(|t| now - t >= repeat_ms) => {
                events.push(Event {
                    kind: EventKind::Repeat,
                    alert: a.clone(),
                    silenced: silenced(silences, &a.labels, now),
                });
            }
            _ => {}
        }
    }
    if keep_absent {
        return events;
    }
    let mine: Vec<String> =
        active.iter().filter(|(k, a)| a.rule == rule.name && !seen.contains(*k)).map(|(k, _)| k.clone()).collect();
    for k in mine {
        let a = active.get_mut(&k).expect("listed above");
        match a.phase {
            Phase::Pending => {
                active.remove(&k);
            }
            Phase::Firing => {
                a.clear += 1;
                if a.clear >= CLEAR_TO_RESOLVE {
                    let a = active.remove(&k).expect("listed above");
                    let silenced = silenced(silences, &a.labels, now);
                    events.push(Event { kind: EventKind::Resolved, alert: a, silenced });
                }
            }
        }
    }
    events
}

/// When the next evaluation must run so a pending alert fires on time: the earliest `since + for` after `now`.
pub(crate) fn next_due(active: &HashMap<String, Active>, for_ms: &dyn Fn(&str) -> Option<i64>) -> Option<i64> {
    active.values().filter(|a| a.phase == Phase::Pending).filter_map(|a| Some(a.since_ms + for_ms(&a.rule)?)).min()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ls(pairs: &[(&str, &str)]) -> LabelSet {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    const RULE: RuleSpec<'static> = RuleSpec {
        name: "DiskFull",
        for_ms: 60_000,
        severity: "critical",
        summary: "{{ $labels.mountpoint }} is {{ $value }}% full",
    };

    #[test]
    fn pending_then_firing_after_for_then_resolved_after_two_clear_rounds() {
        let mut act = HashMap::new();
        let hot = || vec![(ls(&[("mountpoint", "/")]), 93.0)];
        assert!(evaluate(&mut act, &RULE, hot(), 0, 3_600_000, &[], false).is_empty());
        assert_eq!(act.values().next().unwrap().phase, Phase::Pending);
        assert!(evaluate(&mut act, &RULE, hot(), 30_000, 3_600_000, &[], false).is_empty());
        let ev = evaluate(&mut act, &RULE, hot(), 60_000, 3_600_000, &[], false);
        assert_eq!(ev.len(), 1);
        assert_eq!(ev[0].kind, EventKind::Firing);
        assert_eq!(ev[0].alert.summary, "/ is 93% full");
        assert_eq!(ev[0].alert.labels["alertname"], "DiskFull");
        assert_eq!(ev[0].alert.labels["severity"], "critical");
        // one clear round is a flap, not a resolution
        assert!(evaluate(&mut act, &RULE, vec![], 75_000, 3_600_000, &[], false).is_empty());
        assert!(evaluate(&mut act, &RULE, hot(), 90_000, 3_600_000, &[], false).is_empty());
        assert!(evaluate(&mut act, &RULE, vec![], 105_000, 3_600_000, &[], false).is_empty());
        let ev = evaluate(&mut act, &RULE, vec![], 120_000, 3_600_000, &[], false);
        assert_eq!(ev.iter().map(|e| e.kind).collect::<Vec<_>>(), [EventKind::Resolved]);
        assert!(act.is_empty());
    }

    #[test]
    fn during_the_startup_grace_missing_series_keep_their_alerts() {
        let mut act = HashMap::new();
        evaluate(&mut act, &RULE, vec![(ls(&[("mountpoint", "/")]), 91.0)], 0, 1, &[], false);
        assert!(evaluate(&mut act, &RULE, vec![], 10_000, 1, &[], true).is_empty());
        assert_eq!(act.len(), 1, "kept while the metrics come back");
        let ev = evaluate(&mut act, &RULE, vec![(ls(&[("mountpoint", "/")]), 92.0)], 60_000, 1, &[], false);
        assert_eq!(ev[0].kind, EventKind::Firing, "the pending time before the restart counted");
    }

    #[test]
    fn a_pending_alert_that_clears_is_dropped_silently_and_next_due_is_its_for() {
        let mut act = HashMap::new();
        evaluate(&mut act, &RULE, vec![(ls(&[("mountpoint", "/")]), 91.0)], 10_000, 1, &[], false);
        assert_eq!(next_due(&act, &|_| Some(60_000)), Some(70_000));
        assert!(evaluate(&mut act, &RULE, vec![], 20_000, 1, &[], false).is_empty());
        assert!(act.is_empty());
    }

    #[test]
    fn repeats_after_the_interval_and_silences_mute() {
        let rule = RuleSpec { for_ms: 0, ..RULE };
        let mut act = HashMap::new();
        let hot = || vec![(ls(&[("mountpoint", "/srv")]), 95.0)];
        let ev = evaluate(&mut act, &rule, hot(), 0, 10_000, &[], false);
        assert_eq!(ev[0].kind, EventKind::Firing, "for = 0 fires at once");
        act.values_mut().for_each(|a| a.notified_ms = Some(0));
        assert!(evaluate(&mut act, &rule, hot(), 5_000, 10_000, &[], false).is_empty());
        let sil = Silence {
            id: 1,
            matchers: vec![Matcher { name: "mountpoint".into(), value: "/s.*".into(), regex: true }],
            until_ms: 20_000,
            comment: String::new(),
            created_by: "admin".into(),
            created_ms: 0,
        };
        let ev = evaluate(&mut act, &rule, hot(), 10_000, 10_000, std::slice::from_ref(&sil), false);
        assert_eq!((ev[0].kind, ev[0].silenced), (EventKind::Repeat, true));
        let ev = evaluate(&mut act, &rule, hot(), 25_000, 10_000, &[sil], false);
        assert_eq!((ev[0].kind, ev[0].silenced), (EventKind::Repeat, false), "the silence expired");
    }
}
