//! `orgtrail source ...`, `backfill`, `run` and `demo`: onboarding and collection.

use std::collections::BTreeMap;
use std::io::{self, BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use jiff::{SignedDuration, Timestamp};
use orgtrail_atlassian::{ApiKey, Client, ClientConfig, NoHooks};
use orgtrail_engine::{CycleReport, Engine, EngineConfig, EngineError};
use orgtrail_lake::Lake;
use orgtrail_state::{
    ExposeSecret, KeyInput, NewSource, SecretString, Source, SourceUpdate, SqliteStore, StateStore,
};
use tokio_util::sync::CancellationToken;

#[derive(Debug, clap::Args)]
pub struct KeyArgs {
    /// Read the API key from this environment variable (stored as a reference, `env:VAR`)
    #[arg(long, value_name = "VAR", group = "key")]
    api_key_env: Option<String>,
    /// Read the API key from this file (stored as a reference, `file:PATH`)
    #[arg(long, value_name = "FILE", group = "key")]
    api_key_file: Option<PathBuf>,
    /// Read the API key from one line of standard input and store it in the state database (owner-only file)
    #[arg(long, group = "key")]
    api_key_stdin: bool,
}

/// Settings that `source add` and `source edit` share.
#[derive(Debug, clap::Args)]
pub struct SettingsArgs {
    #[command(flatten)]
    key: KeyArgs,
    /// API base URL (a regional host, or the simulator)
    #[arg(long, value_name = "URL")]
    base_url: Option<String>,
    /// When the API key expires (YYYY-MM-DD or RFC 3339): orgtrail warns ahead of it
    #[arg(long, value_name = "DATE")]
    key_expires: Option<String>,
    /// Alarm when no events arrive for this long (15m to 30d), e.g. 24h; `off` (edit) turns it off
    #[arg(long, value_name = "DURATION")]
    dropoff_alarm: Option<String>,
    /// How often to poll (default 60s)
    #[arg(long, value_name = "DURATION")]
    poll_interval: Option<String>,
    /// Do not call the API to check the credentials (a new key, for edit)
    #[arg(long)]
    no_verify: bool,
}

#[derive(Debug, clap::Subcommand)]
pub enum SourceCommand {
    /// Onboard an Atlassian organization: name, Organization ID, API key (verified live), key expiry, drop-off alarm
    #[command(
        after_help = "Without --no-input, asks for what is missing, in this order (the API key is read without echo).\n\n\
Examples:\n  orgtrail source add\n  orgtrail source add --name \"My Atlassian Event logs\" --org-id ORG --api-key-env ATLASSIAN_KEY --no-input\n  orgtrail source add ... --base-url http://127.0.0.1:8099   # a regional host or the simulator"
    )]
    Add {
        /// A descriptive name, e.g. "My Atlassian Event logs"
        #[arg(long)]
        name: Option<String>,
        /// The Atlassian Organization ID (the UUID in admin.atlassian.com/o/<id>/...)
        #[arg(long, value_name = "ID")]
        org_id: Option<String>,
        #[command(flatten)]
        settings: SettingsArgs,
        /// Never prompt; fail on what is missing
        #[arg(long)]
        no_input: bool,
    },
    /// List sources with their state
    List,
    /// Show one source: settings (never the key), checkpoint, de-duplication state, health, recent runs
    Show { name: String },
    /// Check a source's credentials against the API
    Verify { name: String },
    /// A source's health: status and why, last event, lag, volumes, errors, alarms, key expiry (exit 1 when unhealthy)
    Health {
        name: String,
        /// Print JSON
        #[arg(long)]
        json: bool,
    },
    /// Change a source: rename it, rotate its API key, change its URL, expiry, alarm or poll interval
    Edit {
        name: String,
        /// New name
        #[arg(long)]
        rename: Option<String>,
        #[command(flatten)]
        settings: SettingsArgs,
    },
    /// Stop collecting from a source (until resume)
    Pause { name: String },
    /// Collect from a paused source again
    Resume { name: String },
    /// Remove a source (its data stays in the lake)
    Remove {
        name: String,
        /// Remove even if collected events are not yet written to the lake
        #[arg(long)]
        force: bool,
    },
}

