//! The fleet record: what one circuit key holds in the store, and the rules read from it.
//!
//! JSON, with a format number. Bodies read back are untrusted: bounded in size and in
//! every list, checked field by field, and refused as [`StoreErrorKind::Corrupt`].

use super::store::{StoreError, StoreErrorKind};
use serde::{Deserialize, Serialize};

/// The format this version writes and reads.
pub(crate) const FORMAT: u32 = 1;
/// Larger bodies are refused unread.
pub(crate) const MAX_BODY: usize = 64 * 1024;
/// Reports kept per record; the oldest go first.
pub(crate) const MAX_REPORTS: usize = 256;
const MAX_LEASES: usize = 16;
/// Longest instance id.
pub(crate) const MAX_ID: usize = 128;

/// The fleet's state for one circuit, as the shared record says.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FleetState {
    /// No fleet-wide break.
    Closed,
    /// The fleet is broken until the record's open-until, then probes under a lease.
    Open,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FleetRecord {
    pub(crate) format: u32,
    pub(crate) state: FleetState,
    /// Grows by one on every fleet transition (open, re-open, close).
    pub(crate) generation: u64,
    /// Wall clock, Unix epoch milliseconds; meaningful while Open.
    pub(crate) open_until_ms: u64,
    /// When the last fleet transition was written (epoch ms), and by whom.
    pub(crate) changed_at_ms: u64,
    pub(crate) changed_by: String,
    pub(crate) reports: Vec<Report>,
    pub(crate) leases: Vec<Lease>,
}

/// One instance's view of its own window.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Report {
    pub(crate) id: String,
    pub(crate) requests: u64,
    pub(crate) failures: u64,
    /// Open on its own evidence (tripped or a failed probe), not by adoption.
    pub(crate) open: bool,
    pub(crate) at_ms: u64,
}

/// The right to probe after a fleet break, for `slots` probes, until `until_ms`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Lease {
    pub(crate) holder: String,
    pub(crate) slots: u32,
    /// The fleet generation it was granted in.
    pub(crate) generation: u64,
    pub(crate) until_ms: u64,
}

/// What a record's reports add up to.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Evidence {
    pub(crate) instances: u32,
    pub(crate) open_instances: u32,
    pub(crate) failing_instances: u32,
    pub(crate) requests: u64,
    pub(crate) failures: u64,
}

/// What a reader trusts of a record's times: its own clock, the clock-skew allowance,
/// its lease TTL and the longest break its own circuit could take.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Limits {
    pub(crate) now_ms: u64,
    pub(crate) skew_ms: u64,
    pub(crate) lease_ttl_ms: u64,
    pub(crate) longest_break_ms: u64,
}

fn corrupt(why: &str) -> StoreError {
    StoreError::new(StoreErrorKind::Corrupt, format!("fleet record: {why}"))
}

impl FleetRecord {
    pub(crate) fn empty() -> Self {
        FleetRecord {
            format: FORMAT,
            state: FleetState::Closed,
            generation: 0,
            open_until_ms: 0,
            changed_at_ms: 0,
            changed_by: String::new(),
            reports: Vec::new(),
            leases: Vec::new(),
        }
    }

    pub(crate) fn decode(body: &[u8]) -> Result<Self, StoreError> {
        if body.len() > MAX_BODY {
            return Err(corrupt("larger than 64 KiB"));
        }
        let record: FleetRecord =
            serde_json::from_slice(body).map_err(|_| corrupt("not a fleet record"))?;
        record.check()?;
        Ok(record)
    }

    pub(crate) fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    fn check(&self) -> Result<(), StoreError> {
        if self.format != FORMAT {
            return Err(corrupt("unknown format"));
        }
        if self.changed_by.len() > MAX_ID {
            return Err(corrupt("id too long"));
        }
        if self.reports.len() > MAX_REPORTS || self.leases.len() > MAX_LEASES {
            return Err(corrupt("too many entries"));
        }
        for (i, r) in self.reports.iter().enumerate() {
            if r.id.is_empty() || r.id.len() > MAX_ID {
                return Err(corrupt("bad instance id"));
            }
            if r.failures > r.requests {
                return Err(corrupt("more failures than requests"));
            }
            if self.reports[..i].iter().any(|o| o.id == r.id) {
                return Err(corrupt("duplicate instance"));
            }
        }
        for l in &self.leases {
            if l.holder.is_empty() || l.holder.len() > MAX_ID {
                return Err(corrupt("bad lease holder"));
            }
            if l.slots == 0 || l.slots > crate::state::MAX_PROBES {
                return Err(corrupt("bad lease slots"));
            }
        }
        Ok(())
    }

