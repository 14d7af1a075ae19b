//! An in-memory Bloom filter of every key in the `idents` and `profiles`
//! families, so that lookups of identifiers and profiles never seen before
//! (most lookups of a growing graph) skip RocksDB.
//!
//! No false negatives by construction: built from a full scan at start-up
//! and fed every key the driver writes. False positives only cost the read
//! the filter would have saved. Past its capacity the filter stops
//! answering "absent" rather than degrade.

use idgraph_store::{Cf, Store, StoreError};

const BITS_PER_KEY: u64 = 10;
const HASHES: u64 = 7;

#[derive(Debug)]
pub struct KnownKeys {
    bits: Vec<u64>,
    nbits: u64,
    capacity: u64,
    inserted: u64,
}

fn hash(cf: Cf, key: &[u8]) -> (u64, u64) {
    let h = xxhash_rust::xxh3::xxh3_128_with_seed(key, cf.index() as u64 + 1);
    ((h >> 64) as u64, (h as u64) | 1)
}

impl KnownKeys {
    /// Scans both families of `store` into a filter sized for at least
    /// `min_capacity` keys (and twice what is already stored). Two scans,
    /// one to count and one to insert, so start-up never holds the keys.
    pub fn build(store: &dyn Store, min_capacity: u64) -> Result<Self, StoreError> {
        let mut stored = 0u64;
        for cf in [Cf::Idents, Cf::Profiles] {
            store.scan(cf, &[], &mut |_, _| {
                stored += 1;
                true
            })?;
        }
        let capacity = min_capacity.max(2 * stored).max(1024);
        let nbits = (capacity * BITS_PER_KEY).div_ceil(64) * 64;
        let mut f = Self { bits: vec![0; (nbits / 64) as usize], nbits, capacity, inserted: 0 };
        for cf in [Cf::Idents, Cf::Profiles] {
            store.scan(cf, &[], &mut |k, _| {
                f.insert(cf, k);
                true
            })?;
        }
        Ok(f)
    }

    /// The i-th probe position (double hashing, mapped onto `nbits`
    /// without a modulo).
    fn bit(&self, h1: u64, h2: u64, i: u64) -> u64 {
        let h = h1.wrapping_add(i.wrapping_mul(h2));
        ((u128::from(h) * u128::from(self.nbits)) >> 64) as u64
    }

    pub fn insert(&mut self, cf: Cf, key: &[u8]) {
        let (h1, h2) = hash(cf, key);
        for i in 0..HASHES {
            let b = self.bit(h1, h2, i);
            self.bits[(b / 64) as usize] |= 1 << (b % 64);
        }
        self.inserted += 1;
    }

    /// False means the key was never written (certain); true means maybe.
    pub fn may_contain(&self, cf: Cf, key: &[u8]) -> bool {
        if self.inserted > self.capacity {
            return true;
        }
        let (h1, h2) = hash(cf, key);
        (0..HASHES).all(|i| {
            let b = self.bit(h1, h2, i);
            self.bits[(b / 64) as usize] & (1 << (b % 64)) != 0
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use idgraph_store::{Batch, MemStore};

    #[test]
    fn never_forgets_a_key_and_rarely_claims_one() {
        let store = MemStore::new();
        let mut b = Batch::default();
        for i in 0..1000u32 {
            b.put(Cf::Idents, i.to_be_bytes().to_vec(), vec![1]);
        }
        store.write(b).unwrap();
        let mut f = KnownKeys::build(&store, 10_000).unwrap();
        for i in 0..1000u32 {
            assert!(f.may_contain(Cf::Idents, &i.to_be_bytes()));
        }
        f.insert(Cf::Profiles, b"p");
        assert!(f.may_contain(Cf::Profiles, b"p"));
        let false_positives = (1000..101_000u32).filter(|i| f.may_contain(Cf::Idents, &i.to_be_bytes())).count();
        assert!(false_positives < 1000, "{false_positives} false positives in 100k");
    }

    #[test]
    fn past_capacity_it_stops_answering_absent() {
        let mut f = KnownKeys::build(&MemStore::new(), 0).unwrap();
        for i in 0..2000u32 {
            f.insert(Cf::Idents, &i.to_be_bytes());
        }
        assert!(f.may_contain(Cf::Idents, b"never written"));
    }
}