#[derive(Debug, clap::Args)]
pub struct BackfillArgs {
    /// The source's name
    name: String,
    /// How far back: a duration (30d, 12h) or a date (YYYY-MM-DD); at most 180 days (the API's retention)
    #[arg(long, value_name = "WHEN")]
    since: String,
}

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Collect once (until caught up) and exit (without the web console)
    #[arg(long)]
    once: bool,
    /// Turn off the proactive request limiter (benchmarks against the simulator only: the real API
    /// answers 429 beyond ~50 requests a minute)
    #[arg(long)]
    no_rate_limit: bool,
    #[command(flatten)]
    monitoring: crate::monitor_cmd::MonitorArgs,
    #[command(flatten)]
    console: crate::web::ConsoleArgs,
}

#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Exit once caught up instead of running until Ctrl-C
    #[arg(long)]
    once: bool,
    /// Events the simulator holds at start
    #[arg(long, default_value_t = 20_000)]
    events: usize,
    /// New events per second while it runs
    #[arg(long, default_value_t = 5.0)]
    live_rate: f64,
    #[command(flatten)]
    console: crate::web::ConsoleArgs,
}

pub struct Ctx {
    pub data_dir: PathBuf,
    pub lake: String,
    pub config: PathBuf,
}

pub(crate) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

pub(crate) async fn open_store(data_dir: &Path) -> anyhow::Result<Arc<dyn StateStore>> {
    let store = SqliteStore::open_in_dir(data_dir).await?;
    Ok(Arc::new(store))
}

pub(crate) fn client(base_url: &str) -> anyhow::Result<Client> {
    Ok(Client::new(ClientConfig::with_base_url(base_url))?)
}

/// The demo's simulator has its rate limits off, so the client's proactive limiter is off too.
pub(crate) fn unlimited_client(base_url: &str) -> anyhow::Result<Client> {
    Ok(Client::new(ClientConfig {
        rate: None,
        ..ClientConfig::with_base_url(base_url)
    })?)
}

fn parse_when_duration(s: &str, what: &str) -> anyhow::Result<Duration> {
    orgtrail_state::parse_duration(s).map_err(|e| anyhow::anyhow!("{what} {s:?}: {e}"))
}

pub(crate) fn parse_date(s: &str) -> anyhow::Result<Timestamp> {
    if let Ok(t) = s.parse::<Timestamp>() {
        return Ok(t);
    }
    let d: jiff::civil::Date = s
        .parse()
        .map_err(|_| anyhow::anyhow!("bad date {s:?}: use YYYY-MM-DD or an RFC 3339 time"))?;
    Ok(jiff::tz::Offset::UTC.to_timestamp(d.to_datetime(jiff::civil::Time::midnight()))?)
}

fn alarm_minutes(s: &str) -> anyhow::Result<u32> {
    let d = parse_when_duration(s, "drop-off alarm")?;
    let m = d.as_secs() / 60;
    if !(15..=43_200).contains(&m) {
        bail!(
            "drop-off alarm {s:?} must be between 15 minutes and 30 days (43,200 minutes), e.g. --dropoff-alarm 24h"
        );
    }
    Ok(m as u32)
}

/// `--dropoff-alarm` of `source edit`: a duration, or `off` to turn the alarm off.
fn alarm_setting(s: &str) -> anyhow::Result<Option<u32>> {
    match s.trim() {
        "off" | "none" => Ok(None),
        _ => alarm_minutes(s).map(Some),
    }
}

fn poll_secs(s: &str) -> anyhow::Result<u32> {
    let secs = parse_when_duration(s, "poll interval")?.as_secs();
    u32::try_from(secs).map_err(|_| anyhow::anyhow!("poll interval {s:?} is too long"))
}

fn key_input(k: &KeyArgs) -> anyhow::Result<Option<KeyInput>> {
    Ok(if let Some(v) = &k.api_key_env {
        Some(KeyInput::Env(v.clone()))
    } else if let Some(f) = &k.api_key_file {
        Some(KeyInput::File(f.clone()))
    } else if k.api_key_stdin {
        let mut line = String::new();
        io::stdin()
            .lock()
            .read_line(&mut line)
            .context("cannot read the API key from stdin")?;
        let key = line.trim().to_owned();
        if key.is_empty() {
            bail!("--api-key-stdin: standard input had no key");
        }
        Some(KeyInput::Value(SecretString::from(key)))
    } else {
        None
    })
}

fn prompt(label: &str) -> anyhow::Result<String> {
    eprint!("{label}: ");
    io::stderr().flush()?;
    let mut line = String::new();
    io::stdin().lock().read_line(&mut line)?;
    Ok(line.trim().to_owned())
}

