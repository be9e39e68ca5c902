//! orgtrail's state store: log sources, API-key references, checkpoints, the exactly-once lake
//! batch journal (claimed event ids, batches and their files) and run history.
//!
//! [`StateStore`] is the backend-neutral interface; [`SqliteStore`] is the embedded default (one
//! SQLite file in the data directory, mode 0600, WAL). See the crate README for the schema and the
//! exactly-once contract the engine relies on.

mod alarms;
mod config;
mod error;
mod migrations;
mod model;
mod secret;
mod sqlite;
mod store;

pub use alarms::{
    ACTIVITY_BUCKET_MS, ActivityDelta, ActivityWindow, AlarmEvent, AlarmKind, AlarmRecord,
    AlarmState, AlarmStore, NewAlarmEvent, SourceActivity,
};
pub use config::{SourceSpec, SyncReport, load_config, parse_config, parse_duration, sync_config};
pub use error::{Result, StateError};
pub use model::{
    Checkpoint, DEFAULT_BASE_URL, DEFAULT_POLL_INTERVAL_SECS, EventKey, KIND_ATLASSIAN, KeyInput,
    KeyRef, MAX_DROPOFF_ALARM_MINUTES, MAX_POLL_INTERVAL_SECS, MIN_DROPOFF_ALARM_MINUTES,
    NewSource, RunRecord, RunStatus, SeenStats, Source, SourceHealth, SourceUpdate,
    StoredCheckpoint, UnfinishedBatch, org_id_looks_valid,
};
pub use secrecy::{ExposeSecret, SecretString};
pub use secret::resolve_key;
pub use sqlite::{RUNS_KEPT_PER_SOURCE, STATE_DB_FILE, SqliteStore, WriterLock};
pub use store::StateStore;
