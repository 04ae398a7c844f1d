//! One sync round: the store exchange (read, correct, publish by compare-and-set) and the
//! adoption of the fleet's state by the local circuit.

use super::{EpochClock, FleetMode, FleetStatus, Inner, LocalLog, MAX_ATTEMPTS, Pending};
use crate::circuit::CircuitParts;
use crate::error::CallError;
use crate::fleet::config::{duration_ms, longest_break};
use crate::fleet::hook::{FleetHook, GATE_LEASED, GATE_NO_LEASE, GATE_OFF};
use crate::fleet::record::{FleetRecord, FleetState, Lease, Limits, MAX_REPORTS, Report};
use crate::fleet::store::{CasOutcome, StoreError, StoreErrorKind, StoredRecord};
use crate::stats::TransitionReason;
use crate::{Circuit, CircuitState};
use std::future::Future;
use std::sync::MutexGuard;
use std::time::Duration;
use tokio::time::Instant;

impl Inner {
    pub(super) fn status(&self) -> MutexGuard<'_, FleetStatus> {
        self.status.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn log(&self) -> MutexGuard<'_, LocalLog> {
        self.log.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// One store operation under the store's timeout and breaker.
    async fn guarded<T>(
        &self,
        op: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        guarded(&self.store_circuit, self.config.store_timeout, op).await
    }

    pub(super) async fn round(&self) {
        self.round_with(None).await;
    }

    /// One round; `first`, when given, is the result of the round's first read, done
    /// by the caller for many circuits at once.
    pub(super) async fn round_with(&self, first: Option<Result<Option<StoredRecord>, StoreError>>) {
        let mut round = self.round.lock().await;
        round.last_round = Some(Instant::now());
        self.status().rounds += 1;
        let pending = {
            let mut log = self.log();
            std::mem::take(&mut log.pending)
        };
        match self.exchange(pending, first).await {
            Ok(Some(record)) => {
                if round.degraded {
                    round.degraded = false;
                    tracing::info!(
                        circuit = %self.circuit.name(),
                        "fleet store answers again: circuit shares state with the fleet again"
                    );
                }
                self.adopt(&record);
            }
            Ok(None) => {
                // Conflicts on every attempt: keep what is pending and come back soon.
                self.log().pending.merge(pending);
                self.wake.notify_one();
            }
            Err(e) => {
                self.log().pending.merge(pending);
                FleetHook::of(&self.circuit).set_gate(GATE_OFF);
                let mut status = self.status();
                status.mode = FleetMode::LocalOnly;
                status.lease_held = false;
                status.store_errors += 1;
                if !round.degraded {
                    round.degraded = true;
                    status.degradations += 1;
                    tracing::warn!(
                        circuit = %self.circuit.name(),
                        error = %e,
                        "fleet store failed: circuit falls back to local-only decisions (no probe leases) until the store answers"
                    );
                }
                status.last_error = Some(e);
            }
        }
    }

    /// Read, modify, compare-and-set, retried on conflict. `Ok(None)`: every attempt
    /// conflicted.
    async fn exchange(
        &self,
        pending: Pending,
        mut first: Option<Result<Option<StoredRecord>, StoreError>>,
    ) -> Result<Option<FleetRecord>, StoreError> {
        let key = self.config.key.as_str();
        for _ in 0..MAX_ATTEMPTS {
            let loaded = match first.take() {
                Some(read) => read?,
                None => self.guarded(self.store.load(key)).await?,
            };
            let now_ms = self.clock.now_ms();
            let (before, version, corrupt) = match loaded {
                None => (FleetRecord::empty(), None, false),
                Some(stored) => match FleetRecord::decode(&stored.body) {
                    Ok(r) => (r, Some(stored.version), false),
                    Err(e) => {
                        // Replace it (compare-and-set on its version) rather than stay
                        // blind forever.
                        let mut status = self.status();
                        status.corrupt_records += 1;
                        tracing::warn!(
                            circuit = %self.circuit.name(),
                            error = %e,
                            "fleet record is corrupt; replacing it"
                        );
                        status.last_error = Some(e);
                        (FleetRecord::empty(), Some(stored.version), true)
                    }
                },
            };
            let mut record = before;
            if !self.modify(&mut record, pending, now_ms) && !corrupt {
                return Ok(Some(record));
            }
            let body = record.encode();
            match self
                .guarded(
                    self.store
                        .compare_and_set(key, version, body, self.config.record_ttl),
                )
                .await?
            {
                CasOutcome::Written(_) => {
                    self.status().writes += 1;
                    return Ok(Some(record));
                }
                CasOutcome::Conflict => self.status().conflicts += 1,
            }
        }
        Ok(None)
    }

