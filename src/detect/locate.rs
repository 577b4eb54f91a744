//! Where a token's request comes from: the per-token shortcut, the shared
//! cache, the database, and the operator's egress list, in that order.

use super::AllowlistHandle;
use crate::features::TokenState;
use crate::geo::{GeoCache, GeoHandle, Loaded, Lookup};

/// Geolocates `ip` for a token, then applies the operator's egress list.
pub(super) fn locate_allowed(
    state: &mut TokenState,
    ip: std::net::IpAddr,
    (tenant, at_ms): (Option<&str>, i64),
    geo: &GeoHandle,
    cache: &mut GeoCache,
    allowlist: &AllowlistHandle,
    shortcut_hits: &mut u64,
) -> Lookup {
    let geo = geo.load();
    let lookup = locate(state, cache, &geo, ip, shortcut_hits);
    let allow = allowlist.load();
    match lookup {
        Lookup::Located(l) if !allow.is_empty() && allow.is_egress(ip, l.asn, tenant, at_ms) => {
            Lookup::Unlocated(crate::geo::Unlocated::Allowlisted)
        }
        other => other,
    }
}

/// The per-token shortcut first: the same address as the token's last
/// located request, under the same database, is the same answer with no
/// lookup (one comparison, the state is already at hand). Then the cache,
/// then the database.
pub(super) fn locate(
    state: &mut TokenState,
    cache: &mut GeoCache,
    geo: &Loaded,
    ip: std::net::IpAddr,
    shortcut_hits: &mut u64,
) -> Lookup {
    let generation = geo.generation as u32;
    if let Some(s) = state.last_seen {
        if s.ip == ip && state.geo_generation == generation {
            *shortcut_hits += 1;
            return Lookup::Located(s.location);
        }
    }
    let lookup = cache.lookup(&geo.db, geo.generation, ip);
    if lookup.location().is_some() {
        state.geo_generation = generation;
    }
    lookup
}
