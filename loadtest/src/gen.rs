//! Synthetic persons and their touchpoints, with ground truth.
//!
//! Persons have logins, emails, phones, loyalty cards and several devices
//! (browser cookies, app device IDs, advertising IDs). Events follow
//! journeys: anonymous browsing, sign-ins, cross-device use, store purchases
//! with a loyalty card, CRM updates. The data is made hard on purpose:
//! formatting variants (case, spacing, phone formats), junk values, shared
//! store kiosks and family tablets, family emails, and out-of-order arrival.
//!
//! The truth file lists each person's identifiers (normalised as idgraph
//! normalises them) and the shared identifiers, which belong to no person
//! and are left out of scoring.

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::io::Write;

#[derive(Debug, Clone)]
pub struct GenConfig {
    pub persons: u64,
    pub events: u64,
    pub seed: u64,
    pub segment: bool,
    /// Fraction of events carrying a junk identifier value.
    pub junk_rate: f64,
    /// Fraction of events delivered late (out of order).
    pub late_rate: f64,
    /// Store kiosks (each used by many persons who sign in).
    pub kiosks: u64,
    /// Fraction of persons living in a family that shares a tablet.
    pub family_rate: f64,
}

impl Default for GenConfig {
    fn default() -> Self {
        Self { persons: 1000, events: 10_000, seed: 1, segment: false, junk_rate: 0.02, late_rate: 0.05, kiosks: 5, family_rate: 0.1 }
    }
}

#[derive(Debug, Clone)]
struct Device {
    anon: String,
    device_id: Option<String>,
    ad_id: Option<String>,
    shared: bool,
}

#[derive(Debug, Clone)]
struct Person {
    user_id: Option<String>,
    emails: Vec<String>,
    phone: Option<String>,
    loyalty: Option<String>,
    devices: Vec<usize>,
    family_email: Option<String>,
    /// Own (non-shared) identifiers, normalised, as `type:value`.
    ids: Vec<String>,
    /// Union-find over `ids` by observed co-occurrence, and what was seen.
    parent: Vec<u8>,
    seen: Vec<bool>,
}

impl Person {
    fn local(&self, key: &str) -> Option<usize> {
        self.ids.iter().position(|k| k == key)
    }

    fn find(&mut self, mut i: usize) -> usize {
        while self.parent[i] as usize != i {
            i = self.parent[i] as usize;
        }
        i
    }

    fn observe(&mut self, locals: &[usize]) {
        for &l in locals {
            self.seen[l] = true;
        }
        for w in locals.windows(2) {
            let (a, b) = (self.find(w[0]), self.find(w[1]));
            if a != b {
                self.parent[a.max(b)] = a.min(b) as u8;
            }
        }
    }
}

fn uuid(rng: &mut ChaCha8Rng) -> String {
    let b: [u8; 16] = rng.gen();
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!("{}-{}-4{}-a{}-{}", &h[0..8], &h[8..12], &h[13..16], &h[17..20], &h[20..32])
}

/// A valid US number in E.164, unique per person (up to 39M persons), so
/// that two persons never share a phone by accident.
fn phone(person: u64) -> String {
    let area = ["415", "628", "650", "212", "646"][(person % 5) as usize];
    let rest = person / 5;
    format!("+1{area}{}{:04}", 201 + (rest / 10_000) % 789, rest % 10_000)
}

/// A formatting variant of an E.164 US number.
fn phone_variant(rng: &mut ChaCha8Rng, e164: &str) -> String {
    let d = &e164[2..];
    match rng.gen_range(0..5) {
        0 => e164.to_string(),
        1 => format!("+1 ({}) {}-{}", &d[0..3], &d[3..6], &d[6..]),
        2 => format!("{}.{}.{}", &d[0..3], &d[3..6], &d[6..]),
        3 => format!("({}) {} {}", &d[0..3], &d[3..6], &d[6..]),
        _ => format!("1-{}-{}-{}", &d[0..3], &d[3..6], &d[6..]),
    }
}

