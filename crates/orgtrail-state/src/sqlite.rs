//! The embedded SQLite backend.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use jiff::Timestamp;
use secrecy::{ExposeSecret, SecretString};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{Row, SqliteConnection};

use crate::error::{Result, StateError};
use crate::migrations::{MIGRATIONS, latest_version};
use crate::model::{
    Checkpoint, DEFAULT_BASE_URL, DEFAULT_POLL_INTERVAL_SECS, EventKey, KIND_ATLASSIAN, KeyInput,
    KeyRef, NewSource, RunRecord, RunStatus, SeenStats, Source, SourceHealth, SourceUpdate,
    StoredCheckpoint, UnfinishedBatch, name_key, validate_alarm, validate_base_url,
    validate_key_input, validate_name, validate_org_id, validate_poll_interval,
};
use crate::store::StateStore;

/// `seen.at_ms` of an event without `processedAt` (never pruned: it has no age).
const NO_PROCESSED_AT: i64 = -1;

/// `{"id": processedAt, ...}`: the keys `begin_batch` claims, as one JSON object, in the order
/// given. An id may appear twice (served again with another processedAt): SQLite's `json_each`
/// keeps repeated member names.
fn keys_json(keys: &[(i64, &str)]) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(2 + keys.len() * 56);
    out.push('{');
    for (i, (at, id)) in keys.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        if id.bytes().any(|b| matches!(b, b'"' | b'\\' | 0..=0x1f)) {
            out.push_str(&serde_json::Value::from(*id).to_string());
        } else {
            // Most ids need no escape.
            out.push('"');
            out.push_str(id);
            out.push('"');
        }
        let _ = write!(out, ":{at}");
    }
    out.push('}');
    out
}

/// File name of the state database inside the data directory.
pub const STATE_DB_FILE: &str = "state.db";
/// Runs kept per source; older ones are deleted when a run is recorded.
pub const RUNS_KEPT_PER_SOURCE: i64 = 1000;

macro_rules! source_cols {
    () => {
        "id, name, kind, org_id, base_url, key_ref, key_value, key_expires_at_ms, dropoff_alarm_minutes, \
         poll_interval_secs, paused, config_managed, created_at_ms, updated_at_ms"
    };
}

/// The SQLite state store: one file, WAL mode, owner-only permissions, migrations applied on open.
///
/// Cheap to clone (a connection pool). Every write runs in a `BEGIN IMMEDIATE` transaction, so
/// concurrent writers (another process such as the CLI) wait on the busy timeout instead of failing
/// on a lock upgrade.
#[derive(Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    path: PathBuf,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

fn now_ms() -> i64 {
    Timestamp::now().as_millisecond()
}

fn ts(what: &str, ms: i64) -> Result<Timestamp> {
    Timestamp::from_millisecond(ms).map_err(|e| StateError::Corrupt {
        what: what.to_owned(),
        reason: e.to_string(),
    })
}

fn opt_ts(what: &str, ms: Option<i64>) -> Result<Option<Timestamp>> {
    ms.map(|m| ts(what, m)).transpose()
}

fn to_u32(what: &str, v: i64) -> Result<u32> {
    u32::try_from(v).map_err(|_| StateError::Corrupt {
        what: what.to_owned(),
        reason: format!("{v} out of range"),
    })
}

fn to_u64(what: &str, v: i64) -> Result<u64> {
    u64::try_from(v).map_err(|_| StateError::Corrupt {
        what: what.to_owned(),
        reason: format!("{v} is negative"),
    })
}

fn to_i64(what: &str, v: u64) -> Result<i64> {
    i64::try_from(v).map_err(|_| StateError::InvalidArgument(format!("{what} = {v} is too large")))
}

fn get<'r, T>(row: &'r SqliteRow, col: &'static str) -> Result<T>
where
    T: sqlx::Decode<'r, sqlx::Sqlite> + sqlx::Type<sqlx::Sqlite>,
{
    row.try_get(col).map_err(StateError::db("reading a row"))
}

fn source_from_row(row: &SqliteRow) -> Result<Source> {
    let key_ref = KeyRef::from_db(&get::<String>(row, "key_ref")?)?;
    let stored_key: Option<String> = get(row, "key_value")?;
    Ok(Source {
        id: get(row, "id")?,
        name: get(row, "name")?,
        kind: get(row, "kind")?,
        org_id: get(row, "org_id")?,
        base_url: get(row, "base_url")?,
        key_ref,
        key_expires_at: opt_ts("sources.key_expires_at_ms", get(row, "key_expires_at_ms")?)?,
        dropoff_alarm_minutes: get::<Option<i64>>(row, "dropoff_alarm_minutes")?
            .map(|m| to_u32("sources.dropoff_alarm_minutes", m))
            .transpose()?,
        poll_interval_secs: to_u32(
            "sources.poll_interval_secs",
            get(row, "poll_interval_secs")?,
        )?,
        paused: get::<i64>(row, "paused")? != 0,
        config_managed: get::<i64>(row, "config_managed")? != 0,
        created_at: ts("sources.created_at_ms", get(row, "created_at_ms")?)?,
        updated_at: ts("sources.updated_at_ms", get(row, "updated_at_ms")?)?,
        stored_key: stored_key.map(SecretString::from),
    })
}

/// The exclusive right to write lake batches of one source, across processes (an advisory lock on
/// a file beside the database, released when dropped or when the process dies).
#[derive(Debug)]
pub struct WriterLock {
    _file: std::fs::File,
}

