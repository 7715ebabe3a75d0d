//! Receives Twenty CRM webhooks on a Lambda Function URL, verifies them and queues them in
//! Amazon SQS. One request, top to bottom: `function_url` (HTTP adapter) → `ingest`
//! (`signature`, `event`, `envelope`: the pure core) → `dispatch` (the sender thread) →
//! `delivery` (batches, retries, the fallback log; plain code over a transport trait) →
//! `aws` (the SQS and S3 adapters), with `inflight` keeping the environment awake until
//! every send is done.
//!
//! The runtime parts (everything that touches Lambda, tokio, SQS or S3) sit behind the
//! default `aws` feature; without it the crate is the pure request core alone.

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
#[cfg(feature = "aws")]
pub mod dispatch;
#[cfg(feature = "aws")]
pub mod function_url;
#[cfg(feature = "aws")]
pub mod inflight;
#[cfg(feature = "aws")]
pub mod replay;
#[cfg(feature = "aws")]
pub mod worker;
