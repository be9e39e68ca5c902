//! The HTTP client: configuration, one request with retries, `fetch_page` and `verify`.

use std::fmt;
use std::hash::BuildHasher;
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::header::{ACCEPT, AUTHORIZATION, HeaderMap, HeaderValue};
use url::Url;

use crate::clock::{Clock, SystemClock};
use crate::error::{ApiError, ErrorBody, ErrorKind};
use crate::hooks::{ApiEvent, Hooks, NoHooks, RetryReason};
use crate::key::ApiKey;
use crate::limiter::{Limiter, RateConfig};
use crate::page::{Page, parse_page};
use crate::wait::{WaitSource, backoff, finalize, wait_from_headers};

/// `https://api.atlassian.com`.
pub const DEFAULT_BASE_URL: &str = "https://api.atlassian.com";

/// `orgtrail/<version> (+https://github.com/orgtrail)`.
pub const USER_AGENT: &str = concat!(
    "orgtrail/",
    env!("CARGO_PKG_VERSION"),
    " (+https://github.com/orgtrail)"
);

/// The largest page size the API is known to accept.
pub const MAX_PAGE_LIMIT: u32 = 500;

/// The endpoint label used by the limiter and in [`ApiEvent`]s.
pub const EVENTS_STREAM: &str = "events-stream";

/// Error bodies are read up to this size (the rest is ignored).
const MAX_ERROR_BODY: usize = 64 * 1024;

/// How failed requests are retried inside one call.
#[derive(Clone, Debug, PartialEq)]
pub struct RetryPolicy {
    /// Retries after transient failures (5xx, 408, timeouts, connection errors, truncated or
    /// invalid bodies) within one call. Default 5.
    pub max_retries: u32,
    /// Retries after 429s within one call (counted separately). Default 10.
    pub max_rate_limit_retries: u32,
    /// First backoff; doubles per retry. Default 1 s.
    pub backoff_base: Duration,
    /// Largest backoff before jitter. Default 60 s.
    pub backoff_cap: Duration,
    /// Shortest wait after a 429, whatever the headers say (a minute-precision reset is often
    /// already past). Default 1 s.
    pub rate_limit_floor: Duration,
    /// Cap on any single wait, jitter included. Default 120 s.
    pub max_wait: Duration,
    /// Proportional jitter added to every wait: up to `jitter × wait` (0.2 = 0–20 %).
    pub jitter: f64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_retries: 5,
            max_rate_limit_retries: 10,
            backoff_base: Duration::from_secs(1),
            backoff_cap: Duration::from_secs(60),
            rate_limit_floor: Duration::from_secs(1),
            max_wait: Duration::from_secs(120),
            jitter: 0.2,
        }
    }
}

impl RetryPolicy {
    /// No retries at all: every failure is returned at once.
    pub fn none() -> Self {
        Self {
            max_retries: 0,
            max_rate_limit_retries: 0,
            ..Self::default()
        }
    }
}

/// Client configuration. Holds no secret (keys are passed per call); `Debug` hides any
/// `user:password@` in the base URL.
#[derive(Clone, PartialEq)]
pub struct ClientConfig {
    /// API base URL: `https://api.atlassian.com` (default), a regional host, a proxy prefix or
    /// the simulator. `/admin/v1/orgs/{orgId}/events-stream` is appended.
    pub base_url: String,
    /// Whole-request timeout, body included. Default 60 s.
    pub timeout: Duration,
    /// Connect timeout. Default 10 s.
    pub connect_timeout: Duration,
    /// `limit` sent on every page request, 1..=500. Default 500.
    pub page_limit: u32,
    /// A [`Cycle`](crate::Cycle) stops after this many pages. Default 1000.
    pub max_pages_per_cycle: u32,
    /// Proactive limiter per (API key, endpoint), shared by every source using the key through
    /// this client. `None` turns it off (benchmarks). Default 0.8 req/s, burst 2.
    pub rate: Option<RateConfig>,
    /// Retry policy.
    pub retry: RetryPolicy,
    /// Largest accepted response body. Default 64 MiB.
    pub max_body_bytes: usize,
}

