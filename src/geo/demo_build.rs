//! Builds the committed demo databases from the full DB-IP Lite data.
//!
//! The demo, the simulator and the tests need real geolocation data that fits
//! in the repository: this keeps a few hundred cities on every continent with
//! a handful of their real networks each, and the AS numbers of those networks
//! from the ip-location-db ASN ranges (RouteViews + DB-IP ASN Lite). Run by
//! `scripts/build-demo-geo`; the output is deterministic for the same inputs.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use ipnetwork::IpNetwork;
use maxminddb::Reader;
use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: maxminddb::MaxMindDbError,
    },
    #[error("cannot read ASN ranges {path}: {source}")]
    Csv { path: PathBuf, source: csv::Error },
    #[error("cannot write the demo database: {0}")]
    Write(#[from] mmdb_writer::Error),
    #[error("cannot write {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// What to build from.
pub struct DemoSources {
    pub city_dbs: Vec<PathBuf>,
    pub asn_csvs: Vec<PathBuf>,
    pub out_dir: PathBuf,
    pub cities: usize,
    pub v4_nets_per_city: usize,
    pub v6_nets_per_city: usize,
}

/// Counts of what was written, for the builder's report.
#[derive(Debug)]
pub struct DemoReport {
    pub cities: usize,
    pub countries: usize,
    pub networks: usize,
    pub with_asn: usize,
    pub city_bytes: usize,
    pub asn_bytes: usize,
}

#[derive(Deserialize)]
struct SourceRecord {
    city: Option<String>,
    country_code: Option<String>,
    state1: Option<String>,
    latitude: Option<f64>,
    longitude: Option<f64>,
}

/// The record written: ip-location-db's flat DB-IP Lite layout.
#[derive(Serialize, Clone)]
struct FlatOut {
    city: String,
    country_code: String,
    state1: String,
    latitude: f64,
    longitude: f64,
}

#[derive(Serialize)]
struct AsnOut<'a> {
    autonomous_system_number: u32,
    autonomous_system_organization: &'a str,
}

struct CityAgg {
    record: FlatOut,
    count: u64,
    v4: Vec<IpNetwork>,
    v6: Vec<IpNetwork>,
}

/// Builds `demo-city.mmdb` and `demo-asn.mmdb` in `out_dir`.
pub fn build(src: &DemoSources) -> Result<DemoReport, BuildError> {
    let mut cities: HashMap<(String, String), CityAgg> = HashMap::new();
    let mut build_epoch = 0u64;
    for path in &src.city_dbs {
        let reader = Reader::open_readfile(path).map_err(|source| BuildError::Read {
            path: path.clone(),
            source,
        })?;
        build_epoch = build_epoch.max(reader.metadata.build_epoch);
        let iter = reader
            .networks(Default::default())
            .map_err(|source| BuildError::Read {
                path: path.clone(),
                source,
            })?;
        for item in iter.flatten() {
            let (Ok(net), Ok(Some(rec))) = (item.network(), item.decode::<SourceRecord>()) else {
                continue;
            };
            let (Some(city), Some(cc), Some(lat), Some(lon)) =
                (rec.city, rec.country_code, rec.latitude, rec.longitude)
            else {
                continue;
            };
            if city.is_empty() || cc.len() != 2 {
                continue;
            }
            let agg = cities
                .entry((cc.clone(), city.clone()))
                .or_insert_with(|| CityAgg {
                    record: FlatOut {
                        city,
                        country_code: cc,
                        state1: rec.state1.unwrap_or_default(),
                        latitude: lat,
                        longitude: lon,
                    },
                    count: 0,
                    v4: Vec::new(),
                    v6: Vec::new(),
                });
            agg.count += 1;
            // Keep networks a simulator can draw many hosts from.
            match net {
                IpNetwork::V4(n)
                    if (16..=24).contains(&n.prefix()) && agg.v4.len() < src.v4_nets_per_city =>
                {
                    agg.v4.push(net)
                }
                IpNetwork::V6(n)
                    if (29..=64).contains(&n.prefix()) && agg.v6.len() < src.v6_nets_per_city =>
                {
                    agg.v6.push(net)
                }
                _ => {}
            }
        }
    }
    let chosen = choose_cities(cities, src.cities);
    let asn = AsnRanges::load(&src.asn_csvs)?;

    let epoch = SystemTime::UNIX_EPOCH + Duration::from_secs(build_epoch);
    let mut city_w = mmdb_writer::Writer::builder("city ipv4+ipv6 (tokenwatch demo)")
        .description(&[(
            "en",
            "tokenwatch demo subset of DB-IP Lite City (CC BY 4.0, https://db-ip.com)",
        )])
        .build_epoch(epoch)
        .build();
    let mut asn_w = mmdb_writer::Writer::builder("ASN (tokenwatch demo)")
        .description(&[(
            "en",
            "tokenwatch demo subset of ip-location-db ASN (RouteViews + DB-IP ASN Lite, CC BY 4.0)",
        )])
        .build_epoch(epoch)
        .build();
    let (mut networks, mut with_asn) = (0, 0);
    let mut countries = std::collections::BTreeSet::new();
    for agg in &chosen {
        countries.insert(agg.record.country_code.clone());
        for net in agg.v4.iter().chain(agg.v6.iter()) {
            let ipnet: ipnet::IpNet = match net {
                IpNetwork::V4(n) => ipnet::Ipv4Net::new(n.network(), n.prefix())
                    .expect("valid prefix")
                    .into(),
                IpNetwork::V6(n) => ipnet::Ipv6Net::new(n.network(), n.prefix())
                    .expect("valid prefix")
                    .into(),
            };
            city_w.insert(ipnet, &agg.record)?;
            networks += 1;
            if let Some((asn, org)) = asn.find(net.network()) {
                asn_w.insert(
                    ipnet,
                    &AsnOut {
                        autonomous_system_number: asn,
                        autonomous_system_organization: org,
                    },
                )?;
                with_asn += 1;
            }
        }
    }
    let city_bytes = city_w.to_bytes()?;
    let asn_bytes = asn_w.to_bytes()?;
    write(&src.out_dir.join("demo-city.mmdb"), &city_bytes)?;
    write(&src.out_dir.join("demo-asn.mmdb"), &asn_bytes)?;
    Ok(DemoReport {
        cities: chosen.len(),
        countries: countries.len(),
        networks,
        with_asn,
        city_bytes: city_bytes.len(),
        asn_bytes: asn_bytes.len(),
    })
}