/// The key a source would use, resolved now (for verification).
fn resolve(input: &KeyInput) -> anyhow::Result<ApiKey> {
    Ok(match input {
        KeyInput::Value(v) => ApiKey::new(v.expose_secret()),
        KeyInput::Env(var) => ApiKey::new(
            std::env::var(var)
                .map_err(|_| anyhow::anyhow!("the environment variable {var} is not set"))?,
        ),
        KeyInput::File(p) => {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("cannot read the API key file {}", p.display()))?;
            ApiKey::new(text.lines().next().unwrap_or("").trim())
        }
    })
}

/// Checks with one live request that `key` can read the audit log of `org_id` at `base_url`: the one
/// check behind `source add`, `source edit`, `source verify` and the web console.
pub async fn verify_credentials(
    base_url: &str,
    org_id: &str,
    key: &ApiKey,
) -> Result<(), orgtrail_atlassian::ApiError> {
    Client::new(ClientConfig::with_base_url(base_url))?
        .verify(org_id, key)
        .await
}

/// Onboards a source: the same code for `source add` and `demo`.
pub async fn add_source(
    store: &dyn StateStore,
    new: NewSource,
    verify: bool,
) -> anyhow::Result<Source> {
    if store.find_source(&new.name).await?.is_some() {
        bail!(
            "a source named {:?} already exists: choose another name, or `orgtrail source edit`",
            new.name
        );
    }
    if verify {
        let base = new
            .base_url
            .clone()
            .unwrap_or_else(|| orgtrail_atlassian::DEFAULT_BASE_URL.to_owned());
        let key = resolve(&new.key)?;
        verify_credentials(&base, &new.org_id, &key)
            .await
            .context("the credentials did not verify; nothing was saved")?;
        eprintln!(
            "verified: the API key can read the audit log of organization {}",
            new.org_id
        );
    }
    Ok(store.add_source(new).await?)
}

