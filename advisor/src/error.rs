//! What can go wrong running a command.

use std::fmt;
use std::path::{Path, PathBuf};

/// A command failed: a file could not be read or written, the trace or the config
/// document is malformed.
#[derive(Debug)]
pub enum AdvisorError {
    /// Reading or writing `path` failed.
    Io(PathBuf, std::io::Error),
    /// A line of the trace does not follow the schema (line numbers from 1).
    Trace(PathBuf, String),
    /// The config document given with `--current` is refused.
    Config(PathBuf, String),
    /// The trace holds no call.
    EmptyTrace(PathBuf),
    /// The trace names more keys than [`MAX_KEYS`](crate::advise::MAX_KEYS).
    TooManyKeys(PathBuf),
}

impl AdvisorError {
    pub(crate) fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Self + '_ {
        move |e| AdvisorError::Io(path.to_owned(), e)
    }
}

impl fmt::Display for AdvisorError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AdvisorError::Io(p, e) => write!(f, "{}: {e}", p.display()),
            AdvisorError::Trace(p, e) => write!(f, "{}: {e}", p.display()),
            AdvisorError::Config(p, e) => write!(f, "{}: {e}", p.display()),
            AdvisorError::EmptyTrace(p) => write!(f, "{}: the trace holds no call", p.display()),
            AdvisorError::TooManyKeys(p) => write!(
                f,
                "{}: the trace names more than {} keys (service/operation); split it by key",
                p.display(),
                crate::advise::MAX_KEYS
            ),
        }
    }
}

impl std::error::Error for AdvisorError {}
