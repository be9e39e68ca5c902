//! The HTTP server: routing, auth, rate limits, fault injection, page building and the `/_sim`
//! admin endpoints.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::response::Response;
use serde::Serialize;
use tokio::sync::watch;

use crate::config::{Faults, OverMax, SimConfig, TerminalMode, TimeField};
use crate::cursor::{Cursor, CursorKind};
use crate::generator::{ACTIONS, Product, action_index, contains_ignore_ascii_case, location};
use crate::limits::{Draw, FaultState, Limiter};
use crate::store::{MAX_LAG_MS, OrgStore};
use crate::time::SimClock;

/// Stream page size default and maximum (atlassian-org-api.md §4).
pub const STREAM_DEFAULT_LIMIT: usize = 200;
/// Stream page size maximum.
pub const STREAM_MAX_LIMIT: usize = 500;
/// Most events one page request scans when filters skip events.
const SCAN_CAP: usize = 200_000;

/// API endpoints, for counters and rate limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Endpoint {
    /// `/events-stream`
    Stream = 0,
    /// `/events`
    Query = 1,
    /// `/events/{eventId}`
    One = 2,
    /// `/event-actions`
    Actions = 3,
    /// Anything else under the API.
    Unknown = 4,
}

impl Endpoint {
    /// Label used in stats.
    pub fn label(self) -> &'static str {
        match self {
            Endpoint::Stream => "events-stream",
            Endpoint::Query => "events",
            Endpoint::One => "event",
            Endpoint::Actions => "event-actions",
            Endpoint::Unknown => "unknown",
        }
    }
}

struct KeyState {
    key: String,
    org: usize,
    /// Shared per-key rate-limit identity (same key string → same id).
    limiter_id: u32,
    expires_ms: Option<i64>,
    revoke_ms: Option<i64>,
    revoked: AtomicBool,
}

/// Request counters.
#[derive(Default)]
struct Counters {
    requests: Mutex<BTreeMap<(Endpoint, u16), u64>>,
    faults: Mutex<BTreeMap<&'static str, u64>>,
    events_served: AtomicU64,
    bytes_served: AtomicU64,
}

/// Snapshot of the request counters (`GET /_sim/stats`).
#[derive(Clone, Debug, Default, Serialize)]
pub struct Stats {
    /// Requests by endpoint and status.
    pub requests: Vec<RequestCount>,
    /// Injected faults by kind (`429-burst`, `5xx`, `slow`, `reset`, `truncate`, `stale-cursor`, `duplicate`).
    pub faults: BTreeMap<String, u64>,
    /// Events delivered in complete 200 pages.
    pub events_served: u64,
    /// Body bytes of complete 200 responses.
    pub bytes_served: u64,
}

/// One counter.
#[derive(Clone, Debug, Serialize)]
pub struct RequestCount {
    /// `events-stream`, `events`, `event`, `event-actions`, `unknown`.
    pub endpoint: String,
    /// HTTP status.
    pub status: u16,
    /// Number of requests.
    pub count: u64,
}

impl Stats {
    /// Requests to `endpoint` answered with `status`.
    pub fn count(&self, endpoint: &str, status: u16) -> u64 {
        self.requests
            .iter()
            .filter(|r| r.endpoint == endpoint && r.status == status)
            .map(|r| r.count)
            .sum()
    }

    /// All requests to `endpoint`.
    pub fn total(&self, endpoint: &str) -> u64 {
        self.requests
            .iter()
            .filter(|r| r.endpoint == endpoint)
            .map(|r| r.count)
            .sum()
    }

    /// Injected faults of a kind.
    pub fn fault(&self, kind: &str) -> u64 {
        self.faults.get(kind).copied().unwrap_or(0)
    }
}

/// Shared simulator state.
pub(crate) struct Sim {
    pub cfg: SimConfig,
    pub orgs: Vec<OrgStore>,
    org_by_id: HashMap<String, usize>,
    keys: Vec<KeyState>,
    pub start_ms: i64,
    secret: u64,
    generation: AtomicU32,
    limiter: Limiter,
    faults: Mutex<FaultState>,
    counters: Counters,
    base_url: OnceLock<String>,
    actions_body: Bytes,
    pub shutdown: watch::Receiver<bool>,
}

/// An API answer before body faults are applied.
struct Answer {
    status: StatusCode,
    body: Bytes,
    headers: Vec<(HeaderName, HeaderValue)>,
    events: usize,
}

impl Answer {
    fn ok(body: Vec<u8>, events: usize) -> Self {
        Self {
            status: StatusCode::OK,
            body: Bytes::from(body),
            headers: Vec::new(),
            events,
        }
    }
}

