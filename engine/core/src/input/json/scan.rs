//! The validating pass: checks a document as serde_json would and lays
//! its values out on the tape.

use super::{Doc, Kind, Node, SyntaxError};

/// Nesting deeper than this is refused (serde_json's limit).
const MAX_DEPTH: usize = 127;
pub(super) fn scan(bytes: &[u8]) -> Result<Doc<'_>, SyntaxError> {
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
