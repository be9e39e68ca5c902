//! Alarm state, alarm history (transitions) and per-source activity counters: what the engine's
//! monitor persists so that health and alarms survive restarts (schema version 2).
//!
//! The engine decides *when* an alarm changes state; this module only stores it. Every transition
//! is appended to `alarm_events` in the same transaction as the new alarm state, so a restart never
//! re-fires an alarm and never loses a transition. `alarm_events` also works as an outbox: a
//! transition carries when it was written to the lake's `system_errors` table and when its
//! notifications were sent, so the ones a crash interrupted are sent again at the next start.

use std::fmt;
use std::str::FromStr;

use async_trait::async_trait;
use jiff::Timestamp;
use sqlx::Row;
use sqlx::sqlite::SqliteRow;

use crate::error::{Result, StateError};
use crate::sqlite::SqliteStore;

/// The SQL of migration 2.
pub(crate) const MIGRATION_2: &str = r#"
CREATE TABLE alarms (
    source_id         TEXT NOT NULL REFERENCES sources(id) ON DELETE CASCADE,
    kind              TEXT NOT NULL,
    state             TEXT NOT NULL,
    since_ms          INTEGER NOT NULL,
    evaluated_at_ms   INTEGER NOT NULL,
    threshold_minutes INTEGER,
    armed_at_ms       INTEGER,
    last_data_at_ms   INTEGER,
    stage             TEXT,
    message           TEXT NOT NULL,
    remedy            TEXT,
    PRIMARY KEY (source_id, kind)
);

CREATE TABLE alarm_events (
    seq                INTEGER PRIMARY KEY AUTOINCREMENT,
    source_id          TEXT NOT NULL,
    source_name        TEXT NOT NULL,
    kind               TEXT NOT NULL,
    from_state         TEXT NOT NULL,
    to_state           TEXT NOT NULL,
    stage              TEXT,
    at_ms              INTEGER NOT NULL,
    message            TEXT NOT NULL,
    remedy             TEXT,
    notify             INTEGER NOT NULL,
    lake_written_at_ms INTEGER,
    notified_at_ms     INTEGER
);
CREATE INDEX alarm_events_by_source ON alarm_events(source_id, seq);
CREATE INDEX alarm_events_pending ON alarm_events(seq)
    WHERE lake_written_at_ms IS NULL OR (notify = 1 AND notified_at_ms IS NULL);

CREATE TABLE source_activity (
    source_id            TEXT PRIMARY KEY REFERENCES sources(id) ON DELETE CASCADE,
    last_event_at_ms     INTEGER,
    last_event_time_ms   INTEGER,
    last_processed_at_ms INTEGER,
    last_caught_up_at_ms INTEGER,
    first_failure_at_ms  INTEGER,
    events_total         INTEGER NOT NULL DEFAULT 0,
    bytes_total          INTEGER NOT NULL DEFAULT 0,
    rows_total           INTEGER NOT NULL DEFAULT 0,
    failures_total       INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE source_activity_buckets (
    source_id TEXT NOT NULL REFERENCES sources(id) ON DELETE CASCADE,
    bucket_ms  INTEGER NOT NULL,
    n_events   INTEGER NOT NULL DEFAULT 0,
    n_bytes    INTEGER NOT NULL DEFAULT 0,
    n_rows     INTEGER NOT NULL DEFAULT 0,
    n_failures INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (source_id, bucket_ms)
);
"#;

/// Width of an activity bucket (events, bytes, rows and failures are summed per bucket).
pub const ACTIVITY_BUCKET_MS: i64 = 5 * 60 * 1000;
/// Activity buckets older than this are deleted.
pub const ACTIVITY_KEPT_MS: i64 = 2 * 24 * 3600 * 1000;
/// Transitions kept per source in `alarm_events`.
pub const ALARM_EVENTS_KEPT_PER_SOURCE: i64 = 1000;

/// The alarms of a source. The first four are Panther's alarm types; the last two are orgtrail's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub enum AlarmKind {
    /// The log drop-off alarm: no events received for the source's threshold (set by the user).
    #[serde(rename = "SOURCE_NO_DATA")]
    NoData,
    /// The API refuses the key or the organization (401, 403, 404), or the key cannot be read.
    #[serde(rename = "SOURCE_PERMISSIONS_CHECKS")]
    Permissions,
    /// Events do not fit the log schema (first failure, then a high rate).
    #[serde(rename = "SOURCE_CLASSIFICATION_FAILURES")]
    ClassificationFailures,
    /// Collection cycles keep failing on transient errors (5xx, timeouts, lake or state errors).
    #[serde(rename = "SOURCE_LOG_PROCESSING_ERRORS")]
    ProcessingErrors,
    /// The API key expires soon (14, 7, 1 days before the date given) or has expired.
    #[serde(rename = "SOURCE_KEY_EXPIRY")]
    KeyExpiry,
    /// Uncollected events get close to the API's 180-day retention.
    #[serde(rename = "SOURCE_RETENTION_RISK")]
    RetentionRisk,
}