fn email_variant(rng: &mut ChaCha8Rng, e: &str) -> String {
    match rng.gen_range(0..4) {
        0 => e.to_string(),
        1 => e.to_uppercase(),
        2 => format!("  {e} "),
        _ => {
            let mut c = e.chars();
            c.next().map(|f| f.to_uppercase().collect::<String>() + c.as_str()).unwrap_or_default()
        }
    }
}

const JUNK: [(&str, &str); 8] = [
    ("email", "test@test.com"),
    ("email", "not-an-email"),
    ("user_id", "null"),
    ("user_id", "undefined"),
    ("anonymous_id", "0"),
    ("device_id", "00000000-0000-0000-0000-000000000000"),
    ("phone", "12345"),
    ("loyalty_id", "none"),
];

/// One touchpoint before formatting.
#[derive(Debug, Clone)]
pub struct Ev {
    pub ts: i64,
    pub kind: &'static str,
    pub source: &'static str,
    /// (type, raw value as sent).
    pub ids: Vec<(&'static str, String)>,
    pub revenue: Option<f64>,
    pub first_name: Option<String>,
    pub consent: Option<bool>,
}

#[derive(Debug)]
pub struct Generator {
    cfg: GenConfig,
    rng: ChaCha8Rng,
    persons: Vec<Person>,
    devices: Vec<Device>,
    kiosk_devices: Vec<usize>,
    start: i64,
}

impl Generator {
    pub fn new(cfg: GenConfig) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
        let mut persons = Vec::with_capacity(cfg.persons as usize);
        let mut devices: Vec<Device> = Vec::new();
        for i in 0..cfg.persons {
            let user_id = rng.gen_bool(0.7).then(|| format!("u{i:09}"));
            let n_emails = if rng.gen_bool(0.8) { rng.gen_range(1..=2) } else { 0 };
            let emails = (0..n_emails).map(|j| format!("p{i}.{j}@{}", ["example.com", "mail.test", "post.example"][j % 3])).collect();
            let phone = rng.gen_bool(0.5).then(|| phone(i));
            let loyalty = rng.gen_bool(0.3).then(|| format!("L{i:010}"));
            let n_dev = rng.gen_range(1..=3);
            let mut devs = Vec::new();
            for d in 0..n_dev {
                let mobile = d > 0 || rng.gen_bool(0.3);
                devices.push(Device {
                    anon: uuid(&mut rng),
                    device_id: mobile.then(|| format!("dev-{i}-{d}")),
                    ad_id: (mobile && rng.gen_bool(0.6)).then(|| uuid(&mut rng)),
                    shared: false,
                });
                devs.push(devices.len() - 1);
            }
            persons.push(Person {
                user_id,
                emails,
                phone,
                loyalty,
                devices: devs,
                family_email: None,
                ids: Vec::new(),
                parent: Vec::new(),
                seen: Vec::new(),
            });
        }
        // Families: 2-4 persons share a tablet and a family email; each
        // member signs in with their own login.
        let mut i = 0usize;
        while i + 4 < persons.len() {
            if rng.gen_bool(cfg.family_rate / 3.0) {
                let size = rng.gen_range(2..=4);
                devices.push(Device { anon: uuid(&mut rng), device_id: Some(format!("tablet-{i}")), ad_id: None, shared: true });
                let tablet = devices.len() - 1;
                let fam = format!("family{i}@home.example");
                for (j, p) in persons[i..i + size].iter_mut().enumerate() {
                    if p.user_id.is_none() {
                        p.user_id = Some(format!("fu{:09}", i + j));
                    }
                    p.devices.push(tablet);
                    p.family_email = Some(fam.clone());
                }
                i += size;
            } else {
                i += 1;
            }
        }
        let mut kiosk_devices = Vec::new();
        for k in 0..cfg.kiosks {
            devices.push(Device { anon: format!("kiosk-browser-{k}"), device_id: Some(format!("kiosk-{k}")), ad_id: None, shared: true });
            kiosk_devices.push(devices.len() - 1);
        }
        for p in &mut persons {
            let mut ids = Vec::new();
            if let Some(u) = &p.user_id {
                ids.push(format!("user_id:{u}"));
            }
            for e in &p.emails {
                ids.push(format!("email:{e}"));
            }
            if let Some(ph) = &p.phone {
                ids.push(format!("phone:{ph}"));
            }
            if let Some(l) = &p.loyalty {
                ids.push(format!("loyalty_id:{l}"));
            }
            for &d in &p.devices {
                let d = &devices[d];
                if d.shared {
                    continue;
                }
                ids.push(format!("anonymous_id:{}", d.anon));
                if let Some(x) = &d.device_id {
                    ids.push(format!("device_id:{x}"));
                }
                if let Some(x) = &d.ad_id {
                    ids.push(format!("advertising_id:{x}"));
                }
            }
            p.parent = (0..ids.len() as u8).collect();
            p.seen = vec![false; ids.len()];
            p.ids = ids;
        }
        Self { cfg, rng, persons, devices, kiosk_devices, start: 1_767_225_600_000 }
    }

