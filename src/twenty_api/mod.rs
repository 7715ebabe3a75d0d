//! Twenty's REST API (`../shared/twenty-rest-api.md`), one client for reconciliation (the
//! records, `records`) and for `twenty-admin` (the webhooks, `webhooks`). Requests are
//! paced under the workspace's limit; 429s, 5xx answers and broken connections are retried
//! with a growing back-off until the deadline (writes only on 429, which Twenty answers
//! before doing anything); no request starts after the deadline or runs past it. Errors
//! name the setting at fault (`TWENTY_API_KEY`, `TWENTY_API_URL`), never the key.

mod client;
pub(crate) mod records;
pub(crate) mod settings;
pub(crate) mod webhooks;

pub use client::{ApiError, ApiKey, TwentyApi};
pub use records::{Object, Page, Query};
pub use webhooks::{Webhook, WebhookApi, WebhookChange};
