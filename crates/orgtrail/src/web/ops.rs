//! What the console can do, one function per operation: the JSON API and the HTML pages both call
//! these, so validation, verification and messages are the same everywhere.

use std::collections::HashMap;
use std::time::Duration;

use arrow::array::{Array, RecordBatch};
use arrow::datatypes::{DataType, SchemaRef};
use axum::http::StatusCode;
use jiff::{SignedDuration, Timestamp};
use orgtrail_atlassian::{ApiError, ApiKey, ErrorKind};
use orgtrail_lake::LakeError;
use orgtrail_state::{
    ExposeSecret, KeyInput, NewSource, RunStatus, SecretString, Source, SourceUpdate, StateError,
};
use serde::Serialize;

use super::App;
use super::status::{self, SourceStatus};

/// A failed operation: an HTTP status, a stable code and a message for people.
#[derive(Debug, Clone)]
pub struct OpError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// The input field at fault, if one is.
    pub field: Option<&'static str>,
    /// For a failed verification: `auth`, `forbidden`, `not_found`, ...
    pub kind: Option<&'static str>,
}

impl OpError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        OpError {
            status,
            code,
            message: message.into(),
            field: None,
            kind: None,
        }
    }

    pub fn invalid(field: &'static str, message: impl Into<String>) -> Self {
        OpError {
            field: Some(field),
            ..OpError::new(StatusCode::BAD_REQUEST, "invalid", message)
        }
    }
}

impl std::fmt::Display for OpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl From<StateError> for OpError {
    fn from(e: StateError) -> Self {
        let message = e.to_string();
        match e {
            StateError::DuplicateName { .. } => OpError {
                field: Some("name"),
                ..OpError::new(StatusCode::CONFLICT, "duplicate_name", message)
            },
            StateError::SourceNotFound(_) => {
                OpError::new(StatusCode::NOT_FOUND, "not_found", message)
            }
            StateError::Invalid { field, .. } => OpError::invalid(field, message),
            StateError::PendingData { .. } => {
                OpError::new(StatusCode::CONFLICT, "pending_data", message)
            }
            StateError::KeyUnavailable { .. } => OpError {
                field: Some("api_key"),
                ..OpError::new(StatusCode::BAD_REQUEST, "key_unavailable", message)
            },
            StateError::InvalidArgument(_) => {
                OpError::new(StatusCode::BAD_REQUEST, "invalid", message)
            }
            _ => {
                tracing::error!("state store: {message}");
                OpError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
            }
        }
    }
}

impl From<LakeError> for OpError {
    fn from(e: LakeError) -> Self {
        match e {
            LakeError::Query(m) => OpError {
                field: Some("sql"),
                ..OpError::new(StatusCode::BAD_REQUEST, "query_failed", m)
            },
            other => OpError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "lake_error",
                other.to_string(),
            ),
        }
    }
}

impl From<anyhow::Error> for OpError {
    fn from(e: anyhow::Error) -> Self {
        OpError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            format!("{e:#}"),
        )
    }
}

impl From<arrow::error::ArrowError> for OpError {
    fn from(e: arrow::error::ArrowError) -> Self {
        OpError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string())
    }
}

pub type OpResult<T> = Result<T, OpError>;

fn ts(t: Timestamp) -> String {
    t.to_string()
}

// ----- sources -----

/// Where a source's key lives, and its last four characters (never more).
#[derive(Debug, Clone, Serialize)]
pub struct KeyView {
    /// `stored`, `env:NAME` or `file:PATH`.
    pub reference: String,
    /// The last four characters, when the key can be read and is long enough to keep the rest
    /// secret.
    pub last4: Option<String>,
}

/// A source as the console and the API show it (never its key).
#[derive(Debug, Clone, Serialize)]
pub struct SourceView {
    pub id: String,
    pub name: String,
    pub kind: String,
    pub org_id: String,
    pub base_url: String,
    pub api_key: KeyView,
    pub key_expires_at: Option<String>,
    pub dropoff_alarm_minutes: Option<u32>,
    pub poll_interval_secs: u32,
    pub paused: bool,
    pub config_managed: bool,
    pub created_at: String,
    pub updated_at: String,
}

