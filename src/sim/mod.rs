//! Traffic simulator: labelled gateway telemetry from a seed.
//!
//! Client addresses are drawn from the real networks of the geo database in
//! use, so what is generated geolocates the way production traffic does.
//! Labels travel in a separate `label` object that the telemetry parser never
//! reads. Same seed, same parameters, same database → same bytes.

mod generate;
mod output;
mod population;
mod scenario;
mod truth;

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

pub use generate::generate;
pub use output::{publish, write_file};
pub use population::{City, World};
pub use scenario::{Scenario, SimParams};
pub use truth::{write_truth, Reported, StolenAt};

/// Ground truth for one request.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Label {
    pub scenario: Scenario,
    /// The token was stolen (all its requests carry this, the victim's too).
    pub attacked: bool,
    /// This request was made by the attacker.
    pub attacker: bool,
    /// When the token was stolen, ms; 0 for legitimate tokens.
    pub stolen_at_ms: i64,
}

/// One simulated request: telemetry fields plus its label. `token_seq`
/// identifies the token inside the simulation; how the token is named on
/// the wire (a jti, a keyed hash, with or without a sealed handle) is up to
/// the caller.
#[derive(Clone, Debug)]
pub struct SimEvent {
    pub ts_ms: i64,
    pub token_seq: u32,
    pub sub: u32,
    pub ip: IpAddr,
    pub user_agent: &'static str,
    pub method: &'static str,
    pub path: &'static str,
    pub status: u16,
    pub token_iat_s: i64,
    pub token_exp_s: i64,
    pub label: Label,
}

/// The telemetry record as a producer would publish it, plus `label`.
#[derive(Serialize)]
pub struct WireRecord<'a> {
    pub ts: String,
    pub token_id: &'a str,
    pub sub: String,
    pub ip: String,
    pub user_agent: &'a str,
    pub method: &'a str,
    pub path: &'a str,
    pub status: u16,
    pub client_id: &'a str,
    pub token_iat: i64,
    pub token_exp: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_handle: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label: Option<&'a Label>,
}

impl SimEvent {
    pub fn to_wire<'a>(
        &'a self,
        token_id: &'a str,
        token_handle: Option<&'a str>,
        with_label: bool,
    ) -> WireRecord<'a> {
        let ts =
            time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(self.ts_ms) * 1_000_000)
                .expect("simulated time is in range")
                .format(&time::format_description::well_known::Rfc3339)
                .expect("RFC 3339 formats any in-range time");
        WireRecord {
            ts,
            token_id,
            sub: format!("user-{:05}", self.sub),
            ip: self.ip.to_string(),
            user_agent: self.user_agent,
            method: self.method,
            path: self.path,
            status: self.status,
            client_id: "web-app",
            token_iat: self.token_iat_s,
            token_exp: self.token_exp_s,
            token_handle,
            label: with_label.then_some(&self.label),
        }
    }

    /// Moves the event `ms` later in time, with its token's issue and
    /// expiry times and its theft time: a stream generated at a fixed
    /// reference time replayed now, with the same traffic whatever the hour.
    pub fn shift(&mut self, ms: i64) {
        self.ts_ms += ms;
        self.token_iat_s += ms / 1000;
        self.token_exp_s += ms / 1000;
        if self.label.stolen_at_ms != 0 {
            self.label.stolen_at_ms += ms;
        }
    }

    /// The simulation's own token id: `sim-<seed>-<seq>`.
    pub fn sim_token_id(&self, seed: u64) -> String {
        format!("sim-{seed}-{:06}", self.token_seq)
    }
}
