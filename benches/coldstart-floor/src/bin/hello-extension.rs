//! The second floor of the cold-start measurement: the hello world plus an internal
//! extension registered before the runtime starts, as the function registers one to keep
//! the environment awake for sends that finish after the response. Its gap to `hello` is
//! what that registration costs at init; the function's gap to it is everything else.

use lambda_extension::{Extension, LambdaEvent};
use lambda_http::{Body, Error, Request, Response, service_fn};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    let extension = Extension::new()
        .with_events(&["INVOKE"])
        .with_events_processor(lambda_extension::service_fn(|_: LambdaEvent| async {
            Ok::<(), Error>(())
        }))
        .with_extension_name("hello-extension")
        .register()
        .await?;
    tokio::try_join!(
        lambda_http::run(service_fn(|_: Request| async {
            Ok::<_, Error>(Response::new(Body::from("hello")))
        })),
        extension.run(),
    )?;
    Ok(())
}
