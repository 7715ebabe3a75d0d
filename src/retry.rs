//! How long to wait before another try, and how long tries may go on.
//!
//! Pure policy; `delivery` and the worker apply it. Which failures are worth another try
//! is the adapters' error's to say (`adapter::AdapterError::is_transient`): those are
//! retried with capped exponential backoff and full jitter until the time budget runs out.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::time::Duration;

/// Twenty gives up after 5 s; an after-enqueue answer must be on its way before that.
pub const ACK_LIMIT: Duration = Duration::from_secs(4);
/// Kept back from the function's remaining time for writing the fallback log.
pub const FALLBACK_RESERVE: Duration = Duration::from_secs(1);

/// How long sends of one request may take, counted from when it arrived.
///
/// `lambda_remaining` is the invocation's time left when the request arrived (unknown under
/// emulators that send no real deadline); `waiting_for_answer` is true in after-enqueue
/// mode, where Twenty is still waiting for the answer.
pub fn send_budget(
    configured: Duration,
    lambda_remaining: Option<Duration>,
    waiting_for_answer: bool,
) -> Duration {
    let mut budget = configured;
    if let Some(remaining) = lambda_remaining {
        budget = budget.min(remaining.saturating_sub(FALLBACK_RESERVE));
    }
    if waiting_for_answer {
        budget = budget.min(ACK_LIMIT);
    }
    budget
}

/// Capped exponential backoff with full jitter (a random wait between zero and the cap of
/// this attempt), so that a burst of failed sends does not retry in lockstep.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub base: Duration,
    pub cap: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            base: Duration::from_millis(50),
            cap: Duration::from_secs(2),
        }
    }
}

impl Backoff {
    /// The longest wait before retry number `attempt` (0 for the first retry).
    pub fn ceiling(&self, attempt: u32) -> Duration {
        self.base
            .saturating_mul(1u32.checked_shl(attempt.min(20)).unwrap_or(u32::MAX))
            .min(self.cap)
    }

    /// The wait before retry number `attempt`, `unit` being uniform in [0, 1).
    pub fn delay(&self, attempt: u32, unit: f64) -> Duration {
        self.ceiling(attempt).mul_f64(unit.clamp(0.0, 1.0))
    }
}

/// A `Retry-After` value (RFC 9110): delay-seconds, or an HTTP-date read against `now`
/// (a date in the past is no delay). Anything else is ignored, as the RFC says.
pub fn retry_after(value: &str, now: std::time::SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// A uniform number in [0, 1) from the standard library's randomly seeded hasher: jitter
/// needs spread, not cryptographic quality.
pub fn jitter_unit() -> f64 {
    let bits = RandomState::new().hash_one(0u8) >> 11;
    bits as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_is_the_tightest_limit() {
        let s = Duration::from_secs;
        assert_eq!(send_budget(s(20), None, false), s(20));
        assert_eq!(send_budget(s(20), Some(s(15)), false), s(14));
        assert_eq!(send_budget(s(20), Some(s(15)), true), ACK_LIMIT);
        assert_eq!(send_budget(s(2), None, true), s(2));
        assert_eq!(
            send_budget(s(20), Some(Duration::ZERO), false),
            Duration::ZERO
        );
    }

    #[test]
    fn backoff_grows_then_caps() {
        let b = Backoff::default();
        let ceilings: Vec<u128> = (0..8).map(|a| b.ceiling(a).as_millis()).collect();
        assert_eq!(ceilings, [50, 100, 200, 400, 800, 1600, 2000, 2000]);
        assert_eq!(b.ceiling(u32::MAX), b.cap);
        assert_eq!(b.delay(3, 0.5), Duration::from_millis(200));
        assert_eq!(b.delay(3, 7.0), Duration::from_millis(400));
    }

    #[test]
    fn retry_after_in_seconds_or_as_an_http_date() {
        let now = std::time::UNIX_EPOCH + Duration::from_secs(784_111_777); // 06 Nov 1994 08:49:37
        assert_eq!(retry_after("120", now), Some(Duration::from_secs(120)));
        assert_eq!(retry_after(" 0 ", now), Some(Duration::ZERO));
        assert_eq!(
            retry_after("Sun, 06 Nov 1994 08:50:07 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            retry_after("Sun, 06 Nov 1994 08:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        for bad in ["", "-5", "soon", "1.5", "Sun, 06 Nov 1994"] {
            assert_eq!(retry_after(bad, now), None, "{bad:?}");
        }
    }

    #[test]
    fn jitter_spreads_over_the_unit_interval() {
        let samples: Vec<f64> = (0..1000).map(|_| jitter_unit()).collect();
        assert!(samples.iter().all(|u| (0.0..1.0).contains(u)));
        let low = samples.iter().filter(|u| **u < 0.5).count();
        assert!((300..700).contains(&low), "{low} of 1000 below 0.5");
    }
}