impl AlarmKind {
    /// Every kind, in display order.
    pub const ALL: [AlarmKind; 6] = [
        AlarmKind::NoData,
        AlarmKind::Permissions,
        AlarmKind::ClassificationFailures,
        AlarmKind::ProcessingErrors,
        AlarmKind::KeyExpiry,
        AlarmKind::RetentionRisk,
    ];

    /// The stable name (`SOURCE_NO_DATA`, ...), also the `alarm` metrics label.
    pub fn as_str(self) -> &'static str {
        match self {
            AlarmKind::NoData => "SOURCE_NO_DATA",
            AlarmKind::Permissions => "SOURCE_PERMISSIONS_CHECKS",
            AlarmKind::ClassificationFailures => "SOURCE_CLASSIFICATION_FAILURES",
            AlarmKind::ProcessingErrors => "SOURCE_LOG_PROCESSING_ERRORS",
            AlarmKind::KeyExpiry => "SOURCE_KEY_EXPIRY",
            AlarmKind::RetentionRisk => "SOURCE_RETENTION_RISK",
        }
    }
}

impl fmt::Display for AlarmKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for AlarmKind {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        AlarmKind::ALL
            .into_iter()
            .find(|k| k.as_str().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| {
                format!(
                    "unknown alarm {s:?}; use one of {}",
                    AlarmKind::ALL.map(|k| k.as_str()).join(", ")
                )
            })
    }
}

/// The state of an alarm (CloudWatch's, as Panther reports it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub enum AlarmState {
    #[serde(rename = "OK")]
    Ok,
    #[serde(rename = "ALARM")]
    Alarm,
    /// Not enough data to decide yet (the drop-off alarm before the first event since it was set).
    #[serde(rename = "INSUFFICIENT_DATA")]
    InsufficientData,
}

impl AlarmState {
    /// Every state.
    pub const ALL: [AlarmState; 3] = [
        AlarmState::Ok,
        AlarmState::Alarm,
        AlarmState::InsufficientData,
    ];

    /// `OK`, `ALARM` or `INSUFFICIENT_DATA`.
    pub fn as_str(self) -> &'static str {
        match self {
            AlarmState::Ok => "OK",
            AlarmState::Alarm => "ALARM",
            AlarmState::InsufficientData => "INSUFFICIENT_DATA",
        }
    }
}

impl fmt::Display for AlarmState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for AlarmState {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        AlarmState::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| format!("unknown alarm state {s:?}"))
    }
}

