//! The simulated world: cities and their real networks, read from the geo
//! database, and addresses drawn from them.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnetwork::IpNetwork;
use rand::Rng;

use crate::geo::{Country, GeoDb, Location};

/// A city with the networks the database places there.
#[derive(Clone, Debug)]
pub struct City {
    pub location: Location,
    pub v4: Vec<IpNetwork>,
    pub v6: Vec<IpNetwork>,
}

#[derive(Clone, Debug)]
pub struct World {
    pub cities: Vec<City>,
}

impl World {
    /// Groups the database's networks by position (cities).
    pub fn from_geo(db: &GeoDb) -> World {
        let mut by_pos: BTreeMap<(i32, i32, [u8; 2]), City> = BTreeMap::new();
        for (net, loc) in db.networks() {
            // Usable host ranges only.
            let ok = match net {
                IpNetwork::V4(n) => n.prefix() <= 28,
                IpNetwork::V6(n) => n.prefix() <= 64,
            };
            if !ok || !loc.country.is_known() {
                continue;
            }
            let key = (
                (loc.lat * 100.0) as i32,
                (loc.lon * 100.0) as i32,
                loc.country.0,
            );
            let city = by_pos.entry(key).or_insert_with(|| City {
                location: loc,
                v4: Vec::new(),
                v6: Vec::new(),
            });
            match net {
                IpNetwork::V4(_) => city.v4.push(net),
                IpNetwork::V6(_) => city.v6.push(net),
            }
        }
        World {
            cities: by_pos.into_values().filter(|c| !c.v4.is_empty()).collect(),
        }
    }

    pub fn city(&self, i: usize) -> &City {
        &self.cities[i]
    }

    /// Cities in `country` other than `except`.
    pub fn same_country(&self, country: Country, except: usize) -> Vec<usize> {
        (0..self.cities.len())
            .filter(|&i| i != except && self.cities[i].location.country == country)
            .collect()
    }

    /// A city in another country at least `min_km` away.
    pub fn far_city(&self, rng: &mut impl Rng, from: usize, min_km: f64) -> usize {
        let here = self.cities[from].location;
        for _ in 0..200 {
            let i = rng.gen_range(0..self.cities.len());
            let c = &self.cities[i].location;
            if c.country != here.country && here.distance_km(c) >= min_km {
                return i;
            }
        }
        (from + self.cities.len() / 2) % self.cities.len()
    }
}

/// A host address inside `net`, avoiding the network and broadcast ends.
pub fn host_in(rng: &mut impl Rng, net: &IpNetwork) -> IpAddr {
    match net {
        IpNetwork::V4(n) => {
            let base = u32::from(n.network());
            let size = 1u64 << (32 - u32::from(n.prefix()));
            let off = if size > 2 {
                rng.gen_range(1..size - 1)
            } else {
                0
            };
            IpAddr::V4(Ipv4Addr::from(base.wrapping_add(off as u32)))
        }
        IpNetwork::V6(n) => {
            let base = u128::from(n.network());
            let host_bits = 128 - u32::from(n.prefix());
            let off: u128 = if host_bits >= 64 {
                u128::from(rng.gen::<u64>())
            } else {
                rng.gen_range(1..(1u128 << host_bits))
            };
            IpAddr::V6(Ipv6Addr::from(base.wrapping_add(off.max(1))))
        }
    }
}

/// An address in city `c`: IPv6 with probability `p_v6` where it has any.
pub fn address_in(rng: &mut impl Rng, c: &City, p_v6: f64) -> IpAddr {
    if !c.v6.is_empty() && rng.gen_bool(p_v6) {
        let i = rng.gen_range(0..c.v6.len());
        host_in(rng, &c.v6[i])
    } else {
        let i = rng.gen_range(0..c.v4.len());
        host_in(rng, &c.v4[i])
    }
}
