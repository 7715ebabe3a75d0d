//! The worker's DynamoDB table, one module per role it plays: the idempotency ledger
//! (`ledger`), the changes every handler has taken (`seen`) and reconciliation's progress
//! (`watermarks`), the destinations' breaker and rate-limit state (`destinations`), and
//! the records' last states for `includePrevious` (`states`) and their bursts of changes
//! for `collapseSeconds` (`bursts`).
//! One table, partition key `id` (string), TTL on `expiration`: each role keeps its items
//! under a prefix of its own.

/// `with_sdk_config` and `lazy` for a role that holds the table alone (`table: Table`).
macro_rules! on_table {
    ($role:ident) => {
        // Public for the roles a binary or a test names; the others are crate-internal,
        // and not every build uses both constructors.
        #[allow(unreachable_pub, dead_code)]
        impl $role {
            pub fn with_sdk_config(shared: &aws_config::SdkConfig, table: &str) -> Self {
                Self {
                    table: $crate::aws::dynamodb::table::Table::ready(shared, table),
                }
            }

            /// The client is made when the table is first read or written.
            pub fn lazy(sdk: crate::aws::lazy::LazySdk, table: &str) -> Self {
                Self {
                    table: $crate::aws::dynamodb::table::Table::lazy(sdk, table),
                }
            }
        }
    };
}

mod bursts;
mod destinations;
mod ledger;
#[cfg(feature = "admin")]
mod overview;
mod seen;
mod states;
mod table;
#[cfg(feature = "reconcile")]
mod watermarks;

pub use bursts::DynamoBursts;
pub use destinations::DynamoDestinations;
pub use ledger::DynamoLedger;
#[cfg(feature = "admin")]
pub(crate) use overview::{OpenBreaker, Reconciliation, TableOverview};
#[cfg(feature = "reconcile")]
pub use seen::DynamoSeen;
pub use states::DynamoStates;
#[cfg(feature = "reconcile")]
pub use watermarks::DynamoWatermarks;
