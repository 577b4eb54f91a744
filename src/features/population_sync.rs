//! The population tables as records, so they outlive a process and are
//! shared by the fleet (`ingest/population.rs` writes and follows them):
//! what changed since the last write, and how a record another instance
//! (or this one before a restart) wrote is merged in.
//!
//! Merging is a union, so the order records arrive in and how often one
//! arrives do not matter: an egress prefix's subject sketches are OR-ed, a
//! subject's places are added like places learned here. The rate baseline
//! is a mean, not a set: it seeds a restarted instance and is otherwise
//! each instance's own.

use serde::{Deserialize, Serialize};

use super::familiar::{Place, PLACES_PER_SUBJECT};
use super::population::{Egress, Population, EGRESS_PREFIXES, ROUTE_CLASSES};
use super::state::Sketch64;
use crate::geo::Location;

/// One entry of the population tables.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum PopulationRecord {
    /// Who has been seen behind one network prefix (its hash).
    Egress {
        prefix: u64,
        all: u64,
        started: u64,
        roamed: u64,
    },
    /// The places one subject (its hash) has used.
    Places {
        subject: u64,
        places: Vec<SharedPlace>,
    },
    /// The request-rate baseline per route class.
    Rates { rates: Vec<f32> },
}

#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct SharedPlace {
    pub location: Location,
    pub token: u32,
    pub multi: bool,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum RecordError {
    #[error("more than {PLACES_PER_SUBJECT} places")]
    TooManyPlaces,
    #[error("a place outside the globe or with a non-finite radius")]
    BadPlace,
    #[error("a rate baseline of {0} classes, not {ROUTE_CLASSES}, or not finite and positive")]
    BadRates(usize),
}

impl PopulationRecord {
    /// The record key: compaction keeps each entry's latest.
    pub fn key(&self) -> String {
        match self {
            PopulationRecord::Egress { prefix, .. } => format!("egress/{prefix:016x}"),
            PopulationRecord::Places { subject, .. } => format!("subject/{subject:016x}"),
            PopulationRecord::Rates { .. } => "rates".into(),
        }
    }

    /// Refuses what no instance would write: the topic is an input too.
    pub fn check(&self) -> Result<(), RecordError> {
        match self {
            PopulationRecord::Egress { .. } => Ok(()),
            PopulationRecord::Places { places, .. } => {
                if places.len() > PLACES_PER_SUBJECT {
                    return Err(RecordError::TooManyPlaces);
                }
                let sane = |l: &Location| {
                    l.lat.is_finite()
                        && l.lon.is_finite()
                        && l.lat.abs() <= 90.0
                        && l.lon.abs() <= 180.0
                        && l.accuracy_km.is_finite()
                        && l.accuracy_km >= 0.0
                };
                if places.iter().all(|p| sane(&p.location)) {
                    Ok(())
                } else {
                    Err(RecordError::BadPlace)
                }
            }
            PopulationRecord::Rates { rates } => {
                if rates.len() == ROUTE_CLASSES && rates.iter().all(|r| r.is_finite() && *r > 0.0) {
                    Ok(())
                } else {
                    Err(RecordError::BadRates(rates.len()))
                }
            }
        }
    }
}

impl Population {
    /// Starts remembering which entries change, for `take_changes`.
    pub fn track_changes(&mut self) {
        self.changed_egress.get_or_insert_with(Default::default);
        self.familiar.changed.get_or_insert_with(Default::default);
    }

    /// The entries changed since the last call (each as it now stands),
    /// and the rate baseline. Empty when nothing changed.
    pub fn take_changes(&mut self) -> Vec<PopulationRecord> {
        let mut out = Vec::new();
        if let Some(changed) = self.changed_egress.as_mut().map(std::mem::take) {
            for prefix in changed {
                if let Some(e) = self.egress.peek(&prefix) {
                    out.push(PopulationRecord::Egress {
                        prefix,
                        all: e.all.0,
                        started: e.started.0,
                        roamed: e.roamed.0,
                    });
                }
            }
        }
        if let Some(changed) = self.familiar.changed.as_mut().map(std::mem::take) {
            for subject in changed {
                if let Some(s) = self.familiar.subjects.peek(&subject) {
                    let places = s
                        .places
                        .iter()
                        .flatten()
                        .map(|p| SharedPlace {
                            location: p.location,
                            token: p.token,
                            multi: p.multi,
                        })
                        .collect();
                    out.push(PopulationRecord::Places { subject, places });
                }
            }
        }
        if !out.is_empty() {
            out.push(PopulationRecord::Rates {
                rates: self.rate.to_vec(),
            });
        }
        out
    }

