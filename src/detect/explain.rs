//! Turns a verdict into words an analyst can act on: "velocity 4,130 km/h
//! Paris, FR → Singapore, SG in 38 min; new ASN". Only run for flagged
//! tokens, so it may allocate and decode city names.

use std::net::IpAddr;

use serde::Serialize;

use super::Verdict;
use crate::features::idx;
use crate::geo::GeoDb;

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Explanation {
    /// One line, `; `-separated, strongest reason first.
    pub text: String,
    pub rule: Option<&'static str>,
    pub top: Vec<ExplainedFeature>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ExplainedFeature {
    pub feature: &'static str,
    pub value: f32,
    pub contribution: f32,
}

fn place(geo: &GeoDb, ip: IpAddr) -> String {
    match geo.place(ip) {
        Some(p) => match p.city {
            Some(city) => format!("{city}, {}", p.country),
            None => p.country,
        },
        None => "unlocated".into(),
    }
}

fn duration(dt_s: f32) -> String {
    if dt_s < 120.0 {
        format!("{dt_s:.0} s")
    } else if dt_s < 7200.0 {
        format!("{:.0} min", dt_s / 60.0)
    } else {
        format!("{:.1} h", dt_s / 3600.0)
    }
}

/// "4,130 km/h", or "over 20,000 km/h" at the cap.
fn speed(kmh: f32) -> String {
    if f64::from(kmh) >= crate::features::MAX_SPEED_KMH {
        format!("over {} km/h", thousands(kmh))
    } else {
        format!("{} km/h", thousands(kmh))
    }
}

/// Groups thousands for readability: 4130 → "4,130".
fn thousands(x: f32) -> String {
    let n = x.round() as i64;
    let s = n.unsigned_abs().to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 {
        out.insert(0, '-');
    }
    out
}

/// Explains `v`, the verdict for a request from `ip`.
pub fn explain(v: &Verdict, ip: IpAddr, geo: &GeoDb) -> Explanation {
    let f = &v.features;
    let route = || match f.from {
        Some(from) => format!(
            "{} → {} in {}",
            place(geo, from.ip),
            place(geo, ip),
            duration(f.dt_s)
        ),
        None => place(geo, ip),
    };
    let mut parts: Vec<String> = Vec::new();
    if let Some(rule) = v.score.rule {
        parts.push(match rule {
            crate::model::Rule::ImpossibleTravel => {
                format!(
                    "impossible travel: {} {}",
                    speed(f.get(idx::VELOCITY)),
                    route()
                )
            }
            crate::model::Rule::TravelToUnknownEgress => format!(
                "impossible travel onto a network nobody signs in from: {} {}",
                speed(f.get(idx::VELOCITY)),
                route()
            ),
            crate::model::Rule::ConcurrentUse => {
                format!(
                    "concurrent use: {:.1} flips between far-apart places, last {}",
                    f.get(idx::FLIPS),
                    route()
                )
            }
        });
    }
    let to_asn = v.lookup.location().map_or(0, |l| l.asn);
    for c in v.score.top.iter().flatten() {
        let x = c.value;
        let text = match c.feature {
            "velocity_kmh" | "impossible_travel" | "max_velocity_kmh" | "country_change"
            | "distance_km" | "unknown_egress"
                if v.score.rule.is_some() =>
            {
                continue
            }
            "velocity_kmh" | "impossible_travel" => {
                format!("velocity {} {}", speed(f.get(idx::VELOCITY)), route())
            }
            "max_velocity_kmh" => format!("max velocity {} in the token's life", speed(x)),
            "distance_km" => format!("{} km from the previous request", thousands(x)),
            "country_change" => format!("country changed: {}", route()),
            "flips" => format!("{x:.1} flips between far-apart places"),
            "asn_change" | "new_asn" if to_asn != 0 => format!("new ASN AS{to_asn}"),
            "asn_change" | "new_asn" => "new ASN".into(),
            "new_country" => format!(
                "new country ({})",
                v.lookup.location().map_or("??", |l| l.country.as_str())
            ),
            "new_prefix" => "new network prefix".into(),
            "new_user_agent" => "new user agent".into(),
            "non_browser_switch" => "switched to a non-browser client".into(),
            "distinct_countries" => format!("{x:.0} countries in the token's life"),
            "distinct_ips" => format!("~{x:.0} distinct IPs"),
            "burst_ratio" => format!("burst ×{x:.1} over its own rate"),
            "rate_vs_population" => format!("rate ×{x:.1} the population's for this route"),
            "shared_egress" => "shared egress network (VPN or proxy)".into(),
            "token_age_min" => format!("token {x:.0} min old"),
            "minutes_to_exp" if x < 0.0 => format!("used {:.0} min after expiry", -x),
            "minutes_to_exp" => format!("{x:.0} min before expiry"),
            "requests_seen" => format!("{x:.0} requests on this token"),
            "familiar_place" => "between places the subject used before".into(),
            "unknown_egress" => "onto a network nobody signs in from".into(),
            crate::model::NOVELTY => {
                format!("unlike legitimate traffic ({x:.1} from the nearest cluster)")
            }
            other => format!("{other} = {x}"),
        };
        if !parts.contains(&text) {
            parts.push(text);
        }
    }
    Explanation {
        text: parts.join("; "),
        rule: v.score.rule.map(|r| r.as_str()),
        top: v
            .score
            .top
            .iter()
            .flatten()
            .map(|c| ExplainedFeature {
                feature: c.feature,
                value: c.value,
                contribution: c.weight,
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_well() {
        assert_eq!(thousands(4130.4), "4,130");
        assert_eq!(thousands(999.0), "999");
        assert_eq!(thousands(1_234_567.0), "1,234,567");
        assert_eq!(duration(38.0 * 60.0), "38 min");
        assert_eq!(duration(30.0), "30 s");
    }
}
