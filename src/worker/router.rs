//! The router: handlers registered on event-name patterns, run for each event that matches,
//! each at most once per event when an idempotency ledger is given.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use thiserror::Error;
use tokio::task::JoinSet;
use tracing::{Instrument, warn};

use super::collapse::{Collapse, Step};
use super::error::{FailureKind, HandlerError};
use super::event::Event;
use super::filter::Filter;
use super::guard::Gate;
use super::idempotency::{self, Begin, Ledger, Mode};
use super::patterns::{Pattern, PatternError};
use super::previous::Previous;

pub type HandlerFuture = Pin<Box<dyn Future<Output = Result<(), HandlerError>> + Send>>;
type Handle = Arc<dyn Fn(Arc<Event>) -> HandlerFuture + Send + Sync>;

#[derive(Clone)]
struct Route {
    name: String,
    patterns: Vec<Pattern>,
    handle: Handle,
    /// What the envelope must also hold, past its name.
    filter: Option<Arc<Filter>>,
    /// The destination's breaker and pace, asked before anything else.
    gate: Option<Arc<Gate>>,
    /// `includePrevious`: the record's state, kept and told before the filter is asked.
    previous: Option<Previous>,
    /// `collapseSeconds`: a record's burst of changes, held and sent once.
    collapse: Option<Collapse>,
    /// How its sends are guarded in the ledger.
    mode: Mode,
}

/// Which events a handler takes: event-name patterns (`person.*`), and, optionally, a
/// content filter (an EventBridge event pattern over the envelope), as a rule's `events`
/// and `filter` say; with `includePrevious`, the filter sees `previous` too.
#[derive(Clone, Default)]
pub struct Selection {
    patterns: Vec<String>,
    filter: Option<Filter>,
    previous: Option<Previous>,
    collapse: Option<Collapse>,
    mode: Mode,
}

impl Selection {
    pub fn events<S: AsRef<str>>(patterns: &[S]) -> Self {
        Self {
            patterns: patterns.iter().map(|p| p.as_ref().to_owned()).collect(),
            filter: None,
            previous: None,
            collapse: None,
            mode: Mode::Strict,
        }
    }

    /// How this handler's sends are guarded in the idempotency ledger: `Strict` unless
    /// said (see `Mode`). `IDEMPOTENCY_MODE=strict` or `lean` overrides it.
    pub fn mode(mut self, mode: Mode) -> Self {
        self.mode = mode;
        self
    }

    /// A record's changes this handler takes within the window of each other are held, and
    /// the latest is given once, standing for them all (`collapsed`); the others are done.
    pub fn collapse(mut self, collapse: Collapse) -> Self {
        self.collapse = Some(collapse);
        self
    }

    /// Each event this handler takes is told, and its filter sees, the values its updated
    /// fields had before (`previous`), from the record's state that `previous` keeps.
    pub fn previous(mut self, previous: Previous) -> Self {
        self.previous = Some(previous);
        self
    }

    /// Only events whose envelope also matches `filter`.
    pub fn filter(mut self, filter: Filter) -> Self {
        self.filter = Some(filter);
        self
    }
}

impl<S: AsRef<str>> From<&[S]> for Selection {
    fn from(patterns: &[S]) -> Self {
        Self::events(patterns)
    }
}

impl<S: AsRef<str>, const N: usize> From<&[S; N]> for Selection {
    fn from(patterns: &[S; N]) -> Self {
        Self::events(patterns)
    }
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
    #[error("rule {name:?} needs {service}, and the worker has no client for it")]
    NoClient { name: String, service: String },
    #[error(
        "rule {0:?}: collapseSeconds cannot work on a FIFO queue (a held message holds its whole group); use a standard queue or leave it out"
    )]
    CollapseOnFifo(String),
}

/// Handlers and the patterns they listen to. Cheap to clone.
#[derive(Clone, Default)]
pub struct Router {
    routes: Vec<Route>,
}

/// One handler's run on one event, for the metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    pub handler: String,
    /// What it came to: taken or skipped (done before), or the kind of its failure.
    pub result: Result<Ran, FailureKind>,
    pub elapsed: Duration,
    /// It ran, but the ledger did not record it done, even after retries: a redelivery
    /// after the in-progress mark expires could repeat it.
    pub unrecorded: bool,
}

