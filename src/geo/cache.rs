//! A small bounded cache of recent lookups, in front of the database.
//!
//! Gateways see the same client addresses over and over (NAT egress, API
//! clients polling); a hit costs a hash probe instead of a tree walk and a
//! record decode. Entries carry the database generation, so a hot reload
//! never serves a location from the old file.

use std::net::IpAddr;
use std::num::NonZeroUsize;

use lru::LruCache;

use super::db::{GeoDb, Lookup};

pub struct GeoCache {
    /// Grows with use up to `cap` (no up-front reservation).
    entries: LruCache<IpAddr, (u64, Lookup)>,
    cap: usize,
    pub hits: u64,
    pub misses: u64,
}

impl GeoCache {
    pub fn new(capacity: NonZeroUsize) -> GeoCache {
        GeoCache {
            entries: LruCache::unbounded(),
            cap: capacity.get(),
            hits: 0,
            misses: 0,
        }
    }

    /// Looks `ip` up through the cache; `generation` identifies `db`.
    pub fn lookup(&mut self, db: &GeoDb, generation: u64, ip: IpAddr) -> Lookup {
        if let Some((g, hit)) = self.entries.get(&ip) {
            if *g == generation {
                self.hits += 1;
                return *hit;
            }
        }
        self.misses += 1;
        let found = db.lookup(ip);
        if self.entries.len() >= self.cap && !self.entries.contains(&ip) {
            self.entries.pop_lru();
        }
        self.entries.put(ip, (generation, found));
        found
    }
}
