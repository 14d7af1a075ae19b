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

mod scan;
#[cfg(test)]
mod tests;

use std::borrow::Cow;
use std::fmt;

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
    scan::scan(bytes).map_err(|own| match serde_json::from_slice::<serde_json::Value>(bytes) {
        Err(e) => syntax(&e),
        // Not reached while the two agree on what is JSON (a property test
        // holds them to it); the scanner's own position then.
        Ok(_) => own,
    })
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
        let n = self.node();
        if n.kind != Kind::String {
            return None;
        }
        let t = &self.doc.text[n.start as usize..n.end as usize];
        if !n.escaped {
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
        let [v] = self.get_all([name]);
        v
    }

    /// The values of several members in one pass over the object: each
    /// as [`Object::get`] gives it (the last of a repeated key).
    pub fn get_all<const N: usize>(&self, names: [&str; N]) -> [Option<Raw<'d, 'a>>; N] {
        let (doc, tape) = (self.0.doc, &self.0.doc.tape);
        let text = doc.text.as_bytes();
        let end = tape[self.0.at].next as usize;
        let mut found = [None; N];
        // The members' loop of `members`, written out: keys are compared
        // as bytes from the tape, without building a reading of each
        // (the hot path of every event).
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
