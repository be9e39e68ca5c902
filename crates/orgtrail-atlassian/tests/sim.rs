//! The client against the in-process simulator (`orgtrail-sim`), on a virtual clock: the
//! simulator's manual clock is also the client's clock, so rate-limit windows, `Retry-After`
//! waits and backoffs take no real time and nothing asserts on wall-clock timing.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use orgtrail_atlassian::{
    ApiError, ApiEvent, ApiKey, Client, ClientConfig, Clock, CycleEnd, ErrorKind, NoHooks, Page,
    PageRequest, RateConfig, RetryPolicy, RetryReason, Sleep, WaitSource,
};
use orgtrail_sim::{Faults, OrgConfig, SimClock, SimConfig, SimHandle, TerminalMode};

const START_MS: i64 = 1_748_855_010_000; // 2025-06-02T09:03:30Z
const ORG: &str = orgtrail_sim::DEFAULT_ORG;
const KEY: &str = orgtrail_sim::DEFAULT_KEY;

/// The simulator's manual clock as the client's clock: sleeping moves it forward.
struct SimTime {
    sim: SimClock,
    lock: Mutex<()>,
}

impl SimTime {
    fn new(sim: SimClock) -> Arc<Self> {
        Arc::new(Self {
            sim,
            lock: Mutex::new(()),
        })
    }
}

impl Clock for SimTime {
    fn now(&self) -> Duration {
        Duration::from_millis((self.sim.now_ms() - START_MS).max(0) as u64)
    }

    fn wall_now(&self) -> jiff::Timestamp {
        jiff::Timestamp::from_millisecond(self.sim.now_ms()).unwrap()
    }

    fn sleep_until(&self, deadline: Duration) -> Sleep {
        // Round up so that `now() >= deadline` afterwards.
        let target = START_MS + deadline.as_nanos().div_ceil(1_000_000) as i64;
        {
            let _g = self.lock.lock().unwrap();
            if self.sim.now_ms() < target {
                self.sim.set_ms(target);
            }
        }
        Box::pin(tokio::task::yield_now())
    }
}

fn sim_config(events: usize) -> SimConfig {
    let mut cfg = SimConfig {
        events,
        seed: 7,
        clock: SimClock::manual(START_MS),
        history_end_ms: Some(START_MS),
        ..SimConfig::default()
    };
    cfg.rate_limits.enabled = false;
    cfg
}

/// No limiter, quick retries: for walks.
fn fast_config(sim: &SimHandle) -> ClientConfig {
    ClientConfig {
        base_url: sim.base_url().to_string(),
        page_limit: 100,
        rate: None,
        retry: RetryPolicy {
            max_retries: 10,
            max_rate_limit_retries: 20,
            ..RetryPolicy::default()
        },
        timeout: Duration::from_secs(10),
        ..ClientConfig::default()
    }
}

fn client(sim: &SimHandle, cfg: ClientConfig) -> Client {
    Client::with_clock(cfg, SimTime::new(sim.clock().clone())).unwrap()
}

/// Collects hook events.
#[derive(Default, Clone)]
struct Recorder(Arc<Mutex<Vec<ApiEvent>>>);

impl Recorder {
    fn hook(&self) -> impl Fn(&ApiEvent) + Send + Sync + 'static {
        let v = self.0.clone();
        move |e: &ApiEvent| v.lock().unwrap().push(e.clone())
    }
    fn events(&self) -> Vec<ApiEvent> {
        self.0.lock().unwrap().clone()
    }
}

/// Walks a whole cycle and returns the pages.
async fn walk(
    client: &Client,
    org: &str,
    key: &ApiKey,
    start: PageRequest,
    hooks: &dyn orgtrail_atlassian::Hooks,
) -> Result<(Vec<Page>, orgtrail_atlassian::Cycle), ApiError> {
    let mut cycle = client.cycle(org, key, start);
    let mut pages = Vec::new();
    while let Some(p) = cycle.next_page(hooks).await? {
        pages.push(p);
    }
    Ok((pages, cycle))
}

