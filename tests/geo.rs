//! Geolocation through maxminddb on real files: the committed DB-IP Lite
//! demo database (flat schema), a GeoIP2-schema fixture written by the same
//! writer, special-purpose addresses, and hot reload by atomic rename.

mod common;

use std::net::IpAddr;

use common::*;
use tokenwatch::geo::{GeoDb, GeoError, GeoHandle, Lookup, Unlocated, DEFAULT_ACCURACY_KM_FLAT};

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn demo() -> GeoDb {
    GeoDb::open(
        &[repo("data/geo/demo-city.mmdb")],
        Some(&repo("data/geo/demo-asn.mmdb")),
    )
    .unwrap()
}

#[test]
fn the_demo_database_places_known_addresses_in_their_cities() {
    let db = demo();
    for (addr, city, cc) in [
        (PARIS, "Paris", "FR"),
        (LYON, "Lyon", "FR"),
        (SINGAPORE, "Singapore", "SG"),
        (SYDNEY, "Sydney", "AU"),
        (NEW_YORK, "New York", "US"),
        (PARIS_V6, "Paris", "FR"),
    ] {
        let place = db
            .place(ip(addr))
            .unwrap_or_else(|| panic!("{addr} not found"));
        assert_eq!(place.city.as_deref(), Some(city), "{addr}");
        assert_eq!(place.country, cc, "{addr}");
        let Lookup::Located(loc) = db.lookup(ip(addr)) else {
            panic!("{addr} unlocated")
        };
        assert_eq!(loc.country.as_str(), cc);
        assert_eq!(
            loc.accuracy_km, DEFAULT_ACCURACY_KM_FLAT,
            "DB-IP Lite has no radius: the documented default"
        );
        assert!(loc.asn != 0, "{addr} has an ASN from the demo ASN database");
    }
    let paris = db.lookup(ip(PARIS)).location().copied().unwrap();
    assert!((paris.lat - 48.857).abs() < 0.1 && (paris.lon - 2.351).abs() < 0.1);
}

#[test]
fn special_and_unknown_addresses_are_unlocated_never_null_island() {
    let db = demo();
    assert_eq!(
        db.lookup(ip("10.0.0.1")),
        Lookup::Unlocated(Unlocated::Private)
    );
    assert_eq!(
        db.lookup(ip("127.0.0.1")),
        Lookup::Unlocated(Unlocated::Loopback)
    );
    assert_eq!(
        db.lookup(ip("100.64.3.4")),
        Lookup::Unlocated(Unlocated::Cgnat)
    );
    assert_eq!(
        db.lookup(ip("fe80::1")),
        Lookup::Unlocated(Unlocated::Reserved)
    );
    // A public address the demo subset does not cover.
    assert_eq!(
        db.lookup(ip("8.8.8.8")),
        Lookup::Unlocated(Unlocated::NotInDatabase)
    );
}

#[derive(serde::Serialize)]
struct Names {
    en: &'static str,
}
#[derive(serde::Serialize)]
struct GeoIp2Location {
    latitude: f64,
    longitude: f64,
    accuracy_radius: u16,
}
#[derive(serde::Serialize)]
struct Iso {
    iso_code: &'static str,
}
#[derive(serde::Serialize)]
struct City {
    names: Names,
}
#[derive(serde::Serialize)]
struct GeoIp2Record {
    city: City,
    country: Iso,
    location: GeoIp2Location,
}

/// A tiny GeoIP2-City-schema database: the layout MaxMind ships.
fn geoip2_fixture(dir: &std::path::Path, name: &str, lat: f64) -> std::path::PathBuf {
    // With a description, as the format requires and every vendor writes:
    // a database that fails MaxMind's verification is refused.
    let mut w = mmdb_writer::Writer::builder("GeoIP2-City")
        .description(&[("en", "GeoIP2-schema test fixture")])
        .build();
    let rec = GeoIp2Record {
        city: City {
            names: Names { en: "Testville" },
        },
        country: Iso { iso_code: "SE" },
        location: GeoIp2Location {
            latitude: lat,
            longitude: 18.07,
            accuracy_radius: 20,
        },
    };
    w.insert("89.160.20.0/24".parse::<ipnet::IpNet>().unwrap(), &rec)
        .unwrap();
    w.insert("2001:67c:2e8::/48".parse::<ipnet::IpNet>().unwrap(), &rec)
        .unwrap();
    let path = dir.join(name);
    std::fs::write(&path, w.to_bytes().unwrap()).unwrap();
    path
}

