//! Identifier types and keys.
//!
//! An identifier is `type:normalised-value`. [`IdentKey`] never prints its
//! value through `Debug` or `Display`: logs and errors see `email:<redacted>`.
//! The value is only reachable through [`IdentKey::value`], which output
//! renderers (profiles, lifecycle) use on purpose.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A type tag. Built-in types have fixed tags; custom types from config get
/// tags from [`IdentType::FIRST_CUSTOM`] on, in config order.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct IdentType(pub u8);

impl IdentType {
    pub const USER_ID: Self = Self(1);
    pub const LOYALTY_ID: Self = Self(2);
    pub const EMAIL: Self = Self(3);
    pub const HASHED_EMAIL: Self = Self(4);
    pub const PHONE: Self = Self(5);
    pub const ADVERTISING_ID: Self = Self(6);
    pub const DEVICE_ID: Self = Self(7);
    pub const ANONYMOUS_ID: Self = Self(8);
    pub const FIRST_CUSTOM: u8 = 32;

    /// The built-in types with their names, in tag order.
    pub const BUILT_IN: [(Self, &'static str); 8] = [
        (Self::USER_ID, "user_id"),
        (Self::LOYALTY_ID, "loyalty_id"),
        (Self::EMAIL, "email"),
        (Self::HASHED_EMAIL, "hashed_email"),
        (Self::PHONE, "phone"),
        (Self::ADVERTISING_ID, "advertising_id"),
        (Self::DEVICE_ID, "device_id"),
        (Self::ANONYMOUS_ID, "anonymous_id"),
    ];

    pub fn built_in_name(self) -> Option<&'static str> {
        Self::BUILT_IN.iter().find(|(t, _)| *t == self).map(|(_, n)| *n)
    }
}

impl fmt::Debug for IdentType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.built_in_name() {
            Some(n) => f.write_str(n),
            None => write!(f, "custom#{}", self.0),
        }
    }
}

impl fmt::Display for IdentType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// A normalised identifier. Ordering is by type tag, then value bytes.
///
/// The key carries its stable hash, computed once when it is built (on the
/// parsing thread): partitioning, hash maps and equality all start from it
/// instead of hashing the value again. It is not part of the encoding.
///
/// Values up to [`INLINE`] bytes (UUIDs, phones, most emails and device
/// IDs) are held inside the key: cloning one allocates nothing, and a hash
/// map comparing keys reads the bytes beside the hash instead of following
/// a pointer to another cache line. Longer values live on the heap.
#[derive(Clone)]
pub struct IdentKey {
    hash: u64,
    val: Val,
}

/// Longest value held inline (the key is 48 bytes either way).
pub const INLINE: usize = 37;

#[derive(Clone)]
enum Val {
    Inline { ty: IdentType, len: u8, bytes: [u8; INLINE] },
    Heap { ty: IdentType, value: Box<str> },
}

/// The encoded shape of [`IdentKey`] (the hash is recomputed on decode).
#[derive(Serialize)]
#[serde(rename = "IdentKey")]
struct KeyRepr<'a> {
    ty: IdentType,
    value: Utf8<'a>,
}

/// A key's value bytes, serialized as a string
/// ([`crate::packed::serialize_text`]: a canonical UUID goes to a binary
/// format packed).
struct Utf8<'a>(&'a [u8]);

impl Serialize for Utf8<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        crate::packed::serialize_text(self.0, s)
    }
}

/// [`KeyRepr`] on the way in: borrows the value where the input allows
/// (records decoded from a byte slice), so decoding an inline key
/// allocates nothing.
#[derive(Deserialize)]
#[serde(rename = "IdentKey")]
struct KeyReprIn<'a> {
    ty: IdentType,
    #[serde(borrow)]
    value: crate::packed::Text<'a>,
}

impl Serialize for IdentKey {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        KeyRepr { ty: self.ty(), value: Utf8(self.bytes()) }.serialize(s)
    }
}

/// The type tag of a key written as a position (record format 3): no
/// identifier type has it (custom types stop below it).
pub const POSITION_TAG: IdentType = IdentType(u8::MAX);

