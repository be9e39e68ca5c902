//! Source health and alarms as data: what `orgtrail source health`, `orgtrail alarms`, the HTTP
//! endpoints and the web console show. Everything here reads the state store only, so it works
//! from any process, whether or not the collector runs; alarm states are as the collector's
//! monitor last evaluated them (`evaluated_at`).
//!
//! All types serialize to JSON (timestamps as RFC 3339 strings). None of them can hold a secret:
//! keys are never read here, and messages come from errors that never contain keys.

use jiff::{SignedDuration, Timestamp};
use orgtrail_state::{ActivityWindow, AlarmKind, AlarmState, Source, StateStore};
use serde::{Serialize, Serializer};

use crate::EngineError;

fn ser_ts<S: Serializer>(t: &Timestamp, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(t)
}

fn ser_opt_ts<S: Serializer>(t: &Option<Timestamp>, s: S) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => s.collect_str(t),
        None => s.serialize_none(),
    }
}

/// Overall health of a source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HealthStatus {
    /// Collecting, no alarm firing.
    Healthy,
    /// An alarm fires or the last cycle failed (see `reasons`).
    Unhealthy,
    /// Paused by a person.
    Paused,
    /// Never polled yet.
    Pending,
}

impl HealthStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            HealthStatus::Healthy => "healthy",
            HealthStatus::Unhealthy => "unhealthy",
            HealthStatus::Paused => "paused",
            HealthStatus::Pending => "pending",
        }
    }
}

/// One alarm of one source, as last evaluated.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AlarmView {
    pub source_id: String,
    pub source_name: String,
    pub alarm: AlarmKind,
    pub state: AlarmState,
    /// When it entered `state`.
    #[serde(serialize_with = "ser_ts")]
    pub since: Timestamp,
    #[serde(serialize_with = "ser_ts")]
    pub evaluated_at: Timestamp,
    /// `SOURCE_NO_DATA` only.
    pub threshold_minutes: Option<u32>,
    pub stage: Option<String>,
    pub message: String,
    pub remedy: Option<String>,
}

/// One recorded transition.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AlarmHistoryEntry {
    pub seq: i64,
    pub source_id: String,
    pub source_name: String,
    pub alarm: AlarmKind,
    pub from: AlarmState,
    pub to: AlarmState,
    pub stage: Option<String>,
    #[serde(serialize_with = "ser_ts")]
    pub at: Timestamp,
    pub message: String,
    pub remedy: Option<String>,
    /// Sent to the notification destinations (firing and resolutions only).
    pub notify: bool,
    #[serde(serialize_with = "ser_opt_ts")]
    pub notified_at: Option<Timestamp>,
    #[serde(serialize_with = "ser_opt_ts")]
    pub lake_written_at: Option<Timestamp>,
}

/// The last error of a source.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ErrorView {
    #[serde(serialize_with = "ser_ts")]
    pub at: Timestamp,
    pub message: String,
}

/// Everything about one source's health.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SourceHealthReport {
    pub source_id: String,
    pub name: String,
    pub org_id: String,
    pub status: HealthStatus,
    /// Why it is not healthy (empty when healthy).
    pub reasons: Vec<String>,
    pub paused: bool,
    /// When events were last received (ingest time, not event time).
    #[serde(serialize_with = "ser_opt_ts")]
    pub last_event_received_at: Option<Timestamp>,
    /// The event time (`attributes.time`) of the newest event received.
    #[serde(serialize_with = "ser_opt_ts")]
    pub last_event_time: Option<Timestamp>,
    /// The newest `processedAt` collected.
    #[serde(serialize_with = "ser_opt_ts")]
    pub newest_processed_at: Option<Timestamp>,
    /// Now minus `newest_processed_at`, in seconds.
    pub lag_seconds: Option<i64>,
    #[serde(serialize_with = "ser_opt_ts")]
    pub last_successful_poll_at: Option<Timestamp>,
    #[serde(serialize_with = "ser_opt_ts")]
    pub checkpoint_updated_at: Option<Timestamp>,
    /// New events, their bytes, rows and classification failures in the last hour and day.
    pub last_hour: ActivityWindow,
    pub last_day: ActivityWindow,
    pub events_total: u64,
    pub classification_failures_total: u64,
    pub last_error: Option<ErrorView>,
    #[serde(serialize_with = "ser_opt_ts")]
    pub key_expires_at: Option<Timestamp>,
    /// Whole days left until the key expires (negative once expired).
    pub key_expires_in_days: Option<i64>,
    pub dropoff_alarm_minutes: Option<u32>,
    /// Lake batches begun and not finished (0 while idle; more only after a crash, until the
    /// collector's next cycle finishes them).
    pub unfinished_lake_batches: u64,
    pub alarms: Vec<AlarmView>,
    #[serde(serialize_with = "ser_ts")]
    pub generated_at: Timestamp,
}

fn alarm_view(a: orgtrail_state::AlarmRecord, name: &str) -> AlarmView {
    AlarmView {
        source_id: a.source_id,
        source_name: name.to_owned(),
        alarm: a.kind,
        state: a.state,
        since: a.since,
        evaluated_at: a.evaluated_at,
        threshold_minutes: a.threshold_minutes,
        stage: a.stage,
        message: a.message,
        remedy: a.remedy,
    }
}

