//! The geolocation databases: memory-mapped MaxMind-format files read with
//! `maxminddb`, in either schema users have, told apart by metadata.
//!
//! * nested (MaxMind GeoIP2/GeoLite2 City, DB-IP's own GeoIP2-compatible
//!   files): `location.latitude/longitude/accuracy_radius`, `country.iso_code`;
//! * flat (DB-IP Lite as packaged by ip-location-db, `database_type` "city
//!   ipv4"/"city ipv6"): `latitude`, `longitude`, `country_code`, `city`.
//!
//! An optional ASN database (GeoLite2-ASN schema) adds the AS number.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use maxminddb::{Mmap, Reader};
use serde::Deserialize;

use super::location::{Country, Location};
use super::unlocated::{special_purpose, Unlocated};
use super::verify::open;

/// Accuracy radius (km) assumed where a database gives none. DB-IP Lite
/// carries no radius; city-level IP geolocation is commonly off by tens of
/// km and, for mobile carriers, by hundreds — 100 km keeps Wi-Fi/cellular
/// flips within a region from reading as travel.
pub const DEFAULT_ACCURACY_KM_FLAT: f32 = 100.0;
/// Used for nested-schema records that lack `accuracy_radius`.
pub const DEFAULT_ACCURACY_KM_NESTED: f32 = 100.0;

#[derive(Debug, thiserror::Error)]
pub enum GeoError {
    #[error("cannot open geo database {path}: {source}")]
    Open {
        path: PathBuf,
        source: maxminddb::MaxMindDbError,
    },
    #[error("geo database {path} has database_type {database_type:?}, which is neither a City (GeoIP2/GeoLite2/DB-IP) nor an ASN database")]
    UnknownType {
        path: PathBuf,
        database_type: String,
    },
    #[error("geo database {path} is an ASN database; list it under geo.asn_db")]
    AsnAsCity { path: PathBuf },
    #[error("no city database configured")]
    NoCityDatabase,
    #[error("geo database {path} is corrupt")]
    Corrupt {
        path: PathBuf,
        source: maxminddb::MaxMindDbError,
    },
}

/// Which record layout a City database uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Schema {
    Nested,
    Flat,
}

impl Schema {
    /// Detects the layout from `database_type`. `None` for ASN or unknown.
    pub fn detect(database_type: &str) -> Option<Schema> {
        let t = database_type.to_ascii_lowercase();
        if t.contains("asn") {
            None
        } else if t.starts_with("city") {
            Some(Schema::Flat)
        } else if t.contains("city") || t.contains("enterprise") {
            Some(Schema::Nested)
        } else {
            None
        }
    }
}

#[derive(Deserialize)]
struct NestedRecord<'a> {
    #[serde(default)]
    location: Option<NestedLocation>,
    #[serde(borrow, default)]
    country: Option<NestedCountry<'a>>,
}

#[derive(Deserialize)]
struct NestedLocation {
    latitude: Option<f64>,
    longitude: Option<f64>,
    accuracy_radius: Option<u16>,
}

#[derive(Deserialize)]
struct NestedCountry<'a> {
    #[serde(borrow)]
    iso_code: Option<&'a str>,
}

#[derive(Deserialize)]
struct FlatRecord<'a> {
    latitude: Option<f64>,
    longitude: Option<f64>,
    #[serde(borrow)]
    country_code: Option<&'a str>,
}

#[derive(Deserialize)]
struct AsnRecord {
    autonomous_system_number: Option<u32>,
}

/// What a City record says about an address, decoded only on demand (for
/// explanations and the simulator), never on the hot path.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Place {
    pub city: Option<String>,
    pub country: String,
}

#[derive(Deserialize)]
struct NestedPlace {
    city: Option<NestedNames>,
    country: Option<NestedIso>,
}
#[derive(Deserialize)]
struct NestedNames {
    names: Option<std::collections::BTreeMap<String, String>>,
}
#[derive(Deserialize)]
struct NestedIso {
    iso_code: Option<String>,
}
#[derive(Deserialize)]
struct FlatPlace {
    city: Option<String>,
    country_code: Option<String>,
}

