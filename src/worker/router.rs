//! The router: handlers registered on event-name patterns, run for each event that matches,
//! each at most once per event when an idempotency ledger is given.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use thiserror::Error;
use tokio::task::JoinSet;
use tracing::{Instrument, warn};

use super::event::Event;
use super::idempotency::{Begin, Ledger};
use super::route::{Pattern, PatternError};

/// Why a handler did not take an event. `retry_after` asks for the message to come back no
/// sooner than that (a destination's `Retry-After`, say).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandlerError {
    pub reason: String,
    pub retry_after: Option<Duration>,
}

impl HandlerError {
    pub fn new(reason: impl Into<String>) -> Self {
        Self {
            reason: reason.into(),
            retry_after: None,
        }
    }

    pub fn retry_after(mut self, delay: Duration) -> Self {
        self.retry_after = Some(delay);
        self
    }
}

pub type HandlerFuture = Pin<Box<dyn Future<Output = Result<(), HandlerError>> + Send>>;
type Handle = Arc<dyn Fn(Arc<Event>) -> HandlerFuture + Send + Sync>;

#[derive(Clone)]
struct Route {
    name: String,
    patterns: Vec<Pattern>,
    handle: Handle,
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum RouteError {
    #[error(transparent)]
    Pattern(#[from] PatternError),
    #[error("a handler named {0:?} is registered already (names key idempotency)")]
    DuplicateName(String),
    #[error("a handler name must be 1 to 100 characters without `#`")]
    BadName,
    #[error("handler {0:?} has no pattern")]
    NoPattern(String),
}

/// Handlers and the patterns they listen to. Cheap to clone.
#[derive(Clone, Default)]
pub struct Router {
    routes: Vec<Route>,
}

/// What became of one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// No handler listens to this event.
    Unrouted,
    /// Every matching handler took it; `skipped` of them had done so before.
    Done { handled: usize, skipped: usize },
    /// At least one handler failed (by name); the others may have succeeded.
    Failed(Vec<(String, HandlerError)>),
}

impl Router {
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers `handler` under `name` for events matching any of `patterns` (`person.created`,
    /// `person.*`, `*.deleted`, `*`). The name keys idempotency: keep it stable.
    pub fn on<F, Fut>(
        mut self,
        name: &str,
        patterns: &[&str],
        handler: F,
    ) -> Result<Self, RouteError>
    where
        F: Fn(Arc<Event>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), HandlerError>> + Send + 'static,
    {
        if name.is_empty() || name.len() > 100 || name.contains('#') {
            return Err(RouteError::BadName);
        }
        if self.routes.iter().any(|r| r.name == name) {
            return Err(RouteError::DuplicateName(name.to_owned()));
        }
        if patterns.is_empty() {
            return Err(RouteError::NoPattern(name.to_owned()));
        }
        let patterns = patterns
            .iter()
            .map(|p| Pattern::parse(p))
            .collect::<Result<Vec<_>, _>>()?;
        let handle: Handle = Arc::new(move |event| Box::pin(handler(event)));
        self.routes.push(Route {
            name: name.to_owned(),
            patterns,
            handle,
        });
        Ok(self)
    }

    /// The names of the handlers `event_name` goes to.
    pub fn matching(&self, event_name: &str) -> Vec<&str> {
        self.routes_for(event_name)
            .into_iter()
            .map(|r| r.name.as_str())
            .collect()
    }

    fn routes_for(&self, event_name: &str) -> Vec<&Route> {
        self.routes
            .iter()
            .filter(|r| r.patterns.iter().any(|p| p.matches(event_name)))
            .collect()
    }

    /// Runs every matching handler, concurrently, each at most once per event as far as
    /// `ledger` can tell.
    pub async fn dispatch<L: Ledger>(&self, event: Arc<Event>, ledger: Arc<L>) -> Outcome {
        let routes: Vec<Route> = self
            .routes_for(&event.event_name)
            .into_iter()
            .cloned()
            .collect();
        if routes.is_empty() {
            return Outcome::Unrouted;
        }
        let mut runs = JoinSet::new();
        let mut names = std::collections::HashMap::new();
        for route in routes {
            let name = route.name.clone();
            let (event, ledger) = (event.clone(), ledger.clone());
            // In the invocation's span: the handler's lines carry its request id.
            let run = runs.spawn(once(route, event, ledger).in_current_span());
            names.insert(run.id(), name);
        }
        let (mut handled, mut skipped, mut failed) = (0, 0, Vec::new());
        while let Some(joined) = runs.join_next_with_id().await {
            let (id, result) = match joined {
                Ok((id, result)) => (id, result),
                Err(e) => {
                    let why = if e.is_panic() {
                        "the handler panicked"
                    } else {
                        "the handler was cancelled"
                    };
                    (e.id(), Err(HandlerError::new(why)))
                }
            };
            let name = names.remove(&id).unwrap_or_default();
            match result {
                Ok(Ran::Handled) => handled += 1,
                Ok(Ran::Skipped) => skipped += 1,
                Err(e) => failed.push((name, e)),
            }
        }
        if failed.is_empty() {
            Outcome::Done { handled, skipped }
        } else {
            failed.sort_by(|a, b| a.0.cmp(&b.0));
            Outcome::Failed(failed)
        }
    }
}

enum Ran {
    Handled,
    Skipped,
}

async fn once<L: Ledger>(
    route: Route,
    event: Arc<Event>,
    ledger: Arc<L>,
) -> Result<Ran, HandlerError> {
    // Keyed on the record change where the envelope shows one, so that a change delivered
    // by a webhook and found again by reconciliation runs each handler once.
    let key = format!(
        "{}#{}",
        event.change.as_deref().unwrap_or(&event.id),
        route.name
    );
    match ledger.begin(&key).await {
        Ok(Begin::Proceed) => {}
        Ok(Begin::Done) => return Ok(Ran::Skipped),
        Ok(Begin::Busy(left)) => {
            return Err(
                HandlerError::new("another worker is handling this event").retry_after(left)
            );
        }
        Err(e) => return Err(HandlerError::new(format!("idempotency table: {e}"))),
    }
    match (route.handle)(event).await {
        Ok(()) => {
            if let Err(e) = ledger.complete(&key).await {
                // It ran; only a later redelivery (after the in-progress expiry) could repeat it.
                warn!(key = %key, error = %e, "handled, but not recorded as done");
            }
            Ok(Ran::Handled)
        }
        Err(failure) => {
            if let Err(e) = ledger.release(&key).await {
                warn!(key = %key, error = %e, "failed, and its in-progress mark stays until it expires");
            }
            Err(failure)
        }
    }
}
