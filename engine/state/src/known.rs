//! An in-memory Bloom filter of every key in the `idents` and `profiles`
//! families, so that lookups of identifiers and profiles never seen before
//! (most lookups of a growing graph) skip RocksDB.
//!
//! No false negatives by construction: built from a full scan at start-up
//! and fed every key the driver writes. False positives only cost the read
//! the filter would have saved. When a filter reaches its capacity, a new
//! one of twice the size takes the inserts and lookups ask both (a
//! scalable Bloom filter): a long-running `run`, whose state grows well
//! past what it started with, keeps skipping reads of new keys. Each
//! filter is blocked: a key's bits all lie in one cache line, so a lookup
//! costs one memory miss per filter.

use idgraph_core::ident::IdentKey;
use idgraph_core::profile_id::ProfileId;
use idgraph_store::{Cf, Store, StoreError};

const BITS_PER_KEY: u64 = 10;
const HASHES: u64 = 7;
/// 64-bit words per block (512 bits, one cache line).
const WORDS_PER_BLOCK: u64 = 8;

#[derive(Debug)]
pub struct KnownKeys {
    /// Oldest first; inserts go to the last. Never empty.
    layers: Vec<Layer>,
}

/// One blocked Bloom filter sized for `capacity` keys.
#[derive(Debug)]
struct Layer {
    bits: Vec<u64>,
    capacity: u64,
    inserted: u64,
}

impl Layer {
    fn new(capacity: u64) -> Self {
        let nbits = (capacity * BITS_PER_KEY).div_ceil(512) * 512;
        Self { bits: vec![0; (nbits / 64) as usize], capacity, inserted: 0 }
    }

    /// The word holding a key's bits: one 512-bit block (a cache line)
    /// per key, picked by `h1` without a modulo, so a lookup costs one
    /// cache miss instead of one per probe (the filter is tens of MB).
    fn block(&self, h1: u64) -> usize {
        let blocks = self.bits.len() as u64 / WORDS_PER_BLOCK;
        (((u128::from(h1) * u128::from(blocks)) >> 64) as u64 * WORDS_PER_BLOCK) as usize
    }

    /// The i-th probe inside the block: word offset and mask, from nine
    /// bits of `h2` each.
    fn probe_bit(h2: u64, i: u64) -> (usize, u64) {
        let pos = (h2 >> (9 * i)) & 511;
        ((pos / 64) as usize, 1 << (pos % 64))
    }

    fn set(&mut self, h1: u64, h2: u64) {
        let block = self.block(h1);
        for i in 0..HASHES {
            let (w, m) = Self::probe_bit(h2, i);
            self.bits[block + w] |= m;
        }
        self.inserted += 1;
    }

    fn probe(&self, h1: u64, h2: u64) -> bool {
        let block = self.block(h1);
        (0..HASHES).all(|i| {
            let (w, m) = Self::probe_bit(h2, i);
            self.bits[block + w] & m != 0
        })
    }
}

/// The splitmix64 finalizer.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The two probe hashes of a key, from its family, partition and a 64-bit
/// hash of the rest of the key. Lookups by [`IdentKey`] use the stable hash
/// the key carries, so an absent identifier costs no key encoding and no
/// hashing of its bytes.
fn probe_hashes(cf: Cf, partition: u16, h: u64) -> (u64, u64) {
    let a = mix(h ^ mix(((cf.index() as u64 + 1) << 16) | u64::from(partition)));
    (a, mix(a ^ 0x9e37_79b9_7f4a_7c15) | 1)
}

fn profile_hash(id: &[u8; 16]) -> u64 {
    let w = u128::from_be_bytes(*id);
    mix((w as u64) ^ mix((w >> 64) as u64))
}

