//! The notifier on its own: a permanent failure (4xx) is not retried, a full queue drops (and the
//! next start sends what was dropped, exactly once), Slack text is escaped, URLs are redacted.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use jiff::Timestamp;
use orgtrail_engine::{Destination, Notifier, NotifyConfig, TransitionSink};
use orgtrail_state::{
    AlarmEvent, AlarmKind, AlarmState, KeyInput, NewAlarmEvent, NewSource, SecretString,
    SqliteStore, StateStore,
};

#[derive(Clone)]
struct Rx {
    status: StatusCode,
    delay: Duration,
    hits: Arc<AtomicUsize>,
    ids: Arc<Mutex<Vec<String>>>,
}

async fn handle(State(r): State<Rx>, body: String) -> StatusCode {
    r.hits.fetch_add(1, Ordering::SeqCst);
    tokio::time::sleep(r.delay).await;
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    r.ids
        .lock()
        .unwrap()
        .push(v["id"].as_str().unwrap().to_owned());
    r.status
}

async fn receiver(status: StatusCode, delay: Duration) -> (String, Rx) {
    let r = Rx {
        status,
        delay,
        hits: Arc::default(),
        ids: Arc::default(),
    };
    let app = axum::Router::new()
        .route("/x/secret-token", axum::routing::post(handle))
        .with_state(r.clone());
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/x/secret-token", l.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    (url, r)
}

async fn store_with_events(n: usize) -> (tempfile::TempDir, Arc<dyn StateStore>, Vec<AlarmEvent>) {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn StateStore> = Arc::new(SqliteStore::open_in_dir(dir.path()).await.unwrap());
    let s = store
        .add_source(NewSource::new(
            "Acme <b>&",
            "11111111-2222-3333-4444-555555555555",
            KeyInput::Value(SecretString::from("k-123456".to_owned())),
        ))
        .await
        .unwrap();
    let events: Vec<NewAlarmEvent> = (0..n)
        .map(|i| NewAlarmEvent {
            source_id: s.id.clone(),
            source_name: s.name.clone(),
            kind: AlarmKind::NoData,
            from: AlarmState::Ok,
            to: AlarmState::Alarm,
            stage: None,
            at: Timestamp::now(),
            message: format!("no events #{i} <here>"),
            remedy: Some("fix it & go".into()),
            notify: true,
        })
        .collect();
    let recorded = store.save_alarms(&s.id, &[], &[], &events).await.unwrap();
    (dir, store, recorded)
}

fn fast(dest: Destination, capacity: usize) -> NotifyConfig {
    NotifyConfig {
        destinations: vec![dest],
        queue_capacity: capacity,
        max_attempts: 5,
        backoff_base: Duration::from_millis(5),
        backoff_cap: Duration::from_millis(20),
        ..NotifyConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_4xx_is_not_retried_and_a_5xx_is() {
    let (_dir, store, evs) = store_with_events(1).await;
    let (url, rx) = receiver(StatusCode::BAD_REQUEST, Duration::ZERO).await;
    let n = Notifier::start(store.clone(), fast(Destination::webhook(&url).unwrap(), 8)).unwrap();
    n.transition(&evs[0]);
    n.shutdown(Duration::from_secs(10)).await;
    assert_eq!(rx.hits.load(Ordering::SeqCst), 1, "a 400 is final");
    // Given up: marked, so not sent again at the next start (no lake here: the lake part stays
    // pending).
    tokio::time::sleep(Duration::from_millis(200)).await;
    let pending = store
        .pending_alarm_events(Timestamp::UNIX_EPOCH, 10)
        .await
        .unwrap();
    assert!(
        pending.iter().all(|e| e.notified_at.is_some()),
        "{pending:?}"
    );

    let (_dir, store, evs) = store_with_events(1).await;
    let (url, rx) = receiver(StatusCode::BAD_GATEWAY, Duration::ZERO).await;
    let n = Notifier::start(store.clone(), fast(Destination::slack(&url).unwrap(), 8)).unwrap();
    n.transition(&evs[0]);
    n.shutdown(Duration::from_secs(10)).await;
    assert_eq!(rx.hits.load(Ordering::SeqCst), 5, "max_attempts");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_drops_and_the_next_start_sends_the_rest_exactly_once() {
    let (_dir, store, evs) = store_with_events(4).await;
    let (url, slow) = receiver(StatusCode::OK, Duration::from_millis(300)).await;
    let n = Notifier::start(store.clone(), fast(Destination::webhook(&url).unwrap(), 1)).unwrap();
    for e in &evs {
        n.transition(e);
    }
    n.shutdown(Duration::from_secs(10)).await;
    let first: BTreeSet<String> = slow.ids.lock().unwrap().iter().cloned().collect();
    assert!(first.len() < 4, "the queue of one dropped some: {first:?}");
    // Marks are written by spawned tasks: let them land.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let unsent: Vec<_> = store
        .pending_alarm_events(Timestamp::UNIX_EPOCH, 10)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.notified_at.is_none())
        .collect();
    assert_eq!(unsent.len(), 4 - first.len());
    // The next start replays what was not sent.
    let (url2, fast_rx) = receiver(StatusCode::OK, Duration::ZERO).await;
    let n = Notifier::start(
        store.clone(),
        fast(Destination::webhook(&url2).unwrap(), 16),
    )
    .unwrap();
    // (Without a lake in this test every transition is pending for it; only the unsent ones
    // are sent.)
    assert_eq!(n.replay_pending(Timestamp::UNIX_EPOCH).await.unwrap(), 4);
    n.shutdown(Duration::from_secs(10)).await;
    let second: BTreeSet<String> = fast_rx.ids.lock().unwrap().iter().cloned().collect();
    assert!(first.is_disjoint(&second));
    let all: BTreeSet<String> = first.union(&second).cloned().collect();
    let want: BTreeSet<String> = evs
        .iter()
        .map(|e| format!("orgtrail-alarm-{}", e.seq))
        .collect();
    assert_eq!(
        all, want,
        "every transition sent exactly once over the two runs"
    );
}

#[tokio::test]
async fn payloads_escape_and_urls_are_redacted() {
    let (_dir, _store, evs) = store_with_events(1).await;
    let slack = orgtrail_engine::slack_payload(&evs[0]).to_string();
    assert!(slack.contains("Acme &lt;b&gt;&amp;"), "{slack}");
    assert!(!slack.contains("<b>"), "{slack}");
    let hook = orgtrail_engine::notification_payload(&evs[0]);
    assert_eq!(hook["source"]["name"], "Acme <b>&");
    assert_eq!(hook["version"], 1);
    assert_eq!(hook["severity"], "CRITICAL");
    let d = Destination::slack("https://hooks.slack.example/services/T0/B0/sEcReT").unwrap();
    assert_eq!(d.redacted(), "https://hooks.slack.example/…");
    assert!(!format!("{d:?}").contains("sEcReT"));
    let err = Destination::webhook("ftp://x/y").unwrap_err().to_string();
    assert!(
        err.contains("--notify-webhook") && err.contains("http(s)"),
        "{err}"
    );
}
