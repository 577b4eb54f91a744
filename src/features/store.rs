//! The table of live tokens: bounded, least-recently-used first out, and
//! expired by the token's own `exp` or an idle TTL.
//!
//! LRU order is last-use order, so expiry only ever looks at the cold end of
//! the list and stops at the first live token: O(expired), no timer per token.

use std::num::NonZeroUsize;

use lru::LruCache;

use super::state::TokenState;
use crate::telemetry::TokenKey;

pub struct TokenStore {
    /// Grows with use: `LruCache::new(cap)` would reserve the whole table up
    /// front (hundreds of MB at the default cap) and page-fault it in.
    tokens: LruCache<TokenKey, TokenState>,
    cap: usize,
    idle_ttl_ms: i64,
    /// Tokens dropped to stay under the cap (not expired ones).
    pub evicted: u64,
    pub expired: u64,
}

impl TokenStore {
    pub fn new(capacity: NonZeroUsize, idle_ttl_ms: i64) -> TokenStore {
        TokenStore {
            tokens: LruCache::unbounded(),
            cap: capacity.get(),
            idle_ttl_ms,
            evicted: 0,
            expired: 0,
        }
    }

    /// The state of `key`, created at `ts_ms` if unknown. Creating a token
    /// when full evicts the least recently used one.
    pub fn entry(&mut self, key: TokenKey, ts_ms: i64) -> &mut TokenState {
        // One probe in the common case; the membership check is only paid
        // when the table is full and a new token must evict.
        if self.tokens.len() >= self.cap && !self.tokens.contains(&key) {
            self.tokens.pop_lru();
            self.evicted += 1;
        }
        self.tokens
            .get_or_insert_mut(key, || TokenState::new(ts_ms))
    }

    /// Puts back a state read from the changelog, unless this instance
    /// already holds a newer one. Returns whether it was taken.
    pub fn restore(&mut self, key: TokenKey, mut state: TokenState) -> bool {
        if self
            .tokens
            .peek(&key)
            .is_some_and(|s| s.last_ms >= state.last_ms)
        {
            return false;
        }
        // Another instance's geo generation means nothing here: look the
        // last address up again rather than trust the shortcut.
        state.geo_generation = u32::MAX;
        if self.tokens.len() >= self.cap && !self.tokens.contains(&key) {
            self.tokens.pop_lru();
            self.evicted += 1;
        }
        self.tokens.put(key, state);
        true
    }

    pub fn get(&self, key: &TokenKey) -> Option<&TokenState> {
        self.tokens.peek(key)
    }

    /// The token's state without touching its recency.
    pub fn get_mut(&mut self, key: &TokenKey) -> Option<&mut TokenState> {
        self.tokens.peek_mut(key)
    }

    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    pub fn capacity(&self) -> usize {
        self.cap
    }

    /// Drops tokens idle for longer than the TTL, or past their `exp` by more
    /// than the TTL (late events for an expired token still get scored for a
    /// while). `now_ms` is event time, so replays and backfills age alike.
    pub fn expire(&mut self, now_ms: i64) -> usize {
        let mut n = 0;
        while let Some((_, s)) = self.tokens.peek_lru() {
            let idle = now_ms - s.last_ms > self.idle_ttl_ms;
            let gone = s.exp_ms > 0 && now_ms - s.exp_ms > self.idle_ttl_ms;
            if !(idle || gone) {
                break;
            }
            self.tokens.pop_lru();
            n += 1;
        }
        self.expired += n as u64;
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cap_evicts_least_recently_used() {
        let mut s = TokenStore::new(NonZeroUsize::new(2).unwrap(), 60_000);
        s.entry(1, 0);
        s.entry(2, 0);
        s.entry(1, 1); // touch 1
        s.entry(3, 2);
        assert!(s.get(&1).is_some() && s.get(&2).is_none() && s.get(&3).is_some());
        assert_eq!(s.evicted, 1);
    }

    #[test]
    fn idle_tokens_expire_from_the_cold_end_only() {
        let mut s = TokenStore::new(NonZeroUsize::new(10).unwrap(), 1_000);
        s.entry(1, 0).last_ms = 0;
        s.entry(2, 5_000).last_ms = 5_000;
        assert_eq!(s.expire(5_500), 1);
        assert!(s.get(&1).is_none() && s.get(&2).is_some());
    }
}
