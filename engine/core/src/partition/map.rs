//! The record cache's maps: entries in a vector, found through an
//! open-addressed index over the hash each key carries.
//!
//! In place of a general hash map for one reason: a loop that knows its
//! keys a few steps ahead can prefetch the index slot a key will probe
//! ([`CacheMap::prefetch_slot`]) and, a few steps later, the entry that
//! slot points at ([`CacheMap::prefetch_entry`]). The maps are far larger
//! than the processor's caches, so each lookup otherwise waits for memory
//! twice (three times with a general map's control bytes).
//!
//! An entry keeps its position while it is in the map;
//! [`CacheMap::remove_at`] frees the position of the entry it removes (new
//! entries take them).

use crate::ident::IdentKey;
use crate::prefetch;
use crate::profile_id::ProfileId;

/// A key with a well-mixed 64-bit hash that is cheap to get.
pub(super) trait CacheKey: Eq {
    fn cache_hash(&self) -> u64;
}

impl CacheKey for IdentKey {
    /// The stable hash the key carries (computed once, on the parser's
    /// thread).
    fn cache_hash(&self) -> u64 {
        self.stable_hash()
    }
}

impl CacheKey for ProfileId {
    /// Bytes 6..14 are a hash (an anchor's stable hash for a new profile);
    /// the time and the last bytes are mixed in for split pieces, whose
    /// IDs share nothing else.
    fn cache_hash(&self) -> u64 {
        let mut a = [0u8; 8];
        let mut b = [0u8; 8];
        a.copy_from_slice(&self.0[..8]);
        b.copy_from_slice(&self.0[8..]);
        (u64::from_le_bytes(a) ^ u64::from_le_bytes(b).rotate_left(29)).wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(32)
    }
}

/// The smallest index: 16 slots.
const MIN_BITS: u32 = 4;
const POSITION: u64 = 0xFFFF_FFFF;

/// The part of a hash a slot keeps (its low half): it picks the home slot
/// and tells most other keys apart without reading their entry.
fn tag(h: u64) -> u64 {
    h & POSITION
}

#[derive(Debug)]
pub(super) struct CacheMap<K, V> {
    /// Entries by position; `None` is a free position (taken by the next
    /// insert, last freed first).
    entries: Vec<Option<(K, V)>>,
    free: Vec<usize>,
    live: usize,
    /// Each slot is 0 (empty) or `tag << 32 | (position + 1)`. At most half
    /// full; the length is `1 << bits`, or 0 before the first insert.
    slots: Vec<u64>,
    bits: u32,
}

impl<K, V> Default for CacheMap<K, V> {
    fn default() -> Self {
        Self { entries: Vec::new(), free: Vec::new(), live: 0, slots: Vec::new(), bits: 0 }
    }
}

impl<K: CacheKey, V> CacheMap<K, V> {
    pub fn len(&self) -> usize {
        self.live
    }

    fn home(&self, t: u64) -> usize {
        ((t as u32).wrapping_mul(0x9E37_79B9) >> (32 - self.bits)) as usize
    }

    fn next(&self, s: usize) -> usize {
        (s + 1) & (self.slots.len() - 1)
    }

    fn key_at(&self, v: u64) -> Option<&K> {
        self.entries[(v & POSITION) as usize - 1].as_ref().map(|(k, _)| k)
    }

    /// The slot holding `k`, or the empty slot its probe ends at.
    fn probe(&self, k: &K) -> Result<usize, usize> {
        let t = tag(k.cache_hash());
        let mut s = self.home(t);
        loop {
            let v = self.slots[s];
            if v == 0 {
                return Err(s);
            }
            if v >> 32 == t && self.key_at(v) == Some(k) {
                return Ok(s);
            }
            s = self.next(s);
        }
    }

    pub fn get_index_of(&self, k: &K) -> Option<usize> {
        if self.slots.is_empty() {
            return None;
        }
        self.probe(k).ok().map(|s| (self.slots[s] & POSITION) as usize - 1)
    }

    pub fn contains_key(&self, k: &K) -> bool {
        self.get_index_of(k).is_some()
    }

    pub fn get(&self, k: &K) -> Option<&V> {
        self.get_index_of(k).and_then(|i| self.entries[i].as_ref()).map(|(_, v)| v)
    }

    pub fn get_index(&self, i: usize) -> Option<(&K, &V)> {
        self.entries.get(i)?.as_ref().map(|(k, v)| (k, v))
    }

    pub fn get_index_mut(&mut self, i: usize) -> Option<(&K, &mut V)> {
        self.entries.get_mut(i)?.as_mut().map(|(k, v)| (&*k, v))
    }

