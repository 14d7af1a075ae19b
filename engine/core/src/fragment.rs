//! Fragments: what events anchored on one identifier contributed.
//!
//! Every fold here is associative and commutative, so the golden profile
//! (the fold of all fragments) is the same whatever order events, merges and
//! splits happened in, and a split hands each fragment to the piece that
//! keeps its anchor without losing or double-counting anything.

use crate::config::CoreConfig;
use crate::event::Touchpoint;
use crate::ident::IdentKey;
use crate::rules::Survivorship;
use crate::short::ShortStr;
use crate::time::Millis;
use serde::{Deserialize, Serialize};
use smallvec::SmallVec;
use std::cmp::Ordering;

/// A fragment's events per source. Inline up to one source (most
/// fragments see one channel): a decoded profile record allocates a block
/// per vector it holds, and each block is a cache miss to allocate and
/// another to free when the record cache evicts it. Encoded like a `Vec`.
pub type Sources = SmallVec<[(ShortStr, u64); 1]>;

/// A fragment's trait candidates, inline up to one (as [`Sources`]).
pub type Traits = SmallVec<[TraitCandidate; 1]>;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    pub event_count: u64,
    pub first_seen: Millis,
    pub last_seen: Millis,
    /// Events per source, sorted by source name.
    pub sources: Sources,
    pub order_count: u64,
    pub revenue_total: f64,
}

impl Metrics {
    pub fn empty() -> Self {
        Self {
            event_count: 0,
            first_seen: Millis::MAX,
            last_seen: Millis::MIN,
            sources: Sources::new(),
            order_count: 0,
            revenue_total: 0.0,
        }
    }

    pub fn add_event(&mut self, ev: &Touchpoint) {
        self.event_count += 1;
        self.first_seen = self.first_seen.min(ev.ts);
        self.last_seen = self.last_seen.max(ev.ts);
        self.add_source(&ev.source, 1);
        if ev.is_order {
            self.order_count += 1;
        }
        if let Some(r) = ev.revenue {
            self.revenue_total += r;
        }
    }

    fn add_source(&mut self, s: &str, n: u64) {
        match self.sources.binary_search_by(|(k, _)| k.as_bytes().cmp(s.as_bytes())) {
            Ok(i) => self.sources[i].1 += n,
            Err(i) => self.sources.insert(i, (ShortStr::new(s), n)),
        }
    }

    pub fn merge(&mut self, o: &Metrics) {
        self.event_count += o.event_count;
        self.first_seen = self.first_seen.min(o.first_seen);
        self.last_seen = self.last_seen.max(o.last_seen);
        for (s, n) in &o.sources {
            self.add_source(s, *n);
        }
        self.order_count += o.order_count;
        self.revenue_total += o.revenue_total;
    }
}

/// One candidate value of a trait.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TraitCandidate {
    pub name: ShortStr,
    /// JSON text.
    pub value: ShortStr,
    pub ts: Millis,
    pub source: ShortStr,
}

/// The latest consent statement for one purpose.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConsentRecord {
    pub purpose: String,
    pub granted: bool,
    pub at: Millis,
    pub policy_version: Option<String>,
    pub jurisdiction: Option<String>,
    pub source: ShortStr,
    pub event_id: ShortStr,
    /// The identifier the statement was given for (the event's anchor).
    pub identifier: IdentKey,
}

