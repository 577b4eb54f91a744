//! The feature schema: the order of the vector, the name of each place and
//! the version a model artifact is checked against. Definitions, units and
//! the reasoning behind each feature are in `docs/features.md`.

/// Bumped whenever a feature's definition or order changes: a model trained
/// on another schema is refused at load.
pub const FEATURE_SCHEMA_VERSION: u32 = 7;

pub const N_FEATURES: usize = 22;

/// Feature names, in vector order.
pub const FEATURE_NAMES: [&str; N_FEATURES] = [
    "velocity_kmh",
    "max_velocity_kmh",
    "distance_km",
    "country_change",
    "impossible_travel",
    "flips",
    "asn_change",
    "new_country",
    "new_asn",
    "new_prefix",
    "new_user_agent",
    "non_browser_switch",
    "distinct_countries",
    "distinct_ips",
    "burst_ratio",
    "rate_vs_population",
    "shared_egress",
    "token_age_min",
    "minutes_to_exp",
    "requests_seen",
    "familiar_place",
    "unknown_egress",
];

pub mod idx {
    pub const VELOCITY: usize = 0;
    pub const MAX_VELOCITY: usize = 1;
    pub const DISTANCE: usize = 2;
    pub const COUNTRY_CHANGE: usize = 3;
    pub const IMPOSSIBLE: usize = 4;
    pub const FLIPS: usize = 5;
    pub const ASN_CHANGE: usize = 6;
    pub const NEW_COUNTRY: usize = 7;
    pub const NEW_ASN: usize = 8;
    pub const NEW_PREFIX: usize = 9;
    pub const NEW_UA: usize = 10;
    pub const NON_BROWSER_SWITCH: usize = 11;
    pub const DISTINCT_COUNTRIES: usize = 12;
    pub const DISTINCT_IPS: usize = 13;
    pub const BURST: usize = 14;
    pub const RATE_VS_POP: usize = 15;
    pub const SHARED_EGRESS: usize = 16;
    pub const TOKEN_AGE: usize = 17;
    pub const TO_EXP: usize = 18;
    pub const REQUESTS: usize = 19;
    pub const FAMILIAR: usize = 20;
    pub const UNKNOWN_EGRESS: usize = 21;
}
