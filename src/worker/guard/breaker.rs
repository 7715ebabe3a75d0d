//! A circuit breaker per destination. Closed, every send goes. After `failures`
//! consecutive failures (5xx, 408, 429, time-outs, connection errors) it opens for `open`,
//! and while it is open nothing is sent: the messages wait in the queue. When the opening
//! runs out, one worker takes the probe; a success closes the breaker, a failure opens it
//! again for twice as long, up to `cap`.
//!
//! Each instance keeps the state it last learnt from the store: it reads it at its first
//! send to a destination (so a new instance never sends to one the others know is down),
//! and again at most every `probe_wait` while that state shows failures, which is how it
//! learns of an opening made elsewhere before it fails itself. On the happy path it reads
//! nothing more: a send to a closed breaker with no failures costs no store call, and a
//! success writes only when there were failures to clear.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tracing::warn;

use super::state::{Admission, BreakerSettings, BreakerState, Opening, Pass};
use super::store::{DestinationStore, LocalStore};
use crate::clock::now_ms;
use crate::metrics::Unit;
use crate::retry::jitter_unit;

/// The breakers of every destination, over one store.
pub struct Breakers {
    store: Arc<dyn DestinationStore>,
    /// Used when the store cannot be reached: the breaker then works per instance.
    fallback: LocalStore,
    settings: BreakerSettings,
    /// What this instance last learnt of each destination's state, and when (ms).
    known: Mutex<HashMap<String, (BreakerState, u64)>>,
    /// Each destination's last failure, for what is held back while it is open.
    last: Mutex<HashMap<String, LastFailure>>,
    /// Held while the state is read from the store.
    reading: tokio::sync::Mutex<()>,
}

/// A destination's last failure, as this worker saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastFailure {
    pub reason: String,
    pub status: Option<u16>,
}

impl Breakers {
    pub fn new(store: Arc<dyn DestinationStore>, settings: BreakerSettings) -> Self {
        Self {
            store,
            fallback: LocalStore::default(),
            settings,
            known: Mutex::new(HashMap::new()),
            last: Mutex::new(HashMap::new()),
            reading: tokio::sync::Mutex::new(()),
        }
    }

    /// The last failure this worker saw at `destination`, if any.
    pub fn last_failure(&self, destination: &str) -> Option<LastFailure> {
        let last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
        last.get(destination).cloned()
    }

    /// Breakers kept in this process only.
    pub fn local(settings: BreakerSettings) -> Self {
        Self::new(Arc::new(LocalStore::default()), settings)
    }

    fn known(&self, destination: &str) -> BreakerState {
        let known = self.known.lock().unwrap_or_else(PoisonError::into_inner);
        known.get(destination).map(|(s, _)| *s).unwrap_or_default()
    }

    fn learn(&self, destination: &str, state: BreakerState) {
        let mut known = self.known.lock().unwrap_or_else(PoisonError::into_inner);
        known.insert(destination.to_owned(), (state, now_ms()));
    }

    /// The state to decide on: what this instance knows, read from the store first when
    /// it knows nothing yet, or knows of failures and has not looked for a while.
    async fn current(&self, destination: &str, now: u64) -> BreakerState {
        let refresh = self.settings.probe_wait.as_millis() as u64;
        let look = || {
            let known = self.known.lock().unwrap_or_else(PoisonError::into_inner);
            let known = known.get(destination).copied();
            let stale = known.is_none_or(|(state, read)| {
                state.failures > 0 && state.open_until_ms <= now && now >= read + refresh
            });
            (known, stale)
        };
        if let (known, false) = look() {
            return known.map(|(s, _)| s).unwrap_or_default();
        }
        // One read at a time: the sends of a batch that find the state stale together
        // wait for the first one's read rather than each make their own.
        let _reading = self.reading.lock().await;
        let (known, stale) = look();
        if !stale {
            return known.map(|(s, _)| s).unwrap_or_default();
        }
        match self.store.state(destination).await {
            Ok(state) => {
                self.learn(destination, state);
                state
            }
            Err(e) => {
                warn!(destination, error = %e, "breaker state not read; this worker decides alone");
                let state = known.map(|(s, _)| s).unwrap_or_default();
                // Not again before the next refresh.
                self.learn(destination, state);
                state
            }
        }
    }

