//! Profile records decoded by hand.
//!
//! Every event of a returning person reads its profile, so decoding a
//! [`ProfileRecord`] is on the hot path of the replay and of the engine
//! (~12% of the partition thread through serde: a visitor per field, a
//! sequence access per vector). This reads the bytes [`super::write`]
//! writes, field by field, with postcard's rules (varints of at most 10
//! bytes for `u64` and lengths, 5 for `u32`, zigzag for signed integers,
//! raw bytes for `u8` and arrays, `0`/`1` for booleans and option tags,
//! text packed by [`crate::packed`]), and hands the rare parts (consent
//! records, queued commands, placeholders) to serde.
//!
//! Records of formats 2 to 4 are the bytes serde wrote:
//! read here alike, and where this answers `None` the caller asks serde,
//! which has the last word on them (a property test checks the two agree
//! on random records and read nothing differently on damaged ones).
//! Format 5 ([`Layout::Compact`]: times since `created`, an evidence
//! repeated by the next edge written once) is this module's and
//! [`super::write`]'s alone.

use super::write::Layout;
use super::{Edge, Edges, Evidence, Fragments, IdentEntry, Idents, LiveProfile, ProfileRecord};
use crate::command::Command;
use crate::fragment::{ConsentRecord, Fragment, Metrics, Sources, TraitCandidate, Traits};
use crate::ident::{IdentKey, IdentType, POSITION_TAG};
use crate::profile_id::ProfileId;
use crate::short::ShortStr;
use crate::time::Millis;
use serde::Deserialize;

/// A record body (after its format byte) as a [`ProfileRecord`], laid
/// out as `layout` says.
pub(super) fn profile_record(bytes: &[u8], layout: Layout) -> Option<ProfileRecord> {
    let mut r = Reader { b: bytes };
    match r.u32()? {
        0 => Some(ProfileRecord::Live(Box::new(r.live(layout)?))),
        1 => Some(ProfileRecord::Alias(r.profile_id()?)),
        2 => Some(ProfileRecord::Placeholder(r.serde()?)),
        _ => None,
    }
}

struct Reader<'a> {
    b: &'a [u8],
}

impl<'a> Reader<'a> {
    #[inline]
    fn byte(&mut self) -> Option<u8> {
        let (&x, rest) = self.b.split_first()?;
        self.b = rest;
        Some(x)
    }

