//! End to end against the simulator: what reaches the lake is exactly what the API served.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use orgtrail_atlassian::{Client, ClientConfig, NoHooks, RetryPolicy};
use orgtrail_engine::{Engine, EngineConfig};
use orgtrail_lake::Lake;
use orgtrail_schema::Registry;
use orgtrail_sim::{Faults, SimConfig, SimHandle};
use orgtrail_state::{KeyInput, NewSource, SecretString, SqliteStore, StateStore};
use tokio_util::sync::CancellationToken;

const ORG: &str = "11111111-2222-3333-4444-555555555555";
const KEY: &str = "engine-test-key-0123456789";

struct Setup {
    sim: SimHandle,
    engine: Engine,
    registry: Registry,
    _dir: tempfile::TempDir,
}

async fn setup(events: usize, faults: Faults, tweak: impl FnOnce(&mut SimConfig)) -> Setup {
    let mut cfg = SimConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        orgs: vec![orgtrail_sim::OrgConfig::new(ORG, KEY)],
        events,
        seed: 11,
        faults,
        ..SimConfig::default()
    };
    cfg.rate_limits.enabled = false;
    tweak(&mut cfg);
    let sim = orgtrail_sim::start(cfg).await.unwrap();
    let (engine, registry, dir) = engine_at(sim.base_url()).await;
    Setup {
        sim,
        engine,
        registry,
        _dir: dir,
    }
}

/// An engine with a store and a lake in a new folder, and the source "Test org" at `base_url`.
async fn engine_at(base_url: &str) -> (Engine, Registry, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn StateStore> = Arc::new(SqliteStore::open_in_dir(dir.path()).await.unwrap());
    let client = Client::new(ClientConfig {
        base_url: base_url.to_owned(),
        timeout: Duration::from_secs(2),
        rate: None,
        page_limit: 200,
        retry: RetryPolicy {
            max_retries: 20,
            max_rate_limit_retries: 20,
            backoff_base: Duration::from_millis(5),
            backoff_cap: Duration::from_millis(50),
            rate_limit_floor: Duration::from_millis(5),
            max_wait: Duration::from_millis(100),
            jitter: 0.2,
        },
        ..ClientConfig::default()
    })
    .unwrap();
    let lake = Lake::open(dir.path().join("lake").to_str().unwrap()).unwrap();
    let registry = Registry::with_builtins().unwrap();
    let schema = registry.get("Atlassian.Audit").unwrap();
    let config = EngineConfig {
        flush_rows: 700,
        initial_since: jiff::SignedDuration::from_hours(24 * 30),
        ..EngineConfig::default()
    };
    let engine = Engine::new(store, client, lake, schema, config);
    let mut new = NewSource::new(
        "Test org",
        ORG,
        KeyInput::Value(SecretString::from(KEY.to_owned())),
    );
    new.base_url = Some(base_url.to_owned());
    engine.store().add_source(new).await.unwrap();
    (engine, registry, dir)
}

/// Every event id in the lake (rows and classification failures), with how often it appears.
async fn lake_ids(s: &Setup) -> BTreeMap<String, usize> {
    common::lake_ids(&s.engine, &s.registry).await
}

async fn truth(s: &Setup) -> BTreeMap<String, usize> {
    s.sim
        .ground_truth(ORG)
        .unwrap()
        .into_iter()
        .map(|e| (e.id, 1))
        .collect()
}

