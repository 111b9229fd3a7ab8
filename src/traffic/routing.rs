//! Keyed routing: canary traffic split and session affinity.
//!
//! Both work on [`predict_keyed`](crate::BlueGreen::predict_keyed), which takes a request
//! key (a user id, a session id). The key is hashed with xxh3, which is stable across
//! processes and machines, so every replica of a fleet routes a key the same way.
//!
//! * **Canary split**: a key falls in one of 10 000 buckets; keys whose bucket is below the
//!   canary share (in basis points) go to the canary. Raising the share only adds buckets,
//!   so a user who saw the canary keeps seeing it.
//! * **Session affinity**: the version that answered a session's first request keeps
//!   answering it for a grace period, across swaps and rollbacks — as long as that model is
//!   still loaded and not the one just rolled back from. Then the session moves.

use std::num::NonZeroUsize;
use std::time::{Duration, Instant};

use crate::sync::Mutex;
use crossbeam_utils::CachePadded;
use lru::LruCache;

/// Basis points in 100 %.
pub(crate) const BASIS: u32 = 10_000;

/// The stable hash of a request key.
#[inline]
pub(crate) fn key_hash(key: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64(key)
}

/// The canary bucket (0..10 000) of a key hash.
#[inline]
pub(crate) fn bucket(hash: u64) -> u32 {
    (hash % u64::from(BASIS)) as u32
}

/// A canary share in percent (0..=100) as basis points.
pub(crate) fn basis_points(percent: f64) -> Option<u32> {
    (0.0..=100.0)
        .contains(&percent)
        .then(|| (percent * 100.0).round() as u32)
}

/// Session-affinity settings; see the [module docs](self).
#[derive(Debug, Clone, PartialEq)]
pub struct Affinity {
    pub(crate) grace: Duration,
    pub(crate) max_sessions: usize,
}

impl Affinity {
    /// Keep each session on its first version for `grace` after its first request.
    pub fn new(grace: Duration) -> Self {
        Self {
            grace,
            max_sessions: 1_000_000,
        }
    }

    /// At most this many sessions are remembered (default one million). Past the limit a
    /// new session displaces the one pinned longest ago — expired, or closest to expiring —
    /// in constant time.
    pub fn max_sessions(mut self, sessions: usize) -> Self {
        self.max_sessions = sessions.max(SHARDS);
        self
    }
}

const SHARDS: usize = 64;

#[derive(Debug, Clone, Copy)]
struct Pin {
    generation: u64,
    since: Instant,
}

/// Pins in the order they were made: pins are never refreshed (a session keeps its first
/// version for the grace period), so the least recently *inserted* pin is also the one
/// that expires first, and evicting it is what a full table should do.
type Shard = CachePadded<Mutex<LruCache<u64, Pin>>>;

/// Remembered sessions, sharded so that concurrent requests rarely share a lock.
pub(crate) struct Sessions {
    shards: Box<[Shard]>,
    grace: Duration,
}

impl Sessions {
    pub(crate) fn new(config: &Affinity) -> Self {
        let per_shard =
            NonZeroUsize::new(config.max_sessions.div_ceil(SHARDS)).unwrap_or(NonZeroUsize::MIN);
        Self {
            shards: (0..SHARDS)
                .map(|_| CachePadded::new(Mutex::new(LruCache::new(per_shard))))
                .collect(),
            grace: config.grace,
        }
    }

    fn shard(&self, hash: u64) -> &Mutex<LruCache<u64, Pin>> {
        // High bits: the low ones pick the canary bucket.
        &self.shards[(hash >> 58) as usize % SHARDS]
    }

