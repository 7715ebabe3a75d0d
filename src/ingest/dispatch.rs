//! The sender thread: where every send runs, so that the Lambda runtime's own thread only
//! verifies and answers. The first answer after a cold start thus never waits for the AWS
//! clients to be built (reading the TLS roots takes milliseconds), and no send can stall it.
//!
//! A consignment handed over is owned by the sender thread until SQS confirms it or it is
//! written to the fallback log (see `delivery::Consignment`). Each send is bounded by its
//! deadline; at shutdown the thread finishes what it can within a grace period, then drops
//! the rest, which writes it to the fallback log.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OnceCell, mpsc, oneshot};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::{Instrument, error};

use crate::delivery::{Consignment, FallbackSink, QueueError, Transport};
use crate::envelope::Message;
use crate::ingest::inflight::Guard;
use crate::metrics;
use crate::retry::Backoff;

/// A send may overrun its own deadline by this much (writing the fallback log) before it is
/// stopped from outside; stopping it writes the fallback log too.
const OVERRUN: Duration = Duration::from_millis(250);

/// Hands consignments to the sender thread. Cheap to clone.
#[derive(Clone)]
pub struct Dispatcher {
    commands: mpsc::UnboundedSender<Command>,
    sink: FallbackSink,
    spawn: Arc<LazySpawn>,
}

/// The sender thread itself, to be shut down once the function stops taking requests.
pub struct SenderThread {
    commands: mpsc::UnboundedSender<Command>,
    done: oneshot::Receiver<()>,
    spawn: Arc<LazySpawn>,
}

/// Starts the thread on the first hand-over rather than at init, so that init makes
/// neither a thread nor a runtime.
struct LazySpawn(Mutex<Option<Spawn>>);

type Spawn = Box<dyn FnOnce() -> std::io::Result<()> + Send>;

impl LazySpawn {
    /// Starts the thread unless it has been started (or given up) before. If it cannot
    /// start, its inbox is dropped, and with it whatever is handed over: to the fallback log.
    fn start(&self) {
        let spawn = self.0.lock().map(|mut s| s.take()).unwrap_or_default();
        if let Some(spawn) = spawn
            && let Err(e) = spawn()
        {
            error!(error = %e, "the sender thread could not start");
        }
    }

    /// True if the thread was never started; it never will be now.
    fn cancel(&self) -> bool {
        self.0
            .lock()
            .map(|mut s| s.take())
            .unwrap_or_default()
            .is_some()
    }
}

enum Command {
    Send(Job),
    /// Finish the sends in flight within the grace period, then drop the rest.
    Shutdown(Duration),
}

struct Job {
    consignment: Consignment,
    deadline: Instant,
    reply: Option<oneshot::Sender<Result<(), QueueError>>>,
    /// Keeps the execution environment awake until the job is over.
    _hold: Guard,
    /// The request's span (its request id), for the send's log lines.
    span: tracing::Span,
}

impl Dispatcher {
    /// Prepares the sender thread, which starts on the first hand-over. `connect` builds
    /// the transport on the first send, on that thread, within that send's deadline (and
    /// again on a later send if it did not finish).
    pub fn start<T, F, Fut>(connect: F, sink: FallbackSink) -> (Dispatcher, SenderThread)
    where
        T: Transport,
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = T> + Send + 'static,
    {
        let (commands, inbox) = mpsc::unbounded_channel();
        let (finished, done) = oneshot::channel::<()>();
        let spawn = Arc::new(LazySpawn(Mutex::new(Some(Box::new(move || {
            std::thread::Builder::new()
                .name("twenty-sender".into())
                .spawn(move || {
                    match tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                    {
                        Ok(runtime) => runtime.block_on(serve(inbox, Arc::new(connect))),
                        // Dropping the inbox drops every consignment in it: to the fallback log.
                        Err(e) => {
                            error!(error = %e, "the sender thread could not start its runtime")
                        }
                    }
                    let _ = finished.send(());
                })
                .map(drop)
        })))));
        let thread = SenderThread {
            commands: commands.clone(),
            done,
            spawn: spawn.clone(),
        };
        (
            Dispatcher {
                commands,
                sink,
                spawn,
            },
            thread,
        )
    }

    /// Queues `messages` in the background; `hold` is released when the send is over.
    pub fn submit(&self, messages: Vec<Message>, deadline: Instant, hold: Guard) {
        self.submit_with(messages, deadline, hold, metrics::document());
    }

    /// `submit`, the send's metrics written in `request`'s line (the request's own
    /// metrics and properties): one line per accepted delivery.
    pub fn submit_with(
        &self,
        messages: Vec<Message>,
        deadline: Instant,
        hold: Guard,
        request: metrics::Document,
    ) {
        self.hand_over(messages, deadline, hold, None, request);
    }

