//! The monitor: observes the collector (a [`CollectObserver`]), keeps per-source activity, evaluates
//! every source's alarms on a period (and right after each cycle), persists their state and
//! transitions, logs the transitions, updates the metrics and hands transitions to a
//! [`TransitionSink`] (the [`crate::Notifier`]).
//!
//! Collection never waits for the monitor: the observer hooks only touch memory; the evaluation
//! (database reads and writes) runs in its own task.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jiff::Timestamp;
use orgtrail_atlassian::Event;
use orgtrail_state::{
    ActivityDelta, AlarmEvent, AlarmKind, AlarmRecord, AlarmState, Source, StateError, StateStore,
};
use tokio_util::sync::CancellationToken;

use crate::alarms::{self, Decision, Input, LastCycle, Rules};
use crate::clock::{SystemWallClock, WallClock};
use crate::metrics as m;
use crate::observe::{BatchWritten, CollectObserver};
use crate::{CycleReport, EngineError};

/// How stale `evaluated_at` of an unchanged alarm may get before it is written again.
const REFRESH_EVALUATED_AT: jiff::SignedDuration = jiff::SignedDuration::from_mins(10);

/// Receives every recorded alarm transition (after it is persisted). Called from the monitor's
/// task: must not block (queue the work).
pub trait TransitionSink: Send + Sync {
    fn transition(&self, event: &AlarmEvent);
}

/// Settings of the monitor.
#[derive(Clone)]
pub struct MonitorConfig {
    /// The clock of alarms and activity (tests inject a [`crate::ManualClock`]).
    pub clock: Arc<dyn WallClock>,
    /// How often every source is evaluated, in clock time (real time is this divided by the clock's
    /// speed). Sources are also evaluated right after each cycle.
    pub eval_interval: Duration,
    /// Thresholds of the system alarms.
    pub rules: Rules,
    /// The log type the sources are normalized with (named in messages).
    pub log_type: String,
}

impl Default for MonitorConfig {
    fn default() -> Self {
        MonitorConfig {
            clock: Arc::new(SystemWallClock),
            eval_interval: Duration::from_secs(60),
            rules: Rules::default(),
            log_type: "Atlassian.Audit".into(),
        }
    }
}

impl std::fmt::Debug for MonitorConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MonitorConfig")
            .field("now", &self.clock.now())
            .field("eval_interval", &self.eval_interval)
            .field("rules", &self.rules)
            .finish()
    }
}

/// What the monitor knows of a source since it started (memory only).
#[derive(Debug, Default)]
struct Runtime {
    /// Activity not yet persisted.
    delta: ActivityDelta,
    last_data_at: Option<Timestamp>,
    cycles: u64,
    consecutive_failures: u32,
    last_cycle: Option<LastCycle>,
    /// (time, rows, failures) of recent flushes, for the classification rate.
    flushes: VecDeque<(Timestamp, u64, u64)>,
    /// When the monitor started watching (or the source was last resumed).
    watching_since: Option<Timestamp>,
    /// Events received and not yet written to the lake.
    buffered: u64,
    /// The event time of the newest event received (stored with the next batch).
    newest_event_time: Option<Timestamp>,
}

/// Observes the collector and evaluates alarms. Create with [`Monitor::new`], hand
/// [`Monitor::observer`] to the engines, spawn [`Monitor::run`].
pub struct Monitor {
    store: Arc<dyn StateStore>,
    config: MonitorConfig,
    runtime: Mutex<HashMap<String, Runtime>>,
    eval_lock: tokio::sync::Mutex<()>,
    sink: Option<Arc<dyn TransitionSink>>,
    wake: tokio::sync::Notify,
}

impl std::fmt::Debug for Monitor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Monitor")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// The newest event's `attributes.time`, read from its raw JSON.
fn event_time(e: &Event) -> Option<Timestamp> {
    #[derive(serde::Deserialize)]
    struct Ev<'a> {
        #[serde(borrow)]
        attributes: Option<Attrs<'a>>,
    }
    #[derive(serde::Deserialize)]
    struct Attrs<'a> {
        #[serde(borrow)]
        time: Option<std::borrow::Cow<'a, str>>,
    }
    let ev: Ev<'_> = serde_json::from_str(e.json()).ok()?;
    ev.attributes?.time?.parse().ok()
}

fn classify(e: &EngineError) -> Option<LastCycle> {
    let fatal = |class: &'static str| LastCycle::Fatal {
        class,
        message: e.to_string(),
    };
    Some(match e {
        EngineError::Cancelled => return None,
        EngineError::Api(api) if api.is_fatal_for_source() => fatal(api.kind().as_str()),
        EngineError::State(StateError::KeyUnavailable { .. }) => fatal("key_unavailable"),
        EngineError::Config(_) => fatal("config"),
        other => LastCycle::Failed {
            message: other.to_string(),
        },
    })
}

