//! Issue 13, item 4: the count window in configuration documents.

use super::*;
use tower_circuit_breaker::SlidingWindow;

fn counted(n: u32) -> CircuitBreakerConfig {
    CircuitBreakerConfig::builder()
        .sliding_window(SlidingWindow::Count(n))
        .failure_rate_threshold(0.5)
        .build()
        .unwrap()
}

#[test]
fn a_count_window_reads_and_writes_as_count_n() {
    let config = counted(100);
    let v = serde_json::to_value(&config).unwrap();
    assert_eq!(v["sliding_window"], json!({ "count": 100 }));
    let back: CircuitBreakerConfig = serde_json::from_value(v).unwrap();
    assert_eq!(back, config);
    // TOML: an inline table, or the string for the time window.
    let c: CircuitBreakerConfig =
        toml::from_str("sliding_window = { count = 100 }\nfailure_rate_threshold = 0.5\n").unwrap();
    assert_eq!(c, config);
    let c: CircuitBreakerConfig = toml::from_str("sliding_window = \"time\"\n").unwrap();
    assert_eq!(c, CircuitBreakerConfig::default());
    // The default time window is not written: documents without the key stay as they were.
    let v = serde_json::to_value(CircuitBreakerConfig::default()).unwrap();
    assert!(v.get("sliding_window").is_none(), "{v}");
    // Through a registry document and a per-service override.
    let mut all = ConfigPatch::default();
    all.sliding_window = Some(SlidingWindow::Count(20));
    let doc = RegistryConfig {
        default: config.clone(),
        services: BTreeMap::from([(
            "dynamodb".to_string(),
            ServiceOverrides {
                all,
                operations: BTreeMap::new(),
            },
        )]),
        limits: Default::default(),
    };
    let toml = doc.to_toml().unwrap();
    assert_eq!(RegistryConfig::from_toml(&toml).unwrap(), doc, "{toml}");
    let json = serde_json::to_string(&doc).unwrap();
    assert!(json.contains(r#""sliding_window":{"count":20}"#), "{json}");
}

#[test]
fn a_count_window_in_a_document_is_validated() {
    for (json, field) in [
        (r#"{ "sliding_window": { "count": 0 } }"#, "sliding_window"),
        (
            r#"{ "sliding_window": { "count": 3 }, "minimum_request_count": 5 }"#,
            "minimum_request_count",
        ),
    ] {
        let err = serde_json::from_str::<CircuitBreakerConfig>(json)
            .unwrap_err()
            .to_string();
        assert!(err.contains(&format!("`{field}`")), "{json}: {err}");
    }
    assert!(
        serde_json::from_str::<CircuitBreakerConfig>(r#"{ "sliding_window": "count" }"#).is_err()
    );
}

/// A registry document can give one operation a count window; a new document that would
/// change a live circuit's window is refused whole, like a new `window_buckets`.
#[test]
fn a_registry_gives_an_operation_a_count_window_and_keeps_it() {
    let registry = CircuitBreakerRegistry::with_config(
        RegistryConfig::from_toml(
            r#"
            [services.dynamodb.operations.putItem]
            sliding_window = { count = 50 }
            "#,
        )
        .unwrap(),
    );
    let put = registry.circuit("dynamodb", "putItem", None);
    assert_eq!(put.config().sliding_window(), SlidingWindow::Count(50));
    let get = registry.circuit("dynamodb", "getItem", None);
    assert_eq!(get.config().sliding_window(), SlidingWindow::Time);
    let err = registry
        .apply_config(RegistryConfig::from_toml("[default]\nfailure_threshold = 4\n").unwrap())
        .unwrap_err();
    assert!(err.to_string().contains("sliding_window"), "{err}");
    assert_eq!(put.config().failure_threshold(), 5, "nothing changed");
}