fn write(path: &Path, bytes: &[u8]) -> Result<(), BuildError> {
    std::fs::write(path, bytes).map_err(|source| BuildError::Io {
        path: path.to_owned(),
        source,
    })
}

/// The largest city of every well-covered country first (so every continent
/// is present), then the next largest cities overall, at most six a country.
fn choose_cities(cities: HashMap<(String, String), CityAgg>, want: usize) -> Vec<CityAgg> {
    let mut all: Vec<CityAgg> = cities.into_values().filter(|c| !c.v4.is_empty()).collect();
    all.sort_by(|a, b| {
        b.count
            .cmp(&a.count)
            .then_with(|| a.record.country_code.cmp(&b.record.country_code))
            .then_with(|| a.record.city.cmp(&b.record.city))
    });
    let mut per_country: BTreeMap<String, usize> = BTreeMap::new();
    let mut chosen = Vec::new();
    let mut rest = Vec::new();
    for c in all {
        let n = per_country
            .entry(c.record.country_code.clone())
            .or_default();
        if *n == 0 && c.count >= 20 {
            *n += 1;
            chosen.push(c);
        } else {
            rest.push(c);
        }
    }
    chosen.truncate(want);
    for c in rest {
        if chosen.len() >= want {
            break;
        }
        let n = per_country
            .entry(c.record.country_code.clone())
            .or_default();
        if *n < 6 {
            *n += 1;
            chosen.push(c);
        }
    }
    chosen
}

/// ASN ranges from ip-location-db's `asn-ipv4.csv`/`asn-ipv6.csv`
/// (`first,last,asn,organization`).
struct AsnRanges {
    ranges: Vec<(u128, u128, u32, String)>,
}

impl AsnRanges {
    fn load(paths: &[PathBuf]) -> Result<AsnRanges, BuildError> {
        let mut ranges = Vec::new();
        for path in paths {
            let mut rdr = csv::ReaderBuilder::new()
                .has_headers(false)
                .from_path(path)
                .map_err(|source| BuildError::Csv {
                    path: path.clone(),
                    source,
                })?;
            for row in rdr.records() {
                let row = row.map_err(|source| BuildError::Csv {
                    path: path.clone(),
                    source,
                })?;
                let (Some(a), Some(b), Some(asn)) = (row.get(0), row.get(1), row.get(2)) else {
                    continue;
                };
                let (Ok(a), Ok(b), Ok(asn)) =
                    (a.parse::<IpAddr>(), b.parse::<IpAddr>(), asn.parse::<u32>())
                else {
                    continue;
                };
                ranges.push((
                    to_u128(a),
                    to_u128(b),
                    asn,
                    row.get(3).unwrap_or("").to_owned(),
                ));
            }
        }
        ranges.sort_by_key(|r| r.0);
        Ok(AsnRanges { ranges })
    }

    fn find(&self, ip: IpAddr) -> Option<(u32, &str)> {
        let x = to_u128(ip);
        let i = self.ranges.partition_point(|r| r.0 <= x).checked_sub(1)?;
        let (a, b, asn, org) = &self.ranges[i];
        (x >= *a && x <= *b).then_some((*asn, org.as_str()))
    }
}

/// IPv4 maps into ::ffff:0:0/96 so both families share one sorted space.
fn to_u128(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(v4.to_ipv6_mapped()),
        IpAddr::V6(v6) => u128::from(v6),
    }
}
