//! End to end against the simulator: the collector runs its loop, the monitor evaluates on a manual
//! clock (one evaluation per alarm-clock minute, no real minutes), the notifier posts to local HTTP
//! receivers started by the test (a generic webhook and a Slack one, each failing once first).
//!
//! - Live events stop: the drop-off alarm fires within the threshold plus one evaluation period,
//!   and each receiver gets exactly one notification; events resume: exactly one resolution.
//! - The key is revoked: a permissions alarm, with the remedy.
//! - Every transition lands in the lake's `system_errors` table.
//! - The API key appears in no notification, metric, log line (at debug level) or health output.

use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::StatusCode;
use jiff::{SignedDuration, Timestamp};
use orgtrail_atlassian::{Client, ClientConfig, RetryPolicy};
use orgtrail_engine::{
    Destination, Engine, EngineConfig, ManualClock, Monitor, MonitorConfig, Notifier, NotifyConfig,
    WallClock,
};
use orgtrail_lake::Lake;
use orgtrail_schema::Registry;
use orgtrail_sim::{LiveRate, SimClock, SimConfig, SimHandle};
use orgtrail_state::{
    AlarmKind, AlarmState, KeyInput, NewSource, SecretString, SqliteStore, StateStore,
};
use tokio_util::sync::CancellationToken;

const ORG: &str = "11111111-2222-3333-4444-555555555555";
const KEY: &str = "e2e-secret-key-8c4f2a7d1b";

/// Log lines of this test binary (a global subscriber at debug level).
fn logs() -> &'static Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let w = buf.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::DEBUG)
            .with_ansi(false)
            .with_writer(move || LogWriter(w.clone()))
            .finish();
        tracing::subscriber::set_global_default(subscriber).unwrap();
        buf
    })
}

struct LogWriter(Arc<Mutex<Vec<u8>>>);

impl Write for LogWriter {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn prometheus() -> &'static metrics_exporter_prometheus::PrometheusHandle {
    static H: OnceLock<metrics_exporter_prometheus::PrometheusHandle> = OnceLock::new();
    H.get_or_init(|| {
        let h = metrics_exporter_prometheus::PrometheusBuilder::new()
            .install_recorder()
            .unwrap();
        orgtrail_engine::metrics::describe();
        h
    })
}

/// A receiver of notifications: answers 503 to the first request, then 200.
#[derive(Clone, Default)]
struct Receiver {
    bodies: Arc<Mutex<Vec<serde_json::Value>>>,
    raw: Arc<Mutex<Vec<String>>>,
    hits: Arc<AtomicUsize>,
}