/// What became of one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// No handler listens to this event.
    Unrouted,
    /// Every matching handler took it; `skipped` of them had done so before.
    Done { handled: usize, skipped: usize },
    /// At least one handler failed (each failure names it); the others may have
    /// succeeded.
    Failed(Vec<HandlerError>),
}

impl Router {
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers `handler` under `name` for events matching any of the patterns
    /// (`person.created`, `person.*`, `*.deleted`, `*`) and, given a `Selection` with one,
    /// the content filter. The name keys idempotency: keep it stable.
    pub fn on<F, Fut>(
        self,
        name: &str,
        selection: impl Into<Selection>,
        handler: F,
    ) -> Result<Self, RouteError>
    where
        F: Fn(Arc<Event>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), HandlerError>> + Send + 'static,
    {
        self.on_gated(name, selection, None, handler)
    }

    /// `on`, with a destination's breaker and pace in front of the handler.
    pub fn on_gated<F, Fut>(
        mut self,
        name: &str,
        selection: impl Into<Selection>,
        gate: Option<Arc<Gate>>,
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
        let selection = selection.into();
        if selection.patterns.is_empty() {
            return Err(RouteError::NoPattern(name.to_owned()));
        }
        let patterns = selection
            .patterns
            .iter()
            .map(|p| Pattern::parse(p))
            .collect::<Result<Vec<_>, _>>()?;
        let handle: Handle = Arc::new(move |event| Box::pin(handler(event)));
        self.routes.push(Route {
            name: name.to_owned(),
            patterns,
            filter: selection.filter.map(Arc::new),
            handle,
            gate,
            previous: selection.previous,
            collapse: selection.collapse,
            mode: selection.mode,
        });
        Ok(self)
    }

    /// Every handler registered so far guarded by `mode` (`IDEMPOTENCY_MODE=strict` or
    /// `lean`), whatever its `Selection` said.
    pub fn with_mode(mut self, mode: Mode) -> Self {
        for route in &mut self.routes {
            route.mode = mode;
        }
        self
    }

    /// Each handler's name and event-name patterns (as `*.*`, `person.*`...), for what
    /// reconciliation must know of them.
    pub fn selectors(&self) -> Vec<(String, Vec<String>)> {
        self.routes
            .iter()
            .map(|r| {
                (
                    r.name.clone(),
                    r.patterns.iter().map(ToString::to_string).collect(),
                )
            })
            .collect()
    }

    /// The names of the handlers whose patterns `event_name` matches (content filters
    /// aside: they need the event).
    pub fn matching(&self, event_name: &str) -> Vec<&str> {
        self.routes
            .iter()
            .filter(|r| r.patterns.iter().any(|p| p.matches(event_name)))
            .map(|r| r.name.as_str())
            .collect()
    }

    /// The handlers `event` goes to, each with the event as it sees it: its name matches a
    /// pattern, and its envelope (with `previous`, or standing for its burst, where the
    /// handler asks for it) the filter, if there is one (an envelope that is not JSON
    /// matches no filter). And the handlers that do not take it now: held with its
    /// record's burst, done (another delivery stands for it), or whose record state or
    /// burst could not be read or kept.
    async fn routes_for<L: Ledger + ?Sized>(&self, event: &Arc<Event>, ledger: &L) -> Chosen {
        let mut chosen = Chosen::default();
        for route in &self.routes {
            if !route.patterns.iter().any(|p| p.matches(&event.event_name)) {
                continue;
            }
            let seen = match &route.previous {
                None => event.clone(),
                Some(previous) => match previous.apply(event).await {
                    Ok(seen) => seen,
                    Err(e) => {
                        warn!(handler = %route.name, error = %e, "the record's state could not be read or kept");
                        chosen.unread.push(route.name.clone());
                        continue;
                    }
                },
            };
            let seen = match &route.collapse {
                None => seen,
                Some(collapse) => match collapse.step(&seen, ledger).await {
                    Ok(Step::Send(seen)) => seen,
                    Ok(Step::Hold(wait)) => {
                        chosen.held.push((route.name.clone(), wait));
                        continue;
                    }
                    Ok(Step::Obsolete(key)) => {
                        chosen.obsolete.push(key);
                        continue;
                    }
                    Err(e) => {
                        warn!(handler = %route.name, error = %e, "the record's burst could not be read or kept");
                        chosen.unread.push(route.name.clone());
                        continue;
                    }
                },
            };
            let selected = route
                .filter
                .as_ref()
                .is_none_or(|f| seen.json().is_some_and(|json| f.matches(json)));
            if selected {
                chosen.send.push((route.clone(), seen));
            }
        }
        chosen
    }

