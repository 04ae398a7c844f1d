//! The fleet record: what one circuit key holds in the store, and the rules read from it.
//!
//! JSON, with a format number. Bodies read back are untrusted: bounded in size and in
//! every list, checked field by field, and refused as [`StoreErrorKind::Corrupt`].
//!
//! Formats: 1 has no slow-call counts; 2 adds a report's `slow`. A record is written as
//! format 1 while none of its reports has slow calls (so the previous version, which reads
//! only format 1, still reads it) and as format 2 otherwise; both are read.

use super::store::{StoreError, StoreErrorKind};
use serde::{Deserialize, Serialize};

/// The newest format, written when a report carries slow calls.
pub(crate) const FORMAT: u32 = 2;
/// The first format (no slow-call counts), still written when there are none.
pub(crate) const FORMAT_V1: u32 = 1;
/// Larger bodies are refused unread.
pub(crate) const MAX_BODY: usize = 64 * 1024;
/// Reports kept per record; the oldest go first.
pub(crate) const MAX_REPORTS: usize = 256;
const MAX_LEASES: usize = 16;
/// Longest instance id.
pub(crate) const MAX_ID: usize = 128;
/// Reports further than this many `report_ttl`s from a reader's clock (either way) are
/// removed from the record; nearer ones outside the reader's window (older than
/// `report_ttl`, or ahead by more than `max_clock_skew`) are only left out of its
/// evidence. So a writer whose clock is off cannot delete the other instances' reports,
/// only ignore them, and garbage still goes.
const KEEP_TTLS: u64 = 10;

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
    /// Ids of the reports this reader leaves out of the evidence (outside its window);
    /// never stored.
    #[serde(skip)]
    pub(crate) ignored: Vec<String>,
}

/// One instance's view of its own window.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Report {
    pub(crate) id: String,
    pub(crate) requests: u64,
    /// Failures as the writer's trip rule counts them: with its slow successes when its
    /// circuit counts a slow call as a failure (`slow_call_is_failure`).
    pub(crate) failures: u64,
    /// Calls slower than the writer's `expected_response_time`, failed or not (format 2;
    /// absent, so 0, in format 1).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub(crate) slow: u64,
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
    /// Instances that saw slow calls.
    pub(crate) slow_instances: u32,
    pub(crate) requests: u64,
    pub(crate) failures: u64,
    pub(crate) slow: u64,
}

/// What a reader trusts of a record's times: its own clock, the clock-skew allowance,
/// its report and lease TTLs and the longest break its own circuit could take.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Limits {
    pub(crate) now_ms: u64,
    pub(crate) skew_ms: u64,
    pub(crate) report_ttl_ms: u64,
    pub(crate) lease_ttl_ms: u64,
    pub(crate) longest_break_ms: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

fn corrupt(why: &str) -> StoreError {
    StoreError::new(StoreErrorKind::Corrupt, format!("fleet record: {why}"))
}

impl FleetRecord {
    pub(crate) fn empty() -> Self {
        FleetRecord {
            format: FORMAT_V1,
            state: FleetState::Closed,
            generation: 0,
            open_until_ms: 0,
            changed_at_ms: 0,
            changed_by: String::new(),
            reports: Vec::new(),
            leases: Vec::new(),
            ignored: Vec::new(),
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

    /// JSON, as format 1 unless a report carries slow calls.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let format = if self.reports.iter().any(|r| r.slow > 0) {
            FORMAT
        } else {
            FORMAT_V1
        };
        if format == self.format {
            serde_json::to_vec(self).unwrap_or_default()
        } else {
            serde_json::to_vec(&FleetRecord {
                format,
                ..self.clone()
            })
            .unwrap_or_default()
        }
    }

