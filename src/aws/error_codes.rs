//! AWS error codes: the codes the SDK treats as throttling or transient, and the code of an
//! error response as the SDK reads it (header, JSON or XML body).
//!
//! A leaf: it uses nothing else in this crate, so both the adapter's classification
//! ([`classify_attempt`](super::classify_attempt)) and the fleet's DynamoDB store share it
//! without the store depending on the adapter.

use aws_smithy_runtime_api::http::Headers;
use std::borrow::Cow;

/// Error codes the AWS SDK treats as throttling (`aws-runtime`'s `THROTTLING_ERRORS`).
pub const THROTTLING_ERROR_CODES: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottledException",
    "TooManyRequestsException",
    "ProvisionedThroughputExceededException",
    "TransactionInProgressException",
    "RequestLimitExceeded",
    "BandwidthLimitExceeded",
    "LimitExceededException",
    "RequestThrottled",
    "SlowDown",
    "PriorRequestNotComplete",
    "EC2ThrottledException",
];

/// Error codes the AWS SDK treats as transient (`aws-runtime`'s `TRANSIENT_ERRORS`).
pub const TRANSIENT_ERROR_CODES: &[&str] = &["RequestTimeout", "RequestTimeoutException"];

/// The AWS error code of an error response, read as the SDK reads it: the
/// `x-amzn-errortype` header, else the JSON body's `code`, else its `__type`, else an XML
/// body's first `<Code>`; sanitized (`aws.dynamodb#Throttling:http://…` → `Throttling`).
///
/// ```
/// use aws_smithy_runtime_api::http::Headers;
/// use tower_circuit_breaker::aws::error_code;
///
/// let mut headers = Headers::new();
/// assert_eq!(error_code(&headers, Some(br#"{"__type":"a.b#Nope","message":"m"}"#)).as_deref(), Some("Nope"));
/// headers.insert("x-amzn-errortype", "GoneException:http://internal.amazon.com/coral/");
/// assert_eq!(error_code(&headers, None).as_deref(), Some("GoneException"));
/// ```
pub fn error_code<'a>(headers: &'a Headers, body: Option<&'a [u8]>) -> Option<Cow<'a, str>> {
    code_of(headers, body, false)
}

/// [`error_code`]; with `truncated`, `body` is only the start of the body.
pub(super) fn code_of<'a>(
    headers: &'a Headers,
    body: Option<&'a [u8]>,
    truncated: bool,
) -> Option<Cow<'a, str>> {
    let raw = match headers.get("x-amzn-errortype") {
        Some(h) => Cow::Borrowed(h),
        None => body_error_code(body?, truncated)?,
    };
    Some(match raw {
        Cow::Borrowed(s) => Cow::Borrowed(sanitize(s)),
        Cow::Owned(s) => Cow::Owned(sanitize(&s).to_owned()),
    })
}

/// Drops a trailing `:…` (a URL) and a leading `…#` (a namespace), as the SDK does.
fn sanitize(code: &str) -> &str {
    let code = code.find(':').map_or(code, |i| &code[..i]);
    code.find('#').map_or(code, |i| &code[i + 1..])
}

fn body_error_code(body: &[u8], truncated: bool) -> Option<Cow<'_, str>> {
    let start = body.iter().position(|b| !b.is_ascii_whitespace())?;
    match body[start] {
        b'{' => json_error_code(body, truncated),
        b'<' => xml_error_code(body),
        _ => None,
    }
}

/// The first `<Code>…</Code>` of an XML error body (restXml, awsQuery, ec2Query).
fn xml_error_code(body: &[u8]) -> Option<Cow<'_, str>> {
    const OPEN: &[u8] = b"<Code>";
    const CLOSE: &[u8] = b"</Code>";
    let start = find(body, OPEN)? + OPEN.len();
    let len = find(&body[start..], CLOSE)?;
    let code = std::str::from_utf8(&body[start..start + len]).ok()?.trim();
    (!code.is_empty()).then_some(Cow::Borrowed(code))
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The top-level `code` (preferred) or `__type` string of a JSON error body. `None` when
/// the body is not a well-formed JSON object, as the SDK's parser would refuse it too.
///
/// With `truncated`, `body` is the start of a longer body: running out of bytes is not an
/// error, and the members complete before the end count. Anything malformed before the
/// end still gives `None`.
fn json_error_code(body: &[u8], truncated: bool) -> Option<Cow<'_, str>> {
    let mut p = Json {
        b: body,
        i: 0,
        eof: false,
    };
    let (mut code, mut typ) = (None, None);
    let parsed = json_members(&mut p, &mut code, &mut typ);
    match parsed {
        Some(()) => {
            p.ws();
            if p.i != body.len() {
                return None;
            }
        }
        // The prefix ended inside the object: what was complete before counts.
        None if truncated && p.eof => {}
        None => return None,
    }
    code.or(typ)
}

