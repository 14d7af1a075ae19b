//! Profile records encoded by hand.
//!
//! Every batch writes back each profile it changed, so encoding a
//! [`ProfileRecord`] is on the writer's hot path (~16% of the replay's
//! writer thread through serde). This writes the layout the serde encoding
//! of [`super::wire`] writes, field by field: postcard's varints, zigzag
//! for signed integers, raw bytes for `u8` and arrays, text packed by
//! [`crate::packed`], a fragment's anchor and a consent record's
//! identifier as their position in the profile's identifiers. The rare
//! parts (queued commands, placeholders) go through serde. With
//! [`Layout::Serde`] the bytes are serde's (a property test checks it);
//! records are written with [`Layout::Compact`] (record format 5).

use super::{postcard_append, LiveProfile, ProfileRecord};
use crate::fragment::{ConsentRecord, Fragment};
use crate::ident::{IdentKey, POSITION_TAG};
use crate::time::Millis;

/// How a live profile is laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Layout {
    /// As serde writes it (record formats 2 to 4).
    Serde,
    /// Record format 5: serde's layout, except that every time but
    /// `created` (and consent records' times) is written as its difference
    /// from `created` (most are the same instant or close to it: one or two
    /// bytes instead of six), and an edge whose evidence is the previous
    /// edge's (the edges one event adds share it) says so in its `a`
    /// (`a << 1 | 1`) instead of repeating it (~27 bytes).
    Compact,
}

/// Appends `rec` (no format byte) to `out`, laid out as `layout` says.
pub(super) fn profile_record_into(rec: &ProfileRecord, layout: Layout, out: &mut Vec<u8>) {
    match rec {
        ProfileRecord::Live(lp) => {
            out.push(0);
            live(lp, layout, out);
        }
        ProfileRecord::Alias(id) => {
            out.push(1);
            out.extend_from_slice(&id.0);
        }
        // The rare parts go through serde.
        ProfileRecord::Placeholder(_) => postcard_append(rec, out),
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
    match lp.index_of(k) {
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

/// A time as its difference from `base` (wrapping: the empty metrics'
/// `Millis::MIN` and `MAX` come back unchanged).
#[inline]
fn time(t: Millis, base: Millis, out: &mut Vec<u8>) {
    i64(t.wrapping_sub(base), out);
}

fn live(lp: &LiveProfile, layout: Layout, out: &mut Vec<u8>) {
    let base = match layout {
        Layout::Serde => 0,
        Layout::Compact => lp.created,
    };
    varint(lp.version, out);
    i64(lp.created, out);
    time(lp.updated, base, out);
    len(lp.idents.len(), out);
    for e in &lp.idents {
        key(&e.key, out);
        time(e.first_seen, base, out);
        time(e.last_seen, base, out);
    }
    len(lp.edges.len(), out);
    let mut previous = None;
    for e in &lp.edges {
        let repeated = layout == Layout::Compact && previous == Some(&e.evidence);
        match layout {
            Layout::Serde => varint(e.a.into(), out),
            Layout::Compact => varint(u64::from(e.a) << 1 | u64::from(repeated), out),
        }
        varint(e.b.into(), out);
        if !repeated {
            text(e.evidence.event_id.as_bytes(), out);
            time(e.evidence.ts, base, out);
            text(e.evidence.source.as_bytes(), out);
        }
        previous = Some(&e.evidence);
    }
    len(lp.fragments.len(), out);
    for f in &lp.fragments {
        fragment(f, lp, base, out);
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
        postcard_append(&lp.queue, out);
    }
    varint(lp.epoch.into(), out);
}

fn fragment(f: &Fragment, lp: &LiveProfile, base: Millis, out: &mut Vec<u8>) {
    key_within(&f.anchor, lp, out);
    let m = &f.metrics;
    varint(m.event_count, out);
    time(m.first_seen, base, out);
    time(m.last_seen, base, out);
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
        time(t.ts, base, out);
        text(t.source.as_bytes(), out);
    }
    // Consent records keep their absolute times in every format (they
    // are few, and read through serde).
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

    fn by_hand(rec: &ProfileRecord, layout: Layout) -> Vec<u8> {
        let mut out = b"before".to_vec();
        profile_record_into(rec, layout, &mut out);
        assert_eq!(&out[..6], b"before");
        out.split_off(6)
    }

    proptest! {
        #[test]
        fn writes_what_serde_writes_in_serde_layout(lp in profile()) {
            let rec = ProfileRecord::Live(Box::new(lp));
            prop_assert_eq!(by_hand(&rec, Layout::Serde), postcard::to_allocvec(&rec).unwrap());
        }
    }

    #[test]
    fn aliases_and_placeholders() {
        for rec in [ProfileRecord::Alias(ProfileId([7; 16])), ProfileRecord::Placeholder(vec![])] {
            for layout in [Layout::Serde, Layout::Compact] {
                assert_eq!(by_hand(&rec, layout), postcard::to_allocvec(&rec).unwrap());
            }
        }
    }
}
