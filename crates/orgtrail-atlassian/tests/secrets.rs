//! The API key never shows up in an error, a Debug output or a log line, whatever fails.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use orgtrail_atlassian::{
    ApiError, ApiKey, Client, ClientConfig, ErrorKind, NoHooks, PageRequest, RetryPolicy,
};
use orgtrail_sim::{Faults, OrgConfig, SimClock, SimConfig};

const SECRET: &str = "ATATT3xFfGF0-distinctive-SECRET-k3y-9f8e7d6c";
const ORG: &str = orgtrail_sim::DEFAULT_ORG;

#[derive(Clone, Default)]
struct Buf(Arc<Mutex<Vec<u8>>>);

impl Write for Buf {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn assert_clean(what: &str, s: &str) {
    assert!(!s.contains(SECRET), "{what} leaks the key: {s}");
    // Not even a recognizable part of it.
    assert!(
        !s.contains("distinctive-SECRET"),
        "{what} leaks part of the key: {s}"
    );
}

#[tokio::test]
async fn the_key_never_leaks() {
    let logs = Buf::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let mut cfg = SimConfig {
        events: 300,
        clock: SimClock::manual(1_748_855_010_000),
        history_end_ms: Some(1_748_855_010_000),
        orgs: vec![OrgConfig::new(ORG, SECRET)],
        ..SimConfig::default()
    };
    cfg.rate_limits.enabled = false;
    let sim = orgtrail_sim::start(cfg).await.unwrap();
    let ccfg = ClientConfig {
        base_url: sim.base_url().to_string(),
        page_limit: 100,
        timeout: Duration::from_millis(300),
        rate: Some(orgtrail_atlassian::RateConfig {
            per_second: 1000.0,
            burst: 5,
        }),
        retry: RetryPolicy {
            max_retries: 1,
            max_rate_limit_retries: 1,
            backoff_base: Duration::from_millis(1),
            rate_limit_floor: Duration::from_millis(1),
            max_wait: Duration::from_millis(5),
            ..RetryPolicy::default()
        },
        ..ClientConfig::default()
    };
    let client = Client::new(ccfg.clone()).unwrap();
    let key = ApiKey::new(format!("{SECRET}\n"));
    let mut errors: Vec<ApiError> = Vec::new();

    client.verify(ORG, &key).await.unwrap();
    let first = client
        .fetch_page(
            ORG,
            &key,
            &PageRequest::Start { from_ms: Some(0) },
            &NoHooks,
        )
        .await
        .unwrap();
    let cursor = first.next_cursor.clone().unwrap();
    let mut cycle = client.cycle(ORG, &key, PageRequest::Cursor(cursor.clone()));
    assert!(cycle.next_page(&NoHooks).await.unwrap().is_some());

    // 404
    errors.push(
        client
            .verify("00000000-0000-0000-0000-000000000000", &key)
            .await
            .unwrap_err(),
    );
    // 400 ADMIN-400-1
    sim.expire_cursors();
    errors.push(
        client
            .fetch_page(ORG, &key, &PageRequest::Cursor(cursor), &NoHooks)
            .await
            .unwrap_err(),
    );
    // 5xx, truncated body, reset, timeout, 429 (each after the retry budget).
    for faults in [
        Faults {
            http_5xx: 1.0,
            ..Faults::default()
        },
        Faults {
            truncate: 1.0,
            ..Faults::default()
        },
        Faults {
            reset: 1.0,
            ..Faults::default()
        },
        Faults {
            slow: 1.0,
            slow_ms: 3_000,
            ..Faults::default()
        },
        Faults {
            burst_429: 1.0,
            ..Faults::default()
        },
    ] {
        sim.set_faults(faults).unwrap();
        errors.push(client.verify(ORG, &key).await.unwrap_err());
    }
    sim.set_faults(Faults::default()).unwrap();
    // 401
    sim.set_keys_revoked(ORG, true).unwrap();
    errors.push(client.verify(ORG, &key).await.unwrap_err());
    // Config errors about the key itself.
    errors.push(
        client
            .verify(ORG, &ApiKey::new(format!("{SECRET}\u{1}")))
            .await
            .unwrap_err(),
    );
    // Transport: nothing listening.
    let dead = Client::new(ClientConfig {
        base_url: "http://127.0.0.1:9".into(),
        ..ccfg.clone()
    })
    .unwrap();
    errors.push(dead.verify(ORG, &key).await.unwrap_err());

    let kinds: Vec<_> = errors.iter().map(|e| e.kind()).collect();
    use ErrorKind::*;
    assert_eq!(
        kinds,
        [
            NotFound,
            InvalidCursor,
            Server,
            Body,
            Transport,
            Transport,
            RateLimited,
            Auth,
            Config,
            Transport
        ]
    );
    for e in &errors {
        assert_clean("Display", &e.to_string());
        assert_clean("Debug", &format!("{e:?}"));
        assert_clean("Debug (alt)", &format!("{e:#?}"));
        let mut src = std::error::Error::source(e);
        while let Some(s) = src {
            assert_clean("source", &s.to_string());
            src = s.source();
        }
    }
    assert_clean("client", &format!("{client:?} {client:#?}"));
    assert_clean("config", &format!("{ccfg:?}"));
    assert_clean("key", &format!("{key:?} {key:#?}"));
    assert_clean("cycle", &format!("{cycle:?}"));
    assert_clean("page", &format!("{:?}", first.next_cursor));

    drop(_guard);
    let logs = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(logs.contains("request done"), "logs were captured: {logs}");
    assert!(logs.contains("giving up"), "{logs}");
    assert_clean("logs", &logs);
    sim.shutdown().await.unwrap();
}
