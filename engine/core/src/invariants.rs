//! Whole-state checks of the rules and of ownership, used by the simulation
//! tests and by `idgraph check` style tooling. Messages never contain
//! identifier values.

use crate::config::CoreConfig;
use crate::ident::IdentKey;
use crate::profile_id::ProfileId;
use crate::record::{IdentRecord, ProfileRecord};
use std::collections::BTreeMap;

/// A consistent snapshot of every record.
#[derive(Debug, Default, Clone)]
pub struct Snapshot {
    pub idents: BTreeMap<IdentKey, IdentRecord>,
    pub profiles: BTreeMap<ProfileId, ProfileRecord>,
}

impl Snapshot {
    /// Follows aliases to the live profile (None: dangling or cyclic).
    pub fn resolve(&self, mut id: ProfileId) -> Option<ProfileId> {
        for _ in 0..=self.profiles.len() {
            match self.profiles.get(&id)? {
                ProfileRecord::Live(_) => return Some(id),
                ProfileRecord::Alias(t) => id = *t,
                ProfileRecord::Placeholder(_) => return None,
            }
        }
        None
    }

    /// Live profiles with their identifier sets.
    pub fn live_groups(&self) -> BTreeMap<ProfileId, Vec<IdentKey>> {
        self.profiles
            .iter()
            .filter_map(|(id, r)| match r {
                ProfileRecord::Live(lp) => {
                    let mut v: Vec<IdentKey> = lp.idents.iter().map(|e| e.key.clone()).collect();
                    v.sort();
                    Some((*id, v))
                }
                _ => None,
            })
            .collect()
    }
}

/// Every violated invariant, described without identifier values.
pub fn check(s: &Snapshot, cfg: &CoreConfig) -> Vec<String> {
    let mut errs = Vec::new();
    let mut holder: BTreeMap<&IdentKey, ProfileId> = BTreeMap::new();
    for (id, r) in &s.profiles {
        match r {
            ProfileRecord::Placeholder(q) => errs.push(format!("profile {id} is a placeholder with {} queued commands", q.len())),
            ProfileRecord::Alias(_) => {
                if s.resolve(*id).is_none() {
                    errs.push(format!("alias {id} does not resolve to a live profile"));
                }
            }
            ProfileRecord::Live(lp) => {
                if let Some(v) = lp.violation(cfg) {
                    errs.push(format!("profile {id} breaks rule {}", v.rule_name(cfg)));
                }
                if lp.frozen_for.is_some() || !lp.pending.is_empty() || !lp.queue.is_empty() {
                    errs.push(format!("profile {id} is not quiescent (frozen/pending/queued)"));
                }
                for e in &lp.idents {
                    if let Some(other) = holder.insert(&e.key, *id) {
                        errs.push(format!("identifier {:?} is in profiles {other} and {id}", e.key));
                    }
                    match s.idents.get(&e.key) {
                        None => errs.push(format!("identifier {:?} of {id} has no record", e.key)),
                        Some(rec) if rec.shared => errs.push(format!("shared identifier {:?} still in {id}", e.key)),
                        Some(rec) => {
                            if rec.owner.and_then(|o| s.resolve(o)) != Some(*id) {
                                errs.push(format!("identifier {:?} is in {id} but its owner resolves elsewhere", e.key));
                            }
                        }
                    }
                }
                for ed in &lp.edges {
                    if ed.a as usize >= lp.idents.len() || ed.b as usize >= lp.idents.len() || ed.a >= ed.b {
                        errs.push(format!("profile {id} has a malformed edge"));
                    }
                }
            }
        }
    }
    for (k, rec) in &s.idents {
        if let Some(o) = rec.owner {
            match s.resolve(o) {
                None => errs.push(format!("owner of {k:?} does not resolve")),
                Some(live) => {
                    if holder.get(k) != Some(&live) {
                        errs.push(format!("{k:?} is owned by {live} which does not list it"));
                    }
                }
            }
        }
    }
    errs
}
