//! What the collector reports while it works, for health, alarms and metrics.
//!
//! The collector calls a [`CollectObserver`] at three points (after a page is committed, after a
//! batch is flushed, after a cycle), synchronously and cheaply: an observer updates counters in
//! memory and wakes whoever does the slow work ([`crate::Monitor`]). The default observer does
//! nothing.

use std::sync::Arc;

use orgtrail_atlassian::Event;
use orgtrail_state::{CommitOutcome, Source};

use crate::{CycleReport, Engine, EngineError};

/// Receives what the collector does. Called inline on the collection path: keep it cheap, never
/// block.
pub trait CollectObserver: Send + Sync {
    /// A page's events were committed with the checkpoint (`outcome` says how many were new).
    fn page_committed(&self, _source: &Source, _events: &[Event], _outcome: &CommitOutcome) {}
    /// A batch was written to the lake: `rows` normalized rows, `failures` classification failures.
    fn batch_flushed(&self, _source: &Source, _rows: u64, _failures: u64) {}
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
