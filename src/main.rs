use lambda_http::Error;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    twenty_webhook::ingest::function_url::run().await
}