impl fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientConfig")
            .field("base_url", &redact_userinfo(&self.base_url))
            .field("timeout", &self.timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("page_limit", &self.page_limit)
            .field("max_pages_per_cycle", &self.max_pages_per_cycle)
            .field("rate", &self.rate)
            .field("retry", &self.retry)
            .field("max_body_bytes", &self.max_body_bytes)
            .finish()
    }
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            base_url: DEFAULT_BASE_URL.to_string(),
            timeout: Duration::from_secs(60),
            connect_timeout: Duration::from_secs(10),
            page_limit: MAX_PAGE_LIMIT,
            max_pages_per_cycle: 1000,
            rate: Some(RateConfig::default()),
            retry: RetryPolicy::default(),
            max_body_bytes: 64 * 1024 * 1024,
        }
    }
}

impl ClientConfig {
    /// The defaults with another base URL.
    pub fn with_base_url(base_url: impl Into<String>) -> Self {
        Self {
            base_url: base_url.into(),
            ..Self::default()
        }
    }
}

/// What to fetch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PageRequest {
    /// The first request of a walk: `limit`, `sortOrder=asc` and, if set, `from` (epoch ms,
    /// inclusive). `to` is never sent, so the cursors stay usable for polling.
    Start {
        /// Lower bound, epoch milliseconds (must be ≥ 0).
        from_ms: Option<i64>,
    },
    /// Follow a cursor: only `cursor` and `limit` are sent (the order lives in the cursor).
    Cursor(String),
}

impl PageRequest {
    /// `Start` from an instant (millisecond precision, truncated).
    pub fn since(t: jiff::Timestamp) -> Self {
        PageRequest::Start {
            from_ms: Some(t.as_millisecond()),
        }
    }
}

/// The Organizations API client. Cheap to clone (an `Arc` inside): use one per process so
/// every source shares the connection pool and the per-key limiter.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    base: Url,
    base_display: String,
    cfg: ClientConfig,
    limiter: Option<Limiter>,
    clock: Arc<dyn Clock>,
    /// Keys the limiter map: a per-process random SipHash of the key, never the key.
    fingerprint: std::hash::RandomState,
    /// Page bodies given back once their events were used ([`Client::recycle_body`]): the next
    /// pages are read into them instead of into new memory.
    spare_bodies: std::sync::Mutex<Vec<Vec<u8>>>,
}

/// Page bodies kept for reuse. A collector holds a few pages at once (one being read, the
/// fetched-ahead ones, one being normalized): a couple of spares cover the steady state.
const SPARE_BODIES: usize = 2;

/// A body larger than this (an unusual page) is freed rather than kept for reuse.
const MAX_SPARE_BODY_BYTES: usize = 2 << 20;

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("base_url", &self.inner.base_display)
            .field("config", &self.inner.cfg)
            .finish_non_exhaustive()
    }
}

enum Outcome {
    Ok(Page),
    RateLimited(HeaderMap),
    Retry(ApiError, RetryReason),
    Fatal(ApiError),
}

impl Client {
    /// Builds a client (no request is sent). Fails with [`ErrorKind::Config`] on an invalid
    /// base URL or setting.
    pub fn new(cfg: ClientConfig) -> Result<Self, ApiError> {
        Self::with_clock(cfg, Arc::new(SystemClock::new()))
    }

