//! The owner cache: which profile owns an identifier, for many more
//! identifiers than the record cache holds (24 bytes each, against ~150
//! for an identifier's key and decoded record there), so the route of a returning
//! person's event finds its profile without reading the identifier's
//! record (ADR 0008).
//!
//! It holds only identifiers that are owned and not shared, with exactly
//! the owner their record holds: the partition sets an entry whenever a
//! record is loaded or drained (every change of a record is drained
//! before its slot can be evicted), and consults it only for identifiers
//! whose record is not in the record cache. A lookup therefore answers
//! what the record would, or nothing; the state machine's decisions do not
//! depend on whether it answered.
//!
//! Bounded: a fixed array of 8-way buckets, allocated zeroed (pages are
//! touched as they fill); a full bucket replaces its entries in turn. A
//! key is told apart by two independent 64-bit hashes (its stable hash
//! picks the bucket, the second hash is stored), not by its bytes: two
//! identifiers of one partition would have to agree on both to be
//! confused. The bucket comes from the hash the key carries, so callers
//! can prefetch a bucket ([`OwnerCache::prefetch`]) for the price of a
//! multiplication.

use crate::ident::IdentKey;
use crate::profile_id::ProfileId;

const WAYS: usize = 8;
/// Bytes one bucket costs: the checks, the owners and the turn.
const BUCKET_BYTES: usize = WAYS * (8 + 16) + 1;

#[derive(Debug, Default)]
pub struct OwnerCache {
    /// Per bucket, each way's check (the key's second hash, never 0; 0 is
    /// an empty way).
    checks: Vec<[u64; WAYS]>,
    owners: Vec<[[u8; 16]; WAYS]>,
    /// Per bucket, the way a full bucket replaces next.
    turn: Vec<u8>,
    /// Lookups answered.
    pub hits: u64,
}

impl OwnerCache {
    /// A cache using at most `bytes` of memory (none when too small for a
    /// bucket: every lookup then misses).
    pub fn with_bytes(bytes: usize) -> Self {
        let n = bytes / BUCKET_BYTES;
        Self { checks: vec![[0; WAYS]; n], owners: vec![[[0; 16]; WAYS]; n], turn: vec![0; n], hits: 0 }
    }

    /// The bucket of a key: from its stable hash (computed once, held in
    /// the key), by its low half, which the partition choice (the high
    /// bits) leaves independent.
    fn bucket(&self, k: &IdentKey) -> Option<usize> {
        if self.checks.is_empty() {
            return None;
        }
        Some(((u128::from(k.stable_hash().rotate_left(32)) * self.checks.len() as u128) >> 64) as usize)
    }

    /// The bucket and the check of a key: the check is the second,
    /// independent hash (never 0).
    fn place(&self, k: &IdentKey) -> Option<(usize, u64)> {
        Some((self.bucket(k)?, k.second_hash().max(1)))
    }

    /// Asks the processor to bring `k`'s bucket into its cache, ahead of a
    /// lookup or a set a few keys later: the table is far larger than the
    /// caches, so each of those otherwise waits for memory in turn.
    pub fn prefetch(&self, k: &IdentKey) {
        if let Some(b) = self.bucket(k) {
            crate::prefetch::read(&self.checks[b]);
            // The owners of a bucket span two cache lines; a hit reads one.
            crate::prefetch::read(&self.owners[b][0]);
            crate::prefetch::read(&self.owners[b][WAYS / 2]);
        }
    }

    /// The owner of `k`, if cached, counted as a hit: for the lookup that
    /// replaces a read.
    pub fn get(&mut self, k: &IdentKey) -> Option<ProfileId> {
        let o = self.peek(k)?;
        self.hits += 1;
        Some(o)
    }

    /// [`Self::get`] without counting (a prefetch that the lookup replacing
    /// the read will repeat).
    pub fn peek(&self, k: &IdentKey) -> Option<ProfileId> {
        let (b, check) = self.place(k)?;
        let way = self.checks[b].iter().position(|&c| c == check)?;
        Some(ProfileId(self.owners[b][way]))
    }

    /// Whether [`Self::get`] would answer (counts no hit).
    pub fn knows(&self, k: &IdentKey) -> bool {
        self.peek(k).is_some()
    }

