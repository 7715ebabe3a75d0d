//! How to reach Twenty's REST API, from the environment, for every command that does:
//! `TWENTY_API_URL`, and the API key in `TWENTY_API_KEY` (or `_PARAMETER`, `_SECRET_ID`).

use std::sync::Arc;

use super::{ApiKey, TwentyApi};
use crate::secrets::{Refresh, Rotating, SecretSetting, SecretSource, SecretStore};
use crate::settings::{ConfigError, invalid, whole_number};

pub(crate) const API_URL: &str = "TWENTY_API_URL";
pub(crate) const API_KEY: &str = "TWENTY_API_KEY";
const API_KEY_SETTING: SecretSetting = SecretSetting::named(
    API_KEY,
    "TWENTY_API_KEY_PARAMETER",
    "TWENTY_API_KEY_SECRET_ID",
);
pub(crate) const RATE: &str = "TWENTY_API_REQUESTS_PER_MINUTE";

#[derive(Debug, Clone)]
pub struct ApiSettings {
    /// Twenty's base URL, without a trailing slash.
    pub url: String,
    pub key: SecretSource,
    pub secret_refresh: Refresh,
    pub requests_per_minute: u32,
}

impl ApiSettings {
    pub fn from_lookup(lookup: &impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |name: &str| lookup(name).filter(|v| !v.is_empty());
        let url = get(API_URL).ok_or(ConfigError::Missing(API_URL))?;
        if !(url.starts_with("https://") || url.starts_with("http://")) {
            return Err(invalid(
                API_URL,
                "must be an http(s) URL, e.g. https://api.twenty.com",
            ));
        }
        let key = API_KEY_SETTING
            .source(lookup)?
            .ok_or(ConfigError::Missing(API_KEY))?;
        let rate = whole_number(RATE, get(RATE), 90, 1..=6_000, "requests a minute")?;
        Ok(Self {
            url: url.trim_end_matches('/').to_owned(),
            key,
            secret_refresh: Refresh::from_lookup(lookup)?,
            requests_per_minute: rate as u32,
        })
    }

    /// The client; a stored key is read from `store()` on the first request.
    pub fn client(
        &self,
        store: impl FnOnce() -> Arc<dyn SecretStore>,
    ) -> Result<TwentyApi, String> {
        let key = Rotating::from_source(&self.key, ApiKey::parse, self.secret_refresh, store)
            .map_err(|why| format!("{API_KEY}: {why}"))?;
        TwentyApi::new(&self.url, key, self.requests_per_minute)
    }
}
