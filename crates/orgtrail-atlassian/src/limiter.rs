//! The proactive rate limiter: one GCRA bucket per (API key fingerprint, endpoint), shared by
//! every source that uses the same key through the same [`Client`](crate::Client).

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::middleware::NoOpMiddleware;
use governor::state::keyed::HashMapStateStore;
use governor::{Quota, RateLimiter};

use crate::clock::{Clock, GovClock};
use crate::error::ApiError;

/// Proactive request budget per (API key, endpoint).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RateConfig {
    /// Sustained requests per second (default 0.8, i.e. 48/min: under the observed 50/min per
    /// path and 60/min per user of `/events-stream`).
    pub per_second: f64,
    /// Requests allowed back to back after an idle period (default 2).
    pub burst: u32,
}

impl Default for RateConfig {
    fn default() -> Self {
        Self {
            per_second: 0.8,
            burst: 2,
        }
    }
}

/// (fingerprint of the API key, endpoint name). The key itself is never stored.
type LimitKey = (u64, &'static str);

pub(crate) struct Limiter {
    inner: RateLimiter<LimitKey, HashMapStateStore<LimitKey>, GovClock, NoOpMiddleware<Duration>>,
    clock: Arc<dyn Clock>,
}

impl Limiter {
    pub(crate) fn new(cfg: RateConfig, clock: Arc<dyn Clock>) -> Result<Self, ApiError> {
        if !(cfg.per_second.is_finite() && cfg.per_second > 0.0 && cfg.per_second <= 1e6) {
            return Err(ApiError::Config {
                message: format!(
                    "rate limit per_second = {} must be a positive number (at most 1e6); \
                     to turn the limiter off set `rate: None`",
                    cfg.per_second
                ),
            });
        }
        let burst = NonZeroU32::new(cfg.burst).ok_or_else(|| ApiError::Config {
            message: "rate limit burst must be at least 1".into(),
        })?;
        let period = Duration::from_secs_f64(1.0 / cfg.per_second);
        let quota = Quota::with_period(period)
            .ok_or_else(|| ApiError::Config {
                message: format!("rate limit per_second = {} is too high", cfg.per_second),
            })?
            .allow_burst(burst);
        Ok(Self {
            inner: RateLimiter::hashmap_with_clock(quota, GovClock(clock.clone())),
            clock,
        })
    }

    /// Waits for a permit; returns how long it waited.
    pub(crate) async fn acquire(&self, key_fp: u64, endpoint: &'static str) -> Duration {
        let start = self.clock.now();
        let key = (key_fp, endpoint);
        loop {
            match self.inner.check_key(&key) {
                Ok(()) => return self.clock.now().saturating_sub(start),
                Err(not_until) => {
                    self.clock.sleep_until(not_until.earliest_possible()).await;
                }
            }
        }
    }
}
