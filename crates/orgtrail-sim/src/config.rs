//! Simulator configuration: [`SimConfig`] (built in code by tests) and [`SimArgs`] (the CLI flags),
//! which converts into it.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::SimError;
use crate::time::SimClock;

/// Org used when none is configured.
pub const DEFAULT_ORG: &str = "11111111-2222-3333-4444-555555555555";
/// Key used when none is configured.
pub const DEFAULT_KEY: &str = "test-key";

/// An API key known to the simulator. Its `Debug` output never shows the key.
#[derive(Clone)]
pub struct KeyConfig {
    key: String,
    /// The key stops working at this time (401 after it).
    pub expires_at: Option<TimeSpec>,
    /// The key is revoked at this time (401 after it).
    pub revoke_at: Option<TimeSpec>,
}

impl KeyConfig {
    /// A key with no expiry and no revocation.
    pub fn new(key: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            expires_at: None,
            revoke_at: None,
        }
    }

    /// Sets the expiry.
    pub fn expires_at(mut self, t: TimeSpec) -> Self {
        self.expires_at = Some(t);
        self
    }

    /// Sets the revocation time.
    pub fn revoke_at(mut self, t: TimeSpec) -> Self {
        self.revoke_at = Some(t);
        self
    }

    /// The key itself (for the server's check only).
    pub(crate) fn secret(&self) -> &str {
        &self.key
    }
}

impl fmt::Debug for KeyConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyConfig")
            .field("key", &"[REDACTED]")
            .field("expires_at", &self.expires_at)
            .field("revoke_at", &self.revoke_at)
            .finish()
    }
}

/// A point in time: absolute, or relative to the simulator start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimeSpec {
    /// Epoch milliseconds.
    AtMs(i64),
    /// This long after the simulator started (by the simulator clock).
    AfterStart(Duration),
}

impl TimeSpec {
    /// Resolves to epoch milliseconds.
    pub fn resolve(self, start_ms: i64) -> i64 {
        match self {
            TimeSpec::AtMs(ms) => ms,
            TimeSpec::AfterStart(d) => start_ms.saturating_add(d.as_millis() as i64),
        }
    }
}

/// Parses `+DURATION` (relative to start, e.g. `+30s`) or an RFC 3339 time.
pub fn parse_time_spec(s: &str) -> Result<TimeSpec, String> {
    if let Some(rel) = s.strip_prefix('+') {
        return parse_duration(rel).map(TimeSpec::AfterStart);
    }
    s.parse::<jiff::Timestamp>()
        .map(|t| TimeSpec::AtMs(t.as_millisecond()))
        .map_err(|e| format!("`{s}` is neither `+DURATION` (e.g. +30s) nor an RFC 3339 time: {e}"))
}

/// Parses `500ms`, `45s`, `30m`, `12h`, `7d` (a bare number is seconds).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a duration (use e.g. 500ms, 45s, 30m, 12h, 7d)"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "" | "s" => n,
        "m" | "min" => n * 60.0,
        "h" => n * 3600.0,
        "d" => n * 86_400.0,
        _ => {
            return Err(format!(
                "`{s}`: unknown unit `{unit}` (use ms, s, m, h or d)"
            ));
        }
    };
    if !secs.is_finite() || secs < 0.0 {
        return Err(format!("`{s}` is not a valid duration"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// A live event rate, e.g. `20/s`, `5/min`, `100/h`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LiveRate {
    /// Events per second.
    pub per_second: f64,
}

/// Parses `N/s`, `N/min` (or `N/m`), `N/h`.
pub fn parse_live_rate(s: &str) -> Result<LiveRate, String> {
    let (n, unit) = s
        .split_once('/')
        .ok_or_else(|| format!("`{s}` is not a rate (use e.g. 20/s, 5/min, 100/h)"))?;
    let n: f64 = n
        .trim()
        .parse()
        .map_err(|_| format!("`{s}`: `{n}` is not a number"))?;
    let per = match unit.trim() {
        "s" | "sec" => 1.0,
        "m" | "min" => 60.0,
        "h" => 3600.0,
        u => return Err(format!("`{s}`: unknown unit `{u}` (use s, min or h)")),
    };
    if !(n.is_finite() && n > 0.0) {
        return Err(format!("`{s}`: the rate must be positive"));
    }
    Ok(LiveRate {
        per_second: n / per,
    })
}

/// One simulated organization.
#[derive(Clone, Debug)]
pub struct OrgConfig {
    /// Org id (a UUID, but any path-safe string is accepted).
    pub id: String,
    /// API keys valid for this org.
    pub keys: Vec<KeyConfig>,
}

impl OrgConfig {
    /// An org with one key.
    pub fn new(id: impl Into<String>, key: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            keys: vec![KeyConfig::new(key)],
        }
    }
}

/// How the last page of `/events-stream` looks (atlassian-org-api.md §5).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TerminalMode {
    /// "Poll cursor": the empty last page still carries `meta.next`; it later returns new events.
    #[default]
    A,
    /// "Null next": `data: []`, `links: {}`, `meta.next: null`, `total: 0`.
    B,
}

