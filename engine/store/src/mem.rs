//! In-memory twin of [`crate::RocksStore`] for fast tests.

use crate::{Batch, Cf, Store, StoreError};
use std::collections::BTreeMap;
use std::sync::RwLock;

type Map = BTreeMap<Vec<u8>, Vec<u8>>;

#[derive(Debug, Default)]
pub struct MemStore {
    maps: RwLock<[Map; 3]>,
}

impl MemStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, [Map; 3]> {
        self.maps.read().unwrap_or_else(|p| p.into_inner())
    }
}

impl Store for MemStore {
    fn get(&self, cf: Cf, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.read()[cf.index()].get(key).cloned())
    }

    fn multi_get_with(&self, cf: Cf, keys: &[Vec<u8>], f: &mut dyn FnMut(usize, Option<&[u8]>)) -> Result<(), StoreError> {
        let m = self.read();
        for (i, k) in keys.iter().enumerate() {
            f(i, m[cf.index()].get(k).map(Vec::as_slice));
        }
        Ok(())
    }

    fn write(&self, batch: Batch) -> Result<(), StoreError> {
        let mut m = self.maps.write().unwrap_or_else(|p| p.into_inner());
        for (cf, prefix) in &batch.prefix_deletes {
            m[cf.index()].retain(|k, _| !k.starts_with(prefix));
        }
        for op in batch.ops() {
            match op.value {
                Some(v) => {
                    m[op.cf.index()].insert(op.key.to_vec(), v.to_vec());
                }
                None => {
                    m[op.cf.index()].remove(op.key);
                }
            }
        }
        Ok(())
    }

    fn scan(&self, cf: Cf, prefix: &[u8], f: &mut dyn FnMut(&[u8], &[u8]) -> bool) -> Result<(), StoreError> {
        let m = self.read();
        for (k, v) in m[cf.index()].range(prefix.to_vec()..) {
            if !k.starts_with(prefix) || !f(k, v) {
                break;
            }
        }
        Ok(())
    }

    fn flush(&self) -> Result<(), StoreError> {
        Ok(())
    }

    fn disk_bytes(&self) -> Option<u64> {
        None
    }
}
