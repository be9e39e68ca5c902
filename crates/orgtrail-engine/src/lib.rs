//! The collector: per source, poll the Atlassian events stream and land every event in the lake
//! exactly once.
//!
//! Per walk of the stream, a fetcher runs up to two pages ahead of a processor, which normalizes
//! each page into an in-memory Arrow buffer. Every `flush_rows` events (and at the end), an encoder
//! turns the buffer into Parquet files, and a writer makes them one lake batch through the protocol
//! of `orgtrail_state::StateStore` (claim the ids, write `.pending` files of the events claimed,
//! commit with the checkpoint, publish by rename), under the source's writer lock. The three work
//! on consecutive batches at once.
//!
//! A crash anywhere loses nothing (the cursor only moves with a committed batch, and the next writer
//! publishes or discards what a crash left) and duplicates nothing (an event is claimed by one batch).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use orgtrail_atlassian::{
    ApiError, ApiKey, Client, Cycle, CycleEnd, ErrorKind, Hooks, Page, PageRequest,
};
use orgtrail_lake::{
    BatchBuffer, BufferedKey, EncodedBatch, FailureRecord, FinishedPage, Keep, Lake, new_batch_id,
};
use orgtrail_schema::{Normalizer, Schema, Verdict};
use orgtrail_state::{
    Checkpoint, EventKey, ExposeSecret, RunRecord, RunStatus, Source, StateError, StateStore,
    WriterLock,
};
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

// Health, alarms, notifications and metrics (issue 6): new modules, hooked into the collector by
// the `observer` field only (the lines marked `// hook`).
mod alarms;
mod clock;
mod health;
pub mod metrics;
mod monitor;
mod notify;
mod observe;
mod pool;

pub use alarms::Rules;
pub use clock::{ManualClock, ScaledClock, SystemWallClock, WallClock};
pub use health::{
    AlarmHistoryEntry, AlarmView, HealthStatus, SourceHealthReport, alarm_history, health_reports,
    list_alarms, source_health_report,
};
pub use monitor::{Monitor, MonitorConfig, TransitionSink};
pub use notify::{
    Destination, Notifier, NotifyConfig, REPLAY_WINDOW, notification_payload, slack_payload,
};
pub use observe::{BatchWritten, CollectObserver, NoObserver};

/// The retention of the Atlassian audit log: older events cannot be collected.
pub const RETENTION: SignedDuration = SignedDuration::from_hours(180 * 24);

/// Errors of the collector.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Api(#[from] ApiError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Lake(#[from] orgtrail_lake::LakeError),
    #[error("{0}")]
    Config(String),
    #[error("cancelled")]
    Cancelled,
}

impl EngineError {
    /// The source cannot collect until a person fixes something (key, permissions, org id).
    pub fn is_fatal_for_source(&self) -> bool {
        matches!(self, EngineError::Api(e) if e.is_fatal_for_source())
            || matches!(self, EngineError::State(StateError::KeyUnavailable { .. }))
            || matches!(self, EngineError::Config(_))
    }
}

/// Tunables of the collector.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// How far back the first collection of a source goes.
    pub initial_since: SignedDuration,
    /// Restarting from a `processedAt` (dead cursor, null terminal cursor) goes back this far;
    /// duplicates are removed by event id.
    pub overlap: SignedDuration,
    /// Write a lake batch when this many events are buffered (and at the end of every cycle).
    pub flush_rows: usize,
    /// ... or when the buffer holds this many bytes (bounds memory whatever the event size).
    pub flush_bytes: usize,
    /// Overrides every source's poll interval (tests, demo).
    pub poll_interval: Option<Duration>,
    /// How long to wait before retrying after a failed cycle.
    pub error_backoff: Duration,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            initial_since: SignedDuration::from_hours(7 * 24),
            overlap: SignedDuration::from_secs(60),
            flush_rows: 5_000,
            flush_bytes: 10 << 20,
            poll_interval: None,
            error_backoff: Duration::from_secs(30),
        }
    }
}

/// What one collection cycle did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CycleReport {
    pub pages: u64,
    pub received: u64,
    pub new_events: u64,
    pub duplicates: u64,
    pub rows_written: u64,
    pub failures_written: u64,
    /// The stream has more pages right away (page cap reached).
    pub more: bool,
}

/// The collector for every source of one state store, writing into one lake.
#[derive(Clone)]
pub struct Engine {
    store: Arc<dyn StateStore>,
    client: Client,
    lake: Lake,
    schema: Arc<Schema>,
    config: EngineConfig,
    /// When `prune_seen` last ran (shared by the clones of the engine).
    last_prune: Arc<std::sync::Mutex<Option<Timestamp>>>,
    /// Health, alarms and metrics hooks (observe.rs); a no-op unless `with_observer`.
    observer: Arc<dyn observe::CollectObserver>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("lake", &self.lake.location().display)
            .finish_non_exhaustive()
    }
}

fn api_key(source: &Source) -> Result<ApiKey, EngineError> {
    let secret = orgtrail_state::resolve_key(source)?;
    Ok(ApiKey::new(secret.expose_secret()))
}

