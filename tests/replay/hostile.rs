//! Hostile traces: extreme times and durations, a key per call, a label per call.

use crate::support::{T0, replay, small};
use tower_circuit_breaker::replay::{Replay, ReplayOptions};
use tower_circuit_breaker::trace::{TraceOutcome, TraceRecord};

#[test]
fn extreme_times_and_durations_are_left_out_or_replayed_without_overflow() {
    let trace = vec![
        TraceRecord::new(0, 0, TraceOutcome::Fail, "s", "o"),
        TraceRecord::new(1, u64::MAX, TraceOutcome::Fail, "s", "o"), // out of range
        TraceRecord::new(2, 1_000_000_000_000, TraceOutcome::Fail, "s", "o"), // the longest
        TraceRecord::new(3, 0, TraceOutcome::Fail, "s", "o"),
        TraceRecord::new(
            10_000_000_000_000,
            1_000_000_000_000,
            TraceOutcome::Ok,
            "s",
            "o",
        ),
        TraceRecord::new(u64::MAX, 0, TraceOutcome::Ok, "s", "o"), // out of range
    ];
    let report = replay(&trace, vec![("small".into(), small())], 1);
    assert_eq!(report.records_out_of_range, 2);
    assert_eq!(report.calls, 4);
    assert_eq!(report.end_ms, 10_000_000_000_000 + 1_000_000_000);
    let key = &report.configs[0].keys[0];
    assert_eq!(key.counts.admitted + key.counts.rejected, 4);
}

#[test]
fn a_new_key_per_call_stops_at_the_key_limit() {
    let mut options = ReplayOptions::default();
    options.max_keys = 100;
    options.threads = 1;
    let mut replay = Replay::with_options(vec![("small".into(), small())], options);
    for i in 0..10_000u64 {
        replay.feed(&TraceRecord::new(
            T0 + i,
            10,
            TraceOutcome::Ok,
            format!("s{i}"),
            "o",
        ));
    }
    let report = replay.finish();
    assert_eq!(report.keys.len(), 100);
    assert_eq!(report.configs[0].keys.len(), 100);
    assert_eq!(report.records_over_key_limit, 9_900);
    assert_eq!(report.calls, 100);
}

#[test]
fn a_label_per_call_keeps_at_most_ten_thousand_incidents() {
    let mut options = ReplayOptions::default();
    options.threads = 1;
    let mut replay = Replay::with_options(vec![("small".into(), small())], options);
    for i in 0..20_000u64 {
        let r = TraceRecord::new(T0 + i, 10, TraceOutcome::Fail, "s", "o");
        replay.feed(&r.in_incident(format!("i{i}")));
    }
    let report = replay.finish();
    assert_eq!(report.keys[0].incidents.len(), 10_000);
    // Every labelled failure let through counts as during an incident.
    let counts = report.configs[0].keys[0].counts;
    assert_eq!(counts.failed_outside_incidents, 0);
    assert_eq!(counts.failed_let_through + counts.saved, 20_000);
}

#[test]
fn no_configs_and_no_records_are_fine() {
    let empty = replay(&[], vec![("small".into(), small())], 0);
    assert_eq!((empty.calls, empty.start_ms, empty.end_ms), (0, 0, 0));
    assert!(empty.keys.is_empty());
    assert!(empty.configs[0].keys.is_empty());
    let none = replay(
        &[TraceRecord::new(T0, 1, TraceOutcome::Ok, "s", "o")],
        vec![],
        0,
    );
    assert_eq!(none.calls, 1);
    assert!(none.configs.is_empty());
}
