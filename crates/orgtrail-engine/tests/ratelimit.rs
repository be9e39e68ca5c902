//! Rate limits, end to end: a backfill against the simulator at its DEFAULT limits (events-stream:
//! 50 requests a minute per path, 60 per key, fixed windows aligned to the clock minute) with the
//! client's DEFAULT proactive limiter (0.8 requests/s, burst 2). At most 1% of the requests get a 429,
//! and the collector uses at least 90% of the request budget the API allows. Requests and 429s are
//! the simulator's own counters.
//!
//! This test runs in real time, on purpose: the budget it measures is what the whole collector
//! (fetch, parse, spool commit, between requests) achieves, not the limiter alone (the client's own
//! tests check the limiter on a virtual clock). It takes about 90 s: the limits allow 50 requests a
//! minute, and a backfill that is rate-limit bound beyond the first window's allowance needs more
//! than 50 requests; 61 (30,000 events at 500 a page, then the empty last page) take 75 s at the
//! limiter's 0.8/s, plus the simulator's generation, the final flush and the lake check. The
//! assertions are on ratios of counts, never on how long anything took.

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use orgtrail_atlassian::{ApiEvent, Client, ClientConfig, RateConfig};
use orgtrail_engine::{Engine, EngineConfig};
use orgtrail_lake::Lake;
use orgtrail_schema::Registry;
use orgtrail_sim::{OrgConfig, RateLimits, SimConfig};
use orgtrail_state::{KeyInput, NewSource, SecretString, SqliteStore, StateStore};
use tokio_util::sync::CancellationToken;

const ORG: &str = "11111111-2222-3333-4444-555555555555";
const KEY: &str = "ratelimit-test-key-5c8e21";
/// 60 full pages of 500 (the client's default page size), then the empty page that ends the walk.
const EVENTS: usize = 30_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backfill_at_the_default_limits_gets_few_429s_and_uses_the_budget() {
    let cfg = SimConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        orgs: vec![OrgConfig::new(ORG, KEY)],
        events: EVENTS,
        seed: 13,
        ..SimConfig::default()
    };
    let limits: RateLimits = cfg.rate_limits.clone();
    assert!(limits.enabled, "the simulator's default limits are on");
    // The budget of one source's walk: the tighter of the per-path and per-key limits.
    let per_window = limits.stream_per_path.min(limits.stream_per_key);
    let sim = orgtrail_sim::start(cfg).await.unwrap();

    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn StateStore> = Arc::new(SqliteStore::open_in_dir(dir.path()).await.unwrap());
    let client = Client::new(ClientConfig::with_base_url(sim.base_url())).unwrap();
    assert_eq!(client.config().rate, Some(RateConfig::default()));
    let lake = Lake::open(dir.path().join("lake").to_str().unwrap()).unwrap();
    let registry = Registry::with_builtins().unwrap();
    let schema = registry.get("Atlassian.Audit").unwrap();
    let engine = Engine::new(store, client, lake, schema, EngineConfig::default());
    let mut new = NewSource::new(
        "Rate limit test",
        ORG,
        KeyInput::Value(SecretString::from(KEY.to_owned())),
    );
    new.base_url = Some(sim.base_url().to_owned());
    let source = engine.store().add_source(new).await.unwrap();

    // When each request finished, as the client saw it (to know how long the requests took).
    let done: Arc<Mutex<Vec<Instant>>> = Arc::default();
    let d = done.clone();
    let hooks = move |e: &ApiEvent| {
        if let ApiEvent::RequestDone { .. } = e {
            d.lock().unwrap().push(Instant::now());
        }
    };
    sim.reset_stats();
    let started = Instant::now();
    let since = jiff::Timestamp::now() - jiff::SignedDuration::from_hours(8 * 24);
    let report = engine
        .backfill(&source, since, &hooks, &CancellationToken::new(), &|_| {})
        .await
        .unwrap();
    // The requests ran until the last one finished; the final flush to the lake comes after it
    // and needs no request, so it is not part of the budget window.
    let last = *done.lock().unwrap().last().unwrap();
    let windows = (last - started).as_secs_f64() / 60.0;

    let stats = sim.stats();
    let requests = stats.total("events-stream");
    let limited = stats.count("events-stream", 429);
    let served = stats.count("events-stream", 200);
    assert_eq!(
        served + limited,
        requests,
        "only 200s and 429s expected: {stats:?}"
    );
    assert_eq!(done.lock().unwrap().len() as u64, requests);
    let share_429 = limited as f64 / requests as f64;
    let budget_used = served as f64 / (f64::from(per_window) * windows);
    let figures = format!(
        "{requests} requests ({served} served, {limited} x 429 = {:.2}%) over {windows:.2} \
         windows of {per_window} allowed: {:.1}% of the budget used",
        share_429 * 100.0,
        budget_used * 100.0
    );
    eprintln!("{figures}");

    // The backfill was rate-limit bound: far more requests than one window's burst allows.
    assert!(requests > u64::from(per_window), "{figures}");
    assert!(
        share_429 <= 0.01,
        "more than 1% of requests got 429: {figures}"
    );
    assert!(
        budget_used >= 0.90,
        "less than 90% of the budget used: {figures}"
    );

    // And it collected everything, once.
    let truth: BTreeMap<String, usize> = sim
        .ground_truth(ORG)
        .unwrap()
        .into_iter()
        .map(|e| (e.id, 1))
        .collect();
    assert_eq!(truth.len(), EVENTS);
    assert_eq!(report.new_events, EVENTS as u64, "{report:?}");
    let lake = common::lake_ids(&engine, &registry).await;
    assert_eq!(lake, truth, "every event exactly once");
    sim.shutdown().await.unwrap();
}
