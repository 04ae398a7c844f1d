//! The fleet sync: publishes a circuit's trips and window counts, adopts the fleet's
//! state, and holds probe leases, all off the request path.

use super::config::FleetConfig;
use super::hook::FleetHook;
use super::record::FleetState;
use super::store::{SharedState, StoreError, StoredRecord};
use crate::config::ConfigError;
use crate::stats::TransitionReason;
use crate::{Circuit, CircuitState};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio::time::Instant;

mod round;

pub(crate) use round::guarded;

/// Read-modify-write attempts per round before the round gives up (its pending
/// transitions stay pending for the next round).
const MAX_ATTEMPTS: u32 = 8;

/// Shares one [`Circuit`]'s state with the fleet through a [`SharedState`] store.
///
/// The circuit keeps deciding every admission on its own, with no I/O. The sync, a
/// background tokio task (or your own calls to [`sync_now`](Self::sync_now)), every
/// cache period and at once after a local transition:
///
/// 1. reads the circuit's record, publishes this instance's report (window calls and
///    failures, Open on its own evidence or not) and its own transitions, by
///    compare-and-set on the record's version, retried on conflict;
/// 2. opens the fleet when the reports meet the [adoption rule](FleetConfig), for the
///    tripping instance's break;
/// 3. adopts: a Closed circuit opens ([`TransitionReason::FleetOpen`]) for what is left of
///    the fleet's break; after a fleet probe succeeded elsewhere, an Open circuit closes
///    ([`TransitionReason::FleetClosed`]);
/// 4. after the fleet's break, takes the fleet's single probe lease (all of the circuit's
///    `half_open_max_calls` slots) when this instance is due to probe; instances without
///    the lease keep rejecting as Open, so at most `half_open_max_calls` probes run
///    fleet-wide at a time. After a failed probe the fleet waits the prober's break
///    divided by the reporting instances (at least
///    [`min_probe_interval`](FleetConfig::min_probe_interval)) before the next instance
///    may probe.
///
/// # Records are untrusted
///
/// Any process with access to the store can write the record, and a writer's clock may
/// be wrong. So a reader:
///
/// * judges every time in the record against its own clock, with the
///   [`max_clock_skew`](FleetConfig::max_clock_skew) allowance: reports dated further
///   ahead are dropped, leases last at most `lease_ttl` from now, and the fleet's break
///   ends at most the local circuit's longest break from now (`recovery_timeout`, or the
///   backoff's `max`); a record it had to correct is written back corrected;
/// * adopts the fleet's Open (and extends an Open circuit's break by it) only when the
///   record's fresh, distinct reports meet the [adoption rule](FleetConfig) by this
///   reader's own settings, never on the record's `state` alone;
/// * never adopts a break longer than its own longest, measured from its own clock.
///
/// # Manual control wins
///
/// The fleet never changes a circuit under a manual override
/// ([`force_open`](Circuit::force_open), [`disable`](Circuit::disable)). A
/// [`reset`](Circuit::reset) is local: it withdraws this instance's report (its next
/// report is Closed with an empty window, so its vote no longer counts towards the
/// quorum), and the circuit does not adopt again the fleet break (generation) it was
/// reset out of, nor wait for that break's probe lease. It does not close the fleet for
/// the other instances. A later fleet break (a new generation) is adopted as usual.
///
/// When the store fails (error, its own timeout, or its own breaker open), the circuit
/// falls back to local-only decisions, probe leases not required; this is logged once at
/// `warn` and shown in [`status`](Self::status). Sharing resumes when the store answers.
/// No user call ever waits for the store.
///
/// Dropping the last handle stops the task and detaches the circuit.
///
/// In AWS Lambda a frozen sandbox runs no task between invocations: call
/// [`refresh`](Self::refresh) at the start of each invocation.
#[derive(Clone, Debug)]
pub struct FleetSync {
    inner: Arc<Inner>,
    _guard: Arc<Guard>,
}

struct Inner {
    circuit: Circuit,
    store: Arc<dyn SharedState>,
    config: FleetConfig,
    store_circuit: Circuit,
    clock: EpochClock,
    wake: Arc<Notify>,
    log: Arc<Mutex<LocalLog>>,
    round: tokio::sync::Mutex<RoundState>,
    status: Mutex<FleetStatus>,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FleetSync")
            .field("circuit", &self.circuit.name())
            .field("key", &self.config.key)
            .field("instance", &self.config.instance_id)
            .finish_non_exhaustive()
    }
}

