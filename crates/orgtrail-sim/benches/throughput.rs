//! Throughput of `/events-stream` with rate limits and faults off.
//!
//! Starts the simulator in-process, then `SIM_BENCH_CLIENTS` concurrent client tasks each walk
//! the whole stream with `limit=500`, following `meta.next`. The client reads every body in full
//! and takes `meta.next` / `meta.page_size` from the tail of the page (a full JSON parse would make
//! the client, not the server, the bottleneck on a 2-core machine).
//!
//! Baseline, measured in the same run over the same HTTP stack and client: an axum server that
//! answers every request with one precomputed 500-event page (a `Bytes` clone, zero work), with
//! the same number of requests. The ratio simulator/baseline shows how close the simulator is to
//! the cost of HTTP + copying bytes alone.
//!
//! Run: `CARGO_TARGET_DIR=/work/target-sim cargo bench -p orgtrail-sim --bench throughput`
//! Knobs: `SIM_BENCH_EVENTS` (default 200000), `SIM_BENCH_CLIENTS` (default 4),
//! `SIM_BENCH_ROUNDS` (walks per client, default 10).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use orgtrail_sim::{DEFAULT_KEY, DEFAULT_ORG, SimConfig};

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// (next cursor, page_size) from the page tail.
fn tail_meta(body: &[u8]) -> (Option<String>, usize) {
    let tail = &body[body.len().saturating_sub(4096)..];
    let m = find(tail, b"\"meta\":{\"next\":").map(|i| &tail[i + 15..]);
    let next = m.and_then(|m| {
        if m.first() == Some(&b'"') {
            let end = m[1..].iter().position(|b| *b == b'"')?;
            Some(String::from_utf8_lossy(&m[1..1 + end]).into_owned())
        } else {
            None
        }
    });
    let size = find(tail, b"\"page_size\":")
        .map(|i| {
            tail[i + 12..]
                .iter()
                .take_while(|b| b.is_ascii_digit())
                .fold(0usize, |a, b| a * 10 + usize::from(b - b'0'))
        })
        .unwrap_or(0);
    (next, size)
}

struct Totals {
    events: AtomicU64,
    bytes: AtomicU64,
    requests: AtomicU64,
}

async fn walk(client: &reqwest::Client, base: &str, totals: &Totals, expect: usize) {
    let first = format!("{base}/admin/v1/orgs/{DEFAULT_ORG}/events-stream?limit=500");
    let mut url = first.clone();
    let mut seen = 0usize;
    loop {
        let body = client
            .get(&url)
            .bearer_auth(DEFAULT_KEY)
            .send()
            .await
            .expect("request")
            .bytes()
            .await
            .expect("body");
        totals.requests.fetch_add(1, Ordering::Relaxed);
        totals.bytes.fetch_add(body.len() as u64, Ordering::Relaxed);
        if body.starts_with(b"{\"data\":[]") {
            break;
        }
        let (next, n) = tail_meta(&body);
        seen += n;
        match next {
            Some(c) => {
                url =
                    format!("{base}/admin/v1/orgs/{DEFAULT_ORG}/events-stream?cursor={c}&limit=500")
            }
            None => break,
        }
    }
    assert_eq!(seen, expect, "a walk must return every event");
    totals.events.fetch_add(seen as u64, Ordering::Relaxed);
}

