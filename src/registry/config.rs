//! The registry's configuration: a default, overrides per service and operation, and
//! limits; and the error that names where one was refused.
//!
//! Reading and writing it as a document (feature `serde`) is [`crate::document`]'s work;
//! the entry points are here, on [`RegistryConfig`].

use super::RegistryLimits;
use crate::CircuitBreakerConfig;
use crate::config::{ConfigError, ConfigPatch};
use std::collections::BTreeMap;
use std::fmt;
#[cfg(feature = "serde")]
use std::path::Path;

/// The registry-wide configuration: a default and per-key overrides.
///
/// With feature `serde` it is read from a JSON or TOML document (see
/// [`RegistryConfig::from_json`] and [`RegistryConfig::from_toml`]).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RegistryConfig {
    /// Configuration of circuits created without one.
    pub default: CircuitBreakerConfig,
    /// Overrides per service, and per operation within it.
    pub services: BTreeMap<String, ServiceOverrides>,
    /// How many circuits, how long their names, how long idle ones stay.
    pub limits: RegistryLimits,
}

/// Overrides for one service's circuits.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ServiceOverrides {
    /// Applied to every operation of the service.
    pub all: ConfigPatch,
    /// Applied to one operation, after `all`.
    pub operations: BTreeMap<String, ConfigPatch>,
}

impl RegistryConfig {
    /// The configuration of `(service, operation)` built on `base`.
    ///
    /// # Errors
    ///
    /// When an override makes it invalid; the error names the key and the field.
    pub fn resolve(
        &self,
        service: &str,
        operation: &str,
        base: &CircuitBreakerConfig,
    ) -> Result<CircuitBreakerConfig, RegistryConfigError> {
        let Some(s) = self.services.get(service) else {
            return Ok(base.clone());
        };
        let op = s.operations.get(operation);
        let mut config = base.clone();
        for (key, patch) in [
            (key_path(&["services", service]), Some(&s.all)),
            (
                key_path(&["services", service, "operations", operation]),
                op,
            ),
        ] {
            if let Some(patch) = patch {
                config = patch
                    .apply(&config)
                    .map_err(|e| RegistryConfigError::invalid(&key, e))?;
            }
        }
        Ok(config)
    }
}

#[cfg(feature = "serde")]
#[cfg_attr(docsrs, doc(cfg(feature = "serde")))]
impl RegistryConfig {
    /// Reads a JSON document. See the [module docs](crate::document) for the format.
    ///
    /// ```
    /// # use std::time::Duration;
    /// use tower_circuit_breaker::registry::RegistryConfig;
    ///
    /// let config = RegistryConfig::from_json(r#"{ "default": { "recovery_timeout": "10s" } }"#)?;
    /// assert_eq!(config.default.recovery_timeout(), Duration::from_secs(10));
    /// # Ok::<(), tower_circuit_breaker::registry::RegistryConfigError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// A [`RegistryConfigError`] naming the table and field, for a syntax error (then
    /// the key is empty and the message gives line and column), an unknown or repeated
    /// field, a wrong value, a broken rule, or a document over the limits.
    pub fn from_json(document: &str) -> Result<Self, RegistryConfigError> {
        crate::document::load::from_json(document)
    }

    /// Reads a TOML document. See the [module docs](crate::document) for the format.
    ///
    /// ```
    /// use tower_circuit_breaker::registry::RegistryConfig;
    ///
    /// let config = RegistryConfig::from_toml("[services.cognito]\nfailure_threshold = 2\n")?;
    /// assert_eq!(config.services["cognito"].all.failure_threshold, Some(2));
    /// # Ok::<(), tower_circuit_breaker::registry::RegistryConfigError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`from_json`](Self::from_json).
    pub fn from_toml(document: &str) -> Result<Self, RegistryConfigError> {
        crate::document::load::from_toml(document)
    }

    /// Reads a document from a file: JSON if its name ends in `.json`, TOML if in
    /// `.toml`, otherwise JSON when its first non-space character is `{` and TOML when not.
    ///
    /// # Errors
    ///
    /// As [`from_json`](Self::from_json), or when the file cannot be read (then the key
    /// is empty).
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, RegistryConfigError> {
        crate::document::load::from_file(path.as_ref())
    }