/// Consent order: later wins; at the same instant a denial wins, so a denial
/// is never overridden by an older or simultaneous grant.
pub fn consent_cmp(a: &ConsentRecord, b: &ConsentRecord) -> Ordering {
    (a.at, !a.granted, &a.source, &a.event_id).cmp(&(b.at, !b.granted, &b.source, &b.event_id))
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fragment {
    pub anchor: IdentKey,
    pub metrics: Metrics,
    /// One surviving candidate per trait, sorted by name.
    pub traits: Traits,
    /// One record per purpose, sorted by purpose.
    pub consent: Vec<ConsentRecord>,
}

fn numeric(v: &str) -> Option<f64> {
    v.parse::<f64>().ok().filter(|f| f.is_finite())
}

/// Whether `a` beats `b` under `rule`. Total and deterministic.
pub fn candidate_beats(a: &TraitCandidate, b: &TraitCandidate, rule: Survivorship, cfg: &CoreConfig) -> bool {
    let by_time_then_value = (a.ts, &a.value, &a.source).cmp(&(b.ts, &b.value, &b.source));
    let ord = match rule {
        Survivorship::Latest => by_time_then_value,
        Survivorship::First => by_time_then_value.reverse(),
        Survivorship::SourcePriority => cfg.source_rank(&b.source).cmp(&cfg.source_rank(&a.source)).then(by_time_then_value),
        Survivorship::Max | Survivorship::Min => {
            let (na, nb) = (numeric(&a.value), numeric(&b.value));
            let num = match (na, nb) {
                (Some(x), Some(y)) => {
                    let o = x.partial_cmp(&y).unwrap_or(Ordering::Equal);
                    if rule == Survivorship::Min {
                        o.reverse()
                    } else {
                        o
                    }
                }
                (Some(_), None) => Ordering::Greater,
                (None, Some(_)) => Ordering::Less,
                (None, None) => Ordering::Equal,
            };
            num.then(by_time_then_value)
        }
    };
    ord == Ordering::Greater
}

/// Folds `cand` into a sorted candidate list under the configured rules.
pub fn fold_candidate(list: &mut Traits, cand: TraitCandidate, cfg: &CoreConfig) {
    match list.binary_search_by(|c| c.name.as_bytes().cmp(cand.name.as_bytes())) {
        Ok(i) => {
            if candidate_beats(&cand, &list[i], cfg.survivorship(&cand.name), cfg) {
                list[i] = cand;
            }
        }
        Err(i) => list.insert(i, cand),
    }
}

/// Folds a consent record into a sorted per-purpose list.
pub fn fold_consent(list: &mut Vec<ConsentRecord>, rec: ConsentRecord) {
    match list.binary_search_by(|c| c.purpose.as_str().cmp(&rec.purpose)) {
        Ok(i) => {
            if consent_cmp(&rec, &list[i]) == Ordering::Greater {
                list[i] = rec;
            }
        }
        Err(i) => list.insert(i, rec),
    }
}

impl Fragment {
    pub fn new(anchor: IdentKey) -> Self {
        Self { anchor, metrics: Metrics::empty(), traits: Traits::new(), consent: Vec::new() }
    }

    pub fn add_event(&mut self, ev: &Touchpoint, cfg: &CoreConfig) {
        self.metrics.add_event(ev);
        for (name, value) in &ev.traits {
            let cand = TraitCandidate { name: name.clone(), value: value.clone(), ts: ev.ts, source: ev.source.clone() };
            fold_candidate(&mut self.traits, cand, cfg);
        }
        for c in &ev.consent {
            let rec = ConsentRecord {
                purpose: c.purpose.clone(),
                granted: c.granted,
                at: ev.ts,
                policy_version: c.policy_version.clone(),
                jurisdiction: c.jurisdiction.clone(),
                source: ev.source.clone(),
                event_id: ev.event_id.clone(),
                identifier: self.anchor.clone(),
            };
            fold_consent(&mut self.consent, rec);
        }
    }
}

/// The golden view of a set of fragments (borrowing their values). Its
/// lists are inline up to a few entries: one is built per profile
/// rendered, and a heap block each was an allocation and a free per line.
#[derive(Debug, Clone, PartialEq)]
pub struct Rollup<'a> {
    pub metrics: Metrics,
    /// Winning candidate per trait, sorted by name.
    pub traits: SmallVec<[&'a TraitCandidate; 8]>,
    /// Winning record per purpose, sorted by purpose.
    pub consent: SmallVec<[&'a ConsentRecord; 4]>,
}

pub fn rollup<'a>(frags: impl IntoIterator<Item = &'a Fragment>, cfg: &CoreConfig) -> Rollup<'a> {
    let mut r = Rollup { metrics: Metrics::empty(), traits: SmallVec::new(), consent: SmallVec::new() };
    for f in frags {
        r.metrics.merge(&f.metrics);
        for t in &f.traits {
            match r.traits.binary_search_by(|c| c.name.as_bytes().cmp(t.name.as_bytes())) {
                Ok(i) => {
                    if candidate_beats(t, r.traits[i], cfg.survivorship(&t.name), cfg) {
                        r.traits[i] = t;
                    }
                }
                Err(i) => r.traits.insert(i, t),
            }
        }
        for c in &f.consent {
            match r.consent.binary_search_by(|x| x.purpose.as_str().cmp(&c.purpose)) {
                Ok(i) => {
                    if consent_cmp(c, r.consent[i]) == Ordering::Greater {
                        r.consent[i] = c;
                    }
                }
                Err(i) => r.consent.insert(i, c),
            }
        }
    }
    r
}