/// The health of one source at `now`.
pub async fn source_health_report(
    store: &dyn StateStore,
    source: &Source,
    now: Timestamp,
) -> Result<SourceHealthReport, EngineError> {
    let h = store.source_health(&source.id).await?;
    let act = store.source_activity(&source.id).await?;
    let ck = store.checkpoint(&source.id).await?;
    let seen = store.seen_stats(&source.id).await?;
    let hour = now
        .checked_sub(SignedDuration::from_hours(1))
        .unwrap_or(now);
    let day = now
        .checked_sub(SignedDuration::from_hours(24))
        .unwrap_or(now);
    let last_hour = store.activity_since(&source.id, hour).await?;
    let last_day = store.activity_since(&source.id, day).await?;
    let mut alarms: Vec<AlarmView> = store
        .alarms(Some(&source.id))
        .await?
        .into_iter()
        .map(|a| alarm_view(a, &source.name))
        .collect();
    // A drop-off alarm set but not evaluated yet (the monitor runs with `orgtrail run`) has no
    // data to judge: Panther's INSUFFICIENT_DATA.
    if let Some(minutes) = source.dropoff_alarm_minutes
        && !alarms.iter().any(|a| a.alarm == AlarmKind::NoData)
    {
        alarms.insert(
            0,
            AlarmView {
                source_id: source.id.clone(),
                source_name: source.name.clone(),
                alarm: AlarmKind::NoData,
                state: AlarmState::InsufficientData,
                since: source.updated_at,
                evaluated_at: now,
                threshold_minutes: Some(minutes),
                stage: None,
                message: format!(
                    "no events received yet since the alarm was set ({minutes} min threshold); not evaluated yet"
                ),
                remedy: None,
            },
        );
    }
    let newest_processed_at = ck
        .as_ref()
        .and_then(|c| c.checkpoint.max_processed_at_ms)
        .and_then(|ms| Timestamp::from_millisecond(ms).ok())
        .max(act.last_processed_at);
    let last_error = match (&h.last_error, h.last_error_at) {
        (Some(m), Some(at)) => Some(ErrorView {
            at,
            message: m.clone(),
        }),
        _ => None,
    };
    let failing_now = match (h.last_error_at, h.last_success_at) {
        (Some(e), Some(s)) => e > s,
        (Some(_), None) => true,
        _ => false,
    };
    let mut reasons: Vec<String> = alarms
        .iter()
        .filter(|a| a.state == AlarmState::Alarm)
        .map(|a| format!("{}: {}", a.alarm, a.message))
        .collect();
    if failing_now
        && let Some(e) = &last_error
        && reasons.is_empty()
    {
        reasons.push(format!("the last collection cycle failed: {}", e.message));
    }
    let status = if source.paused {
        reasons.insert(
            0,
            format!(
                "paused: resume with `orgtrail source resume \"{}\"`",
                source.name
            ),
        );
        HealthStatus::Paused
    } else if !reasons.is_empty() {
        HealthStatus::Unhealthy
    } else if h.last_success_at.is_none() && h.last_error_at.is_none() {
        HealthStatus::Pending
    } else {
        HealthStatus::Healthy
    };
    Ok(SourceHealthReport {
        source_id: source.id.clone(),
        name: source.name.clone(),
        org_id: source.org_id.clone(),
        status,
        reasons,
        paused: source.paused,
        last_event_received_at: act.last_event_at.or(h.last_data_at),
        last_event_time: act.last_event_time,
        newest_processed_at,
        lag_seconds: newest_processed_at.map(|p| now.duration_since(p).as_secs().max(0)),
        last_successful_poll_at: h.last_success_at,
        checkpoint_updated_at: ck.map(|c| c.updated_at),
        last_hour,
        last_day,
        events_total: act.events_total,
        classification_failures_total: act.failures_total,
        last_error,
        key_expires_at: source.key_expires_at,
        key_expires_in_days: source
            .key_expires_at
            .map(|k| k.duration_since(now).as_secs().div_euclid(86_400)),
        dropoff_alarm_minutes: source.dropoff_alarm_minutes,
        unfinished_lake_batches: seen.unfinished_batches,
        alarms,
        generated_at: now,
    })
}

/// The health of every source, ordered by name.
pub async fn health_reports(
    store: &dyn StateStore,
    now: Timestamp,
) -> Result<Vec<SourceHealthReport>, EngineError> {
    let mut out = Vec::new();
    for s in store.list_sources().await? {
        out.push(source_health_report(store, &s, now).await?);
    }
    Ok(out)
}

/// Every alarm of every source (or of one source), ordered by source name and alarm.
pub async fn list_alarms(
    store: &dyn StateStore,
    source: Option<&Source>,
) -> Result<Vec<AlarmView>, EngineError> {
    let sources = match source {
        Some(s) => vec![s.clone()],
        None => store.list_sources().await?,
    };
    let mut out = Vec::new();
    for s in &sources {
        for a in store.alarms(Some(&s.id)).await? {
            out.push(alarm_view(a, &s.name));
        }
    }
    Ok(out)
}

/// Recorded transitions, newest first (of one source, or of all, removed sources included).
pub async fn alarm_history(
    store: &dyn StateStore,
    source: Option<&Source>,
    limit: usize,
) -> Result<Vec<AlarmHistoryEntry>, EngineError> {
    Ok(store
        .alarm_events(source.map(|s| s.id.as_str()), limit)
        .await?
        .into_iter()
        .map(|e| AlarmHistoryEntry {
            seq: e.seq,
            source_id: e.event.source_id,
            source_name: e.event.source_name,
            alarm: e.event.kind,
            from: e.event.from,
            to: e.event.to,
            stage: e.event.stage,
            at: e.event.at,
            message: e.event.message,
            remedy: e.event.remedy,
            notify: e.event.notify,
            notified_at: e.notified_at,
            lake_written_at: e.lake_written_at,
        })
        .collect())
}
