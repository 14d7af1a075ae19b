//! Identifier normalisation, validation and blocked values (DESIGN §3).
//!
//! [`Normalizer::normalize`] turns a raw `(type, value)` into an
//! [`IdentKey`] or a [`DropReason`]. Dropped identifiers never link anything;
//! the caller counts them by reason. Phone parsing is expensive (microseconds),
//! so results are kept in a bounded cache keyed by the raw value.

use crate::config::{CaseRule, CoreConfig};
use crate::ident::{IdentKey, IdentType};
use crate::phone::PhoneValidity;
use rustc_hash::FxHashMap;
use std::borrow::Cow;
use std::sync::Arc;

/// Why an identifier was dropped from an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DropReason {
    UnknownType,
    Empty,
    TooLong,
    Blocked,
    InvalidEmail,
    InvalidHashedEmail,
    InvalidPhone,
    InvalidAdvertisingId,
    PatternMismatch,
    TooManyInEvent,
    Duplicate,
    Shared,
}

impl DropReason {
    pub const ALL: [DropReason; 12] = [
        DropReason::UnknownType,
        DropReason::Empty,
        DropReason::TooLong,
        DropReason::Blocked,
        DropReason::InvalidEmail,
        DropReason::InvalidHashedEmail,
        DropReason::InvalidPhone,
        DropReason::InvalidAdvertisingId,
        DropReason::PatternMismatch,
        DropReason::TooManyInEvent,
        DropReason::Duplicate,
        DropReason::Shared,
    ];

    /// Stable name for summaries and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::UnknownType => "unknown_type",
            DropReason::Empty => "empty",
            DropReason::TooLong => "too_long",
            DropReason::Blocked => "blocked",
            DropReason::InvalidEmail => "invalid_email",
            DropReason::InvalidHashedEmail => "invalid_hashed_email",
            DropReason::InvalidPhone => "invalid_phone",
            DropReason::InvalidAdvertisingId => "invalid_advertising_id",
            DropReason::PatternMismatch => "pattern_mismatch",
            DropReason::TooManyInEvent => "too_many_in_event",
            DropReason::Duplicate => "duplicate_in_event",
            DropReason::Shared => "shared",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

/// Longest accepted identifier value, in bytes.
pub const MAX_VALUE_LEN: usize = 256;
const PHONE_CACHE_CAP: usize = 1 << 16;

const BLOCKED_WORDS: [&str; 11] =
    ["", "null", "undefined", "none", "nil", "unknown", "anonymous", "0", "-1", "test@test.com", "test@example.com"];

/// Normalises identifiers under one [`CoreConfig`].
#[derive(Debug)]
pub struct Normalizer {
    cfg: Arc<CoreConfig>,
    phone_cache: FxHashMap<Box<str>, Option<Box<str>>>,
    phones: PhoneValidity,
    pub phone_cache_hits: u64,
    pub phone_cache_misses: u64,
}

impl Normalizer {
    pub fn new(cfg: Arc<CoreConfig>) -> Self {
        Self { cfg, phone_cache: FxHashMap::default(), phones: PhoneValidity::default(), phone_cache_hits: 0, phone_cache_misses: 0 }
    }

    pub fn config(&self) -> &Arc<CoreConfig> {
        &self.cfg
    }

    /// Normalises a raw identifier given by type name.
    pub fn normalize_named(&mut self, type_name: &str, raw: &str) -> Result<IdentKey, DropReason> {
        let ty = self.cfg.type_by_name(type_name).ok_or(DropReason::UnknownType)?;
        self.normalize(ty, raw)
    }

