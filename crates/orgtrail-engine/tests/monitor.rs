//! The alarm state machine through the monitor, with a manual clock and a real state database:
//! every transition of every alarm, a restart in each state (no re-fire), threshold edits while in
//! ALARM. The collector is played by calling the observer hooks directly.

use std::sync::{Arc, Mutex};

use jiff::{SignedDuration, Timestamp};
use orgtrail_atlassian::{ApiError, Event};
use orgtrail_engine::{
    BatchWritten, CollectObserver, CycleReport, EngineError, ManualClock, Monitor, MonitorConfig,
    Rules, TransitionSink, WallClock,
};
use orgtrail_state::{
    AlarmEvent, AlarmKind, AlarmState, Checkpoint, KeyInput, NewSource, SecretString, Source,
    SourceUpdate, SqliteStore, StateError, StateStore,
};

const KEY: &str = "monitor-test-key-5d1c0b9a";

#[derive(Default)]
struct Sink(Mutex<Vec<AlarmEvent>>);

impl TransitionSink for Sink {
    fn transition(&self, event: &AlarmEvent) {
        self.0.lock().unwrap().push(event.clone());
    }
}

impl Sink {
    fn take(&self) -> Vec<AlarmEvent> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

struct T {
    _dir: tempfile::TempDir,
    store: Arc<dyn StateStore>,
    clock: Arc<ManualClock>,
    sink: Arc<Sink>,
    monitor: Arc<Monitor>,
    source: Source,
}

fn min(n: i64) -> SignedDuration {
    SignedDuration::from_mins(n)
}

fn event(id: &str) -> Event {
    let raw = format!(
        r#"{{"id":"{id}","type":"events","attributes":{{"time":"2025-06-02T08:00:00Z","processedAt":"2025-06-02T08:00:01Z","action":"user_login"}}}}"#
    );
    Event::new(
        Some(id.to_owned()),
        Some("2025-06-02T08:00:01Z".parse().unwrap()),
        raw,
    )
}

fn ok_cycle() -> Result<CycleReport, EngineError> {
    Ok(CycleReport::default())
}

fn auth_error() -> Result<CycleReport, EngineError> {
    Err(EngineError::Api(ApiError::Auth {
        org_id: "org".into(),
        base_url: "https://api.atlassian.com".into(),
        code: None,
    }))
}

fn server_error() -> Result<CycleReport, EngineError> {
    Err(EngineError::Api(ApiError::Server {
        org_id: "org".into(),
        base_url: "https://api.atlassian.com".into(),
        status: 503,
        code: None,
        attempts: 5,
    }))
}

impl T {
    async fn new(tweak: impl FnOnce(&mut NewSource)) -> T {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn StateStore> =
            Arc::new(SqliteStore::open_in_dir(dir.path()).await.unwrap());
        let mut new = NewSource::new(
            "Acme audit",
            "11111111-2222-3333-4444-555555555555",
            KeyInput::Value(SecretString::from(KEY.to_owned())),
        );
        tweak(&mut new);
        let source = store.add_source(new).await.unwrap();
        let clock = Arc::new(ManualClock::new(Timestamp::now()));
        let sink = Arc::new(Sink::default());
        let monitor = Self::monitor(&store, &clock, &sink);
        T {
            _dir: dir,
            store,
            clock,
            sink,
            monitor,
            source,
        }
    }

    fn monitor(
        store: &Arc<dyn StateStore>,
        clock: &Arc<ManualClock>,
        sink: &Arc<Sink>,
    ) -> Arc<Monitor> {
        Monitor::new(
            store.clone(),
            MonitorConfig {
                clock: clock.clone(),
                rules: Rules::default(),
                ..MonitorConfig::default()
            },
            Some(sink.clone()),
        )
    }

    /// A restart: a new monitor (empty memory) over the same database.
    fn restart(&mut self) {
        self.monitor = Self::monitor(&self.store, &self.clock, &self.sink);
    }

    async fn eval(&self) -> Vec<AlarmEvent> {
        let evs = self.monitor.evaluate().await.unwrap();
        assert_eq!(
            evs,
            self.sink.take(),
            "every recorded transition reaches the sink"
        );
        evs
    }

    async fn source(&self) -> Source {
        self.store.get_source(&self.source.id).await.unwrap()
    }

    async fn state(&self, kind: AlarmKind) -> Option<AlarmState> {
        self.store
            .alarms(Some(&self.source.id))
            .await
            .unwrap()
            .into_iter()
            .find(|a| a.kind == kind)
            .map(|a| a.state)
    }

    async fn data(&self, ids: &[&str]) {
        let s = self.source().await;
        let events: Vec<Event> = ids.iter().map(|i| event(i)).collect();
        self.monitor.page_received(&s, &events);
        let n = ids.len() as u64;
        self.monitor
            .batch_written(&s, &BatchWritten::new(ids.len(), n, 0));
    }

