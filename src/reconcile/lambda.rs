//! The scheduled function: one run from the watermarks per invocation, stopping
//! `LAMBDA_MARGIN` before the deadline. A run that gave up on an object or made no progress
//! fails the invocation (the template alarms when that keeps happening); one stopped by
//! the deadline after some progress does not: the next goes on.

use std::time::{Duration, SystemTime};

use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::{Value, json};
use tokio::time::Instant;

use super::config::ReconcileConfig;
use super::report::Summary;
use super::run::{Verdict, Watermarks};
use super::setup::Setup;

/// Lambda stops the function at its deadline; the run stops reading this much before.
const LAMBDA_MARGIN: Duration = Duration::from_secs(10);

pub(super) async fn main() -> Result<(), Error> {
    crate::logging::init();
    let config = ReconcileConfig::from_env()?;
    if config.table.is_none() {
        return Err(
            "IDEMPOTENCY_TABLE is not set: scheduled runs keep their watermarks there".into(),
        );
    }
    let setup = Setup::from_config(config).await?;
    let setup = &setup;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        // A deadline already past means none was given (cargo lambda watch sends a
        // fixed, long-gone one): Lambda's longest timeout applies then.
        let remaining = event
            .context
            .deadline()
            .duration_since(SystemTime::now())
            .unwrap_or(Duration::from_secs(900));
        let budget = remaining
            .saturating_sub(LAMBDA_MARGIN)
            .min(setup.config.time_limit);
        Box::pin(scheduled_run(setup, budget)).await
    }))
    .await
}

async fn scheduled_run(setup: &Setup, budget: Duration) -> Result<Value, Error> {
    let (requests, throttled) = (setup.api.requests(), setup.api.throttled());
    let deadline = Instant::now() + budget;
    let objects = match setup.objects(&setup.config.objects, deadline).await {
        Ok(objects) => objects,
        Err(e) => {
            let mut summary = Summary::new(&[], setup.api.requests() - requests, 0);
            summary.verdict = Verdict::Failed(vec![format!("the object list: {e}")]);
            summary.document().emit();
            record(setup, &summary).await;
            return Err(e.into());
        }
    };
    let reports = setup
        .run(&objects, setup.scheduled(), false, deadline, |_| {})
        .await;
    let summary = Summary::new(
        &reports,
        setup.api.requests() - requests,
        setup.api.throttled() - throttled,
    );
    summary.document().emit();
    record(setup, &summary).await;
    tracing::info!(summary = %summary.line(), verdict = %summary.verdict, "reconciled");
    if summary.verdict.failed() {
        return Err(summary.verdict.to_string().into());
    }
    Ok(json!({
        "complete": reports.iter().all(|r| r.complete),
        "objects": reports.iter().map(|r| json!({
            "object": r.plural, "read": r.read, "queued": r.queued,
            "seen": r.seen, "skipped": r.skipped, "complete": r.complete
        })).collect::<Vec<_>>(),
    }))
}

/// Keeps the run for `twenty-admin status`; a failure to keep it fails nothing.
async fn record(setup: &Setup, summary: &Summary<'_>) {
    if let Err(e) = setup
        .table
        .record_run(&summary.last_run(SystemTime::now()))
        .await
    {
        tracing::warn!(error = %e, "the run was not recorded for twenty-admin status");
    }
}
