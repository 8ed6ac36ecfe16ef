//! Login rate limiting (pure core): failures are counted per client address and per user name; after
//! `free_attempts` failures each further attempt must wait, the wait doubling from 1 s up to a cap.
//! The clock is passed in; nothing here sleeps or does IO.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy)]
pub(crate) struct ThrottlePolicy {
    pub free_attempts: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
    /// Failure records idle for this long are forgotten.
    pub forget_after: Duration,
}

impl ThrottlePolicy {
    /// The wait imposed after `failures` consecutive failures.
    pub(crate) fn delay_after(&self, failures: u32) -> Duration {
        if failures < self.free_attempts.max(1) {
            return Duration::ZERO;
        }
        let exp = (failures - self.free_attempts.max(1)).min(30);
        self.base_delay.saturating_mul(1u32 << exp).min(self.max_delay)
    }
}

#[derive(Debug, Clone, Copy)]
struct Record {
    failures: u32,
    last: Instant,
    blocked_until: Instant,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Client(IpAddr),
    User(String),
}

#[derive(Debug)]
pub(crate) struct LoginThrottle {
    policy: ThrottlePolicy,
    records: HashMap<Key, Record>,
}

impl LoginThrottle {
    pub(crate) fn new(policy: ThrottlePolicy) -> Self {
        LoginThrottle { policy, records: HashMap::new() }
    }

    pub(crate) fn set_policy(&mut self, policy: ThrottlePolicy) {
        self.policy = policy;
    }

    fn keys(client: IpAddr, user: &str) -> [Key; 2] {
        [Key::Client(client), Key::User(user.to_lowercase())]
    }

    /// `Err(wait)` when this client or this user must wait before trying again.
    pub(crate) fn check(&self, client: IpAddr, user: &str, now: Instant) -> Result<(), Duration> {
        let wait = Self::keys(client, user)
            .iter()
            .filter_map(|k| self.records.get(k))
            .map(|r| r.blocked_until.saturating_duration_since(now))
            .max()
            .unwrap_or(Duration::ZERO);
        if wait.is_zero() { Ok(()) } else { Err(wait) }
    }

    pub(crate) fn record_failure(&mut self, client: IpAddr, user: &str, now: Instant) {
        self.prune(now);
        for k in Self::keys(client, user) {
            let r = self.records.entry(k).or_insert(Record { failures: 0, last: now, blocked_until: now });
            r.failures = r.failures.saturating_add(1);
            r.last = now;
            r.blocked_until = now + self.policy.delay_after(r.failures);
        }
    }

    /// Check and count an attempt in one step, before the (slow) verification: `Err(wait)` when this client or
    /// this user must wait; otherwise the attempt is recorded as a failure up front, so attempts made in parallel
    /// cannot all pass [`check`](Self::check) before any failure is recorded. A success then calls
    /// [`record_success`](Self::record_success), which clears the records.
    pub(crate) fn reserve(&mut self, client: IpAddr, user: &str, now: Instant) -> Result<(), Duration> {
        self.check(client, user, now)?;
        self.record_failure(client, user, now);
        Ok(())
    }

    /// A reserved attempt turned out wrong at `now` (after its hash): the wait it imposes counts from now, as if the
    /// failure had been recorded only now (the count is not raised again).
    pub(crate) fn failed_at(&mut self, client: IpAddr, user: &str, now: Instant) {
        for k in Self::keys(client, user) {
            if let Some(r) = self.records.get_mut(&k) {
                r.last = r.last.max(now);
                r.blocked_until = r.blocked_until.max(now + self.policy.delay_after(r.failures));
            }
        }
    }

    /// A successful login clears the user's record and the client's.
    pub(crate) fn record_success(&mut self, client: IpAddr, user: &str) {
        for k in Self::keys(client, user) {
            self.records.remove(&k);
        }
    }

    fn prune(&mut self, now: Instant) {
        if self.records.len() < 1024 {
            return;
        }
        let forget = self.policy.forget_after;
        self.records.retain(|_, r| now.saturating_duration_since(r.last) < forget || r.blocked_until > now);
    }

    #[cfg(test)]
    pub(crate) fn tracked(&self) -> usize {
        self.records.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> ThrottlePolicy {
        ThrottlePolicy {
            free_attempts: 3,
            base_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(60),
            forget_after: Duration::from_secs(900),
        }
    }

    #[test]
    fn delay_grows_and_caps() {
        let p = policy();
        let d: Vec<u64> = (0..12).map(|f| p.delay_after(f).as_secs()).collect();
        assert_eq!(d, [0, 0, 0, 1, 2, 4, 8, 16, 32, 60, 60, 60]);
    }

    #[test]
    fn per_client_and_per_user() {
        let mut t = LoginThrottle::new(policy());
        let now = Instant::now();
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        for _ in 0..3 {
            assert!(t.check(a, "admin", now).is_ok());
            t.record_failure(a, "admin", now);
        }
        // the client is slowed down for any user, and the user for any client
        assert_eq!(t.check(a, "other", now), Err(Duration::from_secs(1)));
        assert_eq!(t.check(b, "ADMIN", now), Err(Duration::from_secs(1)));
        assert!(t.check(b, "other", now).is_ok());
        // after the wait, another failure doubles it
        let later = now + Duration::from_secs(1);
        assert!(t.check(a, "admin", later).is_ok());
        t.record_failure(a, "admin", later);
        assert_eq!(t.check(a, "admin", later), Err(Duration::from_secs(2)));
        // success clears
        t.record_success(a, "admin");
        assert!(t.check(a, "admin", later).is_ok());
    }

    #[test]
    fn reservations_count_before_the_outcome_is_known() {
        let mut t = LoginThrottle::new(policy());
        let now = Instant::now();
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        // three attempts in flight at once are allowed, the fourth must wait, whatever their outcomes
        for _ in 0..3 {
            assert!(t.reserve(a, "admin", now).is_ok());
        }
        assert_eq!(t.reserve(a, "admin", now), Err(Duration::from_secs(1)));
        // the wait runs from when the (slow) check failed
        let later = now + Duration::from_millis(800);
        t.failed_at(a, "admin", later);
        assert_eq!(t.check(a, "admin", now + Duration::from_secs(1)), Err(Duration::from_millis(800)));
        t.record_success(a, "admin");
        assert!(t.reserve(a, "admin", now).is_ok());
    }

    #[test]
    fn pruning_forgets_idle_records() {
        let mut t = LoginThrottle::new(policy());
        let now = Instant::now();
        for i in 0..2000u32 {
            let ip = IpAddr::from(i.to_be_bytes());
            t.record_failure(ip, &format!("u{i}"), now);
        }
        assert_eq!(t.tracked(), 4000);
        t.record_failure("1.1.1.1".parse().unwrap(), "x", now + Duration::from_secs(1000));
        assert_eq!(t.tracked(), 2);
    }
}