/// Writes, in the shape of a key, the position of a key in a list the
/// reader has at hand: the tag [`POSITION_TAG`] and the position in
/// decimal as the value (two or three bytes instead of the key's ~30).
pub fn serialize_position<S: serde::Serializer>(i: usize, s: S) -> Result<S::Ok, S::Error> {
    let mut digits = [0u8; 20];
    KeyRepr { ty: POSITION_TAG, value: Utf8(crate::decimal(i as u64, &mut digits)) }.serialize(s)
}

impl IdentKey {
    /// The position a key written by [`serialize_position`] stands for
    /// (`None` for a key that is not a position).
    pub fn as_position(&self) -> Option<usize> {
        (self.ty() == POSITION_TAG).then(|| self.value().parse().ok()).flatten()
    }
}

impl<'de> Deserialize<'de> for IdentKey {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let r = KeyReprIn::deserialize(d)?;
        Ok(Self::new(r.ty, r.value.as_str()))
    }
}

impl PartialEq for IdentKey {
    fn eq(&self, o: &Self) -> bool {
        self.hash == o.hash && self.ty() == o.ty() && self.bytes() == o.bytes()
    }
}

impl Eq for IdentKey {}

impl std::hash::Hash for IdentKey {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        h.write_u64(self.hash);
    }
}

impl PartialOrd for IdentKey {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}

impl Ord for IdentKey {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (self.ty(), self.bytes()).cmp(&(o.ty(), o.bytes()))
    }
}

/// The stable hash of an encoded key (tag byte, then value bytes).
fn key_hash(ty: IdentType, value: &str) -> u64 {
    encoded_hash(ty, value.as_bytes(), crate::stable_hash)
}

/// `hash` of a key's encoding (tag byte, then value bytes), built on the
/// stack when short.
fn encoded_hash(ty: IdentType, value: &[u8], hash: impl Fn(&[u8]) -> u64) -> u64 {
    let mut stack = [0u8; 96];
    if value.len() < stack.len() {
        stack[0] = ty.0;
        stack[1..=value.len()].copy_from_slice(value);
        hash(&stack[..=value.len()])
    } else {
        let mut buf = Vec::with_capacity(value.len() + 1);
        buf.push(ty.0);
        buf.extend_from_slice(value);
        hash(&buf)
    }
}

impl IdentKey {
    /// Builds a key from an already normalised value. Use
    /// [`crate::normalize::Normalizer`] for raw input.
    pub fn new(ty: IdentType, normalised: impl AsRef<str>) -> Self {
        let value = normalised.as_ref();
        let hash = key_hash(ty, value);
        let val = if value.len() <= INLINE {
            let mut bytes = [0u8; INLINE];
            bytes[..value.len()].copy_from_slice(value.as_bytes());
            Val::Inline { ty, len: value.len() as u8, bytes }
        } else {
            Val::Heap { ty, value: value.into() }
        };
        Self { hash, val }
    }

    pub fn ty(&self) -> IdentType {
        match &self.val {
            Val::Inline { ty, .. } | Val::Heap { ty, .. } => *ty,
        }
    }

    fn bytes(&self) -> &[u8] {
        match &self.val {
            Val::Inline { len, bytes, .. } => &bytes[..*len as usize],
            Val::Heap { value, .. } => value.as_bytes(),
        }
    }

    /// The normalised value. PII: never log it.
    pub fn value(&self) -> &str {
        match &self.val {
            // The bytes were copied whole from a `str`, so they are UTF-8;
            // the empty fallback is unreachable.
            Val::Inline { len, bytes, .. } => std::str::from_utf8(&bytes[..*len as usize]).unwrap_or_default(),
            Val::Heap { value, .. } => value,
        }
    }

