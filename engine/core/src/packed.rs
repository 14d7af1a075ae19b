//! Text in binary encodings, with canonical UUIDs packed.
//!
//! Half the identifiers a web and app estate sees are UUIDs (cookies,
//! advertising and device IDs), and many event IDs are too. Their canonical
//! text (36 bytes: lowercase hex, dashes after the 8th, 12th, 16th and 20th
//! digit) goes into records, state keys, commands and the changelog as 17
//! bytes: [`MARK`] then the 16 bytes it spells. `0xFF` never occurs in
//! UTF-8, so a packed value cannot be mistaken for text, and text written
//! before packing existed reads back unchanged. Only canonical text packs:
//! unpacking gives back exactly the bytes that were packed. Text formats
//! (JSON, and Avro through JSON values) always get the text.

use serde::{Deserialize, Serializer};
use std::fmt;

/// First byte of a packed UUID (not a byte of any UTF-8 text).
pub const MARK: u8 = 0xFF;

/// Length of canonical UUID text.
const TEXT: usize = 36;

/// Positions of the dashes in canonical UUID text.
const DASHES: [usize; 4] = [8, 13, 18, 23];

/// Where each byte's two digits start in canonical UUID text.
const PAIRS: [usize; 16] = [0, 2, 4, 6, 9, 11, 14, 16, 19, 21, 24, 26, 28, 30, 32, 34];

/// Digit values of lowercase hex characters, `0xFF` for every other byte.
static DIGIT: [u8; 256] = {
    let mut t = [0xFF; 256];
    let mut i = 0;
    while i < 10 {
        t[b'0' as usize + i] = i as u8;
        i += 1;
    }
    let mut i = 0;
    while i < 6 {
        t[b'a' as usize + i] = 10 + i as u8;
        i += 1;
    }
    t
};

const HEX: &[u8; 16] = b"0123456789abcdef";

/// The packed form of canonical UUID text, `None` for anything else
/// (uppercase hex included: it would not unpack to the same bytes).
#[inline]
pub fn pack(text: &[u8]) -> Option<[u8; 17]> {
    if text.len() != TEXT || DASHES.iter().any(|&i| text[i] != b'-') {
        return None;
    }
    let mut out = [0u8; 17];
    out[0] = MARK;
    for (o, &at) in out[1..].iter_mut().zip(PAIRS.iter()) {
        let (hi, lo) = (DIGIT[text[at] as usize], DIGIT[text[at + 1] as usize]);
        if (hi | lo) > 15 {
            return None;
        }
        *o = hi << 4 | lo;
    }
    Some(out)
}

/// The canonical text of a packed UUID, `None` for bytes that are not one.
#[inline]
pub fn unpack(bytes: &[u8]) -> Option<[u8; TEXT]> {
    let (&MARK, raw) = bytes.split_first()? else { return None };
    let raw: &[u8; 16] = raw.try_into().ok()?;
    let mut out = [b'-'; TEXT];
    for (&b, &at) in raw.iter().zip(PAIRS.iter()) {
        out[at] = HEX[(b >> 4) as usize];
        out[at + 1] = HEX[(b & 15) as usize];
    }
    Some(out)
}

/// Serializes bytes known to be UTF-8 (copied whole from a `str`) as a
/// string. A binary format gets them as a byte string, packed when they are
/// a canonical UUID, and without checking them again otherwise: postcard
/// writes a byte string and a string alike (length, then bytes), and the
/// check was ~1.5% of a replay's CPU. Text formats get a `str`.
pub fn serialize_text<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
    if s.is_human_readable() {
        s.serialize_str(std::str::from_utf8(bytes).unwrap_or_default())
    } else if let Some(p) = pack(bytes) {
        s.serialize_bytes(&p)
    } else {
        s.serialize_bytes(bytes)
    }
}

/// Text as [`serialize_text`] wrote it: borrowed from the input where it
/// allows (records decoded from a byte slice), so decoding allocates
/// nothing; a packed UUID is spelled out on the stack.
pub enum Text<'a> {
    Borrowed(&'a str),
    Owned(String),
    Uuid([u8; TEXT]),
}

/// Redacted: the text may be an identifier's value.
impl fmt::Debug for Text<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Text(<redacted>)")
    }
}

impl Text<'_> {
    pub fn as_str(&self) -> &str {
        match self {
            Text::Borrowed(s) => s,
            Text::Owned(s) => s,
            // Hex digits and dashes only: the fallback is unreachable.
            Text::Uuid(b) => std::str::from_utf8(b).unwrap_or_default(),
        }
    }
}

/// What bytes [`serialize_text`] wrote (or text written before packing)
/// stand for: a packed UUID's text, or the bytes themselves when they are
/// UTF-8; `None` for anything else.
pub fn text_of(bytes: &[u8]) -> Option<Text<'_>> {
    match unpack(bytes) {
        Some(u) => Some(Text::Uuid(u)),
        None => std::str::from_utf8(bytes).ok().map(Text::Borrowed),
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        if d.is_human_readable() {
            d.deserialize_str(TextVisitor)
        } else {
            d.deserialize_bytes(TextVisitor)
        }
    }
}

