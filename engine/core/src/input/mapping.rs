//! Extra field mappings from config: identifier and trait paths.

use super::json::{Object, Raw};

/// A dotted path into the event JSON, e.g. `context.traits.member_no`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldPath(Vec<String>);

impl FieldPath {
    pub fn parse(path: &str) -> Option<Self> {
        let parts: Vec<String> = path.split('.').map(str::to_string).collect();
        if parts.iter().any(String::is_empty) {
            return None;
        }
        Some(Self(parts))
    }

    pub(crate) fn get<'d, 'a>(&self, root: &Object<'d, 'a>) -> Option<Raw<'d, 'a>> {
        let (first, rest) = self.0.split_first()?;
        let mut v = root.get(first)?;
        for p in rest {
            v = v.object()?.get(p)?;
        }
        Some(v)
    }

    pub fn last(&self) -> &str {
        self.0.last().map_or("", String::as_str)
    }
}

/// Mapping of extra fields for one input, on top of the format's built-in
/// mapping.
#[derive(Debug, Clone, Default)]
pub struct InputMapping {
    /// (path, identifier type name).
    pub identifiers: Vec<(FieldPath, String)>,
    /// (path, trait name).
    pub traits: Vec<(FieldPath, String)>,
    /// Source used when the event names none.
    pub default_source: Option<String>,
}