/// The current state of one alarm of one source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlarmRecord {
    pub source_id: String,
    pub kind: AlarmKind,
    pub state: AlarmState,
    /// When the alarm entered `state`.
    pub since: Timestamp,
    /// The last evaluation.
    pub evaluated_at: Timestamp,
    /// `SOURCE_NO_DATA`: the threshold in minutes.
    pub threshold_minutes: Option<u32>,
    /// `SOURCE_NO_DATA`: when the alarm was set (INSUFFICIENT_DATA until data arrives after it).
    pub armed_at: Option<Timestamp>,
    /// `SOURCE_NO_DATA`: when events were last received (ingest time, by the monitor's clock).
    pub last_data_at: Option<Timestamp>,
    /// A sub-state that notifies again when it changes within `ALARM` (key expiry `14d`, `7d`,
    /// `1d`, `expired`; classification `first`, `rate`; permissions: the error class).
    pub stage: Option<String>,
    /// Why the alarm is in its state.
    pub message: String,
    /// What to do about it.
    pub remedy: Option<String>,
}

/// A transition to record with [`AlarmStore::save_alarms`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAlarmEvent {
    pub source_id: String,
    pub source_name: String,
    pub kind: AlarmKind,
    pub from: AlarmState,
    pub to: AlarmState,
    pub stage: Option<String>,
    pub at: Timestamp,
    pub message: String,
    pub remedy: Option<String>,
    /// Whether it is sent to the notification destinations (firing and resolutions), not only
    /// logged and written to the lake.
    pub notify: bool,
}

/// A recorded transition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlarmEvent {
    /// Increasing id (also the lake batch id `alarm-<seq>` and the notification id).
    pub seq: i64,
    pub event: NewAlarmEvent,
    /// When it was written to the lake's `system_errors` table.
    pub lake_written_at: Option<Timestamp>,
    /// When its notifications were sent (or given up).
    pub notified_at: Option<Timestamp>,
}

/// Activity observed since the last call, added by [`AlarmStore::record_activity`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ActivityDelta {
    /// New (de-duplicated) events stored.
    pub events: u64,
    /// Bytes of the events received.
    pub bytes: u64,
    /// Rows written to the lake.
    pub rows: u64,
    /// Classification failures written to the lake.
    pub failures: u64,
    /// When events were last received (ingest time), if any in this delta.
    pub last_event_at: Option<Timestamp>,
    /// The event time (`attributes.time`) of the newest event received.
    pub last_event_time: Option<Timestamp>,
    /// The newest `processedAt` received.
    pub last_processed_at: Option<Timestamp>,
    /// The last time a cycle ended caught up with the stream.
    pub caught_up_at: Option<Timestamp>,
}

impl ActivityDelta {
    /// Nothing to record.
    pub fn is_empty(&self) -> bool {
        *self == ActivityDelta::default()
    }

    /// Adds `other` (newer) to `self`.
    pub fn merge(&mut self, other: &ActivityDelta) {
        self.events += other.events;
        self.bytes += other.bytes;
        self.rows += other.rows;
        self.failures += other.failures;
        self.last_event_at = self.last_event_at.max(other.last_event_at);
        self.last_event_time = other.last_event_time.or(self.last_event_time);
        self.last_processed_at = self.last_processed_at.max(other.last_processed_at);
        self.caught_up_at = self.caught_up_at.max(other.caught_up_at);
    }
}

/// What is known about a source's activity (all sources, all time).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SourceActivity {
    pub last_event_at: Option<Timestamp>,
    pub last_event_time: Option<Timestamp>,
    pub last_processed_at: Option<Timestamp>,
    pub last_caught_up_at: Option<Timestamp>,
    pub first_failure_at: Option<Timestamp>,
    pub events_total: u64,
    pub bytes_total: u64,
    pub rows_total: u64,
    pub failures_total: u64,
}

/// Sums of activity over a window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct ActivityWindow {
    pub events: u64,
    pub bytes: u64,
    pub rows: u64,
    pub failures: u64,
}

