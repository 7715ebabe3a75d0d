//! twenty-worker: consumes the queue (Lambda's SQS event source), routes each event to the
//! handlers that match it and forwards it per `FORWARD_RULES`.

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    twenty_webhook::worker::lambda::run().await
}
