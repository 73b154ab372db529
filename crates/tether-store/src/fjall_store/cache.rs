//! A small bounded cache for the writer's hot data.
//!
//! Streaming sends hundreds of appends to the same message; reading and
//! decoding its current state from disk for each would dominate the cost.
//! The writer keeps recently touched states (and channel metadata) here.
//!
//! Two generations instead of a true LRU: hits go to the young map, and when
//! it is full it becomes the old one (whose entries are then dropped). A hit
//! in the old map promotes the entry. That approximates LRU with O(1) work
//! and no dependency, and bounds memory at about twice the generation limits.

use std::collections::HashMap;
use std::hash::Hash;

/// A two-generation cache bounded by entry count and by approximate bytes.
pub(crate) struct HotCache<K, V> {
    young: HashMap<K, (V, usize)>,
    old: HashMap<K, (V, usize)>,
    young_bytes: usize,
    /// Entries per generation.
    max_entries: usize,
    /// Approximate bytes per generation.
    max_bytes: usize,
}

impl<K: Hash + Eq + Clone, V> HotCache<K, V> {
    /// A cache holding about `max_entries` entries or `max_bytes` bytes per
    /// generation, whichever comes first.
    pub(crate) fn new(max_entries: usize, max_bytes: usize) -> HotCache<K, V> {
        HotCache {
            young: HashMap::new(),
            old: HashMap::new(),
            young_bytes: 0,
            max_entries: max_entries.max(1),
            max_bytes: max_bytes.max(1),
        }
    }

    /// The cached value for `key`, promoting it if it was aging out.
    pub(crate) fn get(&mut self, key: &K) -> Option<&V> {
        if !self.young.contains_key(key) {
            let (value, size) = self.old.remove(key)?;
            self.insert(key.clone(), value, size);
        }
        self.young.get(key).map(|(v, _)| v)
    }

    /// Caches `value` (of about `size` bytes) under `key`.
    pub(crate) fn insert(&mut self, key: K, value: V, size: usize) {
        self.old.remove(&key);
        if let Some((_, old_size)) = self.young.insert(key, (value, size)) {
            self.young_bytes = self.young_bytes.saturating_sub(old_size);
        }
        self.young_bytes = self.young_bytes.saturating_add(size);
        if self.young.len() >= self.max_entries || self.young_bytes >= self.max_bytes {
            self.old = std::mem::take(&mut self.young);
            self.young_bytes = 0;
        }
    }

    /// Removes and returns the value for `key` (the writer takes a state
    /// out while a batch changes it and puts it back after the commit).
    pub(crate) fn take(&mut self, key: &K) -> Option<V> {
        if let Some((value, size)) = self.young.remove(key) {
            self.young_bytes = self.young_bytes.saturating_sub(size);
            return Some(value);
        }
        self.old.remove(key).map(|(value, _)| value)
    }

    /// Forgets `key`.
    pub(crate) fn remove(&mut self, key: &K) {
        self.take(key);
    }

    /// How many entries are cached.
    pub(crate) fn len(&self) -> usize {
        self.young.len() + self.old.len()
    }

    /// Approximate bytes cached.
    pub(crate) fn bytes(&self) -> usize {
        let old: usize = self.old.values().map(|(_, size)| *size).sum();
        self.young_bytes.saturating_add(old)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn bounded_and_promotes_hits() {
        let mut cache = HotCache::new(4, usize::MAX);
        for i in 0..100 {
            cache.insert(i, i * 10, 1);
            assert!(cache.len() <= 8);
            // Key 0 stays because it is hit all the time.
            assert_eq!(cache.get(&0), Some(&0));
        }
        assert_eq!(cache.get(&99), Some(&990));
        cache.remove(&99);
        assert_eq!(cache.get(&99), None);
    }

    #[test]
    fn bounded_by_bytes() {
        let mut cache = HotCache::new(usize::MAX, 100);
        for i in 0..10 {
            cache.insert(i, (), 60);
        }
        assert!(cache.len() <= 2);
    }
}
