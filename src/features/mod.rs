//! Per-token state and the features computed from it. Pure: no I/O, no
//! allocation per event.

mod extract;
mod familiar;
mod population;
mod population_sync;
mod schema;
mod state;
mod store;

pub use extract::{is_non_browser, observe, ua_family, FeatureParams, Features, MAX_SPEED_KMH};
pub use familiar::{Familiar, PLACES_PER_SUBJECT, SUBJECTS};
pub use population::{Population, SHARED_EGRESS_SUBJECTS};
pub use population_sync::{PopulationRecord, RecordError, SharedPlace};
pub use schema::{idx, FEATURE_NAMES, FEATURE_SCHEMA_VERSION, N_FEATURES};
pub use state::{Sighting, Sketch64, SmallSet, TokenState, SET_CAP};
pub use store::TokenStore;
