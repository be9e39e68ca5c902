//! Prometheus metric names, their descriptions, and the API-client hooks that feed them.
//!
//! The engine records through the `metrics` facade only: without an installed recorder every call
//! is a no-op. The binary installs the Prometheus recorder and serves `/metrics`. Labels are
//! bounded: `source` is a source's name (one per configured source), `endpoint` an API path's last
//! segment, `status` an HTTP status code (or `none`), `alarm` one of the six alarm names, `state`
//! one of three states, `reason`, `kind`, `result` and `destination` small fixed sets.

use orgtrail_atlassian::{ApiEvent, Hooks};

/// Events received from the API, duplicates included. Labels: `source`.
pub const EVENTS_RECEIVED: &str = "orgtrail_events_received_total";
/// New events written to the lake exactly once. Labels: `source`.
pub const EVENTS_STORED: &str = "orgtrail_events_stored_total";
/// Events received again and skipped by id. Labels: `source`.
pub const EVENTS_DUPLICATE: &str = "orgtrail_events_duplicate_total";
/// Bytes of event JSON received. Labels: `source`.
pub const EVENT_BYTES: &str = "orgtrail_event_bytes_received_total";
/// Normalized rows written to the lake. Labels: `source`.
pub const ROWS_WRITTEN: &str = "orgtrail_rows_written_total";
/// Events that failed classification (written to `classification_failures`). Labels: `source`.
pub const EVENTS_FAILED: &str = "orgtrail_events_failed_total";
/// Collection cycles. Labels: `source`, `result` (`success`, `error`, `fatal`).
pub const CYCLES: &str = "orgtrail_cycles_total";
/// 1 when the source's last cycle succeeded, else 0. Labels: `source`.
pub const SOURCE_UP: &str = "orgtrail_source_up";
/// HTTP requests to the Atlassian API (every attempt). Labels: `endpoint`, `status`.
pub const API_REQUESTS: &str = "orgtrail_api_requests_total";
/// Request latency (send to end of body). Labels: `endpoint`.
pub const API_REQUEST_SECONDS: &str = "orgtrail_api_request_duration_seconds";
/// Retried requests. Labels: `endpoint`, `reason` (`server`, `timeout`, `connect`, `transport`, `body`).
pub const API_RETRIES: &str = "orgtrail_api_retries_total";
/// Waits for the rate limit. Labels: `endpoint`, `kind` (`limiter`: the proactive limiter; `429`).
pub const RATE_LIMIT_WAITS: &str = "orgtrail_rate_limit_waits_total";
/// How long each rate-limit wait lasted. Labels: `endpoint`, `kind`.
pub const RATE_LIMIT_WAIT_SECONDS: &str = "orgtrail_rate_limit_wait_seconds";
/// Now minus the newest `processedAt` collected. Labels: `source`.
pub const LAG_SECONDS: &str = "orgtrail_lag_seconds";
/// Now minus the time the checkpoint was last written. Labels: `source`.
pub const CHECKPOINT_AGE_SECONDS: &str = "orgtrail_checkpoint_age_seconds";
/// Events received and not yet written to the lake (buffered in memory). Labels: `source`.
pub const SPOOL_DEPTH: &str = "orgtrail_spool_depth";
/// When events were last received (Unix seconds). Labels: `source`.
pub const LAST_EVENT_RECEIVED: &str = "orgtrail_last_event_received_timestamp_seconds";
/// 1 for an alarm's current state, 0 for the other two. Labels: `source`, `alarm`, `state`.
pub const ALARM_STATE: &str = "orgtrail_alarm_state";
/// Alarm transitions. Labels: `alarm`, `to`.
pub const ALARM_TRANSITIONS: &str = "orgtrail_alarm_transitions_total";
/// Notifications. Labels: `destination` (`webhook`, `slack`), `result` (`sent`, `failed`, `dropped`).
pub const NOTIFICATIONS: &str = "orgtrail_notifications_total";
/// Notification attempts that will be retried. Labels: `destination`.
pub const NOTIFICATION_RETRIES: &str = "orgtrail_notification_retries_total";

