//! The supervisor: every subsystem runs as a named task with a state (starting, ready, degraded, failed). A task
//! that fails (returns an error, panics, or returns before shutdown) is restarted after an exponential backoff
//! with jitter, within a restart budget; once the budget is spent it stays `failed` and `/readyz` says so.
//!
//! Invariants: the restart policy is pure ([`RestartPolicy::next_delay`]); only tasks change their own state
//! between `starting` and `ready`/`degraded`, only the supervisor sets `failed`/`stopped`.

use crate::util::RwLocked;
use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde::Serialize;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub(crate) enum TaskState {
    Starting,
    Ready,
    Degraded,
    Failed,
    Stopped,
}

impl TaskState {
    pub(crate) const ALL: [TaskState; 5] =
        [TaskState::Starting, TaskState::Ready, TaskState::Degraded, TaskState::Failed, TaskState::Stopped];

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            TaskState::Starting => "starting",
            TaskState::Ready => "ready",
            TaskState::Degraded => "degraded",
            TaskState::Failed => "failed",
            TaskState::Stopped => "stopped",
        }
    }
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub(crate) struct TaskStatus {
    pub state: TaskState,
    /// What the task says about itself (e.g. the addresses it serves, or why it is degraded).
    pub detail: String,
    /// Unix time of the last state change.
    pub since: i64,
    pub restarts: u32,
    pub last_error: Option<String>,
}

/// The shared view of every task's state.
#[derive(Clone, Default)]
pub(crate) struct Health {
    inner: Arc<RwLock<BTreeMap<&'static str, TaskStatus>>>,
}

impl Health {
    pub(crate) fn snapshot(&self) -> BTreeMap<&'static str, TaskStatus> {
        self.inner.read_locked().clone()
    }

    /// Ready means every task is ready or degraded (degraded still serves).
    pub(crate) fn is_ready(&self) -> bool {
        let map = self.inner.read_locked();
        !map.is_empty() && map.values().all(|s| matches!(s.state, TaskState::Ready | TaskState::Degraded))
    }

    pub(crate) fn any_failed(&self) -> bool {
        self.inner.read_locked().values().any(|s| s.state == TaskState::Failed)
    }

    #[cfg(test)]
    pub(crate) fn state(&self, name: &str) -> Option<TaskState> {
        self.inner.read_locked().get(name).map(|s| s.state)
    }

    fn update(&self, name: &'static str, f: impl FnOnce(&mut TaskStatus)) {
        let mut map = self.inner.write_locked();
        let entry = map.entry(name).or_insert_with(|| TaskStatus {
            state: TaskState::Starting,
            detail: String::new(),
            since: crate::util::unix_now(),
            restarts: 0,
            last_error: None,
        });
        let before = entry.state;
        f(entry);
        if entry.state != before {
            entry.since = crate::util::unix_now();
        }
        for s in TaskState::ALL {
            let v = if s == entry.state { 1.0 } else { 0.0 };
            metrics::gauge!("hearth_subsystem_state", "subsystem" => name, "state" => s.as_str()).set(v);
        }
    }

    fn set(&self, name: &'static str, state: TaskState, detail: impl Into<String>) {
        let detail = detail.into();
        self.update(name, |s| {
            s.state = state;
            s.detail = detail;
        });
    }
}

/// Handed to a task on every (re)start.
pub(crate) struct TaskCtx {
    pub name: &'static str,
    health: Health,
    /// Cancelled when the process shuts down; tasks return promptly (Ok) when it fires.
    pub shutdown: CancellationToken,
}

impl TaskCtx {
    pub(crate) fn ready(&self, detail: impl Into<String>) {
        self.health.set(self.name, TaskState::Ready, detail);
    }
    pub(crate) fn degraded(&self, why: impl Into<String>) {
        self.health.set(self.name, TaskState::Degraded, why);
    }
    pub(crate) fn starting(&self, why: impl Into<String>) {
        self.health.set(self.name, TaskState::Starting, why);
    }
}

