//! What the delivery logic needs from the queue and the claim-check store.

use crate::adapter::AdapterError;
use crate::envelope::{Claim, Message};

/// One entry of a SendMessageBatch call: `id` is unique within the call.
#[derive(Debug, Clone, Copy)]
pub struct Entry<'a> {
    pub id: &'a str,
    pub message: &'a Message,
}

/// SQS's answer to a batch call, as it came: the ids it lists as successful, and those it
/// lists as failed. An entry in neither list was not confirmed (see `send`).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct BatchReply {
    pub successful: Vec<String>,
    pub failed: Vec<EntryRefusal>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryRefusal {
    pub id: String,
    /// SQS's own verdict: true when the entry itself is at fault (not worth retrying).
    pub sender_fault: bool,
    pub code: String,
}

/// The two calls a delivery makes. A call error is a classified [`AdapterError`]; the delivery
/// logic decides what to retry and for how long.
pub trait Transport: Send + Sync + 'static {
    fn send_batch(
        &self,
        entries: &[Entry<'_>],
    ) -> impl Future<Output = Result<BatchReply, AdapterError>> + Send;

    /// Stores a claim-check envelope; storing the same one twice is harmless.
    fn put_claim(&self, claim: &Claim) -> impl Future<Output = Result<(), AdapterError>> + Send;
}
