//! Fleet-wide circuits: share breaker state across processes (AWS Lambda sandboxes,
//! containers) through a store the fleet already runs.
//!
//! Each process keeps its own [`Circuit`](crate::Circuit), which decides every admission
//! locally with no network I/O. A [`FleetSync`] per circuit exchanges state with a
//! [`SharedState`] store off the request path: it publishes local trips and window counts
//! by compare-and-set, adopts the fleet's Open when the fleet's evidence is strong enough
//! (a quorum of instances, or a fleet-wide volume of failures from several instances),
//! leases the half-open probes fleet-wide, and falls back to local-only when the store
//! fails. See the README section "Fleet-wide circuits" for the design and its numbers.
//!
//! A whole [`CircuitBreakerRegistry`](crate::CircuitBreakerRegistry) shares every circuit
//! in one line, with one task and one batched read per round:
//! [`share_with_fleet`](crate::CircuitBreakerRegistry::share_with_fleet) (see
//! [`RegistryFleet`]).
//!
//! Stores: [`MemoryStore`] (one process: tests and simulations), `RedisStore` (feature
//! `fleet-redis`) and `DynamoDbStore` (feature `fleet-dynamodb`), all behind the same
//! [`SharedState`] trait.
//!
//! ```
//! use std::sync::Arc;
//! use tower_circuit_breaker::{Circuit, CircuitBreakerConfig, CircuitState};
//! use tower_circuit_breaker::fleet::{FleetConfig, FleetMode, FleetSync, MemoryStore};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let store = Arc::new(MemoryStore::new());
//! let circuit = Circuit::named("dynamodb/PutItem", CircuitBreakerConfig::dynamodb());
//! let config = FleetConfig::builder("myapp/dynamodb/PutItem").build().unwrap();
//! let sync = FleetSync::manual(&circuit, store, config).unwrap();
//! let status = sync.sync_now().await;
//! assert_eq!(status.mode, FleetMode::Shared);
//! assert_eq!(circuit.state(), CircuitState::Closed);
//! # }
//! ```

mod config;
#[cfg(feature = "fleet-dynamodb")]
#[cfg_attr(docsrs, doc(cfg(feature = "fleet-dynamodb")))]
pub mod dynamodb;
mod hook;
mod memory;
mod record;
#[cfg(feature = "fleet-redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "fleet-redis")))]
pub mod redis;
mod registry;
mod snapshot;
mod store;
mod sync;

#[cfg(feature = "fleet-dynamodb")]
pub use self::dynamodb::DynamoDbStore;
#[cfg(feature = "fleet-redis")]
pub use self::redis::{RedisStore, RedisStoreBuilder};
pub use config::{FleetConfig, FleetConfigBuilder};
#[cfg(test)]
pub(crate) use hook::FleetHook;
pub use memory::{MemoryStore, StoreTraffic};
pub use record::FleetState;
pub use registry::{RegistryFleet, RegistryFleetBuilder, RegistryFleetStatus};
pub use snapshot::{CircuitSnapshot, SnapshotCounts, SnapshotError};
pub use store::{CasOutcome, SharedState, StoreError, StoreErrorKind, StoreFuture, StoredRecord};
pub use sync::{FleetMode, FleetStatus, FleetSync};