/// Reads one JSON object, noting its top-level `code` and `__type` strings as they come.
fn json_members<'a>(
    p: &mut Json<'a>,
    code: &mut Option<Cow<'a, str>>,
    typ: &mut Option<Cow<'a, str>>,
) -> Option<()> {
    p.ws();
    p.expect(b'{')?;
    p.ws();
    if p.peek() == Some(b'}') {
        p.i += 1;
        return Some(());
    }
    loop {
        p.ws();
        let key = p.string()?;
        p.ws();
        p.expect(b':')?;
        p.ws();
        if p.peek() == Some(b'"') {
            let value = p.string()?;
            match &*key {
                "code" => *code = Some(value),
                "__type" => *typ = Some(value),
                _ => {}
            }
        } else {
            p.skip_value()?;
        }
        p.ws();
        match p.bump()? {
            b',' => {}
            b'}' => return Some(()),
            _ => return None,
        }
    }
}

/// A minimal JSON reader: enough to find two top-level string members and skip the rest.
struct Json<'a> {
    b: &'a [u8],
    i: usize,
    /// Set once a read found no byte left: a failure after this is the input's end.
    eof: bool,
}

impl<'a> Json<'a> {
    fn peek(&mut self) -> Option<u8> {
        let c = self.b.get(self.i).copied();
        self.eof |= c.is_none();
        c
    }

    fn bump(&mut self) -> Option<u8> {
        let c = self.peek()?;
        self.i += 1;
        Some(c)
    }

    fn expect(&mut self, c: u8) -> Option<()> {
        (self.bump()? == c).then_some(())
    }

    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.i += 1;
        }
    }

    /// A string starting at `"`, unescaped.
    fn string(&mut self) -> Option<Cow<'a, str>> {
        self.expect(b'"')?;
        let start = self.i;
        let mut escaped = false;
        loop {
            match self.bump()? {
                b'"' => break,
                b'\\' => {
                    escaped = true;
                    self.bump()?;
                }
                c if c < 0x20 => return None,
                _ => {}
            }
        }
        let raw = std::str::from_utf8(&self.b[start..self.i - 1]).ok()?;
        if escaped {
            unescape(raw).map(Cow::Owned)
        } else {
            Some(Cow::Borrowed(raw))
        }
    }

    /// Skips one value of any kind (strings, numbers, literals, nested containers).
    fn skip_value(&mut self) -> Option<()> {
        let mut depth = 0usize;
        loop {
            self.ws();
            match self.peek()? {
                b'"' => {
                    self.string()?;
                }
                b'{' | b'[' => {
                    self.i += 1;
                    depth += 1;
                    continue;
                }
                b'}' | b']' if depth > 0 => {
                    self.i += 1;
                    depth -= 1;
                }
                b',' | b':' if depth > 0 => {
                    self.i += 1;
                    continue;
                }
                c if c == b'-' || c.is_ascii_alphanumeric() => {
                    while self.peek().is_some_and(|c| {
                        c.is_ascii_alphanumeric() || matches!(c, b'-' | b'+' | b'.')
                    }) {
                        self.i += 1;
                    }
                }
                _ => return None,
            }
            if depth == 0 {
                return Some(());
            }
        }
    }
}

/// Resolves JSON escapes; `None` for an invalid one.
fn unescape(raw: &str) -> Option<String> {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        out.push(match chars.next()? {
            '"' => '"',
            '\\' => '\\',
            '/' => '/',
            'b' => '\u{8}',
            'f' => '\u{c}',
            'n' => '\n',
            'r' => '\r',
            't' => '\t',
            'u' => {
                let hi = hex4(&mut chars)?;
                if (0xD800..0xDC00).contains(&hi) {
                    if chars.next()? != '\\' || chars.next()? != 'u' {
                        return None;
                    }
                    let lo = hex4(&mut chars)?;
                    if !(0xDC00..0xE000).contains(&lo) {
                        return None;
                    }
                    char::from_u32(0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00))?
                } else {
                    char::from_u32(hi)?
                }
            }
            _ => return None,
        });
    }
    Some(out)
}

