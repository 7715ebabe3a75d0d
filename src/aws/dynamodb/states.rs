//! `state#<rule>#<object>:<record>`: the last state of a record a rule with
//! `includePrevious` saw (`worker::previous`), as JSON in `state`, with its change's
//! `updatedAt` in `stateAt` (epoch nanoseconds) so that a write never replaces a later
//! state. Expires with the ledger's records.

use aws_sdk_dynamodb::types::AttributeValue;

use super::table::{KEEP, Table, number, text_of, took};
use crate::clock::now;
use crate::worker::LedgerFuture;
use crate::worker::previous::{RecordStates, State};

const PREFIX: &str = "state#";

/// Records' states in the worker's table.
pub struct DynamoStates {
    table: Table,
}

on_table!(DynamoStates);

impl RecordStates for DynamoStates {
    fn load<'a>(&'a self, key: &'a str) -> LedgerFuture<'a, Option<State>> {
        Box::pin(async move {
            let live = self.table.live_item(format!("{PREFIX}{key}")).await?;
            // A state this worker cannot read is one it never saw: the next change starts
            // afresh (`first_seen`) and writes it anew.
            Ok(live
                .as_ref()
                .and_then(|i| text_of(i, "state"))
                .and_then(|text| serde_json::from_str(text).ok()))
        })
    }

    fn save<'a>(&'a self, key: &'a str, state: &'a State) -> LedgerFuture<'a, bool> {
        Box::pin(async move {
            let text = serde_json::to_string(state)
                .map_err(|e| crate::adapter::AdapterError::Refused(e.to_string()))?;
            let now = now();
            let put = self
                .table
                .put(format!("{PREFIX}{key}"))
                .await
                .item("state", AttributeValue::S(text))
                .item("stateAt", number(state.current.at.into()))
                .item("expiration", number((now + KEEP).as_secs().into()))
                .condition_expression(
                    "attribute_not_exists(id) OR expiration < :now OR stateAt < :at \
                     OR attribute_not_exists(stateAt)",
                )
                .expression_attribute_values(":now", number(now.as_secs().into()))
                .expression_attribute_values(":at", number(state.current.at.into()))
                .send()
                .await;
            took(put)
        })
    }
}
