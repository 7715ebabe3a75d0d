//! A rate limit per destination (`maxPerSecond`), shared through the store: send slots,
//! `1 / maxPerSecond` apart on one timeline for every worker instance, are leased a block
//! at a time (a second's worth), so the store is written once per block rather than once
//! per send. A slot is used at its time and never later than one interval after it: in any
//! window, the destination gets at most `maxPerSecond × window + 1` calls.
//!
//! A send that would wait longer than it may is not made: its message is held back, and a
//! slot on the timeline is kept for it (after every slot leased or kept before), so that it
//! comes back shortly before that slot and takes it. Held-back messages so come back one
//! slot apart, each when it can go, rather than together at the next free slot, most to be
//! held back again: a backlog drains with about two receives a message.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tracing::warn;

use super::state::{Lease, SlotAsk};
use super::store::{DestinationStore, LocalStore};
use crate::adapter::AdapterError;
use crate::clock::now_us;

/// How long before its kept slot a held-back message comes back: it waits for the slot
/// (at most what it may wait), rather than come back late and find it gone.
const COME_BACK_EARLY: Duration = Duration::from_secs(1);

/// Slots leased by this instance for one destination.
#[derive(Debug, Default)]
struct Slots {
    next_us: u64,
    end_us: u64,
}

/// The slot leases of every destination, over one store.
pub struct Pacer {
    store: Arc<dyn DestinationStore>,
    fallback: LocalStore,
    /// How much time one lease covers.
    span: Duration,
    slots: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Slots>>>>,
}

impl Pacer {
    pub fn new(store: Arc<dyn DestinationStore>) -> Self {
        Self {
            store,
            fallback: LocalStore::default(),
            span: Duration::from_secs(1),
            slots: Mutex::new(HashMap::new()),
        }
    }

    /// Pacing in this process only.
    pub fn local() -> Self {
        Self::new(Arc::new(LocalStore::default()))
    }

    /// How many slots one lease takes at `per_second`: a span's worth, 1 to 100.
    pub fn block(&self, per_second: f64) -> u32 {
        (per_second * self.span.as_secs_f64())
            .ceil()
            .clamp(1.0, 100.0) as u32
    }

    fn slots_of(&self, destination: &str) -> Arc<tokio::sync::Mutex<Slots>> {
        let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        slots.entry(destination.to_owned()).or_default().clone()
    }