    /// Inserts or replaces; the entry's position and the value replaced.
    pub fn insert_full(&mut self, k: K, v: V) -> (usize, Option<V>) {
        if (self.live + 1) * 2 > self.slots.len() {
            self.grow();
        }
        match self.probe(&k) {
            Ok(s) => {
                let i = (self.slots[s] & POSITION) as usize - 1;
                let old = self.entries[i].as_mut().map(|e| std::mem::replace(&mut e.1, v));
                (i, old)
            }
            Err(s) => {
                let t = tag(k.cache_hash());
                let i = match self.free.pop() {
                    Some(i) => {
                        self.entries[i] = Some((k, v));
                        i
                    }
                    None => {
                        self.entries.push(Some((k, v)));
                        self.entries.len() - 1
                    }
                };
                self.slots[s] = t << 32 | (i as u64 + 1);
                self.live += 1;
                (i, None)
            }
        }
    }

    /// Doubles the index (or creates it) and re-places every entry.
    fn grow(&mut self) {
        self.bits = (self.bits + 1).max(MIN_BITS);
        self.slots = vec![0; 1 << self.bits];
        for i in 0..self.entries.len() {
            let Some((k, _)) = &self.entries[i] else { continue };
            let t = tag(k.cache_hash());
            let mut s = self.home(t);
            while self.slots[s] != 0 {
                s = self.next(s);
            }
            self.slots[s] = t << 32 | (i as u64 + 1);
        }
    }

    /// Removes the entry at position `i` (none there: `None`) and frees
    /// the position for a later insert.
    pub fn remove_at(&mut self, i: usize) -> Option<(K, V)> {
        let (k, _) = self.entries.get(i)?.as_ref()?;
        // The slot pointing here, found from the key's home.
        let t = tag(k.cache_hash());
        let mut s = self.home(t);
        while self.slots[s] != 0 && (self.slots[s] & POSITION) as usize != i + 1 {
            s = self.next(s);
        }
        if self.slots[s] != 0 {
            self.erase(s);
        }
        self.free.push(i);
        self.live -= 1;
        self.entries[i].take()
    }

    /// The positions that hold entries, in order.
    pub fn positions(&self) -> impl Iterator<Item = usize> + '_ {
        self.entries.iter().enumerate().filter_map(|(i, e)| e.as_ref().map(|_| i))
    }

    /// Empties slot `s`, moving later slots of its run back so every probe
    /// still finds its key (no tombstones).
    fn erase(&mut self, s: usize) {
        let (mut hole, mut j) = (s, s);
        loop {
            j = self.next(j);
            let v = self.slots[j];
            if v == 0 {
                break;
            }
            let h = self.home(v >> 32);
            // `v` stays unless the hole lies on its probe path, that is
            // unless its home is outside (hole, j] (cyclically).
            let stays = if hole <= j { hole < h && h <= j } else { hole < h || h <= j };
            if !stays {
                self.slots[hole] = v;
                hole = j;
            }
        }
        self.slots[hole] = 0;
    }

    /// Asks the processor for the index slot a lookup of `k` starts at.
    pub fn prefetch_slot(&self, k: &K) {
        if !self.slots.is_empty() {
            prefetch::read(&self.slots[self.home(tag(k.cache_hash()))]);
        }
    }

    /// Asks the processor for the entry a lookup of `k` will compare
    /// first: reads the index (prefetch its slot a few steps before).
    pub fn prefetch_entry(&self, k: &K) {
        if self.slots.is_empty() {
            return;
        }
        let t = tag(k.cache_hash());
        let mut s = self.home(t);
        loop {
            match self.slots[s] {
                0 => return,
                v if v >> 32 == t => {
                    self.prefetch_position((v & POSITION) as usize - 1);
                    return;
                }
                _ => s = self.next(s),
            }
        }
    }

    /// Asks the processor for the entry at position `i`.
    pub fn prefetch_position(&self, i: usize) {
        if let Some(Some(e)) = self.entries.get(i) {
            prefetch::read(&e.0);
            prefetch::read(&e.1);
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.entries.iter().filter_map(|e| e.as_ref().map(|(k, v)| (k, v)))
    }
}

/// The value at a position a lookup or insert gave (a free one is a bug).
impl<K, V> std::ops::Index<usize> for CacheMap<K, V> {
    type Output = V;
    fn index(&self, i: usize) -> &V {
        &self.entries[i].as_ref().expect("a position the map gave").1
    }
}

