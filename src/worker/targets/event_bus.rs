//! EventBridge targets: `PutEvents` with `Source` the rule's (`twenty` by default),
//! `DetailType` the event's name and `Detail` the envelope. The messages of a batch, handled
//! at once, are gathered into calls of at most 10 entries and 256 KiB; a failed entry
//! fails only its message.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde_json::{Map, Value};
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::{
    Clients, DeliverFuture, Delivery, Kind, Target, TargetSpec, failed, is_arn, text, within,
};
use crate::adapter::{AdapterError, AdapterFuture};

/// `eventBusName`, with the events' `source`.
pub(crate) static KIND: Kind = Kind {
    key: "eventBusName",
    fields: &["source"],
    parse,
};

/// EventBridge `Source` when a rule gives none.
pub(crate) const DEFAULT_SOURCE: &str = "twenty";

/// A rule's bus (a name or an ARN), and the `Source` its events carry.
#[derive(Debug, Clone)]
pub(crate) struct EventBusTarget {
    pub bus: String,
    pub source: String,
}

fn parse(map: &Map<String, Value>) -> Result<Arc<dyn TargetSpec>, String> {
    let bus = text(map, "eventBusName");
    let name_ok = !bus.is_empty()
        && bus.len() <= 256
        && bus
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-/".contains(&b));
    if !(name_ok || is_arn(bus, "events", "event-bus/")) {
        return Err("`eventBusName` must be an event bus's name or ARN".to_owned());
    }
    let source = match map.get("source") {
        None | Some(Value::Null) => DEFAULT_SOURCE.to_owned(),
        Some(Value::String(s)) if !s.is_empty() && s.len() <= 256 && !s.starts_with("aws.") => {
            s.clone()
        }
        Some(_) => {
            return Err(
                "`source` must be a string of 1 to 256 characters, not starting with `aws.`"
                    .to_owned(),
            );
        }
    };
    Ok(Arc::new(EventBusTarget {
        bus: bus.to_owned(),
        source,
    }))
}

impl TargetSpec for EventBusTarget {
    fn build(&self, clients: &Clients) -> Result<Arc<dyn Target>, &'static str> {
        Ok(Arc::new(EventBus {
            batcher: clients.get::<Batcher>().ok_or("EventBridge")?,
            bus: self.bus.clone(),
            source: self.source.clone(),
        }))
    }
}

/// `PutEvents` takes at most 10 entries, of 256 KiB in all.
pub(crate) const MAX_ENTRIES: usize = 10;
pub(crate) const MAX_CALL_BYTES: usize = 256 * 1024;
/// How long the first entry waits for others to join its call: the messages of one batch
/// are handled at once, so they arrive within it.
const LINGER: Duration = Duration::from_millis(10);

/// One event for a bus.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BusEntry {
    pub bus: String,
    pub source: String,
    pub detail_type: String,
    pub detail: String,
}

impl BusEntry {
    /// Its size as EventBridge counts it (the time takes 14 bytes).
    pub(crate) fn size(&self) -> usize {
        14 + self.bus.len() + self.source.len() + self.detail_type.len() + self.detail.len()
    }
}

/// Puts entries on buses (`crate::aws::EventBridgePublisher`).
pub(crate) trait Publisher: Send + Sync + 'static {
    /// One `PutEvents` call of at most `MAX_ENTRIES`: the call's error, or one result per
    /// entry, in order.
    fn put<'a>(
        &'a self,
        entries: &'a [BusEntry],
        timeout: Duration,
    ) -> AdapterFuture<'a, Vec<Result<(), AdapterError>>>;
}

/// An entry, when its delivery gives up on it, and where its result goes.
type Waiting = (BusEntry, Instant, oneshot::Sender<Result<(), AdapterError>>);

/// Gathers the entries of concurrent deliveries into as few calls as the limits allow.
pub(crate) struct Batcher {
    publisher: Arc<dyn Publisher>,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    waiting: Vec<Waiting>,
    /// A delivery is gathering and sending: newcomers join its next call.
    leading: bool,
}

