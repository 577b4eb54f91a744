//! Response: what happens once a token is flagged. Decisions are written to
//! the decision log first (the outbox), then settled by the revoker, through
//! calls that really revoke.

pub mod brake;
mod decision;
mod flag;
mod policy;
mod revoker;
mod rfc7009;
mod seal;

pub use brake::{Brake, BrakeStatus};
pub use decision::{Decision, MANUAL_RULE};
pub use flag::{lock, score, Flagger, Outbox, Scored, SharedDetector};
pub use policy::{Controls, Mode, ModeSwitch};
pub use revoker::{Outcome, Revoker, Settled};
pub use rfc7009::{CallError, ClientAuth, Rfc7009Client, Rfc7009Params};
pub use seal::{SealError, Sealer};