fn error_body(status: StatusCode, code: Option<&str>, title: &str, detail: &str) -> Bytes {
    let mut e = serde_json::Map::new();
    e.insert("status".into(), status.as_u16().to_string().into());
    if let Some(c) = code {
        e.insert("code".into(), c.into());
    }
    e.insert("title".into(), title.into());
    if !detail.is_empty() {
        e.insert("detail".into(), detail.into());
    }
    let v = serde_json::json!({ "errors": [e] });
    Bytes::from(v.to_string())
}

fn err(status: StatusCode, code: Option<&str>, title: &str, detail: &str) -> Answer {
    Answer {
        status,
        body: error_body(status, code, title, detail),
        headers: Vec::new(),
        events: 0,
    }
}

fn bad_cursor(detail: &str) -> Answer {
    err(
        StatusCode::BAD_REQUEST,
        Some("ADMIN-400-1"),
        "Invalid page cursor",
        detail,
    )
}

fn json_str(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

fn hv(s: &str) -> HeaderValue {
    HeaderValue::from_str(s).unwrap_or_else(|_| HeaderValue::from_static("invalid"))
}

impl Sim {
    pub fn new(
        cfg: SimConfig,
        orgs: Vec<OrgStore>,
        start_ms: i64,
        shutdown: watch::Receiver<bool>,
    ) -> Self {
        let org_by_id = cfg
            .orgs
            .iter()
            .enumerate()
            .map(|(i, o)| (o.id.clone(), i))
            .collect();
        let mut keys: Vec<KeyState> = Vec::new();
        let mut ids: HashMap<String, u32> = HashMap::new();
        for (oi, o) in cfg.orgs.iter().enumerate() {
            for k in &o.keys {
                let next = ids.len() as u32;
                let limiter_id = *ids.entry(k.secret().to_string()).or_insert(next);
                keys.push(KeyState {
                    key: k.secret().to_string(),
                    org: oi,
                    limiter_id,
                    expires_ms: k.expires_at.map(|t| t.resolve(start_ms)),
                    revoke_ms: k.revoke_at.map(|t| t.resolve(start_ms)),
                    revoked: AtomicBool::new(false),
                });
            }
        }
        let actions: Vec<_> = ACTIONS
            .iter()
            .map(|a| {
                serde_json::json!({
                    "id": a.id,
                    "type": "event-actions",
                    "attributes": {"displayName": a.display, "groupDisplayName": a.group},
                })
            })
            .collect();
        let actions_body = Bytes::from(serde_json::json!({ "data": actions }).to_string());
        let secret = crate::rng::mix(cfg.seed ^ 0x5EC2E7, start_ms as u64);
        let faults = Mutex::new(FaultState::new(cfg.faults.clone(), cfg.fault_seed));
        Self {
            cfg,
            orgs,
            org_by_id,
            keys,
            start_ms,
            secret,
            generation: AtomicU32::new(0),
            limiter: Limiter::default(),
            faults,
            counters: Counters::default(),
            base_url: OnceLock::new(),
            actions_body,
            shutdown,
        }
    }

    pub fn set_base_url(&self, url: String) {
        let _ = self.base_url.set(url);
    }

    pub fn base_url(&self) -> &str {
        self.base_url.get().map_or("", String::as_str)
    }

    pub fn clock(&self) -> &SimClock {
        &self.cfg.clock
    }

    pub fn org_index(&self, id: &str) -> Option<usize> {
        self.org_by_id.get(id).copied()
    }

    pub fn expire_cursors(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
    }

    pub fn set_revoked(&self, org: usize, revoked: bool) {
        for k in self.keys.iter().filter(|k| k.org == org) {
            k.revoked.store(revoked, Ordering::SeqCst);
        }
    }

    pub fn faults(&self) -> Faults {
        self.faults
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .cfg
            .clone()
    }

    pub fn set_faults(&self, f: Faults) -> Result<(), String> {
        f.validate()?;
        self.faults.lock().unwrap_or_else(|p| p.into_inner()).cfg = f;
        Ok(())
    }

    pub fn stats(&self) -> Stats {
        let req = self
            .counters
            .requests
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let f = self
            .counters
            .faults
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        Stats {
            requests: req
                .iter()
                .map(|((e, s), c)| RequestCount {
                    endpoint: e.label().to_string(),
                    status: *s,
                    count: *c,
                })
                .collect(),
            faults: f.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
            events_served: self.counters.events_served.load(Ordering::Relaxed),
            bytes_served: self.counters.bytes_served.load(Ordering::Relaxed),
        }
    }

    pub fn reset_stats(&self) {
        self.counters
            .requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
        self.counters
            .faults
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
        self.counters.events_served.store(0, Ordering::Relaxed);
        self.counters.bytes_served.store(0, Ordering::Relaxed);
    }

    fn count(&self, e: Endpoint, status: u16) {
        *self
            .counters
            .requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry((e, status))
            .or_insert(0) += 1;
    }

    fn count_fault(&self, kind: &'static str) {
        *self
            .counters
            .faults
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(kind)
            .or_insert(0) += 1;
    }

    /// Auth check. `Err` carries the 401 reason (for the `x-sim-reason` header; never the key).
    fn authenticate(
        &self,
        headers: &HeaderMap,
        org: Option<usize>,
        now: i64,
    ) -> Result<Option<&KeyState>, &'static str> {
        let Some(raw) = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
        else {
            return Err("missing-key");
        };
        let Some((scheme, token)) = raw.trim().split_once(' ') else {
            return Err("malformed-authorization");
        };
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err("not-bearer");
        }
        let token = token.trim();
        let mut matching = self.keys.iter().filter(|k| k.key == token).peekable();
        if matching.peek().is_none() {
            return Err("unknown-key");
        }
        let Some(org) = org else {
            // Valid key, unknown org: the caller answers 404.
            return Ok(None);
        };
        let Some(k) = matching.find(|k| k.org == org) else {
            return Err("key-not-for-this-org");
        };
        if k.revoked.load(Ordering::SeqCst) || k.revoke_ms.is_some_and(|t| now >= t) {
            return Err("revoked");
        }
        if k.expires_ms.is_some_and(|t| now >= t) {
            return Err("expired");
        }
        Ok(Some(k))
    }
}

