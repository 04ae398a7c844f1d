#![cfg(feature = "trace")]
//! Traces (feature `trace`): the schema's reader and writer on good and hostile input,
//! the recorder layer (never blocking, dropping and counting when full), and the
//! CloudWatch Logs Insights CSV converter on good and hostile input.

mod insights;
mod reader;
mod recorder;

/// `left` bytes of `byte`, produced as read: nothing the size of the input is allocated
/// by the test itself.
struct Endless {
    left: u64,
    byte: u8,
}

impl std::io::Read for Endless {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = (buf.len() as u64).min(self.left) as usize;
        buf[..n].fill(self.byte);
        self.left -= n as u64;
        Ok(n)
    }
}