#[derive(Debug)]
struct Guard {
    task: Option<JoinHandle<()>>,
    circuit: Circuit,
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
        FleetHook::of(&self.circuit).detach();
    }
}

/// Wall-clock epoch milliseconds, anchored once and advanced by tokio's monotonic clock
/// (so paused-time tests and a stepped system clock agree with the circuit's timers).
#[derive(Clone, Copy, Debug)]
struct EpochClock {
    /// Epoch nanoseconds at `origin`.
    wall_ns: u64,
    origin: Instant,
}

impl EpochClock {
    /// A clock whose origin is tokio's now. Its wall time comes from one pair (real
    /// monotonic instant, wall time) taken once per process (again after an hour, as the
    /// two clocks drift): every sync of the process maps an instant to the same epoch
    /// millisecond, however far apart in real time they were made (so a simulation on
    /// tokio's paused clock is the same on every run), and a paused runtime's clock maps
    /// to its real start plus the time it advanced.
    fn new() -> Self {
        static ANCHOR: Mutex<Option<(std::time::Instant, u64)>> = Mutex::new(None);
        let real_now = std::time::Instant::now();
        let (real0, wall0) = {
            let mut anchor = ANCHOR.lock().unwrap_or_else(|e| e.into_inner());
            match *anchor {
                Some((real0, wall0))
                    if real_now.saturating_duration_since(real0) < Duration::from_secs(3600) =>
                {
                    (real0, wall0)
                }
                _ => {
                    let wall0 = SystemTime::now()
                        .duration_since(SystemTime::UNIX_EPOCH)
                        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
                    *anchor = Some((real_now, wall0));
                    (real_now, wall0)
                }
            }
        };
        let origin = Instant::now();
        let at = origin.into_std();
        let nanos = |d: Duration| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        let wall_ns = if at >= real0 {
            wall0.saturating_add(nanos(at - real0))
        } else {
            wall0.saturating_sub(nanos(real0 - at))
        };
        EpochClock { wall_ns, origin }
    }

    fn now_ms(&self) -> u64 {
        self.at_ms(Instant::now())
    }

    fn at_ms(&self, t: Instant) -> u64 {
        let since =
            u64::try_from(t.saturating_duration_since(self.origin).as_nanos()).unwrap_or(u64::MAX);
        self.wall_ns.saturating_add(since) / 1_000_000
    }

    fn system(ms: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_millis(ms)
    }
}

/// What the circuit's listener saw since the last successful publish.
#[derive(Clone, Copy, Debug, Default)]
struct LocalLog {
    /// The circuit is Open (or probing) on its own evidence.
    own_open: bool,
    /// When it last opened, epoch ms.
    opened_at_ms: u64,
    /// The fleet generation of the last record read.
    seen_generation: u64,
    /// The fleet generation this circuit was reset out of by hand: its break is not
    /// adopted again.
    left_generation: Option<u64>,
    pending: Pending,
}

#[derive(Clone, Copy, Debug, Default)]
struct Pending {
    /// A transition to publish.
    dirty: bool,
    /// Its probes succeeded at this time: the fleet may close.
    probes_closed_at_ms: Option<u64>,
    /// A probe failed: the fleet re-opens for the new break.
    probe_failed: bool,
}

impl Pending {
    fn merge(&mut self, older: Pending) {
        self.dirty |= older.dirty;
        self.probe_failed |= older.probe_failed;
        if self.probes_closed_at_ms.is_none() {
            self.probes_closed_at_ms = older.probes_closed_at_ms;
        }
    }
}

#[derive(Debug, Default)]
struct RoundState {
    degraded: bool,
    last_round: Option<Instant>,
}

/// Whether the circuit shares state with its fleet right now.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FleetMode {
    /// No exchange with the store has happened yet.
    Starting,
    /// The last exchange with the store succeeded.
    Shared,
    /// The store failed: the circuit decides alone (and probes without a lease) until the
    /// store answers again.
    LocalOnly,
}

