//! The CloudWatch Logs Insights CSV converter: the column mapping, and hostile exports.

use crate::Endless;
use std::io::{BufReader, Read};
use tower_circuit_breaker::trace::{InsightsError, TraceOutcome, insights_csv};

const T: u64 = 1_795_774_451_123; // 2026-11-27 10:14:11.123

/// `(t, d, o, inc)` of a converted row.
type Row = (u64, u64, TraceOutcome, Option<String>);

fn convert(text: &str) -> Vec<Result<Row, InsightsError>> {
    insights_csv(text.as_bytes(), "lambda", "chat")
        .map(|r| r.map(|r| (r.start_ms, r.duration_us, r.outcome, r.incident)))
        .collect()
}

#[test]
fn columns_by_name_in_any_order_with_a_status_column() {
    let csv = "\u{feff}status,@requestId,@duration,@timestamp,incident\n\
               ,a,12.5,2026-11-27 10:14:11.123,\n\
               error,b,3000.004,2026-11-27 10:14:12.000,outage\n\
               TIMEOUT,c,900,2026-11-27T10:14:13.5Z,outage\n\
               ignored,d,1,2026-11-27 10:14:14,\n";
    let all: Vec<_> = convert(csv).into_iter().map(Result::unwrap).collect();
    assert_eq!(
        all,
        vec![
            (T, 12_500, TraceOutcome::Ok, None),
            (
                T + 877,
                3_000_004,
                TraceOutcome::Fail,
                Some("outage".into())
            ),
            (
                T + 2_377,
                900_000,
                TraceOutcome::Fail,
                Some("outage".into())
            ),
            (T + 2_877, 1_000, TraceOutcome::Ignored, None),
        ]
    );
    let record = insights_csv(csv.as_bytes(), "lambda", "chat")
        .next()
        .unwrap()
        .unwrap();
    assert_eq!(record.key(), ("lambda", "chat"));
}

#[test]
fn report_messages_decide_when_there_is_no_status_column() {
    // A REPORT message with tabs, quotes and a newline inside the quoted field.
    let csv = "@timestamp,@duration,@message\n\
               2026-11-27 10:14:11.123,5.0,\"REPORT RequestId: x\tDuration: 5.00 ms\tStatus: error\tError Type: Runtime.ExitError\n\"\n\
               2026-11-27 10:14:11.123,6,\"REPORT RequestId: y\tDuration: 6.00 ms\"\n\
               2026-11-27 10:14:11.123,7,\"says \"\"Status: timeout\"\"\"\n";
    let outcomes: Vec<TraceOutcome> = convert(csv).into_iter().map(|r| r.unwrap().2).collect();
    assert_eq!(
        outcomes,
        vec![TraceOutcome::Fail, TraceOutcome::Ok, TraceOutcome::Fail]
    );
}

#[test]
fn without_status_or_message_every_call_is_ok() {
    let all = convert("@timestamp,@duration\n2026-11-27 10:14:11.123,1\n");
    assert_eq!(all[0].as_ref().unwrap().2, TraceOutcome::Ok);
}

#[test]
fn a_missing_required_column_ends_it_at_the_header() {
    let all = convert("@timestamp,status\n2026-11-27 10:14:11.123,ok\n");
    assert_eq!(all.len(), 1);
    assert!(matches!(
        all[0],
        Err(InsightsError::MissingColumn {
            line: 1,
            column: "@duration"
        })
    ));
    let empty = convert("");
    assert!(matches!(
        empty[..],
        [Err(InsightsError::MissingColumn { line: 0, .. })]
    ));
}

#[test]
fn bad_rows_are_errors_with_their_line_and_the_rest_is_read() {
    let csv = "@timestamp,@duration,status\n\
               2026-02-30 00:00:00,1,ok\n\
               2026-11-27 10:14:11.123,-1,ok\n\
               2026-11-27 10:14:11.123,1,maybe\n\
               2026-11-27 10:14:11.123\n\
               \"2026-11-27 10:14:11.123\",\"1\",\"ok\"\n\
               \n\
               2026-11-27 10:14:11.123,99999999999999,ok\n";
    let all = convert(csv);
    let lines: Vec<(u64, String)> = all
        .iter()
        .filter_map(|r| r.as_ref().err())
        .map(|e| match e {
            InsightsError::BadRow { line, column, .. } => (*line, column.clone()),
            other => panic!("{other}"),
        })
        .collect();
    assert_eq!(
        lines,
        vec![
            (2, "@timestamp".into()),
            (3, "@duration".into()),
            (4, "status".into()),
            (5, "(row)".into()),
            (8, "@duration".into()),
        ]
    );
    assert_eq!(all.iter().filter(|r| r.is_ok()).count(), 1);
    // The message does not quote the value.
    assert!(!all[2].as_ref().unwrap_err().to_string().contains("maybe"));
}

#[test]
fn an_unterminated_quote_of_fifty_megabytes_is_one_skipped_row() {
    let head = "@timestamp,@duration\n\"";
    // A quote never closed: the rest of the input is one row, read past, not kept.
    let body = BufReader::new(Endless {
        left: 50 << 20,
        byte: b'\n',
    });
    let all: Vec<_> = insights_csv(head.as_bytes().chain(body), "s", "o").collect();
    assert_eq!(all.len(), 1);
    assert!(matches!(
        all[0],
        Err(InsightsError::LineTooLong { line: 2, .. })
    ));
}
