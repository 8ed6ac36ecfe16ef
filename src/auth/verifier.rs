//! Password checks for every login form (the admin API's login, the reverse proxy's forward-auth form, the current
//! password when changing it) and the setup code: the login throttle and a bound on concurrent argon2 work.
//!
//! Invariants:
//! - An attempt is counted in the throttle *before* its hash runs ([`LoginThrottle::reserve`]) and cleared on
//!   success, so N parallel wrong guesses run at most `login_free_attempts` hashes; the rest are refused at once.
//! - At most [`default_permits`] argon2 computations (19 MiB each) run at any time, whatever the number of
//!   requests; the others wait for a permit (their attempt already counted).
//! - Unknown users cost the same hash as known ones (against [`super::dummy_hash`]).
//!
//! The clock is the monotonic `Instant` passed in: the wall clock of a Pi without RTC jumps at the first NTP sync,
//! which must neither lift nor extend a wait.

use crate::util::Locked;
use std::net::IpAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use tokio::sync::Semaphore;

use super::throttle::{LoginThrottle, ThrottlePolicy};
use super::{AuthError, dummy_hash, hash_password, verify_password};

/// The throttle key under which wrong setup codes are counted (not a valid user name, so no user shares it).
const SETUP_CODE_KEY: &str = "#setup-code";

/// Refused without checking: the client or the user name must wait this long.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("too many failed attempts; try again in {retry_after_secs} s")]
pub(crate) struct Throttled {
    pub retry_after_secs: u64,
}

pub(crate) struct Verifier {
    throttle: Mutex<LoginThrottle>,
    hashing: Semaphore,
    hashes: AtomicU64,
}

/// Concurrent argon2 hashes: 2, or the number of cores when fewer. Each needs 19 MiB and a core for ~50 ms on a
/// Pi 4; two keep a login responsive while a burst of guesses cannot take the machine's memory or every core.
pub(crate) fn default_permits() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1).clamp(1, 2)
}

impl Verifier {
    pub(crate) fn new(policy: ThrottlePolicy) -> Self {
        Self::with_permits(policy, default_permits())
    }

    pub(crate) fn with_permits(policy: ThrottlePolicy, permits: usize) -> Self {
        let permits = permits.max(1);
        Verifier {
            throttle: Mutex::new(LoginThrottle::new(policy)),
            hashing: Semaphore::new(permits),
            hashes: AtomicU64::new(0),
        }
    }

    /// Follow `auth.login_free_attempts` / `auth.login_max_delay` changes (records are kept).
    pub(crate) fn set_policy(&self, policy: ThrottlePolicy) {
        self.lock().set_policy(policy);
    }

