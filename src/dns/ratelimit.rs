//! Per-client rate limiting (pure core; the clock is passed in): a token bucket per client address — `rate`
//! queries per second on average, bursts up to `burst`. Bounded: idle buckets are forgotten.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Instant;

#[derive(Debug)]
pub struct RateLimiter {
    rate: f64,
    burst: f64,
    buckets: HashMap<IpAddr, (f64, Instant)>,
}

impl RateLimiter {
    pub fn new(rate: u32, burst: u32) -> Self {
        RateLimiter { rate: rate as f64, burst: burst.max(1) as f64, buckets: HashMap::new() }
    }

    /// Take one token for `client`; false when its bucket is empty.
    pub fn allow(&mut self, client: IpAddr, now: Instant) -> bool {
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
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
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
    }
}
