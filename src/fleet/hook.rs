//! What a circuit carries for the fleet: the probe-lease gate and the sync's wake-up.
//!
//! The gate is read only on the cold Open → HalfOpen path of admission; the Closed path
//! never touches it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use tokio::sync::Notify;

/// No fleet gating: the circuit probes on its own, exactly as without the feature.
pub(crate) const GATE_OFF: u8 = 0;
/// The fleet is Open and another instance holds the probe lease: wait.
pub(crate) const GATE_NO_LEASE: u8 = 1;
/// The fleet is Open and this instance holds the probe lease: probe.
pub(crate) const GATE_LEASED: u8 = 2;

/// Per-circuit fleet state reachable from the admission path.
#[derive(Debug, Default)]
pub(crate) struct FleetHook {
    gate: AtomicU8,
    /// A call was turned away for want of the lease: the sync asks for it. A lease goes
    /// only to an instance with traffic to probe with.
    wants_lease: AtomicBool,
    attached: AtomicBool,
    wake: Arc<Notify>,
}

impl FleetHook {
    /// Called once the break is over: true when the call must be rejected because the
    /// fleet's probe lease is elsewhere. Wakes the sync so it tries to take the lease.
    #[inline]
    pub(crate) fn must_wait_for_lease(&self) -> bool {
        if self.gate.load(Ordering::Acquire) == GATE_NO_LEASE {
            self.wants_lease.store(true, Ordering::Release);
            self.wake.notify_one();
            true
        } else {
            false
        }
    }

    pub(crate) fn set_gate(&self, gate: u8) {
        self.gate.store(gate, Ordering::Release);
    }

    pub(crate) fn wants_lease(&self) -> bool {
        self.wants_lease.load(Ordering::Acquire)
    }

    /// The lease is held (or the fleet needs none): no more asking.
    pub(crate) fn lease_settled(&self) {
        self.wants_lease.store(false, Ordering::Release);
    }

    pub(crate) fn waker(&self) -> Arc<Notify> {
        self.wake.clone()
    }

    /// Marks the circuit as synced; false when a sync is already attached.
    pub(crate) fn attach(&self) -> bool {
        !self.attached.swap(true, Ordering::AcqRel)
    }

    pub(crate) fn detach(&self) {
        self.set_gate(GATE_OFF);
        self.attached.store(false, Ordering::Release);
    }
}
