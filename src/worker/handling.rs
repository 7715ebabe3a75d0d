//! One message, from its body to its handlers: the envelope read (its claim check fetched
//! from S3), the routes in force, every handler that selects it run (at most once each, as
//! far as the ledger can tell), and the metrics of how each run went. A message some
//! handler failed on goes to `on_failure`, which says what becomes of it.

use std::sync::Arc;
use std::time::SystemTime;

use tracing::{info, warn};

use super::batch::{Bounds, Item, Process};
use super::error::{FailureKind, HandlerError};
use super::event::{Event, EventError, Queued, Received};
use super::idempotency::{Ledger, mark_seen};
use super::on_failure::OnFailure;
use super::router::{Outcome, Ran, Router};
use super::rules::stored::Routes;
use crate::aws::PayloadStore;
use crate::metrics::Tally;

/// How each message of a batch is handled.
pub(crate) struct Handling {
    routes: Routes,
    claims: Option<PayloadStore>,
    ledger: Arc<dyn Ledger>,
    on_failure: OnFailure,
    /// The router whose handlers were last published to the ledger (for reconciliation).
    published: std::sync::Mutex<Option<Arc<Router>>>,
}

impl Handling {
    pub(crate) fn new(routes: Routes, on_failure: OnFailure) -> Self {
        Self {
            routes,
            claims: on_failure.claims.clone(),
            ledger: on_failure.ledger.clone(),
            on_failure,
            published: std::sync::Mutex::new(None),
        }
    }

    /// Why the stored forwarding rules are not in force, if they are not.
    pub(crate) fn rules_not_applied(&self) -> Option<String> {
        self.routes.not_applied()
    }
}

impl Process for Handling {
    async fn process(
        &self,
        item: &Item,
        bounds: Bounds,
        tally: &Tally,
    ) -> Result<(), HandlerError> {
        let (event, failures) = match self.read(&item.body).await {
            Ok(event) => {
                // Shared, not copied: a claim check's body can be megabytes.
                let event = Arc::new(self.prepare(event, item, bounds));
                let failures = self.route(event.clone(), tally).await;
                (Some(event), failures)
            }
            Err(failure) => (None, vec![failure]),
        };
        if failures.is_empty() {
            tally.count("Handled", None, 1.0);
            return Ok(());
        }
        self.on_failure
            .settle(item, event.as_deref(), failures, tally)
            .await
    }
}

impl Handling {
    /// The event with what the invocation knows of it: its message, its deadline.
    fn prepare(&self, mut event: Event, item: &Item, bounds: Bounds) -> Event {
        event.message_id = Some(item.message_id.clone());
        event.deadline = bounds.start_by;
        event.received = Some(Arc::new(Received {
            attributes: item.attributes.clone(),
            group_id: item.group.clone(),
            deduplication_id: item.deduplication_id.clone(),
            pointer: (item.body != event.body).then(|| item.body.clone()),
        }));
        event
    }

    /// Runs the handlers; the failures, none when every handler took it.
    async fn route(&self, event: Arc<Event>, tally: &Tally) -> Vec<HandlerError> {
        if let Some(age) = event
            .received_at
            .and_then(|t| SystemTime::now().duration_since(t).ok())
        {
            tally.time("EventAge", None, age.as_millis() as f64);
        }
        let router = match self.routes.current().await {
            Ok(router) => router,
            Err(reason) => {
                let kind = FailureKind::Transient;
                return vec![HandlerError::of_message("no_routes", kind, reason)];
            }
        };
        self.publish(&router).await;
        let change = event.change.clone();
        let (outcome, runs) = router
            .dispatch_timed(event.clone(), self.ledger.clone())
            .await;
        for run in &runs {
            let by = Some(("Destination", run.handler.as_str()));
            // A skip (done before) is none of these: nothing was sent or held back.
            let (metric, sent) = match run.result {
                Ok(Ran::Handled) => ("Forwarded", true),
                Ok(Ran::Skipped) => continue,
                Err(FailureKind::Deferred) => ("Deferred", false),
                Err(_) => ("ForwardFailed", true),
            };
            tally.count(metric, by, 1.0);
            if sent {
                tally.time("DestinationLatency", by, run.elapsed.as_secs_f64() * 1000.0);
            }
            if run.unrecorded {
                tally.count("MarkFailed", Some(("Mark", "complete")), 1.0);
            }
        }
        if let (Outcome::Unrouted | Outcome::Done { .. }, Some(change)) = (&outcome, &change)
            && self.needs_seen_mark(&router, &event, &runs)
        {
            mark_seen(&*self.ledger, event.deadline, &event.id, change, tally).await;
        }
        match outcome {
            Outcome::Unrouted => {
                info!(id = %event.id, event = %event.event_name, "unrouted: no handler matches");
                tally.count("Unrouted", None, 1.0);
                Vec::new()
            }
            Outcome::Done { .. } => {
                info!(id = %event.id, event = %event.event_name, "delivered");
                Vec::new()
            }
            Outcome::Failed(failures) => failures,
        }
    }