impl Batcher {
    pub(crate) fn new(publisher: Arc<dyn Publisher>) -> Self {
        Self {
            publisher,
            state: Mutex::new(State::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Puts `entry` in the next call; its own result.
    pub(crate) async fn put(&self, entry: BusEntry, timeout: Duration) -> Result<(), AdapterError> {
        let (tx, rx) = oneshot::channel();
        let lead = {
            let mut state = self.lock();
            state.waiting.push((entry, Instant::now() + timeout, tx));
            !std::mem::replace(&mut state.leading, true)
        };
        if lead {
            tokio::time::sleep(LINGER).await;
            self.send_all().await;
        }
        rx.await
            .unwrap_or_else(|_| Err(AdapterError::Unavailable("the batch was dropped".into())))
    }

    /// Sends what is waiting, a call at a time, until nothing is.
    async fn send_all(&self) {
        loop {
            let call = {
                let mut state = self.lock();
                let call = take_call(&mut state.waiting);
                if state.waiting.is_empty() {
                    state.leading = false;
                }
                call
            };
            if call.is_empty() {
                return;
            }
            // The call lasts as long as its most urgent entry may wait, which is at least
            // half of what any other entry in it has (`take_call`).
            let timeout = call
                .iter()
                .map(|(_, d, _)| d.saturating_duration_since(Instant::now()))
                .min()
                .unwrap_or(LINGER);
            let entries: Vec<BusEntry> = call.iter().map(|(e, _, _)| e.clone()).collect();
            let results = self.publisher.put(&entries, timeout).await;
            for (i, (_, _, tx)) in call.into_iter().enumerate() {
                let result = match &results {
                    Ok(each) => each.get(i).cloned().unwrap_or_else(|| {
                        Err(AdapterError::Unavailable("no result for this entry".into()))
                    }),
                    Err(e) => Err(e.clone()),
                };
                let _ = tx.send(result);
            }
            if !self.lock().leading {
                return;
            }
        }
    }
}

/// The next call (at least one entry): the most urgent entry, and with it those that fit
/// and have at most twice its time left. A message near its deadline so never cuts the
/// call of others that have much longer: cut short, they would be retried although
/// EventBridge may have taken them, and counted against the destination.
fn take_call(waiting: &mut Vec<Waiting>) -> Vec<Waiting> {
    // Stable: entries as urgent as each other keep their order.
    waiting.sort_by_key(|(_, deadline, _)| *deadline);
    let now = Instant::now();
    let Some(first) = waiting.first().map(|(_, d, _)| *d) else {
        return Vec::new();
    };
    let latest = now + first.saturating_duration_since(now) * 2;
    let (mut count, mut bytes) = (0, 0);
    for (entry, deadline, _) in waiting.iter() {
        let size = entry.size();
        let full = count == MAX_ENTRIES || (count > 0 && bytes + size > MAX_CALL_BYTES);
        if full || (count > 0 && *deadline > latest) {
            break;
        }
        count += 1;
        bytes += size;
    }
    waiting.drain(..count).collect()
}

pub(crate) struct EventBus {
    pub batcher: Arc<Batcher>,
    pub bus: String,
    pub source: String,
}

impl Target for EventBus {
    fn deliver(&self, delivery: Delivery) -> DeliverFuture<'_> {
        Box::pin(async move {
            let event = &delivery.event;
            let room =
                MAX_CALL_BYTES - 14 - self.bus.len() - self.source.len() - event.event_name.len();
            let Some(detail) = within(&delivery, room) else {
                return Err(crate::worker::error::HandlerError::permanent(
                    "the detail is over EventBridge's 256 KiB (an envelope not queued as a claim check, or a transformed body)",
                ));
            };
            let entry = BusEntry {
                bus: self.bus.clone(),
                source: self.source.clone(),
                detail_type: event.event_name.clone(),
                detail: detail.to_owned(),
            };
            self.batcher
                .put(entry, delivery.timeout)
                .await
                .map_err(|e| failed("EventBridge", &e, delivery.retry_all_errors))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Records the calls (their size and time-out); refuses entries whose detail is "bad".
    #[derive(Default)]
    struct Recording {
        calls: Mutex<Vec<usize>>,
        timeouts: Mutex<Vec<(usize, Duration)>>,
        entries: AtomicUsize,
    }

    impl Publisher for Recording {
        fn put<'a>(
            &'a self,
            entries: &'a [BusEntry],
            timeout: Duration,
        ) -> AdapterFuture<'a, Vec<Result<(), AdapterError>>> {
            Box::pin(async move {
                self.calls.lock().unwrap().push(entries.len());
                self.timeouts.lock().unwrap().push((entries.len(), timeout));
                self.entries.fetch_add(entries.len(), Ordering::SeqCst);
                Ok(entries
                    .iter()
                    .map(|e| match e.detail.as_str() {
                        "bad" => Err(AdapterError::Refused("MalformedDetail".into())),
                        _ => Ok(()),
                    })
                    .collect())
            })
        }
    }

    fn entry(detail: &str) -> BusEntry {
        BusEntry {
            bus: "default".into(),
            source: "twenty".into(),
            detail_type: "person.created".into(),
            detail: detail.into(),
        }
    }

    #[tokio::test]
    async fn concurrent_entries_share_calls_of_ten_and_a_failed_entry_fails_alone() {
        let publisher = Arc::new(Recording::default());
        let batcher = Arc::new(Batcher::new(publisher.clone()));
        let mut runs = tokio::task::JoinSet::new();
        for i in 0..23 {
            let batcher = batcher.clone();
            let detail = if i == 7 {
                "bad".to_owned()
            } else {
                format!("{{\"n\":{i}}}")
            };
            runs.spawn(
                async move { (i, batcher.put(entry(&detail), Duration::from_secs(1)).await) },
            );
        }
        let mut failed = Vec::new();
        while let Some(joined) = runs.join_next().await {
            let (i, result) = joined.unwrap();
            if result.is_err() {
                failed.push(i);
            }
        }
        assert_eq!(failed, [7]);
        assert_eq!(publisher.entries.load(Ordering::SeqCst), 23);
        let calls = publisher.calls.lock().unwrap().clone();
        assert!(calls.iter().all(|n| *n <= MAX_ENTRIES), "{calls:?}");
        assert_eq!(calls.len(), 3, "23 entries in three calls: {calls:?}");
    }

    /// Nine messages with ten seconds left and one with 100 ms: the late one goes in a
    /// call of its own, and the others' call is not cut to its 100 ms.
    #[tokio::test]
    async fn a_message_near_its_deadline_does_not_cut_the_call_of_others() {
        let publisher = Arc::new(Recording::default());
        let batcher = Arc::new(Batcher::new(publisher.clone()));
        let mut runs = tokio::task::JoinSet::new();
        for i in 0..10 {
            let batcher = batcher.clone();
            let timeout = if i == 4 {
                Duration::from_millis(100)
            } else {
                Duration::from_secs(10)
            };
            runs.spawn(async move { batcher.put(entry(&format!("{{\"n\":{i}}}")), timeout).await });
        }
        assert!(runs.join_all().await.iter().all(Result::is_ok));
        let mut timeouts = publisher.timeouts.lock().unwrap().clone();
        timeouts.sort();
        assert_eq!(timeouts.len(), 2, "{timeouts:?}");
        assert_eq!(timeouts[0].0, 1);
        assert!(timeouts[0].1 <= Duration::from_millis(100));
        assert_eq!(timeouts[1].0, 9);
        assert!(timeouts[1].1 > Duration::from_secs(9), "{timeouts:?}");
    }

    #[test]
    fn a_call_stops_at_the_byte_limit() {
        let big = |n| {
            (
                entry(&"x".repeat(100 * 1024)),
                Instant::now() + Duration::from_secs(1),
                oneshot::channel().0,
                n,
            )
        };
        let mut waiting: Vec<Waiting> = (0..3)
            .map(|n| {
                let (e, t, tx, _) = big(n);
                (e, t, tx)
            })
            .collect();
        assert_eq!(take_call(&mut waiting).len(), 2);
        assert_eq!(take_call(&mut waiting).len(), 1);
    }
}
