//! The per-org event store: events in `processedAt` order (history generated at start, live
//! events appended as the clock passes their processing time), a `time` index for `/events`, and
//! an id index for `/events/{id}`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::generator::{EventRec, OrgPools, gen_event, history_times};

/// Upper bound of `processedAt - time` the generator produces (48 h, plus margin).
pub const MAX_LAG_MS: i64 = 49 * 3_600_000;

/// Events of one org.
#[derive(Debug)]
pub struct OrgData {
    /// Ascending by `processedAt` (ties keep generation order).
    pub events: Vec<EventRec>,
    /// Indices into `events`, ascending by `(time_ms, index)`.
    pub by_time: Vec<u32>,
    /// Event id → index.
    pub by_id: HashMap<u128, u32>,
    /// Live events generated so far.
    live_count: u64,
}

/// One simulated org.
#[derive(Debug)]
pub struct OrgStore {
    /// Position in the config.
    pub index: usize,
    /// Pools (actor ids, IPs) used to resolve filters.
    pub pools: OrgPools,
    seed: u64,
    history_len: u64,
    data: RwLock<OrgData>,
    /// Live schedule: first live event time and rate (events per ms); `rate <= 0` = no live mode.
    live_start_ms: i64,
    live_per_ms: f64,
    live_max: u64,
    /// Processing time of the next live event (`i64::MAX` when none), to skip locking.
    next_live_ms: AtomicI64,
}

impl OrgStore {
    /// Generates the history of one org (in parallel on all cores; the output does not depend on
    /// the number of threads).
    #[allow(clippy::too_many_arguments)]
    pub fn generate(
        org_id: &str,
        index: usize,
        seed: u64,
        n: usize,
        span_ms: i64,
        end_ms: i64,
        live_from_ms: i64,
        live_per_second: Option<f64>,
        live_max: usize,
    ) -> Self {
        let pools = OrgPools::new(org_id, index, seed);
        let times = history_times(seed, index, n, span_ms, end_ms);
        let threads = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(8);
        let chunk = n.div_ceil(threads).max(1);
        let mut events: Vec<EventRec> = Vec::with_capacity(n);
        std::thread::scope(|s| {
            let handles: Vec<_> = times
                .chunks(chunk)
                .enumerate()
                .map(|(ci, ts)| {
                    let pools = &pools;
                    s.spawn(move || {
                        ts.iter()
                            .enumerate()
                            .map(|(j, t)| {
                                gen_event(pools, seed, index, (ci * chunk + j) as u64, *t)
                            })
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            for h in handles {
                match h.join() {
                    Ok(v) => events.extend(v),
                    // A panic in a generator thread is a bug; re-raise it here.
                    Err(p) => std::panic::resume_unwind(p),
                }
            }
        });
        let mut by_time: Vec<u32> = (0..events.len() as u32).collect();
        by_time.sort_unstable_by_key(|&i| (events[i as usize].time_ms, i));
        let mut by_id = HashMap::with_capacity(events.len());
        for (i, e) in events.iter().enumerate() {
            by_id.insert(e.id, i as u32);
        }
        let last = events.last().map_or(end_ms, |e| e.processed_ms);
        let live_per_ms = live_per_second.unwrap_or(0.0) / 1000.0;
        // The first live event comes one interval after start (and after the history).
        let interval = if live_per_ms > 0.0 {
            (1.0 / live_per_ms).ceil() as i64
        } else {
            0
        };
        let live_start_ms = live_from_ms.max(last + 1) + interval;
        let store = Self {
            index,
            pools,
            seed,
            history_len: n as u64,
            data: RwLock::new(OrgData {
                events,
                by_time,
                by_id,
                live_count: 0,
            }),
            live_start_ms,
            live_per_ms,
            live_max: live_max as u64,
            next_live_ms: AtomicI64::new(i64::MAX),
        };
        store
            .next_live_ms
            .store(store.live_time(0), Ordering::SeqCst);
        store
    }

    /// Processing time of live event `k` (`i64::MAX` when there is none).
    fn live_time(&self, k: u64) -> i64 {
        if self.live_per_ms <= 0.0 || k >= self.live_max {
            return i64::MAX;
        }
        self.live_start_ms + (k as f64 / self.live_per_ms).floor() as i64
    }

    /// Appends every live event whose processing time is `<= now_ms`.
    pub fn catch_up(&self, now_ms: i64) {
        if self.next_live_ms.load(Ordering::SeqCst) > now_ms {
            return;
        }
        let mut d = self.write();
        loop {
            let k = d.live_count;
            let t = self.live_time(k);
            if t > now_ms {
                self.next_live_ms.store(t, Ordering::SeqCst);
                break;
            }
            let e = gen_event(&self.pools, self.seed, self.index, self.history_len + k, t);
            let idx = d.events.len() as u32;
            let key = (e.time_ms, idx);
            let events = &d.events;
            let pos = d
                .by_time
                .partition_point(|&i| (events[i as usize].time_ms, i) < key);
            d.by_time.insert(pos, idx);
            d.by_id.insert(e.id, idx);
            d.events.push(e);
            d.live_count += 1;
        }
    }

    /// Read access.
    pub fn read(&self) -> RwLockReadGuard<'_, OrgData> {
        // A poisoned lock means a panic while appending, which is a bug; keep serving what exists.
        self.data.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, OrgData> {
        self.data.write().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_events_append_in_order() {
        let s = OrgStore::generate(
            "o",
            0,
            5,
            300,
            3_600_000,
            1_000_000_000,
            1_000_000_000,
            Some(10.0),
            1000,
        );
        assert_eq!(s.read().events.len(), 300);
        s.catch_up(1_000_000_000 - 1);
        assert_eq!(s.read().events.len(), 300);
        s.catch_up(1_000_000_000 + 1_000);
        let d = s.read();
        assert_eq!(d.events.len(), 310);
        assert!(
            d.events
                .windows(2)
                .all(|w| w[0].processed_ms <= w[1].processed_ms)
        );
        assert!(d.by_time.windows(2).all(|w| {
            let (a, b) = (&d.events[w[0] as usize], &d.events[w[1] as usize]);
            (a.time_ms, w[0]) < (b.time_ms, w[1])
        }));
        assert_eq!(d.by_id.len(), 310);
    }

    #[test]
    fn generation_is_independent_of_chunking() {
        let a = OrgStore::generate(
            "o",
            0,
            5,
            101,
            3_600_000,
            1_000_000_000,
            1_000_000_000,
            None,
            0,
        );
        let p = OrgPools::new("o", 0, 5);
        let d = a.read();
        let t = history_times(5, 0, 101, 3_600_000, 1_000_000_000);
        for i in [0usize, 50, 100] {
            assert_eq!(d.events[i].json, gen_event(&p, 5, 0, i as u64, t[i]).json);
        }
    }
}
