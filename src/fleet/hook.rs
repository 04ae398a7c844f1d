//! What a circuit carries for the fleet: the probe-lease gate and the sync's wake-up.
//!
//! Installed as the circuit's [`AdmissionGate`] when a sync first attaches (a circuit that
//! never had a fleet attached holds nothing of it), and kept for the circuit's life: a
//! detached sync turns the gate off. The circuit reads it only on the cold Open →
//! HalfOpen path of admission; the Closed path never touches it.

use crate::Circuit;
use crate::circuit::AdmissionGate;
use std::any::Any;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
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
    wake: Mutex<Arc<Notify>>,
}

impl AdmissionGate for FleetHook {
    /// Called once the break is over: true when the call must be rejected because the
    /// fleet's probe lease is elsewhere. Wakes the sync so it tries to take the lease.
    #[inline]
    fn holds_back_probe(&self) -> bool {
        if self.gate.load(Ordering::Acquire) == GATE_NO_LEASE {
            self.wants_lease.store(true, Ordering::Release);
            self.waker().notify_one();
            true
        } else {
            false
        }
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

impl FleetHook {
    /// The fleet hook of `circuit`, installed as its admission gate on first use.
    pub(crate) fn of(circuit: &Circuit) -> &FleetHook {
        circuit
            .gate_or_install(FleetHook::default)
            .expect("only the fleet installs a circuit's admission gate")
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
        self.wake.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Wakes `wake` instead from now on (a registry-wide fleet's one task).
    pub(crate) fn set_waker(&self, wake: Arc<Notify>) {
        *self.wake.lock().unwrap_or_else(|e| e.into_inner()) = wake;
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
