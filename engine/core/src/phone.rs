//! Phone number validity with regexes compiled once per region.
//!
//! `phonenumber::is_valid` matches the national number against up to
//! twenty of the region's patterns, twice for a number of a shared
//! country code (+1: once to find the region, once to validate), and each
//! match goes through the library's one global regex cache: a mutex, and
//! an LRU lookup that hashes the pattern's source text (over a kilobyte
//! for the North American fixed-line pattern). That was ~27% of the
//! parser thread in a 10M-event replay. [`PhoneValidity`] runs the same
//! algorithm over the same metadata, with each region's patterns compiled
//! once, with the library's options, and held by the caller. Its verdicts
//! are the library's: a property test compares them over random numbers
//! of many country codes, and every example number in the metadata.

use phonenumber::metadata::{Descriptor, Metadata, DATABASE};
use phonenumber::PhoneNumber;
use regex::{Regex, RegexBuilder};
use rustc_hash::FxHashMap;
use std::sync::Arc;

/// One descriptor: the lengths it allows and its national-number pattern.
#[derive(Debug)]
struct Desc {
    possible_length: Vec<u16>,
    re: Regex,
}

impl Desc {
    fn compile(d: &Descriptor) -> Option<Self> {
        Some(Self { possible_length: d.possible_length().to_vec(), re: anchored(d.national_number().as_str())? })
    }

    /// `Descriptor::is_match`: a possible length (when the descriptor
    /// lists any), and the leftmost match starting at the first digit.
    fn is_match(&self, v: &str) -> bool {
        if !self.possible_length.is_empty() && !self.possible_length.contains(&(v.len() as u16)) {
            return false;
        }
        self.re.is_match(v)
    }
}

/// The library's pattern (compiled with `ignore_whitespace`), anchored at
/// the start: the library asks whether the leftmost match starts at the
/// first digit, which is whether a match starts there at all, and an
/// anchored search need not try every later start (its lazy DFA had
/// states for all of them). The newline ends a comment the pattern might
/// close with.
fn anchored(src: &str) -> Option<Regex> {
    RegexBuilder::new(&format!("^(?:{src}\n)")).ignore_whitespace(true).build().ok()
}

/// A region's compiled patterns.
#[derive(Debug)]
struct Region {
    leading_digits: Option<Regex>,
    general: Desc,
    /// Every type `number_type` tries after the general pattern; a match
    /// of any of them makes the number a known type.
    types: Vec<Desc>,
}

impl Region {
    fn compile(meta: &Metadata) -> Option<Self> {
        let d = meta.descriptors();
        let leading_digits = match meta.leading_digits() {
            Some(r) => Some(anchored(r.as_str())?),
            None => None,
        };
        let optional = [
            d.premium_rate(),
            d.toll_free(),
            d.shared_cost(),
            d.voip(),
            d.personal_number(),
            d.pager(),
            d.uan(),
            d.voicemail(),
            d.fixed_line(),
            d.mobile(),
        ];
        let mut types = Vec::new();
        for desc in optional.into_iter().flatten() {
            types.push(Desc::compile(desc)?);
        }
        Some(Self { leading_digits, general: Desc::compile(d.general())?, types })
    }

    /// `number_type(meta, v) != Type::Unknown`.
    fn known_type(&self, v: &str) -> bool {
        self.general.is_match(v) && self.types.iter().any(|t| t.is_match(v))
    }

    fn leading_digits_match(&self, v: &str) -> Option<bool> {
        self.leading_digits.as_ref().map(|r| r.is_match(v))
    }
}

/// `phonenumber::is_valid`, with compiled patterns kept per region (one
/// per parser thread: no lock).
#[derive(Debug, Default)]
pub struct PhoneValidity {
    /// Region IDs per country code, in the metadata's order.
    regions: FxHashMap<u16, Arc<[&'static str]>>,
    /// `None`: a pattern the regex crate refused; that region is left to
    /// the library.
    compiled: FxHashMap<&'static str, Option<Region>>,
    /// Non-geographic codes (region "001"), by code.
    non_geographic: FxHashMap<u16, Option<Region>>,
}

enum Verdict {
    Valid,
    Invalid,
    /// A region whose patterns did not compile here: ask the library.
    Unknown,
}

impl PhoneValidity {
    pub fn is_valid(&mut self, number: &PhoneNumber) -> bool {
        match self.verdict(number) {
            Verdict::Valid => true,
            Verdict::Invalid => false,
            Verdict::Unknown => phonenumber::is_valid(number),
        }
    }

