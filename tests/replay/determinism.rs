//! The same trace and configurations give the same bytes, whatever the threads.

use crate::support::{generated, presets, replay};

#[test]
fn same_trace_same_configs_same_bytes_across_runs_and_threads() {
    let trace = generated(20_000, 11);
    let first = serde_json::to_vec(&replay(&trace, presets(), 1)).unwrap();
    for threads in [1, 2, 3] {
        let again = serde_json::to_vec(&replay(&trace, presets(), threads)).unwrap();
        assert!(first == again, "threads {threads}: the report changed");
    }
    // And it found something to report.
    let report = replay(&trace, presets(), 0);
    assert_eq!(report.calls, 20_000);
    assert_eq!(report.late_records, 0);
    assert!(report.configs.iter().all(|c| c.totals.opens >= 1));
}

#[test]
fn a_replay_and_its_report_move_across_threads() {
    fn send<T: Send>() {}
    send::<tower_circuit_breaker::replay::Replay>();
    send::<tower_circuit_breaker::replay::ReplayReport>();
    send::<tower_circuit_breaker::trace::Recorder>();
}