impl WriterLock {
    fn acquire(dir: &Path, path: &Path) -> Result<WriterLock> {
        let err = |e: std::io::Error| StateError::Open {
            path: path.to_owned(),
            reason: format!(
                "cannot take the source's writer lock: {e}; check that the data directory is writable"
            ),
        };
        std::fs::create_dir_all(dir).map_err(err)?;
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .map_err(err)?;
        file.lock().map_err(err)?;
        Ok(WriterLock { _file: file })
    }
}

/// A file-name-safe form of a source id.
fn lock_name(source_id: &str) -> String {
    source_id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Creates the database file with mode 0600 (and its directory with 0700) if missing; tightens the
/// mode of an existing file that others can read.
fn prepare_file(path: &Path) -> std::io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
        && !dir.exists()
    {
        let mut b = std::fs::DirBuilder::new();
        b.recursive(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::DirBuilderExt;
            b.mode(0o700);
        }
        b.create(dir)?;
    }
    let mut o = std::fs::OpenOptions::new();
    o.read(true).write(true).create(true).truncate(false);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
    let f = o.open(path)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = f.metadata()?.permissions().mode();
        if mode & 0o077 != 0 {
            tracing::warn!(path = %path.display(), mode = format!("{:o}", mode & 0o777), "state database was readable by others; setting mode 0600");
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
        }
        // WAL and shared-memory files take the database file's mode; tighten leftovers anyway.
        for suffix in ["-wal", "-shm"] {
            let side = PathBuf::from(format!("{}{suffix}", path.display()));
            if let Ok(m) = std::fs::metadata(&side)
                && m.permissions().mode() & 0o077 != 0
            {
                std::fs::set_permissions(&side, std::fs::Permissions::from_mode(0o600))?;
            }
        }
    }
    drop(f);
    Ok(())
}

impl SqliteStore {
    /// Opens (creating if needed) `<data_dir>/state.db`.
    pub async fn open_in_dir(data_dir: impl AsRef<Path>) -> Result<SqliteStore> {
        SqliteStore::open(data_dir.as_ref().join(STATE_DB_FILE)).await
    }