fn assert_matches_truth(sim: &SimHandle, org: &str, pages: &[Page]) {
    let truth = sim.ground_truth(org).unwrap();
    let got: Vec<_> = pages.iter().flat_map(|p| &p.events).collect();
    assert_eq!(got.len(), truth.len());
    for (g, t) in got.iter().zip(&truth) {
        assert_eq!(g.id.as_deref(), Some(t.id.as_str()));
        assert_eq!(g.json().as_bytes(), &t.json[..], "raw JSON of {}", t.id);
        assert_eq!(
            g.processed_at.map(|p| p.as_millisecond()),
            Some(t.processed_at_ms)
        );
    }
}

#[tokio::test]
async fn clean_walk_mode_a_returns_the_ground_truth_and_a_poll_cursor() {
    let sim = orgtrail_sim::start(sim_config(1_050)).await.unwrap();
    let c = client(&sim, fast_config(&sim));
    let key = ApiKey::new(KEY);
    let (pages, cycle) = walk(
        &c,
        ORG,
        &key,
        PageRequest::Start { from_ms: None },
        &NoHooks,
    )
    .await
    .unwrap();
    assert_matches_truth(&sim, ORG, &pages);
    // 11 pages of events, then the empty poll page.
    assert_eq!(pages.len(), 12);
    assert!(pages.last().unwrap().events.is_empty());
    assert_eq!(cycle.end(), Some(CycleEnd::CaughtUp));
    let resume = cycle.resume_request().expect("mode A keeps a cursor");
    // Polling again with the kept cursor: still caught up, same cursor, no loop-guard error.
    let (again, c2) = walk(&c, ORG, &key, resume.clone(), &NoHooks).await.unwrap();
    assert_eq!(again.len(), 1);
    assert!(again[0].events.is_empty());
    assert_eq!(c2.resume_request(), Some(resume));
    // Only `limit`, `sortOrder`, `cursor`: no `to`, and the stream was requested once per page.
    assert_eq!(sim.stats().count("events-stream", 200), 13);
    sim.shutdown().await.unwrap();
}

#[tokio::test]
async fn clean_walk_mode_b_and_from_bound() {
    let mut cfg = sim_config(730);
    cfg.terminal_mode = TerminalMode::B;
    let sim = orgtrail_sim::start(cfg).await.unwrap();
    let c = client(&sim, fast_config(&sim));
    let key = ApiKey::new(KEY);
    let (pages, cycle) = walk(
        &c,
        ORG,
        &key,
        PageRequest::Start { from_ms: None },
        &NoHooks,
    )
    .await
    .unwrap();
    assert_matches_truth(&sim, ORG, &pages);
    assert_eq!(cycle.end(), Some(CycleEnd::CaughtUp));
    let last = pages.last().unwrap();
    assert!(last.events.is_empty() && last.next_cursor.is_none());
    // The last non-null cursor is kept for the next poll.
    assert!(cycle.last_cursor().is_some());

    // `from` (epoch ms, inclusive) on the first request.
    let truth = sim.ground_truth(ORG).unwrap();
    let from = truth[500].processed_at_ms;
    let (pages, _) = walk(
        &c,
        ORG,
        &key,
        PageRequest::Start {
            from_ms: Some(from),
        },
        &NoHooks,
    )
    .await
    .unwrap();
    let got: Vec<_> = pages
        .iter()
        .flat_map(|p| &p.events)
        .map(|e| e.id.clone().unwrap())
        .collect();
    let want: Vec<_> = truth
        .iter()
        .filter(|t| t.processed_at_ms >= from)
        .map(|t| t.id.clone())
        .collect();
    assert_eq!(got, want);
    sim.shutdown().await.unwrap();
}

