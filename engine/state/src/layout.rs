//! The persisted layout of the identity state on a [`Store`]: key encoding,
//! the loader the partitions read through, and meta records (partition
//! count, input progress, output positions, counters).

use crate::known::KnownKeys;
use idgraph_core::command::Target;
use idgraph_core::ident::IdentKey;
use idgraph_core::invariants::Snapshot;
use idgraph_core::partition::{DirtyRef, Loader, Partition, Upcoming, PREFETCH_AHEAD};
use idgraph_core::profile_id::ProfileId;
use idgraph_core::record::{decode, decode_profile, encode, encode_append, encode_profile_append, IdentRecord, ProfileRecord, Record};
use idgraph_store::{Batch, Cf, Store, StoreError};
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// Meta records that belong to no partition use this prefix.
const GLOBAL: [u8; 2] = [0xFF, 0xFF];

pub fn ident_key(p: u16, k: &IdentKey) -> Vec<u8> {
    let mut out = Vec::with_capacity(3 + k.value().len());
    ident_key_into(p, k, &mut out);
    out
}

/// [`ident_key`], appended to `out`.
pub fn ident_key_into(p: u16, k: &IdentKey, out: &mut Vec<u8>) {
    out.extend_from_slice(&p.to_be_bytes());
    k.encode_into(out);
}

pub fn profile_key(p: u16, id: &ProfileId) -> Vec<u8> {
    let mut out = Vec::with_capacity(18);
    profile_key_into(p, id, &mut out);
    out
}

/// A state key as this layout writes it: an identifier key written
/// before UUIDs were packed (a changelog record from an older version) is
/// keyed anew; every other key is returned as it is.
pub fn current_key(cf: Cf, key: Vec<u8>) -> Vec<u8> {
    match (cf, key.get(2..).and_then(IdentKey::decode)) {
        (Cf::Idents, Some(k)) => {
            let mut out = key[..2].to_vec();
            k.encode_into(&mut out);
            out
        }
        _ => key,
    }
}

/// [`profile_key`], appended to `out`.
pub fn profile_key_into(p: u16, id: &ProfileId, out: &mut Vec<u8>) {
    out.extend_from_slice(&p.to_be_bytes());
    out.extend_from_slice(&id.0);
}

pub fn meta_key(name: &str) -> Vec<u8> {
    let mut out = GLOBAL.to_vec();
    out.extend_from_slice(name.as_bytes());
    out
}

/// Errors reading state.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("state record under {what} is unreadable: {reason}")]
    Corrupt { what: &'static str, reason: String },
    #[error("the state at this path was created with {found} partitions, the config asks for {wanted}; use the same `state.partitions` or a new state dir")]
    Partitions { found: u16, wanted: u16 },
    #[error("the state at this path has record layout {found}, this version reads layout {LAYOUT} (records placed or keyed by another rule); replay into a new state dir")]
    Layout { found: u16 },
    /// The config numbers a custom identifier type otherwise than the
    /// state recorded it (`key` is the type's config key).
    #[error("config key `{key}`: {reason}")]
    Types { key: String, reason: String },
}

/// Reads records for the partitions, serving prefetched ones first.
pub struct StoreLoader<'a> {
    store: &'a dyn Store,
    known: &'a KnownKeys,
    /// What a prefetch found, by key, with the partition it was read
    /// under: the record (decoded from the store's buffers, not copied out
    /// first), or `None` when absent (read, or answered by the filter, so
    /// a later lookup does not probe it again).
    idents: FxHashMap<IdentKey, (u16, Option<IdentRecord>)>,
    profiles: FxHashMap<ProfileId, (u16, Option<ProfileRecord>)>,
    /// The first failure; the batch is abandoned when set.
    pub error: Option<StateError>,
    pub reads: u64,
    /// Lookups answered "absent" by the filter without a read.
    pub skipped: u64,
}

impl std::fmt::Debug for StoreLoader<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreLoader").field("reads", &self.reads).field("skipped", &self.skipped).finish_non_exhaustive()
    }
}