/// Which event time `from`/`to` of `/events-stream` bound.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, clap::ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum TimeField {
    /// `attributes.processedAt` (go-atlassian's reading).
    #[default]
    ProcessedAt,
    /// `attributes.time` (the spec's wording).
    Time,
}

/// What a `limit` above the maximum does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OverMax {
    /// Serve the maximum.
    #[default]
    Clamp,
    /// 400 `ADMIN-400-4`.
    Error,
}

/// Format of the `X-RateLimit-Reset` header (clients must accept all of them).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, clap::ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ResetFormat {
    /// `2025-06-02T09:04Z` (minute precision, as observed).
    #[default]
    Minute,
    /// `2025-06-02T09:04:00Z`
    Second,
    /// `2025-06-02T09:04:00.000Z`
    Millis,
    /// `2025-06-02T09:04:00+00:00`
    Offset,
    /// `2025-06-02T09:04+0000`
    CompactOffset,
}

impl ResetFormat {
    /// Formats epoch ms.
    pub fn format(self, ms: i64) -> String {
        use crate::time::{rfc3339_millis, rfc3339_minutes, rfc3339_seconds};
        match self {
            ResetFormat::Minute => rfc3339_minutes(ms),
            ResetFormat::Second => rfc3339_seconds(ms),
            ResetFormat::Millis => rfc3339_millis(ms),
            ResetFormat::Offset => rfc3339_seconds(ms).replace('Z', "+00:00"),
            ResetFormat::CompactOffset => rfc3339_minutes(ms).replace('Z', "+0000"),
        }
    }
}

/// Rate limits: fixed one-minute windows aligned to the clock minute, counted per API path (all
/// keys, per org) and per key. Rejected requests are not counted.
#[derive(Clone, Debug, Serialize)]
pub struct RateLimits {
    /// Off for benchmarks.
    pub enabled: bool,
    /// `/events-stream` requests per minute per path.
    pub stream_per_path: u32,
    /// `/events-stream` requests per minute per key.
    pub stream_per_key: u32,
    /// `/events` requests per minute per path.
    pub events_per_path: u32,
    /// `/events` requests per minute per key.
    pub events_per_key: u32,
    /// `/events/{id}` and `/event-actions` requests per minute per path.
    pub other_per_path: u32,
    /// `/events/{id}` and `/event-actions` requests per minute per key.
    pub other_per_key: u32,
    /// Send `X-RateLimit-Limit`/`-Remaining`/`-Reset`.
    pub header_ratelimit: bool,
    /// Send `Retry-After` (seconds) on 429.
    pub header_retry_after: bool,
    /// Send `Retry-After` as an HTTP-date on 429.
    pub header_retry_after_date: bool,
    /// Send `X-Retry-After` (seconds) on 429.
    pub header_x_retry_after: bool,
    /// Format of `X-RateLimit-Reset`.
    pub reset_format: ResetFormat,
    /// Shift of the reported `X-RateLimit-Reset` (and retry-after) in seconds: negative puts the
    /// reset in the past, as a minute-precision header often is.
    pub reset_offset_secs: i64,
}