impl<K, V> std::ops::IndexMut<usize> for CacheMap<K, V> {
    fn index_mut(&mut self, i: usize) -> &mut V {
        &mut self.entries[i].as_mut().expect("a position the map gave").1
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    /// A key whose hash the test picks, to force collisions and long runs.
    #[derive(Debug, Clone, PartialEq, Eq, Hash)]
    struct K(u32, u64);

    impl CacheKey for K {
        fn cache_hash(&self) -> u64 {
            self.1
        }
    }

    /// Every entry is found at its position, every slot points at an entry
    /// whose key it finds, and the index is at most half full.
    fn check(m: &CacheMap<K, u32>, oracle: &HashMap<K, u32>) {
        assert_eq!(m.len(), oracle.len());
        for (k, v) in oracle {
            let i = m.get_index_of(k).unwrap();
            assert_eq!(m.get_index(i), Some((k, v)));
            assert_eq!(m.get(k), Some(v));
        }
        let used = m.slots.iter().filter(|&&s| s != 0).count();
        assert_eq!(used, m.len());
        assert!(m.len() * 2 <= m.slots.len() || m.slots.is_empty());
        assert_eq!(m.iter().count(), m.len());
    }

    #[derive(Debug, Clone)]
    enum Op {
        Insert(u32, u64, u32),
        /// Removes, by position, the entries whose `(key + value) % d` is
        /// (not) zero: a few or most.
        Remove(u32, bool),
        Get(u32, u64),
    }

    fn op() -> impl Strategy<Value = Op> {
        // Few distinct hashes (collisions and long runs), some wrapping
        // around the index's end.
        let hash = prop_oneof![0u64..8, any::<u64>(), Just(u64::from(u32::MAX)), Just(0xFFFF_FFFF_0000_0000)];
        prop_oneof![
            6 => (0u32..200, hash.clone(), any::<u32>()).prop_map(|(k, h, v)| Op::Insert(k, h, v)),
            1 => (2u32..5, any::<bool>()).prop_map(|(d, most)| Op::Remove(d, most)),
            2 => (0u32..200, hash).prop_map(|(k, h)| Op::Get(k, h)),
        ]
    }

    proptest! {
        #[test]
        fn behaves_as_a_map(ops in proptest::collection::vec(op(), 1..400)) {
            let mut m: CacheMap<K, u32> = CacheMap::default();
            let mut oracle: HashMap<K, u32> = HashMap::new();
            for o in ops {
                match o {
                    Op::Insert(k, h, v) => {
                        let key = K(k, h);
                        let (i, old) = m.insert_full(key.clone(), v);
                        prop_assert_eq!(old, oracle.insert(key.clone(), v));
                        prop_assert_eq!(m.get_index(i), Some((&key, &v)));
                    }
                    Op::Remove(d, most) => {
                        let keep = |k: &K, v: &u32| k.0.wrapping_add(*v).is_multiple_of(d) == most;
                        let gone: Vec<usize> = m.positions().filter(|&i| m.get_index(i).is_some_and(|(k, v)| !keep(k, v))).collect();
                        for i in gone {
                            let (k, v) = m.remove_at(i).unwrap();
                            prop_assert_eq!(oracle.remove(&k), Some(v));
                            prop_assert_eq!(m.remove_at(i), None);
                        }
                        prop_assert!(oracle.iter().all(|(k, v)| keep(k, v)));
                    }
                    Op::Get(k, h) => prop_assert_eq!(m.get(&K(k, h)), oracle.get(&K(k, h))),
                }
                check(&m, &oracle);
            }
        }
    }

    #[test]
    fn prefetches_change_nothing_and_positions_hold_until_removed() {
        let mut m: CacheMap<K, u32> = CacheMap::default();
        m.prefetch_slot(&K(1, 1));
        m.prefetch_entry(&K(1, 1));
        let at: Vec<usize> = (0..100).map(|i| m.insert_full(K(i, u64::from(i % 7)), i).0).collect();
        assert_eq!(at, (0..100).collect::<Vec<_>>());
        for i in 0..100 {
            m.prefetch_slot(&K(i, u64::from(i % 7)));
            m.prefetch_entry(&K(i, u64::from(i % 7)));
            assert_eq!(m[i as usize], i);
        }
        m[5] = 500;
        assert_eq!(m.get(&K(5, 5)), Some(&500));
        // Removing entries frees their positions; the others keep theirs,
        // and the next insert takes the last position freed.
        for i in (0..100).step_by(10) {
            assert_eq!(m.remove_at(i), Some((K(i as u32, (i % 7) as u64), i as u32)));
        }
        assert_eq!(m.remove_at(1000), None);
        assert_eq!(m.positions().count(), 90);
        assert_eq!(m.get_index(0), None);
        assert_eq!(m.get_index_of(&K(0, 0)), None);
        assert_eq!(m.get_index(99), Some((&K(99, 99 % 7), &99)));
        assert_eq!(m.iter().count(), 90);
        assert_eq!(m.insert_full(K(1000, 3), 7), (90, None));
        assert_eq!(m.insert_full(K(1001, 3), 8), (80, None));
        assert_eq!(m.get(&K(1000, 3)), Some(&7));
    }

    #[test]
    fn profile_ids_that_share_their_hash_bytes_spread() {
        // Split pieces may share bytes 6..14 with each other; the time and
        // the last bytes still tell their hashes apart.
        let ids: Vec<ProfileId> = (0u8..64)
            .map(|i| {
                let mut id = [7u8; 16];
                id[5] = i;
                id[15] = i.wrapping_mul(3);
                ProfileId(id)
            })
            .collect();
        let tags: std::collections::HashSet<u64> = ids.iter().map(|id| tag(id.cache_hash())).collect();
        assert_eq!(tags.len(), ids.len());
    }
}
