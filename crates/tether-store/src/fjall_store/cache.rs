//! A small bounded cache for the writer's hot data.
//!
//! Streaming sends hundreds of appends to the same message; reading and
//! decoding its current state from disk for each would dominate the cost.
//! The writer keeps recently touched states (and channel metadata) here.
//!
//! Two generations instead of a true LRU: hits go to the young map, and when
//! it is full, or older than the cache's age limit, it becomes the old one
//! (whose entries are then dropped). A hit in the old map promotes the
//! entry. That approximates LRU with O(1) work and no dependency, and bounds
//! memory at about twice the generation limits.
//!
//! The age limit is what makes memory plateau under steady load: without
//! it a cache fills up to its byte bound with entries nobody touches again
//! (every finished response of a streaming channel), which at a few MiB a
//! minute looks like a leak for as long as the bound takes to reach. With
//! it, an entry untouched for two generations' age is gone, so the cache
//! holds what was touched recently, whatever the bound.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

/// A two-generation cache bounded by entry count, approximate bytes and,
/// optionally, the age of its young generation.
pub(crate) struct HotCache<K, V> {
    young: HashMap<K, (V, usize)>,
    old: HashMap<K, (V, usize)>,
    young_bytes: usize,
    old_bytes: usize,
    /// Entries per generation.
    max_entries: usize,
    /// Approximate bytes per generation.
    max_bytes: usize,
    /// Longest the young generation stays young ([`HotCache::expire`]).
    max_age: Option<Duration>,
    /// When the young generation started.
    young_since: Instant,
}

impl<K: Hash + Eq + Clone, V> HotCache<K, V> {
    /// A cache holding about `max_entries` entries or `max_bytes` bytes per
    /// generation, whichever comes first, with no age limit.
    pub(crate) fn new(max_entries: usize, max_bytes: usize) -> HotCache<K, V> {
        HotCache {
            young: HashMap::new(),
            old: HashMap::new(),
            young_bytes: 0,
            old_bytes: 0,
            max_entries: max_entries.max(1),
            max_bytes: max_bytes.max(1),
            max_age: None,
            young_since: Instant::now(),
        }
    }

    /// The same cache, whose young generation is retired once older than
    /// `max_age` (checked by [`HotCache::expire`]): an entry untouched for
    /// `max_age` may be dropped, one untouched for twice that is.
    pub(crate) fn with_max_age(mut self, max_age: Duration) -> HotCache<K, V> {
        self.max_age = Some(max_age);
        self
    }

    /// The cached value for `key`, promoting it if it was aging out.
    pub(crate) fn get(&mut self, key: &K) -> Option<&V> {
        if !self.young.contains_key(key) {
            let (value, size) = self.old.remove(key)?;
            self.old_bytes = self.old_bytes.saturating_sub(size);
            self.insert(key.clone(), value, size);
        }
        self.young.get(key).map(|(v, _)| v)
    }

    /// Caches `value` (of about `size` bytes) under `key`.
    pub(crate) fn insert(&mut self, key: K, value: V, size: usize) {
        if let Some((_, old_size)) = self.old.remove(&key) {
            self.old_bytes = self.old_bytes.saturating_sub(old_size);
        }
        if let Some((_, old_size)) = self.young.insert(key, (value, size)) {
            self.young_bytes = self.young_bytes.saturating_sub(old_size);
        }
        self.young_bytes = self.young_bytes.saturating_add(size);
        if self.young.len() >= self.max_entries || self.young_bytes >= self.max_bytes {
            self.retire_young(Instant::now());
        }
    }

    /// Retires the young generation if it is older than the age limit, so
    /// that what was not touched since the previous retirement is dropped.
    /// The writer calls it after each commit and on its sweep timer (which
    /// also runs while no writes come in).
    pub(crate) fn expire(&mut self, now: Instant) {
        if let Some(max_age) = self.max_age
            && now.saturating_duration_since(self.young_since) >= max_age
        {
            self.retire_young(now);
        }
    }

    /// The young generation becomes the old one; the old one is dropped.
    fn retire_young(&mut self, now: Instant) {
        self.old = std::mem::take(&mut self.young);
        self.old_bytes = std::mem::take(&mut self.young_bytes);
        self.young_since = now;
    }

    /// Removes and returns the value for `key` (the writer takes a state
    /// out while a batch changes it and puts it back after the commit).
    pub(crate) fn take(&mut self, key: &K) -> Option<V> {
        if let Some((value, size)) = self.young.remove(key) {
            self.young_bytes = self.young_bytes.saturating_sub(size);
            return Some(value);
        }
        let (value, size) = self.old.remove(key)?;
        self.old_bytes = self.old_bytes.saturating_sub(size);
        Some(value)
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
        self.young_bytes.saturating_add(self.old_bytes)
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
            assert!(cache.bytes() < 200);
        }
        assert!(cache.len() <= 2);
    }

    #[test]
    fn byte_count_follows_takes_and_replacements() {
        let mut cache = HotCache::new(3, usize::MAX);
        cache.insert(1, (), 10);
        cache.insert(2, (), 20);
        cache.insert(3, (), 30); // full: 1, 2 and 3 are now the old generation
        assert_eq!(cache.bytes(), 60);
        cache.insert(2, (), 5); // replaces the old entry
        assert_eq!(cache.bytes(), 45);
        assert_eq!(cache.take(&3), Some(()));
        assert_eq!(cache.bytes(), 15);
        assert_eq!(cache.get(&1), Some(&())); // promoted, size kept
        assert_eq!(cache.bytes(), 15);
        assert_eq!(cache.len(), 2);
    }

    #[test]
    fn untouched_entries_age_out_and_touched_ones_stay() {
        let start = Instant::now();
        let age = Duration::from_secs(30);
        let mut cache = HotCache::new(usize::MAX, usize::MAX).with_max_age(age);
        cache.insert("finished", (), 100);
        cache.insert("streaming", (), 100);
        cache.expire(start + age / 2);
        assert_eq!(
            cache.len(),
            2,
            "younger than the age limit: nothing retired"
        );
        for step in 1..=4u32 {
            let now = start + age * step;
            cache.expire(now);
            // Touched between retirements, as a streamed message is.
            assert_eq!(cache.get(&"streaming"), Some(&()));
        }
        assert_eq!(cache.get(&"finished"), None);
        assert_eq!(cache.len(), 1);
        assert_eq!(cache.bytes(), 100);
    }

    #[test]
    fn no_age_limit_keeps_everything_within_bounds() {
        let start = Instant::now();
        let mut cache = HotCache::new(usize::MAX, usize::MAX);
        cache.insert(1, (), 1);
        cache.expire(start + Duration::from_secs(3600));
        cache.expire(start + Duration::from_secs(7200));
        assert_eq!(cache.get(&1), Some(&()));
    }
}
