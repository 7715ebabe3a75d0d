//! The worker side: from the queue to workflows.
//!
//! Plain code, no AWS types: `event` reads a queued envelope, `patterns` (event names) and
//! `filter` (content filters, EventBridge patterns) select, `router` sends it to the
//! handlers that select it (a failure, from a handler's to the batch response's, is one
//! `error::HandlerError`), `batch` runs a batch of messages (FIFO groups in order, within
//! the deadline), `idempotency` keeps a handler from acting twice on one event,
//! `retry_policy` decides what becomes of a failure (back-off, horizon, dead-letter queue),
//! `guard` holds a destination's breaker and pace, `rules` reads `FORWARD_RULES` (and
//! `rules::stored`, rules kept in a store), `targets` delivers (one file per kind, owning
//! its rule fields and its delivery: HTTP signed per `standard_webhooks`, Step Functions,
//! EventBridge, SQS), `previous` tells an update what its fields held (`includePrevious`), `collapse` sends a
//! record's burst of changes once (`collapseSeconds`), `forward` makes each rule a guarded handler (its body shaped by `transform`, EventBridge's input
//! transformer semantics), `handling` takes one
//! message to its handlers, `on_failure` does what the retry plan says for one that
//! failed (the dead-letter copy, the ledger's marks). The adapters: `source` (SQS's event
//! source: one batch in, the failed ids out), `lambda` (the function's start), and `crate::aws`
//! (S3 for claim checks, DynamoDB for idempotency and destination state, SQS for back-off
//! and the dead-letter queue, and the targets' clients).
//!
//! A handler in Rust is one async function registered on a pattern:
//!
//! ```
//! use std::sync::Arc;
//! use twenty_webhook::worker::{Event, HandlerError, Router};
//!
//! let router = Router::new()
//!     .on("email-sync", &["person.updated"], |event: Arc<Event>| async move {
//!         if event.updated_fields().iter().any(|f| f == "emails") {
//!             // call your API here
//!         }
//!         Ok::<(), HandlerError>(())
//!     })
//!     .expect("a valid pattern");
//! assert_eq!(router.matching("person.updated"), ["email-sync"]);
//! ```

pub mod batch;
pub mod collapse;
pub(crate) mod config;
pub mod credentials;
pub mod error;
pub(crate) mod event;
pub mod filter;
pub(crate) mod forward;
pub(crate) mod guard;
pub(crate) mod handling;
pub(crate) mod idempotency;
pub mod lambda;
pub(crate) mod on_failure;
pub(crate) mod patterns;
pub mod previous;
pub(crate) mod retry_policy;
pub mod router;
pub mod rules;
pub mod source;
pub mod standard_webhooks;
pub mod targets;
pub mod transform;
pub mod web;

pub use error::{FailureKind, HandlerError};
pub use event::{Event, EventError, Queued};
pub use filter::{Filter, FilterError};
pub use forward::Forwarder;
pub use idempotency::{Begin, Ledger, LedgerFuture, Mode, NoLedger};
pub use patterns::Pattern;
pub use router::{Outcome, RouteError, Router, Selection};
pub use source::{Worker, WorkerBuilder};
