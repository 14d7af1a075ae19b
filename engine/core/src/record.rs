//! Persisted records: identifiers and profiles (ADR 0002).

use crate::command::{AttachOutcome, Command};
use crate::config::CoreConfig;
use crate::fragment::Fragment;
use crate::ident::IdentKey;
use crate::profile_id::ProfileId;
use crate::rules::TypeCounts;
use crate::short::ShortStr;
use crate::time::Millis;
use serde::{Deserialize, Serialize};
use smallvec::SmallVec;

mod graph;
mod read;
mod wire;
mod write;

use write::Layout;

/// Record format version, the first byte of every encoded record but
/// profile records (which start with [`PROFILE_FORMAT`]).
/// Format 2 added the ownership epochs (ADR 0002); a state written in
/// format 1 is refused (replay the input into a new state). Format 3
/// writes a fragment's anchor and a consent record's identifier as its
/// position in the profile's identifiers (~30 bytes less per fragment);
/// format 2 records, which hold the keys, decode alike. Format 4 writes
/// canonical UUIDs (identifier values, event IDs) packed in 17 bytes
/// ([`crate::packed`]); text never starts with the packed form's first
/// byte, so format 2 and 3 records decode alike.
pub const RECORD_FORMAT: u8 = 4;

/// Format of profile records ([`encode_profile_append`]). Format 5 is
/// format 4 with a live profile's times (but `created`, and consent
/// records' times) written as their difference from `created` (~6 bytes
/// each as they are, 1 to 5 as differences, and a profile holds ten or
/// so) and an edge's evidence written once when the next edges share it
/// (the edges one event adds): ~30% fewer bytes per profile record. Profile
/// records of formats 2 to 4 decode alike ([`decode_profile`]); the
/// generic [`decode`] refuses format 5, so a profile record can never be
/// read in the older layout by mistake.
pub const PROFILE_FORMAT: u8 = 5;

/// What the identifier partition knows of one identifier.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct IdentRecord {
    pub owner: Option<ProfileId>,
    /// Shared identifiers are detached and never link again.
    pub shared: bool,
    /// Distinct profiles a link with this identifier was refused with.
    pub refused_with: Vec<ProfileId>,
    /// The ownership epoch of the move that set `owner` (0 for a claim): a
    /// `Repoint` with a higher epoch wins, one with a lower epoch arrived
    /// late and is dropped (ADR 0002, ownership epochs).
    pub epoch: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IdentEntry {
    pub key: IdentKey,
    pub first_seen: Millis,
    pub last_seen: Millis,
}

/// Why two identifiers are joined: the first event they co-occurred in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Evidence {
    pub event_id: ShortStr,
    pub ts: Millis,
    pub source: ShortStr,
}

/// An undirected edge between two identifiers of a profile (indices into
/// `idents`, `a < b`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Edge {
    pub a: u32,
    pub b: u32,
    pub evidence: Evidence,
}

/// A profile's identifiers, inline up to two. A decoded profile record
/// allocated a block per vector it holds (and each block was a cache miss
/// to allocate and another to free when the record cache evicted it);
/// most profiles hold one or two identifiers, one or two edges and one
/// fragment. Encoded like a `Vec`.
pub type Idents = SmallVec<[IdentEntry; 2]>;

/// A profile's edges, inline up to two (as [`Idents`]).
pub type Edges = SmallVec<[Edge; 2]>;

/// A profile's fragments, inline up to one (as [`Idents`]).
pub type Fragments = SmallVec<[Fragment; 1]>;