/// The rolled-up consent record of one purpose.
pub fn consent_for<'a>(frags: impl IntoIterator<Item = &'a Fragment>, purpose: &str) -> Option<ConsentRecord> {
    let mut best: Option<&ConsentRecord> = None;
    for f in frags {
        if let Some(c) = f.consent.iter().find(|c| c.purpose == purpose) {
            if best.is_none_or(|b| consent_cmp(c, b) == Ordering::Greater) {
                best = Some(c);
            }
        }
    }
    best.cloned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::TraitsSection;
    use crate::ident::IdentType;

    fn cand(v: &str, ts: Millis, src: &str) -> TraitCandidate {
        TraitCandidate { name: "t".into(), value: v.into(), ts, source: src.into() }
    }

    #[test]
    fn survivorship_rules() {
        let mut traits = TraitsSection { source_priority: vec!["crm".into(), "web".into()], ..Default::default() };
        let c = |traits: &TraitsSection| CoreConfig::build(&Default::default(), traits).unwrap();
        let cfg = c(&traits);
        assert!(candidate_beats(&cand("\"b\"", 2, "web"), &cand("\"a\"", 1, "web"), Survivorship::Latest, &cfg));
        assert!(candidate_beats(&cand("\"a\"", 1, "web"), &cand("\"b\"", 2, "web"), Survivorship::First, &cfg));
        assert!(candidate_beats(&cand("\"a\"", 1, "crm"), &cand("\"b\"", 9, "web"), Survivorship::SourcePriority, &cfg));
        assert!(candidate_beats(&cand("10", 1, "web"), &cand("9.5", 9, "web"), Survivorship::Max, &cfg));
        assert!(candidate_beats(&cand("9.5", 9, "web"), &cand("10", 1, "web"), Survivorship::Min, &cfg));
        assert!(candidate_beats(&cand("1", 1, "web"), &cand("\"x\"", 9, "web"), Survivorship::Max, &cfg));
        traits.rules.insert("t".into(), Survivorship::First);
        let cfg = c(&traits);
        let mut list = Traits::new();
        fold_candidate(&mut list, cand("\"late\"", 5, "web"), &cfg);
        fold_candidate(&mut list, cand("\"early\"", 1, "web"), &cfg);
        assert_eq!(list[0].value, "\"early\"");
    }

    #[test]
    fn a_denial_is_not_overridden_by_an_older_or_simultaneous_grant() {
        let k = IdentKey::new(IdentType::EMAIL, "a@b.co");
        let rec = |granted, at| ConsentRecord {
            purpose: "email".into(),
            granted,
            at,
            policy_version: None,
            jurisdiction: None,
            source: "web".into(),
            event_id: "e".into(),
            identifier: k.clone(),
        };
        let mut l = vec![];
        fold_consent(&mut l, rec(false, 10));
        fold_consent(&mut l, rec(true, 5));
        fold_consent(&mut l, rec(true, 10));
        assert!(!l[0].granted);
        fold_consent(&mut l, rec(true, 11));
        assert!(l[0].granted);
    }
}