/// Persistence of alarms, their history and source activity. Every [`crate::StateStore`] is one.
#[async_trait]
pub trait AlarmStore: Send + Sync {
    /// The alarms of one source, or of every source, ordered by source and kind.
    async fn alarms(&self, source_id: Option<&str>) -> Result<Vec<AlarmRecord>>;
    /// In ONE transaction: upserts `alarms` (all of `source_id`), deletes the alarms of kinds
    /// `removed`, and appends `events`. Returns the recorded events with their sequence numbers.
    async fn save_alarms(
        &self,
        source_id: &str,
        alarms: &[AlarmRecord],
        removed: &[AlarmKind],
        events: &[NewAlarmEvent],
    ) -> Result<Vec<AlarmEvent>>;
    /// Recorded transitions, newest first: of one source or of all (also removed sources).
    async fn alarm_events(&self, source_id: Option<&str>, limit: usize) -> Result<Vec<AlarmEvent>>;
    /// Transitions at or after `since` not yet written to the lake, or to notify and not yet
    /// notified, oldest first.
    async fn pending_alarm_events(&self, since: Timestamp, limit: usize)
    -> Result<Vec<AlarmEvent>>;
    /// Marks a transition as written to the lake and/or notified.
    async fn mark_alarm_event(
        &self,
        seq: i64,
        lake_written_at: Option<Timestamp>,
        notified_at: Option<Timestamp>,
    ) -> Result<()>;
    /// Adds activity to the source's totals and to the bucket of `at`; prunes old buckets.
    async fn record_activity(
        &self,
        source_id: &str,
        at: Timestamp,
        delta: &ActivityDelta,
    ) -> Result<()>;
    /// The source's activity (defaults when nothing was recorded yet).
    async fn source_activity(&self, source_id: &str) -> Result<SourceActivity>;
    /// Activity in the buckets that end after `since`.
    async fn activity_since(&self, source_id: &str, since: Timestamp) -> Result<ActivityWindow>;
}

fn corrupt(what: &str, reason: impl Into<String>) -> StateError {
    StateError::Corrupt {
        what: what.to_owned(),
        reason: reason.into(),
    }
}

fn col<'r, T>(row: &'r SqliteRow, name: &'static str) -> Result<T>
where
    T: sqlx::Decode<'r, sqlx::Sqlite> + sqlx::Type<sqlx::Sqlite>,
{
    row.try_get(name).map_err(StateError::db("reading a row"))
}

fn ts(what: &str, ms: i64) -> Result<Timestamp> {
    Timestamp::from_millisecond(ms).map_err(|e| corrupt(what, e.to_string()))
}

fn opt_ts(what: &str, ms: Option<i64>) -> Result<Option<Timestamp>> {
    ms.map(|m| ts(what, m)).transpose()
}

fn ms(t: Option<Timestamp>) -> Option<i64> {
    t.map(|t| t.as_millisecond())
}

fn count(what: &str, v: i64) -> Result<u64> {
    u64::try_from(v).map_err(|_| corrupt(what, format!("{v} is negative")))
}

fn to_i64(what: &str, v: u64) -> Result<i64> {
    i64::try_from(v).map_err(|_| StateError::InvalidArgument(format!("{what} = {v} is too large")))
}

fn alarm_from_row(row: &SqliteRow) -> Result<AlarmRecord> {
    let kind: String = col(row, "kind")?;
    let state: String = col(row, "state")?;
    Ok(AlarmRecord {
        source_id: col(row, "source_id")?,
        kind: kind
            .parse()
            .map_err(|e: String| corrupt("alarms.kind", e))?,
        state: state
            .parse()
            .map_err(|e: String| corrupt("alarms.state", e))?,
        since: ts("alarms.since_ms", col(row, "since_ms")?)?,
        evaluated_at: ts("alarms.evaluated_at_ms", col(row, "evaluated_at_ms")?)?,
        threshold_minutes: col::<Option<i64>>(row, "threshold_minutes")?
            .map(|m| u32::try_from(m).map_err(|_| corrupt("alarms.threshold_minutes", "range")))
            .transpose()?,
        armed_at: opt_ts("alarms.armed_at_ms", col(row, "armed_at_ms")?)?,
        last_data_at: opt_ts("alarms.last_data_at_ms", col(row, "last_data_at_ms")?)?,
        stage: col(row, "stage")?,
        message: col(row, "message")?,
        remedy: col(row, "remedy")?,
    })
}