impl Monitor {
    /// A monitor over `store`, sending transitions to `sink`.
    pub fn new(
        store: Arc<dyn StateStore>,
        config: MonitorConfig,
        sink: Option<Arc<dyn TransitionSink>>,
    ) -> Arc<Monitor> {
        Arc::new(Monitor {
            store,
            config,
            runtime: Mutex::new(HashMap::new()),
            eval_lock: tokio::sync::Mutex::new(()),
            sink,
            wake: tokio::sync::Notify::new(),
        })
    }

    /// This monitor as the collector's observer.
    pub fn observer(self: &Arc<Self>) -> Arc<dyn CollectObserver> {
        self.clone()
    }

    /// The monitor's clock.
    pub fn clock(&self) -> &Arc<dyn WallClock> {
        &self.config.clock
    }

    fn with_runtime<R>(&self, source_id: &str, f: impl FnOnce(&mut Runtime) -> R) -> R {
        // A panic while holding this lock cannot leave the counters inconsistent in a harmful
        // way (they are only statistics), so a poisoned lock is used as is.
        let mut map = self.runtime.lock().unwrap_or_else(|p| p.into_inner());
        let now = self.config.clock.now();
        let rt = map.entry(source_id.to_owned()).or_insert_with(|| Runtime {
            watching_since: Some(now),
            ..Runtime::default()
        });
        f(rt)
    }

    /// Evaluates every source now; returns the transitions recorded. Evaluations never overlap.
    pub async fn evaluate(&self) -> Result<Vec<AlarmEvent>, EngineError> {
        let _guard = self.eval_lock.lock().await;
        let now = self.config.clock.now();
        let sources = self.store.list_sources().await?;
        let mut all = Vec::new();
        let mut first_err = None;
        for s in &sources {
            match self.evaluate_source(s, now).await {
                Ok(evs) => all.extend(evs),
                Err(e) => {
                    tracing::warn!(source = %s.name, error = %e, "could not evaluate the alarms of a source; retrying at the next evaluation");
                    first_err.get_or_insert(e);
                }
            }
        }
        {
            let mut map = self.runtime.lock().unwrap_or_else(|p| p.into_inner());
            map.retain(|id, _| sources.iter().any(|s| &s.id == id));
        }
        match first_err {
            Some(e) if all.is_empty() => Err(e),
            _ => Ok(all),
        }
    }

