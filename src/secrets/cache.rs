//! A stored secret, read on first need and kept fresh.
//!
//! Reads are single-flight (one at a time, and callers that waited take its result) and
//! never closer together than `Refresh::floor`, whatever asks for them: a flood of bad
//! signatures, or of requests while the store is down, costs at most one read per floor.

use std::sync::{Arc, Mutex, PoisonError};
use tokio::time::Instant;

use super::source::{Refresh, SecretSource, SecretStore, StoreError, StoredSecret};

/// No value could be had: the store failed at first need (or within the floor after).
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("secret unavailable: {0}")]
pub struct Unavailable(pub StoreError);

/// Turns the stored text into the value used; the error says why, never the text.
pub type Parse<T> = fn(&str) -> Result<T, String>;

/// A secret value given once, or kept from a store. Cheap to clone.
pub struct Rotating<T>(Arc<Inner<T>>);

impl<T> Clone for Rotating<T> {
    fn clone(&self) -> Self {
        Self(Arc::clone(&self.0))
    }
}

enum Inner<T> {
    Fixed(Arc<T>),
    Stored(Box<Stored<T>>),
}

struct Stored<T> {
    store: Arc<dyn SecretStore>,
    secret: StoredSecret,
    parse: Parse<T>,
    refresh: Refresh,
    state: Mutex<State<T>>,
    flight: Arc<tokio::sync::Mutex<()>>,
}

struct State<T> {
    value: Option<(Arc<T>, Instant)>,
    attempted_at: Option<Instant>,
    error: Option<StoreError>,
}

impl<T: Send + Sync + 'static> Rotating<T> {
    pub fn fixed(value: T) -> Self {
        Self(Arc::new(Inner::Fixed(Arc::new(value))))
    }

    /// From a setting's source: a value given in the environment is parsed now (it was
    /// checked at start-up); a stored one is read on first need from `store()`.
    pub fn from_source(
        source: &SecretSource,
        parse: Parse<T>,
        refresh: Refresh,
        store: impl FnOnce() -> Arc<dyn SecretStore>,
    ) -> Result<Self, String> {
        match source {
            SecretSource::Value(text) => parse(text).map(Self::fixed),
            SecretSource::Stored(secret) => {
                Ok(Self::stored(store(), secret.clone(), parse, refresh))
            }
        }
    }

    /// Nothing is read here: the first `current` reads.
    pub fn stored(
        store: Arc<dyn SecretStore>,
        secret: StoredSecret,
        parse: Parse<T>,
        refresh: Refresh,
    ) -> Self {
        Self(Arc::new(Inner::Stored(Box::new(Stored {
            store,
            secret,
            parse,
            refresh,
            state: Mutex::new(State {
                value: None,
                attempted_at: None,
                error: None,
            }),
            flight: Arc::new(tokio::sync::Mutex::new(())),
        }))))
    }

    /// The value to use now. The first call reads the store; a value older than
    /// `Refresh::every` is used while a re-read runs in the background.
    pub async fn current(&self) -> Result<Arc<T>, Unavailable> {
        let stored = match &*self.0 {
            Inner::Fixed(value) => return Ok(Arc::clone(value)),
            Inner::Stored(stored) => stored,
        };
        let now = Instant::now();
        let kept = stored.lock().value.clone();
        match kept {
            None => stored.read(|state, _| state.value.is_none()).await,
            Some((value, read_at)) => {
                if now.duration_since(read_at) >= stored.refresh.every {
                    self.refresh_in_background();
                }
                Ok(value)
            }
        }
    }

    /// Why the last read of the store was not taken (it failed, or its value was
    /// invalid): the value in use, if any, is an older one. None after a good read, and for
    /// a fixed value.
    pub fn last_error(&self) -> Option<StoreError> {
        match &*self.0 {
            Inner::Fixed(_) => None,
            Inner::Stored(stored) => stored.lock().error.clone(),
        }
    }

    /// After `seen` failed to verify something: re-reads once, unless the value was read
    /// within the floor, and gives the value if it is not `seen`.
    pub async fn newer_than(&self, seen: &Arc<T>) -> Option<Arc<T>> {
        let Inner::Stored(stored) = &*self.0 else {
            return None;
        };
        let still_seen = |state: &State<T>, _: Instant| {
            state
                .value
                .as_ref()
                .is_none_or(|(value, _)| Arc::ptr_eq(value, seen))
        };
        stored
            .read(still_seen)
            .await
            .ok()
            .filter(|value| !Arc::ptr_eq(value, seen))
    }

    fn refresh_in_background(&self) {
        let Inner::Stored(stored) = &*self.0 else {
            return;
        };
        // A re-read already under way is enough.
        let Ok(flight) = Arc::clone(&stored.flight).try_lock_owned() else {
            return;
        };
        let this = self.clone();
        tokio::spawn(async move {
            if let Inner::Stored(stored) = &*this.0 {
                let every = stored.refresh.every;
                let stale = |state: &State<T>, now: Instant| {
                    state
                        .value
                        .as_ref()
                        .is_none_or(|(_, at)| now.duration_since(*at) >= every)
                };
                let _ = stored.read_holding(stale).await;
            }
            drop(flight);
        });
    }
}

impl<T> Stored<T> {
    fn lock(&self) -> std::sync::MutexGuard<'_, State<T>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Reads when `wanted` still holds once it is this caller's turn and the floor allows;
    /// otherwise gives what is kept.
    async fn read(
        &self,
        wanted: impl Fn(&State<T>, Instant) -> bool,
    ) -> Result<Arc<T>, Unavailable> {
        let _flight = self.flight.lock().await;
        self.read_holding(wanted).await
    }

    async fn read_holding(
        &self,
        wanted: impl Fn(&State<T>, Instant) -> bool,
    ) -> Result<Arc<T>, Unavailable> {
        let now = Instant::now();
        {
            let mut state = self.lock();
            let too_soon = state
                .attempted_at
                .is_some_and(|at| now.duration_since(at) < self.refresh.floor);
            if too_soon || !wanted(&state, now) {
                return state.kept();
            }
            state.attempted_at = Some(now);
        }
        let read =
            match tokio::time::timeout(self.refresh.timeout, self.store.read(&self.secret)).await {
                Ok(read) => read,
                Err(_) => Err(StoreError {
                    setting: self.secret.setting,
                    why: format!("no answer within {:?}", self.refresh.timeout),
                }),
            };
        let parsed = read.and_then(|text| {
            (self.parse)(&text).map_err(|why| StoreError {
                setting: self.secret.setting,
                why: format!("the stored value is invalid: {why}"),
            })
        });
        let mut state = self.lock();
        match parsed {
            Ok(value) => {
                let value = Arc::new(value);
                state.value = Some((Arc::clone(&value), now));
                state.error = None;
                Ok(value)
            }
            Err(err) => {
                tracing::warn!(error = %err, kept = state.value.is_some(), "reading a secret failed");
                state.error = Some(err);
                state.kept()
            }
        }
    }
}

impl<T> State<T> {
    fn kept(&self) -> Result<Arc<T>, Unavailable> {
        match (&self.value, &self.error) {
            (Some((value, _)), _) => Ok(Arc::clone(value)),
            (None, Some(err)) => Err(Unavailable(err.clone())),
            (None, None) => Err(Unavailable(StoreError {
                setting: "secret",
                why: "not read yet".into(),
            })),
        }
    }
}
