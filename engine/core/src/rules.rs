//! Merge rules and trait survivorship.
//!
//! Limits are checked against per-type counts; a union is allowed only when
//! every type stays within its `max-per-profile` and the total within
//! `max-identifiers`.

use crate::config::CoreConfig;
use crate::ident::IdentType;
use serde::{Deserialize, Serialize};

/// How a trait's golden value is chosen among candidates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Survivorship {
    /// The value with the latest event time (ties: the greater value).
    #[default]
    Latest,
    /// The value with the earliest event time (ties: the smaller value).
    First,
    /// The value from the most trusted source, latest within it.
    SourcePriority,
    /// The greatest number (non-numbers lose to numbers).
    Max,
    /// The smallest number (non-numbers lose to numbers).
    Min,
}

/// The rule a union would break.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Violation {
    /// More identifiers of one type than `max-per-profile`.
    MaxPerType { ty: IdentType, limit: u32 },
    /// More identifiers than `max-identifiers`.
    MaxIdentifiers { limit: u32 },
}

impl Violation {
    /// Stable rule name used in `conflict` events and metrics labels.
    pub fn rule_name(&self, cfg: &CoreConfig) -> String {
        match self {
            Violation::MaxPerType { ty, .. } => format!("max_per_profile:{}", cfg.type_name(*ty)),
            Violation::MaxIdentifiers { .. } => "max_identifiers".to_string(),
        }
    }
}

/// Per-type counts of a profile (or union of profiles). Held inline for
/// up to eight types (the built-in ones): counting allocates nothing.
#[derive(Debug, Clone, Default)]
pub struct TypeCounts {
    counts: smallvec::SmallVec<[(IdentType, u32); 8]>,
    total: u32,
}

impl TypeCounts {
    pub fn add(&mut self, ty: IdentType, n: u32) {
        self.total += n;
        match self.counts.iter_mut().find(|(t, _)| *t == ty) {
            Some((_, c)) => *c += n,
            None => self.counts.push((ty, n)),
        }
    }

    pub fn from_types(types: impl IntoIterator<Item = IdentType>) -> Self {
        let mut c = Self::default();
        for t in types {
            c.add(t, 1);
        }
        c
    }

    pub fn merge(&mut self, other: &TypeCounts) {
        for (t, n) in &other.counts {
            self.add(*t, *n);
        }
    }

    pub fn get(&self, ty: IdentType) -> u32 {
        self.counts.iter().find(|(t, _)| *t == ty).map_or(0, |(_, c)| *c)
    }

    /// The first rule these counts break, checking types strongest first.
    pub fn violation(&self, cfg: &CoreConfig) -> Option<Violation> {
        let mut sorted = self.counts.clone();
        sorted.sort_by_key(|(t, _)| (cfg.priority(*t), *t));
        for (ty, n) in sorted {
            let limit = cfg.max_per_profile(ty);
            if n > limit {
                return Some(Violation::MaxPerType { ty, limit });
            }
        }
        if self.total > cfg.max_identifiers {
            return Some(Violation::MaxIdentifiers { limit: cfg.max_identifiers });
        }
        None
    }

    /// Whether one more identifier of `ty` still satisfies the rules.
    pub fn room_for(&self, ty: IdentType, cfg: &CoreConfig) -> Option<Violation> {
        let limit = cfg.max_per_profile(ty);
        if self.get(ty) + 1 > limit {
            return Some(Violation::MaxPerType { ty, limit });
        }
        if self.total + 1 > cfg.max_identifiers {
            return Some(Violation::MaxIdentifiers { limit: cfg.max_identifiers });
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_user_ids_break_the_user_id_rule() {
        let cfg = CoreConfig::default();
        let mut c = TypeCounts::from_types([IdentType::USER_ID, IdentType::EMAIL]);
        assert_eq!(c.violation(&cfg), None);
        assert!(c.room_for(IdentType::USER_ID, &cfg).is_some());
        assert!(c.room_for(IdentType::EMAIL, &cfg).is_none());
        c.add(IdentType::USER_ID, 1);
        let v = c.violation(&cfg).unwrap();
        assert_eq!(v.rule_name(&cfg), "max_per_profile:user_id");
    }
}