struct TextVisitor;

impl TextVisitor {
    fn invalid<E: serde::de::Error>(&self, b: &[u8]) -> E {
        E::invalid_value(serde::de::Unexpected::Bytes(b), self)
    }
}

impl<'de> serde::de::Visitor<'de> for TextVisitor {
    type Value = Text<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }

    fn visit_borrowed_str<E: serde::de::Error>(self, s: &'de str) -> Result<Text<'de>, E> {
        Ok(Text::Borrowed(s))
    }

    fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Text<'de>, E> {
        Ok(Text::Owned(s.to_owned()))
    }

    fn visit_string<E: serde::de::Error>(self, s: String) -> Result<Text<'de>, E> {
        Ok(Text::Owned(s))
    }

    fn visit_borrowed_bytes<E: serde::de::Error>(self, b: &'de [u8]) -> Result<Text<'de>, E> {
        text_of(b).ok_or_else(|| self.invalid(b))
    }

    fn visit_bytes<E: serde::de::Error>(self, b: &[u8]) -> Result<Text<'de>, E> {
        match text_of(b) {
            Some(Text::Uuid(u)) => Ok(Text::Uuid(u)),
            Some(t) => Ok(Text::Owned(t.as_str().to_owned())),
            None => Err(self.invalid(b)),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

    fn oracle_canonical(v: &str) -> bool {
        v.len() == 36
            && v.char_indices().all(|(i, c)| if DASHES.contains(&i) { c == '-' } else { c.is_ascii_digit() || ('a'..='f').contains(&c) })
    }

    #[test]
    fn packs_canonical_uuids_only() {
        let u = "6d92078a-8246-4ba4-ae5b-76104861e7dc";
        let p = pack(u.as_bytes()).unwrap();
        assert_eq!(p[0], MARK);
        assert_eq!(p[1..4], [0x6d, 0x92, 0x07]);
        assert_eq!(p[16], 0xdc);
        assert_eq!(&unpack(&p).unwrap(), u.as_bytes());
        for not in [
            "6D92078A-8246-4BA4-AE5B-76104861E7DC",
            "6d92078a-8246-4ba4-ae5b-76104861e7d",
            "6d92078a-8246-4ba4-ae5b-76104861e7dcc",
            "6d92078a08246-4ba4-ae5b-76104861e7dc",
            "6d92078a-8246-4ba4-ae5b-76104861e7dg",
            "6d92078a-8246-4ba4-ae5b-76104861e7d-",
            "",
        ] {
            assert_eq!(pack(not.as_bytes()), None, "{not}");
        }
        assert_eq!(unpack(b"plain text"), None);
        assert_eq!(unpack(&p[..16]), None);
        assert_eq!(unpack(&[MARK; 18]), None);
    }

    proptest! {
        #[test]
        fn pack_agrees_with_an_oracle_and_unpack_inverts_it(
            v in prop_oneof!["[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", "[0-9a-fA-F-]{36}", ".{0,40}"],
            raw in proptest::array::uniform16(any::<u8>()),
        ) {
            prop_assert_eq!(pack(v.as_bytes()).is_some(), oracle_canonical(&v));
            if let Some(p) = pack(v.as_bytes()) {
                prop_assert_eq!(&unpack(&p).unwrap()[..], v.as_bytes());
            }
            let mut p = [MARK; 17];
            p[1..].copy_from_slice(&raw);
            let text = unpack(&p).unwrap();
            prop_assert_eq!(pack(&text), Some(p));
        }

        #[test]
        fn text_roundtrips_through_postcard_and_json(v in prop_oneof!["[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", ".{0,40}"]) {
            struct W<'a>(&'a str);
            impl serde::Serialize for W<'_> {
                fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                    serialize_text(self.0.as_bytes(), s)
                }
            }
            let bin = postcard::to_allocvec(&W(&v)).unwrap();
            prop_assert_eq!(bin.len() < v.len() + 1, pack(v.as_bytes()).is_some());
            prop_assert_eq!(postcard::from_bytes::<Text>(&bin).unwrap().as_str().to_string(), v.clone());
            let json = serde_json::to_string(&W(&v)).unwrap();
            prop_assert_eq!(&json, &serde_json::to_string(&v).unwrap());
            prop_assert_eq!(serde_json::from_str::<Text>(&json).unwrap().as_str().to_string(), v.clone());
            // Text written before packing existed reads back alike.
            let old = postcard::to_allocvec(&v).unwrap();
            prop_assert_eq!(postcard::from_bytes::<Text>(&old).unwrap().as_str().to_string(), v.clone());
        }
    }
}
