//! Who does what: legitimate behaviours that must not look like theft, and
//! attacks that must. `docs/evaluation.md` documents every scenario and its
//! parameters.

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scenario {
    /// Desk user: one place, one browser.
    LegitHome,
    /// Phone switching Wi-Fi ↔ cellular; carrier IPs geolocate elsewhere in the country.
    LegitMobile,
    /// Corporate VPN: egress shared by many users, possibly abroad; some switch mid-token.
    LegitVpn,
    /// A client syncing: bursts from one address with a non-browser agent.
    LegitAutomation,
    /// A real flight between two cities, at airliner speed.
    LegitFlight,
    /// Stolen and replayed from another country.
    ReplayForeign,
    /// Victim and attacker both use it, far apart, interleaved.
    Concurrent,
    /// Replayed from the same country through a residential proxy.
    ProxySameCountry,
    /// Stolen and used to scrape at high rate.
    BurstScrape,
    /// Stolen and used rarely, with the victim's own browser string.
    LowAndSlow,
    /// Replayed after the victim's session ended (the victim logged out).
    ReplayAfterLogout,
    /// Not named in a truth file (`eval --truth`): taken as legitimate.
    /// Never generated.
    Unreported,
    /// Named in a truth file without a scenario: a theft of any kind.
    /// Never generated.
    Reported,
}

impl Scenario {
    pub fn is_attack(self) -> bool {
        self == Scenario::Reported || Scenario::ATTACKS.contains(&self)
    }

    /// The thefts, in the order reports list them.
    pub const ATTACKS: [Scenario; 6] = [
        Scenario::ReplayForeign,
        Scenario::Concurrent,
        Scenario::ProxySameCountry,
        Scenario::BurstScrape,
        Scenario::LowAndSlow,
        Scenario::ReplayAfterLogout,
    ];

    /// Every scenario the simulator generates.
    pub const ALL: [Scenario; 11] = [
        Scenario::LegitHome,
        Scenario::LegitMobile,
        Scenario::LegitVpn,
        Scenario::LegitAutomation,
        Scenario::LegitFlight,
        Scenario::ATTACKS[0],
        Scenario::ATTACKS[1],
        Scenario::ATTACKS[2],
        Scenario::ATTACKS[3],
        Scenario::ATTACKS[4],
        Scenario::ATTACKS[5],
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Scenario::LegitHome => "legit_home",
            Scenario::LegitMobile => "legit_mobile",
            Scenario::LegitVpn => "legit_vpn",
            Scenario::LegitAutomation => "legit_automation",
            Scenario::LegitFlight => "legit_flight",
            Scenario::ReplayForeign => "replay_foreign",
            Scenario::Concurrent => "concurrent",
            Scenario::ProxySameCountry => "proxy_same_country",
            Scenario::BurstScrape => "burst_scrape",
            Scenario::LowAndSlow => "low_and_slow",
            Scenario::ReplayAfterLogout => "replay_after_logout",
            Scenario::Unreported => "unreported",
            Scenario::Reported => "reported",
        }
    }
}

/// What the simulated traffic is like. `--traffic FILE` (TOML, any subset of
/// these keys; `data/sim/consumer-scale.toml` is one) describes a user's own
/// traffic as data; the seed, users, span and attack share come from flags.
/// Every knob that is off draws nothing from the generator, so the streams of
/// committed seeds stay as they were.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SimParams {
    pub seed: u64,
    pub start_ms: i64,
    pub span_ms: i64,
    pub users: u32,
    /// Share of tokens that get stolen.
    pub attack_share: f64,
    pub token_life_ms: (i64, i64),
    /// Mean gap between a user's requests.
    pub mean_gap_ms: f64,
    /// Share of users of each legitimate kind (the rest are desk users).
    pub p_mobile: f64,
    pub p_vpn: f64,
    pub p_automation: f64,
    pub p_flight: f64,
    /// Delay between the theft and the attacker's first request, ms.
    pub attack_delay_ms: (i64, i64),
    /// Users live in this many cities (drawn once per seed); 0: every city
    /// of the database. Fewer cities, more people per network.
    pub home_cities: u32,
    /// Share of home and mobile users behind carrier-grade NAT: their home
    /// address is in one of `cgnat_prefixes_per_city` /24s of their city,
    /// shared with every other such user there.
    pub p_cgnat: f64,
    pub cgnat_prefixes_per_city: u32,
    /// Stolen tokens replayed from one attacker address before the thief
    /// moves to another (infrastructure reuse); 1: a fresh address each.
    pub attacker_reuse: u32,
    /// Share of thefts replayed with the victim's exact User-Agent, on top
    /// of the scenarios that copy it anyway.
    pub ua_copy_share: f64,
}

impl SimParams {
    /// The knobs of a TOML file over the defaults; an unknown key or a
    /// wrong type is an error naming it.
    pub fn from_file(path: &std::path::Path) -> Result<SimParams, Box<figment::Error>> {
        use figment::providers::{Format as _, Serialized, Toml};
        figment::Figment::from(Serialized::defaults(SimParams::default()))
            .merge(Toml::file_exact(path))
            .extract()
            .map_err(Box::new)
    }
}

impl Default for SimParams {
    fn default() -> Self {
        SimParams {
            seed: 7,
            start_ms: 1_795_420_800_000, // 2026-11-23T08:00:00Z
            span_ms: 4 * 3600 * 1000,
            users: 300,
            attack_share: 0.03,
            token_life_ms: (5 * 60 * 1000, 60 * 60 * 1000),
            mean_gap_ms: 60_000.0,
            p_mobile: 0.25,
            p_vpn: 0.15,
            p_automation: 0.05,
            p_flight: 0.05,
            attack_delay_ms: (5_000, 120_000),
            home_cities: 0,
            p_cgnat: 0.0,
            cgnat_prefixes_per_city: 2,
            attacker_reuse: 1,
            ua_copy_share: 0.0,
        }
    }
}
