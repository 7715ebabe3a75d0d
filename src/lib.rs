//! Turns Twenty CRM webhooks into workflows on AWS. The parts, each in a place of its own:
//!
//! - `twenty`: Twenty's wire format (its signature, its payload shapes);
//! - `envelope`: the queued message, the contract between the two functions;
//! - `ingest`: the Function URL function. One request, top to bottom:
//!   `ingest::function_url` (HTTP adapter) → `ingest::accept` (the pure core) →
//!   `ingest::dispatch` (the sender thread) → `delivery` (batches, retries, the fallback
//!   log; plain code over a transport trait) → `aws`, with `ingest::inflight` keeping the
//!   environment awake until every send is done;
//! - `worker`: the consuming side (routing, forwarding, the SQS event source);
//! - `aws`: the adapters to SQS, S3 and DynamoDB, their failures read as `adapter` errors; `retry`, `fallback`, `replay`: what is
//!   retried, the undelivered log lines, sending them back; `settings`: errors in settings.
//!
//! Features: `ingest` (the Function URL function), `worker` (the consuming side, for a
//! crate that only reads the queue), both by default, and `aws` under each (tokio, SQS,
//! S3, delivery, replay). Without any, the crate is the pure request core alone.

pub mod adapter;
pub mod dead_letter;
pub mod envelope;
pub mod fallback;
pub mod ingest;
#[cfg(any(feature = "ingest", feature = "worker"))]
pub mod logging;
pub mod metrics;
pub mod progress;
pub mod retry;
pub mod secrets;
pub mod settings;
pub mod twenty;

#[cfg(feature = "aws")]
pub mod aws;
#[cfg(feature = "aws")]
pub mod delivery;
#[cfg(feature = "aws")]
pub mod replay;

#[cfg(feature = "admin")]
pub mod admin;
#[cfg(feature = "reconcile")]
pub mod reconcile;
#[cfg(feature = "reconcile")]
pub mod twenty_api;
#[cfg(feature = "worker")]
pub mod worker;

/// The README's Rust examples, compiled by `cargo test` so that they cannot rot.
#[cfg(all(doctest, feature = "worker"))]
#[doc = include_str!("../README.md")]
struct ReadmeExamples;
