//! Receives Twenty CRM webhooks on a Lambda Function URL, verifies them and queues them in
//! Amazon SQS. One request, top to bottom: `function_url` (HTTP adapter) → `ingest`
//! (`signature`, `event`, `envelope`: the pure core) → `queue` (SQS adapter), with
//! `inflight` keeping the environment awake until the send is done, `retry` deciding what
//! to try again and `fallback` keeping what could not be sent.
//!
//! The adapters (everything that touches Lambda, SQS or S3) sit behind the default `aws`
//! feature; without it the crate is the pure core alone.

pub mod config;
pub mod envelope;
pub mod error;
pub mod event;
pub mod fallback;
pub mod ingest;
pub mod retry;
pub mod signature;

#[cfg(feature = "aws")]
pub mod function_url;
#[cfg(feature = "aws")]
pub mod inflight;
#[cfg(feature = "aws")]
pub mod payload_store;
#[cfg(feature = "aws")]
pub mod queue;
#[cfg(feature = "aws")]
pub mod replay;