    async fn evaluate_source(
        &self,
        s: &Source,
        now: Timestamp,
    ) -> Result<Vec<AlarmEvent>, EngineError> {
        let rules = &self.config.rules;
        let window_start = now.checked_sub(rules.classification_window).unwrap_or(now);
        let (delta, snap) = self.with_runtime(&s.id, |rt| {
            if s.paused {
                // Resuming starts over: wait for a cycle before deciding on missing data.
                rt.cycles = 0;
                rt.watching_since = Some(now);
            }
            while rt.flushes.front().is_some_and(|f| f.0 < window_start) {
                rt.flushes.pop_front();
            }
            let (rows, failures) = rt
                .flushes
                .iter()
                .fold((0, 0), |(r, f), x| (r + x.1, f + x.2));
            let snap = (
                rt.cycles > 0,
                rt.last_data_at,
                rt.last_cycle.clone(),
                rt.consecutive_failures,
                rows,
                failures,
                rt.watching_since.is_some_and(|w| w <= window_start),
            );
            (std::mem::take(&mut rt.delta), snap)
        });
        let (cycle_seen, rt_last_data, last_cycle, consecutive, w_rows, w_failures, covered) = snap;
        let before = match self.store.source_activity(&s.id).await {
            Ok(a) => a,
            Err(e) => {
                self.with_runtime(&s.id, |rt| {
                    let newer = std::mem::replace(&mut rt.delta, delta.clone());
                    rt.delta.merge(&newer);
                });
                return Err(e.into());
            }
        };
        if let Err(e) = self.store.record_activity(&s.id, now, &delta).await {
            self.with_runtime(&s.id, |rt| {
                let newer = std::mem::replace(&mut rt.delta, delta.clone());
                rt.delta.merge(&newer);
            });
            return Err(e.into());
        }
        let checkpoint = self.store.checkpoint(&s.id).await?;
        let max_processed = checkpoint
            .as_ref()
            .and_then(|c| c.checkpoint.max_processed_at_ms)
            .and_then(|ms| Timestamp::from_millisecond(ms).ok());
        let caught_up = delta.caught_up_at.max(before.last_caught_up_at);
        let uncollected_since = caught_up.max(max_processed);
        let last_data_at = rt_last_data
            .max(before.last_event_at)
            .max(delta.last_event_at);
        let prev: HashMap<AlarmKind, AlarmRecord> = self
            .store
            .alarms(Some(&s.id))
            .await?
            .into_iter()
            .map(|a| (a.kind, a))
            .collect();
        let input = Input {
            source: s,
            now,
            cycle_seen,
            last_data_at,
            last_cycle,
            consecutive_failures: consecutive,
            first_failure: before.failures_total == 0 && delta.failures > 0,
            window_rows: w_rows,
            window_failures: w_failures,
            window_covered: covered,
            uncollected_since,
            log_type: &self.config.log_type,
        };
        let mut records = Vec::new();
        let mut removed = Vec::new();
        let mut events = Vec::new();
        let mut current = Vec::new();
        for kind in AlarmKind::ALL {
            match alarms::evaluate(kind, prev.get(&kind), &input, rules) {
                Decision::Save(rec, ev) => {
                    current.push((kind, rec.state));
                    // An unchanged alarm is written again only now and then (to refresh
                    // `evaluated_at`), to keep writes off the collector's database.
                    let unchanged = prev.get(&kind).is_some_and(|p| {
                        ev.is_none()
                            && AlarmRecord {
                                evaluated_at: p.evaluated_at,
                                ..rec.clone()
                            } == *p
                            && now.duration_since(p.evaluated_at) < REFRESH_EVALUATED_AT
                    });
                    if !unchanged {
                        records.push(rec);
                    }
                    events.extend(ev);
                }
                Decision::Remove(ev) => {
                    removed.push(kind);
                    events.extend(ev);
                }
                Decision::Absent => {}
            }
        }
        let recorded = if records.is_empty() && removed.is_empty() && events.is_empty() {
            Vec::new()
        } else {
            self.store
                .save_alarms(&s.id, &records, &removed, &events)
                .await?
        };
        for ev in &recorded {
            log_transition(ev);
            metrics::counter!(m::ALARM_TRANSITIONS, "alarm" => ev.event.kind.as_str(), "to" => ev.event.to.as_str())
                .increment(1);
            if let Some(sink) = &self.sink {
                sink.transition(ev);
            }
        }
        self.update_gauges(
            s,
            &current,
            &removed,
            last_data_at,
            max_processed,
            checkpoint.map(|c| c.updated_at),
        );
        Ok(recorded)
    }

    fn update_gauges(
        &self,
        s: &Source,
        current: &[(AlarmKind, AlarmState)],
        removed: &[AlarmKind],
        last_data_at: Option<Timestamp>,
        max_processed: Option<Timestamp>,
        checkpoint_at: Option<Timestamp>,
    ) {
        let name = s.name.clone();
        for (kind, state) in current {
            for st in AlarmState::ALL {
                metrics::gauge!(m::ALARM_STATE, "source" => name.clone(), "alarm" => kind.as_str(), "state" => st.as_str())
                    .set(if st == *state { 1.0 } else { 0.0 });
            }
        }
        for k in removed {
            for st in AlarmState::ALL {
                metrics::gauge!(m::ALARM_STATE, "source" => name.clone(), "alarm" => k.as_str(), "state" => st.as_str())
                    .set(0.0);
            }
        }
        // Lag and checkpoint age are about the API's and the store's real time.
        let real_now = Timestamp::now();
        if let Some(p) = max_processed {
            metrics::gauge!(m::LAG_SECONDS, "source" => name.clone())
                .set(real_now.duration_since(p).as_secs_f64().max(0.0));
        }
        if let Some(c) = checkpoint_at {
            metrics::gauge!(m::CHECKPOINT_AGE_SECONDS, "source" => name.clone())
                .set(real_now.duration_since(c).as_secs_f64().max(0.0));
        }
        if let Some(t) = last_data_at {
            metrics::gauge!(m::LAST_EVENT_RECEIVED, "source" => name)
                .set(t.as_millisecond() as f64 / 1000.0);
        }
    }

    /// Evaluates on the configured period and right after cycles (at most about once a second),
    /// until `cancel`; then evaluates a last time so the activity observed is persisted.
    pub async fn run(self: Arc<Self>, cancel: CancellationToken) {
        let speed = self.config.clock.speed().max(1.0);
        let period =
            Duration::from_secs_f64((self.config.eval_interval.as_secs_f64() / speed).max(0.01));
        let min_gap = period.min(Duration::from_secs(1));
        loop {
            if let Err(e) = self.evaluate().await {
                tracing::warn!(error = %e, "alarm evaluation failed; retrying at the next one");
            }
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = tokio::time::sleep(period) => {}
                _ = async { self.wake.notified().await; tokio::time::sleep(min_gap).await } => {}
            }
        }
        if let Err(e) = self.evaluate().await {
            tracing::warn!(error = %e, "the last alarm evaluation failed");
        }
    }
}

