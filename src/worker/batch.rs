//! One batch of queue messages: handled concurrently (bounded) on a standard queue; on a
//! FIFO queue in order within each message group, groups concurrently, and once a message
//! of a group fails, the later ones of that group are reported failed without being
//! handled, so that a record's events never overtake each other.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tracing::Instrument;

/// A message as the batch logic needs it.
#[derive(Debug, Clone)]
pub struct Item {
    pub message_id: String,
    /// `MessageGroupId` on FIFO queues.
    pub group: Option<String>,
    pub body: String,
}

/// A message to report failed (SQS delivers it again).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemFailure {
    pub message_id: String,
    pub reason: String,
    /// The earliest a retry is worth it, if a handler said so.
    pub retry_after: Option<Duration>,
}

/// How one message is handled; an error holds why and, optionally, when to retry.
pub trait Process: Send + Sync + 'static {
    fn process(
        &self,
        item: &Item,
    ) -> impl Future<Output = Result<(), (String, Option<Duration>)>> + Send;
}

/// Handles `items` and returns those to report failed, in the order given.
pub async fn run<P: Process>(
    process: Arc<P>,
    items: Vec<Item>,
    fifo: bool,
    concurrency: usize,
) -> Vec<ItemFailure> {
    let order: HashMap<String, usize> = items
        .iter()
        .enumerate()
        .map(|(i, item)| (item.message_id.clone(), i))
        .collect();
    // Each unit runs its messages one after the other: a FIFO group, or a single message.
    let units: Vec<Vec<Item>> = if fifo {
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
    let permits = Arc::new(Semaphore::new(concurrency.max(1)));
    let mut units_running = JoinSet::new();
    let mut ids_of = HashMap::new();
    for unit in units {
        let ids: Vec<String> = unit.iter().map(|i| i.message_id.clone()).collect();
        let (process, permits) = (process.clone(), permits.clone());
        let handle = units_running.spawn(
            async move {
                let _permit = permits.acquire_owned().await;
                let mut failures = Vec::new();
                let mut items = unit.into_iter();
                for item in items.by_ref() {
                    if let Err((reason, retry_after)) = process.process(&item).await {
                        failures.push(ItemFailure {
                            message_id: item.message_id,
                            reason,
                            retry_after,
                        });
                        break;
                    }
                }
                // What follows a failure in its group waits for it.
                failures.extend(items.map(|item| ItemFailure {
                    message_id: item.message_id,
                    reason: "an earlier message of its group failed".into(),
                    retry_after: None,
                }));
                failures
            }
            .in_current_span(),
        );
        ids_of.insert(handle.id(), ids);
    }
    let mut failed = Vec::new();
    while let Some(joined) = units_running.join_next_with_id().await {
        match joined {
            Ok((_, failures)) => failed.extend(failures),
            // A panic fails the whole unit: its messages come back.
            Err(e) => failed.extend(ids_of.remove(&e.id()).unwrap_or_default().into_iter().map(
                |message_id| ItemFailure {
                    message_id,
                    reason: "handling panicked".into(),
                    retry_after: None,
                },
            )),
        }
    }
    failed.sort_by_key(|f| order.get(&f.message_id).copied().unwrap_or(usize::MAX));
    failed
}
