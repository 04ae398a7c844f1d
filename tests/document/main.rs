#![cfg(feature = "serde")]
//! Configuration documents (feature `serde`): durations, round trips, refusals that name
//! the key and field, live re-application to a registry, and stats as JSON.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use tower_circuit_breaker::config::ConfigPatch;
use tower_circuit_breaker::document::{
    MAX_DOCUMENT_BYTES, MAX_OVERRIDES, format_duration, parse_duration,
};
use tower_circuit_breaker::error::{CallError, RejectReason};
use tower_circuit_breaker::registry::{RegistryConfig, RegistryConfigError, ServiceOverrides};
use tower_circuit_breaker::stats::TransitionReason;
use tower_circuit_breaker::{Circuit, CircuitBreakerConfig, CircuitBreakerRegistry, CircuitState};

// ===== helpers =====

#[derive(Debug, PartialEq)]
struct Boom;

async fn fail(circuit: &Circuit) -> Result<(), CallError<Boom>> {
    circuit.call(async { Err::<(), _>(Boom) }).await
}

async fn succeed(circuit: &Circuit) {
    circuit.call(async { Ok::<_, Boom>(()) }).await.unwrap();
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Asserts `result` is an error at `key`, about `field`, whose message contains `needle`.
#[track_caller]
fn refused<T: std::fmt::Debug>(
    result: Result<T, RegistryConfigError>,
    key: &str,
    field: Option<&str>,
    needle: &str,
) -> RegistryConfigError {
    let err = result.unwrap_err();
    assert_eq!((err.key(), err.field()), (key, field), "{err}");
    assert!(
        err.message().contains(needle),
        "message {:?} lacks {needle:?}",
        err.message()
    );
    err
}

/// Both syntaxes of one document must be refused the same way.
#[track_caller]
fn refused_both(toml: &str, json: &str, key: &str, field: &str, needle: &str) {
    refused(RegistryConfig::from_toml(toml), key, Some(field), needle);
    refused(RegistryConfig::from_json(json), key, Some(field), needle);
}

/// A config with every optional part set.
fn rich_config() -> CircuitBreakerConfig {
    CircuitBreakerConfig::cognito()
        .to_builder()
        .failure_rate_threshold(0.5)
        .slow_call_rate_threshold(0.75)
        .backoff(2.0, Duration::from_secs(120), 0.1)
        .expected_response_time(ms(1500))
        .monitoring_window(Duration::from_secs(90))
        .window_buckets(9)
        .half_open_max_calls(3)
        .slow_call_is_failure(false)
        .dropped_call_is_failure(true)
        .metrics_only(true)
        .build()
        .unwrap()
}

fn rich_registry_config() -> RegistryConfig {
    // `ConfigPatch` is non-exhaustive: built field by field.
    let mut op = ConfigPatch::default();
    op.failure_threshold = Some(2);
    op.expected_response_time = Some(ms(300));
    op.failure_rate_threshold = Some(0.25);
    let mut all = ConfigPatch::default();
    all.failure_threshold = Some(4);
    all.recovery_timeout = Some(Duration::from_micros(1_500_250));
    all.backoff = Some(tower_circuit_breaker::config::Backoff {
        multiplier: 1.5,
        max: Duration::from_secs(3600),
        jitter: 0.0,
    });
    all.metrics_only = Some(false);
    let mut weird = ConfigPatch::default();
    weird.slow_call_rate_threshold = Some(1.0);
    let mut services = BTreeMap::new();
    services.insert(
        "dynamodb".to_string(),
        ServiceOverrides {
            all,
            operations: BTreeMap::from([
                ("storeUserMessage".to_string(), op),
                ("getItem".to_string(), ConfigPatch::default()),
            ]),
        },
    );
    services.insert(
        "apigateway-management".to_string(),
        ServiceOverrides::default(),
    );
    services.insert(
        "weird \"name\".with dots".to_string(),
        ServiceOverrides {
            all: weird,
            operations: BTreeMap::new(),
        },
    );
    RegistryConfig {
        default: rich_config(),
        services,
        limits: Default::default(),
    }
}

/// Milliseconds since the epoch of `YYYY-MM-DDTHH:MM:SS.mmmZ`, by an algorithm
/// independent of the crate's (days counted year by year and month by month).
fn parse_rfc3339_ms(s: &str) -> i64 {
    let b = s.as_bytes();
    assert_eq!(b.len(), 24, "{s}");
    for (i, c) in [
        (4, b'-'),
        (7, b'-'),
        (10, b'T'),
        (13, b':'),
        (16, b':'),
        (19, b'.'),
        (23, b'Z'),
    ] {
        assert_eq!(b[i], c, "{s}");
    }
    let n = |r: std::ops::Range<usize>| s[r].parse::<i64>().unwrap();
    let (year, month, day) = (n(0..4), n(5..7), n(8..10));
    let leap = |y: i64| y % 4 == 0 && (y % 100 != 0 || y % 400 == 0);
    let mut days: i64 = (1970..year).map(|y| if leap(y) { 366 } else { 365 }).sum();
    let month_len = [
        31,
        if leap(year) { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    days += month_len[..(month - 1) as usize].iter().sum::<i64>() + day - 1;
    ((days * 24 + n(11..13)) * 60 + n(14..16)) * 60_000 + n(17..19) * 1000 + n(20..23)
}

fn epoch_ms(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH).unwrap().as_millis() as i64
}

/// A file in a directory of its own (per process and name, so parallel tests never
/// share one), both removed when dropped.
struct TempFile(PathBuf);

impl AsRef<Path> for TempFile {
    fn as_ref(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
        let _ = self.0.parent().map(std::fs::remove_dir);
    }
}

fn temp_file(name: &str, contents: &[u8]) -> TempFile {
    let dir = std::env::temp_dir().join(format!("tcb-document-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, contents).unwrap();
    TempFile(path)
}

// ===== durations =====

#[test]
fn durations_parse() {
    let good = [
        ("30s", Duration::from_secs(30)),
        ("500ms", ms(500)),
        ("1m", Duration::from_secs(60)),
        ("2h", Duration::from_secs(7200)),
        ("250us", Duration::from_micros(250)),
        ("250µs", Duration::from_micros(250)), // micro sign
        ("250\u{3bc}s", Duration::from_micros(250)), // Greek mu
        ("100ns", Duration::from_nanos(100)),
        ("1.5s", ms(1500)),
        ("0.5ms", Duration::from_micros(500)),
        ("1.25h", Duration::from_secs(4500)),
        ("1.000000001s", Duration::new(1, 1)),
        ("2.50000000000000000000000000s", ms(2500)),
        ("0s", Duration::ZERO),
        ("007s", Duration::from_secs(7)),
        ("18446744073709551615s", Duration::from_secs(u64::MAX)),
        ("18446744073709551615999999999ns", Duration::MAX),
    ];
    for (input, want) in good {
        assert_eq!(parse_duration(input), Ok(want), "{input:?}");
    }
}

#[test]
fn durations_refused() {
    const EXPECTED: &str = r#"expected a duration with a unit, like "30s" or "500ms""#;
    let long = "1".repeat(100) + "s";
    let bad = [
        ("", EXPECTED),
        ("30", EXPECTED),
        ("1.5", EXPECTED),
        ("-5s", "cannot be negative"),
        ("+5s", EXPECTED),
        ("5 s", "unknown duration unit \" s\""),
        (" 5s", EXPECTED),
        ("5s ", "unknown duration unit"),
        ("5x", "unknown duration unit \"x\""),
        ("5S", "unknown duration unit"),
        ("5sec", "unknown duration unit"),
        ("1m30s", "unknown duration unit"),
        ("5d", "unknown duration unit"),
        ("1.s", EXPECTED),
        (".5s", EXPECTED),
        ("1..5s", EXPECTED),
        ("s", EXPECTED),
        ("1e3s", "unknown duration unit"),
        ("NaN", EXPECTED),
        ("∞s", EXPECTED),
        ("1.5ns", "not a whole number of nanoseconds"),
        ("0.0000000001s", "not a whole number of nanoseconds"),
        ("18446744073709551616s", "too large"),
        ("18446744073709551616000000000ns", "too large"),
        ("9999999999999999999999999999999999999999h", "too large"),
        (long.as_str(), "a string of 101 bytes"),
    ];
    for (input, needle) in bad {
        let err = parse_duration(input).expect_err(input).to_string();
        assert!(err.contains(needle), "{input:?}: {err}");
    }
}

#[test]
fn durations_format_shortest_exact() {
    for (d, want) in [
        (Duration::from_secs(7200), "2h"),
        (Duration::from_secs(3600), "1h"),
        (Duration::from_secs(3660), "61m"),
        (Duration::from_secs(90), "90s"),
        (ms(1500), "1500ms"),
        (Duration::from_micros(1), "1us"),
        (Duration::from_nanos(1), "1ns"),
        (Duration::ZERO, "0s"),
        (Duration::MAX, "18446744073709551615999999999ns"),
    ] {
        assert_eq!(format_duration(d), want);
        assert_eq!(parse_duration(want), Ok(d));
    }
    for ns in [1, 999, 1_000, 60_000_000_000, 86_400_000_000_123, u64::MAX] {
        let d = Duration::from_nanos(ns);
        assert_eq!(parse_duration(&format_duration(d)), Ok(d), "{ns}");
    }
}

// ===== round trips =====

#[test]
fn config_round_trips_through_json() {
    for config in [
        CircuitBreakerConfig::default(),
        CircuitBreakerConfig::dynamodb(),
        rich_config(),
    ] {
        let json = serde_json::to_string(&config).unwrap();
        let back: CircuitBreakerConfig = serde_json::from_str(&json).unwrap();
        assert_eq!(back, config, "{json}");
    }
}

#[test]
fn config_round_trips_through_toml() {
    let doc = RegistryConfig {
        default: rich_config(),
        services: BTreeMap::new(),
        limits: Default::default(),
    };
    let toml = doc.to_toml().unwrap();
    assert_eq!(RegistryConfig::from_toml(&toml).unwrap(), doc, "{toml}");
    // And the TOML crate reads a bare config the same way.
    let table = toml.strip_prefix("[default]\n").unwrap();
    let back: CircuitBreakerConfig = toml::from_str(table).unwrap();
    assert_eq!(back, rich_config());
}

#[test]
fn config_serializes_every_field() {
    let v = serde_json::to_value(CircuitBreakerConfig::dynamodb()).unwrap();
    assert_eq!(
        v,
        json!({
            "failure_threshold": 3,
            "recovery_timeout": "20s",
            "expected_response_time": "500ms",
            "monitoring_window": "1m",
            "minimum_request_count": 5,
            "half_open_max_calls": 1,
            "window_buckets": 10,
            "slow_call_is_failure": true,
            "dropped_call_is_failure": false,
            "metrics_only": false,
        })
    );
    let v = serde_json::to_value(rich_config()).unwrap();
    assert_eq!(v["failure_rate_threshold"], json!(0.5));
    assert_eq!(v["slow_call_rate_threshold"], json!(0.75));
    assert_eq!(
        v["backoff"],
        json!({ "multiplier": 2.0, "max": "2m", "jitter": 0.1 })
    );
    assert_eq!(v["expected_response_time"], "1500ms");
}

/// `expected_response_time = "off"` is the builder's `Duration::MAX` (slow-call detection
/// off, one clock read per call), read in TOML and JSON, written back as `"off"`; any
/// other word is refused, naming the field.
#[test]
fn slow_call_detection_off_reads_and_writes_as_off() {
    let toml = "[default]\npreset = \"dynamodb\"\nexpected_response_time = \"off\"\n";
    let doc = RegistryConfig::from_toml(toml).unwrap();
    assert!(!doc.default.slow_calls_detected());
    assert_eq!(doc.default.expected_response_time(), Duration::MAX);
    let off = CircuitBreakerConfig::dynamodb()
        .to_builder()
        .expected_response_time(Duration::MAX)
        .build()
        .unwrap();
    assert_eq!(doc.default, off);
    let written = doc.to_toml().unwrap();
    assert!(
        written.contains("expected_response_time = \"off\""),
        "{written}"
    );
    assert_eq!(RegistryConfig::from_toml(&written).unwrap(), doc);
    let json = serde_json::to_value(&off).unwrap();
    assert_eq!(json["expected_response_time"], "off");
    let back: CircuitBreakerConfig = serde_json::from_value(json).unwrap();
    assert_eq!(back, off);
    let err =
        serde_json::from_str::<CircuitBreakerConfig>(r#"{ "expected_response_time": "none" }"#)
            .unwrap_err()
            .to_string();
    assert!(err.contains(r#"found "none""#), "{err}");
}

#[test]
fn config_deserializes_over_default_or_preset() {
    let c: CircuitBreakerConfig = serde_json::from_str(r#"{ "failure_threshold": 9 }"#).unwrap();
    assert_eq!(
        c,
        CircuitBreakerConfig::builder()
            .failure_threshold(9)
            .build()
            .unwrap()
    );
    let c: CircuitBreakerConfig = serde_json::from_str("{}").unwrap();
    assert_eq!(c, CircuitBreakerConfig::default());
    // The preset is the base wherever it is written.
    for json in [
        r#"{ "preset": "cognito", "failure_threshold": 7 }"#,
        r#"{ "failure_threshold": 7, "preset": "cognito" }"#,
    ] {
        let c: CircuitBreakerConfig = serde_json::from_str(json).unwrap();
        let want = CircuitBreakerConfig::cognito()
            .to_builder()
            .failure_threshold(7)
            .build()
            .unwrap();
        assert_eq!(c, want);
    }
    for (name, preset) in [
        ("default", CircuitBreakerConfig::default()),
        ("cognito", CircuitBreakerConfig::cognito()),
        ("dynamodb", CircuitBreakerConfig::dynamodb()),
        (
            "api_gateway_management",
            CircuitBreakerConfig::api_gateway_management(),
        ),
    ] {
        let c: CircuitBreakerConfig = serde_json::from_value(json!({ "preset": name })).unwrap();
        assert_eq!(c, preset);
    }
    // Backoff jitter is optional.
    let c: CircuitBreakerConfig =
        serde_json::from_str(r#"{ "backoff": { "multiplier": 2, "max": "1m" } }"#).unwrap();
    assert_eq!(c.backoff().unwrap().jitter, 0.0);
}

#[test]
fn config_deserialize_refuses_unknown_and_invalid() {
    let err = serde_json::from_str::<CircuitBreakerConfig>(r#"{ "failure_treshold": 1 }"#)
        .unwrap_err()
        .to_string();
    assert!(err.contains("unknown field `failure_treshold`"), "{err}");
    let err = serde_json::from_str::<CircuitBreakerConfig>(r#"{ "failure_threshold": 0 }"#)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("`failure_threshold` must be at least 1"),
        "{err}"
    );
    let err = serde_json::from_str::<CircuitBreakerConfig>(r#"{ "preset": "s3" }"#)
        .unwrap_err()
        .to_string();
    assert!(err.contains("unknown variant `s3`"), "{err}");
}

#[test]
fn patch_round_trips_set_fields_only() {
    let mut patch = ConfigPatch::default();
    patch.recovery_timeout = Some(ms(2500));
    patch.slow_call_is_failure = Some(false);
    let v = serde_json::to_value(&patch).unwrap();
    assert_eq!(
        v,
        json!({ "recovery_timeout": "2500ms", "slow_call_is_failure": false })
    );
    assert_eq!(serde_json::from_value::<ConfigPatch>(v).unwrap(), patch);
    assert_eq!(
        serde_json::to_value(ConfigPatch::default()).unwrap(),
        json!({})
    );
    let err = serde_json::from_str::<ConfigPatch>(r#"{ "preset": "cognito" }"#)
        .unwrap_err()
        .to_string();
    assert!(err.contains("unknown field `preset`"), "{err}");
}

#[test]
fn registry_config_round_trips_through_json_and_toml() {
    let config = rich_registry_config();
    let json = config.to_json().unwrap();
    assert_eq!(RegistryConfig::from_json(&json).unwrap(), config, "{json}");
    let toml = config.to_toml().unwrap();
    assert_eq!(RegistryConfig::from_toml(&toml).unwrap(), config, "{toml}");
    // Serde's own entry points agree with the `from_*` functions.
    assert_eq!(
        serde_json::from_str::<RegistryConfig>(&json).unwrap(),
        config
    );
    assert_eq!(toml::from_str::<RegistryConfig>(&toml).unwrap(), config);

    let v: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["services"]["dynamodb"]["failure_threshold"], 4);
    assert_eq!(v["services"]["dynamodb"]["recovery_timeout"], "1500250us");
    assert_eq!(
        v["services"]["dynamodb"]["operations"]["storeUserMessage"],
        json!({ "failure_threshold": 2, "expected_response_time": "300ms", "failure_rate_threshold": 0.25 })
    );
    assert_eq!(v["services"]["apigateway-management"], json!({}));
    assert!(
        toml.contains("\n[services.dynamodb.operations.storeUserMessage]\nfailure_threshold = 2\n")
    );
    assert!(
        toml.contains(
            "[services.\"weird \\\"name\\\".with dots\"]\nslow_call_rate_threshold = 1.0\n"
        )
    );
}

#[test]
fn issue_example_reads_the_same_in_toml_and_json() {
    let toml = RegistryConfig::from_toml(
        r#"
        [default]
        recovery_timeout = "30s"
        [services.dynamodb]
        failure_threshold = 4
        [services.dynamodb.operations.storeUserMessage]
        failure_threshold = 2
        expected_response_time = "300ms"
        "#,
    )
    .unwrap();
    let json = RegistryConfig::from_json(
        r#"{
            "default": { "recovery_timeout": "30s" },
            "services": { "dynamodb": {
                "failure_threshold": 4,
                "operations": { "storeUserMessage": { "failure_threshold": 2, "expected_response_time": "300ms" } }
            } }
        }"#,
    )
    .unwrap();
    assert_eq!(toml, json);
    assert_eq!(toml.default.recovery_timeout(), Duration::from_secs(30));
    assert_eq!(toml.default.failure_threshold(), 5);
    let dynamodb = &toml.services["dynamodb"];
    assert_eq!(dynamodb.all.failure_threshold, Some(4));
    let op = &dynamodb.operations["storeUserMessage"];
    assert_eq!(
        (op.failure_threshold, op.expected_response_time),
        (Some(2), Some(ms(300)))
    );
    // Both keys are optional.
    assert_eq!(
        RegistryConfig::from_toml("").unwrap(),
        RegistryConfig::default()
    );
    assert_eq!(
        RegistryConfig::from_json("{}").unwrap(),
        RegistryConfig::default()
    );
}

// ===== refusals =====

#[test]
fn unknown_field_refused_at_every_level() {
    refused_both(
        "[defaults]\n",
        r#"{ "defaults": {} }"#,
        "",
        "defaults",
        "unknown field `defaults`",
    );
    refused_both(
        "[default]\nfailure_treshold = 3\n",
        r#"{ "default": { "failure_treshold": 3 } }"#,
        "default",
        "failure_treshold",
        "unknown field `failure_treshold`",
    );
    refused_both(
        "[services.dynamodb]\nretries = 3\n",
        r#"{ "services": { "dynamodb": { "retries": 3 } } }"#,
        "services.dynamodb",
        "retries",
        "unknown field `retries`",
    );
    refused_both(
        "[services.dynamodb.operations.storeUserMessage]\npreset = \"dynamodb\"\n",
        r#"{ "services": { "dynamodb": { "operations": { "storeUserMessage": { "preset": "dynamodb" } } } } }"#,
        "services.dynamodb.operations.storeUserMessage",
        "preset",
        "unknown field `preset`",
    );
    refused_both(
        "[services.dynamodb.operations.storeUserMessage]\nbackoff = { multiplier = 2, max = \"1m\", cap = 1 }\n",
        r#"{ "services": { "dynamodb": { "operations": { "storeUserMessage": { "backoff": { "multiplier": 2, "max": "1m", "cap": 1 } } } } } }"#,
        "services.dynamodb.operations.storeUserMessage",
        "backoff.cap",
        "unknown field `cap`",
    );
}

#[test]
fn bad_value_refused_naming_key_and_field() {
    let op = "services.dynamodb.operations.storeUserMessage";
    let cases = [
        (
            "failure_threshold = 0",
            r#""failure_threshold": 0"#,
            "failure_threshold",
            "must be at least 1",
        ),
        (
            "recovery_timeout = \"0s\"",
            r#""recovery_timeout": "0s""#,
            "recovery_timeout",
            "must be greater than zero",
        ),
        (
            "failure_rate_threshold = 1.5",
            r#""failure_rate_threshold": 1.5"#,
            "failure_rate_threshold",
            "must be in (0, 1]",
        ),
        (
            "expected_response_time = \"30\"",
            r#""expected_response_time": "30""#,
            "expected_response_time",
            r#"a duration with a unit, like "30s" or "500ms""#,
        ),
        (
            "monitoring_window = 30",
            r#""monitoring_window": 30"#,
            "monitoring_window",
            r#"a duration with a unit, like "30s" or "500ms""#,
        ),
        (
            "half_open_max_calls = -1",
            r#""half_open_max_calls": -1"#,
            "half_open_max_calls",
            "expected u32",
        ),
        (
            "metrics_only = \"yes\"",
            r#""metrics_only": "yes""#,
            "metrics_only",
            "expected a boolean",
        ),
        (
            "recovery_timeout = \"400d\"",
            r#""recovery_timeout": "400d""#,
            "recovery_timeout",
            "unknown duration unit",
        ),
        (
            "recovery_timeout = \"9000h\"",
            r#""recovery_timeout": "9000h""#,
            "recovery_timeout",
            "must be at most 365 days",
        ),
        (
            "backoff = { multiplier = 0.5, max = \"1m\" }",
            r#""backoff": { "multiplier": 0.5, "max": "1m" }"#,
            "backoff.multiplier",
            "≥ 1",
        ),
        (
            "backoff = { multiplier = 2, max = \"1x\" }",
            r#""backoff": { "multiplier": 2, "max": "1x" }"#,
            "backoff.max",
            "unknown duration unit",
        ),
    ];
    for (toml_line, json_field, field, needle) in cases {
        // In the default, a service and an operation.
        refused_both(
            &format!("[default]\n{toml_line}\n"),
            &format!(r#"{{ "default": {{ {json_field} }} }}"#),
            "default",
            field,
            needle,
        );
        refused_both(
            &format!("[services.dynamodb]\n{toml_line}\n"),
            &format!(r#"{{ "services": {{ "dynamodb": {{ {json_field} }} }} }}"#),
            "services.dynamodb",
            field,
            needle,
        );
        refused_both(
            &format!("[services.dynamodb.operations.storeUserMessage]\n{toml_line}\n"),
            &format!(
                r#"{{ "services": {{ "dynamodb": {{ "operations": {{ "storeUserMessage": {{ {json_field} }} }} }} }} }}"#
            ),
            op,
            field,
            needle,
        );
    }
    // Keys that are not bare words are quoted, as in TOML.
    refused(
        RegistryConfig::from_json(
            r#"{ "services": { "api.gw": { "operations": { "post to": { "failure_threshold": 0 } } } } }"#,
        ),
        r#"services."api.gw".operations."post to""#,
        Some("failure_threshold"),
        "must be at least 1",
    );
}

#[test]
fn repeated_keys_refused() {
    refused(
        RegistryConfig::from_json(
            r#"{ "default": { "failure_threshold": 2, "failure_threshold": 3 } }"#,
        ),
        "default",
        Some("failure_threshold"),
        "duplicate field",
    );
    refused(
        RegistryConfig::from_json(r#"{ "services": { "a": {}, "a": {} } }"#),
        "services.a",
        None,
        "duplicate key",
    );
    refused(
        RegistryConfig::from_json(r#"{ "default": {}, "default": {} }"#),
        "default",
        None,
        "duplicate field",
    );
    refused(
        RegistryConfig::from_toml("[default]\nfailure_threshold = 2\nfailure_threshold = 3\n"),
        "",
        None,
        "duplicate key",
    );
}

#[test]
fn syntax_error_refused_with_line_and_column() {
    let err = refused(
        RegistryConfig::from_toml("[default]\nfailure_threshold = \n"),
        "",
        None,
        "line 2, column 21",
    );
    assert!(
        err.to_string()
            .starts_with("circuit breaker config refused: "),
        "{err}"
    );
    refused(RegistryConfig::from_toml("[default\n"), "", None, "line 1");
    refused(
        RegistryConfig::from_json("{ \"default\": { \"failure_threshold\": 2 }"),
        "",
        None,
        "EOF while parsing an object at line 1 column",
    );
    refused(
        RegistryConfig::from_json("{ \"default\": {} } trailing"),
        "",
        None,
        "trailing characters at line 1 column",
    );
    refused(
        RegistryConfig::from_json("[]"),
        "",
        None,
        "invalid type: sequence",
    );
    // Deep nesting is refused by the parsers' recursion limits, without overflowing the stack.
    let deep = format!(
        "{{ \"default\": {{ \"backoff\": {}{} }} }}",
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    assert!(RegistryConfig::from_json(&deep).is_err());
    let deep = format!("x = {}{}", "[".repeat(100_000), "]".repeat(100_000));
    assert!(RegistryConfig::from_toml(&deep).is_err());
}

#[test]
fn oversize_document_refused() {
    let padding = " ".repeat(MAX_DOCUMENT_BYTES);
    let json = format!("{{ \"default\": {{}} {padding}}}");
    refused(RegistryConfig::from_json(&json), "", None, "1 MiB");
    let toml = format!("[default]\n#{padding}\n");
    refused(RegistryConfig::from_toml(&toml), "", None, "1 MiB");
    // Just under the limit is fine.
    let toml = format!("[default]\n#{}\n", &padding[..MAX_DOCUMENT_BYTES - 12]);
    assert_eq!(toml.len(), MAX_DOCUMENT_BYTES);
    RegistryConfig::from_toml(&toml).unwrap();

    let path = temp_file("oversize.toml", toml.as_bytes());
    RegistryConfig::from_file(&path).unwrap();
    let path = temp_file("oversize2.toml", format!("{toml} ").as_bytes());
    refused(RegistryConfig::from_file(&path), "", None, "1 MiB");
}

#[test]
fn too_many_services_and_operations_refused() {
    // 5 000 services with one operation each: 10 000 in all, accepted.
    let mut doc = String::new();
    for i in 0..MAX_OVERRIDES / 2 {
        doc.push_str(&format!("[services.s{i}.operations.op]\n"));
    }
    let config = RegistryConfig::from_toml(&doc).unwrap();
    assert_eq!(config.services.len(), MAX_OVERRIDES / 2);
    doc.push_str("[services.one_more]\n");
    refused(
        RegistryConfig::from_toml(&doc),
        "services",
        None,
        "at most 10000",
    );
}

// ===== files and the environment =====

#[test]
fn from_file_by_extension_or_content() {
    let toml = "[services.dynamodb]\nfailure_threshold = 4\n";
    let json = r#"{ "services": { "dynamodb": { "failure_threshold": 4 } } }"#;
    let want = RegistryConfig::from_toml(toml).unwrap();
    for (name, contents) in [
        ("a.toml", toml),
        ("a.TOML", toml),
        ("a.json", json),
        ("a.conf", toml),
        ("b.conf", json),
        ("noext", &format!("\n  \t{json}")),
    ] {
        let path = temp_file(name, contents.as_bytes());
        assert_eq!(RegistryConfig::from_file(&path).unwrap(), want, "{name}");
    }
    // The extension wins over the content.
    let path = temp_file("c.toml", json.as_bytes());
    assert!(RegistryConfig::from_file(&path).is_err());
    let err = refused(
        RegistryConfig::from_file(temp_file(
            "bad.json",
            b"{ \"default\": { \"failure_threshold\": 0 } }",
        )),
        "default",
        Some("failure_threshold"),
        "must be at least 1",
    );
    assert!(err.to_string().contains("`default`"));
    refused(
        RegistryConfig::from_file("/nonexistent/registry.toml"),
        "",
        None,
        "cannot read /nonexistent/registry.toml",
    );
    refused(
        RegistryConfig::from_file(temp_file("latin1.toml", b"# caf\xe9\n")),
        "",
        None,
        "not UTF-8",
    );
}

/// Runs in a child process (this test binary, re-run with the variable set), so no
/// thread of this process ever sees the environment change.
#[test]
fn from_env_reads_the_variable() {
    const VAR: &str = "TOWER_CIRCUIT_BREAKER_TEST_DOCUMENT";
    match std::env::var(VAR) {
        Ok(doc) if doc.starts_with('{') => {
            let config = RegistryConfig::from_env(VAR).unwrap();
            assert_eq!(config.services["cognito"].all.failure_threshold, Some(2));
        }
        Ok(_) => {
            let config = RegistryConfig::from_env(VAR).unwrap();
            assert_eq!(config.default.recovery_timeout(), Duration::from_secs(45));
        }
        Err(_) => {
            refused(
                RegistryConfig::from_env(VAR),
                "",
                None,
                &format!("environment variable {VAR} is not set"),
            );
            for doc in [
                r#"{ "services": { "cognito": { "failure_threshold": 2 } } }"#,
                "[default]\nrecovery_timeout = \"45s\"\n",
            ] {
                let status = std::process::Command::new(std::env::current_exe().unwrap())
                    .args(["--exact", "from_env_reads_the_variable", "--test-threads=1"])
                    .env(VAR, doc)
                    .stdout(std::process::Stdio::null())
                    .status()
                    .unwrap();
                assert!(status.success(), "child failed with {doc:?}");
            }
        }
    }
}

// ===== live registries =====

fn live_registry() -> (CircuitBreakerRegistry, Circuit) {
    let registry = CircuitBreakerRegistry::new();
    let circuit = registry.circuit(
        "dynamodb",
        "storeUserMessage",
        &CircuitBreakerConfig::dynamodb(),
    );
    (registry, circuit)
}

#[tokio::test(start_paused = true)]
async fn reapplied_document_lowers_threshold_and_next_failure_trips() {
    let (registry, circuit) = live_registry();
    for _ in 0..5 {
        succeed(&circuit).await;
    }
    fail(&circuit).await.unwrap_err();
    // A second failure would not trip the dynamodb preset (3 in a row).
    assert_eq!(circuit.config().failure_threshold(), 3);
    let before = circuit.stats();
    assert_eq!(
        (
            before.success_count,
            before.failure_count,
            before.consecutive_failures
        ),
        (5, 1, 1)
    );

    registry
        .apply_toml(
            r#"
            [services.dynamodb.operations.storeUserMessage]
            failure_threshold = 2
            "#,
        )
        .unwrap();
    assert_eq!(circuit.config().failure_threshold(), 2);
    // Everything else is still the call-site preset.
    assert_eq!(
        circuit.config(),
        CircuitBreakerConfig::dynamodb()
            .to_builder()
            .failure_threshold(2)
            .build()
            .unwrap()
    );
    assert_eq!(
        circuit.stats(),
        before,
        "re-applying keeps state and counts"
    );

    assert!(matches!(fail(&circuit).await, Err(CallError::Inner(Boom))));
    assert_eq!(circuit.state(), CircuitState::Open);
    let after = circuit.stats();
    assert_eq!(
        (
            after.success_count,
            after.failure_count,
            after.total_requests
        ),
        (5, 2, 7)
    );
    let rejected = fail(&circuit).await.unwrap_err();
    assert!(matches!(rejected, CallError::Rejected(ref o) if o.reason() == RejectReason::Open));
}

#[tokio::test(start_paused = true)]
async fn bad_document_changes_nothing() {
    let (registry, circuit) = live_registry();
    registry
        .apply_json(r#"{ "services": { "dynamodb": { "failure_threshold": 4 } } }"#)
        .unwrap();
    for _ in 0..5 {
        succeed(&circuit).await;
    }
    fail(&circuit).await.unwrap_err();
    let (config, registry_config, stats) = (circuit.config(), registry.config(), circuit.stats());
    assert_eq!(config.failure_threshold(), 4);

    let bad = [
        // An invalid value next to a valid one: the valid one is not applied either.
        (
            "[default]\nfailure_threshold = 1\n[services.dynamodb.operations.storeUserMessage]\nfailure_threshold = 0\n",
            "services.dynamodb.operations.storeUserMessage",
            "failure_threshold",
        ),
        (
            "[services.dynamodb]\nfailure_threshold = 1\nfailure_treshold = 1\n",
            "services.dynamodb",
            "failure_treshold",
        ),
        (
            "[services.dynamodb]\nrecovery_timeout = \"30\"\n",
            "services.dynamodb",
            "recovery_timeout",
        ),
        (
            "[services.dynamodb]\nfailure_rate_threshold = 1.5\n",
            "services.dynamodb",
            "failure_rate_threshold",
        ),
        // Valid on its own, but not for this live circuit.
        (
            "[services.dynamodb]\nwindow_buckets = 5\n",
            "services.dynamodb.operations.storeUserMessage",
            "window_buckets",
        ),
        (
            "[services.dynamodb]\nmonitoring_window = \"5ms\"\n",
            "services.dynamodb",
            "window_buckets",
        ),
    ];
    for (doc, key, field) in bad {
        let err = registry.apply_toml(doc).unwrap_err();
        assert_eq!((err.key(), err.field()), (key, Some(field)), "{doc}: {err}");
        assert!(err.to_string().contains(field), "{err}");
        assert_eq!(circuit.config(), config, "{doc}");
        assert_eq!(registry.config(), registry_config, "{doc}");
        assert_eq!(circuit.stats(), stats, "{doc}");
    }
    let err = registry.apply_json("{ \"services\": ").unwrap_err();
    assert_eq!((err.key(), err.field()), ("", None));
    let err = registry.apply_file("/nonexistent.toml").unwrap_err();
    assert_eq!(err.key(), "");
    assert_eq!(
        (circuit.config(), registry.config(), circuit.stats()),
        (config, registry_config, stats)
    );

    // The threshold still in force is 4: two more failures do not trip, the third does.
    fail(&circuit).await.unwrap_err();
    fail(&circuit).await.unwrap_err();
    assert_eq!(circuit.state(), CircuitState::Closed);
    fail(&circuit).await.unwrap_err();
    assert_eq!(circuit.state(), CircuitState::Open);
}

#[tokio::test(start_paused = true)]
async fn operation_beats_service_beats_call_site() {
    let registry = CircuitBreakerRegistry::with_config(
        RegistryConfig::from_toml(
            r#"
            [default]
            failure_threshold = 9
            [services.dynamodb]
            failure_threshold = 4
            recovery_timeout = "45s"
            [services.dynamodb.operations.storeUserMessage]
            failure_threshold = 2
            "#,
        )
        .unwrap(),
    );
    let dynamodb = CircuitBreakerConfig::dynamodb();
    let op = registry
        .circuit("dynamodb", "storeUserMessage", &dynamodb)
        .config();
    let svc = registry.circuit("dynamodb", "getItem", &dynamodb).config();
    let site = registry
        .circuit("cognito", "verifyJWT", &CircuitBreakerConfig::cognito())
        .config();
    let dflt = registry.circuit("cognito", "other", None).config();
    assert_eq!(
        (op.failure_threshold(), op.recovery_timeout()),
        (2, Duration::from_secs(45))
    );
    assert_eq!(
        op.expected_response_time(),
        ms(500),
        "the call site's for the rest"
    );
    assert_eq!(
        (svc.failure_threshold(), svc.recovery_timeout()),
        (4, Duration::from_secs(45))
    );
    assert_eq!(site, CircuitBreakerConfig::cognito());
    assert_eq!(dflt.failure_threshold(), 9);

    // Re-applied without the operation's override, the service's takes over.
    let file = temp_file(
        "reapply.json",
        br#"{ "services": { "dynamodb": { "failure_threshold": 4 } } }"#,
    );
    registry.apply_file(&file).unwrap();
    let op = registry
        .get("dynamodb", "storeUserMessage")
        .unwrap()
        .config();
    assert_eq!(
        (op.failure_threshold(), op.recovery_timeout()),
        (4, Duration::from_secs(20))
    );
}

// ===== stats =====

#[tokio::test(start_paused = true)]
async fn stats_serialize_with_field_names_and_rfc3339_times() {
    let (registry, circuit) = live_registry();
    let fresh = serde_json::to_value(circuit.stats()).unwrap();
    assert_eq!(fresh["state"], "closed");
    assert_eq!(fresh["manual_override"], Value::Null);
    assert_eq!(fresh["last_failure_time"], Value::Null);
    assert_eq!(fresh["next_attempt_time"], Value::Null);

    succeed(&circuit).await;
    tokio::time::advance(ms(1234)).await;
    for _ in 0..5 {
        fail(&circuit).await.unwrap_err();
    }
    assert_eq!(circuit.state(), CircuitState::Open);
    let stats = circuit.stats();
    let v = serde_json::to_value(&stats).unwrap();
    let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    let mut want = vec![
        "state",
        "manual_override",
        "metrics_only",
        "failure_count",
        "success_count",
        "total_requests",
        "last_failure_time",
        "last_success_time",
        "next_attempt_time",
        "failure_rate",
        "slow_call_rate",
        "rejected_count",
        "ignored_count",
        "slow_count",
        "consecutive_failures",
        "half_open_in_flight",
        "window",
    ];
    want.sort_unstable();
    // serde_json keeps insertion order when another crate turns on `preserve_order`.
    let mut keys = keys;
    keys.sort_unstable();
    assert_eq!(keys, want);
    assert_eq!(v["state"], "open");
    // The fourth failure makes five requests, enough to trip; the fifth call is rejected.
    assert_eq!(v["failure_count"], 4);
    assert_eq!(v["success_count"], 1);
    assert_eq!(v["total_requests"], 5);
    assert_eq!(v["rejected_count"], 1);
    assert_eq!(v["consecutive_failures"], 4);
    assert_eq!(v["failure_rate"], 0.8);
    assert_eq!(
        v["window"],
        json!({ "requests": 5, "failures": 4, "successes": 1, "slow": 0 })
    );
    for (field, time) in [
        ("last_failure_time", stats.last_failure_time),
        ("last_success_time", stats.last_success_time),
        ("next_attempt_time", stats.next_attempt_time),
    ] {
        let s = v[field].as_str().unwrap();
        assert_eq!(parse_rfc3339_ms(s), epoch_ms(time.unwrap()), "{field}: {s}");
    }
    let failed = parse_rfc3339_ms(v["last_failure_time"].as_str().unwrap());
    let succeeded = parse_rfc3339_ms(v["last_success_time"].as_str().unwrap());
    let next = parse_rfc3339_ms(v["next_attempt_time"].as_str().unwrap());
    assert_eq!(failed - succeeded, 1234);
    assert_eq!(next - failed, 20_000);

    circuit.force_open();
    registry.circuit("cognito", "verifyJWT", None).disable();
    let all = serde_json::to_value(registry.all_stats()).unwrap();
    assert_eq!(all[0]["service"], "cognito");
    assert_eq!(all[0]["operation"], "verifyJWT");
    assert_eq!(all[0]["stats"]["manual_override"], "disabled");
    assert_eq!(all[0]["stats"]["state"], "closed");
    assert_eq!(all[1]["service"], "dynamodb");
    assert_eq!(all[1]["stats"]["manual_override"], "forced_open");
    assert_eq!(all[1]["stats"]["next_attempt_time"], Value::Null);
}

#[test]
fn reasons_and_states_serialize_as_their_names() {
    for state in [
        CircuitState::Closed,
        CircuitState::Open,
        CircuitState::HalfOpen,
    ] {
        assert_eq!(serde_json::to_value(state).unwrap(), state.as_str());
    }
    assert_eq!(
        serde_json::to_value(CircuitState::HalfOpen).unwrap(),
        "half_open"
    );
    for reason in [
        RejectReason::Open,
        RejectReason::ForcedOpen,
        RejectReason::HalfOpenFull,
    ] {
        assert_eq!(serde_json::to_value(reason).unwrap(), reason.as_str());
    }
    for reason in [
        TransitionReason::Tripped,
        TransitionReason::RetryAfter,
        TransitionReason::RecoveryTimeoutElapsed,
        TransitionReason::ProbesSucceeded,
        TransitionReason::ProbeFailed,
        TransitionReason::ForcedOpen,
        TransitionReason::Disabled,
        TransitionReason::Reset,
    ] {
        assert_eq!(serde_json::to_value(reason).unwrap(), reason.as_str());
    }
}

mod count_window;