/// What a [`FleetSync`] knows, from its last exchange with the store.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct FleetStatus {
    /// Sharing or local-only.
    pub mode: FleetMode,
    /// The fleet's state in the last record read; `None` before the first read.
    pub fleet_state: Option<FleetState>,
    /// The fleet generation of that record (grows on every fleet transition).
    pub generation: u64,
    /// While the fleet is Open: the end of its break.
    pub open_until: Option<SystemTime>,
    /// This instance holds the fleet's probe lease.
    pub lease_held: bool,
    /// Instances with a fresh report in the record.
    pub reporting_instances: u32,
    /// Of those, Open on their own evidence.
    pub open_instances: u32,
    /// Times this circuit opened because the fleet was Open.
    pub adopted_opens: u64,
    /// Times it closed because a fleet probe succeeded elsewhere.
    pub adopted_closes: u64,
    /// Sync rounds run.
    pub rounds: u64,
    /// Records written.
    pub writes: u64,
    /// Compare-and-set conflicts met (each was retried).
    pub conflicts: u64,
    /// Store operations that failed (errors, timeouts, store breaker open).
    pub store_errors: u64,
    /// Times the sync fell back to local-only.
    pub degradations: u64,
    /// Records found corrupt (and replaced).
    pub corrupt_records: u64,
    /// The last store error.
    pub last_error: Option<StoreError>,
}