pub fn source(cmd: SourceCommand, ctx: &Ctx) -> anyhow::Result<ExitCode> {
    let rt = runtime()?;
    rt.block_on(async {
        let store = open_store(&ctx.data_dir).await?;
        match cmd {
            SourceCommand::Add { name, org_id, settings, no_input } => {
                let SettingsArgs { key, base_url, key_expires, dropoff_alarm, poll_interval, no_verify } = settings;
                let interactive = !no_input && io::stdin().is_terminal();
                let ask = |v: Option<String>, label: &str| -> anyhow::Result<String> {
                    match v {
                        Some(v) => Ok(v),
                        None if interactive => prompt(label),
                        None => bail!("missing --{}: give it, or run interactively without --no-input", label.to_lowercase().replace(' ', "-")),
                    }
                };
                let name = ask(name, "Name")?;
                let org_id = ask(org_id, "Org ID")?;
                let key = match key_input(&key)? {
                    Some(k) => k,
                    None if interactive => {
                        let k = rpassword::prompt_password("API key (hidden): ").context("cannot read the API key")?;
                        KeyInput::Value(SecretString::from(k.trim().to_owned()))
                    }
                    None => bail!("missing API key: give --api-key-env VAR, --api-key-file FILE or --api-key-stdin"),
                };
                let key_expires = match key_expires {
                    Some(d) => Some(d),
                    None if interactive => Some(prompt("Key expiry date (YYYY-MM-DD, empty if unknown)")?).filter(|s| !s.is_empty()),
                    None => None,
                };
                let dropoff_alarm = match dropoff_alarm {
                    Some(d) => Some(d),
                    None if interactive => Some(prompt("Log drop-off alarm (e.g. 24h, empty for none)")?).filter(|s| !s.is_empty()),
                    None => None,
                };
                let mut new = NewSource::new(name, org_id, key);
                new.base_url = base_url;
                new.key_expires_at = key_expires.as_deref().map(parse_date).transpose()?;
                new.dropoff_alarm_minutes = dropoff_alarm.as_deref().map(alarm_minutes).transpose()?;
                new.poll_interval_secs = poll_interval.as_deref().map(poll_secs).transpose()?;
                let s = add_source(store.as_ref(), new, !no_verify).await?;
                println!("added source {:?} ({}); `orgtrail run` collects it", s.name, s.id);
            }
            SourceCommand::List => {
                let sources = store.list_sources().await?;
                if sources.is_empty() {
                    println!("no sources yet: `orgtrail source add`");
                }
                for s in sources {
                    let h = store.source_health(&s.id).await?;
                    let state = if s.paused { "paused" } else if h.last_error_at > h.last_success_at { "failing" } else { "active" };
                    println!(
                        "{}\t{}\torg {}\tlast success {}\tkey expires {}",
                        s.name,
                        state,
                        s.org_id,
                        h.last_success_at.map_or("never".into(), |t| t.to_string()),
                        s.key_expires_at.map_or("unknown".into(), |t| t.to_string())
                    );
                }
            }
            SourceCommand::Show { name } => {
                let s = store.get_source(&name).await?;
                let h = store.source_health(&s.id).await?;
                let c = store.checkpoint(&s.id).await?;
                let seen = store.seen_stats(&s.id).await?;
                println!("name:            {}\nid:              {}\norganization:    {}\nbase URL:        {}\nAPI key:         {}", s.name, s.id, s.org_id, s.base_url, s.key_ref);
                println!("key expires:     {}", s.key_expires_at.map_or("unknown".into(), |t| t.to_string()));
                println!("drop-off alarm:  {}", s.dropoff_alarm_minutes.map_or("none".into(), |m| format!("{m} minutes")));
                println!("poll interval:   {} s\npaused:          {}", s.poll_interval_secs, s.paused);
                println!("last success:    {}", h.last_success_at.map_or("never".into(), |t| t.to_string()));
                println!("last new data:   {}", h.last_data_at.map_or("never".into(), |t| t.to_string()));
                if let (Some(e), Some(at)) = (&h.last_error, h.last_error_at) {
                    println!("last error:      {at}: {e}");
                }
                match c {
                    Some(c) => println!(
                        "checkpoint:      page {}, max processedAt {}, cursor {}",
                        c.checkpoint.page_seq,
                        c.checkpoint.max_processed_at_ms.and_then(|m| Timestamp::from_millisecond(m).ok()).map_or("none".into(), |t| t.to_string()),
                        if c.checkpoint.cursor.is_some() { "saved" } else { "none" }
                    ),
                    None => println!("checkpoint:      none (first collection pending)"),
                }
                println!("de-duplication:  {} event id(s) remembered, {} lake batch(es) unfinished", seen.seen_ids, seen.unfinished_batches);
                for r in store.recent_runs(&s.id, 5).await? {
                    println!("run {} → {}: {} ({} pages, {} new events){}", r.started_at, r.ended_at, r.status.as_str(), r.pages, r.events, r.error.map(|e| format!(": {e}")).unwrap_or_default());
                }
            }
            SourceCommand::Health { name, json } => {
                return crate::monitor_cmd::source_health(store.as_ref(), &name, json).await;
            }
            SourceCommand::Verify { name } => {
                let s = store.get_source(&name).await?;
                let key = ApiKey::new(orgtrail_state::resolve_key(&s)?.expose_secret());
                verify_credentials(&s.base_url, &s.org_id, &key).await?;
                println!("{}: the API key can read the audit log of organization {}", s.name, s.org_id);
            }
            SourceCommand::Edit { name, rename, settings } => {
                let SettingsArgs { key, base_url, key_expires, dropoff_alarm, poll_interval, no_verify } = settings;
                let s = store.get_source(&name).await?;
                let key = key_input(&key)?;
                if let (Some(k), false) = (&key, no_verify) {
                    let base = base_url.clone().unwrap_or_else(|| s.base_url.clone());
                    verify_credentials(&base, &s.org_id, &resolve(k)?).await.context("the new key did not verify; nothing was changed")?;
                }
                let update = SourceUpdate {
                    name: rename,
                    base_url,
                    key,
                    key_expires_at: key_expires.as_deref().map(|d| parse_date(d).map(Some)).transpose()?,
                    dropoff_alarm_minutes: dropoff_alarm.as_deref().map(alarm_setting).transpose()?,
                    poll_interval_secs: poll_interval.as_deref().map(poll_secs).transpose()?,
                    config_managed: None,
                };
                let s = store.update_source(&s.id, update).await?;
                println!("updated source {:?}", s.name);
            }
            SourceCommand::Pause { name } => {
                let s = store.get_source(&name).await?;
                store.set_paused(&s.id, true).await?;
                println!("paused {:?}", s.name);
            }
            SourceCommand::Resume { name } => {
                let s = store.get_source(&name).await?;
                store.set_paused(&s.id, false).await?;
                println!("resumed {:?}", s.name);
            }
            SourceCommand::Remove { name, force } => {
                let s = store.get_source(&name).await?;
                store.remove_source(&s.id, force).await?;
                println!("removed {:?}; its data stays in the lake", s.name);
            }
        }
        Ok(ExitCode::SUCCESS)
    })
}

