//! Health, alarms, notifications and metrics in the CLI: `orgtrail source health`, `orgtrail alarms`,
//! and the monitoring that `orgtrail run` starts (the engine's monitor and notifier, the Prometheus
//! recorder and the HTTP listener of `http.rs`).

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use orgtrail_atlassian::Hooks;
use orgtrail_engine::{
    CollectObserver, Destination, HealthStatus, Monitor, MonitorConfig, Notifier, NotifyConfig,
    ScaledClock, SourceHealthReport, SystemWallClock, WallClock,
};
use orgtrail_lake::Lake;
use orgtrail_state::{AlarmState, StateStore};
use tokio_util::sync::CancellationToken;

/// The default address of `/metrics`, `/healthz` and `/readyz`.
pub const DEFAULT_METRICS_LISTEN: &str = "127.0.0.1:9464";

/// Monitoring options of `orgtrail run`.
#[derive(clap::Args)]
pub struct MonitorArgs {
    /// Serve Prometheus /metrics, /healthz and /readyz on this address; "none" turns it off
    /// [default: 127.0.0.1:9464]
    #[arg(long, value_name = "ADDR", env = "ORGTRAIL_METRICS_LISTEN")]
    metrics_listen: Option<String>,
    /// POST every alarm and resolution as JSON to this URL (repeatable, or comma-separated in the
    /// environment variable)
    #[arg(
        long,
        value_name = "URL",
        env = "ORGTRAIL_NOTIFY_WEBHOOK",
        value_delimiter = ','
    )]
    notify_webhook: Vec<String>,
    /// Send every alarm and resolution to this Slack incoming webhook (repeatable)
    #[arg(
        long,
        value_name = "URL",
        env = "ORGTRAIL_NOTIFY_SLACK",
        value_delimiter = ','
    )]
    notify_slack: Vec<String>,
    /// Testing only: alarm time (drop-off thresholds, key expiry, evaluation period) runs this many
    /// times faster than real time.
    #[arg(long, hide = true, value_name = "FACTOR")]
    test_time_scale: Option<f64>,
}

impl std::fmt::Debug for MonitorArgs {
    // Webhook URLs are credentials (a Slack URL is enough to post): never printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MonitorArgs")
            .field("metrics_listen", &self.metrics_listen)
            .field("notify_webhook", &self.notify_webhook.len())
            .field("notify_slack", &self.notify_slack.len())
            .finish_non_exhaustive()
    }
}

/// `orgtrail alarms`.
#[derive(Debug, clap::Args)]
pub struct AlarmsArgs {
    /// Only this source
    #[arg(long, value_name = "NAME")]
    source: Option<String>,
    /// How many past transitions to show (newest first)
    #[arg(long, value_name = "N", default_value_t = 20)]
    history: usize,
    /// Print JSON ({"alarms": [...], "history": [...]})
    #[arg(long)]
    json: bool,
}

/// The monitoring of a running collector.
pub struct Monitoring {
    monitor: Arc<Monitor>,
    notifier: Arc<Notifier>,
    stop: CancellationToken,
    evaluator: tokio::task::JoinHandle<()>,
    server: Option<tokio::task::JoinHandle<()>>,
}

fn install_recorder() -> anyhow::Result<metrics_exporter_prometheus::PrometheusHandle> {
    use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Suffix("_seconds".into()),
            &[
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
            ],
        )
        .context("cannot configure the metrics histogram buckets")?
        .install_recorder()
        .context("cannot install the Prometheus metrics recorder")?;
    orgtrail_engine::metrics::describe();
    Ok(handle)
}