/// The last four characters of a key of at least 16 (shorter keys show nothing).
pub fn last4(key: &str) -> Option<String> {
    let n = key.chars().count();
    (n >= 16).then(|| key.chars().skip(n - 4).collect())
}

pub fn source_view(s: &Source) -> SourceView {
    let last4 = orgtrail_state::resolve_key(s)
        .ok()
        .and_then(|k| last4(k.expose_secret()));
    SourceView {
        id: s.id.clone(),
        name: s.name.clone(),
        kind: s.kind.clone(),
        org_id: s.org_id.clone(),
        base_url: s.base_url.clone(),
        api_key: KeyView {
            reference: s.key_ref.to_db(),
            last4,
        },
        key_expires_at: s.key_expires_at.map(ts),
        dropoff_alarm_minutes: s.dropoff_alarm_minutes,
        poll_interval_secs: s.poll_interval_secs,
        paused: s.paused,
        config_managed: s.config_managed,
        created_at: ts(s.created_at),
        updated_at: ts(s.updated_at),
    }
}

/// Events per hour of a source (by event time), oldest hour first.
#[derive(Debug, Clone, Serialize, Default)]
pub struct Activity {
    /// Events whose event time is within the last 24 hours.
    pub events_24h: u64,
    /// 24 hourly counts, the last one being the current hour.
    pub hourly: Vec<u64>,
}

/// One row of the Log Sources list.
#[derive(Debug, Clone, Serialize)]
pub struct SourceRow {
    #[serde(flatten)]
    pub source: SourceView,
    pub status: SourceStatus,
    pub activity: Activity,
}

/// Runs a console-internal query (not user SQL).
async fn internal_query(app: &App, sql: &str) -> OpResult<Vec<RecordBatch>> {
    let engine = app.lake.query_engine(&app.registry)?;
    Ok(engine.sql(sql).await?.1)
}

