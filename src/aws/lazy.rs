//! AWS clients made on first need. Building an SDK client reads the system's TLS roots
//! (milliseconds); a worker invocation that needs no AWS call, or a cold start, should not
//! pay for it.

use std::sync::Arc;
use std::time::Duration;

use aws_config::SdkConfig;
use tokio::sync::OnceCell;

/// The SDK's shared configuration (region, credentials, endpoints, its HTTP client), loaded
/// from the environment the first time a client needs it, once for all of them.
#[derive(Clone, Default)]
pub struct LazySdk(Arc<OnceCell<SdkConfig>>);

impl LazySdk {
    /// One given ready: for local servers and tests.
    pub fn ready(config: SdkConfig) -> Self {
        Self(Arc::new(OnceCell::new_with(Some(config))))
    }

    /// Every call made with it is bounded in time (a hung service must not hold a
    /// function past its deadline); retries are the SDK's standard ones within that.
    pub async fn get(&self) -> &SdkConfig {
        self.0
            .get_or_init(|| {
                aws_config::from_env()
                    .timeout_config(
                        aws_config::timeout::TimeoutConfig::builder()
                            .connect_timeout(Duration::from_secs(2))
                            .operation_attempt_timeout(Duration::from_secs(5))
                            .operation_timeout(Duration::from_secs(10))
                            .build(),
                    )
                    .load()
            })
            .await
    }
}

/// A client given ready, or made from a `LazySdk` on first use.
#[derive(Clone)]
pub(crate) enum Source<C> {
    Ready(C),
    Lazy {
        sdk: LazySdk,
        make: fn(&SdkConfig) -> C,
        cell: OnceCell<C>,
    },
}

impl<C> Source<C> {
    pub(crate) fn lazy(sdk: LazySdk, make: fn(&SdkConfig) -> C) -> Self {
        Self::Lazy {
            sdk,
            make,
            cell: OnceCell::new(),
        }
    }

    pub(crate) async fn get(&self) -> &C {
        match self {
            Self::Ready(client) => client,
            Self::Lazy { sdk, make, cell } => {
                cell.get_or_init(|| async { make(sdk.get().await) }).await
            }
        }
    }
}

/// `with_sdk_config` and `lazy` for an adapter that holds one client alone
/// (`client: Source<$client>`).
macro_rules! one_client {
    ($adapter:ident, $client:ty) => {
        // Public for the adapters a binary or a test names; the others are crate-internal,
        // and not every build uses both constructors.
        #[allow(unreachable_pub, dead_code)]
        impl $adapter {
            pub fn with_sdk_config(shared: &aws_config::SdkConfig) -> Self {
                Self {
                    client: $crate::aws::lazy::Source::Ready(<$client>::new(shared)),
                }
            }

            /// The client is made on the first call.
            pub fn lazy(sdk: $crate::aws::lazy::LazySdk) -> Self {
                Self {
                    client: $crate::aws::lazy::Source::lazy(sdk, <$client>::new),
                }
            }
        }
    };
}
pub(crate) use one_client;
