//! The encoding of [`LiveProfile`] (record format 3).
//!
//! The fields in declaration order, as the derived encoding wrote them,
//! except that a fragment's anchor and a consent record's identifier, keys
//! the profile nearly always holds in `idents` already, are written as
//! their position there ([`crate::ident::serialize_position`]: ~3 bytes
//! instead of ~30, and no key hash to compute on decode). A key the
//! profile does not hold is written whole. Decoding reads both forms, so
//! format 2 records (keys only) decode alike. Human-readable formats get
//! the keys.

use super::{Edges, Fragments, IdentEntry, Idents, LiveProfile};
use crate::command::Command;
use crate::fragment::{ConsentRecord, Fragment};
use crate::ident::{serialize_position, IdentKey};
use crate::profile_id::ProfileId;
use crate::time::Millis;
use serde::ser::SerializeStruct;
use serde::{Deserialize, Serialize, Serializer};

/// A value to write beside the profile's identifiers, which the keys in it
/// are written as positions in (when `compact`).
struct Within<'a, T> {
    v: &'a T,
    idents: &'a [IdentEntry],
    compact: bool,
}

impl<'a, T> Within<'a, T> {
    fn with<U>(&self, v: &'a U) -> Within<'a, U> {
        Within { v, idents: self.idents, compact: self.compact }
    }
}

/// A key: its position in `idents` where it is one of them.
impl Serialize for Within<'_, IdentKey> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.compact.then(|| self.idents.iter().position(|e| e.key == *self.v)).flatten() {
            Some(i) => serialize_position(i, s),
            None => self.v.serialize(s),
        }
    }
}

impl Serialize for Within<'_, Fragment> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let f = self.v;
        let mut st = s.serialize_struct("Fragment", 4)?;
        st.serialize_field("anchor", &self.with(&f.anchor))?;
        st.serialize_field("metrics", &f.metrics)?;
        st.serialize_field("traits", &f.traits)?;
        st.serialize_field("consent", &Seq(f.consent.iter().map(|c| self.with(c))))?;
        st.end()
    }
}

impl Serialize for Within<'_, ConsentRecord> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let c = self.v;
        let mut st = s.serialize_struct("ConsentRecord", 8)?;
        st.serialize_field("purpose", &c.purpose)?;
        st.serialize_field("granted", &c.granted)?;
        st.serialize_field("at", &c.at)?;
        st.serialize_field("policy_version", &c.policy_version)?;
        st.serialize_field("jurisdiction", &c.jurisdiction)?;
        st.serialize_field("source", &c.source)?;
        st.serialize_field("event_id", &c.event_id)?;
        st.serialize_field("identifier", &self.with(&c.identifier))?;
        st.end()
    }
}

/// A sequence written from an iterator (of known length).
struct Seq<I>(I);

impl<I: Iterator<Item = T> + ExactSizeIterator + Clone, T: Serialize> Serialize for Seq<I> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.clone())
    }
}

impl Serialize for LiveProfile {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let within = Within { v: self, idents: &self.idents, compact: !s.is_human_readable() };
        let mut st = s.serialize_struct("LiveProfile", 11)?;
        st.serialize_field("version", &self.version)?;
        st.serialize_field("created", &self.created)?;
        st.serialize_field("updated", &self.updated)?;
        st.serialize_field("idents", &self.idents)?;
        st.serialize_field("edges", &self.edges)?;
        st.serialize_field("fragments", &Seq(self.fragments.iter().map(|f| within.with(f))))?;
        st.serialize_field("pending", &self.pending)?;
        st.serialize_field("merged_from", &self.merged_from)?;
        st.serialize_field("frozen_for", &self.frozen_for)?;
        st.serialize_field("queue", &self.queue)?;
        st.serialize_field("epoch", &self.epoch)?;
        st.end()
    }
}