fn sql_str(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

fn strings(batch: &RecordBatch, col: usize) -> OpResult<Vec<Option<String>>> {
    let a = arrow::compute::cast(batch.column(col), &DataType::Utf8)?;
    let a = a
        .as_any()
        .downcast_ref::<arrow::array::StringArray>()
        .ok_or_else(|| anyhow::anyhow!("a cast to text gave no text"))?;
    Ok((0..a.len())
        .map(|i| a.is_valid(i).then(|| a.value(i).to_owned()))
        .collect())
}

fn ints(batch: &RecordBatch, col: usize) -> OpResult<Vec<i64>> {
    let a = arrow::compute::cast(batch.column(col), &DataType::Int64)?;
    let a = a
        .as_any()
        .downcast_ref::<arrow::array::Int64Array>()
        .ok_or_else(|| anyhow::anyhow!("a cast to integers gave no integers"))?;
    Ok((0..a.len())
        .map(|i| if a.is_valid(i) { a.value(i) } else { 0 })
        .collect())
}

/// Events per source and hour over the last 24 hours, read from the lake.
pub async fn activity(app: &App, now: Timestamp) -> OpResult<HashMap<String, Activity>> {
    let hour_now = now.as_second().div_euclid(3600);
    let since = Timestamp::from_second((hour_now - 23) * 3600)
        .map_err(|e| anyhow::anyhow!("time out of range: {e}"))?;
    let sql = format!(
        "SELECT p_source_id, CAST(floor(date_part('epoch', p_event_time) / 3600) AS BIGINT) AS h, count(*) AS n \
         FROM atlassian_audit WHERE p_event_time >= TIMESTAMP {} GROUP BY 1, 2",
        sql_str(&since.strftime("%Y-%m-%dT%H:%M:%S").to_string())
    );
    let mut out: HashMap<String, Activity> = HashMap::new();
    for b in internal_query(app, &sql).await? {
        let ids = strings(&b, 0)?;
        let hours = ints(&b, 1)?;
        let counts = ints(&b, 2)?;
        for ((id, h), n) in ids.into_iter().zip(hours).zip(counts) {
            let Some(id) = id else { continue };
            let idx = h - (hour_now - 23);
            let a = out.entry(id).or_insert_with(|| Activity {
                events_24h: 0,
                hourly: vec![0; 24],
            });
            if let Ok(i) = usize::try_from(idx)
                && i < 24
            {
                let n = u64::try_from(n).unwrap_or(0);
                a.hourly[i] += n;
                a.events_24h += n;
            }
        }
    }
    Ok(out)
}

/// Every source with its health and activity, by name.
pub async fn list_sources(app: &App) -> OpResult<Vec<SourceRow>> {
    let now = Timestamp::now();
    let sources = app.store.list_sources().await?;
    let mut activity = if sources.is_empty() {
        HashMap::new()
    } else {
        activity(app, now).await?
    };
    let mut rows = Vec::with_capacity(sources.len());
    for s in sources {
        let status = status::source_status(app.store.as_ref(), &s, now).await?;
        let act = activity.remove(&s.id).unwrap_or_else(|| Activity {
            events_24h: 0,
            hourly: vec![0; 24],
        });
        rows.push(SourceRow {
            source: source_view(&s),
            status,
            activity: act,
        });
    }
    Ok(rows)
}

/// One collection run, as shown.
#[derive(Debug, Clone, Serialize)]
pub struct RunView {
    pub started_at: String,
    pub ended_at: String,
    pub status: &'static str,
    pub pages: u64,
    pub events: u64,
    pub error: Option<String>,
}

/// How far collection got.
#[derive(Debug, Clone, Serialize, Default)]
pub struct Progress {
    /// The newest `processedAt` collected.
    pub collected_up_to: Option<String>,
    pub pages: i64,
    pub checkpoint_updated_at: Option<String>,
    /// Lake batches begun and not finished (0 while idle; more only while writing or after a crash).
    pub unfinished_batches: u64,
    /// Rows of this source in the lake.
    pub events_in_lake: u64,
    /// Classification failures of this source in the lake.
    pub failures_in_lake: u64,
}

/// A classification failure with its payload.
#[derive(Debug, Clone, Serialize)]
pub struct FailureView {
    pub parse_time: Option<String>,
    pub errors: Vec<String>,
    pub payload: String,
}

/// Everything the Source detail page shows.
#[derive(Debug, Clone, Serialize)]
pub struct SourceDetail {
    #[serde(flatten)]
    pub source: SourceView,
    pub status: SourceStatus,
    pub activity: Activity,
    pub progress: Progress,
    pub recent_runs: Vec<RunView>,
    /// Failed runs, newest first.
    pub recent_errors: Vec<RunView>,
    pub failures: Vec<FailureView>,
}

fn run_view(r: orgtrail_state::RunRecord) -> RunView {
    RunView {
        started_at: ts(r.started_at),
        ended_at: ts(r.ended_at),
        status: r.status.as_str(),
        pages: r.pages,
        events: r.events,
        error: r.error,
    }
}

pub async fn source_detail(app: &App, id: &str) -> OpResult<SourceDetail> {
    let now = Timestamp::now();
    let s = app.store.get_source(id).await?;
    let status = status::source_status(app.store.as_ref(), &s, now).await?;
    let activity = activity(app, now)
        .await?
        .remove(&s.id)
        .unwrap_or_else(|| Activity {
            events_24h: 0,
            hourly: vec![0; 24],
        });
    let checkpoint = app.store.checkpoint(&s.id).await?;
    let seen = app.store.seen_stats(&s.id).await?;
    let count = |table: &str| {
        format!(
            "SELECT count(*) FROM {table} WHERE p_source_id = {}",
            sql_str(&s.id)
        )
    };
    let first_int = |b: Vec<RecordBatch>| -> OpResult<u64> {
        Ok(match b.first() {
            Some(b) if b.num_rows() > 0 => u64::try_from(ints(b, 0)?[0]).unwrap_or(0),
            _ => 0,
        })
    };
    let events_in_lake = first_int(internal_query(app, &count("atlassian_audit")).await?)?;
    let failures_in_lake =
        first_int(internal_query(app, &count(orgtrail_lake::FAILURES_TABLE)).await?)?;
    let progress = Progress {
        collected_up_to: checkpoint
            .as_ref()
            .and_then(|c| c.checkpoint.max_processed_at_ms)
            .and_then(|ms| Timestamp::from_millisecond(ms).ok())
            .map(ts),
        pages: checkpoint.as_ref().map_or(0, |c| c.checkpoint.page_seq),
        checkpoint_updated_at: checkpoint.as_ref().map(|c| ts(c.updated_at)),
        unfinished_batches: seen.unfinished_batches,
        events_in_lake,
        failures_in_lake,
    };
    let runs = app.store.recent_runs(&s.id, 200).await?;
    let recent_errors: Vec<RunView> = runs
        .iter()
        .filter(|r| r.status == RunStatus::Failed)
        .take(10)
        .cloned()
        .map(run_view)
        .collect();
    let recent_runs = runs.into_iter().take(10).map(run_view).collect();
    let failures = failures(app, &s.id, 20).await?;
    Ok(SourceDetail {
        source: source_view(&s),
        status,
        activity,
        progress,
        recent_runs,
        recent_errors,
        failures,
    })
}

/// The newest classification failures of a source, with their payloads.
pub async fn failures(app: &App, source_id: &str, limit: usize) -> OpResult<Vec<FailureView>> {
    let sql = format!(
        "SELECT p_parse_time, errors, payload FROM {} WHERE p_source_id = {} ORDER BY p_parse_time DESC LIMIT {}",
        orgtrail_lake::FAILURES_TABLE,
        sql_str(source_id),
        limit.min(1000)
    );
    let rows = json_rows(&internal_query(app, &sql).await?)?;
    Ok(rows
        .into_iter()
        .map(|r| FailureView {
            parse_time: r
                .get("p_parse_time")
                .and_then(|v| v.as_str())
                .map(str::to_owned),
            errors: r
                .get("errors")
                .and_then(|v| v.as_array())
                .map(|a| {
                    a.iter()
                        .map(|e| {
                            let get = |k: &str| e.get(k).and_then(|v| v.as_str()).unwrap_or("");
                            format!("{}: {}", get("path"), get("message"))
                        })
                        .collect()
                })
                .unwrap_or_default(),
            payload: r
                .get("payload")
                .and_then(|v| v.as_str())
                .unwrap_or_default()
                .to_owned(),
        })
        .collect())
}

/// Puts a failed verification in words for the console (the CLI's messages name CLI commands).
pub fn explain_verification(e: &ApiError, org_id: &str, base_url: &str) -> OpError {
    let (kind, message) = match e.kind() {
        ErrorKind::Auth => (
            "auth",
            "Atlassian rejected the API key: it is invalid, revoked or expired (organization API keys \
             expire one week after creation unless another date was picked). Create a new key in \
             admin.atlassian.com → Settings → API keys and paste it again."
                .to_owned(),
        ),
        ErrorKind::Forbidden => (
            "forbidden",
            format!(
                "Atlassian refused access to the audit log{}: the key's creator is not an organization \
                 admin, or the organization's plan has no audit log (it needs Atlassian Guard Standard \
                 or Enterprise). Use a key created by an org admin of an organization with Atlassian Guard.",
                e.code().map(|c| format!(" ({c})")).unwrap_or_default()
            ),
        ),
        ErrorKind::NotFound => (
            "not_found",
            format!(
                "No organization with the ID {org_id} was found at {base_url}: check the Organization \
                 ID (the UUID in admin.atlassian.com/o/<Organization ID>/...) and, under Advanced, the \
                 API base URL."
            ),
        ),
        ErrorKind::Transport => (
            "unreachable",
            format!(
                "Could not reach {base_url}: check the API base URL (under Advanced) and the network. ({e})"
            ),
        ),
        ErrorKind::Config => ("config", e.to_string()),
        ErrorKind::RateLimited => ("rate_limited", e.to_string()),
        ErrorKind::Server => ("server", e.to_string()),
        _ => ("unexpected", e.to_string()),
    };
    let field = match kind {
        "auth" | "forbidden" => Some("api_key"),
        "not_found" => Some("org_id"),
        "unreachable" | "config" => Some("base_url"),
        _ => None,
    };
    OpError {
        status: StatusCode::UNPROCESSABLE_ENTITY,
        code: "verification_failed",
        message,
        field,
        kind: Some(kind),
    }
}

/// Checks credentials live with the shared verification of `source add`.
pub async fn verify(base_url: &str, org_id: &str, key: &SecretString) -> OpResult<()> {
    let key = ApiKey::new(key.expose_secret());
    crate::collect_cmd::verify_credentials(base_url, org_id, &key)
        .await
        .map_err(|e| explain_verification(&e, org_id, base_url))
}

/// A new source as typed in the console or sent to the API.
pub struct CreateInput {
    pub name: String,
    pub org_id: String,
    pub api_key: SecretString,
    pub base_url: Option<String>,
    pub key_expires_at: Option<String>,
    pub dropoff_alarm_minutes: Option<u32>,
}

pub fn check_name(name: &str) -> OpResult<String> {
    let name = name.trim();
    if name.is_empty() {
        return Err(OpError::invalid(
            "name",
            "enter a descriptive name for the source, e.g. My Atlassian Event logs",
        ));
    }
    if name.chars().count() > 200 || name.chars().any(char::is_control) {
        return Err(OpError::invalid(
            "name",
            "the name must be at most 200 characters, without control characters",
        ));
    }
    Ok(name.to_owned())
}

pub async fn check_name_free(app: &App, name: &str) -> OpResult<()> {
    if app.store.find_source(name).await?.is_some() {
        return Err(OpError {
            field: Some("name"),
            ..OpError::new(
                StatusCode::CONFLICT,
                "duplicate_name",
                format!("a source named \"{name}\" already exists; choose another name"),
            )
        });
    }
    Ok(())
}

/// The settings of a new source, checked before any request is sent: Organization ID, key, base
/// URL and key expiry.
pub struct CheckedCredentials {
    pub org_id: String,
    pub base_url: String,
    pub key_expires_at: Option<Timestamp>,
}

pub fn check_credentials(
    org_id: &str,
    key: &SecretString,
    base_url: Option<&str>,
    key_expires_at: Option<&str>,
) -> OpResult<CheckedCredentials> {
    let org_id = org_id.trim();
    if org_id.is_empty() || org_id.chars().any(|c| c.is_whitespace() || c == '/') {
        return Err(OpError::invalid(
            "org_id",
            "enter the Organization ID: the UUID in admin.atlassian.com/o/<Organization ID>/...",
        ));
    }
    check_key(key)?;
    let base_url = match base_url.map(str::trim).filter(|s| !s.is_empty()) {
        None => orgtrail_state::DEFAULT_BASE_URL.to_owned(),
        Some(u) => {
            let rest = u
                .strip_prefix("https://")
                .or_else(|| u.strip_prefix("http://"));
            if !rest.is_some_and(|h| !h.is_empty() && !h.contains(char::is_whitespace)) {
                return Err(OpError::invalid(
                    "base_url",
                    format!(
                        "the API base URL must be an http(s) URL such as {}",
                        orgtrail_state::DEFAULT_BASE_URL
                    ),
                ));
            }
            u.trim_end_matches('/').to_owned()
        }
    };
    let key_expires_at = parse_expiry(key_expires_at)?;
    Ok(CheckedCredentials {
        org_id: org_id.to_owned(),
        base_url,
        key_expires_at,
    })
}

pub fn check_key(key: &SecretString) -> OpResult<()> {
    let k = key.expose_secret();
    if k.trim().is_empty() {
        return Err(OpError::invalid(
            "api_key",
            "enter the API key created in admin.atlassian.com → Settings → API keys",
        ));
    }
    if k.trim()
        .chars()
        .any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(OpError::invalid(
            "api_key",
            "the API key contains spaces or line breaks; paste it again",
        ));
    }
    Ok(())
}

