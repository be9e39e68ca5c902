//! `orgtrail-sim`: a faithful simulator of the Atlassian Organizations REST API (audit events).
//!
//! It serves `/admin/v1/orgs/{orgId}/events-stream`, `/events`, `/events/{eventId}` and
//! `/event-actions` the way `docs/atlassian-org-api.md` documents them (quirks included), from a
//! deterministic, seeded event generator, with rate limits, fault injection and a ground-truth
//! admin API under `/_sim/`. See the crate README for every flag and endpoint.
//!
//! ```no_run
//! # async fn demo() -> Result<(), orgtrail_sim::SimError> {
//! let sim = orgtrail_sim::start(orgtrail_sim::SimConfig { events: 500, ..Default::default() }).await?;
//! println!("{}", sim.base_url());
//! let truth = sim.ground_truth(orgtrail_sim::DEFAULT_ORG)?;
//! assert_eq!(truth.len(), 500);
//! sim.shutdown().await?;
//! # Ok(()) }
//! ```
//!
//! The simulator shares no code with the collector's API client, on purpose.

mod admin;
mod config;
mod cursor;
mod generator;
mod limits;
mod rng;
mod server;
mod store;
mod time;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Bytes;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use config::{
    DEFAULT_KEY, DEFAULT_ORG, Faults, KeyConfig, LiveRate, OrgConfig, OverMax, RateLimitHeader,
    RateLimits, ResetFormat, SimArgs, SimConfig, TerminalMode, TimeField, TimeSpec, parse_duration,
    parse_live_rate, parse_time_spec,
};
pub use generator::ACTIONS;
pub use server::{RequestCount, STREAM_DEFAULT_LIMIT, STREAM_MAX_LIMIT, Stats};
pub use time::SimClock;

/// Errors of the simulator.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// The configuration is invalid.
    #[error("invalid simulator configuration: {0}")]
    Config(String),
    /// The listen address could not be bound.
    #[error(
        "cannot listen on {addr}: {source} (is another process using the port? try --listen 127.0.0.1:0)"
    )]
    Bind {
        /// Address.
        addr: SocketAddr,
        /// Cause.
        source: std::io::Error,
    },
    /// The server failed while running.
    #[error("simulator server failed: {0}")]
    Serve(#[source] std::io::Error),
    /// An org id that is not configured.
    #[error("org `{0}` is not configured in the simulator")]
    UnknownOrg(String),
    /// Event generation panicked or was cancelled.
    #[error("event generation failed: {0}")]
    Generate(String),
    /// Waiting for Ctrl-C failed.
    #[error("cannot wait for Ctrl-C: {0}")]
    Signal(#[source] std::io::Error),
}

/// One event of the ground truth.
#[derive(Clone, Debug)]
pub struct TruthEvent {
    /// Event id.
    pub id: String,
    /// `attributes.processedAt`, epoch ms.
    pub processed_at_ms: i64,
    /// `attributes.time`, epoch ms.
    pub time_ms: i64,
    /// The `/events-stream` JSON of the event, byte for byte.
    pub json: Bytes,
}

/// The simulator entry points.
pub struct Simulator;

impl Simulator {
    /// Generates the events, binds and serves in the background. See [`start`].
    pub async fn start(config: SimConfig) -> Result<SimHandle, SimError> {
        start(config).await
    }
}

fn build_orgs(config: &SimConfig, now: i64) -> Vec<store::OrgStore> {
    let end = config.history_end_ms.unwrap_or(now);
    config
        .orgs
        .iter()
        .enumerate()
        .map(|(i, o)| {
            store::OrgStore::generate(
                &o.id,
                i,
                config.seed,
                config.events,
                config.history_span.as_millis().max(1) as i64,
                end,
                now,
                config.live_rate.map(|r| r.per_second),
                config.live_max_events,
            )
        })
        .collect()
}

/// Generates the events, binds `config.listen` (port 0 allowed) and serves in the background
/// until [`SimHandle::shutdown`].
pub async fn start(config: SimConfig) -> Result<SimHandle, SimError> {
    config.validate()?;
    let now = config.clock.now_ms();
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| SimError::Bind {
            addr: config.listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(SimError::Serve)?;
    let cfg2 = config.clone();
    let orgs = tokio::task::spawn_blocking(move || build_orgs(&cfg2, now))
        .await
        .map_err(|e| SimError::Generate(e.to_string()))?;
    let (tx, rx) = watch::channel(false);
    let base_url = config
        .public_url
        .clone()
        .map(|u| u.trim_end_matches('/').to_string())
        .unwrap_or_else(|| format!("http://{addr}"));
    let sim = Arc::new(server::Sim::new(config, orgs, now, rx.clone()));
    sim.set_base_url(base_url.clone());
    let app = axum::Router::new()
        .fallback(server::handle)
        .with_state(sim.clone());
    let mut srx = rx;
    let task = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = srx.wait_for(|v| *v).await;
            })
            .await
    });
    tracing::info!(%addr, orgs = sim.orgs.len(), "atlassian api simulator listening");
    Ok(SimHandle {
        sim,
        addr,
        base_url,
        shutdown: tx,
        task,
    })
}

/// A running simulator.
pub struct SimHandle {
    sim: Arc<server::Sim>,
    addr: SocketAddr,
    base_url: String,
    shutdown: watch::Sender<bool>,
    task: JoinHandle<std::io::Result<()>>,
}