    /// Opens (creating if needed) the state database at `path` and applies pending migrations.
    pub async fn open(path: impl AsRef<Path>) -> Result<SqliteStore> {
        let path = path.as_ref().to_path_buf();
        let open_err = |reason: String| StateError::Open {
            path: path.clone(),
            reason,
        };
        let p = path.clone();
        tokio::task::spawn_blocking(move || prepare_file(&p))
            .await
            .map_err(|_| StateError::Task("creating the state database file"))?
            .map_err(|e| {
                open_err(format!(
                    "{e}; check that the data directory exists and is writable"
                ))
            })?;

        let opts = SqliteConnectOptions::from_str("sqlite:")
            .map_err(|e| open_err(e.to_string()))?
            .filename(&path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            // Overwrite deleted content (replaced stored keys, freed payloads) instead of leaving it in free pages.
            .pragma("secure_delete", "ON")
            // SQLite's default page cache (2 MiB per connection): claims append at the right edge
            // of the `seen` index (keyed by processedAt first), so its working set is a few pages.
            // A larger cache only grew the collector's memory with the number of events stored.
            .busy_timeout(Duration::from_secs(10));
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .min_connections(0)
            .connect_with(opts)
            .await
            .map_err(|e| open_err(e.to_string()))?;
        let store = SqliteStore { pool, path };
        store.migrate().await?;
        Ok(store)
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Closes the connection pool (waits for in-flight statements).
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// The applied schema version.
    pub async fn schema_version(&self) -> Result<i64> {
        let v: Option<i64> = sqlx::query_scalar("SELECT MAX(version) FROM schema_migrations")
            .fetch_one(&self.pool)
            .await
            .map_err(StateError::db("reading the schema version"))?;
        Ok(v.unwrap_or(0))
    }

    async fn begin(
        &self,
        context: &'static str,
    ) -> Result<sqlx::Transaction<'static, sqlx::Sqlite>> {
        self.pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(StateError::db(context))
    }

    async fn migrate(&self) -> Result<()> {
        let mut tx = self.begin("starting migrations").await?;
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at_ms INTEGER NOT NULL)",
        )
        .execute(&mut *tx)
        .await
        .map_err(StateError::db("creating schema_migrations"))?;
        let current: Option<i64> = sqlx::query_scalar("SELECT MAX(version) FROM schema_migrations")
            .fetch_one(&mut *tx)
            .await
            .map_err(StateError::db("reading the schema version"))?;
        let current = current.unwrap_or(0);
        if current > latest_version() {
            return Err(StateError::SchemaTooNew {
                path: self.path.clone(),
                found: current,
                supported: latest_version(),
            });
        }
        // Every migration not applied yet, in order: a database migrated to version 3 by a build
        // without version 2 (the alarm tables) still gets version 2.
        let applied: Vec<i64> = sqlx::query_scalar("SELECT version FROM schema_migrations")
            .fetch_all(&mut *tx)
            .await
            .map_err(StateError::db("reading the applied migrations"))?;
        for m in MIGRATIONS.iter().filter(|m| !applied.contains(&m.version)) {
            sqlx::raw_sql(m.sql)
                .execute(&mut *tx)
                .await
                .map_err(|e| StateError::Open {
                    path: self.path.clone(),
                    reason: format!("migration {} ({}) failed: {e}", m.version, m.name),
                })?;
            sqlx::query(
                "INSERT INTO schema_migrations (version, name, applied_at_ms) VALUES (?1, ?2, ?3)",
            )
            .bind(m.version)
            .bind(m.name)
            .bind(now_ms())
            .execute(&mut *tx)
            .await
            .map_err(StateError::db("recording a migration"))?;
            tracing::info!(
                version = m.version,
                name = m.name,
                "applied state database migration"
            );
        }
        tx.commit()
            .await
            .map_err(StateError::db("committing migrations"))
    }

    async fn source_by_id(conn: &mut SqliteConnection, id: &str) -> Result<Option<Source>> {
        let row = sqlx::query(concat!(
            "SELECT ",
            source_cols!(),
            " FROM sources WHERE id = ?1"
        ))
        .bind(id)
        .fetch_optional(conn)
        .await
        .map_err(StateError::db("reading a source"))?;
        row.as_ref().map(source_from_row).transpose()
    }

    async fn name_taken(
        conn: &mut SqliteConnection,
        key: &str,
        except_id: Option<&str>,
    ) -> Result<bool> {
        let n: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM sources WHERE name_key = ?1 AND id IS NOT ?2")
                .bind(key)
                .bind(except_id)
                .fetch_one(conn)
                .await
                .map_err(StateError::db("checking source names"))?;
        Ok(n > 0)
    }

    async fn unfinished_count<'e, E: sqlx::SqliteExecutor<'e>>(
        conn: E,
        source_id: &str,
    ) -> Result<i64> {
        sqlx::query_scalar(
            "SELECT COUNT(*) FROM lake_batches WHERE source_id = ?1 AND finished_at_ms IS NULL",
        )
        .bind(source_id)
        .fetch_one(conn)
        .await
        .map_err(StateError::db("counting unfinished lake batches"))
    }

    /// Upserts the checkpoint; refuses one whose `page_seq` goes back.
    async fn write_checkpoint(
        conn: &mut SqliteConnection,
        source_id: &str,
        checkpoint: &Checkpoint,
    ) -> Result<()> {
        let stored: Option<i64> =
            sqlx::query_scalar("SELECT page_seq FROM checkpoints WHERE source_id = ?1")
                .bind(source_id)
                .fetch_optional(&mut *conn)
                .await
                .map_err(StateError::db("reading a checkpoint"))?;
        if let Some(stored) = stored
            && checkpoint.page_seq < stored
        {
            return Err(StateError::StaleCheckpoint {
                source_id: source_id.to_owned(),
                stored,
                given: checkpoint.page_seq,
            });
        }
        let ids_json = serde_json::to_string(&checkpoint.ids_at_max)
            .map_err(|e| StateError::InvalidArgument(format!("checkpoint ids: {e}")))?;
        sqlx::query(
            "INSERT INTO checkpoints (source_id, cursor, max_processed_at_ms, ids_at_max, page_seq, updated_at_ms) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT(source_id) DO UPDATE SET cursor = excluded.cursor, \
             max_processed_at_ms = excluded.max_processed_at_ms, ids_at_max = excluded.ids_at_max, \
             page_seq = excluded.page_seq, updated_at_ms = excluded.updated_at_ms",
        )
        .bind(source_id)
        .bind(&checkpoint.cursor)
        .bind(checkpoint.max_processed_at_ms)
        .bind(ids_json)
        .bind(checkpoint.page_seq)
        .bind(now_ms())
        .execute(conn)
        .await
        .map_err(StateError::db("advancing the checkpoint"))?;
        Ok(())
    }

    /// Records a commit (and, with `data`, that new events arrived) for the drop-off alarm.
    async fn touch_health(conn: &mut SqliteConnection, source_id: &str, data: bool) -> Result<()> {
        let now = now_ms();
        sqlx::query(
            "INSERT INTO source_health (source_id, last_commit_at_ms, last_data_at_ms) VALUES (?1, ?2, ?3) \
             ON CONFLICT(source_id) DO UPDATE SET last_commit_at_ms = excluded.last_commit_at_ms, \
             last_data_at_ms = COALESCE(excluded.last_data_at_ms, source_health.last_data_at_ms)",
        )
        .bind(source_id)
        .bind(now)
        .bind(data.then_some(now))
        .execute(conn)
        .await
        .map_err(StateError::db("updating source health"))?;
        Ok(())
    }

    async fn ensure_health_row(conn: &mut SqliteConnection, source_id: &str) -> Result<()> {
        sqlx::query(
            "INSERT INTO source_health (source_id) VALUES (?1) ON CONFLICT(source_id) DO NOTHING",
        )
        .bind(source_id)
        .execute(conn)
        .await
        .map_err(StateError::db("creating a health row"))?;
        Ok(())
    }

    async fn require_source(conn: &mut SqliteConnection, source_id: &str) -> Result<()> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM sources WHERE id = ?1")
            .bind(source_id)
            .fetch_one(conn)
            .await
            .map_err(StateError::db("looking up a source"))?;
        if n == 0 {
            return Err(StateError::SourceNotFound(source_id.to_owned()));
        }
        Ok(())
    }
}

fn key_columns(key: &KeyInput) -> (String, Option<String>) {
    let value = match key {
        KeyInput::Value(v) => Some(v.expose_secret().to_owned()),
        _ => None,
    };
    (key.key_ref().to_db(), value)
}