struct CityDb {
    reader: Reader<Mmap>,
    schema: Schema,
    path: PathBuf,
}

/// The loaded databases. Immutable once opened: hot reload builds a new one
/// and swaps it in whole (see `geo::GeoHandle`).
pub struct GeoDb {
    city: Vec<CityDb>,
    asn: Option<Reader<Mmap>>,
    build_epoch: u64,
}

/// The outcome of one lookup.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Lookup {
    Located(Location),
    Unlocated(Unlocated),
}

impl Lookup {
    pub fn location(&self) -> Option<&Location> {
        match self {
            Lookup::Located(l) => Some(l),
            Lookup::Unlocated(_) => None,
        }
    }
}

impl GeoDb {
    /// Opens one or more City databases (e.g. DB-IP's separate IPv4 and IPv6
    /// files) and an optional ASN database.
    pub fn open(city_paths: &[PathBuf], asn_path: Option<&Path>) -> Result<GeoDb, GeoError> {
        if city_paths.is_empty() {
            return Err(GeoError::NoCityDatabase);
        }
        let mut city = Vec::with_capacity(city_paths.len());
        for path in city_paths {
            let reader = open(path)?;
            let database_type = reader.metadata.database_type.clone();
            let schema = match Schema::detect(&database_type) {
                Some(s) => s,
                None if database_type.to_ascii_lowercase().contains("asn") => {
                    return Err(GeoError::AsnAsCity { path: path.clone() })
                }
                None => {
                    return Err(GeoError::UnknownType {
                        path: path.clone(),
                        database_type,
                    })
                }
            };
            city.push(CityDb {
                reader,
                schema,
                path: path.clone(),
            });
        }
        // IPv4-only files first, so an IPv4 address is answered by the IPv4 file.
        city.sort_by_key(|c| c.reader.metadata.ip_version);
        let asn = match asn_path {
            Some(p) => {
                let reader = open(p)?;
                let t = reader.metadata.database_type.to_ascii_lowercase();
                if !t.contains("asn") {
                    return Err(GeoError::UnknownType {
                        path: p.to_owned(),
                        database_type: reader.metadata.database_type.clone(),
                    });
                }
                Some(reader)
            }
            None => None,
        };
        let build_epoch = city
            .iter()
            .map(|c| c.reader.metadata.build_epoch)
            .max()
            .unwrap_or(0);
        Ok(GeoDb {
            city,
            asn,
            build_epoch,
        })
    }

    /// Newest build time among the City databases (seconds since the epoch).
    pub fn build_epoch(&self) -> u64 {
        self.build_epoch
    }

    pub fn has_asn(&self) -> bool {
        self.asn.is_some()
    }

    pub fn paths(&self) -> impl Iterator<Item = &Path> {
        self.city.iter().map(|c| c.path.as_path())
    }

    fn readers_for(&self, ip: IpAddr) -> impl Iterator<Item = &CityDb> {
        self.city
            .iter()
            .filter(move |c| !ip.is_ipv6() || c.reader.metadata.ip_version == 6)
    }