    /// Runs every matching handler, concurrently, each at most once per event as far as
    /// `ledger` can tell. Also says how each run went, for the metrics.
    pub async fn dispatch<L: Ledger + ?Sized>(&self, event: Arc<Event>, ledger: Arc<L>) -> Outcome {
        self.dispatch_timed(event, ledger).await.0
    }

    /// `dispatch`, with each handler's run.
    pub async fn dispatch_timed<L: Ledger + ?Sized>(
        &self,
        event: Arc<Event>,
        ledger: Arc<L>,
    ) -> (Outcome, Vec<Run>) {
        let Chosen {
            mut send,
            unread,
            held,
            obsolete,
        } = self.routes_for(&event, &*ledger).await;
        if send.is_empty() && unread.is_empty() && held.is_empty() && obsolete.is_empty() {
            return (Outcome::Unrouted, Vec::new());
        }
        // A lone handler runs on this task, its panic caught as a task's would be.
        let lone = if send.len() == 1 { send.pop() } else { None };
        let mut runs = JoinSet::new();
        let mut names = std::collections::HashMap::new();
        for (route, event) in send {
            let name = route.name.clone();
            let ledger = ledger.clone();
            // In the invocation's span: the handler's lines carry its request id.
            let run = runs.spawn(once(route, event, ledger).in_current_span());
            names.insert(run.id(), name);
        }
        let (mut handled, mut skipped) = (0, 0);
        let mut timings = Vec::new();
        let not_run = |handler: String, result| Run {
            handler,
            result,
            elapsed: Duration::ZERO,
            unrecorded: false,
        };
        // Retried: the state is read again, and the filter asked again, next time.
        let mut failed: Vec<HandlerError> = Vec::new();
        for name in unread {
            let why = "the record's state or burst could not be read or kept";
            failed.push(HandlerError::new(why).of_handler(&name));
            timings.push(not_run(name, Err(FailureKind::Transient)));
        }
        for (name, wait) in held {
            let why = "held until its record's burst of changes is over";
            failed.push(HandlerError::deferred(why, wait).of_handler(&name));
            timings.push(not_run(name, Err(FailureKind::Deferred)));
        }
        // Done: the ledger says so, so that reconciliation does not queue it again.
        for key in obsolete {
            skipped += 1;
            if let Some(key) = key
                && let Err(e) = idempotency::mark(event.deadline, || ledger.complete(&key)).await
            {
                warn!(key = %key, error = %e, "made obsolete by its burst, but not recorded as done");
            }
        }
        let mut take = |name: String, (result, elapsed, unrecorded): HandlerRun| {
            timings.push(Run {
                handler: name.clone(),
                result: result.as_ref().map(|ran| *ran).map_err(|e| e.kind),
                elapsed,
                unrecorded,
            });
            match result {
                Ok(Ran::Handled) => handled += 1,
                Ok(Ran::Skipped) => skipped += 1,
                Err(e) => failed.push(e.of_handler(&name)),
            }
        };
        let panicked = || {
            (
                Err(HandlerError::new("the handler panicked")),
                Duration::ZERO,
                false,
            )
        };
        if let Some((route, event)) = lone {
            let name = route.name.clone();
            let ran = crate::worker::batch::caught(once(route, event, ledger.clone())).await;
            take(name, ran.unwrap_or_else(panicked));
        }
        while let Some(joined) = runs.join_next_with_id().await {
            let (id, ran) = match joined {
                Ok((id, ran)) => (id, ran),
                Err(e) if e.is_panic() => (e.id(), panicked()),
                Err(e) => {
                    let why = "the handler was cancelled";
                    (e.id(), (Err(HandlerError::new(why)), Duration::ZERO, false))
                }
            };
            take(names.remove(&id).unwrap_or_default(), ran);
        }
        let outcome = if failed.is_empty() {
            Outcome::Done { handled, skipped }
        } else {
            failed.sort_by(|a, b| a.handler.cmp(&b.handler));
            Outcome::Failed(failed)
        };
        (outcome, timings)
    }
}

