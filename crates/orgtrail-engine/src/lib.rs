//! The collector: per source, poll the Atlassian events stream and land every event in the lake
//! exactly once.
//!
//! The protocol (a transactional outbox, see `orgtrail-state`):
//! 1. fetch a page from the checkpoint's cursor (or `from` = last `processedAt` − overlap);
//! 2. in ONE state transaction, spool the page's events (unique on source + event id, so a replayed
//!    event is a no-op) and advance the checkpoint;
//! 3. the flusher claims a batch of spooled events under a batch id recorded before any write,
//!    normalizes them, writes the Parquet files named after that batch id (a re-flush after a crash
//!    rewrites the same files), then marks the batch flushed.
//!
//! A crash anywhere loses nothing (the cursor only moves past durable pages) and duplicates nothing
//! (event ids are unique in the spool, batch files are idempotent).

use std::sync::Arc;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use orgtrail_atlassian::{ApiError, ApiKey, Client, CycleEnd, ErrorKind, Hooks, PageRequest};
use orgtrail_lake::{FailureRecord, Lake};
use orgtrail_schema::{Normalizer, Outcome, Schema};
use orgtrail_state::{
    Checkpoint, ExposeSecret, RunRecord, RunStatus, Source, SpoolEvent, StateError, StateStore,
};
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

// Health, alarms, notifications and metrics (issue 6): new modules, hooked into the collector by
// the `observer` field only.
mod alarms;
mod clock;
mod health;
pub mod metrics;
mod monitor;
mod notify;
mod observe;

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
pub use observe::{CollectObserver, NoObserver};

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
    /// Flush when this many events are spooled (and at the end of every cycle).
    pub flush_rows: usize,
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
            flush_rows: 50_000,
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