impl<'a> StoreLoader<'a> {
    pub fn new(store: &'a dyn Store, known: &'a KnownKeys) -> Self {
        Self { store, known, idents: FxHashMap::default(), profiles: FxHashMap::default(), error: None, reads: 0, skipped: 0 }
    }

    fn fail(&mut self, e: StateError) {
        if self.error.is_none() {
            self.error = Some(e);
        }
    }

    /// Reads a key the filter may contain from the store.
    fn read(&mut self, cf: Cf, key: &[u8]) -> Option<Vec<u8>> {
        self.reads += 1;
        match self.store.get(cf, key) {
            Ok(v) => v,
            Err(e) => {
                self.fail(e.into());
                None
            }
        }
    }

    /// Decodes one record; a failure is kept and reads as absent.
    fn decoded<T: Record>(&mut self, cf: Cf, bytes: Option<&[u8]>) -> Option<T> {
        decoded(&mut self.error, cf, bytes)
    }
}

/// [`StoreLoader::decoded`], for callers that hold other parts of the loader.
fn decoded<T: Record>(error: &mut Option<StateError>, cf: Cf, bytes: Option<&[u8]>) -> Option<T> {
    match T::decode_record(bytes?) {
        Ok(r) => Some(r),
        Err(e) => {
            if error.is_none() {
                *error = Some(StateError::Corrupt { what: cf.name(), reason: e.to_string() });
            }
            None
        }
    }
}