    /// Routes a session: the generation it is pinned to, if the pin is within its grace
    /// and `loaded(generation)` still holds; otherwise pins it to `routed` from `now` on
    /// and returns that. One lock either way.
    pub(crate) fn route(
        &self,
        hash: u64,
        now: Instant,
        loaded: impl Fn(u64) -> bool,
        routed: u64,
    ) -> u64 {
        let mut shard = self.shard(hash).lock();
        // `peek`: a lookup does not make a pin younger.
        if let Some(p) = shard.peek(&hash)
            && now.duration_since(p.since) < self.grace
            && loaded(p.generation)
        {
            return p.generation;
        }
        shard.put(
            hash,
            Pin {
                generation: routed,
                since: now,
            },
        );
        routed
    }

    /// The generation this session is pinned to, if the pin is still within its grace.
    #[cfg(test)]
    fn pinned(&self, hash: u64, now: Instant) -> Option<u64> {
        let shard = self.shard(hash).lock();
        shard
            .peek(&hash)
            .filter(|p| now.duration_since(p.since) < self.grace)
            .map(|p| p.generation)
    }

    /// Pins the session to `generation` from `now` on.
    #[cfg(test)]
    fn pin(&self, hash: u64, generation: u64, now: Instant) {
        self.shard(hash).lock().put(
            hash,
            Pin {
                generation,
                since: now,
            },
        );
    }

    /// Sessions currently remembered (including expired ones not yet evicted).
    pub(crate) fn len(&self) -> usize {
        self.shards.iter().map(|s| s.lock().len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_maps_to_basis_points_and_refuses_out_of_range() {
        assert_eq!(basis_points(0.0), Some(0));
        assert_eq!(basis_points(12.34), Some(1234));
        assert_eq!(basis_points(100.0), Some(10_000));
        assert_eq!(basis_points(100.1), None);
        assert_eq!(basis_points(-1.0), None);
        assert_eq!(basis_points(f64::NAN), None);
    }

    #[test]
    fn key_hash_is_stable_across_processes() {
        // xxh3 of "user-42" is fixed by the algorithm, not by a per-process seed.
        assert_eq!(key_hash(b"user-42"), xxhash_rust::xxh3::xxh3_64(b"user-42"));
        assert_eq!(key_hash(b""), 0x2D06_8005_38D3_94C2);
    }

    #[test]
    fn pins_expire_after_the_grace_period() {
        let s = Sessions::new(&Affinity::new(Duration::from_millis(100)));
        let t0 = Instant::now();
        s.pin(7, 3, t0);
        assert_eq!(s.pinned(7, t0 + Duration::from_millis(50)), Some(3));
        assert_eq!(s.pinned(7, t0 + Duration::from_millis(150)), None);
    }

    #[test]
    fn a_full_table_evicts_the_pin_made_longest_ago() {
        // 128 sessions over 64 shards: two per shard. Hashes with the same high bits
        // land in one shard.
        let s = Sessions::new(&Affinity::new(Duration::from_secs(60)).max_sessions(128));
        let t0 = Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        s.pin(1, 10, at(0));
        s.pin(2, 20, at(1));
        // Looking a pin up does not make it younger.
        assert_eq!(s.route(1, at(2), |_| true, 99), 10);
        s.pin(3, 30, at(3));
        assert_eq!(s.pinned(1, at(4)), None, "the oldest pin made room");
        assert_eq!(
            (s.pinned(2, at(4)), s.pinned(3, at(4))),
            (Some(20), Some(30))
        );
        assert_eq!(s.len(), 2);
    }

    #[test]
    fn re_pinning_a_session_replaces_its_pin_without_growing_the_table() {
        let s = Sessions::new(&Affinity::new(Duration::from_millis(10)).max_sessions(64));
        let t0 = Instant::now();
        s.pin(1, 1, t0);
        // Expired: routed afresh and pinned to the routed generation.
        assert_eq!(s.route(1, t0 + Duration::from_millis(20), |_| true, 2), 2);
        // Its generation unloaded: the same.
        assert_eq!(s.route(1, t0 + Duration::from_millis(21), |g| g != 2, 3), 3);
        assert_eq!(s.len(), 1);
    }
}
