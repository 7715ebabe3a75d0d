//! The floor for the cold-start measurement: a hello-world `lambda_http` function, built
//! with the same release profile and the same `lambda_http` features as the product.

use lambda_http::{Body, Error, Request, Response, service_fn};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    lambda_http::run(service_fn(|_: Request| async {
        Ok::<_, Error>(Response::new(Body::from("hello")))
    }))
    .await
}
