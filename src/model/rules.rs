//! Hard rules that override the model where the evidence admits no innocent
//! reading (concurrent use), or at least raise an alert (a single impossible
//! hop). They only raise a score or an action, never lower it.

use serde::Serialize;

use crate::features::{idx, Features};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    /// Faster than any aircraft across a border, beyond both accuracy radii.
    ImpossibleTravel,
    /// Back and forth between two far-apart places: two holders.
    ConcurrentUse,
    /// Impossible travel across a border onto a network where nobody has
    /// started a token: the token arrived without its sign-in.
    TravelToUnknownEgress,
}

impl Rule {
    /// The least score a fired rule gives.
    pub fn floor(self) -> f32 {
        match self {
            // Whether a single hop revokes is the operator's setting
            // (`detect::DetectorParams`), not the score's.
            Rule::ImpossibleTravel | Rule::TravelToUnknownEgress => 0.0,
            Rule::ConcurrentUse => 0.995,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Rule::ImpossibleTravel => "impossible_travel",
            Rule::ConcurrentUse => "concurrent_use",
            Rule::TravelToUnknownEgress => "travel_to_unknown_egress",
        }
    }
}

pub fn fired(f: &Features) -> Option<Rule> {
    if f.get(idx::FLIPS) >= 1.5 {
        Some(Rule::ConcurrentUse)
    } else if f.get(idx::IMPOSSIBLE) > 0.0 && f.get(idx::COUNTRY_CHANGE) > 0.0 {
        Some(if f.get(idx::UNKNOWN_EGRESS) > 0.0 {
            Rule::TravelToUnknownEgress
        } else {
            Rule::ImpossibleTravel
        })
    } else {
        None
    }
}
