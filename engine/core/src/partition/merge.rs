//! The freeze-and-absorb merge protocol and splits (ADR 0002).
//!
//! `Link` is handled by the younger profile Y, which freezes and hands its
//! state to the older O. O checks the rules on the union and answers
//! `Absorbed` (Y becomes an alias) or `Refused` (Y thaws). A frozen profile
//! waits only on a strictly older one, so there is no deadlock.

use super::{lifecycle, Effects, Loader, Partition};
use crate::command::Command;
use crate::fragment::consent_for;
use crate::ident::IdentKey;
use crate::profile_id::ProfileId;
use crate::record::{LiveProfile, ProfileRecord};
use crate::time::Millis;

impl Partition {
    pub(super) fn on_link(&mut self, cmd: Command, loader: &mut dyn Loader, fx: &mut Effects) {
        let Command::Link { a, b, .. } = &cmd else { return };
        let (y, o) = ((*a).max(*b), (*a).min(*b));
        if y == o {
            let Command::Link { link, .. } = cmd else { return };
            fx.cmds.push(Command::AddEdge { to: y, link });
            return;
        }
        let Some((mut lp, Command::Link { link, .. })) = self.admit(y, cmd, true, loader, fx) else { return };
        lp.frozen_for = Some(o);
        let mut state = lp.clone();
        state.queue.clear();
        state.frozen_for = None;
        fx.cmds.push(Command::Handover { to: o, from: y, state, link });
        self.put_live(y, lp, loader, fx);
    }

    pub(super) fn on_handover(&mut self, cmd: Command, loader: &mut dyn Loader, fx: &mut Effects) {
        let Command::Handover { to, .. } = &cmd else { return };
        let o = *to;
        let Some((mut lp, Command::Handover { from: y, state, link, .. })) = self.admit(o, cmd, false, loader, fx) else { return };
        if let Some(v) = lp.union_counts(&state).violation(&self.cfg) {
            self.stats.conflicts += 1;
            let mut le = lifecycle("conflict", o, link.ts);
            le.related = vec![y.to_string()];
            le.rule = Some(v.rule_name(&self.cfg));
            le.identifier = Some(self.ident_out(&link.ident));
            le.event_id = Some(link.event_id.clone());
            fx.lifecycle.push(le);
            let other = if lp.contains(&link.ident) { y } else { o };
            fx.cmds.push(Command::RecordRefusal { ident: link.ident.clone(), with: other, at: link.ts });
            fx.cmds.push(Command::Refused { id: y, by: o });
            self.put_live(o, lp, loader, fx);
            return;
        }
        let purposes: Vec<String> = {
            let mut p: Vec<String> =
                lp.fragments.iter().chain(state.fragments.iter()).flat_map(|f| f.consent.iter().map(|c| c.purpose.clone())).collect();
            p.sort();
            p.dedup();
            p
        };
        let before: Vec<_> = purposes.iter().map(|p| consent_for(&lp.fragments, p)).collect();
        lp.absorb(y, *state);
        // The merge takes a new version whatever this changes.
        if lp.pending.contains(&link.ident) {
            // This profile's claim on the identifier is still in flight.
            Self::follow_attach(o, link.clone(), fx);
        } else {
            let _ = lp.saw(&link.ident, link.ts);
            lp.add_edge(&link.anchor, &link.ident, &link.evidence());
        }
        for (p, old) in purposes.iter().zip(before) {
            let new = consent_for(&lp.fragments, p);
            if new != old {
                if let Some(r) = new {
                    fx.consent.push(self.consent_event(o, &r));
                }
            }
        }
        self.stats.merges += 1;
        let mut le = lifecycle("merged", o, link.ts);
        le.related = vec![y.to_string()];
        le.event_id = Some(link.event_id.clone());
        fx.lifecycle.push(le);
        fx.cmds.push(Command::Absorbed { id: y, into: o });
        self.touch(o);
        self.put_live(o, lp, loader, fx);
    }