async fn receive(State(r): State<Receiver>, body: String) -> StatusCode {
    if r.hits.fetch_add(1, Ordering::SeqCst) == 0 {
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    r.raw.lock().unwrap().push(body.clone());
    r.bodies
        .lock()
        .unwrap()
        .push(serde_json::from_str(&body).unwrap());
    StatusCode::OK
}

async fn start_receiver() -> (String, Receiver) {
    let r = Receiver::default();
    let app = axum::Router::new()
        .route("/hook", axum::routing::post(receive))
        .with_state(r.clone());
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", l.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    (url, r)
}

impl Receiver {
    /// The notifications about `alarm` (the webhook's `alarm` field, or in Slack's text).
    fn of(&self, alarm: &str) -> Vec<serde_json::Value> {
        self.bodies
            .lock()
            .unwrap()
            .iter()
            .filter(|b| {
                b["alarm"] == alarm || b["text"].as_str().is_some_and(|t| t.contains(alarm))
            })
            .cloned()
            .collect()
    }

    /// Waits (real time, at most 10 s) until `n` notifications about `alarm` arrived.
    async fn wait_for(&self, alarm: &str, n: usize) -> Vec<serde_json::Value> {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.of(alarm).len() < n && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // Anything more would arrive right away: give it a moment.
        tokio::time::sleep(Duration::from_millis(200)).await;
        self.of(alarm)
    }
}

struct E2e {
    sim: SimHandle,
    store: Arc<dyn StateStore>,
    clock: Arc<ManualClock>,
    monitor: Arc<Monitor>,
    source_id: String,
    lake: Lake,
}

impl E2e {
    /// Waits (real time) until the collector has stored everything the simulator holds.
    async fn caught_up(&self) {
        let newest = self
            .sim
            .ground_truth(ORG)
            .unwrap()
            .iter()
            .map(|e| e.processed_at_ms)
            .max()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ck = self.store.checkpoint(&self.source_id).await.unwrap();
            if ck.and_then(|c| c.checkpoint.max_processed_at_ms) >= Some(newest) {
                // Let the cycle end (and report to the monitor).
                tokio::time::sleep(Duration::from_millis(100)).await;
                return;
            }
            assert!(Instant::now() < deadline, "the collector did not catch up");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// One alarm-clock minute passes, then an evaluation. Returns the NoData transitions.
    async fn minute(&self) -> Vec<(AlarmState, AlarmState)> {
        self.clock.advance(SignedDuration::from_mins(1));
        self.monitor
            .evaluate()
            .await
            .unwrap()
            .into_iter()
            .filter(|e| e.event.kind == AlarmKind::NoData)
            .map(|e| (e.event.from, e.event.to))
            .collect()
    }

    async fn state(&self, kind: AlarmKind) -> Option<AlarmState> {
        self.store
            .alarms(Some(&self.source_id))
            .await
            .unwrap()
            .into_iter()
            .find(|a| a.kind == kind)
            .map(|a| a.state)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropoff_fires_once_resolves_once_and_permissions_alarm_has_the_remedy_and_no_key_leaks() {
    let logs = logs();
    let prom = prometheus();
    let start = Timestamp::now();
    let mut cfg = SimConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        orgs: vec![orgtrail_sim::OrgConfig::new(ORG, KEY)],
        events: 300,
        seed: 3,
        clock: SimClock::manual_at(start),
        live_rate: Some(LiveRate { per_second: 2.0 }),
        ..SimConfig::default()
    };
    cfg.rate_limits.enabled = false;
    let sim = orgtrail_sim::start(cfg).await.unwrap();

    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn StateStore> = Arc::new(SqliteStore::open_in_dir(dir.path()).await.unwrap());
    let lake = Lake::open(dir.path().join("lake").to_str().unwrap()).unwrap();
    let (hook_url, hook) = start_receiver().await;
    let (slack_url, slack) = start_receiver().await;
    let notifier = Arc::new(
        Notifier::start(
            store.clone(),
            NotifyConfig {
                destinations: vec![
                    Destination::webhook(&hook_url).unwrap(),
                    Destination::slack(&slack_url).unwrap(),
                ],
                lake: Some(lake.clone()),
                backoff_base: Duration::from_millis(10),
                backoff_cap: Duration::from_millis(100),
                ..NotifyConfig::default()
            },
        )
        .unwrap(),
    );
    let clock = Arc::new(ManualClock::new(start));
    let monitor = Monitor::new(
        store.clone(),
        MonitorConfig {
            clock: clock.clone(),
            ..MonitorConfig::default()
        },
        Some(notifier.clone()),
    );
    let client = Client::new(ClientConfig {
        base_url: sim.base_url().to_owned(),
        timeout: Duration::from_secs(2),
        rate: None,
        page_limit: 200,
        retry: RetryPolicy {
            max_retries: 5,
            max_rate_limit_retries: 5,
            backoff_base: Duration::from_millis(5),
            backoff_cap: Duration::from_millis(50),
            rate_limit_floor: Duration::from_millis(5),
            max_wait: Duration::from_millis(100),
            jitter: 0.2,
        },
        ..ClientConfig::default()
    })
    .unwrap();
    let registry = Registry::with_builtins().unwrap();
    let engine = Engine::new(
        store.clone(),
        client,
        lake.clone(),
        registry.get("Atlassian.Audit").unwrap(),
        EngineConfig {
            poll_interval: Some(Duration::from_millis(20)),
            error_backoff: Duration::from_millis(20),
            ..EngineConfig::default()
        },
    )
    .with_observer(monitor.observer());
    let mut new = NewSource::new(
        "E2E org",
        ORG,
        KeyInput::Value(SecretString::from(KEY.to_owned())),
    );
    new.base_url = Some(sim.base_url().to_owned());
    new.dropoff_alarm_minutes = Some(15);
    let source = store.add_source(new).await.unwrap();
    let t = E2e {
        sim,
        store: store.clone(),
        clock,
        monitor: monitor.clone(),
        source_id: source.id.clone(),
        lake,
    };

    // The collector's own loop, polling every 20 ms (real time).
    let cancel = CancellationToken::new();
    let collector = {
        let (engine, id, cancel) = (engine.clone(), source.id.clone(), cancel.clone());
        tokio::spawn(async move {
            engine
                .run_source(
                    &id,
                    &orgtrail_engine::metrics::ApiMetrics,
                    &cancel,
                    &|_, _| {},
                )
                .await
        })
    };

    // Live events for 5 minutes: data arrives, the alarm goes INSUFFICIENT_DATA -> OK (no
    // notification for that).
    let mut transitions = Vec::new();
    for _ in 0..5 {
        t.sim.clock().advance(Duration::from_secs(60));
        t.caught_up().await;
        transitions.extend(t.minute().await);
    }
    assert_eq!(
        transitions,
        [(AlarmState::InsufficientData, AlarmState::Ok)]
    );
    assert_eq!(t.state(AlarmKind::NoData).await, Some(AlarmState::Ok));

    // Live events stop (the simulator's clock stands still). One evaluation per minute.
    let last_event = store
        .source_activity(&source.id)
        .await
        .unwrap()
        .last_event_at
        .unwrap();
    let mut fired_at = None;
    for minute in 1..=40 {
        let tr = t.minute().await;
        if !tr.is_empty() {
            assert_eq!(tr, [(AlarmState::Ok, AlarmState::Alarm)], "minute {minute}");
            assert!(fired_at.is_none(), "fired twice");
            fired_at = Some(t.clock.now());
        }
    }
    let after = fired_at
        .expect("the drop-off alarm fired")
        .duration_since(last_event);
    assert!(
        after >= SignedDuration::from_mins(15) && after <= SignedDuration::from_mins(16),
        "fired {after:?} after the last event; threshold 15 min + one 1-minute evaluation period"
    );
    let webhook = hook.wait_for("SOURCE_NO_DATA", 1).await;
    assert_eq!(webhook.len(), 1, "exactly one notification: {webhook:#?}");
    assert_eq!(webhook[0]["alarm"], "SOURCE_NO_DATA");
    assert_eq!(webhook[0]["state"], "ALARM");
    assert_eq!(webhook[0]["previous_state"], "OK");
    assert_eq!(webhook[0]["resolved"], false);
    assert_eq!(webhook[0]["severity"], "CRITICAL");
    assert_eq!(webhook[0]["source"]["name"], "E2E org");
    assert!(
        webhook[0]["remedy"]
            .as_str()
            .unwrap()
            .contains("orgtrail source health")
    );
    let s = slack.wait_for("SOURCE_NO_DATA", 1).await;
    assert_eq!(s.len(), 1, "exactly one Slack message: {s:#?}");
    assert!(
        s[0]["text"]
            .as_str()
            .unwrap()
            .contains("SOURCE_NO_DATA ALARM")
    );

    // Events resume: exactly one resolution.
    t.sim.clock().advance(Duration::from_secs(60));
    t.caught_up().await;
    let mut tr = t.minute().await;
    for _ in 0..5 {
        t.sim.clock().advance(Duration::from_secs(60));
        t.caught_up().await;
        tr.extend(t.minute().await);
    }
    assert_eq!(tr, [(AlarmState::Alarm, AlarmState::Ok)]);
    let webhook = hook.wait_for("SOURCE_NO_DATA", 2).await;
    assert_eq!(
        webhook.len(),
        2,
        "one alarm and one resolution: {webhook:#?}"
    );
    assert_eq!(webhook[1]["alarm"], "SOURCE_NO_DATA");
    assert_eq!(webhook[1]["state"], "OK");
    assert_eq!(webhook[1]["resolved"], true);
    assert_eq!(slack.wait_for("SOURCE_NO_DATA", 2).await.len(), 2);

    // Revoke the key: a permissions alarm with the remedy.
    t.sim.set_keys_revoked(ORG, true).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while t.state(AlarmKind::Permissions).await != Some(AlarmState::Alarm) {
        assert!(Instant::now() < deadline, "no permissions alarm");
        tokio::time::sleep(Duration::from_millis(20)).await;
        t.monitor.evaluate().await.unwrap();
    }
    let webhook = hook.wait_for("SOURCE_PERMISSIONS_CHECKS", 1).await;
    assert_eq!(webhook.len(), 1, "{webhook:#?}");
    let perm = &webhook[0];
    assert_eq!(perm["alarm"], "SOURCE_PERMISSIONS_CHECKS");
    assert_eq!(perm["state"], "ALARM");
    assert!(
        perm["message"].as_str().unwrap().contains("HTTP 401"),
        "{perm}"
    );
    let remedy = perm["remedy"].as_str().unwrap();
    assert!(
        remedy.contains("orgtrail source edit \"E2E org\" --api-key-env VAR"),
        "{remedy}"
    );

    cancel.cancel();
    collector.await.unwrap().unwrap();
    // A last evaluation (persists the activity), then every transition reaches the lake.
    t.monitor.evaluate().await.unwrap();
    notifier.shutdown(Duration::from_secs(10)).await;
    let recorded = store.alarm_events(None, 1000).await.unwrap();
    assert!(
        store
            .pending_alarm_events(Timestamp::UNIX_EPOCH, 100)
            .await
            .unwrap()
            .is_empty(),
        "every transition written to the lake and notified"
    );
    let q = t.lake.query_engine(&registry).unwrap();
    let (_, batches) = q
        .sql("SELECT alarm, state, sequence, message FROM system_errors ORDER BY sequence")
        .await
        .unwrap();
    let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
    assert_eq!(rows, recorded.len());

    // No API key anywhere.
    let health = orgtrail_engine::source_health_report(store.as_ref(), &source, t.clock.now())
        .await
        .unwrap();
    let alarms = orgtrail_engine::list_alarms(store.as_ref(), None)
        .await
        .unwrap();
    let history = orgtrail_engine::alarm_history(store.as_ref(), None, 100)
        .await
        .unwrap();
    let rendered = prom.render();
    assert!(
        rendered.contains("orgtrail_events_stored_total{source=\"E2E org\"}"),
        "{rendered}"
    );
    assert!(rendered.contains("orgtrail_alarm_state{"), "{rendered}");
    assert!(
        rendered.contains("orgtrail_api_requests_total{"),
        "{rendered}"
    );
    let log_text = String::from_utf8(logs.lock().unwrap().clone()).unwrap();
    assert!(
        log_text.contains("SOURCE_NO_DATA"),
        "transitions are logged"
    );
    let lake_text = arrow::util::pretty::pretty_format_batches(&batches)
        .unwrap()
        .to_string();
    let mut outputs = vec![
        ("health report", serde_json::to_string(&health).unwrap()),
        ("alarms", serde_json::to_string(&alarms).unwrap()),
        ("alarm history", serde_json::to_string(&history).unwrap()),
        ("metrics", rendered),
        ("logs", log_text),
        ("system_errors", lake_text),
    ];
    for r in [&hook, &slack] {
        outputs.push(("notifications", r.raw.lock().unwrap().join("\n")));
    }
    for (what, text) in &outputs {
        assert!(!text.contains(KEY), "the API key leaked into the {what}");
    }
    t.sim.shutdown().await.unwrap();
}
