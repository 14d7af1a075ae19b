//! Column families, declared in one place.

/// A column family. Keys in every family start with the big-endian `u16`
/// partition number (ADR 0001).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Cf {
    /// Identifier records: `partition | type tag | value`.
    Idents,
    /// Profile records: `partition | profile id (16 bytes)`.
    Profiles,
    /// Progress, output positions, counters: `partition | name`.
    Meta,
}

impl Cf {
    pub const ALL: [Cf; 3] = [Cf::Idents, Cf::Profiles, Cf::Meta];

    pub fn name(self) -> &'static str {
        match self {
            Cf::Idents => "idents",
            Cf::Profiles => "profiles",
            Cf::Meta => "meta",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }
}
