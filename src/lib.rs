//! Receives Twenty CRM webhooks on a Lambda Function URL, verifies them and queues them in
//! Amazon SQS. One request, top to bottom: `function_url` (HTTP adapter) → `ingest`
//! (`signature`, `event`, `envelope`: the pure core) → `queue` (SQS adapter), with
//! `inflight` keeping the environment awake until the send is done.

pub mod config;
pub mod envelope;
pub mod error;
pub mod event;
pub mod fallback;
pub mod function_url;
pub mod inflight;
pub mod ingest;
pub mod payload_store;
pub mod queue;
pub mod replay;
pub mod retry;
pub mod signature;
