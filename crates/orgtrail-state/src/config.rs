//! Sources declared in the TOML config file (`<data-dir>/orgtrail.toml`).
//!
//! ```toml
//! [[source]]
//! name = "My Atlassian Event logs"
//! org_id = "..."
//! api_key = "env:ATLASSIAN_KEY"   # or "file:/path"; a literal key is refused
//! base_url = "https://api.atlassian.com"   # optional
//! key_expires_at = "2026-12-31"            # optional: a date (00:00 UTC) or an RFC 3339 instant
//! dropoff_alarm = "24h"                    # optional, 15m..30d
//! poll_interval = "60s"                    # optional, 1s..1d
//! ```

use std::path::{Path, PathBuf};
use std::time::Duration;

use jiff::Timestamp;

use crate::error::{Result, StateError};
use crate::model::{
    DEFAULT_BASE_URL, DEFAULT_POLL_INTERVAL_SECS, KeyInput, KeyRef, MAX_DROPOFF_ALARM_MINUTES,
    MAX_POLL_INTERVAL_SECS, MIN_DROPOFF_ALARM_MINUTES, NewSource, Source, SourceUpdate, name_key,
    validate_alarm, validate_base_url, validate_name, validate_org_id, validate_poll_interval,
};
use crate::store::StateStore;

/// A source as declared in the config file. Its key is always a reference (`env:` or `file:`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceSpec {
    pub name: String,
    pub org_id: String,
    /// [`KeyRef::Env`] or [`KeyRef::File`], never [`KeyRef::Stored`].
    pub key: KeyRef,
    pub base_url: Option<String>,
    pub key_expires_at: Option<Timestamp>,
    pub dropoff_alarm_minutes: Option<u32>,
    pub poll_interval_secs: Option<u32>,
}

/// What [`sync_config`] did, by source name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncReport {
    /// New sources created from the config.
    pub added: Vec<String>,
    /// Config-managed sources whose settings changed.
    pub updated: Vec<String>,
    /// Sources added earlier by hand (CLI/console) with the same name, now config-managed.
    pub adopted: Vec<String>,
    pub unchanged: Vec<String>,
    /// Config-managed sources no longer in the config. They are kept (with their checkpoint and
    /// seen ids): remove them explicitly.
    pub orphaned: Vec<String>,
}

/// Parses a duration such as `60s`, `15m`, `24h`, `30d` or `1h30m`. Units: `s`, `m`, `h`, `d`.
pub fn parse_duration(s: &str) -> std::result::Result<Duration, String> {
    let s = s.trim();
    if s.is_empty() {
        return Err("empty duration; write e.g. \"60s\", \"15m\", \"24h\" or \"30d\"".into());
    }
    let mut total: u64 = 0;
    let mut digits = String::new();
    for c in s.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let unit: u64 = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            _ => {
                return Err(format!(
                    "{s:?} is not a duration: unknown unit {c:?}; use s, m, h or d (e.g. \"24h\")"
                ));
            }
        };
        let n: u64 = digits.parse().map_err(|_| {
            format!("{s:?} is not a duration: a number must come before {c:?} (e.g. \"24h\")")
        })?;
        digits.clear();
        total = n
            .checked_mul(unit)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(|| format!("{s:?} is too long a duration"))?;
    }
    if !digits.is_empty() {
        return Err(format!(
            "{s:?} has no unit; write e.g. \"{digits}s\" or \"{digits}m\""
        ));
    }
    Ok(Duration::from_secs(total))
}

fn parse_expiry(s: &str) -> std::result::Result<Timestamp, String> {
    let s = s.trim();
    if let Ok(t) = s.parse::<Timestamp>() {
        return Ok(t);
    }
    match s.parse::<jiff::civil::Date>() {
        Ok(d) => jiff::tz::Offset::UTC
            .to_timestamp(d.to_datetime(jiff::civil::Time::midnight()))
            .map_err(|e| format!("{s:?}: {e}")),
        Err(_) => Err(format!(
            "{s:?} is not a date (YYYY-MM-DD) or an RFC 3339 time (2026-12-31T00:00:00Z)"
        )),
    }
}

/// Reads and validates the config file at `path`. A missing `[[source]]` list gives no sources.
pub fn load_config(path: impl AsRef<Path>) -> Result<Vec<SourceSpec>> {
    let path = path.as_ref();
    let text = std::fs::read_to_string(path).map_err(|e| StateError::Config {
        path: path.to_path_buf(),
        location: String::new(),
        message: format!("cannot read it: {e}"),
    })?;
    parse_config(path, &text)
}

