//! `twenty-admin`: sets Twenty itself up through its webhook API, so that connecting a
//! workspace is one command.
//!
//! - `connect`: finds the webhook whose target is the Function URL (compared as Twenty
//!   stores URLs, with or without its `token`) or makes it, never a second one; adopts the
//!   secret Twenty signs with, or for a new webhook makes one and stores it before Twenty
//!   has it; sets the operations; ends with a signed test delivery. Run twice, it changes
//!   nothing.
//! - `rotate-secret`: a new secret with no delivery refused: the store holds `new,old`,
//!   then Twenty gets the new one, then the store drops the old one (`--finish` later).
//! - `send-test`: a signed sample event to the Function URL with the stored secret.
//! - `status`: the whole chain on one screen (`status`).
//!
//! Each takes the Function URL and the secret's place, or `--stack` to read them from the
//! stack's outputs (`stack`).
//!
//! Plain steps over two adapters: `crate::twenty_api` (Twenty's REST API) and a
//! `SecretSlot` (where the ingest function reads its secret; `crate::aws::AwsSecretStore`).

pub mod cli;
pub(crate) mod connect;
pub(crate) mod rotate;
pub(crate) mod sample;
pub(crate) mod stack;
pub(crate) mod status;

use std::future::Future;

use crate::adapter::AdapterError;

/// Where the webhook secret is kept for the ingest function.
pub trait SecretSlot: Send + Sync {
    /// What it holds now; None when it does not exist yet.
    fn current(&self) -> impl Future<Output = Result<Option<String>, AdapterError>> + Send;
    fn write(&self, value: &str) -> impl Future<Output = Result<(), AdapterError>> + Send;
    /// Removes it (a value stored by a step that is being undone).
    fn remove(&self) -> impl Future<Output = Result<(), AdapterError>> + Send;
    /// The parameter's or secret's name, for messages.
    fn name(&self) -> &str;
}

/// The secrets a stored value holds, newest first: one, or `new,old` during a rotation
/// (as the ingest function reads it). Twenty signs with the first.
pub fn stored_secrets(value: &str) -> impl Iterator<Item = &str> {
    value.split(',').map(str::trim)
}

/// A fresh webhook secret: 32 random bytes as 64 hex characters, as Twenty makes them.
pub fn new_secret() -> Result<String, String> {
    let mut bytes = [0u8; 32];
    getrandom::getrandom(&mut bytes).map_err(|e| format!("no random bytes: {e}"))?;
    Ok(hex::encode(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stored_value_holds_one_secret_or_new_then_old() {
        assert_eq!(stored_secrets("only").collect::<Vec<_>>(), ["only"]);
        assert_eq!(
            stored_secrets("new, old").collect::<Vec<_>>(),
            ["new", "old"]
        );
    }
}
