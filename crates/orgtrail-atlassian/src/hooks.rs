//! Observability hooks: what the retrying call reports to the engine (metrics, progress).

use std::time::Duration;

use crate::error::ErrorKind;
use crate::wait::WaitSource;

/// Why a request is retried.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RetryReason {
    /// A 5xx (or 408) answer.
    Server(u16),
    /// The request timed out.
    Timeout,
    /// The connection could not be established.
    Connect,
    /// The connection failed while sending or receiving (e.g. reset mid-body).
    Transport,
    /// The body was truncated, not JSON or not a page.
    Body,
}

impl RetryReason {
    /// A stable label.
    pub fn as_str(self) -> &'static str {
        match self {
            RetryReason::Server(_) => "server",
            RetryReason::Timeout => "timeout",
            RetryReason::Connect => "connect",
            RetryReason::Transport => "transport",
            RetryReason::Body => "body",
        }
    }
}

/// One thing that happened during a call. `endpoint` is the API path's last segment
/// (`"events-stream"`), a low-cardinality metrics label.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum ApiEvent {
    /// The proactive limiter delayed a request.
    LimiterWait {
        /// Endpoint.
        endpoint: &'static str,
        /// How long it waited.
        waited: Duration,
    },
    /// A 429: the client waits `wait` (floor, jitter and cap applied) before retrying.
    RateLimited {
        /// Endpoint.
        endpoint: &'static str,
        /// 1-based number of the request that was rate limited.
        attempt: u32,
        /// The wait.
        wait: Duration,
        /// The header (or backoff) that decided the wait.
        decided_by: WaitSource,
    },
    /// A transient failure: the client waits `wait` before retrying the same request.
    Retry {
        /// Endpoint.
        endpoint: &'static str,
        /// 1-based number of the request that failed.
        attempt: u32,
        /// Why.
        reason: RetryReason,
        /// The wait.
        wait: Duration,
    },
    /// A request finished (every attempt reports one).
    RequestDone {
        /// Endpoint.
        endpoint: &'static str,
        /// HTTP status, `None` when no response arrived.
        status: Option<u16>,
        /// From sending the request to reading the whole body.
        latency: Duration,
        /// Body bytes read.
        bytes: usize,
        /// `None` on success, else the class of the failure.
        error: Option<ErrorKind>,
    },
}

/// Receives [`ApiEvent`]s. Called inline on the request path: keep it cheap (update a metric,
/// send on a bounded channel with `try_send`). Any `Fn(&ApiEvent) + Send + Sync` is a `Hooks`.
pub trait Hooks: Send + Sync {
    /// One event.
    fn on_event(&self, event: &ApiEvent);
}

/// Ignores every event.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoHooks;

impl Hooks for NoHooks {
    fn on_event(&self, _event: &ApiEvent) {}
}

impl<F> Hooks for F
where
    F: Fn(&ApiEvent) + Send + Sync,
{
    fn on_event(&self, event: &ApiEvent) {
        self(event)
    }
}