/// Validates config `text`; `path` is only used in error messages.
pub fn parse_config(path: impl AsRef<Path>, text: &str) -> Result<Vec<SourceSpec>> {
    let path: PathBuf = path.as_ref().to_path_buf();
    let err = |location: String, message: String| StateError::Config {
        path: path.clone(),
        location,
        message,
    };
    // The TOML error's Display quotes the offending line, which may hold a key: use only its
    // message and position.
    let doc: toml::Table = text.parse::<toml::Table>().map_err(|e| {
        let location = e.span().map(|s| {
            let line = text[..s.start.min(text.len())].matches('\n').count() + 1;
            format!("line {line}: ")
        });
        err(
            location.unwrap_or_default(),
            format!("not valid TOML: {}", e.message()),
        )
    })?;
    let mut specs: Vec<SourceSpec> = Vec::new();
    for (key, value) in &doc {
        if key != "source" {
            return Err(err(
                String::new(),
                format!("unknown top-level key `{key}`; the file holds [[source]] tables"),
            ));
        }
        let Some(list) = value.as_array() else {
            return Err(err(
                String::new(),
                "`source` must be a list of tables: write [[source]]".into(),
            ));
        };
        for (i, item) in list.iter().enumerate() {
            let Some(table) = item.as_table() else {
                return Err(err(
                    format!("source #{}: ", i + 1),
                    "must be a table: write [[source]]".into(),
                ));
            };
            let spec = parse_source(table, i + 1).map_err(|(loc, msg)| err(loc, msg))?;
            if let Some(prev) = specs
                .iter()
                .find(|s| name_key(&s.name) == name_key(&spec.name))
            {
                return Err(err(
                    format!("source \"{}\": ", spec.name),
                    format!(
                        "the name is used twice (also \"{}\"; names are case-insensitive)",
                        prev.name
                    ),
                ));
            }
            specs.push(spec);
        }
    }
    Ok(specs)
}

const SOURCE_KEYS: &str =
    "name, org_id, api_key, base_url, key_expires_at, dropoff_alarm, poll_interval";

fn parse_source(
    t: &toml::Table,
    index: usize,
) -> std::result::Result<SourceSpec, (String, String)> {
    let name = match t.get("name").map(|v| v.as_str()) {
        Some(Some(n)) => validate_name(n)
            .map_err(|e| (format!("source #{index}: key `name`: "), e.to_string()))?,
        Some(None) => {
            return Err((
                format!("source #{index}: key `name`: "),
                "must be a string".into(),
            ));
        }
        None => {
            return Err((
                format!("source #{index}: "),
                "the key `name` is missing".into(),
            ));
        }
    };
    let at = |key: &str| format!("source \"{name}\": key `{key}`: ");
    let string = |key: &str| -> std::result::Result<Option<String>, (String, String)> {
        match t.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_str()
                .map(|s| Some(s.to_owned()))
                .ok_or_else(|| (at(key), "must be a string".into())),
        }
    };
    for k in t.keys() {
        if !SOURCE_KEYS.split(", ").any(|known| known == k) {
            return Err((
                format!("source \"{name}\": "),
                format!("unknown key `{k}`; known keys: {SOURCE_KEYS}"),
            ));
        }
    }
    let org_id = string("org_id")?.ok_or_else(|| {
        (
            format!("source \"{name}\": "),
            "the key `org_id` is missing".into(),
        )
    })?;
    let org_id = validate_org_id(&name, &org_id).map_err(|e| (at("org_id"), e.to_string()))?;
    // Never echo the api_key value: it may be a literal key.
    let key = match t.get("api_key") {
        None => {
            return Err((
                format!("source \"{name}\": "),
                "the key `api_key` is missing; write api_key = \"env:VAR\" or \"file:/path\"".into(),
            ));
        }
        Some(v) => match v.as_str() {
            None => return Err((at("api_key"), "must be a string such as \"env:VAR\" or \"file:/path\"".into())),
            Some(s) => KeyRef::parse_reference(s).ok_or_else(|| {
                (
                    at("api_key"),
                    "a literal API key (or a malformed reference) is refused in the config file; store the key in an environment variable (api_key = \"env:VAR\") or a file readable only by orgtrail (api_key = \"file:/path\")"
                        .to_owned(),
                )
            })?,
        },
    };
    let base_url = string("base_url")?
        .map(|u| validate_base_url(&name, &u).map_err(|e| (at("base_url"), e.to_string())))
        .transpose()?;
    let key_expires_at = string("key_expires_at")?
        .map(|s| parse_expiry(&s).map_err(|e| (at("key_expires_at"), e)))
        .transpose()?;
    let dropoff_alarm_minutes = match string("dropoff_alarm")? {
        None => None,
        Some(s) => {
            let d = parse_duration(&s).map_err(|e| (at("dropoff_alarm"), e))?;
            let secs = d.as_secs();
            if secs % 60 != 0 {
                return Err((
                    at("dropoff_alarm"),
                    format!("{s:?} is not a whole number of minutes"),
                ));
            }
            let minutes = u32::try_from(secs / 60).unwrap_or(u32::MAX);
            if !(MIN_DROPOFF_ALARM_MINUTES..=MAX_DROPOFF_ALARM_MINUTES).contains(&minutes) {
                return Err((at("dropoff_alarm"), format!("{s:?} is outside 15m..30d")));
            }
            Some(minutes)
        }
    };
    let poll_interval_secs = match string("poll_interval")? {
        None => None,
        Some(s) => {
            let d = parse_duration(&s).map_err(|e| (at("poll_interval"), e))?;
            let secs = u32::try_from(d.as_secs()).unwrap_or(u32::MAX);
            if secs == 0 || secs > MAX_POLL_INTERVAL_SECS {
                return Err((at("poll_interval"), format!("{s:?} is outside 1s..1d")));
            }
            Some(secs)
        }
    };
    Ok(SourceSpec {
        name,
        org_id,
        key,
        base_url,
        key_expires_at,
        dropoff_alarm_minutes,
        poll_interval_secs,
    })
}

