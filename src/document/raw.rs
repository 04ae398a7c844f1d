//! The document's tables as written, and the serde impls of the configuration types:
//! what a table may hold and what it means, apart from where the text comes from.

use super::MAX_OVERRIDES;
use super::fields::{
    CONFIG_KEYS, DurationDe, FIELDS, PATCH_KEYS, SERVICE_KEYS, entries, full_patch,
    serialize_entries, set_field,
};
use super::keys::{KeySeed, UniqueMap};
use crate::CircuitBreakerConfig;
use crate::config::{ConfigError, ConfigPatch};
use crate::duration::format_duration;
use crate::error::RejectReason;
use crate::registry::{
    RegistryConfig, RegistryConfigError, RegistryLimits, ServiceOverrides, key_path,
};
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, Visitor};
use serde::ser::{SerializeStruct, Serializer};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// Keys of the document's top level.
const REGISTRY_KEYS: &[&str] = &["default", "services", "limits"];
/// Keys of the `limits` table.
const LIMITS_KEYS: &[&str] = &["capacity", "max_name_length", "idle_timeout"];

// ===== ConfigPatch =====

#[cfg_attr(docsrs, doc(cfg(feature = "serde")))]
impl Serialize for ConfigPatch {
    /// The fields that are set, durations as strings with a unit.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serialize_entries(serializer, "ConfigPatch", &entries(self), None)
    }
}

#[cfg_attr(docsrs, doc(cfg(feature = "serde")))]
impl<'de> Deserialize<'de> for ConfigPatch {
    /// Any of the fields of [`CircuitBreakerConfig`]; unknown and repeated fields are
    /// refused. Not validated: see [`ConfigPatch::check`] and [`ConfigPatch::apply`].
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct PatchVisitor;

        impl<'de> Visitor<'de> for PatchVisitor {
            type Value = ConfigPatch;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a table of circuit breaker settings")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ConfigPatch, A::Error> {
                let mut patch = ConfigPatch::default();
                let mut seen = 0;
                while let Some(i) = map.next_key_seed(KeySeed {
                    names: PATCH_KEYS,
                    seen: &mut seen,
                })? {
                    set_field(&mut patch, FIELDS[i], &mut map)?;
                }
                Ok(patch)
            }
        }

        deserializer.deserialize_map(PatchVisitor)
    }
}

// ===== CircuitBreakerConfig =====

/// The base a document's configuration is laid over.
#[derive(Clone, Copy, Debug, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Preset {
    Default,
    Cognito,
    Dynamodb,
    ApiGatewayManagement,
}

/// A configuration as written: a preset and the fields laid over it, not yet validated.
#[derive(Debug, Default)]
struct ConfigDoc {
    preset: Option<Preset>,
    patch: ConfigPatch,
}

impl ConfigDoc {
    fn build(&self) -> Result<CircuitBreakerConfig, ConfigError> {
        let base = match self.preset {
            None | Some(Preset::Default) => CircuitBreakerConfig::default(),
            Some(Preset::Cognito) => CircuitBreakerConfig::cognito(),
            Some(Preset::Dynamodb) => CircuitBreakerConfig::dynamodb(),
            Some(Preset::ApiGatewayManagement) => CircuitBreakerConfig::api_gateway_management(),
        };
        self.patch.apply(&base)
    }
}

impl<'de> Deserialize<'de> for ConfigDoc {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct DocVisitor;

        impl<'de> Visitor<'de> for DocVisitor {
            type Value = ConfigDoc;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a table of circuit breaker settings")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ConfigDoc, A::Error> {
                let mut doc = ConfigDoc::default();
                let mut seen = 0;
                while let Some(i) = map.next_key_seed(KeySeed {
                    names: CONFIG_KEYS,
                    seen: &mut seen,
                })? {
                    match FIELDS.get(i) {
                        Some(&field) => set_field(&mut doc.patch, field, &mut map)?,
                        None => doc.preset = Some(map.next_value()?),
                    }
                }
                Ok(doc)
            }
        }

        deserializer.deserialize_map(DocVisitor)
    }
}

#[cfg_attr(docsrs, doc(cfg(feature = "serde")))]
impl Serialize for CircuitBreakerConfig {
    /// Every field, durations as strings with a unit; `failure_rate_threshold`,
    /// `slow_call_rate_threshold` and `backoff` only when set.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serialize_entries(
            serializer,
            "CircuitBreakerConfig",
            &entries(&full_patch(self)),
            None,
        )
    }
}