    fn check(&self) -> Result<(), StoreError> {
        if self.format != FORMAT && self.format != FORMAT_V1 {
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
            if r.slow > r.requests {
                return Err(corrupt("more slow calls than requests"));
            }
            if r.slow > 0 && self.format == FORMAT_V1 {
                return Err(corrupt("slow calls in a format-1 record"));
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
    /// `FleetConfig::max_clock_skew`): reports dated beyond now + skew are no evidence
    /// (ignored, and dropped when beyond now + skew + [`KEEP_TTLS`] report TTLs); leases
    /// end by now + lease TTL (dropped when they claimed more than that plus the skew);
    /// a transition time beyond now + skew becomes now; an Open break ends by now + the
    /// longest local break. True when anything changed (the record must be written back,
    /// so that the corrected times stop moving with the reader's clock).
    pub(crate) fn distrust(&mut self, l: Limits) -> bool {
        let horizon = l.now_ms.saturating_add(l.skew_ms);
        let lease_end = l.now_ms.saturating_add(l.lease_ttl_ms);
        let lease_limit = lease_end.saturating_add(l.skew_ms);
        let (reports, leases) = (self.reports.len(), self.leases.len());
        let garbage = horizon.saturating_add(l.report_ttl_ms.saturating_mul(KEEP_TTLS));
        self.reports.retain(|r| r.at_ms <= garbage);
        for r in &self.reports {
            if r.at_ms > horizon && !self.ignored.contains(&r.id) {
                self.ignored.push(r.id.clone());
            }
        }
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

    /// Leaves reports older than `report_ttl_ms` out of the evidence, drops those older
    /// than [`KEEP_TTLS`] report TTLs, and drops expired leases.
    pub(crate) fn prune(&mut self, now_ms: u64, report_ttl_ms: u64) {
        let keep = report_ttl_ms.saturating_mul(KEEP_TTLS);
        self.reports
            .retain(|r| now_ms.saturating_sub(r.at_ms) <= keep);
        for r in &self.reports {
            if now_ms.saturating_sub(r.at_ms) > report_ttl_ms && !self.ignored.contains(&r.id) {
                self.ignored.push(r.id.clone());
            }
        }
        self.leases.retain(|l| l.until_ms > now_ms);
    }

    /// Replaces (or adds) one instance's report, keeping at most [`MAX_REPORTS`].
    /// Ignored reports go first.
    pub(crate) fn put_report(&mut self, report: Report) {
        self.reports.retain(|r| r.id != report.id);
        self.ignored.retain(|id| *id != report.id);
        if self.reports.len() >= MAX_REPORTS {
            if let Some(oldest) = self
                .reports
                .iter()
                .enumerate()
                .min_by_key(|(_, r)| (!self.ignored.contains(&r.id), r.at_ms))
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
        for r in self
            .reports
            .iter()
            .filter(|r| !self.ignored.contains(&r.id))
        {
            e.instances += 1;
            e.open_instances += u32::from(r.open);
            e.failing_instances += u32::from(r.failures > 0);
            e.slow_instances += u32::from(r.slow > 0);
            e.requests = e.requests.saturating_add(r.requests);
            e.failures = e.failures.saturating_add(r.failures);
            e.slow = e.slow.saturating_add(r.slow);
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
            slow: 0,
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
            br#"{"format":3,"state":"open","generation":1,"open_until_ms":0,"changed_at_ms":0,"changed_by":"","reports":[],"leases":[]}"#,
            br#"{"format":1,"state":"open","generation":1,"open_until_ms":0,"changed_at_ms":0,"changed_by":"","reports":[{"id":"a","requests":3,"failures":0,"slow":2,"open":true,"at_ms":0}],"leases":[]}"#,
            br#"{"format":2,"state":"open","generation":1,"open_until_ms":0,"changed_at_ms":0,"changed_by":"","reports":[{"id":"a","requests":3,"failures":0,"slow":4,"open":true,"at_ms":0}],"leases":[]}"#,
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

    /// A record of the previous version (format 1, no slow counts) still reads; this
    /// version writes format 1 while no report has slow calls (the previous version reads
    /// it) and format 2 with the slow counts otherwise.
    #[test]
    fn format_1_records_still_read_and_slow_counts_need_format_2() {
        let old = br#"{"format":1,"state":"open","generation":3,"open_until_ms":9000,"changed_at_ms":1000,"changed_by":"old","reports":[{"id":"old","requests":10,"failures":4,"open":true,"at_ms":1000}],"leases":[{"holder":"old","slots":1,"generation":3,"until_ms":5000}]}"#;
        let read = FleetRecord::decode(old).unwrap();
        assert_eq!(read.format, FORMAT_V1);
        assert_eq!(read.reports[0].slow, 0);
        let e = read.evidence();
        assert_eq!(
            (e.requests, e.failures, e.slow, e.slow_instances),
            (10, 4, 0, 0)
        );
        // Written back unchanged, it is still format 1, byte for byte.
        assert_eq!(read.encode(), old.to_vec());

        let mut slow = read.clone();
        slow.put_report(Report {
            slow: 7,
            ..report("new", 8, 7, false)
        });
        let body = slow.encode();
        let text = String::from_utf8(body.clone()).unwrap();
        assert!(text.starts_with(r#"{"format":2,"#), "{text}");
        let back = FleetRecord::decode(&body).unwrap();
        assert_eq!(back.report("new").unwrap().slow, 7);
        let e = back.evidence();
        assert_eq!((e.instances, e.slow, e.slow_instances), (2, 7, 1));
        // Once the slow report is gone, the record is format 1 again.
        let mut fast = back;
        fast.reports.retain(|r| r.id != "new");
        assert!(
            String::from_utf8(fast.encode())
                .unwrap()
                .starts_with(r#"{"format":1,"#)
        );
    }

    #[test]
    fn times_beyond_the_allowance_are_clamped_or_dropped() {
        let limits = Limits {
            now_ms: 1_000_000,
            skew_ms: 5_000,
            report_ttl_ms: 60_000,
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
        // Older than the TTL: no evidence; older than 10 TTLs: gone.
        r.prune(MAX_REPORTS as u64 + 9, 5);
        assert_eq!(r.reports.len(), 51);
        let e = r.evidence();
        assert_eq!((e.instances, e.requests, e.failing_instances), (6, 6, 0));
        // A full record makes room by dropping an ignored report first.
        let mut full = FleetRecord::empty();
        for i in 0..MAX_REPORTS as u64 {
            full.put_report(Report {
                at_ms: 1_000 + i,
                ..report(&format!("i{i}"), 1, 0, false)
            });
        }
        full.ignored.push("i7".into());
        full.put_report(report("new", 1, 0, false));
        assert!(full.report("i7").is_none() && full.report("i0").is_some());
    }
}
