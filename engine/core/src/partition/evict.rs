//! Eviction from the record cache, by generation.
//!
//! A generation is a batch. Each map lists its positions by the generation
//! its records were last used in (one push on a record's first use in a
//! generation), so the end of a batch over the cache size visits the
//! records it may evict, not the whole cache.

use super::map::CacheKey;
use super::{Map, Partition, Slot};

/// Positions in a record-cache map by when their records were last used.
/// Every cached record is listed in `current` or `older` (a position may be
/// listed twice, or after its record left: an eviction checks each record's
/// generation and skips what is not there).
#[derive(Debug, Default)]
pub(super) struct Uses {
    /// First used in the current generation.
    current: Vec<usize>,
    /// Used before it, possibly again since.
    older: Vec<usize>,
}

/// Stamps the slot at position `i` as used in generation `gen`.
pub(super) fn stamp<V>(slot: &mut Slot<V>, i: usize, gen: u32, uses: &mut Uses) {
    if slot.gen != gen {
        slot.gen = gen;
        uses.current.push(i);
    }
}

/// Evicts the clean records listed in `list`, except those used in
/// generation `keep` (when given), which leave the list (they are listed
/// for `keep` as well); dirty records stay listed. A record unused for
/// exactly 2^32 generations looks used in `keep` and loses its listing: it
/// stays cached until the list is rebuilt ([`Uses::roll`]), one record per
/// 2^32 batches (over a decade at ten a second).
fn evict_from<K: CacheKey, V>(list: &mut Vec<usize>, map: &mut Map<K, Slot<V>>, keep: Option<u32>) {
    list.retain(|&i| match map.get_index(i) {
        Some((_, s)) if s.dirty => true,
        Some((_, s)) if keep == Some(s.gen) => false,
        Some(_) => {
            drop(map.remove_at(i));
            false
        }
        None => false,
    });
}

impl Uses {
    /// Lists a record just inserted at position `i` (stamped already).
    pub(super) fn add(&mut self, i: usize) {
        self.current.push(i);
    }

    /// Ends the current generation: what it used becomes older.
    fn roll<K: CacheKey, V>(&mut self, map: &Map<K, Slot<V>>) {
        self.older.append(&mut self.current);
        // Without evictions the list grows by a generation's uses each
        // time: past twice the records, each is listed once again.
        if self.older.len() > 2 * map.len() + 1024 {
            self.older = map.positions().collect();
        }
    }
}

impl Partition {
    /// Starts a new cache generation and, above `max_entries`, evicts clean
    /// records not used in the last generation (all clean ones if that is
    /// not enough, unless `unwritten`: the batch just drained is not on the
    /// store yet, so its records must stay until the next call, or a later
    /// read would load an older version).
    pub fn end_batch(&mut self, max_entries: usize, unwritten: bool) {
        let keep = self.gen;
        self.gen = self.gen.wrapping_add(1);
        // Dirty records stay, at their positions: the dirty lists hold.
        if self.idents.len() + self.profiles.len() > max_entries {
            evict_from(&mut self.ident_uses.older, &mut self.idents, Some(keep));
            evict_from(&mut self.profile_uses.older, &mut self.profiles, Some(keep));
            if !unwritten && self.idents.len() + self.profiles.len() > max_entries {
                evict_from(&mut self.ident_uses.current, &mut self.idents, None);
                evict_from(&mut self.profile_uses.current, &mut self.profiles, None);
            }
        }
        self.ident_uses.roll(&self.idents);
        self.profile_uses.roll(&self.profiles);
    }
}

#[cfg(test)]
mod tests {
    use super::super::{EmptyLoader, Partition};
    use crate::command::Target;
    use crate::config::CoreConfig;
    use crate::ident::{IdentKey, IdentType};
    use crate::profile_id::ProfileId;
    use crate::record::ProfileRecord;
    use proptest::prelude::*;
    use std::collections::HashMap;
    use std::sync::Arc;

    fn key(i: u32) -> IdentKey {
        IdentKey::new(IdentType::DEVICE_ID, format!("dev-{i}"))
    }

    #[derive(Debug, Clone)]
    enum Op {
        Use(u32),
        Change(u32),
        UseProfile(i64),
        PutProfile(i64),
        Drain,
        EndBatch(usize, bool),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            6 => (0u32..40).prop_map(Op::Use),
            2 => (0u32..40).prop_map(Op::Change),
            3 => (0i64..20).prop_map(Op::UseProfile),
            2 => (0i64..20).prop_map(Op::PutProfile),
            2 => Just(Op::Drain),
            2 => (0usize..30, any::<bool>()).prop_map(|(m, u)| Op::EndBatch(m, u)),
        ]
    }

    /// A record: an identifier or a profile (by number).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    enum R {
        I(u32),
        P(i64),
    }

    proptest! {
        /// What the cache holds after any sequence of uses, changes,
        /// drains and batch ends: what the definition of eviction says (an
        /// oracle over every record's last generation and dirty flag).
        #[test]
        fn evicts_what_the_definition_says(ops in proptest::collection::vec(op(), 1..300)) {
            let mut p = Partition::new(0, 1, Arc::new(CoreConfig::default()));
            let l = &mut EmptyLoader;
            let id = |j: i64| ProfileId::for_new(j, &key(1000));
            // Record -> (generation last used, dirty).
            let mut model: HashMap<R, (u32, bool)> = HashMap::new();
            let mut gen = 0u32;
            let touch = |model: &mut HashMap<R, (u32, bool)>, r: R, gen: u32, dirty: bool| {
                let e = model.entry(r).or_insert((gen, false));
                e.0 = gen;
                e.1 |= dirty;
            };
            for o in ops {
                match o {
                    Op::Use(i) => {
                        let _ = p.owner_of(&key(i), l);
                        touch(&mut model, R::I(i), gen, false);
                    }
                    Op::Change(i) => {
                        p.ident_mut(&key(i), l).shared = false;
                        touch(&mut model, R::I(i), gen, true);
                    }
                    Op::UseProfile(j) => {
                        if let Some(r) = p.take_profile(id(j), l) {
                            p.put_profile(id(j), Some(r));
                            touch(&mut model, R::P(j), gen, true);
                        } else {
                            touch(&mut model, R::P(j), gen, false);
                        }
                    }
                    Op::PutProfile(j) => {
                        p.put_profile(id(j), Some(ProfileRecord::Alias(id(j + 1))));
                        touch(&mut model, R::P(j), gen, true);
                    }
                    Op::Drain => {
                        p.drain_dirty(&mut |_, _| false);
                        model.values_mut().for_each(|e| e.1 = false);
                    }
                    Op::EndBatch(max, unwritten) => {
                        p.end_batch(max, unwritten);
                        let keep = gen;
                        gen += 1;
                        if model.len() > max {
                            model.retain(|_, (g, dirty)| *dirty || *g == keep);
                            if !unwritten && model.len() > max {
                                model.retain(|_, (_, dirty)| *dirty);
                            }
                        }
                    }
                }
                for i in 0..40 {
                    prop_assert_eq!(p.is_cached(Target::Ident(&key(i))), model.contains_key(&R::I(i)), "identifier {}", i);
                }
                for j in 0..20 {
                    prop_assert_eq!(p.is_cached(Target::Profile(id(j))), model.contains_key(&R::P(j)), "profile {}", j);
                }
            }
        }
    }
}