fn spec_key_input(spec: &SourceSpec) -> Result<KeyInput> {
    Option::<KeyInput>::from(spec.key.clone()).ok_or_else(|| StateError::Invalid {
        source_name: spec.name.clone(),
        field: "api_key",
        reason: "a config-declared source must reference its key with env: or file:".into(),
    })
}

fn spec_matches(spec: &SourceSpec, s: &Source) -> bool {
    s.name == spec.name
        && s.key_ref == spec.key
        && s.base_url
            == spec
                .base_url
                .clone()
                .unwrap_or_else(|| DEFAULT_BASE_URL.to_owned())
        && s.key_expires_at == spec.key_expires_at
        && s.dropoff_alarm_minutes == spec.dropoff_alarm_minutes
        && s.poll_interval_secs
            == spec
                .poll_interval_secs
                .unwrap_or(DEFAULT_POLL_INTERVAL_SECS)
        && s.config_managed
}

/// Upserts the config-declared sources by name (case-insensitive) and marks them config-managed.
///
/// A source of the same name added by hand is adopted (keeps its id and checkpoint). A changed
/// `org_id` is refused (the checkpoint belongs to the old organization). Config-managed sources
/// missing from `specs` are reported as orphaned and kept. Paused flags are left alone.
pub async fn sync_config(store: &dyn StateStore, specs: &[SourceSpec]) -> Result<SyncReport> {
    let mut report = SyncReport::default();
    for spec in specs {
        validate_alarm(&spec.name, spec.dropoff_alarm_minutes)?;
        if let Some(p) = spec.poll_interval_secs {
            validate_poll_interval(&spec.name, p)?;
        }
        let key = spec_key_input(spec)?;
        match store.find_source(&spec.name).await? {
            None => {
                store
                    .add_source(NewSource {
                        name: spec.name.clone(),
                        org_id: spec.org_id.clone(),
                        base_url: spec.base_url.clone(),
                        key,
                        key_expires_at: spec.key_expires_at,
                        dropoff_alarm_minutes: spec.dropoff_alarm_minutes,
                        poll_interval_secs: spec.poll_interval_secs,
                        config_managed: true,
                    })
                    .await?;
                report.added.push(spec.name.clone());
            }
            Some(existing) => {
                if existing.org_id != spec.org_id {
                    return Err(StateError::Invalid {
                        source_name: spec.name.clone(),
                        field: "org_id",
                        reason: format!(
                            "the config says {} but the source collects organization {}; a source's organization cannot change: use a new name for the new organization (and remove the old source if it is no longer wanted)",
                            spec.org_id, existing.org_id
                        ),
                    });
                }
                if spec_matches(spec, &existing) {
                    report.unchanged.push(spec.name.clone());
                    continue;
                }
                let was_managed = existing.config_managed;
                store
                    .update_source(
                        &existing.id,
                        SourceUpdate {
                            name: Some(spec.name.clone()),
                            base_url: Some(
                                spec.base_url
                                    .clone()
                                    .unwrap_or_else(|| DEFAULT_BASE_URL.to_owned()),
                            ),
                            key: Some(key),
                            key_expires_at: Some(spec.key_expires_at),
                            dropoff_alarm_minutes: Some(spec.dropoff_alarm_minutes),
                            poll_interval_secs: Some(
                                spec.poll_interval_secs
                                    .unwrap_or(DEFAULT_POLL_INTERVAL_SECS),
                            ),
                            config_managed: Some(true),
                        },
                    )
                    .await?;
                if was_managed {
                    report.updated.push(spec.name.clone());
                } else {
                    report.adopted.push(spec.name.clone());
                }
            }
        }
    }
    for s in store.list_sources().await? {
        if s.config_managed
            && !specs
                .iter()
                .any(|sp| name_key(&sp.name) == name_key(&s.name))
        {
            report.orphaned.push(s.name);
        }
    }
    Ok(report)
}