impl Default for RateLimits {
    fn default() -> Self {
        Self {
            enabled: true,
            stream_per_path: 50,
            stream_per_key: 60,
            events_per_path: 10,
            events_per_key: 10,
            other_per_path: 100,
            other_per_key: 100,
            header_ratelimit: true,
            header_retry_after: false,
            header_retry_after_date: false,
            header_x_retry_after: false,
            reset_format: ResetFormat::Minute,
            reset_offset_secs: 0,
        }
    }
}

/// Fault injection. Each probability is per API request (0 = off), drawn from an RNG seeded with
/// `fault_seed`, so a single-client run replays exactly. Changeable at run time through
/// `PUT /_sim/faults` (JSON with these field names; missing fields are 0/default).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Faults {
    /// Probability that a request starts a burst of 429s.
    pub burst_429: f64,
    /// Number of consecutive 429s in a burst (including the first).
    pub burst_429_len: u32,
    /// Probability of a 5xx.
    pub http_5xx: f64,
    /// The 5xx statuses to choose from.
    pub statuses_5xx: Vec<u16>,
    /// Probability that the connection is reset in the middle of the body.
    pub reset: f64,
    /// Probability of a `200` whose JSON body is cut short (Content-Length matches the cut body).
    pub truncate: f64,
    /// Probability that the response is delayed by `slow_ms`.
    pub slow: f64,
    /// Delay of a slow response in ms (default 65 s, above a 60 s client timeout).
    pub slow_ms: u64,
    /// Probability that a valid cursor is rejected as stale (400 `ADMIN-400-1`).
    pub stale_cursor: f64,
    /// Probability that a page's next cursor repeats the page's last event on the next page.
    pub duplicate: f64,
}

impl Default for Faults {
    fn default() -> Self {
        Self {
            burst_429: 0.0,
            burst_429_len: 3,
            http_5xx: 0.0,
            statuses_5xx: vec![500, 502, 503, 504],
            reset: 0.0,
            truncate: 0.0,
            slow: 0.0,
            slow_ms: 65_000,
            stale_cursor: 0.0,
            duplicate: 0.0,
        }
    }
}

impl Faults {
    /// Checks probabilities and statuses.
    pub fn validate(&self) -> Result<(), String> {
        for (n, p) in [
            ("burst_429", self.burst_429),
            ("http_5xx", self.http_5xx),
            ("reset", self.reset),
            ("truncate", self.truncate),
            ("slow", self.slow),
            ("stale_cursor", self.stale_cursor),
            ("duplicate", self.duplicate),
        ] {
            if !(0.0..=1.0).contains(&p) {
                return Err(format!("fault probability {n} = {p} is not within 0..=1"));
            }
        }
        if self.http_5xx > 0.0 && self.statuses_5xx.is_empty() {
            return Err("statuses_5xx is empty but http_5xx > 0".into());
        }
        if let Some(s) = self.statuses_5xx.iter().find(|s| !(500..=599).contains(*s)) {
            return Err(format!(
                "statuses_5xx contains {s}, which is not a 5xx status"
            ));
        }
        Ok(())
    }
}

