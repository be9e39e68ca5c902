//! The one error type of the state store.
//!
//! Every message says what failed, with which input, and what to do. No message ever carries an API
//! key: key references (`env:NAME`, `file:PATH`) are named, their values never are.

use std::path::PathBuf;

/// Result alias for the state store.
pub type Result<T, E = StateError> = std::result::Result<T, E>;

/// What went wrong in the state store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StateError {
    /// The state database could not be opened, created or migrated.
    #[error("cannot open state database {path}: {reason}")]
    Open { path: PathBuf, reason: String },

    /// The database was written by a newer orgtrail.
    #[error(
        "state database {path} has schema version {found}, newer than this orgtrail supports ({supported}); upgrade orgtrail or point it at another data directory"
    )]
    SchemaTooNew {
        path: PathBuf,
        found: i64,
        supported: i64,
    },

    /// A database operation failed.
    #[error("state database error while {context}: {source}")]
    Db {
        context: &'static str,
        #[source]
        source: sqlx::Error,
    },

    /// Stored data could not be read back (corruption or a manual edit).
    #[error("state database holds invalid data in {what}: {reason}")]
    Corrupt { what: String, reason: String },

    /// A source with this name (case-insensitive) exists already.
    #[error(
        "a source named \"{name}\" already exists (names are case-insensitive); pick another name or update the existing source"
    )]
    DuplicateName { name: String },

    /// No source with this name or id.
    #[error("no source named or with id \"{0}\"; list sources to see the names")]
    SourceNotFound(String),

    /// A source field is invalid.
    #[error("invalid {field} for source \"{source_name}\": {reason}")]
    Invalid {
        source_name: String,
        field: &'static str,
        reason: String,
    },

    /// The API key reference could not be resolved (the value is never shown).
    #[error("cannot read the API key of source \"{source_name}\" from {reference}: {reason}")]
    KeyUnavailable {
        source_name: String,
        reference: String,
        reason: String,
    },

    /// The checkpoint passed to `commit_batch` or `save_checkpoint` goes backwards.
    #[error(
        "refusing to move the checkpoint of source {source_id} back from page {stored} to page {given}: another collector may be running for this source, or the engine lost its place; stop the other collector or reset the checkpoint"
    )]
    StaleCheckpoint {
        source_id: String,
        stored: i64,
        given: i64,
    },

    /// A batch call named a batch that `begin_batch` never recorded (or that was abandoned).
    #[error("unknown lake batch \"{0}\": it was never begun or it was abandoned")]
    UnknownBatch(String),

    /// Removing the source would leave a lake batch half done.
    #[error(
        "source \"{name}\" has {batches} lake batch(es) in progress or left by a crash; run `orgtrail run --once` to finish them first, or remove with force"
    )]
    PendingData { name: String, batches: i64 },

    /// A bad argument from the caller (a programming error in the engine or CLI).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),

    /// The TOML config file is invalid.
    #[error("config file {path}: {location}{message}")]
    Config {
        path: PathBuf,
        location: String,
        message: String,
    },

    /// A blocking helper task failed.
    #[error("internal task failed while {0}")]
    Task(&'static str),
}

impl StateError {
    pub(crate) fn db(context: &'static str) -> impl FnOnce(sqlx::Error) -> StateError {
        move |source| StateError::Db { context, source }
    }

    /// True when retrying the same call later may succeed (the database was busy or locked).
    pub fn is_retryable(&self) -> bool {
        match self {
            StateError::Db { source, .. } => match source {
                sqlx::Error::Database(db) => {
                    let msg = db.message().to_ascii_lowercase();
                    msg.contains("locked") || msg.contains("busy")
                }
                sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) => true,
                _ => false,
            },
            StateError::Task(_) => true,
            _ => false,
        }
    }

    /// True when the user must fix configuration or input (not a transient fault).
    pub fn is_config(&self) -> bool {
        matches!(
            self,
            StateError::Config { .. }
                | StateError::Invalid { .. }
                | StateError::DuplicateName { .. }
                | StateError::SourceNotFound(_)
                | StateError::KeyUnavailable { .. }
        )
    }
}
