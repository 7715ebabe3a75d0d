use lambda_http::{Error, service_fn, tracing};
use twenty_webhook::config::Config;
use twenty_webhook::function_url::App;
use twenty_webhook::inflight::InFlight;
use twenty_webhook::queue::SqsQueue;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    tracing::init_default_subscriber();
    let config = Config::from_env().inspect_err(|e| tracing::error!("refusing to start: {e}"))?;
    let queue = SqsQueue::connect(&config.queue_url).await;
    let inflight = InFlight::default();
    // Registered before the runtime starts, as Lambda requires of extensions.
    let extension = inflight.register_extension().await?;
    let app = App::new(config, queue, inflight);

    tokio::try_join!(
        lambda_http::run(service_fn(|request| app.handle(request))),
        extension,
    )?;
    Ok(())
}
