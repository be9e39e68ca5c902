//! What the collector reports while it works, for health, alarms and metrics.
//!
//! The collector calls a [`CollectObserver`] at three points (a page received, a lake batch
//! written, a cycle ended), synchronously and cheaply: an observer updates counters in memory and
//! wakes whoever does the slow work ([`crate::Monitor`]). The default observer does nothing.

use std::sync::Arc;

use orgtrail_atlassian::Event;
use orgtrail_state::Source;

use crate::{CycleReport, Engine, EngineError};

/// What one lake batch stored.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BatchWritten {
    /// New events (de-duplicated) now in the lake: `rows + failures`.
    pub new_events: u64,
    /// Buffered events whose id an earlier batch had claimed (not written again).
    pub duplicates: u64,
    /// Normalized rows written.
    pub rows: u64,
    /// Classification failures written.
    pub failures: u64,
}

impl BatchWritten {
    /// From the number of buffered events and what was written.
    pub fn new(buffered: usize, rows: u64, failures: u64) -> BatchWritten {
        let new_events = rows + failures;
        BatchWritten {
            new_events,
            duplicates: (buffered as u64).saturating_sub(new_events),
            rows,
            failures,
        }
    }
}

/// Receives what the collector does. Called inline on the collection path: keep it cheap, never
/// block.
pub trait CollectObserver: Send + Sync {
    /// A page of events arrived from the API (before de-duplication).
    fn page_received(&self, _source: &Source, _events: &[Event]) {}
    /// A lake batch was committed with the checkpoint.
    fn batch_written(&self, _source: &Source, _batch: &BatchWritten) {}
    /// A cycle (`Engine::collect_once`) ended.
    fn cycle_finished(&self, _source: &Source, _result: &Result<CycleReport, EngineError>) {}
}

/// Observes nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoObserver;

impl CollectObserver for NoObserver {}

impl Engine {
    /// The same engine, reporting to `observer` (e.g. a [`crate::Monitor`]).
    pub fn with_observer(mut self, observer: Arc<dyn CollectObserver>) -> Self {
        self.observer = observer;
        self
    }

    /// The observer the collector reports to.
    pub fn observer(&self) -> &Arc<dyn CollectObserver> {
        &self.observer
    }
}
