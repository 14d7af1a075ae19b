//! Commands handled at a profile's partition: creation and events.

use super::{lifecycle, Effects, Loader, Partition};
use crate::command::{Command, LinkEvidence};
use crate::event::Touchpoint;
use crate::fragment::consent_for;
use crate::ident::IdentKey;
use crate::output::ConsentEvent;
use crate::profile_id::ProfileId;
use crate::record::{LiveProfile, ProfileRecord};
use crate::time::format_rfc3339;

impl Partition {
    /// The commands queued for a profile about to be created, or `None`
    /// when a record already exists (a 128-bit ID collision: the record is
    /// kept and the collision counted).
    fn creation_queue(&mut self, id: ProfileId, loader: &mut dyn Loader) -> Option<Vec<Command>> {
        match self.take_profile(id, loader) {
            None => Some(Vec::new()),
            Some(ProfileRecord::Placeholder(q)) => Some(q),
            Some(other) => {
                self.put_profile(id, Some(other));
                self.stats.internal_errors += 1;
                None
            }
        }
    }

    pub(super) fn on_create(&mut self, id: ProfileId, ev: Box<Touchpoint>, loader: &mut dyn Loader, fx: &mut Effects) {
        let Some(anchor) = ev.idents.first().cloned() else {
            self.stats.internal_errors += 1;
            return;
        };
        let Some(queue) = self.creation_queue(id, loader) else { return };
        let mut lp = Box::new(LiveProfile::new(anchor, ev.ts));
        // Room for the event's identifiers (most are new with the profile,
        // claimed in place) and an edge to each: one allocation, not a few.
        lp.idents.reserve_exact(ev.idents.len() - 1);
        lp.edges.reserve_exact(ev.idents.len() - 1);
        self.stats.profiles_created += 1;
        let mut le = lifecycle("created", id, ev.ts);
        le.event_id = Some(ev.event_id.clone());
        fx.lifecycle.push(le);
        self.apply_event(id, &mut lp, ev, loader, fx);
        lp.queue.extend(queue);
        self.put_live(id, lp, loader, fx);
    }

    pub(super) fn on_create_piece(&mut self, id: ProfileId, state: Box<LiveProfile>, loader: &mut dyn Loader, fx: &mut Effects) {
        let Some(queue) = self.creation_queue(id, loader) else { return };
        let mut lp = state;
        lp.queue.extend(queue);
        self.touch(id);
        self.put_live(id, lp, loader, fx);
    }

    pub(super) fn on_apply(&mut self, cmd: Command, loader: &mut dyn Loader, fx: &mut Effects) {
        let Command::Apply { to, .. } = &cmd else { return };
        let to = *to;
        let Some((mut lp, Command::Apply { ev, .. })) = self.admit(to, cmd, false, loader, fx) else { return };
        self.apply_event(to, &mut lp, ev, loader, fx);
        self.put_live(to, lp, loader, fx);
    }

    /// Folds an event into a live profile and starts attaching the event's
    /// other identifiers, strongest first, each within the rules.
    fn apply_event(&mut self, id: ProfileId, lp: &mut LiveProfile, ev: Box<Touchpoint>, loader: &mut dyn Loader, fx: &mut Effects) {
        let Some(anchor) = ev.idents.first() else {
            self.stats.internal_errors += 1;
            return;
        };
        if !lp.contains(anchor) {
            // The anchor moved (split) while the event was in flight.
            fx.cmds.push(Command::Route { ev, probe: 0 });
            return;
        }
        if let Some((stronger, v)) = self.stronger_that_cannot_join(lp, &ev) {
            // Segment semantics: the weakest identifier gives way. The event
            // was attributed to a weaker known identifier (a kiosk cookie, a
            // family email) than an identifier this profile cannot take (a
            // second login): drop the known one and route the rest anew. The
            // refusal is counted against the stronger identifier, so the
            // known one becomes shared after enough distinct people.
            let anchor = anchor.clone();
            self.stats.conflicts += 1;
            let mut le = lifecycle("conflict", id, ev.ts);
            le.rule = Some(v.rule_name(&self.cfg));
            le.identifier = Some(self.ident_out(&anchor));
            le.event_id = Some(ev.event_id.clone());
            fx.lifecycle.push(le);
            fx.cmds.push(Command::RecordRefusal { ident: anchor.clone(), with: ProfileId::for_new(0, &stronger), at: ev.ts });
            let mut ev = ev;
            ev.idents.retain(|k| k != &anchor);
            if ev.idents.is_empty() {
                self.stats.events_unlinkable += 1;
            } else {
                fx.cmds.push(Command::Route { ev, probe: 0 });
            }
            return;
        }
        let evidence = crate::record::Evidence { event_id: ev.event_id.clone(), ts: ev.ts, source: ev.source.clone() };
        let mut members: smallvec::SmallVec<[u32; 8]> = smallvec::SmallVec::new();
        let mut outsiders: smallvec::SmallVec<[&IdentKey; 8]> = smallvec::SmallVec::new();
        for x in &ev.idents {
            match lp.index_of(x) {
                Some(i) => {
                    let e = &mut lp.idents[i];
                    e.first_seen = e.first_seen.min(ev.ts);
                    e.last_seen = e.last_seen.max(ev.ts);
                    members.push(i as u32);
                }
                None => outsiders.push(x),
            }
        }
        for (n, &a) in members.iter().enumerate() {
            for &b in &members[n + 1..] {
                lp.add_edge_idx(a, b, &evidence);
            }
        }
        let before: Vec<_> = ev.consent.iter().map(|c| consent_for(&lp.fragments, &c.purpose)).collect();
        lp.fragment_mut(anchor).add_event(&ev, &self.cfg);
        for (c, old) in ev.consent.iter().zip(before) {
            let new = consent_for(&lp.fragments, &c.purpose);
            if new != old {
                if let Some(r) = new {
                    fx.consent.push(self.consent_event(id, &r));
                }
            }
        }
        let mut counts = if outsiders.is_empty() { Default::default() } else { lp.counts() };
        for x in outsiders {
            let link = || {
                Box::new(LinkEvidence {
                    anchor: anchor.clone(),
                    ident: x.clone(),
                    event_id: ev.event_id.clone(),
                    ts: ev.ts,
                    source: ev.source.clone(),
                })
            };
            if lp.pending.contains(x) {
                Self::follow_attach(id, link(), fx);
                continue;
            }
            if let Some(v) = counts.room_for(x.ty(), &self.cfg) {
                self.stats.conflicts += 1;
                let mut le = lifecycle("conflict", id, ev.ts);
                le.rule = Some(v.rule_name(&self.cfg));
                le.identifier = Some(self.ident_out(x));
                le.event_id = Some(ev.event_id.clone());
                fx.lifecycle.push(le);
                fx.cmds.push(Command::RecordRefusal { ident: x.clone(), with: id, at: ev.ts });
                continue;
            }
            counts.add(x.ty(), 1);
            if x.partition(self.partitions) != self.id {
                lp.pending.push(x.clone());
                fx.cmds.push(Command::Attach { to: id, ident: x.clone(), link: link() });
                continue;
            }
            // The identifier lives here: its attach is handled now, as if
            // `Attach` and its `AttachDone` were the next two commands
            // delivered (an interleaving the protocol allows), without the
            // two hops.
            let outcome = self.attach_claim(id, x, link, loader, fx);
            lp.attached(x, outcome, anchor, &evidence);
        }
        lp.version += 1;
        lp.updated = lp.updated.max(ev.ts);
        self.stats.events_applied += 1;
        self.touch(id);
    }

