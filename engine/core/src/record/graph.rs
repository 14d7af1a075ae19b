//! A live profile's identifier graph: the edges events leave between its
//! identifiers, an identifier's removal, and the split into connected
//! components (ADR 0002, *Splits*).

use super::{Edge, Evidence, IdentEntry, Idents, LiveProfile};
use crate::ident::IdentKey;

impl LiveProfile {
    /// Joins member `x` by the event `ev` to the event's `anchor`; if the
    /// anchor left meanwhile (detached as shared while `x` was being
    /// attached), to a member the same event joined, so a later split does
    /// not part `x` from the event's other identifiers.
    pub(super) fn join(&mut self, anchor: &IdentKey, x: &IdentKey, ev: &Evidence) {
        if self.add_edge(anchor, x, ev) || self.contains(anchor) {
            return;
        }
        let Some(xi) = self.index_of(x).map(|i| i as u32) else { return };
        if let Some(y) = self.edges.iter().find(|e| &e.evidence == ev && e.a != xi && e.b != xi).map(|e| e.a) {
            self.add_edge_idx(xi, y, ev);
        }
    }

    /// Adds the edge `a`–`b` if both are members and it is new. Returns
    /// whether an edge was added.
    pub fn add_edge(&mut self, a: &IdentKey, b: &IdentKey, ev: &Evidence) -> bool {
        match (self.index_of(a), self.index_of(b)) {
            (Some(x), Some(y)) if x != y => self.add_edge_idx(x as u32, y as u32, ev),
            _ => false,
        }
    }

    pub fn add_edge_idx(&mut self, x: u32, y: u32, ev: &Evidence) -> bool {
        let (a, b) = if x < y { (x, y) } else { (y, x) };
        if self.edges.iter().any(|e| e.a == a && e.b == b) {
            return false;
        }
        self.edges.push(Edge { a, b, evidence: ev.clone() });
        true
    }

    /// Removes an identifier and its edges; its fragment stays. The other
    /// identifiers of an event stay joined without it: an event whose new
    /// identifiers attached through a known one (the kiosk's cookie) left
    /// only edges to that one, so its edges are replaced, per evidence, by
    /// a chain through the identifiers at their other ends.
    pub fn remove_ident(&mut self, idx: usize) {
        let idx32 = idx as u32;
        let renumber = |i: u32| if i > idx32 { i - 1 } else { i };
        let mut via: Vec<(u32, Evidence)> = Vec::new();
        self.edges.retain(|e| {
            if e.a != idx32 && e.b != idx32 {
                return true;
            }
            let other = if e.a == idx32 { e.b } else { e.a };
            via.push((renumber(other), e.evidence.clone()));
            false
        });
        self.idents.remove(idx);
        for e in &mut self.edges {
            e.a = renumber(e.a);
            e.b = renumber(e.b);
        }
        for (i, (x, ev)) in via.iter().enumerate() {
            if let Some((y, _)) = via[i + 1..].iter().find(|(_, e)| e == ev) {
                self.add_edge_idx(*x, *y, ev);
            }
        }
    }

    /// Splits by connected components. Returns the pieces other than the
    /// one that keeps this profile (the piece holding the oldest identifier:
    /// first seen, then key). Fragments follow their anchor; fragments whose
    /// anchor left the profile stay here.
    pub fn split_components(&mut self) -> Vec<LiveProfile> {
        let labels = crate::split::components(self.idents.len(), self.edges.iter().map(|e| (e.a as usize, e.b as usize)));
        let groups = labels.iter().copied().max().map_or(0, |m| m + 1);
        if groups <= 1 {
            return Vec::new();
        }
        let oldest = (0..self.idents.len())
            .min_by(|&i, &j| (self.idents[i].first_seen, &self.idents[i].key).cmp(&(self.idents[j].first_seen, &self.idents[j].key)))
            .map_or(0, |i| labels[i]);
        let mut pieces: Vec<LiveProfile> = Vec::new();
        let mut new_index = vec![0u32; self.idents.len()];
        let mut piece_of_group = vec![usize::MAX; groups];
        let mut keep = Idents::new();
        let idents = std::mem::take(&mut self.idents);
        for (i, e) in idents.into_iter().enumerate() {
            let g = labels[i];
            if g == oldest {
                new_index[i] = keep.len() as u32;
                keep.push(e);
            } else {
                if piece_of_group[g] == usize::MAX {
                    piece_of_group[g] = pieces.len();
                    let mut p = LiveProfile::new(e.key.clone(), e.first_seen);
                    p.idents.clear();
                    p.version = self.version;
                    p.created = e.first_seen;
                    p.epoch = self.epoch.saturating_add(1);
                    pieces.push(p);
                }
                let p = &mut pieces[piece_of_group[g]];
                new_index[i] = p.idents.len() as u32;
                p.created = p.created.min(e.first_seen);
                p.idents.push(e);
            }
        }
        self.idents = keep;
        for e in std::mem::take(&mut self.edges) {
            let g = labels[e.a as usize];
            let re = Edge { a: new_index[e.a as usize], b: new_index[e.b as usize], evidence: e.evidence };
            if g == oldest {
                self.edges.push(re);
            } else {
                pieces[piece_of_group[g]].edges.push(re);
            }
        }
        for f in std::mem::take(&mut self.fragments) {
            let target = pieces.iter_mut().find(|p| p.contains(&f.anchor));
            match target {
                Some(p) => {
                    p.updated = p.updated.max(f.metrics.last_seen);
                    p.fragments.push(f);
                }
                None => self.fragments.push(f),
            }
        }
        pieces
    }