/// The event's id, taken out of it. An event without an id still gets a stable id, so it is
/// stored once (and classified as a failure by the schema, which requires `id`).
fn event_id(e: &mut orgtrail_atlassian::Event) -> String {
    match e.id.take() {
        Some(id) if !id.is_empty() => id,
        _ => {
            let digest = Sha256::digest(e.json().as_bytes());
            format!(
                "sha256:{}",
                digest
                    .iter()
                    .take(16)
                    .map(|b| format!("{b:02x}"))
                    .collect::<String>()
            )
        }
    }
}

fn ms(t: Timestamp) -> i64 {
    t.as_millisecond()
}

impl Engine {
    pub fn new(
        store: Arc<dyn StateStore>,
        client: Client,
        lake: Lake,
        schema: Arc<Schema>,
        config: EngineConfig,
    ) -> Self {
        Engine {
            store,
            client,
            lake,
            schema,
            config,
            last_prune: Arc::default(),
            observer: Arc::new(observe::NoObserver),
        }
    }

    pub fn store(&self) -> &Arc<dyn StateStore> {
        &self.store
    }

    pub fn lake(&self) -> &Lake {
        &self.lake
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    /// One poll cycle of a source: pages until caught up, written to the lake in batches, each
    /// committed with the checkpoint.
    pub async fn collect_once(
        &self,
        source: &Source,
        hooks: &dyn Hooks,
        cancel: &CancellationToken,
    ) -> Result<CycleReport, EngineError> {
        let started = Timestamp::now();
        let result = self.cycle(source, hooks, cancel).await;
        if result.is_ok() {
            self.prune_seen_daily().await?;
        }
        let ended = Timestamp::now();
        self.observer.cycle_finished(source, &result); // hook: health/alarms/metrics
        match self.record_cycle(source, started, ended, &result).await {
            Err(e) if result.is_ok() => Err(e),
            // The cycle's own error says what to fix (a key, a permission): keep it.
            Err(e) => {
                tracing::warn!(source = %source.name, error = %e, "cannot record the failed cycle");
                result
            }
            Ok(()) => result,
        }
    }

    /// Records a cycle's outcome on its source (last success or error) and in the run history.
    async fn record_cycle(
        &self,
        source: &Source,
        started: Timestamp,
        ended: Timestamp,
        result: &Result<CycleReport, EngineError>,
    ) -> Result<(), EngineError> {
        let (status, error, report) = match result {
            Ok(r) => (RunStatus::Success, None, r.clone()),
            Err(EngineError::Cancelled) => (RunStatus::Cancelled, None, CycleReport::default()),
            Err(e) => (
                RunStatus::Failed,
                Some(e.to_string()),
                CycleReport::default(),
            ),
        };
        match &error {
            None if status == RunStatus::Success => {
                self.store.record_success(&source.id, ended).await?
            }
            Some(msg) => self.store.record_error(&source.id, ended, msg).await?,
            None => {}
        }
        self.store
            .record_run(&RunRecord {
                source_id: source.id.clone(),
                started_at: started,
                ended_at: ended,
                pages: report.pages,
                events: report.new_events,
                status,
                error,
            })
            .await?;
        Ok(())
    }

    async fn cycle(
        &self,
        source: &Source,
        hooks: &dyn Hooks,
        cancel: &CancellationToken,
    ) -> Result<CycleReport, EngineError> {
        let key = api_key(source)?;
        self.recover(source).await?;
        let mut report = CycleReport::default();
        let mut ckpt = self
            .store
            .checkpoint(&source.id)
            .await?
            .map(|c| c.checkpoint)
            .unwrap_or_default();
        let mut restarts = 0;
        loop {
            let start = match &ckpt.cursor {
                Some(c) => PageRequest::Cursor(c.clone()),
                None => PageRequest::Start {
                    from_ms: Some(self.resume_from(&ckpt)),
                },
            };
            let cycle = self.client.cycle(&source.org_id, &key, start);
            let walk = Walk {
                source,
                key: &key,
                hooks,
                cancel,
            };
            match self
                .walk(walk, cycle, Some(&mut ckpt), &mut report, &|_| {})
                .await
            {
                Err(EngineError::Api(e))
                    if e.kind() == ErrorKind::InvalidCursor && restarts < 3 =>
                {
                    // The cursor is dead: restart from the last processedAt minus the overlap
                    // (what the walk buffered before the error is committed first).
                    tracing::warn!(source = %source.name, "the API rejected the saved cursor; restarting from the last processedAt minus the overlap");
                    restarts += 1;
                    ckpt.cursor = None;
                    ckpt.page_seq += 1;
                    self.store.save_checkpoint(&source.id, &ckpt).await?;
                }
                Err(e) => return Err(e),
                Ok(()) => break,
            }
        }
        report.more = cycle_capped(&report, &self.client);
        Ok(report)
    }

    /// Once a day, forgets the ids of events older than the API can still serve (the retention
    /// plus a margin): they can never be fetched again, so they cannot be duplicated.
    async fn prune_seen_daily(&self) -> Result<(), EngineError> {
        let now = Timestamp::now();
        {
            let mut last = self
                .last_prune
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if last.is_some_and(|t| now.duration_since(t) < SignedDuration::from_hours(24)) {
                return Ok(());
            }
            *last = Some(now);
        }
        let cutoff = now - RETENTION - SignedDuration::from_hours(10 * 24);
        let n = self.store.prune_seen(ms(cutoff)).await?;
        if n > 0 {
            tracing::info!(ids = n, "forgot the ids of events past the retention");
        }
        Ok(())
    }

    /// Where a walk without a cursor starts: the last `processedAt` minus the overlap, or, for a new
    /// source, `initial_since` ago.
    fn resume_from(&self, ckpt: &Checkpoint) -> i64 {
        match ckpt.max_processed_at_ms {
            Some(max) => max - self.config.overlap.as_millis() as i64,
            None => ms(Timestamp::now() - self.config.initial_since),
        }
    }

    /// Finishes what a crash left: publishes the files of committed batches, deletes those of
    /// uncommitted ones and releases their ids.
    async fn recover(&self, source: &Source) -> Result<(), EngineError> {
        let _lock = self.store.lock_writer(&source.id).await?;
        self.recover_locked(source).await
    }

    async fn recover_locked(&self, source: &Source) -> Result<(), EngineError> {
        for b in self.store.unfinished_batches(&source.id).await? {
            if b.committed {
                self.lake.publish(&b.files).await?;
                self.store.finish_batch(&b.batch_id).await?;
            } else {
                tracing::info!(source = %source.name, batch = %b.batch_id, "discarding a lake batch a crash left uncommitted; its events are fetched again");
                self.lake.discard(&b.files).await?;
                self.store.abandon_batch(&b.batch_id).await?;
            }
        }
        Ok(())
    }

    /// Walks the stream from `cycle`, normalizing each page while the next one is fetched, and
    /// writes the buffered events to the lake as a batch every `flush_rows` events and at the end.
    /// With `ckpt` (the daemon), every batch advances the source's checkpoint; without (a backfill)
    /// the checkpoint is left alone.
    async fn walk(
        &self,
        w: Walk<'_>,
        cycle: Cycle,
        mut ckpt: Option<&mut Checkpoint>,
        report: &mut CycleReport,
        progress: &(dyn Fn(&CycleReport) + Sync),
    ) -> Result<(), EngineError> {
        let (tx, rx) = tokio::sync::mpsc::channel::<Fetched>(FETCH_AHEAD_PAGES);
        let page_limit = self.client.config().page_limit as usize;
        // The daemon's walk (it carries the checkpoint) ends on a short page; a backfill's walks
        // to the end of the stream.
        let daemon = ckpt.is_some();
        let fetch = async {
            // Owned by the fetcher: dropping it when the walk ends closes the channel.
            let tx = tx;
            let mut cycle = cycle;
            loop {
                let page = tokio::select! {
                    _ = w.cancel.cancelled() => Err(EngineError::Cancelled),
                    // The processing side stopped (an error): stop fetching.
                    _ = tx.closed() => return,
                    p = cycle.next_page(w.hooks) => p.map_err(EngineError::from),
                };
                let item = match page {
                    Ok(Some(page)) => {
                        // Mode B (a null next cursor at the end): restart from processedAt next time.
                        let cursor = match cycle.end() {
                            Some(CycleEnd::NoNextCursor) => None,
                            _ => cycle.last_cursor().map(str::to_owned),
                        };
                        let short = page.events.len() < page_limit;
                        let last = daemon && short;
                        if tx.send(Fetched::Page(page, cursor)).await.is_err() || last {
                            // A short page means caught up for now: with steady live arrivals the
                            // stream may never return an empty page, so the cycle ends here and the
                            // next poll goes on from the saved cursor.
                            return;
                        }
                        continue;
                    }
                    Ok(None) if !daemon && cycle.end() == Some(CycleEnd::PageCap) => {
                        // A backfill keeps walking from where the cap stopped it.
                        match cycle.resume_request() {
                            Some(next) => {
                                cycle = self.client.cycle(&w.source.org_id, w.key, next);
                                continue;
                            }
                            None => Fetched::Failed(EngineError::Config(
                                "the page cap was reached without a cursor".into(),
                            )),
                        }
                    }
                    Ok(None) => return,
                    Err(e) => Fetched::Failed(e),
                };
                let _ = tx.send(item).await;
                return;
            }
        };
        // The processor normalizes pages into the buffer and hands full buffers to the encoder, then
        // the writer, which take them one after the other (in order: each batch's checkpoint follows
        // the last one's) while the next buffer fills. The encoder says when it took a buffer.
        let report = std::sync::Mutex::new(report);
        let (batch_tx, batch_rx) = tokio::sync::mpsc::channel::<(
            BatchBuffer,
            Option<Checkpoint>,
            tokio::sync::oneshot::Sender<()>,
        )>(1);
        // Each stage owns its receiving end, so a stage that stops (an error) stops the one feeding it.
        let process = async {
            let (mut rx, batch_tx) = (rx, batch_tx);
            let normalizer = Arc::new(
                Normalizer::new(self.schema.clone())
                    .with_source(Some(w.source.id.clone()), Some(w.source.name.clone())),
            );
            let mut buffer = BatchBuffer::new(self.schema.clone());
            // The ids buffered or being normalized, sized for a whole batch so that it does not
            // grow (rehashing every id) while the batch fills.
            let mut buffered = foldhash::HashSet::<String>::with_capacity_and_hasher(
                self.config.flush_rows + (NORMALIZE_AHEAD + 1) * page_limit,
                Default::default(),
            );
            // The checkpoint as it was before each page received and not yet written, oldest
            // first: a batch that holds sparse hours back saves the one before the oldest page it
            // holds back.
            let mut before_page: VecDeque<(u64, Checkpoint)> = VecDeque::new();
            // Pages being normalized side by side, oldest first; they join the buffer in order.
            let mut normalizing: VecDeque<Normalizing> = VecDeque::new();
            // The checkpoint once the last page that joined the buffer is stored.
            let mut buffered_ckpt = ckpt.as_deref().cloned();
            let mut page_no = 0u64;
            let mut holds = 0u32;
            let mut failed = None;
            let mut ended = false;
            while !ended || !normalizing.is_empty() {
                if !ended && normalizing.len() < NORMALIZE_AHEAD {
                    let (page, cursor) = match rx.recv().await {
                        Some(Fetched::Page(p, c)) => (p, c),
                        Some(Fetched::Failed(e)) => {
                            // The pages before the failure are good: they are still written.
                            failed = Some(e);
                            ended = true;
                            continue;
                        }
                        None => {
                            ended = true;
                            continue;
                        }
                    };
                    page_no += 1;
                    if let Some(c) = ckpt.as_deref() {
                        before_page.push_back((page_no, c.clone()));
                    }
                    self.observer.page_received(w.source, &page.events); // hook: health/alarms/metrics
                    let (received, mut duplicates) = (page.events.len() as u64, 0);
                    let mut fresh = Vec::with_capacity(page.events.len());
                    let mut invalid = None;
                    for mut e in page.events {
                        let id = event_id(&mut e);
                        let processed = e.processed_at.map(ms);
                        if let (Some(c), Some(p)) = (ckpt.as_deref_mut(), processed) {
                            observe(c, p, &id);
                        }
                        if buffered.insert(id.clone()) {
                            fresh.push((id, processed, e));
                        } else {
                            duplicates += 1;
                            // Not normalized: checked here, so that no page is taken unchecked.
                            if let (None, Err(message)) = (&invalid, e.check()) {
                                invalid =
                                    Some(invalid_page(w.source, &self.client, &id, &e, message));
                            }
                        }
                    }
                    if let Some(e) = invalid {
                        failed = Some(e);
                        ended = true;
                        continue;
                    }
                    {
                        let mut r = report
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner);
                        r.pages += 1;
                        r.received += received;
                        r.duplicates += duplicates;
                    }
                    if let Some(c) = ckpt.as_deref_mut() {
                        c.cursor = cursor;
                        c.page_seq += 1;
                    }
                    normalizing.push_back(Normalizing {
                        page_no,
                        body: fresh.first().map(|(_, _, e)| e.body().clone()),
                        ckpt_after: ckpt.as_deref().cloned(),
                        task: self.normalize_page(
                            &buffer,
                            fresh,
                            page_no,
                            &normalizer,
                            w.source,
                        )?,
                    });
                    continue;
                }
                let Some(next) = normalizing.pop_front() else {
                    break;
                };
                let page = match next.task.await {
                    Ok(Ok(page)) => page,
                    Ok(Err(e)) => {
                        // An invalid page: the pages before it are good and still written; the
                        // ones after it are dropped (the next cycle fetches them again).
                        failed = Some(e);
                        normalizing.clear();
                        ended = true;
                        continue;
                    }
                    Err(e) => {
                        return Err(EngineError::Config(format!(
                            "the normalizing task failed: {e}"
                        )));
                    }
                };
                buffer.push_page(page)?;
                if let Some(body) = next.body {
                    // The page's events are gone: its body can take a later page.
                    self.client.recycle_body(body);
                }
                buffered_ckpt = next.ckpt_after;
                if buffer.len() >= self.config.flush_rows
                    || buffer.memory_size() >= self.config.flush_bytes
                {
                    let empty = buffer.empty_like();
                    let mut full = std::mem::replace(&mut buffer, empty);
                    if let Some(held) = self.hold_sparse_hours(&mut full, &mut holds)? {
                        buffer = held;
                    }
                    // What stays: the ids held back and those of the pages being normalized.
                    for k in full.keys() {
                        buffered.remove(&k.event_id);
                    }
                    let saved = buffered_ckpt.as_ref().and_then(|c| {
                        checkpoint_before(c, &mut before_page, buffer.keys().first(), next.page_no)
                    });
                    // Handed over, not queued: the encoder takes it when it is done with the one
                    // before, and meanwhile this buffer does not fill (a third batch of Arrow data
                    // in memory).
                    let (taken_tx, taken_rx) = tokio::sync::oneshot::channel();
                    if batch_tx.send((full, saved, taken_tx)).await.is_err()
                        || taken_rx.await.is_err()
                    {
                        return Ok(()); // the writer failed: its error is the walk's
                    }
                }
            }
            // Commit what was buffered (and the checkpoint) also when the walk failed: the pages
            // before the failure are good.
            let _ = batch_tx
                .send((buffer, buffered_ckpt, tokio::sync::oneshot::channel().0))
                .await;
            match failed {
                Some(e) => Err(e),
                None => Ok(()),
            }
        };
        // The encoder turns each full buffer into Parquet files while the writer claims and commits
        // the batch before it (at most one encoded batch waits).
        let (encoded_tx, encoded_rx) =
            tokio::sync::mpsc::channel::<(Option<EncodedBatch>, Option<Checkpoint>)>(1);
        let encode = async {
            let (mut batch_rx, encoded_tx) = (batch_rx, encoded_tx);
            while let Some((buffer, saved, taken)) = batch_rx.recv().await {
                let _ = taken.send(());
                let encoded = if buffer.is_empty() {
                    None
                } else {
                    Some(self.lake.encode(buffer, &new_batch_id()).await?)
                };
                if encoded_tx.send((encoded, saved)).await.is_err() {
                    return Ok(()); // the writer failed: its error is the walk's
                }
            }
            Ok::<_, EngineError>(())
        };
        // The writer in two stages, so that the claim and the pending files of a batch overlap
        // the commit of the one before it: each stage is a chain of round trips (SQLite's thread,
        // the blocking pool, fsync), and as one stage the writer was the one the others waited
        // for. Both hold the source's writer lock, taken for up to `LOCK_BATCHES` batches in a row
        // and released when the last batch staged under it is committed, so no other writer's
        // recovery sees a batch of this walk in flight, and a backfill and the daemon still take
        // turns.
        let (staged_tx, staged_rx) = tokio::sync::mpsc::channel::<Staged>(1);
        let stage = async {
            let (mut encoded_rx, staged_tx) = (encoded_rx, staged_tx);
            let mut lock: Option<(Arc<WriterLock>, usize)> = None;
            while let Some((batch, saved)) = encoded_rx.recv().await {
                let staged = match batch {
                    None => Staged::Checkpoint(saved),
                    Some(batch) => {
                        let (held, n) = match lock.take() {
                            Some((held, n)) if n < LOCK_BATCHES => (held, n + 1),
                            // Let go first: the lock is free once the commit stage is done
                            // with every batch staged under it, and then nothing of this walk
                            // is in flight for the recovery to see.
                            done => {
                                drop(done);
                                let held = Arc::new(self.store.lock_writer(&w.source.id).await?);
                                self.recover_locked(w.source).await?;
                                (held, 1)
                            }
                        };
                        let staged = self
                            .stage_batch(w.source, batch, saved, held.clone())
                            .await?;
                        lock = Some((held, n));
                        staged
                    }
                };
                if staged_tx.send(staged).await.is_err() {
                    return Ok(()); // the commit stage failed: its error is the walk's
                }
            }
            Ok::<_, EngineError>(())
        };
        let commit = async {
            let mut staged_rx = staged_rx;
            while let Some(staged) = staged_rx.recv().await {
                let written = self.commit_staged(w.source, staged).await?;
                let mut r = report
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                r.duplicates += written.duplicates;
                r.new_events += written.new_events;
                r.rows_written += written.rows_written;
                r.failures_written += written.failures_written;
                progress(&r);
            }
            Ok::<_, EngineError>(())
        };
        let ((), processed, encoded, staged, committed) =
            tokio::join!(fetch, process, encode, stage, commit);
        committed.and(staged).and(encoded).and(processed)
    }

