//! The write-back record cache of a partition.
//!
//! Records are decoded once and kept across batches (bounded by
//! [`Partition::end_batch`]). Changed records are listed by position as
//! they are dirtied, so draining a batch costs what the batch changed, not
//! the cache size.

use super::evict::{stamp, Uses};
use super::map::CacheKey;
use super::{Loader, Map, Partition, Slot};
use crate::command::Target;
use crate::ident::IdentKey;
use crate::profile_id::ProfileId;
use crate::record::{IdentRecord, ProfileRecord};
use std::sync::Arc;

/// A dirty record lent to [`Partition::drain_dirty`]; `None` deletes. The
/// flag is what the driver answered the last time it drained the key, or
/// whether it was loaded from the store: whether a key-set filter the
/// driver feeds holds it already. A profile is lent as its shared record:
/// the driver may keep a clone of the `Arc` (it never changes; the
/// partition's next change copies it, see [`Partition::take_profile`]).
#[derive(Debug)]
pub enum DirtyRef<'a> {
    Ident(&'a IdentKey, Option<&'a IdentRecord>, bool),
    Profile(ProfileId, Option<&'a Arc<ProfileRecord>>, bool),
}

/// Where a route finds an identifier: its record's position in the
/// record cache, or only its owner (from the owner cache; the identifier
/// is then owned and not shared), or neither.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdentAt {
    Slot(usize),
    Owner(ProfileId),
    Nowhere,
}

/// A record [`Partition::drain_dirty`] will lend a few calls later: an
/// identifier by its stable hash, or a profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upcoming {
    Ident(u64),
    Profile(ProfileId),
}

/// How many keys ahead a loop prefetches what it will look up in a table
/// far larger than the processor's caches (the owner cache, the driver's
/// known-keys filter): enough for the load to land before the loop gets
/// there, few enough that it is still cached then.
pub const PREFETCH_AHEAD: usize = 8;

/// The profile a route of an identifier goes to: its owner, unless it is
/// shared (the owner cache holds exactly these).
fn routes_to(r: &IdentRecord) -> Option<ProfileId> {
    r.owner.filter(|_| !r.shared)
}

/// The position of `key`'s slot in a cache map, inserting one with
/// `load()` on a miss; the slot is stamped as used in generation `gen`.
fn slot_index<K: CacheKey + Clone, V>(
    map: &mut Map<K, Slot<V>>,
    uses: &mut Uses,
    key: &K,
    gen: u32,
    load: impl FnOnce() -> Option<V>,
) -> usize {
    match map.get_index_of(key) {
        Some(i) => {
            stamp(&mut map[i], i, gen, uses);
            i
        }
        None => {
            let val = load();
            let stored = val.is_some();
            let i = map.insert_full(key.clone(), Slot { val, dirty: false, stored, gen }).0;
            uses.add(i);
            i
        }
    }
}

impl Partition {
    /// The position of an identifier's cached slot, loading it on a miss.
    /// A hit costs one hash lookup and no key clone.
    pub(super) fn ident_index(&mut self, key: &IdentKey, loader: &mut dyn Loader) -> usize {
        let (p, gen) = (self.id, self.gen);
        let owners = &mut self.owners;
        slot_index(&mut self.idents, &mut self.ident_uses, key, gen, || {
            let rec = loader.ident(p, key);
            owners.set(key, rec.as_ref().and_then(routes_to));
            rec
        })
    }

    /// Where an identifier's record is cached, or else the owner the
    /// owner cache knows for it, or else its record loaded: what a route
    /// needs, reading the store only in the last case.
    pub(super) fn ident_or_owner(&mut self, key: &IdentKey, loader: &mut dyn Loader) -> IdentAt {
        if let Some(i) = self.cached_slot(key) {
            return IdentAt::Slot(i);
        }
        match self.owners.get(key) {
            Some(o) => IdentAt::Owner(o),
            None => IdentAt::Slot(self.ident_index(key, loader)),
        }
    }

    /// Whether the identifier found at `at` is shared, and its owner.
    pub(super) fn shared_and_owner(&self, at: IdentAt) -> (bool, Option<ProfileId>) {
        match at {
            IdentAt::Slot(i) => self.ident_at(i).map_or((false, None), |r| (r.shared, r.owner)),
            IdentAt::Owner(o) => (false, Some(o)),
            IdentAt::Nowhere => (false, None),
        }
    }

