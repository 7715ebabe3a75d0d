//! Guarding a destination: a circuit breaker that stops calling one that keeps failing
//! (`breaker`), and a rate limit that paces one that cannot take more (`pace`). Their state
//! lives in a `DestinationStore`: in this process (`LocalStore`), or in the idempotency
//! table, shared by every worker instance (`aws::dynamodb::DynamoDestinations`).
//!
//! A guarded route asks its `Gate` before anything else (before the idempotency ledger),
//! so a message held back by an open breaker or a missing token costs no table write and
//! no call: it is reported failed, to come back when the destination may be tried again.

pub mod breaker;
pub mod pace;

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub use breaker::{BreakerSettings, BreakerState, Breakers, LastFailure, Opening};
pub use pace::{Lease, Pacer, SlotAsk, Timeline};

use super::router::{FailureKind, HandlerError};
use crate::adapter::AdapterError;

/// A store call's answer.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, AdapterError>> + Send + 'a>>;

/// Where breaker and rate-limit state is kept. Each call is one atomic step, so several
/// worker instances sharing one store never undo each other.
pub trait DestinationStore: Send + Sync + 'static {
    /// One more consecutive failure; the state after it.
    fn add_failure<'a>(&'a self, destination: &'a str) -> StoreFuture<'a, BreakerState>;
    /// Opens the breaker as `opening` says, if nobody changed its opening since it was
    /// read; whether it did.
    fn open<'a>(&'a self, destination: &'a str, opening: Opening) -> StoreFuture<'a, bool>;
    /// Closes the breaker: no failures, not open.
    fn reset<'a>(&'a self, destination: &'a str) -> StoreFuture<'a, ()>;
    /// Takes the one probe of a breaker whose opening has run out, until `until_ms`:
    /// Ok with the state if granted, Err with the state as it is if another worker holds
    /// the probe or opened the breaker again.
    fn lease_probe<'a>(
        &'a self,
        destination: &'a str,
        now_ms: u64,
        until_ms: u64,
    ) -> StoreFuture<'a, Result<BreakerState, BreakerState>>;
    /// Gives back the probe leased until `until_ms`, if it is still that one: it was not
    /// used (held back, done elsewhere, no time left), and another worker may probe now.
    fn release_probe<'a>(&'a self, destination: &'a str, until_ms: u64) -> StoreFuture<'a, ()>;
    /// The breaker's state as the store has it.
    fn state<'a>(&'a self, destination: &'a str) -> StoreFuture<'a, BreakerState>;
    /// Leases the send slots `ask` wants, if the earliest free one is soon enough.
    fn lease_slots<'a>(&'a self, destination: &'a str, ask: SlotAsk) -> StoreFuture<'a, Lease>;
}

/// The state in this process alone: what each instance keeps when there is no table.
#[derive(Default)]
pub struct LocalStore {
    state: Mutex<HashMap<String, (BreakerState, Timeline)>>,
}

impl LocalStore {
    fn with<T>(&self, destination: &str, f: impl FnOnce(&mut (BreakerState, Timeline)) -> T) -> T {
        let mut map = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        f(map.entry(destination.to_owned()).or_default())
    }
}

impl DestinationStore for LocalStore {
    fn add_failure<'a>(&'a self, destination: &'a str) -> StoreFuture<'a, BreakerState> {
        let state = self.with(destination, |(s, _)| {
            s.failures = s.failures.saturating_add(1);
            *s
        });
        Box::pin(async move { Ok(state) })
    }

    fn open<'a>(&'a self, destination: &'a str, opening: Opening) -> StoreFuture<'a, bool> {
        let opened = self.with(destination, |(s, _)| {
            if s.open_until_ms != opening.expected_until_ms {
                return false;
            }
            s.open_until_ms = opening.until_ms;
            s.period_ms = opening.period_ms;
            s.probe_until_ms = 0;
            true
        });
        Box::pin(async move { Ok(opened) })
    }

    fn reset<'a>(&'a self, destination: &'a str) -> StoreFuture<'a, ()> {
        self.with(destination, |(s, _)| *s = BreakerState::default());
        Box::pin(async { Ok(()) })
    }

    fn lease_probe<'a>(
        &'a self,
        destination: &'a str,
        now_ms: u64,
        until_ms: u64,
    ) -> StoreFuture<'a, Result<BreakerState, BreakerState>> {
        let granted = self.with(destination, |(s, _)| {
            if s.open_until_ms > now_ms || s.probe_until_ms > now_ms {
                return Err(*s);
            }
            s.probe_until_ms = until_ms;
            Ok(*s)
        });
        Box::pin(async move { Ok(granted) })
    }

    fn release_probe<'a>(&'a self, destination: &'a str, until_ms: u64) -> StoreFuture<'a, ()> {
        self.with(destination, |(s, _)| {
            if s.probe_until_ms == until_ms {
                s.probe_until_ms = 0;
            }
        });
        Box::pin(async { Ok(()) })
    }

    fn state<'a>(&'a self, destination: &'a str) -> StoreFuture<'a, BreakerState> {
        let state = self.with(destination, |(s, _)| *s);
        Box::pin(async move { Ok(state) })
    }

    fn lease_slots<'a>(&'a self, destination: &'a str, ask: SlotAsk) -> StoreFuture<'a, Lease> {
        let lease = self.with(destination, |(_, timeline)| {
            let (lease, next) = ask.lease_on(*timeline);
            *timeline = next;
            lease
        });
        Box::pin(async move { Ok(lease) })
    }
}