    /// Before a batch is written: moves the hours with few rows (late events) back into the buffer
    /// for a later batch, so a long walk writes fewer and larger files. Bounded: at most a quarter
    /// of a batch is held, and everything is written at least every [`MAX_HOLDS`] batches (a crash
    /// refetches at most that many batches' pages, whose stored events are skipped by id).
    fn hold_sparse_hours(
        &self,
        full: &mut BatchBuffer,
        holds: &mut u32,
    ) -> Result<Option<BatchBuffer>, EngineError> {
        let held = if *holds < MAX_HOLDS {
            let sparse = (self.config.flush_rows / 100).max(1);
            full.take_sparse_hours(sparse, self.config.flush_rows / 4)?
        } else {
            None
        };
        *holds = if held.is_some() { *holds + 1 } else { 0 };
        Ok(held)
    }

    /// Starts normalizing one page's events into rows for `buffer` (CPU work, off the async
    /// workers); the page joins the buffer with [`BatchBuffer::push_page`].
    fn normalize_page(
        &self,
        buffer: &BatchBuffer,
        events: Vec<(String, Option<i64>, orgtrail_atlassian::Event)>,
        arrival: u64,
        normalizer: &Arc<Normalizer>,
        source: &Source,
    ) -> Result<NormalizeTask, EngineError> {
        let mut rows = buffer.page_builder()?;
        let log_type = self.schema.name.clone();
        let normalizer = normalizer.clone();
        let (client, source) = (self.client.clone(), source.clone());
        Ok(Box::pin(pool::run(move || {
            // In hour order (stable: an hour's events keep theirs), the rows come out of the builder
            // grouped by hour, and the buffer slices the page's arrays per hour instead of copying
            // them (a page's late events are spread through it). The hour comes from the time as
            // served, a hint: when the normalizer reads another, the buffer copies as before.
            let mut events = events;
            order_by_hour(&mut events);
            let parse_time = Timestamp::now();
            let mut keys = Vec::with_capacity(events.len());
            let mut failures = Vec::new();
            for (id, processed_at_ms, event) in events {
                let key = BufferedKey {
                    event_id: id,
                    processed_at_ms,
                    arrival,
                };
                match normalizer.normalize_text_into(event.json(), parse_time, &mut rows) {
                    Verdict::Row => keys.push(key),
                    Verdict::Failure(failure) => {
                        // The page was only split: an event the normalizer could not read to its
                        // end may not be JSON, and then the page is invalid.
                        if failure.parse_stopped()
                            && let Err(message) = event.check()
                        {
                            return Err(invalid_page(
                                &source,
                                &client,
                                &key.event_id,
                                &event,
                                message,
                            ));
                        }
                        failures.push((
                            key,
                            FailureRecord {
                                parse_time,
                                source_id: Some(source.id.clone()),
                                source_label: Some(source.name.clone()),
                                log_type: log_type.clone(),
                                failure,
                            },
                        ));
                    }
                    Verdict::Skip => {}
                }
            }
            Ok(FinishedPage::new(rows, keys, failures)?)
        })))
    }

