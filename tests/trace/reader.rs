//! The reader and writer: round trips, and what every kind of bad line does.

use crate::Endless;
use std::io::{self, BufReader, Read};
use tower_circuit_breaker::trace::{
    DEFAULT_MAX_LINE, TraceError, TraceOutcome, TraceReader, TraceRecord, TraceWriter,
};

fn read_all(text: &[u8]) -> Vec<Result<TraceRecord, TraceError>> {
    TraceReader::new(text).collect()
}

#[test]
fn written_records_read_back_the_same() {
    let records = vec![
        TraceRecord::new(0, 0, TraceOutcome::Ok, "a", "b"),
        TraceRecord::new(u64::MAX, u64::MAX, TraceOutcome::Fail, "ünï\"cödé\n", "")
            .in_incident("x,y"),
        TraceRecord::new(1_764_800_000_000, 1_500, TraceOutcome::Ignored, "s", "o"),
    ];
    let mut writer = TraceWriter::new(Vec::new());
    for r in &records {
        writer.write(r).unwrap();
    }
    assert_eq!(writer.records_written(), 3);
    let bytes = writer.into_inner();
    assert_eq!(bytes.iter().filter(|&&b| b == b'\n').count(), 3);
    let back: Vec<TraceRecord> = read_all(&bytes).into_iter().map(Result::unwrap).collect();
    assert_eq!(back, records);
}

#[test]
fn crlf_blank_lines_and_unknown_keys_are_accepted() {
    let text =
        b"\r\n  \n{\"t\":1,\"d\":2,\"o\":\"ok\",\"svc\":\"s\",\"op\":\"o\",\"future\":[1,2]}\r\n\n";
    let all = read_all(text);
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].as_ref().unwrap().start_ms, 1);
}

#[test]
fn every_bad_line_is_a_typed_error_with_its_line_and_reading_goes_on() {
    let good = r#"{"t":1,"d":2,"o":"ok","svc":"s","op":"o"}"#;
    let bad = [
        r#"{"t":-1,"d":2,"o":"ok","svc":"s","op":"o"}"#,
        r#"{"t":1.5,"d":2,"o":"ok","svc":"s","op":"o"}"#,
        r#"{"t":18446744073709551616,"d":2,"o":"ok","svc":"s","op":"o"}"#,
        r#"{"t":1,"d":2,"o":"slow","svc":"s","op":"o"}"#,
        r#"{"t":1,"d":2,"o":"ok","svc":"s"}"#,
        r#"{"t":1,"d":2,"o":"ok","svc":7,"op":"o"}"#,
        r#"{"t":1,"d":2,"o":"ok","svc":"s","op":"o","inc":null}"#,
        r#"[1,2,3]"#,
        r#"{"t":1"#,
        "\u{0}\u{1}",
    ];
    let mut text = String::new();
    for b in bad {
        text.push_str(b);
        text.push('\n');
        text.push_str(good);
        text.push('\n');
    }
    let mut bytes = text.into_bytes();
    bytes.extend_from_slice(b"{\"t\":1,\"d\":2,\"o\":\"ok\",\"svc\":\"\xff\xfe\",\"op\":\"o\"}\n");
    let all = read_all(&bytes);
    // `"inc":null` is an absent label: a good line.
    let errors: Vec<u64> = all
        .iter()
        .filter_map(|r| r.as_ref().err().map(TraceError::line))
        .collect();
    assert_eq!(errors, vec![1, 3, 5, 7, 9, 11, 15, 17, 19, 21]);
    for e in all.iter().filter_map(|r| r.as_ref().err()) {
        assert!(matches!(e, TraceError::Malformed { .. }), "{e}");
        // The message never quotes the value back.
        assert!(!e.to_string().contains("\u{0}"));
    }
    assert_eq!(all.iter().filter(|r| r.is_ok()).count(), 11);
}

#[test]
fn a_line_of_a_hundred_megabytes_is_skipped_not_kept() {
    let huge = BufReader::new(Endless {
        left: 100 << 20,
        byte: b'[',
    });
    let tail = format!("\n{}\n", r#"{"t":9,"d":2,"o":"fail","svc":"s","op":"o"}"#);
    let reader = TraceReader::new(huge.chain(tail.as_bytes()));
    let all: Vec<_> = reader.collect();
    assert_eq!(all.len(), 2);
    assert!(matches!(
        all[0],
        Err(TraceError::LineTooLong {
            line: 1,
            limit: DEFAULT_MAX_LINE
        })
    ));
    assert_eq!(all[1].as_ref().unwrap().start_ms, 9);
}

#[test]
fn the_line_limit_can_be_set_and_is_exact() {
    // 64 bytes (the least limit there is) with a padded operation name, then 65.
    let line = |op: &str| format!(r#"{{"t":1,"d":2,"o":"ok","svc":"s","op":"{op}"}}"#);
    let at_limit = line(&"o".repeat(64 - line("").len()));
    assert_eq!(at_limit.len(), 64);
    let over = line(&"o".repeat(65 - line("").len()));
    let text = format!("{at_limit}\n{over}\n");
    let all: Vec<_> = TraceReader::new(text.as_bytes()).max_line(64).collect();
    assert!(all[0].is_ok());
    assert!(matches!(
        all[1],
        Err(TraceError::LineTooLong { line: 2, .. })
    ));
}

/// Fails on the second read.
struct Broken(u32);

impl Read for Broken {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0 += 1;
        if self.0 == 1 {
            let line = b"{\"t\":1,\"d\":2,\"o\":\"ok\",\"svc\":\"s\",\"op\":\"o\"}\n{\"t\":";
            buf[..line.len()].copy_from_slice(line);
            Ok(line.len())
        } else {
            Err(io::Error::other("disk on fire"))
        }
    }
}

#[test]
fn a_read_error_ends_the_iteration_with_its_line() {
    let reader = BufReader::with_capacity(4096, Broken(0));
    assert!(reader.buffer().is_empty());
    let all: Vec<_> = TraceReader::new(reader).collect();
    assert_eq!(all.len(), 2);
    assert!(all[0].is_ok());
    assert!(matches!(all[1], Err(TraceError::Io { line: 2, .. })));
}
