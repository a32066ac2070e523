//! The one bounded map of the workspace: every cache it holds is bounded in entries and in
//! bytes, and may let its entries expire, so no cache hand-rolls its own bookkeeping.
//!
//! Eviction order is insertion order: when a bound would be passed, the entries inserted
//! longest ago go first, whether they have expired or not. Replacing a key counts as a new
//! insertion (it moves to the back). An expired entry is hidden from [`BoundedMap::get`] but
//! keeps its place and its bytes until it is evicted, replaced or removed, so
//! [`BoundedMap::peek`] can still answer "the value last seen, whatever its age".
//!
//! The map is not synchronised: each owner keeps it behind its own lock.

use std::borrow::Borrow;
use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::time::Duration;

use tokio::time::Instant;

/// What one entry costs beyond the bytes its owner weighs: the key's second copy in the
/// eviction order, the map slot and the bookkeeping around them.
pub const ENTRY_OVERHEAD: usize = 96;

/// How much a [`BoundedMap`] may hold, and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    /// Most entries held.
    pub max_entries: usize,
    /// Most bytes held: the weights given to [`BoundedMap::insert`] plus [`ENTRY_OVERHEAD`]
    /// per entry.
    pub max_bytes: usize,
    /// How long an entry is returned by [`BoundedMap::get`] after its insertion; `None` for
    /// ever.
    pub ttl: Option<Duration>,
}

struct Slot<V> {
    value: V,
    inserted: Instant,
    /// Which insertion made it, to tell its order record from those of entries it replaced.
    seq: u64,
    bytes: usize,
}

/// A map bounded by [`Bounds`]; see the module documentation for the eviction order.
pub struct BoundedMap<K, V> {
    bounds: Bounds,
    slots: HashMap<K, Slot<V>>,
    /// Keys, oldest insertion first; a replaced or removed key leaves a stale record behind,
    /// skipped when met.
    order: VecDeque<(K, u64)>,
    bytes: usize,
    next_seq: u64,
}

impl<K: std::fmt::Debug, V> std::fmt::Debug for BoundedMap<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BoundedMap")
            .field("bounds", &self.bounds)
            .field("entries", &self.slots.len())
            .field("bytes", &self.bytes)
            .finish()
    }
}

impl<K: Hash + Eq + Clone, V> BoundedMap<K, V> {
    /// An empty map held within `bounds`.
    pub fn new(bounds: Bounds) -> Self {
        Self {
            bounds,
            slots: HashMap::new(),
            order: VecDeque::new(),
            bytes: 0,
            next_seq: 0,
        }
    }

    /// The value of `key` if it has not expired.
    pub fn get<Q>(&self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let slot = self.slots.get(key)?;
        let fresh = self
            .bounds
            .ttl
            .is_none_or(|ttl| slot.inserted.elapsed() < ttl);
        fresh.then_some(&slot.value)
    }

    /// The value of `key`, expired or not.
    pub fn peek<Q>(&self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.slots.get(key).map(|slot| &slot.value)
    }

