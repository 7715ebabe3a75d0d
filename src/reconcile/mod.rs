//! Reconciliation (`twenty-reconcile`): recovering the events Twenty never delivered.
//!
//! Twenty drops webhook calls over its rate limit, never retries, and skips records not
//! visible to everyone; its REST API still lists every record by `updatedAt` and
//! `deletedAt`. This reads the changes of a window through it and queues each one, as a
//! version-2 envelope (`origin: "reconciliation"`), unless the worker has already taken
//! that change; the worker's idempotency is keyed on the change, so a change both
//! delivered and reconciled is acted on once.
//!
//! Plain code: `change` (a row as an envelope), `window` (which span a run reads), `run`
//! (the pages, the skipping, the queuing, the watermarks; over traits for the table). The
//! adapters: `crate::twenty_api` (Twenty's REST API), `crate::aws` (SQS, DynamoDB); `setup` builds them from the
//! settings, `report` sums a run up (a line and EMF metrics), and `cli` (the command) and
//! `lambda` (the scheduled function) drive it.

pub mod change;
pub mod cli;
pub(crate) mod config;
mod lambda;
pub(crate) mod report;
pub mod run;
pub mod setup;
pub mod window;

pub use crate::twenty_api::{ApiError, ApiKey, TwentyApi};
pub use change::Object;
pub use run::{Mode, NoTable, ObjectReport, Reconciler, RunError, Verdict};
