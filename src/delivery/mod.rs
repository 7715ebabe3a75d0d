//! Getting acknowledged messages into the queue, or into the fallback log: never neither.
//!
//! Plain code over a [`Transport`] (the SQS and S3 calls, behind a trait so that the retry
//! and fallback logic runs in deterministic tests without a server):
//!
//! - [`send`]: batches, per-entry results, retries with back-off within a deadline;
//! - [`Consignment`]: owns the messages of one acknowledged request and writes every one
//!   not confirmed by SQS to the fallback log, however the send ends (done, deadline, panic,
//!   cancellation, shutdown).

mod consignment;
pub mod send;
mod transport;

pub use consignment::{Consignment, FallbackSink, QueueError, stdout_sink};
pub use send::{Pending, Stats, send_all};
pub use transport::{BatchReply, Entry, EntryRefusal, Transport};
