//! The fixed rule every report is compared with: impossible travel as
//! common SIEM rules write it — more than 500 mph (805 km/h) between a
//! token's consecutive located requests, on raw great-circle distance with
//! no allowance for geolocation accuracy, VPNs or shared egress.

use std::collections::HashMap;

use crate::geo::{Location, Lookup};

pub struct TravelRule {
    pub speed_kmh: f64,
    last: HashMap<u128, (i64, Location)>,
}

impl Default for TravelRule {
    fn default() -> Self {
        TravelRule {
            speed_kmh: 500.0 * 1.609_344,
            last: HashMap::new(),
        }
    }
}

impl TravelRule {
    /// True if this request is too fast from the token's previous one.
    pub fn fires(&mut self, token: u128, ts_ms: i64, lookup: &Lookup) -> bool {
        let Some(loc) = lookup.location() else {
            return false;
        };
        let fired = match self.last.get(&token) {
            Some((t, prev)) => {
                let km = prev.distance_km(loc);
                // The rule divides by the raw delta; same-millisecond pairs
                // a kilometre apart are "infinitely fast".
                let h = ((ts_ms - t).abs() as f64 / 3_600_000.0).max(1e-9);
                km > 1.0 && km / h > self.speed_kmh
            }
            None => false,
        };
        self.last.insert(token, (ts_ms, *loc));
        fired
    }
}