    #[inline]
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if n > self.b.len() {
            return None;
        }
        let (x, rest) = self.b.split_at(n);
        self.b = rest;
        Some(x)
    }

    /// A varint of at most `max` bytes whose last byte is at most `last`.
    #[inline]
    fn varint(&mut self, max: usize, last: u8) -> Option<u64> {
        let mut out = 0u64;
        for i in 0..max {
            let v = self.byte()?;
            out |= u64::from(v & 0x7F) << (7 * i);
            if v & 0x80 == 0 {
                return (i + 1 < max || v <= last).then_some(out);
            }
        }
        None
    }

    #[inline]
    fn u64(&mut self) -> Option<u64> {
        self.varint(10, 1)
    }

    #[inline]
    fn u32(&mut self) -> Option<u32> {
        self.varint(5, 0x0F).map(|v| v as u32)
    }

    #[inline]
    fn i64(&mut self) -> Option<i64> {
        let n = self.u64()?;
        Some((n >> 1) as i64 ^ -((n & 1) as i64))
    }

    #[inline]
    fn len(&mut self) -> Option<usize> {
        usize::try_from(self.u64()?).ok()
    }

    #[inline]
    fn bool(&mut self) -> Option<bool> {
        match self.byte()? {
            0 => Some(false),
            1 => Some(true),
            _ => None,
        }
    }

    #[inline]
    fn f64(&mut self) -> Option<f64> {
        let b: [u8; 8] = self.take(8)?.try_into().ok()?;
        Some(f64::from_le_bytes(b))
    }

    /// A byte string: its length, then its bytes.
    #[inline]
    fn bytes(&mut self) -> Option<&'a [u8]> {
        let n = self.len()?;
        self.take(n)
    }

    #[inline]
    fn short(&mut self) -> Option<ShortStr> {
        let t = crate::packed::text_of(self.bytes()?)?;
        Some(ShortStr::new(t.as_str()))
    }

    #[inline]
    fn key(&mut self) -> Option<IdentKey> {
        let ty = IdentType(self.byte()?);
        let t = crate::packed::text_of(self.bytes()?)?;
        Some(IdentKey::new(ty, t.as_str()))
    }

    /// A key that may be written as its position in `idents` (record
    /// format 3: [`crate::ident::serialize_position`]).
    fn key_within(&mut self, idents: &[IdentEntry]) -> Option<IdentKey> {
        let ty = IdentType(self.byte()?);
        let t = crate::packed::text_of(self.bytes()?)?;
        if ty == POSITION_TAG {
            // What `IdentKey::as_position` reads; a value that is no
            // number stays a key, as the serde path leaves it.
            if let Ok(i) = t.as_str().parse::<usize>() {
                return idents.get(i).map(|e| e.key.clone());
            }
        }
        Some(IdentKey::new(ty, t.as_str()))
    }

    #[inline]
    fn profile_id(&mut self) -> Option<ProfileId> {
        Some(ProfileId(self.take(16)?.try_into().ok()?))
    }

    /// A value serde reads (the rare parts).
    fn serde<T: Deserialize<'a>>(&mut self) -> Option<T> {
        let (v, rest) = postcard::take_from_bytes(self.b).ok()?;
        self.b = rest;
        Some(v)
    }

    /// Room for `n` elements read one by one, each encoded in at least
    /// `min` bytes: bounded by what the bytes left could hold, so a
    /// damaged length cannot ask for more memory than the record could
    /// fill.
    #[inline]
    fn room(&self, n: usize, min: usize) -> usize {
        n.min(self.b.len() / min)
    }

    /// A time written as its difference from `base` (0 for absolute
    /// times).
    #[inline]
    fn time(&mut self, base: Millis) -> Option<Millis> {
        Some(base.wrapping_add(self.i64()?))
    }

    fn live(&mut self, layout: Layout) -> Option<LiveProfile> {
        let version = self.u64()?;
        let created = self.i64()?;
        let base = match layout {
            Layout::Serde => 0,
            Layout::Compact => created,
        };
        let updated = self.time(base)?;
        let n = self.len()?;
        let mut idents = Idents::with_capacity(self.room(n, 4));
        for _ in 0..n {
            idents.push(IdentEntry { key: self.key()?, first_seen: self.time(base)?, last_seen: self.time(base)? });
        }
        let n = self.len()?;
        let mut edges = Edges::with_capacity(self.room(n, 5));
        for _ in 0..n {
            let (a, repeated) = match layout {
                Layout::Serde => (self.u32()?, false),
                Layout::Compact => {
                    let v = self.u64()?;
                    (u32::try_from(v >> 1).ok()?, v & 1 == 1)
                }
            };
            let b = self.u32()?;
            let evidence = if repeated {
                edges.last().map(|e: &Edge| e.evidence.clone())?
            } else {
                Evidence { event_id: self.short()?, ts: self.time(base)?, source: self.short()? }
            };
            edges.push(Edge { a, b, evidence });
        }
        let n = self.len()?;
        let mut fragments = Fragments::with_capacity(self.room(n, 17));
        for _ in 0..n {
            fragments.push(self.fragment(&idents, base)?);
        }
        let n = self.len()?;
        let mut pending = Vec::with_capacity(self.room(n, 2));
        for _ in 0..n {
            pending.push(self.key()?);
        }
        let n = self.len()?;
        let mut merged_from = Vec::with_capacity(self.room(n, 16));
        for _ in 0..n {
            merged_from.push(self.profile_id()?);
        }
        let frozen_for = if self.bool()? { Some(self.profile_id()?) } else { None };
        let queue: Vec<Command> = if self.b.first() == Some(&0) {
            self.b = &self.b[1..];
            Vec::new()
        } else {
            self.serde()?
        };
        let epoch = self.u32()?;
        Some(LiveProfile { version, created, updated, idents, edges, fragments, pending, merged_from, frozen_for, queue, epoch })
    }

    fn fragment(&mut self, idents: &[IdentEntry], base: Millis) -> Option<Fragment> {
        let anchor = self.key_within(idents)?;
        let event_count = self.u64()?;
        let first_seen = self.time(base)?;
        let last_seen = self.time(base)?;
        let n = self.len()?;
        let mut sources = Sources::with_capacity(self.room(n, 2));
        for _ in 0..n {
            sources.push((self.short()?, self.u64()?));
        }
        let metrics = Metrics { event_count, first_seen, last_seen, sources, order_count: self.u64()?, revenue_total: self.f64()? };
        let n = self.len()?;
        let mut traits = Traits::with_capacity(self.room(n, 4));
        for _ in 0..n {
            traits.push(TraitCandidate { name: self.short()?, value: self.short()?, ts: self.time(base)?, source: self.short()? });
        }
        let n = self.len()?;
        let mut consent = Vec::with_capacity(self.room(n, 9));
        for _ in 0..n {
            let mut c: ConsentRecord = self.serde()?;
            super::wire::resolve(&mut c.identifier, idents).ok()?;
            consent.push(c);
        }
        Some(Fragment { anchor, metrics, traits, consent })
    }
}