impl Monitoring {
    /// Starts the monitor, the notifier and (unless "none") the metrics listener.
    pub async fn start(
        args: &MonitorArgs,
        store: Arc<dyn StateStore>,
        lake: &Lake,
        shutdown: &CancellationToken,
    ) -> anyhow::Result<Monitoring> {
        let mut destinations = Vec::new();
        for u in &args.notify_webhook {
            destinations.push(Destination::webhook(u)?);
        }
        for u in &args.notify_slack {
            destinations.push(Destination::slack(u)?);
        }
        let clock: Arc<dyn WallClock> = match args.test_time_scale {
            Some(s) => Arc::new(ScaledClock::new(s)),
            None => Arc::new(SystemWallClock),
        };
        let prom = install_recorder()?;
        let notifier = Arc::new(Notifier::start(
            store.clone(),
            NotifyConfig {
                destinations: destinations.clone(),
                lake: Some(lake.clone()),
                ..NotifyConfig::default()
            },
        )?);
        let monitor = Monitor::new(
            store.clone(),
            MonitorConfig {
                clock: clock.clone(),
                ..MonitorConfig::default()
            },
            Some(notifier.clone()),
        );
        match notifier
            .replay_pending(clock.now() - orgtrail_engine::REPLAY_WINDOW)
            .await
        {
            Ok(0) => {}
            Ok(n) => eprintln!("re-sending {n} alarm transition(s) a previous run did not finish"),
            Err(e) => eprintln!("warning: cannot read unsent alarm transitions: {e}"),
        }
        let ready = Arc::new(AtomicBool::new(false));
        let listen = args.metrics_listen.as_deref().map(str::trim);
        let server = match listen {
            Some("none" | "off" | "") => None,
            explicit => {
                let addr = explicit.unwrap_or(DEFAULT_METRICS_LISTEN);
                let addr: SocketAddr = addr.parse().with_context(|| {
                    format!("--metrics-listen {addr:?} is not an address; use e.g. 127.0.0.1:9464, or none")
                })?;
                match tokio::net::TcpListener::bind(addr).await {
                    Ok(l) => {
                        let bound = l.local_addr().unwrap_or(addr);
                        eprintln!("metrics on http://{bound}/metrics (health: /healthz, /readyz)");
                        let state = crate::http::HttpState {
                            prom,
                            store: store.clone(),
                            ready: ready.clone(),
                            clock: clock.clone(),
                        };
                        Some(tokio::spawn(crate::http::serve(l, state, shutdown.clone())))
                    }
                    Err(e) if explicit.is_none() => {
                        eprintln!(
                            "warning: cannot listen on {addr} for metrics ({e}); going on without /metrics (choose another address with --metrics-listen)"
                        );
                        None
                    }
                    Err(e) => anyhow::bail!(
                        "--metrics-listen {addr}: cannot listen there ({e}); choose a free address, or none"
                    ),
                }
            }
        };
        if let Err(e) = monitor.evaluate().await {
            eprintln!("warning: the first alarm evaluation failed: {e}");
        }
        ready.store(true, Ordering::SeqCst);
        if !destinations.is_empty() {
            let list: Vec<String> = destinations.iter().map(Destination::redacted).collect();
            eprintln!("alarm notifications to {}", list.join(", "));
        }
        let stop = CancellationToken::new();
        let evaluator = tokio::spawn(monitor.clone().run(stop.clone()));
        Ok(Monitoring {
            monitor,
            notifier,
            stop,
            evaluator,
            server,
        })
    }

    /// The observer to give every engine.
    pub fn observer(&self) -> Arc<dyn CollectObserver> {
        self.monitor.observer()
    }

    /// The API hooks that feed the request metrics.
    pub fn hooks(&self) -> Arc<dyn Hooks> {
        Arc::new(orgtrail_engine::metrics::ApiMetrics)
    }

    /// A last evaluation, then waits (up to 10 s) for the notifications to go out.
    pub async fn finish(self) {
        self.stop.cancel();
        let _ = self.evaluator.await;
        self.notifier.shutdown(Duration::from_secs(10)).await;
        if let Some(s) = self.server {
            s.abort();
        }
    }
}

fn ts(t: Option<jiff::Timestamp>) -> String {
    t.map_or("never".into(), |t| t.to_string())
}

fn bytes(n: u64) -> String {
    match n {
        n if n >= 1 << 30 => format!("{:.1} GB", n as f64 / (1u64 << 30) as f64),
        n if n >= 1 << 20 => format!("{:.1} MB", n as f64 / (1u64 << 20) as f64),
        n if n >= 1 << 10 => format!("{:.1} KB", n as f64 / 1024.0),
        n => format!("{n} B"),
    }
}