#[test]
fn the_geoip2_schema_is_detected_from_metadata_and_read() {
    let dir = tempfile::tempdir().unwrap();
    let path = geoip2_fixture(dir.path(), "city.mmdb", 59.33);
    let db = GeoDb::open(&[path], None).unwrap();
    for addr in ["89.160.20.128", "2001:67c:2e8::1"] {
        let Lookup::Located(loc) = db.lookup(ip(addr)) else {
            panic!("{addr}")
        };
        assert_eq!(loc.accuracy_km, 20.0, "the record's own accuracy_radius");
        assert_eq!(loc.country.as_str(), "SE");
        assert_eq!(
            db.place(ip(addr)).unwrap().city.as_deref(),
            Some("Testville")
        );
    }
}

#[test]
fn an_asn_database_given_as_a_city_database_is_a_clear_error() {
    let err = GeoDb::open(&[repo("data/geo/demo-asn.mmdb")], None)
        .err()
        .expect("refused");
    assert!(matches!(err, GeoError::AsnAsCity { .. }), "{err}");
    assert!(err.to_string().contains("geo.asn_db"));
}

#[test]
fn a_replaced_database_is_swapped_in_without_losing_lookups() {
    let dir = tempfile::tempdir().unwrap();
    let live = geoip2_fixture(dir.path(), "live.mmdb", 59.33);
    let handle = GeoHandle::open(vec![live.clone()], None).unwrap();
    let old = handle.load();
    assert_eq!(
        old.db.lookup(ip("89.160.20.1")).location().unwrap().lat,
        59.33
    );
    // Operators replace the file by atomic rename.
    let next = geoip2_fixture(dir.path(), "next.mmdb", 57.70);
    std::fs::rename(&next, &live).unwrap();
    let generation = handle.reload().unwrap();
    let new = handle.load();
    assert_eq!(new.generation, generation);
    assert_eq!(
        new.db.lookup(ip("89.160.20.1")).location().unwrap().lat,
        57.70
    );
    // A reader that took the old snapshot finishes its event on the old data.
    assert_eq!(
        old.db.lookup(ip("89.160.20.1")).location().unwrap().lat,
        59.33
    );
}

#[test]
fn hot_reload_while_events_flow_loses_no_event_and_switches_data() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    let dir = tempfile::tempdir().unwrap();
    let live = geoip2_fixture(dir.path(), "live.mmdb", 59.33);
    let handle = GeoHandle::open(vec![live.clone()], None).unwrap();
    let progress = Arc::new(AtomicUsize::new(0));
    const N: usize = 20_000;
    let worker = {
        let (handle, progress) = (handle.clone(), progress.clone());
        std::thread::spawn(move || {
            let mut d = tokenwatch::detect::Detector::new(handle, model(), Default::default());
            let mut lats = Vec::with_capacity(N);
            for i in 0..N {
                let buf = record(
                    &format!("tok-{}", i % 50),
                    i as f64,
                    &format!("89.160.20.{}", 1 + i % 250),
                    BROWSER,
                );
                let v = d.observe(&tokenwatch::telemetry::Event::parse(&buf).unwrap());
                lats.push(v.lookup.location().map(|l| l.lat));
                progress.store(i + 1, Ordering::Release);
            }
            lats
        })
    };
    while progress.load(Ordering::Acquire) < N / 4 {
        std::thread::yield_now();
    }
    let next = geoip2_fixture(dir.path(), "next.mmdb", 57.70);
    std::fs::rename(&next, &live).unwrap();
    handle.reload().unwrap();
    let reloaded_at = progress.load(Ordering::Acquire);
    let lats = worker.join().unwrap();
    assert_eq!(lats.len(), N, "every event scored");
    assert!(
        lats.iter().all(|l| l.is_some()),
        "no event lost its location during the swap"
    );
    assert_eq!(lats[0], Some(59.33));
    assert!(reloaded_at < N, "the swap happened mid-stream");
    assert_eq!(
        *lats.last().unwrap(),
        Some(57.70),
        "events after the swap use the new file"
    );
}

#[test]
fn a_corrupt_database_at_start_is_a_clear_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let bad = invalid_node_count(dir.path());
    match GeoHandle::open(vec![bad.clone()], None) {
        Err(e @ GeoError::Corrupt { .. }) => {
            assert!(e.to_string().contains(&bad.display().to_string()), "{e}")
        }
        other => panic!("not refused as corrupt: {:?}", other.err()),
    }
}

#[test]
fn a_corrupt_database_dropped_in_for_hot_reload_is_refused_and_lookups_go_on() {
    let dir = tempfile::tempdir().unwrap();
    let live = dir.path().join("live.mmdb");
    std::fs::copy(repo("data/geo/demo-city.mmdb"), &live).unwrap();
    let handle = GeoHandle::open(vec![live.clone()], None).unwrap();
    let before = handle.load().generation;
    let bad = invalid_node_count(dir.path());
    std::fs::rename(&bad, &live).unwrap();
    assert!(matches!(handle.reload(), Err(GeoError::Corrupt { .. })));
    let now = handle.load();
    assert_eq!(now.generation, before, "the loaded databases stay");
    assert!(now.db.lookup(ip(PARIS)).location().is_some());
}
