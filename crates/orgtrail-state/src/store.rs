//! The backend-neutral state store interface.

use async_trait::async_trait;

use crate::error::Result;
use crate::model::{
    Batch, Checkpoint, CommitOutcome, NewSource, RunRecord, Source, SourceHealth, SourceUpdate,
    SpoolEvent, SpoolStats, StoredCheckpoint,
};

/// The collector's state: sources, checkpoints, the exactly-once spool (outbox), run history.
///
/// Implemented by [`crate::SqliteStore`] (embedded default). A Postgres backend (several replicas,
/// lease per source, commits fenced on the lease) implements the same trait later. The trait is
/// object safe: the engine can hold an `Arc<dyn StateStore>`.
///
/// Sources are addressed by id in every method except [`StateStore::get_source`] and
/// [`StateStore::find_source`], which also accept a name (case-insensitive).
#[async_trait]
pub trait StateStore: crate::alarms::AlarmStore + Send + Sync {
    // ----- sources -----

    /// Adds a source. Errors with [`crate::StateError::DuplicateName`] when the name (case-insensitive)
    /// is taken, and with [`crate::StateError::Invalid`] on a bad field.
    async fn add_source(&self, new: NewSource) -> Result<Source>;
    /// A source by id or name, or `None`.
    async fn find_source(&self, name_or_id: &str) -> Result<Option<Source>>;
    /// A source by id or name, or [`crate::StateError::SourceNotFound`].
    async fn get_source(&self, name_or_id: &str) -> Result<Source> {
        self.find_source(name_or_id)
            .await?
            .ok_or_else(|| crate::StateError::SourceNotFound(name_or_id.to_owned()))
    }
    /// All sources, ordered by name.
    async fn list_sources(&self) -> Result<Vec<Source>>;
    /// Applies `update` to the source with this id.
    async fn update_source(&self, source_id: &str, update: SourceUpdate) -> Result<Source>;
    /// Pauses (`true`) or resumes (`false`) a source.
    async fn set_paused(&self, source_id: &str, paused: bool) -> Result<Source>;
    /// Removes a source with its checkpoint, spool, batches, run history and health (data already in
    /// the lake stays). Refuses with [`crate::StateError::PendingData`] while events are spooled but
    /// not flushed, unless `force`.
    async fn remove_source(&self, source_id: &str, force: bool) -> Result<()>;

    // ----- checkpoint + spool (exactly-once) -----

    /// The source's checkpoint, or `None` before its first committed page.
    async fn checkpoint(&self, source_id: &str) -> Result<Option<StoredCheckpoint>>;
    /// In ONE transaction: spools `events` (a replayed `(source, event_id)` is a no-op, also after it
    /// was flushed, until pruned) and sets the checkpoint. Either both happen or neither.
    async fn commit_page(
        &self,
        source_id: &str,
        events: &[SpoolEvent],
        checkpoint: &Checkpoint,
    ) -> Result<CommitOutcome>;
    /// Returns the oldest claimed-but-unflushed batch of the source if there is one (the same id and
    /// rows as when first claimed), else moves up to `max_rows` unbatched events into a new batch,
    /// recorded durably before it is returned. `None` when there is nothing to flush.
    async fn claim_batch(&self, source_id: &str, max_rows: usize) -> Result<Option<Batch>>;
    /// Marks a claimed batch as written to the lake and frees its raw payloads (the event ids stay for
    /// de-duplication). Idempotent.
    async fn mark_flushed(&self, batch_id: &str) -> Result<()>;
    /// Spool counters of one source.
    async fn spool_stats(&self, source_id: &str) -> Result<SpoolStats>;
    /// Forgets the ids of flushed events whose `processedAt` (or, without one, spool time) is before
    /// `before_ms`, across all sources. Unflushed events are never pruned. Returns the rows removed.
    async fn prune_seen(&self, before_ms: i64) -> Result<u64>;

    // ----- runs and health -----

    /// Appends a run to the history and updates the source's health (last success / last error).
    async fn record_run(&self, run: &RunRecord) -> Result<()>;
    /// The most recent runs of a source, newest first.
    async fn recent_runs(&self, source_id: &str, limit: usize) -> Result<Vec<RunRecord>>;
    /// Records an error outside a run (e.g. key unavailable, 401).
    async fn record_error(&self, source_id: &str, at: jiff::Timestamp, message: &str)
    -> Result<()>;
    /// Records a successful poll outside `record_run`.
    async fn record_success(&self, source_id: &str, at: jiff::Timestamp) -> Result<()>;
    /// Health facts of a source.
    async fn source_health(&self, source_id: &str) -> Result<SourceHealth>;
}
