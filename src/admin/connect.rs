//! `connect`: one webhook in Twenty for this Function URL, signing with the secret the
//! ingest function reads. Idempotent: a second run with the same arguments changes nothing.
//!
//! Order matters, because Twenty never retries a delivery: a new secret is stored before
//! Twenty signs with it; a webhook that exists keeps its secret, which is adopted into the
//! store (the ingest function re-reads it). If Twenty refuses the new webhook, the store goes
//! back to what it held.

use std::collections::BTreeSet;

use thiserror::Error;
use tokio::time::Instant;

use super::{SecretSlot, new_secret, stored_secrets};
use crate::adapter::AdapterError;
use crate::twenty_api::webhooks::normalise_url;
use crate::twenty_api::{ApiError, TwentyApi, Webhook, WebhookChange};

/// What the webhook should be.
#[derive(Debug, Clone)]
pub(crate) struct Wanted {
    /// The Function URL, with its `token` query when the stack uses one.
    pub webhook_url: String,
    /// `object.action` patterns, `*` allowed (`*.*` by default).
    pub operations: Vec<String>,
    /// Left as it is when not given.
    pub description: Option<String>,
}

/// What `connect` did.
#[derive(Debug)]
pub(crate) struct Connected {
    pub webhook: Webhook,
    pub outcome: Outcome,
    /// The store was written (a new secret, or Twenty's adopted).
    pub secret_stored: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    Created,
    /// Which fields were set.
    Updated(Vec<&'static str>),
    Unchanged,
}

/// What went wrong, naming the setting or the place; never a secret.
#[derive(Debug, Error)]
pub(crate) enum ConnectError {
    #[error("--webhook-url {0:?} is not an http(s) URL")]
    BadUrl(String),
    #[error(transparent)]
    Api(#[from] ApiError),
    #[error("the webhook secret could not be read from or written to {name}: {error}")]
    Store { name: String, error: AdapterError },
    #[error("{0}")]
    NoRandom(String),
    #[error("Twenty did not take the new webhook ({error}); {undone}")]
    NotCreated { error: ApiError, undone: String },
}

pub(crate) async fn connect<S: SecretSlot>(
    api: &TwentyApi,
    slot: &S,
    wanted: &Wanted,
    deadline: Instant,
) -> Result<Connected, ConnectError> {
    let target = normalise_url(&wanted.webhook_url)
        .ok_or_else(|| ConnectError::BadUrl(wanted.webhook_url.clone()))?;
    let store_error = |error| ConnectError::Store {
        name: slot.name().to_owned(),
        error,
    };
    let (kind, found) = api.webhook_for(&target, deadline).await?;
    let stored = slot.current().await.map_err(store_error)?;
    let Some(hook) = found else {
        return create(api, slot, wanted, target, stored, kind, deadline).await;
    };

    // The webhook exists: its secret is what Twenty signs with; the store must hold it.
    let mut change = WebhookChange::default();
    let mut set = Vec::new();
    let secret = match hook.secret() {
        Some(secret) => secret.to_owned(),
        None => {
            let fresh = new_secret().map_err(ConnectError::NoRandom)?;
            change.secret = Some(fresh.clone());
            set.push("secret");
            fresh
        }
    };
    // During a rotation the store holds `new,old`: either one being Twenty's is enough.
    let holds = stored
        .as_deref()
        .is_some_and(|s| stored_secrets(s).any(|one| one == secret));
    if !holds {
        slot.write(&secret).await.map_err(store_error)?;
    }
    if hook.target_url != target {
        change.target_url = Some(target);
        set.push("targetUrl");
    }
    let as_set = |ops: &[String]| ops.iter().cloned().collect::<BTreeSet<_>>();
    if as_set(&hook.operations) != as_set(&wanted.operations) {
        change.operations = Some(wanted.operations.clone());
        set.push("operations");
    }
    if let Some(description) = &wanted.description
        && hook.description.as_ref() != Some(description)
    {
        change.description = Some(description.clone());
        set.push("description");
    }
    if change.is_empty() {
        return Ok(Connected {
            webhook: hook,
            outcome: Outcome::Unchanged,
            secret_stored: !holds,
        });
    }
    let webhook = api
        .update_webhook(kind, &hook.id, &change, deadline)
        .await?;
    Ok(Connected {
        webhook,
        outcome: Outcome::Updated(set),
        secret_stored: !holds,
    })
}

/// A new webhook: a fresh secret, stored first, then given to Twenty.
async fn create<S: SecretSlot>(
    api: &TwentyApi,
    slot: &S,
    wanted: &Wanted,
    target: String,
    stored: Option<String>,
    kind: crate::twenty_api::WebhookApi,
    deadline: Instant,
) -> Result<Connected, ConnectError> {
    let secret = new_secret().map_err(ConnectError::NoRandom)?;
    slot.write(&secret)
        .await
        .map_err(|error| ConnectError::Store {
            name: slot.name().to_owned(),
            error,
        })?;
    let change = WebhookChange {
        target_url: Some(target),
        operations: Some(wanted.operations.clone()),
        description: Some(
            wanted
                .description
                .clone()
                .unwrap_or_else(|| "twenty-webhook (set up by twenty-admin)".to_owned()),
        ),
        secret: Some(secret),
    };
    match api.create_webhook(kind, &change, deadline).await {
        Ok(webhook) => Ok(Connected {
            webhook,
            outcome: Outcome::Created,
            secret_stored: true,
        }),
        // No answer: Twenty may have it. Undoing the store could refuse its deliveries.
        Err(error @ (ApiError::Unreachable(_) | ApiError::OutOfTime { .. })) => {
            Err(ConnectError::NotCreated {
                error,
                undone: format!(
                    "the new secret stays in {}: run connect again, it finds the webhook if Twenty made it",
                    slot.name()
                ),
            })
        }
        Err(error) => {
            let undone = match stored {
                Some(previous) => slot.write(&previous).await,
                None => slot.remove().await,
            };
            let undone = match undone {
                Ok(()) => format!("{} holds what it held before", slot.name()),
                Err(e) => format!(
                    "{} could not be put back ({e}): it holds an unused secret",
                    slot.name()
                ),
            };
            Err(ConnectError::NotCreated { error, undone })
        }
    }
}