    /// Applies this instance's news to the record. True when it must be written.
    fn modify(&self, record: &mut FleetRecord, pending: Pending, now_ms: u64) -> bool {
        let config = &self.config;
        let id = config.instance_id.as_str();
        let local_config = self.circuit.config();
        // The record is untrusted: times beyond what this reader's clock allows are
        // corrected, and a corrected record is written back.
        let distrusted = record.distrust(Limits {
            now_ms,
            skew_ms: config.skew_ms(),
            report_ttl_ms: duration_ms(config.report_ttl),
            lease_ttl_ms: duration_ms(config.lease_ttl),
            longest_break_ms: duration_ms(longest_break(&local_config)),
        });
        // Readers prune too: pruning alone is no reason to write.
        record.prune(now_ms, config.report_ttl.as_millis() as u64);
        let original = record.clone();
        let parts = self.circuit.parts();
        let (window, _) = self.circuit.counts();
        let (own_open, opened_at_ms) = {
            let log = self.log();
            (log.own_open, log.opened_at_ms)
        };
        // A fleet close newer than this circuit's opening closes it (in `adopt`): its
        // report must not carry the old evidence into the new generation.
        let closing = will_adopt_close(record, &parts, opened_at_ms);
        let own_open = own_open && parts.state != CircuitState::Closed && !closing;
        let local_until_ms = self
            .circuit
            .break_ends_at()
            .map(|t| self.clock.at_ms(t.max(Instant::now())));

        // 1. This instance's report.
        let report = Report {
            id: id.to_owned(),
            requests: window.calls,
            // As the local trip rule counts them, slow calls included.
            failures: window.trip_failures(local_config.slow_call_is_failure()),
            slow: window.slow(),
            open: own_open,
            at_ms: now_ms,
        };
        // Healthy instances report too (their calls are the failure rate's denominator),
        // but only every half `report_ttl`; news (a failure, a change of the open flag, a
        // transition) is written at once. An instance Open on its own evidence renews its
        // report every half `report_ttl` even with an empty window: readers adopt the
        // fleet's Open only while the record carries that evidence.
        // An instance that is not Closed (its own break, or the fleet's) renews its
        // report too: the count of reporting instances paces the fleet's probes.
        let present = report.requests > 0 || report.open || parts.state != CircuitState::Closed;
        // A full record (more instances than it holds reports) takes a new report only
        // with news in it: otherwise instances would push each other out every round.
        let news = report.failures > 0 || report.slow > 0 || report.open || pending.dirty;
        let room = original.reports.len() < MAX_REPORTS;
        let publish = match original.report(id) {
            None => (present && room) || news,
            Some(old) => {
                old.open != report.open
                    || pending.dirty
                    || old.failures != report.failures
                    || old.slow != report.slow
                    || (present
                        && now_ms.saturating_sub(old.at_ms)
                            >= config.report_ttl.as_millis() as u64 / 2)
            }
        };
        if publish {
            record.put_report(report);
        }

        // 2. This instance's own fleet transitions, then the adoption rule.
        let break_end =
            local_until_ms.unwrap_or(now_ms + local_config.recovery_timeout().as_millis() as u64);
        match record.state {
            FleetState::Open => {
                if let Some(closed_at) = pending.probes_closed_at_ms {
                    if closed_at >= record.changed_at_ms {
                        record.transition(FleetState::Closed, 0, now_ms, id);
                        // The outage's evidence is over; reports start again.
                        record.reports.clear();
                    }
                } else if pending.probe_failed && own_open && now_ms >= record.open_until_ms {
                    // The fleet probes more often than any one instance: its next probe
                    // (by another instance, through the lease) is due after this
                    // instance's break shared among the reporting instances, bounded
                    // below; still one probe at a time fleet-wide.
                    let reporting = u64::from(record.evidence().instances.max(1));
                    let own_break = break_end.saturating_sub(now_ms);
                    let fleet_break = (own_break / reporting)
                        .max(duration_ms(config.min_probe_interval))
                        .min(own_break);
                    let until = (now_ms + fleet_break).max(record.open_until_ms);
                    record.transition(FleetState::Open, until, now_ms, id);
                }
            }
            FleetState::Closed => {
                if config.meets(record.evidence(), local_config.slow_call_rate_threshold()) {
                    let until = if own_open {
                        break_end
                    } else {
                        now_ms + local_config.recovery_timeout().as_millis() as u64
                    };
                    record.transition(FleetState::Open, until, now_ms, id);
                }
            }
        }

        // 3. The probe lease: taken when a call was turned away for want of it (so it
        // goes to an instance with traffic), renewed only while this instance probes (so
        // a holder that gets no call, or freezes, lets it expire).
        let probing = parts.normal && parts.state == CircuitState::HalfOpen;
        let wants = parts.normal
            && parts.state == CircuitState::Open
            && local_until_ms.is_some_and(|u| u <= now_ms)
            && FleetHook::of(&self.circuit).wants_lease();
        if record.state == FleetState::Open && now_ms >= record.open_until_ms {
            let lease_ms = config.lease_ttl.as_millis() as u64;
            let generation = record.generation;
            let leased = record.leased_slots();
            match record
                .leases
                .iter_mut()
                .find(|l| l.holder == id && l.generation == generation)
            {
                Some(l) if probing && l.until_ms.saturating_sub(now_ms) < lease_ms / 2 => {
                    l.until_ms = now_ms + lease_ms;
                }
                Some(_) => {}
                None if wants && leased == 0 => record.leases.push(Lease {
                    holder: id.to_owned(),
                    slots: local_config.half_open_max_calls(),
                    generation,
                    until_ms: now_ms + lease_ms,
                }),
                None => {}
            }
        }
        distrusted || *record != original
    }