#[cfg_attr(docsrs, doc(cfg(feature = "serde")))]
impl<'de> Deserialize<'de> for CircuitBreakerConfig {
    /// Any of the fields, laid over [`CircuitBreakerConfig::default`] (or over the preset
    /// named by an optional `preset` field), then validated. Unknown and repeated fields
    /// are refused; a validation error names the field.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        ConfigDoc::deserialize(deserializer)?
            .build()
            .map_err(de::Error::custom)
    }
}

// ===== ServiceOverrides =====

#[cfg_attr(docsrs, doc(cfg(feature = "serde")))]
impl Serialize for ServiceOverrides {
    /// The fields of `all`, and `operations` when there are any.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let operations = (!self.operations.is_empty()).then_some(&self.operations);
        serialize_entries(
            serializer,
            "ServiceOverrides",
            &entries(&self.all),
            operations,
        )
    }
}

#[cfg_attr(docsrs, doc(cfg(feature = "serde")))]
impl<'de> Deserialize<'de> for ServiceOverrides {
    /// A service table: fields for all its operations, and an optional `operations`
    /// table of per-operation fields. Unknown and repeated keys are refused. Not
    /// validated: see [`ConfigPatch::check`].
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ServiceVisitor;

        impl<'de> Visitor<'de> for ServiceVisitor {
            type Value = ServiceOverrides;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a table of circuit breaker settings and `operations`")
            }

            fn visit_map<A: MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<ServiceOverrides, A::Error> {
                let mut out = ServiceOverrides::default();
                let mut seen = 0;
                while let Some(i) = map.next_key_seed(KeySeed {
                    names: SERVICE_KEYS,
                    seen: &mut seen,
                })? {
                    match FIELDS.get(i) {
                        Some(&field) => set_field(&mut out.all, field, &mut map)?,
                        None => out.operations = map.next_value::<UniqueMap<ConfigPatch>>()?.0,
                    }
                }
                Ok(out)
            }
        }

        deserializer.deserialize_map(ServiceVisitor)
    }
}

// ===== RegistryConfig =====

#[cfg_attr(docsrs, doc(cfg(feature = "serde")))]
impl Serialize for RegistryConfig {
    /// `{ "default": <CircuitBreakerConfig>, "services": { ... } }`.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let custom = self.limits != RegistryLimits::default();
        let mut s = serializer.serialize_struct("RegistryConfig", 2 + usize::from(custom))?;
        s.serialize_field("default", &self.default)?;
        s.serialize_field("services", &self.services)?;
        if custom {
            s.serialize_field("limits", &LimitsDoc(self.limits))?;
        } else {
            s.skip_field("limits")?;
        }
        s.end()
    }
}

/// The `limits` table: `{ capacity, max_name_length, idle_timeout }`, each optional.
#[derive(Debug)]
struct LimitsDoc(RegistryLimits);

impl Serialize for LimitsDoc {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut s = serializer.serialize_struct("RegistryLimits", 3)?;
        s.serialize_field("capacity", &self.0.capacity())?;
        s.serialize_field("max_name_length", &self.0.max_name_length())?;
        s.serialize_field("idle_timeout", &format_duration(self.0.idle_timeout()))?;
        s.end()
    }
}

impl<'de> Deserialize<'de> for LimitsDoc {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct LimitsVisitor;

        impl<'de> Visitor<'de> for LimitsVisitor {
            type Value = LimitsDoc;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a table of registry limits")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<LimitsDoc, A::Error> {
                let mut limits = RegistryLimits::default();
                let mut seen = 0;
                while let Some(field) = map.next_key_seed(KeySeed {
                    names: LIMITS_KEYS,
                    seen: &mut seen,
                })? {
                    limits = map.next_value_seed(LimitSeed { limits, field })?;
                }
                Ok(LimitsDoc(limits))
            }
        }

        deserializer.deserialize_map(LimitsVisitor)
    }
}

/// Reads one field of `limits` and checks it, so an error's path ends at the field.
struct LimitSeed {
    limits: RegistryLimits,
    field: usize,
}

impl<'de> DeserializeSeed<'de> for LimitSeed {
    type Value = RegistryLimits;

    fn deserialize<D: Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<RegistryLimits, D::Error> {
        let l = self.limits;
        let b = RegistryLimits::builder()
            .capacity(l.capacity())
            .max_name_length(l.max_name_length())
            .idle_timeout(l.idle_timeout());
        let b = match self.field {
            0 => b.capacity(usize::deserialize(deserializer)?),
            1 => b.max_name_length(usize::deserialize(deserializer)?),
            _ => b.idle_timeout(DurationDe::deserialize(deserializer)?.0),
        };
        b.build().map_err(|e| de::Error::custom(e.rule()))
    }
}

