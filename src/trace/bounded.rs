//! Reading a record of bounded length from a `BufRead`: the trace reader's lines and the
//! CSV converter's rows.

use std::io::{self, BufRead};

/// Reads up to and through the first byte `is_end` accepts (or the end of input) into
/// `out`, keeping at most `max` bytes: a longer record is read past, not kept.
/// `is_end` sees every byte once, in order (the CSV reader tracks its quotes with it).
///
/// `Ok(None)`: the input had ended, nothing read. `Ok(Some(kept))`: a record was read
/// (its end byte not included); `kept` is false when it was too long (`out` empty).
pub(super) fn read_bounded(
    inner: &mut impl BufRead,
    out: &mut Vec<u8>,
    max: usize,
    mut is_end: impl FnMut(u8) -> bool,
) -> io::Result<Option<bool>> {
    out.clear();
    let mut too_long = false;
    let mut any = false;
    loop {
        let buf = match inner.fill_buf() {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if buf.is_empty() {
            return Ok(any.then_some(!too_long));
        }
        any = true;
        let (chunk, used, end) = match buf.iter().position(|&b| is_end(b)) {
            Some(i) => (&buf[..i], i + 1, true),
            None => (buf, buf.len(), false),
        };
        if !too_long {
            if out.len() + chunk.len() > max {
                too_long = true;
                out.clear();
            } else {
                out.extend_from_slice(chunk);
            }
        }
        inner.consume(used);
        if end {
            return Ok(Some(!too_long));
        }
    }
}