    /// Storage encoding: the tag byte then the value bytes, a canonical
    /// UUID packed ([`crate::packed`]: 17 bytes instead of 36).
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        out.push(self.ty().0);
        match crate::packed::pack(self.bytes()) {
            Some(p) => out.extend_from_slice(&p),
            None => out.extend_from_slice(self.bytes()),
        }
    }

    /// Inverse of [`Self::encode_into`]; reads the unpacked form too.
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        let (&tag, rest) = bytes.split_first()?;
        Some(Self::new(IdentType(tag), crate::packed::text_of(rest)?.as_str()))
    }

    /// The bytes hashes are taken of: the tag byte then the value text
    /// (never packed, so hashes and profile IDs do not depend on the
    /// storage encoding).
    pub fn canonical_into(&self, out: &mut Vec<u8>) {
        out.push(self.ty().0);
        out.extend_from_slice(self.bytes());
    }

    /// Stable hash used for partitioning and profile IDs: xxh3 of
    /// [`Self::canonical_into`]'s bytes.
    pub fn stable_hash(&self) -> u64 {
        self.hash
    }

    pub fn partition(&self, partitions: u16) -> u16 {
        crate::partition_of(self.hash, partitions)
    }

    /// A second 64-bit hash of the key, independent of
    /// [`Self::stable_hash`]: xxh3 of the same encoding with another seed.
    /// With both, a table tells keys apart without storing them. Computed
    /// on each call. (The type once went into the seed instead, as a small
    /// XOR: on short values xxh3 folds the seed in linearly, so a user ID
    /// and a loyalty ID whose values differed in the matching bits hashed
    /// alike.) The seed is drawn at random once per process: the hash is
    /// never stored, and identifiers that clients choose cannot be crafted
    /// against a seed they do not know (ADR 0008).
    pub fn second_hash(&self) -> u64 {
        let seed = *SECOND_SEED.get_or_init(random_seed);
        encoded_hash(self.ty(), self.bytes(), |b| xxhash_rust::xxh3::xxh3_64_with_seed(b, seed))
    }
}

/// Seed of [`IdentKey::second_hash`], drawn on first use.
static SECOND_SEED: std::sync::OnceLock<u64> = std::sync::OnceLock::new();

/// 64 random bits from the standard library's per-process hash keys
/// (seeded from the operating system).
fn random_seed() -> u64 {
    use std::hash::BuildHasher;
    std::collections::hash_map::RandomState::new().hash_one(0x5EED_0F1D_6A7E_2B93u64)
}

impl fmt::Debug for IdentKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:<redacted>", self.ty())
    }
}