#[tokio::test]
async fn page_cap_ends_a_cycle_and_the_next_cycle_continues() {
    let sim = orgtrail_sim::start(sim_config(450)).await.unwrap();
    let c = client(
        &sim,
        ClientConfig {
            max_pages_per_cycle: 2,
            ..fast_config(&sim)
        },
    );
    let key = ApiKey::new(KEY);
    let mut all = Vec::new();
    let mut start = PageRequest::Start { from_ms: None };
    let mut ends = Vec::new();
    loop {
        let (pages, cycle) = walk(&c, ORG, &key, start, &NoHooks).await.unwrap();
        all.extend(pages);
        ends.push(cycle.end().unwrap());
        if cycle.end() != Some(CycleEnd::PageCap) {
            break;
        }
        start = cycle.resume_request().unwrap();
    }
    assert_eq!(
        ends,
        [CycleEnd::PageCap, CycleEnd::PageCap, CycleEnd::CaughtUp]
    );
    assert_matches_truth(&sim, ORG, &all);
    sim.shutdown().await.unwrap();
}

#[tokio::test]
async fn walk_with_faults_still_returns_exactly_the_ground_truth() {
    let mut cfg = sim_config(1_200);
    cfg.fault_seed = 11;
    cfg.faults = Faults {
        burst_429: 0.1,
        burst_429_len: 3,
        http_5xx: 0.15,
        reset: 0.1,
        truncate: 0.1,
        ..Faults::default()
    };
    let sim = orgtrail_sim::start(cfg).await.unwrap();
    let c = client(
        &sim,
        ClientConfig {
            page_limit: 25,
            ..fast_config(&sim)
        },
    );
    let rec = Recorder::default();
    let hook = rec.hook();
    let (pages, cycle) = walk(
        &c,
        ORG,
        &ApiKey::new(KEY),
        PageRequest::Start { from_ms: None },
        &hook,
    )
    .await
    .unwrap();
    assert_matches_truth(&sim, ORG, &pages);
    assert_eq!(cycle.end(), Some(CycleEnd::CaughtUp));

    let stats = sim.stats();
    for kind in ["429-burst", "5xx", "reset", "truncate"] {
        assert!(
            stats.faults.get(kind).copied().unwrap_or(0) > 0,
            "fault {kind} was not exercised: {:?}",
            stats.faults
        );
    }
    let events = rec.events();
    let reasons: std::collections::HashSet<_> = events
        .iter()
        .filter_map(|e| match e {
            ApiEvent::Retry { reason, .. } => Some(std::mem::discriminant(reason)),
            _ => None,
        })
        .collect();
    assert!(reasons.contains(&std::mem::discriminant(&RetryReason::Body)));
    assert!(reasons.contains(&std::mem::discriminant(&RetryReason::Server(500))));
    let limited = events
        .iter()
        .filter(|e| matches!(e, ApiEvent::RateLimited { .. }))
        .count() as u64;
    assert_eq!(limited, stats.count("events-stream", 429));
    // Every request reported a RequestDone.
    let done = events
        .iter()
        .filter(|e| matches!(e, ApiEvent::RequestDone { .. }))
        .count() as u64;
    assert_eq!(done, stats.total("events-stream"));
    sim.shutdown().await.unwrap();
}

