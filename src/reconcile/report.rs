//! What a run did, for people (the summary line) and for CloudWatch (one EMF document).

use super::run::{LastRun, ObjectReport, Verdict};
use crate::metrics::{self, Unit};

pub(crate) struct Summary<'a> {
    pub reports: &'a [ObjectReport],
    /// API requests sent, retries included, and how many Twenty answered 429.
    pub requests: u64,
    pub throttled: u64,
    pub verdict: Verdict,
}

impl<'a> Summary<'a> {
    pub(crate) fn new(reports: &'a [ObjectReport], requests: u64, throttled: u64) -> Self {
        Self {
            reports,
            requests,
            throttled,
            verdict: Verdict::of(reports),
        }
    }

    fn sum(&self, field: fn(&ObjectReport) -> u64) -> u64 {
        self.reports.iter().map(field).sum()
    }

    /// `people read 7 queued 5 seen 2 skipped 0; total read 7 queued 5 seen 2 skipped 0;
    /// 4 API requests (0 throttled)`
    pub(crate) fn line(&self) -> String {
        let per: Vec<String> = self
            .reports
            .iter()
            .map(|r| {
                let state = match (&r.failure, r.complete) {
                    (Some(_), _) => " (failed)",
                    (None, false) => " (incomplete)",
                    (None, true) => "",
                };
                format!(
                    "{} read {} queued {} seen {} skipped {}{state}",
                    r.plural, r.read, r.queued, r.seen, r.skipped
                )
            })
            .collect();
        format!(
            "{}; total read {} queued {} seen {} skipped {}; {} API requests ({} throttled)",
            per.join("; "),
            self.sum(|r| r.read),
            self.sum(|r| r.queued),
            self.sum(|r| r.seen),
            self.sum(|r| r.skipped),
            self.requests,
            self.throttled
        )
    }

    /// What is kept of a scheduled run for `twenty-admin status`.
    pub(crate) fn last_run(&self, finished_at: std::time::SystemTime) -> LastRun {
        LastRun {
            finished_at: humantime::format_rfc3339_seconds(finished_at).to_string(),
            verdict: self.verdict.to_string(),
            failed: self.verdict.failed(),
            read: self.sum(|r| r.read),
            queued: self.sum(|r| r.queued),
            objects: self.reports.iter().map(|r| r.plural.clone()).collect(),
        }
    }

    /// The run's metrics, `Reconcile`-prefixed, in one document.
    pub(crate) fn document(&self) -> metrics::Document {
        let mut doc = metrics::document();
        let count = |f: fn(&ObjectReport) -> u64| self.sum(f) as f64;
        let failed_objects = self.reports.iter().filter(|r| r.failure.is_some()).count();
        doc.add("ReconcileRead", Unit::Count, count(|r| r.read))
            .add("ReconcileQueued", Unit::Count, count(|r| r.queued))
            .add("ReconcileSeen", Unit::Count, count(|r| r.seen))
            .add("ReconcileSkipped", Unit::Count, count(|r| r.skipped))
            .add("ReconcileRequests", Unit::Count, self.requests as f64)
            .add("ReconcileThrottled", Unit::Count, self.throttled as f64)
            .add("ReconcileObjectsFailed", Unit::Count, failed_objects as f64)
            .add(
                "ReconcileRunFailed",
                Unit::Count,
                f64::from(u8::from(self.verdict.failed())),
            );
        doc
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(plural: &str, read: u64, failure: Option<&str>, complete: bool) -> ObjectReport {
        ObjectReport {
            plural: plural.into(),
            read,
            queued: read,
            pages: 1,
            complete,
            failure: failure.map(str::to_owned),
            ..Default::default()
        }
    }

    #[test]
    fn the_line_names_failed_objects_and_the_document_counts_them() {
        let reports = [
            report("people", 3, None, true),
            report("companies", 0, Some("Twenty refused"), false),
        ];
        let s = Summary::new(&reports, 5, 2);
        assert_eq!(
            s.line(),
            "people read 3 queued 3 seen 0 skipped 0; companies read 0 queued 0 seen 0 skipped 0 (failed); \
             total read 3 queued 3 seen 0 skipped 0; 5 API requests (2 throttled)"
        );
        assert!(matches!(s.verdict, Verdict::Failed(ref o) if o == &["companies: Twenty refused"]));
        let line = s.document().line(0);
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["ReconcileObjectsFailed"], 1.0);
        assert_eq!(v["ReconcileRunFailed"], 1.0);
        assert_eq!(v["ReconcileThrottled"], 2.0);
    }

    #[test]
    fn no_page_read_is_no_progress_and_a_deadline_with_progress_is_not_a_failure() {
        let mut stuck = report("people", 0, None, false);
        stuck.pages = 0;
        stuck.stalled = Some("12 attempts, last: 429".into());
        let v = Verdict::of(&[report("companies", 3, None, true), stuck]);
        assert!(v.failed(), "{v}");
        assert!(v.to_string().contains("people: 12 attempts, last: 429"));
        let v = Verdict::of(&[report("people", 3, None, false)]);
        assert_eq!(v, Verdict::Incomplete);
        assert!(!v.failed());
        assert_eq!(
            Verdict::of(&[report("people", 3, None, true)]),
            Verdict::Complete
        );
    }
}