/// Encoded by hand ([`wire`]): each fragment's anchor, and each consent
/// record's identifier, as its position in `idents` (record format 3).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(try_from = "wire::LiveProfileIn")]
pub struct LiveProfile {
    pub version: u64,
    pub created: Millis,
    /// Latest event time applied (the profile's `updated_at`).
    pub updated: Millis,
    pub idents: Idents,
    pub edges: Edges,
    pub fragments: Fragments,
    /// Identifiers reserved under the rules while their claim is in flight.
    pub pending: Vec<IdentKey>,
    /// Every profile absorbed, directly or through another.
    pub merged_from: Vec<ProfileId>,
    /// Set while handed over to this older profile, awaiting its verdict
    /// (which may come from the profile that absorbed it meanwhile).
    pub frozen_for: Option<ProfileId>,
    /// Commands that arrived while frozen or busy, in arrival order.
    pub queue: Vec<Command>,
    /// Ownership epoch: higher than the epoch of every move that gave this
    /// profile one of its identifiers, so the moves it starts (a split,
    /// being absorbed) outrank them (ADR 0002).
    pub epoch: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ProfileRecord {
    Live(Box<LiveProfile>),
    /// Merged into the target; resolves there forever.
    Alias(ProfileId),
    /// Commands that arrived before the profile's creation.
    Placeholder(Vec<Command>),
}

impl LiveProfile {
    pub fn new(anchor: IdentKey, ts: Millis) -> Self {
        Self {
            version: 0,
            created: ts,
            updated: ts,
            idents: smallvec::smallvec![IdentEntry { key: anchor, first_seen: ts, last_seen: ts }],
            edges: Edges::new(),
            fragments: Fragments::new(),
            pending: Vec::new(),
            merged_from: Vec::new(),
            frozen_for: None,
            queue: Vec::new(),
            epoch: 0,
        }
    }

    pub fn index_of(&self, k: &IdentKey) -> Option<usize> {
        self.idents.iter().position(|e| &e.key == k)
    }

    /// Widens an identifier's first/last seen to include `ts`.
    /// Widens an identifier's first/last seen to `ts`; returns whether
    /// that changed the profile's output (the caller bumps the version).
    #[must_use]
    pub fn saw(&mut self, k: &IdentKey, ts: Millis) -> bool {
        let Some(i) = self.index_of(k) else { return false };
        let e = &mut self.idents[i];
        let before = (e.first_seen, e.last_seen);
        e.first_seen = e.first_seen.min(ts);
        e.last_seen = e.last_seen.max(ts);
        before != (e.first_seen, e.last_seen)
    }

    pub fn contains(&self, k: &IdentKey) -> bool {
        self.index_of(k).is_some()
    }

    /// Whether the profile can be frozen, detached from or split now.
    pub fn is_idle(&self) -> bool {
        self.frozen_for.is_none() && self.pending.is_empty()
    }

    /// Per-type counts of members plus pending reservations.
    pub fn counts(&self) -> TypeCounts {
        let mut c = TypeCounts::from_types(self.idents.iter().map(|e| e.key.ty()));
        for p in &self.pending {
            c.add(p.ty(), 1);
        }
        c
    }

    /// Per-type counts of the union of this profile and `other` (members
    /// plus pending reservations of both), each identifier counted once.
    /// An identifier this profile is still attaching can be one `other`
    /// already owns (that is why they merge): the attach outcome and the
    /// younger profile's hand-over travel from different partitions, so
    /// the hand-over may arrive first. Counting it twice refused merges
    /// that break no rule.
    pub fn union_counts(&self, other: &LiveProfile) -> TypeCounts {
        let mut c = self.counts();
        let theirs = other.idents.iter().map(|e| &e.key).chain(&other.pending);
        if self.idents.len() + self.pending.len() > 32 {
            let mine: rustc_hash::FxHashSet<&IdentKey> = self.idents.iter().map(|e| &e.key).chain(&self.pending).collect();
            for k in theirs.filter(|k| !mine.contains(k)) {
                c.add(k.ty(), 1);
            }
        } else {
            for k in theirs.filter(|k| !self.contains(k) && !self.pending.contains(k)) {
                c.add(k.ty(), 1);
            }
        }
        c
    }