/// Four hex digits of a `\\u` escape.
fn hex4(chars: &mut std::str::Chars<'_>) -> Option<u32> {
    let mut n = 0;
    for _ in 0..4 {
        n = n * 16 + chars.next()?.to_digit(16)?;
    }
    Some(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(body: &str) -> Option<String> {
        json_error_code(body.as_bytes(), false).map(Cow::into_owned)
    }

    fn prefix_code(body: &str) -> Option<String> {
        json_error_code(body.as_bytes(), true).map(Cow::into_owned)
    }

    #[test]
    fn json_codes_in_a_prefix() {
        let t = r#"{"__type":"com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException","message":"xxxx"#;
        assert_eq!(code(t), None, "not a complete body");
        assert_eq!(
            prefix_code(t).as_deref(),
            Some("com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException")
        );
        // Cut inside the code's own string: nothing complete.
        assert_eq!(
            prefix_code(r#"{"__type":"com.amazonaws.dynamodb.v2012"#),
            None
        );
        // Cut inside a nested value after the code.
        assert_eq!(
            prefix_code(r#" {"code":"SlowDown","detail":{"a":[1,2,{"b":"#).as_deref(),
            Some("SlowDown")
        );
        // `code` wins over `__type` when both are complete.
        assert_eq!(
            prefix_code(r#"{"__type":"A","code":"B","message":"x"#).as_deref(),
            Some("B")
        );
        // Malformed before the end is refused, truncated or not.
        assert_eq!(prefix_code(r#"{"__type":"A" x "message":"#), None);
        assert_eq!(prefix_code(r#"{"__type":"A","#), Some("A".into()));
        assert_eq!(prefix_code(r#"{"__type":"A"} trailing"#), None);
        assert_eq!(prefix_code(r#"{"__type":"A"}  "#).as_deref(), Some("A"));
        assert_eq!(prefix_code(r#"{"#), None);
        assert_eq!(prefix_code(""), None);
        // Deep nesting before the code: no recursion, linear time.
        let deep = format!(r#"{{"x":{}"#, "[".repeat(60_000));
        assert_eq!(prefix_code(&deep), None);
    }

    #[test]
    fn json_codes() {
        assert_eq!(code(r#"{"__type":"a#B"}"#).as_deref(), Some("a#B"));
        assert_eq!(
            code(r#"{ "__type": "FooError", "code": "BarError" }"#).as_deref(),
            Some("BarError")
        );
        assert_eq!(
            code(
                r#"{"message":"x","nested":{"code":"No","a":[1,{"b":null},"s\"]"]},"__type":"Yes"}"#
            )
            .as_deref(),
            Some("Yes")
        );
        assert_eq!(
            code(r#"{"n":-1.5e+3,"t":true,"__type":"Y\u0065s\/"}"#).as_deref(),
            Some("Yes/")
        );
        assert_eq!(code(r#"{}"#), None);
        assert_eq!(code(r#"{"__type":42}"#), None);
        assert_eq!(code(r#"{"__type":"A""#), None);
        assert_eq!(code(r#"{"__type":"A"} trailing"#), None);
        assert_eq!(code(r#"{"__type":"A",}"#), None);
        assert_eq!(code(r#"["__type","A"]"#), None);
        assert_eq!(code(r#"{"x":"\ud83d\ude00","code":"\ud83d"}"#), None);
        assert_eq!(
            code(r#"{"x":"\ud83d\ude00","code":"ok"}"#).as_deref(),
            Some("ok")
        );
    }

    #[test]
    fn xml_codes() {
        let body =
            b"<?xml version=\"1.0\"?><Error><Code>SlowDown</Code><Message>m</Message></Error>";
        assert_eq!(
            error_code(&Headers::new(), Some(body)).as_deref(),
            Some("SlowDown")
        );
        assert_eq!(
            error_code(&Headers::new(), Some(b"<Error></Error>")).as_deref(),
            None
        );
    }

    #[test]
    fn sanitizing() {
        assert_eq!(
            sanitize("aws.protocoltests#FooError:http://x/y"),
            "FooError"
        );
        assert_eq!(sanitize("FooError"), "FooError");
        assert_eq!(sanitize("ns#FooError"), "FooError");
    }

    #[test]
    fn header_wins_over_body() {
        let mut h = Headers::new();
        h.insert("x-amzn-errortype", "ThrottlingException");
        let body = br#"{"__type":"ValidationException"}"#;
        assert_eq!(
            error_code(&h, Some(body)).as_deref(),
            Some("ThrottlingException")
        );
    }
}