    /// Like [`Client::new`] with another time source (tests: a virtual clock).
    pub fn with_clock(cfg: ClientConfig, clock: Arc<dyn Clock>) -> Result<Self, ApiError> {
        let config = |message: String| ApiError::Config { message };
        let base = parse_base_url(&cfg.base_url)?;
        if cfg.timeout.is_zero() || cfg.connect_timeout.is_zero() {
            return Err(config(
                "timeout and connect_timeout must be greater than zero".into(),
            ));
        }
        if !(1..=MAX_PAGE_LIMIT).contains(&cfg.page_limit) {
            return Err(config(format!(
                "page_limit = {} must be within 1..={MAX_PAGE_LIMIT}",
                cfg.page_limit
            )));
        }
        if cfg.max_pages_per_cycle == 0 {
            return Err(config("max_pages_per_cycle must be at least 1".into()));
        }
        if !(0.0..=1.0).contains(&cfg.retry.jitter) {
            return Err(config(format!(
                "retry.jitter = {} must be within 0..=1",
                cfg.retry.jitter
            )));
        }
        if cfg.max_body_bytes == 0 {
            return Err(config("max_body_bytes must be greater than zero".into()));
        }
        let limiter = cfg
            .rate
            .map(|r| Limiter::new(r, clock.clone()))
            .transpose()?;
        let mut headers = HeaderMap::new();
        headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
        let http = reqwest::Client::builder()
            .user_agent(USER_AGENT)
            .default_headers(headers)
            .timeout(cfg.timeout)
            .connect_timeout(cfg.connect_timeout)
            // A redirect would resend the key elsewhere; report it instead of following it.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| config(format!("cannot build the HTTP client: {}", chain(&e))))?;
        let mut shown = base.clone();
        let _ = shown.set_password(None);
        let _ = shown.set_username("");
        let base_display = shown.as_str().trim_end_matches('/').to_string();
        if base.scheme() == "http" && !is_loopback(&base) {
            tracing::warn!(base_url = %base_display, "the base URL is plain http: API keys are sent unencrypted");
        }
        Ok(Self {
            inner: Arc::new(Inner {
                http,
                base,
                base_display,
                cfg,
                limiter,
                clock,
                fingerprint: std::hash::RandomState::new(),
                spare_bodies: std::sync::Mutex::new(Vec::new()),
            }),
        })
    }

    /// Gives a page's body back once nothing else uses it (every [`crate::Event`] of the page was
    /// dropped), so a later page is read into it: a body is about half a megabyte, and new memory
    /// of that size costs a page fault per 4 KiB touched.
    pub fn recycle_body(&self, body: Arc<String>) {
        if let Ok(text) = Arc::try_unwrap(body) {
            let mut bytes = text.into_bytes();
            bytes.clear();
            let mut spare = self
                .inner
                .spare_bodies
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if spare.len() < SPARE_BODIES && bytes.capacity() <= MAX_SPARE_BODY_BYTES {
                spare.push(bytes);
            }
        }
    }

    fn spare_body(&self) -> Vec<u8> {
        self.inner
            .spare_bodies
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .pop()
            .unwrap_or_default()
    }

    /// The configuration.
    pub fn config(&self) -> &ClientConfig {
        &self.inner.cfg
    }

    /// The base URL as shown in messages (without credentials or trailing slash).
    pub fn base_url(&self) -> &str {
        &self.inner.base_display
    }

    /// Checks an org ID and key with one cheap request (`events-stream?limit=1`), with the
    /// usual retries for transient failures. Used at onboarding. Returns the classified error
    /// (`Auth`, `Forbidden`, `NotFound`, ...) otherwise.
    #[tracing::instrument(level = "debug", skip_all, fields(org_id = %org_id))]
    pub async fn verify(&self, org_id: &str, key: &ApiKey) -> Result<(), ApiError> {
        let url = self.stream_url(org_id, &PageRequest::Start { from_ms: None }, 1)?;
        self.get_page(org_id, key, url, &NoHooks).await.map(|_| ())
    }

    /// Fetches one page of `/events-stream`, retrying per the [`RetryPolicy`] (429s, 5xx,
    /// timeouts, resets, truncated bodies: the same request again, so the cursor never moves
    /// on a failure). A cursor request whose answer carries events and the very same cursor
    /// fails with [`ErrorKind::LoopGuard`].
    #[tracing::instrument(level = "debug", skip_all, fields(org_id = %org_id))]
    pub async fn fetch_page(
        &self,
        org_id: &str,
        key: &ApiKey,
        req: &PageRequest,
        hooks: &dyn Hooks,
    ) -> Result<Page, ApiError> {
        let url = self.stream_url(org_id, req, self.inner.cfg.page_limit)?;
        let page = self.get_page(org_id, key, url, hooks).await?;
        if let PageRequest::Cursor(sent) = req
            && !page.events.is_empty()
            && page.next_cursor.as_deref() == Some(sent.as_str())
        {
            return Err(ApiError::LoopGuard {
                org_id: org_id.to_string(),
                base_url: self.inner.base_display.clone(),
                events: page.events.len(),
            });
        }
        Ok(page)
    }

