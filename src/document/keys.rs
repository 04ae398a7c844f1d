//! Keys of a document's tables: unknown and repeated ones are refused as they are read.

use serde::Deserialize;
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, Visitor};
use std::collections::BTreeMap;
use std::fmt;

/// The key under which toml hands a date-time to a visitor, as a one-entry table.
pub(super) const TOML_DATETIME: &str = "$__toml_private_datetime";

/// Reads a key of a table whose keys are `names`, refusing unknown and repeated ones
/// while the key is read, so the error's path ends at the key.
pub(super) struct KeySeed<'a> {
    pub(super) names: &'static [&'static str],
    pub(super) seen: &'a mut u64,
}

impl<'de> DeserializeSeed<'de> for KeySeed<'_> {
    type Value = usize;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<usize, D::Error> {
        deserializer.deserialize_identifier(self)
    }
}

impl Visitor<'_> for KeySeed<'_> {
    type Value = usize;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a field name")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<usize, E> {
        match self.names.iter().position(|n| *n == v) {
            None if v == TOML_DATETIME => {
                Err(E::custom("invalid type: date-time, expected a table"))
            }
            None => Err(E::unknown_field(v, self.names)),
            Some(i) if *self.seen & (1 << i) != 0 => Err(E::duplicate_field(self.names[i])),
            Some(i) => {
                *self.seen |= 1 << i;
                Ok(i)
            }
        }
    }
}

/// A map with string keys that refuses a key given twice (JSON allows it; the last
/// would silently win).
pub(super) struct UniqueMap<V>(pub(super) BTreeMap<String, V>);

struct UniqueKey<'a, V>(&'a BTreeMap<String, V>);

impl<'de, V> DeserializeSeed<'de> for UniqueKey<'_, V> {
    type Value = String;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<String, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<V> Visitor<'_> for UniqueKey<'_, V> {
    type Value = String;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a name")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<String, E> {
        if self.0.contains_key(v) {
            return Err(E::custom(format_args!("duplicate key {v:?}")));
        }
        Ok(v.to_owned())
    }
}

impl<'de, V: Deserialize<'de>> Deserialize<'de> for UniqueMap<V> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct MapVisitor<V>(std::marker::PhantomData<V>);

        impl<'de, V: Deserialize<'de>> Visitor<'de> for MapVisitor<V> {
            type Value = UniqueMap<V>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a table of names")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut out = BTreeMap::new();
                while let Some(key) = map.next_key_seed(UniqueKey(&out))? {
                    let value = map.next_value()?;
                    out.insert(key, value);
                }
                Ok(UniqueMap(out))
            }
        }

        deserializer.deserialize_map(MapVisitor(std::marker::PhantomData))
    }
}
