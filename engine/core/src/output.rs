//! Output events other than profile snapshots (which are rendered from
//! records by [`crate::golden`]).

use crate::short::ShortStr;
use serde::Serialize;

/// An identifier as it appears in outputs (type name and value).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IdentOut {
    #[serde(rename = "type")]
    pub ty: String,
    pub value: String,
}

/// A lifecycle event: created, merged, split, conflict, identifier_shared.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LifecycleEvent {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub profile_id: String,
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
    /// Event time that caused it (RFC 3339).
    pub at: String,
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
