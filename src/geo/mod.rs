//! Geo enrichment: client IP → location, country, accuracy radius and ASN,
//! from MaxMind-format databases, swappable at run time without stopping.

mod cache;
mod db;
pub mod demo_build;
mod location;
mod unlocated;
mod verify;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

pub use cache::GeoCache;
pub use db::{
    GeoDb, GeoError, Lookup, Place, Schema, DEFAULT_ACCURACY_KM_FLAT, DEFAULT_ACCURACY_KM_NESTED,
};
pub use location::{haversine_km, Country, Location};
pub use unlocated::{special_purpose, Unlocated};

/// A loaded database set and its generation number.
pub struct Loaded {
    pub db: GeoDb,
    pub generation: u64,
}

/// The databases in use, shared by every detector. Readers take a snapshot
/// per event (an atomic load); a reload swaps the whole set at once, so an
/// event is always answered entirely by the old or entirely by the new files.
pub struct GeoHandle {
    current: arc_swap::ArcSwap<Loaded>,
    next_generation: AtomicU64,
    city_paths: Vec<PathBuf>,
    asn_path: Option<PathBuf>,
}

impl GeoHandle {
    pub fn open(
        city_paths: Vec<PathBuf>,
        asn_path: Option<PathBuf>,
    ) -> Result<Arc<GeoHandle>, GeoError> {
        let db = GeoDb::open(&city_paths, asn_path.as_deref())?;
        Ok(Arc::new(GeoHandle {
            current: arc_swap::ArcSwap::from_pointee(Loaded { db, generation: 1 }),
            next_generation: AtomicU64::new(2),
            city_paths,
            asn_path,
        }))
    }

    pub fn load(&self) -> arc_swap::Guard<Arc<Loaded>> {
        self.current.load()
    }

    /// Re-opens the configured files and swaps them in. On error the old
    /// databases stay in use.
    pub fn reload(&self) -> Result<u64, GeoError> {
        let db = GeoDb::open(&self.city_paths, self.asn_path.as_deref())?;
        let generation = self.next_generation.fetch_add(1, Ordering::Relaxed);
        self.current.store(Arc::new(Loaded { db, generation }));
        Ok(generation)
    }

    pub fn city_paths(&self) -> &[PathBuf] {
        &self.city_paths
    }

    pub fn asn_path(&self) -> Option<&Path> {
        self.asn_path.as_deref()
    }
}
