//! Turns Twenty CRM webhooks into workflows on AWS.
//!
//! # Layout
//!
//! In the order an event goes through it:
//!
//! - `twenty`: Twenty's wire format: its signature, its payload shapes, the change an
//!   event is (a record and its `updatedAt`, or its deletion).
//! - `ingest` (the Function URL function, `twenty-webhook`): `ingest::function_url` (HTTP
//!   adapter) → `ingest::accept` (the pure core) → `ingest::dispatch` (the sender thread),
//!   with `ingest::inflight` keeping the environment awake until every send is done.
//! - `envelope`: the queued message, the contract between every part.
//! - `delivery` (batches, retries, the fallback log; plain code over a transport trait),
//!   `retry` (how long to wait before another try), `fallback` (the line written when SQS
//!   will not take an acknowledged event) and `replay` (`twenty-replay`: those lines back
//!   into the queue, and `redrive`: the dead-letter queue back into it).
//! - `worker` (`twenty-worker`): reading a queued envelope, routing by name and content
//!   filter, a rule's transform of what it sends, what an update's fields held before, one delivery
//!   per burst of a record's changes, its credentials, the targets (one file per kind: HTTP
//!   with Standard Webhooks, Step Functions, EventBridge, SQS), idempotency, breakers and
//!   rate limits, the retry plan, the SQS event source.
//! - `dead_letter`: what a moved message carries and says, and which a redrive takes.
//! - `reconcile` (`twenty-reconcile`): the changes Twenty never sent, found through its
//!   REST API (`twenty_api`, also `twenty-admin`'s client for Twenty's webhooks).
//! - `admin` (`twenty-admin`): connect Twenty, rotate its secret, status, send a test.
//! - `aws`: the adapters to AWS (SQS, S3, DynamoDB, SSM and Secrets Manager, Step
//!   Functions, EventBridge, CloudFormation, CloudWatch); every failed call, sends
//!   included, reads as one `adapter::AdapterError` (try again, or give up).
//! - Shared by all: `secrets` (secret settings kept in a store, re-read on a schedule),
//!   `settings` (errors in settings, never a value), `logging`, `metrics` (EMF lines),
//!   `progress` (the tools' progress bar), `clock` (the one wall clock), `tls` (the TLS
//!   provider of the HTTP clients that are not the AWS SDK's).
//!
//! Features: `ingest` (the Function URL function), `worker` (the consuming side),
//! `reconcile` (with `worker`) and `admin` (with `reconcile`), all by default; `aws` under
//! each (tokio, SQS, S3, SSM, Secrets Manager, delivery, replay). Without any, the crate is
//! the pure request core alone, which is what the fuzz target builds.

// What is `pub` is what a binary, an example or a test names; the rest is `pub(crate)`.
#![warn(unreachable_pub, rust_2018_idioms, nonstandard_style)]
// A build with fewer parts (the fuzz target's has none) leaves helpers of the others unused,
// and what is public for one part crate-internal for it.
#![cfg_attr(
    not(all(
        feature = "ingest",
        feature = "worker",
        feature = "reconcile",
        feature = "admin"
    )),
    allow(dead_code, unreachable_pub)
)]

pub mod adapter;
pub(crate) mod clock;
pub(crate) mod dead_letter;
pub mod envelope;
pub mod fallback;
pub mod ingest;
#[cfg(any(feature = "ingest", feature = "worker"))]
pub(crate) mod logging;
pub mod metrics;
pub(crate) mod progress;
pub mod retry;
pub mod secrets;
pub(crate) mod settings;
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
#[cfg(feature = "worker")]
pub mod tls;
#[cfg(feature = "reconcile")]
pub mod twenty_api;
#[cfg(feature = "worker")]
pub mod worker;

/// The README's Rust examples, compiled by `cargo test` so that they cannot rot.
#[cfg(all(doctest, feature = "worker"))]
#[doc = include_str!("../README.md")]
struct ReadmeExamples;