    fn region(&mut self, id: &'static str) -> Option<&Region> {
        self.compiled.entry(id).or_insert_with(|| DATABASE.by_id(id).and_then(Region::compile)).as_ref()
    }

    fn verdict(&mut self, number: &PhoneNumber) -> Verdict {
        let db: &'static phonenumber::metadata::Database = &DATABASE;
        let code = number.country().code();
        let national = number.national().to_string();
        let regions = self.regions.entry(code).or_insert_with(|| db.region(&code).unwrap_or_default().into()).clone();
        // `validator::source_for`: the region the number belongs to.
        let source: &'static str = match &regions[..] {
            [] => return Verdict::Invalid,
            // A non-geographic code: its first metadata entry.
            ["001"] => {
                let compiled = self
                    .non_geographic
                    .entry(code)
                    .or_insert_with(|| db.by_code(&code).and_then(|m| m.into_iter().next()).and_then(Region::compile));
                return match compiled {
                    Some(r) if r.known_type(&national) => Verdict::Valid,
                    Some(_) => Verdict::Invalid,
                    None => Verdict::Unknown,
                };
            }
            [only] => {
                if only.parse::<phonenumber::country::Id>().is_err() {
                    return Verdict::Invalid;
                }
                only
            }
            many => {
                let mut found = None;
                for &id in many {
                    let Some(r) = self.region(id) else { return Verdict::Unknown };
                    let hit = match r.leading_digits_match(&national) {
                        Some(m) => m,
                        None => r.known_type(&national),
                    };
                    if hit {
                        found = Some(id);
                        break;
                    }
                }
                match found {
                    Some(id) if id.parse::<phonenumber::country::Id>().is_ok() => id,
                    _ => return Verdict::Invalid,
                }
            }
        };
        match self.region(source) {
            Some(r) if r.known_type(&national) => Verdict::Valid,
            Some(_) => Verdict::Invalid,
            None => Verdict::Unknown,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

    fn same_as_library(v: &mut PhoneValidity, text: &str) {
        if let Ok(n) = phonenumber::parse(None, text) {
            assert_eq!(v.is_valid(&n), phonenumber::is_valid(&n), "verdicts differ for {text}");
        }
    }

    #[test]
    fn every_example_number_in_the_metadata_gets_the_library_verdict() {
        let mut v = PhoneValidity::default();
        let mut checked = 0;
        for meta in DATABASE.iter() {
            let d = meta.descriptors();
            let all = [Some(d.general()), d.fixed_line(), d.mobile(), d.toll_free(), d.premium_rate(), d.voip(), d.pager(), d.uan()];
            for desc in all.into_iter().flatten() {
                if let Some(ex) = desc.example() {
                    same_as_library(&mut v, &format!("+{}{}", meta.country_code(), ex));
                    // A digit changed: often invalid, sometimes another type.
                    let mut bad: Vec<u8> = ex.bytes().collect();
                    if let Some(last) = bad.last_mut() {
                        *last = if *last == b'9' { b'0' } else { *last + 1 };
                    }
                    same_as_library(&mut v, &format!("+{}{}", meta.country_code(), String::from_utf8(bad).unwrap()));
                    checked += 1;
                }
            }
        }
        assert!(checked > 500, "only {checked} examples");
    }

    #[test]
    fn north_american_numbers() {
        let mut v = PhoneValidity::default();
        for t in
            ["+14155550100", "+12025550123", "+16502530000", "+18002530000", "+12530000", "+12423570000", "+18092345678", "+19999999999"]
        {
            same_as_library(&mut v, t);
        }
        let n = phonenumber::parse(None, "+16502530000").unwrap();
        assert!(v.is_valid(&n));
        let n = phonenumber::parse(None, "+11234567890").unwrap();
        assert!(!v.is_valid(&n));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(3000))]
        #[test]
        fn verdicts_match_the_library(
            code in prop::sample::select(vec![1u16, 7, 20, 33, 34, 39, 44, 49, 52, 55, 61, 81, 86, 91, 358, 800, 808, 870, 882, 979]),
            digits in "[0-9]{4,14}",
        ) {
            let mut v = PhoneValidity::default();
            same_as_library(&mut v, &format!("+{code}{digits}"));
        }
    }
}
