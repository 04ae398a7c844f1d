//! What a replay reports, on small traces whose every number is worked out by hand.

use crate::support::{T0, fail, ok, replay, small};
use tower_circuit_breaker::CircuitState::{Closed, HalfOpen, Open};
use tower_circuit_breaker::replay::{Counts, Incident, IncidentResponse, OutcomeBucket};
use tower_circuit_breaker::trace::TraceRecord;

fn spans(incidents: &[Incident]) -> Vec<(Option<&str>, u64, u64)> {
    incidents
        .iter()
        .map(|i| (i.label.as_deref(), i.start_ms, i.end_ms))
        .collect()
}

/// A call a second, 100 ms each: 10 ok, 10 failing (labelled `out` when `label`), 20 ok.
fn outage(label: bool) -> Vec<TraceRecord> {
    (0..40)
        .map(|s| match s {
            10..20 if label => fail(s * 1_000, 100).in_incident("out"),
            10..20 => fail(s * 1_000, 100),
            _ => ok(s * 1_000, 100),
        })
        .collect()
}

#[test]
fn a_labelled_outage_worked_out_by_hand() {
    let report = replay(&outage(true), vec![("small".into(), small())], 1);
    assert!(report.incidents_labelled);
    assert_eq!(report.calls, 40);
    assert_eq!(report.start_ms, T0);
    assert_eq!(report.end_ms, T0 + 39_100);
    let traffic = &report.keys[0];
    assert_eq!(traffic.key, "svc/op");
    assert_eq!((traffic.calls, traffic.failures), (40, 10));
    assert_eq!(
        spans(&traffic.incidents),
        vec![(Some("out"), T0 + 10_000, T0 + 19_100)]
    );
    let key = &report.configs[0].keys[0];
    // The third failure ends at 12.1 s: open until 17.1 s. 13..17 rejected (saved), the
    // probe at 18 fails: open until 23.1 s; 19 rejected (saved), 20..23 rejected (lost);
    // the probe at 24 passes and closes.
    assert_eq!(
        key.timeline,
        vec![
            (T0 + 12_100, Open),
            (T0 + 18_000, HalfOpen),
            (T0 + 18_100, Open),
            (T0 + 24_000, HalfOpen),
            (T0 + 24_100, Closed),
        ]
    );
    let mut want = Counts::default();
    want.admitted = 30;
    want.rejected = 10;
    want.failed_let_through = 4;
    want.failed_outside_incidents = 0;
    want.false_rejections = 4;
    want.saved = 6;
    want.opens = 1;
    want.false_opens = 0;
    want.reopens = 1;
    want.probes = 2;
    assert_eq!(key.counts, want);
    assert_eq!(report.configs[0].totals, want);
    let mut response = IncidentResponse::default();
    response.time_to_open_ms = Some(2_100);
    response.time_to_close_ms = Some(5_000);
    assert_eq!(key.incidents, vec![response]);
    let bucket = |start_ms, lost, saved, let_through| {
        let mut b = OutcomeBucket::default();
        b.start_ms = start_ms;
        b.lost = lost;
        b.saved = saved;
        b.let_through = let_through;
        b
    };
    assert_eq!(
        key.buckets,
        vec![bucket(T0 + 10_000, 0, 6, 4), bucket(T0 + 20_000, 4, 0, 0)]
    );
}

#[test]
fn the_same_outage_unlabelled_is_inferred_bucket_by_bucket() {
    let report = replay(&outage(false), vec![("small".into(), small())], 1);
    assert!(!report.incidents_labelled);
    // The 10 s bucket from 10 s is all failures (10 calls ≥ 5, rate 1 ≥ 0.5).
    assert_eq!(
        spans(&report.keys[0].incidents),
        vec![(None, T0 + 10_000, T0 + 20_000)]
    );
    let key = &report.configs[0].keys[0];
    assert_eq!(key.counts.failed_let_through, 4);
    assert_eq!(key.counts.false_opens, 0);
    assert_eq!(key.incidents[0].time_to_open_ms, Some(2_100));
    // Recovery at 20 s (the bucket's end); closed at 24.1 s.
    assert_eq!(key.incidents[0].time_to_close_ms, Some(4_100));
}

#[test]
fn an_open_outside_every_incident_is_false() {
    // Three isolated failures in a row on a healthy day: they trip `small`, and no bucket
    // has half its calls failing (3 of 10).
    let trace: Vec<TraceRecord> = (0..60)
        .map(|s| {
            if (30..33).contains(&s) {
                fail(s * 1_000, 50)
            } else {
                ok(s * 1_000, 50)
            }
        })
        .collect();
    let report = replay(&trace, vec![("small".into(), small())], 1);
    assert!(report.keys[0].incidents.is_empty());
    let counts = report.configs[0].keys[0].counts;
    assert_eq!((counts.opens, counts.false_opens), (1, 1));
    assert_eq!(counts.failed_outside_incidents, 3);
    assert_eq!(counts.failed_let_through, 0);
    // Open from 32.05 s to 37.05 s: 33..37 rejected, all would have succeeded.
    assert_eq!(counts.false_rejections, 5);
}

#[test]
fn bad_buckets_merge_across_short_gaps_only() {
    // Bad buckets at 10 s and 30 s (a 10 s gap: merged), and at 100 s (a 60 s gap: apart).
    let bad = |s: u64| (10..20).contains(&s) || (30..40).contains(&s) || (100..110).contains(&s);
    let trace: Vec<TraceRecord> = (0..150)
        .map(|s| {
            if bad(s) {
                fail(s * 1_000, 10)
            } else {
                ok(s * 1_000, 10)
            }
        })
        .collect();
    let report = replay(&trace, vec![("small".into(), small())], 1);
    let spans: Vec<(u64, u64)> = report.keys[0]
        .incidents
        .iter()
        .map(|i| (i.start_ms - T0, i.end_ms - T0))
        .collect();
    assert_eq!(spans, vec![(10_000, 40_000), (100_000, 110_000)]);
    assert_eq!(report.configs[0].keys[0].incidents.len(), 2);
}

#[test]
fn a_quiet_bucket_is_not_judged() {
    // 4 failing calls in a bucket: under the rule's 5, so no incident.
    let trace: Vec<TraceRecord> = (0..4).map(|i| fail(i * 100, 10)).collect();
    let report = replay(&trace, vec![("small".into(), small())], 1);
    assert!(report.keys[0].incidents.is_empty());
}
