//! Time helpers: a fast fixed-format RFC 3339 formatter (the simulator formats two timestamps per
//! generated event) and the simulator clock (system time, or a manual clock that tests advance).

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

/// Converts days since 1970-01-01 to a civil (year, month, day). Howard Hinnant's algorithm.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

struct Parts {
    year: i64,
    month: u32,
    day: u32,
    hour: u32,
    minute: u32,
    second: u32,
    milli: u32,
}

fn parts(ms: i64) -> Parts {
    let secs = ms.div_euclid(1000);
    let milli = ms.rem_euclid(1000) as u32;
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400) as u32;
    let (year, month, day) = civil_from_days(days);
    Parts {
        year,
        month,
        day,
        hour: sod / 3600,
        minute: (sod / 60) % 60,
        second: sod % 60,
        milli,
    }
}

/// `2025-06-02T08:15:43.090Z` (always three fraction digits; always 24 bytes for years 0..=9999).
pub fn rfc3339_millis(ms: i64) -> String {
    let p = parts(ms);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        p.year, p.month, p.day, p.hour, p.minute, p.second, p.milli
    )
}

/// `2025-06-02T08:15:43Z` (fraction dropped, not rounded).
pub fn rfc3339_seconds(ms: i64) -> String {
    let p = parts(ms);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        p.year, p.month, p.day, p.hour, p.minute, p.second
    )
}

/// `2025-06-02T09:04Z`: the minute-precision form Atlassian uses in `X-RateLimit-Reset`.
pub fn rfc3339_minutes(ms: i64) -> String {
    let p = parts(ms);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}Z",
        p.year, p.month, p.day, p.hour, p.minute
    )
}

/// Current wall-clock time in epoch milliseconds.
pub fn system_now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

/// The simulator's notion of "now". `System` follows the wall clock; `Manual` only moves when a
/// test calls [`SimClock::advance`] or [`SimClock::set_ms`], which makes rate-limit windows, key
/// expiry, cursor TTLs and live-event generation deterministic in tests.
#[derive(Clone, Debug, Default)]
pub struct SimClock {
    manual: Option<Arc<AtomicI64>>,
}

impl SimClock {
    /// The wall clock.
    pub fn system() -> Self {
        Self { manual: None }
    }

    /// A manual clock starting at `start_ms` (epoch milliseconds).
    pub fn manual(start_ms: i64) -> Self {
        Self {
            manual: Some(Arc::new(AtomicI64::new(start_ms))),
        }
    }

    /// A manual clock starting at `start`.
    pub fn manual_at(start: jiff::Timestamp) -> Self {
        Self::manual(start.as_millisecond())
    }

    /// Whether this clock is manual.
    pub fn is_manual(&self) -> bool {
        self.manual.is_some()
    }

    /// Now, in epoch milliseconds.
    pub fn now_ms(&self) -> i64 {
        match &self.manual {
            Some(t) => t.load(Ordering::SeqCst),
            None => system_now_ms(),
        }
    }

    /// Moves a manual clock forward. No effect on the system clock.
    pub fn advance(&self, by: Duration) {
        if let Some(t) = &self.manual {
            t.fetch_add(
                i64::try_from(by.as_millis()).unwrap_or(i64::MAX),
                Ordering::SeqCst,
            );
        }
    }

    /// Sets a manual clock. No effect on the system clock.
    pub fn set_ms(&self, ms: i64) {
        if let Some(t) = &self.manual {
            t.store(ms, Ordering::SeqCst);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_match_jiff() {
        for ms in [
            0i64,
            1_748_852_143_090,
            1_748_852_143_000,
            951_782_400_123,
            4_102_444_799_999,
            -1,
        ] {
            let ts = jiff::Timestamp::from_millisecond(ms).unwrap();
            let ours: jiff::Timestamp = rfc3339_millis(ms).parse().unwrap();
            assert_eq!(ours, ts, "{ms}");
            assert_eq!(rfc3339_millis(ms).len(), 24);
            let secs: jiff::Timestamp = rfc3339_seconds(ms).parse().unwrap();
            assert_eq!(secs.as_second(), ts.as_second().min(ms.div_euclid(1000)));
        }
        assert_eq!(
            rfc3339_millis(1_748_852_143_090),
            "2025-06-02T08:15:43.090Z"
        );
        assert_eq!(rfc3339_seconds(1_748_852_143_090), "2025-06-02T08:15:43Z");
        assert_eq!(rfc3339_minutes(1_748_852_143_090), "2025-06-02T08:15Z");
    }

    #[test]
    fn manual_clock_moves_only_when_told() {
        let c = SimClock::manual(1000);
        assert_eq!(c.now_ms(), 1000);
        c.advance(Duration::from_secs(2));
        assert_eq!(c.now_ms(), 3000);
        c.set_ms(5);
        assert_eq!(c.now_ms(), 5);
    }
}