/// The axum handler for everything.
pub(crate) async fn handle(State(sim): State<Arc<Sim>>, req: Request) -> Response {
    let path = req.uri().path().to_string();
    if let Some(rest) = path.strip_prefix("/_sim/")
        && sim.cfg.admin
    {
        return crate::admin::handle(sim, req, rest.to_string()).await;
    }
    api(sim, req, path).await
}

fn respond(a: Answer) -> Response {
    let mut r = Response::new(Body::from(a.body));
    *r.status_mut() = a.status;
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    for (k, v) in a.headers {
        h.insert(k, v);
    }
    r
}

async fn api(sim: Arc<Sim>, req: Request, path: String) -> Response {
    let now = sim.clock().now_ms();
    let segs: Vec<&str> = path.trim_end_matches('/').split('/').collect();
    let (org_id, endpoint, event_id) = match segs.as_slice() {
        ["", "admin", "v1", "orgs", org, "events-stream"] => (*org, Endpoint::Stream, None),
        ["", "admin", "v1", "orgs", org, "events"] => (*org, Endpoint::Query, None),
        ["", "admin", "v1", "orgs", org, "events", id] => (*org, Endpoint::One, Some(*id)),
        ["", "admin", "v1", "orgs", org, "event-actions"] => (*org, Endpoint::Actions, None),
        _ => {
            sim.count(Endpoint::Unknown, 404);
            return respond(err(
                StatusCode::NOT_FOUND,
                Some("ADMIN-404-1"),
                "Not found",
                "Unknown resource",
            ));
        }
    };
    if req.method() != Method::GET {
        sim.count(endpoint, 405);
        let mut a = err(
            StatusCode::METHOD_NOT_ALLOWED,
            Some("ADMIN-405-1"),
            "Method not supported",
            "Only GET is supported",
        );
        a.headers
            .push((header::ALLOW, HeaderValue::from_static("GET")));
        return respond(a);
    }
    let org = sim.org_index(org_id);
    let key = match sim.authenticate(req.headers(), org, now) {
        Ok(k) => k,
        Err(reason) => {
            sim.count(endpoint, 401);
            let mut a = err(
                StatusCode::UNAUTHORIZED,
                None,
                "Unauthorized",
                "The API key is missing, invalid, expired or revoked",
            );
            a.headers.push((
                HeaderName::from_static("x-sim-reason"),
                HeaderValue::from_static(reason),
            ));
            return respond(a);
        }
    };
    let (Some(org), Some(key)) = (org, key) else {
        sim.count(endpoint, 404);
        return respond(err(
            StatusCode::NOT_FOUND,
            Some("ADMIN-404-2"),
            "Organization not found",
            "No organization with this id is configured in the simulator",
        ));
    };

    // Rate limits.
    let rl = &sim.cfg.rate_limits;
    let mut rl_headers: Vec<(HeaderName, HeaderValue)> = Vec::new();
    let (pp, pk) = match endpoint {
        Endpoint::Stream => (rl.stream_per_path, rl.stream_per_key),
        Endpoint::Query => (rl.events_per_path, rl.events_per_key),
        _ => (rl.other_per_path, rl.other_per_key),
    };
    if rl.enabled {
        let d = sim
            .limiter
            .check(now, endpoint as u8, org as u32, key.limiter_id, pp, pk);
        rl_headers = ratelimit_headers(rl, d.limit, d.remaining, d.reset_ms, now, false);
        if !d.allowed {
            sim.count(endpoint, 429);
            return respond(too_many(ratelimit_headers(
                rl,
                d.limit,
                d.remaining,
                d.reset_ms,
                now,
                true,
            )));
        }
    }

    // Faults decided before the answer.
    let draw = {
        let mut f = sim.faults.lock().unwrap_or_else(|p| p.into_inner());
        if f.any() { f.draw() } else { Draw::default() }
    };
    if let Some(ms) = draw.slow_ms {
        sim.count_fault("slow");
        let mut rx = sim.shutdown.clone();
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(ms)) => {}
            _ = rx.wait_for(|v| *v) => {}
        }
    }
    if draw.burst_429 {
        sim.count_fault("429-burst");
        sim.count(endpoint, 429);
        let reset = (now.div_euclid(60_000) + 1) * 60_000;
        return respond(too_many(ratelimit_headers(
            rl,
            pp.min(pk),
            0,
            reset,
            now,
            true,
        )));
    }
    if let Some(s) = draw.status_5xx {
        sim.count_fault("5xx");
        sim.count(endpoint, s);
        let status = StatusCode::from_u16(s).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        return respond(err(
            status,
            Some("ADMIN-500-1"),
            "Internal server error",
            "Injected by the simulator",
        ));
    }

    let query = req.uri().query().unwrap_or("").to_string();
    let params: Vec<(Cow<'_, str>, Cow<'_, str>)> =
        form_urlencoded::parse(query.as_bytes()).collect();
    let store = &sim.orgs[org];
    store.catch_up(now);
    let mut answer = match endpoint {
        Endpoint::Stream => stream_page(&sim, store, &params, &path, &query, now, &draw),
        Endpoint::Query => query_page(&sim, store, &params, &path, &query, now),
        Endpoint::One => one_event(store, event_id.unwrap_or("")),
        Endpoint::Actions => Answer {
            status: StatusCode::OK,
            body: sim.actions_body.clone(),
            headers: Vec::new(),
            events: 0,
        },
        Endpoint::Unknown => err(StatusCode::NOT_FOUND, Some("ADMIN-404-1"), "Not found", ""),
    };
    answer.headers.extend(rl_headers);
    sim.count(endpoint, answer.status.as_u16());

    if answer.status == StatusCode::OK && (draw.reset || draw.truncate) {
        let len = answer.body.len();
        let cut = ((len as f64) * draw.cut) as usize;
        let prefix = answer.body.slice(..cut.min(len));
        let mut r = if draw.reset {
            sim.count_fault("reset");
            let chunks: Vec<Result<Bytes, std::io::Error>> = vec![
                Ok(prefix),
                Err(std::io::Error::new(
                    std::io::ErrorKind::ConnectionReset,
                    "simulated connection reset",
                )),
            ];
            let mut r = Response::new(Body::from_stream(futures_util::stream::iter(chunks)));
            r.headers_mut()
                .insert(header::CONTENT_LENGTH, hv(&len.to_string()));
            r
        } else {
            sim.count_fault("truncate");
            Response::new(Body::from(prefix))
        };
        let h = r.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        for (k, v) in answer.headers {
            h.insert(k, v);
        }
        return r;
    }
    if answer.status == StatusCode::OK {
        sim.counters
            .events_served
            .fetch_add(answer.events as u64, Ordering::Relaxed);
        sim.counters
            .bytes_served
            .fetch_add(answer.body.len() as u64, Ordering::Relaxed);
    }
    respond(answer)
}