    /// Folds the outcome of attaching `x` to this profile, joined to
    /// `anchor` by `ev` (at `ev.ts`): a claimed identifier becomes a member,
    /// a member gets the edge. Returns whether the profile took a new
    /// version.
    pub fn attached(&mut self, x: &IdentKey, outcome: AttachOutcome, anchor: &IdentKey, ev: &Evidence) -> bool {
        match outcome {
            AttachOutcome::Claimed => {
                self.idents.push(IdentEntry { key: x.clone(), first_seen: ev.ts, last_seen: ev.ts });
                self.join(anchor, x, ev);
                self.version += 1;
                true
            }
            AttachOutcome::Member => {
                // Every visible change takes a new version, so one
                // (profile, version) always renders the same content,
                // however commands were batched (ADR 0004).
                let seen = self.saw(x, ev.ts);
                if seen {
                    self.version += 1;
                }
                self.join(anchor, x, ev);
                seen
            }
            AttachOutcome::Linking | AttachOutcome::Shared => false,
        }
    }

    pub fn fragment_mut(&mut self, anchor: &IdentKey) -> &mut Fragment {
        let i = match self.fragments.iter().position(|f| &f.anchor == anchor) {
            Some(i) => i,
            None => {
                self.fragments.push(Fragment::new(anchor.clone()));
                self.fragments.len() - 1
            }
        };
        &mut self.fragments[i]
    }

    /// Absorbs a younger profile's state (merge).
    pub fn absorb(&mut self, y: ProfileId, other: LiveProfile) {
        let offset = self.idents.len() as u32;
        self.idents.extend(other.idents);
        // What this profile was attaching and the other owned is a member
        // now (its attach outcome, when it comes, finds nothing pending).
        if !self.pending.is_empty() {
            let idents = &self.idents;
            self.pending.retain(|k| !idents.iter().any(|e| &e.key == k));
        }
        self.edges.extend(other.edges.into_iter().map(|e| Edge { a: e.a + offset, b: e.b + offset, evidence: e.evidence }));
        for f in other.fragments {
            match self.fragments.iter_mut().find(|g| g.anchor == f.anchor) {
                // Cannot happen for disjoint profiles; fold defensively.
                Some(g) => g.metrics.merge(&f.metrics),
                None => self.fragments.push(f),
            }
        }
        self.merged_from.push(y);
        self.merged_from.extend(other.merged_from);
        // The absorbed profile's identifiers are repointed here with its
        // epoch + 1; later moves from here must outrank those repoints.
        self.epoch = self.epoch.max(other.epoch.saturating_add(1));
        self.merged_from.sort_unstable();
        self.merged_from.dedup();
        self.created = self.created.min(other.created);
        self.updated = self.updated.max(other.updated);
        self.version = self.version.max(other.version) + 1;
    }

    /// Rule check of this profile alone (used by invariants).
    pub fn violation(&self, cfg: &CoreConfig) -> Option<crate::rules::Violation> {
        TypeCounts::from_types(self.idents.iter().map(|e| e.key.ty())).violation(cfg)
    }
}

/// Encodes a record with its format byte.
pub fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    encode_append(v, &mut out);
    out
}

/// Appends a record (format byte, then postcard) to `out`: for callers
/// that encode many records into one buffer.
pub fn encode_append<T: Serialize>(v: &T, out: &mut Vec<u8>) {
    out.push(RECORD_FORMAT);
    postcard_append(v, out);
}

/// Appends postcard's encoding of `v` (no format byte) to `out`.
fn postcard_append<T: Serialize + ?Sized>(v: &T, out: &mut Vec<u8>) {
    // postcard into a Vec cannot fail for these types (no maps with
    // non-string keys, no unsupported serde features).
    if let Err(e) = postcard::serialize_with_flavor(v, Append(out)) {
        panic!("record encoding failed: {e}");
    }
}

/// Appends a profile record to `out` in [`PROFILE_FORMAT`], encoded by
/// hand ([`write`]).
pub fn encode_profile_append(rec: &ProfileRecord, out: &mut Vec<u8>) {
    out.push(PROFILE_FORMAT);
    write::profile_record_into(rec, Layout::Compact, out);
}