pub fn parse_expiry(s: Option<&str>) -> OpResult<Option<Timestamp>> {
    match s.map(str::trim).filter(|s| !s.is_empty()) {
        None => Ok(None),
        Some(d) => crate::collect_cmd::parse_date(d).map(Some).map_err(|_| {
            OpError::invalid(
                "key_expires_at",
                format!("{d:?} is not a date: use YYYY-MM-DD"),
            )
        }),
    }
}

pub fn check_alarm(minutes: Option<u32>) -> OpResult<Option<u32>> {
    match minutes {
        Some(m)
            if !(orgtrail_state::MIN_DROPOFF_ALARM_MINUTES
                ..=orgtrail_state::MAX_DROPOFF_ALARM_MINUTES)
                .contains(&m) =>
        {
            Err(OpError::invalid(
                "dropoff_alarm_minutes",
                format!(
                    "the drop-off alarm must be between 15 minutes and 30 days (43,200 minutes), not {m} minutes"
                ),
            ))
        }
        other => Ok(other),
    }
}

/// Trimmed key.
fn trimmed(key: &SecretString) -> SecretString {
    SecretString::from(key.expose_secret().trim().to_owned())
}

/// Adds a source after checking everything and verifying the credentials live (unless `verify`
/// is false); collection starts at once.
pub async fn create_source(app: &App, input: CreateInput, verify_first: bool) -> OpResult<Source> {
    let name = check_name(&input.name)?;
    check_name_free(app, &name).await?;
    let creds = check_credentials(
        &input.org_id,
        &input.api_key,
        input.base_url.as_deref(),
        input.key_expires_at.as_deref(),
    )?;
    let alarm = check_alarm(input.dropoff_alarm_minutes)?;
    let key = trimmed(&input.api_key);
    if verify_first {
        verify(&creds.base_url, &creds.org_id, &key).await?;
    }
    add_verified(
        app,
        name,
        creds.org_id,
        creds.base_url,
        key,
        creds.key_expires_at,
        alarm,
    )
    .await
}