fn too_many(headers: Vec<(HeaderName, HeaderValue)>) -> Answer {
    let mut a = err(
        StatusCode::TOO_MANY_REQUESTS,
        Some("ADMIN-429-1"),
        "Rate limit exceeded",
        "Wait for the rate limit counter to reset",
    );
    a.headers = headers;
    a
}

/// The rate-limit headers of a response (`is_429` adds the configured retry headers).
fn ratelimit_headers(
    rl: &crate::config::RateLimits,
    limit: u32,
    remaining: u32,
    window_reset_ms: i64,
    now: i64,
    is_429: bool,
) -> Vec<(HeaderName, HeaderValue)> {
    let reset = window_reset_ms + rl.reset_offset_secs * 1000;
    let mut h = Vec::new();
    if rl.header_ratelimit {
        h.push((
            HeaderName::from_static("x-ratelimit-limit"),
            hv(&limit.to_string()),
        ));
        h.push((
            HeaderName::from_static("x-ratelimit-remaining"),
            hv(&remaining.to_string()),
        ));
        h.push((
            HeaderName::from_static("x-ratelimit-reset"),
            hv(&rl.reset_format.format(reset)),
        ));
    }
    if is_429 {
        let wait = ((reset - now).max(0) + 999) / 1000;
        if rl.header_retry_after {
            h.push((header::RETRY_AFTER, hv(&wait.to_string())));
        }
        if rl.header_retry_after_date {
            h.push((header::RETRY_AFTER, hv(&http_date(reset))));
        }
        if rl.header_x_retry_after {
            h.push((
                HeaderName::from_static("x-retry-after"),
                hv(&wait.to_string()),
            ));
        }
    }
    h
}

