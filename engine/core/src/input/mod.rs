//! Input formats: canonical JSON and Segment/RudderStack-spec JSON.
//!
//! A [`Parser`] turns one line (one Kafka record later) into a
//! [`Touchpoint`], or a [`RejectReason`] that never contains input values.

mod canonical;
mod json;
mod mapping;
mod segment;

pub use mapping::{FieldPath, InputMapping};

use crate::event::{DropCounts, Touchpoint};
use crate::normalize::Normalizer;
use serde::{Deserialize, Serialize};
use std::fmt;

/// Wire format of an input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Format {
    #[default]
    Canonical,
    Segment,
}

/// Largest accepted event, in bytes.
pub const MAX_EVENT_BYTES: usize = 1 << 20;

/// Why a whole event was rejected. `Display` never shows input values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RejectReason {
    TooLarge {
        bytes: usize,
    },
    InvalidJson {
        line: usize,
        column: usize,
        what: &'static str,
    },
    NotAnObject,
    MissingField(&'static str),
    InvalidField(&'static str),
    InvalidTimestamp(&'static str),
    UnsupportedType,
    NoIdentifiers,
    /// An identifier whose type is not declared (the name is not shown: it
    /// is input).
    UnknownIdentifierType,
}

impl RejectReason {
    /// Every reason code (metrics export them all from the start).
    pub const CODES: [&'static str; 9] = [
        "too_large",
        "invalid_json",
        "not_an_object",
        "missing_field",
        "invalid_field",
        "invalid_timestamp",
        "unsupported_type",
        "no_valid_identifier",
        "unknown_identifier_type",
    ];

    /// Stable reason code for counts and metric labels.
    pub fn code(&self) -> &'static str {
        match self {
            RejectReason::TooLarge { .. } => "too_large",
            RejectReason::InvalidJson { .. } => "invalid_json",
            RejectReason::NotAnObject => "not_an_object",
            RejectReason::MissingField(_) => "missing_field",
            RejectReason::InvalidField(_) => "invalid_field",
            RejectReason::InvalidTimestamp(_) => "invalid_timestamp",
            RejectReason::UnsupportedType => "unsupported_type",
            RejectReason::NoIdentifiers => "no_valid_identifier",
            RejectReason::UnknownIdentifierType => "unknown_identifier_type",
        }
    }
}

impl fmt::Display for RejectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RejectReason::TooLarge { bytes } => write!(f, "event of {bytes} bytes exceeds the {MAX_EVENT_BYTES}-byte limit"),
            RejectReason::InvalidJson { line, column, what } => write!(f, "invalid JSON ({what}) at line {line} column {column}"),
            RejectReason::NotAnObject => f.write_str("event is not a JSON object"),
            RejectReason::MissingField(n) => write!(f, "missing field `{n}`"),
            RejectReason::InvalidField(n) => write!(f, "field `{n}` has the wrong type or shape"),
            RejectReason::InvalidTimestamp(n) => write!(f, "field `{n}` is not an RFC 3339 timestamp"),
            RejectReason::UnsupportedType => f.write_str("unsupported event type"),
            RejectReason::NoIdentifiers => f.write_str("no valid identifier (all missing, blocked or invalid)"),
            RejectReason::UnknownIdentifierType => {
                f.write_str("identifier of a type neither built in nor declared under `identity.types` (the event is not applied in part)")
            }
        }
    }
}

/// Parses events of one input.
#[derive(Debug)]
pub struct Parser {
    format: Format,
    mapping: InputMapping,
    norm: Normalizer,
    /// Identifiers dropped so far, by reason.
    pub drops: DropCounts,
}

impl Parser {
    pub fn new(format: Format, mapping: InputMapping, norm: Normalizer) -> Self {
        Self { format, mapping, norm, drops: DropCounts::default() }
    }

    pub fn normalizer(&self) -> &Normalizer {
        &self.norm
    }

    pub fn parse(&mut self, bytes: &[u8]) -> Result<Touchpoint, RejectReason> {
        if bytes.len() > MAX_EVENT_BYTES {
            return Err(RejectReason::TooLarge { bytes: bytes.len() });
        }
        let doc = json::document(bytes).map_err(|e| RejectReason::InvalidJson { line: e.line, column: e.column, what: e.what })?;
        let obj = doc.object().ok_or(RejectReason::NotAnObject)?;
        let ev = match self.format {
            Format::Canonical => canonical::parse(&obj, &self.mapping, &mut self.norm, &mut self.drops)?,
            Format::Segment => segment::parse(&obj, &self.mapping, &mut self.norm, &mut self.drops)?,
        };
        if ev.idents.is_empty() {
            return Err(RejectReason::NoIdentifiers);
        }
        Ok(ev)
    }
}

/// Shared helpers of the format parsers: what the format's fields mean,
/// read from the event's raw values.
pub(crate) mod common {
    use super::json::{Kind, Object, Raw};
    use super::RejectReason;
    use std::borrow::Cow;

    /// A string field: absent or null is `None`, another type an error.
    pub fn str_field<'a>(obj: &Object<'_, 'a>, name: &'static str) -> Result<Option<Cow<'a, str>>, RejectReason> {
        str_value(obj.get(name), name)
    }

    /// [`str_field`] of a value already looked up.
    pub fn str_value<'a>(v: Option<Raw<'_, 'a>>, name: &'static str) -> Result<Option<Cow<'a, str>>, RejectReason> {
        match v {
            None => Ok(None),
            Some(v) if v.is_null() => Ok(None),
            Some(v) => v.str().map(Some).ok_or(RejectReason::InvalidField(name)),
        }
    }

    /// An object field: absent or null is `None`, another type an error.
    pub fn object_field<'d, 'a>(v: Option<Raw<'d, 'a>>, name: &'static str) -> Result<Option<Object<'d, 'a>>, RejectReason> {
        match v {
            None => Ok(None),
            Some(v) if v.is_null() => Ok(None),
            Some(v) => v.object().map(Some).ok_or(RejectReason::InvalidField(name)),
        }
    }

    /// A scalar as identifier text: strings as they are, integers printed.
    pub fn scalar_text<'a>(v: Raw<'_, 'a>) -> Option<Cow<'a, str>> {
        match v.kind() {
            Kind::String => v.str(),
            Kind::Number => v.number().filter(|n| n.is_i64() || n.is_u64()).map(|n| Cow::Owned(n.to_string())),
            _ => None,
        }
    }

    pub fn number(v: Raw<'_, '_>) -> Option<f64> {
        match v.kind() {
            Kind::Number => v.number()?.as_f64(),
            Kind::String => v.str()?.trim().parse::<f64>().ok().filter(|f| f.is_finite()),
            _ => None,
        }
    }

    /// Traits as (name, JSON text), skipping nulls and the given names, in
    /// key order; a name already present takes the new value.
    pub fn traits_of(obj: Option<&Object<'_, '_>>, skip: &[&str], out: &mut Vec<(crate::short::ShortStr, crate::short::ShortStr)>) {
        let Some(m) = obj else { return };
        for (k, v) in m.sorted() {
            if v.is_null() || skip.contains(&k.as_ref()) {
                continue;
            }
            if let Some(slot) = out.iter_mut().find(|(n, _)| n.as_str() == k) {
                slot.1 = v.to_json().into();
            } else {
                out.push((k.as_ref().into(), v.to_json().into()));
            }
        }
    }
}
