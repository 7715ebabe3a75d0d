//! One batch of queue messages: handled concurrently (bounded) on a standard queue; on a
//! FIFO queue in order within each message group, groups concurrently, and once a message
//! of a group fails, the later ones of that group are reported failed without being
//! handled, so that a record's events never overtake each other.
//!
//! Bounded in time too: no message starts after `start_by`, and at `stop_at` whatever is
//! still running is given up and reported failed, so the invocation always answers.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::Instrument;

use super::error::HandlerError;
use crate::dead_letter::Attribute;
use crate::metrics::Tally;

/// A message as the batch logic needs it.
#[derive(Debug, Clone, Default)]
pub struct Item {
    pub message_id: String,
    /// `MessageGroupId` on FIFO queues.
    pub group: Option<String>,
    /// `MessageDeduplicationId` on FIFO queues.
    pub deduplication_id: Option<String>,
    pub body: String,
    /// `ApproximateReceiveCount`.
    pub receives: u32,
    /// `SentTimestamp`: when it was first queued (epoch milliseconds).
    pub sent_at_ms: Option<u64>,
    pub attributes: Vec<Attribute>,
}

/// A message to report failed (SQS delivers it again), and why: its `retry_after` is
/// when it should come back (None: as soon as SQS makes it visible).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemFailure {
    pub message_id: String,
    pub failure: HandlerError,
}

impl ItemFailure {
    /// Not handled, for a reason of the batch's own (no time, its group): back at once.
    fn not_handled(message_id: &str, reason: &str) -> Self {
        Self {
            message_id: message_id.to_owned(),
            failure: HandlerError::deferred(reason, Duration::ZERO),
        }
    }
}

/// When a batch must be done.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    /// No message starts after this; it is also what forwards are cut to.
    pub start_by: Option<Instant>,
    /// Whatever is still running then is given up.
    pub stop_at: Option<Instant>,
}

/// How one message is handled; an error holds why and when to retry.
pub trait Process: Send + Sync + 'static {
    fn process(
        &self,
        item: &Item,
        bounds: Bounds,
        tally: &Tally,
    ) -> impl Future<Output = Result<(), HandlerError>> + Send;
}

/// Handles `items` and returns those to report failed, in the order given.
pub async fn run<P: Process>(
    process: Arc<P>,
    items: Vec<Item>,
    fifo: bool,
    concurrency: usize,
    bounds: Bounds,
    tally: Arc<Tally>,
) -> Vec<ItemFailure> {
    let order: HashMap<String, usize> = items
        .iter()
        .enumerate()
        .map(|(i, item)| (item.message_id.clone(), i))
        .collect();
    let all: Vec<String> = items.iter().map(|i| i.message_id.clone()).collect();
    // Each unit runs its messages one after the other: a FIFO group, or a single message.
    let mut units: Vec<Vec<Item>> = if fifo {
        let mut groups: Vec<(Option<String>, Vec<Item>)> = Vec::new();
        for item in items {
            match groups.iter_mut().find(|(g, _)| *g == item.group) {
                Some((_, members)) => members.push(item),
                None => groups.push((item.group.clone(), vec![item])),
            }
        }
        groups.into_iter().map(|(_, members)| members).collect()
    } else {
        items.into_iter().map(|item| vec![item]).collect()
    };
    // What each message came to, as it happens: at `stop_at`, what has none failed.
    let settled: Settled = Arc::default();
    let permits = Arc::new(Semaphore::new(concurrency.max(1)));
    let unit_run = |unit: Vec<Item>| {
        let (process, permits, settled, tally) = (
            process.clone(),
            permits.clone(),
            settled.clone(),
            tally.clone(),
        );
        async move {
            let _permit = permits.acquire_owned().await;
            run_unit(&*process, unit, bounds, &tally, &settled).await;
        }
        .in_current_span()
    };
    if units.len() == 1
        && let Some(unit) = units.pop()
    {
        // A lone unit (a one-message batch, one FIFO group) runs here, not as a task of
        // its own: the same outcome, its panic caught all the same, less work per batch.
        // Boxed: inlined, the whole handling's future nests too deep for the compiler's
        // layout queries in the worker's `main`.
        let lone = Box::pin(caught(unit_run(unit)));
        match bounds.stop_at {
            Some(at) => drop(tokio::time::timeout_at(at, lone).await),
            None => drop(lone.await),
        }
    } else {
        let mut units_running = JoinSet::new();
        for unit in units {
            units_running.spawn(unit_run(unit));
        }
        loop {
            let next = match bounds.stop_at {
                Some(at) => match tokio::time::timeout_at(at, units_running.join_next()).await {
                    Ok(next) => next,
                    Err(_) => {
                        units_running.abort_all();
                        break;
                    }
                },
                None => units_running.join_next().await,
            };
            if next.is_none() {
                break;
            }
            // A panic leaves its messages unsettled: they are reported failed below.
        }
    }
    let settled = std::mem::take(&mut *settled.lock().unwrap_or_else(PoisonError::into_inner));
    let mut failed: Vec<ItemFailure> = all
        .into_iter()
        .filter_map(|id| match settled.get(&id) {
            Some(None) => None,
            Some(Some(failure)) => Some(failure.clone()),
            None => Some(ItemFailure {
                failure: HandlerError::new(
                    "not finished: the handling panicked or ran out of time",
                )
                .retry_after(Duration::ZERO),
                message_id: id,
            }),
        })
        .collect();
    failed.sort_by_key(|f| order.get(&f.message_id).copied().unwrap_or(usize::MAX));
    failed
}

/// What each message of a batch came to, by message id, as it happens.
type Settled = Arc<Mutex<HashMap<String, Option<ItemFailure>>>>;

/// Runs one unit's messages one after the other, settling each; after a failure the rest
/// of the unit (its FIFO group) is not handled.
async fn run_unit<P: Process>(
    process: &P,
    unit: Vec<Item>,
    bounds: Bounds,
    tally: &Tally,
    settled: &Settled,
) {
    let settle = |id: &str, failure: Option<ItemFailure>| {
        settled
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id.to_owned(), failure);
    };
    let mut items = unit.into_iter();
    for item in items.by_ref() {
        if bounds.start_by.is_some_and(|t| Instant::now() >= t) {
            settle(
                &item.message_id,
                Some(ItemFailure::not_handled(
                    &item.message_id,
                    "not started: no time left in this invocation",
                )),
            );
            break;
        }
        match process.process(&item, bounds, tally).await {
            Ok(()) => settle(&item.message_id, None),
            Err(failure) => {
                settle(
                    &item.message_id,
                    Some(ItemFailure {
                        message_id: item.message_id.clone(),
                        failure,
                    }),
                );
                break;
            }
        }
    }
    // What follows a failure in its group waits for it: visible again at once, it is
    // still held back by the queue while the failed one is in flight, and comes after it.
    for item in items {
        settle(
            &item.message_id,
            Some(ItemFailure::not_handled(
                &item.message_id,
                "an earlier message of its group failed",
            )),
        );
    }
}

/// Runs `work` on the current task, its panic caught: `None` if it panicked. What a task
/// of its own gives (a panic stays with its work), without spawning one.
pub(crate) async fn caught<F: Future>(work: F) -> Option<F::Output> {
    let mut work = std::pin::pin!(work);
    std::future::poll_fn(move |cx| {
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| work.as_mut().poll(cx))) {
            Ok(std::task::Poll::Ready(output)) => std::task::Poll::Ready(Some(output)),
            Ok(std::task::Poll::Pending) => std::task::Poll::Pending,
            Err(_) => std::task::Poll::Ready(None),
        }
    })
    .await
}
