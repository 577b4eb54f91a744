//! Response: what happens once a token is flagged. Decisions are written to
//! the decision log first (the outbox), then settled by the revoker, through
//! calls that really revoke: the edge denylist, RFC 7009 with the sealed
//! token, subject logout at the IdP; then alert events and webhooks. Each
//! target retries on its own, so one that fails delays no other.

pub mod brake;
mod control;
mod denylist;
mod event;
pub mod http;
mod logout;
mod outcome;
mod persist;
mod policy;
mod revoker;
mod rfc7009;
mod targets;
pub mod webhook;

pub use brake::{Brake, BrakeLimits, BrakeStatus, Held};
pub use control::{Change, ControlError, ControlKey, ControlWriter, Signed};
pub use denylist::{DenyEntry, Denylist};
pub use event::{sign_set, AlertEvent, CAEP_SESSION_REVOKED, TOKENWATCH_FLAGGED};
pub use http::{CallError, RetryPolicy};
pub use logout::{LogoutAuth, LogoutParams, Preset, Subject, SubjectLogout, PLACEHOLDERS};
pub use outcome::{Outcome, Settled, TargetOutcome};
pub use persist::Persistence;
pub use policy::{Controls, Mode, ModeSwitch, Overrides, Scope};
pub use revoker::Revoker;
pub use rfc7009::{ClientAuth, Rfc7009Client, Rfc7009Params};
pub use targets::{
    AlertFormat, AlertsTarget, DenylistTarget, Targets, ALERTS, DENYLIST, RESERVED, RFC7009,
};
pub use webhook::{Webhook, WebhookParams};