    /// Holds `value` under `key` (replacing what was there), weighing `bytes` besides
    /// [`ENTRY_OVERHEAD`], then evicts the oldest entries until both bounds hold. A value
    /// that alone would pass the byte bound is not held (and the key's old value is dropped):
    /// `false`.
    pub fn insert(&mut self, key: K, value: V, bytes: usize) -> bool {
        self.remove(&key);
        let bytes = bytes.saturating_add(ENTRY_OVERHEAD);
        if bytes > self.bounds.max_bytes || self.bounds.max_entries == 0 {
            return false;
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        self.bytes += bytes;
        self.order.push_back((key.clone(), seq));
        self.slots.insert(
            key,
            Slot {
                value,
                inserted: Instant::now(),
                seq,
                bytes,
            },
        );
        while self.slots.len() > self.bounds.max_entries || self.bytes > self.bounds.max_bytes {
            let Some((key, seq)) = self.order.pop_front() else {
                break;
            };
            // Only the order record of the entry as it stands evicts it.
            if self.slots.get(&key).is_some_and(|s| s.seq == seq) {
                self.remove(&key);
            }
        }
        // Replaced and removed entries leave records behind; keep the list near the map's size.
        if self.order.len() > 2 * self.slots.len() + 16 {
            let slots = &self.slots;
            self.order
                .retain(|(k, seq)| slots.get(k).is_some_and(|s| s.seq == *seq));
        }
        true
    }

    /// Drops `key`'s entry, answering its value.
    pub fn remove<Q>(&mut self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let gone = self.slots.remove(key)?;
        self.bytes -= gone.bytes;
        Some(gone.value)
    }

    /// Entries held now, expired ones included.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Bytes held now, as weighed at insertion plus [`ENTRY_OVERHEAD`] each.
    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(max_entries: usize, max_bytes: usize, ttl: Option<u64>) -> BoundedMap<String, u32> {
        BoundedMap::new(Bounds {
            max_entries,
            max_bytes,
            ttl: ttl.map(Duration::from_secs),
        })
    }

    fn keys(m: &BoundedMap<String, u32>, n: u32) -> Vec<u32> {
        (0..n)
            .filter(|i| m.peek(&format!("k{i}")).is_some())
            .collect()
    }

    #[test]
    fn the_oldest_insertions_go_first_past_the_entry_bound() {
        let mut m = map(3, usize::MAX, None);
        for i in 0..5 {
            assert!(m.insert(format!("k{i}"), i, 0));
        }
        assert_eq!(keys(&m, 5), [2, 3, 4]);
        assert_eq!((m.len(), m.bytes()), (3, 3 * ENTRY_OVERHEAD));
    }

    #[test]
    fn the_oldest_insertions_go_first_past_the_byte_bound() {
        let one = ENTRY_OVERHEAD + 100;
        let mut m = map(100, 2 * one + one / 2, None);
        for i in 0..4 {
            m.insert(format!("k{i}"), i, 100);
        }
        assert_eq!(keys(&m, 4), [2, 3]);
        assert_eq!(m.bytes(), 2 * one);
        // One big value pushes out as many as it needs.
        m.insert("k4".into(), 4, 2 * one - ENTRY_OVERHEAD);
        assert_eq!(keys(&m, 5), [4]);
        // A value that alone passes the bound is not held, and its key's old value goes.
        assert!(!m.insert("k4".into(), 5, 3 * one));
        assert!(m.is_empty() && m.bytes() == 0);
        assert!(!map(0, usize::MAX, None).insert("k".into(), 1, 0));
    }

    #[test]
    fn replacing_moves_a_key_to_the_back_and_keeps_the_byte_count_right() {
        let mut m = map(3, usize::MAX, None);
        m.insert("k0".into(), 0, 10);
        m.insert("k1".into(), 1, 50);
        m.insert("k0".into(), 7, 20);
        assert_eq!(m.bytes(), 70 + 2 * ENTRY_OVERHEAD);
        // k0's first order record must not evict its replacement: k1 is older than it now.
        m.insert("k2".into(), 2, 0);
        m.insert("k3".into(), 3, 0);
        assert_eq!(keys(&m, 4), [0, 2, 3]);
        assert_eq!(m.get("k0"), Some(&7));
        assert_eq!(m.remove("k0"), Some(7));
        assert_eq!(m.bytes(), 2 * ENTRY_OVERHEAD);
        // Many replacements do not grow the order records without bound.
        for i in 0..1000 {
            m.insert("k2".into(), i, 0);
        }
        assert!(m.order.len() <= 2 * m.len() + 17, "{}", m.order.len());
    }

    #[tokio::test(start_paused = true)]
    async fn an_entry_is_returned_for_its_ttl_then_only_peeked() {
        let mut m = map(10, usize::MAX, Some(30));
        m.insert("k0".into(), 0, 0);
        tokio::time::advance(Duration::from_secs(20)).await;
        m.insert("k1".into(), 1, 0);
        tokio::time::advance(Duration::from_secs(9)).await;
        assert_eq!((m.get("k0"), m.get("k1")), (Some(&0), Some(&1)));
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!((m.get("k0"), m.get("k1")), (None, Some(&1)));
        assert_eq!(m.peek("k0"), Some(&0), "expired, yet still known");
        // Replacing restarts its time.
        m.insert("k0".into(), 2, 0);
        tokio::time::advance(Duration::from_secs(29)).await;
        assert_eq!((m.get("k0"), m.get("k1")), (Some(&2), None));
    }

    #[tokio::test(start_paused = true)]
    async fn a_zero_ttl_returns_nothing() {
        let mut m = map(10, usize::MAX, Some(0));
        m.insert("k0".into(), 0, 0);
        assert_eq!(m.get("k0"), None);
    }
}
