//! P partitions in one process over an in-memory bus.
//!
//! Delivery is deterministic and goes in waves: every command queued when a
//! wave starts is delivered, partition by partition in order; what they
//! produce forms the next wave. Before each wave the loader may prefetch the
//! records the wave will touch (one multi-get instead of many gets).
//! [`Cluster::run`] returns when no command is left anywhere (quiescence).

use crate::command::{Command, Target};
use crate::config::CoreConfig;
use crate::event::Touchpoint;
use crate::ident::IdentKey;
use crate::partition::{Effects, IdentAt, Loader, Partition, Stats, PREFETCH_AHEAD};
use crate::profile_id::ProfileId;
use crate::record::ProfileRecord;
use std::collections::VecDeque;
use std::sync::Arc;

#[derive(Debug)]
pub struct Cluster {
    pub parts: Vec<Partition>,
    inbox: Vec<VecDeque<Command>>,
    /// Commands delivered so far (a measure of protocol cost).
    pub delivered: u64,
}

impl Cluster {
    pub fn new(partitions: u16, cfg: Arc<CoreConfig>) -> Self {
        assert!(partitions >= 1, "at least one partition");
        Self {
            parts: (0..partitions).map(|p| Partition::new(p, partitions, cfg.clone())).collect(),
            inbox: (0..partitions).map(|_| VecDeque::new()).collect(),
            delivered: 0,
        }
    }

    /// Gives the partitions an owner cache of `bytes` in all (split
    /// evenly; see [`Partition::with_owner_cache`]).
    #[must_use]
    pub fn with_owner_cache(mut self, bytes: usize) -> Self {
        let each = bytes / self.parts.len();
        self.parts = self.parts.into_iter().map(|p| p.with_owner_cache(each)).collect();
        self
    }

    pub fn partitions(&self) -> u16 {
        self.parts.len() as u16
    }

    /// Queues an input event at its anchor's partition.
    pub fn submit(&mut self, ev: Touchpoint) {
        if ev.idents.is_empty() {
            return;
        }
        let cmd = Command::Route { ev: Box::new(ev), probe: 0 };
        let p = cmd.partition(self.partitions()) as usize;
        self.inbox[p].push_back(cmd);
    }

