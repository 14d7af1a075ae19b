//! [`ShortStr`]: an immutable string held inline up to 22 bytes.
//!
//! Event IDs, source names, trait names and consent purposes are copied
//! from every event into records and commands, and decoded with every
//! record. Most are short: held inline, a copy allocates nothing and
//! freeing a record frees fewer blocks. Encoded like a `String` in JSON;
//! to a binary format it goes as a byte string, which postcard writes like
//! a string, except that a canonical UUID is packed ([`crate::packed`]).

use serde::{Deserialize, Serialize};
use std::borrow::Borrow;
use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::ops::Deref;

/// Longest value held inline (the string is 24 bytes either way).
pub const SHORT_INLINE: usize = 22;

#[derive(Clone)]
pub struct ShortStr(Repr);

#[derive(Clone)]
enum Repr {
    Inline { len: u8, bytes: [u8; SHORT_INLINE] },
    Heap(Box<str>),
}

impl ShortStr {
    pub fn new(s: &str) -> Self {
        if s.len() <= SHORT_INLINE {
            let mut bytes = [0u8; SHORT_INLINE];
            bytes[..s.len()].copy_from_slice(s.as_bytes());
            Self(Repr::Inline { len: s.len() as u8, bytes })
        } else {
            Self(Repr::Heap(s.into()))
        }
    }

    pub fn as_str(&self) -> &str {
        match &self.0 {
            // Copied whole from a `str`: always UTF-8, the fallback is
            // unreachable.
            Repr::Inline { len, bytes } => std::str::from_utf8(&bytes[..*len as usize]).unwrap_or_default(),
            Repr::Heap(s) => s,
        }
    }

    /// The bytes, without the UTF-8 check `as_str` makes: for comparisons.
    pub fn as_bytes(&self) -> &[u8] {
        match &self.0 {
            Repr::Inline { len, bytes } => &bytes[..*len as usize],
            Repr::Heap(s) => s.as_bytes(),
        }
    }
}

impl Default for ShortStr {
    fn default() -> Self {
        Self::new("")
    }
}

impl Deref for ShortStr {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for ShortStr {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl Borrow<str> for ShortStr {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

impl From<&str> for ShortStr {
    fn from(s: &str) -> Self {
        Self::new(s)
    }
}

impl From<String> for ShortStr {
    /// Keeps the string's own buffer when it is too long to go inline.
    fn from(s: String) -> Self {
        if s.len() <= SHORT_INLINE {
            Self::new(&s)
        } else {
            Self(Repr::Heap(s.into_boxed_str()))
        }
    }
}

impl From<&String> for ShortStr {
    fn from(s: &String) -> Self {
        Self::new(s)
    }
}

impl From<ShortStr> for String {
    fn from(s: ShortStr) -> Self {
        s.as_str().to_string()
    }
}

impl PartialEq for ShortStr {
    fn eq(&self, o: &Self) -> bool {
        self.as_bytes() == o.as_bytes()
    }
}

impl Eq for ShortStr {}

impl PartialEq<str> for ShortStr {
    fn eq(&self, o: &str) -> bool {
        self.as_bytes() == o.as_bytes()
    }
}

impl PartialEq<&str> for ShortStr {
    fn eq(&self, o: &&str) -> bool {
        self.as_bytes() == o.as_bytes()
    }
}

impl PartialOrd for ShortStr {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}

/// Byte order, which is `str` order.
impl Ord for ShortStr {
    fn cmp(&self, o: &Self) -> Ordering {
        self.as_bytes().cmp(o.as_bytes())
    }
}

/// Hashes like `str`, so maps keyed by it can be queried by `&str`.
impl Hash for ShortStr {
    fn hash<H: Hasher>(&self, h: &mut H) {
        self.as_str().hash(h);
    }
}

impl fmt::Debug for ShortStr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for ShortStr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for ShortStr {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        crate::packed::serialize_text(self.as_bytes(), s)
    }
}

impl<'de> Deserialize<'de> for ShortStr {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(match crate::packed::Text::deserialize(d)? {
            crate::packed::Text::Owned(s) => Self::from(s),
            t => Self::new(t.as_str()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn behaves_like_the_string_it_holds(a in ".{0,40}", b in ".{0,40}") {
            let (x, y) = (ShortStr::new(&a), ShortStr::new(&b));
            prop_assert_eq!(x.as_str(), a.as_str());
            let owned = ShortStr::from(a.clone());
            prop_assert_eq!(owned.as_str(), a.as_str());
            prop_assert_eq!(owned, x.clone());
            prop_assert_eq!(x == y, a == b);
            prop_assert_eq!(x.cmp(&y), a.cmp(&b));
            prop_assert_eq!(serde_json::to_string(&x).unwrap(), serde_json::to_string(&a).unwrap());
            prop_assert_eq!(postcard::to_allocvec(&x).unwrap(), postcard::to_allocvec(&a).unwrap());
            let back: ShortStr = postcard::from_bytes(&postcard::to_allocvec(&a).unwrap()).unwrap();
            prop_assert_eq!(back, x.clone());
            let back: ShortStr = serde_json::from_str(&serde_json::to_string(&a).unwrap()).unwrap();
            prop_assert_eq!(back, x);
        }
    }

    #[test]
    fn reads_back_from_a_byte_string_and_refuses_one_that_is_not_utf8() {
        use serde::de::value::{BytesDeserializer, Error};
        let back = ShortStr::deserialize(BytesDeserializer::<Error>::new("café".as_bytes()));
        assert_eq!(back.ok(), Some(ShortStr::new("café")));
        let bad = ShortStr::deserialize(BytesDeserializer::<Error>::new(&[0x66, 0xFF]));
        assert!(bad.is_err_and(|e| e.to_string().contains("a string")));
    }

    #[test]
    fn a_canonical_uuid_goes_to_a_binary_format_packed() {
        let u = ShortStr::new("6d92078a-8246-4ba4-ae5b-76104861e7dc");
        let b = postcard::to_allocvec(&u).unwrap();
        assert_eq!(b.len(), 18);
        assert_eq!(postcard::from_bytes::<ShortStr>(&b).unwrap(), u);
        assert_eq!(serde_json::to_string(&u).unwrap(), "\"6d92078a-8246-4ba4-ae5b-76104861e7dc\"");
        let upper = ShortStr::new("6D92078A-8246-4BA4-AE5B-76104861E7DC");
        assert_eq!(postcard::to_allocvec(&upper).unwrap(), postcard::to_allocvec(&upper.as_str()).unwrap());
    }

    #[test]
    fn is_as_small_as_a_string() {
        assert_eq!(std::mem::size_of::<ShortStr>(), 24);
    }
}