/// Saves a source whose credentials were verified, and starts collecting it.
pub async fn add_verified(
    app: &App,
    name: String,
    org_id: String,
    base_url: String,
    key: SecretString,
    key_expires_at: Option<Timestamp>,
    alarm: Option<u32>,
) -> OpResult<Source> {
    let mut new = NewSource::new(name, org_id, KeyInput::Value(key));
    new.base_url = Some(base_url);
    new.key_expires_at = key_expires_at;
    new.dropoff_alarm_minutes = check_alarm(alarm)?;
    let source = app.store.add_source(new).await?;
    if let Some(c) = &app.collectors {
        c.start(&source)?;
    }
    Ok(source)
}

/// Changes to a source (`None` keeps a field; for the optional ones `Some(None)` clears).
#[derive(Default)]
pub struct UpdateInput {
    pub name: Option<String>,
    pub api_key: Option<SecretString>,
    pub base_url: Option<String>,
    pub key_expires_at: Option<Option<String>>,
    pub dropoff_alarm_minutes: Option<Option<u32>>,
    pub poll_interval_secs: Option<u32>,
}

/// Applies changes; a new key (or base URL) is verified first, and nothing changes if it fails.
pub async fn update_source(app: &App, id: &str, input: UpdateInput) -> OpResult<Source> {
    let s = app.store.get_source(id).await?;
    let name = input.name.as_deref().map(check_name).transpose()?;
    if let Some(n) = &name
        && !n.eq_ignore_ascii_case(&s.name)
    {
        check_name_free(app, n).await?;
    }
    let base_url = match &input.base_url {
        Some(u) => {
            let probe = SecretString::from("x".to_owned());
            Some(check_credentials(&s.org_id, &probe, Some(u), None)?.base_url)
        }
        None => None,
    };
    let key = match &input.api_key {
        Some(k) => {
            check_key(k)?;
            Some(trimmed(k))
        }
        None => None,
    };
    if key.is_some() || base_url.is_some() {
        let base = base_url.clone().unwrap_or_else(|| s.base_url.clone());
        let k = match &key {
            Some(k) => k.clone(),
            None => orgtrail_state::resolve_key(&s)?,
        };
        verify(&base, &s.org_id, &k).await?;
    }
    let key_expires_at = match input.key_expires_at {
        Some(d) => Some(parse_expiry(d.as_deref())?),
        None => None,
    };
    let dropoff = match input.dropoff_alarm_minutes {
        Some(m) => Some(check_alarm(m)?),
        None => None,
    };
    if let Some(p) = input.poll_interval_secs
        && (p == 0 || p > orgtrail_state::MAX_POLL_INTERVAL_SECS)
    {
        return Err(OpError::invalid(
            "poll_interval_secs",
            "the poll interval must be between 1 second and 1 day (86,400 seconds)",
        ));
    }
    let update = SourceUpdate {
        name,
        base_url,
        key: key.map(KeyInput::Value),
        key_expires_at,
        dropoff_alarm_minutes: dropoff,
        poll_interval_secs: input.poll_interval_secs,
        config_managed: None,
    };
    Ok(app.store.update_source(&s.id, update).await?)
}