#[tokio::test]
async fn rate_limit_waits_follow_each_header() {
    type Case = (&'static str, fn(&mut orgtrail_sim::RateLimits), WaitSource);
    let cases: [Case; 4] = [
        (
            "retry-after seconds",
            |r| r.header_retry_after = true,
            WaitSource::RetryAfter,
        ),
        (
            "retry-after date",
            |r| r.header_retry_after_date = true,
            WaitSource::RetryAfterDate,
        ),
        (
            "x-retry-after",
            |r| r.header_x_retry_after = true,
            WaitSource::XRetryAfter,
        ),
        ("reset only", |_| {}, WaitSource::RateLimitReset),
    ];
    for (name, set, want) in cases {
        let mut cfg = sim_config(10);
        set(&mut cfg.rate_limits);
        cfg.faults = Faults {
            burst_429: 1.0,
            burst_429_len: 2,
            ..Faults::default()
        };
        let sim = orgtrail_sim::start(cfg).await.unwrap();
        let c = client(&sim, fast_config(&sim));
        let rec = Recorder::default();
        let hook = rec.hook();
        let err = c
            .fetch_page(
                ORG,
                &ApiKey::new(KEY),
                &PageRequest::Start { from_ms: None },
                &hook,
            )
            .await;
        // Every request starts a burst (p = 1): the client gives up after its 429 budget.
        let err = err.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::RateLimited, "{name}");
        assert!(err.is_retryable());
        let waits: Vec<_> = rec
            .events()
            .into_iter()
            .filter_map(|e| match e {
                ApiEvent::RateLimited {
                    wait, decided_by, ..
                } => Some((wait, decided_by)),
                _ => None,
            })
            .collect();
        assert_eq!(waits.len(), 20, "{name}");
        for (wait, src) in waits {
            assert_eq!(src, want, "{name}");
            assert!(wait >= Duration::from_secs(1) && wait <= Duration::from_secs(120));
        }
        sim.shutdown().await.unwrap();
    }

    // No header at all: exponential backoff from 1 s (doubling, capped), floor and jitter.
    let mut cfg = sim_config(10);
    cfg.rate_limits.header_ratelimit = false;
    cfg.faults = Faults {
        burst_429: 1.0,
        burst_429_len: 4,
        ..Faults::default()
    };
    let sim = orgtrail_sim::start(cfg).await.unwrap();
    let mut ccfg = fast_config(&sim);
    ccfg.retry.max_rate_limit_retries = 3;
    let c = client(&sim, ccfg);
    let rec = Recorder::default();
    let hook = rec.hook();
    let before = sim.clock().now_ms();
    let err = c
        .fetch_page(
            ORG,
            &ApiKey::new(KEY),
            &PageRequest::Start { from_ms: None },
            &hook,
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::RateLimited);
    let waits: Vec<_> = rec
        .events()
        .into_iter()
        .filter_map(|e| match e {
            ApiEvent::RateLimited {
                wait, decided_by, ..
            } => Some((wait.as_millis() as u64, decided_by)),
            _ => None,
        })
        .collect();
    assert_eq!(waits.len(), 3);
    for ((ms, src), base) in waits.iter().zip([1000u64, 2000, 4000]) {
        assert_eq!(*src, WaitSource::Backoff);
        assert!((base..=base * 12 / 10).contains(ms), "{ms} vs {base}");
    }
    // The client really waited (virtual time moved by the sum of the waits).
    let waited: u64 = waits.iter().map(|(ms, _)| ms).sum();
    assert!(sim.clock().now_ms() - before >= waited as i64);
    sim.shutdown().await.unwrap();
}

#[tokio::test]
async fn past_reset_is_floored_not_a_hot_loop() {
    let mut cfg = sim_config(10);
    cfg.rate_limits.reset_offset_secs = -120;
    cfg.faults = Faults {
        burst_429: 1.0,
        burst_429_len: 3,
        ..Faults::default()
    };
    let sim = orgtrail_sim::start(cfg).await.unwrap();
    let mut ccfg = fast_config(&sim);
    ccfg.retry.max_rate_limit_retries = 2;
    let c = client(&sim, ccfg);
    let rec = Recorder::default();
    let hook = rec.hook();
    let _ = c
        .fetch_page(
            ORG,
            &ApiKey::new(KEY),
            &PageRequest::Start { from_ms: None },
            &hook,
        )
        .await;
    for e in rec.events() {
        if let ApiEvent::RateLimited {
            wait, decided_by, ..
        } = e
        {
            assert_eq!(decided_by, WaitSource::RateLimitReset);
            assert!(wait >= Duration::from_secs(1) && wait <= Duration::from_millis(1200));
        }
    }
    sim.shutdown().await.unwrap();
}

