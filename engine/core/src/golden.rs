//! Rendering the golden profile (DESIGN §6) from a live record.
//!
//! Written by hand into a `String`: it runs for every changed profile of
//! every batch. Identifiers are listed by type priority, then value, so the
//! output does not depend on the order links happened in.

use crate::config::CoreConfig;
use crate::fragment::rollup;
use crate::profile_id::ProfileId;
use crate::record::{IdentEntry, LiveProfile, ProfileRecord};
use crate::time::{push_rfc3339, rfc3339_ascii, Millis};
use smallvec::SmallVec;
use std::fmt::Write;

fn push_str(out: &mut String, s: &str) {
    out.push('"');
    if !s.bytes().any(|b| b < 0x20 || b == b'"' || b == b'\\') {
        out.push_str(s);
        out.push('"');
        return;
    }
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Renders timestamps, reusing the last one's text: most of a profile's
/// timestamps are the same instant (a profile seen once has six).
#[derive(Default)]
struct Stamps {
    last: Option<(Millis, [u8; 24])>,
}

impl Stamps {
    fn push(&mut self, out: &mut String, ms: Millis) {
        let text = match self.last {
            Some((at, text)) if at == ms => Some(text),
            _ => {
                let text = rfc3339_ascii(ms);
                self.last = text.map(|t| (ms, t));
                text
            }
        };
        match text {
            // Digits and separators only.
            Some(t) => out.push_str(std::str::from_utf8(&t).unwrap_or_default()),
            None => push_rfc3339(out, ms),
        }
    }
}

/// A count in decimal (what `{}` writes, without the formatter).
fn push_u64(out: &mut String, n: u64) {
    let mut digits = [0u8; 20];
    // ASCII digits: always UTF-8.
    out.push_str(std::str::from_utf8(crate::decimal(n, &mut digits)).unwrap_or_default());
}

fn push_f64(out: &mut String, f: f64) {
    if f.is_finite() {
        // Round to a cent-safe precision so sums print the same everywhere.
        let r = (f * 1e6).round() / 1e6;
        let _ = write!(out, "{r:?}");
    } else {
        out.push_str("null");
    }
}

/// The golden profile as one JSON line (no trailing newline).
pub fn render(id: ProfileId, lp: &LiveProfile, cfg: &CoreConfig) -> String {
    let mut out = String::with_capacity(1024);
    render_into(&mut out, id, lp, cfg);
    out
}

/// [`render`], appended to `out`: a caller rendering many profiles keeps
/// one buffer (a fresh string per profile grew once or twice, then was
/// copied into the output buffer and freed).
pub fn render_into(out: &mut String, id: ProfileId, lp: &LiveProfile, cfg: &CoreConfig) {
    let mut stamps = Stamps::default();
    let r = rollup(&lp.fragments, cfg);
    out.push_str("{\"profile_id\":\"");
    id.push_to(out);
    out.push_str("\",\"version\":");
    push_u64(out, lp.version);
    out.push_str(",\"identifiers\":[");
    let mut idents: SmallVec<[&IdentEntry; 8]> = lp.idents.iter().collect();
    idents.sort_by(|a, b| (cfg.priority(a.key.ty()), &a.key).cmp(&(cfg.priority(b.key.ty()), &b.key)));
    for (i, e) in idents.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str("{\"type\":");
        push_str(out, cfg.type_name(e.key.ty()));
        out.push_str(",\"value\":");
        push_str(out, e.key.value());
        out.push_str(",\"first_seen\":\"");
        stamps.push(out, e.first_seen);
        out.push_str("\",\"last_seen\":\"");
        stamps.push(out, e.last_seen);
        out.push_str("\"}");
    }
    out.push_str("],\"traits\":{");
    for (i, t) in r.traits.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_str(out, &t.name);
        out.push(':');
        out.push_str(&t.value);
    }
    let m = &r.metrics;
    let seen = |ms: i64, out: &mut String, stamps: &mut Stamps| {
        if ms == i64::MAX || ms == i64::MIN {
            out.push_str("null");
        } else {
            out.push('"');
            stamps.push(out, ms);
            out.push('"');
        }
    };
    out.push_str("},\"metrics\":{\"event_count\":");
    push_u64(out, m.event_count);
    out.push_str(",\"first_seen\":");
    seen(m.first_seen, out, &mut stamps);
    out.push_str(",\"last_seen\":");
    seen(m.last_seen, out, &mut stamps);
    out.push_str(",\"order_count\":");
    push_u64(out, m.order_count);
    out.push_str(",\"revenue_total\":");
    push_f64(out, m.revenue_total);
    out.push_str(",\"sources\":{");
    for (i, (s, n)) in m.sources.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_str(out, s);
        out.push(':');
        push_u64(out, *n);
    }
    out.push_str("}},\"consent\":{");
    for (i, c) in r.consent.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_str(out, &c.purpose);
        let _ = write!(out, ":{{\"granted\":{},\"at\":\"", c.granted);
        stamps.push(out, c.at);
        out.push_str("\",\"policy_version\":");
        match &c.policy_version {
            Some(v) => push_str(out, v),
            None => out.push_str("null"),
        }
        out.push_str(",\"jurisdiction\":");
        match &c.jurisdiction {
            Some(v) => push_str(out, v),
            None => out.push_str("null"),
        }
        out.push_str(",\"source\":");
        push_str(out, &c.source);
        out.push('}');
    }
    out.push_str("},\"merged_from\":[");
    for (i, m) in lp.merged_from.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push('"');
        m.push_to(out);
        out.push('"');
    }
    out.push_str("],\"updated_at\":\"");
    stamps.push(out, lp.updated);
    out.push_str("\"}");
}

