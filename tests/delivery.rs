//! The delivery logic against a scripted transport, in paused tokio time: per-entry
//! verdicts, permanent errors, deadlines, claim checks, panics and cancellation. What SQS
//! and S3 really answer is covered against moto (`handler_sqs`, `faults`, `claim_check`).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;
use twenty_webhook::adapter::AdapterError;
use twenty_webhook::delivery::send::{ATTEMPT_TIMEOUT, MIN_ATTEMPT};
use twenty_webhook::delivery::{
    BatchReply, Consignment, Entry, EntryRefusal, FallbackSink, Pending, Transport, send_all,
};
use twenty_webhook::envelope::{Claim, Message};
use twenty_webhook::fallback;
use twenty_webhook::ingest::dispatch::Dispatcher;
use twenty_webhook::ingest::inflight::InFlight;
use twenty_webhook::retry::Backoff;

fn message(id: &str) -> Message {
    Message {
        id: id.into(),
        body: format!(r#"{{"version":1,"id":"{id}"}}"#),
        attributes: vec![("eventName", "person.created".into())],
        fifo: None,
        claim: None,
    }
}

fn claimed(id: &str) -> Message {
    Message {
        claim: Some(Claim {
            bucket: "b".into(),
            key: format!("twenty-webhook/{id}.json"),
            envelope: format!(r#"{{"version":1,"id":"{id}","record":{{}}}}"#),
        }),
        ..message(id)
    }
}

/// What the scripted transport does with a call.
enum Answer {
    Reply(BatchReply),
    Fail(AdapterError),
    /// Never answers (the attempt timeout ends it).
    Hang,
    Panic,
}

fn all_ok(entries: &[Entry<'_>]) -> Answer {
    Answer::Reply(BatchReply {
        successful: entries.iter().map(|e| e.id.to_owned()).collect(),
        failed: vec![],
    })
}

type Script = Box<dyn Fn(usize, &[Entry<'_>]) -> Answer + Send + Sync>;

/// A transport that answers each call as its script says, and records every call.
struct Scripted {
    script: Script,
    claims: Box<dyn Fn(usize) -> Result<(), AdapterError> + Send + Sync>,
    /// (when, message ids) of each batch call; when is time since `start`.
    calls: Mutex<Vec<(Duration, Vec<String>)>>,
    claim_calls: Mutex<Vec<String>>,
    start: Instant,
}

impl Scripted {
    fn new(script: impl Fn(usize, &[Entry<'_>]) -> Answer + Send + Sync + 'static) -> Self {
        Self {
            script: Box::new(script),
            claims: Box::new(|_| Ok(())),
            calls: Mutex::new(vec![]),
            claim_calls: Mutex::new(vec![]),
            start: Instant::now(),
        }
    }

    fn with_claims(
        mut self,
        claims: impl Fn(usize) -> Result<(), AdapterError> + Send + Sync + 'static,
    ) -> Self {
        self.claims = Box::new(claims);
        self
    }

    fn calls(&self) -> Vec<(Duration, Vec<String>)> {
        self.calls.lock().unwrap().clone()
    }
}

impl Transport for Scripted {
    async fn send_batch(&self, entries: &[Entry<'_>]) -> Result<BatchReply, AdapterError> {
        let n = {
            let mut calls = self.calls.lock().unwrap();
            calls.push((
                self.start.elapsed(),
                entries.iter().map(|e| e.message.id.clone()).collect(),
            ));
            calls.len() - 1
        };
        match (self.script)(n, entries) {
            Answer::Reply(reply) => Ok(reply),
            Answer::Fail(failure) => Err(failure),
            Answer::Hang => std::future::pending().await,
            Answer::Panic => panic!("scripted panic in the transport"),
        }
    }

    async fn put_claim(&self, claim: &Claim) -> Result<(), AdapterError> {
        let n = {
            let mut calls = self.claim_calls.lock().unwrap();
            calls.push(claim.key.clone());
            calls.len() - 1
        };
        (self.claims)(n)
    }
}

/// Backoff ceilings exactly (jitter fixed at its top), so that times are predictable.
fn no_jitter() -> f64 {
    1.0
}

async fn send(transport: &Scripted, ids: &[&str], budget: Duration) -> (Vec<Pending>, u32) {
    let mut pending: Vec<Pending> = ids.iter().map(|id| Pending::new(message(id))).collect();
    let stats = send_all(
        transport,
        &mut pending,
        Instant::now() + budget,
        Backoff::default(),
        no_jitter,
    )
    .await;
    assert_eq!(stats.queued + pending.len(), ids.len());
    (pending, stats.attempts)
}

fn ids(pending: &[Pending]) -> Vec<&str> {
    pending.iter().map(|p| p.message.id.as_str()).collect()
}

/// Answers the first call with `successful` and `failed` as they are, every later one with
/// success for all.
fn first_reply_then_ok(successful: &[&str], failed: Vec<EntryRefusal>) -> Scripted {
    let first = BatchReply {
        successful: successful.iter().map(|s| (*s).to_owned()).collect(),
        failed,
    };
    Scripted::new(move |n, e| {
        if n == 0 {
            Answer::Reply(first.clone())
        } else {
            all_ok(e)
        }
    })
}

fn transient(why: &str) -> AdapterError {
    AdapterError::Unavailable(why.into())
}

fn refusal(id: &str, sender_fault: bool, code: &str) -> EntryRefusal {
    EntryRefusal {
        id: id.into(),
        sender_fault,
        code: code.into(),
    }
}

#[tokio::test(start_paused = true)]
async fn everything_queued_in_batches_of_ten() {
    let t = Scripted::new(|_, e| all_ok(e));
    let names: Vec<String> = (0..23).map(|i| format!("m{i}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let (left, attempts) = send(&t, &refs, Duration::from_secs(5)).await;
    assert!(left.is_empty());
    assert_eq!(attempts, 1);
    let sizes: Vec<usize> = t.calls().iter().map(|(_, ids)| ids.len()).collect();
    assert_eq!(sizes, [10, 10, 3]);
}

#[tokio::test(start_paused = true)]
async fn only_the_entries_sqs_refused_are_sent_again() {
    let t = first_reply_then_ok(&["0", "2"], vec![refusal("1", false, "InternalError")]);
    let (left, attempts) = send(&t, &["a", "b", "c"], Duration::from_secs(5)).await;
    assert!(left.is_empty());
    assert_eq!(attempts, 2);
    assert_eq!(t.calls()[1].1, ["b"]);
}

#[tokio::test(start_paused = true)]
async fn an_entry_in_neither_list_or_under_an_unknown_id_is_not_counted_queued() {
    // "b" is missing from both lists; "c" comes back under an id that was never sent.
    let t = first_reply_then_ok(
        &["0", "x2"],
        vec![refusal("not-a-number", true, "InvalidMessageContents")],
    );
    let (left, _) = send(&t, &["a", "b", "c"], Duration::from_secs(5)).await;
    assert!(left.is_empty());
    assert_eq!(t.calls()[1].1, ["b", "c"]);

    // An entry listed as both successful and failed is not trusted either.
    let t = first_reply_then_ok(&["0"], vec![refusal("0", false, "InternalError")]);
    let (left, attempts) = send(&t, &["a"], Duration::from_secs(5)).await;
    assert!(left.is_empty());
    assert_eq!(attempts, 2);
}

#[tokio::test(start_paused = true)]
async fn permanent_refusals_are_not_retried() {
    let t = Scripted::new(|_, _| {
        Answer::Reply(BatchReply {
            successful: vec!["0".into()],
            failed: vec![refusal("1", true, "InvalidMessageContents")],
        })
    });
    let (left, attempts) = send(&t, &["a", "b"], Duration::from_secs(5)).await;
    assert_eq!(ids(&left), ["b"]);
    assert_eq!(attempts, 1);
    assert!(left[0].reason().contains("InvalidMessageContents"));

    let t = Scripted::new(|_, _| Answer::Fail(AdapterError::Denied("AccessDenied".into())));
    let (left, attempts) = send(&t, &["a", "b"], Duration::from_secs(5)).await;
    assert_eq!(ids(&left), ["a", "b"]);
    assert_eq!(attempts, 1);
    assert_eq!(t.calls().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_back_off_that_would_overrun_the_deadline_is_cut_for_one_last_try() {
    let t = Scripted::new(|_, _| Answer::Fail(transient("503")));
    let (left, attempts) = send(&t, &["a"], Duration::from_millis(1_000)).await;
    assert_eq!(ids(&left), ["a"]);
    let at: Vec<u128> = t.calls().iter().map(|(d, _)| d.as_millis()).collect();
    // Waits of 50, 100, 200, 400 ms; the next (800 ms) would end past the deadline, so the
    // wait is cut to leave MIN_ATTEMPT for one more call.
    let last = 1_000 - MIN_ATTEMPT.as_millis();
    assert_eq!(at, [0, 50, 150, 350, 750, last]);
    assert_eq!(attempts, 6);
    assert!(
        left[0]
            .reason()
            .starts_with("time budget spent after 6 attempts; last: 503"),
        "{}",
        left[0].reason()
    );
}

#[tokio::test(start_paused = true)]
async fn a_call_that_never_answers_is_cut_at_the_attempt_timeout() {
    let t = Scripted::new(|n, e| if n < 2 { Answer::Hang } else { all_ok(e) });
    let (left, attempts) = send(&t, &["a"], Duration::from_secs(20)).await;
    assert!(left.is_empty());
    assert_eq!(attempts, 3);
    let at: Vec<Duration> = t.calls().iter().map(|(d, _)| *d).collect();
    assert_eq!(at[1], ATTEMPT_TIMEOUT + Duration::from_millis(50));

    // With less time left than an attempt timeout, the call gets only what is left.
    let t = Scripted::new(|_, _| Answer::Hang);
    let start = Instant::now();
    let (left, _) = send(&t, &["a"], Duration::from_millis(700)).await;
    assert_eq!(ids(&left), ["a"]);
    assert!(start.elapsed() <= Duration::from_millis(700));
    assert!(left[0].reason().contains("no answer in time"));
}

#[tokio::test(start_paused = true)]
async fn a_claim_check_is_stored_once_before_its_pointer_is_queued() {
    // S3 fails once, then SQS fails twice: the envelope is stored twice in all (once
    // failed, once done), never again for SQS's failures.
    let t = Scripted::new(|n, e| {
        if n < 2 {
            Answer::Fail(transient("SQS 500"))
        } else {
            all_ok(e)
        }
    })
    .with_claims(|n| {
        if n == 0 {
            Err(transient("S3 RequestTimeout"))
        } else {
            Ok(())
        }
    });
    let mut pending = vec![Pending::new(claimed("big")), Pending::new(message("small"))];
    send_all(
        &t,
        &mut pending,
        Instant::now() + Duration::from_secs(5),
        Backoff::default(),
        no_jitter,
    )
    .await;
    assert!(pending.is_empty());
    assert_eq!(t.claim_calls.lock().unwrap().len(), 2);
    let calls: Vec<Vec<String>> = t.calls().into_iter().map(|(_, ids)| ids).collect();
    // The pointer waits for its envelope; once stored, only the pointer is sent again.
    assert_eq!(
        calls,
        [vec!["small"], vec!["big", "small"], vec!["big", "small"]]
    );
}

fn capture() -> (FallbackSink, Arc<Mutex<String>>) {
    let log = Arc::new(Mutex::new(String::new()));
    let sink = log.clone();
    (
        Arc::new(move |text: &str| sink.lock().unwrap().push_str(text)),
        log,
    )
}

fn recovered(log: &Mutex<String>) -> Vec<String> {
    fallback::recover(&log.lock().unwrap())
        .messages
        .into_iter()
        .map(|m| m.id)
        .collect()
}

#[tokio::test(start_paused = true)]
async fn what_is_not_confirmed_goes_to_the_fallback_log() {
    let (sink, log) = capture();
    let t = Scripted::new(|_, _| {
        Answer::Reply(BatchReply {
            successful: vec!["1".into()],
            failed: vec![refusal("0", true, "InvalidMessageContents")],
        })
    });
    let consignment = Consignment::new(vec![message("a"), message("b")], sink);
    let err = consignment
        .deliver(
            &t,
            Instant::now() + Duration::from_secs(1),
            Backoff::default(),
        )
        .await
        .unwrap_err();
    assert_eq!((err.failed, err.total), (1, 2));
    assert_eq!(recovered(&log), ["a"]);
    assert!(log.lock().unwrap().contains("InvalidMessageContents"));
}

/// Delivers `consignment` over `transport` in a task of its own, as the sender thread does.
fn spawn_delivery(
    consignment: Consignment,
    transport: Scripted,
    budget: Duration,
) -> tokio::task::JoinHandle<Result<(), twenty_webhook::delivery::QueueError>> {
    tokio::spawn(async move {
        consignment
            .deliver(&transport, Instant::now() + budget, Backoff::default())
            .await
    })
}

#[tokio::test(start_paused = true)]
async fn a_panicking_send_leaves_its_messages_in_the_fallback_log() {
    let (sink, log) = capture();
    let consignment = Consignment::new(vec![message("a"), message("b")], sink);
    let task = spawn_delivery(
        consignment,
        Scripted::new(|_, _| Answer::Panic),
        Duration::from_secs(1),
    );
    assert!(task.await.unwrap_err().is_panic());
    assert_eq!(recovered(&log), ["a", "b"]);
    assert!(log.lock().unwrap().contains("the send panicked"));
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_send_leaves_its_unconfirmed_messages_in_the_fallback_log() {
    let (sink, log) = capture();
    // The first batch is confirmed; the second hangs until the task is aborted.
    let messages: Vec<Message> = (0..12).map(|i| message(&format!("m{i}"))).collect();
    let consignment = Consignment::new(messages, sink);
    let task = spawn_delivery(
        consignment,
        Scripted::new(|n, e| if n == 0 { all_ok(e) } else { Answer::Hang }),
        Duration::from_secs(20),
    );
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert!(
        log.lock().unwrap().is_empty(),
        "nothing written while sending"
    );
    task.abort();
    assert!(task.await.unwrap_err().is_cancelled());
    assert_eq!(recovered(&log), ["m10", "m11"]);
    assert!(log.lock().unwrap().contains("the send was stopped"));
}

/// The sender thread, with real time: a panicking send releases the environment and keeps
/// its messages; the next send goes through; shutdown drops a stuck send into the log.
#[tokio::test]
async fn the_sender_thread_survives_a_panic_and_drains_at_shutdown() {
    let (sink, log) = capture();
    let (dispatcher, thread) = Dispatcher::start(
        || async {
            Scripted::new(|n, e| match n {
                0 => Answer::Panic,
                1 => all_ok(e),
                _ => Answer::Hang,
            })
        },
        sink,
    );
    let inflight = InFlight::default();
    let deadline = || Instant::now() + Duration::from_secs(60);

    let outcome = dispatcher
        .submit_and_wait(vec![message("p")], deadline(), inflight.enter())
        .await;
    assert!(outcome.is_err());
    assert_eq!(
        inflight.active(),
        0,
        "the panicked send released the environment"
    );
    assert_eq!(recovered(&log), ["p"]);

    dispatcher
        .submit_and_wait(vec![message("ok")], deadline(), inflight.enter())
        .await
        .unwrap();

    dispatcher.submit(vec![message("stuck")], deadline(), inflight.enter());
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(inflight.active(), 1);
    tokio::time::timeout(
        Duration::from_secs(5),
        thread.shutdown(Duration::from_millis(100)),
    )
    .await
    .expect("shutdown ends after its grace period");
    assert_eq!(inflight.active(), 0);
    assert_eq!(recovered(&log), ["p", "stuck"]);

    // With the thread gone, a hand-over writes the fallback log at once.
    dispatcher.submit(vec![message("late")], deadline(), inflight.enter());
    assert_eq!(recovered(&log), ["p", "stuck", "late"]);
}

#[tokio::test]
async fn a_send_past_its_deadline_is_stopped_and_kept() {
    let (sink, log) = capture();
    // The transport hangs where the deadline cannot cut it: building it never ends.
    let (dispatcher, _thread) = Dispatcher::start(
        || async {
            std::future::pending::<()>().await;
            Scripted::new(|_, e| all_ok(e))
        },
        sink,
    );
    let inflight = InFlight::default();
    let outcome = dispatcher
        .submit_and_wait(
            vec![message("slow")],
            Instant::now() + Duration::from_millis(200),
            inflight.enter(),
        )
        .await;
    assert!(
        outcome
            .unwrap_err()
            .reason
            .contains("could not be made in time")
    );
    assert_eq!(recovered(&log), ["slow"]);
    assert_eq!(inflight.active(), 0);
}
