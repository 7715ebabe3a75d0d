//! Where breaker and rate-limit state is kept: the `DestinationStore` trait, and
//! `LocalStore`, the state in this process alone (the table's store is
//! `aws::dynamodb::DynamoDestinations`).

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Mutex, PoisonError};

use super::state::{BreakerState, Lease, Opening, SlotAsk, Timeline};
use crate::adapter::AdapterError;

/// A store call's answer.
pub(crate) type StoreFuture<'a, T> =
    Pin<Box<dyn Future<Output = Result<T, AdapterError>> + Send + 'a>>;

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
pub(crate) struct LocalStore {
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