    /// Clamps or drops every time in the record that the reader cannot trust (see
    /// `FleetConfig::max_clock_skew`): reports dated beyond now + skew are dropped; leases
    /// end by now + lease TTL (dropped when they claimed more than that plus the skew);
    /// a transition time beyond now + skew becomes now; an Open break ends by now + the
    /// longest local break. True when anything changed (the record must be written back,
    /// so that the corrected times stop moving with the reader's clock).
    pub(crate) fn distrust(&mut self, l: Limits) -> bool {
        let horizon = l.now_ms.saturating_add(l.skew_ms);
        let lease_end = l.now_ms.saturating_add(l.lease_ttl_ms);
        let lease_limit = lease_end.saturating_add(l.skew_ms);
        let (reports, leases) = (self.reports.len(), self.leases.len());
        self.reports.retain(|r| r.at_ms <= horizon);
        self.leases.retain(|x| x.until_ms <= lease_limit);
        let mut changed = reports != self.reports.len() || leases != self.leases.len();
        for x in &mut self.leases {
            if x.until_ms > lease_end {
                x.until_ms = lease_end;
                changed = true;
            }
        }
        if self.changed_at_ms > horizon {
            self.changed_at_ms = l.now_ms;
            changed = true;
        }
        let break_end = l.now_ms.saturating_add(l.longest_break_ms);
        if self.state == FleetState::Open && self.open_until_ms > break_end {
            self.open_until_ms = break_end;
            changed = true;
        }
        changed
    }

    /// Drops reports older than `report_ttl_ms` and expired leases.
    pub(crate) fn prune(&mut self, now_ms: u64, report_ttl_ms: u64) {
        self.reports
            .retain(|r| now_ms.saturating_sub(r.at_ms) <= report_ttl_ms);
        self.leases.retain(|l| l.until_ms > now_ms);
    }

    /// Replaces (or adds) one instance's report, keeping at most [`MAX_REPORTS`].
    pub(crate) fn put_report(&mut self, report: Report) {
        self.reports.retain(|r| r.id != report.id);
        if self.reports.len() >= MAX_REPORTS {
            if let Some(oldest) = self
                .reports
                .iter()
                .enumerate()
                .min_by_key(|(_, r)| r.at_ms)
                .map(|(i, _)| i)
            {
                self.reports.remove(oldest);
            }
        }
        self.reports.push(report);
    }

    pub(crate) fn report(&self, id: &str) -> Option<&Report> {
        self.reports.iter().find(|r| r.id == id)
    }

    pub(crate) fn evidence(&self) -> Evidence {
        let mut e = Evidence::default();
        for r in &self.reports {
            e.instances += 1;
            e.open_instances += u32::from(r.open);
            e.failing_instances += u32::from(r.failures > 0);
            e.requests = e.requests.saturating_add(r.requests);
            e.failures = e.failures.saturating_add(r.failures);
        }
        e
    }

    /// The live lease of `holder` in the current generation, if any.
    pub(crate) fn lease_of(&self, holder: &str) -> Option<&Lease> {
        self.leases
            .iter()
            .find(|l| l.holder == holder && l.generation == self.generation)
    }

    /// Probe slots leased out in the current generation.
    pub(crate) fn leased_slots(&self) -> u32 {
        self.leases
            .iter()
            .filter(|l| l.generation == self.generation)
            .map(|l| l.slots)
            .sum()
    }