/// Complete simulator configuration.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// Address to bind (port 0 picks a free port).
    pub listen: SocketAddr,
    /// Base URL used in `links` (default: `http://<bound address>`).
    pub public_url: Option<String>,
    /// Organizations and their keys.
    pub orgs: Vec<OrgConfig>,
    /// History events per org, generated at start.
    pub events: usize,
    /// Seed of the event generator.
    pub seed: u64,
    /// The history spans this long, ending at `history_end_ms`.
    pub history_span: Duration,
    /// End of the history (epoch ms); default: the clock's now at start.
    pub history_end_ms: Option<i64>,
    /// Live mode: new events at this rate after start.
    pub live_rate: Option<LiveRate>,
    /// Cap on live events per org.
    pub live_max_events: usize,
    /// Terminal page behaviour.
    pub terminal_mode: TerminalMode,
    /// What `from`/`to` bound on `/events-stream`.
    pub from_applies_to: TimeField,
    /// `limit` above the maximum.
    pub limit_over_max: OverMax,
    /// Include the undocumented `meta` keys (`prev`, `attributes`, `current`, ...).
    pub extra_meta: bool,
    /// `/events` default page size.
    pub query_default_limit: usize,
    /// `/events` max page size.
    pub query_max_limit: usize,
    /// Events older than this (by `processedAt`) are no longer served.
    pub retention: Duration,
    /// Cursors older than this are rejected with `ADMIN-400-1`.
    pub cursor_ttl: Option<Duration>,
    /// Rate limits.
    pub rate_limits: RateLimits,
    /// Fault injection.
    pub faults: Faults,
    /// Seed of the fault RNG.
    pub fault_seed: u64,
    /// The clock.
    pub clock: SimClock,
    /// Serve the `/_sim/*` admin endpoints.
    pub admin: bool,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            public_url: None,
            orgs: vec![OrgConfig::new(DEFAULT_ORG, DEFAULT_KEY)],
            events: 1_000,
            seed: 1,
            history_span: Duration::from_secs(7 * 86_400),
            history_end_ms: None,
            live_rate: None,
            live_max_events: 10_000_000,
            terminal_mode: TerminalMode::A,
            from_applies_to: TimeField::ProcessedAt,
            limit_over_max: OverMax::Clamp,
            extra_meta: true,
            query_default_limit: 30,
            query_max_limit: 500,
            retention: Duration::from_secs(180 * 86_400),
            cursor_ttl: None,
            rate_limits: RateLimits::default(),
            faults: Faults::default(),
            fault_seed: 1,
            clock: SimClock::system(),
            admin: true,
        }
    }
}

impl SimConfig {
    /// Checks the configuration; errors say which setting is wrong.
    pub fn validate(&self) -> Result<(), SimError> {
        let bad = |m: String| Err(SimError::Config(m));
        if self.orgs.is_empty() {
            return bad("no organization configured: pass --org ORG_ID".into());
        }
        for o in &self.orgs {
            if o.id.is_empty() || o.id.contains(['/', '?', '#']) {
                return bad(format!("org id `{}` is not a valid path segment", o.id));
            }
            if o.keys.is_empty() {
                return bad(format!("org `{}` has no API key: pass --key", o.id));
            }
            if o.keys.iter().any(|k| k.key.is_empty()) {
                return bad(format!("org `{}` has an empty API key", o.id));
            }
        }
        let mut ids: Vec<_> = self.orgs.iter().map(|o| o.id.as_str()).collect();
        ids.sort_unstable();
        if ids.windows(2).any(|w| w[0] == w[1]) {
            return bad("an org id is configured twice".into());
        }
        if self.query_default_limit == 0 || self.query_default_limit > self.query_max_limit {
            return bad("query_default_limit must be within 1..=query_max_limit".into());
        }
        self.faults.validate().map_err(SimError::Config)?;
        Ok(())
    }
}

fn parse_prob(s: &str) -> Result<f64, String> {
    let p: f64 = s
        .parse()
        .map_err(|_| format!("`{s}` is not a probability (a number within 0..=1)"))?;
    if (0.0..=1.0).contains(&p) {
        Ok(p)
    } else {
        Err(format!("`{s}` is not within 0..=1"))
    }
}

/// `[ORG_ID=]TIME` for key expiry/revocation flags.
#[derive(Clone, Debug)]
pub struct OrgTime {
    org: Option<String>,
    time: TimeSpec,
}

fn parse_org_time(s: &str) -> Result<OrgTime, String> {
    match s.split_once('=') {
        Some((org, t)) => Ok(OrgTime {
            org: Some(org.to_string()),
            time: parse_time_spec(t)?,
        }),
        None => Ok(OrgTime {
            org: None,
            time: parse_time_spec(s)?,
        }),
    }
}

/// `ORG_ID=KEY` for extra keys.
#[derive(Clone)]
pub struct OrgKey {
    org: String,
    key: String,
}

fn parse_org_key(s: &str) -> Result<OrgKey, String> {
    let (org, key) = s
        .split_once('=')
        .ok_or_else(|| "expected ORG_ID=KEY".to_string())?;
    Ok(OrgKey {
        org: org.to_string(),
        key: key.to_string(),
    })
}

