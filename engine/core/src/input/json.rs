//! A JSON event read without building a tree.
//!
//! After a UTF-8 check, one pass validates the document (the grammar of
//! RFC 8259, escapes and surrogate pairs, numbers within the range of
//! `f64`, nesting up to 127 levels, nothing after the root) and records
//! where each value starts and ends on a flat tape; readings then look
//! values up on the tape and interpret only what a mapping reads. Parsing
//! an event into a `serde_json::Value` allocated every key and string of
//! it, most of which no mapping reads.
//!
//! A document is accepted exactly when serde_json accepts it, and every
//! reading gives the answer its tree would give: a key that occurs twice
//! reads as its last value, members are visited sorted by key (the order
//! of the tree's map), and [`Raw::to_json`] is the tree's compact
//! rendering. A refused document is handed to serde_json once more, so
//! the reported error (line, column, kind) is serde_json's own.

use std::borrow::Cow;
use std::fmt;

/// Nesting deeper than this is refused (serde_json's limit).
const MAX_DEPTH: usize = 127;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Null,
    Bool,
    Number,
    String,
    Array,
    Object,
}

/// A syntax error, as the reject reason reports it.
#[derive(Debug)]
pub(crate) struct SyntaxError {
    pub line: usize,
    pub column: usize,
    pub what: &'static str,
}

/// One value on the tape: its text is `text[start..end]`; a container's
/// children follow it, and `next` is the index just past its subtree.
#[derive(Debug, Clone, Copy)]
struct Node {
    start: u32,
    end: u32,
    next: u32,
    kind: Kind,
    /// A string with at least one escape.
    escaped: bool,
}

/// A validated document.
pub(crate) struct Doc<'a> {
    text: &'a str,
    tape: Vec<Node>,
}

impl fmt::Debug for Doc<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Event text is input: never shown.
        write!(f, "Doc({} values)", self.tape.len())
    }
}

/// Validates a whole document. Tape offsets are `u32`: the caller bounds
/// events far below that (`MAX_EVENT_BYTES`); a longer text is refused.
pub(crate) fn document(bytes: &[u8]) -> Result<Doc<'_>, SyntaxError> {
    scan(bytes).map_err(|own| match serde_json::from_slice::<serde_json::Value>(bytes) {
        Err(e) => syntax(&e),
        // Not reached while the two agree on what is JSON (a property test
        // holds them to it); the scanner's own position then.
        Ok(_) => own,
    })
}

fn scan(bytes: &[u8]) -> Result<Doc<'_>, SyntaxError> {
    if u32::try_from(bytes.len()).is_err() {
        return Err(position(bytes, 0, "too long"));
    }
    let text = std::str::from_utf8(bytes).map_err(|e| position(bytes, e.valid_up_to(), "syntax error"))?;
    let mut s = Scanner { b: bytes, i: 0, tape: Vec::with_capacity(64), depth: 0 };
    s.ws();
    s.value()?;
    s.ws();
    if s.i != bytes.len() {
        return Err(s.err("syntax error"));
    }
    Ok(Doc { text, tape: s.tape })
}

fn syntax(e: &serde_json::Error) -> SyntaxError {
    SyntaxError {
        line: e.line(),
        column: e.column(),
        what: match e.classify() {
            serde_json::error::Category::Eof => "unexpected end",
            serde_json::error::Category::Syntax => "syntax error",
            serde_json::error::Category::Data => "bad data",
            serde_json::error::Category::Io => "read error",
        },
    }
}

/// Line and column (1-based, in bytes) of offset `at`.
fn position(b: &[u8], at: usize, what: &'static str) -> SyntaxError {
    let before = &b[..at.min(b.len())];
    let line = before.iter().filter(|c| **c == b'\n').count() + 1;
    let column = before.len() - before.iter().rposition(|c| *c == b'\n').map_or(0, |i| i + 1) + 1;
    SyntaxError { line, column, what }
}

struct Scanner<'b> {
    b: &'b [u8],
    i: usize,
    tape: Vec<Node>,
    depth: usize,
}

