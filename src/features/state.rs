//! Per-token state: everything tokenwatch remembers about one token, in a
//! fixed-size record with no heap pointers, so millions of live tokens fit in
//! memory and the hot path never allocates.

use std::net::IpAddr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::geo::{Country, Location};

/// How many distinct countries / ASNs / user agents a token remembers. A
/// legitimate token rarely sees more than two; past the cap the token is
/// already anomalous and the counters keep counting.
pub const SET_CAP: usize = 4;

/// A tiny set of small values, inline. Counts distinct insertions past the cap.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SmallSet<T: Copy + PartialEq + Default, const N: usize> {
    items: [T; N],
    len: u8,
    /// Distinct values seen, saturating; exact up to N.
    pub distinct: u8,
}

/// On the wire (the state changelog): the held values and the count.
#[derive(Serialize, Deserialize)]
struct SmallSetWire<T> {
    items: Vec<T>,
    distinct: u8,
}

impl<T: Copy + PartialEq + Default + Serialize, const N: usize> Serialize for SmallSet<T, N> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        SmallSetWire {
            items: self.iter().copied().collect(),
            distinct: self.distinct,
        }
        .serialize(s)
    }
}

impl<'de, T, const N: usize> Deserialize<'de> for SmallSet<T, N>
where
    T: Copy + PartialEq + Default + Deserialize<'de>,
{
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let w = SmallSetWire::<T>::deserialize(d)?;
        let mut set = SmallSet::default();
        for v in w.items.into_iter().take(N) {
            set.insert(v);
        }
        set.distinct = w.distinct.max(set.len);
        Ok(set)
    }
}

impl<T: Copy + PartialEq + Default, const N: usize> Default for SmallSet<T, N> {
    fn default() -> Self {
        SmallSet {
            items: [T::default(); N],
            len: 0,
            distinct: 0,
        }
    }
}

impl<T: Copy + PartialEq + Default, const N: usize> SmallSet<T, N> {
    pub fn contains(&self, v: T) -> bool {
        self.items[..usize::from(self.len)].contains(&v)
    }

    /// Inserts `v`; returns true if it was new. Once full, a value not held is
    /// counted as new (it may have been seen and forgotten: the error is on
    /// the side of "new").
    pub fn insert(&mut self, v: T) -> bool {
        if self.contains(v) {
            return false;
        }
        if usize::from(self.len) < N {
            self.items[usize::from(self.len)] = v;
            self.len += 1;
        }
        self.distinct = self.distinct.saturating_add(1);
        true
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn iter(&self) -> impl Iterator<Item = &T> {
        self.items[..usize::from(self.len)].iter()
    }
}

/// A 64-bit linear-counting sketch: distinct-value estimates in 8 bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Sketch64(pub u64);

impl Sketch64 {
    /// Adds a hashed value; returns true if its bit was not set yet.
    pub fn insert(&mut self, hash: u64) -> bool {
        let bit = 1u64 << (hash % 64);
        let new = self.0 & bit == 0;
        self.0 |= bit;
        new
    }

    /// Linear-counting estimate of the number of distinct values.
    pub fn estimate(&self) -> f32 {
        let zeros = 64 - self.0.count_ones();
        if zeros == 0 {
            return 64.0 * (64f32).ln();
        }
        -64.0 * (zeros as f32 / 64.0).ln()
    }
}

/// A place the token was used from, with when.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Sighting {
    pub at_ms: i64,
    pub location: Location,
    pub ip: IpAddr,
}

/// The per-token record. Plain data, `Copy`, no pointers. Serialised whole
/// (addresses included) only for the state changelog, which is as sensitive
/// as the telemetry topic.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct TokenState {
    pub first_ms: i64,
    pub last_ms: i64,
    /// Token expiry, ms since the epoch; 0 when unknown.
    pub exp_ms: i64,
    /// Token issue time, ms since the epoch; 0 when unknown.
    pub iat_ms: i64,
    pub requests: u32,
    /// The last address and what it resolved to: the per-token geo shortcut.
    pub last_ip: Option<IpAddr>,
    /// Most recent located request.
    pub last_seen: Option<Sighting>,
    /// The last located request from a *different place* than `last_seen`:
    /// returning to it within minutes is a flip between two holders.
    pub other_place: Option<Sighting>,
    /// Exponentially-decayed rates, requests per minute.
    pub rate_short: f32,
    pub rate_long: f32,
    pub max_velocity_kmh: f32,
    /// Decayed count of A→B→A flips between far-apart places.
    pub flips: f32,
    pub countries: SmallSet<Country, SET_CAP>,
    pub asns: SmallSet<u32, SET_CAP>,
    pub user_agents: SmallSet<u32, SET_CAP>,
    pub prefixes: Sketch64,
    pub ips: Sketch64,
    /// Highest action taken so far (0 none, 1 alert, 2 revoke): a token is
    /// escalated at most once per level, however often it scores high.
    pub flagged_level: u8,
    /// Impossible travel or a flip has been seen: the token teaches its
    /// subject's familiar places nothing more.
    pub suspect: bool,
    pub last_score: f32,
    /// Geo database generation that resolved `last_seen`, for the shortcut.
    pub geo_generation: u32,
    /// Hash of the last raw User-Agent string, to skip re-deriving its family.
    pub last_ua_raw: u32,
}

impl TokenState {
    pub fn new(first_ms: i64) -> TokenState {
        TokenState {
            first_ms,
            last_ms: first_ms,
            exp_ms: 0,
            iat_ms: 0,
            requests: 0,
            last_ip: None,
            last_seen: None,
            other_place: None,
            rate_short: 0.0,
            rate_long: 0.0,
            max_velocity_kmh: 0.0,
            flips: 0.0,
            countries: SmallSet::default(),
            asns: SmallSet::default(),
            user_agents: SmallSet::default(),
            prefixes: Sketch64::default(),
            ips: Sketch64::default(),
            flagged_level: 0,
            suspect: false,
            last_score: 0.0,
            geo_generation: 0,
            last_ua_raw: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_stays_small() {
        assert!(
            std::mem::size_of::<TokenState>() <= 256,
            "{}",
            std::mem::size_of::<TokenState>()
        );
    }

    #[test]
    fn small_set_counts_past_its_cap() {
        let mut s: SmallSet<u32, 2> = SmallSet::default();
        assert!(s.insert(1) && !s.insert(1) && s.insert(2) && s.insert(3));
        assert_eq!(s.distinct, 3);
        assert!(s.contains(1) && !s.contains(3));
    }

    #[test]
    fn sketch_estimates_distinct_values() {
        let mut s = Sketch64::default();
        for i in 0..10u64 {
            s.insert(i.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 7);
        }
        let e = s.estimate();
        assert!((6.0..=14.0).contains(&e), "{e}");
    }
}