    /// Brings the local circuit in line with the record.
    fn adopt(&self, record: &FleetRecord) {
        let now_ms = self.clock.now_ms();
        let id = self.config.instance_id.as_str();
        let hook = FleetHook::of(&self.circuit);
        let lease = record.lease_of(id).is_some_and(|l| l.until_ms > now_ms);
        let left = {
            let mut log = self.log();
            log.seen_generation = record.generation;
            log.left_generation == Some(record.generation)
        };
        // A fleet break this circuit was reset out of by hand is over for it: no adoption,
        // no lease gating (it probes on its own if it trips again).
        let fleet_open = record.state == FleetState::Open && !left;
        hook.set_gate(match (fleet_open, lease) {
            (false, _) => GATE_OFF,
            (true, true) => GATE_LEASED,
            (true, false) => GATE_NO_LEASE,
        });
        if !fleet_open || lease {
            hook.lease_settled();
        }
        let parts = self.circuit.parts();
        let mut adopted_open = false;
        let mut adopted_close = false;
        let evidence = record.evidence();
        if fleet_open && record.open_until_ms > now_ms && parts.normal {
            // Adopted only on the evidence the adoption rule needs (fresh, distinct
            // reports), never on the writer's word; for at most the longest break the
            // local config allows, from this reader's clock.
            let slow_rate = self.circuit.config().slow_call_rate_threshold();
            if self.config.meets(evidence, slow_rate) {
                let longest = longest_break(&self.circuit.config());
                let remaining = Duration::from_millis(record.open_until_ms - now_ms).min(longest);
                adopted_open = self
                    .circuit
                    .adopt_open(TransitionReason::FleetOpen, remaining);
            }
        } else if will_adopt_close(record, &parts, self.log().opened_at_ms) {
            adopted_close = self.circuit.adopt_closed(TransitionReason::FleetClosed);
        }
        if adopted_open {
            tracing::info!(
                circuit = %self.circuit.name(),
                generation = record.generation,
                "circuit adopted the fleet's Open"
            );
        }
        let mut status = self.status();
        status.mode = FleetMode::Shared;
        status.fleet_state = Some(record.state);
        status.generation = record.generation;
        status.open_until = fleet_open.then(|| EpochClock::system(record.open_until_ms));
        status.lease_held = fleet_open && lease;
        status.reporting_instances = evidence.instances;
        status.open_instances = evidence.open_instances;
        status.adopted_opens += u64::from(adopted_open);
        status.adopted_closes += u64::from(adopted_close);
    }
}

/// The fleet closed (a probe succeeded somewhere) after this Open circuit opened.
fn will_adopt_close(record: &FleetRecord, parts: &CircuitParts, opened_at_ms: u64) -> bool {
    record.state == FleetState::Closed
        && record.generation > 0
        && parts.normal
        && parts.state != CircuitState::Closed
        && record.changed_at_ms >= opened_at_ms
}

/// One store operation under `timeout` and through the store's own breaker
/// `store_circuit`.
pub(crate) async fn guarded<T>(
    store_circuit: &Circuit,
    timeout: Option<Duration>,
    op: impl Future<Output = Result<T, StoreError>>,
) -> Result<T, StoreError> {
    let bounded = async move {
        match timeout {
            Some(t) => tokio::time::timeout(t, op).await.unwrap_or_else(|_| {
                Err(StoreError::new(
                    StoreErrorKind::Timeout,
                    format!("no answer within {t:?}"),
                ))
            }),
            None => op.await,
        }
    };
    match store_circuit.call(bounded).await {
        Ok(v) => Ok(v),
        Err(CallError::Inner(e)) => Err(e),
        Err(CallError::Rejected(_)) => Err(StoreError::new(
            StoreErrorKind::Unavailable,
            "the store's own circuit is open",
        )),
    }
}
