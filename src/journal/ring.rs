//! A bounded, sequence-numbered ring: the `cap` items with the highest
//! sequence numbers, paged newest first. Numbered locally, or by the topic
//! that feeds it, so that every instance pages the same list the same way.

use std::collections::BTreeMap;
use std::sync::Mutex;

use serde::Serialize;

pub struct Ring<T> {
    cap: usize,
    inner: Mutex<Inner<T>>,
}

struct Inner<T> {
    /// The sequence number the next local `push_with` takes.
    next: u64,
    items: BTreeMap<u64, T>,
}

/// One page, newest first; `next_before` continues the listing.
#[derive(Debug, Serialize)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_before: Option<u64>,
}

impl<T: Clone> Ring<T> {
    pub fn new(cap: usize) -> Ring<T> {
        Ring {
            cap: cap.max(1),
            inner: Mutex::new(Inner {
                next: 1,
                items: BTreeMap::new(),
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner<T>> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Appends `make(seq)` under the next local sequence number; returns it.
    /// For a ring no topic feeds (one instance, tests).
    pub fn push_with(&self, make: impl FnOnce(u64) -> T) -> u64 {
        let mut g = self.lock();
        let seq = g.next;
        g.next += 1;
        g.items.insert(seq, make(seq));
        self.trim(&mut g);
        seq
    }

    /// Keeps `item` under `seq`, a number the whole fleet agrees on (its
    /// place in a topic). The same `seq` twice keeps the first: an instance
    /// reads back what it wrote itself.
    pub fn insert(&self, seq: u64, item: T) {
        let mut g = self.lock();
        g.items.entry(seq).or_insert(item);
        self.trim(&mut g);
    }

    fn trim(&self, g: &mut Inner<T>) {
        while g.items.len() > self.cap {
            g.items.pop_first();
        }
    }

    /// Up to `limit` items with sequence below `before` that pass `keep`,
    /// newest first.
    pub fn page(&self, before: Option<u64>, limit: usize, keep: impl Fn(&T) -> bool) -> Page<T> {
        let g = self.lock();
        let before = before.unwrap_or(u64::MAX);
        let mut items = Vec::new();
        let mut last = None;
        let mut more = false;
        for (seq, item) in g.items.range(..before).rev() {
            if !keep(item) {
                continue;
            }
            if items.len() == limit {
                more = true;
                break;
            }
            items.push(item.clone());
            last = Some(*seq);
        }
        Page {
            items,
            next_before: if more { last } else { None },
        }
    }

    /// The newest item that passes `keep`.
    pub fn latest(&self, keep: impl Fn(&T) -> bool) -> Option<T> {
        self.lock().items.values().rev().find(|t| keep(t)).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_newest_first_and_forgets_the_oldest() {
        let r = Ring::new(5);
        for i in 0..8u64 {
            r.push_with(|seq| (seq, i));
        }
        let p = r.page(None, 2, |_| true);
        assert_eq!(p.items, vec![(8, 7), (7, 6)]);
        assert_eq!(p.next_before, Some(7));
        let p = r.page(p.next_before, 10, |_| true);
        assert_eq!(p.items, vec![(6, 5), (5, 4), (4, 3)]);
        assert_eq!(p.next_before, None, "seq 1-3 were forgotten");
        let odd = r.page(None, 10, |(_, i)| i % 2 == 1);
        assert_eq!(odd.items.len(), 3, "i = 3, 5, 7");
        assert_eq!(r.latest(|(_, i)| *i < 6), Some((6, 5)));
    }

    #[test]
    fn items_numbered_by_a_topic_page_in_that_order_whatever_their_arrival() {
        let r = Ring::new(3);
        for seq in [40, 10, 30, 20, 50] {
            r.insert(seq, seq);
        }
        r.insert(50, 0);
        let p = r.page(None, 10, |_| true);
        assert_eq!(
            p.items,
            vec![50, 40, 30],
            "the newest three, the first 50 kept"
        );
    }
}