    /// Waits for a slot of `destination`, at most `max_wait`; Err holds when to come back.
    pub async fn acquire(
        &self,
        destination: &str,
        per_second: f64,
        max_wait: Duration,
    ) -> Result<(), Duration> {
        let interval = ((1e6 / per_second).round() as u64).max(1);
        let slot = {
            let cell = self.slots_of(destination);
            let mut slots = cell.lock().await;
            loop {
                let now = now_us();
                let latest = now + max_wait.as_micros() as u64;
                // A slot more than an interval in the past is gone: using it late could
                // bunch calls together.
                if slots.next_us + interval <= now {
                    let skipped = (now - slots.next_us) / interval;
                    slots.next_us += skipped * interval;
                }
                if slots.next_us < slots.end_us {
                    if slots.next_us > latest {
                        return Err(Duration::from_micros(slots.next_us - now));
                    }
                    let slot = slots.next_us;
                    slots.next_us += interval;
                    break slot;
                }
                let block = self.block(per_second);
                let ask = SlotAsk {
                    now_us: now,
                    count: block,
                    interval_us: interval,
                    latest_start_us: latest,
                };
                let lease = match self.store.lease_slots(destination, ask).await {
                    Ok(lease) => lease,
                    // Contended or throttled: the timeline is there, just busy. Pacing
                    // alone now would add this instance's own rate to the others'.
                    Err(AdapterError::Throttled(_)) => {
                        return Err(Duration::from_micros(interval).max(COME_BACK_EARLY));
                    }
                    Err(e) => {
                        warn!(destination, error = %e, "rate limit not read; this worker paces alone");
                        self.fallback
                            .lease_slots(destination, ask)
                            .await
                            .unwrap_or(Lease::Kept { at_us: latest })
                    }
                };
                match lease {
                    Lease::Granted { start_us, count } => {
                        slots.next_us = start_us;
                        slots.end_us = start_us + u64::from(count) * interval;
                    }
                    Lease::Kept { at_us } => {
                        let wait = Duration::from_micros(at_us.saturating_sub(now));
                        return Err(wait.saturating_sub(COME_BACK_EARLY));
                    }
                }
            }
        };
        let now = now_us();
        if slot > now {
            tokio::time::sleep(Duration::from_micros(slot - now)).await;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::worker::guard::state::Timeline;

    #[tokio::test]
    async fn two_pacers_on_one_store_share_the_rate() {
        let store: Arc<dyn DestinationStore> = Arc::new(LocalStore::default());
        let (a, b) = (
            Arc::new(Pacer::new(store.clone())),
            Arc::new(Pacer::new(store)),
        );
        let started = std::time::Instant::now();
        let mut calls = tokio::task::JoinSet::new();
        for i in 0..40 {
            let pacer = if i % 2 == 0 { a.clone() } else { b.clone() };
            calls.spawn(async move {
                loop {
                    match pacer.acquire("d", 40.0, Duration::from_millis(200)).await {
                        Ok(()) => return started.elapsed(),
                        Err(wait) => tokio::time::sleep(wait).await,
                    }
                }
            });
        }
        let mut at: Vec<Duration> = calls.join_all().await;
        at.sort();
        // 40 calls at 40 a second: the last no sooner than 0.95 s in (one per 25 ms slot).
        assert!(at[39] >= Duration::from_millis(950), "{:?}", at[39]);
        // In any 250 ms window, at most 40 × 0.25 + 1 = 11 calls.
        for (i, t) in at.iter().enumerate() {
            let within = at[i..]
                .iter()
                .take_while(|u| **u < *t + Duration::from_millis(250))
                .count();
            assert!(within <= 11, "{within} calls within 250 ms of {t:?}");
        }
    }

    #[tokio::test]
    async fn a_send_that_would_wait_too_long_is_told_when_to_come_back() {
        let pacer = Pacer::local();
        // 1 a second: the first lease holds one slot, now.
        assert_eq!(
            pacer.acquire("d", 1.0, Duration::from_millis(100)).await,
            Ok(())
        );
        let wait = pacer
            .acquire("d", 1.0, Duration::from_millis(100))
            .await
            .unwrap_err();
        assert!(
            wait < Duration::from_millis(100),
            "a little before its slot: {wait:?}"
        );
        assert_eq!(pacer.block(8.0), 8);
        assert_eq!(pacer.block(0.2), 1);
        assert_eq!(pacer.block(1e6), 100);
    }

    /// Held-back sends each get a slot of their own, one interval apart, and a send that
    /// comes back for it takes it; one that never comes back loses it after an interval.
    #[test]
    fn held_back_sends_keep_slots_one_interval_apart() {
        let ask = |now_us, latest_start_us| SlotAsk {
            now_us,
            count: 2,
            interval_us: 100,
            latest_start_us,
        };
        let (lease, t) = ask(1_000, 1_000).lease_on(Timeline::default());
        assert_eq!(
            lease,
            Lease::Granted {
                start_us: 1_000,
                count: 2
            }
        );
        let mut t = t;
        let mut kept = Vec::new();
        for _ in 0..3 {
            let (lease, next) = ask(1_000, 1_050).lease_on(t);
            t = next;
            kept.push(lease);
        }
        assert_eq!(
            kept,
            [1_200, 1_300, 1_400].map(|at_us| Lease::Kept { at_us }),
            "after the block, one interval apart"
        );
        // Back just before its slot: it takes it.
        let (lease, t) = ask(1_150, 1_250).lease_on(t);
        assert_eq!(
            lease,
            Lease::Granted {
                start_us: 1_200,
                count: 1
            }
        );
        // A newcomer while slots are kept: kept after them, not before.
        let (lease, t) = ask(1_160, 1_200).lease_on(t);
        assert_eq!(lease, Lease::Kept { at_us: 1_500 });
        // The one kept at 1300 never came back: gone at 1400; 1400 is taken.
        let (lease, t) = ask(1_400, 1_450).lease_on(t);
        assert_eq!(
            lease,
            Lease::Granted {
                start_us: 1_400,
                count: 1
            }
        );
        assert_eq!((t.kept, t.kept_from_us, t.next_us), (1, 1_500, 1_600));
    }

    /// A store too contended to lease from: the send is held back, not paced by this
    /// instance alone (which would add its own rate to every other instance's).
    #[tokio::test]
    async fn a_contended_timeline_holds_the_send_back() {
        use super::super::{BreakerState, Opening, StoreFuture};

        struct Contended;
        impl DestinationStore for Contended {
            fn add_failure<'a>(&'a self, _: &'a str) -> StoreFuture<'a, BreakerState> {
                Box::pin(async { Ok(Default::default()) })
            }
            fn open<'a>(&'a self, _: &'a str, _: Opening) -> StoreFuture<'a, bool> {
                Box::pin(async { Ok(false) })
            }
            fn reset<'a>(&'a self, _: &'a str) -> StoreFuture<'a, ()> {
                Box::pin(async { Ok(()) })
            }
            fn lease_probe<'a>(
                &'a self,
                _: &'a str,
                _: u64,
                _: u64,
            ) -> StoreFuture<'a, Result<BreakerState, BreakerState>> {
                Box::pin(async { Ok(Err(Default::default())) })
            }
            fn release_probe<'a>(&'a self, _: &'a str, _: u64) -> StoreFuture<'a, ()> {
                Box::pin(async { Ok(()) })
            }
            fn state<'a>(&'a self, _: &'a str) -> StoreFuture<'a, BreakerState> {
                Box::pin(async { Ok(Default::default()) })
            }
            fn lease_slots<'a>(&'a self, _: &'a str, _: SlotAsk) -> StoreFuture<'a, Lease> {
                Box::pin(async { Err(AdapterError::Throttled("contended".into())) })
            }
        }
        let pacer = Pacer::new(Arc::new(Contended));
        let held = pacer.acquire("d", 50.0, Duration::from_secs(5)).await;
        assert_eq!(
            held,
            Err(COME_BACK_EARLY),
            "held, not sent on a local lease"
        );
    }
}