async fn collect_until_caught_up(s: &Setup) {
    let source = s.engine.store().get_source("Test org").await.unwrap();
    let cancel = CancellationToken::new();
    for _ in 0..50 {
        let r = s
            .engine
            .collect_once(&source, &NoHooks, &cancel)
            .await
            .unwrap();
        if !r.more {
            return;
        }
    }
    panic!("never caught up");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clean_run_lands_exactly_the_ground_truth() {
    let s = setup(3000, Faults::default(), |_| {}).await;
    collect_until_caught_up(&s).await;
    let lake = lake_ids(&s).await;
    let truth = truth(&s).await;
    assert_eq!(lake.len(), truth.len());
    assert_eq!(lake, truth, "every event exactly once");
    // A second cycle (nothing new) changes nothing.
    collect_until_caught_up(&s).await;
    assert_eq!(lake_ids(&s).await, truth);
    s.sim.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_and_expiring_cursors_change_nothing() {
    let faults = Faults {
        burst_429: 0.1,
        http_5xx: 0.1,
        reset: 0.1,
        truncate: 0.1,
        slow: 0.05,
        slow_ms: 3_000,
        stale_cursor: 0.1,
        duplicate: 0.1,
        ..Faults::default()
    };
    let s = setup(2500, faults, |_| {}).await;
    collect_until_caught_up(&s).await;
    // Expire every cursor, then collect again: the restart from processedAt adds no duplicate.
    s.sim.expire_cursors();
    collect_until_caught_up(&s).await;
    assert_eq!(
        lake_ids(&s).await,
        truth(&s).await,
        "every event exactly once despite faults"
    );
    s.sim.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn null_terminal_cursor_mode_and_new_events() {
    let s = setup(1200, Faults::default(), |c| {
        c.terminal_mode = orgtrail_sim::TerminalMode::B
    })
    .await;
    collect_until_caught_up(&s).await;
    assert_eq!(lake_ids(&s).await, truth(&s).await);
    s.sim.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_key_stops_the_source_with_the_remedy_and_never_leaks() {
    let s = setup(500, Faults::default(), |_| {}).await;
    s.sim.set_keys_revoked(ORG, true).unwrap();
    let source = s.engine.store().get_source("Test org").await.unwrap();
    let err = s
        .engine
        .collect_once(&source, &NoHooks, &CancellationToken::new())
        .await
        .unwrap_err();
    assert!(err.is_fatal_for_source());
    let msg = err.to_string();
    assert!(msg.contains("orgtrail source edit"), "{msg}");
    assert!(!msg.contains(KEY) && !format!("{err:?}").contains(KEY));
    let health = s.engine.store().source_health(&source.id).await.unwrap();
    assert!(
        health
            .last_error
            .unwrap()
            .contains("invalid, revoked or expired")
    );
    // After the key is restored, collection resumes without loss.
    s.sim.set_keys_revoked(ORG, false).unwrap();
    collect_until_caught_up(&s).await;
    assert_eq!(lake_ids(&s).await, truth(&s).await);
    s.sim.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backfill_fills_only_what_is_missing() {
    let s = setup(1500, Faults::default(), |_| {}).await;
    collect_until_caught_up(&s).await;
    let source = s.engine.store().get_source("Test org").await.unwrap();
    let since = jiff::Timestamp::now() - jiff::SignedDuration::from_hours(24 * 30);
    let r = s
        .engine
        .backfill(&source, since, &NoHooks, &CancellationToken::new(), &|_| {})
        .await
        .unwrap();
    assert_eq!(r.new_events, 0, "{r:?}");
    assert!(r.duplicates > 0);
    assert_eq!(lake_ids(&s).await, truth(&s).await);
    let too_old = jiff::Timestamp::now() - jiff::SignedDuration::from_hours(24 * 200);
    let err = s
        .engine
        .backfill(
            &source,
            too_old,
            &NoHooks,
            &CancellationToken::new(),
            &|_| {},
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("180-day retention"), "{err}");
    s.sim.shutdown().await.unwrap();
}

/// A cycle that fails (the key is revoked: HTTP 401) and whose bookkeeping fails too (the state
/// database lost its table of runs): the caller still gets the cycle's error, which says what to
/// fix and stops the source until it is edited, not the bookkeeping's.
#[tokio::test]
async fn a_failed_cycle_reports_its_own_error_even_when_recording_it_fails() {
    let s = setup(100, Faults::default(), |_| {}).await;
    let source = s.engine.store().get_source("Test org").await.unwrap();

    use sqlx::Connection as _;
    let db = s._dir.path().join("state.db");
    let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    sqlx::query("ALTER TABLE runs RENAME TO runs_gone")
        .execute(&mut conn)
        .await
        .unwrap();

    let cancel = CancellationToken::new();
    let cycle = || s.engine.collect_once(&source, &NoHooks, &cancel);
    s.sim.set_keys_revoked(ORG, true).unwrap();
    let err = cycle().await.unwrap_err();
    assert!(err.is_fatal_for_source(), "{err}");
    assert!(err.to_string().contains("HTTP 401"), "{err}");

    // A successful cycle whose recording fails reports the recording's error.
    s.sim.set_keys_revoked(ORG, false).unwrap();
    let err = cycle().await.unwrap_err();
    assert!(err.to_string().contains("runs"), "{err}");
}

/// An event of the Atlassian.Audit schema; `extra` is appended inside the event object as is.
fn event_json(id: &str, extra: &str) -> String {
    format!(
        r#"{{"type":"events","id":"{id}","attributes":{{"time":"2026-11-20T06:52:59.545Z","processedAt":"2026-11-20T06:53:00.394Z","action":"user_login"}},"links":{{"self":"https://api.atlassian.com/e/{id}"}}{extra}}}"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_with_an_event_that_is_not_json_is_fetched_again_not_written() {
    use axum::extract::{RawQuery, State};
    use std::sync::Mutex;

    // Page 1 (200 events: a full page) leads to page 2 (c, d: a short page ends the walk). Page
    // 2's event c is balanced but not JSON until the server is fixed.
    #[derive(Default)]
    struct Api {
        fixed: bool,
        cursors: Vec<String>,
    }
    async fn events(State(api): State<Arc<Mutex<Api>>>, RawQuery(q): RawQuery) -> String {
        let mut api = api.lock().unwrap();
        let q = q.unwrap_or_default();
        let cursor = q
            .split('&')
            .find_map(|kv| kv.strip_prefix("cursor="))
            .unwrap_or("")
            .to_owned();
        api.cursors.push(cursor.clone());
        let page = |events: &[String], next: &str| {
            format!(
                r#"{{"data":[{}],"meta":{{"next":{next}}},"links":{{}}}}"#,
                events.join(",")
            )
        };
        match cursor.as_str() {
            "" => page(
                &(0..200)
                    .map(|i| event_json(&format!("a{i:03}"), ""))
                    .collect::<Vec<_>>(),
                r#""p2""#,
            ),
            "p2" => {
                let c = if api.fixed {
                    event_json("c", r#","x":true"#)
                } else {
                    event_json("c", r#","x":tru"#)
                };
                page(&[c, event_json("d", "")], r#""p3""#)
            }
            _ => page(&[], "null"),
        }
    }
    let api = Arc::new(Mutex::new(Api::default()));
    let app = axum::Router::new()
        .fallback(axum::routing::get(events))
        .with_state(api.clone());
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base_url = format!("http://{}", l.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });

    let (engine, registry, _dir) = engine_at(&base_url).await;
    let source = engine.store().get_source("Test org").await.unwrap();
    let cancel = CancellationToken::new();

    let err = engine
        .collect_once(&source, &NoHooks, &cancel)
        .await
        .map(|r| panic!("{r:?}, requests {:?}", api.lock().unwrap().cursors))
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("event c: the event is not valid JSON"),
        "{msg}"
    );
    assert!(!err.is_fatal_for_source(), "{msg}");
    // Page 1 is written; nothing of page 2 (not even its valid event d).
    let page_1: Vec<(String, usize)> = (0..200).map(|i| (format!("a{i:03}"), 1)).collect();
    let ids = common::lake_ids(&engine, &registry).await;
    assert_eq!(ids.into_iter().collect::<Vec<_>>(), page_1);

    api.lock().unwrap().fixed = true;
    let before = api.lock().unwrap().cursors.len();
    engine
        .collect_once(&source, &NoHooks, &cancel)
        .await
        .unwrap();
    // The next cycle starts at page 2 (the checkpoint stayed before it), and every event is in
    // the lake once.
    assert_eq!(api.lock().unwrap().cursors[before], "p2");
    let ids = common::lake_ids(&engine, &registry).await;
    let all: Vec<(String, usize)> = page_1
        .into_iter()
        .chain([("c".to_owned(), 1), ("d".to_owned(), 1)])
        .collect();
    assert_eq!(ids.into_iter().collect::<Vec<_>>(), all);
}
