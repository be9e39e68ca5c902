//! Time source for the proactive limiter and for retry waits.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

/// A future returned by [`Clock::sleep_until`].
pub type Sleep = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// The time source of a [`Client`](crate::Client): a monotonic clock for the limiter and retry
/// waits, and the wall clock to turn `X-RateLimit-Reset` / HTTP-date headers into waits.
///
/// Production uses [`SystemClock`]. Tests can plug in a virtual clock whose `sleep_until` simply
/// moves time forward, so waits of minutes take no real time and can be asserted exactly.
pub trait Clock: Send + Sync + 'static {
    /// Monotonic time since an arbitrary origin.
    fn now(&self) -> Duration;
    /// Wall-clock time (UTC).
    fn wall_now(&self) -> jiff::Timestamp;
    /// Completes once [`Clock::now`] has reached `deadline`.
    fn sleep_until(&self, deadline: Duration) -> Sleep;
    /// Sleeps for `d` (from now).
    fn sleep(&self, d: Duration) -> Sleep {
        self.sleep_until(self.now().saturating_add(d))
    }
}

/// Real time: `tokio::time` for waiting (so tokio's paused test clock also works) and the
/// system clock for wall time.
#[derive(Clone, Copy)]
pub struct SystemClock {
    origin: tokio::time::Instant,
}

impl SystemClock {
    /// A clock whose origin is now.
    pub fn new() -> Self {
        Self {
            origin: tokio::time::Instant::now(),
        }
    }
}

impl Default for SystemClock {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for SystemClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SystemClock")
    }
}

impl Clock for SystemClock {
    fn now(&self) -> Duration {
        self.origin.elapsed()
    }

    fn wall_now(&self) -> jiff::Timestamp {
        jiff::Timestamp::now()
    }

    fn sleep_until(&self, deadline: Duration) -> Sleep {
        Box::pin(tokio::time::sleep_until(self.origin + deadline))
    }
}

/// Adapter so `governor` reads time from our [`Clock`].
#[derive(Clone)]
pub(crate) struct GovClock(pub(crate) Arc<dyn Clock>);

impl governor::clock::Clock for GovClock {
    type Instant = Duration;

    fn now(&self) -> Duration {
        self.0.now()
    }
}