impl Loader for StoreLoader<'_> {
    fn ident(&mut self, p: u16, k: &IdentKey) -> Option<IdentRecord> {
        match self.idents.remove(k) {
            Some((q, pre)) if q == p => pre,
            // Not prefetched (or under another partition): filter, then read.
            _ if !self.known.may_contain_ident(p, k) => {
                self.skipped += 1;
                None
            }
            _ => {
                let bytes = self.read(Cf::Idents, &ident_key(p, k));
                self.decoded(Cf::Idents, bytes.as_deref())
            }
        }
    }

    fn profile(&mut self, p: u16, id: &ProfileId) -> Option<ProfileRecord> {
        match self.profiles.remove(id) {
            Some((q, pre)) if q == p => pre,
            _ if !self.known.may_contain_profile(p, id) => {
                self.skipped += 1;
                None
            }
            _ => {
                let bytes = self.read(Cf::Profiles, &profile_key(p, id));
                self.decoded(Cf::Profiles, bytes.as_deref())
            }
        }
    }

    /// Reads the records a wave of commands will need with one multi-get
    /// per family; keys the filter rules out are noted absent.
    fn prefetch(&mut self, wave: &[(u16, Target<'_>)]) {
        let mut ik = Vec::new();
        let mut iks = Vec::new();
        let mut pk = Vec::new();
        let mut pks = Vec::new();
        for (n, (p, t)) in wave.iter().enumerate() {
            match wave.get(n + PREFETCH_AHEAD) {
                Some((q, Target::Ident(k))) => self.known.prefetch_ident(*q, k),
                Some((q, Target::Profile(id))) => self.known.prefetch_profile(*q, id),
                None => {}
            }
            match *t {
                Target::Ident(k) if self.idents.contains_key(k) => {}
                Target::Ident(k) if self.known.may_contain_ident(*p, k) => {
                    ik.push(ident_key(*p, k));
                    iks.push(Some((k.clone(), *p)));
                }
                Target::Ident(k) => {
                    self.skipped += 1;
                    self.idents.insert(k.clone(), (*p, None));
                }
                Target::Profile(id) if self.profiles.contains_key(&id) => {}
                Target::Profile(id) if self.known.may_contain_profile(*p, &id) => {
                    pk.push(profile_key(*p, &id));
                    pks.push((id, *p));
                }
                Target::Profile(id) => {
                    self.skipped += 1;
                    self.profiles.insert(id, (*p, None));
                }
            }
        }
        if !ik.is_empty() {
            self.reads += ik.len() as u64;
            let (idents, error) = (&mut self.idents, &mut self.error);
            let r = self.store.multi_get_with(Cf::Idents, &ik, &mut |i, v| {
                let rec = decoded(error, Cf::Idents, v);
                if let Some((k, p)) = iks[i].take() {
                    idents.insert(k, (p, rec));
                }
            });
            if let Err(e) = r {
                self.fail(e.into());
            }
        }
        if !pk.is_empty() {
            self.reads += pk.len() as u64;
            let (profiles, error) = (&mut self.profiles, &mut self.error);
            let r = self.store.multi_get_with(Cf::Profiles, &pk, &mut |i, v| {
                let (id, p) = pks[i];
                let rec = decoded(error, Cf::Profiles, v);
                profiles.insert(id, (p, rec));
            });
            if let Err(e) = r {
                self.fail(e.into());
            }
        }
    }
}

/// Adds the records a partition dirtied to a batch (encoded in place), and
/// their keys to the known-keys filter.
pub fn write_dirty(batch: &mut Batch, part: &mut Partition, known: &mut KnownKeys) {
    for w in take_dirty(part, known) {
        w.encode_into(batch);
    }
}

/// A dirty record taken from a partition, not yet keyed nor encoded: the
/// store key and the encoding (and a profile's rendering) are made on the
/// thread that writes the batch, which also frees them. (Built on the
/// partition's thread, each key was a block allocated there and freed
/// here; the allocator hands such frees back to the allocating thread.)
/// A profile record is the partition's shared copy, which never changes.
#[derive(Debug)]
pub enum DirtyWrite {
    Ident(u16, IdentKey, IdentRecord),
    Profile(u16, ProfileId, Arc<ProfileRecord>),
    IdentGone(u16, IdentKey),
    ProfileGone(u16, ProfileId),
}

impl DirtyWrite {
    /// The profile this write is about and its record (`None`: deleted).
    pub fn profile(&self) -> Option<(ProfileId, Option<&ProfileRecord>)> {
        match self {
            DirtyWrite::Profile(_, id, r) => Some((*id, Some(r))),
            DirtyWrite::ProfileGone(_, id) => Some((*id, None)),
            _ => None,
        }
    }

    /// Encodes the record into `batch`.
    pub fn encode_into(self, batch: &mut Batch) {
        match self {
            DirtyWrite::Ident(p, k, r) => batch.put_with(Cf::Idents, |b| ident_key_into(p, &k, b), |b| encode_append(&r, b)),
            DirtyWrite::Profile(p, id, r) => {
                batch.put_with(Cf::Profiles, |b| profile_key_into(p, &id, b), |b| encode_profile_append(&r, b))
            }
            DirtyWrite::IdentGone(p, k) => batch.delete_with(Cf::Idents, |b| ident_key_into(p, &k, b)),
            DirtyWrite::ProfileGone(p, id) => batch.delete_with(Cf::Profiles, |b| profile_key_into(p, &id, b)),
        }
    }
}

/// The records a partition dirtied, in the order they were first dirtied
/// (identifiers, then profiles); their keys are added to the known-keys
/// filter now, so lookups from here on see them.
pub fn take_dirty(part: &mut Partition, known: &mut KnownKeys) -> Vec<DirtyWrite> {
    let mut out = Vec::new();
    take_dirty_into(part, known, &mut out);
    out
}

/// [`take_dirty`], appending to `out` (sized once for them).
pub fn take_dirty_into(part: &mut Partition, known: &mut KnownKeys, out: &mut Vec<DirtyWrite>) {
    let p = part.id;
    out.reserve(part.dirty_len());
    part.drain_dirty(&mut |d, next| {
        // The filter's blocks are prefetched a few records ahead: each
        // insert is a random write into a table far larger than the caches.
        // A key the filter holds already (loaded from the store, or written
        // before) is not inserted again: one random memory write saved.
        match next {
            Some(Upcoming::Ident(h)) => known.prefetch_ident_hash(p, h),
            Some(Upcoming::Profile(id)) => known.prefetch_profile(p, &id),
            None => {}
        }
        match d {
            DirtyRef::Ident(k, Some(r), known_before) if *r != IdentRecord::default() => {
                if !known_before {
                    known.insert_ident(p, k);
                }
                out.push(DirtyWrite::Ident(p, k.clone(), r.clone()));
                true
            }
            DirtyRef::Ident(k, _, known_before) => {
                out.push(DirtyWrite::IdentGone(p, k.clone()));
                known_before
            }
            DirtyRef::Profile(id, Some(r), known_before) => {
                if !known_before {
                    known.insert_profile(p, &id);
                }
                out.push(DirtyWrite::Profile(p, id, Arc::clone(r)));
                true
            }
            DirtyRef::Profile(id, None, known_before) => {
                out.push(DirtyWrite::ProfileGone(p, id));
                known_before
            }
        }
    });
}

pub fn put_meta<T: Serialize>(batch: &mut Batch, name: &str, v: &T) {
    batch.put(Cf::Meta, meta_key(name), encode(v));
}

pub fn get_meta<T: for<'de> Deserialize<'de>>(store: &dyn Store, name: &str) -> Result<Option<T>, StateError> {
    match store.get(Cf::Meta, &meta_key(name))? {
        None => Ok(None),
        Some(b) => decode(&b).map(Some).map_err(|e| StateError::Corrupt { what: "meta", reason: e.to_string() }),
    }
}

/// Where records live, recorded at creation. 1 (no `layout` record): a
/// profile's partition hashed its whole ID. 2: a new profile lives in its
/// anchor's partition ([`ProfileId::partition`]). 3: an identifier whose
/// value is a canonical UUID is keyed by the packed value
/// ([`IdentKey::encode_into`]), so a state of layout 2 would not find it.
pub const LAYOUT: u16 = 3;

/// Whether an existing state was written with this version's layout.
pub fn check_layout(store: &dyn Store) -> Result<(), StateError> {
    match get_meta::<u16>(store, "layout")?.unwrap_or(1) {
        LAYOUT => Ok(()),
        found => Err(StateError::Layout { found }),
    }
}

/// The partition count of a state, recorded at creation and checked after,
/// with its layout.
pub fn check_partitions(store: &dyn Store, wanted: u16) -> Result<u16, StateError> {
    match get_meta::<u16>(store, "partitions")? {
        Some(found) if found != wanted => Err(StateError::Partitions { found, wanted }),
        Some(found) => check_layout(store).map(|()| found),
        None => {
            let mut b = Batch::default();
            put_meta(&mut b, "partitions", &wanted);
            put_meta(&mut b, "layout", &LAYOUT);
            store.write(b)?;
            Ok(wanted)
        }
    }
}

/// Reads the partition a profile ID or identifier lives in.
pub fn load_profile(store: &dyn Store, partitions: u16, id: &ProfileId) -> Result<Option<ProfileRecord>, StateError> {
    match store.get(Cf::Profiles, &profile_key(id.partition(partitions), id))? {
        None => Ok(None),
        Some(b) => decode_profile(&b).map(Some).map_err(|e| StateError::Corrupt { what: "profiles", reason: e.to_string() }),
    }
}

pub fn load_ident(store: &dyn Store, partitions: u16, k: &IdentKey) -> Result<Option<IdentRecord>, StateError> {
    match store.get(Cf::Idents, &ident_key(k.partition(partitions), k))? {
        None => Ok(None),
        Some(b) => decode(&b).map(Some).map_err(|e| StateError::Corrupt { what: "idents", reason: e.to_string() }),
    }
}

/// Follows aliases to the live profile.
pub fn resolve(
    store: &dyn Store,
    partitions: u16,
    mut id: ProfileId,
) -> Result<Option<(ProfileId, Box<idgraph_core::record::LiveProfile>)>, StateError> {
    for _ in 0..1024 {
        match load_profile(store, partitions, &id)? {
            Some(ProfileRecord::Live(lp)) => return Ok(Some((id, lp))),
            Some(ProfileRecord::Alias(t)) => id = t,
            _ => return Ok(None),
        }
    }
    Ok(None)
}

/// Every live profile, in ID order within each partition.
pub fn for_each_profile(store: &dyn Store, f: &mut dyn FnMut(ProfileId, ProfileRecord)) -> Result<(), StateError> {
    let mut err = None;
    store.scan(Cf::Profiles, &[], &mut |k, v| {
        if k.len() != 18 {
            return true;
        }
        let mut id = [0u8; 16];
        id.copy_from_slice(&k[2..]);
        match decode_profile(v) {
            Ok(r) => {
                f(ProfileId(id), r);
                true
            }
            Err(e) => {
                err = Some(StateError::Corrupt { what: "profiles", reason: e.to_string() });
                false
            }
        }
    })?;
    err.map_or(Ok(()), Err)
}

/// The whole state as a snapshot (tests and invariant checks).
pub fn snapshot(store: &dyn Store) -> Result<Snapshot, StateError> {
    let mut s = Snapshot::default();
    for_each_profile(store, &mut |id, r| {
        s.profiles.insert(id, r);
    })?;
    let mut err = None;
    store.scan(Cf::Idents, &[], &mut |k, v| {
        let (Some(key), Ok(rec)) = (IdentKey::decode(&k[2..]), decode::<IdentRecord>(v)) else {
            err = Some(StateError::Corrupt { what: "idents", reason: "undecodable record".into() });
            return false;
        };
        s.idents.insert(key, rec);
        true
    })?;
    err.map_or(Ok(s), Err)
}

/// Counters kept with the state so a resumed run reports totals.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct Counters {
    pub lines: u64,
    pub events: u64,
    pub rejects: u64,
    pub rejects_by_reason: Vec<(String, u64)>,
    pub drops_by_reason: Vec<(String, u64)>,
    pub merges: u64,
    pub splits: u64,
    pub conflicts: u64,
    pub shared: u64,
    pub created: u64,
}