/// [`LiveProfile`] as decoded, before positions become keys again.
#[derive(Deserialize)]
#[serde(rename = "LiveProfile")]
pub(super) struct LiveProfileIn {
    version: u64,
    created: Millis,
    updated: Millis,
    idents: Idents,
    edges: Edges,
    fragments: Fragments,
    pending: Vec<IdentKey>,
    merged_from: Vec<ProfileId>,
    frozen_for: Option<ProfileId>,
    queue: Vec<Command>,
    epoch: u32,
}

/// The key a decoded anchor stands for.
pub(super) fn resolve(k: &mut IdentKey, idents: &[IdentEntry]) -> Result<(), String> {
    if let Some(i) = k.as_position() {
        *k = idents.get(i).map(|e| e.key.clone()).ok_or_else(|| format!("anchor position {i} past {} identifiers", idents.len()))?;
    }
    Ok(())
}

impl TryFrom<LiveProfileIn> for LiveProfile {
    type Error = String;

    fn try_from(w: LiveProfileIn) -> Result<Self, String> {
        let mut fragments = w.fragments;
        for f in &mut fragments {
            resolve(&mut f.anchor, &w.idents)?;
            for c in &mut f.consent {
                resolve(&mut c.identifier, &w.idents)?;
            }
        }
        Ok(LiveProfile {
            version: w.version,
            created: w.created,
            updated: w.updated,
            idents: w.idents,
            edges: w.edges,
            fragments,
            pending: w.pending,
            merged_from: w.merged_from,
            frozen_for: w.frozen_for,
            queue: w.queue,
            epoch: w.epoch,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::event::{ConsentInput, Touchpoint};
    use crate::fragment::{Metrics, Traits};
    use crate::ident::IdentType;
    use crate::record::{decode, decode_profile, encode, Edge, ProfileRecord};

    /// The derived encoding of format 2 (keys written whole).
    #[derive(Serialize)]
    #[serde(rename = "LiveProfile")]
    struct Format2<'a> {
        version: u64,
        created: Millis,
        updated: Millis,
        idents: &'a [IdentEntry],
        edges: &'a [Edge],
        fragments: &'a [Fragment],
        pending: &'a [IdentKey],
        merged_from: &'a [ProfileId],
        frozen_for: Option<ProfileId>,
        queue: &'a [Command],
        epoch: u32,
    }

    fn format2(lp: &LiveProfile) -> Vec<u8> {
        let f = Format2 {
            version: lp.version,
            created: lp.created,
            updated: lp.updated,
            idents: &lp.idents,
            edges: &lp.edges,
            fragments: &lp.fragments,
            pending: &lp.pending,
            merged_from: &lp.merged_from,
            frozen_for: lp.frozen_for,
            queue: &lp.queue,
            epoch: lp.epoch,
        };
        // `ProfileRecord::Live` is variant 0.
        let mut out = vec![2, 0];
        out.extend(postcard::to_allocvec(&f).unwrap());
        out
    }

    /// A profile of three identifiers with fragments on two of them, a
    /// consent statement, and a fragment on a key it does not hold.
    fn profile() -> LiveProfile {
        let cfg = crate::config::CoreConfig::default();
        let email = IdentKey::new(IdentType::EMAIL, "ann.lee@example.com");
        let dev = IdentKey::new(IdentType::DEVICE_ID, "0b9417e1-9ba4-457d-a245-65e315435a8d");
        let user = IdentKey::new(IdentType::USER_ID, "u001232139");
        let mut lp = LiveProfile::new(email.clone(), 1_000);
        lp.idents.push(IdentEntry { key: dev.clone(), first_seen: 2_000, last_seen: 3_000 });
        lp.idents.push(IdentEntry { key: user.clone(), first_seen: 2_500, last_seen: 2_500 });
        let ev = |ts, consent: Vec<ConsentInput>| Touchpoint {
            event_id: format!("e{ts}").into(),
            ts,
            source: "web".into(),
            idents: vec![],
            traits: vec![("first_name".into(), "\"Ann\"".into())],
            revenue: Some(9.5),
            is_order: true,
            consent,
        };
        lp.fragment_mut(&dev).add_event(&ev(2_000, vec![]), &cfg);
        let grant = ConsentInput { purpose: "email".into(), granted: true, policy_version: None, jurisdiction: None };
        lp.fragment_mut(&user).add_event(&ev(2_500, vec![grant]), &cfg);
        let gone = IdentKey::new(IdentType::PHONE, "+14155550100");
        lp.fragment_mut(&gone).add_event(&ev(2_600, vec![]), &cfg);
        lp
    }

    #[test]
    fn anchors_are_written_as_positions_and_read_back_as_keys() {
        let lp = profile();
        assert!(lp.fragments.iter().any(|f| !f.consent.is_empty()), "the test needs a consent record");
        let rec = ProfileRecord::Live(Box::new(lp.clone()));
        let bytes = encode(&rec);
        assert_eq!(bytes[0], crate::record::RECORD_FORMAT);
        assert_eq!(decode::<ProfileRecord>(&bytes).unwrap(), rec);
        let old = format2(&lp);
        // Three keys as one-digit positions: the device's anchor (a UUID:
        // 17 bytes of value, packed), the user's anchor and consent
        // identifier (10 each); the type tag and length byte stay.
        assert_eq!(old.len() - bytes.len(), (17 - 1) + 2 * (10 - 1), "format 3 against format 2");
        // The device ID appears once (in `idents`, packed), not again as
        // an anchor, and nowhere as text.
        let dev = b"0b9417e1-9ba4-457d-a245-65e315435a8d";
        let packed = crate::packed::pack(dev).unwrap();
        assert_eq!(bytes.windows(packed.len()).filter(|w| w == &packed).count(), 1);
        assert_eq!(bytes.windows(dev.len()).filter(|w| w == dev).count(), 0);
        // A key the profile does not hold is written whole.
        assert_eq!(bytes.windows(12).filter(|w| w == b"+14155550100").count(), 1);
    }

    #[test]
    fn format_2_records_decode_alike() {
        let lp = profile();
        assert_eq!(decode::<ProfileRecord>(&format2(&lp)).unwrap(), ProfileRecord::Live(Box::new(lp.clone())));
        assert_eq!(decode_profile(&format2(&lp)).unwrap(), ProfileRecord::Live(Box::new(lp)));
    }

    #[test]
    fn a_position_past_the_identifiers_is_corrupt() {
        let mut lp = profile();
        let mut bytes = encode(&ProfileRecord::Live(Box::new(lp.clone())));
        assert!(decode::<ProfileRecord>(&bytes).is_ok());
        // The same record with its last identifier gone: its fragments'
        // positions may now point past the end.
        lp.idents.pop();
        bytes = encode(&ProfileRecord::Live(Box::new(lp.clone())));
        assert!(decode::<ProfileRecord>(&bytes).is_ok(), "an anchor no longer held is written whole");
        let mut w = postcard::to_allocvec(&Format2 {
            version: 0,
            created: 0,
            updated: 0,
            idents: &lp.idents,
            edges: &[],
            fragments: &[Fragment {
                anchor: IdentKey::new(crate::ident::POSITION_TAG, "7"),
                metrics: Metrics::empty(),
                traits: Traits::new(),
                consent: vec![],
            }],
            pending: &[],
            merged_from: &[],
            frozen_for: None,
            queue: &[],
            epoch: 0,
        })
        .unwrap();
        w.splice(0..0, [3u8, 0]);
        assert_eq!(decode::<ProfileRecord>(&w), Err(crate::record::DecodeError::Corrupt));
        assert_eq!(decode_profile(&w), Err(crate::record::DecodeError::Corrupt));
    }

    #[test]
    fn json_gets_the_keys() {
        let lp = profile();
        let v = serde_json::to_value(&lp).unwrap();
        assert_eq!(v["fragments"][0]["anchor"]["value"], "0b9417e1-9ba4-457d-a245-65e315435a8d");
        let back: LiveProfile = serde_json::from_value(v).unwrap();
        assert_eq!(back, lp);
    }
}
