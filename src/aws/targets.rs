//! The clients the worker's targets call, one per AWS service, each made on its first call;
//! and the store HTTP rules' credentials are read from.

use std::sync::Arc;

use super::eventbridge::EventBridgePublisher;
use super::lazy::LazySdk;
use super::secret_store::AwsSecretStore;
use super::sqs::SqsSender;
use super::step_functions::SfnExecutions;
use crate::secrets::Refresh;
use crate::worker::credentials::Credentials;
use crate::worker::targets::Clients;
use crate::worker::targets::event_bus::Batcher;
use crate::worker::targets::queue::QueueSender;
use crate::worker::targets::state_machine::Executions;

/// Step Functions, EventBridge (one batcher for every bus: a `PutEvents` call carries
/// entries for several) and SQS; credentials from SSM and Secrets Manager, re-read as
/// `refresh` says.
pub fn target_clients(sdk: &LazySdk, refresh: Refresh) -> Clients {
    let executions: Arc<dyn Executions> = Arc::new(SfnExecutions::lazy(sdk.clone()));
    let publisher = Arc::new(EventBridgePublisher::lazy(sdk.clone()));
    let queues: Arc<dyn QueueSender> = Arc::new(SqsSender::lazy(sdk.clone()));
    Clients::default()
        .with(executions)
        .with(Arc::new(Batcher::new(publisher)))
        .with(queues)
        .with(Arc::new(Credentials::new(
            Arc::new(AwsSecretStore::lazy(sdk.clone())),
            refresh,
        )))
}