#[tokio::test]
async fn invalid_cursor_is_its_own_kind() {
    let sim = orgtrail_sim::start(sim_config(300)).await.unwrap();
    let c = client(&sim, fast_config(&sim));
    let key = ApiKey::new(KEY);
    let first = c
        .fetch_page(ORG, &key, &PageRequest::Start { from_ms: None }, &NoHooks)
        .await
        .unwrap();
    let cursor = first.next_cursor.unwrap();
    sim.expire_cursors();
    let err = c
        .fetch_page(ORG, &key, &PageRequest::Cursor(cursor), &NoHooks)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidCursor, "{err}");
    assert!(!err.is_retryable() && !err.is_fatal_for_source());
    assert!(err.to_string().contains("processedAt"));
    // A cursor the server never issued.
    let err = c
        .fetch_page(
            ORG,
            &key,
            &PageRequest::Cursor("bm90LWEtY3Vyc29y".into()),
            &NoHooks,
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidCursor);
    // Not retried.
    assert_eq!(sim.stats().count("events-stream", 400), 2);
    sim.shutdown().await.unwrap();
}

#[tokio::test]
async fn revoked_key_is_fatal_auth_with_the_remedy() {
    let secret = "atl-REVOKED-KEY-6f1d2c";
    let mut cfg = sim_config(50);
    cfg.orgs = vec![OrgConfig::new(ORG, secret)];
    let sim = orgtrail_sim::start(cfg).await.unwrap();
    let c = client(&sim, fast_config(&sim));
    let key = ApiKey::new(secret);
    c.verify(ORG, &key).await.unwrap();
    sim.set_keys_revoked(ORG, true).unwrap();
    let err = c.verify(ORG, &key).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Auth);
    assert!(err.is_fatal_for_source() && !err.is_retryable());
    let msg = err.to_string();
    assert!(msg.contains("invalid, revoked or expired"), "{msg}");
    assert!(
        msg.contains("orgtrail source edit NAME --api-key-env VAR"),
        "{msg}"
    );
    assert!(msg.contains("--api-key-file"), "{msg}");
    assert!(msg.contains(ORG) && msg.contains(sim.base_url()), "{msg}");
    assert!(!msg.contains(secret) && !format!("{err:?}").contains(secret));
    // Never retried.
    assert_eq!(sim.stats().count("events-stream", 401), 1);
    // A wrong key is the same error.
    let err = c.verify(ORG, &ApiKey::new("wrong")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Auth);
    sim.shutdown().await.unwrap();
}