pub(crate) type TaskError = anyhow::Error;
pub(crate) type TaskFuture = Pin<Box<dyn Future<Output = Result<(), TaskError>> + Send>>;
pub(crate) type TaskFn = Arc<dyn Fn(TaskCtx) -> TaskFuture + Send + Sync>;

/// Exponential backoff with jitter and a budget of restarts per window.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RestartPolicy {
    pub base: Duration,
    pub cap: Duration,
    /// At most this many restarts within `window`; one more and the task is left failed.
    pub budget: usize,
    pub window: Duration,
}

impl Default for RestartPolicy {
    fn default() -> Self {
        RestartPolicy {
            base: Duration::from_millis(500),
            cap: Duration::from_secs(60),
            budget: 8,
            window: Duration::from_secs(600),
        }
    }
}

impl RestartPolicy {
    /// Given the restart times still in the window (oldest first) and a jitter draw in [0, 1), the delay before
    /// the next restart, or `None` when the budget is spent. "Equal jitter": half fixed, half random.
    pub(crate) fn next_delay(&self, recent: &VecDeque<Instant>, now: Instant, jitter: f64) -> Option<Duration> {
        let in_window = recent.iter().filter(|t| now.duration_since(**t) < self.window).count();
        if in_window >= self.budget {
            return None;
        }
        let exp = self.base.saturating_mul(1u32 << in_window.min(20)).min(self.cap);
        Some(exp.mul_f64(0.5 + 0.5 * jitter.clamp(0.0, 1.0)))
    }
}

pub(crate) struct Supervisor {
    health: Health,
    shutdown: CancellationToken,
    tasks: JoinSet<()>,
    policy: RestartPolicy,
}

impl Supervisor {
    pub(crate) fn new(policy: RestartPolicy) -> Self {
        Supervisor { health: Health::default(), shutdown: CancellationToken::new(), tasks: JoinSet::new(), policy }
    }

    pub(crate) fn health(&self) -> Health {
        self.health.clone()
    }

    /// Register and start a task. `f` is called again for each restart.
    pub(crate) fn spawn<F, Fut>(&mut self, name: &'static str, f: F)
    where
        F: Fn(TaskCtx) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), TaskError>> + Send + 'static,
    {
        let f: TaskFn = Arc::new(move |ctx| Box::pin(f(ctx)));
        self.health.set(name, TaskState::Starting, "");
        metrics::counter!("hearth_subsystem_restarts_total", "subsystem" => name).absolute(0);
        let (health, shutdown, policy) = (self.health.clone(), self.shutdown.clone(), self.policy);
        self.tasks.spawn(run_task(name, f, health, shutdown, policy));
    }

    /// Signal shutdown and wait for every task, at most `deadline`. Returns whether all finished in time.
    pub(crate) async fn shutdown(mut self, deadline: Duration) -> bool {
        self.shutdown.cancel();
        let all = async { while self.tasks.join_next().await.is_some() {} };
        let ok = tokio::time::timeout(deadline, all).await.is_ok();
        if !ok {
            self.tasks.abort_all();
        }
        ok
    }
}

