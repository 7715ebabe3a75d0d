//! twenty-replay: sends events from the function's fallback log lines back to SQS.
//!
//! Usage: twenty-replay [--queue-url URL] [--budget-secs N] [FILE ...]
//! Reads the files (or standard input, also as `-`), for example lines exported from
//! CloudWatch Logs, and sends every undelivered event found in them. The queue is
//! `--queue-url` or `QUEUE_URL`; the usual AWS settings apply (`AWS_ENDPOINT_URL_SQS`...).
//! Exits 1 if any event could not be sent, 2 on a usage error.

use std::process::ExitCode;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    twenty_webhook::replay::cli::run().await
}