    /// Marks `r`'s entry changed again (its write did not land).
    pub fn mark_changed(&mut self, r: &PopulationRecord) {
        match r {
            PopulationRecord::Egress { prefix, .. } => {
                if let Some(c) = &mut self.changed_egress {
                    c.insert(*prefix);
                }
            }
            PopulationRecord::Places { subject, .. } => {
                if let Some(c) = &mut self.familiar.changed {
                    c.insert(*subject);
                }
            }
            // Sent with every batch.
            PopulationRecord::Rates { .. } => {}
        }
    }

    /// Merges a record written elsewhere (checked first). `seeding`: this
    /// instance is still reading the tables at start, so the rate baseline
    /// is taken too.
    pub fn merge(&mut self, r: &PopulationRecord, seeding: bool) -> Result<(), RecordError> {
        r.check()?;
        match r {
            PopulationRecord::Egress {
                prefix,
                all,
                started,
                roamed,
            } => {
                if self.egress.len() >= EGRESS_PREFIXES && !self.egress.contains(prefix) {
                    self.egress.pop_lru();
                }
                let e = self.egress.get_or_insert_mut(*prefix, Egress::default);
                e.all = Sketch64(e.all.0 | all);
                e.started = Sketch64(e.started.0 | started);
                e.roamed = Sketch64(e.roamed.0 | roamed);
            }
            PopulationRecord::Places { subject, places } => {
                // Learned elsewhere: not this instance's change to publish.
                let tracking = self.familiar.changed.take();
                for p in places {
                    self.familiar.learn_place(
                        *subject,
                        Place {
                            location: p.location,
                            token: p.token,
                            multi: p.multi,
                        },
                    );
                }
                self.familiar.changed = tracking;
            }
            PopulationRecord::Rates { rates } => {
                if seeding {
                    self.rate.copy_from_slice(rates);
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geo::Country;

    fn at(lat: f32, lon: f32) -> Location {
        Location {
            lat,
            lon,
            accuracy_km: 20.0,
            country: Country::from_code("FR"),
            asn: 1,
        }
    }

    #[test]
    fn what_one_instance_learned_another_knows_after_merging_its_records() {
        let mut a = Population::default();
        a.track_changes();
        let vpn = "203.0.113.7".parse().unwrap();
        let prefix = super::super::extract::prefix_hash(vpn);
        for subject in 1..=4u64 {
            let subject = subject.wrapping_mul(0x9e37_79b9_7f4a_7c15);
            a.observe_egress(prefix, Some(subject), true);
            a.observe_roaming(vpn, Some(subject));
        }
        a.familiar.learn(7, 1, &at(48.86, 2.35));
        let records = a.take_changes();
        assert!(a.take_changes().is_empty(), "taken once");
        assert!(a.egress_excuses(vpn));

        let mut b = Population::default();
        b.track_changes();
        assert!(!b.egress_excuses(vpn) && !b.familiar.knows(7, 2, &at(48.86, 2.35)));
        for r in &records {
            let json = serde_json::to_vec(r).unwrap();
            b.merge(&serde_json::from_slice(&json).unwrap(), true)
                .unwrap();
        }
        assert!(b.egress_excuses(vpn), "the shared egress");
        assert!(
            b.familiar.knows(7, 2, &at(48.86, 2.35)),
            "the subject's place"
        );
        assert!(
            b.take_changes()
                .iter()
                .all(|r| !matches!(r, PopulationRecord::Places { .. })),
            "merged places are not b's to publish"
        );
        // Merging the same again changes nothing (a union).
        let before = b.egress.peek(&prefix).map(|e| (e.all, e.started, e.roamed));
        for r in &records {
            b.merge(r, false).unwrap();
        }
        assert_eq!(
            before,
            b.egress.peek(&prefix).map(|e| (e.all, e.started, e.roamed))
        );
    }

    #[test]
    fn a_record_no_instance_would_write_is_refused() {
        let mut p = Population::default();
        let place = |lat| SharedPlace {
            location: at(lat, 0.0),
            token: 1,
            multi: false,
        };
        let bad = [
            PopulationRecord::Places {
                subject: 1,
                places: vec![place(f32::NAN)],
            },
            PopulationRecord::Places {
                subject: 1,
                places: vec![place(91.0)],
            },
            PopulationRecord::Places {
                subject: 1,
                places: vec![place(1.0); PLACES_PER_SUBJECT + 1],
            },
            PopulationRecord::Rates {
                rates: vec![1.0; 3],
            },
            PopulationRecord::Rates {
                rates: vec![f32::INFINITY; ROUTE_CLASSES],
            },
        ];
        for r in &bad {
            assert!(p.merge(r, true).is_err(), "{r:?}");
        }
        assert_eq!(p.familiar.len(), 0);
    }
}
