//! The normalised touchpoint every input format is mapped to.

use crate::ident::{IdentKey, IdentType};
use crate::normalize::{DropReason, Normalizer};
use crate::short::ShortStr;
use crate::time::Millis;
use serde::{Deserialize, Serialize};
use std::fmt;

/// A consent statement carried by an event.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct ConsentInput {
    pub purpose: String,
    pub granted: bool,
    pub policy_version: Option<String>,
    pub jurisdiction: Option<String>,
}

/// A normalised event. `idents` is sorted strongest first (priority, then
/// key), without duplicates; `idents[0]` is the anchor.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct Touchpoint {
    pub event_id: ShortStr,
    pub ts: Millis,
    pub source: ShortStr,
    pub idents: Vec<IdentKey>,
    /// Trait name and JSON text of its value (nulls removed).
    pub traits: Vec<(ShortStr, ShortStr)>,
    pub revenue: Option<f64>,
    pub is_order: bool,
    pub consent: Vec<ConsentInput>,
}

impl fmt::Debug for Touchpoint {
    // Traits and consent may carry PII: only names and counts are shown.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Touchpoint")
            .field("event_id", &self.event_id)
            .field("ts", &self.ts)
            .field("source", &self.source)
            .field("idents", &self.idents)
            .field("traits", &self.traits.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>())
            .field("consent", &self.consent.len())
            .finish()
    }
}

impl fmt::Debug for ConsentInput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Consent({}={})", self.purpose, self.granted)
    }
}

/// Counts of dropped identifiers by reason.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DropCounts(pub [u64; DropReason::ALL.len()]);

impl DropCounts {
    pub fn add(&mut self, r: DropReason) {
        self.0[r.index()] += 1;
    }

    pub fn merge(&mut self, o: &DropCounts) {
        for (a, b) in self.0.iter_mut().zip(o.0.iter()) {
            *a += b;
        }
    }

    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }

    /// Non-zero counts with their reason names.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        DropReason::ALL.iter().map(|r| (r.as_str(), self.0[r.index()])).filter(|(_, n)| *n > 0)
    }
}

/// Collects raw identifiers of one event, normalising and dropping with
/// reasons, then sorts, de-duplicates and caps them.
#[derive(Debug, Default)]
pub struct IdentCollector {
    keys: Vec<IdentKey>,
}

impl IdentCollector {
    pub fn push_named(&mut self, norm: &mut Normalizer, drops: &mut DropCounts, type_name: &str, raw: &str) {
        match norm.normalize_named(type_name, raw) {
            Ok(k) => self.keys.push(k),
            Err(r) => drops.add(r),
        }
    }

    pub fn push(&mut self, norm: &mut Normalizer, drops: &mut DropCounts, ty: IdentType, raw: &str) {
        match norm.normalize(ty, raw) {
            Ok(k) => self.keys.push(k),
            Err(r) => drops.add(r),
        }
    }

    pub fn finish(mut self, norm: &Normalizer, drops: &mut DropCounts) -> Vec<IdentKey> {
        let cfg = norm.config();
        self.keys.sort_by(|a, b| (cfg.priority(a.ty()), a).cmp(&(cfg.priority(b.ty()), b)));
        let before = self.keys.len();
        self.keys.dedup();
        for _ in self.keys.len()..before {
            drops.add(DropReason::Duplicate);
        }
        let cap = cfg.max_identifiers_per_event;
        if self.keys.len() > cap {
            for _ in cap..self.keys.len() {
                drops.add(DropReason::TooManyInEvent);
            }
            self.keys.truncate(cap);
        }
        self.keys
    }
}