/// `Mon, 02 Jun 2025 09:04:00 GMT`
fn http_date(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .map(|t| t.strftime("%a, %d %b %Y %H:%M:%S GMT").to_string())
        .unwrap_or_default()
}

fn param<'a>(params: &'a [(Cow<'_, str>, Cow<'_, str>)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_ref())
}

fn params_all<'a>(params: &'a [(Cow<'_, str>, Cow<'_, str>)], name: &str) -> Vec<&'a str> {
    let bracket = format!("{name}[]");
    params
        .iter()
        .filter(|(k, _)| k == name || *k == bracket)
        .flat_map(|(_, v)| v.split(','))
        .filter(|v| !v.is_empty())
        .collect()
}

/// Parses `from`/`to`: epoch milliseconds as digits.
fn parse_ms(v: Option<&str>, name: &str) -> Result<Option<i64>, Answer> {
    match v {
        None => Ok(None),
        Some(s) if !s.is_empty() && s.len() <= 16 && s.bytes().all(|b| b.is_ascii_digit()) => {
            Ok(s.parse().ok())
        }
        Some(s) => Err(err(
            StatusCode::BAD_REQUEST,
            Some("ADMIN-400-3"),
            "Invalid time",
            &format!(
                "`{name}` must be epoch milliseconds (digits only), got `{}`",
                s.chars().take(40).collect::<String>()
            ),
        )),
    }
}

fn parse_limit(
    v: Option<&str>,
    default: usize,
    max: usize,
    over: OverMax,
) -> Result<usize, Answer> {
    let Some(s) = v else { return Ok(default) };
    let bad = || {
        err(
            StatusCode::BAD_REQUEST,
            Some("ADMIN-400-4"),
            "Invalid limit",
            &format!("`limit` must be an integer within 1..={max}"),
        )
    };
    let n: usize = s.parse().map_err(|_| bad())?;
    if n == 0 {
        return Err(bad());
    }
    if n > max {
        return match over {
            OverMax::Clamp => Ok(max),
            OverMax::Error => Err(bad()),
        };
    }
    Ok(n)
}

fn time_bounds(params: &[(Cow<'_, str>, Cow<'_, str>)]) -> Result<(i64, i64), Answer> {
    let from = parse_ms(param(params, "from"), "from")?.unwrap_or(i64::MIN);
    let to = parse_ms(param(params, "to"), "to")?.unwrap_or(i64::MAX);
    if from > to {
        return Err(err(
            StatusCode::BAD_REQUEST,
            Some("ADMIN-400-3"),
            "Invalid time",
            "`from` is after `to`",
        ));
    }
    Ok((from, to))
}

/// Validates a presented cursor (kind, org, generation, TTL).
fn check_cursor(
    sim: &Sim,
    raw: &str,
    kind: CursorKind,
    org: usize,
    now: i64,
) -> Result<Cursor, Answer> {
    let c = Cursor::decode(raw, sim.secret)
        .ok_or_else(|| bad_cursor("The cursor is not one this server issued"))?;
    if c.kind != kind || c.org != org as u32 {
        return Err(bad_cursor(
            "The cursor belongs to another endpoint or organization",
        ));
    }
    if c.generation != sim.generation.load(Ordering::SeqCst) {
        return Err(bad_cursor("The cursor has expired"));
    }
    if let Some(ttl) = sim.cfg.cursor_ttl
        && now - c.issued_ms > ttl.as_millis() as i64
    {
        return Err(bad_cursor("The cursor has expired"));
    }
    Ok(c)
}

