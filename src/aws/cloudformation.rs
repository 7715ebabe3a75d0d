//! CloudFormation, for `twenty-admin --stack`: a deployed stack's outputs.

use std::collections::BTreeMap;

use aws_sdk_cloudformation::Client;

use super::lazy::{Source, one_client};
use super::sdk_error::adapter_error;
use crate::adapter::AdapterError;

pub(crate) struct StackOutputs {
    client: Source<Client>,
}

one_client!(StackOutputs, Client);

impl StackOutputs {
    /// The outputs of stack `name`, by key. A stack that does not exist is `NotFound`.
    pub(crate) async fn read(&self, name: &str) -> Result<BTreeMap<String, String>, AdapterError> {
        let out = self
            .client
            .get()
            .await
            .describe_stacks()
            .stack_name(name)
            .send()
            .await
            .map_err(|e| {
                // CloudFormation says "does not exist" as a validation error.
                let missing = e
                    .as_service_error()
                    .and_then(|e| aws_sdk_cloudformation::error::ProvideErrorMetadata::message(e))
                    .is_some_and(|m| m.contains("does not exist"));
                if missing {
                    AdapterError::NotFound(format!("stack {name:?} does not exist here"))
                } else {
                    adapter_error("CloudFormation", &e)
                }
            })?;
        let stack = out
            .stacks()
            .first()
            .ok_or_else(|| AdapterError::NotFound(format!("stack {name:?} does not exist here")))?;
        Ok(stack
            .outputs()
            .iter()
            .filter_map(|o| Some((o.output_key()?.to_owned(), o.output_value()?.to_owned())))
            .collect())
    }
}