fn unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}

#[async_trait]
impl StateStore for SqliteStore {
    async fn add_source(&self, new: NewSource) -> Result<Source> {
        let name = validate_name(&new.name)?;
        let org_id = validate_org_id(&name, &new.org_id)?;
        let base_url =
            validate_base_url(&name, new.base_url.as_deref().unwrap_or(DEFAULT_BASE_URL))?;
        validate_key_input(&name, &new.key)?;
        let alarm = validate_alarm(&name, new.dropoff_alarm_minutes)?;
        let poll = validate_poll_interval(
            &name,
            new.poll_interval_secs.unwrap_or(DEFAULT_POLL_INTERVAL_SECS),
        )?;
        let id = uuid::Uuid::new_v4().to_string();
        let now = now_ms();
        let (key_ref, key_value) = key_columns(&new.key);

        let mut tx = self.begin("adding a source").await?;
        if Self::name_taken(&mut tx, &name_key(&name), None).await? {
            return Err(StateError::DuplicateName { name });
        }
        let r = sqlx::query(
            "INSERT INTO sources (id, name, name_key, kind, org_id, base_url, key_ref, key_value, key_expires_at_ms, \
             dropoff_alarm_minutes, poll_interval_secs, paused, config_managed, created_at_ms, updated_at_ms) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, 0, ?12, ?13, ?13)",
        )
        .bind(&id)
        .bind(&name)
        .bind(name_key(&name))
        .bind(KIND_ATLASSIAN)
        .bind(&org_id)
        .bind(&base_url)
        .bind(&key_ref)
        .bind(key_value)
        .bind(new.key_expires_at.map(|t| t.as_millisecond()))
        .bind(alarm.map(i64::from))
        .bind(i64::from(poll))
        .bind(i64::from(new.config_managed))
        .bind(now)
        .execute(&mut *tx)
        .await;
        match r {
            Ok(_) => {}
            Err(e) if unique_violation(&e) => return Err(StateError::DuplicateName { name }),
            Err(e) => return Err(StateError::db("adding a source")(e)),
        }
        Self::ensure_health_row(&mut tx, &id).await?;
        let source =
            Self::source_by_id(&mut tx, &id)
                .await?
                .ok_or_else(|| StateError::Corrupt {
                    what: "sources".into(),
                    reason: "the source just inserted cannot be read back".into(),
                })?;
        tx.commit()
            .await
            .map_err(StateError::db("committing a new source"))?;
        Ok(source)
    }

    async fn find_source(&self, name_or_id: &str) -> Result<Option<Source>> {
        let row = sqlx::query(concat!(
            "SELECT ",
            source_cols!(),
            " FROM sources WHERE id = ?1 OR name_key = ?2 ORDER BY (id = ?1) DESC LIMIT 1"
        ))
        .bind(name_or_id.trim())
        .bind(name_key(name_or_id))
        .fetch_optional(&self.pool)
        .await
        .map_err(StateError::db("looking up a source"))?;
        row.as_ref().map(source_from_row).transpose()
    }