    pub fn normalize(&mut self, ty: IdentType, raw: &str) -> Result<IdentKey, DropReason> {
        let cfg = Arc::clone(&self.cfg);
        let info = cfg.type_info(ty).ok_or(DropReason::UnknownType)?;
        let v = raw.trim();
        if v.is_empty() {
            return Err(DropReason::Empty);
        }
        if v.len() > MAX_VALUE_LEN {
            return Err(DropReason::TooLong);
        }
        if is_blocked_word(v) {
            return Err(DropReason::Blocked);
        }
        // Borrowed where normalising changes nothing (most values): no
        // allocation per identifier.
        let value: Cow<'_, str> = match ty {
            IdentType::EMAIL => {
                let e = lowercase(v);
                if !valid_email(&e) {
                    return Err(DropReason::InvalidEmail);
                }
                e
            }
            IdentType::HASHED_EMAIL => {
                if v.len() != 64 || !v.bytes().all(|c| c.is_ascii_hexdigit()) {
                    return Err(DropReason::InvalidHashedEmail);
                }
                ascii_lowercase(v)
            }
            IdentType::PHONE => String::from(self.phone(v)?).into(),
            IdentType::ADVERTISING_ID => {
                if !is_uuid(v) {
                    return Err(DropReason::InvalidAdvertisingId);
                }
                let l = ascii_lowercase(v);
                if l.bytes().all(|c| c == b'0' || c == b'-') {
                    return Err(DropReason::Blocked);
                }
                l
            }
            IdentType::ANONYMOUS_ID | IdentType::DEVICE_ID => {
                if is_uuid(v) {
                    ascii_lowercase(v)
                } else {
                    v.into()
                }
            }
            IdentType::USER_ID | IdentType::LOYALTY_ID => v.into(),
            _ => {
                let cased: Cow<'_, str> = match info.case {
                    CaseRule::Preserve => v.into(),
                    CaseRule::Lower => lowercase(v),
                    CaseRule::Upper => v.to_uppercase().into(),
                };
                match &info.pattern {
                    Some(p) if p.is_match(&cased) => cased,
                    _ => return Err(DropReason::PatternMismatch),
                }
            }
        };
        // Blocked after normalisation too (`NULL`, `Test@Test.com`, `0000`).
        if is_blocked_word(&value) || value.bytes().all(|c| c == b'0' || c == b'-') {
            return Err(DropReason::Blocked);
        }
        if info.blocked.iter().any(|b| b.as_str() == &*value) || info.blocked_regex.iter().any(|r| r.is_match(&value)) {
            return Err(DropReason::Blocked);
        }
        Ok(IdentKey::new(ty, value))
    }

    fn phone(&mut self, v: &str) -> Result<Box<str>, DropReason> {
        if let Some(hit) = self.phone_cache.get(v) {
            self.phone_cache_hits += 1;
            return hit.clone().ok_or(DropReason::InvalidPhone);
        }
        self.phone_cache_misses += 1;
        let parsed = phonenumber::parse(Some(self.cfg.default_region), v)
            .ok()
            .filter(|n| self.phones.is_valid(n))
            .map(|n| n.format().mode(phonenumber::Mode::E164).to_string().into_boxed_str());
        if self.phone_cache.len() >= PHONE_CACHE_CAP {
            // Bounded: start over rather than grow. Hot values come back fast.
            self.phone_cache.clear();
        }
        self.phone_cache.insert(v.into(), parsed.clone());
        parsed.ok_or(DropReason::InvalidPhone)
    }
}

/// `v` in lower case, borrowed when it has no upper-case letter (ASCII
/// text without one is its own lower case; other text goes through the
/// full Unicode mapping).
fn lowercase(v: &str) -> Cow<'_, str> {
    if v.bytes().all(|c| c.is_ascii() && !c.is_ascii_uppercase()) {
        v.into()
    } else {
        v.to_lowercase().into()
    }
}

/// `v` with ASCII letters in lower case, borrowed when it has none in
/// upper case.
fn ascii_lowercase(v: &str) -> Cow<'_, str> {
    if v.bytes().any(|c| c.is_ascii_uppercase()) {
        v.to_ascii_lowercase().into()
    } else {
        v.into()
    }
}

fn is_blocked_word(v: &str) -> bool {
    v.len() <= 16 && BLOCKED_WORDS.iter().any(|w| w.eq_ignore_ascii_case(v))
}

/// 8-4-4-4-12 hexadecimal. Checked without a branch per byte: each byte's
/// class (hex digit, dash, other) against the class its position wants
/// (~1% of a replay's CPU as a loop of early exits).
pub fn is_uuid(v: &str) -> bool {
    const HEX: u8 = 1;
    const DASH: u8 = 2;
    static CLASS: [u8; 256] = {
        let mut t = [0u8; 256];
        let mut c = 0;
        while c < 256 {
            t[c] = match c as u8 {
                b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F' => HEX,
                b'-' => DASH,
                _ => 0,
            };
            c += 1;
        }
        t
    };
    static WANT: [u8; 36] = {
        let mut w = [HEX; 36];
        w[8] = DASH;
        w[13] = DASH;
        w[18] = DASH;
        w[23] = DASH;
        w
    };
    let Ok(b) = <&[u8; 36]>::try_from(v.as_bytes()) else { return false };
    b.iter().zip(WANT.iter()).fold(0u8, |bad, (&c, &w)| bad | (CLASS[c as usize] ^ w)) == 0
}

