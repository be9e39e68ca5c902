//! `/_sim/*` admin endpoints: ground truth, counters, fault control, key revocation, cursor
//! expiry, clock. Unauthenticated: keep the simulator on loopback (the default) or pass `--no-admin`.

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::Response;
use serde_json::json;

use crate::config::Faults;
use crate::server::Sim;

fn reply(status: StatusCode, v: serde_json::Value) -> Response {
    let mut r = Response::new(Body::from(v.to_string()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

fn not_found(what: &str) -> Response {
    reply(StatusCode::NOT_FOUND, json!({ "error": what }))
}

/// Events per chunk of the streamed ground truth.
const CHUNK: usize = 2_000;

pub(crate) async fn handle(sim: Arc<Sim>, req: Request, rest: String) -> Response {
    let method = req.method().clone();
    let query = req.uri().query().unwrap_or("").to_string();
    let segs: Vec<&str> = rest.trim_end_matches('/').split('/').collect();
    match (method, segs.as_slice()) {
        (Method::GET, ["health"]) => reply(StatusCode::OK, json!({"status": "ok"})),
        (Method::GET, ["config"]) => {
            let c = &sim.cfg;
            reply(
                StatusCode::OK,
                json!({
                    "orgs": c.orgs.iter().map(|o| json!({"id": o.id, "keys": o.keys.len()})).collect::<Vec<_>>(),
                    "events": c.events,
                    "seed": c.seed,
                    "terminal_mode": c.terminal_mode,
                    "from_applies_to": c.from_applies_to,
                    "limit_over_max": c.limit_over_max,
                    "extra_meta": c.extra_meta,
                    "live_rate_per_second": c.live_rate.map(|r| r.per_second),
                    "rate_limits": c.rate_limits,
                    "faults": sim.faults(),
                    "fault_seed": c.fault_seed,
                    "cursor_ttl_ms": c.cursor_ttl.map(|d| d.as_millis() as u64),
                    "manual_clock": c.clock.is_manual(),
                    "now_ms": c.clock.now_ms(),
                }),
            )
        }
        (Method::GET, ["orgs"]) => {
            let now = sim.clock().now_ms();
            let orgs: Vec<_> = sim
                .orgs
                .iter()
                .map(|o| {
                    o.catch_up(now);
                    json!({"id": o.pools.org_id, "events": o.read().events.len()})
                })
                .collect();
            reply(StatusCode::OK, json!({ "orgs": orgs }))
        }
        (Method::GET, ["orgs", org, "events"]) => {
            let Some(oi) = sim.org_index(org) else {
                return not_found("unknown org");
            };
            let ids_only = form_urlencoded::parse(query.as_bytes())
                .any(|(k, v)| k == "idsOnly" && v == "true");
            ground_truth(sim, oi, ids_only)
        }
        (Method::POST, ["orgs", org, "revoke-keys"])
        | (Method::POST, ["orgs", org, "restore-keys"]) => {
            let Some(oi) = sim.org_index(org) else {
                return not_found("unknown org");
            };
            let revoke = segs[2] == "revoke-keys";
            sim.set_revoked(oi, revoke);
            reply(StatusCode::OK, json!({"org": org, "revoked": revoke}))
        }
        (Method::GET, ["stats"]) => reply(
            StatusCode::OK,
            serde_json::to_value(sim.stats()).unwrap_or_default(),
        ),
        (Method::POST, ["stats", "reset"]) => {
            sim.reset_stats();
            reply(StatusCode::OK, json!({"reset": true}))
        }
        (Method::GET, ["faults"]) => reply(
            StatusCode::OK,
            serde_json::to_value(sim.faults()).unwrap_or_default(),
        ),
        (Method::PUT, ["faults"]) => {
            let body = match axum::body::to_bytes(req.into_body(), 64 * 1024).await {
                Ok(b) => b,
                Err(e) => {
                    return reply(
                        StatusCode::BAD_REQUEST,
                        json!({"error": format!("cannot read body: {e}")}),
                    );
                }
            };
            let f: Faults = match serde_json::from_slice(&body) {
                Ok(f) => f,
                Err(e) => {
                    return reply(
                        StatusCode::BAD_REQUEST,
                        json!({"error": format!("invalid faults JSON: {e}")}),
                    );
                }
            };
            match sim.set_faults(f) {
                Ok(()) => reply(
                    StatusCode::OK,
                    serde_json::to_value(sim.faults()).unwrap_or_default(),
                ),
                Err(e) => reply(StatusCode::BAD_REQUEST, json!({"error": e})),
            }
        }
        (Method::POST, ["cursors", "expire"]) => {
            sim.expire_cursors();
            reply(StatusCode::OK, json!({"expired": true}))
        }
        (Method::POST, ["clock", "advance"]) => {
            if !sim.clock().is_manual() {
                return reply(
                    StatusCode::CONFLICT,
                    json!({"error": "the clock is the system clock; only a manual clock can be advanced"}),
                );
            }
            let ms = form_urlencoded::parse(query.as_bytes())
                .find(|(k, _)| k == "ms")
                .and_then(|(_, v)| v.parse::<u64>().ok());
            let Some(ms) = ms else {
                return reply(
                    StatusCode::BAD_REQUEST,
                    json!({"error": "pass ?ms=<milliseconds>"}),
                );
            };
            sim.clock().advance(Duration::from_millis(ms));
            reply(StatusCode::OK, json!({"now_ms": sim.clock().now_ms()}))
        }
        _ => not_found("unknown admin endpoint; see the orgtrail-sim README"),
    }
}

/// Streams `{"org":…,"count":N,"data":[…]}` (or `"ids":[…]`) in chunks, so even a million events
/// are sent without building the whole body in memory.
fn ground_truth(sim: Arc<Sim>, oi: usize, ids_only: bool) -> Response {
    let store = &sim.orgs[oi];
    store.catch_up(sim.clock().now_ms());
    let n = store.read().events.len();
    let head = format!(
        "{{\"org\":{},\"count\":{n},\"{}\":[",
        serde_json::to_string(&store.pools.org_id).unwrap_or_default(),
        if ids_only { "ids" } else { "data" }
    );
    // State: (sim, next event index, head sent, finished).
    let stream = futures_util::stream::unfold(
        (sim, 0usize, false, false),
        move |(sim, pos, head_sent, done)| {
            let head = head.clone();
            async move {
                if done {
                    return None;
                }
                if !head_sent {
                    return Some((
                        Ok::<Bytes, std::io::Error>(Bytes::from(head)),
                        (sim, pos, true, false),
                    ));
                }
                if pos >= n {
                    return Some((Ok(Bytes::from_static(b"]}")), (sim, pos, true, true)));
                }
                let end = (pos + CHUNK).min(n);
                let mut buf = Vec::new();
                {
                    let d = sim.orgs[oi].read();
                    for (k, e) in d.events[pos..end].iter().enumerate() {
                        if pos + k > 0 {
                            buf.push(b',');
                        }
                        if ids_only {
                            buf.push(b'"');
                            buf.extend_from_slice(e.id_string().as_bytes());
                            buf.push(b'"');
                        } else {
                            buf.extend_from_slice(&e.json);
                        }
                    }
                }
                Some((Ok(Bytes::from(buf)), (sim, end, true, false)))
            }
        },
    );
    let mut r = Response::new(Body::from_stream(stream));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}
