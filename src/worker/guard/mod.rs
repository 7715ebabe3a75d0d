//! Guarding a destination: a circuit breaker that stops calling one that keeps failing
//! (`breaker`), and a rate limit that paces one that cannot take more (`pace`). Their state
//! lives in a `DestinationStore`: in this process (`LocalStore`), or in the idempotency
//! table, shared by every worker instance (`aws::dynamodb::DynamoDestinations`).
//!
//! A guarded route asks its `Gate` before anything else (before the idempotency ledger),
//! so a message held back by an open breaker or a missing token costs no table write and
//! no call: it is reported failed, to come back when the destination may be tried again.

pub(crate) mod breaker;
pub(crate) mod gate;
pub(crate) mod pace;
pub(crate) mod state;
pub(crate) mod store;

pub(crate) use breaker::Breakers;
pub(crate) use gate::Gate;
pub(crate) use pace::Pacer;
pub(crate) use state::{BreakerSettings, BreakerState, Lease, Opening, SlotAsk, Timeline};
pub(crate) use store::{DestinationStore, LocalStore, StoreFuture};