    /// `{base}/admin/v1/orgs/{orgId}/events-stream?…` for a request.
    pub(crate) fn stream_url(
        &self,
        org_id: &str,
        req: &PageRequest,
        limit: u32,
    ) -> Result<Url, ApiError> {
        let config = |message: String| ApiError::Config { message };
        if org_id.trim().is_empty() || org_id.len() > 256 || org_id.chars().any(char::is_control) {
            return Err(config(
                "the Organization ID is empty or malformed (expected the UUID shown in admin.atlassian.com/o/<orgId>/...)".into(),
            ));
        }
        let mut url = self.inner.base.clone();
        url.path_segments_mut()
            .map_err(|()| config("the base URL cannot carry a path".into()))?
            .pop_if_empty()
            .extend(["admin", "v1", "orgs", org_id, EVENTS_STREAM]);
        {
            let mut q = url.query_pairs_mut();
            match req {
                PageRequest::Start { from_ms } => {
                    q.append_pair("limit", &limit.to_string());
                    q.append_pair("sortOrder", "asc");
                    if let Some(ms) = from_ms {
                        if *ms < 0 {
                            return Err(config(format!(
                                "from = {ms} ms is before 1970; it must be epoch milliseconds ≥ 0"
                            )));
                        }
                        q.append_pair("from", &ms.to_string());
                    }
                }
                PageRequest::Cursor(c) => {
                    if c.is_empty() {
                        return Err(config("the cursor to follow is empty".into()));
                    }
                    q.append_pair("cursor", c);
                    q.append_pair("limit", &limit.to_string());
                }
            }
        }
        Ok(url)
    }

    fn auth_header(&self, key: &ApiKey) -> Result<HeaderValue, ApiError> {
        if key.is_empty() {
            return Err(ApiError::Config {
                message: "the API key is empty; set it with `orgtrail source edit NAME --api-key-env VAR` or `--api-key-file FILE`"
                    .into(),
            });
        }
        let mut v = HeaderValue::try_from(format!("Bearer {}", key.expose())).map_err(|_| ApiError::Config {
            message: "the API key contains characters that cannot be sent in an HTTP header (a line break inside the key file?)"
                .into(),
        })?;
        v.set_sensitive(true);
        Ok(v)
    }

