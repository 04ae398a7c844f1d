//! What the fuzz targets check, shared by `fuzz/fuzz_targets/*` (cargo fuzz, nightly) and
//! `tests/fuzz_corpus` (replays the committed corpus on stable, so CI covers it without
//! nightly). Each check takes arbitrary bytes and panics only on a real defect.

use std::time::Duration;

use tower_circuit_breaker::classify::{Classify, HttpStatusAsFailures, Verdict};
use tower_circuit_breaker::document::{format_duration, parse_duration};
use tower_circuit_breaker::registry::RegistryConfig;

/// Configuration documents are untrusted input: any bytes give a config or a typed
/// error, never a panic; what parses survives a round trip through its own output.
pub fn document(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(config) = RegistryConfig::from_json(text) {
        let json = config.to_json().expect("a parsed config serializes");
        let again = RegistryConfig::from_json(&json)
            .unwrap_or_else(|e| panic!("own JSON refused: {e}\n{json}"));
        assert_eq!(again, config, "JSON round trip changed the config\n{json}");
    }
    if let Ok(config) = RegistryConfig::from_toml(text) {
        let toml = config.to_toml().expect("a parsed config serializes");
        let again = RegistryConfig::from_toml(&toml)
            .unwrap_or_else(|e| panic!("own TOML refused: {e}\n{toml}"));
        assert_eq!(again, config, "TOML round trip changed the config\n{toml}");
    }
    if let Ok(d) = parse_duration(text) {
        let shown = format_duration(d);
        assert_eq!(
            parse_duration(&shown),
            Ok(d),
            "duration {text:?} formats as {shown:?}"
        );
    }
}

/// Classification of arbitrary HTTP responses: the status decides, `Retry-After` only
/// when honoured, only on 429/503, positive and capped.
///
/// Layout: two bytes of status (mod 1000, invalid codes skipped), one byte of flags,
/// then header lines `name: value` separated by `\n`.
pub fn classify_http(data: &[u8]) {
    let [hi, lo, flags, rest @ ..] = data else {
        return;
    };
    let Ok(status) = http::StatusCode::from_u16(u16::from_be_bytes([*hi, *lo]) % 1000) else {
        return;
    };
    let mut response = http::Response::builder().status(status);
    for line in rest.split(|&b| b == b'\n') {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let (Ok(name), Ok(value)) = (
            http::header::HeaderName::from_bytes(&line[..colon]),
            http::header::HeaderValue::from_bytes(line[colon + 1..].trim_ascii()),
        ) else {
            continue;
        };
        response = response.header(name, value);
    }
    let Ok(response) = response.body(()) else {
        return;
    };
    let cap = Duration::from_secs(u64::from(*flags & 0x7f) + 1);
    let result: Result<_, std::io::Error> = Ok(response);

    let plain = HttpStatusAsFailures::new().classify(&result);
    let by_status = HttpStatusAsFailures::status_verdict(status);
    assert_eq!(plain, by_status, "without Retry-After the status decides");
    let failure = status.is_server_error() || status.as_u16() == 408 || status.as_u16() == 429;
    assert_eq!(
        by_status,
        if failure {
            Verdict::Failure
        } else {
            Verdict::Success
        },
        "{status}"
    );

    let honoured = HttpStatusAsFailures::new()
        .honor_retry_after(cap)
        .classify(&result);
    match honoured {
        Verdict::OpenFor(d) => {
            assert!(
                status.as_u16() == 429 || status.as_u16() == 503,
                "{status} opened"
            );
            assert!(d > Duration::ZERO && d <= cap, "{d:?} outside (0, {cap:?}]");
        }
        v => assert_eq!(v, by_status, "{status}"),
    }

    let transport: Result<http::Response<()>, std::io::Error> = Err(std::io::Error::other("reset"));
    assert_eq!(
        HttpStatusAsFailures::new()
            .honor_retry_after(cap)
            .classify(&transport),
        Verdict::Failure
    );
}
