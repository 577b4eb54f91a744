//! Response policy: how far tokenwatch may act on its own decisions.

use serde::{Deserialize, Serialize};

/// `shadow` scores and records only; `alert` also publishes alerts;
/// `revoke` also calls the revocation targets for revoke-level decisions.
/// Ordered from most to least cautious.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, Default)]
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

/// Modes for particular tenants or clients (`respond.tenant_modes`,
/// `respond.client_modes`). An override can only make tokenwatch more
/// cautious than the mode in force: an operator who switches everything to
/// shadow in an emergency is obeyed for every tenant.
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    pub tenants: std::collections::HashMap<String, Mode>,
    pub clients: std::collections::HashMap<String, Mode>,
}

/// What a scoped mode applies to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    Tenant,
    Client,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Tenant => "tenant",
            Scope::Client => "client",
        }
    }
}

impl Overrides {
    fn map(&mut self, scope: Scope) -> &mut std::collections::HashMap<String, Mode> {
        match scope {
            Scope::Tenant => &mut self.tenants,
            Scope::Client => &mut self.clients,
        }
    }
}

/// What an operator can change while tokenwatch runs: the mode and the
/// brake. Shared by the revoker and the admin API; with a control topic,
/// by the whole fleet (`control.rs`).
#[derive(Debug)]
pub struct Controls {
    pub mode: ModeSwitch,
    pub brake: super::Brake,
    /// From the configuration (`respond.tenant_modes`, `client_modes`).
    pub overrides: Overrides,
    /// Set through the API and the control topic; a name here wins over
    /// the configuration's for the same tenant or client.
    fleet_overrides: std::sync::RwLock<Overrides>,
    /// Where changes go so every instance applies them; None: this
    /// instance alone.
    pub fleet: Option<super::ControlWriter>,
    /// The control topic has been read to its end (always true without
    /// one): until then the revoker waits, so a restart never revokes
    /// under a brake the fleet has engaged.
    loaded: std::sync::atomic::AtomicBool,
    /// `at_ms` of the latest fleet change applied here.
    version: std::sync::atomic::AtomicI64,
    /// This process among the fleet's (random, per start): its brake count
    /// is published under it. A restart is a new instance, and its former
    /// self's admissions still count until they leave the window.
    pub instance: String,
    /// One brake-count publication at a time, so the last written is the
    /// latest count.
    count_gate: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for super::ControlWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ControlWriter")
    }
}

impl Controls {
    pub fn new(mode: Mode, brake: super::Brake) -> Controls {
        Controls {
            mode: ModeSwitch::new(mode),
            brake,
            overrides: Overrides::default(),
            fleet_overrides: Default::default(),
            fleet: None,
            loaded: std::sync::atomic::AtomicBool::new(true),
            version: std::sync::atomic::AtomicI64::new(0),
            instance: format!("{:016x}", rand::random::<u64>()),
            count_gate: tokio::sync::Mutex::new(()),
        }
    }

    /// Tells the fleet what this instance admitted in the brake's window,
    /// in the background: the count must not delay the revocation it
    /// counts. Without a control topic the count is this instance's alone.
    pub fn share_brake_count(self: &std::sync::Arc<Self>) {
        if self.fleet.is_none() {
            return;
        }
        let c = self.clone();
        tokio::spawn(async move {
            let _one = c.count_gate.lock().await;
            let Some(fleet) = &c.fleet else { return };
            let now = crate::clock::now_ms();
            let change = super::Change::BrakeCount {
                instance: c.instance.clone(),
                admitted: c.brake.admitted(now),
            };
            if let Err(e) = fleet.publish(change, "brake", now).await {
                tracing::warn!(error = %e, "brake count not published; the fleet counts without this instance's latest");
            }
        });
    }

    /// Shares changes through the control topic; not loaded until its
    /// follower has read it (`mark_loaded`).
    pub fn with_fleet(mut self, writer: super::ControlWriter) -> Controls {
        self.fleet = Some(writer);
        self.loaded = std::sync::atomic::AtomicBool::new(false);
        self
    }

    pub fn mark_loaded(&self) {
        self.loaded
            .store(true, std::sync::atomic::Ordering::Release);
    }