async fn run_task(name: &'static str, f: TaskFn, health: Health, shutdown: CancellationToken, policy: RestartPolicy) {
    let mut recent: VecDeque<Instant> = VecDeque::new();
    loop {
        health.set(name, TaskState::Starting, "");
        let ctx = TaskCtx { name, health: health.clone(), shutdown: shutdown.clone() };
        // Spawned so that a panic is caught as a JoinError instead of unwinding the supervisor; aborted if the
        // supervisor's own task is aborted at the shutdown deadline.
        let outcome = tokio_util::task::AbortOnDropHandle::new(tokio::spawn(f(ctx))).await;
        if shutdown.is_cancelled() {
            health.set(name, TaskState::Stopped, "shut down");
            return;
        }
        let error = match outcome {
            Ok(Ok(())) => "exited unexpectedly".to_string(),
            Ok(Err(e)) => format!("{e:#}"),
            Err(j) if j.is_panic() => "panicked".to_string(),
            Err(j) => j.to_string(),
        };
        let now = Instant::now();
        while recent.front().is_some_and(|t| now.duration_since(*t) >= policy.window) {
            recent.pop_front();
        }
        let Some(delay) = policy.next_delay(&recent, now, rand::random::<f64>()) else {
            tracing::error!(subsystem = name, error = %error, restarts = recent.len(), "subsystem failed; restart budget spent");
            health.update(name, |s| {
                s.state = TaskState::Failed;
                s.detail = format!("gave up after {} restarts in {:?}", recent.len(), policy.window);
                s.last_error = Some(error);
            });
            return;
        };
        tracing::warn!(subsystem = name, error = %error, retry_in_ms = delay.as_millis() as u64, "subsystem failed; restarting");
        health.update(name, |s| {
            s.state = TaskState::Failed;
            s.detail = format!("restarting in {:.1}s", delay.as_secs_f64());
            s.last_error = Some(error);
            s.restarts += 1;
        });
        metrics::counter!("hearth_subsystem_restarts_total", "subsystem" => name).increment(1);
        recent.push_back(now);
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = shutdown.cancelled() => {
                health.set(name, TaskState::Stopped, "shut down");
                return;
            }
        }
    }
}

/// Half the watchdog period, as sd_watchdog_enabled(3) defines it: `WATCHDOG_USEC` set, and `WATCHDOG_PID` either
/// absent or ours. (The sd-notify crate also demands `WATCHDOG_PID`; libsystemd does not.)
fn watchdog_interval(usec: Option<&str>, pid: Option<&str>, me: u32) -> Option<Duration> {
    let usec: u64 = usec?.trim().parse().ok().filter(|u| *u > 0)?;
    if let Some(p) = pid
        && p.trim().parse::<u32>().ok() != Some(me)
    {
        return None;
    }
    Some(Duration::from_micros(usec / 2))
}