    pub(super) fn on_absorbed(&mut self, y: ProfileId, o: ProfileId, loader: &mut dyn Loader, fx: &mut Effects) {
        let lp = match self.take_profile(y, loader) {
            Some(ProfileRecord::Live(lp)) if lp.frozen_for.is_some() => lp,
            other => {
                self.put_profile(y, other);
                self.stats.internal_errors += 1;
                return;
            }
        };
        // O took this state's epoch + 1 or more when it absorbed it.
        let epoch = lp.epoch.saturating_add(1);
        for e in &lp.idents {
            fx.cmds.push(Command::Repoint { ident: e.key.clone(), to: o, epoch });
        }
        self.put_profile(y, Some(ProfileRecord::Alias(o)));
        self.touch(y);
        for c in lp.queue {
            self.handle(c, loader, fx);
        }
    }

    pub(super) fn on_refused(&mut self, y: ProfileId, _by: ProfileId, loader: &mut dyn Loader, fx: &mut Effects) {
        match self.take_profile(y, loader) {
            Some(ProfileRecord::Live(mut lp)) if lp.frozen_for.is_some() => {
                lp.frozen_for = None;
                self.put_live(y, lp, loader, fx);
            }
            other => {
                self.put_profile(y, other);
                self.stats.internal_errors += 1;
            }
        }
    }

    /// A profile whose last identifier was detached (its events came only
    /// from a shared device or address) is no profile any more: its events
    /// are counted unlinkable, as if they had arrived after the identifier
    /// became shared, and its data is dropped (nothing can reach it). The
    /// record stays, empty, for commands still on their way (an event
    /// applied to it is routed anew; ADR 0002).
    fn empty(&mut self, id: ProfileId, lp: &mut LiveProfile, at: Millis, ident: &IdentKey, fx: &mut Effects) {
        self.stats.events_unlinkable += lp.fragments.iter().map(|f| f.metrics.event_count).sum::<u64>();
        lp.fragments.clear();
        lp.edges.clear();
        let mut le = lifecycle("emptied", id, at);
        le.identifier = Some(self.ident_out(ident));
        fx.lifecycle.push(le);
    }

    /// Removes an identifier from its profile and splits what fell apart.
    pub(super) fn on_detach(&mut self, cmd: Command, loader: &mut dyn Loader, fx: &mut Effects) {
        let Command::Detach { from, .. } = &cmd else { return };
        let t = *from;
        let Some((mut lp, Command::Detach { ident, .. })) = self.admit(t, cmd, true, loader, fx) else { return };
        let Some(idx) = lp.index_of(&ident) else {
            self.put_live(t, lp, loader, fx);
            return;
        };
        let at = lp.updated;
        lp.remove_ident(idx);
        lp.version += 1;
        self.touch(t);
        if lp.idents.is_empty() {
            self.empty(t, &mut lp, at, &ident, fx);
            self.put_live(t, lp, loader, fx);
            return;
        }
        let pieces = lp.split_components();
        if !pieces.is_empty() {
            self.stats.splits += 1;
            let mut le = lifecycle("split", t, at);
            for mut p in pieces {
                let Some(oldest) = p.oldest_ident() else { continue };
                let nid = ProfileId::for_piece(oldest.first_seen, &oldest.key, t, lp.version);
                p.version = 1;
                for e in &p.idents {
                    fx.cmds.push(Command::Repoint { ident: e.key.clone(), to: nid, epoch: p.epoch });
                }
                le.related.push(nid.to_string());
                fx.cmds.push(Command::CreatePiece { id: nid, state: Box::new(p) });
            }
            fx.lifecycle.push(le);
        }
        self.put_live(t, lp, loader, fx);
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Effects, EmptyLoader, Partition};
    use crate::command::Command;
    use crate::config::CoreConfig;
    use crate::event::Touchpoint;
    use crate::golden::{self, ProfileOutput};
    use crate::ident::{IdentKey, IdentType};
    use crate::profile_id::ProfileId;
    use std::sync::Arc;

