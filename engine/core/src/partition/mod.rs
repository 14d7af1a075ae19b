//! One partition: a deterministic state machine over the identifier and
//! profile records whose keys hash to it (ADR 0002).
//!
//! `handle(command)` reads and writes records through a write-back cache
//! (misses go to a [`Loader`]), and appends commands for other partitions
//! and output events to [`Effects`]. The driver persists the dirty records
//! ([`Partition::drain_dirty`]) together with its progress.
//!
//! # Layout
//! - `mod.rs`: the partition, its counters and command dispatch.
//! - `cache.rs`: the write-back record cache.
//! - `map.rs`: its maps (positions, and lookups a loop can prefetch).
//! - `owners.rs`: the owner cache (identifier -> owning profile).
//! - `ident_cmds.rs`: commands handled at an identifier's partition.
//! - `profile_cmds.rs`: commands handled at a profile's partition.
//! - `merge.rs`: link, hand-over and the verdict; detach and split.

mod cache;
mod evict;
mod ident_cmds;
mod map;
mod merge;
mod owners;
mod profile_cmds;

use crate::command::{Command, Target};
use crate::config::CoreConfig;
use crate::ident::IdentKey;
use crate::output::{ConsentEvent, IdentOut, LifecycleEvent};
use crate::profile_id::ProfileId;
use crate::record::{IdentRecord, LiveProfile, ProfileRecord};
use crate::time::Millis;
use rustc_hash::FxHashSet;
use std::sync::Arc;

