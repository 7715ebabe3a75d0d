//! Keeps the execution environment awake while sends are still under way.
//!
//! Lambda freezes the environment once the runtime has answered and every extension has
//! asked for its next event. The internal extension registered here asks only when no
//! request is in flight, so a send started before the response finishes after it.
//!
//! Sends never wait on the extension: it only waits on them. Invocations and extension
//! events are not paired one to one (`cargo lambda watch` delivers an INVOKE only to an
//! extension that is waiting for one), so the extension counts requests, not events.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use lambda_extension::{Error, Extension, LambdaEvent, NextEvent, service_fn};
use tokio::sync::watch;
use tracing::error;

/// How long the extension waits, after an INVOKE, for the handler to take the request.
/// Both learn of the invocation at the same moment; this only covers scheduling.
const HANDLER_START_GRACE: Duration = Duration::from_millis(250);
/// The longest the environment is held when the invocation gives no usable deadline
/// (emulators send a fixed, long-gone one): Lambda's longest timeout.
const MAX_HOLD: Duration = Duration::from_secs(900);

#[derive(Clone, Default)]
pub struct InFlight {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    /// Requests entered and not yet finished, sends included.
    active: watch::Sender<usize>,
    /// Requests ever entered.
    entered: watch::Sender<u64>,
    /// `entered` as the extension last saw it.
    seen: AtomicU64,
}

/// Held from the start of a request until its last send has finished.
pub struct Guard {
    inner: Arc<Inner>,
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.inner.active.send_modify(|n| *n -= 1);
    }
}

impl InFlight {
    pub fn enter(&self) -> Guard {
        self.inner.active.send_modify(|n| *n += 1);
        self.inner.entered.send_modify(|n| *n += 1);
        Guard {
            inner: self.inner.clone(),
        }
    }

    pub fn active(&self) -> usize {
        *self.inner.active.borrow()
    }

    /// Returns once the request behind an INVOKE (if it shows up) and every other request
    /// in flight have finished, or `bound` has passed: the environment is never held past
    /// the invocation's deadline. Every send is bounded by a shorter deadline of its own
    /// (see `dispatch`), so the bound is a safety net, and says so in the log if it is hit.
    pub async fn settled(&self, bound: Duration) {
        if tokio::time::timeout(bound, self.wait_idle()).await.is_err() {
            error!(
                active = self.active(),
                "sends still in flight at the invocation's deadline"
            );
        }
    }

    async fn wait_idle(&self) {
        let seen = self.inner.seen.load(Ordering::Acquire);
        let mut entered = self.inner.entered.subscribe();
        // A missing request (no pairing) only costs the grace period, never a stall.
        let _ = tokio::time::timeout(HANDLER_START_GRACE, entered.wait_for(|n| *n > seen)).await;
        self.inner
            .seen
            .store(*entered.borrow_and_update(), Ordering::Release);
        // The sender lives in `self`, so this wait cannot end in an error.
        let _ = self.inner.active.subscribe().wait_for(|n| *n == 0).await;
    }

    /// Registers the internal extension (Lambda requires it before the runtime starts) and
    /// returns the future that runs it.
    pub async fn register_extension(
        &self,
    ) -> Result<impl Future<Output = Result<(), Error>> + use<>, Error> {
        let inflight = self.clone();
        let registered = Extension::new()
            // Internal extensions may subscribe to INVOKE only.
            .with_events(&["INVOKE"])
            .with_events_processor(service_fn(move |event: LambdaEvent| {
                let inflight = inflight.clone();
                async move {
                    if let NextEvent::Invoke(invoke) = event.next {
                        inflight.settled(hold_bound(invoke.deadline_ms)).await;
                    }
                    Ok::<(), Error>(())
                }
            }))
            .with_extension_name("twenty-webhook-inflight")
            .register()
            .await?;
        Ok(registered.run())
    }
}

/// The time left until `deadline_ms` (milliseconds since the epoch), or `MAX_HOLD` when
/// that deadline is already past (no real deadline given).
fn hold_bound(deadline_ms: u64) -> Duration {
    let now_ms = crate::clock::now_ms();
    match deadline_ms.saturating_sub(now_ms) {
        0 => MAX_HOLD,
        left => Duration::from_millis(left).min(MAX_HOLD),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn settled_waits_for_every_guard() {
        let inflight = InFlight::default();
        let guard = inflight.enter();
        let waiter = tokio::spawn({
            let inflight = inflight.clone();
            async move { inflight.settled(MAX_HOLD).await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiter.is_finished());
        drop(guard);
        tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(inflight.active(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn settled_gives_up_at_its_bound() {
        let inflight = InFlight::default();
        let _stuck = inflight.enter();
        let started = tokio::time::Instant::now();
        inflight.settled(Duration::from_secs(30)).await;
        assert_eq!(started.elapsed(), Duration::from_secs(30));
        assert_eq!(inflight.active(), 1);
    }

    #[test]
    fn hold_bound_is_the_time_to_the_deadline() {
        let now_ms = crate::clock::now_ms();
        let bound = hold_bound(now_ms + 10_000);
        assert!(bound <= Duration::from_secs(10) && bound > Duration::from_secs(9));
        assert_eq!(hold_bound(1), MAX_HOLD);
        assert_eq!(hold_bound(u64::MAX), MAX_HOLD);
    }

    #[tokio::test]
    async fn settled_does_not_stall_without_a_request() {
        let inflight = InFlight::default();
        tokio::time::timeout(Duration::from_secs(5), inflight.settled(MAX_HOLD))
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn settled_waits_for_a_request_that_starts_late() {
        let inflight = InFlight::default();
        let waiter = tokio::spawn({
            let inflight = inflight.clone();
            async move { inflight.settled(MAX_HOLD).await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        let guard = inflight.enter();
        tokio::time::sleep(Duration::from_millis(
            HANDLER_START_GRACE.as_millis() as u64 + 50,
        ))
        .await;
        assert!(!waiter.is_finished(), "must wait for the late request");
        drop(guard);
        tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .unwrap()
            .unwrap();
    }
}