    /// The first half of writing an encoded buffer to the lake as one batch (the protocol in
    /// `orgtrail-state`'s `StateStore`), under the source's writer lock `lock`: claims its events
    /// and writes the files of those it keeps as pending files. [`Engine::commit_staged`] commits
    /// it, advancing the checkpoint `ckpt` with it when given, and publishes the files.
    async fn stage_batch(
        &self,
        source: &Source,
        batch: EncodedBatch,
        ckpt: Option<Checkpoint>,
        lock: Arc<WriterLock>,
    ) -> Result<Staged, EngineError> {
        let batch_id = batch.batch_id().to_owned();
        let files = batch.files().to_vec();
        let keys: Vec<EventKey> = batch
            .keys()
            .iter()
            .map(|k| EventKey {
                event_id: k.event_id.clone(),
                processed_at_ms: k.processed_at_ms,
            })
            .collect();
        let claimed = self
            .store
            .begin_batch(&source.id, &batch_id, &keys, &files)
            .await?;
        let (events, new_events) = (keys.len(), claimed.len());
        // Each id is claimed once: as many claimed as keys means every event is new.
        let keep = if claimed.len() == keys.len() {
            Keep::All
        } else {
            Keep::Only(claimed.into_iter().collect())
        };
        let written = self.lake.write_pending(batch, keep).await?;
        Ok(Staged::Batch(StagedBatch {
            batch_id,
            files,
            events,
            new_events,
            rows: written.rows,
            failures: written.failures,
            ckpt,
            _lock: lock,
        }))
    }

