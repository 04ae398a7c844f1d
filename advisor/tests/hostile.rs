//! Traces at the edges: extreme times and durations, no incident labels, too many keys.

use std::path::PathBuf;
use tcb_advisor::AdvisorError;
use tcb_advisor::advise::{MAX_DURATION_US, MAX_KEYS, MAX_START_MS, advise, html};
use tcb_advisor::rank::Costs;

fn scratch(name: &str, text: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("advisor-hostile");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn times_and_durations_past_the_limits_are_refused() {
    for (t, d) in [
        (u64::MAX, 1),
        (MAX_START_MS + 1, 1),
        (1, MAX_DURATION_US + 1),
    ] {
        let text = format!(
            "{{\"t\":0,\"d\":0,\"o\":\"ok\",\"svc\":\"a\",\"op\":\"b\"}}\n\
             {{\"t\":{t},\"d\":{d},\"o\":\"fail\",\"svc\":\"a\",\"op\":\"b\"}}\n"
        );
        let path = scratch("extreme.jsonl", &text);
        let err = advise(&path, None, Costs::default()).unwrap_err();
        assert!(err.to_string().contains("line 2"), "{err}");
    }
}

#[test]
fn the_widest_accepted_span_stays_bounded() {
    // From the epoch to the last accepted start, the longest accepted calls.
    let text = format!(
        "{{\"t\":0,\"d\":{MAX_DURATION_US},\"o\":\"ok\",\"svc\":\"a\",\"op\":\"b\"}}\n\
         {{\"t\":{MAX_START_MS},\"d\":{MAX_DURATION_US},\"o\":\"fail\",\"svc\":\"a\",\"op\":\"b\"}}\n"
    );
    let path = scratch("wide.jsonl", &text);
    let advice = advise(&path, None, Costs::default()).unwrap();
    // Three centuries on one axis: a bounded number of buckets and ticks.
    let page = html(&advice, "wide.jsonl", 8);
    assert!(page.len() < 2_000_000, "{} bytes", page.len());
    assert!(advice.traffic.buckets <= 200);
}

#[test]
fn too_many_keys_are_refused_before_the_replay() {
    let text: String = (0..=MAX_KEYS)
        .map(|i| format!("{{\"t\":{i},\"d\":1,\"o\":\"ok\",\"svc\":\"s\",\"op\":\"op{i}\"}}\n"))
        .collect();
    let path = scratch("keys.jsonl", &text);
    let err = advise(&path, None, Costs::default()).unwrap_err();
    assert!(matches!(err, AdvisorError::TooManyKeys(_)), "{err}");
}

#[test]
fn without_labels_the_incidents_are_inferred() {
    let labelled = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("traces/outage.jsonl"),
    )
    .unwrap();
    let unlabelled: String = labelled
        .lines()
        .map(|l| match l.find(",\"inc\":") {
            Some(i) => format!("{}}}\n", &l[..i]),
            None => format!("{l}\n"),
        })
        .collect();
    assert!(!unlabelled.contains("\"inc\""));
    let path = scratch("unlabelled.jsonl", &unlabelled);
    let advice = advise(&path, None, Costs::default()).unwrap();
    let dynamodb = advice.keys.iter().find(|k| k.key.0 == "dynamodb").unwrap();
    let winner = &dynamodb.scores[dynamodb.order[0]];
    // The 90 s outage is found by the replay's rule and caught by the winner.
    assert!(winner.incidents >= 1);
    assert_eq!(winner.caught, winner.incidents);
    assert_eq!(winner.false_opens, 0);
}

#[test]
fn records_far_out_of_order_are_counted() {
    // 70 000 is replayed once 140 000 is read (the window is 60 s); 10 000 comes after.
    let text: String = [0, 70_000, 140_000, 10_000]
        .iter()
        .map(|t| format!("{{\"t\":{t},\"d\":1,\"o\":\"ok\",\"svc\":\"a\",\"op\":\"b\"}}\n"))
        .collect();
    let path = scratch("late.jsonl", &text);
    let advice = advise(&path, None, Costs::default()).unwrap();
    assert_eq!(advice.late_records, 1);
}
