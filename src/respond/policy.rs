//! Response policy: how far tokenwatch may act on its own decisions.

use serde::{Deserialize, Serialize};

/// `shadow` scores and records only; `alert` also publishes alerts;
/// `revoke` also calls the revocation targets for revoke-level decisions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    Shadow,
    Alert,
    #[default]
    Revoke,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Shadow => "shadow",
            Mode::Alert => "alert",
            Mode::Revoke => "revoke",
        }
    }
}
