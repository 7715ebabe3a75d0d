//! The AWS adapters: SQS (the queue transport, and visibility for the worker's back-off),
//! S3 (claim checks), DynamoDB (the worker's idempotency ledger), SSM and Secrets Manager
//! (secret settings), the targets' Step Functions, EventBridge and SQS clients, and how SDK
//! errors are read for the retry policy. Everything AWS-typed lives here.

#[cfg(feature = "admin")]
pub(crate) mod cloudformation;
#[cfg(feature = "admin")]
pub(crate) mod cloudwatch;
pub(crate) mod dead_letters;
#[cfg(feature = "worker")]
pub(crate) mod dynamodb;
#[cfg(feature = "worker")]
pub(crate) mod eventbridge;
mod lazy;
pub(crate) mod queues;
pub(crate) mod redrive;
pub(crate) mod s3;
mod sdk_error;
pub(crate) mod secret_store;
pub(crate) mod sqs;
#[cfg(feature = "worker")]
pub(crate) mod step_functions;
#[cfg(feature = "worker")]
mod targets;

pub use dead_letters::SqsDeadLetters;
#[cfg(feature = "worker")]
pub use dynamodb::{DynamoBursts, DynamoDestinations, DynamoLedger, DynamoStates};
#[cfg(feature = "reconcile")]
pub use dynamodb::{DynamoSeen, DynamoWatermarks};
pub use lazy::LazySdk;
pub use s3::{PayloadStore, ResolveError};
pub use secret_store::AwsSecretStore;
#[cfg(feature = "worker")]
pub use sqs::SqsSender;
pub use sqs::{SqsTransport, SqsVisibility};
#[cfg(feature = "worker")]
pub use targets::target_clients;
#[cfg(feature = "worker")]
pub use {eventbridge::EventBridgePublisher, step_functions::SfnExecutions};
