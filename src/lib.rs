//! Receives Twenty CRM webhooks on a Lambda Function URL, verifies them and queues them in
//! Amazon SQS. One request, top to bottom: `function_url` (HTTP adapter) → `ingest`
//! (`signature`, `event`, `envelope`: the pure core) → `dispatch` (the sender thread) →
//! `delivery` (batches, retries, the fallback log; plain code over a transport trait) →
//! `aws` (the SQS and S3 adapters), with `inflight` keeping the environment awake until
//! every send is done.
//!
//! The worker side (`worker`: routing, forwarding, the SQS event source) consumes the queue.
//!
//! Features: `ingest` (the Function URL function), `worker` (the consuming side, for a
//! crate that only reads the queue), both by default, and `aws` under each (tokio, SQS,
//! S3, delivery, replay). Without any, the crate is the pure request core alone.

pub mod config;
pub mod envelope;
pub mod error;
pub mod event;
pub mod fallback;
pub mod ingest;
pub mod retry;
pub mod signature;

#[cfg(feature = "aws")]
pub mod aws;
#[cfg(feature = "aws")]
pub mod delivery;
#[cfg(feature = "ingest")]
pub mod dispatch;
#[cfg(feature = "ingest")]
pub mod function_url;
#[cfg(feature = "ingest")]
pub mod inflight;
#[cfg(feature = "aws")]
pub mod replay;
#[cfg(feature = "worker")]
pub mod worker;

/// The README's Rust examples, compiled by `cargo test` so that they cannot rot.
#[cfg(all(doctest, feature = "worker"))]
#[doc = include_str!("../README.md")]
struct ReadmeExamples;