#[tokio::test]
async fn unknown_org_is_not_found_with_the_org_id_hint() {
    let sim = orgtrail_sim::start(sim_config(20)).await.unwrap();
    let c = client(&sim, fast_config(&sim));
    let other = "99999999-8888-7777-6666-555555555555";
    let err = c.verify(other, &ApiKey::new(KEY)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    assert_eq!(err.code(), Some("ADMIN-404-2"));
    let msg = err.to_string();
    assert!(
        msg.contains("Organization ID") && msg.contains(other),
        "{msg}"
    );
    assert!(err.is_fatal_for_source());
    // A wrong base URL (path prefix) is a 404 too.
    let mut cfg = fast_config(&sim);
    cfg.base_url = format!("{}/wrong-prefix", sim.base_url());
    let err = client(&sim, cfg)
        .verify(ORG, &ApiKey::new(KEY))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    assert!(err.to_string().contains("base URL"));
    sim.shutdown().await.unwrap();
}

#[tokio::test]
async fn slow_response_beyond_the_timeout_is_retried() {
    let sim = orgtrail_sim::start(sim_config(30)).await.unwrap();
    sim.set_faults(Faults {
        slow: 1.0,
        slow_ms: 5_000,
        ..Faults::default()
    })
    .unwrap();
    let c = client(
        &sim,
        ClientConfig {
            timeout: Duration::from_millis(300),
            ..fast_config(&sim)
        },
    );
    let rec = Recorder::default();
    let events = rec.0.clone();
    let sim_ref = &sim;
    // After the first timeout, the fault is switched off: the retry must succeed.
    let hook = move |e: &ApiEvent| {
        if matches!(e, ApiEvent::Retry { .. }) {
            sim_ref.set_faults(Faults::default()).unwrap();
        }
        events.lock().unwrap().push(e.clone());
    };
    let page = c
        .fetch_page(
            ORG,
            &ApiKey::new(KEY),
            &PageRequest::Start { from_ms: None },
            &hook,
        )
        .await
        .unwrap();
    assert_eq!(page.events.len(), 30);
    let retries: Vec<_> = rec
        .events()
        .into_iter()
        .filter_map(|e| match e {
            ApiEvent::Retry { reason, .. } => Some(reason),
            _ => None,
        })
        .collect();
    assert_eq!(retries, [RetryReason::Timeout]);
    sim.shutdown().await.unwrap();
}

#[tokio::test]
async fn transient_errors_surface_after_the_retry_budget() {
    let sim = orgtrail_sim::start(sim_config(30)).await.unwrap();
    sim.set_faults(Faults {
        http_5xx: 1.0,
        statuses_5xx: vec![503],
        ..Faults::default()
    })
    .unwrap();
    let mut cfg = fast_config(&sim);
    cfg.retry.max_retries = 3;
    let c = client(&sim, cfg);
    let rec = Recorder::default();
    let hook = rec.hook();
    let before = sim.clock().now_ms();
    let err = c
        .fetch_page(
            ORG,
            &ApiKey::new(KEY),
            &PageRequest::Start { from_ms: None },
            &hook,
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Server);
    assert_eq!(err.http_status(), Some(503));
    assert!(err.is_retryable());
    assert!(err.to_string().contains("after 4 attempts"), "{err}");
    assert_eq!(sim.stats().count("events-stream", 503), 4);
    // Backoff 1 s, 2 s, 4 s (+0–20 %), bounded.
    let waits: Vec<_> = rec
        .events()
        .into_iter()
        .filter_map(|e| match e {
            ApiEvent::Retry { wait, .. } => Some(wait.as_millis() as u64),
            _ => None,
        })
        .collect();
    assert_eq!(waits.len(), 3);
    for (ms, base) in waits.iter().zip([1000u64, 2000, 4000]) {
        assert!((base..=base * 12 / 10).contains(ms), "{ms}");
    }
    assert!(sim.clock().now_ms() - before >= 7_000);
    sim.shutdown().await.unwrap();
}

#[tokio::test]
async fn connection_refused_is_a_transport_error() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let cfg = ClientConfig {
        base_url: format!("http://{addr}"),
        rate: None,
        retry: RetryPolicy {
            max_retries: 1,
            backoff_base: Duration::from_millis(1),
            ..RetryPolicy::default()
        },
        ..ClientConfig::default()
    };
    let c = Client::new(cfg).unwrap();
    let err = c.verify(ORG, &ApiKey::new(KEY)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Transport, "{err}");
    assert!(err.is_retryable());
    assert!(err.to_string().contains(&addr.to_string()));
}