fn print_report(r: &SourceHealthReport) {
    println!("source:               {} ({})", r.name, r.source_id);
    println!("status:               {}", r.status.as_str());
    for reason in &r.reasons {
        println!("  - {reason}");
    }
    println!(
        "last event received:  {}{}",
        ts(r.last_event_received_at),
        r.last_event_time
            .map(|t| format!(" (event time {t})"))
            .unwrap_or_default()
    );
    println!(
        "newest processedAt:   {}{}",
        ts(r.newest_processed_at),
        r.lag_seconds
            .map(|l| format!(
                " (lag {})",
                orgtrail_human(jiff::SignedDuration::from_secs(l))
            ))
            .unwrap_or_default()
    );
    println!("last successful poll: {}", ts(r.last_successful_poll_at));
    for (label, w) in [("last hour:", &r.last_hour), ("last day:", &r.last_day)] {
        println!(
            "{label:<22}{} event(s), {}, {} row(s), {} classification failure(s)",
            w.events,
            bytes(w.bytes),
            w.rows,
            w.failures
        );
    }
    println!(
        "classification failures: {} in total",
        r.classification_failures_total
    );
    match &r.last_error {
        Some(e) => println!("last error:           {}: {}", e.at, e.message),
        None => println!("last error:           none"),
    }
    println!(
        "key expires:          {}",
        match (r.key_expires_at, r.key_expires_in_days) {
            (Some(t), Some(d)) if d < 0 => format!("{t} (expired)"),
            (Some(t), Some(d)) => format!("{t} (in {d} day(s))"),
            _ => "unknown (set it with --key-expires)".into(),
        }
    );
    println!(
        "drop-off alarm:       {}",
        r.dropoff_alarm_minutes
            .map_or("none".into(), |m| orgtrail_human(
                jiff::SignedDuration::from_mins(i64::from(m))
            ))
    );
    if r.unfinished_lake_batches > 0 {
        println!(
            "lake batches:         {} unfinished (the collector's next cycle finishes them)",
            r.unfinished_lake_batches
        );
    }
    if r.alarms.is_empty() {
        println!("alarms:               not evaluated yet (they are while `orgtrail run` runs)");
    } else {
        println!("alarms (as last evaluated by `orgtrail run`):");
        for a in &r.alarms {
            println!(
                "  {:<31} {:<17} since {}  {}",
                a.alarm.as_str(),
                a.state.as_str(),
                a.since,
                a.message
            );
            if a.state == AlarmState::Alarm
                && let Some(rem) = &a.remedy
            {
                println!("  {:<31} remedy: {rem}", "");
            }
        }
    }
}

fn orgtrail_human(d: jiff::SignedDuration) -> String {
    let secs = d.as_secs().max(0);
    let (days, hours, mins) = (secs / 86_400, secs % 86_400 / 3600, secs % 3600 / 60);
    match (days, hours, mins) {
        (0, 0, 0) => format!("{secs} s"),
        (0, 0, m) => format!("{m} min"),
        (0, h, m) => format!("{h} h {m} min"),
        (d, h, _) => format!("{d} d {h} h"),
    }
}

/// `orgtrail source health NAME`: exit status 0 when healthy, paused or not polled yet, 1 when
/// unhealthy.
pub async fn source_health(
    store: &dyn StateStore,
    name: &str,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let source = store.get_source(name).await?;
    let report = orgtrail_engine::source_health_report(store, &source, jiff::Timestamp::now())
        .await
        .with_context(|| format!("cannot build the health report of {name:?}"))?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_report(&report);
    }
    Ok(if report.status == HealthStatus::Unhealthy {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// `orgtrail alarms`: exit status 1 when an alarm is firing.
pub fn alarms(args: AlarmsArgs, ctx: &crate::collect_cmd::Ctx) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(async {
        let store: Arc<dyn StateStore> =
            Arc::new(orgtrail_state::SqliteStore::open_in_dir(&ctx.data_dir).await?);
        let source = match &args.source {
            Some(n) => Some(store.get_source(n).await?),
            None => None,
        };
        let alarms = orgtrail_engine::list_alarms(store.as_ref(), source.as_ref()).await?;
        let history =
            orgtrail_engine::alarm_history(store.as_ref(), source.as_ref(), args.history).await?;
        let firing = alarms.iter().any(|a| a.state == AlarmState::Alarm);
        if args.json {
            println!(
                "{}",
                serde_json::to_string_pretty(
                    &serde_json::json!({ "alarms": alarms, "history": history })
                )?
            );
        } else {
            if alarms.is_empty() {
                println!(
                    "no alarms yet: `orgtrail run` evaluates them (drop-off alarms are set with --dropoff-alarm)"
                );
            } else {
                println!(
                    "{:<24} {:<31} {:<17} {:<27} MESSAGE",
                    "SOURCE", "ALARM", "STATE", "SINCE"
                );
                for a in &alarms {
                    println!(
                        "{:<24} {:<31} {:<17} {:<27} {}",
                        a.source_name,
                        a.alarm.as_str(),
                        a.state.as_str(),
                        a.since.to_string(),
                        a.message
                    );
                    if a.state == AlarmState::Alarm
                        && let Some(r) = &a.remedy
                    {
                        println!("{:<24} remedy: {r}", "");
                    }
                }
            }
            if !history.is_empty() {
                println!("\nhistory (newest first):");
                for h in &history {
                    println!(
                        "#{:<5} {} {:<24} {:<31} {} -> {}{}: {}",
                        h.seq,
                        h.at,
                        h.source_name,
                        h.alarm.as_str(),
                        h.from.as_str(),
                        h.to.as_str(),
                        h.stage
                            .as_deref()
                            .map(|s| format!(" ({s})"))
                            .unwrap_or_default(),
                        h.message
                    );
                }
            }
        }
        Ok(if firing {
            ExitCode::from(1)
        } else {
            ExitCode::SUCCESS
        })
    })
}