pub async fn set_paused(app: &App, id: &str, paused: bool) -> OpResult<Source> {
    let s = app.store.get_source(id).await?;
    let s = app.store.set_paused(&s.id, paused).await?;
    if let (false, Some(c)) = (paused, &app.collectors) {
        c.start(&s)?;
    }
    Ok(s)
}

/// Removes a source; its data stays in the lake.
pub async fn delete_source(app: &App, id: &str, force: bool) -> OpResult<Source> {
    let s = app.store.get_source(id).await?;
    app.store.remove_source(&s.id, force).await?;
    Ok(s)
}

// ----- queries -----

/// Rows shown in the Data Explorer.
pub const PAGE_ROWS: usize = 500;
/// Rows an API call or a download returns at most.
pub const MAX_ROWS: usize = 100_000;
/// A query running longer is stopped.
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(60);

/// A query's result.
pub struct QueryOutput {
    pub schema: SchemaRef,
    pub batches: Vec<RecordBatch>,
    pub truncated: bool,
    pub elapsed: Duration,
}

impl QueryOutput {
    pub fn rows(&self) -> usize {
        self.batches.iter().map(RecordBatch::num_rows).sum()
    }
}

/// Runs user SQL read-only, keeping at most `max_rows` rows.
pub async fn run_query(app: &App, sql: &str, max_rows: usize) -> OpResult<QueryOutput> {
    if sql.trim().is_empty() {
        return Err(OpError::invalid("sql", "enter a SQL query"));
    }
    if sql.len() > 100_000 {
        return Err(OpError::invalid(
            "sql",
            "the query is longer than 100,000 characters",
        ));
    }
    let started = std::time::Instant::now();
    let engine = app.lake.query_engine(&app.registry)?;
    let r = tokio::time::timeout(QUERY_TIMEOUT, engine.sql_read_only(sql, max_rows))
        .await
        .map_err(|_| {
            OpError::new(
                StatusCode::REQUEST_TIMEOUT,
                "query_timeout",
                "the query ran longer than 60 seconds and was stopped: narrow the time range \
                 (p_occurs_since('1 day')) or add a LIMIT",
            )
        })??;
    Ok(QueryOutput {
        schema: r.schema,
        batches: r.batches,
        truncated: r.truncated,
        elapsed: started.elapsed(),
    })
}