    /// Delivers commands until none is left.
    pub fn run(&mut self, loader: &mut dyn Loader, out: &mut Effects) {
        let n = self.parts.len();
        let mut fx = Effects::default();
        loop {
            let wave: Vec<VecDeque<Command>> = self.inbox.iter_mut().map(std::mem::take).collect();
            if wave.iter().all(VecDeque::is_empty) {
                break;
            }
            // Only each command's own target: a route that finds its first
            // identifier owned (most do) reads no other, and prefetching the
            // event's other identifiers read a quarter of all records for
            // nothing (a later probe reads its record when it gets there).
            // Routes' own targets are [`prefetch_owners`]' first step.
            let mut targets: Vec<(u16, Target<'_>)> = Vec::with_capacity(wave.iter().map(VecDeque::len).sum());
            for (p, cmds) in wave.iter().enumerate() {
                for c in cmds.iter().filter(|c| c.route_start().is_none()) {
                    if self.parts[p].reads_target(c) {
                        targets.push((p as u16, c.target()));
                    }
                }
            }
            if !targets.is_empty() {
                loader.prefetch(&targets);
            }
            drop(targets);
            let routes = wave
                .iter()
                .enumerate()
                .flat_map(|(p, cmds)| cmds.iter().filter_map(move |c| c.route_start().map(|(idents, probe)| (p as u16, idents, probe))));
            prefetch_owners(&mut self.parts, routes, loader);
            for (p, mut cmds) in wave.into_iter().enumerate() {
                while let Some(cmd) = cmds.pop_front() {
                    // Each command looks its target up first: prefetched
                    // in two steps, PREFETCH_AHEAD and half as many
                    // commands before.
                    let part = &self.parts[p];
                    if let Some(c) = cmds.get(PREFETCH_AHEAD - 1) {
                        part.prefetch_far(c.target());
                    }
                    if let Some(c) = cmds.get(PREFETCH_AHEAD / 2 - 1) {
                        part.prefetch_near(c.target());
                    }
                    self.delivered += 1;
                    self.parts[p].handle(cmd, loader, &mut fx);
                    for c in fx.cmds.drain(..) {
                        let d = c.partition(n as u16) as usize;
                        self.inbox[d].push_back(c);
                    }
                }
            }
        }
        out.lifecycle.append(&mut fx.lifecycle);
        out.consent.append(&mut fx.consent);
    }

    pub fn stats(&self) -> Stats {
        let mut s = Stats::default();
        for p in &self.parts {
            s.merge(&p.stats);
        }
        s
    }
}
/// A wave's prefetch for its routes (the caller prefetches the other
/// commands' targets). A route looks up its first identifier; when that
/// is owned (most are), it applies the event to the owner next, at once
/// when the profile is local, and that fold claims the event's
/// identifiers the profile lacks, at once when they are local: each a
/// lone read when it came. Here the first identifiers not cached are read
/// in one multi-get, their owners in a second, then the identifiers those
/// lack in a third. The records read are loaded into their partitions'
/// caches (the routes use them next anyway); nothing changes.
///
/// A route whose first identifier has no owner goes on to the next ones
/// of its partition, as the route itself will before it moves to another
/// partition (reading, alone, what neither cache holds: the read the route
/// would make), so the profile it applies to joins the second multi-get
/// instead of being read alone. Another partition's identifiers are left
/// to that partition's own prefetch, when the route gets there (in `run`,
/// that partition may belong to another instance).
///
/// `routes` gives each route's partition, the event's identifiers and its
/// probe ([`Command::route_start`]).
pub fn prefetch_owners<'a>(parts: &mut [Partition], routes: impl Iterator<Item = (u16, &'a [IdentKey], usize)>, loader: &mut dyn Loader) {
    let n = parts.len() as u16;
    // Each first identifier's cache position (or owner, from the owner
    // cache), looked up once: a position stays valid until an eviction
    // (which runs between batches). A route past its last probe claims
    // its first identifier and looks no further.
    let mut starts: Vec<(u16, &'a [IdentKey], usize, IdentAt)> = Vec::new();
    let mut firsts: Vec<(u16, Target<'a>)> = Vec::new();
    let routes: Vec<(u16, &'a [IdentKey], usize)> = routes.collect();
    let first_of = |idents: &[IdentKey], probe: usize| if probe < idents.len() { probe } else { 0 };
    for (i, &(p, idents, probe)) in routes.iter().enumerate() {
        if let Some(&(q, ahead, f)) = routes.get(i + PREFETCH_AHEAD) {
            if let Some(k) = ahead.get(first_of(ahead, f)) {
                parts[q as usize].prefetch_far(Target::Ident(k));
            }
        }
        if let Some(&(q, ahead, f)) = routes.get(i + PREFETCH_AHEAD / 2) {
            if let Some(k) = ahead.get(first_of(ahead, f)) {
                parts[q as usize].prefetch_near(Target::Ident(k));
            }
        }
        let Some(k) = idents.get(first_of(idents, probe)) else { continue };
        let at = parts[p as usize].cached_ident(k);
        if at == IdentAt::Nowhere {
            firsts.push((p, Target::Ident(k)));
        }
        starts.push((p, idents, probe, at));
    }
    if !firsts.is_empty() {
        loader.prefetch(&firsts);
    }
    drop(firsts);
    // Each first identifier's owner (a read where neither cache knew it),
    // then whether the owner's profile is cached.
    let mut owned: Vec<(ProfileId, &'a [IdentKey], usize)> = Vec::with_capacity(starts.len());
    for (i, &(p, idents, probe, at)) in starts.iter().enumerate() {
        match starts.get(i + PREFETCH_AHEAD) {
            Some(&(q, _, _, IdentAt::Slot(j))) => parts[q as usize].prefetch_ident_at(j),
            Some(&(q, ahead, f, IdentAt::Nowhere)) => parts[q as usize].prefetch_far(Target::Ident(&ahead[first_of(ahead, f)])),
            _ => {}
        }
        let part = &mut parts[p as usize];
        let mut first = first_of(idents, probe);
        let mut owner = part.owner_found(at, &idents[first], loader);
        while owner.is_none() && probe < idents.len() && idents.get(first + 1).is_some_and(|k| k.partition(n) == p) {
            first += 1;
            let at = part.cached_ident(&idents[first]);
            owner = part.owner_found(at, &idents[first], loader);
        }
        if let Some(o) = owner {
            owned.push((o, idents, first));
        }
    }
    drop(starts);
    let mut owners: Vec<(u16, Target<'static>)> = Vec::new();
    let mut found: Vec<(ProfileId, &'a [IdentKey], usize)> = Vec::new();
    for (i, &(o, idents, first)) in owned.iter().enumerate() {
        prefetch_profiles_ahead(parts, &owned, i);
        let q = o.partition(n);
        if !parts[q as usize].is_cached(Target::Profile(o)) {
            owners.push((q, Target::Profile(o)));
        }
        if idents.len() > 1 {
            found.push((o, idents, first));
        }
    }
    drop(owned);
    if !owners.is_empty() {
        loader.prefetch(&owners);
    }
    let mut lacked: Vec<(u16, Target<'a>)> = Vec::new();
    for (step, &(o, idents, first)) in found.iter().enumerate() {
        prefetch_profiles_ahead(parts, &found, step);
        let Some(ProfileRecord::Live(lp)) = parts[o.partition(n) as usize].profile(o, loader) else { continue };
        let start = lacked.len();
        lacked.extend(
            idents.iter().enumerate().filter(|&(i, x)| i != first && !lp.contains(x)).map(|(_, x)| (x.partition(n), Target::Ident(x))),
        );
        let mut i = start;
        while i < lacked.len() {
            if parts[lacked[i].0 as usize].owner_known(lacked[i].1) {
                lacked.swap_remove(i);
            } else {
                i += 1;
            }
        }
    }
    if !lacked.is_empty() {
        loader.prefetch(&lacked);
    }
}

/// The two prefetches for the profiles a loop over `list` looks up
/// [`PREFETCH_AHEAD`] and half as many steps after step `i`.
fn prefetch_profiles_ahead<T>(parts: &[Partition], list: &[(ProfileId, T, usize)], i: usize) {
    let n = parts.len() as u16;
    if let Some(&(o, ..)) = list.get(i + PREFETCH_AHEAD) {
        parts[o.partition(n) as usize].prefetch_far(Target::Profile(o));
    }
    if let Some(&(o, ..)) = list.get(i + PREFETCH_AHEAD / 2) {
        parts[o.partition(n) as usize].prefetch_near(Target::Profile(o));
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::command::Target;
    use crate::ident::IdentType;
    use crate::invariants::Snapshot;
    use rustc_hash::FxHashSet;

    /// Serves a finished run's records, telling the reads a prefetch
    /// announced from the lone ones.
    #[derive(Default)]
    struct Counting {
        snap: Snapshot,
        announced: FxHashSet<String>,
        lone: Vec<String>,
    }

    impl Counting {
        fn note(&mut self, key: String) {
            if !self.announced.contains(&key) {
                self.lone.push(key);
            }
        }
    }

    impl Loader for Counting {
        fn ident(&mut self, _: u16, k: &IdentKey) -> Option<crate::record::IdentRecord> {
            self.note(format!("{}:{}", k.ty(), k.value()));
            self.snap.idents.get(k).cloned()
        }
        fn profile(&mut self, _: u16, id: &ProfileId) -> Option<ProfileRecord> {
            self.note(id.to_string());
            self.snap.profiles.get(id).cloned()
        }
        fn prefetch(&mut self, wave: &[(u16, Target<'_>)]) {
            for (_, t) in wave {
                self.announced.insert(match t {
                    Target::Ident(k) => format!("{}:{}", k.ty(), k.value()),
                    Target::Profile(id) => id.to_string(),
                });
            }
        }
    }

    fn ev(i: usize, idents: &[&IdentKey]) -> Touchpoint {
        Touchpoint {
            event_id: format!("e{i}").into(),
            ts: 1_000 + i as i64,
            source: "web".into(),
            idents: idents.iter().map(|k| (*k).clone()).collect(),
            traits: vec![],
            revenue: None,
            is_order: false,
            consent: vec![],
        }
    }

    /// Returning persons, with nothing cached: the profiles their known
    /// identifiers lead to, and the identifiers those profiles lack, are
    /// all read through prefetches, none alone.
    #[test]
    fn a_returning_event_reads_its_profile_and_new_identifiers_by_prefetch() {
        let cfg = Arc::new(CoreConfig::default());
        for p in [1u16, 4] {
            let person =
                |i: usize| (IdentKey::new(IdentType::EMAIL, format!("p{i}@x.co")), IdentKey::new(IdentType::ANONYMOUS_ID, format!("c{i}")));
            let mut first = Cluster::new(p, cfg.clone());
            for i in 0..20 {
                let (email, cookie) = person(i);
                first.submit(ev(i, &[&email, &cookie]));
            }
            first.run(&mut crate::partition::EmptyLoader, &mut Effects::default());
            let mut loader = Counting::default();
            for part in &first.parts {
                part.snapshot_into(&mut loader.snap);
            }
            // Nothing cached; each person comes back with a new phone.
            let mut again = Cluster::new(p, cfg.clone());
            for i in 0..20 {
                let (email, cookie) = person(i);
                let phone = IdentKey::new(IdentType::PHONE, format!("+1415555{i:04}"));
                again.submit(ev(100 + i, &[&email, &cookie, &phone]));
            }
            again.run(&mut loader, &mut Effects::default());
            assert!(loader.announced.len() >= 60, "P={p}: {} announced", loader.announced.len());
            assert_eq!(loader.lone, Vec::<String>::new(), "P={p}: read without a prefetch");
            assert_eq!(again.stats().events_applied, 20);
        }
    }

    /// Returning persons whose event lists a new cookie before their known
    /// email: the route finds the cookie unowned and goes on to the email.
    /// The prefetch goes on likewise, so each profile is still read through
    /// a prefetch; only identifier records are read alone (the email's,
    /// which the route itself reads when nothing caches it).
    #[test]
    fn a_route_whose_first_identifier_is_new_gets_its_profile_by_prefetch() {
        let cfg = Arc::new(CoreConfig::default());
        for p in [1u16, 4] {
            let email = |i: usize| IdentKey::new(IdentType::EMAIL, format!("p{i}@x.co"));
            let mut first = Cluster::new(p, cfg.clone());
            for i in 0..20 {
                first.submit(ev(i, &[&email(i)]));
            }
            first.run(&mut crate::partition::EmptyLoader, &mut Effects::default());
            let mut loader = Counting::default();
            for part in &first.parts {
                part.snapshot_into(&mut loader.snap);
            }
            let profiles: FxHashSet<String> = loader.snap.profiles.keys().map(ToString::to_string).collect();
            assert_eq!(profiles.len(), 20);
            let mut again = Cluster::new(p, cfg.clone());
            for i in 0..20 {
                let cookie = IdentKey::new(IdentType::ANONYMOUS_ID, format!("new-{i}"));
                again.submit(ev(100 + i, &[&cookie, &email(i)]));
            }
            again.run(&mut loader, &mut Effects::default());
            let lone_profiles: Vec<&String> = loader.lone.iter().filter(|k| profiles.contains(*k)).collect();
            assert_eq!(lone_profiles, Vec::<&String>::new(), "P={p}: profiles read without a prefetch");
            assert_eq!(again.stats().events_applied, 20, "P={p}");
            assert_eq!(again.stats().profiles_created, 0, "P={p}");
        }
    }
}
