//! Places a subject has used on its *other* tokens: per-subject history, so a
//! user's own corporate VPN, home and office stop looking like travel from
//! their second token on, instead of after weeks of learning.
//!
//! A place is learned only from a token that has shown no impossible travel
//! and no flip, and counts as familiar only to tokens other than the one that
//! taught it: a thief's location, learned from the stolen token itself,
//! could otherwise excuse the very travel that exposes it.

use crate::geo::Location;

/// Places remembered per subject; the oldest is overwritten.
pub const PLACES_PER_SUBJECT: usize = 6;
/// Subjects remembered per instance; the coldest is forgotten.
pub const SUBJECTS: usize = 262_144;
/// Two sightings closer than this (after both accuracy radii) are one place.
const SAME_PLACE_KM: f64 = 50.0;

#[derive(Clone, Copy, Debug)]
pub(super) struct Place {
    pub(super) location: Location,
    /// Low bits of the token that taught it.
    pub(super) token: u32,
    /// Taught by more than one token.
    pub(super) multi: bool,
}

#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Places {
    pub(super) places: [Option<Place>; PLACES_PER_SUBJECT],
    next: u8,
}

impl Places {
    pub(super) fn find(&self, at: &Location) -> Option<usize> {
        self.places
            .iter()
            .position(|p| p.is_some_and(|p| p.location.min_plausible_km(at) <= SAME_PLACE_KM))
    }
}

/// Subject hash → its familiar places. Bounded by [`SUBJECTS`].
pub struct Familiar {
    pub(super) subjects: lru::LruCache<u64, Places>,
    /// Subjects whose places changed since the last `take_changes`, when
    /// the tables are kept in a topic.
    pub(super) changed: Option<std::collections::HashSet<u64>>,
}

impl Default for Familiar {
    fn default() -> Self {
        Familiar {
            // Grows with use; the cap is enforced on insert.
            subjects: lru::LruCache::unbounded(),
            changed: None,
        }
    }
}

impl Familiar {
    /// Remembers that `subject` used `token` at `at`.
    pub fn learn(&mut self, subject: u64, token: u32, at: &Location) {
        self.learn_place(
            subject,
            Place {
                location: *at,
                token,
                multi: false,
            },
        );
    }

    /// Adds `place` to `subject`'s (or marks the one near it as taught by
    /// another token); true if anything changed.
    pub(super) fn learn_place(&mut self, subject: u64, place: Place) -> bool {
        if self.subjects.len() >= SUBJECTS && !self.subjects.contains(&subject) {
            self.subjects.pop_lru();
        }
        let s = self.subjects.get_or_insert_mut(subject, Places::default);
        let changed = match s.find(&place.location) {
            Some(i) => match &mut s.places[i] {
                Some(p) => {
                    let multi = p.multi || place.multi || p.token != place.token;
                    std::mem::replace(&mut p.multi, multi) != multi
                }
                None => false,
            },
            None => {
                let i = usize::from(s.next) % PLACES_PER_SUBJECT;
                s.places[i] = Some(place);
                s.next = ((i + 1) % PLACES_PER_SUBJECT) as u8;
                true
            }
        };
        if changed {
            if let Some(c) = &mut self.changed {
                c.insert(subject);
            }
        }
        changed
    }

    /// Whether `subject` has used `at` on some token other than `token`.
    pub fn knows(&self, subject: u64, token: u32, at: &Location) -> bool {
        self.subjects.peek(&subject).is_some_and(|s| {
            s.find(at)
                .and_then(|i| s.places[i])
                .is_some_and(|p| p.multi || p.token != token)
        })
    }

    pub fn len(&self) -> usize {
        self.subjects.len()
    }

    pub fn is_empty(&self) -> bool {
        self.subjects.is_empty()
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
    fn a_place_is_familiar_only_to_other_tokens() {
        let mut f = Familiar::default();
        let paris = at(48.86, 2.35);
        f.learn(7, 1, &paris);
        assert!(!f.knows(7, 1, &paris), "the teaching token itself");
        assert!(f.knows(7, 2, &paris));
        assert!(f.knows(7, 2, &at(48.9, 2.4)), "a nearby address");
        assert!(!f.knows(7, 2, &at(1.35, 103.82)), "elsewhere");
        assert!(!f.knows(8, 2, &paris), "another subject");
        f.learn(7, 2, &paris);
        assert!(f.knows(7, 1, &paris), "taught twice: familiar to both");
    }

    #[test]
    fn memory_is_bounded_per_subject() {
        let mut f = Familiar::default();
        for i in 0..(PLACES_PER_SUBJECT + 1) {
            f.learn(7, 1, &at(-60.0 + 20.0 * i as f32, 0.0));
        }
        assert!(
            !f.knows(7, 2, &at(-60.0, 0.0)),
            "the oldest was overwritten"
        );
        assert!(f.knows(7, 2, &at(-40.0, 0.0)));
    }
}
