//! Writing a configuration out: pretty-printed JSON, and TOML that reads back the same.
//!
//! Every TOML value (numbers, strings, the `backoff` inline table) is written by the
//! `toml` crate's value serializer. The tables are laid out here, not by `toml`'s
//! document serializer, for two things it does not do: `backoff` stays an inline table,
//! so `[default]` holds every field of the default configuration in one table, and table
//! keys are quoted as basic strings (`"a.b"`), the form a [`RegistryConfigError`] names a
//! table in ([`key_path`]).

use super::fields::{entries, full_patch};
use crate::config::ConfigPatch;
use crate::duration::format_duration;
use crate::registry::{RegistryConfig, RegistryConfigError, RegistryLimits, key_path};
use serde::Serialize;

/// Pretty-printed JSON; see [`RegistryConfig::to_json`].
pub(crate) fn to_json(config: &RegistryConfig) -> Result<String, RegistryConfigError> {
    serde_json::to_string_pretty(config)
        .map_err(|e| RegistryConfigError::new("", None, e.to_string()))
}

/// TOML: a `[default]` table with every field, then a table per service and per
/// operation, then `[limits]` when they are not the defaults; see
/// [`RegistryConfig::to_toml`].
pub(crate) fn to_toml(config: &RegistryConfig) -> Result<String, RegistryConfigError> {
    write_toml(config).map_err(|e| RegistryConfigError::new("", None, e.to_string()))
}

fn write_toml(config: &RegistryConfig) -> Result<String, toml::ser::Error> {
    let mut out = String::new();
    let mut table = |header: &[&str], patch: &ConfigPatch| {
        header_line(&mut out, header);
        entries(patch)
            .iter()
            .try_for_each(|(name, value)| key_value(&mut out, name, value))
    };
    table(&["default"], &full_patch(&config.default))?;
    for (service, overrides) in &config.services {
        table(&["services", service], &overrides.all)?;
        for (operation, patch) in &overrides.operations {
            table(&["services", service, "operations", operation], patch)?;
        }
    }
    let limits = config.limits;
    if limits != RegistryLimits::default() {
        header_line(&mut out, &["limits"]);
        key_value(&mut out, "capacity", &limits.capacity())?;
        key_value(&mut out, "max_name_length", &limits.max_name_length())?;
        let idle = format_duration(limits.idle_timeout());
        key_value(&mut out, "idle_timeout", &idle)?;
    }
    Ok(out)
}

/// `[a.b]`, after a blank line unless it is the first table.
fn header_line(out: &mut String, header: &[&str]) {
    if !out.is_empty() {
        out.push('\n');
    }
    out.push('[');
    out.push_str(&key_path(header));
    out.push_str("]\n");
}

/// `name = value`: `name` a bare key (a field name), `value` as `toml` writes it.
fn key_value(out: &mut String, name: &str, value: &impl Serialize) -> Result<(), toml::ser::Error> {
    out.push_str(name);
    out.push_str(" = ");
    value.serialize(toml::ser::ValueSerializer::new(out))?;
    out.push('\n');
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::config::ConfigPatch;
    use crate::registry::{RegistryConfig, ServiceOverrides};
    use std::collections::BTreeMap;

    #[test]
    fn toml_writer_quotes_keys() {
        let mut config = RegistryConfig::default();
        config.services.insert(
            "api.gw \"x\"\n".to_string(),
            ServiceOverrides {
                all: ConfigPatch {
                    failure_rate_threshold: Some(0.5),
                    ..ConfigPatch::default()
                },
                operations: BTreeMap::from([("é".to_string(), ConfigPatch::default())]),
            },
        );
        let toml = config.to_toml().unwrap();
        assert!(toml.contains(r#"[services."api.gw \"x\"\n"]"#), "{toml}");
        assert_eq!(RegistryConfig::from_toml(&toml).unwrap(), config);
    }
}
