//! The `tcb-advisor` binary: `--help`, advise on a shipped sample (a document that loads,
//! a self-contained report), determinism, and bad input.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use tower_circuit_breaker::{CircuitBreakerConfig, CircuitBreakerRegistry, RegistryConfig};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_tcb-advisor"))
}

fn sample(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("traces/{name}.jsonl"))
}

fn scratch(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("advisor-cli-{name}"));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().expect("tcb-advisor runs");
    assert!(
        out.status.success(),
        "{:?}\nstdout:\n{}\nstderr:\n{}",
        cmd,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

#[test]
fn help_prints_the_usage() {
    let out = run(bin().arg("--help"));
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        tcb_advisor::args::HELP
    );
    let guide = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/advisor.md"),
    )
    .unwrap();
    assert!(
        guide.contains(tcb_advisor::args::HELP.trim_end()),
        "docs/advisor.md's --help is stale"
    );
    let bad = bin()
        .args(["advise", "x.jsonl", "--cost-failed", "lots"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("`--cost-failed` needs a number"));
}

fn advise_into(dir: &Path, trace: &str) -> Output {
    run(bin()
        .arg("advise")
        .arg(sample(trace))
        .arg("--out")
        .arg(dir.join("best.toml"))
        .arg("--report")
        .arg(dir.join("report.html")))
}

#[test]
fn advise_writes_a_loadable_document_and_a_self_contained_report() {
    let dir = scratch("outage");
    let out = advise_into(&dir, "outage");
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(stdout.contains("dynamodb / storeUserMessage"), "{stdout}");
    assert!(stdout.contains("| winner"), "{stdout}");

    let doc = RegistryConfig::from_file(dir.join("best.toml")).unwrap();
    let registry = CircuitBreakerRegistry::new();
    registry.apply_config(doc.clone()).unwrap();
    // The chat backend passes the seed preset at the call site; the document wins.
    let circuit = registry.circuit(
        "dynamodb",
        "storeUserMessage",
        &CircuitBreakerConfig::dynamodb(),
    );
    let written = &doc.services["dynamodb"].operations["storeUserMessage"];
    assert_eq!(
        Some(circuit.config().failure_threshold()),
        written.failure_threshold
    );
    assert_eq!(
        Some(circuit.config().recovery_timeout()),
        written.recovery_timeout
    );

    let html = std::fs::read_to_string(dir.join("report.html")).unwrap();
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert_eq!(html.matches("<h2>").count(), 3, "one section per key");
    assert!(html.contains("<svg"));
    for outside in [
        "<script", "<link", "<img", "<iframe", "@import", "url(", "src=", "href=",
    ] {
        assert!(
            !html.contains(outside),
            "the report refers outside itself: {outside}"
        );
    }
    // The one URL is the SVG namespace, never fetched.
    let urls = html.matches("http://").count() + html.matches("https://").count();
    assert_eq!(
        urls,
        html.matches(r#"xmlns="http://www.w3.org/2000/svg""#)
            .count()
    );
}

#[test]
fn same_input_gives_the_same_bytes() {
    let (a, b) = (scratch("det-a"), scratch("det-b"));
    let out_a = advise_into(&a, "throttling");
    let out_b = advise_into(&b, "throttling");
    let strip = |o: &Output, d: &Path| {
        String::from_utf8_lossy(&o.stdout).replace(&d.display().to_string(), "DIR")
    };
    assert_eq!(strip(&out_a, &a), strip(&out_b, &b));
    for file in ["best.toml", "report.html"] {
        assert_eq!(
            std::fs::read(a.join(file)).unwrap(),
            std::fs::read(b.join(file)).unwrap(),
            "{file}"
        );
    }
}

#[test]
fn the_shipped_samples_are_what_generate_writes() {
    let dir = scratch("generate");
    run(bin().args(["generate", "--all", "--dir"]).arg(&dir));
    for name in tcb_advisor::generate::SCENARIOS {
        let fresh = std::fs::read(dir.join(format!("{name}.jsonl"))).unwrap();
        assert_eq!(
            fresh,
            std::fs::read(sample(name)).unwrap(),
            "{name}: run `tcb-advisor generate --all --dir advisor/traces`"
        );
    }
}

#[test]
fn bad_traces_are_refused_with_the_line() {
    let dir = scratch("bad");
    let cases = [
        ("empty.jsonl", "", "holds no call"),
        (
            "garbage.jsonl",
            "{\"t\":1,\"d\":2,\"o\":\"ok\",\"svc\":\"a\",\"op\":\"b\"}\nnot json\n",
            "2",
        ),
        (
            "outcome.jsonl",
            "{\"t\":1,\"d\":2,\"o\":\"maybe\",\"svc\":\"a\",\"op\":\"b\"}\n",
            "1",
        ),
    ];
    for (file, text, says) in cases {
        let path = dir.join(file);
        std::fs::write(&path, text).unwrap();
        let out = bin().arg("advise").arg(&path).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{file}: {stderr}");
        assert!(stderr.contains(says), "{file}: {stderr}");
    }
    let missing = bin()
        .args(["advise", "/nonexistent/trace.jsonl"])
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(1));
}

#[test]
fn current_document_is_replayed_and_kept() {
    let dir = scratch("current");
    let current = dir.join("current.toml");
    std::fs::write(
        &current,
        "[default]\npreset = \"dynamodb\"\n\n[limits]\ncapacity = 500\n\n[services.dynamodb]\nrecovery_timeout = \"45s\"\n",
    )
    .unwrap();
    let out = run(bin()
        .arg("advise")
        .arg(sample("outage"))
        .arg("--current")
        .arg(&current)
        .arg("--out")
        .arg(dir.join("best.json")));
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(stdout.contains("current"), "{stdout}");
    let doc = RegistryConfig::from_file(dir.join("best.json")).unwrap();
    assert_eq!(doc.limits.capacity(), 500);
    assert!(
        doc.services["dynamodb"]
            .operations
            .contains_key("storeUserMessage")
    );
    CircuitBreakerRegistry::new().apply_config(doc).unwrap();
}

#[test]
fn a_document_that_would_not_give_the_winner_is_not_written() {
    // A service-wide rate the winner's operation override cannot unset.
    let dir = scratch("unsettable");
    let current = dir.join("current.toml");
    std::fs::write(
        &current,
        "[services.dynamodb]\nfailure_rate_threshold = 0.9\n",
    )
    .unwrap();
    let out_path = dir.join("best.toml");
    let _ = std::fs::remove_file(&out_path);
    let out = bin()
        .arg("advise")
        .arg(sample("outage"))
        .arg("--current")
        .arg(&current)
        .arg("--out")
        .arg(&out_path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("instead of the winner"), "{stderr}");
    assert!(!out_path.exists());
}
