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

impl std::str::FromStr for Mode {
    type Err = String;

    fn from_str(s: &str) -> Result<Mode, String> {
        match s {
            "shadow" => Ok(Mode::Shadow),
            "alert" => Ok(Mode::Alert),
            "revoke" => Ok(Mode::Revoke),
            other => Err(format!(
                "unknown mode {other:?} (want shadow, alert or revoke)"
            )),
        }
    }
}

/// The mode in force, switchable at run time by an operator (the revoker
/// reads it for every decision).
#[derive(Debug)]
pub struct ModeSwitch(std::sync::atomic::AtomicU8);

impl ModeSwitch {
    pub fn new(mode: Mode) -> ModeSwitch {
        ModeSwitch(std::sync::atomic::AtomicU8::new(mode as u8))
    }

    pub fn get(&self) -> Mode {
        match self.0.load(std::sync::atomic::Ordering::Acquire) {
            0 => Mode::Shadow,
            1 => Mode::Alert,
            _ => Mode::Revoke,
        }
    }

    /// Sets the mode; returns the previous one.
    pub fn set(&self, mode: Mode) -> Mode {
        match self.0.swap(mode as u8, std::sync::atomic::Ordering::AcqRel) {
            0 => Mode::Shadow,
            1 => Mode::Alert,
            _ => Mode::Revoke,
        }
    }
}

/// What an operator can change while tokenwatch runs: the mode and the
/// brake. Shared by the revoker and the admin API.
#[derive(Debug)]
pub struct Controls {
    pub mode: ModeSwitch,
    pub brake: super::Brake,
}

impl Controls {
    pub fn new(mode: Mode, brake: super::Brake) -> Controls {
        Controls {
            mode: ModeSwitch::new(mode),
            brake,
        }
    }

    /// The given mode with the default brake (tests, tools).
    pub fn with_mode(mode: Mode) -> std::sync::Arc<Controls> {
        std::sync::Arc::new(Controls::new(mode, super::Brake::default()))
    }
}
