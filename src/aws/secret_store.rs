//! Secrets from SSM Parameter Store (decrypted) or Secrets Manager (`AWSCURRENT`).

use aws_config::SdkConfig;
use aws_sdk_sqs::error::DisplayErrorContext;

use super::lazy::{LazySdk, Source};
use crate::secrets::{Location, SecretStore, StoreError, StoreRead, StoredSecret};

/// Both clients are made on first need, from the shared SDK configuration.
pub struct AwsSecretStore {
    ssm: Source<aws_sdk_ssm::Client>,
    secrets_manager: Source<aws_sdk_secretsmanager::Client>,
}

impl AwsSecretStore {
    pub fn with_sdk_config(shared: &SdkConfig) -> Self {
        Self {
            ssm: Source::Ready(aws_sdk_ssm::Client::new(shared)),
            secrets_manager: Source::Ready(aws_sdk_secretsmanager::Client::new(shared)),
        }
    }

    pub fn lazy(sdk: LazySdk) -> Self {
        Self {
            ssm: Source::lazy(sdk.clone(), |c: &SdkConfig| aws_sdk_ssm::Client::new(c)),
            secrets_manager: Source::lazy(sdk, |c: &SdkConfig| {
                aws_sdk_secretsmanager::Client::new(c)
            }),
        }
    }

    async fn read_stored(&self, secret: &StoredSecret) -> Result<String, StoreError> {
        let fail = |why: String| StoreError {
            setting: secret.setting,
            why,
        };
        match &secret.location {
            Location::Parameter(name) => {
                let out = self
                    .ssm
                    .get()
                    .await
                    .get_parameter()
                    .name(name)
                    .with_decryption(true)
                    .send()
                    .await
                    .map_err(|e| fail(format!("SSM: {}", DisplayErrorContext(&e))))?;
                out.parameter
                    .and_then(|p| p.value)
                    .ok_or_else(|| fail("SSM returned no value".into()))
            }
            Location::SecretId(id) => {
                let out = self
                    .secrets_manager
                    .get()
                    .await
                    .get_secret_value()
                    .secret_id(id)
                    .send()
                    .await
                    .map_err(|e| fail(format!("Secrets Manager: {}", DisplayErrorContext(&e))))?;
                out.secret_string
                    .ok_or_else(|| fail("the secret has no string value".into()))
            }
        }
    }
}

impl SecretStore for AwsSecretStore {
    fn read<'a>(&'a self, secret: &'a StoredSecret) -> StoreRead<'a> {
        Box::pin(self.read_stored(secret))
    }
}
