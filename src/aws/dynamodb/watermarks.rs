//! `reconcile#watermark#<scope>`: how far scheduled reconciliation got, per object and
//! pass (the end of the last window read whole, or of the last page queued); and
//! `reconcile#run`, what the last scheduled run did.

use aws_sdk_dynamodb::types::AttributeValue;

use super::table::{Table, error, text_of, took};
use crate::adapter::AdapterError;
use crate::reconcile::run::LastRun;
use crate::reconcile::run::Watermarks;

pub(super) const WATERMARK: &str = "reconcile#watermark#";
/// The last scheduled run, as JSON in `run`.
pub(super) const LAST_RUN: &str = "reconcile#run";

pub struct DynamoWatermarks {
    table: Table,
}

on_table!(DynamoWatermarks);

impl Watermarks for DynamoWatermarks {
    async fn watermark(&self, scope: &str) -> Result<Option<String>, AdapterError> {
        let item = self.table.item(format!("{WATERMARK}{scope}")).await?;
        Ok(item.and_then(|i| text_of(&i, "at").cloned()))
    }

    /// Moves the watermark of `scope` to `at`, never back (a slower run that ends after a
    /// faster one cannot undo it).
    async fn set_watermark(&self, scope: &str, at: &str) -> Result<(), AdapterError> {
        let put = self
            .table
            .put(format!("{WATERMARK}{scope}"))
            .await
            .item("at", AttributeValue::S(at.to_owned()))
            .condition_expression("attribute_not_exists(id) OR #at < :at")
            .expression_attribute_names("#at", "at")
            .expression_attribute_values(":at", AttributeValue::S(at.to_owned()))
            .send()
            .await;
        took(put).map(drop)
    }

    async fn record_run(&self, run: &LastRun) -> Result<(), AdapterError> {
        let text = serde_json::to_string(run).map_err(|e| AdapterError::Refused(e.to_string()))?;
        self.table
            .put(LAST_RUN.into())
            .await
            .item("run", AttributeValue::S(text))
            .send()
            .await
            .map(drop)
            .map_err(error)
    }
}