/// postcard's output appended to a `Vec`, copying the short pieces it
/// writes (varints, small strings) byte by byte: a library copy call per
/// field cost more than the copy.
struct Append<'a>(&'a mut Vec<u8>);

impl postcard::ser_flavors::Flavor for Append<'_> {
    type Output = ();

    #[inline]
    fn try_push(&mut self, b: u8) -> postcard::Result<()> {
        self.0.push(b);
        Ok(())
    }

    #[inline]
    fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
        if data.len() <= 16 {
            self.0.reserve(data.len());
            for &b in data {
                self.0.push(b);
            }
        } else {
            self.0.extend_from_slice(data);
        }
        Ok(())
    }

    fn finalize(self) -> postcard::Result<()> {
        Ok(())
    }
}

/// Decodes a record written by [`encode`].
pub fn decode<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, DecodeError> {
    match bytes.split_first() {
        Some((&(2 | 3 | RECORD_FORMAT), rest)) => postcard::from_bytes(rest).map_err(|_| DecodeError::Corrupt),
        Some((&v, _)) => Err(DecodeError::UnknownFormat(v)),
        None => Err(DecodeError::Corrupt),
    }
}

/// Decodes a profile record written by [`encode_profile_append`], or by
/// [`encode`] in an earlier format, by hand ([`read`]).
pub fn decode_profile(bytes: &[u8]) -> Result<ProfileRecord, DecodeError> {
    match bytes.split_first() {
        Some((&PROFILE_FORMAT, rest)) => match read::profile_record(rest, Layout::Compact) {
            Some(r) => Ok(r),
            None => Err(DecodeError::Corrupt),
        },
        Some((&(2 | 3 | RECORD_FORMAT), rest)) => match read::profile_record(rest, Layout::Serde) {
            Some(r) => Ok(r),
            // Damage: serde has the last word on the layout it wrote.
            None => postcard::from_bytes(rest).map_err(|_| DecodeError::Corrupt),
        },
        Some((&v, _)) => Err(DecodeError::UnknownFormat(v)),
        None => Err(DecodeError::Corrupt),
    }
}

/// A record type the state store decodes.
pub trait Record: Sized {
    fn decode_record(bytes: &[u8]) -> Result<Self, DecodeError>;
}

impl Record for ProfileRecord {
    fn decode_record(bytes: &[u8]) -> Result<Self, DecodeError> {
        decode_profile(bytes)
    }
}

impl Record for IdentRecord {
    fn decode_record(bytes: &[u8]) -> Result<Self, DecodeError> {
        decode(bytes)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("record format {0} is not known to this version")]
    UnknownFormat(u8),
    #[error("record bytes are corrupt")]
    Corrupt,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::ident::IdentType;

    #[test]
    fn encoding_is_the_format_byte_then_plain_postcard() {
        let anchor = IdentKey::new(IdentType::EMAIL, "someone.with.a.long.address@example.com");
        let mut lp = LiveProfile::new(anchor.clone(), 1_700_000_000_000);
        let other = IdentKey::new(IdentType::DEVICE_ID, "d1");
        lp.idents.push(IdentEntry { key: other.clone(), first_seen: -5, last_seen: i64::MAX });
        let ev = Evidence { event_id: ShortStr::new("an-event-id-longer-than-twenty-two-bytes"), ts: 7, source: ShortStr::new("web") };
        assert!(lp.add_edge(&anchor, &other, &ev));
        lp.merged_from.push(ProfileId([9; 16]));
        let rec = ProfileRecord::Live(Box::new(lp));
        let bytes = encode(&rec);
        let mut want = vec![RECORD_FORMAT];
        want.extend(postcard::to_allocvec(&rec).unwrap());
        assert_eq!(bytes, want);
        assert_eq!(decode::<ProfileRecord>(&bytes).unwrap(), rec);
        let mut appended = b"before".to_vec();
        encode_append(&rec, &mut appended);
        assert_eq!(&appended[..6], b"before");
        assert_eq!(&appended[6..], &want[..]);
    }
}
