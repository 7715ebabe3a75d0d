//! A guarded route asks its `Gate` before it sends: the destination's breaker, then its
//! pace. A send held back is a `Deferred` failure with the time to come back; a granted
//! probe that was not used goes back to the store.

use std::sync::Arc;
use std::time::Duration;

use super::breaker::{Breakers, LastFailure};
use super::pace::Pacer;
use super::state::Pass;
use crate::worker::error::{FailureKind, HandlerError};

/// One destination's breaker and, if the rule sets `maxPerSecond`, its pace.
pub struct Gate {
    destination: String,
    breakers: Arc<Breakers>,
    pace: Option<(Arc<Pacer>, f64)>,
}

impl Gate {
    pub fn new(
        destination: &str,
        breakers: Arc<Breakers>,
        pace: Option<(Arc<Pacer>, f64)>,
    ) -> Self {
        Self {
            destination: destination.to_owned(),
            breakers,
            pace,
        }
    }

    /// Whether a send may go now. `time_left` is what the invocation has left for it; a
    /// send held back is a `Deferred` failure with the time to come back.
    pub async fn admit(&self, time_left: Option<Duration>) -> Result<Pass, HandlerError> {
        let pass = self
            .breakers
            .admit(&self.destination, time_left)
            .await
            .map_err(|wait| {
                // Held back for what happened before: say what, for the dead-letter queue.
                match self.breakers.last_failure(&self.destination) {
                    Some(last) => {
                        let why = format!("circuit breaker open after: {}", last.reason);
                        let deferred = HandlerError::deferred(why, wait);
                        match last.status {
                            Some(status) => deferred.status(status),
                            None => deferred,
                        }
                    }
                    None => HandlerError::deferred("circuit breaker open", wait),
                }
            })?;
        if let Some((pacer, per_second)) = &self.pace {
            // Waiting for a token may use half of what is left; the rest is the send's.
            let max_wait = time_left.map_or(Duration::from_secs(5), |t| {
                (t / 2).min(Duration::from_secs(5))
            });
            let paced = pacer
                .acquire(&self.destination, *per_second, max_wait)
                .await;
            if let Err(wait) = paced {
                // A probe granted and not used goes back at once.
                self.release(pass).await;
                let why = format!("{}: over its rate limit", self.destination);
                return Err(HandlerError::deferred(why, wait));
            }
        }
        Ok(pass)
    }

    /// Tells the breaker how the send went: a success or a refusal (the destination
    /// answered: it is up) closes it, a failure counts against it. A send that was not
    /// made (deferred: no time left) settles nothing, and gives back the probe it held.
    pub async fn settle(&self, pass: Pass, result: &Result<(), HandlerError>) {
        let failure = match result {
            Err(e) if e.kind == FailureKind::Deferred => return self.release(pass).await,
            Err(e) if e.kind == FailureKind::Transient => Some(LastFailure {
                reason: e.reason.clone(),
                status: e.status,
            }),
            _ => None,
        };
        self.breakers.settle(&self.destination, pass, failure).await;
    }

    /// A pass that was not used: a probe goes back to the store.
    pub async fn release(&self, pass: Pass) {
        self.breakers.release(&self.destination, pass).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::worker::guard::{BreakerSettings, DestinationStore, LocalStore};

    fn settings() -> BreakerSettings {
        BreakerSettings {
            failures: 1,
            open: Duration::from_millis(20),
            cap: Duration::from_millis(100),
            probe_wait: Duration::from_secs(5),
        }
    }

    /// A breaker whose opening has run out, over `store`.
    async fn ran_out(store: Arc<dyn DestinationStore>) -> Arc<Breakers> {
        let breakers = Arc::new(Breakers::new(store, settings()));
        let failure = LastFailure {
            reason: "answered 503".into(),
            status: Some(503),
        };
        breakers.settle("d", Pass::Normal, Some(failure)).await;
        tokio::time::sleep(Duration::from_millis(30)).await;
        breakers
    }

    /// A probe granted and then held back by the rate limit goes back at once: another
    /// worker may probe now, not in 5 s loops until the lease runs out.
    #[tokio::test]
    async fn a_probe_held_back_by_the_pace_is_given_back() {
        let store: Arc<dyn DestinationStore> = Arc::new(LocalStore::default());
        let breakers = ran_out(store.clone()).await;
        let pacer = Arc::new(Pacer::new(store.clone()));
        // The one slot of this second is taken.
        assert_eq!(pacer.acquire("d", 0.1, Duration::ZERO).await, Ok(()));
        let gate = Gate::new("d", breakers, Some((pacer, 0.1)));
        let held = gate.admit(Some(Duration::from_secs(10))).await.unwrap_err();
        assert_eq!(held.kind, FailureKind::Deferred);
        let other = Breakers::new(store, settings());
        let probe = other.admit("d", None).await;
        assert!(matches!(probe, Ok(Pass::Probe { .. })), "{probe:?}");
    }

    /// A probe that was not sent (no time left) neither closes nor reopens the breaker:
    /// the next send is a probe again, not an ordinary one.
    #[tokio::test]
    async fn a_probe_not_sent_settles_nothing_but_its_lease() {
        let store: Arc<dyn DestinationStore> = Arc::new(LocalStore::default());
        let breakers = ran_out(store).await;
        let gate = Gate::new("d", breakers.clone(), None);
        let pass = gate.admit(None).await.unwrap();
        assert!(matches!(pass, Pass::Probe { .. }), "{pass:?}");
        let not_sent = Err(HandlerError::deferred(
            "no time left",
            Duration::from_secs(1),
        ));
        gate.settle(pass, &not_sent).await;
        let again = gate.admit(None).await.unwrap();
        assert!(
            matches!(again, Pass::Probe { .. }),
            "still to be probed: {again:?}"
        );
        // A real answer closes it.
        gate.settle(again, &Ok(())).await;
        assert_eq!(gate.admit(None).await.unwrap(), Pass::Normal);
    }
}
