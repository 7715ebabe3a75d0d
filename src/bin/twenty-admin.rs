//! Sets Twenty up for this stack through its webhook API (see `twenty_webhook::admin`).

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    twenty_webhook::admin::cli::main().await
}