    /// The second half of [`Engine::stage_batch`]: commits the batch (and the checkpoint), then
    /// publishes its files. A checkpoint alone (an empty buffer) is only saved.
    async fn commit_staged(
        &self,
        source: &Source,
        staged: Staged,
    ) -> Result<CycleReport, EngineError> {
        let b = match staged {
            Staged::Checkpoint(ckpt) => {
                if let Some(c) = ckpt {
                    self.store.save_checkpoint(&source.id, &c).await?;
                }
                return Ok(CycleReport::default());
            }
            Staged::Batch(b) => b,
        };
        self.store
            .commit_batch(&b.batch_id, b.rows + b.failures, b.ckpt.as_ref())
            .await?;
        self.lake.publish(&b.files).await?;
        self.store.finish_batch(&b.batch_id).await?;
        self.observer.batch_written(
            source,
            &observe::BatchWritten::new(b.events, b.rows, b.failures),
        ); // hook: health/alarms/metrics
        Ok(CycleReport {
            duplicates: (b.events - b.new_events) as u64,
            new_events: b.new_events as u64,
            rows_written: b.rows,
            failures_written: b.failures,
            ..CycleReport::default()
        })
    }

    /// Collects what is missing since `since` without touching the source's cursor: events already
    /// stored are recognized by id and skipped, so nothing is duplicated, and the daemon can keep
    /// polling meanwhile.
    pub async fn backfill(
        &self,
        source: &Source,
        since: Timestamp,
        hooks: &dyn Hooks,
        cancel: &CancellationToken,
        progress: &(dyn Fn(&CycleReport) + Sync),
    ) -> Result<CycleReport, EngineError> {
        check_since(since)?;
        let key = api_key(source)?;
        self.recover(source).await?;
        let mut report = CycleReport::default();
        let cycle = self.client.cycle(
            &source.org_id,
            &key,
            PageRequest::Start {
                from_ms: Some(ms(since)),
            },
        );
        let walk = Walk {
            source,
            key: &key,
            hooks,
            cancel,
        };
        self.walk(walk, cycle, None, &mut report, progress).await?;
        Ok(report)
    }

