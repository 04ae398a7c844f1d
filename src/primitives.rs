//! The synchronization primitives the state machine and the window are built on: `std`'s,
//! or [loom](https://docs.rs/loom)'s when the crate is compiled for model checking with
//! `RUSTFLAGS="--cfg tcb_loom"` (a cfg of this crate's own, so tokio is not affected; see
//! the `loom/` package and the README's "Reliability" section).
//!
//! Only what an interleaving can break goes through here: the atomics of the state word,
//! the counters, and the locks. Process-wide statics (`AtomicUsize`) stay `std`'s: loom's
//! atomics cannot be constructed in a `static`.

#[cfg(not(tcb_loom))]
pub(crate) use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicU64, Ordering, fence};
#[cfg(not(tcb_loom))]
pub(crate) use std::sync::{Mutex, MutexGuard};

#[cfg(tcb_loom)]
pub(crate) use loom::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicU64, Ordering, fence};
#[cfg(tcb_loom)]
pub(crate) use loom::sync::{Mutex, MutexGuard};