    #[cfg(test)]
    /// How many argon2 verifications have run (tests, metrics).
    pub(crate) fn hashes_run(&self) -> u64 {
        self.hashes.load(Ordering::Relaxed)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LoginThrottle> {
        self.throttle.locked()
    }

    fn reserve(&self, client: IpAddr, key: &str, now: Instant) -> Result<(), Throttled> {
        self.lock()
            .reserve(client, key, now)
            .map_err(|wait| Throttled { retry_after_secs: wait.as_secs_f64().ceil().max(1.0) as u64 })
    }

    /// Check `password` against the stored hash `phc` of `user` (`None`: no such user — the same work is done
    /// against a dummy hash and the answer is `false`). `Err` without hashing while the throttle makes this client
    /// or user name wait.
    pub(crate) async fn verify(
        &self,
        client: IpAddr,
        user: &str,
        password: String,
        phc: Option<String>,
        now: Instant,
    ) -> Result<bool, Throttled> {
        self.reserve(client, user, now)?;
        let started = Instant::now();
        let ok = {
            // never closed: acquire fails only if the semaphore were closed
            let _permit = self.hashing.acquire().await.ok();
            self.hashes.fetch_add(1, Ordering::Relaxed);
            let known = phc.is_some();
            let phc = phc.unwrap_or_else(|| dummy_hash().to_string());
            let ok = tokio::task::spawn_blocking(move || verify_password(&password, &phc)).await.unwrap_or(false);
            ok && known
        };
        let mut throttle = self.lock();
        if ok {
            throttle.record_success(client, user);
        } else {
            // the wait counts from the answer, not from the start of the (slow) hash
            throttle.failed_at(client, user, now + started.elapsed());
        }
        Ok(ok)
    }

    /// Compare a setup code in constant time, throttled like logins (per client, and globally for the code).
    pub(crate) fn check_setup_code(
        &self,
        client: IpAddr,
        expected: &str,
        given: &str,
        now: Instant,
    ) -> Result<bool, Throttled> {
        self.reserve(client, SETUP_CODE_KEY, now)?;
        let ok = crate::util::ct_eq(expected, given);
        if ok {
            self.lock().record_success(client, SETUP_CODE_KEY);
        }
        Ok(ok)
    }

    /// Hash a new password under the same bound on concurrent argon2 work.
    pub(crate) async fn hash(&self, password: String) -> Result<String, AuthError> {
        let _permit = self.hashing.acquire().await.ok();
        tokio::task::spawn_blocking(move || hash_password(&password))
            .await
            .map_err(|e| AuthError::Hash(e.to_string()))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    fn policy(free: u32) -> ThrottlePolicy {
        ThrottlePolicy {
            free_attempts: free,
            base_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(60),
            forget_after: Duration::from_secs(900),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn parallel_wrong_guesses_run_at_most_the_free_attempts() {
        let v = Arc::new(Verifier::with_permits(policy(3), 2));
        let phc = hash_password("correct horse").unwrap();
        let now = Instant::now();
        let client: IpAddr = "10.0.0.9".parse().unwrap();
        let tasks: Vec<_> = (0..50)
            .map(|i| {
                let (v, phc) = (v.clone(), phc.clone());
                tokio::spawn(async move { v.verify(client, "admin", format!("guess {i}"), Some(phc), now).await })
            })
            .collect();
        let mut wrong = 0;
        let mut throttled = 0;
        for t in tasks {
            match t.await.unwrap() {
                Ok(false) => wrong += 1,
                Ok(true) => panic!("a wrong guess passed"),
                Err(t) => {
                    assert!(t.retry_after_secs >= 1);
                    throttled += 1
                }
            }
        }
        assert_eq!((wrong, throttled), (3, 47));
        assert_eq!(v.hashes_run(), 3, "only the reserved attempts were hashed");
        // the right password after the wait (counted from each failure's answer) works and clears the record
        let later = Instant::now() + Duration::from_secs(2);
        assert_eq!(v.verify(client, "ADMIN", "correct horse".into(), Some(phc.clone()), later).await, Ok(true));
        assert_eq!(v.verify(client, "admin", "x".into(), Some(phc), later).await, Ok(false));
    }

    #[tokio::test]
    async fn unknown_users_cost_a_hash_and_fail() {
        let v = Verifier::with_permits(policy(3), 1);
        let c: IpAddr = "10.0.0.1".parse().unwrap();
        let pw = "anything".to_string();
        assert_eq!(v.verify(c, "nobody", pw, None, Instant::now()).await, Ok(false));
        assert_eq!(v.hashes_run(), 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn hashing_is_bounded_by_the_permits() {
        // many clients (no throttling between them) but never more than the permits hashing at once
        let v = Arc::new(Verifier::with_permits(policy(100), 2));
        let phc = hash_password("pw pw pw pw").unwrap();
        let tasks: Vec<_> = (0..6u8)
            .map(|i| {
                let (v, phc) = (v.clone(), phc.clone());
                tokio::spawn(async move {
                    let c = IpAddr::from([10, 0, 1, i]);
                    v.verify(c, &format!("u{i}"), "nope".into(), Some(phc), Instant::now()).await
                })
            })
            .collect();
        let mut seen_max = 0;
        while tasks.iter().any(|t| !t.is_finished()) {
            seen_max = seen_max.max(2 - v.hashing.available_permits());
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        assert!(seen_max <= 2);
        assert_eq!(v.hashes_run(), 6);
        assert!(default_permits() >= 1 && default_permits() <= 2);
    }

    #[test]
    fn setup_codes_are_throttled() {
        let v = Verifier::with_permits(policy(2), 1);
        let now = Instant::now();
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        assert_eq!(v.check_setup_code(a, "ABCD", "ABCE", now), Ok(false));
        assert_eq!(v.check_setup_code(b, "ABCD", "ABCF", now), Ok(false));
        // the code is one secret: guesses from any client count against it
        assert!(v.check_setup_code(b, "ABCD", "ABCD", now).is_err());
        assert_eq!(v.check_setup_code(b, "ABCD", "ABCD", now + Duration::from_secs(1)), Ok(true));
    }
}