impl Scanner<'_> {
    fn err(&self, what: &'static str) -> SyntaxError {
        let what = if self.i >= self.b.len() { "unexpected end" } else { what };
        position(self.b, self.i, what)
    }

    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.i += 1;
        }
    }

    fn expect(&mut self, c: u8) -> Result<(), SyntaxError> {
        if self.peek() == Some(c) {
            self.i += 1;
            Ok(())
        } else {
            Err(self.err("syntax error"))
        }
    }

    fn push(&mut self, start: usize, kind: Kind) -> usize {
        self.tape.push(Node { start: start as u32, end: 0, next: 0, kind, escaped: false });
        self.tape.len() - 1
    }

    fn close(&mut self, at: usize) {
        let next = self.tape.len() as u32;
        let n = &mut self.tape[at];
        n.end = self.i as u32;
        n.next = next;
    }

    fn value(&mut self) -> Result<(), SyntaxError> {
        let start = self.i;
        match self.peek() {
            Some(b'{') => self.container(b'}', Kind::Object),
            Some(b'[') => self.container(b']', Kind::Array),
            Some(b'"') => {
                let at = self.push(start, Kind::String);
                let escaped = self.string()?;
                self.tape[at].escaped = escaped;
                self.close(at);
                Ok(())
            }
            Some(b't') => self.literal(b"true", Kind::Bool),
            Some(b'f') => self.literal(b"false", Kind::Bool),
            Some(b'n') => self.literal(b"null", Kind::Null),
            Some(b'-' | b'0'..=b'9') => {
                let at = self.push(start, Kind::Number);
                self.number()?;
                self.close(at);
                Ok(())
            }
            _ => Err(self.err("syntax error")),
        }
    }

    fn literal(&mut self, word: &[u8], kind: Kind) -> Result<(), SyntaxError> {
        let start = self.i;
        for c in word {
            self.expect(*c)?;
        }
        let at = self.push(start, kind);
        self.close(at);
        Ok(())
    }

    /// An object (members alternate key and value on the tape) or array.
    fn container(&mut self, close: u8, kind: Kind) -> Result<(), SyntaxError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.err("syntax error"));
        }
        let at = self.push(self.i, kind);
        self.i += 1;
        self.ws();
        if self.peek() == Some(close) {
            self.i += 1;
        } else {
            loop {
                if kind == Kind::Object {
                    if self.peek() != Some(b'"') {
                        return Err(self.err("syntax error"));
                    }
                    self.value()?;
                    self.ws();
                    self.expect(b':')?;
                    self.ws();
                }
                self.value()?;
                self.ws();
                match self.peek() {
                    Some(b',') => {
                        self.i += 1;
                        self.ws();
                    }
                    Some(c) if c == close => {
                        self.i += 1;
                        break;
                    }
                    _ => return Err(self.err("syntax error")),
                }
            }
        }
        self.depth -= 1;
        self.close(at);
        Ok(())
    }

    /// A string from its opening quote; returns whether it has escapes.
    fn string(&mut self) -> Result<bool, SyntaxError> {
        self.i += 1;
        let mut escaped = false;
        loop {
            self.i = plain_run_end(self.b, self.i);
            match self.peek() {
                Some(b'"') => {
                    self.i += 1;
                    return Ok(escaped);
                }
                Some(b'\\') => {
                    escaped = true;
                    self.i += 1;
                    self.escape()?;
                }
                // A control character, or the end.
                _ => return Err(self.err("syntax error")),
            }
        }
    }

    fn hex4(&mut self) -> Result<u16, SyntaxError> {
        let mut v = 0u16;
        for _ in 0..4 {
            let d = match self.peek() {
                Some(c @ b'0'..=b'9') => c - b'0',
                Some(c @ b'a'..=b'f') => c - b'a' + 10,
                Some(c @ b'A'..=b'F') => c - b'A' + 10,
                _ => return Err(self.err("syntax error")),
            };
            v = v << 4 | u16::from(d);
            self.i += 1;
        }
        Ok(v)
    }

    /// After a backslash: one escape; a `\u` of a UTF-16 surrogate must be
    /// a whole pair (as serde_json requires of a string).
    fn escape(&mut self) -> Result<(), SyntaxError> {
        match self.peek() {
            Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => {
                self.i += 1;
                Ok(())
            }
            Some(b'u') => {
                self.i += 1;
                match self.hex4()? {
                    0xD800..=0xDBFF => {
                        self.expect(b'\\')?;
                        self.expect(b'u')?;
                        match self.hex4()? {
                            0xDC00..=0xDFFF => Ok(()),
                            _ => Err(self.err("syntax error")),
                        }
                    }
                    0xDC00..=0xDFFF => Err(self.err("syntax error")),
                    _ => Ok(()),
                }
            }
            _ => Err(self.err("syntax error")),
        }
    }

    fn digits(&mut self) -> Result<(), SyntaxError> {
        if !matches!(self.peek(), Some(b'0'..=b'9')) {
            return Err(self.err("syntax error"));
        }
        while let Some(b'0'..=b'9') = self.peek() {
            self.i += 1;
        }
        Ok(())
    }

    /// A number; one that is not an integer of up to 19 digits must be
    /// finite as an `f64`, as serde_json requires (`1e400` is refused).
    fn number(&mut self) -> Result<(), SyntaxError> {
        let start = self.i;
        if self.peek() == Some(b'-') {
            self.i += 1;
        }
        match self.peek() {
            Some(b'0') => self.i += 1,
            _ => self.digits()?,
        }
        if self.peek() == Some(b'.') {
            self.i += 1;
            self.digits()?;
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.i += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.i += 1;
            }
            self.digits()?;
        }
        let text = &self.b[start..self.i];
        let plain_integer = text.len() <= 19 && text.iter().all(|c| c.is_ascii_digit() || *c == b'-');
        if !plain_integer {
            // ASCII by the grammar above.
            let finite = std::str::from_utf8(text).ok().and_then(|t| t.parse::<f64>().ok()).is_some_and(f64::is_finite);
            if !finite {
                return Err(self.err("syntax error"));
            }
        }
        Ok(())
    }
}

