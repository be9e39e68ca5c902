//! The collector supervisor of `orgtrail run` and `orgtrail demo`: one task per source, started at
//! launch, when the console adds a source (at once), or when a periodic rescan finds a source added
//! by the CLI. A task ends when its source is removed or on cancellation.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use orgtrail_atlassian::{Client, Hooks, NoHooks};
use orgtrail_engine::{CollectObserver, Engine, EngineConfig, EngineError, RunEnd};
use orgtrail_lake::Lake;
use orgtrail_state::{Source, StateError, StateStore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::collect_cmd::{engine_for, log_cycle};

/// How often the store is rescanned for sources added outside this process.
pub const RESCAN_EVERY: Duration = Duration::from_secs(10);

/// Builds the API client of a base URL (rate-limited, or not for the demo's simulator).
pub type MakeClient = fn(&str) -> anyhow::Result<Client>;

/// Starts and tracks one collection task per source. Cheap to clone.
#[derive(Clone)]
pub struct Collectors {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn StateStore>,
    lake: Lake,
    config: EngineConfig,
    make_client: MakeClient,
    cancel: CancellationToken,
    /// Health, alarms and metrics of `orgtrail run` (none in the demo).
    observer: Option<Arc<dyn CollectObserver>>,
    hooks: Arc<dyn Hooks>,
    tracker: TaskTracker,
    state: Mutex<Running>,
    ok: AtomicBool,
}

#[derive(Default)]
struct Running {
    /// One engine per base URL, so sources sharing a key share its rate limiter.
    engines: BTreeMap<String, Engine>,
    sources: HashSet<String>,
}

impl Collectors {
    pub fn new(
        store: Arc<dyn StateStore>,
        lake: Lake,
        config: EngineConfig,
        make_client: MakeClient,
        cancel: CancellationToken,
        monitoring: Option<&crate::monitor_cmd::Monitoring>,
    ) -> Self {
        Collectors {
            inner: Arc::new(Inner {
                store,
                lake,
                config,
                make_client,
                cancel,
                observer: monitoring.map(|m| m.observer()),
                hooks: monitoring.map_or_else(|| Arc::new(NoHooks) as _, |m| m.hooks()),
                tracker: TaskTracker::new(),
                state: Mutex::new(Running::default()),
                ok: AtomicBool::new(true),
            }),
        }
    }

    fn running(&self) -> MutexGuard<'_, Running> {
        // A panic while holding this lock cannot leave the maps half-updated in a harmful way:
        // recover the guard rather than propagating the poison.
        self.inner
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Starts collecting `source` unless a task already does. Paused sources get a task too: it
    /// waits until they are resumed.
    pub fn start(&self, source: &Source) -> anyhow::Result<()> {
        let engine = {
            let mut running = self.running();
            if running.sources.contains(&source.id) {
                return Ok(());
            }
            let engine = match running.engines.get(&source.base_url) {
                Some(e) => e.clone(),
                None => {
                    let mut e = engine_for(
                        self.inner.store.clone(),
                        (self.inner.make_client)(&source.base_url)?,
                        &self.inner.lake,
                        self.inner.config.clone(),
                    )?;
                    if let Some(o) = &self.inner.observer {
                        e = e.with_observer(o.clone());
                    }
                    running.engines.insert(source.base_url.clone(), e.clone());
                    e
                }
            };
            running.sources.insert(source.id.clone());
            engine
        };
        let this = self.clone();
        let id = source.id.clone();
        let name = source.name.clone();
        self.inner.tracker.spawn(async move {
            let r = engine
                .run_source(&id, &*this.inner.hooks, &this.inner.cancel, &log_cycle)
                .await;
            this.running().sources.remove(&id);
            match r {
                Ok(RunEnd::Cancelled) | Err(EngineError::State(StateError::SourceNotFound(_))) => {}
                Ok(RunEnd::BaseUrlChanged) => {
                    // Go on at once on the engine of the new URL (its own client and limiter).
                    let restarted = match this.inner.store.get_source(&id).await {
                        Ok(source) => this.start(&source),
                        Err(e) => Err(e.into()),
                    };
                    match restarted {
                        Ok(()) => eprintln!("source={name:?}: base URL changed; collecting from the new one"),
                        Err(e) => {
                            eprintln!("source={name:?}: collection stopped: cannot switch to the new base URL: {e:#}");
                            this.inner.ok.store(false, Ordering::Relaxed);
                        }
                    }
                }
                Err(e) => {
                    eprintln!("source={name:?}: collection stopped: {e}");
                    this.inner.ok.store(false, Ordering::Relaxed);
                }
            }
        });
        Ok(())
    }

    /// Starts every source of the store that has no task yet; returns how many sources exist.
    pub async fn start_all(&self) -> anyhow::Result<usize> {
        let sources = self.inner.store.list_sources().await?;
        for s in &sources {
            self.start(s)?;
        }
        Ok(sources.len())
    }

    /// Collects until cancelled, rescanning the store every `rescan`; then waits for every task to
    /// end. `false` when a source stopped on an error.
    pub async fn run(&self, rescan: Duration) -> bool {
        loop {
            tokio::select! {
                _ = self.inner.cancel.cancelled() => break,
                _ = tokio::time::sleep(rescan) => {
                    if let Err(e) = self.start_all().await {
                        eprintln!("cannot look for new sources: {e:#}");
                    }
                }
            }
        }
        self.inner.tracker.close();
        self.inner.tracker.wait().await;
        self.inner.ok.load(Ordering::Relaxed)
    }
}