    async fn cycle(&self, r: Result<CycleReport, EngineError>) {
        let s = self.source().await;
        self.monitor.cycle_finished(&s, &r);
    }

    fn advance(&self, d: SignedDuration) {
        self.clock.advance(d);
    }
}

fn only(evs: &[AlarmEvent], kind: AlarmKind) -> Vec<(AlarmState, AlarmState, bool)> {
    evs.iter()
        .filter(|e| e.event.kind == kind)
        .map(|e| (e.event.from, e.event.to, e.event.notify))
        .collect()
}

use AlarmState::{Alarm, InsufficientData as Insufficient, Ok as OkS};

#[tokio::test]
async fn dropoff_every_transition_and_restart_in_each_state() {
    let mut t = T::new(|n| n.dropoff_alarm_minutes = Some(15)).await;
    let k = AlarmKind::NoData;
    // Set, no data yet: INSUFFICIENT_DATA (a new alarm is not a transition).
    assert!(only(&t.eval().await, k).is_empty());
    assert_eq!(t.state(k).await, Some(Insufficient));
    // Restart in INSUFFICIENT_DATA: unchanged.
    t.restart();
    assert!(only(&t.eval().await, k).is_empty());
    assert_eq!(t.state(k).await, Some(Insufficient));
    // 20 minutes without data, but no cycle since the start: the monitor waits for one.
    t.advance(min(20));
    assert!(only(&t.eval().await, k).is_empty());
    // After a cycle without data: INSUFFICIENT_DATA -> ALARM, notified.
    t.cycle(ok_cycle()).await;
    assert_eq!(only(&t.eval().await, k), vec![(Insufficient, Alarm, true)]);
    // Staying in ALARM does not fire again.
    t.advance(min(30));
    assert!(only(&t.eval().await, k).is_empty());
    // Restart in ALARM: no re-fire, even after a cycle without data.
    t.restart();
    assert!(only(&t.eval().await, k).is_empty());
    t.cycle(ok_cycle()).await;
    t.advance(min(5));
    assert!(only(&t.eval().await, k).is_empty());
    assert_eq!(t.state(k).await, Some(Alarm));
    // Events arrive: ALARM -> OK, a resolution.
    t.data(&["e1"]).await;
    assert_eq!(only(&t.eval().await, k), vec![(Alarm, OkS, true)]);
    // Restart in OK: unchanged, and the last data time survived.
    t.restart();
    t.advance(min(10));
    assert!(only(&t.eval().await, k).is_empty());
    assert_eq!(t.state(k).await, Some(OkS));
    // 15 minutes after the last event (5 more), once a cycle ran: OK -> ALARM.
    t.cycle(ok_cycle()).await;
    t.advance(min(4));
    assert!(
        only(&t.eval().await, k).is_empty(),
        "not before the threshold"
    );
    t.advance(min(1));
    assert_eq!(only(&t.eval().await, k), vec![(OkS, Alarm, true)]);
    let history = t.store.alarm_events(Some(&t.source.id), 100).await.unwrap();
    let nodata: Vec<_> = history.iter().filter(|e| e.event.kind == k).collect();
    assert_eq!(nodata.len(), 3, "{nodata:#?}");
}

#[tokio::test]
async fn dropoff_threshold_edits_while_in_alarm() {
    let t = T::new(|n| n.dropoff_alarm_minutes = Some(15)).await;
    let k = AlarmKind::NoData;
    t.eval().await;
    t.data(&["e1"]).await;
    t.cycle(ok_cycle()).await;
    assert_eq!(only(&t.eval().await, k), vec![(Insufficient, OkS, false)]);
    t.advance(min(20));
    assert_eq!(only(&t.eval().await, k), vec![(OkS, Alarm, true)]);
    // Raise the threshold above the silence: resolved, and the message says why.
    let upd = |m: Option<u32>| SourceUpdate {
        dropoff_alarm_minutes: Some(m),
        ..SourceUpdate::default()
    };
    t.store
        .update_source(&t.source.id, upd(Some(60)))
        .await
        .unwrap();
    let evs = t.eval().await;
    assert_eq!(only(&evs, k), vec![(Alarm, OkS, true)]);
    assert!(
        evs[0].event.message.contains("threshold changed"),
        "{}",
        evs[0].event.message
    );
    // Lower it again below the silence: ALARM again, once.
    t.store
        .update_source(&t.source.id, upd(Some(15)))
        .await
        .unwrap();
    assert_eq!(only(&t.eval().await, k), vec![(OkS, Alarm, true)]);
    // A lower threshold while in ALARM keeps ALARM without firing again.
    t.store
        .update_source(&t.source.id, upd(Some(16)))
        .await
        .unwrap();
    assert!(only(&t.eval().await, k).is_empty());
    assert_eq!(t.state(k).await, Some(Alarm));
    // Turning the alarm off while in ALARM resolves it and removes it.
    t.store
        .update_source(&t.source.id, upd(None))
        .await
        .unwrap();
    let evs = t.eval().await;
    assert_eq!(only(&evs, k), vec![(Alarm, OkS, true)]);
    assert_eq!(t.state(k).await, None);
    // Setting it again starts over: INSUFFICIENT_DATA until the next event.
    t.store
        .update_source(&t.source.id, upd(Some(15)))
        .await
        .unwrap();
    assert!(only(&t.eval().await, k).is_empty());
    assert_eq!(t.state(k).await, Some(Insufficient));
    t.data(&["e2"]).await;
    assert_eq!(only(&t.eval().await, k), vec![(Insufficient, OkS, false)]);
}

#[tokio::test]
async fn a_paused_source_is_not_alarmed_for_missing_data() {
    let t = T::new(|n| n.dropoff_alarm_minutes = Some(15)).await;
    let k = AlarmKind::NoData;
    t.data(&["e1"]).await;
    t.cycle(ok_cycle()).await;
    t.eval().await;
    t.store.set_paused(&t.source.id, true).await.unwrap();
    t.advance(min(60));
    assert!(only(&t.eval().await, k).is_empty());
    // Resumed: it waits for a cycle, then fires.
    t.store.set_paused(&t.source.id, false).await.unwrap();
    assert!(only(&t.eval().await, k).is_empty());
    t.cycle(ok_cycle()).await;
    assert_eq!(only(&t.eval().await, k), vec![(OkS, Alarm, true)]);
}

#[tokio::test]
async fn permissions_alarm_with_remedy_survives_restart_and_resolves() {
    let mut t = T::new(|_| {}).await;
    let k = AlarmKind::Permissions;
    t.eval().await;
    assert_eq!(t.state(k).await, Some(OkS));
    t.cycle(auth_error()).await;
    let evs = t.eval().await;
    assert_eq!(only(&evs, k), vec![(OkS, Alarm, true)]);
    let e = &evs.iter().find(|e| e.event.kind == k).unwrap().event;
    assert!(e.message.contains("HTTP 401"), "{}", e.message);
    let remedy = e.remedy.as_deref().unwrap();
    assert!(
        remedy.contains("orgtrail source edit \"Acme audit\" --api-key-env VAR"),
        "{remedy}"
    );
    // The same failure again, and a restart with the failure still there: no re-fire.
    t.cycle(auth_error()).await;
    assert!(only(&t.eval().await, k).is_empty());
    t.restart();
    t.cycle(auth_error()).await;
    assert!(only(&t.eval().await, k).is_empty());
    // A different cause (the key cannot be read) is a new stage: notified.
    t.cycle(Err(EngineError::State(StateError::KeyUnavailable {
        source_name: "Acme audit".into(),
        reference: "env:ACME_KEY".into(),
        reason: "the variable is not set".into(),
    })))
    .await;
    assert_eq!(only(&t.eval().await, k), vec![(Alarm, Alarm, true)]);
    // Fixed: resolved.
    t.cycle(ok_cycle()).await;
    assert_eq!(only(&t.eval().await, k), vec![(Alarm, OkS, true)]);
}

#[tokio::test]
async fn processing_errors_after_three_failed_cycles() {
    let mut t = T::new(|_| {}).await;
    let k = AlarmKind::ProcessingErrors;
    t.eval().await;
    for _ in 0..2 {
        t.cycle(server_error()).await;
        assert!(only(&t.eval().await, k).is_empty());
    }
    t.cycle(server_error()).await;
    let evs = t.eval().await;
    assert_eq!(only(&evs, k), vec![(OkS, Alarm, true)]);
    assert!(
        evs[0].event.message.contains("3 collection cycles"),
        "{}",
        evs[0].event.message
    );
    t.restart();
    t.cycle(server_error()).await;
    assert!(
        only(&t.eval().await, k).is_empty(),
        "no re-fire after a restart"
    );
    t.cycle(ok_cycle()).await;
    assert_eq!(only(&t.eval().await, k), vec![(Alarm, OkS, true)]);
}

#[tokio::test]
async fn classification_first_failure_then_rate_then_calm() {
    let t = T::new(|_| {}).await;
    let k = AlarmKind::ClassificationFailures;
    let s = t.source().await;
    t.monitor
        .batch_written(&s, &BatchWritten::new(1000, 1000, 0));
    t.eval().await;
    assert_eq!(t.state(k).await, Some(OkS));
    // The first failure ever fires (stage "first").
    t.monitor
        .batch_written(&s, &BatchWritten::new(1001, 1000, 1));
    let evs = t.eval().await;
    assert_eq!(only(&evs, k), vec![(OkS, Alarm, true)]);
    assert_eq!(evs[0].event.stage.as_deref(), Some("first"));
    // A few more at a low rate: nothing new.
    t.advance(min(5));
    t.monitor
        .batch_written(&s, &BatchWritten::new(1002, 1000, 2));
    assert!(only(&t.eval().await, k).is_empty());
    // A high rate: a new stage, notified.
    t.monitor
        .batch_written(&s, &BatchWritten::new(600, 100, 500));
    let evs = t.eval().await;
    assert_eq!(only(&evs, k), vec![(Alarm, Alarm, true)]);
    assert_eq!(evs[0].event.stage.as_deref(), Some("rate"));
    // An hour and more later with no failures: OK.
    t.advance(min(70));
    t.monitor
        .batch_written(&s, &BatchWritten::new(1000, 1000, 0));
    assert_eq!(only(&t.eval().await, k), vec![(Alarm, OkS, true)]);
    // Later single failures do not fire again (only the first one ever does).
    t.monitor
        .batch_written(&s, &BatchWritten::new(1001, 1000, 1));
    assert!(only(&t.eval().await, k).is_empty());
    let act = t.store.source_activity(&s.id).await.unwrap();
    assert_eq!(act.failures_total, 504);
    assert_eq!(act.rows_total, 5100);
}

#[tokio::test]
async fn key_expiry_stages_fire_once_each() {
    let now = Timestamp::now();
    let mut t =
        T::new(|n| n.key_expires_at = Some(now + SignedDuration::from_hours(20 * 24))).await;
    let k = AlarmKind::KeyExpiry;
    t.eval().await;
    assert_eq!(t.state(k).await, Some(OkS));
    let day = SignedDuration::from_hours(24);
    let mut stages = Vec::new();
    for _ in 0..22 {
        t.advance(day);
        for e in t.eval().await.into_iter().filter(|e| e.event.kind == k) {
            assert!(e.event.notify);
            stages.push(e.event.stage.unwrap());
        }
        if stages.len() == 2 {
            // Restart in ALARM between stages: no re-fire.
            t.restart();
        }
    }
    assert_eq!(stages, ["14d", "7d", "1d", "expired"]);
    // A new key with a later date resolves it.
    t.store
        .update_source(
            &t.source.id,
            SourceUpdate {
                key_expires_at: Some(Some(t.clock.now() + day * 90)),
                ..SourceUpdate::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(only(&t.eval().await, k), vec![(Alarm, OkS, true)]);
    // Clearing the date removes the alarm.
    t.store
        .update_source(
            &t.source.id,
            SourceUpdate {
                key_expires_at: Some(None),
                ..SourceUpdate::default()
            },
        )
        .await
        .unwrap();
    t.eval().await;
    assert_eq!(t.state(k).await, None);
}

#[tokio::test]
async fn retention_risk_when_uncollected_events_age() {
    let t = T::new(|_| {}).await;
    let k = AlarmKind::RetentionRisk;
    let old = Timestamp::now() - SignedDuration::from_hours(160 * 24);
    let ck = Checkpoint {
        max_processed_at_ms: Some(old.as_millisecond()),
        page_seq: 1,
        ..Checkpoint::default()
    };
    t.store.save_checkpoint(&t.source.id, &ck).await.unwrap();
    let evs = t.eval().await;
    assert_eq!(only(&evs, k), vec![(OkS, Alarm, true)]);
    let msg = &evs
        .iter()
        .find(|e| e.event.kind == k)
        .unwrap()
        .event
        .message;
    assert!(msg.contains("180 days"), "{msg}");
    // A cycle that catches up: nothing is at risk any more.
    t.cycle(ok_cycle()).await;
    assert_eq!(only(&t.eval().await, k), vec![(Alarm, OkS, true)]);
}

#[tokio::test]
async fn activity_and_health_report() {
    let t = T::new(|n| n.dropoff_alarm_minutes = Some(30)).await;
    t.data(&["a", "b", "c"]).await;
    t.cycle(auth_error()).await;
    t.eval().await;
    let report =
        orgtrail_engine::source_health_report(t.store.as_ref(), &t.source().await, t.clock.now())
            .await
            .unwrap();
    assert_eq!(report.last_hour.events, 3);
    assert_eq!(report.last_day.rows, 3);
    assert!(report.last_event_time.is_some());
    assert_eq!(report.status, orgtrail_engine::HealthStatus::Unhealthy);
    assert!(
        report
            .reasons
            .iter()
            .any(|r| r.contains("SOURCE_PERMISSIONS_CHECKS"))
    );
    let json = serde_json::to_string(&report).unwrap();
    assert!(!json.contains(KEY));
    assert!(json.contains("\"status\":\"unhealthy\""), "{json}");
    assert!(json.contains("\"alarm\":\"SOURCE_NO_DATA\""), "{json}");
}
