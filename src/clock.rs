//! The one wall clock: time since the Unix epoch, as signatures, the table, SQS's
//! attributes and the logs count it. A clock set before 1970 reads as 0.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// `at` since the epoch.
pub(crate) fn since_epoch(at: SystemTime) -> Duration {
    at.duration_since(UNIX_EPOCH).unwrap_or_default()
}

/// Now, since the epoch.
pub(crate) fn now() -> Duration {
    since_epoch(SystemTime::now())
}

/// `at` in whole milliseconds since the epoch.
pub(crate) fn millis(at: SystemTime) -> u64 {
    u64::try_from(since_epoch(at).as_millis()).unwrap_or(u64::MAX)
}

/// Now in whole milliseconds since the epoch.
pub(crate) fn now_ms() -> u64 {
    millis(SystemTime::now())
}

/// Now in whole microseconds since the epoch.
pub(crate) fn now_us() -> u64 {
    u64::try_from(now().as_micros()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn before_the_epoch_reads_as_zero() {
        let before = UNIX_EPOCH - Duration::from_secs(1);
        assert_eq!(since_epoch(before), Duration::ZERO);
        assert_eq!(millis(UNIX_EPOCH + Duration::from_millis(1500)), 1500);
        assert!(now_us() / 1000 >= now_ms() - 1000);
    }
}