    pub fn is_loaded(&self) -> bool {
        self.loaded.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Waits until the fleet's policy is known here.
    pub async fn until_loaded(&self) {
        while !self.is_loaded() {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    /// Records that the fleet change made at `at_ms` is applied.
    pub fn applied(&self, at_ms: i64) {
        self.version
            .fetch_max(at_ms, std::sync::atomic::Ordering::AcqRel);
    }

    /// `at_ms` of the latest fleet change applied (0: none).
    pub fn version(&self) -> i64 {
        self.version.load(std::sync::atomic::Ordering::Acquire)
    }

    pub fn with_overrides(mut self, overrides: Overrides) -> Controls {
        self.overrides = overrides;
        self
    }

    /// The mode for a decision about a token of `tenant` / `client_id`: the
    /// most cautious of the mode in force and any override (a client's
    /// override before its tenant's).
    pub fn mode_for(&self, tenant: Option<&str>, client_id: Option<&str>) -> Mode {
        let global = self.mode.get();
        let f = self.fleet_overrides.read().expect("overrides lock");
        let o = &self.overrides;
        let specific = client_id
            .and_then(|c| f.clients.get(c).or_else(|| o.clients.get(c)))
            .or_else(|| tenant.and_then(|t| f.tenants.get(t).or_else(|| o.tenants.get(t))));
        match specific {
            Some(&m) => m.min(global),
            None => global,
        }
    }

    /// Sets (or with None lifts) the mode of one tenant or client.
    pub fn set_scoped(&self, scope: Scope, name: &str, mode: Option<Mode>) {
        let mut f = self.fleet_overrides.write().expect("overrides lock");
        match mode {
            Some(m) => f.map(scope).insert(name.to_owned(), m),
            None => f.map(scope).remove(name),
        };
    }

    /// The overrides in force: the configuration's, then the fleet's.
    pub fn overrides_in_force(&self) -> Overrides {
        let mut all = self.overrides.clone();
        let f = self.fleet_overrides.read().expect("overrides lock");
        all.tenants.extend(f.tenants.clone());
        all.clients.extend(f.clients.clone());
        all
    }

    /// The given mode with the default brake (tests, tools).
    pub fn with_mode(mode: Mode) -> std::sync::Arc<Controls> {
        std::sync::Arc::new(Controls::new(mode, super::Brake::default()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_override_makes_a_tenant_more_cautious_never_less() {
        let mut o = Overrides::default();
        o.tenants.insert("pilot".into(), Mode::Shadow);
        o.tenants.insert("eager".into(), Mode::Revoke);
        o.clients.insert("batch-job".into(), Mode::Alert);
        let c = Controls::new(Mode::Revoke, super::super::Brake::default()).with_overrides(o);
        assert_eq!(c.mode_for(Some("pilot"), None), Mode::Shadow);
        assert_eq!(c.mode_for(Some("other"), None), Mode::Revoke);
        assert_eq!(
            c.mode_for(Some("pilot"), Some("batch-job")),
            Mode::Alert,
            "the client's override first"
        );
        c.mode.set(Mode::Alert);
        assert_eq!(
            c.mode_for(Some("eager"), None),
            Mode::Alert,
            "the operator's switch wins"
        );
        c.mode.set(Mode::Shadow);
        assert_eq!(c.mode_for(Some("pilot"), Some("batch-job")), Mode::Shadow);
    }

    #[test]
    fn a_scoped_mode_set_at_run_time_wins_over_the_configured_one_until_lifted() {
        let mut o = Overrides::default();
        o.tenants.insert("pilot".into(), Mode::Shadow);
        let c = Controls::new(Mode::Revoke, super::super::Brake::default()).with_overrides(o);
        c.set_scoped(Scope::Tenant, "pilot", Some(Mode::Revoke));
        assert_eq!(c.mode_for(Some("pilot"), None), Mode::Revoke);
        c.set_scoped(Scope::Client, "scraper", Some(Mode::Alert));
        assert_eq!(c.mode_for(Some("pilot"), Some("scraper")), Mode::Alert);
        c.set_scoped(Scope::Tenant, "pilot", None);
        assert_eq!(
            c.mode_for(Some("pilot"), None),
            Mode::Shadow,
            "back to the file's"
        );
        assert_eq!(c.overrides_in_force().clients["scraper"], Mode::Alert);
    }
}
