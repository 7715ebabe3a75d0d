//! `rotate-secret`: a new webhook secret with no delivery refused on the way (Twenty never
//! retries one). The store first holds `new,old` (the ingest function accepts either);
//! after the propagation time every running ingest function has re-read it; only then does
//! Twenty sign with the new one; after the overlap, the store holds the new one alone
//! (`--finish` does that step later, for `--no-wait`).

use std::time::Duration;

use thiserror::Error;
use tokio::time::Instant;

use super::{SecretSlot, new_secret, stored_secrets};
use crate::adapter::AdapterError;
use crate::twenty_api::{ApiError, TwentyApi, WebhookChange};

/// How long each step waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Waits {
    /// After the store holds both, before Twenty is given the new one: longer than the
    /// ingest function's `SECRET_REFRESH_SECS`.
    pub propagation: Duration,
    /// After Twenty signs with the new one, before the old one is dropped; None leaves
    /// both (finish later).
    pub overlap: Option<Duration>,
}

/// Where a rotation ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Rotated {
    /// Twenty signs with the new secret; the store holds it alone.
    Done,
    /// Twenty signs with the new secret; the store holds both until `--finish`.
    BothKept,
}

#[derive(Debug, Error)]
pub(crate) enum RotateError {
    #[error("no webhook in Twenty targets {0}: run connect first")]
    NoWebhook(String),
    #[error(transparent)]
    Api(#[from] ApiError),
    #[error("{name}: {error}")]
    Store { name: String, error: AdapterError },
    #[error("{0}")]
    NoRandom(String),
    #[error("Twenty did not take the new secret ({error}); {undone}")]
    NotTaken { error: ApiError, undone: String },
    #[error(
        "{0} does not hold `new,old` with Twenty's secret first: nothing to finish (rotate-secret starts a rotation)"
    )]
    NothingToFinish(String),
}

/// Rotates the secret of the webhook that targets `webhook_url`. `progress` is told each
/// step as it starts.
pub(crate) async fn rotate<S: SecretSlot>(
    api: &TwentyApi,
    slot: &S,
    webhook_url: &str,
    waits: Waits,
    mut progress: impl FnMut(&str),
) -> Result<Rotated, RotateError> {
    let deadline = || Instant::now() + Duration::from_secs(120);
    let store_error = |error| RotateError::Store {
        name: slot.name().to_owned(),
        error,
    };
    let (kind, found) = api.webhook_for(webhook_url, deadline()).await?;
    let hook = found.ok_or_else(|| RotateError::NoWebhook(webhook_url.to_owned()))?;
    let before = slot.current().await.map_err(store_error)?;
    // What Twenty signs with now, or else what the store holds first.
    let old = hook
        .secret()
        .map(str::to_owned)
        .or_else(|| {
            before
                .as_deref()
                .and_then(|s| stored_secrets(s).next())
                .map(str::to_owned)
        })
        .unwrap_or_default();
    let new = new_secret().map_err(RotateError::NoRandom)?;
    progress("the store holds the new secret and the old one");
    let both = if old.is_empty() {
        new.clone()
    } else {
        format!("{new},{old}")
    };
    slot.write(&both).await.map_err(store_error)?;
    progress(&format!(
        "waiting {} s for every ingest function to re-read it",
        waits.propagation.as_secs()
    ));
    tokio::time::sleep(waits.propagation).await;
    progress("Twenty is given the new secret");
    let change = WebhookChange {
        secret: Some(new.clone()),
        ..Default::default()
    };
    if let Err(error) = api
        .update_webhook(kind, &hook.id, &change, deadline())
        .await
    {
        // Twenty still signs with the old one, which the store still holds: put it back
        // as it was. (No answer at all: Twenty may have the new one; keep both.)
        let undone = match &error {
            ApiError::Unreachable(_) | ApiError::OutOfTime { .. } => format!(
                "{} keeps both secrets, so deliveries signed with either are accepted; run rotate-secret again",
                slot.name()
            ),
            _ => {
                let back = match &before {
                    Some(previous) => slot.write(previous).await,
                    None => slot.remove().await,
                };
                match back {
                    Ok(()) => format!("{} holds what it held before", slot.name()),
                    Err(e) => format!(
                        "{} could not be put back ({e}); it holds both secrets, which is safe",
                        slot.name()
                    ),
                }
            }
        };
        return Err(RotateError::NotTaken { error, undone });
    }
    let Some(overlap) = waits.overlap else {
        return Ok(Rotated::BothKept);
    };
    progress(&format!(
        "waiting {} s for deliveries signed with the old secret to arrive",
        overlap.as_secs()
    ));
    tokio::time::sleep(overlap).await;
    slot.write(&new).await.map_err(store_error)?;
    progress("the store holds the new secret alone");
    Ok(Rotated::Done)
}

/// Ends a rotation left with both secrets: the store keeps Twenty's alone.
pub(crate) async fn finish<S: SecretSlot>(
    api: &TwentyApi,
    slot: &S,
    webhook_url: &str,
) -> Result<(), RotateError> {
    let deadline = Instant::now() + Duration::from_secs(120);
    let store_error = |error| RotateError::Store {
        name: slot.name().to_owned(),
        error,
    };
    let (_, found) = api.webhook_for(webhook_url, deadline).await?;
    let hook = found.ok_or_else(|| RotateError::NoWebhook(webhook_url.to_owned()))?;
    let stored = slot
        .current()
        .await
        .map_err(store_error)?
        .unwrap_or_default();
    let mut parts = stored_secrets(&stored);
    let (first, rest) = (parts.next().unwrap_or(""), parts.next());
    match (hook.secret(), rest) {
        (Some(twenty), Some(_)) if twenty == first => slot.write(first).await.map_err(store_error),
        _ => Err(RotateError::NothingToFinish(slot.name().to_owned())),
    }
}