    /// The oldest identifier (first seen, then key): names a split piece.
    pub fn oldest_ident(&self) -> Option<&IdentEntry> {
        self.idents.iter().min_by(|a, b| (a.first_seen, &a.key).cmp(&(b.first_seen, &b.key)))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::super::*;
    use crate::ident::IdentType;

    #[test]
    fn removing_an_identifier_keeps_each_events_other_identifiers_joined() {
        // A kiosk cookie that two shoppers' sign-ins attached through (a
        // star on the cookie), then a second device seen with shopper A.
        let kiosk = IdentKey::new(IdentType::ANONYMOUS_ID, "kiosk");
        let key = |t, v: &str| IdentKey::new(t, v);
        let (ua, ea) = (key(IdentType::USER_ID, "a"), key(IdentType::EMAIL, "a@example.com"));
        let (ub, eb) = (key(IdentType::USER_ID, "b"), key(IdentType::EMAIL, "b@example.com"));
        let dev = key(IdentType::DEVICE_ID, "d-a");
        let mut lp = LiveProfile::new(kiosk.clone(), 1);
        for (i, k) in [&ua, &ea, &ub, &eb, &dev].into_iter().enumerate() {
            lp.idents.push(IdentEntry { key: k.clone(), first_seen: 2 + i as i64, last_seen: 9 });
        }
        let ev = |id: &str, ts| Evidence { event_id: ShortStr::new(id), ts, source: ShortStr::new("store") };
        let (sign_in_a, sign_in_b, other) = (ev("a", 2), ev("b", 4), ev("d", 6));
        for (x, e) in [(&ua, &sign_in_a), (&ea, &sign_in_a), (&ub, &sign_in_b), (&eb, &sign_in_b), (&dev, &other)] {
            assert!(lp.add_edge(&kiosk, x, e));
        }
        assert!(lp.add_edge(&ua, &dev, &other));
        lp.remove_ident(lp.index_of(&kiosk).unwrap());
        assert!(!lp.contains(&kiosk));
        let pieces = lp.split_components();
        let members = |p: &LiveProfile| {
            let mut v: Vec<String> = p.idents.iter().map(|e| e.key.value().to_string()).collect();
            v.sort();
            v
        };
        assert_eq!(members(&lp), ["a", "a@example.com", "d-a"], "one event's identifiers stay together");
        assert_eq!(pieces.len(), 1, "two shoppers who met only through the kiosk part");
        assert_eq!(members(&pieces[0]), ["b", "b@example.com"]);
        // The joining edge keeps the event that joined them.
        let joined = |p: &LiveProfile, x: &IdentKey, y: &IdentKey| {
            let (i, j) = (p.index_of(x).unwrap() as u32, p.index_of(y).unwrap() as u32);
            p.edges.iter().find(|e| (e.a, e.b) == (i.min(j), i.max(j))).map(|e| e.evidence.event_id.to_string())
        };
        assert_eq!(joined(&lp, &ua, &ea).as_deref(), Some("a"));
        assert_eq!(joined(&pieces[0], &ub, &eb).as_deref(), Some("b"));
    }

    #[test]
    fn an_identifier_attached_after_its_anchor_left_joins_the_events_other_identifiers() {
        let kiosk = IdentKey::new(IdentType::ANONYMOUS_ID, "kiosk");
        let (u, e, d) = (
            IdentKey::new(IdentType::USER_ID, "u"),
            IdentKey::new(IdentType::EMAIL, "u@example.com"),
            IdentKey::new(IdentType::DEVICE_ID, "d"),
        );
        let ev = Evidence { event_id: ShortStr::new("sign-in"), ts: 5, source: ShortStr::new("store") };
        let mut lp = LiveProfile::new(kiosk.clone(), 1);
        // The sign-in carried the kiosk, a login, an email and a device: the
        // login and the email attach through the kiosk, the kiosk is
        // detached as shared, then the device's attach completes.
        assert!(lp.attached(&u, AttachOutcome::Claimed, &kiosk, &ev));
        assert!(lp.attached(&e, AttachOutcome::Claimed, &kiosk, &ev));
        lp.remove_ident(lp.index_of(&kiosk).unwrap());
        assert!(lp.attached(&d, AttachOutcome::Claimed, &kiosk, &ev));
        assert!(lp.split_components().is_empty(), "one event's identifiers stay one profile: {:?}", lp.edges);
        assert_eq!(lp.idents.len(), 3);
    }
}