    /// Polls one source until `cancel`: a cycle, then the poll interval (no wait while the stream
    /// has more). A source whose key or permissions fail waits until it is edited, without calling
    /// the API meanwhile. Returns early when the source's base URL was edited: this engine's client
    /// calls another host, so the caller starts the source again on an engine for the new URL.
    pub async fn run_source(
        &self,
        source_id: &str,
        hooks: &dyn Hooks,
        cancel: &CancellationToken,
        on_cycle: &(dyn Fn(&Source, &Result<CycleReport, EngineError>) + Sync),
    ) -> Result<RunEnd, EngineError> {
        loop {
            let source = self.store.get_source(source_id).await?;
            if source.base_url != self.client.config().base_url {
                return Ok(RunEnd::BaseUrlChanged);
            }
            if source.paused {
                if sleep_or_cancel(Duration::from_secs(5), cancel).await {
                    return Ok(RunEnd::Cancelled);
                }
                continue;
            }
            let result = self.collect_once(&source, hooks, cancel).await;
            if matches!(result, Err(EngineError::Cancelled)) {
                return Ok(RunEnd::Cancelled);
            }
            on_cycle(&source, &result);
            let wait = match &result {
                Ok(r) if r.more => Duration::ZERO,
                Ok(_) => self
                    .config
                    .poll_interval
                    .unwrap_or(Duration::from_secs(u64::from(source.poll_interval_secs))),
                Err(e) if e.is_fatal_for_source() => {
                    // Wait for the user to fix it (source edit), without hammering the API.
                    let updated = source.updated_at;
                    loop {
                        if sleep_or_cancel(Duration::from_secs(2), cancel).await {
                            return Ok(RunEnd::Cancelled);
                        }
                        let now = self.store.get_source(source_id).await?;
                        if now.updated_at != updated || now.paused != source.paused {
                            break;
                        }
                    }
                    Duration::ZERO
                }
                Err(_) => self.config.error_backoff,
            };
            if sleep_or_cancel(wait, cancel).await {
                return Ok(RunEnd::Cancelled);
            }
        }
    }
}