/// An event without an id still gets a stable spool id, so it is stored once (and classified as a
/// failure by the schema, which requires `id`).
fn event_id(e: &orgtrail_atlassian::Event) -> String {
    match &e.id {
        Some(id) if !id.is_empty() => id.clone(),
        _ => {
            let digest = Sha256::digest(e.raw.get().as_bytes());
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

    /// One poll cycle of a source: pages until caught up, each committed with its checkpoint, then a
    /// flush of everything spooled.
    pub async fn collect_once(
        &self,
        source: &Source,
        hooks: &dyn Hooks,
        cancel: &CancellationToken,
    ) -> Result<CycleReport, EngineError> {
        let started = Timestamp::now();
        let result = self.cycle(source, hooks, cancel).await;
        let ended = Timestamp::now();
        self.observer.cycle_finished(source, &result); // hook: health/alarms/metrics
        let (status, error, report) = match &result {
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
        result
    }

    async fn cycle(
        &self,
        source: &Source,
        hooks: &dyn Hooks,
        cancel: &CancellationToken,
    ) -> Result<CycleReport, EngineError> {
        let key = api_key(source)?;
        let mut report = CycleReport::default();
        let mut ckpt = self
            .store
            .checkpoint(&source.id)
            .await?
            .map(|c| c.checkpoint)
            .unwrap_or_default();
        let mut restarts = 0;
        'cycle: loop {
            let start = match &ckpt.cursor {
                Some(c) => PageRequest::Cursor(c.clone()),
                None => PageRequest::Start {
                    from_ms: Some(self.resume_from(&ckpt)),
                },
            };
            let mut cycle = self.client.cycle(&source.org_id, &key, start);
            loop {
                let page = tokio::select! {
                    _ = cancel.cancelled() => return Err(EngineError::Cancelled),
                    page = cycle.next_page(hooks) => page,
                };
                let page = match page {
                    Ok(Some(p)) => p,
                    Ok(None) => break 'cycle,
                    Err(e) if e.kind() == ErrorKind::InvalidCursor && restarts < 3 => {
                        // The cursor is dead: restart from the last processedAt minus the overlap.
                        tracing::warn!(source = %source.name, "the API rejected the saved cursor; restarting from the last processedAt minus the overlap");
                        restarts += 1;
                        ckpt.cursor = None;
                        ckpt.page_seq += 1;
                        self.store.commit_page(&source.id, &[], &ckpt).await?;
                        continue 'cycle;
                    }
                    Err(e) => return Err(e.into()),
                };
                report.pages += 1;
                report.received += page.events.len() as u64;
                let mut events = Vec::with_capacity(page.events.len());
                for e in &page.events {
                    let processed = e.processed_at.map(ms);
                    if let Some(p) = processed {
                        let id = event_id(e);
                        match ckpt.max_processed_at_ms {
                            Some(max) if p < max => {}
                            Some(max) if p == max => {
                                if !ckpt.ids_at_max.contains(&id) {
                                    ckpt.ids_at_max.push(id);
                                }
                            }
                            _ => {
                                ckpt.max_processed_at_ms = Some(p);
                                ckpt.ids_at_max = vec![id];
                            }
                        }
                    }
                    events.push(SpoolEvent {
                        event_id: event_id(e),
                        processed_at_ms: processed,
                        raw_json: e.raw.get().to_owned(),
                    });
                }
                // Mode B (a null next cursor at the end): restart from processedAt next time.
                ckpt.cursor = match cycle.end() {
                    Some(CycleEnd::NoNextCursor) => None,
                    _ => cycle.last_cursor().map(str::to_owned),
                };
                ckpt.page_seq += 1;
                let outcome = self.store.commit_page(&source.id, &events, &ckpt).await?;
                self.observer.page_committed(source, &page.events, &outcome); // hook: health/alarms/metrics
                report.new_events += outcome.inserted;
                report.duplicates += outcome.duplicates;
                if self.store.spool_stats(&source.id).await?.unbatched_rows as usize
                    >= self.config.flush_rows
                {
                    self.flush(source, &mut report).await?;
                }
                // A short page means caught up for now: with steady live arrivals the stream may
                // never return an empty page, so the cycle ends here and the next poll goes on
                // from the saved cursor.
                if page.events.len() < self.client.config().page_limit as usize {
                    break 'cycle;
                }
            }
        }
        report.more = cycle_capped(&report, &self.client);
        self.flush(source, &mut report).await?;
        Ok(report)
    }

    /// Where a walk without a cursor starts: the last `processedAt` minus the overlap, or, for a new
    /// source, `initial_since` ago.
    fn resume_from(&self, ckpt: &Checkpoint) -> i64 {
        match ckpt.max_processed_at_ms {
            Some(max) => max - self.config.overlap.as_millis() as i64,
            None => ms(Timestamp::now() - self.config.initial_since),
        }
    }

    /// Normalizes and writes every spooled event of a source (pending batches first).
    pub async fn flush(
        &self,
        source: &Source,
        report: &mut CycleReport,
    ) -> Result<(), EngineError> {
        let normalizer = Normalizer::new(self.schema.clone())
            .with_source(Some(source.id.clone()), Some(source.name.clone()));
        while let Some(batch) = self
            .store
            .claim_batch(&source.id, self.config.flush_rows)
            .await?
        {
            let mut rows = Vec::with_capacity(batch.events.len());
            let mut failures = Vec::new();
            for e in &batch.events {
                match normalizer.normalize(e.raw_json.as_bytes()) {
                    Outcome::Row(r) => rows.push(r),
                    Outcome::Failure(failure) => failures.push(FailureRecord {
                        parse_time: Timestamp::now(),
                        source_id: Some(source.id.clone()),
                        source_label: Some(source.name.clone()),
                        log_type: self.schema.name.clone(),
                        failure,
                    }),
                    Outcome::Skip => {}
                }
            }
            self.lake
                .write_rows(&self.schema, &batch.batch_id, &rows)
                .await?;
            if !failures.is_empty() {
                self.lake.write_failures(&batch.batch_id, &failures).await?;
            }
            self.store.mark_flushed(&batch.batch_id).await?;
            self.observer
                .batch_flushed(source, rows.len() as u64, failures.len() as u64); // hook: health/alarms/metrics
            report.rows_written += rows.len() as u64;
            report.failures_written += failures.len() as u64;
        }
        Ok(())
    }

    /// Collects what is missing since `since` without touching the source's cursor: events already
    /// spooled are recognized by id and skipped, so nothing is duplicated, and the daemon can keep
    /// polling meanwhile.
    pub async fn backfill(
        &self,
        source: &Source,
        since: Timestamp,
        hooks: &dyn Hooks,
        cancel: &CancellationToken,
        progress: &dyn Fn(&CycleReport),
    ) -> Result<CycleReport, EngineError> {
        check_since(since)?;
        let key = api_key(source)?;
        let mut report = CycleReport::default();
        let mut cycle = self.client.cycle(
            &source.org_id,
            &key,
            PageRequest::Start {
                from_ms: Some(ms(since)),
            },
        );
        loop {
            let page = tokio::select! {
                _ = cancel.cancelled() => return Err(EngineError::Cancelled),
                page = cycle.next_page(hooks) => page?,
            };
            let Some(page) = page else {
                if cycle.end() == Some(CycleEnd::PageCap) {
                    // Keep walking from where the cap stopped us.
                    let next = cycle.resume_request().ok_or_else(|| {
                        EngineError::Config("the page cap was reached without a cursor".into())
                    })?;
                    cycle = self.client.cycle(&source.org_id, &key, next);
                    continue;
                }
                break;
            };
            report.pages += 1;
            report.received += page.events.len() as u64;
            let events: Vec<SpoolEvent> = page
                .events
                .iter()
                .map(|e| SpoolEvent {
                    event_id: event_id(e),
                    processed_at_ms: e.processed_at.map(ms),
                    raw_json: e.raw.get().to_owned(),
                })
                .collect();
            // The checkpoint is the daemon's: commit with the current one (retry if it moved).
            loop {
                let ckpt = self
                    .store
                    .checkpoint(&source.id)
                    .await?
                    .map(|c| c.checkpoint)
                    .unwrap_or_default();
                match self.store.commit_page(&source.id, &events, &ckpt).await {
                    Ok(o) => {
                        report.new_events += o.inserted;
                        report.duplicates += o.duplicates;
                        break;
                    }
                    Err(StateError::StaleCheckpoint { .. }) => continue,
                    Err(e) => return Err(e.into()),
                }
            }
            if self.store.spool_stats(&source.id).await?.unbatched_rows as usize
                >= self.config.flush_rows
            {
                self.flush(source, &mut report).await?;
            }
            progress(&report);
        }
        self.flush(source, &mut report).await?;
        progress(&report);
        Ok(report)
    }

    /// Polls one source until `cancel`: a cycle, then the poll interval (no wait while the stream
    /// has more). A source whose key or permissions fail waits until it is edited, without calling
    /// the API meanwhile.
    pub async fn run_source(
        &self,
        source_id: &str,
        hooks: &dyn Hooks,
        cancel: &CancellationToken,
        on_cycle: &(dyn Fn(&Source, &Result<CycleReport, EngineError>) + Sync),
    ) -> Result<(), EngineError> {
        loop {
            let source = self.store.get_source(source_id).await?;
            if source.paused {
                if sleep_or_cancel(Duration::from_secs(5), cancel).await {
                    return Ok(());
                }
                continue;
            }
            let result = self.collect_once(&source, hooks, cancel).await;
            if matches!(result, Err(EngineError::Cancelled)) {
                return Ok(());
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
                            return Ok(());
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
                return Ok(());
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
