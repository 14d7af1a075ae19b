//! # idgraph-store — a narrow, batched blind-map storage API
//!
//! The core and the drivers see only [`Store`]: point reads, batched
//! multi-reads, atomic batched writes and prefix scans over a fixed set of
//! column families ([`Cf`]). It knows nothing of identities. Two
//! implementations share one conformance suite (`tests/conformance.rs`):
//! [`RocksStore`] (on disk) and [`MemStore`] (for fast tests).
//!
//! # Layout
//! - `cf.rs`: the column families, declared once.
//! - `error.rs`: [`StoreError`], classified.
//! - `mem.rs`: [`MemStore`].
//! - `rocks.rs`: [`RocksStore`] and its tuning ([`RocksOptions`]).

mod cf;
mod error;
mod mem;
mod rocks;

pub use cf::Cf;
pub use error::StoreError;
pub use mem::MemStore;
pub use rocks::{RocksOptions, RocksStore};

/// One write of a batch: `None` deletes the key.
pub type Op = (Cf, Vec<u8>, Option<Vec<u8>>);

/// Writes applied atomically by [`Store::write`]: first the prefix
/// deletions, then the ops in order.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Batch {
    pub ops: Vec<Op>,
    /// Every key of the family starting with the prefix is deleted.
    pub prefix_deletes: Vec<(Cf, Vec<u8>)>,
}

impl Batch {
    pub fn put(&mut self, cf: Cf, key: Vec<u8>, value: Vec<u8>) {
        self.ops.push((cf, key, Some(value)));
    }

    pub fn delete(&mut self, cf: Cf, key: Vec<u8>) {
        self.ops.push((cf, key, None));
    }

    /// Deletes every key of `cf` starting with `prefix` (a non-empty
    /// prefix), before the batch's other writes.
    pub fn delete_prefix(&mut self, cf: Cf, prefix: Vec<u8>) {
        self.prefix_deletes.push((cf, prefix));
    }

    pub fn len(&self) -> usize {
        self.ops.len() + self.prefix_deletes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty() && self.prefix_deletes.is_empty()
    }

    /// Bytes of keys and values (for metrics).
    pub fn bytes(&self) -> usize {
        self.ops.iter().map(|(_, k, v)| k.len() + v.as_ref().map_or(0, Vec::len)).sum()
    }
}

/// The storage API. Writes of one [`Batch`] are atomic: after a crash either
/// all of them are visible or none.
pub trait Store: Send + Sync {
    fn get(&self, cf: Cf, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;

    /// Reads many keys of one family at once, handing each value to `f`
    /// (with its key's position) in place, without a copy.
    fn multi_get_with(&self, cf: Cf, keys: &[Vec<u8>], f: &mut dyn FnMut(usize, Option<&[u8]>)) -> Result<(), StoreError>;

    /// [`Store::multi_get_with`], the values copied out (same order as `keys`).
    fn multi_get(&self, cf: Cf, keys: &[Vec<u8>]) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        let mut out = vec![None; keys.len()];
        self.multi_get_with(cf, keys, &mut |i, v| out[i] = v.map(<[u8]>::to_vec))?;
        Ok(out)
    }

    fn write(&self, batch: Batch) -> Result<(), StoreError>;

    /// Calls `f` for each key starting with `prefix`, in key order, until it
    /// returns `false`.
    fn scan(&self, cf: Cf, prefix: &[u8], f: &mut dyn FnMut(&[u8], &[u8]) -> bool) -> Result<(), StoreError>;

    /// Makes every written batch durable and compacts memtables to files.
    fn flush(&self) -> Result<(), StoreError>;

    /// Live bytes in table files on disk, where the implementation has a disk.
    fn disk_bytes(&self) -> Option<u64>;
}

/// The positions of `ops` in the order of `(family, key)`, writes of one
/// key in the order given (a stable sort). Most comparisons are settled
/// by the first 15 key bytes, held as one integer beside the position, so
/// the sort touches the keys themselves only on ties: comparing them
/// through their pointers was a tenth of the writer thread's time.
pub fn sorted_order(ops: &[Op]) -> Vec<usize> {
    fn prefix(cf: Cf, key: &[u8]) -> u128 {
        let mut b = [0u8; 16];
        b[0] = cf.index() as u8;
        let n = key.len().min(15);
        b[1..=n].copy_from_slice(&key[..n]);
        u128::from_be_bytes(b)
    }
    let mut order: Vec<(u128, usize)> = ops.iter().enumerate().map(|(i, (cf, k, _))| (prefix(*cf, k), i)).collect();
    order.sort_unstable_by(|a, b| {
        a.0.cmp(&b.0).then_with(|| {
            let (x, y) = (&ops[a.1], &ops[b.1]);
            (x.0, &x.1).cmp(&(y.0, &y.1)).then(a.1.cmp(&b.1))
        })
    });
    order.into_iter().map(|(_, i)| i).collect()
}

/// The first key after every key starting with `prefix` (`None`: no such
/// key, the prefix is all `0xFF`).
pub fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xFF {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn op() -> impl Strategy<Value = Op> {
        // Short keys over few byte values: ties in the first 15 bytes,
        // keys that prefix others, zero bytes against padding.
        // A shared run of up to 17 bytes first, so that many keys agree
        // on all 15 bytes the sort compares as an integer.
        let tail = prop::collection::vec(prop::sample::select(vec![0u8, 1, 0xFF]), 0..4);
        (prop::sample::select(Cf::ALL.to_vec()), 0usize..=17, tail, any::<Option<u8>>()).prop_map(|(cf, n, tail, v)| {
            let mut k = vec![7u8; n];
            k.extend(tail);
            (cf, k, v.map(|b| vec![b]))
        })
    }

    #[test]
    fn families_are_listed_in_index_order() {
        for (i, cf) in Cf::ALL.iter().enumerate() {
            assert_eq!(cf.index(), i, "{}", cf.name());
        }
    }

    proptest! {
        #[test]
        fn sorted_order_is_the_stable_sort_by_family_and_key(ops in prop::collection::vec(op(), 0..200)) {
            let mut expected: Vec<usize> = (0..ops.len()).collect();
            expected.sort_by(|&a, &b| (ops[a].0, &ops[a].1).cmp(&(ops[b].0, &ops[b].1)));
            prop_assert_eq!(sorted_order(&ops), expected);
        }
    }
}