/// Why [`Engine::run_source`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunEnd {
    Cancelled,
    /// The source's base URL was edited (`source edit --base-url`): start it again on an engine
    /// whose client calls the new URL.
    BaseUrlChanged,
}

/// Pages fetched ahead of the one being normalized.
const FETCH_AHEAD_PAGES: usize = 2;

/// Pages normalized side by side (on the threads of `pool.rs`): with two, a core that the
/// encoder, the writer and the fetcher leave idle takes the next page.
const NORMALIZE_AHEAD: usize = 2;

/// A page being normalized.
struct Normalizing {
    page_no: u64,
    /// The page's body, reused for a later page once its events are gone.
    body: Option<Arc<String>>,
    /// The checkpoint once this page's events are stored (the daemon's walk).
    ckpt_after: Option<Checkpoint>,
    task: NormalizeTask,
}

type NormalizeTask = std::pin::Pin<
    Box<dyn Future<Output = Result<Result<FinishedPage, EngineError>, &'static str>> + Send>,
>;

/// How many batches a walk writes in a row under one take of the source's writer lock (a
/// backfill and the daemon take turns every so many batches).
const LOCK_BATCHES: usize = 8;

/// A lake batch between the two writer stages of a walk.
enum Staged {
    /// An empty buffer: only its checkpoint, saved in turn.
    Checkpoint(Option<Checkpoint>),
    Batch(StagedBatch),
}

/// A batch claimed and written as pending files, waiting for its commit.
struct StagedBatch {
    batch_id: String,
    files: Vec<String>,
    /// Events in the batch, and how many of them were new (claimed by it).
    events: usize,
    new_events: usize,
    rows: u64,
    failures: u64,
    /// The checkpoint its commit saves (the daemon's walk).
    ckpt: Option<Checkpoint>,
    /// Held until the batch is committed and published.
    _lock: Arc<WriterLock>,
}

/// How many batches in a row may hold sparse hours back (see `Engine::hold_sparse_hours`).
const MAX_HOLDS: u32 = 32;

/// One walk of the stream: whose, and with which key.
struct Walk<'a> {
    source: &'a Source,
    key: &'a ApiKey,
    hooks: &'a dyn Hooks,
    cancel: &'a CancellationToken,
}

/// What the fetcher hands to the processor.
enum Fetched {
    /// A page and the cursor to resume after it.
    Page(Page, Option<String>),
    Failed(EngineError),
}

/// The checkpoint a batch may save when `oldest_held` (the oldest event it leaves buffered) is still
/// to be written: the one from before that event's page, so a restart fetches it again (`None`, save
/// nothing, if that one is unknown). Keeps `page_seq` current (it never goes back). Forgets the
/// snapshots no longer needed.
fn checkpoint_before(
    current: &Checkpoint,
    before_page: &mut VecDeque<(u64, Checkpoint)>,
    oldest_held: Option<&BufferedKey>,
    last_page: u64,
) -> Option<Checkpoint> {
    let Some(key) = oldest_held else {
        // Pages after `last_page` (being normalized) are not in the batch: theirs stay.
        while before_page
            .front()
            .is_some_and(|(page, _)| *page <= last_page)
        {
            before_page.pop_front();
        }
        return Some(current.clone());
    };
    while before_page
        .front()
        .is_some_and(|(page, _)| *page < key.arrival)
    {
        before_page.pop_front();
    }
    let (_, before) = before_page
        .front()
        .filter(|(page, _)| *page == key.arrival)?;
    Some(Checkpoint {
        page_seq: current.page_seq,
        ..before.clone()
    })
}

/// An event that is not valid JSON makes its page an invalid response body, like a truncated one:
/// nothing of the page is written, the checkpoint stays before it, and the next cycle fetches it
/// again.
fn invalid_page(
    source: &Source,
    client: &Client,
    id: &str,
    event: &orgtrail_atlassian::Event,
    message: String,
) -> EngineError {
    EngineError::Api(ApiError::Body {
        org_id: source.org_id.clone(),
        base_url: client.base_url().to_owned(),
        status: 200,
        bytes: event.body().len(),
        attempts: 1,
        message: format!("event {id}: {message}"),
    })
}

