//! Step Functions targets: `StartExecution` with the envelope as the input. The execution
//! is named after the envelope's `id` and the rule, the same on every retry, so a repeat
//! never starts a second run (`ExecutionAlreadyExists` counts as done).

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::{
    Clients, DeliverFuture, Delivery, Kind, Target, TargetSpec, failed, is_arn, text, within,
};
use crate::adapter::{AdapterError, AdapterFuture};

/// `stateMachineArn`.
pub static KIND: Kind = Kind {
    key: "stateMachineArn",
    fields: &[],
    parse,
};

/// A rule's state machine.
#[derive(Debug, Clone)]
pub struct StateMachineTarget {
    pub arn: String,
}

fn parse(map: &Map<String, Value>) -> Result<Arc<dyn TargetSpec>, String> {
    let arn = text(map, "stateMachineArn");
    if !is_arn(arn, "states", "stateMachine:") {
        return Err("`stateMachineArn` must be a state machine's ARN (arn:aws:states:<region>:<account>:stateMachine:<name>)".to_owned());
    }
    Ok(Arc::new(StateMachineTarget {
        arn: arn.to_owned(),
    }))
}

impl TargetSpec for StateMachineTarget {
    fn build(&self, clients: &Clients) -> Result<Arc<dyn Target>, &'static str> {
        Ok(Arc::new(StateMachine {
            executions: clients.get::<dyn Executions>().ok_or("Step Functions")?,
            arn: self.arn.clone(),
        }))
    }
}

/// Step Functions takes inputs of at most 256 KiB.
pub const MAX_INPUT_BYTES: usize = 256 * 1024;
/// Execution names: at most 80 characters of `A-Z a-z 0-9 - _`.
const MAX_NAME: usize = 80;

/// Starts executions (`crate::aws::SfnExecutions`).
pub trait Executions: Send + Sync + 'static {
    /// Starts an execution of `state_machine` named `name` with `input`; Ok when one by
    /// that name exists already.
    fn start<'a>(
        &'a self,
        state_machine: &'a str,
        name: &'a str,
        input: &'a str,
        timeout: Duration,
    ) -> AdapterFuture<'a, ()>;
}

pub struct StateMachine {
    pub executions: Arc<dyn Executions>,
    pub arn: String,
}

impl Target for StateMachine {
    fn deliver(&self, delivery: Delivery) -> DeliverFuture<'_> {
        Box::pin(async move {
            let Some(input) = within(&delivery, MAX_INPUT_BYTES) else {
                return Err(crate::worker::error::HandlerError::permanent(
                    "the input is over Step Functions' 256 KiB (an envelope not queued as a claim check, or a transformed body)",
                ));
            };
            let name = execution_name(delivery.id(), &delivery.rule);
            self.executions
                .start(&self.arn, &name, input, delivery.timeout)
                .await
                .map_err(|e: AdapterError| failed("Step Functions", &e, delivery.retry_all_errors))
        })
    }
}

/// `<envelope id>-<rule hash>`, with characters Step Functions refuses made `_`, cut to fit:
/// the same for every retry of one event and rule, different for two rules.
pub fn execution_name(id: &str, rule: &str) -> String {
    let rule_hash = hex::encode(&Sha256::digest(rule.as_bytes())[..6]);
    let room = MAX_NAME - rule_hash.len() - 1;
    let mut name: String = id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .take(room)
        .collect();
    name.push('-');
    name.push_str(&rule_hash);
    name
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_execution_name_is_stable_valid_and_per_rule() {
        let a = execution_name("2f1c-0", "won-deals");
        assert_eq!(a, execution_name("2f1c-0", "won-deals"));
        assert_ne!(a, execution_name("2f1c-0", "other"));
        let long = execution_name(&format!("{}:é/x", "a".repeat(200)), "r");
        assert_eq!(long.len(), MAX_NAME);
        assert!(
            long.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        );
    }
}