impl std::fmt::Debug for SimHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimHandle")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl SimHandle {
    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://<addr>` (or the configured public URL), without a trailing slash.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// The configured org ids.
    pub fn org_ids(&self) -> Vec<String> {
        self.sim.cfg.orgs.iter().map(|o| o.id.clone()).collect()
    }

    /// The simulator clock (advance it when it is manual).
    pub fn clock(&self) -> &SimClock {
        self.sim.clock()
    }

    /// Simulator start time (epoch ms, by its clock).
    pub fn start_ms(&self) -> i64 {
        self.sim.start_ms
    }

    fn org(&self, org_id: &str) -> Result<&store::OrgStore, SimError> {
        let i = self
            .sim
            .org_index(org_id)
            .ok_or_else(|| SimError::UnknownOrg(org_id.to_string()))?;
        let o = &self.sim.orgs[i];
        o.catch_up(self.sim.clock().now_ms());
        Ok(o)
    }

    /// Every event the org holds (history plus live events due by now), in `processedAt` order:
    /// everything that was or will be served. Copies the JSON; meant for tests.
    pub fn ground_truth(&self, org_id: &str) -> Result<Vec<TruthEvent>, SimError> {
        let d = self.org(org_id)?.read();
        Ok(d.events
            .iter()
            .map(|e| TruthEvent {
                id: e.id_string(),
                processed_at_ms: e.processed_ms,
                time_ms: e.time_ms,
                json: Bytes::copy_from_slice(&e.json),
            })
            .collect())
    }

    /// Number of events the org holds now.
    pub fn event_count(&self, org_id: &str) -> Result<usize, SimError> {
        Ok(self.org(org_id)?.read().events.len())
    }

    /// Total bytes of serialized event JSON held for the org.
    pub fn event_bytes(&self, org_id: &str) -> Result<usize, SimError> {
        Ok(self
            .org(org_id)?
            .read()
            .events
            .iter()
            .map(|e| e.json.len())
            .sum())
    }

    /// Request counters.
    pub fn stats(&self) -> Stats {
        self.sim.stats()
    }

    /// Zeroes the request counters.
    pub fn reset_stats(&self) {
        self.sim.reset_stats();
    }

    /// Current fault configuration.
    pub fn faults(&self) -> Faults {
        self.sim.faults()
    }

    /// Replaces the fault configuration (the fault RNG keeps its state).
    pub fn set_faults(&self, faults: Faults) -> Result<(), SimError> {
        self.sim.set_faults(faults).map_err(SimError::Config)
    }

    /// Expires every cursor issued so far (they answer 400 `ADMIN-400-1`).
    pub fn expire_cursors(&self) {
        self.sim.expire_cursors();
    }

    /// Revokes (or with `false` restores) every key of an org.
    pub fn set_keys_revoked(&self, org_id: &str, revoked: bool) -> Result<(), SimError> {
        let i = self
            .sim
            .org_index(org_id)
            .ok_or_else(|| SimError::UnknownOrg(org_id.to_string()))?;
        self.sim.set_revoked(i, revoked);
        Ok(())
    }

    /// Stops accepting, ends in-flight requests (slow faults are cut short) and waits.
    pub async fn shutdown(self) -> Result<(), SimError> {
        let _ = self.shutdown.send(true);
        match self.task.await {
            Ok(r) => r.map_err(SimError::Serve),
            Err(e) => Err(SimError::Serve(std::io::Error::other(e.to_string()))),
        }
    }
}

/// Runs the simulator from CLI flags until Ctrl-C: prints the base URL, the orgs and an example
/// `curl` line (the key is shown as `$KEY`, never printed).
pub async fn run(args: SimArgs) -> Result<(), SimError> {
    let config = args.to_config()?;
    if args.dry_run {
        return dry_run(config).await;
    }
    let n_events = config.events;
    let started = std::time::Instant::now();
    let handle = start(config).await?;
    let base = handle.base_url().to_string();
    println!("orgtrail-sim: Atlassian Organizations API simulator on {base}");
    println!(
        "  generated {n_events} events per org in {:.1?}",
        started.elapsed()
    );
    for org in handle.org_ids() {
        println!("  org {org}: {base}/admin/v1/orgs/{org}/events-stream");
    }
    if let Some(org) = handle.org_ids().first() {
        println!(
            "  try:   curl -H \"Authorization: Bearer $KEY\" '{base}/admin/v1/orgs/{org}/events-stream?limit=500'"
        );
        println!(
            "  truth: curl '{base}/_sim/orgs/{org}/events?idsOnly=true'   stats: curl {base}/_sim/stats"
        );
    }
    println!("  (KEY is the --key you passed; Ctrl-C to stop)");
    tokio::signal::ctrl_c().await.map_err(SimError::Signal)?;
    println!("orgtrail-sim: shutting down");
    handle.shutdown().await
}

async fn dry_run(config: SimConfig) -> Result<(), SimError> {
    let started = std::time::Instant::now();
    let now = config.clock.now_ms();
    let cfg2 = config.clone();
    let orgs = tokio::task::spawn_blocking(move || build_orgs(&cfg2, now))
        .await
        .map_err(|e| SimError::Generate(e.to_string()))?;
    let elapsed = started.elapsed();
    let mut total = 0usize;
    let mut bytes = 0usize;
    for o in &orgs {
        let d = o.read();
        total += d.events.len();
        bytes += d.events.iter().map(|e| e.json.len()).sum::<usize>();
    }
    println!(
        "orgtrail-sim dry run: {total} events in {} org(s) generated in {elapsed:.1?}; JSON {:.1} MB, {:.0} bytes/event of JSON",
        orgs.len(),
        bytes as f64 / 1e6,
        bytes as f64 / total.max(1) as f64
    );
    println!(
        "  per-event index overhead: {} bytes (record) + id map entry",
        std::mem::size_of::<generator::EventRec>()
    );
    Ok(())
}
