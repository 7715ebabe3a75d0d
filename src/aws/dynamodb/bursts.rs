//! `burst#<rule>#<object>:<record>`: the bursts of a record's changes a rule with
//! `collapseSeconds` is gathering (`worker::collapse`), as JSON in `bursts`, with a
//! `version` each write moves on by one, so that two workers joining changes to one burst
//! cannot lose either's. Expires with the ledger's records.

use aws_sdk_dynamodb::types::AttributeValue;

use super::table::{KEEP, Table, number, number_of, text_of, took};
use crate::adapter::AdapterError;
use crate::clock::now;
use crate::worker::LedgerFuture;
use crate::worker::collapse::{BurstStore, Bursts};

const PREFIX: &str = "burst#";

/// Records' bursts in the worker's table.
pub struct DynamoBursts {
    table: Table,
}

on_table!(DynamoBursts);

impl BurstStore for DynamoBursts {
    fn load<'a>(&'a self, key: &'a str) -> LedgerFuture<'a, Option<(Bursts, u64)>> {
        Box::pin(async move {
            let Some(item) = self.table.live_item(format!("{PREFIX}{key}")).await? else {
                return Ok(None);
            };
            // Unreadable (another version's shape): replaced by the next change's burst.
            let bursts = text_of(&item, "bursts")
                .and_then(|text| serde_json::from_str(text).ok())
                .unwrap_or_default();
            Ok(Some((bursts, number_of(&item, "version"))))
        })
    }

    fn save<'a>(
        &'a self,
        key: &'a str,
        bursts: &'a Bursts,
        version: u64,
    ) -> LedgerFuture<'a, bool> {
        Box::pin(async move {
            let text =
                serde_json::to_string(bursts).map_err(|e| AdapterError::Refused(e.to_string()))?;
            let now = now();
            let put = self
                .table
                .put(format!("{PREFIX}{key}"))
                .await
                .item("bursts", AttributeValue::S(text))
                .item("version", number(version.into()))
                .item("expiration", number((now + KEEP).as_secs().into()))
                .condition_expression(
                    "attribute_not_exists(id) OR expiration < :now OR version = :before",
                )
                .expression_attribute_values(":now", number(now.as_secs().into()))
                .expression_attribute_values(":before", number(version.saturating_sub(1).into()))
                .send()
                .await;
            took(put)
        })
    }
}