/// The probe hashes of an encoded key (`layout`: partition, then the
/// identifier's encoding or the profile ID), equal to those of its parts.
fn hash(cf: Cf, key: &[u8]) -> (u64, u64) {
    let (p, rest) = match key {
        [a, b, rest @ ..] => (u16::from_be_bytes([*a, *b]), rest),
        _ => (0, key),
    };
    let h = match (cf, <&[u8; 16]>::try_from(rest)) {
        (Cf::Profiles, Ok(id)) => profile_hash(id),
        // The identifier's hash is of its text, which a packed UUID is not.
        (Cf::Idents, _) => idgraph_core::ident::IdentKey::decode(rest).map_or_else(|| idgraph_core::stable_hash(rest), |k| k.stable_hash()),
        _ => xxhash_rust::xxh3::xxh3_64(rest),
    };
    probe_hashes(cf, p, h)
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
        let mut f = Self { layers: vec![Layer::new(capacity)] };
        for cf in [Cf::Idents, Cf::Profiles] {
            store.scan(cf, &[], &mut |k, _| {
                f.insert(cf, k);
                true
            })?;
        }
        Ok(f)
    }

    pub fn insert(&mut self, cf: Cf, key: &[u8]) {
        let (h1, h2) = hash(cf, key);
        self.set(h1, h2);
    }

    /// [`Self::insert`] of an identifier of partition `p`.
    pub fn insert_ident(&mut self, p: u16, k: &IdentKey) {
        let (h1, h2) = probe_hashes(Cf::Idents, p, k.stable_hash());
        self.set(h1, h2);
    }

    /// [`Self::insert`] of a profile of partition `p`.
    pub fn insert_profile(&mut self, p: u16, id: &ProfileId) {
        let (h1, h2) = probe_hashes(Cf::Profiles, p, profile_hash(&id.0));
        self.set(h1, h2);
    }

    fn set(&mut self, h1: u64, h2: u64) {
        let last = self.layers.len() - 1;
        if self.layers[last].inserted >= self.layers[last].capacity {
            let capacity = 2 * self.layers[last].capacity;
            self.layers.push(Layer::new(capacity));
        }
        if let Some(l) = self.layers.last_mut() {
            l.set(h1, h2);
        }
    }

    /// Keys the filters were sized for, in all (grows as they fill).
    pub fn capacity(&self) -> u64 {
        self.layers.iter().map(|l| l.capacity).sum()
    }

    /// False means the key was never written (certain); true means maybe.
    pub fn may_contain(&self, cf: Cf, key: &[u8]) -> bool {
        let (h1, h2) = hash(cf, key);
        self.probe(h1, h2)
    }

    /// [`Self::may_contain`] for an identifier of partition `p`, from the
    /// hash the key carries.
    pub fn may_contain_ident(&self, p: u16, k: &IdentKey) -> bool {
        let (h1, h2) = probe_hashes(Cf::Idents, p, k.stable_hash());
        self.probe(h1, h2)
    }

    /// [`Self::may_contain`] for a profile of partition `p`.
    pub fn may_contain_profile(&self, p: u16, id: &ProfileId) -> bool {
        let (h1, h2) = probe_hashes(Cf::Profiles, p, profile_hash(&id.0));
        self.probe(h1, h2)
    }

    fn probe(&self, h1: u64, h2: u64) -> bool {
        self.layers.iter().any(|l| l.probe(h1, h2))
    }

    /// Asks the processor to bring the blocks an identifier's lookup or
    /// insert will touch into its cache (one per filter): for loops that
    /// know their keys a few steps ahead. Changes nothing.
    pub fn prefetch_ident(&self, p: u16, k: &IdentKey) {
        self.prefetch_ident_hash(p, k.stable_hash());
    }

    /// [`Self::prefetch_ident`] from the identifier's stable hash.
    pub fn prefetch_ident_hash(&self, p: u16, stable_hash: u64) {
        let (h1, _) = probe_hashes(Cf::Idents, p, stable_hash);
        self.prefetch(h1);
    }

    /// [`Self::prefetch_ident`] for a profile of partition `p`.
    pub fn prefetch_profile(&self, p: u16, id: &ProfileId) {
        let (h1, _) = probe_hashes(Cf::Profiles, p, profile_hash(&id.0));
        self.prefetch(h1);
    }

    fn prefetch(&self, h1: u64) {
        for l in &self.layers {
            if let Some(w) = l.bits.get(l.block(h1)) {
                idgraph_core::prefetch::read(w);
            }
        }
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
            b.put(Cf::Idents, i.to_be_bytes(), [1]);
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
    fn typed_lookups_agree_with_encoded_keys() {
        use idgraph_core::ident::IdentType;
        let mut f = KnownKeys::build(&MemStore::new(), 10_000).unwrap();
        let idents: Vec<(u16, IdentKey)> = (0..500u16)
            .map(|i| match i % 2 {
                0 => (i % 7, IdentKey::new(IdentType::EMAIL, format!("u{i}@example.com"))),
                // Stored packed, hashed as text.
                _ => (i % 7, IdentKey::new(IdentType::ANONYMOUS_ID, format!("6d92078a-8246-4ba4-ae5b-{i:012x}"))),
            })
            .collect();
        let profiles: Vec<(u16, ProfileId)> =
            (0..500u16).map(|i| (i % 5, ProfileId::for_new(i64::from(i), &idents[i as usize].1))).collect();
        for (p, k) in &idents {
            f.insert(Cf::Idents, &crate::layout::ident_key(*p, k));
        }
        for (p, id) in &profiles {
            f.insert(Cf::Profiles, &crate::layout::profile_key(*p, id));
        }
        for (p, k) in &idents {
            assert!(f.may_contain_ident(*p, k));
            assert!(f.may_contain(Cf::Idents, &crate::layout::ident_key(*p, k)));
        }
        for (p, id) in &profiles {
            assert!(f.may_contain_profile(*p, id));
            assert!(f.may_contain(Cf::Profiles, &crate::layout::profile_key(*p, id)));
        }
        let mut g = KnownKeys::build(&MemStore::new(), 10_000).unwrap();
        for ((p, k), (q, id)) in idents.iter().zip(&profiles) {
            g.insert_ident(*p, k);
            g.insert_profile(*q, id);
        }
        for ((p, k), (q, id)) in idents.iter().zip(&profiles) {
            assert!(g.may_contain(Cf::Idents, &crate::layout::ident_key(*p, k)));
            assert!(g.may_contain(Cf::Profiles, &crate::layout::profile_key(*q, id)));
        }
        // The same identifier under another partition is another key.
        let other = idents.iter().filter(|(p, k)| f.may_contain_ident(p + 1, k)).count();
        assert!(other < 25, "{other} of 500 found under the wrong partition");
    }

    #[test]
    fn at_capacity_false_positives_stay_near_one_percent() {
        let mut f = KnownKeys::build(&MemStore::new(), 100_000).unwrap();
        for i in 0..100_000u32 {
            f.insert(Cf::Idents, &i.to_be_bytes());
        }
        for i in 0..100_000u32 {
            assert!(f.may_contain(Cf::Idents, &i.to_be_bytes()));
        }
        let fp = (100_000..200_000u32).filter(|i| f.may_contain(Cf::Idents, &i.to_be_bytes())).count();
        assert!(fp < 2_000, "{fp} false positives in 100k at capacity");
    }

    /// Eight times its first capacity: every key still found, absent keys
    /// still mostly answered "absent" (the false-positive rates of the
    /// filters add up: four of them here).
    #[test]
    fn past_capacity_it_grows_and_keeps_answering_absent() {
        let mut f = KnownKeys::build(&MemStore::new(), 0).unwrap();
        assert_eq!(f.capacity(), 1024);
        for i in 0..8_000u32 {
            f.insert(Cf::Idents, &i.to_be_bytes());
        }
        assert_eq!(f.capacity(), 1024 + 2048 + 4096 + 8192);
        for i in 0..8_000u32 {
            assert!(f.may_contain(Cf::Idents, &i.to_be_bytes()), "key {i} lost");
        }
        let fp = (8_000..108_000u32).filter(|i| f.may_contain(Cf::Idents, &i.to_be_bytes())).count();
        assert!(fp < 4_000, "{fp} false positives in 100k past capacity");
    }
}
