//! Which span of time a run reads: a backfill's given one, or for a scheduled run, from
//! the watermark (less an overlap) to a little before now.

use std::time::{Duration, SystemTime};

/// Changes with `since <= t < until` (as the records' `updatedAt` or `deletedAt` say).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub since: SystemTime,
    pub until: SystemTime,
}

/// The scheduled window: from the watermark less `overlap` (or `first_lookback` before the
/// end, the first time) to `now` less `settle`. None when that is empty.
pub fn scheduled(
    watermark: Option<SystemTime>,
    now: SystemTime,
    overlap: Duration,
    settle: Duration,
    first_lookback: Duration,
) -> Option<Window> {
    let until = now.checked_sub(settle)?;
    let since = match watermark {
        Some(mark) => mark.checked_sub(overlap)?,
        None => until.checked_sub(first_lookback)?,
    };
    (since < until).then_some(Window { since, until })
}

/// RFC 3339 with milliseconds, UTC: the form Twenty writes its timestamps in, which also
/// orders as text.
pub fn timestamp(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

/// Reads an RFC 3339 timestamp (`2026-11-01T00:00:00Z`, with or without fractions).
pub fn parse(text: &str) -> Option<SystemTime> {
    humantime::parse_rfc3339_weak(text.trim()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_the_watermark_less_the_overlap_to_now_less_the_settle() {
        let t = |s: &str| parse(s).unwrap();
        let now = t("2026-11-27T12:00:00Z");
        let (overlap, settle, first) = (
            Duration::from_secs(300),
            Duration::from_secs(60),
            Duration::from_secs(3600),
        );
        let w = scheduled(Some(t("2026-11-27T11:00:00Z")), now, overlap, settle, first).unwrap();
        assert_eq!(timestamp(w.since), "2026-11-27T10:55:00.000Z");
        assert_eq!(timestamp(w.until), "2026-11-27T11:59:00.000Z");
        let w = scheduled(None, now, overlap, settle, first).unwrap();
        assert_eq!(timestamp(w.since), "2026-11-27T10:59:00.000Z");
        // A watermark past the settled end (a clock gone back): nothing to do.
        assert_eq!(
            scheduled(
                Some(t("2026-11-27T12:30:00Z")),
                now,
                Duration::ZERO,
                settle,
                first
            ),
            None
        );
        assert_eq!(
            parse("2026-11-01T00:00:00.123Z").map(timestamp).as_deref(),
            Some("2026-11-01T00:00:00.123Z")
        );
        assert_eq!(parse("yesterday"), None);
    }
}