    /// One logical GET with the retry loop.
    async fn get_page(
        &self,
        org_id: &str,
        key: &ApiKey,
        url: Url,
        hooks: &dyn Hooks,
    ) -> Result<Page, ApiError> {
        let auth = self.auth_header(key)?;
        let fp = self.inner.fingerprint.hash_one(key.expose());
        let policy = &self.inner.cfg.retry;
        let clock = &self.inner.clock;
        let (mut attempt, mut failures, mut limited) = (0u32, 0u32, 0u32);
        loop {
            attempt = attempt.saturating_add(1);
            if let Some(limiter) = &self.inner.limiter {
                let waited = limiter.acquire(fp, EVENTS_STREAM).await;
                if !waited.is_zero() {
                    tracing::trace!(
                        waited_ms = waited.as_millis() as u64,
                        "proactive limiter wait"
                    );
                    hooks.on_event(&ApiEvent::LimiterWait {
                        endpoint: EVENTS_STREAM,
                        waited,
                    });
                }
            }
            let started = Instant::now();
            let (status, bytes, outcome) = self.attempt(org_id, &url, &auth).await;
            let latency = started.elapsed();
            let error = match &outcome {
                Outcome::Ok(_) => None,
                Outcome::RateLimited(_) => Some(ErrorKind::RateLimited),
                Outcome::Retry(e, _) | Outcome::Fatal(e) => Some(e.kind()),
            };
            tracing::debug!(
                endpoint = EVENTS_STREAM,
                status,
                latency_ms = latency.as_millis() as u64,
                bytes,
                attempt,
                "request done"
            );
            hooks.on_event(&ApiEvent::RequestDone {
                endpoint: EVENTS_STREAM,
                status,
                latency,
                bytes,
                error,
            });
            match outcome {
                Outcome::Ok(page) => return Ok(page),
                Outcome::Fatal(e) => {
                    tracing::warn!(kind = %e.kind(), "request failed: {e}");
                    return Err(e);
                }
                Outcome::RateLimited(headers) => {
                    let (raw, decided_by) = wait_from_headers(&headers, clock.wall_now())
                        .unwrap_or_else(|| {
                            (
                                backoff(policy.backoff_base, policy.backoff_cap, limited),
                                WaitSource::Backoff,
                            )
                        });
                    let wait = finalize(
                        raw,
                        policy.rate_limit_floor,
                        policy.max_wait,
                        policy.jitter,
                        rand::random::<f64>(),
                    );
                    if limited >= policy.max_rate_limit_retries {
                        let e = ApiError::RateLimited {
                            org_id: org_id.to_string(),
                            base_url: self.inner.base_display.clone(),
                            attempts: attempt,
                            last_wait: wait,
                        };
                        tracing::warn!(kind = %e.kind(), "giving up: {e}");
                        return Err(e);
                    }
                    limited += 1;
                    tracing::warn!(
                        wait_ms = wait.as_millis() as u64,
                        decided_by = decided_by.as_str(),
                        attempt,
                        "rate limited (429); waiting"
                    );
                    hooks.on_event(&ApiEvent::RateLimited {
                        endpoint: EVENTS_STREAM,
                        attempt,
                        wait,
                        decided_by,
                    });
                    clock.sleep(wait).await;
                }
                Outcome::Retry(e, reason) => {
                    if failures >= policy.max_retries {
                        let e = e.with_attempts(attempt);
                        tracing::warn!(kind = %e.kind(), "giving up: {e}");
                        return Err(e);
                    }
                    let wait = finalize(
                        backoff(policy.backoff_base, policy.backoff_cap, failures),
                        Duration::ZERO,
                        policy.max_wait,
                        policy.jitter,
                        rand::random::<f64>(),
                    );
                    failures += 1;
                    tracing::warn!(
                        reason = reason.as_str(),
                        wait_ms = wait.as_millis() as u64,
                        attempt,
                        "transient failure; retrying: {e}"
                    );
                    hooks.on_event(&ApiEvent::Retry {
                        endpoint: EVENTS_STREAM,
                        attempt,
                        reason,
                        wait,
                    });
                    clock.sleep(wait).await;
                }
            }
        }
    }