/// The end of the run of bytes from `i` that a string holds as they are
/// (not a quote, backslash or control character), eight bytes at a time.
fn plain_run_end(b: &[u8], mut i: usize) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    // A byte of `x` is below `n` (`n` <= 0x80): the lowest flagged byte is
    // exact (a borrow can only flag bytes above a true one).
    let below = |x: u64, n: u64| x.wrapping_sub(ONES * n) & !x & HIGH;
    while let Some(chunk) = b.get(i..i + 8) {
        let mut w = [0u8; 8];
        w.copy_from_slice(chunk);
        let w = u64::from_le_bytes(w);
        let hit = below(w ^ (ONES * u64::from(b'"')), 1) | below(w ^ (ONES * u64::from(b'\\')), 1) | below(w, 0x20);
        if hit != 0 {
            return i + (hit.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while let Some(&c) = b.get(i) {
        if c == b'"' || c == b'\\' || c < 0x20 {
            break;
        }
        i += 1;
    }
    i
}

impl<'a> Doc<'a> {
    /// The root's members, or `None` when the root is not an object.
    pub fn object(&self) -> Option<Object<'_, 'a>> {
        Raw { doc: self, at: 0 }.object()
    }
}

/// One value of a document.
#[derive(Clone, Copy)]
pub(crate) struct Raw<'d, 'a> {
    doc: &'d Doc<'a>,
    at: usize,
}

impl fmt::Debug for Raw<'_, '_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Event values are input: shown by kind only.
        write!(f, "Raw({:?})", self.kind())
    }
}

impl<'d, 'a> Raw<'d, 'a> {
    fn node(&self) -> Node {
        self.doc.tape[self.at]
    }