/// A registry configuration as written, not yet validated.
#[derive(Debug, Default)]
pub(super) struct RawRegistry {
    default: Option<ConfigDoc>,
    services: BTreeMap<String, ServiceOverrides>,
    limits: Option<LimitsDoc>,
}

impl<'de> Deserialize<'de> for RawRegistry {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct RegistryVisitor;

        impl<'de> Visitor<'de> for RegistryVisitor {
            type Value = RawRegistry;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a table with `default`, `services` and `limits`")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawRegistry, A::Error> {
                let mut raw = RawRegistry::default();
                let mut seen = 0;
                while let Some(i) = map.next_key_seed(KeySeed {
                    names: REGISTRY_KEYS,
                    seen: &mut seen,
                })? {
                    match i {
                        0 => raw.default = Some(map.next_value()?),
                        1 => raw.services = map.next_value::<UniqueMap<ServiceOverrides>>()?.0,
                        _ => raw.limits = Some(map.next_value()?),
                    }
                }
                Ok(raw)
            }
        }

        deserializer.deserialize_map(RegistryVisitor)
    }
}

impl RawRegistry {
    /// Checks the limits and every rule, naming the table and field that broke one.
    pub(super) fn validate(self) -> Result<RegistryConfig, RegistryConfigError> {
        let overrides = self.services.values().fold(self.services.len(), |n, s| {
            n.saturating_add(s.operations.len())
        });
        if overrides > MAX_OVERRIDES {
            return Err(RegistryConfigError::new(
                "services",
                None,
                format!(
                    "the document names {overrides} services and operations; at most {MAX_OVERRIDES} are accepted"
                ),
            ));
        }
        let invalid = |key: String, e: ConfigError| RegistryConfigError::invalid(&key, e);
        let default = match &self.default {
            Some(doc) => doc.build().map_err(|e| invalid("default".to_string(), e))?,
            None => CircuitBreakerConfig::default(),
        };
        for (service, overrides) in &self.services {
            overrides
                .all
                .check()
                .map_err(|e| invalid(key_path(&["services", service]), e))?;
            for (operation, patch) in &overrides.operations {
                patch.check().map_err(|e| {
                    invalid(key_path(&["services", service, "operations", operation]), e)
                })?;
            }
        }
        Ok(RegistryConfig {
            default,
            services: self.services,
            limits: self.limits.map(|l| l.0).unwrap_or_default(),
        })
    }
}

#[cfg_attr(docsrs, doc(cfg(feature = "serde")))]
impl<'de> Deserialize<'de> for RegistryConfig {
    /// `{ "default": ..., "services": ... }`, both optional, unknown keys refused, every
    /// table checked as [`RegistryConfig::from_json`] does. The error message names the
    /// table and field; prefer the `from_*` functions for a [`RegistryConfigError`].
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        RawRegistry::deserialize(deserializer)?
            .validate()
            .map_err(de::Error::custom)
    }
}

// ===== RejectReason =====

#[cfg_attr(docsrs, doc(cfg(feature = "serde")))]
impl Serialize for RejectReason {
    /// As [`RejectReason::as_str`].
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use crate::registry::RegistryConfig;
    use std::time::Duration;

    #[test]
    fn half_open_max_wait_reads_writes_and_stays_derived_when_left_out() {
        let config = RegistryConfig::from_json(
            r#"{ "default": { "preset": "dynamodb", "half_open_max_wait": "45s" },
                 "services": { "s": { "operations": { "o": { "half_open_max_wait": "2m" } } } } }"#,
        )
        .unwrap();
        assert_eq!(config.default.half_open_max_wait(), Duration::from_secs(45));
        let patch = &config.services["s"].operations["o"];
        assert_eq!(patch.half_open_max_wait, Some(Duration::from_secs(120)));
        let json = config.to_json().unwrap();
        assert!(json.contains(r#""half_open_max_wait": "45s""#), "{json}");
        assert_eq!(RegistryConfig::from_json(&json).unwrap(), config);
        let toml = config.to_toml().unwrap();
        assert_eq!(RegistryConfig::from_toml(&toml).unwrap(), config);

        // Left out: derived, and written out as left out, so it keeps following.
        let derived =
            RegistryConfig::from_json(r#"{ "default": { "recovery_timeout": "7s" } }"#).unwrap();
        assert_eq!(derived.default.half_open_max_wait(), Duration::from_secs(7));
        assert!(!derived.to_json().unwrap().contains("half_open_max_wait"));

        let err = RegistryConfig::from_json(r#"{ "default": { "half_open_max_wait": "0s" } }"#)
            .unwrap_err();
        assert_eq!(
            (err.key(), err.field()),
            ("default", Some("half_open_max_wait"))
        );
    }
}