/// What a gate let through: an ordinary send, or the one probe of a breaker that was open
/// (leased until `until_ms`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pass {
    Normal,
    Probe { until_ms: u64 },
}

/// One destination's breaker and, if the rule sets `maxPerSecond`, its pace.
pub struct Gate {
    destination: String,
    breakers: Arc<Breakers>,
    pace: Option<(Arc<Pacer>, f64)>,
}

impl Gate {
    pub fn new(
        destination: &str,
        breakers: Arc<Breakers>,
        pace: Option<(Arc<Pacer>, f64)>,
    ) -> Self {
        Self {
            destination: destination.to_owned(),
            breakers,
            pace,
        }
    }

    /// Whether a send may go now. `time_left` is what the invocation has left for it; a
    /// send held back is a `Deferred` failure with the time to come back.
    pub async fn admit(&self, time_left: Option<Duration>) -> Result<Pass, HandlerError> {
        let pass = self
            .breakers
            .admit(&self.destination, time_left)
            .await
            .map_err(|wait| {
                // Held back for what happened before: say what, for the dead-letter queue.
                match self.breakers.last_failure(&self.destination) {
                    Some(last) => {
                        let why = format!("circuit breaker open after: {}", last.reason);
                        let deferred = HandlerError::deferred(why, wait);
                        match last.status {
                            Some(status) => deferred.status(status),
                            None => deferred,
                        }
                    }
                    None => HandlerError::deferred("circuit breaker open", wait),
                }
            })?;
        if let Some((pacer, per_second)) = &self.pace {
            // Waiting for a token may use half of what is left; the rest is the send's.
            let max_wait = time_left.map_or(Duration::from_secs(5), |t| {
                (t / 2).min(Duration::from_secs(5))
            });
            let paced = pacer
                .acquire(&self.destination, *per_second, max_wait)
                .await;
            if let Err(wait) = paced {
                // A probe granted and not used goes back at once.
                self.release(pass).await;
                let why = format!("{}: over its rate limit", self.destination);
                return Err(HandlerError::deferred(why, wait));
            }
        }
        Ok(pass)
    }

    /// Tells the breaker how the send went: a success or a refusal (the destination
    /// answered: it is up) closes it, a failure counts against it. A send that was not
    /// made (deferred: no time left) settles nothing, and gives back the probe it held.
    pub async fn settle(&self, pass: Pass, result: &Result<(), HandlerError>) {
        let failure = match result {
            Err(e) if e.kind == FailureKind::Deferred => return self.release(pass).await,
            Err(e) if e.kind == FailureKind::Transient => Some(LastFailure {
                reason: e.reason.clone(),
                status: e.status,
            }),
            _ => None,
        };
        self.breakers.settle(&self.destination, pass, failure).await;
    }

    /// A pass that was not used: a probe goes back to the store.
    pub async fn release(&self, pass: Pass) {
        self.breakers.release(&self.destination, pass).await;
    }
}

pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

pub(crate) fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> BreakerSettings {
        BreakerSettings {
            failures: 1,
            open: Duration::from_millis(20),
            cap: Duration::from_millis(100),
            probe_wait: Duration::from_secs(5),
        }
    }

    /// A breaker whose opening has run out, over `store`.
    async fn ran_out(store: Arc<dyn DestinationStore>) -> Arc<Breakers> {
        let breakers = Arc::new(Breakers::new(store, settings()));
        let failure = LastFailure {
            reason: "answered 503".into(),
            status: Some(503),
        };
        breakers.settle("d", Pass::Normal, Some(failure)).await;
        tokio::time::sleep(Duration::from_millis(30)).await;
        breakers
    }

    /// A probe granted and then held back by the rate limit goes back at once: another
    /// worker may probe now, not in 5 s loops until the lease runs out.
    #[tokio::test]
    async fn a_probe_held_back_by_the_pace_is_given_back() {
        let store: Arc<dyn DestinationStore> = Arc::new(LocalStore::default());
        let breakers = ran_out(store.clone()).await;
        let pacer = Arc::new(Pacer::new(store.clone()));
        // The one slot of this second is taken.
        assert_eq!(pacer.acquire("d", 0.1, Duration::ZERO).await, Ok(()));
        let gate = Gate::new("d", breakers, Some((pacer, 0.1)));
        let held = gate.admit(Some(Duration::from_secs(10))).await.unwrap_err();
        assert_eq!(held.kind, FailureKind::Deferred);
        let other = Breakers::new(store, settings());
        let probe = other.admit("d", None).await;
        assert!(matches!(probe, Ok(Pass::Probe { .. })), "{probe:?}");
    }

    /// A probe that was not sent (no time left) neither closes nor reopens the breaker:
    /// the next send is a probe again, not an ordinary one.
    #[tokio::test]
    async fn a_probe_not_sent_settles_nothing_but_its_lease() {
        let store: Arc<dyn DestinationStore> = Arc::new(LocalStore::default());
        let breakers = ran_out(store).await;
        let gate = Gate::new("d", breakers.clone(), None);
        let pass = gate.admit(None).await.unwrap();
        assert!(matches!(pass, Pass::Probe { .. }), "{pass:?}");
        let not_sent = Err(HandlerError::deferred(
            "no time left",
            Duration::from_secs(1),
        ));
        gate.settle(pass, &not_sent).await;
        let again = gate.admit(None).await.unwrap();
        assert!(
            matches!(again, Pass::Probe { .. }),
            "still to be probed: {again:?}"
        );
        // A real answer closes it.
        gate.settle(again, &Ok(())).await;
        assert_eq!(gate.admit(None).await.unwrap(), Pass::Normal);
    }
}
