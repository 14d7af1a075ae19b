//! The write-back record cache of a partition.
//!
//! Records are decoded once and kept across batches (bounded by
//! [`Partition::end_batch`]). Changed keys are listed as they are dirtied, so
//! draining a batch costs what the batch changed, not the cache size.

use super::{Loader, Partition, Slot};
use crate::ident::IdentKey;
use crate::profile_id::ProfileId;
use crate::record::{IdentRecord, ProfileRecord};

/// A dirty record lent to [`Partition::drain_dirty`]; `None` deletes.
#[derive(Debug)]
pub enum DirtyRef<'a> {
    Ident(&'a IdentKey, Option<&'a IdentRecord>),
    Profile(ProfileId, Option<&'a ProfileRecord>),
}

impl Partition {
    /// The cached slot of an identifier, loading it on a miss. A hit costs
    /// one hash lookup and no key clone.
    fn ident_slot(&mut self, key: &IdentKey, loader: &mut dyn Loader) -> &mut Slot<IdentRecord> {
        let gen = self.gen;
        if !self.idents.contains_key(key) {
            let val = loader.ident(self.id, key);
            self.idents.insert(key.clone(), Slot { val, dirty: false, gen: 0 });
        }
        match self.idents.get_mut(key) {
            Some(slot) => {
                slot.gen = gen;
                slot
            }
            None => unreachable!("inserted above"),
        }
    }

    pub(super) fn ident_mut(&mut self, key: &IdentKey, loader: &mut dyn Loader) -> &mut IdentRecord {
        let slot = self.ident_slot(key, loader);
        let newly_dirty = !slot.dirty;
        slot.dirty = true;
        if newly_dirty {
            self.dirty_idents.push(key.clone());
        }
        match self.idents.get_mut(key) {
            Some(slot) => slot.val.get_or_insert_with(IdentRecord::default),
            None => unreachable!("loaded above"),
        }
    }

    pub(super) fn ident_get(&mut self, key: &IdentKey, loader: &mut dyn Loader) -> Option<&IdentRecord> {
        self.ident_slot(key, loader).val.as_ref()
    }

    fn profile_slot(&mut self, id: ProfileId, loader: &mut dyn Loader) -> &mut Slot<ProfileRecord> {
        let gen = self.gen;
        let pid = self.id;
        let slot = self.profiles.entry(id).or_insert_with(|| Slot { val: loader.profile(pid, &id), dirty: false, gen });
        slot.gen = gen;
        slot
    }

    pub(super) fn take_profile(&mut self, id: ProfileId, loader: &mut dyn Loader) -> Option<ProfileRecord> {
        self.profile_slot(id, loader).val.take()
    }

    /// Puts a record back (after [`Self::take_profile`]) and marks it dirty.
    pub(super) fn put_profile(&mut self, id: ProfileId, rec: Option<ProfileRecord>) {
        let gen = self.gen;
        let slot = self.profiles.entry(id).or_insert(Slot { val: None, dirty: false, gen });
        slot.val = rec;
        if !slot.dirty {
            slot.dirty = true;
            self.dirty_profiles.push(id);
        }
    }

    /// Reads a profile record (for outputs and queries).
    pub fn profile(&mut self, id: ProfileId, loader: &mut dyn Loader) -> Option<&ProfileRecord> {
        self.profile_slot(id, loader).val.as_ref()
    }

    /// A profile record if it is in the cache (never loads).
    pub fn cached_profile(&self, id: ProfileId) -> Option<&ProfileRecord> {
        self.profiles.get(&id).and_then(|s| s.val.as_ref())
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

    /// Lends every record dirtied since the last call, in the order they
    /// were first dirtied, and marks them clean (they stay cached).
    pub fn drain_dirty(&mut self, f: &mut dyn FnMut(DirtyRef<'_>)) {
        for k in std::mem::take(&mut self.dirty_idents) {
            if let Some(s) = self.idents.get_mut(&k) {
                s.dirty = false;
                f(DirtyRef::Ident(&k, s.val.as_ref()));
            }
        }
        for id in std::mem::take(&mut self.dirty_profiles) {
            if let Some(s) = self.profiles.get_mut(&id) {
                s.dirty = false;
                f(DirtyRef::Profile(id, s.val.as_ref()));
            }
        }
    }

    /// Starts a new cache generation and, above `max_entries`, evicts clean
    /// records not used in the last generation (all clean ones if that is
    /// not enough, unless `unwritten`: the batch just drained is not on the
    /// store yet, so its records must stay until the next call, or a later
    /// read would load an older version).
    pub fn end_batch(&mut self, max_entries: usize, unwritten: bool) {
        self.gen = self.gen.wrapping_add(1);
        if self.idents.len() + self.profiles.len() > max_entries {
            let keep = self.gen.wrapping_sub(1);
            self.idents.retain(|_, s| s.dirty || s.gen == keep);
            self.profiles.retain(|_, s| s.dirty || s.gen == keep);
            if !unwritten && self.idents.len() + self.profiles.len() > max_entries {
                self.idents.retain(|_, s| s.dirty);
                self.profiles.retain(|_, s| s.dirty);
            }
        }
    }
}