#[cfg(test)]
pub(super) mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::event::{ConsentInput, Touchpoint};
    use crate::record::{decode, decode_profile, encode, encode_profile_append, DecodeError, PROFILE_FORMAT, RECORD_FORMAT};
    use proptest::prelude::*;

    fn serde_decode(bytes: &[u8]) -> Option<ProfileRecord> {
        postcard::from_bytes(&bytes[1..]).ok()
    }

    fn key(ty: u8, v: &str) -> IdentKey {
        IdentKey::new(IdentType(ty), v)
    }

    /// Values that exercise every form: short and long text, packed UUIDs.
    fn text() -> impl Strategy<Value = String> {
        prop_oneof![
            "[a-z0-9@.+-]{0,30}",
            "[a-z]{20,40}",
            "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
            Just("éçà ünïcode".to_string()),
        ]
    }

    fn ts() -> impl Strategy<Value = i64> {
        prop_oneof![any::<i64>(), -5i64..5, 1_600_000_000_000i64..1_800_000_000_000]
    }

    prop_compose! {
        /// Live profiles with every field and form filled at random.
        pub(in crate::record) fn profile()(
            idents in proptest::collection::vec((1u8..9, text(), ts(), ts()), 0..5),
            edges in proptest::collection::vec((any::<u32>(), 0u32..300, text(), ts(), text(), any::<bool>()), 0..4),
            frags in proptest::collection::vec((0usize..6, any::<u64>(), ts(), ts(),
                proptest::collection::vec((text(), any::<u64>()), 0..3), any::<u64>(), any::<f64>(),
                proptest::collection::vec((text(), text(), ts(), text()), 0..3), any::<bool>(), any::<bool>()), 0..4),
            pending in proptest::collection::vec((1u8..9, text()), 0..2),
            merged in proptest::collection::vec(any::<[u8; 16]>(), 0..3),
            frozen in proptest::option::of(any::<[u8; 16]>()),
            queued in any::<bool>(),
            head in (any::<u64>(), ts(), ts(), any::<u32>()),
        ) -> LiveProfile {
            let mut lp = LiveProfile::new(key(3, "a@b.c"), 0);
            lp.idents.clear();
            for (t, v, f, l) in idents {
                lp.idents.push(IdentEntry { key: key(t, &v), first_seen: f, last_seen: l });
            }
            for (a, b, id, ts, src, repeat) in edges {
                // The edges one event adds share their evidence.
                let evidence = match lp.edges.last() {
                    Some(e) if repeat => e.evidence.clone(),
                    _ => Evidence { event_id: ShortStr::new(&id), ts, source: ShortStr::new(&src) },
                };
                lp.edges.push(Edge { a, b, evidence });
            }
            for (at, count, first, last, sources, orders, revenue, traits, consent, foreign) in frags {
                // Anchors held by the profile (written as positions) and
                // anchors it does not hold (written whole).
                let anchor = match lp.idents.get(at) {
                    Some(e) if !foreign => e.key.clone(),
                    _ => key(5, &format!("+1415555{at:04}")),
                };
                let mut f = Fragment::new(anchor.clone());
                f.metrics = Metrics { event_count: count, first_seen: first, last_seen: last,
                    sources: sources.iter().map(|(s, n)| (ShortStr::new(s), *n)).collect(), order_count: orders, revenue_total: revenue };
                f.traits = traits.iter().map(|(n, v, ts, s)| TraitCandidate { name: ShortStr::new(n), value: ShortStr::new(v), ts: *ts, source: ShortStr::new(s) }).collect();
                if consent {
                    let ev = Touchpoint { event_id: "e1".into(), ts: first, source: "web".into(), idents: vec![], traits: vec![],
                        revenue: None, is_order: false,
                        consent: vec![ConsentInput { purpose: "email".into(), granted: true, policy_version: Some("v2".into()), jurisdiction: None }] };
                    f.add_event(&ev, &crate::config::CoreConfig::default());
                }
                lp.fragments.push(f);
            }
            lp.pending = pending.iter().map(|(t, v)| key(*t, v)).collect();
            lp.merged_from = merged.into_iter().map(ProfileId).collect();
            lp.frozen_for = frozen.map(ProfileId);
            if queued {
                lp.queue.push(Command::Absorbed { id: ProfileId([1; 16]), into: ProfileId([2; 16]) });
            }
            (lp.version, lp.created, lp.updated, lp.epoch) = head;
            lp
        }
    }

    proptest! {
        #[test]
        fn reads_what_serde_reads(lp in profile()) {
            let rec = ProfileRecord::Live(Box::new(lp));
            let bytes = encode(&rec);
            prop_assert_eq!(bytes[0], RECORD_FORMAT);
            let fast = profile_record(&bytes[1..], Layout::Serde);
            prop_assert_eq!(&fast, &serde_decode(&bytes));
            prop_assert_eq!(fast, Some(rec));
        }

        #[test]
        fn reads_what_it_writes_in_format_5(lp in profile()) {
            let rec = ProfileRecord::Live(Box::new(lp));
            let mut bytes = Vec::new();
            encode_profile_append(&rec, &mut bytes);
            prop_assert_eq!(bytes[0], PROFILE_FORMAT);
            prop_assert_eq!(profile_record(&bytes[1..], Layout::Compact), Some(rec.clone()));
            prop_assert_eq!(decode_profile(&bytes), Ok(rec));
            // Never read as the layout serde wrote.
            prop_assert_eq!(decode::<ProfileRecord>(&bytes), Err(DecodeError::UnknownFormat(PROFILE_FORMAT)));
        }

        /// Damaged format 5 records are refused or read as some record,
        /// never a panic.
        #[test]
        fn damaged_records_since_created_do_not_panic(lp in profile(), at in any::<prop::sample::Index>(), byte in any::<u8>(), cut in any::<bool>()) {
            let mut bytes = Vec::new();
            encode_profile_append(&ProfileRecord::Live(Box::new(lp)), &mut bytes);
            let i = 1 + at.index(bytes.len() - 1);
            if cut {
                bytes.truncate(i);
            } else {
                bytes[i] = byte;
            }
            let _ = decode_profile(&bytes);
        }

        /// On damaged bytes the hand decoder reads nothing serde would not
        /// read alike (where it gives up, the caller asks serde).
        #[test]
        fn damaged_records_read_alike_or_not_at_all(lp in profile(), at in any::<prop::sample::Index>(), byte in any::<u8>(), cut in any::<bool>()) {
            let mut bytes = encode(&ProfileRecord::Live(Box::new(lp)));
            let i = 1 + at.index(bytes.len() - 1);
            if cut {
                bytes.truncate(i);
            } else {
                bytes[i] = byte;
            }
            if let Some(fast) = profile_record(&bytes[1..], Layout::Serde) {
                prop_assert_eq!(Some(fast), serde_decode(&bytes));
            }
        }
    }

    #[test]
    fn aliases_and_placeholders() {
        let queued = Command::Absorbed { id: ProfileId([1; 16]), into: ProfileId([2; 16]) };
        for rec in [ProfileRecord::Alias(ProfileId([7; 16])), ProfileRecord::Placeholder(vec![]), ProfileRecord::Placeholder(vec![queued])]
        {
            assert_eq!(profile_record(&encode(&rec)[1..], Layout::Serde), Some(rec.clone()));
            let mut bytes = Vec::new();
            encode_profile_append(&rec, &mut bytes);
            assert_eq!(decode_profile(&bytes), Ok(rec));
        }
    }

    /// The edges one event adds share their evidence: written once.
    #[test]
    fn a_repeated_evidence_is_written_once() {
        let ts = 1_764_000_000_123;
        let email = key(3, "ann.lee@example.com");
        let mut lp = LiveProfile::new(email.clone(), ts);
        let ev = Evidence { event_id: "0b9417e1-9ba4-457d-a245-65e315435a8d".into(), ts, source: "web".into() };
        for v in ["u1", "+14155550100", "d-7"] {
            let k = key(5, v);
            lp.idents.push(IdentEntry { key: k.clone(), first_seen: ts, last_seen: ts });
            assert!(lp.add_edge(&email, &k, &ev));
        }
        let other = Evidence { event_id: "e2".into(), ..ev.clone() };
        assert!(lp.add_edge(&key(5, "u1"), &key(5, "d-7"), &other));
        let rec = ProfileRecord::Live(Box::new(lp.clone()));
        let mut compact = Vec::new();
        encode_profile_append(&rec, &mut compact);
        assert_eq!(decode_profile(&compact), Ok(rec));
        // The same profile with every evidence its own.
        lp.edges[1].evidence.source = "app".into();
        lp.edges[2].evidence.source = "pos".into();
        let mut distinct = Vec::new();
        encode_profile_append(&ProfileRecord::Live(Box::new(lp.clone())), &mut distinct);
        // Two evidences not repeated: the packed UUID (1 + 17), the time
        // (1) and the source (1 + 3) each.
        assert_eq!(distinct.len() - compact.len(), 2 * (18 + 1 + 4));
        assert_eq!(decode_profile(&distinct), Ok(ProfileRecord::Live(Box::new(lp))));
        // A first edge that claims to repeat its predecessor is corrupt.
        let mut lone = LiveProfile::new(email, 0);
        lone.idents.clear();
        lone.updated = 0;
        lone.edges.push(Edge { a: 0, b: 1, evidence: ev });
        let mut bytes = Vec::new();
        encode_profile_append(&ProfileRecord::Live(Box::new(lone)), &mut bytes);
        // Format, variant, version, created, updated, no identifiers, one
        // edge: its `a` (0, not repeated) comes next.
        assert_eq!(bytes[..7], [PROFILE_FORMAT, 0, 0, 0, 0, 0, 1]);
        assert_eq!(bytes[7], 0);
        bytes[7] = 1;
        assert_eq!(decode_profile(&bytes), Err(DecodeError::Corrupt));
    }

    /// A profile seen once holds one instant ten times: each is one byte
    /// in format 5 against six.
    #[test]
    fn times_since_created_are_short() {
        let cfg = crate::config::CoreConfig::default();
        let ts = 1_764_000_000_123;
        let email = key(3, "ann.lee@example.com");
        let mut lp = LiveProfile::new(email.clone(), ts);
        let dev = key(7, "0b9417e1-9ba4-457d-a245-65e315435a8d");
        lp.idents.push(IdentEntry { key: dev.clone(), first_seen: ts, last_seen: ts });
        let ev = Touchpoint {
            event_id: "e1".into(),
            ts,
            source: "web".into(),
            idents: vec![],
            traits: vec![("plan".into(), "\"pro\"".into())],
            revenue: None,
            is_order: false,
            consent: vec![],
        };
        assert!(lp.add_edge(&email, &dev, &Evidence { event_id: "e1".into(), ts, source: "web".into() }));
        lp.fragment_mut(&email).add_event(&ev, &cfg);
        let rec = ProfileRecord::Live(Box::new(lp));
        let mut short = Vec::new();
        encode_profile_append(&rec, &mut short);
        let long = encode(&rec);
        // updated, 2 x 2 identifier times, the edge's, the fragment's two
        // and its trait's: nine times, five bytes saved on each.
        assert_eq!(long.len() - short.len(), 9 * 5);
        assert_eq!(decode_profile(&short), Ok(rec));
    }

    #[test]
    fn varints_follow_postcard() {
        let read = |b: &[u8]| Reader { b }.u64();
        assert_eq!(read(&[0x7F]), Some(127));
        assert_eq!(read(&[0x80, 0x01]), Some(128));
        assert_eq!(read(&[0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01]), Some(u64::MAX));
        // A tenth byte above 1 overflows; an eleventh byte is never read.
        assert_eq!(read(&[0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x02]), None);
        assert_eq!(read(&[0x80; 11]), None);
        assert_eq!(Reader { b: &[0xFF, 0xFF, 0xFF, 0xFF, 0x0F] }.u32(), Some(u32::MAX));
        assert_eq!(Reader { b: &[0xFF, 0xFF, 0xFF, 0xFF, 0x10] }.u32(), None);
        for v in [0i64, -1, 1, i64::MIN, i64::MAX, -1_700_000_000_000] {
            let b = postcard::to_allocvec(&v).unwrap();
            assert_eq!(Reader { b: &b }.i64(), Some(v));
        }
    }
}
