//! The wall clock of health and alarms, injectable so tests never wait for real minutes.
//!
//! Collection itself runs on real time; only the monitor (drop-off thresholds, key expiry,
//! activity windows, retention risk) reads this clock. Tests use [`ManualClock`] and move it
//! forward; `orgtrail run --test-time-scale` (hidden) uses [`ScaledClock`] to run alarm time faster.

use std::fmt;
use std::sync::Mutex;
use std::time::Instant;

use jiff::{SignedDuration, Timestamp};

/// A source of "now" (UTC).
pub trait WallClock: Send + Sync + 'static {
    /// The current time.
    fn now(&self) -> Timestamp;
    /// How many alarm-clock seconds pass per real second (1 for real time). The monitor divides its
    /// evaluation period by this.
    fn speed(&self) -> f64 {
        1.0
    }
}

/// Real time.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemWallClock;

impl WallClock for SystemWallClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }
}

/// A clock that moves only when told to (tests).
pub struct ManualClock(Mutex<Timestamp>);

impl ManualClock {
    /// A clock showing `start`.
    pub fn new(start: Timestamp) -> Self {
        ManualClock(Mutex::new(start))
    }

    /// Moves the clock forward (or back, with a negative duration).
    pub fn advance(&self, by: SignedDuration) {
        let mut t = self.0.lock().unwrap_or_else(|p| p.into_inner());
        *t = t.saturating_add(by).unwrap_or(*t);
    }

    /// Sets the time.
    pub fn set(&self, to: Timestamp) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = to;
    }
}

impl fmt::Debug for ManualClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ManualClock({})", self.now())
    }
}

impl WallClock for ManualClock {
    fn now(&self) -> Timestamp {
        *self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Real time running `speed` times faster from the moment it is created (end-to-end tests of the
/// binary: a 15-minute drop-off threshold passes in seconds).
#[derive(Debug, Clone, Copy)]
pub struct ScaledClock {
    start: Timestamp,
    origin: Instant,
    speed: f64,
}

impl ScaledClock {
    /// Starts at the current time. A `speed` below 1 is taken as 1.
    pub fn new(speed: f64) -> Self {
        ScaledClock {
            start: Timestamp::now(),
            origin: Instant::now(),
            speed: if speed.is_finite() {
                speed.max(1.0)
            } else {
                1.0
            },
        }
    }
}

impl WallClock for ScaledClock {
    fn now(&self) -> Timestamp {
        let elapsed = self.origin.elapsed().as_secs_f64() * self.speed;
        let d = SignedDuration::try_from_secs_f64(elapsed).unwrap_or(SignedDuration::MAX);
        self.start.saturating_add(d).unwrap_or(self.start)
    }

    fn speed(&self) -> f64 {
        self.speed
    }
}
