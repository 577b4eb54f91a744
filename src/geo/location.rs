//! Where a request came from, and how far apart two requests are.
//!
//! IP geolocation is imprecise: a mobile carrier's address can geolocate to a
//! city hundreds of km away. Every location therefore carries an accuracy
//! radius, and travel is judged on the *minimum plausible distance* — the
//! great-circle distance minus both radii — so imprecision never fabricates
//! impossible travel.

use serde::Serialize;

/// Mean Earth radius (IUGG), km.
const EARTH_RADIUS_KM: f64 = 6371.0088;

/// ISO 3166-1 alpha-2 country code as two bytes; `[0, 0]` when unknown.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Country(pub [u8; 2]);

impl Country {
    pub const UNKNOWN: Country = Country([0, 0]);

    pub fn from_code(code: &str) -> Country {
        match code.as_bytes() {
            [a, b] if a.is_ascii_alphabetic() && b.is_ascii_alphabetic() => {
                Country([a.to_ascii_uppercase(), b.to_ascii_uppercase()])
            }
            _ => Country::UNKNOWN,
        }
    }

    pub fn is_known(self) -> bool {
        self != Country::UNKNOWN
    }

    pub fn as_str(&self) -> &str {
        if self.is_known() {
            std::str::from_utf8(&self.0).unwrap_or("??")
        } else {
            "??"
        }
    }
}

impl Serialize for Country {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for Country {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let code = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Ok(Country::from_code(&code))
    }
}

/// A located request: coordinates, how far off they may be, country and ASN.
/// `Copy` and 20 bytes, so per-token state can hold it inline.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, serde::Deserialize)]
pub struct Location {
    pub lat: f32,
    pub lon: f32,
    /// Radius (km) within which the true position lies with high confidence.
    pub accuracy_km: f32,
    pub country: Country,
    /// Autonomous system number; 0 when unknown.
    pub asn: u32,
}

/// Great-circle distance in km (haversine). Symmetric, finite, in
/// `[0, π·R]` for any finite input; out-of-range coordinates are clamped.
pub fn haversine_km(a_lat: f64, a_lon: f64, b_lat: f64, b_lon: f64) -> f64 {
    let (a_lat, b_lat) = (a_lat.clamp(-90.0, 90.0), b_lat.clamp(-90.0, 90.0));
    let (phi1, phi2) = (a_lat.to_radians(), b_lat.to_radians());
    let dphi = phi2 - phi1;
    let dlambda = (b_lon - a_lon).to_radians();
    let h = (dphi / 2.0).sin().powi(2) + phi1.cos() * phi2.cos() * (dlambda / 2.0).sin().powi(2);
    let d = 2.0 * EARTH_RADIUS_KM * h.clamp(0.0, 1.0).sqrt().asin();
    if d.is_finite() {
        d
    } else {
        0.0
    }
}

impl Location {
    pub fn distance_km(&self, other: &Location) -> f64 {
        haversine_km(
            f64::from(self.lat),
            f64::from(self.lon),
            f64::from(other.lat),
            f64::from(other.lon),
        )
    }

    /// The least distance the holder could really have covered between the
    /// two requests: the distance minus both accuracy radii, floored at 0.
    pub fn min_plausible_km(&self, other: &Location) -> f64 {
        let slack = f64::from(self.accuracy_km.max(0.0)) + f64::from(other.accuracy_km.max(0.0));
        (self.distance_km(other) - slack).max(0.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn at(lat: f32, lon: f32, acc: f32) -> Location {
        Location {
            lat,
            lon,
            accuracy_km: acc,
            country: Country::UNKNOWN,
            asn: 0,
        }
    }

    #[test]
    fn paris_to_singapore_is_about_10700_km() {
        let d = haversine_km(48.8566, 2.3522, 1.3521, 103.8198);
        assert!((d - 10_730.0).abs() < 60.0, "{d}");
    }

    #[test]
    fn accuracy_radii_are_subtracted_and_floored() {
        let (a, b) = (at(48.85, 2.35, 50.0), at(50.85, 4.35, 50.0)); // Paris–Brussels ~264 km
        let d = a.distance_km(&b);
        assert!((a.min_plausible_km(&b) - (d - 100.0)).abs() < 1e-6);
        let wide = at(50.85, 4.35, 500.0);
        assert_eq!(a.min_plausible_km(&wide), 0.0);
    }

    #[test]
    fn country_codes_round_trip() {
        assert_eq!(Country::from_code("fr").as_str(), "FR");
        assert_eq!(Country::from_code("").as_str(), "??");
        assert!(!Country::from_code("FRA").is_known());
    }

    proptest! {
        #[test]
        fn distance_is_symmetric_finite_and_bounded(
            a in -200.0f64..200.0, b in -400.0f64..400.0, c in -200.0f64..200.0, d in -400.0f64..400.0
        ) {
            let x = haversine_km(a, b, c, d);
            let y = haversine_km(c, d, a, b);
            prop_assert!(x.is_finite() && (0.0..=std::f64::consts::PI * EARTH_RADIUS_KM + 1e-6).contains(&x));
            prop_assert!((x - y).abs() < 1e-6);
        }

        #[test]
        fn min_plausible_never_exceeds_distance_and_shrinks_with_accuracy(
            a in -90.0f32..90.0, b in -180.0f32..180.0, c in -90.0f32..90.0, d in -180.0f32..180.0,
            r1 in 0.0f32..1000.0, r2 in 0.0f32..1000.0, extra in 0.0f32..500.0
        ) {
            let (p, q) = (at(a, b, r1), at(c, d, r2));
            let m = p.min_plausible_km(&q);
            prop_assert!(m >= 0.0 && m <= p.distance_km(&q) + 1e-9);
            prop_assert!((m - q.min_plausible_km(&p)).abs() < 1e-6);
            let wider = at(c, d, r2 + extra);
            prop_assert!(p.min_plausible_km(&wider) <= m + 1e-9);
        }
    }
}