    /// Writes the truth file (call after [`Self::write_events`]): one line
    /// per person with its observed identifiers grouped by the evidence
    /// that joins them, then one line listing the shared identifiers.
    pub fn write_truth(&mut self, w: &mut dyn Write) -> std::io::Result<()> {
        let mut shared: Vec<String> = Vec::new();
        for d in self.devices.iter().filter(|d| d.shared) {
            shared.push(format!("anonymous_id:{}", d.anon));
            if let Some(x) = &d.device_id {
                shared.push(format!("device_id:{x}"));
            }
        }
        for i in 0..self.persons.len() {
            let p = &mut self.persons[i];
            let mut groups: Vec<(usize, Vec<String>)> = Vec::new();
            for l in 0..p.ids.len() {
                if !p.seen[l] {
                    continue;
                }
                let r = p.find(l);
                match groups.iter_mut().find(|(g, _)| *g == r) {
                    Some((_, v)) => v.push(p.ids[l].clone()),
                    None => groups.push((r, vec![p.ids[l].clone()])),
                }
            }
            if let Some(f) = &p.family_email {
                let k = format!("email:{f}");
                if !shared.contains(&k) {
                    shared.push(k);
                }
            }
            if groups.is_empty() {
                continue;
            }
            let clusters: Vec<Vec<String>> = groups.into_iter().map(|(_, v)| v).collect();
            writeln!(w, "{}", serde_json::json!({"person": i, "clusters": clusters}))?;
        }
        writeln!(w, "{}", serde_json::json!({"shared": shared}))
    }