/// The 429 headers to send.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum RateLimitHeader {
    /// No rate-limit headers at all (as grove's failure case needs).
    None,
    /// `X-RateLimit-Limit`, `X-RateLimit-Remaining`, `X-RateLimit-Reset`.
    Ratelimit,
    /// `Retry-After` (seconds).
    RetryAfter,
    /// `Retry-After` as an HTTP-date.
    RetryAfterDate,
    /// `X-Retry-After` (seconds).
    XRetryAfter,
}

/// Command-line flags of `orgtrail sim`.
#[derive(Clone, clap::Args)]
pub struct SimArgs {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:8099")]
    pub listen: SocketAddr,

    /// Base URL written into `links` (default: http://<listen address>).
    #[arg(long)]
    pub public_url: Option<String>,

    /// Organization id to simulate; repeat for several orgs. Default: 11111111-2222-3333-4444-555555555555.
    #[arg(long = "org", value_name = "ORG_ID")]
    pub orgs: Vec<String>,

    /// API key; repeat it: the N-th --key belongs to the N-th --org. A single --key is valid for
    /// every org. Default: test-key. These are test keys, but they are never logged.
    #[arg(
        long = "key",
        value_name = "KEY",
        env = "ORGTRAIL_SIM_KEY",
        hide_env_values = true
    )]
    pub keys: Vec<String>,

    /// Additional key for an org, as ORG_ID=KEY (repeatable).
    #[arg(long = "org-key", value_name = "ORG_ID=KEY", value_parser = parse_org_key)]
    pub org_keys: Vec<OrgKey>,

    /// History events generated per org at start.
    #[arg(long, default_value_t = 10_000)]
    pub events: usize,

    /// Seed of the event generator (the same seed gives the same events).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,

    /// Time span of the generated history, ending now (e.g. 7d, 12h).
    #[arg(long, default_value = "7d", value_parser = parse_duration)]
    pub history: Duration,

    /// End of the generated history as RFC 3339 (default: now). Fix it to get byte-identical runs.
    #[arg(long, value_name = "RFC3339")]
    pub history_end: Option<jiff::Timestamp>,

    /// Live mode: add new events at this rate, e.g. 20/s, 5/min, 100/h.
    #[arg(long, value_parser = parse_live_rate)]
    pub live_rate: Option<LiveRate>,

    /// Cap on live events per org.
    #[arg(long, default_value_t = 10_000_000)]
    pub live_max_events: usize,

    /// Terminal page of /events-stream: a = empty page with a poll cursor, b = `meta.next: null`.
    #[arg(long, value_enum, default_value_t = TerminalMode::A)]
    pub terminal_mode: TerminalMode,

    /// Which timestamp /events-stream `from`/`to` bound (both inclusive).
    #[arg(long, value_enum, default_value_t = TimeField::ProcessedAt)]
    pub from_applies_to: TimeField,

    /// What a `limit` above 500 does: clamp to 500, or answer 400 ADMIN-400-4.
    #[arg(long, value_enum, default_value_t = OverMax::Clamp)]
    pub limit_over_max: OverMax,

    /// Leave out the undocumented `meta` keys (prev, attributes, current, start_index, end_index, total, count).
    #[arg(long)]
    pub no_extra_meta: bool,

    /// /events page size when `limit` is absent.
    #[arg(long, default_value_t = 30)]
    pub query_default_limit: usize,

    /// Retention in days: older events (by processedAt) are not served.
    #[arg(long, default_value_t = 180)]
    pub retention_days: u64,

    /// Cursors older than this are rejected with 400 ADMIN-400-1 (e.g. 10m). Default: never.
    #[arg(long, value_parser = parse_duration)]
    pub cursor_ttl: Option<Duration>,

    /// Turn every rate limit off (benchmarks).
    #[arg(long)]
    pub no_rate_limit: bool,

    /// /events-stream requests per minute per API path.
    #[arg(long, default_value_t = 50)]
    pub rl_stream_per_path: u32,

    /// /events-stream requests per minute per key.
    #[arg(long, default_value_t = 60)]
    pub rl_stream_per_key: u32,

    /// /events requests per minute per API path.
    #[arg(long, default_value_t = 10)]
    pub rl_events_per_path: u32,

    /// /events requests per minute per key.
    #[arg(long, default_value_t = 10)]
    pub rl_events_per_key: u32,

    /// /events/{id} and /event-actions requests per minute per path and per key.
    #[arg(long, default_value_t = 100)]
    pub rl_other: u32,

    /// Rate-limit headers to send (comma-separated): ratelimit, retry-after (seconds), retry-after-date (HTTP-date), x-retry-after, or none.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "ratelimit")]
    pub rl_headers: Vec<RateLimitHeader>,

    /// Format of X-RateLimit-Reset: minute (2025-06-02T09:04Z, as observed), second, millis, offset (+00:00), compact-offset (+0000).
    #[arg(long, value_enum, default_value_t = ResetFormat::Minute)]
    pub rl_reset_format: ResetFormat,

    /// Shift the reported reset by this many seconds (negative: a reset in the past).
    #[arg(long, default_value_t = 0, allow_hyphen_values = true)]
    pub rl_reset_offset: i64,

    /// Probability (0..=1) that a request starts a burst of 429s.
    #[arg(long, value_parser = parse_prob, default_value_t = 0.0)]
    pub fault_429: f64,

    /// Length of a 429 burst, in requests.
    #[arg(long, default_value_t = 3)]
    pub fault_429_burst: u32,

    /// Probability of a 5xx answer.
    #[arg(long, value_parser = parse_prob, default_value_t = 0.0)]
    pub fault_5xx: f64,

    /// 5xx statuses to draw from.
    #[arg(long, value_delimiter = ',', default_value = "500,502,503,504")]
    pub fault_5xx_statuses: Vec<u16>,

    /// Probability that the connection is reset mid-body.
    #[arg(long, value_parser = parse_prob, default_value_t = 0.0)]
    pub fault_reset: f64,

    /// Probability of a 200 with truncated JSON.
    #[arg(long, value_parser = parse_prob, default_value_t = 0.0)]
    pub fault_truncate: f64,

    /// Probability of a slow response.
    #[arg(long, value_parser = parse_prob, default_value_t = 0.0)]
    pub fault_slow: f64,

    /// Delay of a slow response (default 65s: longer than a 60 s client timeout).
    #[arg(long, default_value = "65s", value_parser = parse_duration)]
    pub fault_slow_delay: Duration,

    /// Probability that a valid cursor is rejected as stale (400 ADMIN-400-1).
    #[arg(long, value_parser = parse_prob, default_value_t = 0.0)]
    pub fault_stale_cursor: f64,

    /// Probability that a page's last event is delivered again on the next page.
    #[arg(long, value_parser = parse_prob, default_value_t = 0.0)]
    pub fault_duplicate: f64,

    /// Seed of the fault RNG (replay a failing run with the same seed).
    #[arg(long, default_value_t = 1)]
    pub fault_seed: u64,

    /// Keys expire at this time: `+DURATION` after start or RFC 3339; prefix `ORG_ID=` to limit it to one org's keys. Repeatable.
    #[arg(long, value_name = "[ORG_ID=]TIME", value_parser = parse_org_time)]
    pub key_expires_at: Vec<OrgTime>,

    /// Keys are revoked at this time: `+DURATION` after start or RFC 3339; prefix `ORG_ID=` to limit it to one org's keys. Repeatable.
    #[arg(long, value_name = "[ORG_ID=]TIME", value_parser = parse_org_time)]
    pub key_revoke_at: Vec<OrgTime>,

    /// Do not serve the /_sim/* admin endpoints.
    #[arg(long)]
    pub no_admin: bool,

    /// Generate the events, print counts, sizes and bytes per event, and exit (for memory measurements).
    #[arg(long)]
    pub dry_run: bool,
}