    /// Queues `messages` and waits for the outcome.
    pub async fn submit_and_wait(
        &self,
        messages: Vec<Message>,
        deadline: Instant,
        hold: Guard,
    ) -> Result<(), QueueError> {
        self.submit_and_wait_with(messages, deadline, hold, metrics::document())
            .await
    }

    /// `submit_and_wait`, the send's metrics written in `request`'s line.
    pub async fn submit_and_wait_with(
        &self,
        messages: Vec<Message>,
        deadline: Instant,
        hold: Guard,
        request: metrics::Document,
    ) -> Result<(), QueueError> {
        let total = messages.len();
        let (reply, outcome) = oneshot::channel();
        self.hand_over(messages, deadline, hold, Some(reply), request);
        // No reply means the send ended abnormally; its consignment was written to the
        // fallback log as it was dropped.
        outcome.await.unwrap_or_else(|_| {
            Err(QueueError {
                failed: total,
                total,
                reason: "the send ended without an outcome".into(),
            })
        })
    }

    fn hand_over(
        &self,
        messages: Vec<Message>,
        deadline: Instant,
        hold: Guard,
        reply: Option<oneshot::Sender<Result<(), QueueError>>>,
        request: metrics::Document,
    ) {
        let job = Job {
            consignment: Consignment::new(messages, self.sink.clone()).reporting_in(request),
            deadline,
            reply,
            _hold: hold,
            span: tracing::Span::current(),
        };
        self.spawn.start();
        // If the sender thread is gone, the job comes back and is dropped here: its
        // consignment goes to the fallback log at once.
        if let Err(returned) = self.commands.send(Command::Send(job)) {
            error!("the sender thread is gone: writing the event to the fallback log");
            drop(returned);
        }
    }
}

impl SenderThread {
    /// Lets the sends in flight finish within `grace`, drops the rest (to the fallback
    /// log), and returns once the thread is done.
    pub async fn shutdown(self, grace: Duration) {
        if self.spawn.cancel() {
            return; // never started: nothing was ever handed over
        }
        let _ = self.commands.send(Command::Shutdown(grace));
        let _ = self.done.await;
    }
}

async fn serve<T, F, Fut>(mut inbox: mpsc::UnboundedReceiver<Command>, connect: Arc<F>)
where
    T: Transport,
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = T> + Send + 'static,
{
    let transport: Arc<OnceCell<T>> = Arc::new(OnceCell::new());
    let mut sends = JoinSet::new();
    loop {
        tokio::select! {
            command = inbox.recv() => match command {
                Some(Command::Send(job)) => {
                    let span = job.span.clone();
                    sends.spawn(run(job, transport.clone(), connect.clone()).instrument(span));
                }
                Some(Command::Shutdown(grace)) => return finish(sends, grace).await,
                // Only the thread handle is left and it is gone: nothing more will come.
                None => return finish(sends, Duration::from_secs(900)).await,
            },
            Some(ended) = sends.join_next(), if !sends.is_empty() => report(ended),
        }
    }
}

async fn run<T, F, Fut>(job: Job, transport: Arc<OnceCell<T>>, connect: Arc<F>)
where
    T: Transport,
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = T> + Send + 'static,
{
    let Job {
        consignment,
        deadline,
        reply,
        _hold: hold,
        span: _,
    } = job;
    let total = consignment.total();
    let send = async {
        let Ok(transport) =
            tokio::time::timeout_at(deadline, transport.get_or_init(|| connect())).await
        else {
            return Err(consignment.abandon("the queue client could not be made in time"));
        };
        consignment
            .deliver(transport, deadline, Backoff::default())
            .await
    };
    // The send keeps to its deadline; this bound is for a call that would not. Stopping it
    // drops the consignment, which writes what is unconfirmed to the fallback log.
    let outcome = tokio::time::timeout_at(deadline + OVERRUN, send)
        .await
        .unwrap_or_else(|_| {
            Err(QueueError {
                failed: total,
                total,
                reason: "the send overran its deadline".into(),
            })
        });
    // The job is over (queued or in the fallback log): the environment may freeze.
    drop(hold);
    if let Some(reply) = reply {
        let _ = reply.send(outcome);
    }
}

async fn finish(mut sends: JoinSet<()>, grace: Duration) {
    let all = async {
        while let Some(ended) = sends.join_next().await {
            report(ended);
        }
    };
    if tokio::time::timeout(grace, all).await.is_err() {
        // Aborted tasks drop their consignments: to the fallback log.
        sends.abort_all();
        while let Some(ended) = sends.join_next().await {
            report(ended);
        }
    }
}

fn report(ended: Result<(), tokio::task::JoinError>) {
    if let Err(e) = ended
        && e.is_panic()
    {
        error!("a send panicked: its unconfirmed messages went to the fallback log");
    }
}