fn event_from_row(row: &SqliteRow) -> Result<AlarmEvent> {
    let kind: String = col(row, "kind")?;
    let from: String = col(row, "from_state")?;
    let to: String = col(row, "to_state")?;
    Ok(AlarmEvent {
        seq: col(row, "seq")?,
        event: NewAlarmEvent {
            source_id: col(row, "source_id")?,
            source_name: col(row, "source_name")?,
            kind: kind
                .parse()
                .map_err(|e: String| corrupt("alarm_events.kind", e))?,
            from: from
                .parse()
                .map_err(|e: String| corrupt("alarm_events.from_state", e))?,
            to: to
                .parse()
                .map_err(|e: String| corrupt("alarm_events.to_state", e))?,
            stage: col(row, "stage")?,
            at: ts("alarm_events.at_ms", col(row, "at_ms")?)?,
            message: col(row, "message")?,
            remedy: col(row, "remedy")?,
            notify: col::<i64>(row, "notify")? != 0,
        },
        lake_written_at: opt_ts(
            "alarm_events.lake_written_at_ms",
            col(row, "lake_written_at_ms")?,
        )?,
        notified_at: opt_ts("alarm_events.notified_at_ms", col(row, "notified_at_ms")?)?,
    })
}

macro_rules! event_cols {
    () => {
        "seq, source_id, source_name, kind, from_state, to_state, stage, at_ms, message, remedy, notify, lake_written_at_ms, notified_at_ms"
    };
}

#[async_trait]
impl AlarmStore for SqliteStore {
    async fn alarms(&self, source_id: Option<&str>) -> Result<Vec<AlarmRecord>> {
        let rows = sqlx::query(
            "SELECT source_id, kind, state, since_ms, evaluated_at_ms, threshold_minutes, armed_at_ms, \
             last_data_at_ms, stage, message, remedy FROM alarms WHERE ?1 IS NULL OR source_id = ?1 \
             ORDER BY source_id, kind",
        )
        .bind(source_id)
        .fetch_all(self.pool())
        .await
        .map_err(StateError::db("listing alarms"))?;
        let mut out = rows
            .iter()
            .map(alarm_from_row)
            .collect::<Result<Vec<_>>>()?;
        out.sort_by(|a, b| (&a.source_id, a.kind).cmp(&(&b.source_id, b.kind)));
        Ok(out)
    }