    /// The record-cache position of an identifier found at `at`, to
    /// change it (loaded when only its owner was known).
    pub(super) fn slot_of(&mut self, at: IdentAt, key: &IdentKey, loader: &mut dyn Loader) -> usize {
        match at {
            IdentAt::Slot(i) => i,
            IdentAt::Owner(_) | IdentAt::Nowhere => self.ident_index(key, loader),
        }
    }

    /// [`Self::ident_or_owner`] without loading, for a prefetch:
    /// `Nowhere` when neither cache knows the identifier. An owner-cache
    /// answer is not counted as a hit (the route counts its own).
    pub fn cached_ident(&mut self, key: &IdentKey) -> IdentAt {
        if let Some(i) = self.cached_slot(key) {
            return IdentAt::Slot(i);
        }
        self.owners.peek(key).map_or(IdentAt::Nowhere, IdentAt::Owner)
    }

    /// The owner of an identifier [`Self::cached_ident`] found at `at`,
    /// reading its record when neither cache knew it.
    pub fn owner_found(&mut self, at: IdentAt, key: &IdentKey, loader: &mut dyn Loader) -> Option<ProfileId> {
        match at {
            IdentAt::Slot(i) => self.owner_at(i),
            IdentAt::Owner(o) => Some(o),
            IdentAt::Nowhere => self.owner_of(key, loader),
        }
    }

    /// The first of a lookup's two prefetches, [`PREFETCH_AHEAD`] steps
    /// before it: the record cache's index slot for `t` (and the owner
    /// cache's bucket for an identifier).
    pub fn prefetch_far(&self, t: Target<'_>) {
        match t {
            Target::Ident(k) => {
                self.idents.prefetch_slot(k);
                self.owners.prefetch(k);
            }
            Target::Profile(id) => self.profiles.prefetch_slot(&id),
        }
    }

    /// Prefetches the identifier entry at a position
    /// [`Self::cached_ident`] gave.
    pub fn prefetch_ident_at(&self, i: usize) {
        self.idents.prefetch_position(i);
    }

    /// The second, half as many steps before the lookup: the entry the
    /// (by now cached) index slot points at.
    pub fn prefetch_near(&self, t: Target<'_>) {
        match t {
            Target::Ident(k) => self.idents.prefetch_entry(k),
            Target::Profile(id) => self.profiles.prefetch_entry(&id),
        }
    }

    /// Where an identifier's record is in the record cache, stamped as used.
    fn cached_slot(&mut self, key: &IdentKey) -> Option<usize> {
        let i = self.idents.get_index_of(key)?;
        stamp(&mut self.idents[i], i, self.gen, &mut self.ident_uses);
        Some(i)
    }

    /// The profile that owns an identifier (none when unowned or shared),
    /// loading its record into the cache on a miss: a read, changing
    /// nothing (used to prefetch the owners of what a wave will route).
    pub fn owner_of(&mut self, key: &IdentKey, loader: &mut dyn Loader) -> Option<ProfileId> {
        let i = self.ident_index(key, loader);
        self.owner_at(i)
    }

    /// [`Self::owner_of`] the identifier cached at a position
    /// [`Self::cached_ident`] gave (a record keeps its position while it
    /// is cached: until an eviction, [`Partition::end_batch`]), stamped as
    /// used.
    pub fn owner_at(&mut self, i: usize) -> Option<ProfileId> {
        stamp(&mut self.idents[i], i, self.gen, &mut self.ident_uses);
        self.idents[i].val.as_ref().and_then(routes_to)
    }

    pub(super) fn ident_mut(&mut self, key: &IdentKey, loader: &mut dyn Loader) -> &mut IdentRecord {
        let i = self.ident_index(key, loader);
        self.ident_mut_at(i)
    }

    /// The record at a position [`Self::ident_index`] gave (held until the
    /// next eviction), to read.
    pub(super) fn ident_at(&self, i: usize) -> Option<&IdentRecord> {
        self.idents[i].val.as_ref()
    }

