//! Plain data types of the state store.

use std::fmt;
use std::path::PathBuf;

use jiff::Timestamp;
use secrecy::SecretString;

use crate::error::{Result, StateError};

/// The only source kind so far.
pub const KIND_ATLASSIAN: &str = "atlassian";
/// Default API base URL.
pub const DEFAULT_BASE_URL: &str = "https://api.atlassian.com";
/// Default poll interval in seconds.
pub const DEFAULT_POLL_INTERVAL_SECS: u32 = 60;
/// Smallest drop-off alarm window, in minutes (15 minutes).
pub const MIN_DROPOFF_ALARM_MINUTES: u32 = 15;
/// Largest drop-off alarm window, in minutes (30 days).
pub const MAX_DROPOFF_ALARM_MINUTES: u32 = 43_200;
/// Largest poll interval, in seconds (one day).
pub const MAX_POLL_INTERVAL_SECS: u32 = 86_400;

/// Where a source's API key lives at rest.
///
/// `Env` and `File` are references resolved at use time by [`crate::resolve_key`]; `Stored` means the
/// value is in the state database (a file readable only by its owner). Debug and Display show the
/// reference, never a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyRef {
    /// `env:NAME`: the environment variable `NAME`.
    Env(String),
    /// `file:PATH`: the first line of the file at `PATH` (surrounding whitespace trimmed).
    File(PathBuf),
    /// The value stored in the state database.
    Stored,
}

impl KeyRef {
    /// Parses `env:NAME` or `file:PATH`. Returns `None` for anything else (such as a literal key);
    /// the input is never echoed back, because it may be a key.
    pub fn parse_reference(s: &str) -> Option<KeyRef> {
        let s = s.trim();
        if let Some(name) = s.strip_prefix("env:") {
            let ok = !name.is_empty()
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                && !name.starts_with(|c: char| c.is_ascii_digit());
            return ok.then(|| KeyRef::Env(name.to_owned()));
        }
        if let Some(path) = s.strip_prefix("file:") {
            return (!path.is_empty()).then(|| KeyRef::File(PathBuf::from(path)));
        }
        None
    }

    /// The text stored in the `key_ref` column: `env:NAME`, `file:PATH` or `stored`.
    pub fn to_db(&self) -> String {
        match self {
            KeyRef::Env(n) => format!("env:{n}"),
            KeyRef::File(p) => format!("file:{}", p.display()),
            KeyRef::Stored => "stored".to_owned(),
        }
    }

    pub(crate) fn from_db(s: &str) -> Result<KeyRef> {
        if s == "stored" {
            return Ok(KeyRef::Stored);
        }
        KeyRef::parse_reference(s).ok_or_else(|| StateError::Corrupt {
            what: "sources.key_ref".into(),
            reason: "not env:NAME, file:PATH or stored".into(),
        })
    }
}

impl fmt::Display for KeyRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyRef::Stored => f.write_str("the key stored in the state database"),
            other => f.write_str(&other.to_db()),
        }
    }
}

/// An API key as given when adding or updating a source: a reference, or a value to store.
#[derive(Clone)]
pub enum KeyInput {
    /// Store a reference to an environment variable.
    Env(String),
    /// Store a reference to a file.
    File(PathBuf),
    /// Store this value in the state database.
    Value(SecretString),
}

impl KeyInput {
    /// The reference this input becomes at rest.
    pub fn key_ref(&self) -> KeyRef {
        match self {
            KeyInput::Env(n) => KeyRef::Env(n.clone()),
            KeyInput::File(p) => KeyRef::File(p.clone()),
            KeyInput::Value(_) => KeyRef::Stored,
        }
    }
}

impl From<KeyRef> for Option<KeyInput> {
    fn from(r: KeyRef) -> Self {
        match r {
            KeyRef::Env(n) => Some(KeyInput::Env(n)),
            KeyRef::File(p) => Some(KeyInput::File(p)),
            KeyRef::Stored => None,
        }
    }
}

impl fmt::Debug for KeyInput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyInput::Env(n) => f.debug_tuple("Env").field(n).finish(),
            KeyInput::File(p) => f.debug_tuple("File").field(p).finish(),
            KeyInput::Value(_) => f.write_str("Value([REDACTED])"),
        }
    }
}

/// A log source as stored.
#[derive(Clone)]
pub struct Source {
    /// UUID string.
    pub id: String,
    pub name: String,
    /// Always [`KIND_ATLASSIAN`] for now.
    pub kind: String,
    pub org_id: String,
    pub base_url: String,
    /// Where the API key lives; resolve it with [`crate::resolve_key`].
    pub key_ref: KeyRef,
    pub key_expires_at: Option<Timestamp>,
    pub dropoff_alarm_minutes: Option<u32>,
    pub poll_interval_secs: u32,
    pub paused: bool,
    /// Declared in the TOML config file (synced by [`crate::sync_config`]).
    pub config_managed: bool,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    /// The stored key when `key_ref` is [`KeyRef::Stored`]. Never printed.
    pub(crate) stored_key: Option<SecretString>,
}