    async fn save_alarms(
        &self,
        source_id: &str,
        alarms: &[AlarmRecord],
        removed: &[AlarmKind],
        events: &[NewAlarmEvent],
    ) -> Result<Vec<AlarmEvent>> {
        if let Some(a) = alarms.iter().find(|a| a.source_id != source_id) {
            return Err(StateError::InvalidArgument(format!(
                "save_alarms for source {source_id} got an alarm of source {}",
                a.source_id
            )));
        }
        let mut tx = self.begin_write("saving alarms").await?;
        let exists: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM sources WHERE id = ?1")
            .bind(source_id)
            .fetch_one(&mut *tx)
            .await
            .map_err(StateError::db("looking up a source"))?;
        if exists == 0 {
            return Err(StateError::SourceNotFound(source_id.to_owned()));
        }
        for a in alarms {
            sqlx::query(
                "INSERT INTO alarms (source_id, kind, state, since_ms, evaluated_at_ms, threshold_minutes, \
                 armed_at_ms, last_data_at_ms, stage, message, remedy) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11) \
                 ON CONFLICT(source_id, kind) DO UPDATE SET state = excluded.state, since_ms = excluded.since_ms, \
                 evaluated_at_ms = excluded.evaluated_at_ms, threshold_minutes = excluded.threshold_minutes, \
                 armed_at_ms = excluded.armed_at_ms, last_data_at_ms = excluded.last_data_at_ms, \
                 stage = excluded.stage, message = excluded.message, remedy = excluded.remedy",
            )
            .bind(source_id)
            .bind(a.kind.as_str())
            .bind(a.state.as_str())
            .bind(a.since.as_millisecond())
            .bind(a.evaluated_at.as_millisecond())
            .bind(a.threshold_minutes.map(i64::from))
            .bind(ms(a.armed_at))
            .bind(ms(a.last_data_at))
            .bind(&a.stage)
            .bind(&a.message)
            .bind(&a.remedy)
            .execute(&mut *tx)
            .await
            .map_err(StateError::db("saving an alarm"))?;
        }
        for k in removed {
            sqlx::query("DELETE FROM alarms WHERE source_id = ?1 AND kind = ?2")
                .bind(source_id)
                .bind(k.as_str())
                .execute(&mut *tx)
                .await
                .map_err(StateError::db("removing an alarm"))?;
        }
        let mut recorded = Vec::with_capacity(events.len());
        for e in events {
            let seq: i64 = sqlx::query_scalar(
                "INSERT INTO alarm_events (source_id, source_name, kind, from_state, to_state, stage, at_ms, \
                 message, remedy, notify) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10) RETURNING seq",
            )
            .bind(&e.source_id)
            .bind(&e.source_name)
            .bind(e.kind.as_str())
            .bind(e.from.as_str())
            .bind(e.to.as_str())
            .bind(&e.stage)
            .bind(e.at.as_millisecond())
            .bind(&e.message)
            .bind(&e.remedy)
            .bind(i64::from(e.notify))
            .fetch_one(&mut *tx)
            .await
            .map_err(StateError::db("recording an alarm transition"))?;
            recorded.push(AlarmEvent {
                seq,
                event: e.clone(),
                lake_written_at: None,
                notified_at: None,
            });
        }
        if !events.is_empty() {
            sqlx::query(
                "DELETE FROM alarm_events WHERE source_id = ?1 AND seq <= \
                 (SELECT seq FROM alarm_events WHERE source_id = ?1 ORDER BY seq DESC LIMIT 1 OFFSET ?2)",
            )
            .bind(source_id)
            .bind(ALARM_EVENTS_KEPT_PER_SOURCE)
            .execute(&mut *tx)
            .await
            .map_err(StateError::db("trimming alarm history"))?;
        }
        tx.commit()
            .await
            .map_err(StateError::db("committing alarms"))?;
        Ok(recorded)
    }

    async fn alarm_events(&self, source_id: Option<&str>, limit: usize) -> Result<Vec<AlarmEvent>> {
        let limit = to_i64("limit", limit as u64)?;
        let rows = sqlx::query(concat!(
            "SELECT ",
            event_cols!(),
            " FROM alarm_events WHERE ?1 IS NULL OR source_id = ?1 ORDER BY seq DESC LIMIT ?2"
        ))
        .bind(source_id)
        .bind(limit)
        .fetch_all(self.pool())
        .await
        .map_err(StateError::db("listing alarm history"))?;
        rows.iter().map(event_from_row).collect()
    }

    async fn pending_alarm_events(
        &self,
        since: Timestamp,
        limit: usize,
    ) -> Result<Vec<AlarmEvent>> {
        let limit = to_i64("limit", limit as u64)?;
        let rows = sqlx::query(concat!(
            "SELECT ",
            event_cols!(),
            " FROM alarm_events WHERE (lake_written_at_ms IS NULL OR (notify = 1 AND notified_at_ms IS NULL)) \
             AND at_ms >= ?1 ORDER BY seq LIMIT ?2"
        ))
        .bind(since.as_millisecond())
        .bind(limit)
        .fetch_all(self.pool())
        .await
        .map_err(StateError::db("listing pending alarm transitions"))?;
        rows.iter().map(event_from_row).collect()
    }

