//! Which source a secret setting has: its value, or where it is kept and how often it is
//! read again.

use std::time::Duration;

use crate::settings::{ConfigError, whole_number};

/// When a stored secret is read again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refresh {
    /// A value older than this is re-read in the background on its next use.
    pub every: Duration,
    /// No two reads closer than this: bounds the calls a flood can cause.
    pub floor: Duration,
    /// The longest one read may take.
    pub timeout: Duration,
}

pub const REFRESH_SECS: &str = "SECRET_REFRESH_SECS";
pub const REREAD_FLOOR_SECS: &str = "SECRET_REREAD_FLOOR_SECS";

impl Refresh {
    /// `SECRET_REFRESH_SECS` (default 300) and `SECRET_REREAD_FLOOR_SECS` (default 5).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |name: &str| lookup(name).filter(|v| !v.is_empty());
        let every = whole_number(REFRESH_SECS, get(REFRESH_SECS), 300, 1..=86_400, "seconds")?;
        let floor = whole_number(
            REREAD_FLOOR_SECS,
            get(REREAD_FLOOR_SECS),
            5,
            1..=3_600,
            "seconds",
        )?;
        Ok(Self {
            every: Duration::from_secs(every),
            floor: Duration::from_secs(floor),
            timeout: Duration::from_secs(3),
        })
    }
}

impl Default for Refresh {
    fn default() -> Self {
        Self {
            every: Duration::from_secs(300),
            floor: Duration::from_secs(5),
            timeout: Duration::from_secs(3),
        }
    }
}

/// Where a secret setting's value comes from. Debug never shows a value.
#[derive(Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// Given in the environment.
    Value(String),
    Stored(StoredSecret),
}

/// A secret kept in a store, named by the setting that points at it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSecret {
    /// The variable that named it (e.g. `TWENTY_WEBHOOK_SECRET_PARAMETER`), for messages.
    pub setting: &'static str,
    pub location: Location,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Location {
    /// An SSM parameter's name or ARN.
    Parameter(String),
    /// A Secrets Manager secret's name or ARN.
    SecretId(String),
}

impl std::fmt::Debug for SecretSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Value(_) => f.write_str("Value(<redacted>)"),
            Self::Stored(stored) => stored.fmt(f),
        }
    }
}

/// The three variables of one secret setting.
#[derive(Debug, Clone, Copy)]
pub struct SecretSetting {
    pub value: &'static str,
    pub parameter: &'static str,
    pub secret_id: &'static str,
}

impl SecretSetting {
    /// `NAME`, `NAME_PARAMETER` and `NAME_SECRET_ID`.
    pub const fn named(
        value: &'static str,
        parameter: &'static str,
        secret_id: &'static str,
    ) -> Self {
        Self {
            value,
            parameter,
            secret_id,
        }
    }

    /// Which source the environment gives, if any; more than one is refused, since which
    /// was meant cannot be known. An empty value counts as unset.
    pub fn source(
        &self,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<SecretSource>, ConfigError> {
        let get = |name: &str| lookup(name).filter(|v| !v.is_empty());
        let given = [
            get(self.value).map(SecretSource::Value),
            get(self.parameter).map(|p| self.stored(self.parameter, Location::Parameter(p))),
            get(self.secret_id).map(|s| self.stored(self.secret_id, Location::SecretId(s))),
        ];
        let mut given = given.into_iter().flatten();
        let first = given.next();
        if given.next().is_some() {
            return Err(ConfigError::Invalid {
                name: self.value,
                why: format!(
                    "give only one of {}, {} and {}",
                    self.value, self.parameter, self.secret_id
                ),
            });
        }
        Ok(first)
    }

    fn stored(&self, setting: &'static str, location: Location) -> SecretSource {
        SecretSource::Stored(StoredSecret { setting, location })
    }
}

/// Why a store could not give a secret. Never holds the value.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("{setting}: {why}")]
pub struct StoreError {
    pub setting: &'static str,
    pub why: String,
}

/// What a store read returns; boxed so that the store can be a trait object (reads are
/// rare: one per refresh).
pub type StoreRead<'a> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<String, StoreError>> + Send + 'a>>;

/// Reads a stored secret's current value (an SSM SecureString decrypted, or a Secrets
/// Manager secret's `AWSCURRENT` string).
pub trait SecretStore: Send + Sync + 'static {
    fn read<'a>(&'a self, secret: &'a StoredSecret) -> StoreRead<'a>;
}

#[cfg(test)]
mod tests {
    use super::*;

    const SETTING: SecretSetting = SecretSetting {
        value: "S",
        parameter: "S_PARAMETER",
        secret_id: "S_SECRET_ID",
    };

    fn source(pairs: &[(&str, &str)]) -> Result<Option<SecretSource>, ConfigError> {
        SETTING.source(|k| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        })
    }

    #[test]
    fn one_of_three_sources() {
        assert_eq!(source(&[]).unwrap(), None);
        assert_eq!(
            source(&[("S", "v")]).unwrap(),
            Some(SecretSource::Value("v".into()))
        );
        assert_eq!(
            source(&[("S_PARAMETER", "/twenty/secret"), ("S", "")]).unwrap(),
            Some(SecretSource::Stored(StoredSecret {
                setting: "S_PARAMETER",
                location: Location::Parameter("/twenty/secret".into())
            }))
        );
        assert_eq!(
            source(&[("S_SECRET_ID", "twenty")]).unwrap(),
            Some(SecretSource::Stored(StoredSecret {
                setting: "S_SECRET_ID",
                location: Location::SecretId("twenty".into())
            }))
        );
    }

    #[test]
    fn two_sources_are_refused_without_the_value() {
        let err = source(&[("S", "hunter2"), ("S_SECRET_ID", "x")]).unwrap_err();
        assert!(matches!(err, ConfigError::Invalid { name: "S", .. }));
        assert!(!err.to_string().contains("hunter2"));
        assert!(!format!("{:?}", SecretSource::Value("hunter2".into())).contains("hunter2"));
    }
}