    /// Whether a change every handler is done with needs its seen mark for reconciliation:
    /// only where some handler its name selects has no record of it (its filter skipped
    /// it, another delivery of its burst stood for it, its done mark was lost), or where
    /// the handlers in force are not published: otherwise reconciliation reads the
    /// handlers' own records, and the mark would be a table write per event for nothing.
    fn needs_seen_mark(
        &self,
        router: &Arc<Router>,
        event: &Event,
        runs: &[super::router::Run],
    ) -> bool {
        if !self.is_published(router) {
            return true;
        }
        let recorded = runs
            .iter()
            .filter(|r| r.result.is_ok() && !r.unrecorded)
            .count();
        recorded < router.matching(&event.event_name).len()
    }

    /// Whether `router`'s handlers are the ones published to the ledger.
    fn is_published(&self, router: &Arc<Router>) -> bool {
        self.published
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .as_ref()
            .is_some_and(|p| Arc::ptr_eq(p, router))
    }

    /// Tells the ledger which handlers are in force, once per router (at the first message,
    /// and when stored rules change): reconciliation reads it to consult their records.
    async fn publish(&self, router: &Arc<Router>) {
        let fresh = {
            let mut published = self
                .published
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let fresh = published.as_ref().is_none_or(|p| !Arc::ptr_eq(p, router));
            if fresh {
                *published = Some(Arc::clone(router));
            }
            fresh
        };
        if fresh && let Err(e) = self.ledger.routes(&router.selectors()).await {
            // Reconciliation relies on seen marks alone meanwhile; the next message tries again.
            warn!(error = %e, "the handlers in force were not published for reconciliation");
            *self
                .published
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = None;
        }
    }

    /// The event a message holds, or why it cannot be read.
    async fn read(&self, body: &str) -> Result<Event, HandlerError> {
        let permanent = FailureKind::Permanent;
        let check = match Event::parse(body.to_owned()) {
            Ok(Queued::Event(event)) => return Ok(*event),
            Ok(Queued::Claim(check)) => check,
            Err(e @ EventError::UnknownVersion(_)) => {
                return Err(HandlerError::of_message(
                    "unknown_version",
                    permanent,
                    e.to_string(),
                ));
            }
            Err(e) => {
                return Err(HandlerError::of_message(
                    "unreadable",
                    permanent,
                    e.to_string(),
                ));
            }
        };
        let Some(claims) = &self.claims else {
            let why = "a claim check, and no S3 client to read it".to_owned();
            return Err(HandlerError::of_message(
                "claim_check",
                FailureKind::Transient,
                why,
            ));
        };
        let bytes = claims.get(&check.bucket, &check.key).await.map_err(|e| {
            let kind = if e.is_transient() {
                FailureKind::Transient
            } else {
                permanent
            };
            let why = format!("the stored envelope could not be read: {}", e.reason());
            HandlerError::of_message("claim_check", kind, why)
        })?;
        Event::from_stored(bytes, &check)
            .map_err(|e| HandlerError::of_message("claim_check", permanent, e.to_string()))
    }
}