    /// One HTTP request: (status, body bytes read, outcome).
    async fn attempt(
        &self,
        org_id: &str,
        url: &Url,
        auth: &HeaderValue,
    ) -> (Option<u16>, usize, Outcome) {
        let base_url = || self.inner.base_display.clone();
        let transport = |e: reqwest::Error| {
            let timed_out = e.is_timeout();
            let reason = if timed_out {
                RetryReason::Timeout
            } else if e.is_connect() {
                RetryReason::Connect
            } else {
                RetryReason::Transport
            };
            let err = ApiError::Transport {
                org_id: org_id.to_string(),
                base_url: base_url(),
                attempts: 1,
                timed_out,
                message: chain(&e.without_url()),
            };
            Outcome::Retry(err, reason)
        };
        let resp = match self
            .inner
            .http
            .get(url.clone())
            .header(AUTHORIZATION, auth.clone())
            .send()
            .await
        {
            Ok(r) => r,
            Err(e) => return (None, 0, transport(e)),
        };
        let status = resp.status().as_u16();
        if (200..300).contains(&status) {
            let spare = self.spare_body();
            let body = match read_body(resp, self.inner.cfg.max_body_bytes, spare).await {
                Ok(b) => b,
                Err(BodyError::Transport(e, n)) => return (Some(status), n, transport(e)),
                Err(BodyError::TooLarge(n)) => {
                    let err = ApiError::Body {
                        org_id: org_id.to_string(),
                        base_url: base_url(),
                        status,
                        bytes: n,
                        attempts: 1,
                        message: format!(
                            "the body is larger than the {} bytes allowed (max_body_bytes)",
                            self.inner.cfg.max_body_bytes
                        ),
                    };
                    return (Some(status), n, Outcome::Retry(err, RetryReason::Body));
                }
            };
            let n = body.len();
            return match parse_page(body, &self.inner.base) {
                Ok(page) => (Some(status), n, Outcome::Ok(page)),
                Err(message) => {
                    let err = ApiError::Body {
                        org_id: org_id.to_string(),
                        base_url: base_url(),
                        status,
                        bytes: n,
                        attempts: 1,
                        message,
                    };
                    (Some(status), n, Outcome::Retry(err, RetryReason::Body))
                }
            };
        }
        let headers = resp.headers().clone();
        // Read (a bounded part of) the error body: its code, and connection reuse.
        let body = read_body(resp, MAX_ERROR_BODY, Vec::new())
            .await
            .unwrap_or_default();
        let n = body.len();
        if status == 429 {
            return (Some(status), n, Outcome::RateLimited(headers));
        }
        let eb = ErrorBody::parse(&body);
        (Some(status), n, self.classify(org_id, status, eb))
    }

    fn classify(&self, org_id: &str, status: u16, eb: ErrorBody) -> Outcome {
        let org_id = org_id.to_string();
        let base_url = self.inner.base_display.clone();
        let detail = eb.summary();
        let code = eb.code;
        match status {
            401 => Outcome::Fatal(ApiError::Auth {
                org_id,
                base_url,
                code,
            }),
            403 => Outcome::Fatal(ApiError::Forbidden {
                org_id,
                base_url,
                code,
                detail,
            }),
            404 => Outcome::Fatal(ApiError::NotFound {
                org_id,
                base_url,
                code,
                detail,
            }),
            400 if code.as_deref() == Some("ADMIN-400-1")
                || (code.is_none()
                    && detail
                        .as_deref()
                        .is_some_and(|d| d.to_ascii_lowercase().contains("cursor"))) =>
            {
                Outcome::Fatal(ApiError::InvalidCursor {
                    org_id,
                    base_url,
                    detail,
                })
            }
            408 | 500..=599 => Outcome::Retry(
                ApiError::Server {
                    org_id,
                    base_url,
                    status,
                    code,
                    attempts: 1,
                },
                RetryReason::Server(status),
            ),
            _ => Outcome::Fatal(ApiError::BadRequest {
                org_id,
                base_url,
                status,
                code,
                detail,
            }),
        }
    }
}

enum BodyError {
    Transport(reqwest::Error, usize),
    TooLarge(usize),
}

/// Reads a body into `buf` (empty; a spare one has room already).
async fn read_body(
    mut resp: reqwest::Response,
    max: usize,
    mut buf: Vec<u8>,
) -> Result<Vec<u8>, BodyError> {
    let hint = resp.content_length().unwrap_or(0).min(max as u64) as usize;
    buf.reserve(hint);
    loop {
        match resp.chunk().await {
            Ok(Some(chunk)) => {
                if buf.len() + chunk.len() > max {
                    return Err(BodyError::TooLarge(buf.len() + chunk.len()));
                }
                buf.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(buf),
            Err(e) => return Err(BodyError::Transport(e, buf.len())),
        }
    }
}

/// An error and its sources, `: `-joined, without repeats.
fn chain(e: &dyn std::error::Error) -> String {
    let mut msg = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        let t = s.to_string();
        if !msg.contains(&t) {
            msg.push_str(": ");
            msg.push_str(&t);
        }
        src = s.source();
    }
    msg
}

