//! Profile IDs: 48 bits of event time (ms) then 80 bits of a keyed hash.
//!
//! Byte order is age order: the smaller ID is the older profile and survives a
//! merge. Printed as 26 characters of Crockford base32 (the ULID layout).

use crate::ident::IdentKey;
use crate::time::Millis;
use serde::{Deserialize, Serialize};
use std::fmt;

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ProfileId(pub [u8; 16]);

const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
const MAX_TS: i64 = (1 << 48) - 1;

impl ProfileId {
    /// The ID of a profile created by an event at `ts` anchored on `anchor`.
    /// Its bytes 6..14 are the anchor's partitioning hash, so the profile
    /// lives in its anchor's partition: the claim of the anchor creates it
    /// in place, and events attributed to the anchor apply without a hop
    /// (ADR 0002). The last two bytes keep a hash of the whole key.
    pub fn for_new(ts: Millis, anchor: &IdentKey) -> Self {
        let mut id = Self::derive(ts, b"new", anchor, &[]);
        id.0[6..14].copy_from_slice(&anchor.stable_hash().to_be_bytes());
        id
    }

    /// The ID of a split piece whose oldest identifier is `oldest`, cut from
    /// `parent` at `parent_version`.
    pub fn for_piece(ts: Millis, oldest: &IdentKey, parent: ProfileId, parent_version: u64) -> Self {
        let mut salt = parent.0.to_vec();
        salt.extend_from_slice(&parent_version.to_be_bytes());
        Self::derive(ts, b"piece", oldest, &salt)
    }

    fn derive(ts: Millis, domain: &[u8], key: &IdentKey, salt: &[u8]) -> Self {
        let mut buf = Vec::with_capacity(64);
        buf.extend_from_slice(domain);
        buf.push(0);
        key.canonical_into(&mut buf);
        buf.push(0);
        buf.extend_from_slice(salt);
        let h = xxhash_rust::xxh3::xxh3_128(&buf).to_be_bytes();
        let ts = ts.clamp(0, MAX_TS) as u64;
        let mut id = [0u8; 16];
        id[..6].copy_from_slice(&ts.to_be_bytes()[2..]);
        id[6..].copy_from_slice(&h[..10]);
        Self(id)
    }

    /// Event time the ID was minted for.
    pub fn timestamp(&self) -> Millis {
        let mut b = [0u8; 8];
        b[2..].copy_from_slice(&self.0[..6]);
        u64::from_be_bytes(b) as i64
    }

    /// The partition a profile lives in: from bytes 6..14 (an anchor's
    /// partitioning hash for a new profile, a hash for a split piece).
    pub fn partition(&self, partitions: u16) -> u16 {
        let mut h = [0u8; 8];
        h.copy_from_slice(&self.0[6..14]);
        crate::partition_of(u64::from_be_bytes(h), partitions)
    }

    pub fn parse(s: &str) -> Option<Self> {
        let b = s.as_bytes();
        if b.len() != 26 {
            return None;
        }
        let mut v: u128 = 0;
        for (i, c) in b.iter().enumerate() {
            let d = ALPHABET.iter().position(|a| *a == c.to_ascii_uppercase())? as u128;
            if i == 0 && d > 7 {
                return None;
            }
            v = (v << 5) | d;
        }
        Some(Self(v.to_be_bytes()))
    }

    /// The text form (26 characters of the alphabet), without a formatter.
    pub fn text(&self) -> [u8; 26] {
        let v = u128::from_be_bytes(self.0);
        let mut out = [0u8; 26];
        for (i, slot) in out.iter_mut().enumerate() {
            let shift = 5 * (25 - i);
            *slot = ALPHABET[((v >> shift) & 31) as usize];
        }
        out
    }
}

impl fmt::Display for ProfileId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(std::str::from_utf8(&self.text()).map_err(|_| fmt::Error)?)
    }
}

impl fmt::Debug for ProfileId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ident::IdentType;

    #[test]
    fn ids_order_by_time_and_roundtrip() {
        let a = IdentKey::new(IdentType::EMAIL, "a@b.co");
        let old = ProfileId::for_new(1_000, &a);
        let young = ProfileId::for_new(2_000, &a);
        assert!(old < young);
        assert_eq!(old.timestamp(), 1_000);
        let s = old.to_string();
        assert_eq!(s.len(), 26);
        assert_eq!(ProfileId::parse(&s), Some(old));
        assert_eq!(ProfileId::parse(&s.to_lowercase()), Some(old));
        assert_eq!(ProfileId::parse("nope"), None);
        assert_ne!(ProfileId::for_piece(1_000, &a, old, 1), old);
        assert_eq!(ProfileId::for_new(1_000, &a), old, "deterministic");
    }

    #[test]
    fn a_new_profile_lives_in_its_anchors_partition() {
        for i in 0..200 {
            let k = IdentKey::new(IdentType::ANONYMOUS_ID, format!("cookie-{i}"));
            let id = ProfileId::for_new(1_000 + i, &k);
            for p in [1u16, 4, 8, 16, 1000] {
                assert_eq!(id.partition(p), k.partition(p), "P={p}");
            }
        }
        // Distinct anchors at the same instant still get distinct IDs.
        let (a, b) = (IdentKey::new(IdentType::EMAIL, "a@b.co"), IdentKey::new(IdentType::EMAIL, "c@d.co"));
        assert_ne!(ProfileId::for_new(5, &a), ProfileId::for_new(5, &b));
    }
}