fn meta(
    buf: &mut Vec<u8>,
    extra: bool,
    next: Option<&str>,
    page_size: usize,
    total: Option<usize>,
) {
    buf.extend_from_slice(b"\"meta\":{\"next\":");
    match next {
        Some(c) => {
            buf.push(b'"');
            buf.extend_from_slice(c.as_bytes());
            buf.push(b'"');
        }
        None => buf.extend_from_slice(b"null"),
    }
    if extra {
        buf.extend_from_slice(b",\"prev\":null");
    }
    buf.extend_from_slice(format!(",\"page_size\":{page_size}").as_bytes());
    if extra {
        buf.extend_from_slice(b",\"attributes\":null,\"current\":null,\"start_index\":null,\"end_index\":null,\"total\":");
        match total {
            Some(t) => buf.extend_from_slice(t.to_string().as_bytes()),
            None => buf.extend_from_slice(b"null"),
        }
        buf.extend_from_slice(b",\"count\":null");
    }
    buf.push(b'}');
}

#[allow(clippy::too_many_arguments)]
fn stream_page(
    sim: &Sim,
    store: &OrgStore,
    params: &[(Cow<'_, str>, Cow<'_, str>)],
    path: &str,
    query: &str,
    now: i64,
    draw: &Draw,
) -> Answer {
    let limit = match parse_limit(
        param(params, "limit"),
        STREAM_DEFAULT_LIMIT,
        STREAM_MAX_LIMIT,
        sim.cfg.limit_over_max,
    ) {
        Ok(l) => l,
        Err(a) => return a,
    };
    let incoming = param(params, "cursor").filter(|c| !c.is_empty());
    let (desc, from, to, pos) = match incoming {
        Some(raw) => {
            let c = match check_cursor(sim, raw, CursorKind::Stream, store.index, now) {
                Ok(c) => c,
                Err(a) => return a,
            };
            if draw.stale_cursor {
                sim.count_fault("stale-cursor");
                return bad_cursor("The cursor has expired");
            }
            (c.desc, c.from, c.to, Some(c.pos))
        }
        None => {
            let desc = match param(params, "sortOrder") {
                None | Some("asc") => false,
                Some("desc") => true,
                Some(_) => {
                    return err(
                        StatusCode::BAD_REQUEST,
                        Some("ADMIN-400-4"),
                        "Invalid sortOrder",
                        "`sortOrder` must be `asc` or `desc`",
                    );
                }
            };
            let (from, to) = match time_bounds(params) {
                Ok(b) => b,
                Err(a) => return a,
            };
            (desc, from, to, None)
        }
    };
    let floor = now.saturating_sub(sim.cfg.retention.as_millis() as i64);
    let by_time = sim.cfg.from_applies_to == TimeField::Time;
    let d = store.read();
    let ev = &d.events;
    let n = ev.len();
    let mut out: Vec<usize> = Vec::with_capacity(limit);
    let mut scanned = 0usize;
    let next_pos = if !desc {
        let lo = from.max(floor);
        let start = ev
            .partition_point(|e| e.processed_ms < lo)
            .max(pos.unwrap_or(0) as usize);
        let mut i = start;
        while i < n && out.len() < limit && scanned < SCAN_CAP {
            let e = &ev[i];
            if by_time {
                if e.processed_ms.saturating_sub(MAX_LAG_MS) > to {
                    break;
                }
                if e.time_ms < from || e.time_ms > to {
                    i += 1;
                    scanned += 1;
                    continue;
                }
            } else if e.processed_ms > to {
                break;
            }
            out.push(i);
            i += 1;
            scanned += 1;
        }
        if draw.duplicate && out.len() >= 2 {
            sim.count_fault("duplicate");
            out[out.len() - 1]
        } else {
            i
        }
    } else {
        let hi_bound = if by_time {
            to.saturating_add(MAX_LAG_MS)
        } else {
            to
        };
        let hi = ev
            .partition_point(|e| e.processed_ms <= hi_bound)
            .min(pos.map_or(n, |p| p as usize));
        let mut i = hi;
        while i > 0 && out.len() < limit && scanned < SCAN_CAP {
            let e = &ev[i - 1];
            if e.processed_ms < floor || e.processed_ms < from {
                break;
            }
            if by_time && (e.time_ms < from || e.time_ms > to) {
                i -= 1;
                scanned += 1;
                continue;
            }
            out.push(i - 1);
            i -= 1;
            scanned += 1;
        }
        if draw.duplicate && out.len() >= 2 {
            sim.count_fault("duplicate");
            out[out.len() - 1] + 1
        } else {
            i
        }
    };
    let terminal = out.is_empty() && scanned < SCAN_CAP;
    let next: Option<String> = if terminal && sim.cfg.terminal_mode == TerminalMode::B {
        None
    } else if let (Some(raw), true) = (incoming, out.is_empty() && pos == Some(next_pos as u64)) {
        // Caught up: hand back the very same cursor.
        Some(raw.to_string())
    } else {
        Some(
            Cursor {
                kind: CursorKind::Stream,
                desc,
                pos: next_pos as u64,
                key: 0,
                from,
                to,
                org: store.index as u32,
                generation: sim.generation.load(Ordering::SeqCst),
                issued_ms: now,
            }
            .encode(sim.secret),
        )
    };
    let bytes: usize = out.iter().map(|&i| ev[i].json.len() + 1).sum();
    let mut buf = Vec::with_capacity(bytes + 1024);
    let base = sim.base_url();
    if terminal && next.is_none() {
        // Mode B terminal page, as in Elastic's mock of the real API.
        buf.extend_from_slice(b"{\"data\":[],\"links\":{},");
        meta(&mut buf, sim.cfg.extra_meta, None, limit, Some(0));
        buf.push(b'}');
        return Answer::ok(buf, 0);
    }
    buf.extend_from_slice(b"{\"data\":[");
    for (k, &i) in out.iter().enumerate() {
        if k > 0 {
            buf.push(b',');
        }
        buf.extend_from_slice(&ev[i].json);
    }
    drop(d);
    buf.extend_from_slice(b"],");
    let page_size = if out.is_empty() { limit } else { out.len() };
    meta(
        &mut buf,
        sim.cfg.extra_meta,
        next.as_deref(),
        page_size,
        None,
    );
    buf.extend_from_slice(b",\"links\":{\"self\":");
    let self_url = if query.is_empty() {
        format!("{base}{path}")
    } else {
        format!("{base}{path}?{query}")
    };
    buf.extend_from_slice(json_str(&self_url).as_bytes());
    if let Some(c) = &next {
        buf.extend_from_slice(b",\"next\":");
        buf.extend_from_slice(json_str(&format!("{base}{path}?cursor={c}")).as_bytes());
    }
    buf.extend_from_slice(b"}}");
    Answer::ok(buf, out.len())
}

