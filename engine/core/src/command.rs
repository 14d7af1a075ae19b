//! Commands between partitions (ADR 0002). Every command names the key
//! whose partition handles it ([`Command::partition`]).

use crate::event::Touchpoint;
use crate::ident::IdentKey;
use crate::profile_id::ProfileId;
use crate::record::{Evidence, LiveProfile};
use crate::short::ShortStr;
use crate::time::Millis;
use serde::{Deserialize, Serialize};

/// Why two profiles should be joined: `anchor` (in one) and `ident` (in the
/// other) co-occurred in an event. On refusal `ident` is the one blamed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LinkEvidence {
    pub anchor: IdentKey,
    pub ident: IdentKey,
    pub event_id: ShortStr,
    pub ts: Millis,
    pub source: ShortStr,
}

impl LinkEvidence {
    pub fn evidence(&self) -> Evidence {
        Evidence { event_id: self.event_id.clone(), ts: self.ts, source: self.source.clone() }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AttachOutcome {
    /// The identifier was unowned and now belongs to the requester.
    Claimed,
    /// It already belonged to the requester.
    Member,
    /// It belongs to another profile; a `Link` was sent.
    Linking,
    /// It is shared and never links.
    Shared,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Command {
    /// Looks for the first owned identifier of the event, strongest first,
    /// starting at `probe`; `probe == idents.len()` is the final claim of
    /// the anchor for a new profile.
    Route {
        ev: Box<Touchpoint>,
        probe: u8,
    },
    Create {
        id: ProfileId,
        ev: Box<Touchpoint>,
    },
    Apply {
        to: ProfileId,
        ev: Box<Touchpoint>,
    },
    Attach {
        to: ProfileId,
        ident: IdentKey,
        link: Box<LinkEvidence>,
    },
    AttachDone {
        to: ProfileId,
        ident: IdentKey,
        outcome: AttachOutcome,
        link: Box<LinkEvidence>,
    },
    Link {
        a: ProfileId,
        b: ProfileId,
        link: Box<LinkEvidence>,
    },
    Handover {
        to: ProfileId,
        from: ProfileId,
        state: Box<LiveProfile>,
        link: Box<LinkEvidence>,
    },
    Absorbed {
        id: ProfileId,
        into: ProfileId,
    },
    Refused {
        id: ProfileId,
        by: ProfileId,
    },
    AddEdge {
        to: ProfileId,
        link: Box<LinkEvidence>,
    },
    /// The identifier moved to `to` (a merge or a split) at ownership
    /// `epoch`; applied unless a move with a higher epoch got there first.
    Repoint {
        ident: IdentKey,
        to: ProfileId,
        epoch: u32,
    },
    RecordRefusal {
        ident: IdentKey,
        with: ProfileId,
        at: Millis,
    },
    Detach {
        from: ProfileId,
        ident: IdentKey,
    },
    CreatePiece {
        id: ProfileId,
        state: Box<LiveProfile>,
    },
}

/// Where a command is handled: an identifier or a profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target<'a> {
    Ident(&'a IdentKey),
    Profile(ProfileId),
}

impl Command {
    pub fn target(&self) -> Target<'_> {
        match self {
            Command::Route { ev, probe } => match ev.idents.get(*probe as usize).or(ev.idents.first()) {
                Some(k) => Target::Ident(k),
                // Never sent (routes carry identifiers); partition 0 counts it.
                None => Target::Profile(ProfileId([0; 16])),
            },
            Command::Attach { ident, .. } | Command::Repoint { ident, .. } | Command::RecordRefusal { ident, .. } => Target::Ident(ident),
            Command::Create { id, .. } | Command::CreatePiece { id, .. } | Command::Absorbed { id, .. } | Command::Refused { id, .. } => {
                Target::Profile(*id)
            }
            Command::Apply { to, .. } | Command::AttachDone { to, .. } | Command::Handover { to, .. } | Command::AddEdge { to, .. } => {
                Target::Profile(*to)
            }
            Command::Link { a, b, .. } => Target::Profile((*a).max(*b)),
            Command::Detach { from, .. } => Target::Profile(*from),
        }
    }

    /// A `Route`'s event identifiers and the index of the one it looks up
    /// next, its probe (none for other commands). A probe past the last
    /// identifier means every one was found unowned: the route claims the
    /// first.
    pub fn route_start(&self) -> Option<(&[IdentKey], usize)> {
        match self {
            Command::Route { ev, probe } if !ev.idents.is_empty() => Some((&ev.idents, *probe as usize)),
            _ => None,
        }
    }

    pub fn partition(&self, partitions: u16) -> u16 {
        match self.target() {
            Target::Ident(k) => k.partition(partitions),
            Target::Profile(p) => p.partition(partitions),
        }
    }

    /// The same command addressed to `to` instead of the alias `from`.
    pub fn retarget(self, from: ProfileId, to: ProfileId) -> Command {
        let sw = |p: ProfileId| if p == from { to } else { p };
        match self {
            Command::Apply { ev, .. } => Command::Apply { to, ev },
            Command::AttachDone { ident, outcome, link, .. } => Command::AttachDone { to, ident, outcome, link },
            Command::Handover { from: f, state, link, .. } => Command::Handover { to, from: f, state, link },
            Command::AddEdge { link, .. } => Command::AddEdge { to, link },
            Command::Detach { ident, .. } => Command::Detach { from: to, ident },
            Command::Link { a, b, link } => Command::Link { a: sw(a), b: sw(b), link },
            other => other,
        }
    }
}