impl fmt::Display for IdentKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_redact_the_value() {
        let k = IdentKey::new(IdentType::EMAIL, "ann@example.com");
        assert_eq!(format!("{k:?}"), "email:<redacted>");
        assert_eq!(format!("{k}"), "email:<redacted>");
        assert!(!format!("{:?}", vec![k.clone()]).contains("ann"));
        assert_eq!(k.value(), "ann@example.com");
    }

    #[test]
    fn encoding_roundtrips() {
        let k = IdentKey::new(IdentType(40), "x-1");
        let mut b = Vec::new();
        k.encode_into(&mut b);
        assert_eq!(b, [&[40u8][..], b"x-1"].concat());
        assert_eq!(IdentKey::decode(&b), Some(k.clone()));
        assert_eq!(k.stable_hash(), crate::stable_hash(&b));
    }

    #[test]
    fn a_canonical_uuid_is_stored_packed_and_hashed_as_text() {
        let text = "6d92078a-8246-4ba4-ae5b-76104861e7dc";
        let k = IdentKey::new(IdentType::ANONYMOUS_ID, text);
        let mut b = Vec::new();
        k.encode_into(&mut b);
        assert_eq!(b.len(), 1 + 17);
        assert_eq!(b[1], crate::packed::MARK);
        assert_eq!(IdentKey::decode(&b), Some(k.clone()));
        // The form written before packing reads back too.
        let mut canonical = Vec::new();
        k.canonical_into(&mut canonical);
        assert_eq!(canonical, [&[8u8][..], text.as_bytes()].concat());
        assert_eq!(IdentKey::decode(&canonical), Some(k.clone()));
        assert_eq!(k.stable_hash(), crate::stable_hash(&canonical));
        // In records: packed in postcard, text in JSON, either read back.
        let bin = postcard::to_allocvec(&k).unwrap();
        assert_eq!(bin.len(), 1 + 1 + 17);
        assert_eq!(postcard::from_bytes::<IdentKey>(&bin).unwrap(), k);
        let old = postcard::to_allocvec(&(IdentType::ANONYMOUS_ID, text)).unwrap();
        assert_eq!(postcard::from_bytes::<IdentKey>(&old).unwrap(), k);
        let j = serde_json::to_string(&k).unwrap();
        assert!(j.contains(text), "{j}");
        // Uppercase hex is not canonical: kept as it is, not packed.
        let upper = IdentKey::new(IdentType(40), text.to_ascii_uppercase());
        let mut b = Vec::new();
        upper.encode_into(&mut b);
        assert_eq!(b.len(), 1 + 36);
        assert_eq!(IdentKey::decode(&b), Some(upper));
    }

    #[test]
    fn hash_is_the_stable_hash_of_the_canonical_bytes_for_any_length() {
        for n in [0, 1, 94, 95, 96, 97, 300] {
            let k = IdentKey::new(IdentType::USER_ID, "x".repeat(n));
            let mut b = Vec::new();
            k.canonical_into(&mut b);
            assert_eq!(k.stable_hash(), crate::stable_hash(&b), "length {n}");
        }
    }

    #[test]
    fn the_second_hash_tells_apart_what_the_stable_hash_does() {
        // Values alike across types and lengths, where a hash that takes
        // the type as a seed tweak confuses some.
        let mut seen = std::collections::HashMap::new();
        for ty in [IdentType::USER_ID, IdentType::LOYALTY_ID, IdentType::EMAIL, IdentType::PHONE, IdentType::DEVICE_ID] {
            for i in 0..20_000u32 {
                for v in [format!("{i}"), format!("u{i:06}"), format!("p{i}@x.co")] {
                    let k = IdentKey::new(ty, &v);
                    if let Some(other) = seen.insert(k.second_hash(), k.clone()) {
                        assert_eq!(other, k, "two keys share a second hash");
                    }
                }
            }
        }
        let k = IdentKey::new(IdentType::EMAIL, "a@b.co");
        assert_ne!(k.second_hash(), k.stable_hash());
        // One seed for the whole process.
        assert_eq!(k.second_hash(), IdentKey::new(IdentType::EMAIL, "a@b.co").second_hash());
    }

    #[test]
    fn serde_shape_is_type_then_value() {
        let k = IdentKey::new(IdentType::EMAIL, "ann@example.com");
        let j = serde_json::to_string(&k).unwrap();
        assert_eq!(j, r#"{"ty":3,"value":"ann@example.com"}"#);
        let back: IdentKey = serde_json::from_str(&j).unwrap();
        assert_eq!(back, k);
        assert_eq!(back.stable_hash(), k.stable_hash());
        let bytes = postcard::to_allocvec(&k).unwrap();
        let back: IdentKey = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(back, k);
    }

    #[test]
    fn inline_and_heap_values_behave_alike() {
        assert_eq!(std::mem::size_of::<IdentKey>(), 48);
        for n in [0, 1, INLINE - 1, INLINE, INLINE + 1, 200] {
            let v = "é".repeat(n / 2) + &"x".repeat(n % 2);
            let k = IdentKey::new(IdentType::EMAIL, &v);
            assert_eq!(k.value(), v, "length {n}");
            assert_eq!(k.clone(), k);
            let j = serde_json::to_string(&k).unwrap();
            assert_eq!(serde_json::from_str::<IdentKey>(&j).unwrap(), k);
            let b = postcard::to_allocvec(&k).unwrap();
            assert_eq!(postcard::from_bytes::<IdentKey>(&b).unwrap(), k);
            // The value goes out as bytes to postcard: the same encoding as
            // the string (records written before read alike).
            assert_eq!(b, postcard::to_allocvec(&(IdentType::EMAIL, v.as_str())).unwrap(), "length {n}");
            let mut enc = Vec::new();
            k.encode_into(&mut enc);
            assert_eq!(IdentKey::decode(&enc), Some(k.clone()));
            let longer = IdentKey::new(IdentType::EMAIL, format!("{v}z"));
            assert!(k < longer && k != longer);
        }
        // Escaped JSON cannot be borrowed: decoded through an owned string.
        let k: IdentKey = serde_json::from_str(r#"{"ty":3,"value":"a\"b"}"#).unwrap();
        assert_eq!(k.value(), "a\"b");
    }

    #[test]
    fn order_is_type_then_value() {
        let a = IdentKey::new(IdentType::USER_ID, "b");
        let b = IdentKey::new(IdentType::EMAIL, "a");
        let c = IdentKey::new(IdentType::EMAIL, "b");
        assert!(a < b && b < c);
    }
}
