//! A rate limit per destination (`maxPerSecond`), shared through the store: send slots,
//! `1 / maxPerSecond` apart on one timeline for every worker instance, are leased a block
//! at a time (a second's worth), so the store is written once per block rather than once
//! per send. A slot is used at its time and never later than one interval after it: in any
//! window, the destination gets at most `maxPerSecond × window + 1` calls.
//!
//! A send that would wait longer than it may is not made: its message comes back when the
//! next free slot is due.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tracing::warn;

use super::{DestinationStore, LocalStore, now_us};

/// What the store gave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lease {
    /// Slots from `start_us` on, one interval apart.
    Granted { start_us: u64 },
    /// None soon enough: the next free slot is at `at_us`.
    Later { at_us: u64 },
}

/// A request for send slots, at `now_us`: `count` slots `interval_us` apart, from the
/// earliest free one, if that is no later than `latest_start_us`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlotAsk {
    pub now_us: u64,
    pub count: u32,
    pub interval_us: u64,
    pub latest_start_us: u64,
}

impl SlotAsk {
    /// The lease a store grants when its next free slot is `next_free_us`: the lease, and
    /// the next free slot after it (None: unchanged). One rule for every store.
    pub fn lease_at(self, next_free_us: u64) -> (Lease, Option<u64>) {
        let start = next_free_us.max(self.now_us);
        if start > self.latest_start_us {
            return (Lease::Later { at_us: start }, None);
        }
        let next = start + u64::from(self.count) * self.interval_us;
        (Lease::Granted { start_us: start }, Some(next))
    }
}

/// Slots leased by this instance for one destination.
#[derive(Debug, Default)]
struct Slots {
    next_us: u64,
    end_us: u64,
    /// The store said no slot is free before this.
    busy_until_us: u64,
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
                if slots.busy_until_us > latest {
                    return Err(Duration::from_micros(slots.busy_until_us - now));
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
                    Err(e) => {
                        warn!(destination, error = %e, "rate limit not read; this worker paces alone");
                        self.fallback
                            .lease_slots(destination, ask)
                            .await
                            .unwrap_or(Lease::Later { at_us: latest })
                    }
                };
                match lease {
                    Lease::Granted { start_us } => {
                        slots.next_us = start_us;
                        slots.end_us = start_us + u64::from(block) * interval;
                    }
                    Lease::Later { at_us } => {
                        slots.busy_until_us = at_us;
                        return Err(Duration::from_micros(at_us.saturating_sub(now)));
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
            wait > Duration::from_millis(800) && wait <= Duration::from_secs(1),
            "{wait:?}"
        );
        assert_eq!(pacer.block(8.0), 8);
        assert_eq!(pacer.block(0.2), 1);
        assert_eq!(pacer.block(1e6), 100);
    }
}
