//! Profile records encoded by hand.
//!
//! Every batch writes back each profile it changed, so encoding a
//! [`ProfileRecord`] is on the writer's hot path (~16% of the replay's
//! writer thread through serde). This writes the bytes the serde encoding
//! of [`super::wire`] writes, field by field: postcard's varints, zigzag
//! for signed integers, raw bytes for `u8` and arrays, text packed by
//! [`crate::packed`], a fragment's anchor and a consent record's
//! identifier as their position in the profile's identifiers. The rare
//! parts (queued commands, placeholders) go through serde. A property test
//! checks the two encodings are the same bytes.

use super::{Append, LiveProfile, ProfileRecord};
use crate::fragment::{ConsentRecord, Fragment};
use crate::ident::{IdentKey, POSITION_TAG};
use serde::Serialize;

/// Appends the postcard encoding of `rec` (no format byte) to `out`.
pub(super) fn profile_record_into(rec: &ProfileRecord, out: &mut Vec<u8>) {
    match rec {
        ProfileRecord::Live(lp) => {
            out.push(0);
            live(lp, out);
        }
        ProfileRecord::Alias(id) => {
            out.push(1);
            out.extend_from_slice(&id.0);
        }
        ProfileRecord::Placeholder(_) => serde(rec, out),
    }
}

/// A value serde writes (the rare parts).
fn serde<T: Serialize + ?Sized>(v: &T, out: &mut Vec<u8>) {
    // postcard into a Vec cannot fail for these types (as `encode_append`).
    if let Err(e) = postcard::serialize_with_flavor(v, Append(out)) {
        panic!("record encoding failed: {e}");
    }
}

#[inline]
fn varint(mut v: u64, out: &mut Vec<u8>) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

#[inline]
fn i64(v: i64, out: &mut Vec<u8>) {
    varint(((v << 1) ^ (v >> 63)) as u64, out);
}

#[inline]
fn len(n: usize, out: &mut Vec<u8>) {
    varint(n as u64, out);
}

/// A byte string: its length, then its bytes.
#[inline]
fn bytes(b: &[u8], out: &mut Vec<u8>) {
    len(b.len(), out);
    out.extend_from_slice(b);
}

/// Text as [`crate::packed::serialize_text`] writes it to postcard.
#[inline]
fn text(b: &[u8], out: &mut Vec<u8>) {
    match crate::packed::pack(b) {
        Some(p) => bytes(&p, out),
        None => bytes(b, out),
    }
}

#[inline]
fn key(k: &IdentKey, out: &mut Vec<u8>) {
    out.push(k.ty().0);
    text(k.value().as_bytes(), out);
}

/// A key as its position in the profile's identifiers where it is one of
/// them ([`crate::ident::serialize_position`]), else whole.
#[inline]
fn key_within(k: &IdentKey, lp: &LiveProfile, out: &mut Vec<u8>) {
    match lp.idents.iter().position(|e| e.key == *k) {
        Some(i) => {
            out.push(POSITION_TAG.0);
            let mut digits = [0u8; 20];
            bytes(crate::decimal(i as u64, &mut digits), out);
        }
        None => key(k, out),
    }
}

#[inline]
fn opt_str(s: &Option<String>, out: &mut Vec<u8>) {
    match s {
        Some(s) => {
            out.push(1);
            bytes(s.as_bytes(), out);
        }
        None => out.push(0),
    }
}

fn live(lp: &LiveProfile, out: &mut Vec<u8>) {
    varint(lp.version, out);
    i64(lp.created, out);
    i64(lp.updated, out);
    len(lp.idents.len(), out);
    for e in &lp.idents {
        key(&e.key, out);
        i64(e.first_seen, out);
        i64(e.last_seen, out);
    }
    len(lp.edges.len(), out);
    for e in &lp.edges {
        varint(e.a.into(), out);
        varint(e.b.into(), out);
        text(e.evidence.event_id.as_bytes(), out);
        i64(e.evidence.ts, out);
        text(e.evidence.source.as_bytes(), out);
    }
    len(lp.fragments.len(), out);
    for f in &lp.fragments {
        fragment(f, lp, out);
    }
    len(lp.pending.len(), out);
    for k in &lp.pending {
        key(k, out);
    }
    len(lp.merged_from.len(), out);
    for id in &lp.merged_from {
        out.extend_from_slice(&id.0);
    }
    match &lp.frozen_for {
        Some(id) => {
            out.push(1);
            out.extend_from_slice(&id.0);
        }
        None => out.push(0),
    }
    if lp.queue.is_empty() {
        out.push(0);
    } else {
        serde(&lp.queue, out);
    }
    varint(lp.epoch.into(), out);
}

fn fragment(f: &Fragment, lp: &LiveProfile, out: &mut Vec<u8>) {
    key_within(&f.anchor, lp, out);
    let m = &f.metrics;
    varint(m.event_count, out);
    i64(m.first_seen, out);
    i64(m.last_seen, out);
    len(m.sources.len(), out);
    for (s, n) in &m.sources {
        text(s.as_bytes(), out);
        varint(*n, out);
    }
    varint(m.order_count, out);
    out.extend_from_slice(&m.revenue_total.to_le_bytes());
    len(f.traits.len(), out);
    for t in &f.traits {
        text(t.name.as_bytes(), out);
        text(t.value.as_bytes(), out);
        i64(t.ts, out);
        text(t.source.as_bytes(), out);
    }
    len(f.consent.len(), out);
    for c in &f.consent {
        consent(c, lp, out);
    }
}

fn consent(c: &ConsentRecord, lp: &LiveProfile, out: &mut Vec<u8>) {
    bytes(c.purpose.as_bytes(), out);
    out.push(u8::from(c.granted));
    i64(c.at, out);
    opt_str(&c.policy_version, out);
    opt_str(&c.jurisdiction, out);
    text(c.source.as_bytes(), out);
    text(c.event_id.as_bytes(), out);
    key_within(&c.identifier, lp, out);
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::profile_id::ProfileId;
    use crate::record::read::tests::profile;
    use proptest::prelude::*;

    fn by_hand(rec: &ProfileRecord) -> Vec<u8> {
        let mut out = b"before".to_vec();
        profile_record_into(rec, &mut out);
        assert_eq!(&out[..6], b"before");
        out.split_off(6)
    }

    proptest! {
        #[test]
        fn writes_what_serde_writes(lp in profile()) {
            let rec = ProfileRecord::Live(Box::new(lp));
            prop_assert_eq!(by_hand(&rec), postcard::to_allocvec(&rec).unwrap());
        }
    }

    #[test]
    fn aliases_and_placeholders() {
        for rec in [ProfileRecord::Alias(ProfileId([7; 16])), ProfileRecord::Placeholder(vec![])] {
            assert_eq!(by_hand(&rec), postcard::to_allocvec(&rec).unwrap());
        }
    }
}