/// Orders a page's events by the hour of their time as served (`YYYY-MM-DDTHH`), events of one
/// hour in their order, events without a time last.
fn order_by_hour<T>(events: &mut [(T, Option<i64>, orgtrail_atlassian::Event)]) {
    fn hour(e: &orgtrail_atlassian::Event) -> [u8; 13] {
        e.time_text()
            .and_then(|t| t.as_bytes().first_chunk::<13>())
            .copied()
            .unwrap_or([u8::MAX; 13])
    }
    events.sort_by_cached_key(|(_, _, e)| hour(e));
}

/// Tracks the greatest `processedAt` and the ids at it (restarts from `processedAt` skip them).
fn observe(c: &mut Checkpoint, processed_ms: i64, id: &str) {
    match c.max_processed_at_ms {
        Some(max) if processed_ms < max => {}
        Some(max) if processed_ms == max => {
            if !c.ids_at_max.iter().any(|x| x == id) {
                c.ids_at_max.push(id.to_owned());
            }
        }
        _ => {
            c.max_processed_at_ms = Some(processed_ms);
            // Most events raise the maximum: reuse the first id's buffer rather than allocate.
            c.ids_at_max.truncate(1);
            match c.ids_at_max.first_mut() {
                Some(first) => {
                    first.clear();
                    first.push_str(id);
                }
                None => c.ids_at_max.push(id.to_owned()),
            }
        }
    }
}

fn cycle_capped(report: &CycleReport, client: &Client) -> bool {
    report.pages >= u64::from(client.config().max_pages_per_cycle)
}

/// `true` when cancelled.
async fn sleep_or_cancel(d: Duration, cancel: &CancellationToken) -> bool {
    tokio::select! {
        _ = cancel.cancelled() => true,
        _ = tokio::time::sleep(d) => false,
    }
}

/// A backfill or first collection cannot go past the 180-day retention.
pub fn check_since(since: Timestamp) -> Result<(), EngineError> {
    if since < Timestamp::now() - RETENTION {
        return Err(EngineError::Config(format!(
            "{since} is beyond the Atlassian audit log's 180-day retention: events older than that cannot be collected; use --since 180d or less"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_is_normalized_hour_by_hour_in_arrival_order_within_an_hour() {
        let page = r#"{"data":[
            {"id":"a","attributes":{"time":"2025-06-02T10:59:00.000Z"}},
            {"id":"b","attributes":{"time":"2025-06-02T09:10:00Z"}},
            {"id":"c","attributes":{}},
            {"id":"d","attributes":{"time":"2025-06-02T10:01:00Z"}},
            {"id":"e","attributes":{"time":"2025-06-02T09:00:00Z"}}],
            "meta":{"next":null},"links":{}}"#;
        let base = url::Url::parse("https://api.atlassian.com").unwrap();
        let page = orgtrail_atlassian::parse_page(page, &base).unwrap();
        let mut events: Vec<_> = page.events.into_iter().map(|e| ((), None, e)).collect();
        order_by_hour(&mut events);
        let ids: Vec<_> = events
            .iter()
            .filter_map(|(_, _, e)| e.id.as_deref())
            .collect();
        assert_eq!(ids, ["b", "e", "a", "d", "c"]);
    }

    fn ck(cursor: &str, max: i64, page_seq: i64) -> Checkpoint {
        Checkpoint {
            cursor: Some(cursor.into()),
            max_processed_at_ms: Some(max),
            ids_at_max: vec![format!("id-{max}")],
            page_seq,
        }
    }

    fn held(arrival: u64) -> BufferedKey {
        BufferedKey {
            event_id: "late".into(),
            processed_at_ms: Some(1),
            arrival,
        }
    }

    #[test]
    fn a_batch_that_holds_events_back_saves_the_checkpoint_from_before_their_page() {
        // Pages 1-5 are buffered; pages 6 and 7 are being normalized (not in the batch).
        let current = ck("c5", 500, 5);
        let mut before: VecDeque<(u64, Checkpoint)> = (1..=7)
            .map(|p| {
                (
                    p,
                    ck(&format!("c{}", p - 1), (p as i64 - 1) * 100, p as i64 - 1),
                )
            })
            .collect();
        // The oldest held event came on page 3: a restart must fetch page 3 again, so the saved
        // checkpoint is the one before it (cursor c2, max 200), with the current page_seq.
        let saved = checkpoint_before(&current, &mut before, Some(&held(3)), 5).unwrap();
        assert_eq!(
            saved,
            Checkpoint {
                page_seq: 5,
                ..ck("c2", 200, 2)
            }
        );
        assert_eq!(
            before.front().map(|(p, _)| *p),
            Some(3),
            "pages 1-2 forgotten"
        );
        // Nothing held: the current checkpoint; only the pages being normalized keep theirs.
        assert_eq!(
            checkpoint_before(&current, &mut before, None, 5),
            Some(current.clone())
        );
        assert_eq!(before.iter().map(|(p, _)| *p).collect::<Vec<_>>(), [6, 7]);
        // A held page without its snapshot: nothing is saved rather than a checkpoint past it.
        assert_eq!(
            checkpoint_before(&current, &mut before, Some(&held(4)), 5),
            None
        );
    }
}