/// What the profiles stream says about a changed profile record.
#[derive(Debug, Clone, PartialEq)]
pub enum ProfileOutput {
    /// The golden profile, one JSON line.
    Profile(String),
    /// No longer a profile: `"merged"` (now an alias) or `"emptied"` (every
    /// identifier detached).
    Gone(&'static str),
}

/// What a changed record is on the profiles stream: a live profile to
/// render, a profile gone (why: `"merged"`, now an alias, or `"emptied"`,
/// every identifier detached), or `None` for one that is not (yet) a
/// profile (a placeholder or nothing).
fn standing(rec: Option<&ProfileRecord>) -> Option<Result<&LiveProfile, &'static str>> {
    match rec? {
        ProfileRecord::Live(lp) if !lp.idents.is_empty() => Some(Ok(lp)),
        ProfileRecord::Live(_) => Some(Err("emptied")),
        ProfileRecord::Alias(_) => Some(Err("merged")),
        ProfileRecord::Placeholder(_) => None,
    }
}

/// The output for a changed record; `None` for one that is not (yet) a
/// profile (a placeholder or nothing).
pub fn output(id: ProfileId, rec: Option<&ProfileRecord>, cfg: &CoreConfig) -> Option<ProfileOutput> {
    Some(match standing(rec)? {
        Ok(lp) => ProfileOutput::Profile(render(id, lp, cfg)),
        Err(reason) => ProfileOutput::Gone(reason),
    })
}

/// [`output`]'s line appended to `out`: the golden profile, or the
/// tombstone of one merged away or emptied. `false` (nothing appended) for
/// a record that is not (yet) a profile.
pub fn output_into(out: &mut String, id: ProfileId, rec: Option<&ProfileRecord>, cfg: &CoreConfig) -> bool {
    match standing(rec) {
        Some(Ok(lp)) => render_into(out, id, lp, cfg),
        Some(Err(reason)) => out.push_str(&tombstone(id, reason)),
        None => return false,
    }
    true
}