impl fmt::Debug for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Source")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("org_id", &self.org_id)
            .field("base_url", &self.base_url)
            .field("key_ref", &self.key_ref)
            .field("key_expires_at", &self.key_expires_at)
            .field("dropoff_alarm_minutes", &self.dropoff_alarm_minutes)
            .field("poll_interval_secs", &self.poll_interval_secs)
            .field("paused", &self.paused)
            .field("config_managed", &self.config_managed)
            .field("created_at", &self.created_at)
            .field("updated_at", &self.updated_at)
            .finish_non_exhaustive()
    }
}

/// A source to add.
#[derive(Debug, Clone)]
pub struct NewSource {
    pub name: String,
    pub org_id: String,
    /// `None` means [`DEFAULT_BASE_URL`].
    pub base_url: Option<String>,
    pub key: KeyInput,
    pub key_expires_at: Option<Timestamp>,
    pub dropoff_alarm_minutes: Option<u32>,
    /// `None` means [`DEFAULT_POLL_INTERVAL_SECS`].
    pub poll_interval_secs: Option<u32>,
    pub config_managed: bool,
}

impl NewSource {
    /// A source with defaults for everything optional.
    pub fn new(name: impl Into<String>, org_id: impl Into<String>, key: KeyInput) -> NewSource {
        NewSource {
            name: name.into(),
            org_id: org_id.into(),
            base_url: None,
            key,
            key_expires_at: None,
            dropoff_alarm_minutes: None,
            poll_interval_secs: None,
            config_managed: false,
        }
    }
}

/// Changes to a source; `None` leaves a field as it is. For optional fields, `Some(None)` clears.
#[derive(Debug, Clone, Default)]
pub struct SourceUpdate {
    pub name: Option<String>,
    pub base_url: Option<String>,
    pub key: Option<KeyInput>,
    pub key_expires_at: Option<Option<Timestamp>>,
    pub dropoff_alarm_minutes: Option<Option<u32>>,
    pub poll_interval_secs: Option<u32>,
    pub config_managed: Option<bool>,
}

/// The collector's position in a source's event stream.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Checkpoint {
    /// The last non-null `meta.next` cursor (the engine decides what to keep).
    pub cursor: Option<String>,
    /// The greatest `processedAt` committed so far, epoch milliseconds.
    pub max_processed_at_ms: Option<i64>,
    /// The event ids whose `processedAt` equals `max_processed_at_ms` (overlap de-duplication).
    pub ids_at_max: Vec<String>,
    /// Page sequence number; never goes backwards (see [`StateError::StaleCheckpoint`]).
    pub page_seq: i64,
}

/// A checkpoint as stored, with the time it was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCheckpoint {
    pub checkpoint: Checkpoint,
    pub updated_at: Timestamp,
}

/// An event id to claim for a lake batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventKey {
    /// The Atlassian event `id` (unique per source).
    pub event_id: String,
    /// `attributes.processedAt` in epoch milliseconds, when present: with the id, what recognizes
    /// an event served again (the API serves it with the processedAt it had); also its age for
    /// pruning.
    pub processed_at_ms: Option<i64>,
}

/// A lake batch that a crash left unfinished (see [`crate::StateStore::begin_batch`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnfinishedBatch {
    pub batch_id: String,
    /// The lake files (final paths) the batch may have written, as `<path>.pending` until published.
    pub files: Vec<String>,
    /// Committed: its files are whole and must be published; otherwise they must be discarded and
    /// the batch abandoned.
    pub committed: bool,
}

/// De-duplication and batch counters of a source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SeenStats {
    /// Event ids remembered for de-duplication.
    pub seen_ids: u64,
    /// Lake batches begun but not finished (0 while idle; more only after a crash).
    pub unfinished_batches: u64,
}

/// How a collection run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunStatus {
    Success,
    Failed,
    Cancelled,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Success => "success",
            RunStatus::Failed => "failed",
            RunStatus::Cancelled => "cancelled",
        }
    }

    pub(crate) fn from_db(s: &str) -> Result<RunStatus> {
        match s {
            "success" => Ok(RunStatus::Success),
            "failed" => Ok(RunStatus::Failed),
            "cancelled" => Ok(RunStatus::Cancelled),
            other => Err(StateError::Corrupt {
                what: "runs.status".into(),
                reason: format!("unknown status {other:?}"),
            }),
        }
    }
}

/// One collection run (a poll cycle) of a source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunRecord {
    pub source_id: String,
    pub started_at: Timestamp,
    pub ended_at: Timestamp,
    pub pages: u64,
    pub events: u64,
    pub status: RunStatus,
    /// The error message of a failed run. Must not contain secrets (the engine's errors never do).
    pub error: Option<String>,
}

