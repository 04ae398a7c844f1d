//! The replay engine: the reorder buffer, the batches, the workers.

use super::{ReplayOptions, ReplayReport};
use crate::CircuitBreakerConfig;
use crate::trace::TraceRecord;

pub(super) struct Engine {
    configs: Vec<(String, CircuitBreakerConfig)>,
    options: ReplayOptions,
}

impl Engine {
    pub(super) fn new(
        configs: Vec<(String, CircuitBreakerConfig)>,
        options: ReplayOptions,
    ) -> Self {
        Engine { configs, options }
    }

    pub(super) fn feed(&mut self, record: &TraceRecord) {
        let _ = (record, &self.configs, &self.options);
        todo!()
    }

    pub(super) fn finish(self) -> ReplayReport {
        todo!()
    }
}