fn parse_base_url(s: &str) -> Result<Url, ApiError> {
    let config = |message: String| ApiError::Config { message };
    let mut url = Url::parse(s.trim()).map_err(|e| {
        config(format!(
            "base URL `{}` is not a URL ({e}); use e.g. {DEFAULT_BASE_URL}",
            redact_userinfo(s)
        ))
    })?;
    if !matches!(url.scheme(), "https" | "http") || url.cannot_be_a_base() || url.host().is_none() {
        return Err(config(format!(
            "base URL `{}` must be an http(s) URL with a host, e.g. {DEFAULT_BASE_URL}",
            redact_userinfo(s)
        )));
    }
    url.set_query(None);
    url.set_fragment(None);
    Ok(url)
}

/// Drops `user:password@` from a string that failed to parse as a URL.
fn redact_userinfo(s: &str) -> String {
    match (s.find("://"), s.rfind('@')) {
        (Some(i), Some(j)) if j > i => format!("{}://[REDACTED]@{}", &s[..i], &s[j + 1..]),
        _ => s.to_string(),
    }
}

fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d == "localhost",
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(base: &str) -> Client {
        Client::new(ClientConfig::with_base_url(base)).unwrap()
    }

    #[test]
    fn a_recycled_body_is_reused_only_when_no_event_holds_it() {
        let c = client("https://api.atlassian.com");
        let body = Arc::new("x".repeat(1000));
        let held = body.clone();
        c.recycle_body(body);
        assert_eq!(
            c.spare_body().capacity(),
            0,
            "an event still holds the body"
        );
        c.recycle_body(held);
        let spare = c.spare_body();
        assert!(spare.is_empty() && spare.capacity() >= 1000);
        c.recycle_body(Arc::new("z".repeat(MAX_SPARE_BODY_BYTES + 1)));
        assert_eq!(c.spare_body().capacity(), 0, "too large to keep");
        for _ in 0..SPARE_BODIES + 3 {
            c.recycle_body(Arc::new("y".repeat(10)));
        }
        let kept = std::iter::from_fn(|| Some(c.spare_body()))
            .take_while(|b| b.capacity() > 0)
            .count();
        assert_eq!(kept, SPARE_BODIES);
    }

    #[test]
    fn first_request_has_limit_order_and_epoch_ms_from() {
        let c = client("https://api.atlassian.com");
        let u = c
            .stream_url(
                "2d2790c2-d6c8-49dc-a9fe-3b0a11a28927",
                &PageRequest::Start {
                    from_ms: Some(1_748_852_143_090),
                },
                500,
            )
            .unwrap();
        assert_eq!(
            u.as_str(),
            "https://api.atlassian.com/admin/v1/orgs/2d2790c2-d6c8-49dc-a9fe-3b0a11a28927/events-stream?limit=500&sortOrder=asc&from=1748852143090"
        );
        let from = u.query_pairs().find(|(k, _)| k == "from").unwrap().1;
        assert!(from.bytes().all(|b| b.is_ascii_digit()));
        let t: jiff::Timestamp = "2025-06-02T08:15:43.090Z".parse().unwrap();
        let u = c.stream_url("o", &PageRequest::since(t), 7).unwrap();
        assert_eq!(u.query(), Some("limit=7&sortOrder=asc&from=1748852143090"));
        let u = c
            .stream_url("o", &PageRequest::Start { from_ms: None }, 500)
            .unwrap();
        assert_eq!(u.query(), Some("limit=500&sortOrder=asc"));
        assert!(
            c.stream_url("o", &PageRequest::Start { from_ms: Some(-1) }, 5)
                .is_err()
        );
    }

    #[test]
    fn cursor_request_sends_only_cursor_and_limit_url_encoded() {
        let c = client("https://api.atlassian.com/");
        let u = c
            .stream_url("o", &PageRequest::Cursor("a+b/c==&x=1 ".into()), 500)
            .unwrap();
        assert_eq!(u.path(), "/admin/v1/orgs/o/events-stream");
        assert_eq!(u.query(), Some("cursor=a%2Bb%2Fc%3D%3D%26x%3D1+&limit=500"));
        let back: Vec<_> = u.query_pairs().collect();
        assert_eq!(back[0].1, "a+b/c==&x=1 ");
        assert!(
            c.stream_url("o", &PageRequest::Cursor(String::new()), 5)
                .is_err()
        );
    }

    #[test]
    fn base_url_prefix_and_org_escaping() {
        let c = client("http://127.0.0.1:8099/proxy/atl/?x=1#f");
        let u = c
            .stream_url("a/b", &PageRequest::Start { from_ms: None }, 1)
            .unwrap();
        assert_eq!(
            u.as_str(),
            "http://127.0.0.1:8099/proxy/atl/admin/v1/orgs/a%2Fb/events-stream?limit=1&sortOrder=asc"
        );
        assert_eq!(c.base_url(), "http://127.0.0.1:8099/proxy/atl");
        assert!(
            c.stream_url("", &PageRequest::Start { from_ms: None }, 1)
                .is_err()
        );
        assert!(
            c.stream_url("x\ny", &PageRequest::Start { from_ms: None }, 1)
                .is_err()
        );
    }

    #[test]
    fn config_validation() {
        for base in ["", "api.atlassian.com", "ftp://x", "mailto:a@b", "https://"] {
            let e = Client::new(ClientConfig::with_base_url(base)).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Config, "{base}");
        }
        let e = Client::new(ClientConfig::with_base_url("https://user:hunter2@")).unwrap_err();
        assert!(!e.to_string().contains("hunter2"), "{e}");
        let c = client("https://user:hunter2@api.example.com");
        assert!(!format!("{c:?}").contains("hunter2"), "{c:?}");
        assert!(!format!("{:?}", c.config()).contains("hunter2"));
        assert_eq!(c.base_url(), "https://api.example.com");
        let bad = [
            ClientConfig {
                page_limit: 0,
                ..Default::default()
            },
            ClientConfig {
                page_limit: 501,
                ..Default::default()
            },
            ClientConfig {
                timeout: Duration::ZERO,
                ..Default::default()
            },
            ClientConfig {
                max_pages_per_cycle: 0,
                ..Default::default()
            },
            ClientConfig {
                rate: Some(RateConfig {
                    per_second: 0.0,
                    burst: 1,
                }),
                ..Default::default()
            },
            ClientConfig {
                rate: Some(RateConfig {
                    per_second: f64::NAN,
                    burst: 1,
                }),
                ..Default::default()
            },
            ClientConfig {
                rate: Some(RateConfig {
                    per_second: 1.0,
                    burst: 0,
                }),
                ..Default::default()
            },
            ClientConfig {
                retry: RetryPolicy {
                    jitter: 2.0,
                    ..Default::default()
                },
                ..Default::default()
            },
        ];
        for cfg in bad {
            assert_eq!(
                Client::new(cfg.clone()).unwrap_err().kind(),
                ErrorKind::Config,
                "{cfg:?}"
            );
        }
        assert!(
            Client::new(ClientConfig {
                rate: None,
                ..Default::default()
            })
            .is_ok()
        );
    }

    #[test]
    fn auth_header_is_sensitive_and_key_checked() {
        let c = client("https://api.atlassian.com");
        let h = c.auth_header(&ApiKey::new("abc")).unwrap();
        assert!(h.is_sensitive());
        assert!(!format!("{h:?}").contains("abc"));
        assert_eq!(
            c.auth_header(&ApiKey::new("")).unwrap_err().kind(),
            ErrorKind::Config
        );
        let e = c.auth_header(&ApiKey::new("ab\u{7}cd")).unwrap_err();
        assert!(!e.to_string().contains("ab\u{7}cd"));
    }

    #[test]
    fn user_agent() {
        assert!(USER_AGENT.starts_with("orgtrail/0."));
        assert!(USER_AGENT.ends_with(" (+https://github.com/orgtrail)"));
    }
}
