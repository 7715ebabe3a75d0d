//! Secrets from SSM Parameter Store (decrypted) or Secrets Manager (`AWSCURRENT`).

use aws_config::SdkConfig;

use super::lazy::{LazySdk, Source};
use super::sdk_error::adapter_error;
use crate::adapter::AdapterError;
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
        match self.current(&secret.location).await {
            Ok(Some(value)) => Ok(value),
            Ok(None) => Err(fail(match secret.location {
                Location::Parameter(_) => "SSM: the parameter does not exist".into(),
                Location::SecretId(_) => {
                    "Secrets Manager: the secret does not exist or holds no text".into()
                }
            })),
            Err(e) => Err(fail(e.to_string())),
        }
    }
}

impl AwsSecretStore {
    /// Writes `value` where `location` says: an SSM SecureString (made or overwritten), or
    /// a Secrets Manager secret's new current value (the secret made if it does not exist).
    pub async fn write(&self, location: &Location, value: &str) -> Result<(), AdapterError> {
        match location {
            Location::Parameter(name) => self
                .ssm
                .get()
                .await
                .put_parameter()
                .name(name)
                .value(value)
                .r#type(aws_sdk_ssm::types::ParameterType::SecureString)
                .overwrite(true)
                .send()
                .await
                .map(drop)
                .map_err(|e| adapter_error("SSM", &e)),
            Location::SecretId(id) => {
                let client = self.secrets_manager.get().await;
                let put = client
                    .put_secret_value()
                    .secret_id(id)
                    .secret_string(value)
                    .send()
                    .await;
                match put {
                    Ok(_) => Ok(()),
                    Err(e)
                        if e.as_service_error()
                            .is_some_and(|e| e.is_resource_not_found_exception()) =>
                    {
                        client
                            .create_secret()
                            .name(id)
                            .secret_string(value)
                            .send()
                            .await
                            .map(drop)
                            .map_err(|e| adapter_error("Secrets Manager", &e))
                    }
                    Err(e) => Err(adapter_error("Secrets Manager", &e)),
                }
            }
        }
    }

    /// Reads what `location` holds now, None when it does not exist.
    pub async fn current(&self, location: &Location) -> Result<Option<String>, AdapterError> {
        match location {
            Location::Parameter(name) => {
                let got = self
                    .ssm
                    .get()
                    .await
                    .get_parameter()
                    .name(name)
                    .with_decryption(true)
                    .send()
                    .await;
                match got {
                    Ok(out) => Ok(out.parameter.and_then(|p| p.value)),
                    Err(e)
                        if e.as_service_error()
                            .is_some_and(|e| e.is_parameter_not_found()) =>
                    {
                        Ok(None)
                    }
                    Err(e) => Err(adapter_error("SSM", &e)),
                }
            }
            Location::SecretId(id) => {
                let got = self
                    .secrets_manager
                    .get()
                    .await
                    .get_secret_value()
                    .secret_id(id)
                    .send()
                    .await;
                match got {
                    Ok(out) => Ok(out.secret_string),
                    Err(e)
                        if e.as_service_error()
                            .is_some_and(|e| e.is_resource_not_found_exception()) =>
                    {
                        Ok(None)
                    }
                    Err(e) => Err(adapter_error("Secrets Manager", &e)),
                }
            }
        }
    }

    /// Removes what `location` holds (a parameter deleted; a secret's value cannot be
    /// taken back: it is deleted with a 7-day recovery window).
    pub async fn remove(&self, location: &Location) -> Result<(), AdapterError> {
        match location {
            Location::Parameter(name) => self
                .ssm
                .get()
                .await
                .delete_parameter()
                .name(name)
                .send()
                .await
                .map(drop)
                .map_err(|e| adapter_error("SSM", &e)),
            Location::SecretId(id) => self
                .secrets_manager
                .get()
                .await
                .delete_secret()
                .secret_id(id)
                .recovery_window_in_days(7)
                .send()
                .await
                .map(drop)
                .map_err(|e| adapter_error("Secrets Manager", &e)),
        }
    }
}

impl SecretStore for AwsSecretStore {
    fn read<'a>(&'a self, secret: &'a StoredSecret) -> StoreRead<'a> {
        Box::pin(self.read_stored(secret))
    }
}

/// One parameter or secret, as `twenty-admin` writes the webhook secret.
#[cfg(feature = "admin")]
pub(crate) struct StoreSlot {
    pub store: AwsSecretStore,
    pub location: Location,
}

#[cfg(feature = "admin")]
impl crate::admin::SecretSlot for StoreSlot {
    async fn current(&self) -> Result<Option<String>, AdapterError> {
        self.store.current(&self.location).await
    }

    async fn write(&self, value: &str) -> Result<(), AdapterError> {
        self.store.write(&self.location, value).await
    }

    async fn remove(&self) -> Result<(), AdapterError> {
        self.store.remove(&self.location).await
    }

    fn name(&self) -> &str {
        match &self.location {
            Location::Parameter(name) | Location::SecretId(name) => name,
        }
    }
}
