//! Configuration of the identity core: identifier types, merge rules and
//! trait survivorship. The serde structs are the `[identity]` and `[traits]`
//! sections of the TOML config (kebab-case, unknown keys rejected); they are
//! compiled into a [`CoreConfig`] by [`CoreConfig::build`], which names the
//! offending key on any error.

use crate::ident::IdentType;
use crate::rules::Survivorship;
use regex::Regex;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// `[identity]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct IdentitySection {
    /// Region for phone numbers written without a country code.
    pub default_region: String,
    /// Cap on identifiers per profile, all types together.
    pub max_identifiers: u32,
    /// Refusals with this many distinct profiles mark an identifier shared.
    pub shared_threshold: u32,
    /// Events with more identifiers than this keep only the strongest ones.
    pub max_identifiers_per_event: u32,
    /// Per-type settings; built-in names override defaults, other names
    /// declare custom types (which need `pattern`).
    pub types: BTreeMap<String, TypeSection>,
}

impl Default for IdentitySection {
    fn default() -> Self {
        Self {
            default_region: "US".into(),
            max_identifiers: 1000,
            shared_threshold: 3,
            max_identifiers_per_event: 32,
            types: BTreeMap::new(),
        }
    }
}

/// `[identity.types.NAME]`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct TypeSection {
    pub max_per_profile: Option<u32>,
    /// 1 is the strongest.
    pub priority: Option<u32>,
    /// Extra blocked values (exact, compared after normalisation).
    #[serde(default)]
    pub blocked: Vec<String>,
    /// Extra blocked values as regular expressions over the normalised value.
    #[serde(default)]
    pub blocked_regex: Vec<String>,
    /// Custom types only: the normalised value must match it in full.
    pub pattern: Option<String>,
    /// Custom types only: `preserve` (default), `lower` or `upper`.
    pub case: Option<CaseRule>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum CaseRule {
    #[default]
    Preserve,
    Lower,
    Upper,
}

/// `[traits]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct TraitsSection {
    /// Survivorship of traits without their own rule.
    pub default: Survivorship,
    /// Sources in order of trust for the `source-priority` rule.
    pub source_priority: Vec<String>,
    /// Per-trait survivorship.
    pub rules: BTreeMap<String, Survivorship>,
}

impl Default for TraitsSection {
    fn default() -> Self {
        Self { default: Survivorship::Latest, source_priority: Vec::new(), rules: BTreeMap::new() }
    }
}

/// One identifier type, compiled.
#[derive(Debug, Clone)]
pub struct TypeInfo {
    pub ty: IdentType,
    pub name: String,
    pub max_per_profile: u32,
    pub priority: u32,
    pub blocked: Vec<String>,
    pub blocked_regex: Vec<Regex>,
    pub pattern: Option<Regex>,
    pub case: CaseRule,
}

/// Compiled core configuration.
#[derive(Debug, Clone)]
pub struct CoreConfig {
    types: Vec<Option<TypeInfo>>,
    pub default_region: phonenumber::country::Id,
    pub max_identifiers: u32,
    pub shared_threshold: u32,
    pub max_identifiers_per_event: usize,
    pub traits: TraitsSection,
}

/// A configuration error: the dotted key and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("config key `{key}`: {problem}")]
pub struct ConfigError {
    pub key: String,
    pub problem: String,
}

fn err(key: impl Into<String>, problem: impl Into<String>) -> ConfigError {
    ConfigError { key: key.into(), problem: problem.into() }
}

/// Default (max per profile, priority) of the built-in types (DESIGN §4).
fn built_in_defaults(ty: IdentType) -> (u32, u32) {
    match ty {
        IdentType::USER_ID => (1, 1),
        IdentType::LOYALTY_ID => (1, 2),
        IdentType::EMAIL | IdentType::HASHED_EMAIL => (5, 3),
        IdentType::PHONE => (5, 4),
        IdentType::ADVERTISING_ID => (10, 5),
        IdentType::DEVICE_ID => (20, 6),
        _ => (1000, 7),
    }
}