#[tokio::test]
async fn shared_limiter_keeps_two_sources_on_one_key_within_budget() {
    // Two orgs served with one key, the simulator's default limits (50/min per path, 60/min
    // per key) and the client's default limiter (0.8 req/s, burst 2) shared by both sources.
    const ORG_B: &str = "22222222-3333-4444-5555-666666666666";
    let mut cfg = sim_config(600);
    cfg.rate_limits = orgtrail_sim::RateLimits::default();
    cfg.orgs = vec![OrgConfig::new(ORG, KEY), OrgConfig::new(ORG_B, KEY)];
    let sim = orgtrail_sim::start(cfg).await.unwrap();
    let ccfg = ClientConfig {
        base_url: sim.base_url().to_string(),
        page_limit: 20,
        ..ClientConfig::default()
    };
    assert_eq!(
        ccfg.rate,
        Some(RateConfig {
            per_second: 0.8,
            burst: 2
        })
    );
    let c = client(&sim, ccfg);
    let rec = Recorder::default();
    let hook = rec.hook();
    let before = sim.clock().now_ms();
    let key_a = ApiKey::new(KEY);
    let key_b = ApiKey::new(KEY);
    let (a, b) = tokio::join!(
        walk(&c, ORG, &key_a, PageRequest::Start { from_ms: None }, &hook),
        walk(
            &c,
            ORG_B,
            &key_b,
            PageRequest::Start { from_ms: None },
            &hook
        ),
    );
    let (a, b) = (a.unwrap().0, b.unwrap().0);
    assert_matches_truth(&sim, ORG, &a);
    assert_matches_truth(&sim, ORG_B, &b);

    let stats = sim.stats();
    let requests = stats.total("events-stream");
    assert_eq!(requests, 62); // 2 × (30 pages + the empty last page)
    assert_eq!(stats.count("events-stream", 429), 0, "{stats:?}");
    // GCRA: n requests need at least (n − burst) / rate of (virtual) time.
    let elapsed_s = (sim.clock().now_ms() - before) as f64 / 1000.0;
    assert!(
        elapsed_s >= (requests as f64 - 2.0) / 0.8 - 0.01,
        "{requests} requests in {elapsed_s} s"
    );
    assert!(
        rec.events()
            .iter()
            .any(|e| matches!(e, ApiEvent::LimiterWait { .. }))
    );

    // Without the shared limiter, the same two walks exceed the key's budget.
    sim.reset_stats();
    let unlimited = client(
        &sim,
        ClientConfig {
            base_url: sim.base_url().to_string(),
            page_limit: 20,
            rate: None,
            retry: RetryPolicy {
                max_rate_limit_retries: 50,
                ..RetryPolicy::default()
            },
            ..ClientConfig::default()
        },
    );
    let (a, b) = tokio::join!(
        walk(
            &unlimited,
            ORG,
            &key_a,
            PageRequest::Start { from_ms: None },
            &NoHooks
        ),
        walk(
            &unlimited,
            ORG_B,
            &key_b,
            PageRequest::Start { from_ms: None },
            &NoHooks
        ),
    );
    assert_matches_truth(&sim, ORG, &a.unwrap().0);
    assert_matches_truth(&sim, ORG_B, &b.unwrap().0);
    assert!(sim.stats().count("events-stream", 429) > 0);
    sim.shutdown().await.unwrap();
}

#[tokio::test]
async fn limiter_budget_is_per_key() {
    // Two different keys do not share a bucket: with burst 2 and no time passing, each key
    // gets its own two immediate requests.
    let mut cfg = sim_config(20);
    cfg.orgs = vec![OrgConfig {
        id: ORG.into(),
        keys: vec![
            orgtrail_sim::KeyConfig::new("key-one"),
            orgtrail_sim::KeyConfig::new("key-two"),
        ],
    }];
    let sim = orgtrail_sim::start(cfg).await.unwrap();
    let c = client(
        &sim,
        ClientConfig {
            base_url: sim.base_url().to_string(),
            rate: Some(RateConfig {
                per_second: 0.1,
                burst: 2,
            }),
            ..ClientConfig::default()
        },
    );
    let t0 = sim.clock().now_ms();
    for k in ["key-one", "key-two", "key-one", "key-two"] {
        c.verify(ORG, &ApiKey::new(k)).await.unwrap();
    }
    assert_eq!(
        sim.clock().now_ms(),
        t0,
        "no limiter wait within the bursts"
    );
    c.verify(ORG, &ApiKey::new("key-one")).await.unwrap();
    assert_eq!(
        sim.clock().now_ms() - t0,
        10_000,
        "third request on one key waits 1/rate"
    );
    sim.shutdown().await.unwrap();
}