impl FleetSync {
    /// Attaches `circuit` to the fleet and starts the background task on the current
    /// tokio runtime (it panics outside one, as `tokio::spawn` does).
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] on field `circuit` when the circuit already has a sync.
    pub fn start(
        circuit: &Circuit,
        store: Arc<dyn SharedState>,
        config: FleetConfig,
    ) -> Result<FleetSync, ConfigError> {
        let inner = Self::attach(circuit, store, config)?;
        let task = tokio::spawn(run(inner.clone()));
        Ok(FleetSync {
            inner,
            _guard: Arc::new(Guard {
                task: Some(task),
                circuit: circuit.clone(),
            }),
        })
    }

    /// Attaches `circuit` to the fleet without a background task: state is exchanged only
    /// when you call [`sync_now`](Self::sync_now) or [`refresh`](Self::refresh) (e.g. at
    /// the start of each Lambda invocation).
    ///
    /// # Errors
    ///
    /// As [`start`](Self::start).
    pub fn manual(
        circuit: &Circuit,
        store: Arc<dyn SharedState>,
        config: FleetConfig,
    ) -> Result<FleetSync, ConfigError> {
        let inner = Self::attach(circuit, store, config)?;
        Ok(FleetSync {
            inner,
            _guard: Arc::new(Guard {
                task: None,
                circuit: circuit.clone(),
            }),
        })
    }

    /// Attaches `circuit` as one member of a registry-wide fleet: no task of its own;
    /// its transitions wake `wake`, and its store operations go through `store_circuit`,
    /// both shared by the registry's members.
    pub(crate) fn member(
        circuit: &Circuit,
        store: Arc<dyn SharedState>,
        config: FleetConfig,
        store_circuit: Circuit,
        wake: Arc<Notify>,
    ) -> Result<FleetSync, ConfigError> {
        let inner = Self::attach_with(circuit, store, config, Some((store_circuit, wake)))?;
        Ok(FleetSync {
            inner,
            _guard: Arc::new(Guard {
                task: None,
                circuit: circuit.clone(),
            }),
        })
    }

    fn attach(
        circuit: &Circuit,
        store: Arc<dyn SharedState>,
        config: FleetConfig,
    ) -> Result<Arc<Inner>, ConfigError> {
        Self::attach_with(circuit, store, config, None)
    }

    fn attach_with(
        circuit: &Circuit,
        store: Arc<dyn SharedState>,
        config: FleetConfig,
        shared: Option<(Circuit, Arc<Notify>)>,
    ) -> Result<Arc<Inner>, ConfigError> {
        if !FleetHook::of(circuit).attach() {
            return Err(ConfigError::new(
                "circuit",
                "already has a fleet sync attached",
            ));
        }
        let clock = EpochClock::new();
        let (store_circuit, wake) = match shared {
            Some((store_circuit, wake)) => {
                FleetHook::of(circuit).set_waker(wake.clone());
                (Some(store_circuit), wake)
            }
            None => (None, FleetHook::of(circuit).waker()),
        };
        let log = Arc::new(Mutex::new(LocalLog::default()));
        {
            // The circuit's own transitions, recorded for the next publish.
            let (log, wake) = (log.clone(), wake.clone());
            circuit.on_transition(move |e| {
                let now = clock.now_ms();
                let mut l = log.lock().unwrap_or_else(|e| e.into_inner());
                if e.reason == TransitionReason::Reset {
                    // A reset by hand leaves the fleet break this circuit knows of.
                    l.left_generation = Some(l.seen_generation);
                }
                if matches!(
                    e.reason,
                    TransitionReason::FleetOpen | TransitionReason::FleetClosed
                ) {
                    // The sync did this itself.
                    l.own_open = false;
                    if e.to == CircuitState::Open {
                        l.opened_at_ms = now;
                    }
                    return;
                }
                match e.to {
                    CircuitState::Open => {
                        l.own_open = matches!(
                            e.reason,
                            TransitionReason::Tripped
                                | TransitionReason::RetryAfter
                                | TransitionReason::ProbeFailed
                        );
                        l.opened_at_ms = now;
                        l.pending.probe_failed |= e.reason == TransitionReason::ProbeFailed;
                    }
                    CircuitState::Closed => {
                        l.own_open = false;
                        if e.reason == TransitionReason::ProbesSucceeded {
                            l.pending.probes_closed_at_ms = Some(now);
                        }
                    }
                    CircuitState::HalfOpen => {}
                }
                l.pending.dirty = true;
                drop(l);
                wake.notify_one();
            });
        }
        let store_circuit = store_circuit.unwrap_or_else(|| {
            Circuit::named(
                format!("fleet-store/{}", circuit.name()),
                config.store_breaker.clone(),
            )
        });
        Ok(Arc::new(Inner {
            circuit: circuit.clone(),
            store,
            config,
            store_circuit,
            clock,
            wake,
            log,
            round: tokio::sync::Mutex::new(RoundState::default()),
            status: Mutex::new(FleetStatus {
                mode: FleetMode::Starting,
                fleet_state: None,
                generation: 0,
                open_until: None,
                lease_held: false,
                reporting_instances: 0,
                open_instances: 0,
                adopted_opens: 0,
                adopted_closes: 0,
                rounds: 0,
                writes: 0,
                conflicts: 0,
                store_errors: 0,
                degradations: 0,
                corrupt_records: 0,
                last_error: None,
            }),
        }))
    }

    /// Exchanges state with the store now: publish, adopt, lease. Returns the status
    /// after. Never fails: store errors put the circuit in local-only mode.
    pub async fn sync_now(&self) -> FleetStatus {
        self.inner.round().await;
        self.status()
    }

    /// Like [`sync_now`](Self::sync_now), but only when the last exchange is older than
    /// the cache period: the cheap call for the start of every Lambda invocation.
    pub async fn refresh(&self) -> FleetStatus {
        let stale = {
            let round = self.inner.round.lock().await;
            round
                .last_round
                .is_none_or(|t| t.elapsed() >= self.inner.config.cache_period)
        };
        if stale {
            self.inner.round().await;
        }
        self.status()
    }

    /// One round with the first read already done (by a registry-wide `load_many`).
    pub(crate) async fn sync_with(&self, first: Result<Option<StoredRecord>, StoreError>) {
        self.inner.round_with(Some(first)).await;
    }

    /// What the sync knows (a copy, no I/O).
    pub fn status(&self) -> FleetStatus {
        self.inner.status().clone()
    }

    /// The circuit it shares.
    pub fn circuit(&self) -> &Circuit {
        &self.inner.circuit
    }

    /// Its configuration.
    pub fn config(&self) -> &FleetConfig {
        &self.inner.config
    }
}

async fn run(inner: Arc<Inner>) {
    let period = inner.config.cache_period;
    let min_gap = period / 10;
    loop {
        inner.round().await;
        let woken = tokio::time::timeout(period, inner.wake.notified())
            .await
            .is_ok();
        if woken {
            // A burst of rejected calls wakes the sync once per gap, not once per call.
            tokio::time::sleep(min_gap).await;
        }
    }
}