impl Default for CoreConfig {
    fn default() -> Self {
        // The default sections are valid by construction; a failure here is a
        // bug in this file and is caught by the unit tests.
        match Self::build(&IdentitySection::default(), &TraitsSection::default()) {
            Ok(c) => c,
            Err(e) => panic!("built-in default config invalid: {e}"),
        }
    }
}

impl CoreConfig {
    pub fn build(id: &IdentitySection, traits: &TraitsSection) -> Result<Self, ConfigError> {
        use std::str::FromStr;
        let region = phonenumber::country::Id::from_str(&id.default_region.to_ascii_uppercase())
            .map_err(|_| err("identity.default-region", format!("`{}` is not an ISO 3166 region code", id.default_region)))?;
        if id.max_identifiers == 0 {
            return Err(err("identity.max-identifiers", "must be at least 1"));
        }
        if id.shared_threshold < 2 {
            return Err(err("identity.shared-threshold", "must be at least 2"));
        }
        if !(2..=64).contains(&id.max_identifiers_per_event) {
            return Err(err("identity.max-identifiers-per-event", "must be between 2 and 64"));
        }
        let mut types: Vec<Option<TypeInfo>> = vec![None; 256];
        for (ty, name) in IdentType::BUILT_IN {
            let (max, prio) = built_in_defaults(ty);
            types[ty.0 as usize] = Some(TypeInfo {
                ty,
                name: name.to_string(),
                max_per_profile: max,
                priority: prio,
                blocked: Vec::new(),
                blocked_regex: Vec::new(),
                pattern: None,
                case: CaseRule::Preserve,
            });
        }
        let mut next_custom = IdentType::FIRST_CUSTOM;
        for (name, sec) in &id.types {
            let key = format!("identity.types.{name}");
            if name.is_empty() || !name.bytes().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_') {
                return Err(err(&key, "type names use lower-case letters, digits and `_`"));
            }
            let built_in = IdentType::BUILT_IN.iter().find(|(_, n)| n == name).map(|(t, _)| *t);
            let ty = match built_in {
                Some(t) => {
                    if sec.pattern.is_some() || sec.case.is_some() {
                        return Err(err(
                            format!("{key}.pattern"),
                            "built-in types have fixed normalisation; `pattern` and `case` are for custom types",
                        ));
                    }
                    t
                }
                None => {
                    if next_custom == u8::MAX {
                        return Err(err(&key, "too many custom types (at most 223)"));
                    }
                    let t = IdentType(next_custom);
                    next_custom += 1;
                    t
                }
            };
            let (dmax, dprio) = built_in_defaults(ty);
            let max = sec.max_per_profile.unwrap_or(dmax);
            if max == 0 {
                return Err(err(format!("{key}.max-per-profile"), "must be at least 1"));
            }
            let priority = sec.priority.unwrap_or(dprio);
            if priority == 0 {
                return Err(err(format!("{key}.priority"), "must be at least 1 (1 is the strongest)"));
            }
            let mut blocked_regex = Vec::new();
            for (i, r) in sec.blocked_regex.iter().enumerate() {
                blocked_regex.push(Regex::new(r).map_err(|e| err(format!("{key}.blocked-regex[{i}]"), format!("invalid regex: {e}")))?);
            }
            let pattern = match (&sec.pattern, built_in) {
                (Some(p), None) => {
                    Some(Regex::new(&format!("^(?:{p})$")).map_err(|e| err(format!("{key}.pattern"), format!("invalid regex: {e}")))?)
                }
                (None, None) => return Err(err(format!("{key}.pattern"), "custom types need a `pattern`")),
                _ => None,
            };
            types[ty.0 as usize] = Some(TypeInfo {
                ty,
                name: name.clone(),
                max_per_profile: max,
                priority,
                blocked: sec.blocked.clone(),
                blocked_regex,
                pattern,
                case: sec.case.unwrap_or_default(),
            });
        }
        for (name, rule) in &traits.rules {
            if *rule == Survivorship::SourcePriority && traits.source_priority.is_empty() {
                return Err(err(format!("traits.rules.{name}"), "`source-priority` needs `traits.source-priority` to list sources"));
            }
        }
        if traits.default == Survivorship::SourcePriority && traits.source_priority.is_empty() {
            return Err(err("traits.default", "`source-priority` needs `traits.source-priority` to list sources"));
        }
        let mut cfg = Self {
            types,
            default_region: region,
            max_identifiers: id.max_identifiers,
            shared_threshold: id.shared_threshold,
            max_identifiers_per_event: id.max_identifiers_per_event as usize,
            traits: traits.clone(),
        };
        cfg.normalize_blocked()?;
        Ok(cfg)
    }

    /// Per-type blocked values are compared with normalised identifiers,
    /// so they are normalised here as values of their type are
    /// (`NoReply@Example.com` blocks `noreply@example.com`, `(415)
    /// 555-0100` blocks `+14155550100`). One that is not a valid value of
    /// its type could never block anything and is refused; one the
    /// built-in list blocks already is left out.
    fn normalize_blocked(&mut self) -> Result<(), ConfigError> {
        if self.types.iter().flatten().all(|t| t.blocked.is_empty()) {
            return Ok(());
        }
        let mut plain = self.clone();
        for t in plain.types.iter_mut().flatten() {
            t.blocked.clear();
            t.blocked_regex.clear();
        }
        let mut n = crate::normalize::Normalizer::new(std::sync::Arc::new(plain));
        for t in self.types.iter_mut().flatten() {
            let mut normal = Vec::with_capacity(t.blocked.len());
            for (i, b) in t.blocked.iter().enumerate() {
                match n.normalize(t.ty, b) {
                    Ok(k) => normal.push(k.value().to_string()),
                    Err(crate::normalize::DropReason::Blocked) => {}
                    Err(r) => {
                        return Err(err(
                            format!("identity.types.{}.blocked[{i}]", t.name),
                            format!("not a valid `{}` value ({}), so it would never match", t.name, r.as_str()),
                        ))
                    }
                }
            }
            t.blocked = normal;
        }
        Ok(())
    }

    pub fn type_info(&self, ty: IdentType) -> Option<&TypeInfo> {
        self.types[ty.0 as usize].as_ref()
    }

    /// The custom types and their numbers (tags), in number order.
    pub fn custom_types(&self) -> impl Iterator<Item = (IdentType, &str)> {
        self.types.iter().flatten().filter(|t| t.ty.0 >= IdentType::FIRST_CUSTOM).map(|t| (t.ty, t.name.as_str()))
    }

    /// Gives the custom types a state recorded (number, name) that this
    /// config does not declare their names, so that a query run without
    /// the config that wrote the state shows them by name, not as
    /// `unknown`. Their other settings are the custom defaults and they
    /// take any value; a number or name this config uses is left alone.
    pub fn adopt_type_names(&mut self, recorded: &[(u8, String)]) {
        let any = Regex::new("^(?s:.+)$").ok();
        for (n, name) in recorded {
            let ty = IdentType(*n);
            if ty.0 < IdentType::FIRST_CUSTOM || self.types[ty.0 as usize].is_some() || self.type_by_name(name).is_some() {
                continue;
            }
            let (max_per_profile, priority) = built_in_defaults(ty);
            self.types[ty.0 as usize] = Some(TypeInfo {
                ty,
                name: name.clone(),
                max_per_profile,
                priority,
                blocked: Vec::new(),
                blocked_regex: Vec::new(),
                pattern: any.clone(),
                case: CaseRule::Preserve,
            });
        }
    }

    /// Looks a type up by its configured name.
    pub fn type_by_name(&self, name: &str) -> Option<IdentType> {
        self.types.iter().flatten().find(|t| t.name == name).map(|t| t.ty)
    }

    pub fn type_name(&self, ty: IdentType) -> &str {
        self.type_info(ty).map_or("unknown", |t| t.name.as_str())
    }

    pub fn priority(&self, ty: IdentType) -> u32 {
        self.type_info(ty).map_or(u32::MAX, |t| t.priority)
    }

    pub fn max_per_profile(&self, ty: IdentType) -> u32 {
        self.type_info(ty).map_or(0, |t| t.max_per_profile)
    }

    pub fn survivorship(&self, trait_name: &str) -> Survivorship {
        self.traits.rules.get(trait_name).copied().unwrap_or(self.traits.default)
    }

    /// Rank of a source for `source-priority` (lower is more trusted;
    /// unlisted sources rank after every listed one).
    pub fn source_rank(&self, source: &str) -> usize {
        self.traits.source_priority.iter().position(|s| s == source).unwrap_or(usize::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_follow_the_design_table() {
        let c = CoreConfig::default();
        assert_eq!(c.max_per_profile(IdentType::USER_ID), 1);
        assert_eq!(c.priority(IdentType::USER_ID), 1);
        assert_eq!(c.max_per_profile(IdentType::EMAIL), 5);
        assert_eq!(c.max_per_profile(IdentType::ANONYMOUS_ID), 1000);
        assert_eq!(c.priority(IdentType::ANONYMOUS_ID), 7);
        assert_eq!(c.type_by_name("phone"), Some(IdentType::PHONE));
    }

    #[test]
    fn custom_type_needs_a_valid_pattern_and_errors_name_the_key() {
        let mut id = IdentitySection::default();
        id.types.insert("member_no".into(), TypeSection { priority: Some(2), ..Default::default() });
        let e = CoreConfig::build(&id, &TraitsSection::default()).unwrap_err();
        assert_eq!(e.key, "identity.types.member_no.pattern");
        id.types.get_mut("member_no").unwrap().pattern = Some("M[0-9".into());
        let e = CoreConfig::build(&id, &TraitsSection::default()).unwrap_err();
        assert_eq!(e.key, "identity.types.member_no.pattern");
        assert!(e.to_string().contains("invalid regex"));
        id.types.get_mut("member_no").unwrap().pattern = Some("M[0-9]{3}".into());
        let c = CoreConfig::build(&id, &TraitsSection::default()).unwrap();
        let t = c.type_by_name("member_no").unwrap();
        assert_eq!(t.0, IdentType::FIRST_CUSTOM);
        assert_eq!(c.priority(t), 2);
    }

    #[test]
    fn blocked_values_are_normalised_like_identifiers_and_invalid_ones_refused() {
        use crate::normalize::{DropReason, Normalizer};
        let mut id = IdentitySection::default();
        id.types.insert("email".into(), TypeSection { blocked: vec![" NoReply@Example.com".into()], ..Default::default() });
        id.types.insert("phone".into(), TypeSection { blocked: vec!["(415) 555-0100".into(), "call me".into()], ..Default::default() });
        let e = CoreConfig::build(&id, &TraitsSection::default()).unwrap_err();
        assert_eq!(e.key, "identity.types.phone.blocked[1]", "not a phone: {e}");
        id.types.insert("phone".into(), TypeSection { blocked: vec!["(415) 555-0100".into()], ..Default::default() });
        let mut n = Normalizer::new(std::sync::Arc::new(CoreConfig::build(&id, &TraitsSection::default()).unwrap()));
        assert_eq!(n.normalize_named("email", "noreply@example.com"), Err(DropReason::Blocked));
        assert_eq!(n.normalize_named("phone", "+14155550100"), Err(DropReason::Blocked));
        assert_eq!(n.normalize_named("phone", "415.555.0100"), Err(DropReason::Blocked));
        assert!(n.normalize_named("phone", "+14155550101").is_ok());
        // Blocked by the built-in list already: accepted, nothing to add.
        id.types.insert("email".into(), TypeSection { blocked: vec!["Test@Test.com".into()], ..Default::default() });
        assert!(CoreConfig::build(&id, &TraitsSection::default()).is_ok());
    }

    #[test]
    fn bad_region_and_zero_limits_are_refused() {
        let id = IdentitySection { default_region: "XX".into(), ..Default::default() };
        assert_eq!(CoreConfig::build(&id, &TraitsSection::default()).unwrap_err().key, "identity.default-region");
        let mut id = IdentitySection::default();
        id.types.insert("email".into(), TypeSection { max_per_profile: Some(0), ..Default::default() });
        assert_eq!(CoreConfig::build(&id, &TraitsSection::default()).unwrap_err().key, "identity.types.email.max-per-profile");
    }
}
