//! Renewal policy (pure core; times are Unix seconds passed in): when a certificate is renewed and how long a
//! failing name waits before the next order.
//!
//! - Renew inside the CA's ARI window when it offers one (a point chosen uniformly in the window, RFC 9773 §4.2),
//!   else at two thirds of the lifetime.
//! - Failures back off exponentially from 5 minutes to a 6-hour cap; a rate-limit answer waits at least what the
//!   CA asked for (Retry-After) and never less than an hour, so a restart loop cannot burn the CA's limits.

/// When to renew a certificate valid from `not_before` to `not_after`; `ari` is the CA's suggested window and
/// `pick` a number in [0, 1) that chooses the point inside it.
pub(crate) fn renew_at(not_before: i64, not_after: i64, ari: Option<(i64, i64)>, pick: f64) -> i64 {
    if let Some((start, end)) = ari.filter(|(s, e)| e >= s) {
        return start + ((end - start) as f64 * pick.clamp(0.0, 1.0)) as i64;
    }
    not_before + (not_after - not_before) * 2 / 3
}

pub(crate) const FIRST_BACKOFF: i64 = 300;
pub(crate) const MAX_BACKOFF: i64 = 6 * 3600;

/// The wait after the `failures`-th failure in a row (1-based).
pub(crate) fn backoff(failures: u32, rate_limited: bool, retry_after: Option<i64>) -> i64 {
    let exp = FIRST_BACKOFF.saturating_mul(1i64 << failures.saturating_sub(1).min(20)).min(MAX_BACKOFF);
    if rate_limited {
        return exp.max(retry_after.unwrap_or(0)).max(3600);
    }
    exp.max(retry_after.unwrap_or(0).min(MAX_BACKOFF))
}

/// What the manager should do for one name now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Due {
    /// Nothing until this time.
    Wait(i64),
    /// Order a certificate now.
    Order,
}

/// `cert`: (not_before, not_after, renew_at) of the certificate on disk, if any; `next_attempt`: set after a failure.
pub(crate) fn due(now: i64, cert: Option<(i64, i64, i64)>, next_attempt: Option<i64>) -> Due {
    let wanted = match cert {
        Some((_, not_after, renew)) if now < not_after => renew,
        _ => now, // missing or expired
    };
    let at = wanted.max(next_attempt.unwrap_or(i64::MIN));
    if at <= now { Due::Order } else { Due::Wait(at) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_thirds_or_inside_the_ari_window() {
        assert_eq!(renew_at(0, 90 * 86_400, None, 0.5), 60 * 86_400);
        assert_eq!(renew_at(0, 90, Some((50, 70)), 0.5), 60);
        assert_eq!(renew_at(0, 90, Some((50, 70)), 0.0), 50);
        assert_eq!(renew_at(0, 90, Some((70, 50)), 0.5), 60, "a nonsense window is ignored");
    }

    /// Without an ARI window a certificate is renewed at two thirds of its lifetime, counted from its own
    /// `not_before` (not from the epoch), whatever the pick: `due` waits until exactly that second and orders then.
    #[test]
    fn a_certificate_is_due_at_two_thirds_of_its_lifetime() {
        for (not_before, lifetime) in [(1_700_000_000, 90 * 86_400), (1_700_000_000, 45), (1_000, 6 * 86_400)] {
            let not_after = not_before + lifetime;
            let two_thirds = not_before + lifetime * 2 / 3;
            for pick in [0.0, 0.5, 0.99] {
                let renew = renew_at(not_before, not_after, None, pick);
                assert_eq!(renew, two_thirds, "lifetime {lifetime} s from {not_before}, pick {pick}");
                let cert = Some((not_before, not_after, renew));
                assert_eq!(due(not_before, cert, None), Due::Wait(two_thirds), "fresh: wait for two thirds");
                assert_eq!(due(two_thirds - 1, cert, None), Due::Wait(two_thirds), "one second before: still waits");
                assert_eq!(due(two_thirds, cert, None), Due::Order, "at two thirds: order");
            }
        }
    }

    #[test]
    fn backoff_grows_to_a_cap_and_respects_rate_limits() {
        assert_eq!(backoff(1, false, None), 300);
        assert_eq!(backoff(2, false, None), 600);
        assert_eq!(backoff(5, false, None), 4800);
        assert_eq!(backoff(30, false, None), MAX_BACKOFF);
        assert_eq!(backoff(1, true, None), 3600, "rate limits: at least an hour");
        assert_eq!(backoff(1, true, Some(7 * 86_400)), 7 * 86_400, "and what the CA asked for");
        assert_eq!(backoff(1, false, Some(900)), 900);
    }

    #[test]
    fn due_never_reorders_a_valid_certificate_early() {
        let cert = Some((0, 90, 60));
        assert_eq!(due(10, cert, None), Due::Wait(60), "valid: wait for the renewal time (restarts too)");
        assert_eq!(due(60, cert, None), Due::Order);
        assert_eq!(due(60, cert, Some(100)), Due::Wait(100), "a failure backs off");
        assert_eq!(due(95, cert, None), Due::Order, "expired");
        assert_eq!(due(5, None, None), Due::Order, "missing");
        assert_eq!(due(5, None, Some(305)), Due::Wait(305));
    }
}