/// What the health view needs about one source.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SourceHealth {
    /// End of the last successful run (recorded by `record_run` or `record_success`).
    pub last_success_at: Option<Timestamp>,
    /// The last error and when it happened (kept after later successes: compare the times).
    pub last_error: Option<String>,
    pub last_error_at: Option<Timestamp>,
    /// The last checkpoint or batch commit (ingest time, for the drop-off alarm), with or without
    /// new events.
    pub last_commit_at: Option<Timestamp>,
    /// The last batch commit that stored at least one new event.
    pub last_data_at: Option<Timestamp>,
}

/// Returns true when `org_id` looks like an Atlassian organization id (a UUID). Unknown formats are
/// only warned about, never rejected.
pub fn org_id_looks_valid(org_id: &str) -> bool {
    uuid::Uuid::parse_str(org_id).is_ok()
}

pub(crate) fn validate_name(name: &str) -> Result<String> {
    let trimmed = name.trim();
    let invalid = |reason: &str| StateError::Invalid {
        source_name: trimmed.to_owned(),
        field: "name",
        reason: reason.to_owned(),
    };
    if trimmed.is_empty() {
        return Err(invalid("the name is empty; give the source a name"));
    }
    if trimmed.chars().count() > 200 {
        return Err(invalid(
            "the name is longer than 200 characters; shorten it",
        ));
    }
    if trimmed.chars().any(char::is_control) {
        return Err(invalid("the name contains control characters; remove them"));
    }
    Ok(trimmed.to_owned())
}

/// The case-insensitive uniqueness key of a source name.
pub(crate) fn name_key(name: &str) -> String {
    name.trim().to_lowercase()
}

pub(crate) fn validate_org_id(source_name: &str, org_id: &str) -> Result<String> {
    let org_id = org_id.trim();
    if org_id.is_empty()
        || org_id
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '/')
    {
        return Err(StateError::Invalid {
            source_name: source_name.to_owned(),
            field: "org_id",
            reason: "the organization id is empty or contains spaces or '/'; copy it from admin.atlassian.com/o/<org id>/"
                .to_owned(),
        });
    }
    if !org_id_looks_valid(org_id) {
        tracing::warn!(
            source = source_name,
            org_id,
            "organization id does not look like a UUID; keeping it"
        );
    }
    Ok(org_id.to_owned())
}

pub(crate) fn validate_base_url(source_name: &str, url: &str) -> Result<String> {
    let url = url.trim().trim_end_matches('/');
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"));
    match rest {
        Some(host) if !host.is_empty() && !host.chars().any(char::is_whitespace) => {
            Ok(url.to_owned())
        }
        _ => Err(StateError::Invalid {
            source_name: source_name.to_owned(),
            field: "base_url",
            reason: format!("{url:?} is not an http(s) URL; use e.g. {DEFAULT_BASE_URL}"),
        }),
    }
}

pub(crate) fn validate_alarm(source_name: &str, minutes: Option<u32>) -> Result<Option<u32>> {
    match minutes {
        Some(m) if !(MIN_DROPOFF_ALARM_MINUTES..=MAX_DROPOFF_ALARM_MINUTES).contains(&m) => {
            Err(StateError::Invalid {
                source_name: source_name.to_owned(),
                field: "dropoff_alarm",
                reason: format!("{m} minutes is outside 15 minutes..30 days (15..=43200 minutes)"),
            })
        }
        other => Ok(other),
    }
}

pub(crate) fn validate_poll_interval(source_name: &str, secs: u32) -> Result<u32> {
    if secs == 0 || secs > MAX_POLL_INTERVAL_SECS {
        return Err(StateError::Invalid {
            source_name: source_name.to_owned(),
            field: "poll_interval",
            reason: format!("{secs} seconds is outside 1 second..1 day"),
        });
    }
    Ok(secs)
}

pub(crate) fn validate_key_input(source_name: &str, key: &KeyInput) -> Result<()> {
    use secrecy::ExposeSecret;
    let bad = |reason: &str| StateError::Invalid {
        source_name: source_name.to_owned(),
        field: "api_key",
        reason: reason.to_owned(),
    };
    match key {
        KeyInput::Env(n) => {
            if KeyRef::parse_reference(&format!("env:{n}")).is_none() {
                return Err(bad(
                    "the environment variable name must be letters, digits and '_', not starting with a digit",
                ));
            }
        }
        KeyInput::File(p) => {
            if p.as_os_str().is_empty() {
                return Err(bad("the key file path is empty"));
            }
        }
        KeyInput::Value(v) => {
            let v = v.expose_secret();
            if v.trim().is_empty() {
                return Err(bad("the API key is empty"));
            }
            if v.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(bad(
                    "the API key contains whitespace; paste it again without spaces or line breaks",
                ));
            }
        }
    }
    Ok(())
}