    /// The record at a position [`Self::ident_index`] gave, to change:
    /// marked dirty, created empty when there was none. A read followed
    /// by a change costs one hash lookup this way, not two.
    pub(super) fn ident_mut_at(&mut self, i: usize) -> &mut IdentRecord {
        let slot = &mut self.idents[i];
        if !slot.dirty {
            slot.dirty = true;
            self.dirty_idents.push(i);
        }
        slot.val.get_or_insert_with(IdentRecord::default)
    }

    fn profile_index(&mut self, id: ProfileId, loader: &mut dyn Loader) -> usize {
        let (p, gen) = (self.id, self.gen);
        let i = slot_index(&mut self.profiles, &mut self.profile_uses, &id, gen, || loader.profile(p, &id).map(Arc::new));
        self.profile_hint = i;
        i
    }

    /// Takes a record out to change it (put it back with
    /// [`Self::put_profile`]). A record the driver still holds from the
    /// last drain is copied, so what the driver holds never changes.
    pub(super) fn take_profile(&mut self, id: ProfileId, loader: &mut dyn Loader) -> Option<ProfileRecord> {
        let i = self.profile_index(id, loader);
        let mut shared = self.profiles[i].val.take()?;
        Some(match Arc::get_mut(&mut shared) {
            Some(rec) => {
                let rec = std::mem::replace(rec, ProfileRecord::Placeholder(Vec::new()));
                self.spare = Some(shared);
                rec
            }
            None => ProfileRecord::clone(&shared),
        })
    }

    /// `rec` in a shared block: the spare one when there is one.
    fn share(&mut self, rec: ProfileRecord) -> Arc<ProfileRecord> {
        match self.spare.take() {
            Some(mut block) => match Arc::get_mut(&mut block) {
                Some(slot) => {
                    *slot = rec;
                    block
                }
                None => Arc::new(rec),
            },
            None => Arc::new(rec),
        }
    }

    /// Puts a record back (after [`Self::take_profile`]) and marks it dirty.
    /// Most puts follow the take of the same record: the position of the
    /// last profile looked up is tried first (checked by key).
    pub(super) fn put_profile(&mut self, id: ProfileId, rec: Option<ProfileRecord>) {
        let i = match self.profiles.get_index_mut(self.profile_hint) {
            Some((k, s)) if *k == id => {
                stamp(s, self.profile_hint, self.gen, &mut self.profile_uses);
                self.profile_hint
            }
            _ => slot_index(&mut self.profiles, &mut self.profile_uses, &id, self.gen, || None),
        };
        let rec = rec.map(|r| self.share(r));
        let slot = &mut self.profiles[i];
        slot.val = rec;
        if !slot.dirty {
            slot.dirty = true;
            self.dirty_profiles.push(i);
        }
    }

    /// Reads a profile record (for outputs and queries).
    pub fn profile(&mut self, id: ProfileId, loader: &mut dyn Loader) -> Option<&ProfileRecord> {
        let i = self.profile_index(id, loader);
        self.profiles[i].val.as_deref()
    }

