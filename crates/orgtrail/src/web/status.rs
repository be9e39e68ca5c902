//! Source health and alarm states as the console shows them.
//!
//! This is the one boundary between the console and the health/alarm machinery: the pages and the
//! API read [`source_status`] and [`alarm_history`] only. Today they are derived from the state
//! store's health facts (`source_health`: last success, last error, last ingest of new data) and
//! the source's drop-off threshold; a health module with recorded alarm transitions replaces the
//! bodies of these two functions without touching the pages.

use jiff::{SignedDuration, Timestamp};
use orgtrail_state::{Source, SourceHealth, StateStore};
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

/// State of one alarm (the names and states of Panther's `SOURCE_NO_DATA` alarm).
#[derive(Debug, Clone, Serialize)]
pub struct AlarmState {
    /// `SOURCE_NO_DATA` (log drop-off) or `SOURCE_FAILING` (the last poll failed).
    pub alarm: &'static str,
    /// `OK`, `ALARM` or `INSUFFICIENT_DATA`.
    pub state: &'static str,
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

/// The health and alarm states of `source` at `now`.
pub async fn source_status(
    store: &dyn StateStore,
    source: &Source,
    now: Timestamp,
) -> orgtrail_state::Result<SourceStatus> {
    let h = store.source_health(&source.id).await?;
    Ok(derive(source, &h, now))
}

fn derive(source: &Source, h: &SourceHealth, now: Timestamp) -> SourceStatus {
    let failing = match (h.last_error_at, h.last_success_at) {
        (Some(e), Some(s)) => e > s,
        (Some(_), None) => true,
        _ => false,
    };
    let (health, reason) = if source.paused {
        (
            Health::Paused,
            Some("paused: resume it to collect".to_owned()),
        )
    } else if failing {
        (Health::Unhealthy, h.last_error.clone())
    } else if h.last_success_at.is_none() {
        (Health::Starting, None)
    } else {
        (Health::Healthy, None)
    };
    let mut alarms = Vec::new();
    if let Some(minutes) = source.dropoff_alarm_minutes {
        let window = SignedDuration::from_mins(i64::from(minutes));
        let (state, message) = match h.last_data_at {
            None => (
                "INSUFFICIENT_DATA",
                "no events received yet since the source was added".to_owned(),
            ),
            Some(t) if now.duration_since(t) > window => (
                "ALARM",
                format!(
                    "no events received for more than {} (last at {})",
                    minutes_text(minutes),
                    t.strftime("%Y-%m-%d %H:%M UTC")
                ),
            ),
            Some(_) => (
                "OK",
                format!("events received within the last {}", minutes_text(minutes)),
            ),
        };
        alarms.push(AlarmState {
            alarm: "SOURCE_NO_DATA",
            state,
            message,
        });
    }
    if failing && !source.paused {
        alarms.push(AlarmState {
            alarm: "SOURCE_FAILING",
            state: "ALARM",
            message: h.last_error.clone().unwrap_or_default(),
        });
    }
    SourceStatus {
        health,
        reason,
        last_event_at: h.last_data_at,
        last_success_at: h.last_success_at,
        last_error: h.last_error.clone(),
        last_error_at: h.last_error_at,
        alarms,
    }
}

/// Alarm transitions, newest first. orgtrail does not record alarm transitions yet (the state
/// store keeps only the current health facts), so there is no history to return.
pub async fn alarm_history(_store: &dyn StateStore, _limit: usize) -> Vec<AlarmEvent> {
    Vec::new()
}

/// `90` → `1 h 30 min`, `1440` → `1 day`.
pub fn minutes_text(m: u32) -> String {
    let (d, h, min) = (m / 1440, (m % 1440) / 60, m % 60);
    let mut parts = Vec::new();
    if d > 0 {
        parts.push(format!("{d} day{}", if d == 1 { "" } else { "s" }));
    }
    if h > 0 {
        parts.push(format!("{h} h"));
    }
    if min > 0 {
        parts.push(format!("{min} min"));
    }
    if parts.is_empty() {
        "0 min".to_owned()
    } else {
        parts.join(" ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minutes_read_as_words() {
        assert_eq!(minutes_text(15), "15 min");
        assert_eq!(minutes_text(90), "1 h 30 min");
        assert_eq!(minutes_text(1440), "1 day");
        assert_eq!(minutes_text(43_200), "30 days");
    }
}