pub(crate) fn engine_for(
    store: Arc<dyn StateStore>,
    client: Client,
    lake: &Lake,
    config: EngineConfig,
) -> anyhow::Result<Engine> {
    let reg = orgtrail_schema::Registry::with_builtins()?;
    Ok(Engine::new(
        store,
        client,
        lake.clone(),
        reg.get("Atlassian.Audit")?,
        config,
    ))
}

pub(crate) fn log_cycle(s: &Source, r: &Result<CycleReport, EngineError>) {
    match r {
        Ok(r) => eprintln!(
            "{} source={:?}: {} page(s), {} event(s) received, {} new, {} duplicate(s), {} row(s) and {} failure(s) written",
            Timestamp::now(),
            s.name,
            r.pages,
            r.received,
            r.new_events,
            r.duplicates,
            r.rows_written,
            r.failures_written
        ),
        Err(e) => eprintln!("{} source={:?}: error: {e}", Timestamp::now(), s.name),
    }
}

pub fn backfill(args: BackfillArgs, ctx: &Ctx) -> anyhow::Result<ExitCode> {
    let since = match parse_when_duration(&args.since, "--since") {
        Ok(d) => Timestamp::now() - SignedDuration::try_from(d)?,
        Err(_) => parse_date(&args.since)
            .context("--since: use a duration such as 30d or a date YYYY-MM-DD")?,
    };
    let rt = runtime()?;
    rt.block_on(async {
        let store = open_store(&ctx.data_dir).await?;
        let source = store.get_source(&args.name).await?;
        let lake = Lake::open(&ctx.lake)?;
        let engine = engine_for(store, client(&source.base_url)?, &lake, EngineConfig::default())?;
        let cancel = shutdown_token();
        let started = std::time::Instant::now();
        let progress = |r: &CycleReport| {
            eprint!("\rbackfill {:?}: {} page(s), {} event(s), {} new, {:.0} s   ", source.name, r.pages, r.received, r.new_events, started.elapsed().as_secs_f64());
        };
        let r = engine.backfill(&source, since, &NoHooks, &cancel, &progress).await;
        eprintln!();
        let r = r?;
        println!("backfill of {:?} since {since}: {} new event(s), {} already collected, {} row(s) and {} failure(s) written", source.name, r.new_events, r.duplicates, r.rows_written, r.failures_written);
        Ok(ExitCode::SUCCESS)
    })
}

fn shutdown_token() -> CancellationToken {
    let cancel = CancellationToken::new();
    let c = cancel.clone();
    tokio::spawn(async move {
        // A handler that cannot be installed never fires (rather than stopping at once).
        let ctrl_c = async {
            if tokio::signal::ctrl_c().await.is_err() {
                std::future::pending::<()>().await;
            }
        };
        let term = async {
            #[cfg(unix)]
            if let Ok(mut t) =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            {
                t.recv().await;
                return;
            }
            std::future::pending::<()>().await;
        };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term => {}
        }
        eprintln!(
            "stopping: the page in flight is abandoned (it will be fetched again), nothing is lost"
        );
        c.cancel();
    });
    cancel
}