/// systemd: READY once every subsystem serves, STATUS on changes, WATCHDOG pings only while nothing has failed.
pub(crate) async fn notify_systemd(health: Health, stop: CancellationToken) {
    use sd_notify::NotifyState;
    let watchdog = watchdog_interval(
        std::env::var("WATCHDOG_USEC").ok().as_deref(),
        std::env::var("WATCHDOG_PID").ok().as_deref(),
        std::process::id(),
    );
    let mut ready_sent = false;
    let mut last_status = String::new();
    let tick = watchdog.unwrap_or(Duration::from_secs(5)).min(Duration::from_secs(5));
    loop {
        let snap = health.snapshot();
        let status: Vec<String> = snap.iter().map(|(n, s)| format!("{n}: {}", s.state.as_str())).collect();
        let status = status.join(", ");
        if !ready_sent && health.is_ready() {
            let _ = sd_notify::notify(false, &[NotifyState::Ready, NotifyState::Status(&status)]);
            ready_sent = true;
            last_status = status.clone();
        } else if status != last_status {
            let _ = sd_notify::notify(false, &[NotifyState::Status(&status)]);
            last_status = status;
        }
        if watchdog.is_some() && ready_sent && !health.any_failed() {
            let _ = sd_notify::notify(false, &[NotifyState::Watchdog]);
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(tick) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[test]
    fn backoff_doubles_with_jitter_and_caps() {
        let p = RestartPolicy {
            base: Duration::from_secs(1),
            cap: Duration::from_secs(10),
            budget: 6,
            window: Duration::from_secs(600),
        };
        let now = Instant::now();
        let mut recent = VecDeque::new();
        let mut lows = vec![];
        for _ in 0..6 {
            let lo = p.next_delay(&recent, now, 0.0).unwrap();
            let hi = p.next_delay(&recent, now, 1.0).unwrap();
            assert_eq!(hi, lo * 2);
            lows.push(lo.as_millis());
            recent.push_back(now);
        }
        assert_eq!(lows, [500, 1000, 2000, 4000, 5000, 5000]);
        assert_eq!(p.next_delay(&recent, now, 0.5), None, "budget spent");
        // restarts older than the window no longer count
        assert!(p.next_delay(&recent, now + Duration::from_secs(601), 0.5).is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn failing_task_restarts_with_backoff_then_fails() {
        let policy = RestartPolicy {
            base: Duration::from_secs(1),
            cap: Duration::from_secs(60),
            budget: 3,
            window: Duration::from_secs(600),
        };
        let mut sup = Supervisor::new(policy);
        let health = sup.health();
        let runs = Arc::new(AtomicU32::new(0));
        let r = runs.clone();
        let started = Instant::now();
        sup.spawn("flaky", move |_ctx| {
            let r = r.clone();
            async move {
                r.fetch_add(1, Ordering::SeqCst);
                anyhow::bail!("boom")
            }
        });
        // three restarts: waits of at least 0.5 + 1 + 2 s (equal jitter), at most 1 + 2 + 4 s
        tokio::time::sleep(Duration::from_millis(3400)).await;
        assert!(runs.load(Ordering::SeqCst) <= 3, "not faster than the backoff allows");
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert_eq!(runs.load(Ordering::SeqCst), 4, "first run + 3 restarts");
        let s = &health.snapshot()["flaky"];
        assert_eq!(s.state, TaskState::Failed);
        assert_eq!(s.restarts, 3);
        assert_eq!(s.last_error.as_deref(), Some("boom"));
        assert!(health.any_failed() && !health.is_ready());
        assert!(started.elapsed() >= Duration::from_millis(3500));
        assert!(sup.shutdown(Duration::from_secs(1)).await);
    }

    #[tokio::test(start_paused = true)]
    async fn panics_are_caught_and_recovered() {
        let mut sup = Supervisor::new(RestartPolicy::default());
        let health = sup.health();
        let runs = Arc::new(AtomicU32::new(0));
        let r = runs.clone();
        sup.spawn("panicky", move |ctx| {
            let n = r.fetch_add(1, Ordering::SeqCst);
            async move {
                if n == 0 {
                    panic!("first run panics");
                }
                ctx.ready("serving");
                ctx.shutdown.cancelled().await;
                Ok(())
            }
        });
        tokio::time::sleep(Duration::from_secs(2)).await;
        let s = &health.snapshot()["panicky"];
        assert_eq!(s.state, TaskState::Ready);
        assert_eq!(s.detail, "serving");
        assert_eq!(s.restarts, 1);
        assert_eq!(s.last_error.as_deref(), Some("panicked"));
        assert!(health.is_ready());
        assert!(sup.shutdown(Duration::from_secs(1)).await);
        assert_eq!(health.state("panicky"), Some(TaskState::Stopped));
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_deadline_aborts_stuck_tasks() {
        let mut sup = Supervisor::new(RestartPolicy::default());
        sup.spawn("stuck", |ctx| async move {
            ctx.ready("");
            std::future::pending::<()>().await;
            Ok(())
        });
        sup.spawn("polite", |ctx| async move {
            ctx.ready("");
            ctx.shutdown.cancelled().await;
            Ok(())
        });
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert!(!sup.shutdown(Duration::from_secs(2)).await);
    }

    #[test]
    fn watchdog_follows_libsystemd_rules() {
        assert_eq!(watchdog_interval(Some("2000000"), None, 7), Some(Duration::from_secs(1)));
        assert_eq!(watchdog_interval(Some("2000000"), Some("7"), 7), Some(Duration::from_secs(1)));
        assert_eq!(watchdog_interval(Some("2000000"), Some("8"), 7), None, "meant for another process");
        assert_eq!(watchdog_interval(None, None, 7), None);
        assert_eq!(watchdog_interval(Some("0"), None, 7), None);
        assert_eq!(watchdog_interval(Some("x"), None, 7), None);
    }
}