/// The sample queries of the Data Explorer.
pub const SAMPLES: &[(&str, &str)] = &[
    (
        "Events by action",
        "SELECT attributes.action AS action, count(*) AS events\nFROM atlassian_audit\nGROUP BY 1\nORDER BY 2 DESC",
    ),
    (
        "Events by actor",
        "SELECT attributes.actor.email AS actor, count(*) AS events\nFROM atlassian_audit\nGROUP BY 1\nORDER BY 2 DESC\nLIMIT 50",
    ),
    (
        "Events by IP address",
        "SELECT attributes.location.ip AS ip, attributes.location.\"countryName\" AS country, count(*) AS events\nFROM atlassian_audit\nGROUP BY 1, 2\nORDER BY 3 DESC\nLIMIT 50",
    ),
    (
        "Last 24 hours",
        "SELECT p_event_time, attributes.action AS action, attributes.actor.email AS actor, attributes.location.ip AS ip\nFROM atlassian_audit\nWHERE p_occurs_since('1 day')\nORDER BY p_event_time DESC\nLIMIT 100",
    ),
    (
        "A time range (yesterday)",
        "SELECT p_event_time, attributes.action AS action, attributes.actor.email AS actor\nFROM atlassian_audit\nWHERE p_occurs_between(now() - interval '2 days', now() - interval '1 day')\nORDER BY p_event_time\nLIMIT 500",
    ),
    (
        "Classification failures",
        "SELECT p_parse_time, p_source_label, errors, payload\nFROM classification_failures\nORDER BY p_parse_time DESC\nLIMIT 50",
    ),
];