    fn event(&mut self, n: u64) -> Ev {
        let pi = self.rng.gen_range(0..self.persons.len());
        let ts = self.start + (n as f64 / self.cfg.events.max(1) as f64 * 90.0 * 86_400_000.0) as i64 + self.rng.gen_range(0..60_000);
        let p = self.persons[pi].clone();
        let rng = &mut self.rng;
        let own = |t: &str, v: &str| p.local(&format!("{t}:{v}"));
        let mut ids: Vec<(&'static str, String)> = Vec::new();
        let roll = rng.gen_range(0..100);
        let (kind, source) = if roll < 3 && !self.kiosk_devices.is_empty() && p.user_id.is_some() {
            // Signing in on a store kiosk.
            let k = &self.devices[*self.kiosk_devices.choose(rng).unwrap_or(&0)];
            ids.push(("anonymous_id", k.anon.clone()));
            ids.push(("user_id", p.user_id.clone().unwrap_or_default()));
            ("identify", "kiosk")
        } else if roll < 13 && (p.loyalty.is_some() || p.phone.is_some()) {
            // Store purchase with a loyalty card or phone at the till.
            if let Some(l) = &p.loyalty {
                ids.push(("loyalty_id", l.clone()));
            }
            if let Some(ph) = &p.phone {
                if rng.gen_bool(0.5) || p.loyalty.is_none() {
                    ids.push(("phone", phone_variant(rng, ph)));
                }
            }
            if let Some(e) = p.emails.first() {
                if rng.gen_bool(0.3) {
                    ids.push(("email", email_variant(rng, e)));
                }
            }
            ("order", "pos")
        } else if roll < 18 && (p.user_id.is_some() || !p.emails.is_empty()) {
            // CRM update.
            if let Some(u) = &p.user_id {
                ids.push(("user_id", u.clone()));
            }
            // One email per event: the Segment spec carries a single one.
            if let Some(e) = p.emails.choose(rng) {
                ids.push(("email", email_variant(rng, e)));
            }
            if let Some(ph) = &p.phone {
                ids.push(("phone", phone_variant(rng, ph)));
            }
            if let Some(f) = &p.family_email {
                if rng.gen_bool(0.3) {
                    ids.push(("email", f.clone()));
                }
            }
            ("identify", "crm")
        } else {
            // Web or app: anonymous browsing, sometimes signed in.
            let d = &self.devices[*p.devices.choose(rng).unwrap_or(&0)];
            ids.push(("anonymous_id", if rng.gen_bool(0.1) { d.anon.to_uppercase() } else { d.anon.clone() }));
            if let Some(x) = &d.device_id {
                ids.push(("device_id", x.clone()));
            }
            if let Some(x) = &d.ad_id {
                ids.push(("advertising_id", x.clone()));
            }
            let signed_in = rng.gen_bool(if d.shared { 0.9 } else { 0.3 });
            if signed_in {
                if let Some(u) = &p.user_id {
                    ids.push(("user_id", u.clone()));
                } else if let Some(e) = p.emails.first() {
                    ids.push(("email", email_variant(rng, e)));
                }
            }
            let src = if d.device_id.is_some() { "app" } else { "web" };
            (
                if signed_in {
                    "identify"
                } else if rng.gen_bool(0.5) {
                    "page"
                } else {
                    "track"
                },
                src,
            )
        };
        let mut locals: Vec<usize> = Vec::new();
        for (t, raw) in &ids {
            let norm = match *t {
                "email" => raw.trim().to_lowercase(),
                "phone" => p.phone.clone().unwrap_or_default(),
                "anonymous_id" => raw.to_lowercase(),
                _ => raw.clone(),
            };
            if let Some(l) = own(t, &norm) {
                locals.push(l);
            }
        }
        self.persons[pi].observe(&locals);
        let rng = &mut self.rng;
        if rng.gen_bool(self.cfg.junk_rate) {
            let (t, v) = JUNK[rng.gen_range(0..JUNK.len())];
            ids.push((t, v.to_string()));
        }
        let revenue = (kind == "order").then(|| (rng.gen_range(500..20000) as f64) / 100.0);
        let first_name = (kind == "identify" && rng.gen_bool(0.5)).then(|| format!("Name{pi}"));
        let consent = (kind == "identify" && rng.gen_bool(0.1)).then(|| rng.gen_bool(0.7));
        Ev { ts, kind, source, ids, revenue, first_name, consent }
    }

    /// Writes `events` touchpoints; a share arrive late (out of order).
    pub fn write_events(&mut self, w: &mut dyn Write) -> std::io::Result<()> {
        let mut late: Vec<(u64, Ev)> = Vec::new();
        let mut line = String::with_capacity(512);
        for n in 0..self.cfg.events {
            let ev = self.event(n);
            if self.rng.gen_bool(self.cfg.late_rate) {
                let delay = self.rng.gen_range(1..2000);
                late.push((n + delay, ev));
            } else {
                self.format(n, &ev, &mut line);
                w.write_all(line.as_bytes())?;
            }
            while let Some(pos) = late.iter().position(|(due, _)| *due <= n) {
                let (due, ev) = late.swap_remove(pos);
                self.format(due + self.cfg.events, &ev, &mut line);
                w.write_all(line.as_bytes())?;
            }
        }
        for (due, ev) in late {
            self.format(due + self.cfg.events, &ev, &mut line);
            w.write_all(line.as_bytes())?;
        }
        Ok(())
    }

    fn format(&self, n: u64, ev: &Ev, out: &mut String) {
        use std::fmt::Write as _;
        out.clear();
        let ts = idgraph_core::time::format_rfc3339(ev.ts);
        let js = |s: &str| serde_json::to_string(s).unwrap_or_default();
        if self.cfg.segment {
            let ty = match ev.kind {
                "identify" => "identify",
                "page" => "page",
                _ => "track",
            };
            let get = |t: &str| ev.ids.iter().find(|(k, _)| *k == t).map(|(_, v)| v.as_str());
            let _ = write!(out, "{{\"type\":\"{ty}\",\"messageId\":\"m-{n}\",\"timestamp\":\"{ts}\",\"channel\":\"{}\"", ev.source);
            if ev.kind == "order" {
                out.push_str(",\"event\":\"Order Completed\"");
            }
            if let Some(a) = get("anonymous_id") {
                let _ = write!(out, ",\"anonymousId\":{}", js(a));
            }
            if let Some(u) = get("user_id") {
                let _ = write!(out, ",\"userId\":{}", js(u));
            }
            let mut traits = Vec::new();
            if let Some(e) = get("email") {
                traits.push(format!("\"email\":{}", js(e)));
            }
            if let Some(p) = get("phone") {
                traits.push(format!("\"phone\":{}", js(p)));
            }
            if let Some(f) = &ev.first_name {
                traits.push(format!("\"first_name\":{}", js(f)));
            }
            let mut ctx = Vec::new();
            if !traits.is_empty() {
                if ty == "identify" {
                    let _ = write!(out, ",\"traits\":{{{}}}", traits.join(","));
                } else {
                    ctx.push(format!("\"traits\":{{{}}}", traits.join(",")));
                }
            }
            let mut props = Vec::new();
            if let Some(l) = get("loyalty_id") {
                props.push(format!("\"loyalty_id\":{}", js(l)));
            }
            if let Some(r) = ev.revenue {
                props.push(format!("\"revenue\":{r}"));
                props.push("\"currency\":\"EUR\"".into());
            }
            if !props.is_empty() {
                let _ = write!(out, ",\"properties\":{{{}}}", props.join(","));
            }
            let mut dev = Vec::new();
            if let Some(d) = get("device_id") {
                dev.push(format!("\"id\":{}", js(d)));
            }
            if let Some(a) = get("advertising_id") {
                dev.push(format!("\"advertisingId\":{}", js(a)));
            }
            if !dev.is_empty() {
                ctx.push(format!("\"device\":{{{}}}", dev.join(",")));
            }
            if let Some(g) = ev.consent {
                ctx.push(format!("\"consent\":{{\"categoryPreferences\":{{\"email_marketing\":{g}}}}}"));
            }
            ctx.push("\"library\":{\"name\":\"analytics.js\",\"version\":\"4.1.0\"}".into());
            let _ = write!(out, ",\"context\":{{{}}}}}", ctx.join(","));
        } else {
            let _ = write!(
                out,
                "{{\"event_id\":\"e-{n}\",\"type\":\"{}\",\"timestamp\":\"{ts}\",\"source\":\"{}\",\"identifiers\":[",
                if ev.kind == "order" { "order" } else { "track" },
                ev.source
            );
            for (i, (t, v)) in ev.ids.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                let _ = write!(out, "{{\"type\":\"{t}\",\"value\":{}}}", js(v));
            }
            out.push(']');
            if let Some(f) = &ev.first_name {
                let _ = write!(out, ",\"traits\":{{\"first_name\":{}}}", js(f));
            }
            if let Some(r) = ev.revenue {
                let _ = write!(out, ",\"properties\":{{\"revenue\":{r},\"currency\":\"EUR\"}}");
            }
            if let Some(g) = ev.consent {
                let _ = write!(out, ",\"consent\":[{{\"purpose\":\"email_marketing\",\"granted\":{g},\"policy_version\":\"2026-01\",\"jurisdiction\":\"EU\"}}]");
            }
            out.push('}');
        }
        out.push('\n');
    }
}
