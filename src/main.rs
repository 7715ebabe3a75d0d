use lambda_http::{Error, service_fn, tracing};
use twenty_webhook::config::Config;
use twenty_webhook::function_url::App;
use twenty_webhook::inflight::InFlight;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    tracing::init_default_subscriber();
    let config = match Config::from_env() {
        Ok(config) => config,
        Err(e) => {
            tracing::error!("refusing to start: {e}");
            std::process::exit(1);
        }
    };
    let inflight = InFlight::default();
    // Registered before the runtime starts, as Lambda requires of extensions.
    let extension = inflight.register_extension().await?;
    let app = App::connecting_on_first_send(config, inflight);

    tokio::try_join!(
        lambda_http::run(service_fn(|request| app.handle(request))),
        extension,
    )?;
    Ok(())
}