async fn baseline(
    client: &reqwest::Client,
    page: Bytes,
    requests: u64,
    clients: usize,
) -> (Duration, u64, u64) {
    let app = axum::Router::new().fallback(move || {
        let page = page.clone();
        async move { ([("content-type", "application/json")], page) }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let base = format!("http://{addr}");
    let events = Arc::new(AtomicU64::new(0));
    let bytes = Arc::new(AtomicU64::new(0));
    let per = requests / clients as u64;
    let t = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|_| {
            let client = client.clone();
            let base = base.clone();
            let (events, bytes) = (events.clone(), bytes.clone());
            tokio::spawn(async move {
                for _ in 0..per {
                    let body = client
                        .get(format!(
                            "{base}/admin/v1/orgs/{DEFAULT_ORG}/events-stream?cursor=x&limit=500"
                        ))
                        .bearer_auth(DEFAULT_KEY)
                        .send()
                        .await
                        .expect("request")
                        .bytes()
                        .await
                        .expect("body");
                    let (_, n) = tail_meta(&body);
                    events.fetch_add(n as u64, Ordering::Relaxed);
                    bytes.fetch_add(body.len() as u64, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("task");
    }
    let el = t.elapsed();
    server.abort();
    (
        el,
        events.load(Ordering::Relaxed),
        bytes.load(Ordering::Relaxed),
    )
}

fn main() {
    let n = env_usize("SIM_BENCH_EVENTS", 200_000);
    let clients = env_usize("SIM_BENCH_CLIENTS", 4);
    let rounds = env_usize("SIM_BENCH_ROUNDS", 10);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let mut cfg = SimConfig { events: n, ..SimConfig::default() };
        cfg.rate_limits.enabled = false;
        let t = Instant::now();
        let sim = orgtrail_sim::start(cfg).await.expect("start");
        println!(
            "generated {n} events ({:.0} bytes/event JSON) in {:.2?}",
            sim.event_bytes(DEFAULT_ORG).expect("org") as f64 / n as f64,
            t.elapsed()
        );
        let client = reqwest::Client::builder().pool_max_idle_per_host(64).build().expect("client");
        // warm-up walk
        let warm = Totals { events: AtomicU64::new(0), bytes: AtomicU64::new(0), requests: AtomicU64::new(0) };
        walk(&client, sim.base_url(), &warm, n).await;

        let totals = Arc::new(Totals { events: AtomicU64::new(0), bytes: AtomicU64::new(0), requests: AtomicU64::new(0) });
        let base = sim.base_url().to_string();
        let t = Instant::now();
        let tasks: Vec<_> = (0..clients)
            .map(|_| {
                let (client, base, totals) = (client.clone(), base.clone(), totals.clone());
                tokio::spawn(async move {
                    for _ in 0..rounds {
                        walk(&client, &base, &totals, n).await;
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.expect("task");
        }
        let el = t.elapsed().as_secs_f64();
        let ev = totals.events.load(Ordering::Relaxed) as f64;
        let by = totals.bytes.load(Ordering::Relaxed) as f64;
        let reqs = totals.requests.load(Ordering::Relaxed);
        let sim_eps = ev / el;
        println!(
            "simulator: {clients} clients x {rounds} walks, {reqs} requests, {ev:.0} events, {:.1} MB in {el:.2}s: {sim_eps:.0} events/s, {:.0} MB/s, {:.0} pages/s",
            by / 1e6,
            by / 1e6 / el,
            reqs as f64 / el
        );

        // Baseline: the first full page, served as a static Bytes.
        let page = client
            .get(format!("{base}/admin/v1/orgs/{DEFAULT_ORG}/events-stream?limit=500"))
            .bearer_auth(DEFAULT_KEY)
            .send()
            .await
            .expect("request")
            .bytes()
            .await
            .expect("body");
        let (bel, bev, bby) = baseline(&client, page, reqs, clients).await;
        let bel = bel.as_secs_f64();
        let base_eps = bev as f64 / bel;
        println!(
            "baseline (static 500-event page): {:.0} events, {:.1} MB in {bel:.2}s: {base_eps:.0} events/s, {:.0} MB/s",
            bev as f64,
            bby as f64 / 1e6,
            bby as f64 / 1e6 / bel
        );
        println!(
            "ratio simulator/baseline: {:.2} (events/s); bytes/s ratio {:.2}",
            sim_eps / base_eps,
            (by / el) / (bby as f64 / bel)
        );
        sim.shutdown().await.expect("shutdown");
    });
}
