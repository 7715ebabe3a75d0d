//! The worker as a Lambda function behind SQS's event source: settings read once, the
//! adapters built (none makes its AWS client before it first needs it: init and most first
//! answers make no client), and each batch handed to `source::Worker` with the
//! invocation's deadline.

use std::sync::Arc;

use aws_lambda_events::event::sqs::SqsEvent;
use lambda_runtime::{Error, LambdaEvent, service_fn};
use tracing::error;

use super::config::WorkerConfig;
use super::forward::Forwarder;
use super::guard::{Breakers, DestinationStore, LocalStore, Pacer};
use super::idempotency::{Ledger, NoLedger};
use super::router::Router;
use super::rules::stored::{Routes, parse_stored_rules};
use super::source::Worker;
use crate::aws::{
    AwsSecretStore, DynamoBursts, DynamoDestinations, DynamoLedger, DynamoStates, LazySdk,
    PayloadStore, SqsDeadLetters, SqsVisibility, target_clients,
};
use crate::secrets::Rotating;

/// Runs the `twenty-worker` function: `FORWARD_RULES` (required) and the other settings,
/// then the runtime.
pub async fn run() -> Result<(), Error> {
    start(Router::new(), true).await
}

/// Runs a worker with your own handlers in `router`, plus the forwarding rules of
/// `FORWARD_RULES` if it is set. The other settings are read as `twenty-worker` reads them.
pub async fn run_with(router: Router) -> Result<(), Error> {
    start(router, false).await
}

async fn start(router: Router, rules_required: bool) -> Result<(), Error> {
    crate::logging::init();
    let config = match WorkerConfig::from_env(rules_required) {
        Ok(config) => config,
        Err(e) => {
            error!("refusing to start: {e}");
            std::process::exit(1);
        }
    };
    let sdk = LazySdk::default();
    // With the table, breakers and paces are shared by every instance; without it, each
    // instance keeps its own.
    let store: Arc<dyn DestinationStore> = match &config.idempotency_table {
        Some(table) => Arc::new(DynamoDestinations::lazy(sdk.clone(), table)),
        None => Arc::new(LocalStore::default()),
    };
    let mut forwarder = Forwarder::new(
        Arc::new(Breakers::new(store.clone(), config.breaker)),
        Arc::new(Pacer::new(store)),
    )
    .with_clients(target_clients(&sdk, config.secret_refresh))
    .with_mode(config.mode)
    .on_fifo(
        config
            .queue_url
            .as_deref()
            .is_some_and(|u| u.ends_with(".fifo")),
    );
    if let Some(table) = &config.idempotency_table {
        forwarder = forwarder
            .with_states(Arc::new(DynamoStates::lazy(sdk.clone(), table)))
            .with_bursts(Arc::new(DynamoBursts::lazy(sdk.clone(), table)));
    }
    // Your own handlers too, when the setting names one mode for all.
    let router = match config.mode {
        Some(mode) => router.with_mode(mode),
        None => router,
    };
    let router = match forwarder.clone().add_rules(router, config.rules.clone()) {
        Ok(router) => router,
        Err(e) => {
            error!("refusing to start: FORWARD_RULES: {e}");
            std::process::exit(1);
        }
    };
    let routes = match &config.stored_rules {
        Some(stored) => {
            let store = Arc::new(AwsSecretStore::lazy(sdk.clone()));
            let rules = Rotating::stored(
                store,
                stored.clone(),
                parse_stored_rules,
                config.secret_refresh,
            );
            Routes::with_stored_rules(router, rules, forwarder)
        }
        None => Routes::from(router),
    };
    let worker = build(&config, sdk, routes);
    lambda_runtime::run(service_fn(|event: LambdaEvent<SqsEvent>| {
        let worker = &worker;
        async move {
            let deadline = deadline_of(&event.context);
            worker.handle_until(event.payload, deadline).await
        }
    }))
    .await
}

/// The invocation's deadline on tokio's clock.
fn deadline_of(context: &lambda_runtime::Context) -> Option<tokio::time::Instant> {
    let deadline = std::time::UNIX_EPOCH + std::time::Duration::from_millis(context.deadline);
    let left = deadline.duration_since(std::time::SystemTime::now()).ok()?;
    Some(tokio::time::Instant::now() + left)
}

fn build(config: &WorkerConfig, sdk: LazySdk, routes: Routes) -> Worker {
    let ledger: Arc<dyn Ledger> = match &config.idempotency_table {
        Some(table) => Arc::new(DynamoLedger::lazy(sdk.clone(), table, config.in_progress)),
        None => Arc::new(NoLedger),
    };
    let claims = Some(PayloadStore::lazy(sdk.clone()));
    let visibility = SqsVisibility::lazy(sdk.clone(), config.queue_url.clone());
    let worker = Worker::builder(routes, claims, ledger, config.concurrency)
        .with_visibility(visibility)
        .with_retry(config.retry)
        .with_deadline_margin(config.deadline_margin);
    match &config.dead_letter_queue_url {
        Some(url) => worker.with_dead_letters(SqsDeadLetters::lazy(sdk, url)),
        None => worker,
    }
    .build()
}
