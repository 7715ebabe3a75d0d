//! Step Functions, for state-machine targets: `StartExecution`, an existing execution of
//! the same name counting as started.

use std::time::Duration;

use aws_sdk_sfn::Client;

use super::lazy::{Source, one_client};
use super::sdk_error::adapter_error;
use crate::adapter::{AdapterError, AdapterFuture};
use crate::worker::targets::state_machine::Executions;

pub struct SfnExecutions {
    client: Source<Client>,
}

one_client!(SfnExecutions, Client);

impl Executions for SfnExecutions {
    fn start<'a>(
        &'a self,
        state_machine: &'a str,
        name: &'a str,
        input: &'a str,
        timeout: Duration,
    ) -> AdapterFuture<'a, ()> {
        Box::pin(async move {
            let call = self
                .client
                .get()
                .await
                .start_execution()
                .state_machine_arn(state_machine)
                .name(name)
                .input(input)
                .send();
            match tokio::time::timeout(timeout, call).await {
                Err(_) => Err(AdapterError::Unavailable(format!(
                    "Step Functions: no answer within {} ms",
                    timeout.as_millis()
                ))),
                Ok(Ok(_)) => Ok(()),
                // The same event started it before: the run is there, once.
                Ok(Err(e))
                    if e.as_service_error()
                        .is_some_and(|e| e.is_execution_already_exists()) =>
                {
                    Ok(())
                }
                Ok(Err(e)) => Err(adapter_error("Step Functions", &e)),
            }
        })
    }
}
