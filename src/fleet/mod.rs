//! Fleet-wide circuits: share breaker state across processes (Lambda sandboxes) through a
//! store the fleet already runs.
//!
//! Work in progress: only the store interface is here so far.

#[cfg(feature = "fleet-dynamodb")]
#[cfg_attr(docsrs, doc(cfg(feature = "fleet-dynamodb")))]
pub mod dynamodb;
#[cfg(feature = "fleet-redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "fleet-redis")))]
pub mod redis;
mod store;

#[cfg(feature = "fleet-dynamodb")]
pub use self::dynamodb::DynamoDbStore;
#[cfg(feature = "fleet-redis")]
pub use self::redis::{RedisStore, RedisStoreBuilder};
pub use store::{CasOutcome, SharedState, StoreError, StoreErrorKind, StoreFuture, StoredRecord};