/// What `routes_for` found for one event, handler by handler.
#[derive(Default)]
struct Chosen {
    /// Sent, each with the event as its handler sees it.
    send: Vec<(Route, Arc<Event>)>,
    /// Its record's state or burst could not be read or kept.
    unread: Vec<String>,
    /// Held with its record's burst, this long.
    held: Vec<(String, Duration)>,
    /// Done: another delivery of its burst stands for it; the ledger key to mark, if any.
    obsolete: Vec<Option<String>>,
}

/// A handler that took an event: it ran, or had done so before.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ran {
    Handled,
    Skipped,
}

/// The ledger key of `handler` for `event`: keyed on the record change where the envelope
/// shows one, so that a change delivered by a webhook and found again by reconciliation
/// runs each handler once.
pub fn ledger_key(event: &Event, handler: &str) -> String {
    idempotency::key(event.change.as_deref().unwrap_or(&event.id), handler)
}

/// What one handler did: its result, how long it ran, and whether its success went
/// unrecorded.
type HandlerRun = (Result<Ran, HandlerError>, Duration, bool);

async fn once<L: Ledger + ?Sized>(route: Route, event: Arc<Event>, ledger: Arc<L>) -> HandlerRun {
    let early = |result| (result, Duration::ZERO, false);
    // Before the ledger: a held-back send costs no table write.
    let pass = match &route.gate {
        Some(gate) => match gate.admit(event.time_left()).await {
            Ok(pass) => Some(pass),
            Err(deferred) => return early(Err(deferred)),
        },
        None => None,
    };
    let key = ledger_key(&event, &route.name);
    let not_run = match ledger
        .begin(&key, event.message_id.as_deref(), route.mode)
        .await
    {
        Ok(Begin::Proceed) => None,
        Ok(Begin::Done) => Some(Ok(Ran::Skipped)),
        Ok(Begin::Busy(left)) => Some(Err(HandlerError::deferred(
            "another worker is handling this event",
            left,
        ))),
        Err(e) => Some(Err(HandlerError::new(format!("idempotency table: {e}")))),
    };
    if let Some(result) = not_run {
        // A probe this send held goes back: nothing was sent to settle it.
        if let (Some(gate), Some(pass)) = (&route.gate, pass) {
            gate.release(pass).await;
        }
        return early(result);
    }
    // Dropped when this run ends, however it ends: a cancelled send lets its key go.
    let _sending = Sending {
        ledger: &*ledger,
        key: &key,
    };
    let started = std::time::Instant::now();
    let result = (route.handle)(event.clone()).await;
    let elapsed = started.elapsed();
    if let (Some(gate), Some(pass)) = (&route.gate, pass) {
        gate.settle(pass, &result).await;
    }
    match result {
        Ok(()) => {
            let recorded = idempotency::mark(event.deadline, || ledger.complete(&key)).await;
            if let Err(e) = &recorded {
                // It ran; only a later redelivery (after the in-progress expiry) could repeat it.
                warn!(key = %key, error = %e, "handled, but not recorded as done");
            }
            (Ok(Ran::Handled), elapsed, recorded.is_err())
        }
        Err(mut failure) => {
            match ledger.failed(&key, route.mode).await {
                Ok(attempts) => failure.attempts = attempts,
                Err(e) => {
                    warn!(key = %key, error = %e, "failed, and its in-progress mark stays until it expires")
                }
            }
            (Err(failure), elapsed, false)
        }
    }
}

/// A send begun: the ledger is told when it ends (see `Ledger::let_go`).
struct Sending<'a, L: Ledger + ?Sized> {
    ledger: &'a L,
    key: &'a str,
}

impl<L: Ledger + ?Sized> Drop for Sending<'_, L> {
    fn drop(&mut self) {
        self.ledger.let_go(self.key);
    }
}
