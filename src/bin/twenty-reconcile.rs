//! Recovers the changes Twenty never delivered: a backfill command, or the scheduled
//! Lambda function (see `twenty_webhook::reconcile`).

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    twenty_webhook::reconcile::cli::main().await
}