    /// A profile record if it is in the cache (never loads).
    pub fn cached_profile(&self, id: ProfileId) -> Option<&ProfileRecord> {
        self.profiles.get(&id).and_then(|s| s.val.as_deref())
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

    /// How many records [`Self::drain_dirty`] would lend now.
    pub fn dirty_len(&self) -> usize {
        self.dirty_idents.len() + self.dirty_profiles.len()
    }

    /// Lends every record dirtied since the last call, in the order they
    /// were first dirtied, and marks them clean (they stay cached). `f`
    /// answers whether its key-set filter holds the key now (see
    /// [`DirtyRef`]); with each record it gets the one it will be lent
    /// [`PREFETCH_AHEAD`] calls later, if any, to prefetch what it will do
    /// with that (the drain does so for the owner cache).
    pub fn drain_dirty(&mut self, f: &mut dyn FnMut(DirtyRef<'_>, Option<Upcoming>) -> bool) {
        let mut idents = std::mem::take(&mut self.dirty_idents);
        let mut profiles = std::mem::take(&mut self.dirty_profiles);
        for (n, &i) in idents.iter().enumerate() {
            let next = self.upcoming(&idents, &profiles, n + PREFETCH_AHEAD);
            if let Some((k, s)) = self.idents.get_index_mut(i) {
                s.dirty = false;
                s.stored = f(DirtyRef::Ident(k, s.val.as_ref(), s.stored), next);
                self.owners.set(k, s.val.as_ref().and_then(routes_to));
            }
        }
        for (n, &i) in profiles.iter().enumerate() {
            let next = self.upcoming(&idents, &profiles, idents.len() + n + PREFETCH_AHEAD);
            if let Some((id, s)) = self.profiles.get_index_mut(i) {
                s.dirty = false;
                s.stored = f(DirtyRef::Profile(*id, s.val.as_ref(), s.stored), next);
            }
        }
        idents.clear();
        profiles.clear();
        self.dirty_idents = idents;
        self.dirty_profiles = profiles;
    }

    /// The record at position `m` of a drain (the identifiers, then the
    /// profiles), its owner-cache bucket prefetched when an identifier.
    fn upcoming(&self, idents: &[usize], profiles: &[usize], m: usize) -> Option<Upcoming> {
        match idents.get(m) {
            Some(&j) => {
                let (k, _) = self.idents.get_index(j)?;
                self.owners.prefetch(k);
                Some(Upcoming::Ident(k.stable_hash()))
            }
            None => profiles.get(m - idents.len()).and_then(|&j| self.profiles.get_index(j)).map(|(id, _)| Upcoming::Profile(*id)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{EmptyLoader, Partition};
    use super::{DirtyRef, Upcoming};
    use crate::command::Target;
    use crate::config::CoreConfig;
    use crate::ident::{IdentKey, IdentType};
    use crate::profile_id::ProfileId;
    use crate::record::ProfileRecord;
    use std::sync::Arc;

    fn key(i: u32) -> IdentKey {
        IdentKey::new(IdentType::DEVICE_ID, format!("dev-{i}"))
    }

    /// Drained identifiers with their owner, profiles with whether they exist.
    type Drained = (Vec<(IdentKey, Option<ProfileId>)>, Vec<(ProfileId, bool)>);

    fn drained(p: &mut Partition) -> Drained {
        let (mut idents, mut profiles) = (Vec::new(), Vec::new());
        p.drain_dirty(&mut |d, _| {
            match d {
                DirtyRef::Ident(k, r, _) => idents.push((k.clone(), r.and_then(|r| r.owner))),
                DirtyRef::Profile(id, r, _) => profiles.push((id, r.is_some())),
            }
            false
        });
        (idents, profiles)
    }

    #[test]
    fn dirty_records_survive_eviction_and_drain_once_in_order() {
        let mut p = Partition::new(0, 1, Arc::new(CoreConfig::default()));
        let l = &mut EmptyLoader;
        let ids: Vec<ProfileId> = (0..3).map(|i| ProfileId::for_new(i, &key(i as u32))).collect();
        // Clean records first, so eviction moves the dirty ones.
        for i in 0..50 {
            let _ = p.owner_of(&key(i), l);
        }
        p.end_batch(usize::MAX, false);
        p.ident_mut(&key(60), l).owner = Some(ids[0]);
        p.ident_mut(&key(10), l).owner = Some(ids[1]);
        p.put_profile(ids[2], Some(ProfileRecord::Alias(ids[0])));
        p.ident_mut(&key(60), l).shared = false;
        // Two generations later nothing clean is left, the dirty ones are.
        p.end_batch(0, false);
        p.end_batch(0, false);
        assert!(!p.is_cached(Target::Ident(&key(20))));
        assert!(p.is_cached(Target::Ident(&key(10))) && p.is_cached(Target::Profile(ids[2])));
        let (idents, profiles) = drained(&mut p);
        assert_eq!(idents, vec![(key(60), Some(ids[0])), (key(10), Some(ids[1]))]);
        assert_eq!(profiles, vec![(ids[2], true)]);
        assert_eq!(drained(&mut p), (vec![], vec![]), "drained twice");
        // Clean now: evicted by the next call over the limit.
        p.end_batch(0, false);
        assert!(!p.is_cached(Target::Ident(&key(10))) && !p.is_cached(Target::Profile(ids[2])));
    }

    #[test]
    fn each_record_lent_comes_with_the_one_lent_prefetch_ahead_calls_later() {
        let mut p = Partition::new(0, 1, Arc::new(CoreConfig::default()));
        let l = &mut EmptyLoader;
        let ids: Vec<ProfileId> = (0..5).map(|i| ProfileId::for_new(i, &key(i as u32))).collect();
        for i in 0..12 {
            p.ident_mut(&key(i), l).owner = Some(ids[0]);
        }
        for id in &ids {
            p.put_profile(*id, Some(ProfileRecord::Alias(ids[0])));
        }
        let (mut lent, mut next) = (Vec::new(), Vec::new());
        p.drain_dirty(&mut |d, n| {
            lent.push(match d {
                DirtyRef::Ident(k, ..) => Upcoming::Ident(k.stable_hash()),
                DirtyRef::Profile(id, ..) => Upcoming::Profile(id),
            });
            next.push(n);
            false
        });
        assert_eq!(lent.len(), 17);
        for (i, n) in next.iter().enumerate() {
            assert_eq!(*n, lent.get(i + super::PREFETCH_AHEAD).copied(), "record {i}");
        }
    }

    #[test]
    fn a_drained_profile_the_driver_keeps_never_changes() {
        let mut p = Partition::new(0, 1, Arc::new(CoreConfig::default()));
        let l = &mut EmptyLoader;
        let ids: Vec<ProfileId> = (0..3).map(|i| ProfileId::for_new(i, &key(i as u32))).collect();
        p.put_profile(ids[0], Some(ProfileRecord::Alias(ids[1])));
        let mut kept = Vec::new();
        p.drain_dirty(&mut |d, _| {
            if let DirtyRef::Profile(_, Some(r), _) = d {
                kept.push(Arc::clone(r));
            }
            false
        });
        // The next batch changes the record while the driver still holds it.
        assert_eq!(p.take_profile(ids[0], l), Some(ProfileRecord::Alias(ids[1])));
        p.put_profile(ids[0], Some(ProfileRecord::Alias(ids[2])));
        assert_eq!(*kept[0], ProfileRecord::Alias(ids[1]));
        assert_eq!(p.cached_profile(ids[0]), Some(&ProfileRecord::Alias(ids[2])));
        // Once the driver lets go, a take moves the record out (no copy).
        drop(kept);
        assert_eq!(p.take_profile(ids[0], l), Some(ProfileRecord::Alias(ids[2])));
    }

    /// A loader with every identifier whose value starts `dev-1` stored.
    struct Stored;
    impl crate::partition::Loader for Stored {
        fn ident(&mut self, _: u16, k: &IdentKey) -> Option<crate::record::IdentRecord> {
            k.value().starts_with("dev-1").then(crate::record::IdentRecord::default)
        }
        fn profile(&mut self, _: u16, _: &ProfileId) -> Option<ProfileRecord> {
            None
        }
    }

    /// The flag a drain lends per identifier, answering `answer`.
    fn known_flags(p: &mut Partition, answer: bool) -> Vec<(String, bool)> {
        let mut seen = Vec::new();
        p.drain_dirty(&mut |d, _| {
            if let DirtyRef::Ident(k, _, known) = d {
                seen.push((k.value().to_string(), known));
            }
            answer
        });
        seen
    }

    #[test]
    fn a_drain_lends_whether_the_key_was_stored_or_answered_before() {
        let mut p = Partition::new(0, 1, Arc::new(CoreConfig::default()));
        let l = &mut Stored;
        let id = ProfileId::for_new(1, &key(1));
        p.ident_mut(&key(100), l).owner = Some(id);
        p.ident_mut(&key(2), l).owner = Some(id);
        // Loaded from the store: known; new: not known until the driver says so.
        assert_eq!(known_flags(&mut p, false), vec![("dev-100".into(), true), ("dev-2".into(), false)]);
        p.ident_mut(&key(100), l).shared = true;
        p.ident_mut(&key(2), l).shared = true;
        // The driver's last answer (false) sticks, for both.
        assert_eq!(known_flags(&mut p, true), vec![("dev-100".into(), false), ("dev-2".into(), false)]);
        p.ident_mut(&key(2), l).shared = false;
        assert_eq!(known_flags(&mut p, true), vec![("dev-2".into(), true)]);
    }
}
