//! Configuration documents (feature `serde`): the registry's configuration as JSON or TOML.
