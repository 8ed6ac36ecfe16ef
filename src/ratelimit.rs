//! Per-client rate limiting for DNS queries and proxied requests (pure core; the clock is passed in): a token bucket per client address — `rate`
//! queries per second on average, bursts up to `burst`. Bounded: idle buckets are forgotten.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Decision {
    pub allowed: bool,
    pub limit: u32,
    pub remaining: u32,
    pub retry_after: u32,
    pub reset: u32,
}

#[derive(Debug)]
pub(crate) struct RateLimiter {
    rate: f64,
    burst: f64,
    buckets: HashMap<IpAddr, (f64, Instant)>,
}

impl RateLimiter {
    pub(crate) fn new(rate: u32, burst: u32) -> Self {
        RateLimiter { rate: rate as f64, burst: burst.max(1) as f64, buckets: HashMap::new() }
    }

    /// Take one token for `client`; false when its bucket is empty.
    pub(crate) fn allow(&mut self, client: IpAddr, now: Instant) -> bool {
        self.take(client, now).allowed
    }

    /// Take one token for `client` and say what is left (for `X-RateLimit-*` headers).
    pub(crate) fn take(&mut self, client: IpAddr, now: Instant) -> Decision {
        if self.buckets.len() > 100_000 {
            let (rate, burst) = (self.rate, self.burst);
            // a bucket that has refilled completely carries no information
            self.buckets.retain(|_, (tokens, last)| {
                *tokens + now.saturating_duration_since(*last).as_secs_f64() * rate < burst
            });
        }
        let (tokens, last) = self.buckets.entry(client).or_insert((self.burst, now));
        *tokens = (*tokens + now.saturating_duration_since(*last).as_secs_f64() * self.rate).min(self.burst);
        *last = now;
        let allowed = *tokens >= 1.0;
        if allowed {
            *tokens -= 1.0;
        }
        let rate = self.rate.max(f64::MIN_POSITIVE);
        Decision {
            allowed,
            limit: self.burst as u32,
            remaining: tokens.floor() as u32,
            // seconds until the next token (retry) and until the bucket is full again (reset)
            retry_after: ((1.0 - *tokens).max(0.0) / rate).ceil().min(86_400.0) as u32,
            reset: ((self.burst - *tokens) / rate).ceil().min(86_400.0) as u32,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn bursts_then_refills_per_client() {
        let mut r = RateLimiter::new(10, 5);
        let t = Instant::now();
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        assert_eq!((0..8).filter(|_| r.allow(a, t)).count(), 5, "the burst");
        assert!(r.allow(b, t), "other clients are not affected");
        assert!(!r.allow(a, t + Duration::from_millis(50)));
        assert!(r.allow(a, t + Duration::from_millis(100)), "10/s: one token per 100 ms");
        assert_eq!((0..20).filter(|_| r.allow(a, t + Duration::from_secs(10))).count(), 5, "never above the burst");
        let d = r.take(b, t + Duration::from_secs(20));
        assert_eq!((d.allowed, d.limit, d.remaining), (true, 5, 4));
        assert_eq!(d.reset, 1, "one token short of full: 100 ms, rounded up to a second");
        let t2 = t + Duration::from_secs(30);
        for _ in 0..5 {
            r.take(a, t2);
        }
        let d = r.take(a, t2);
        assert_eq!((d.allowed, d.remaining, d.retry_after), (false, 0, 1));
    }
}
