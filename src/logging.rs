//! The functions' log setup: as `lambda_runtime`'s default subscriber (the level from
//! `AWS_LAMBDA_LOG_LEVEL` or `RUST_LOG`, JSON when `AWS_LAMBDA_LOG_FORMAT` is `JSON`), less
//! one thing: a JSON line lists its spans once (`spans`), not a second time as the current
//! `span`. The same fields, at half the bytes of a short line: CloudWatch Logs bills each.

#[cfg(all(feature = "ingest", not(feature = "worker")))]
use lambda_http::tracing::subscriber;
#[cfg(feature = "worker")]
use lambda_runtime::tracing::subscriber;

use subscriber::filter::{EnvFilter, LevelFilter};
use subscriber::fmt::MakeWriter;

/// Sets up logging to standard output.
pub(crate) fn init() {
    init_with_writer(std::io::stdout);
}

/// Sets up logging to `writer`.
pub(crate) fn init_with_writer<W>(writer: W)
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let level = std::env::var("AWS_LAMBDA_LOG_LEVEL")
        .or_else(|_| std::env::var("RUST_LOG"))
        .ok()
        .and_then(|l| l.parse::<LevelFilter>().ok())
        .unwrap_or(LevelFilter::INFO);
    let json = std::env::var("AWS_LAMBDA_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json"));
    let builder = subscriber::fmt()
        .with_target(false)
        .without_time()
        .with_env_filter(
            EnvFilter::builder()
                .with_default_directive(level.into())
                .from_env_lossy(),
        )
        .with_writer(writer);
    // A second call (a test, a library user who set one up) keeps the first.
    let _ = if json {
        builder
            .json()
            .with_current_span(false)
            .with_span_list(true)
            .try_init()
    } else {
        builder.try_init()
    };
}
