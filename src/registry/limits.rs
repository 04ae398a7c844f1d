//! The registry's limits, its refusals and its own counts. See the
//! [registry's module docs](crate::registry#limits).

use crate::config::ConfigError;
use std::fmt;
use std::time::Duration;

/// The registry's bounds: capacity, name length, idle time. See the
/// [module docs](crate::registry#limits).
///
/// Built with [`RegistryLimits::builder`], which checks every value; in a document it is
/// the `limits` table (`capacity`, `max_name_length`, `idle_timeout`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RegistryLimits {
    capacity: usize,
    max_name_length: usize,
    idle_timeout: Duration,
}

impl Default for RegistryLimits {
    fn default() -> Self {
        RegistryLimits {
            capacity: 10_000,
            max_name_length: 256,
            idle_timeout: Duration::from_secs(15 * 60),
        }
    }
}

impl RegistryLimits {
    /// The largest `max_name_length` accepted: 64 KiB.
    pub const MAX_NAME_LENGTH: usize = 64 * 1024;

    /// A builder starting from the defaults: 10 000 circuits, names of 256 bytes, 15
    /// minutes idle.
    pub fn builder() -> RegistryLimitsBuilder {
        RegistryLimitsBuilder {
            limits: RegistryLimits::default(),
        }
    }

    /// Circuits the registry holds at most; new keys beyond are served by the overflow
    /// circuit.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Bytes a service or operation name may have.
    pub fn max_name_length(&self) -> usize {
        self.max_name_length
    }

    /// How long a circuit must go unused (and be otherwise idle) before it may be evicted.
    pub fn idle_timeout(&self) -> Duration {
        self.idle_timeout
    }

    pub(crate) fn check(&self) -> Result<(), ConfigError> {
        if self.capacity == 0 {
            return Err(ConfigError::new("capacity", "must be at least 1"));
        }
        if self.max_name_length == 0 || self.max_name_length > Self::MAX_NAME_LENGTH {
            return Err(ConfigError::new(
                "max_name_length",
                "must be between 1 and 65536 bytes",
            ));
        }
        if self.idle_timeout.is_zero() {
            return Err(ConfigError::new(
                "idle_timeout",
                "must be greater than zero",
            ));
        }
        Ok(())
    }
}

/// Builds [`RegistryLimits`]; see [`RegistryLimits::builder`].
#[derive(Clone, Debug)]
pub struct RegistryLimitsBuilder {
    limits: RegistryLimits,
}

impl RegistryLimitsBuilder {
    /// Circuits the registry holds at most (at least 1).
    pub fn capacity(mut self, n: usize) -> Self {
        self.limits.capacity = n;
        self
    }

    /// Bytes a service or operation name may have (1 to 65 536).
    pub fn max_name_length(mut self, n: usize) -> Self {
        self.limits.max_name_length = n;
        self
    }

    /// How long an idle circuit stays (greater than zero).
    pub fn idle_timeout(mut self, d: Duration) -> Self {
        self.limits.idle_timeout = d;
        self
    }

    /// The limits.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the field: `capacity` of 0, `max_name_length` of 0 or
    /// above [`RegistryLimits::MAX_NAME_LENGTH`], `idle_timeout` of zero.
    pub fn build(self) -> Result<RegistryLimits, ConfigError> {
        self.limits.check()?;
        Ok(self.limits)
    }
}

/// A key the registry would not give a circuit of its own; see the
/// [module docs](crate::registry#limits).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyRefused {
    /// A name is longer than [`RegistryLimits::max_name_length`].
    NameTooLong {
        /// `"service"` or `"operation"`.
        field: &'static str,
        /// Its length in bytes.
        length: usize,
        /// The limit.
        max: usize,
    },
    /// The registry holds [`RegistryLimits::capacity`] circuits and none is idle.
    Full {
        /// The limit.
        capacity: usize,
    },
}

impl fmt::Display for KeyRefused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyRefused::NameTooLong { field, length, max } => write!(
                f,
                "circuit registry refused a key: the {field} name is {length} bytes, more than max_name_length {max}"
            ),
            KeyRefused::Full { capacity } => write!(
                f,
                "circuit registry refused a key: it holds its capacity of {capacity} circuits"
            ),
        }
    }
}

impl std::error::Error for KeyRefused {}

/// The registry's own counts, from
/// [`CircuitBreakerRegistry::registry_stats`](crate::CircuitBreakerRegistry::registry_stats).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct RegistryStats {
    /// Circuits in the table (the overflow circuit is not one of them).
    pub circuits: usize,
    /// The capacity in force.
    pub capacity: usize,
    /// Lookups of a new key refused because the table was full, lifetime.
    pub refused_full: u64,
    /// Lookups refused because a name was too long, lifetime.
    pub refused_name_too_long: u64,
    /// Circuits evicted as idle, lifetime.
    pub evicted: u64,
}
