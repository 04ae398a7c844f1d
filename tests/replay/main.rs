#![cfg(feature = "replay")]
//! The replay (feature `replay`): reports on hand-built traces, determinism, the reorder
//! window, incident inference, hostile traces, and agreement with a live run recorded
//! by the recorder layer under a paused tokio clock.

mod agreement;
mod determinism;
mod hostile;
mod incidents;
mod order;
mod support;