    async fn list_sources(&self) -> Result<Vec<Source>> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            source_cols!(),
            " FROM sources ORDER BY name_key"
        ))
        .fetch_all(&self.pool)
        .await
        .map_err(StateError::db("listing sources"))?;
        rows.iter().map(source_from_row).collect()
    }

    async fn update_source(&self, source_id: &str, update: SourceUpdate) -> Result<Source> {
        let mut tx = self.begin("updating a source").await?;
        let old = Self::source_by_id(&mut tx, source_id)
            .await?
            .ok_or_else(|| StateError::SourceNotFound(source_id.to_owned()))?;
        let name = match &update.name {
            Some(n) => validate_name(n)?,
            None => old.name.clone(),
        };
        if name_key(&name) != name_key(&old.name)
            && Self::name_taken(&mut tx, &name_key(&name), Some(source_id)).await?
        {
            return Err(StateError::DuplicateName { name });
        }
        let base_url = match &update.base_url {
            Some(u) => validate_base_url(&name, u)?,
            None => old.base_url.clone(),
        };
        let (key_ref, key_value) = match &update.key {
            Some(k) => {
                validate_key_input(&name, k)?;
                key_columns(k)
            }
            None => (
                old.key_ref.to_db(),
                old.stored_key
                    .as_ref()
                    .map(|k| k.expose_secret().to_owned()),
            ),
        };
        let expires = update.key_expires_at.unwrap_or(old.key_expires_at);
        let alarm = validate_alarm(
            &name,
            update
                .dropoff_alarm_minutes
                .unwrap_or(old.dropoff_alarm_minutes),
        )?;
        let poll = validate_poll_interval(
            &name,
            update.poll_interval_secs.unwrap_or(old.poll_interval_secs),
        )?;
        let managed = update.config_managed.unwrap_or(old.config_managed);
        let r = sqlx::query(
            "UPDATE sources SET name = ?2, name_key = ?3, base_url = ?4, key_ref = ?5, key_value = ?6, \
             key_expires_at_ms = ?7, dropoff_alarm_minutes = ?8, poll_interval_secs = ?9, config_managed = ?10, \
             updated_at_ms = ?11 WHERE id = ?1",
        )
        .bind(source_id)
        .bind(&name)
        .bind(name_key(&name))
        .bind(&base_url)
        .bind(key_ref)
        .bind(key_value)
        .bind(expires.map(|t| t.as_millisecond()))
        .bind(alarm.map(i64::from))
        .bind(i64::from(poll))
        .bind(i64::from(managed))
        .bind(now_ms())
        .execute(&mut *tx)
        .await;
        match r {
            Ok(_) => {}
            Err(e) if unique_violation(&e) => return Err(StateError::DuplicateName { name }),
            Err(e) => return Err(StateError::db("updating a source")(e)),
        }
        let source = Self::source_by_id(&mut tx, source_id)
            .await?
            .ok_or_else(|| StateError::SourceNotFound(source_id.to_owned()))?;
        tx.commit()
            .await
            .map_err(StateError::db("committing a source update"))?;
        Ok(source)
    }

    async fn set_paused(&self, source_id: &str, paused: bool) -> Result<Source> {
        let mut tx = self.begin("pausing or resuming a source").await?;
        let n = sqlx::query("UPDATE sources SET paused = ?2, updated_at_ms = ?3 WHERE id = ?1")
            .bind(source_id)
            .bind(i64::from(paused))
            .bind(now_ms())
            .execute(&mut *tx)
            .await
            .map_err(StateError::db("pausing or resuming a source"))?
            .rows_affected();
        if n == 0 {
            return Err(StateError::SourceNotFound(source_id.to_owned()));
        }
        let source = Self::source_by_id(&mut tx, source_id)
            .await?
            .ok_or_else(|| StateError::SourceNotFound(source_id.to_owned()))?;
        tx.commit()
            .await
            .map_err(StateError::db("committing pause/resume"))?;
        Ok(source)
    }

    async fn remove_source(&self, source_id: &str, force: bool) -> Result<()> {
        let mut tx = self.begin("removing a source").await?;
        let source = Self::source_by_id(&mut tx, source_id)
            .await?
            .ok_or_else(|| StateError::SourceNotFound(source_id.to_owned()))?;
        let pending = Self::unfinished_count(&mut *tx, source_id).await?;
        if pending > 0 && !force {
            return Err(StateError::PendingData {
                name: source.name,
                batches: pending,
            });
        }
        for (sql, ctx) in [
            (
                "DELETE FROM seen WHERE source_key = \
                 (SELECT key FROM source_keys WHERE source_id = ?1)",
                "removing a source's seen ids",
            ),
            (
                "DELETE FROM lake_batches WHERE source_id = ?1",
                "removing a source's lake batches",
            ),
            (
                "DELETE FROM checkpoints WHERE source_id = ?1",
                "removing a source's checkpoint",
            ),
            (
                "DELETE FROM runs WHERE source_id = ?1",
                "removing a source's runs",
            ),
            (
                "DELETE FROM source_health WHERE source_id = ?1",
                "removing a source's health",
            ),
            ("DELETE FROM sources WHERE id = ?1", "removing a source"),
        ] {
            sqlx::query(sql)
                .bind(source_id)
                .execute(&mut *tx)
                .await
                .map_err(StateError::db(ctx))?;
        }
        tx.commit()
            .await
            .map_err(StateError::db("committing a source removal"))?;
        if pending > 0 {
            tracing::warn!(source = %source.name, batches = pending, "removed a source with unfinished lake batches (forced)");
        }
        Ok(())
    }

    async fn checkpoint(&self, source_id: &str) -> Result<Option<StoredCheckpoint>> {
        let row = sqlx::query(
            "SELECT cursor, max_processed_at_ms, ids_at_max, page_seq, updated_at_ms FROM checkpoints WHERE source_id = ?1",
        )
        .bind(source_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(StateError::db("reading a checkpoint"))?;
        let Some(row) = row else { return Ok(None) };
        let ids: String = get(&row, "ids_at_max")?;
        let ids_at_max: Vec<String> =
            serde_json::from_str(&ids).map_err(|e| StateError::Corrupt {
                what: "checkpoints.ids_at_max".into(),
                reason: e.to_string(),
            })?;
        Ok(Some(StoredCheckpoint {
            checkpoint: Checkpoint {
                cursor: get(&row, "cursor")?,
                max_processed_at_ms: get(&row, "max_processed_at_ms")?,
                ids_at_max,
                page_seq: get(&row, "page_seq")?,
            },
            updated_at: ts("checkpoints.updated_at_ms", get(&row, "updated_at_ms")?)?,
        }))
    }

    async fn save_checkpoint(&self, source_id: &str, checkpoint: &Checkpoint) -> Result<()> {
        let mut tx = self.begin("saving a checkpoint").await?;
        Self::require_source(&mut tx, source_id).await?;
        Self::write_checkpoint(&mut tx, source_id, checkpoint).await?;
        Self::touch_health(&mut tx, source_id, false).await?;
        tx.commit()
            .await
            .map_err(StateError::db("committing a checkpoint"))
    }

    async fn begin_batch(
        &self,
        source_id: &str,
        batch_id: &str,
        events: &[EventKey],
        files: &[String],
    ) -> Result<Vec<String>> {
        if let Some(e) = events.iter().find(|e| e.event_id.is_empty()) {
            return Err(StateError::InvalidArgument(format!(
                "begin_batch for source {source_id}: an event has an empty id (processedAt {:?}); events without an id cannot be de-duplicated",
                e.processed_at_ms
            )));
        }
        let now = now_ms();
        let files_json = serde_json::to_string(files)
            .map_err(|e| StateError::InvalidArgument(format!("batch files: {e}")))?;
        // One statement claims every event: a JSON object of id: processedAt members, expanded by
        // SQLite, in key order. An event is recognized by its processedAt and id (what the API serves
        // again is the same event, with the processedAt it had); keys follow the stream's order, so
        // claims append to the index instead of landing on random pages. Members, not [processedAt,
        // id] pairs or "processedAt:id" strings: `json_each` gives a member's name and value as
        // they are, where a pair costs parsing twice and a string splitting (`substr`, `instr`,
        // a cast) per event.
        let mut keys: Vec<(i64, &str)> = events
            .iter()
            .map(|e| {
                (
                    e.processed_at_ms.unwrap_or(NO_PROCESSED_AT),
                    e.event_id.as_str(),
                )
            })
            .collect();
        keys.sort_unstable();
        keys.dedup();
        let keys_json = keys_json(&keys);
        let mut tx = self.begin("beginning a lake batch").await?;
        // Claims name their source by a small number (`source_keys`), not its id text: numbered
        // on its first batch, and no number means no such source. One statement, not three (a
        // count, an insert, a select): each is a round trip to the connection's thread, on the
        // path that holds the writer lock.
        let source_key: i64 = sqlx::query_scalar(
            "INSERT INTO source_keys (source_id) SELECT id FROM sources WHERE id = ?1 \
             ON CONFLICT (source_id) DO UPDATE SET source_id = excluded.source_id RETURNING key",
        )
        .bind(source_id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(StateError::db("numbering a source's claims"))?
        .ok_or_else(|| StateError::SourceNotFound(source_id.to_owned()))?;
        let seq: i64 = sqlx::query_scalar(
            "INSERT INTO lake_batches (batch_id, source_id, created_at_ms, files) VALUES (?1, ?2, ?3, ?4) RETURNING seq",
        )
        .bind(batch_id)
        .bind(source_id)
        .bind(now)
        .bind(files_json)
        .fetch_one(&mut *tx)
        .await
        .map_err(StateError::db("recording a lake batch"))?;
        let inserted = sqlx::query(
            "INSERT INTO seen (source_key, at_ms, event_id, batch_seq) \
             SELECT ?1, value, key, ?2 FROM json_each(?3) WHERE true \
             ON CONFLICT (source_key, at_ms, event_id) DO NOTHING",
        )
        .bind(source_key)
        .bind(seq)
        .bind(&keys_json)
        .execute(&mut *tx)
        .await
        .map_err(StateError::db("claiming event ids"))?
        .rows_affected();
        // Usually every event is new; otherwise ask which ones were stored before (few, and
        // returning them is cheaper than returning every claimed id).
        let stored_before: foldhash::HashSet<String> = if inserted as usize == keys.len() {
            foldhash::HashSet::default()
        } else {
            sqlx::query_scalar(
                "SELECT s.event_id FROM json_each(?3) AS j JOIN seen AS s \
                 ON s.source_key = ?1 \
                 AND s.at_ms = j.value AND s.event_id = j.key \
                 WHERE s.batch_seq IS NOT ?2",
            )
            .bind(source_key)
            .bind(seq)
            .bind(&keys_json)
            .fetch_all(&mut *tx)
            .await
            .map_err(StateError::db("finding ids stored before"))?
            .into_iter()
            .collect()
        };
        tx.commit()
            .await
            .map_err(StateError::db("committing a batch start"))?;
        // The claimed ids, in the order of `events`, each once.
        let mut out = Vec::with_capacity(keys.len().saturating_sub(stored_before.len()));
        let mut taken: foldhash::HashSet<&str> =
            foldhash::HashSet::with_capacity_and_hasher(keys.len(), Default::default());
        for e in events {
            if !stored_before.contains(&e.event_id) && taken.insert(e.event_id.as_str()) {
                out.push(e.event_id.clone());
            }
        }
        Ok(out)
    }

    async fn commit_batch(
        &self,
        batch_id: &str,
        rows: u64,
        checkpoint: Option<&Checkpoint>,
    ) -> Result<()> {
        let mut tx = self.begin("committing a lake batch").await?;
        let source_id: Option<String> = sqlx::query_scalar(
            "SELECT source_id FROM lake_batches WHERE batch_id = ?1 AND finished_at_ms IS NULL",
        )
        .bind(batch_id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(StateError::db("looking up a lake batch"))?;
        let source_id = source_id.ok_or_else(|| StateError::UnknownBatch(batch_id.to_owned()))?;
        sqlx::query(
            "UPDATE lake_batches SET committed_at_ms = COALESCE(committed_at_ms, ?2), row_count = ?3 WHERE batch_id = ?1",
        )
        .bind(batch_id)
        .bind(now_ms())
        .bind(to_i64("rows", rows)?)
        .execute(&mut *tx)
        .await
        .map_err(StateError::db("committing a lake batch"))?;
        if let Some(c) = checkpoint {
            Self::write_checkpoint(&mut tx, &source_id, c).await?;
        }
        Self::touch_health(&mut tx, &source_id, rows > 0).await?;
        tx.commit()
            .await
            .map_err(StateError::db("committing a lake batch"))
    }

    async fn finish_batch(&self, batch_id: &str) -> Result<()> {
        let n = sqlx::query(
            "UPDATE lake_batches SET finished_at_ms = COALESCE(finished_at_ms, ?2) \
             WHERE batch_id = ?1 AND committed_at_ms IS NOT NULL",
        )
        .bind(batch_id)
        .bind(now_ms())
        .execute(&self.pool)
        .await
        .map_err(StateError::db("finishing a lake batch"))?
        .rows_affected();
        if n == 0 {
            return Err(StateError::UnknownBatch(batch_id.to_owned()));
        }
        Ok(())
    }

    async fn unfinished_batches(&self, source_id: &str) -> Result<Vec<UnfinishedBatch>> {
        let rows = sqlx::query(
            "SELECT batch_id, files, committed_at_ms FROM lake_batches \
             WHERE source_id = ?1 AND finished_at_ms IS NULL ORDER BY seq",
        )
        .bind(source_id)
        .fetch_all(&self.pool)
        .await
        .map_err(StateError::db("listing unfinished lake batches"))?;
        rows.iter()
            .map(|row| {
                let files: String = get(row, "files")?;
                let committed: Option<i64> = get(row, "committed_at_ms")?;
                Ok(UnfinishedBatch {
                    batch_id: get(row, "batch_id")?,
                    files: serde_json::from_str(&files).map_err(|e| StateError::Corrupt {
                        what: "lake_batches.files".into(),
                        reason: e.to_string(),
                    })?,
                    committed: committed.is_some(),
                })
            })
            .collect()
    }

    async fn abandon_batch(&self, batch_id: &str) -> Result<()> {
        let mut tx = self.begin("abandoning a lake batch").await?;
        let committed: Option<Option<i64>> =
            sqlx::query_scalar("SELECT committed_at_ms FROM lake_batches WHERE batch_id = ?1")
                .bind(batch_id)
                .fetch_optional(&mut *tx)
                .await
                .map_err(StateError::db("looking up a lake batch"))?;
        match committed {
            None => return Err(StateError::UnknownBatch(batch_id.to_owned())),
            Some(Some(_)) => {
                return Err(StateError::InvalidArgument(format!(
                    "lake batch {batch_id} is committed: publish its files, do not abandon it"
                )));
            }
            Some(None) => {}
        }
        // No index on batch_seq: a crash recovery is rare, a scan is fine.
        for (sql, ctx) in [
            (
                "DELETE FROM seen WHERE batch_seq = (SELECT seq FROM lake_batches WHERE batch_id = ?1)",
                "releasing a batch's ids",
            ),
            (
                "DELETE FROM lake_batches WHERE batch_id = ?1",
                "dropping a lake batch",
            ),
        ] {
            sqlx::query(sql)
                .bind(batch_id)
                .execute(&mut *tx)
                .await
                .map_err(StateError::db(ctx))?;
        }
        tx.commit()
            .await
            .map_err(StateError::db("committing a batch abandon"))
    }

    async fn lock_writer(&self, source_id: &str) -> Result<WriterLock> {
        let dir = self.path.with_file_name("locks");
        let path = dir.join(format!("writer-{}.lock", lock_name(source_id)));
        tokio::task::spawn_blocking(move || WriterLock::acquire(&dir, &path))
            .await
            .map_err(|_| StateError::Task("taking a source's writer lock"))?
    }

    async fn seen_stats(&self, source_id: &str) -> Result<SeenStats> {
        let seen: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM seen \
             WHERE source_key = (SELECT key FROM source_keys WHERE source_id = ?1)",
        )
        .bind(source_id)
        .fetch_one(&self.pool)
        .await
        .map_err(StateError::db("counting seen ids"))?;
        let unfinished = Self::unfinished_count(&self.pool, source_id).await?;
        Ok(SeenStats {
            seen_ids: to_u64("seen count", seen)?,
            unfinished_batches: to_u64("batch count", unfinished)?,
        })
    }

    async fn prune_seen(&self, before_ms: i64) -> Result<u64> {
        let mut tx = self.begin("pruning seen event ids").await?;
        let n = sqlx::query(
            "DELETE FROM seen WHERE at_ms >= 0 AND at_ms < ?1 \
             AND batch_seq NOT IN (SELECT seq FROM lake_batches WHERE committed_at_ms IS NULL)",
        )
        .bind(before_ms)
        .execute(&mut *tx)
        .await
        .map_err(StateError::db("pruning seen event ids"))?
        .rows_affected();
        sqlx::query(
            "DELETE FROM lake_batches WHERE finished_at_ms IS NOT NULL AND finished_at_ms < ?1",
        )
        .bind(before_ms)
        .execute(&mut *tx)
        .await
        .map_err(StateError::db("pruning finished lake batches"))?;
        tx.commit()
            .await
            .map_err(StateError::db("committing a prune"))?;
        Ok(n)
    }

    async fn record_run(&self, run: &RunRecord) -> Result<()> {
        let mut tx = self.begin("recording a run").await?;
        Self::require_source(&mut tx, &run.source_id).await?;
        sqlx::query(
            "INSERT INTO runs (source_id, started_at_ms, ended_at_ms, pages, events, status, error) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )
        .bind(&run.source_id)
        .bind(run.started_at.as_millisecond())
        .bind(run.ended_at.as_millisecond())
        .bind(to_i64("pages", run.pages)?)
        .bind(to_i64("events", run.events)?)
        .bind(run.status.as_str())
        .bind(&run.error)
        .execute(&mut *tx)
        .await
        .map_err(StateError::db("recording a run"))?;
        sqlx::query(
            "DELETE FROM runs WHERE source_id = ?1 AND run_id <= \
             (SELECT run_id FROM runs WHERE source_id = ?1 ORDER BY run_id DESC LIMIT 1 OFFSET ?2)",
        )
        .bind(&run.source_id)
        .bind(RUNS_KEPT_PER_SOURCE)
        .execute(&mut *tx)
        .await
        .map_err(StateError::db("trimming run history"))?;
        Self::ensure_health_row(&mut tx, &run.source_id).await?;
        let at = run.ended_at.as_millisecond();
        match run.status {
            RunStatus::Success => {
                sqlx::query(
                    "UPDATE source_health SET last_success_at_ms = MAX(COALESCE(last_success_at_ms, ?2), ?2) WHERE source_id = ?1",
                )
                .bind(&run.source_id)
                .bind(at)
                .execute(&mut *tx)
                .await
                .map_err(StateError::db("updating source health"))?;
            }
            RunStatus::Failed => {
                let msg = run
                    .error
                    .as_deref()
                    .unwrap_or("the run failed without an error message");
                sqlx::query("UPDATE source_health SET last_error = ?2, last_error_at_ms = ?3 WHERE source_id = ?1")
                    .bind(&run.source_id)
                    .bind(msg)
                    .bind(at)
                    .execute(&mut *tx)
                    .await
                    .map_err(StateError::db("updating source health"))?;
            }
            RunStatus::Cancelled => {}
        }
        tx.commit()
            .await
            .map_err(StateError::db("committing a run"))
    }

    async fn recent_runs(&self, source_id: &str, limit: usize) -> Result<Vec<RunRecord>> {
        let limit = to_i64("limit", limit as u64)?;
        let rows = sqlx::query(
            "SELECT source_id, started_at_ms, ended_at_ms, pages, events, status, error FROM runs \
             WHERE source_id = ?1 ORDER BY run_id DESC LIMIT ?2",
        )
        .bind(source_id)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(StateError::db("listing runs"))?;
        rows.iter()
            .map(|r| {
                Ok(RunRecord {
                    source_id: get(r, "source_id")?,
                    started_at: ts("runs.started_at_ms", get(r, "started_at_ms")?)?,
                    ended_at: ts("runs.ended_at_ms", get(r, "ended_at_ms")?)?,
                    pages: to_u64("runs.pages", get(r, "pages")?)?,
                    events: to_u64("runs.events", get(r, "events")?)?,
                    status: RunStatus::from_db(&get::<String>(r, "status")?)?,
                    error: get(r, "error")?,
                })
            })
            .collect()
    }

    async fn record_error(&self, source_id: &str, at: Timestamp, message: &str) -> Result<()> {
        let mut tx = self.begin("recording a source error").await?;
        Self::require_source(&mut tx, source_id).await?;
        Self::ensure_health_row(&mut tx, source_id).await?;
        sqlx::query(
            "UPDATE source_health SET last_error = ?2, last_error_at_ms = ?3 WHERE source_id = ?1",
        )
        .bind(source_id)
        .bind(message)
        .bind(at.as_millisecond())
        .execute(&mut *tx)
        .await
        .map_err(StateError::db("recording a source error"))?;
        tx.commit()
            .await
            .map_err(StateError::db("committing a source error"))
    }

    async fn record_success(&self, source_id: &str, at: Timestamp) -> Result<()> {
        let mut tx = self.begin("recording a successful poll").await?;
        Self::require_source(&mut tx, source_id).await?;
        Self::ensure_health_row(&mut tx, source_id).await?;
        sqlx::query(
            "UPDATE source_health SET last_success_at_ms = MAX(COALESCE(last_success_at_ms, ?2), ?2) WHERE source_id = ?1",
        )
        .bind(source_id)
        .bind(at.as_millisecond())
        .execute(&mut *tx)
        .await
        .map_err(StateError::db("recording a successful poll"))?;
        tx.commit()
            .await
            .map_err(StateError::db("committing a successful poll"))
    }

    async fn source_health(&self, source_id: &str) -> Result<SourceHealth> {
        let row = sqlx::query(
            "SELECT last_success_at_ms, last_error, last_error_at_ms, last_commit_at_ms, last_data_at_ms \
             FROM source_health WHERE source_id = ?1",
        )
        .bind(source_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(StateError::db("reading source health"))?;
        let Some(row) = row else {
            let mut conn = self
                .pool
                .acquire()
                .await
                .map_err(StateError::db("reading source health"))?;
            Self::require_source(&mut conn, source_id).await?;
            return Ok(SourceHealth::default());
        };
        Ok(SourceHealth {
            last_success_at: opt_ts(
                "source_health.last_success_at_ms",
                get(&row, "last_success_at_ms")?,
            )?,
            last_error: get(&row, "last_error")?,
            last_error_at: opt_ts(
                "source_health.last_error_at_ms",
                get(&row, "last_error_at_ms")?,
            )?,
            last_commit_at: opt_ts(
                "source_health.last_commit_at_ms",
                get(&row, "last_commit_at_ms")?,
            )?,
            last_data_at: opt_ts(
                "source_health.last_data_at_ms",
                get(&row, "last_data_at_ms")?,
            )?,
        })
    }
}

// ----- access for the alarm store (src/alarms.rs, schema version 2) -----

impl SqliteStore {
    pub(crate) fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    pub(crate) async fn begin_write(
        &self,
        context: &'static str,
    ) -> Result<sqlx::Transaction<'static, sqlx::Sqlite>> {
        self.begin(context).await
    }
}