pub fn bump(list: &mut Vec<(String, u64)>, name: &str, n: u64) {
    match list.iter_mut().find(|(k, _)| k == name) {
        Some((_, c)) => *c += n,
        None => {
            list.push((name.to_string(), n));
            list.sort();
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use idgraph_store::MemStore;

    #[test]
    fn a_state_records_its_layout_and_an_older_one_is_refused() {
        let fresh = MemStore::new();
        assert_eq!(check_partitions(&fresh, 4).unwrap(), 4);
        assert_eq!(get_meta::<u16>(&fresh, "layout").unwrap(), Some(LAYOUT));
        assert_eq!(check_partitions(&fresh, 4).unwrap(), 4, "reopened");
        // Written before the layout was recorded: profiles hashed by ID.
        let old = MemStore::new();
        let mut b = Batch::default();
        put_meta(&mut b, "partitions", &4u16);
        old.write(b).unwrap();
        let e = check_partitions(&old, 4).unwrap_err();
        assert!(matches!(e, StateError::Layout { found: 1 }), "{e}");
        assert!(e.to_string().contains("new state dir"), "{e}");
        assert!(check_layout(&old).is_err());
        // Layout 2: identifier keys held UUIDs as text.
        let two = MemStore::new();
        let mut b = Batch::default();
        put_meta(&mut b, "partitions", &4u16);
        put_meta(&mut b, "layout", &2u16);
        two.write(b).unwrap();
        assert!(matches!(check_partitions(&two, 4).unwrap_err(), StateError::Layout { found: 2 }));
    }

    #[test]
    fn an_identifier_key_from_before_packing_is_keyed_anew() {
        let text = "6d92078a-8246-4ba4-ae5b-76104861e7dc";
        let k = IdentKey::new(idgraph_core::ident::IdentType::ANONYMOUS_ID, text);
        let mut old = 7u16.to_be_bytes().to_vec();
        k.canonical_into(&mut old);
        assert_eq!(current_key(Cf::Idents, old.clone()), ident_key(7, &k));
        assert_ne!(old, ident_key(7, &k));
        // Keys already current, other identifiers and other families pass.
        assert_eq!(current_key(Cf::Idents, ident_key(7, &k)), ident_key(7, &k));
        let e = IdentKey::new(idgraph_core::ident::IdentType::EMAIL, "a@b.co");
        assert_eq!(current_key(Cf::Idents, ident_key(7, &e)), ident_key(7, &e));
        assert_eq!(current_key(Cf::Profiles, old.clone()), old);
        assert_eq!(current_key(Cf::Idents, vec![0, 7]), vec![0, 7]);
    }
}
