//! Loading a document: from a string (JSON, TOML), a file or an environment variable,
//! within the size limits, with errors that say where. The public entry points are
//! [`RegistryConfig::from_json`] and its siblings, which call these.

use super::MAX_DOCUMENT_BYTES;
use super::keys::TOML_DATETIME;
use super::raw::RawRegistry;
use crate::registry::{RegistryConfig, RegistryConfigError, key_path};
use serde_json::error::Category;
use std::fmt;
use std::io::Read;
use std::path::Path;

/// A JSON document; see [`RegistryConfig::from_json`].
pub(crate) fn from_json(document: &str) -> Result<RegistryConfig, RegistryConfigError> {
    check_size(document)?;
    let mut de = serde_json::Deserializer::from_str(document);
    let raw: RawRegistry = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        // A syntax error belongs to the document, as in TOML, whose parser reads it
        // all before any value: no key, and the message gives line and column.
        let (key, field) = match e.inner().classify() {
            Category::Syntax | Category::Eof | Category::Io => (String::new(), None),
            Category::Data => locate(e.path()),
        };
        RegistryConfigError::new(key, field, e.inner().to_string())
    })?;
    de.end()
        .map_err(|e| RegistryConfigError::new("", None, e.to_string()))?;
    raw.validate()
}

/// A TOML document; see [`RegistryConfig::from_toml`].
pub(crate) fn from_toml(document: &str) -> Result<RegistryConfig, RegistryConfigError> {
    check_size(document)?;
    let de = toml::Deserializer::parse(document)
        .map_err(|e| RegistryConfigError::new("", None, toml_message(&e, document)))?;
    let raw: RawRegistry = serde_path_to_error::deserialize(de).map_err(|e| {
        let (key, field) = locate(e.path());
        RegistryConfigError::new(key, field, toml_message(e.inner(), document))
    })?;
    raw.validate()
}

/// A document in a file, JSON or TOML by its name or its content; see
/// [`RegistryConfig::from_file`].
pub(crate) fn from_file(path: &Path) -> Result<RegistryConfig, RegistryConfigError> {
    let document = read_file(path)?;
    let extension = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    let format = match extension.as_deref() {
        Some("json") => Format::Json,
        Some("toml") => Format::Toml,
        _ => Format::sniff(&document),
    };
    format.parse(&document)
}

/// A document in an environment variable; see [`RegistryConfig::from_env`].
pub(crate) fn from_env(name: &str) -> Result<RegistryConfig, RegistryConfigError> {
    let value = std::env::var_os(name).ok_or_else(|| {
        RegistryConfigError::new("", None, format!("environment variable {name} is not set"))
    })?;
    let document = value.into_string().map_err(|_| {
        RegistryConfigError::new(
            "",
            None,
            format!("environment variable {name} is not UTF-8"),
        )
    })?;
    Format::sniff(&document).parse(&document)
}

/// Splits where an error happened into the table (`default`, `services.x`,
/// `services.x.operations.y`) and the field inside it.
fn locate(path: &serde_path_to_error::Path) -> (String, Option<String>) {
    use serde_path_to_error::Segment;
    // The path stops where it is no longer known (e.g. a key cut off by the end of the
    // input) and before the name toml gives a date-time's inner table.
    let segments: Vec<String> = path
        .iter()
        .map_while(|s| match s {
            Segment::Map { key } if key == TOML_DATETIME => None,
            Segment::Map { key } => Some(key.clone()),
            Segment::Seq { index } => Some(index.to_string()),
            Segment::Enum { variant } => Some(variant.clone()),
            Segment::Unknown => None,
        })
        .collect();
    let table = match segments.first().map(String::as_str) {
        Some("default" | "limits") => 1,
        Some("services") if segments.len() >= 4 && segments[2] == "operations" => 4,
        Some("services") => 2,
        _ => 0,
    }
    .min(segments.len());
    let (table, field) = segments.split_at(table);
    let field = (!field.is_empty()).then(|| key_path(field));
    (key_path(table), field)
}

fn too_large(len: usize) -> RegistryConfigError {
    RegistryConfigError::new(
        "",
        None,
        format!("the document is {len} bytes; at most {MAX_DOCUMENT_BYTES} (1 MiB) are accepted"),
    )
}

fn check_size(document: &str) -> Result<(), RegistryConfigError> {
    if document.len() > MAX_DOCUMENT_BYTES {
        return Err(too_large(document.len()));
    }
    Ok(())
}

/// `1`-based line and column (in characters) of byte `offset` of `input`.
fn line_column(input: &str, offset: usize) -> (usize, usize) {
    let before = &input.as_bytes()[..offset.min(input.len())];
    let line_start = before
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |i| i + 1);
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    // Count characters, not bytes: skip UTF-8 continuation bytes.
    let column = before[line_start..]
        .iter()
        .filter(|&&b| b & 0xC0 != 0x80)
        .count()
        + 1;
    (line, column)
}

fn toml_message(e: &toml::de::Error, input: &str) -> String {
    let message = e.message().trim_end();
    match e.span() {
        Some(span) => {
            let (line, column) = line_column(input, span.start);
            format!("{message} at line {line}, column {column}")
        }
        None => message.to_string(),
    }
}

/// Which syntax a document is in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Format {
    Json,
    Toml,
}

impl Format {
    /// JSON when the first non-space character is `{`, TOML otherwise.
    fn sniff(document: &str) -> Format {
        match document.trim_start().starts_with('{') {
            true => Format::Json,
            false => Format::Toml,
        }
    }

    fn parse(self, document: &str) -> Result<RegistryConfig, RegistryConfigError> {
        match self {
            Format::Json => from_json(document),
            Format::Toml => from_toml(document),
        }
    }
}

fn read_file(path: &Path) -> Result<String, RegistryConfigError> {
    let failed = |e: &dyn fmt::Display| {
        RegistryConfigError::new("", None, format!("cannot read {}: {e}", path.display()))
    };
    let file = std::fs::File::open(path).map_err(|e| failed(&e))?;
    if let Ok(meta) = file.metadata() {
        if meta.len() > MAX_DOCUMENT_BYTES as u64 {
            return Err(too_large(usize::try_from(meta.len()).unwrap_or(usize::MAX)));
        }
    }
    // Bounded even if the file grows while it is read.
    let mut bytes = Vec::new();
    file.take(MAX_DOCUMENT_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| failed(&e))?;
    if bytes.len() > MAX_DOCUMENT_BYTES {
        return Err(too_large(bytes.len()));
    }
    String::from_utf8(bytes).map_err(|_| failed(&"the file is not UTF-8"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locate_splits_table_and_field() {
        let raw =
            r#"{ "services": { "a.b": { "operations": { "x": { "backoff": { "max": 5 } } } } } }"#;
        let mut de = serde_json::Deserializer::from_str(raw);
        let err = serde_path_to_error::deserialize::<_, RawRegistry>(&mut de).unwrap_err();
        assert_eq!(
            locate(err.path()),
            (
                r#"services."a.b".operations.x"#.to_string(),
                Some("backoff.max".to_string())
            )
        );
    }
}