    /// Whether a send may go; Err holds how long to wait.
    pub async fn admit(
        &self,
        destination: &str,
        time_left: Option<Duration>,
    ) -> Result<Pass, Duration> {
        let now = now_ms();
        let state = self.current(destination, now).await;
        match state.admission(now) {
            Admission::Send => Ok(Pass::Normal),
            // Back when the opening ends, spread a little so that one takes the probe
            // and the rest find it taken.
            Admission::Wait(wait) => Err(wait + self.spread(state.period_ms)),
            Admission::Probe => {
                let lease = time_left
                    .unwrap_or(self.settings.probe_wait)
                    .max(Duration::from_secs(1));
                let until = now + lease.as_millis() as u64;
                let granted = match self.store.lease_probe(destination, now, until).await {
                    Ok(granted) => granted,
                    Err(e) => {
                        warn!(destination, error = %e, "breaker state not read; this worker decides alone");
                        self.fallback
                            .lease_probe(destination, now, until)
                            .await
                            .unwrap_or(Err(BreakerState::default()))
                    }
                };
                match granted {
                    Ok(state) => {
                        self.learn(destination, state);
                        Ok(if state.open_until_ms == 0 {
                            Pass::Normal
                        } else {
                            Pass::Probe { until_ms: until }
                        })
                    }
                    // Opened again, or another worker is probing: back when the opening
                    // or the probe's lease ends, not before (once per hold, however long
                    // the probe hangs).
                    Err(state) => {
                        self.learn(destination, state);
                        let until = state.open_until_ms.max(state.probe_until_ms);
                        let wait = Duration::from_millis(until.saturating_sub(now).max(1));
                        Err(wait + self.spread(state.period_ms))
                    }
                }
            }
        }
    }

    /// A random part of a tenth of an opening (at least of `probe_wait`), added to a hold.
    fn spread(&self, period_ms: u64) -> Duration {
        let base = Duration::from_millis(period_ms).max(self.settings.probe_wait) / 10;
        base.mul_f64(jitter_unit())
    }

    /// Gives back a probe that was not used, so that another worker may probe at once
    /// rather than when its lease runs out. Nothing for an ordinary pass.
    pub async fn release(&self, destination: &str, pass: Pass) {
        let Pass::Probe { until_ms } = pass else {
            return;
        };
        if let Err(e) = self.store.release_probe(destination, until_ms).await {
            warn!(destination, error = %e, "probe not given back; it runs out with its lease");
        }
        let _ = self.fallback.release_probe(destination, until_ms).await;
        let mut known = self.known(destination);
        if known.probe_until_ms == until_ms {
            known.probe_until_ms = 0;
        }
        self.learn(destination, known);
    }

