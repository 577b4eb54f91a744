//! A bounded, sequence-numbered ring: the newest `cap` items, paged newest
//! first by sequence number.

use std::collections::VecDeque;
use std::sync::Mutex;

use serde::Serialize;

pub struct Ring<T> {
    cap: usize,
    inner: Mutex<(u64, VecDeque<(u64, T)>)>,
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
            inner: Mutex::new((1, VecDeque::new())),
        }
    }

    /// Appends `make(seq)`; returns the sequence number it got.
    pub fn push_with(&self, make: impl FnOnce(u64) -> T) -> u64 {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let seq = g.0;
        g.0 += 1;
        if g.1.len() == self.cap {
            g.1.pop_front();
        }
        g.1.push_back((seq, make(seq)));
        seq
    }

    /// Up to `limit` items with sequence below `before` that pass `keep`,
    /// newest first.
    pub fn page(&self, before: Option<u64>, limit: usize, keep: impl Fn(&T) -> bool) -> Page<T> {
        let g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let before = before.unwrap_or(u64::MAX);
        let mut items = Vec::new();
        let mut last = None;
        let mut more = false;
        for (seq, item) in g.1.iter().rev().filter(|(s, _)| *s < before) {
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
        let g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        g.1.iter()
            .rev()
            .find(|(_, t)| keep(t))
            .map(|(_, t)| t.clone())
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
}
