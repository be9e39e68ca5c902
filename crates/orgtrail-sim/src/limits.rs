//! Rate limiter (fixed one-minute windows aligned to the clock minute) and the fault dice.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::config::Faults;
use crate::rng::Rng;

/// Outcome of a rate-limit check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    /// The request may proceed.
    pub allowed: bool,
    /// The binding limit (the one with fewer requests left).
    pub limit: u32,
    /// Requests left in the window after this one.
    pub remaining: u32,
    /// Start of the next window, epoch ms.
    pub reset_ms: i64,
}

/// (endpoint, scoped by key?, org or key id)
type Scope = (u8, bool, u32);

/// Counts requests per (scope, window): scope → (window minute, count).
#[derive(Debug, Default)]
pub struct Limiter {
    windows: Mutex<HashMap<Scope, (i64, u32)>>,
}

impl Limiter {
    /// Checks and, when allowed, counts one request against a per-path and a per-key limit.
    /// `endpoint` identifies the API path template, `org` the org (part of the path), `key` the key.
    pub fn check(
        &self,
        now_ms: i64,
        endpoint: u8,
        org: u32,
        key: u32,
        per_path: u32,
        per_key: u32,
    ) -> Decision {
        let minute = now_ms.div_euclid(60_000);
        let reset_ms = (minute + 1) * 60_000;
        let mut w = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        let mut used = |scoped_by_key: bool, id: u32| -> u32 {
            let e = w
                .entry((endpoint, scoped_by_key, id))
                .or_insert((minute, 0));
            if e.0 != minute {
                *e = (minute, 0);
            }
            e.1
        };
        let path_used = used(false, org);
        let key_used = used(true, key);
        let allowed = path_used < per_path && key_used < per_key;
        if allowed {
            for (k, id) in [(false, org), (true, key)] {
                if let Some(e) = w.get_mut(&(endpoint, k, id)) {
                    e.1 += 1;
                }
            }
        }
        let (pu, ku) = if allowed {
            (path_used + 1, key_used + 1)
        } else {
            (path_used, key_used)
        };
        let path_left = per_path.saturating_sub(pu);
        let key_left = per_key.saturating_sub(ku);
        let (limit, remaining) = if path_left <= key_left {
            (per_path, path_left)
        } else {
            (per_key, key_left)
        };
        Decision {
            allowed,
            limit,
            remaining,
            reset_ms,
        }
    }
}

/// The faults drawn for one request.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Draw {
    /// Answer 429 (burst).
    pub burst_429: bool,
    /// Answer this 5xx.
    pub status_5xx: Option<u16>,
    /// Delay the answer by this many ms.
    pub slow_ms: Option<u64>,
    /// Reset the connection mid-body.
    pub reset: bool,
    /// Truncate the body.
    pub truncate: bool,
    /// Reject the cursor as stale.
    pub stale_cursor: bool,
    /// Repeat the page's last event on the next page.
    pub duplicate: bool,
    /// Where to cut a truncated / reset body (fraction of its length).
    pub cut: f64,
}

/// Fault configuration plus its seeded RNG.
#[derive(Debug)]
pub struct FaultState {
    /// Current configuration.
    pub cfg: Faults,
    rng: Rng,
    burst_left: u32,
}

impl FaultState {
    /// New state.
    pub fn new(cfg: Faults, seed: u64) -> Self {
        Self {
            cfg,
            rng: Rng::new(seed),
            burst_left: 0,
        }
    }

    /// Whether any fault is on.
    pub fn any(&self) -> bool {
        let c = &self.cfg;
        self.burst_left > 0
            || [
                c.burst_429,
                c.http_5xx,
                c.reset,
                c.truncate,
                c.slow,
                c.stale_cursor,
                c.duplicate,
            ]
            .iter()
            .any(|p| *p > 0.0)
    }

    /// Draws the faults of one request. The dice are always thrown in the same order, so the same
    /// seed and configuration replay the same faults for the same request sequence.
    pub fn draw(&mut self) -> Draw {
        let c = &self.cfg;
        let r = &mut self.rng;
        let start_burst = r.chance(c.burst_429);
        let s5 = r.chance(c.http_5xx);
        let pick = r.below(c.statuses_5xx.len().max(1) as u64) as usize;
        let slow = r.chance(c.slow);
        let reset = r.chance(c.reset);
        let truncate = r.chance(c.truncate);
        let stale = r.chance(c.stale_cursor);
        let dup = r.chance(c.duplicate);
        let cut = 0.1 + 0.8 * r.f64();
        let burst = if self.burst_left > 0 {
            self.burst_left -= 1;
            true
        } else if start_burst {
            self.burst_left = c.burst_429_len.saturating_sub(1);
            true
        } else {
            false
        };
        Draw {
            burst_429: burst,
            status_5xx: if s5 {
                c.statuses_5xx.get(pick).copied()
            } else {
                None
            },
            slow_ms: slow.then_some(c.slow_ms),
            reset,
            truncate,
            stale_cursor: stale,
            duplicate: dup,
            cut,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_counts_and_resets() {
        let l = Limiter::default();
        let t0 = 1_748_851_200_000; // a minute boundary
        for i in 0..10 {
            let d = l.check(t0 + i, 1, 0, 0, 10, 60);
            assert!(d.allowed);
            assert_eq!(d.remaining, 9 - i as u32);
            assert_eq!(d.limit, 10);
        }
        let d = l.check(t0 + 59_999, 1, 0, 0, 10, 60);
        assert!(!d.allowed);
        assert_eq!(d.reset_ms, t0 + 60_000);
        // another org is another path
        assert!(l.check(t0, 1, 1, 0, 10, 60).allowed);
        assert!(l.check(t0 + 60_000, 1, 0, 0, 10, 60).allowed);
    }

    #[test]
    fn per_key_limit_binds_across_paths() {
        let l = Limiter::default();
        for org in 0..3 {
            assert!(l.check(0, 1, org, 7, 50, 3).allowed);
        }
        let d = l.check(0, 1, 3, 7, 50, 3);
        assert!(!d.allowed);
        assert_eq!(d.limit, 3);
    }

    #[test]
    fn faults_replay_from_seed() {
        let cfg = Faults {
            http_5xx: 0.3,
            burst_429: 0.1,
            duplicate: 0.2,
            ..Faults::default()
        };
        let mut a = FaultState::new(cfg.clone(), 9);
        let mut b = FaultState::new(cfg, 9);
        let da: Vec<_> = (0..200).map(|_| a.draw()).collect();
        let db: Vec<_> = (0..200).map(|_| b.draw()).collect();
        assert_eq!(da, db);
        assert!(da.iter().any(|d| d.status_5xx.is_some()));
        // bursts last burst_429_len requests
        let i = da.iter().position(|d| d.burst_429).unwrap();
        assert!(da[i..i + 3].iter().all(|d| d.burst_429));
    }
}
