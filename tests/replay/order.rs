//! The reorder window: records written in completion order replay as if sorted; a record
//! older than the window allows is counted late and left out.

use crate::support::{T0, generated, ok, presets, replay};

#[test]
fn completion_order_replays_like_start_order() {
    // `generated` writes in completion order: up to 805 ms out of start order.
    let trace = generated(10_000, 3);
    assert!(trace.windows(2).any(|w| w[0].start_ms > w[1].start_ms));
    let mut sorted = trace.clone();
    sorted.sort_by_key(|r| r.start_ms);
    let a = serde_json::to_vec(&replay(&trace, presets(), 1)).unwrap();
    let b = serde_json::to_vec(&replay(&sorted, presets(), 1)).unwrap();
    assert!(a == b);
}

#[test]
fn records_within_the_window_are_never_late_and_older_ones_are_counted() {
    let window = 60_000;
    let trace = vec![
        ok(0, 1),
        ok(100_000, 1),          // releases 0
        ok(100_000 - window, 1), // exactly one window back: in time
        ok(200_000, 1),          // releases 40 000 and 100 000
        ok(50_000, 1),           // before 100 000, already replayed: late
        ok(200_000 - window + 1, 1),
    ];
    let report = replay(&trace, vec![("small".into(), crate::support::small())], 1);
    assert_eq!(report.late_records, 1);
    assert_eq!(report.calls, 5);
    assert_eq!(report.start_ms, T0);
    assert_eq!(report.keys[0].calls, 5);
}