    /// Locates an address. Special-purpose ranges are never looked up.
    pub fn lookup(&self, ip: IpAddr) -> Lookup {
        if let Some(why) = special_purpose(ip) {
            return Lookup::Unlocated(why);
        }
        // Files are verified before use; should a lookup still panic inside
        // maxminddb, the address is unlocated and the process goes on.
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            for db in self.readers_for(ip) {
                if let Some(mut loc) = decode_location(db, ip) {
                    loc.asn = self.asn_of(ip);
                    return Lookup::Located(loc);
                }
            }
            Lookup::Unlocated(Unlocated::NotInDatabase)
        }))
        .unwrap_or(Lookup::Unlocated(Unlocated::NotInDatabase))
    }

    /// AS number of an address, 0 when unknown or no ASN database is loaded.
    pub fn asn_of(&self, ip: IpAddr) -> u32 {
        let Some(reader) = &self.asn else { return 0 };
        reader
            .lookup(ip)
            .ok()
            .and_then(|r| r.decode::<AsnRecord>().ok().flatten())
            .and_then(|r| r.autonomous_system_number)
            .unwrap_or(0)
    }

    /// City and country names, for explanations. Allocates; off the hot path.
    pub fn place(&self, ip: IpAddr) -> Option<Place> {
        if special_purpose(ip).is_some() {
            return None;
        }
        for db in self.readers_for(ip) {
            let Ok(result) = db.reader.lookup(ip) else {
                continue;
            };
            let place = match db.schema {
                Schema::Nested => result
                    .decode::<NestedPlace>()
                    .ok()
                    .flatten()
                    .map(|p| Place {
                        city: p
                            .city
                            .and_then(|c| c.names)
                            .and_then(|mut n| n.remove("en")),
                        country: p.country.and_then(|c| c.iso_code).unwrap_or_default(),
                    }),
                Schema::Flat => result.decode::<FlatPlace>().ok().flatten().map(|p| Place {
                    city: p.city.filter(|c| !c.is_empty()),
                    country: p.country_code.unwrap_or_default(),
                }),
            };
            if place.is_some() {
                return place;
            }
        }
        None
    }

    /// Every network of every City database with its location, for the
    /// simulator and the demo-database builder.
    pub fn networks(&self) -> Vec<(ipnetwork::IpNetwork, Location)> {
        let mut out = Vec::new();
        for db in &self.city {
            let Ok(iter) = db.reader.networks(Default::default()) else {
                continue;
            };
            for item in iter.flatten() {
                let (Ok(net), Some(loc)) = (item.network(), decode_result(db.schema, &item)) else {
                    continue;
                };
                out.push((net, loc));
            }
        }
        out
    }
}

fn decode_location(db: &CityDb, ip: IpAddr) -> Option<Location> {
    let result = db.reader.lookup(ip).ok()?;
    decode_result(db.schema, &result)
}

fn decode_result(schema: Schema, result: &maxminddb::LookupResult<'_, Mmap>) -> Option<Location> {
    let (lat, lon, acc, cc) = match schema {
        Schema::Nested => {
            let r = result.decode::<NestedRecord>().ok()??;
            let l = r.location?;
            let acc = l
                .accuracy_radius
                .map(f32::from)
                .unwrap_or(DEFAULT_ACCURACY_KM_NESTED);
            (
                l.latitude?,
                l.longitude?,
                acc,
                r.country.and_then(|c| c.iso_code),
            )
        }
        Schema::Flat => {
            let r = result.decode::<FlatRecord>().ok()??;
            (
                r.latitude?,
                r.longitude?,
                DEFAULT_ACCURACY_KM_FLAT,
                r.country_code,
            )
        }
    };
    if !(lat.is_finite() && lon.is_finite()) || (lat == 0.0 && lon == 0.0) {
        // (0, 0) is how some databases say "no idea"; never a position.
        return None;
    }
    Some(Location {
        lat: lat as f32,
        lon: lon as f32,
        accuracy_km: acc,
        country: cc.map(Country::from_code).unwrap_or(Country::UNKNOWN),
        asn: 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_is_detected_from_database_type() {
        assert_eq!(Schema::detect("GeoIP2-City"), Some(Schema::Nested));
        assert_eq!(Schema::detect("GeoLite2-City"), Some(Schema::Nested));
        assert_eq!(Schema::detect("DBIP-City-Lite"), Some(Schema::Nested));
        assert_eq!(Schema::detect("city ipv4"), Some(Schema::Flat));
        assert_eq!(Schema::detect("city ipv6"), Some(Schema::Flat));
        assert_eq!(Schema::detect("GeoLite2-ASN"), None);
        assert_eq!(Schema::detect("GeoIP2-Anonymous-IP"), None);
    }
}
