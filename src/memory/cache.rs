//! LRU cache of embeddings keyed by model + text (+ whether over-long input was truncated or refused). Pure: no
//! clock, no IO. Holds pooled, un-normalised vectors so that `normalize: false` callers get the same bytes.

use std::num::NonZeroUsize;

use lru::LruCache;
use xxhash_rust::xxh3::Xxh3;

/// A cached embedding: the pooled vector, the tokens it cost, whether the text was truncated to fit.
#[derive(Debug, Clone)]
pub(crate) struct Cached {
    pub vector: std::sync::Arc<[f32]>,
    pub tokens: u32,
    pub truncated: bool,
}

pub(crate) struct EmbedCache {
    lru: Option<LruCache<u128, Cached>>,
    pub hits: u64,
    pub misses: u64,
}

pub(crate) fn key(model: &str, text: &str) -> u128 {
    let mut h = Xxh3::new();
    h.update(model.as_bytes());
    h.update(&[0]);
    h.update(text.as_bytes());
    h.digest128()
}

impl EmbedCache {
    /// `entries == 0` disables the cache.
    pub(crate) fn new(entries: usize) -> Self {
        EmbedCache { lru: NonZeroUsize::new(entries).map(LruCache::new), hits: 0, misses: 0 }
    }

    pub(crate) fn capacity(&self) -> usize {
        self.lru.as_ref().map(|l| l.cap().get()).unwrap_or(0)
    }

    pub(crate) fn len(&self) -> usize {
        self.lru.as_ref().map(|l| l.len()).unwrap_or(0)
    }

    pub(crate) fn get(&mut self, k: u128) -> Option<Cached> {
        let lru = self.lru.as_mut()?;
        match lru.get(&k) {
            Some(v) => {
                self.hits += 1;
                Some(v.clone())
            }
            None => {
                self.misses += 1;
                None
            }
        }
    }

    pub(crate) fn put(&mut self, k: u128, v: Cached) {
        if let Some(lru) = self.lru.as_mut() {
            lru.put(k, v);
        }
    }

    pub(crate) fn hit_rate(&self) -> f64 {
        let total = self.hits + self.misses;
        if total == 0 { 0.0 } else { self.hits as f64 / total as f64 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(x: f32) -> Cached {
        Cached { vector: vec![x].into(), tokens: 1, truncated: false }
    }

    #[test]
    fn evicts_the_least_recently_used_and_counts() {
        let mut c = EmbedCache::new(2);
        let (a, b, d) = (key("m", "a"), key("m", "b"), key("m", "d"));
        c.put(a, v(1.0));
        c.put(b, v(2.0));
        assert!(c.get(a).is_some()); // a is now the most recent
        c.put(d, v(3.0));
        assert!(c.get(b).is_none());
        assert!(c.get(a).is_some() && c.get(d).is_some());
        assert_eq!((c.hits, c.misses), (3, 1));
        assert_ne!(key("m1", "x"), key("m2", "x"));
        assert_ne!(key("m", "ab"), key("ma", "b"));
    }

    #[test]
    fn zero_entries_disables() {
        let mut c = EmbedCache::new(0);
        c.put(1, v(1.0));
        assert!(c.get(1).is_none());
        assert_eq!(c.capacity(), 0);
    }
}