    fn text(&self) -> &'a str {
        let n = self.node();
        &self.doc.text[n.start as usize..n.end as usize]
    }

    pub fn kind(&self) -> Kind {
        self.node().kind
    }

    pub fn is_null(&self) -> bool {
        self.kind() == Kind::Null
    }

    /// The object's members, or `None` when this is not an object.
    pub fn object(&self) -> Option<Object<'d, 'a>> {
        (self.kind() == Kind::Object).then_some(Object(*self))
    }

    /// The array's items, or `None` when this is not an array.
    pub fn array(&self) -> Option<Vec<Raw<'d, 'a>>> {
        if self.kind() != Kind::Array {
            return None;
        }
        let mut out = Vec::new();
        let mut j = self.at + 1;
        while j < self.node().next as usize {
            out.push(Raw { doc: self.doc, at: j });
            j = self.doc.tape[j].next as usize;
        }
        Some(out)
    }

    /// The string's text (borrowed unless it has escapes).
    pub fn str(&self) -> Option<Cow<'a, str>> {
        if self.kind() != Kind::String {
            return None;
        }
        let t = self.text();
        if !self.node().escaped {
            return Some(Cow::Borrowed(&t[1..t.len() - 1]));
        }
        serde_json::from_str::<String>(t).ok().map(Cow::Owned)
    }

    pub fn bool(&self) -> Option<bool> {
        match (self.kind(), self.text()) {
            (Kind::Bool, t) => Some(t == "true"),
            _ => None,
        }
    }

    pub fn number(&self) -> Option<serde_json::Number> {
        if self.kind() != Kind::Number {
            return None;
        }
        serde_json::from_str(self.text()).ok()
    }

    /// The compact JSON text of the value, as `serde_json::Value` renders
    /// it (objects with sorted keys, numbers re-printed, strings
    /// re-escaped). Strings without escapes and literals are their input
    /// text already.
    pub fn to_json(self) -> String {
        match self.kind() {
            Kind::String if !self.node().escaped => self.text().to_string(),
            Kind::Null | Kind::Bool => self.text().to_string(),
            // The document was validated, so this parses (the raw text
            // would be the answer otherwise).
            _ => serde_json::from_str::<serde_json::Value>(self.text()).map_or_else(|_| self.text().to_string(), |v| v.to_string()),
        }
    }
}

/// An object of a document.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Object<'d, 'a>(Raw<'d, 'a>);

