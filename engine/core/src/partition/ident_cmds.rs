//! Commands handled at an identifier's partition: the identifier partition
//! alone decides who owns an identifier.

use super::{lifecycle, Effects, Loader, Partition};
use crate::command::{AttachOutcome, Command, LinkEvidence};
use crate::event::Touchpoint;
use crate::ident::IdentKey;
use crate::profile_id::ProfileId;
use crate::time::Millis;

impl Partition {
    /// Finds the profile of the event: the owner of its strongest owned
    /// identifier, probing identifiers strongest first (one partition each).
    /// When none is owned, the anchor (the strongest) is claimed for a new
    /// profile. The identifier found moves to the front: the event is
    /// attributed to it.
    pub(super) fn on_route(&mut self, mut ev: Box<Touchpoint>, mut probe: usize, loader: &mut dyn Loader, fx: &mut Effects) {
        loop {
            if ev.idents.is_empty() {
                self.stats.events_unlinkable += 1;
                return;
            }
            let claim = probe >= ev.idents.len();
            let i = if claim { 0 } else { probe };
            let key = &ev.idents[i];
            if key.partition(self.partitions) != self.id {
                let probe = if claim { ev.idents.len() } else { probe };
                fx.cmds.push(Command::Route { probe: probe.min(u8::MAX as usize) as u8, ev });
                return;
            }
            let at = self.ident_or_owner(key, loader);
            let (shared, owner) = self.shared_and_owner(at);
            if shared {
                self.stats.shared_dropped += 1;
                ev.idents.remove(i);
                probe = if claim { 0 } else { probe };
                continue;
            }
            match owner {
                Some(t) => {
                    ev.idents[..=i].rotate_right(1);
                    self.handle_or_send(Command::Apply { to: t, ev }, loader, fx);
                }
                None if claim => {
                    let id = ProfileId::for_new(ev.ts, key);
                    let slot = self.slot_of(at, key, loader);
                    self.ident_mut_at(slot).owner = Some(id);
                    self.handle_or_send(Command::Create { id, ev }, loader, fx);
                }
                None => {
                    probe += 1;
                    continue;
                }
            }
            return;
        }
    }

    /// Claims an unowned identifier for `to`, or starts a link with its owner.
    pub(super) fn on_attach(&mut self, to: ProfileId, ident: IdentKey, link: Box<LinkEvidence>, loader: &mut dyn Loader, fx: &mut Effects) {
        let outcome = self.attach_claim(to, &ident, || link.clone(), loader, fx);
        fx.cmds.push(Command::AttachDone { to, ident, outcome, link });
    }

    /// The decision of `Attach` at identifier `x`'s partition: claimed for
    /// `to` when unowned, a member when `to` owns it, a `Link` with its
    /// owner (`link` gives the evidence) when another profile does.
    pub(super) fn attach_claim(
        &mut self,
        to: ProfileId,
        x: &IdentKey,
        link: impl FnOnce() -> Box<LinkEvidence>,
        loader: &mut dyn Loader,
        fx: &mut Effects,
    ) -> AttachOutcome {
        let at = self.ident_or_owner(x, loader);
        match self.shared_and_owner(at) {
            (true, _) => AttachOutcome::Shared,
            (false, None) => {
                let slot = self.slot_of(at, x, loader);
                self.ident_mut_at(slot).owner = Some(to);
                AttachOutcome::Claimed
            }
            (false, Some(o)) if o == to => AttachOutcome::Member,
            (false, Some(o)) => {
                fx.cmds.push(Command::Link { a: to, b: o, link: link() });
                AttachOutcome::Linking
            }
        }
    }

    /// Moves ownership after a merge or split, unless a later move won:
    /// repoints of one identifier come from different partitions and may
    /// arrive out of order, so the higher ownership epoch wins (ADR 0002).
    /// A repoint that arrives after the identifier became shared tells the
    /// new holder to detach it (the split raced with the detach).
    pub(super) fn on_repoint(&mut self, ident: IdentKey, to: ProfileId, epoch: u32, loader: &mut dyn Loader, fx: &mut Effects) {
        let rec = self.ident_mut(&ident, loader);
        if rec.shared {
            fx.cmds.push(Command::Detach { from: to, ident });
        } else if rec.owner.is_some() && epoch > rec.epoch {
            rec.owner = Some(to);
            rec.epoch = epoch;
        }
    }

    /// Counts a refused link; at the threshold the identifier becomes shared
    /// and is detached from its profile.
    pub(super) fn on_record_refusal(&mut self, ident: IdentKey, with: ProfileId, at: Millis, loader: &mut dyn Loader, fx: &mut Effects) {
        let threshold = self.cfg.shared_threshold as usize;
        let rec = self.ident_mut(&ident, loader);
        if rec.shared {
            return;
        }
        if !rec.refused_with.contains(&with) {
            rec.refused_with.push(with);
        }
        if rec.refused_with.len() < threshold {
            return;
        }
        rec.shared = true;
        rec.refused_with.clear();
        let owner = rec.owner.take();
        self.stats.identifiers_shared += 1;
        let mut ev = lifecycle("identifier_shared", owner.unwrap_or(with), at);
        ev.identifier = Some(self.ident_out(&ident));
        fx.lifecycle.push(ev);
        if let Some(t) = owner {
            fx.cmds.push(Command::Detach { from: t, ident });
        }
    }
}
