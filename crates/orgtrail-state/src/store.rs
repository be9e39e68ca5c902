//! The backend-neutral state store interface.

use async_trait::async_trait;

use crate::error::Result;
use crate::model::{
    Checkpoint, EventKey, NewSource, RunRecord, SeenStats, Source, SourceHealth, SourceUpdate,
    StoredCheckpoint, UnfinishedBatch,
};
use crate::sqlite::WriterLock;

/// The collector's state: sources, checkpoints, the exactly-once lake batch journal, run history.
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
    /// Removes a source with its checkpoint, seen ids, batches, run history and health (data already
    /// in the lake stays). Refuses with [`crate::StateError::PendingData`] while a lake batch of the
    /// source is unfinished, unless `force`.
    async fn remove_source(&self, source_id: &str, force: bool) -> Result<()>;

    // ----- checkpoint + lake batches (exactly-once) -----
    //
    // A writer (the daemon's cycle or a backfill) buffers a source's events in memory, then writes
    // them to the lake as one batch, holding the source's [`StateStore::lock_writer`] lock:
    // 1. [`StateStore::begin_batch`] records the batch with the files it may write and claims its
    //    event ids (an id claimed before is a duplicate and is left out of the files);
    // 2. the files are written as `<path>.pending` (invisible to readers);
    // 3. [`StateStore::commit_batch`] marks the batch committed and advances the checkpoint;
    // 4. the files are renamed to their final paths, then [`StateStore::finish_batch`].
    // After a crash, the next writer of the source (holding the lock) publishes the files of
    // committed batches and deletes those of uncommitted ones, then abandons them (releasing their
    // ids), see [`StateStore::unfinished_batches`]. The cursor only moves past events whose files
    // are whole, and an event is in at most one committed batch: every event lands exactly once.

    /// The source's checkpoint, or `None` before its first commit.
    async fn checkpoint(&self, source_id: &str) -> Result<Option<StoredCheckpoint>>;
    /// Sets the checkpoint without a batch (a cycle that brought no new event, a cursor reset).
    /// Refuses with [`crate::StateError::StaleCheckpoint`] when `page_seq` goes back.
    async fn save_checkpoint(&self, source_id: &str, checkpoint: &Checkpoint) -> Result<()>;
    /// Step 1, in ONE transaction: records batch `batch_id` of the source with the lake `files` it
    /// may write, and claims `events`, each known by its `processedAt` and id. Returns the ids it
    /// claimed, in `events` order: an event claimed by any earlier batch, or an id repeated in
    /// `events`, is not returned again.
    async fn begin_batch(
        &self,
        source_id: &str,
        batch_id: &str,
        events: &[EventKey],
        files: &[String],
    ) -> Result<Vec<String>>;
    /// Step 3, in ONE transaction: marks the batch committed (its `.pending` files are whole) with
    /// its row count and, when given, sets the source's checkpoint (which must not go back).
    async fn commit_batch(
        &self,
        batch_id: &str,
        rows: u64,
        checkpoint: Option<&Checkpoint>,
    ) -> Result<()>;
    /// Step 4: the batch's files were published. Idempotent.
    async fn finish_batch(&self, batch_id: &str) -> Result<()>;
    /// The batches of a source begun but not finished, oldest first.
    async fn unfinished_batches(&self, source_id: &str) -> Result<Vec<UnfinishedBatch>>;
    /// Drops an uncommitted batch and releases its claimed ids (delete its `.pending` files first).
    /// Refuses a committed batch.
    async fn abandon_batch(&self, batch_id: &str) -> Result<()>;
    /// Waits for, then holds, the exclusive right to write lake batches of the source, across
    /// processes (the daemon and a backfill of the same source take turns per batch).
    async fn lock_writer(&self, source_id: &str) -> Result<WriterLock>;
    /// Counters of a source's seen ids and unfinished batches.
    async fn seen_stats(&self, source_id: &str) -> Result<SeenStats>;
    /// Forgets the ids of committed events whose `processedAt` (or, without one, claim time) is
    /// before `before_ms`, across all sources. Returns the ids removed.
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
