//! Source health and alarm states as the console shows them.
//!
//! The one boundary between the console and the health/alarm machinery (`orgtrail_engine::health`,
//! evaluated by `orgtrail run`'s monitor): the pages and the API read [`source_status`] and
//! [`alarm_history`] only.

use jiff::Timestamp;
use orgtrail_engine::{HealthStatus, SourceHealthReport};
use orgtrail_state::{Source, StateStore};
use serde::Serialize;

/// Overall health of a source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Health {
    /// The last poll succeeded.
    Healthy,
    /// The last poll failed (see `reason`).
    Unhealthy,
    /// Paused by a user.
    Paused,
    /// No poll has finished yet.
    Starting,
}

impl Health {
    pub fn label(self) -> &'static str {
        match self {
            Health::Healthy => "Healthy",
            Health::Unhealthy => "Unhealthy",
            Health::Paused => "Paused",
            Health::Starting => "Starting",
        }
    }
}

/// State of one alarm (Panther's alarm names and states).
#[derive(Debug, Clone, Serialize)]
pub struct AlarmState {
    /// `SOURCE_NO_DATA` (log drop-off), `SOURCE_PERMISSIONS_CHECKS`, ...
    pub alarm: &'static str,
    /// `OK`, `ALARM` or `INSUFFICIENT_DATA`.
    pub state: &'static str,
    /// What is wrong, then the remedy when there is one.
    pub message: String,
}

/// What the console shows about a source's health.
#[derive(Debug, Clone, Serialize)]
pub struct SourceStatus {
    pub health: Health,
    /// Why it is not healthy.
    pub reason: Option<String>,
    /// When new events were last received (ingest time, the drop-off alarm's clock).
    #[serde(serialize_with = "ser_opt_ts")]
    pub last_event_at: Option<Timestamp>,
    #[serde(serialize_with = "ser_opt_ts")]
    pub last_success_at: Option<Timestamp>,
    pub last_error: Option<String>,
    #[serde(serialize_with = "ser_opt_ts")]
    pub last_error_at: Option<Timestamp>,
    pub alarms: Vec<AlarmState>,
}

/// One alarm transition, for the System Errors page.
#[derive(Debug, Clone, Serialize)]
pub struct AlarmEvent {
    #[serde(serialize_with = "ser_ts")]
    pub at: Timestamp,
    pub source_id: Option<String>,
    pub source_name: Option<String>,
    pub alarm: String,
    pub state: String,
    pub message: String,
}

fn ser_opt_ts<S: serde::Serializer>(t: &Option<Timestamp>, s: S) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => s.collect_str(t),
        None => s.serialize_none(),
    }
}

fn ser_ts<S: serde::Serializer>(t: &Timestamp, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(t)
}

/// The health and alarm states of `source` at `now` (alarms as last evaluated by the monitor).
pub async fn source_status(
    store: &dyn StateStore,
    source: &Source,
    now: Timestamp,
) -> anyhow::Result<SourceStatus> {
    let r = orgtrail_engine::source_health_report(store, source, now).await?;
    Ok(from_report(r))
}

fn from_report(r: SourceHealthReport) -> SourceStatus {
    let health = match r.status {
        HealthStatus::Healthy => Health::Healthy,
        HealthStatus::Unhealthy => Health::Unhealthy,
        HealthStatus::Paused => Health::Paused,
        HealthStatus::Pending => Health::Starting,
    };
    let alarms: Vec<AlarmState> = r
        .alarms
        .into_iter()
        .map(|a| AlarmState {
            alarm: a.alarm.as_str(),
            state: a.state.as_str(),
            message: with_remedy(a.message, a.remedy),
        })
        .collect();
    SourceStatus {
        health,
        reason: (!r.reasons.is_empty()).then(|| r.reasons.join("; ")),
        last_event_at: r.last_event_received_at,
        last_success_at: r.last_successful_poll_at,
        last_error: r.last_error.as_ref().map(|e| e.message.clone()),
        last_error_at: r.last_error.as_ref().map(|e| e.at),
        alarms,
    }
}

fn with_remedy(message: String, remedy: Option<String>) -> String {
    match remedy {
        Some(r) if !r.is_empty() => format!("{message} {r}"),
        _ => message,
    }
}

/// Recorded alarm transitions of every source, newest first.
pub async fn alarm_history(
    store: &dyn StateStore,
    limit: usize,
) -> anyhow::Result<Vec<AlarmEvent>> {
    Ok(orgtrail_engine::alarm_history(store, None, limit)
        .await?
        .into_iter()
        .map(|e| AlarmEvent {
            at: e.at,
            source_id: Some(e.source_id),
            source_name: Some(e.source_name),
            alarm: e.alarm.as_str().to_owned(),
            state: e.to.as_str().to_owned(),
            message: with_remedy(e.message, e.remedy),
        })
        .collect())
}
