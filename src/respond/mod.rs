//! Response: what happens once a token is flagged. Decisions are written to
//! the decision log first (the outbox), then settled by the revoker, through
//! calls that really revoke.

mod decision;
mod policy;
mod revoker;
mod rfc7009;
mod seal;

pub use decision::Decision;
pub use policy::Mode;
pub use revoker::{Outcome, Revoker, Settled};
pub use rfc7009::{CallError, ClientAuth, Rfc7009Client, Rfc7009Params};
pub use seal::{SealError, Sealer};