/// A tombstone line for a profile merged away or emptied.
pub fn tombstone(id: ProfileId, reason: &str) -> String {
    format!("{{\"profile_id\":\"{id}\",\"tombstone\":true,\"reason\":\"{reason}\"}}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Touchpoint;
    use crate::ident::{IdentKey, IdentType};

    #[test]
    fn renders_valid_json_with_the_contract_fields() {
        let cfg = CoreConfig::default();
        let k = IdentKey::new(IdentType::EMAIL, "a\"b@c.de");
        let mut lp = LiveProfile::new(k.clone(), 1_000);
        let ev = Touchpoint {
            event_id: "e1".into(),
            ts: 1_000,
            source: "web".into(),
            idents: vec![k.clone()],
            traits: vec![("first_name".into(), "\"Ann\"".into())],
            revenue: Some(42.5),
            is_order: true,
            consent: vec![],
        };
        lp.fragment_mut(&k).add_event(&ev, &cfg);
        let id = ProfileId::for_new(1_000, &k);
        let s = render(id, &lp, &cfg);
        let v: serde_json::Value = serde_json::from_str(&s).unwrap();
        assert_eq!(v["identifiers"][0]["value"], "a\"b@c.de");
        assert_eq!(v["traits"]["first_name"], "Ann");
        assert_eq!(v["metrics"]["event_count"], 1);
        assert_eq!(v["metrics"]["revenue_total"], 42.5);
        assert_eq!(v["metrics"]["order_count"], 1);
        assert_eq!(v["profile_id"], id.to_string());
        let t: serde_json::Value = serde_json::from_str(&tombstone(id, "merged")).unwrap();
        assert_eq!(t["tombstone"], true);
    }

    #[test]
    fn escapes_and_timestamps_render_exactly() {
        let cfg = CoreConfig::default();
        let odd = "tab\there \\ \"q\" \u{1} caf\u{e9} \u{1F600}";
        let k = IdentKey::new(IdentType::USER_ID, odd);
        let mut lp = LiveProfile::new(k.clone(), 1_000);
        let ev = |ts| Touchpoint {
            event_id: "e".into(),
            ts,
            source: "web".into(),
            idents: vec![k.clone()],
            traits: vec![],
            revenue: None,
            is_order: false,
            consent: vec![],
        };
        lp.fragment_mut(&k).add_event(&ev(1_000), &cfg);
        lp.fragment_mut(&k).add_event(&ev(86_400_000), &cfg);
        lp.idents[0].last_seen = 86_400_000;
        lp.updated = 253_402_300_800_000; // year 10000: no four-digit form
        let s = render(ProfileId([7; 16]), &lp, &cfg);
        assert!(s.contains(r#""value":"tab\there \\ \"q\" \u0001 café 😀""#), "{s}");
        let v: serde_json::Value = serde_json::from_str(&s).unwrap();
        assert_eq!(v["identifiers"][0]["value"], odd);
        assert_eq!(v["identifiers"][0]["first_seen"], "1970-01-01T00:00:01.000Z");
        assert_eq!(v["identifiers"][0]["last_seen"], "1970-01-02T00:00:00.000Z");
        assert_eq!(v["metrics"]["first_seen"], "1970-01-01T00:00:01.000Z");
        assert_eq!(v["metrics"]["last_seen"], "1970-01-02T00:00:00.000Z");
        assert_eq!(v["updated_at"], "10000-01-01T00:00:00.000Z");
    }

    #[test]
    fn numbers_and_ids_render_as_their_display_forms() {
        for n in [0, 7, 10, 99, 1_000_000, u64::MAX - 1, u64::MAX] {
            let mut s = String::from("x");
            push_u64(&mut s, n);
            assert_eq!(s, format!("x{n}"));
        }
        let id = ProfileId([0xA5; 16]);
        let mut s = String::new();
        id.push_to(&mut s);
        assert_eq!(s, id.to_string());
    }

    #[test]
    fn output_tells_profiles_from_gone_ones() {
        let cfg = CoreConfig::default();
        let id = ProfileId([1; 16]);
        assert_eq!(output(id, Some(&ProfileRecord::Alias(ProfileId([0; 16]))), &cfg), Some(ProfileOutput::Gone("merged")));
        assert_eq!(output(id, Some(&ProfileRecord::Placeholder(Vec::new())), &cfg), None);
        assert_eq!(output(id, None, &cfg), None);
        let mut line = String::from("x");
        assert!(output_into(&mut line, id, Some(&ProfileRecord::Alias(ProfileId([0; 16]))), &cfg));
        assert_eq!(line, format!("x{}", tombstone(id, "merged")));
        assert!(!output_into(&mut line, id, Some(&ProfileRecord::Placeholder(Vec::new())), &cfg));
        assert!(!output_into(&mut line, id, None, &cfg));
        let lp = LiveProfile::new(IdentKey::new(IdentType::EMAIL, "a@b.co"), 1_000);
        line.clear();
        assert!(output_into(&mut line, id, Some(&ProfileRecord::Live(Box::new(lp.clone()))), &cfg));
        assert_eq!(line, render(id, &lp, &cfg));
    }
}