/// A pragmatic syntactic check: one `@`, a non-empty local part without
/// spaces, a domain of dot-separated labels of letters, digits and hyphens,
/// with a top-level label of at least two characters.
pub fn valid_email(e: &str) -> bool {
    let Some((local, domain)) = e.split_once('@') else { return false };
    if local.is_empty() || local.len() > 64 || domain.len() > 253 || domain.contains('@') {
        return false;
    }
    if local.starts_with('.') || local.ends_with('.') || local.contains("..") {
        return false;
    }
    if !local.bytes().all(|c| c.is_ascii_alphanumeric() || b"!#$%&'*+/=?^_`{|}~.-".contains(&c) || c >= 0x80) {
        return false;
    }
    let labels: Vec<&str> = domain.split('.').collect();
    if labels.len() < 2 {
        return false;
    }
    let ok_labels = labels.iter().all(|l| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-' || c >= 0x80)
    });
    ok_labels && labels.last().is_some_and(|t| t.len() >= 2)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{IdentitySection, TraitsSection, TypeSection};
    use proptest::prelude::*;

    fn n() -> Normalizer {
        Normalizer::new(Arc::new(CoreConfig::default()))
    }

    #[test]
    fn emails_differing_in_case_and_spacing_are_one() {
        let mut n = n();
        let a = n.normalize(IdentType::EMAIL, "  Ann@Example.COM ").unwrap();
        let b = n.normalize(IdentType::EMAIL, "ann@example.com").unwrap();
        assert_eq!(a, b);
        assert_eq!(a.value(), "ann@example.com");
        assert_eq!(n.normalize(IdentType::EMAIL, "ann@"), Err(DropReason::InvalidEmail));
        assert_eq!(n.normalize(IdentType::EMAIL, "ann example.com"), Err(DropReason::InvalidEmail));
        assert_eq!(n.normalize(IdentType::EMAIL, "ann@x"), Err(DropReason::InvalidEmail));
    }

    #[test]
    fn phone_formats_land_on_e164() {
        let mut n = n();
        for raw in ["+1 (415) 555-0100", "415.555.0100", "+14155550100", "(415) 555 0100"] {
            assert_eq!(n.normalize(IdentType::PHONE, raw).unwrap().value(), "+14155550100", "{raw}");
        }
        assert_eq!(n.normalize(IdentType::PHONE, "12"), Err(DropReason::InvalidPhone));
        assert_eq!(n.normalize(IdentType::PHONE, "+1 555"), Err(DropReason::InvalidPhone));
        // Second lookup of the same raw value is served from the cache.
        let misses = n.phone_cache_misses;
        n.normalize(IdentType::PHONE, "415.555.0100").unwrap();
        assert_eq!(n.phone_cache_misses, misses);
    }

    #[test]
    fn blocked_values_never_pass() {
        let mut n = n();
        for (ty, v) in [
            (IdentType::USER_ID, "null"),
            (IdentType::USER_ID, "NULL"),
            (IdentType::USER_ID, " undefined "),
            (IdentType::ANONYMOUS_ID, "unknown"),
            (IdentType::ANONYMOUS_ID, "anonymous"),
            (IdentType::DEVICE_ID, "0"),
            (IdentType::DEVICE_ID, "-1"),
            (IdentType::DEVICE_ID, "0000-000"),
            (IdentType::DEVICE_ID, "00000000-0000-0000-0000-000000000000"),
            (IdentType::ADVERTISING_ID, "00000000-0000-0000-0000-000000000000"),
            (IdentType::EMAIL, "Test@Test.com"),
            (IdentType::EMAIL, "test@example.com"),
            (IdentType::LOYALTY_ID, "nil"),
            (IdentType::LOYALTY_ID, "None"),
        ] {
            assert_eq!(n.normalize(ty, v), Err(DropReason::Blocked), "{ty:?}");
        }
        assert_eq!(n.normalize(IdentType::USER_ID, "   "), Err(DropReason::Empty));
    }

    #[test]
    fn advertising_and_device_ids() {
        let mut n = n();
        let u = "6D92078A-8246-4BA4-AE5B-76104861E7DC";
        assert_eq!(n.normalize(IdentType::ADVERTISING_ID, u).unwrap().value(), u.to_ascii_lowercase());
        assert_eq!(n.normalize(IdentType::ADVERTISING_ID, "abc"), Err(DropReason::InvalidAdvertisingId));
        assert_eq!(n.normalize(IdentType::DEVICE_ID, u).unwrap().value(), u.to_ascii_lowercase());
        assert_eq!(n.normalize(IdentType::DEVICE_ID, " Dev-A ").unwrap().value(), "Dev-A");
        assert_eq!(n.normalize(IdentType::HASHED_EMAIL, &"AB".repeat(32)).unwrap().value(), "ab".repeat(32));
        assert_eq!(n.normalize(IdentType::HASHED_EMAIL, "abc"), Err(DropReason::InvalidHashedEmail));
    }

    #[test]
    fn custom_types_and_extended_block_lists() {
        let mut id = IdentitySection::default();
        id.types.insert(
            "member_no".into(),
            TypeSection { pattern: Some("M[0-9]{4}".into()), case: Some(CaseRule::Upper), ..Default::default() },
        );
        id.types.insert(
            "user_id".into(),
            TypeSection { blocked: vec!["guest".into()], blocked_regex: vec!["^tmp-".into()], ..Default::default() },
        );
        let mut n = Normalizer::new(Arc::new(CoreConfig::build(&id, &TraitsSection::default()).unwrap()));
        assert_eq!(n.normalize_named("member_no", " m1234 ").unwrap().value(), "M1234");
        assert_eq!(n.normalize_named("member_no", "m12"), Err(DropReason::PatternMismatch));
        assert_eq!(n.normalize_named("nope", "x"), Err(DropReason::UnknownType));
        assert_eq!(n.normalize_named("user_id", "guest"), Err(DropReason::Blocked));
        assert_eq!(n.normalize_named("user_id", "tmp-9"), Err(DropReason::Blocked));
        assert!(n.normalize_named("user_id", "u-9").is_ok());
    }

    /// The definition, spelled out: five groups of hex digits, 8-4-4-4-12.
    fn oracle(v: &str) -> bool {
        let groups: Vec<&str> = v.split('-').collect();
        groups.len() == 5
            && groups.iter().map(|g| g.len()).eq([8, 4, 4, 4, 12])
            && groups.iter().all(|g| g.bytes().all(|c| c.is_ascii_hexdigit()))
    }

    #[test]
    fn uuids_and_near_misses() {
        assert!(is_uuid("6d92078a-8246-4ba4-ae5b-76104861e7dc"));
        assert!(is_uuid("6D92078A-8246-4BA4-AE5B-76104861E7DC"));
        assert!(!is_uuid("6d92078a-8246-4ba4-ae5b-76104861e7d"));
        assert!(!is_uuid("6d92078a08246-4ba4-ae5b-76104861e7dc"));
        assert!(!is_uuid("6d92078a-8246-4ba4-ae5b-76104861e7dg"));
        assert!(!is_uuid("6d92078a-8246-4ba4-ae5b-76104861e7dc-"));
    }

    proptest! {
        #[test]
        fn agrees_with_the_definition(v in "[0-9a-fA-F-]{30,40}|[0-9a-g]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|.{36}") {
            prop_assert_eq!(is_uuid(&v), oracle(&v));
        }

        #[test]
        fn lower_casing_borrows_only_what_it_would_not_change(v in "[a-zA-Z0-9@.-]{0,20}|.{0,20}") {
            let l = lowercase(&v);
            prop_assert_eq!(l.to_string(), v.to_lowercase());
            prop_assert_eq!(matches!(l, Cow::Borrowed(_)), v.is_ascii() && !v.bytes().any(|c| c.is_ascii_uppercase()));
            let a = ascii_lowercase(&v);
            prop_assert_eq!(a.to_string(), v.to_ascii_lowercase());
            prop_assert_eq!(matches!(a, Cow::Borrowed(_)), !v.bytes().any(|c| c.is_ascii_uppercase()));
        }
    }
}