    /// Reads a document from the environment variable `name`, whose content is the
    /// document: JSON when its first non-space character is `{`, TOML when not.
    ///
    /// # Errors
    ///
    /// As [`from_json`](Self::from_json), or when the variable is not set or not UTF-8
    /// (then the key is empty).
    pub fn from_env(name: &str) -> Result<Self, RegistryConfigError> {
        crate::document::load::from_env(name)
    }

    /// Writes the configuration as pretty-printed JSON, which
    /// [`from_json`](Self::from_json) reads back.
    ///
    /// # Errors
    ///
    /// None in practice; a serializer error would be returned with an empty key.
    pub fn to_json(&self) -> Result<String, RegistryConfigError> {
        crate::document::write::to_json(self)
    }

    /// Writes the configuration as TOML, which [`from_toml`](Self::from_toml) reads back:
    /// a `[default]` table with every field, then a table per service and per operation.
    ///
    /// ```
    /// use tower_circuit_breaker::registry::RegistryConfig;
    ///
    /// let config = RegistryConfig::from_toml(r#"
    ///     [services.dynamodb.operations.storeUserMessage]
    ///     recovery_timeout = "90s"
    /// "#)?;
    /// let toml = config.to_toml()?;
    /// assert!(toml.contains("[services.dynamodb.operations.storeUserMessage]\nrecovery_timeout = \"90s\"\n"));
    /// assert_eq!(RegistryConfig::from_toml(&toml)?, config);
    /// # Ok::<(), tower_circuit_breaker::registry::RegistryConfigError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// None in practice; the signature matches [`to_json`](Self::to_json).
    pub fn to_toml(&self) -> Result<String, RegistryConfigError> {
        crate::document::write::to_toml(self)
    }
}

/// A registry configuration was refused; nothing changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegistryConfigError {
    key: String,
    field: Option<String>,
    message: String,
}

impl RegistryConfigError {
    pub(crate) fn new(
        key: impl Into<String>,
        field: Option<String>,
        message: impl Into<String>,
    ) -> Self {
        RegistryConfigError {
            key: key.into(),
            field,
            message: message.into(),
        }
    }

    pub(crate) fn invalid(key: &str, e: ConfigError) -> Self {
        Self::new(key, Some(e.field().to_string()), e.rule())
    }

    /// Where: for an error in a document, the table (`default`, `services.dynamodb`,
    /// `services.dynamodb.operations.storeUserMessage`); for an override that does not
    /// fit a live circuit, `service` or `service.operation`; empty for an error in the
    /// document as a whole (syntax, size, unreadable file).
    pub fn key(&self) -> &str {
        &self.key
    }

    /// What is wrong, e.g. the parser's message with its line and column, or the rule
    /// a value broke.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The field, when one is to blame.
    pub fn field(&self) -> Option<&str> {
        self.field.as_deref()
    }
}

impl fmt::Display for RegistryConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.key, &self.field) {
            (k, _) if k.is_empty() => write!(f, "circuit breaker config refused: {}", self.message),
            (k, Some(field)) => {
                write!(
                    f,
                    "circuit breaker config refused at `{k}`, field `{field}`: {}",
                    self.message
                )
            }
            (k, None) => write!(
                f,
                "circuit breaker config refused at `{k}`: {}",
                self.message
            ),
        }
    }
}

impl std::error::Error for RegistryConfigError {}

// ===== key paths =====

/// Whether `s` can be written as a bare TOML key.
fn is_bare(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// `s` as a TOML basic string, quotes included.
fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Segments joined with `.`, each bare or quoted as in TOML: `services."a.b".operations.x`.
pub(crate) fn key_path<S: AsRef<str>>(segments: &[S]) -> String {
    let mut out = String::new();
    for (i, s) in segments.iter().enumerate() {
        if i > 0 {
            out.push('.');
        }
        let s = s.as_ref();
        if is_bare(s) {
            out.push_str(s);
        } else {
            out.push_str(&quote(s));
        }
    }
    out
}