    /// Records that `k` is owned by `owner` (owned and not shared), or
    /// forgets it (`None`).
    pub fn set(&mut self, k: &IdentKey, owner: Option<ProfileId>) {
        let Some((b, check)) = self.place(k) else { return };
        let found = self.checks[b].iter().position(|&c| c == check);
        match (found, owner) {
            (Some(way), Some(o)) => self.owners[b][way] = o.0,
            (Some(way), None) => self.checks[b][way] = 0,
            (None, Some(o)) => {
                let way = match self.checks[b].iter().position(|&c| c == 0) {
                    Some(w) => w,
                    None => {
                        let w = self.turn[b] as usize % WAYS;
                        self.turn[b] = ((w + 1) % WAYS) as u8;
                        w
                    }
                };
                self.checks[b][way] = check;
                self.owners[b][way] = o.0;
            }
            (None, None) => {}
        }
    }

    /// Entries held (a scan).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.checks.iter().map(|b| b.iter().filter(|&&c| c != 0).count()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ident::IdentType;

    fn key(i: u32) -> IdentKey {
        IdentKey::new(IdentType::EMAIL, format!("p{i}@x.co"))
    }

    fn id(i: u32) -> ProfileId {
        ProfileId::for_new(i64::from(i), &key(i))
    }

    #[test]
    fn answers_what_was_set_and_forgets_on_none() {
        let mut c = OwnerCache::with_bytes(1 << 16);
        for i in 0..100 {
            c.set(&key(i), Some(id(i)));
        }
        c.set(&key(7), Some(id(1000)));
        c.set(&key(8), None);
        c.set(&key(5000), None);
        for i in 0..100 {
            let want = match i {
                7 => Some(id(1000)),
                8 => None,
                _ => Some(id(i)),
            };
            assert_eq!(c.get(&key(i)), want, "key {i}");
        }
        assert_eq!(c.get(&key(5000)), None);
        assert!(c.knows(&key(7)) && !c.knows(&key(8)));
        assert_eq!(c.len(), 99);
        assert_eq!(c.hits, 99);
    }

    #[test]
    fn a_full_cache_stays_bounded_and_never_answers_wrong() {
        // Two buckets: 16 entries at most.
        let mut c = OwnerCache::with_bytes(2 * BUCKET_BYTES);
        for i in 0..1000 {
            c.set(&key(i), Some(id(i)));
        }
        assert!(c.len() <= 2 * WAYS);
        let answered: Vec<u32> = (0..1000).filter(|&i| c.get(&key(i)).is_some()).collect();
        assert_eq!(answered.len(), c.len());
        for i in answered {
            assert_eq!(c.get(&key(i)), Some(id(i)));
        }
        // The last key set is always there.
        assert_eq!(c.get(&key(999)), Some(id(999)));
    }

    #[test]
    fn the_keys_of_one_partition_spread_over_every_bucket() {
        // The partition is picked by the stable hash's high bits; were the
        // bucket picked by them too, partition 3 of 16 would fill a
        // sixteenth of the table and evict the rest of its keys early.
        let c = OwnerCache::with_bytes(64 * BUCKET_BYTES);
        let mine: Vec<IdentKey> = (0..20_000).map(key).filter(|k| k.partition(16) == 3).take(1_000).collect();
        assert_eq!(mine.len(), 1_000);
        let buckets: std::collections::HashSet<usize> = mine.iter().filter_map(|k| c.bucket(k)).collect();
        assert!(buckets.len() >= 60, "{} of 64 buckets used", buckets.len());
        // A prefetch changes nothing.
        let mut c = c;
        c.set(&mine[0], Some(id(0)));
        c.prefetch(&mine[0]);
        c.prefetch(&mine[1]);
        assert_eq!(c.get(&mine[0]), Some(id(0)));
        assert_eq!(c.get(&mine[1]), None);
    }

    #[test]
    fn too_small_a_cache_answers_nothing() {
        let mut c = OwnerCache::with_bytes(BUCKET_BYTES - 1);
        c.set(&key(1), Some(id(1)));
        assert_eq!(c.get(&key(1)), None);
        assert_eq!(c.len(), 0);
    }
}
