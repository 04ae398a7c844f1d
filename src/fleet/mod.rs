//! Fleet-wide circuits: share breaker state across processes (Lambda sandboxes) through a
//! store the fleet already runs.
//!
//! Work in progress: only the store interface is here so far.

mod store;

pub use store::{CasOutcome, SharedState, StoreError, StoreErrorKind, StoreFuture, StoredRecord};