    /// The first identifier of the event stronger than its anchor that this
    /// profile cannot take under the rules, with the rule it would break.
    fn stronger_that_cannot_join(&self, lp: &LiveProfile, ev: &Touchpoint) -> Option<(crate::ident::IdentKey, crate::rules::Violation)> {
        let anchor = ev.idents.first()?;
        let anchor_rank = (self.cfg.priority(anchor.ty()), anchor);
        let mut counts: Option<crate::rules::TypeCounts> = None;
        for x in &ev.idents[1..] {
            if (self.cfg.priority(x.ty()), x) >= anchor_rank || lp.contains(x) || lp.pending.contains(x) {
                continue;
            }
            let c = counts.get_or_insert_with(|| lp.counts());
            if let Some(v) = c.room_for(x.ty(), &self.cfg) {
                return Some((x.clone(), v));
            }
            c.add(x.ty(), 1);
        }
        None
    }

    pub(super) fn consent_event(&self, id: ProfileId, r: &crate::fragment::ConsentRecord) -> ConsentEvent {
        ConsentEvent {
            profile_id: id.to_string(),
            purpose: r.purpose.clone(),
            granted: r.granted,
            at: format_rfc3339(r.at),
            policy_version: r.policy_version.clone(),
            jurisdiction: r.jurisdiction.clone(),
            source: r.source.clone(),
            event_id: r.event_id.clone(),
            identifier_type: self.cfg.type_name(r.identifier.ty()).to_string(),
        }
    }

    pub(super) fn on_attach_done(&mut self, cmd: Command, loader: &mut dyn Loader, fx: &mut Effects) {
        let Command::AttachDone { to, .. } = &cmd else { return };
        let to = *to;
        let Some((mut lp, Command::AttachDone { ident, outcome, link, .. })) = self.admit(to, cmd, false, loader, fx) else { return };
        if let Some(i) = lp.pending.iter().position(|p| p == &ident) {
            lp.pending.swap_remove(i);
        }
        if lp.attached(&ident, outcome, &link.anchor, &link.evidence()) {
            self.touch(to);
        }
        self.put_live(to, lp, loader, fx);
    }

    pub(super) fn on_add_edge(&mut self, cmd: Command, loader: &mut dyn Loader, fx: &mut Effects) {
        let Command::AddEdge { to, .. } = &cmd else { return };
        let to = *to;
        let Some((mut lp, Command::AddEdge { link, .. })) = self.admit(to, cmd, false, loader, fx) else { return };
        if lp.pending.contains(&link.ident) {
            Self::follow_attach(to, link, fx);
        } else {
            if lp.saw(&link.ident, link.ts) {
                lp.version += 1;
                self.touch(to);
            }
            lp.add_edge(&link.anchor, &link.ident, &link.evidence());
        }
        self.put_live(to, lp, loader, fx);
    }

    /// A sighting of an identifier that profile `id` is still attaching:
    /// it follows that attach to the identifier's partition (one sender,
    /// one receiver: in order) and comes back as a member's outcome, which
    /// widens the identifier's first/last seen and adds the sighting's
    /// edge. Dropped, the sighting was lost (its times and its evidence).
    pub(super) fn follow_attach(id: ProfileId, link: Box<LinkEvidence>, fx: &mut Effects) {
        let ident = link.ident.clone();
        fx.cmds.push(Command::Attach { to: id, ident, link });
    }
}
