//! The write-back record cache of a partition.

use super::{Dirty, Loader, Partition, Slot};
use crate::ident::IdentKey;
use crate::profile_id::ProfileId;
use crate::record::{IdentRecord, ProfileRecord};

impl Partition {
    pub(super) fn ident_mut(&mut self, key: &IdentKey, loader: &mut dyn Loader) -> &mut IdentRecord {
        let gen = self.gen;
        let id = self.id;
        let slot = self.idents.entry(key.clone()).or_insert_with(|| Slot { val: loader.ident(id, key), dirty: false, gen });
        slot.gen = gen;
        slot.dirty = true;
        slot.val.get_or_insert_with(IdentRecord::default)
    }

    pub(super) fn ident_get(&mut self, key: &IdentKey, loader: &mut dyn Loader) -> Option<&IdentRecord> {
        let gen = self.gen;
        let id = self.id;
        let slot = self.idents.entry(key.clone()).or_insert_with(|| Slot { val: loader.ident(id, key), dirty: false, gen });
        slot.gen = gen;
        slot.val.as_ref()
    }

    pub(super) fn take_profile(&mut self, id: ProfileId, loader: &mut dyn Loader) -> Option<ProfileRecord> {
        let gen = self.gen;
        let pid = self.id;
        let slot = self.profiles.entry(id).or_insert_with(|| Slot { val: loader.profile(pid, &id), dirty: false, gen });
        slot.gen = gen;
        slot.val.take()
    }

    /// Puts a record back (after [`Self::take_profile`]) and marks it dirty.
    pub(super) fn put_profile(&mut self, id: ProfileId, rec: Option<ProfileRecord>) {
        let gen = self.gen;
        let slot = self.profiles.entry(id).or_insert(Slot { val: None, dirty: false, gen });
        slot.val = rec;
        slot.dirty = true;
    }

    /// Reads a profile record (for outputs and queries).
    pub fn profile(&mut self, id: ProfileId, loader: &mut dyn Loader) -> Option<&ProfileRecord> {
        let gen = self.gen;
        let pid = self.id;
        let slot = self.profiles.entry(id).or_insert_with(|| Slot { val: loader.profile(pid, &id), dirty: false, gen });
        slot.val.as_ref()
    }

    pub fn ident(&mut self, key: &IdentKey, loader: &mut dyn Loader) -> Option<&IdentRecord> {
        self.ident_get(key, loader)
    }

    pub(super) fn touch(&mut self, id: ProfileId) {
        if self.touched_set.insert(id) {
            self.touched.push(id);
        }
    }

    /// Profiles changed since the last call, in order of first change.
    pub fn take_touched(&mut self) -> Vec<ProfileId> {
        self.touched_set.clear();
        std::mem::take(&mut self.touched)
    }

    /// Dirty records since the last call; they stay cached, clean.
    pub fn take_dirty(&mut self) -> Dirty {
        let mut d = Dirty::default();
        for (k, s) in self.idents.iter_mut().filter(|(_, s)| s.dirty) {
            s.dirty = false;
            d.idents.push((k.clone(), s.val.clone()));
        }
        for (k, s) in self.profiles.iter_mut().filter(|(_, s)| s.dirty) {
            s.dirty = false;
            d.profiles.push((*k, s.val.clone()));
        }
        d.idents.sort_by(|a, b| a.0.cmp(&b.0));
        d.profiles.sort_by_key(|a| a.0);
        d
    }

    /// Starts a new cache generation and, above `max_entries`, evicts clean
    /// records not used in the last generation.
    pub fn end_batch(&mut self, max_entries: usize) {
        self.gen = self.gen.wrapping_add(1);
        if self.idents.len() + self.profiles.len() > max_entries {
            let keep = self.gen.wrapping_sub(1);
            self.idents.retain(|_, s| s.dirty || s.gen == keep);
            self.profiles.retain(|_, s| s.dirty || s.gen == keep);
            if self.idents.len() + self.profiles.len() > max_entries {
                self.idents.retain(|_, s| s.dirty);
                self.profiles.retain(|_, s| s.dirty);
            }
        }
    }

    /// Drops every cached record (used after a failed commit).
    pub fn clear_cache(&mut self) {
        self.idents.clear();
        self.profiles.clear();
        self.touched.clear();
        self.touched_set.clear();
    }

    pub fn cached_entries(&self) -> usize {
        self.idents.len() + self.profiles.len()
    }
}