struct QueryFilters {
    q: Option<String>,
    action: Option<Option<u16>>,
    actors: Option<Vec<u32>>,
    ips: Option<Vec<u32>>,
    products: Option<Vec<Product>>,
    locations: Option<Vec<u16>>,
}

fn query_filters(
    store: &OrgStore,
    params: &[(Cow<'_, str>, Cow<'_, str>)],
) -> Result<QueryFilters, Answer> {
    let pools = &store.pools;
    let actors = params_all(params, "actor");
    let ips = params_all(params, "ip");
    let products = params_all(params, "product");
    let locations = match param(params, "location") {
        None => None,
        Some(raw) => {
            let v: Vec<serde_json::Value> = serde_json::from_str(raw).map_err(|e| {
                err(
                    StatusCode::BAD_REQUEST,
                    Some("ADMIN-400-4"),
                    "Invalid location",
                    &format!("`location` must be a JSON list of {{city,countryName}}: {e}"),
                )
            })?;
            let mut idx = Vec::new();
            for l in v {
                let city = l.get("city").and_then(|x| x.as_str());
                let country = l.get("countryName").and_then(|x| x.as_str());
                for i in 0..u16::MAX {
                    let Some((c, n)) = location(i) else { break };
                    if city.is_none_or(|x| x == c) && country.is_none_or(|x| x == n) {
                        idx.push(i);
                    }
                }
            }
            Some(idx)
        }
    };
    Ok(QueryFilters {
        q: param(params, "q")
            .filter(|q| !q.is_empty())
            .map(str::to_string),
        action: param(params, "action")
            .filter(|a| !a.is_empty())
            .map(action_index),
        actors: (!actors.is_empty()).then(|| {
            (0..pools.actor_ids.len() as u32)
                .filter(|&i| {
                    actors.iter().any(|a| {
                        pools.actor_ids[i as usize] == *a || pools.actor_emails[i as usize] == *a
                    })
                })
                .collect()
        }),
        ips: (!ips.is_empty()).then(|| {
            (0..pools.ips.len() as u32)
                .filter(|&i| ips.contains(&pools.ips[i as usize].as_str()))
                .collect()
        }),
        products: (!products.is_empty())
            .then(|| products.iter().filter_map(|p| Product::parse(p)).collect()),
        locations,
    })
}