    /// Records how a send went: `failure` for one that counts against the destination.
    pub async fn settle(&self, destination: &str, pass: Pass, failure: Option<LastFailure>) {
        let known = self.known(destination);
        let probe = matches!(pass, Pass::Probe { .. });
        let Some(failure) = failure else {
            // A destination that answered is up: clear what is recorded, if anything is.
            if probe || known != BreakerState::default() {
                if let Err(e) = self.store.reset(destination).await {
                    warn!(destination, error = %e, "breaker not closed in the store");
                }
                let _ = self.fallback.reset(destination).await;
                self.learn(destination, BreakerState::default());
            }
            return;
        };
        self.last
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(destination.to_owned(), failure);
        let (store, state): (&dyn DestinationStore, BreakerState) = match self
            .store
            .add_failure(destination)
            .await
        {
            Ok(state) => (self.store.as_ref(), state),
            Err(e) => {
                warn!(destination, error = %e, "breaker failure not recorded in the store; counted here");
                let state = self
                    .fallback
                    .add_failure(destination)
                    .await
                    .unwrap_or_default();
                (&self.fallback, state)
            }
        };
        let now = now_ms();
        let mut learnt = state;
        if let Some(period) = state.next_opening(now, probe, &self.settings) {
            let opening = Opening {
                expected_until_ms: state.open_until_ms,
                until_ms: now + period,
                period_ms: period,
            };
            match store.open(destination, opening).await {
                Ok(true) => {
                    learnt.open_until_ms = now + period;
                    learnt.period_ms = period;
                    warn!(destination, open_ms = period, "circuit breaker opened");
                    let mut doc = crate::metrics::document();
                    doc.add("BreakerOpened", Unit::Count, 1.0)
                        .add_by(
                            "BreakerOpened",
                            Unit::Count,
                            "Destination",
                            destination,
                            1.0,
                        )
                        .emit();
                }
                Ok(false) => {}
                Err(e) => warn!(destination, error = %e, "breaker not opened in the store"),
            }
        }
        self.learn(destination, learnt);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> BreakerSettings {
        BreakerSettings {
            failures: 3,
            open: Duration::from_millis(100),
            cap: Duration::from_millis(350),
            probe_wait: Duration::from_millis(10),
        }
    }

    #[test]
    fn opens_after_the_threshold_then_doubles_to_the_cap() {
        let s = settings();
        let state = |failures, open_until_ms, period_ms| BreakerState {
            failures,
            open_until_ms,
            period_ms,
            probe_until_ms: 0,
        };
        assert_eq!(state(2, 0, 0).next_opening(1_000, false, &s), None);
        assert_eq!(state(3, 0, 0).next_opening(1_000, false, &s), Some(100));
        // Still open (another instance opened it): nothing more.
        assert_eq!(state(4, 1_050, 100).next_opening(1_000, false, &s), None);
        // A failed probe: twice as long, then capped.
        assert_eq!(state(4, 900, 100).next_opening(1_000, true, &s), Some(200));
        assert_eq!(state(5, 900, 200).next_opening(1_000, true, &s), Some(350));
        assert_eq!(state(6, 900, 350).next_opening(1_000, true, &s), Some(350));
        assert_eq!(state(0, 0, 0).admission(5), Admission::Send);
        assert_eq!(
            state(3, 10, 5).admission(5),
            Admission::Wait(Duration::from_millis(5))
        );
        assert_eq!(state(3, 10, 5).admission(10), Admission::Probe);
    }

    fn down() -> LastFailure {
        LastFailure {
            reason: "answered 503".into(),
            status: Some(503),
        }
    }

    #[tokio::test]
    async fn one_probe_at_a_time_and_a_success_closes() {
        let breakers = Breakers::local(settings());
        for _ in 0..3 {
            assert_eq!(breakers.admit("d", None).await, Ok(Pass::Normal));
            breakers.settle("d", Pass::Normal, Some(down())).await;
        }
        let wait = breakers.admit("d", None).await.unwrap_err();
        assert!(
            wait <= Duration::from_millis(110) && wait > Duration::ZERO,
            "until the opening ends, and up to a tenth more: {wait:?}"
        );
        tokio::time::sleep(wait + Duration::from_millis(5)).await;
        let probe = breakers.admit("d", None).await.unwrap();
        assert!(matches!(probe, Pass::Probe { .. }), "{probe:?}");
        let held = breakers.admit("d", None).await.unwrap_err();
        assert!(
            held > Duration::from_millis(900) && held <= Duration::from_millis(1_010),
            "the probe is taken: back when its lease (1 s at least) ends: {held:?}"
        );
        breakers.settle("d", probe, Some(down())).await;
        let wait = breakers.admit("d", None).await.unwrap_err();
        assert!(wait > Duration::from_millis(100), "doubled: {wait:?}");
        tokio::time::sleep(wait + Duration::from_millis(5)).await;
        let probe = breakers.admit("d", None).await.unwrap();
        assert!(matches!(probe, Pass::Probe { .. }), "{probe:?}");
        breakers.settle("d", probe, None).await;
        assert_eq!(breakers.admit("d", None).await, Ok(Pass::Normal));
        assert_eq!(breakers.known("d"), BreakerState::default());
        assert_eq!(breakers.last_failure("d"), Some(down()));
        // Another destination never noticed.
        assert_eq!(breakers.admit("other", None).await, Ok(Pass::Normal));
    }

    /// An instance that never sent to a destination reads its state before the first
    /// send: it does not send to one another instance has found down.
    #[tokio::test]
    async fn a_new_instance_reads_the_state_before_its_first_send() {
        let store: Arc<dyn DestinationStore> = Arc::new(LocalStore::default());
        let (first, fresh) = (
            Breakers::new(store.clone(), settings()),
            Breakers::new(store, settings()),
        );
        for _ in 0..3 {
            assert_eq!(first.admit("d", None).await, Ok(Pass::Normal));
            first.settle("d", Pass::Normal, Some(down())).await;
        }
        assert!(fresh.admit("d", None).await.is_err(), "open for it too");
    }

    /// An instance that knows of failures looks again every `probe_wait`: it learns of an
    /// opening made elsewhere without failing itself; one that knows of none reads nothing.
    #[tokio::test]
    async fn failures_known_elsewhere_are_read_again_after_a_while() {
        let store: Arc<dyn DestinationStore> = Arc::new(LocalStore::default());
        let (a, b) = (
            Breakers::new(store.clone(), settings()),
            Breakers::new(store, settings()),
        );
        a.settle("d", Pass::Normal, Some(down())).await;
        assert_eq!(
            b.admit("d", None).await,
            Ok(Pass::Normal),
            "one failure: closed"
        );
        a.settle("d", Pass::Normal, Some(down())).await;
        a.settle("d", Pass::Normal, Some(down())).await;
        tokio::time::sleep(settings().probe_wait + Duration::from_millis(2)).await;
        assert!(b.admit("d", None).await.is_err(), "b learnt of the opening");
    }
}