/// The `p_any_*` columns of the audit table.
pub fn indicator_columns(app: &App) -> OpResult<Vec<String>> {
    let schema = app
        .registry
        .get("Atlassian.Audit")
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(orgtrail_lake::arrow::table_schema(&schema)
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .filter(|n| n.starts_with("p_any_"))
        .collect())
}

/// The SQL of a quick search: events where any `p_any_*` indicator equals `q` exactly.
pub fn search_sql(app: &App, q: &str) -> OpResult<String> {
    let q = q.trim();
    if q.is_empty() {
        return Err(OpError::invalid(
            "q",
            "enter an IP address, email, username, domain or other indicator value",
        ));
    }
    if q.len() > 1000 {
        return Err(OpError::invalid(
            "q",
            "the search is longer than 1,000 characters",
        ));
    }
    let cols = indicator_columns(app)?;
    let lit = sql_str(q);
    let cond: Vec<String> = cols
        .iter()
        .map(|c| format!("array_has({c}, {lit})"))
        .collect();
    Ok(format!(
        "SELECT p_event_time, p_source_label, attributes.action AS action, attributes.actor.email AS actor, {}\n\
         FROM atlassian_audit\nWHERE {}\nORDER BY p_event_time DESC\nLIMIT 200",
        cols.join(", "),
        cond.join("\n   OR ")
    ))
}

// ----- result formats -----

/// Every cell as text (nested values in Arrow's display form), with the column names.
/// Column names and rows of cells (`None` for null).
pub type Cells = (Vec<String>, Vec<Vec<Option<String>>>);

pub fn cells(out: &QueryOutput) -> OpResult<Cells> {
    use arrow::util::display::{ArrayFormatter, FormatOptions};
    let names = out
        .schema
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    let mut rows = Vec::new();
    let opts = FormatOptions::default();
    for b in &out.batches {
        let fmts = b
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &opts))
            .collect::<Result<Vec<_>, _>>()?;
        for i in 0..b.num_rows() {
            rows.push(
                b.columns()
                    .iter()
                    .zip(&fmts)
                    .map(|(c, f)| c.is_valid(i).then(|| f.value(i).to_string()))
                    .collect(),
            );
        }
    }
    Ok((names, rows))
}

/// Rows as JSON objects (Arrow's JSON writer: structs as objects, lists as arrays, nulls omitted).
pub fn json_rows(
    batches: &[RecordBatch],
) -> OpResult<Vec<serde_json::Map<String, serde_json::Value>>> {
    let mut buf = Vec::new();
    {
        let mut w = arrow::json::ArrayWriter::new(&mut buf);
        for b in batches {
            w.write(b)?;
        }
        w.finish()?;
    }
    if buf.is_empty() {
        return Ok(Vec::new());
    }
    serde_json::from_slice(&buf)
        .map_err(|e| OpError::from(anyhow::anyhow!("cannot read the query result as JSON: {e}")))
}

/// The result as CSV with a header (nested values as text).
pub fn csv(out: &QueryOutput) -> OpResult<Vec<u8>> {
    let mut buf = Vec::new();
    if out.batches.is_empty() {
        let names: Vec<&str> = out
            .schema
            .fields()
            .iter()
            .map(|f| f.name().as_str())
            .collect();
        buf.extend_from_slice(names.join(",").as_bytes());
        buf.push(b'\n');
        return Ok(buf);
    }
    let mut w = arrow::csv::WriterBuilder::new()
        .with_header(true)
        .build(&mut buf);
    for b in &out.batches {
        w.write(&crate::lake_cmd::flatten_nested(b).map_err(OpError::from)?)?;
    }
    drop(w);
    Ok(buf)
}

/// How long ago `t` was, in words.
pub fn ago(t: Timestamp, now: Timestamp) -> String {
    let d: SignedDuration = now.duration_since(t);
    let s = d.as_secs();
    let span = |s: i64| match s {
        0..=59 => format!("{s} s"),
        60..=3599 => format!("{} min", s / 60),
        3600..=86_399 => format!("{} h", s / 3600),
        _ => format!("{} days", s / 86_400),
    };
    if s < 0 {
        format!("in {}", span(-s))
    } else {
        format!("{} ago", span(s))
    }
}
