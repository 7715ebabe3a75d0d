//! Secret settings that may live in a store instead of the environment.
//!
//! Every secret setting `NAME` can be given in one of three ways: the value itself in
//! `NAME`, the name of an SSM Parameter Store parameter (a SecureString, read with
//! decryption) in `NAME_PARAMETER`, or a Secrets Manager secret id in `NAME_SECRET_ID`. A
//! stored value is read on first need, kept, and re-read (`cache`), so that a rotation takes
//! effect without a redeploy. The AWS side is `crate::aws::secret_store`.

#[cfg(feature = "aws")]
mod cache;
mod source;

#[cfg(feature = "aws")]
pub use cache::{Parse, Rotating, Unavailable};
pub use source::{
    Location, REFRESH_SECS, REREAD_FLOOR_SECS, Refresh, SecretSetting, SecretSource, SecretStore,
    StoreError, StoreRead, StoredSecret,
};