    async fn mark_alarm_event(
        &self,
        seq: i64,
        lake_written_at: Option<Timestamp>,
        notified_at: Option<Timestamp>,
    ) -> Result<()> {
        let mut tx = self.begin_write("marking an alarm transition").await?;
        sqlx::query(
            "UPDATE alarm_events SET lake_written_at_ms = COALESCE(?2, lake_written_at_ms), \
             notified_at_ms = COALESCE(?3, notified_at_ms) WHERE seq = ?1",
        )
        .bind(seq)
        .bind(ms(lake_written_at))
        .bind(ms(notified_at))
        .execute(&mut *tx)
        .await
        .map_err(StateError::db("marking an alarm transition"))?;
        tx.commit()
            .await
            .map_err(StateError::db("committing an alarm transition mark"))
    }

    async fn record_activity(
        &self,
        source_id: &str,
        at: Timestamp,
        delta: &ActivityDelta,
    ) -> Result<()> {
        if delta.is_empty() {
            return Ok(());
        }
        let events = to_i64("events", delta.events)?;
        let bytes = to_i64("bytes", delta.bytes)?;
        let rows = to_i64("rows", delta.rows)?;
        let failures = to_i64("failures", delta.failures)?;
        let at_ms = at.as_millisecond();
        let bucket = at_ms.div_euclid(ACTIVITY_BUCKET_MS) * ACTIVITY_BUCKET_MS;
        let mut tx = self.begin_write("recording source activity").await?;
        let n = sqlx::query(
            "INSERT INTO source_activity (source_id, last_event_at_ms, last_event_time_ms, last_processed_at_ms, \
             last_caught_up_at_ms, first_failure_at_ms, events_total, bytes_total, rows_total, failures_total) \
             SELECT ?1, ?2, ?3, ?4, ?5, CASE WHEN ?9 > 0 THEN ?10 END, ?6, ?7, ?8, ?9 WHERE EXISTS (SELECT 1 FROM sources WHERE id = ?1) \
             ON CONFLICT(source_id) DO UPDATE SET \
             last_event_at_ms = MAX(COALESCE(excluded.last_event_at_ms, last_event_at_ms), COALESCE(last_event_at_ms, excluded.last_event_at_ms)), \
             last_event_time_ms = COALESCE(excluded.last_event_time_ms, last_event_time_ms), \
             last_processed_at_ms = MAX(COALESCE(excluded.last_processed_at_ms, last_processed_at_ms), COALESCE(last_processed_at_ms, excluded.last_processed_at_ms)), \
             last_caught_up_at_ms = MAX(COALESCE(excluded.last_caught_up_at_ms, last_caught_up_at_ms), COALESCE(last_caught_up_at_ms, excluded.last_caught_up_at_ms)), \
             first_failure_at_ms = COALESCE(first_failure_at_ms, excluded.first_failure_at_ms), \
             events_total = events_total + excluded.events_total, bytes_total = bytes_total + excluded.bytes_total, \
             rows_total = rows_total + excluded.rows_total, failures_total = failures_total + excluded.failures_total",
        )
        .bind(source_id)
        .bind(ms(delta.last_event_at))
        .bind(ms(delta.last_event_time))
        .bind(ms(delta.last_processed_at))
        .bind(ms(delta.caught_up_at))
        .bind(events)
        .bind(bytes)
        .bind(rows)
        .bind(failures)
        .bind(at_ms)
        .execute(&mut *tx)
        .await
        .map_err(StateError::db("recording source activity"))?
        .rows_affected();
        if n == 0 {
            return Err(StateError::SourceNotFound(source_id.to_owned()));
        }
        if events + bytes + rows + failures > 0 {
            sqlx::query(
                "INSERT INTO source_activity_buckets (source_id, bucket_ms, n_events, n_bytes, n_rows, n_failures) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT(source_id, bucket_ms) DO UPDATE SET \
                 n_events = n_events + excluded.n_events, n_bytes = n_bytes + excluded.n_bytes, \
                 n_rows = n_rows + excluded.n_rows, n_failures = n_failures + excluded.n_failures",
            )
            .bind(source_id)
            .bind(bucket)
            .bind(events)
            .bind(bytes)
            .bind(rows)
            .bind(failures)
            .execute(&mut *tx)
            .await
            .map_err(StateError::db("recording source activity"))?;
            sqlx::query(
                "DELETE FROM source_activity_buckets WHERE source_id = ?1 AND bucket_ms < ?2",
            )
            .bind(source_id)
            .bind(bucket - ACTIVITY_KEPT_MS)
            .execute(&mut *tx)
            .await
            .map_err(StateError::db("pruning source activity"))?;
        }
        tx.commit()
            .await
            .map_err(StateError::db("committing source activity"))
    }