fn log_transition(ev: &AlarmEvent) {
    let e = &ev.event;
    let remedy = e.remedy.as_deref().unwrap_or("");
    if e.to == AlarmState::Alarm {
        tracing::warn!(target: "orgtrail_alarms", seq = ev.seq, source = %e.source_name, alarm = e.kind.as_str(), from = e.from.as_str(), to = e.to.as_str(), stage = e.stage.as_deref().unwrap_or(""), remedy, "{}", e.message);
    } else {
        tracing::info!(target: "orgtrail_alarms", seq = ev.seq, source = %e.source_name, alarm = e.kind.as_str(), from = e.from.as_str(), to = e.to.as_str(), "{}", e.message);
    }
}

impl CollectObserver for Monitor {
    fn page_received(&self, source: &Source, events: &[Event]) {
        let bytes: u64 = events.iter().map(|e| e.json().len() as u64).sum();
        let name = source.name.clone();
        metrics::counter!(m::EVENTS_RECEIVED, "source" => name.clone())
            .increment(events.len() as u64);
        metrics::counter!(m::EVENT_BYTES, "source" => name.clone()).increment(bytes);
        let newest_time = events.last().and_then(event_time);
        let newest_processed = events.iter().filter_map(|e| e.processed_at).max();
        let buffered = self.with_runtime(&source.id, |rt| {
            rt.delta.bytes += bytes;
            rt.delta.last_processed_at = rt.delta.last_processed_at.max(newest_processed);
            rt.newest_event_time = newest_time.or(rt.newest_event_time);
            rt.buffered += events.len() as u64;
            rt.buffered
        });
        metrics::gauge!(m::SPOOL_DEPTH, "source" => name).set(buffered as f64);
    }

    fn batch_written(&self, source: &Source, batch: &BatchWritten) {
        let name = source.name.clone();
        metrics::counter!(m::EVENTS_STORED, "source" => name.clone()).increment(batch.new_events);
        metrics::counter!(m::EVENTS_DUPLICATE, "source" => name.clone())
            .increment(batch.duplicates);
        metrics::counter!(m::ROWS_WRITTEN, "source" => name.clone()).increment(batch.rows);
        metrics::counter!(m::EVENTS_FAILED, "source" => name.clone()).increment(batch.failures);
        metrics::gauge!(m::SPOOL_DEPTH, "source" => name).set(0.0);
        let now = self.config.clock.now();
        self.with_runtime(&source.id, |rt| {
            rt.buffered = 0;
            rt.delta.events += batch.new_events;
            rt.delta.rows += batch.rows;
            rt.delta.failures += batch.failures;
            if batch.new_events > 0 {
                rt.last_data_at = Some(now);
                rt.delta.last_event_at = Some(now);
                rt.delta.last_event_time = rt.newest_event_time.or(rt.delta.last_event_time);
            }
            rt.flushes.push_back((now, batch.rows, batch.failures));
            // Bounded: one entry per batch, trimmed to the window at each evaluation; a hard cap
            // protects against a monitor that is never evaluated.
            if rt.flushes.len() > 100_000 {
                rt.flushes.pop_front();
            }
        });
        if batch.failures > 0 {
            self.wake.notify_one();
        }
    }

    fn cycle_finished(&self, source: &Source, result: &Result<CycleReport, EngineError>) {
        let now = self.config.clock.now();
        let outcome = match result {
            Ok(_) => LastCycle::Ok,
            Err(e) => match classify(e) {
                Some(c) => c,
                None => return,
            },
        };
        let label = match &outcome {
            LastCycle::Ok => "success",
            LastCycle::Fatal { .. } => "fatal",
            LastCycle::Failed { .. } => "error",
        };
        metrics::counter!(m::CYCLES, "source" => source.name.clone(), "result" => label)
            .increment(1);
        metrics::gauge!(m::SOURCE_UP, "source" => source.name.clone()).set(
            if matches!(outcome, LastCycle::Ok) {
                1.0
            } else {
                0.0
            },
        );
        self.with_runtime(&source.id, |rt| {
            rt.cycles += 1;
            rt.buffered = 0;
            match &outcome {
                LastCycle::Ok => rt.consecutive_failures = 0,
                LastCycle::Failed { .. } => rt.consecutive_failures += 1,
                LastCycle::Fatal { .. } => {}
            }
            if let Ok(r) = result
                && !r.more
            {
                rt.delta.caught_up_at = Some(now);
            }
            rt.last_cycle = Some(outcome);
        });
        self.wake.notify_one();
    }
}
