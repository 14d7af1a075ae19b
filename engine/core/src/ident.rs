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
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct IdentKey {
    ty: IdentType,
    value: Box<str>,
}

impl IdentKey {
    /// Builds a key from an already normalised value. Use
    /// [`crate::normalize::Normalizer`] for raw input.
    pub fn new(ty: IdentType, normalised: impl Into<Box<str>>) -> Self {
        Self { ty, value: normalised.into() }
    }

    pub fn ty(&self) -> IdentType {
        self.ty
    }

    /// The normalised value. PII: never log it.
    pub fn value(&self) -> &str {
        &self.value
    }

    /// Storage encoding: the tag byte then the value bytes.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        out.push(self.ty.0);
        out.extend_from_slice(self.value.as_bytes());
    }

    /// Inverse of [`Self::encode_into`].
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        let (&tag, rest) = bytes.split_first()?;
        let value = std::str::from_utf8(rest).ok()?;
        Some(Self::new(IdentType(tag), value))
    }

    /// Stable hash used for partitioning and profile IDs.
    pub fn stable_hash(&self) -> u64 {
        let mut buf = Vec::with_capacity(self.value.len() + 1);
        self.encode_into(&mut buf);
        crate::stable_hash(&buf)
    }

    pub fn partition(&self, partitions: u16) -> u16 {
        crate::partition_of(self.stable_hash(), partitions)
    }
}

impl fmt::Debug for IdentKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:<redacted>", self.ty)
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
        assert_eq!(IdentKey::decode(&b), Some(k));
    }
}