    async fn source_activity(&self, source_id: &str) -> Result<SourceActivity> {
        let row = sqlx::query(
            "SELECT last_event_at_ms, last_event_time_ms, last_processed_at_ms, last_caught_up_at_ms, \
             first_failure_at_ms, events_total, bytes_total, rows_total, failures_total \
             FROM source_activity WHERE source_id = ?1",
        )
        .bind(source_id)
        .fetch_optional(self.pool())
        .await
        .map_err(StateError::db("reading source activity"))?;
        let Some(row) = row else {
            return Ok(SourceActivity::default());
        };
        Ok(SourceActivity {
            last_event_at: opt_ts(
                "source_activity.last_event_at_ms",
                col(&row, "last_event_at_ms")?,
            )?,
            last_event_time: opt_ts(
                "source_activity.last_event_time_ms",
                col(&row, "last_event_time_ms")?,
            )?,
            last_processed_at: opt_ts(
                "source_activity.last_processed_at_ms",
                col(&row, "last_processed_at_ms")?,
            )?,
            last_caught_up_at: opt_ts(
                "source_activity.last_caught_up_at_ms",
                col(&row, "last_caught_up_at_ms")?,
            )?,
            first_failure_at: opt_ts(
                "source_activity.first_failure_at_ms",
                col(&row, "first_failure_at_ms")?,
            )?,
            events_total: count("events_total", col(&row, "events_total")?)?,
            bytes_total: count("bytes_total", col(&row, "bytes_total")?)?,
            rows_total: count("rows_total", col(&row, "rows_total")?)?,
            failures_total: count("failures_total", col(&row, "failures_total")?)?,
        })
    }

    async fn activity_since(&self, source_id: &str, since: Timestamp) -> Result<ActivityWindow> {
        let row = sqlx::query(
            "SELECT COALESCE(SUM(n_events), 0) AS n_events, COALESCE(SUM(n_bytes), 0) AS n_bytes, \
             COALESCE(SUM(n_rows), 0) AS n_rows, COALESCE(SUM(n_failures), 0) AS n_failures \
             FROM source_activity_buckets WHERE source_id = ?1 AND bucket_ms + ?3 > ?2",
        )
        .bind(source_id)
        .bind(since.as_millisecond())
        .bind(ACTIVITY_BUCKET_MS)
        .fetch_one(self.pool())
        .await
        .map_err(StateError::db("reading source activity"))?;
        Ok(ActivityWindow {
            events: count("n_events", col(&row, "n_events")?)?,
            bytes: count("n_bytes", col(&row, "n_bytes")?)?,
            rows: count("n_rows", col(&row, "n_rows")?)?,
            failures: count("n_failures", col(&row, "n_failures")?)?,
        })
    }
}
