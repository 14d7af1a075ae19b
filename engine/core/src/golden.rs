//! Rendering the golden profile (DESIGN §6) from a live record.
//!
//! Written by hand into a byte buffer: it runs for every changed profile
//! of every batch, and every piece it appends is UTF-8 already (text from
//! the record, ASCII digits and punctuation), so nothing is checked
//! again on the way. Identifiers are listed by type priority, then value,
//! so the output does not depend on the order links happened in.

use crate::config::CoreConfig;
use crate::fragment::rollup;
use crate::profile_id::ProfileId;
use crate::record::{IdentEntry, LiveProfile, ProfileRecord};
use crate::time::{format_rfc3339, rfc3339_ascii, Millis};
use smallvec::SmallVec;
use std::io::Write;

fn push_str(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    if !s.bytes().any(|b| b < 0x20 || b == b'"' || b == b'\\') {
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
        return;
    }
    for c in s.chars() {
        match c {
            '"' => out.extend_from_slice(b"\\\""),
            '\\' => out.extend_from_slice(b"\\\\"),
            '\n' => out.extend_from_slice(b"\\n"),
            '\r' => out.extend_from_slice(b"\\r"),
            '\t' => out.extend_from_slice(b"\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes()),
        }
    }
    out.push(b'"');
}

/// Renders timestamps, reusing the last one's text: most of a profile's
/// timestamps are the same instant (a profile seen once has six).
#[derive(Default)]
struct Stamps {
    last: Option<(Millis, [u8; 24])>,
}

impl Stamps {
    fn push(&mut self, out: &mut Vec<u8>, ms: Millis) {
        let text = match self.last {
            Some((at, text)) if at == ms => Some(text),
            _ => {
                let text = rfc3339_ascii(ms);
                self.last = text.map(|t| (ms, t));
                text
            }
        };
        match text {
            Some(t) => out.extend_from_slice(&t),
            None => out.extend_from_slice(format_rfc3339(ms).as_bytes()),
        }
    }
}

/// A count in decimal (what `{}` writes, without the formatter).
fn push_u64(out: &mut Vec<u8>, n: u64) {
    let mut digits = [0u8; 20];
    out.extend_from_slice(crate::decimal(n, &mut digits));
}

fn push_f64(out: &mut Vec<u8>, f: f64) {
    if f.is_finite() {
        // Round to a cent-safe precision so sums print the same everywhere.
        let r = (f * 1e6).round() / 1e6;
        let _ = write!(out, "{r:?}");
    } else {
        out.extend_from_slice(b"null");
    }
}

/// The golden profile as one JSON line (no trailing newline).
pub fn render(id: ProfileId, lp: &LiveProfile, cfg: &CoreConfig) -> String {
    let mut out = Vec::with_capacity(1024);
    render_into(&mut out, id, lp, cfg);
    // Every piece appended is UTF-8 (see the module's comment).
    String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// [`render`], appended to `out`: a caller rendering many profiles keeps
/// one buffer (a fresh string per profile grew once or twice, then was
/// copied into the output buffer and freed).
pub fn render_into(out: &mut Vec<u8>, id: ProfileId, lp: &LiveProfile, cfg: &CoreConfig) {
    let mut stamps = Stamps::default();
    let r = rollup(&lp.fragments, cfg);
    out.extend_from_slice(b"{\"profile_id\":\"");
    out.extend_from_slice(&id.text());
    out.extend_from_slice(b"\",\"version\":");
    push_u64(out, lp.version);
    out.extend_from_slice(b",\"identifiers\":[");
    let mut idents: SmallVec<[&IdentEntry; 8]> = lp.idents.iter().collect();
    idents.sort_by(|a, b| (cfg.priority(a.key.ty()), &a.key).cmp(&(cfg.priority(b.key.ty()), &b.key)));
    for (i, e) in idents.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"type\":");
        push_str(out, cfg.type_name(e.key.ty()));
        out.extend_from_slice(b",\"value\":");
        push_str(out, e.key.value());
        out.extend_from_slice(b",\"first_seen\":\"");
        stamps.push(out, e.first_seen);
        out.extend_from_slice(b"\",\"last_seen\":\"");
        stamps.push(out, e.last_seen);
        out.extend_from_slice(b"\"}");
    }
    out.extend_from_slice(b"],\"traits\":{");
    for (i, t) in r.traits.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        push_str(out, &t.name);
        out.push(b':');
        out.extend_from_slice(t.value.as_bytes());
    }
    let m = &r.metrics;
    let seen = |ms: i64, out: &mut Vec<u8>, stamps: &mut Stamps| {
        if ms == i64::MAX || ms == i64::MIN {
            out.extend_from_slice(b"null");
        } else {
            out.push(b'"');
            stamps.push(out, ms);
            out.push(b'"');
        }
    };
    out.extend_from_slice(b"},\"metrics\":{\"event_count\":");
    push_u64(out, m.event_count);
    out.extend_from_slice(b",\"first_seen\":");
    seen(m.first_seen, out, &mut stamps);
    out.extend_from_slice(b",\"last_seen\":");
    seen(m.last_seen, out, &mut stamps);
    out.extend_from_slice(b",\"order_count\":");
    push_u64(out, m.order_count);
    out.extend_from_slice(b",\"revenue_total\":");
    push_f64(out, m.revenue_total);
    out.extend_from_slice(b",\"sources\":{");
    for (i, (s, n)) in m.sources.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        push_str(out, s);
        out.push(b':');
        push_u64(out, *n);
    }
    out.extend_from_slice(b"}},\"consent\":{");
    for (i, c) in r.consent.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        push_str(out, &c.purpose);
        let _ = write!(out, ":{{\"granted\":{},\"at\":\"", c.granted);
        stamps.push(out, c.at);
        out.extend_from_slice(b"\",\"policy_version\":");
        match &c.policy_version {
            Some(v) => push_str(out, v),
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(b",\"jurisdiction\":");
        match &c.jurisdiction {
            Some(v) => push_str(out, v),
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(b",\"source\":");
        push_str(out, &c.source);
        out.push(b'}');
    }
    out.extend_from_slice(b"},\"merged_from\":[");
    for (i, m) in lp.merged_from.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.push(b'"');
        out.extend_from_slice(&m.text());
        out.push(b'"');
    }
    out.extend_from_slice(b"],\"updated_at\":\"");
    stamps.push(out, lp.updated);
    out.extend_from_slice(b"\"}");
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
pub fn output_into(out: &mut Vec<u8>, id: ProfileId, rec: Option<&ProfileRecord>, cfg: &CoreConfig) -> bool {
    match standing(rec) {
        Some(Ok(lp)) => render_into(out, id, lp, cfg),
        Some(Err(reason)) => out.extend_from_slice(tombstone(id, reason).as_bytes()),
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
            let mut s = b"x".to_vec();
            push_u64(&mut s, n);
            assert_eq!(s, format!("x{n}").into_bytes());
        }
        let id = ProfileId([0xA5; 16]);
        assert_eq!(id.text().as_slice(), id.to_string().as_bytes());
    }

    #[test]
    fn output_tells_profiles_from_gone_ones() {
        let cfg = CoreConfig::default();
        let id = ProfileId([1; 16]);
        assert_eq!(output(id, Some(&ProfileRecord::Alias(ProfileId([0; 16]))), &cfg), Some(ProfileOutput::Gone("merged")));
        assert_eq!(output(id, Some(&ProfileRecord::Placeholder(Vec::new())), &cfg), None);
        assert_eq!(output(id, None, &cfg), None);
        let mut line = b"x".to_vec();
        assert!(output_into(&mut line, id, Some(&ProfileRecord::Alias(ProfileId([0; 16]))), &cfg));
        assert_eq!(line, format!("x{}", tombstone(id, "merged")).into_bytes());
        assert!(!output_into(&mut line, id, Some(&ProfileRecord::Placeholder(Vec::new())), &cfg));
        assert!(!output_into(&mut line, id, None, &cfg));
        let lp = LiveProfile::new(IdentKey::new(IdentType::EMAIL, "a@b.co"), 1_000);
        line.clear();
        assert!(output_into(&mut line, id, Some(&ProfileRecord::Live(Box::new(lp.clone()))), &cfg));
        assert_eq!(line, render(id, &lp, &cfg).into_bytes());
    }
}
