//! The CloudWatch EMF example's output is valid Embedded Metric Format and carries the
//! state metric the README's alarm watches.

use cloudwatch_emf as example;
use serde_json::Value;

#[test]
fn emf_example_output_is_embedded_metric_format_with_the_state_metric() {
    let mut out = Vec::new();
    example::run(&mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    let docs: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is JSON"))
        .collect();
    assert!(!docs.is_empty());

    for doc in &docs {
        // The EMF specification: `_aws` with a millisecond timestamp and metric directives;
        // every dimension and metric named in a directive is a top-level member.
        let aws = &doc["_aws"];
        assert!(aws["Timestamp"].as_u64().is_some(), "{doc}");
        let directives = aws["CloudWatchMetrics"].as_array().unwrap();
        assert_eq!(directives.len(), 1);
        let d = &directives[0];
        assert_eq!(d["Namespace"], "ChatBackend");
        for set in d["Dimensions"].as_array().unwrap() {
            for dim in set.as_array().unwrap() {
                assert!(
                    doc[dim.as_str().unwrap()].is_string(),
                    "dimension {dim} missing in {doc}"
                );
            }
        }
        for m in d["Metrics"].as_array().unwrap() {
            let name = m["Name"].as_str().unwrap();
            assert!(doc[name].is_number(), "metric {name} missing in {doc}");
        }
    }

    let state = |invocation: u64| {
        docs.iter()
            .find(|d| d["invocation"] == invocation && d.get("circuit_breaker_state").is_some())
            .map(|d| {
                assert_eq!(d["service"], "dynamodb");
                assert_eq!(d["operation"], "storeUserMessage");
                d["circuit_breaker_state"].as_f64().unwrap()
            })
    };
    assert_eq!(state(1), Some(0.0), "closed after a healthy invocation");
    assert_eq!(
        state(2),
        Some(2.0),
        "open after the outage: the alarm's threshold"
    );
    assert_eq!(state(3), Some(0.0), "closed again after recovery");

    let calls = |invocation: u64, outcome: &str| {
        docs.iter()
            .find(|d| d["invocation"] == invocation && d["outcome"] == outcome)
            .map_or(0, |d| d["circuit_breaker_calls_total"].as_u64().unwrap())
    };
    assert_eq!(calls(2, "failure"), 3);
    assert_eq!(calls(2, "rejected"), 3);
    assert_eq!(calls(3, "success"), 2);
}