/// Reads records missing from the cache (a store, or nothing).
pub trait Loader {
    fn ident(&mut self, partition: u16, key: &IdentKey) -> Option<IdentRecord>;
    fn profile(&mut self, partition: u16, id: &ProfileId) -> Option<ProfileRecord>;
    /// Hint: a wave of commands is about to touch these keys (not cached).
    fn prefetch(&mut self, _wave: &[(u16, Target<'_>)]) {}
}

/// A loader for a fresh, empty state.
#[derive(Debug, Default)]
pub struct EmptyLoader;

impl Loader for EmptyLoader {
    fn ident(&mut self, _: u16, _: &IdentKey) -> Option<IdentRecord> {
        None
    }
    fn profile(&mut self, _: u16, _: &ProfileId) -> Option<ProfileRecord> {
        None
    }
}

/// What handling commands produced.
#[derive(Debug, Default)]
pub struct Effects {
    pub cmds: Vec<Command>,
    pub lifecycle: Vec<LifecycleEvent>,
    pub consent: Vec<ConsentEvent>,
}

/// Counters of what the state machine did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Stats {
    pub events_applied: u64,
    pub events_unlinkable: u64,
    pub shared_dropped: u64,
    pub profiles_created: u64,
    pub merges: u64,
    pub splits: u64,
    pub conflicts: u64,
    pub identifiers_shared: u64,
    pub internal_errors: u64,
}

impl Stats {
    pub fn merge(&mut self, o: &Stats) {
        self.events_applied += o.events_applied;
        self.events_unlinkable += o.events_unlinkable;
        self.shared_dropped += o.shared_dropped;
        self.profiles_created += o.profiles_created;
        self.merges += o.merges;
        self.splits += o.splits;
        self.conflicts += o.conflicts;
        self.identifiers_shared += o.identifiers_shared;
        self.internal_errors += o.internal_errors;
    }
}

#[derive(Debug)]
struct Slot<T> {
    val: Option<T>,
    dirty: bool,
    /// Whether the driver's key-set filter holds the key: loaded from the
    /// store, or what the driver answered when it last drained the record.
    stored: bool,
    gen: u32,
}

pub use cache::{DirtyRef, IdentAt, Upcoming, PREFETCH_AHEAD};

/// The record cache's maps: a record has a position that dirty lists can
/// hold instead of its key, and lookups can be prefetched.
type Map<K, V> = map::CacheMap<K, V>;

#[derive(Debug)]
pub struct Partition {
    pub id: u16,
    pub partitions: u16,
    cfg: Arc<CoreConfig>,
    idents: Map<IdentKey, Slot<IdentRecord>>,
    /// Profile records are shared: a driver that drains a dirty one may
    /// keep it (to encode and render on another thread) while the next
    /// batch runs; a take that finds it still shared copies it.
    profiles: Map<ProfileId, Slot<Arc<ProfileRecord>>>,
    /// Positions in `idents` / `profiles` of the records dirtied since the
    /// last drain (a record keeps its position while cached, and dirty
    /// ones are never evicted).
    dirty_idents: Vec<usize>,
    dirty_profiles: Vec<usize>,
    touched: Vec<ProfileId>,
    touched_set: FxHashSet<ProfileId>,
    /// Position in `profiles` of the last profile looked up (a hint).
    profile_hint: usize,
    /// The shared block of the last record taken out alone, emptied, for
    /// the put that follows: a change to a profile does not free one
    /// block and allocate another.
    spare: Option<Arc<ProfileRecord>>,
    /// Owners of identifiers whose records may have left `idents`.
    owners: owners::OwnerCache,
    /// The cache generation (one per batch) and where each map's records
    /// were last used, by generation.
    gen: u32,
    ident_uses: evict::Uses,
    profile_uses: evict::Uses,
    pub stats: Stats,
}

fn lifecycle(kind: &'static str, profile: ProfileId, at: Millis) -> LifecycleEvent {
    LifecycleEvent { kind, profile_id: profile, related: Vec::new(), rule: None, identifier: None, event_id: None, at }
}

impl Partition {
    pub fn new(id: u16, partitions: u16, cfg: Arc<CoreConfig>) -> Self {
        Self {
            id,
            partitions,
            cfg,
            idents: Map::default(),
            profiles: Map::default(),
            dirty_idents: Vec::new(),
            dirty_profiles: Vec::new(),
            touched: Vec::new(),
            touched_set: FxHashSet::default(),
            profile_hint: 0,
            spare: None,
            owners: owners::OwnerCache::default(),
            gen: 0,
            ident_uses: evict::Uses::default(),
            profile_uses: evict::Uses::default(),
            stats: Stats::default(),
        }
    }

    /// Gives the partition an owner cache of at most `bytes` (none by
    /// default): routes of identifiers it knows read no record.
    #[must_use]
    pub fn with_owner_cache(mut self, bytes: usize) -> Self {
        self.set_owner_cache(bytes);
        self
    }

    /// Replaces the owner cache with an empty one of at most `bytes`.
    pub fn set_owner_cache(&mut self, bytes: usize) {
        // The old one is freed before the new one is allocated.
        self.owners = owners::OwnerCache::default();
        self.owners = owners::OwnerCache::with_bytes(bytes);
    }

    /// Lookups the owner cache answered in place of a read so far (a
    /// route's prefetch and the route count once).
    pub fn owner_cache_hits(&self) -> u64 {
        self.owners.hits
    }

    pub fn config(&self) -> &Arc<CoreConfig> {
        &self.cfg
    }

    fn ident_out(&self, k: &IdentKey) -> IdentOut {
        IdentOut { ty: self.cfg.type_name(k.ty()).to_string(), value: k.value().to_string() }
    }

    /// Handles one command addressed to this partition.
    pub fn handle(&mut self, cmd: Command, loader: &mut dyn Loader, fx: &mut Effects) {
        match cmd {
            Command::Route { ev, probe } => self.on_route(ev, probe as usize, loader, fx),
            Command::Attach { to, ident, link } => self.on_attach(to, ident, link, loader, fx),
            Command::Repoint { ident, to, epoch } => self.on_repoint(ident, to, epoch, loader, fx),
            Command::RecordRefusal { ident, with, at } => self.on_record_refusal(ident, with, at, loader, fx),
            Command::Create { id, ev } => self.on_create(id, ev, loader, fx),
            Command::CreatePiece { id, state } => self.on_create_piece(id, state, loader, fx),
            c @ Command::Apply { .. } => self.on_apply(c, loader, fx),
            c @ Command::AttachDone { .. } => self.on_attach_done(c, loader, fx),
            c @ Command::AddEdge { .. } => self.on_add_edge(c, loader, fx),
            c @ Command::Link { .. } => self.on_link(c, loader, fx),
            c @ Command::Handover { .. } => self.on_handover(c, loader, fx),
            Command::Absorbed { id, into } => self.on_absorbed(id, into, loader, fx),
            Command::Refused { id, by } => self.on_refused(id, by, loader, fx),
            c @ Command::Detach { .. } => self.on_detach(c, loader, fx),
        }
    }

    /// Handles a command at once when its target lives in this partition
    /// (as if it were the next one delivered: ADR 0002, local), else sends
    /// it.
    fn handle_or_send(&mut self, cmd: Command, loader: &mut dyn Loader, fx: &mut Effects) {
        if cmd.partition(self.partitions) == self.id {
            self.handle(cmd, loader, fx);
        } else {
            fx.cmds.push(cmd);
        }
    }

    /// Takes a live, admissible profile out of the cache, or forwards the
    /// command (alias) or queues it (frozen, busy, not yet created). The
    /// caller puts the profile back.
    fn admit(
        &mut self,
        id: ProfileId,
        cmd: Command,
        need_idle: bool,
        loader: &mut dyn Loader,
        fx: &mut Effects,
    ) -> Option<(Box<LiveProfile>, Command)> {
        match self.take_profile(id, loader) {
            Some(ProfileRecord::Alias(t)) => {
                self.put_profile(id, Some(ProfileRecord::Alias(t)));
                fx.cmds.push(cmd.retarget(id, t));
                None
            }
            Some(ProfileRecord::Placeholder(mut q)) => {
                q.push(cmd);
                self.put_profile(id, Some(ProfileRecord::Placeholder(q)));
                None
            }
            None => {
                self.put_profile(id, Some(ProfileRecord::Placeholder(vec![cmd])));
                None
            }
            Some(ProfileRecord::Live(mut lp)) => {
                if lp.frozen_for.is_some() || (need_idle && !lp.pending.is_empty()) {
                    lp.queue.push(cmd);
                    self.put_profile(id, Some(ProfileRecord::Live(lp)));
                    None
                } else {
                    Some((lp, cmd))
                }
            }
        }
    }

    /// Puts a live profile back and, when it is idle, handles its queue.
    fn put_live(&mut self, id: ProfileId, mut lp: Box<LiveProfile>, loader: &mut dyn Loader, fx: &mut Effects) {
        let queue = if lp.is_idle() { std::mem::take(&mut lp.queue) } else { Vec::new() };
        self.put_profile(id, Some(ProfileRecord::Live(lp)));
        for c in queue {
            self.handle(c, loader, fx);
        }
    }
}

impl Partition {
    /// Whether handling `c` (not a route: [`crate::cluster::prefetch_owners`]
    /// reads for those) reads its target from the store, so a prefetch
    /// should: an attach needs only the owner when the identifier is owned.
    pub fn reads_target(&self, c: &Command) -> bool {
        match c {
            Command::Attach { .. } => !self.owner_known(c.target()),
            _ => !self.is_cached(c.target()),
        }
    }

    /// Whether a command for `t` that only needs an identifier's owner
    /// (a route, an attach that finds it owned) can do without reading it:
    /// its record is cached or the owner cache knows it.
    pub fn owner_known(&self, t: Target<'_>) -> bool {
        match t {
            Target::Ident(k) => self.idents.contains_key(k) || self.owners.knows(k),
            Target::Profile(_) => self.is_cached(t),
        }
    }

    /// Whether the record a command targets is in the cache.
    pub fn is_cached(&self, t: Target<'_>) -> bool {
        match t {
            Target::Ident(k) => self.idents.contains_key(k),
            Target::Profile(id) => self.profiles.contains_key(&id),
        }
    }

    /// Copies every cached record into `snap` (complete only when nothing
    /// was evicted and the loader is empty: simulations and small tests).
    pub fn snapshot_into(&self, snap: &mut crate::invariants::Snapshot) {
        for (k, s) in self.idents.iter() {
            if let Some(v) = &s.val {
                snap.idents.insert(k.clone(), v.clone());
            }
        }
        for (k, s) in self.profiles.iter() {
            if let Some(v) = &s.val {
                snap.profiles.insert(*k, ProfileRecord::clone(v));
            }
        }
    }
}