impl<'d, 'a> Object<'d, 'a> {
    /// Members in input order: (key, value).
    fn members(&self) -> impl Iterator<Item = (Raw<'d, 'a>, Raw<'d, 'a>)> + '_ {
        let tape = &self.0.doc.tape;
        let end = tape[self.0.at].next as usize;
        let mut j = self.0.at + 1;
        std::iter::from_fn(move || {
            if j >= end {
                return None;
            }
            let (k, v) = (j, j + 1);
            j = tape[v].next as usize;
            Some((Raw { doc: self.0.doc, at: k }, Raw { doc: self.0.doc, at: v }))
        })
    }

    /// The member's value; the last one when the key occurs twice.
    pub fn get(&self, name: &str) -> Option<Raw<'d, 'a>> {
        let (doc, tape) = (self.0.doc, &self.0.doc.tape);
        let text = doc.text.as_bytes();
        let end = tape[self.0.at].next as usize;
        let mut found = None;
        let mut j = self.0.at + 1;
        while j + 1 < end {
            let k = &tape[j];
            let key = &text[k.start as usize + 1..k.end as usize - 1];
            let hit = if k.escaped { (Raw { doc, at: j }).str().is_some_and(|s| s == name) } else { key == name.as_bytes() };
            if hit {
                found = Some(Raw { doc, at: j + 1 });
            }
            j = tape[j + 1].next as usize;
        }
        found
    }

    /// The values of several members in one pass over the object: each
    /// as [`Object::get`] would give it (the last of a repeated key).
    pub fn get_all<const N: usize>(&self, names: [&str; N]) -> [Option<Raw<'d, 'a>>; N] {
        let (doc, tape) = (self.0.doc, &self.0.doc.tape);
        let text = doc.text.as_bytes();
        let end = tape[self.0.at].next as usize;
        let mut found = [None; N];
        let mut j = self.0.at + 1;
        while j + 1 < end {
            let k = &tape[j];
            let escaped = if k.escaped { (Raw { doc, at: j }).str() } else { None };
            let key = match &escaped {
                Some(s) => s.as_bytes(),
                None => &text[k.start as usize + 1..k.end as usize - 1],
            };
            if let Some(n) = names.iter().position(|name| name.as_bytes() == key) {
                found[n] = Some(Raw { doc, at: j + 1 });
            }
            j = tape[j + 1].next as usize;
        }
        found
    }

    /// Members sorted by key, one per key (its last value).
    pub fn sorted(&self) -> Vec<(Cow<'a, str>, Raw<'d, 'a>)> {
        let mut all: Vec<(Cow<'a, str>, Raw<'d, 'a>)> = self.members().filter_map(|(k, v)| Some((k.str()?, v))).collect();
        // Stable: of equal keys, input order stays, and the last is kept.
        all.sort_by(|a, b| a.0.cmp(&b.0));
        let mut out: Vec<(Cow<'a, str>, Raw<'d, 'a>)> = Vec::with_capacity(all.len());
        for (k, v) in all {
            match out.last_mut() {
                Some(last) if last.0 == k => last.1 = v,
                _ => out.push((k, v)),
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::Value;

    /// Every reading of `text` against the tree's.
    fn agrees(text: &str) {
        let tree: Result<Value, _> = serde_json::from_str(text);
        let doc = document(text.as_bytes());
        match (&tree, &doc) {
            (Ok(t), Ok(d)) => {
                if let Some(obj) = d.object() {
                    deep_agrees(t, Raw { doc: d, at: 0 });
                    assert!(obj.get("\u{0}none").is_none());
                } else {
                    assert!(!t.is_object());
                }
            }
            (Err(e), Ok(_)) => panic!("accepted what the tree refuses ({e}): {text:?}"),
            (Ok(_), Err(e)) => panic!("refused what the tree accepts ({e:?}): {text:?}"),
            (Err(e), Err(d)) => assert_eq!((d.line, d.column), (e.line(), e.column()), "{text:?}"),
        }
    }

    fn deep_agrees(t: &Value, r: Raw<'_, '_>) {
        assert_eq!(r.to_json(), t.to_string());
        match t {
            Value::Object(m) => {
                let o = r.object().unwrap();
                let sorted = o.sorted();
                assert_eq!(sorted.iter().map(|(k, _)| k.as_ref()).collect::<Vec<_>>(), m.keys().map(String::as_str).collect::<Vec<_>>());
                for (k, v) in m {
                    deep_agrees(v, o.get(k).unwrap());
                }
            }
            Value::Array(a) => {
                let items = r.array().unwrap();
                assert_eq!(items.len(), a.len());
                for (v, i) in a.iter().zip(items) {
                    deep_agrees(v, i);
                }
            }
            Value::String(s) => assert_eq!(r.str().unwrap(), s.as_str()),
            Value::Bool(b) => assert_eq!(r.bool(), Some(*b)),
            Value::Null => assert!(r.is_null()),
            Value::Number(n) => assert_eq!(r.number().unwrap(), *n),
        }
    }

    #[test]
    fn readings_equal_the_tree() {
        let text = r#" {"b": 1, "a": {"y": [1, 2.50, "x\"y", {}], "x": null}, "b": -0, "s": "caf\u00e9", "t": true, "n": 1e2, "e": [] } "#;
        agrees(text);
        let d = document(text.as_bytes()).unwrap();
        let obj = d.object().unwrap();
        assert_eq!(obj.get("b").unwrap().number().unwrap().to_string(), "-0.0", "the last of a repeated key");
        assert_eq!(obj.get("s").unwrap().str().unwrap(), "café");
        assert!(obj.get("missing").is_none());
        assert!(obj.get("s").unwrap().object().is_none());
        let all = obj.get_all(["b", "missing", "s", "a"]);
        for (v, name) in all.iter().zip(["b", "missing", "s", "a"]) {
            assert_eq!(v.map(|r| r.to_json()), obj.get(name).map(|r| r.to_json()), "{name}");
        }
        let d = document(r#"{"e\u006dail":"a@b.co"}"#.as_bytes()).unwrap();
        assert!(d.object().unwrap().get_all(["email"])[0].is_some(), "escaped keys too");
        assert_eq!(d.object().unwrap().get("email").unwrap().str().unwrap(), "a@b.co", "keys match unescaped");
        // Many keys, repeated, in falling order.
        let big = format!("{{{}}}", (0..3000).rev().map(|i| format!("\"k{}\":{i}", i % 1000)).collect::<Vec<_>>().join(","));
        agrees(&big);
    }

    #[test]
    fn refusals_are_serde_jsons() {
        let e = document(b"{\"a\":1,\n\"b\":}").unwrap_err();
        assert_eq!((e.line, e.what), (2, "syntax error"));
        assert_eq!(document(b"{\"a\":1").unwrap_err().what, "unexpected end");
        for bad in [&b"{\"a\":\"\xff\"}"[..], b"x\"\xff\"", b"[\"\n\"]", b"\"\\u0g00\""] {
            let (e, d) = (serde_json::from_slice::<Value>(bad).unwrap_err(), document(bad).unwrap_err());
            assert_eq!((d.line, d.column), (e.line(), e.column()), "{bad:?}");
        }
        for n in ["1e400", "-1e400", &"9".repeat(400), "[1.5e309]"] {
            assert!(document(n.as_bytes()).is_err(), "out of the range of f64: {n}");
            agrees(n);
        }
        for n in ["1e-400", "18446744073709551616", "-9223372036854775809", "0.1e308"] {
            agrees(n);
            assert!(document(n.as_bytes()).is_ok(), "{n}");
        }
        assert!(document(b" [1]").unwrap().object().is_none(), "not an object");
        for bad in [
            "{} x",
            "[1,]",
            "{\"a\":1,}",
            "{\"a\" 1}",
            "{1:2}",
            "01",
            "1.",
            "-",
            "1e",
            "tru",
            "nulls",
            "\"a\tb\"",
            r#""\x""#,
            r#""\ud800""#,
            r#""\udc00x""#,
            r#""\ud800\u0041""#,
            "",
        ] {
            assert!(document(bad.as_bytes()).is_err(), "{bad:?}");
            agrees(bad);
        }
        let deep = "[".repeat(200) + &"]".repeat(200);
        assert!(document(deep.as_bytes()).is_err(), "nesting limit");
        for depth in [127, 128] {
            agrees(&("[".repeat(depth) + &"]".repeat(depth)));
        }
        agrees(r#"{"a":"\\ud800","b":"\ud83d\ude00","c":"\/\b\f\n\r\t"}"#);
    }

    /// A JSON-ish text: valid documents, then bytes of them dropped,
    /// repeated or swapped.
    fn jsonish() -> impl Strategy<Value = String> {
        let leaf = prop_oneof![
            Just("null".to_string()),
            Just("true".to_string()),
            any::<i64>().prop_map(|n| n.to_string()),
            any::<f64>().prop_map(|f| format!("{f:e}")),
            (0u32..400, "-?").prop_map(|(e, sign)| format!("{sign}1.5e{e}")),
            "[a-z\\\\\"\u{e9}\u{1F600} ]{0,6}".prop_map(|s| format!("{s:?}")),
            Just(r#""\u00e9\ud83d\ude00""#.to_string()),
        ];
        let tree = leaf.prop_recursive(4, 32, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(|v| format!("[{}]", v.join(","))),
                prop::collection::vec(("[abc]{1,2}", inner), 0..4)
                    .prop_map(|v| format!("{{ {} }}", v.iter().map(|(k, v)| format!("{k:?} : {v}")).collect::<Vec<_>>().join(" , "))),
            ]
        });
        (tree, any::<prop::sample::Index>(), 0u8..4).prop_map(|(t, at, how)| {
            let mut b = t.into_bytes();
            if b.is_empty() {
                return String::new();
            }
            let i = at.index(b.len());
            match how {
                0 => {}
                1 => {
                    b.remove(i);
                }
                2 => b.insert(i, b[i]),
                _ => {
                    let last = b.len() - 1;
                    b.swap(i, last);
                }
            }
            String::from_utf8_lossy(&b).into_owned()
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(3000))]
        #[test]
        fn every_reading_agrees_with_serde_json(text in jsonish()) {
            agrees(&text);
        }
    }
}
