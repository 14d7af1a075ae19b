//! Output events other than profile snapshots (which are rendered from
//! records by [`crate::golden`]).

use crate::profile_id::ProfileId;
use crate::short::ShortStr;
use crate::time::Millis;
use serde::{Serialize, Serializer};

/// A profile ID as its text (the state machine keeps it binary; the text
/// is made where the event is written, off the state machine's thread).
fn id_text<S: Serializer>(id: &ProfileId, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(id)
}

/// A time as RFC 3339 text.
fn time_text<S: Serializer>(ms: &Millis, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&crate::time::format_rfc3339(*ms))
}

/// An identifier as it appears in outputs (type name and value).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IdentOut {
    #[serde(rename = "type")]
    pub ty: String,
    pub value: String,
}

/// A lifecycle event: created, merged, split, conflict, identifier_shared,
/// emptied.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LifecycleEvent {
    #[serde(rename = "type")]
    pub kind: &'static str,
    #[serde(serialize_with = "id_text")]
    pub profile_id: ProfileId,
    /// Merged: the absorbed profile. Split: the new pieces. Conflict: the
    /// other profile, if any.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub related: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub identifier: Option<IdentOut>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_id: Option<ShortStr>,
    /// Event time that caused it (RFC 3339 in outputs).
    #[serde(serialize_with = "time_text")]
    pub at: Millis,
}

/// A change of a profile's rolled-up consent for one purpose.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ConsentEvent {
    pub profile_id: String,
    pub purpose: String,
    pub granted: bool,
    pub at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy_version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jurisdiction: Option<String>,
    pub source: ShortStr,
    pub event_id: ShortStr,
    pub identifier_type: String,
}