    /// Handles `first` and every command it leads to (one partition).
    fn run(p: &mut Partition, first: Command, fx: &mut Effects) {
        let mut todo = vec![first];
        while let Some(c) = todo.pop() {
            p.handle(c, &mut EmptyLoader, fx);
            todo.extend(fx.cmds.drain(..).rev());
        }
    }

    #[test]
    fn a_profile_left_without_identifiers_is_emptied_and_its_events_count_unlinkable() {
        let cfg = Arc::new(CoreConfig::default());
        let mut p = Partition::new(0, 1, cfg.clone());
        let kiosk = IdentKey::new(IdentType::DEVICE_ID, "kiosk-1");
        let mut fx = Effects::default();
        for i in 0..2 {
            let ev = Touchpoint {
                event_id: format!("e{i}").into(),
                ts: 1_000 + i,
                source: "store".into(),
                idents: vec![kiosk.clone()],
                traits: vec![("first_name".into(), "\"Ann\"".into())],
                revenue: None,
                is_order: false,
                consent: vec![],
            };
            run(&mut p, Command::Route { ev: Box::new(ev), probe: 0 }, &mut fx);
        }
        let id = ProfileId::for_new(1_000, &kiosk);
        assert_eq!(p.stats.events_applied, 2);
        // Three people refused by the profile the kiosk belongs to: shared.
        for u in 0..cfg.shared_threshold {
            let with = ProfileId::for_new(0, &IdentKey::new(IdentType::USER_ID, format!("u{u}")));
            run(&mut p, Command::RecordRefusal { ident: kiosk.clone(), with, at: 2_000 }, &mut fx);
        }
        assert_eq!(p.stats.identifiers_shared, 1);
        assert_eq!(p.stats.events_unlinkable, 2, "the emptied profile's events are unlinkable now");
        let kinds: Vec<&str> = fx.lifecycle.iter().map(|l| l.kind).collect();
        assert!(kinds.contains(&"emptied"), "{kinds:?}");
        match golden::output(id, p.profile(id, &mut EmptyLoader), &cfg) {
            Some(ProfileOutput::Gone(reason)) => assert_eq!(reason, "emptied"),
            other => panic!("expected a tombstone, got {other:?}"),
        }
        let Some(crate::record::ProfileRecord::Live(lp)) = p.profile(id, &mut EmptyLoader) else { panic!("the record stays") };
        assert!(lp.fragments.is_empty() && lp.edges.is_empty(), "no data kept that nothing can reach");
    }

    /// Repoints of one identifier come from different partitions (a split
    /// piece's, then the split of that piece's) and may arrive in either
    /// order: the higher ownership epoch wins both ways.
    #[test]
    fn the_repoint_with_the_higher_epoch_wins_in_either_order() {
        let cfg = Arc::new(CoreConfig::default());
        let dev = IdentKey::new(IdentType::DEVICE_ID, "d1");
        let (first, second) = (ProfileId([1; 16]), ProfileId([2; 16]));
        for late_first in [false, true] {
            let mut p = Partition::new(0, 1, cfg.clone());
            let mut fx = Effects::default();
            p.ident_mut(&dev, &mut EmptyLoader).owner = Some(ProfileId([0; 16]));
            let moves = [
                Command::Repoint { ident: dev.clone(), to: first, epoch: 1 },
                Command::Repoint { ident: dev.clone(), to: second, epoch: 2 },
            ];
            let order: Vec<Command> = if late_first { moves.into_iter().rev().collect() } else { moves.into_iter().collect() };
            for c in order {
                run(&mut p, c, &mut fx);
            }
            let rec = p.ident_mut(&dev, &mut EmptyLoader);
            assert_eq!((rec.owner, rec.epoch), (Some(second), 2), "late_first={late_first}");
        }
    }
}