impl fmt::Debug for OrgKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "OrgKey {{ org: {:?}, key: [REDACTED] }}", self.org)
    }
}

impl fmt::Debug for SimArgs {
    /// Redacts keys; shows the flags that matter when reading a log.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimArgs")
            .field("listen", &self.listen)
            .field("orgs", &self.orgs)
            .field("keys", &format_args!("[{} REDACTED]", self.keys.len()))
            .field("org_keys", &self.org_keys)
            .field("events", &self.events)
            .field("seed", &self.seed)
            .field("live_rate", &self.live_rate)
            .field("terminal_mode", &self.terminal_mode)
            .field("no_rate_limit", &self.no_rate_limit)
            .field("fault_seed", &self.fault_seed)
            .finish_non_exhaustive()
    }
}

impl SimArgs {
    /// Converts the flags into a [`SimConfig`].
    pub fn to_config(&self) -> Result<SimConfig, SimError> {
        let org_ids: Vec<String> = if self.orgs.is_empty() {
            vec![DEFAULT_ORG.to_string()]
        } else {
            self.orgs.clone()
        };
        let keys: Vec<String> = if self.keys.is_empty() {
            vec![DEFAULT_KEY.to_string()]
        } else {
            self.keys.clone()
        };
        if keys.len() != 1 && keys.len() != org_ids.len() {
            return Err(SimError::Config(format!(
                "{} --key for {} --org: give one --key for all orgs, or one per org in the same order",
                keys.len(),
                org_ids.len()
            )));
        }
        let mut orgs: Vec<OrgConfig> = org_ids
            .iter()
            .enumerate()
            .map(|(i, id)| OrgConfig {
                id: id.clone(),
                keys: vec![KeyConfig::new(
                    if keys.len() == 1 { &keys[0] } else { &keys[i] }.clone(),
                )],
            })
            .collect();
        for ok in &self.org_keys {
            let org = orgs.iter_mut().find(|o| o.id == ok.org).ok_or_else(|| {
                SimError::Config(format!(
                    "--org-key names org `{}`, which is not configured with --org",
                    ok.org
                ))
            })?;
            org.keys.push(KeyConfig::new(ok.key.clone()));
        }
        for (list, is_expiry) in [(&self.key_expires_at, true), (&self.key_revoke_at, false)] {
            for ot in list {
                if let Some(o) = &ot.org
                    && !orgs.iter().any(|x| &x.id == o)
                {
                    return Err(SimError::Config(format!(
                        "org `{o}` in a key time flag is not configured with --org"
                    )));
                }
                for org in orgs
                    .iter_mut()
                    .filter(|x| ot.org.as_ref().is_none_or(|o| *o == x.id))
                {
                    for k in &mut org.keys {
                        if is_expiry {
                            k.expires_at = Some(ot.time);
                        } else {
                            k.revoke_at = Some(ot.time);
                        }
                    }
                }
            }
        }
        let cfg = SimConfig {
            listen: self.listen,
            public_url: self.public_url.clone(),
            orgs,
            events: self.events,
            seed: self.seed,
            history_span: self.history,
            history_end_ms: self.history_end.map(|t| t.as_millisecond()),
            live_rate: self.live_rate,
            live_max_events: self.live_max_events,
            terminal_mode: self.terminal_mode,
            from_applies_to: self.from_applies_to,
            limit_over_max: self.limit_over_max,
            extra_meta: !self.no_extra_meta,
            query_default_limit: self.query_default_limit,
            query_max_limit: 500.max(self.query_default_limit),
            retention: Duration::from_secs(self.retention_days.saturating_mul(86_400)),
            cursor_ttl: self.cursor_ttl,
            rate_limits: RateLimits {
                enabled: !self.no_rate_limit,
                stream_per_path: self.rl_stream_per_path,
                stream_per_key: self.rl_stream_per_key,
                events_per_path: self.rl_events_per_path,
                events_per_key: self.rl_events_per_key,
                other_per_path: self.rl_other,
                other_per_key: self.rl_other,
                header_ratelimit: self.rl_headers.contains(&RateLimitHeader::Ratelimit),
                header_retry_after: self.rl_headers.contains(&RateLimitHeader::RetryAfter),
                header_retry_after_date: self.rl_headers.contains(&RateLimitHeader::RetryAfterDate),
                header_x_retry_after: self.rl_headers.contains(&RateLimitHeader::XRetryAfter),
                reset_format: self.rl_reset_format,
                reset_offset_secs: self.rl_reset_offset,
            },
            faults: Faults {
                burst_429: self.fault_429,
                burst_429_len: self.fault_429_burst.max(1),
                http_5xx: self.fault_5xx,
                statuses_5xx: self.fault_5xx_statuses.clone(),
                reset: self.fault_reset,
                truncate: self.fault_truncate,
                slow: self.fault_slow,
                slow_ms: self.fault_slow_delay.as_millis() as u64,
                stale_cursor: self.fault_stale_cursor,
                duplicate: self.fault_duplicate,
            },
            fault_seed: self.fault_seed,
            clock: SimClock::system(),
            admin: !self.no_admin,
        };
        cfg.validate()?;
        Ok(cfg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        sim: SimArgs,
    }

    #[test]
    fn parses_the_issue_example() {
        let cli = Cli::try_parse_from([
            "x",
            "--listen",
            "127.0.0.1:8099",
            "--org",
            "11111111-2222-3333-4444-555555555555",
            "--key",
            "test-key",
            "--events",
            "100000",
            "--seed",
            "7",
            "--live-rate",
            "20/s",
        ])
        .unwrap();
        let c = cli.sim.to_config().unwrap();
        assert_eq!(c.events, 100_000);
        assert_eq!(c.seed, 7);
        assert_eq!(c.live_rate, Some(LiveRate { per_second: 20.0 }));
        assert_eq!(c.orgs.len(), 1);
        assert!(!format!("{c:?}").contains("test-key"));
        assert!(!format!("{:?}", cli.sim).contains("test-key"));
        let none = Cli::try_parse_from(["x", "--rl-headers", "none"])
            .unwrap()
            .sim
            .to_config()
            .unwrap();
        assert!(!none.rate_limits.header_ratelimit && !none.rate_limits.header_retry_after);
    }

    #[test]
    fn keys_pair_with_orgs() {
        let cli = Cli::try_parse_from([
            "x",
            "--org",
            "a",
            "--org",
            "b",
            "--key",
            "ka",
            "--key",
            "kb",
            "--org-key",
            "a=ka2",
            "--key-revoke-at",
            "b=+5m",
            "--key-expires-at",
            "2030-01-01T00:00:00Z",
            "--rl-headers",
            "ratelimit,retry-after",
            "--rl-reset-offset",
            "-30",
        ])
        .unwrap();
        let c = cli.sim.to_config().unwrap();
        assert_eq!(
            c.orgs[0]
                .keys
                .iter()
                .map(|k| k.secret())
                .collect::<Vec<_>>(),
            ["ka", "ka2"]
        );
        assert_eq!(c.orgs[1].keys[0].secret(), "kb");
        assert_eq!(
            c.orgs[1].keys[0].revoke_at,
            Some(TimeSpec::AfterStart(Duration::from_secs(300)))
        );
        assert!(c.orgs[0].keys[0].revoke_at.is_none());
        assert!(c.orgs[0].keys[1].expires_at.is_some());
        assert!(c.rate_limits.header_retry_after);
        assert_eq!(
            ResetFormat::Offset.format(1_748_855_040_000),
            "2025-06-02T09:04:00+00:00"
        );
        assert_eq!(
            ResetFormat::CompactOffset.format(1_748_855_040_000),
            "2025-06-02T09:04+0000"
        );
        assert_eq!(c.rate_limits.reset_offset_secs, -30);
        let bad = Cli::try_parse_from([
            "x", "--org", "a", "--org", "b", "--org", "c", "--key", "1", "--key", "2",
        ])
        .unwrap();
        assert!(bad.sim.to_config().is_err());
    }

    #[test]
    fn every_flag_has_help() {
        use clap::CommandFactory;
        let cmd = Cli::command();
        cmd.clone().debug_assert();
        for a in cmd.get_arguments() {
            assert!(a.get_help().is_some(), "--{} has no help text", a.get_id());
        }
    }

    #[test]
    fn parsers() {
        assert_eq!(parse_live_rate("5/min").unwrap().per_second, 5.0 / 60.0);
        assert!(parse_live_rate("5").is_err());
        assert_eq!(parse_duration("7d").unwrap(), Duration::from_secs(604_800));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert!(parse_duration("3 weeks").is_err());
        assert!(parse_time_spec("yesterday").is_err());
        assert_eq!(
            parse_time_spec("1970-01-01T00:00:01Z").unwrap(),
            TimeSpec::AtMs(1000)
        );
        assert!(parse_prob("1.5").is_err());
    }
}