/// Collects every unpaused source until it is caught up.
async fn collect_all_once(
    store: Arc<dyn StateStore>,
    lake: &Lake,
    config: EngineConfig,
    cancel: CancellationToken,
    make_client: fn(&str) -> anyhow::Result<Client>,
    monitoring: Option<&crate::monitor_cmd::Monitoring>,
) -> anyhow::Result<bool> {
    let sources = store.list_sources().await?;
    if sources.is_empty() {
        bail!("no sources to collect: add one with `orgtrail source add`");
    }
    let mut engines: BTreeMap<String, Engine> = BTreeMap::new();
    let mut tasks = tokio::task::JoinSet::new();
    let mut ok = true;
    for s in sources.into_iter().filter(|s| !s.paused) {
        let engine = match engines.get(&s.base_url) {
            Some(e) => e.clone(),
            None => {
                let mut e = engine_for(
                    store.clone(),
                    make_client(&s.base_url)?,
                    lake,
                    config.clone(),
                )?;
                if let Some(m) = monitoring {
                    e = e.with_observer(m.observer());
                }
                engines.insert(s.base_url.clone(), e.clone());
                e
            }
        };
        let cancel = cancel.clone();
        let hooks: Arc<dyn orgtrail_atlassian::Hooks> =
            monitoring.map_or_else(|| Arc::new(NoHooks) as _, |m| m.hooks());
        tasks.spawn(async move {
            loop {
                let r = engine.collect_once(&s, &*hooks, &cancel).await;
                log_cycle(&s, &r);
                match r {
                    Ok(r) if r.more => continue,
                    Ok(_) | Err(EngineError::Cancelled) => return true,
                    Err(_) => return false,
                }
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        ok &= r.unwrap_or(false);
    }
    Ok(ok)
}

/// The daemon: collects every source (also those added later, from the console or the CLI) until
/// Ctrl-C, and serves the web console unless `--no-console`.
#[allow(clippy::too_many_arguments)] // plain wiring: each argument is used once
async fn collect_and_serve(
    store: Arc<dyn StateStore>,
    lake: &Lake,
    config: EngineConfig,
    cancel: CancellationToken,
    make_client: fn(&str) -> anyhow::Result<Client>,
    console: &crate::web::ConsoleArgs,
    data_dir: &Path,
    monitoring: Option<&crate::monitor_cmd::Monitoring>,
) -> anyhow::Result<bool> {
    let collectors = crate::collector::Collectors::new(
        store.clone(),
        lake.clone(),
        config,
        make_client,
        cancel.clone(),
        monitoring,
    );
    let n = collectors.start_all().await?;
    let server = crate::web::start(
        console,
        crate::web::Deps {
            store,
            lake: lake.clone(),
            data_dir: data_dir.to_owned(),
            collectors: Some(collectors.clone()),
        },
        cancel.clone(),
    )
    .await?;
    if n == 0 {
        if server.is_none() {
            bail!("no sources to collect: add one with `orgtrail source add`");
        }
        eprintln!("no sources yet: add one in the console (or with `orgtrail source add`)");
    }
    let ok = collectors.run(crate::collector::RESCAN_EVERY).await;
    if let Some(server) = server {
        server.stopped().await;
    }
    Ok(ok)
}

/// One collector per data directory: two would each run their own rate limiter against the same
/// keys (twice the request budget) and race on the same sources. Held until the process exits.
fn lock_data_dir(data_dir: &Path) -> anyhow::Result<std::fs::File> {
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("cannot create the data directory {}", data_dir.display()))?;
    let path = data_dir.join("run.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => bail!(
            "another `orgtrail run` is already collecting with the data directory {}; stop it first (one collector per data directory), or use another --data-dir",
            data_dir.display()
        ),
        Err(std::fs::TryLockError::Error(e)) => {
            Err(e).with_context(|| format!("cannot lock {}", path.display()))
        }
    }
}

pub fn run(args: RunArgs, ctx: &Ctx) -> anyhow::Result<ExitCode> {
    let _lock = lock_data_dir(&ctx.data_dir)?;
    let rt = runtime()?;
    rt.block_on(async {
        let store = open_store(&ctx.data_dir).await?;
        if ctx.config.exists() {
            let specs = orgtrail_state::load_config(&ctx.config)?;
            let r = orgtrail_state::sync_config(store.as_ref(), &specs).await?;
            let orphaned = if r.orphaned.is_empty() {
                String::new()
            } else {
                format!("; no longer in the file (kept): {}", r.orphaned.join(", "))
            };
            eprintln!(
                "{}: {} source(s) added, {} updated, {} adopted, {} unchanged{orphaned}",
                ctx.config.display(),
                r.added.len(),
                r.updated.len(),
                r.adopted.len(),
                r.unchanged.len(),
            );
        }
        let lake = Lake::open(&ctx.lake)?;
        eprintln!(
            "collecting into {} (state in {}); Ctrl-C stops cleanly",
            lake.location().display,
            ctx.data_dir.display()
        );
        let make_client = if args.no_rate_limit {
            unlimited_client
        } else {
            client
        };
        let cancel = shutdown_token();
        let monitoring =
            crate::monitor_cmd::Monitoring::start(&args.monitoring, store.clone(), &lake, &cancel)
                .await?;
        let ok = if args.once {
            collect_all_once(
                store,
                &lake,
                EngineConfig::default(),
                cancel,
                make_client,
                Some(&monitoring),
            )
            .await
        } else {
            collect_and_serve(
                store,
                &lake,
                EngineConfig::default(),
                cancel,
                make_client,
                &args.console,
                &ctx.data_dir,
                Some(&monitoring),
            )
            .await
        };
        monitoring.finish().await;
        let ok = ok?;
        Ok(if ok {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        })
    })
}

pub fn demo(args: DemoArgs, ctx: &Ctx) -> anyhow::Result<ExitCode> {
    let rt = runtime()?;
    rt.block_on(async {
        let dir = ctx.data_dir.join("demo");
        if dir.exists() {
            std::fs::remove_dir_all(&dir).with_context(|| format!("cannot reset {}", dir.display()))?;
        }
        let org = orgtrail_sim::DEFAULT_ORG;
        let demo_key = format!("demo-{}", uuid::Uuid::new_v4().simple());
        let mut sim_cfg = orgtrail_sim::SimConfig {
            listen: "127.0.0.1:0".parse()?,
            orgs: vec![orgtrail_sim::OrgConfig::new(org, demo_key.clone())],
            events: args.events,
            live_rate: (args.live_rate > 0.0).then_some(orgtrail_sim::LiveRate { per_second: args.live_rate }),
            ..orgtrail_sim::SimConfig::default()
        };
        sim_cfg.rate_limits.enabled = false;
        let sim = orgtrail_sim::start(sim_cfg).await?;
        eprintln!("simulator: {} with {} events and {}/s live (rate limits off for the demo)", sim.base_url(), args.events, args.live_rate);
        let store = open_store(&dir).await?;
        let mut new = NewSource::new("Demo Atlassian org", org, KeyInput::Value(SecretString::from(demo_key)));
        new.base_url = Some(sim.base_url().to_owned());
        new.dropoff_alarm_minutes = Some(60);
        let source = add_source(store.as_ref(), new, true).await?;
        let lake_dir = dir.join("lake");
        let lake = Lake::open(lake_dir.to_str().context("the data directory is not UTF-8")?)?;
        let config = EngineConfig { poll_interval: Some(Duration::from_secs(5)), ..EngineConfig::default() };
        let engine = engine_for(store.clone(), unlimited_client(&source.base_url)?, &lake, config.clone())?;
        let cancel = shutdown_token();
        let started = std::time::Instant::now();
        let mut total = CycleReport::default();
        loop {
            let r = engine.collect_once(&source, &NoHooks, &cancel).await?;
            total.pages += r.pages;
            total.new_events += r.new_events;
            total.rows_written += r.rows_written;
            total.failures_written += r.failures_written;
            if !r.more {
                break;
            }
        }
        let secs = started.elapsed().as_secs_f64();
        println!("\ncollected {} events ({} pages) in {secs:.1} s: {} rows in the lake, {} classification failures", total.new_events, total.pages, total.rows_written, total.failures_written);
        let reg = orgtrail_schema::Registry::with_builtins()?;
        let q = lake.query_engine(&reg)?;
        for (title, sql) in [
            ("top actions", "SELECT attributes.action AS action, count(*) AS events FROM atlassian_audit GROUP BY 1 ORDER BY 2 DESC LIMIT 8"),
            ("admins impersonating users (Panther's Atlassian rule)", "SELECT p_event_time, attributes.actor.email AS actor, p_any_ip_addresses AS ips FROM atlassian_audit WHERE attributes.action = 'user_logged_in_as_user' ORDER BY p_event_time DESC LIMIT 5"),
        ] {
            let (_, batches) = q.sql(sql).await?;
            println!("\n{title}:\n{}", arrow::util::pretty::pretty_format_batches(&batches)?);
        }
        println!("\nthe lake is {}; try:\n  orgtrail --lake {} query \"SELECT attributes.action, count(*) FROM atlassian_audit GROUP BY 1 ORDER BY 2 DESC\"", lake.location().display, lake.location().display);
        if !args.once {
            eprintln!("\ncollecting live events every 5 s; Ctrl-C stops");
            collect_and_serve(store, &lake, config, cancel, unlimited_client, &args.console, &dir, None).await?;
        }
        let _ = sim.shutdown().await;
        Ok(ExitCode::SUCCESS)
    })
}