fn query_page(
    sim: &Sim,
    store: &OrgStore,
    params: &[(Cow<'_, str>, Cow<'_, str>)],
    path: &str,
    query: &str,
    now: i64,
) -> Answer {
    let limit = match parse_limit(
        param(params, "limit"),
        sim.cfg.query_default_limit,
        sim.cfg.query_max_limit,
        sim.cfg.limit_over_max,
    ) {
        Ok(l) => l,
        Err(a) => return a,
    };
    let f = match query_filters(store, params) {
        Ok(f) => f,
        Err(a) => return a,
    };
    let (from, to, after) = match param(params, "cursor").filter(|c| !c.is_empty()) {
        Some(raw) => match check_cursor(sim, raw, CursorKind::Query, store.index, now) {
            Ok(c) => (c.from, c.to, Some((c.key, c.pos as u32))),
            Err(a) => return a,
        },
        None => match time_bounds(params) {
            Ok((f, t)) => (f, t, None),
            Err(a) => return a,
        },
    };
    let floor = now.saturating_sub(sim.cfg.retention.as_millis() as i64);
    let d = store.read();
    let ev = &d.events;
    let bt = &d.by_time;
    let mut j = bt.partition_point(|&i| (ev[i as usize].time_ms, i) <= (to, u32::MAX));
    if let Some(k) = after {
        j = j.min(bt.partition_point(|&i| (ev[i as usize].time_ms, i) < k));
    }
    let mut out: Vec<u32> = Vec::with_capacity(limit);
    let mut scanned = 0;
    let mut last = None;
    while j > 0 && out.len() < limit && scanned < SCAN_CAP {
        let i = bt[j - 1];
        let e = &ev[i as usize];
        if e.time_ms < from {
            j = 0;
            break;
        }
        j -= 1;
        scanned += 1;
        last = Some((e.time_ms, i));
        if e.processed_ms < floor
            || f.action.is_some_and(|a| a != Some(e.action))
            || f.actors.as_ref().is_some_and(|a| !a.contains(&e.actor))
            || f.ips.as_ref().is_some_and(|a| !a.contains(&e.ip))
            || f.products.as_ref().is_some_and(|p| !p.contains(&e.product))
            || f.locations.as_ref().is_some_and(|l| !l.contains(&e.loc))
            || f.q
                .as_ref()
                .is_some_and(|q| !contains_ignore_ascii_case(&e.json, q.as_bytes()))
        {
            continue;
        }
        out.push(i);
    }
    let more = j > 0 && (out.len() == limit || scanned >= SCAN_CAP);
    let next = match (more, last) {
        (true, Some((t, i))) => Some(
            Cursor {
                kind: CursorKind::Query,
                desc: true,
                pos: u64::from(i),
                key: t,
                from,
                to,
                org: store.index as u32,
                generation: sim.generation.load(Ordering::SeqCst),
                issued_ms: now,
            }
            .encode(sim.secret),
        ),
        _ => None,
    };
    let bytes: usize = out.iter().map(|&i| ev[i as usize].json.len()).sum();
    let mut buf = Vec::with_capacity(bytes + 1024);
    buf.extend_from_slice(b"{\"data\":[");
    for (k, &i) in out.iter().enumerate() {
        if k > 0 {
            buf.push(b',');
        }
        let (a, b) = ev[i as usize].query_form();
        buf.extend_from_slice(a);
        buf.extend_from_slice(b);
    }
    drop(d);
    buf.extend_from_slice(b"],");
    meta(
        &mut buf,
        sim.cfg.extra_meta,
        next.as_deref(),
        out.len(),
        None,
    );
    let base = sim.base_url();
    buf.extend_from_slice(b",\"links\":{\"self\":");
    let self_url = if query.is_empty() {
        format!("{base}{path}")
    } else {
        format!("{base}{path}?{query}")
    };
    buf.extend_from_slice(json_str(&self_url).as_bytes());
    if let Some(c) = &next {
        // Filters are not kept in the cursor: links.next repeats them.
        let mut ser = form_urlencoded::Serializer::new(String::new());
        for (k, v) in params
            .iter()
            .filter(|(k, _)| !matches!(k.as_ref(), "cursor" | "from" | "to"))
        {
            ser.append_pair(k, v);
        }
        ser.append_pair("cursor", c);
        buf.extend_from_slice(b",\"next\":");
        buf.extend_from_slice(json_str(&format!("{base}{path}?{}", ser.finish())).as_bytes());
    }
    buf.extend_from_slice(b"}}");
    let n = out.len();
    Answer::ok(buf, n)
}

fn one_event(store: &OrgStore, id: &str) -> Answer {
    let not_found = || {
        err(
            StatusCode::NOT_FOUND,
            Some("ADMIN-404-4"),
            "Event not found",
            "No event with this id in the organization",
        )
    };
    let Some(uuid) = crate::rng::parse_uuid(id) else {
        return not_found();
    };
    let d = store.read();
    let Some(&i) = d.by_id.get(&uuid) else {
        return not_found();
    };
    let (a, b) = d.events[i as usize].query_form();
    let mut buf = Vec::with_capacity(a.len() + b.len() + 16);
    buf.extend_from_slice(b"{\"data\":");
    buf.extend_from_slice(a);
    buf.extend_from_slice(b);
    buf.push(b'}');
    Answer::ok(buf, 1)
}