    /// A fleet transition: new state, next generation, leases released.
    pub(crate) fn transition(
        &mut self,
        state: FleetState,
        open_until_ms: u64,
        now_ms: u64,
        by: &str,
    ) {
        self.state = state;
        self.generation = self.generation.saturating_add(1);
        self.open_until_ms = open_until_ms;
        self.changed_at_ms = now_ms;
        self.changed_by = by.to_owned();
        self.leases.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(id: &str, requests: u64, failures: u64, open: bool) -> Report {
        Report {
            id: id.into(),
            requests,
            failures,
            open,
            at_ms: 1_000,
        }
    }

    #[test]
    fn round_trip_and_garbage() {
        let mut r = FleetRecord::empty();
        r.put_report(report("a", 10, 3, true));
        r.transition(FleetState::Open, 5_000, 1_000, "a");
        assert_eq!(FleetRecord::decode(&r.encode()).unwrap(), r);

        for bad in [
            &b"not json"[..],
            br#"{"format":2,"state":"open","generation":1,"open_until_ms":0,"changed_at_ms":0,"changed_by":"","reports":[],"leases":[]}"#,
            br#"{"format":1,"state":"maybe","generation":1,"open_until_ms":0,"changed_at_ms":0,"changed_by":"","reports":[],"leases":[]}"#,
            br#"{"format":1,"state":"open","generation":1,"open_until_ms":0,"changed_at_ms":0,"changed_by":"","reports":[{"id":"a","requests":1,"failures":2,"open":true,"at_ms":0}],"leases":[]}"#,
            br#"{"format":1,"state":"open","generation":1,"open_until_ms":0,"changed_at_ms":0,"changed_by":"","reports":[],"leases":[{"holder":"a","slots":0,"generation":1,"until_ms":9}]}"#,
            br#"{"format":1,"state":"open","generation":1,"open_until_ms":0,"changed_at_ms":0,"changed_by":"","reports":[],"leases":[],"extra":1}"#,
        ] {
            let err = FleetRecord::decode(bad).unwrap_err();
            assert_eq!(err.kind(), StoreErrorKind::Corrupt, "{}", String::from_utf8_lossy(bad));
        }
        let mut dup = FleetRecord::empty();
        dup.reports = vec![report("a", 1, 0, false), report("a", 1, 0, false)];
        assert!(FleetRecord::decode(&dup.encode()).is_err());
        let huge = vec![b' '; MAX_BODY + 1];
        assert!(FleetRecord::decode(&huge).is_err());
    }

    #[test]
    fn times_beyond_the_allowance_are_clamped_or_dropped() {
        let limits = Limits {
            now_ms: 1_000_000,
            skew_ms: 5_000,
            lease_ttl_ms: 5_000,
            longest_break_ms: 20_000,
        };
        let lease = |holder: &str, until_ms| Lease {
            holder: holder.into(),
            slots: 1,
            generation: 1,
            until_ms,
        };
        let mut r = FleetRecord::empty();
        r.transition(FleetState::Open, u64::MAX, u64::MAX, "w");
        r.reports = vec![
            Report {
                at_ms: u64::MAX,
                ..report("fake", 1, 1, true)
            },
            Report {
                at_ms: 1_004_000,
                ..report("ahead", 1, 1, true)
            },
            Report {
                at_ms: 990_000,
                ..report("real", 1, 1, true)
            },
        ];
        r.leases = vec![
            lease("forever", u64::MAX),
            lease("long", 1_008_000),
            lease("ok", 1_003_000),
        ];
        let good = r.clone();
        assert!(r.distrust(limits));
        let ids: Vec<_> = r.reports.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids, ["ahead", "real"]);
        let leases: Vec<_> = r
            .leases
            .iter()
            .map(|l| (l.holder.as_str(), l.until_ms))
            .collect();
        assert_eq!(leases, [("long", 1_005_000), ("ok", 1_003_000)]);
        assert_eq!((r.changed_at_ms, r.open_until_ms), (1_000_000, 1_020_000));
        // Corrected once, the record is stable.
        assert!(!r.clone().distrust(limits));
        assert_ne!(r, good);
    }

    #[test]
    fn reports_are_bounded_and_pruned() {
        let mut r = FleetRecord::empty();
        for i in 0..(MAX_REPORTS as u64 + 10) {
            r.put_report(Report {
                at_ms: i,
                ..report(&format!("i{i}"), 1, 0, false)
            });
        }
        assert_eq!(r.reports.len(), MAX_REPORTS);
        assert!(r.report("i0").is_none());
        r.prune(MAX_REPORTS as u64 + 9, 5);
        assert_eq!(r.reports.len(), 6);
        let e = r.evidence();
        assert_eq!((e.instances, e.requests, e.failing_instances), (6, 6, 0));
    }
}
