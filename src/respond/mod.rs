//! Response: what happens once a token is flagged. Decisions are written to
//! the decision log first (the outbox), then settled by the revoker, through
//! calls that really revoke: RFC 7009 with the sealed token, subject logout
//! at the IdP, the edge denylist; then alert events and webhooks.

pub mod brake;
mod decision;
mod denylist;
mod event;
mod flag;
pub mod http;
mod logout;
mod policy;
mod revoker;
mod rfc7009;
mod seal;
pub mod webhook;

pub use brake::{Brake, BrakeLimits, BrakeStatus};
pub use decision::{Decision, MANUAL_RULE};
pub use denylist::{DenyEntry, Denylist};
pub use event::{sign_set, AlertEvent, CAEP_SESSION_REVOKED, TOKENWATCH_FLAGGED};
pub use flag::{lock, score, Flagger, Outbox, Scored, SharedDetector};
pub use http::{CallError, RetryPolicy};
pub use logout::{LogoutAuth, LogoutParams, Preset, Subject, SubjectLogout, PLACEHOLDERS};
pub use policy::{Controls, Mode, ModeSwitch, Overrides};
pub use revoker::{
    AlertFormat, AlertsTarget, DenylistTarget, Outcome, Revoker, Settled, TargetOutcome, Targets,
    TopicWriter, ALERTS, DENYLIST, RFC7009,
};
pub use rfc7009::{ClientAuth, Rfc7009Client, Rfc7009Params};
pub use seal::{SealError, Sealer};
pub use webhook::{Webhook, WebhookParams};