/// Every metric with its type, labels and help text (also the README's table).
pub const ALL: &[(&str, &str, &str, &str)] = &[
    (
        EVENTS_RECEIVED,
        "counter",
        "source",
        "Events received from the API, duplicates included",
    ),
    (
        EVENTS_STORED,
        "counter",
        "source",
        "New events stored exactly once",
    ),
    (
        EVENTS_DUPLICATE,
        "counter",
        "source",
        "Events received again and skipped by id",
    ),
    (
        EVENT_BYTES,
        "counter",
        "source",
        "Bytes of event JSON received",
    ),
    (
        ROWS_WRITTEN,
        "counter",
        "source",
        "Normalized rows written to the lake",
    ),
    (
        EVENTS_FAILED,
        "counter",
        "source",
        "Events that failed classification",
    ),
    (
        CYCLES,
        "counter",
        "source, result",
        "Collection cycles by result (success, error, fatal)",
    ),
    (
        SOURCE_UP,
        "gauge",
        "source",
        "1 when the source's last cycle succeeded",
    ),
    (
        API_REQUESTS,
        "counter",
        "endpoint, status",
        "Requests to the Atlassian API, every attempt",
    ),
    (
        API_REQUEST_SECONDS,
        "histogram",
        "endpoint",
        "API request latency in seconds",
    ),
    (
        API_RETRIES,
        "counter",
        "endpoint, reason",
        "Retried API requests by reason",
    ),
    (
        RATE_LIMIT_WAITS,
        "counter",
        "endpoint, kind",
        "Waits for the rate limit (limiter: proactive; 429: answered)",
    ),
    (
        RATE_LIMIT_WAIT_SECONDS,
        "histogram",
        "endpoint, kind",
        "Duration of each rate-limit wait in seconds",
    ),
    (
        LAG_SECONDS,
        "gauge",
        "source",
        "Now minus the newest processedAt collected",
    ),
    (
        CHECKPOINT_AGE_SECONDS,
        "gauge",
        "source",
        "Seconds since the checkpoint was last written",
    ),
    (
        SPOOL_DEPTH,
        "gauge",
        "source",
        "Events received and not yet written to the lake",
    ),
    (
        LAST_EVENT_RECEIVED,
        "gauge",
        "source",
        "When events were last received, Unix seconds",
    ),
    (
        ALARM_STATE,
        "gauge",
        "source, alarm, state",
        "1 for the alarm's current state, 0 for the others",
    ),
    (
        ALARM_TRANSITIONS,
        "counter",
        "alarm, to",
        "Alarm state transitions",
    ),
    (
        NOTIFICATIONS,
        "counter",
        "destination, result",
        "Alarm notifications by result (sent, failed, dropped)",
    ),
    (
        NOTIFICATION_RETRIES,
        "counter",
        "destination",
        "Notification attempts that are retried",
    ),
];

/// Registers the help text of every metric with the installed recorder.
pub fn describe() {
    for (name, kind, _, help) in ALL {
        match *kind {
            "counter" => metrics::describe_counter!(*name, *help),
            "gauge" => metrics::describe_gauge!(*name, *help),
            _ => metrics::describe_histogram!(*name, metrics::Unit::Seconds, *help),
        }
    }
}

/// [`Hooks`] that count API requests, retries and rate-limit waits.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiMetrics;

impl Hooks for ApiMetrics {
    fn on_event(&self, event: &ApiEvent) {
        match event {
            ApiEvent::LimiterWait { endpoint, waited } => {
                metrics::counter!(RATE_LIMIT_WAITS, "endpoint" => *endpoint, "kind" => "limiter")
                    .increment(1);
                metrics::histogram!(RATE_LIMIT_WAIT_SECONDS, "endpoint" => *endpoint, "kind" => "limiter")
                    .record(waited.as_secs_f64());
            }
            ApiEvent::RateLimited { endpoint, wait, .. } => {
                metrics::counter!(RATE_LIMIT_WAITS, "endpoint" => *endpoint, "kind" => "429")
                    .increment(1);
                metrics::histogram!(RATE_LIMIT_WAIT_SECONDS, "endpoint" => *endpoint, "kind" => "429")
                    .record(wait.as_secs_f64());
            }
            ApiEvent::Retry {
                endpoint, reason, ..
            } => {
                metrics::counter!(API_RETRIES, "endpoint" => *endpoint, "reason" => reason.as_str())
                    .increment(1);
            }
            ApiEvent::RequestDone {
                endpoint,
                status,
                latency,
                ..
            } => {
                let status = status.map_or_else(|| "none".to_owned(), |s| s.to_string());
                metrics::counter!(API_REQUESTS, "endpoint" => *endpoint, "status" => status)
                    .increment(1);
                metrics::histogram!(API_REQUEST_SECONDS, "endpoint" => *endpoint)
                    .record(latency.as_secs_f64());
            }
            _ => {}
        }
    }
}
