//! The AWS adapters: SQS (the queue transport) and S3 (claim checks), and how their SDK
//! errors are read for the retry policy. Everything AWS-typed lives here.

pub mod s3;
mod sdk_error;
pub mod sqs;

pub use s3::{PayloadStore, ResolveError};
pub use sqs::SqsTransport;
