//! Finding the elements of an answer without trusting its bytes: Booking.com's answers are JSON, but one guest's
//! text can carry a byte-level defect (Latin-1 bytes, a raw TAB or newline inside a string, half of a surrogate
//! pair). A strict parser refuses the whole answer for it, and the queue would stall on it forever. So the
//! structure is scanned byte by byte (strings are skipped, never decoded), each element is cut out with its
//! exact bytes, and only then repaired for parsing: one element's defect stays that element's.

use std::ops::Range;

/// Where `data.messages` lies in a body, and each of its elements.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Layout {
    /// The array's contents, between its brackets.
    pub array: Range<usize>,
    pub elements: Vec<Range<usize>>,
}

/// Why the element boundaries cannot be found: the answer is unusable as a whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ScanError {
    #[error("the answer is not a JSON object")]
    NotAnObject,
    #[error("the answer ends before its structure does (truncated?)")]
    Truncated,
    #[error("unexpected byte {0:#04x} at offset {1} in the answer's structure")]
    Unexpected(u8, usize),
}

/// The layout of `data.messages` in `body`, or None for an answer without one (an error answer).
pub(crate) fn scan(body: &[u8]) -> Result<Option<Layout>, ScanError> {
    let mut s = Scanner { body, at: 0 };
    s.skip_ws();
    if s.peek() != Some(b'{') {
        return Err(ScanError::NotAnObject);
    }
    let mut found = None;
    s.object(|s, key| {
        if key != b"data" {
            return s.value();
        }
        s.skip_ws();
        if s.peek() != Some(b'{') {
            return s.value();
        }
        s.object(|s, key| {
            s.skip_ws();
            if key == b"messages" && s.peek() == Some(b'[') {
                found = Some(s.array_elements()?);
                Ok(())
            } else {
                s.value()
            }
        })
    })?;
    Ok(found)
}

struct Scanner<'a> {
    body: &'a [u8],
    at: usize,
}

impl Scanner<'_> {
    fn peek(&self) -> Option<u8> {
        self.body.get(self.at).copied()
    }

    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.at += 1;
        }
    }

    fn expect(&mut self, byte: u8) -> Result<(), ScanError> {
        self.skip_ws();
        match self.peek() {
            Some(b) if b == byte => {
                self.at += 1;
                Ok(())
            }
            Some(b) => Err(ScanError::Unexpected(b, self.at)),
            None => Err(ScanError::Truncated),
        }
    }

    /// A string's raw bytes between its quotes: any byte but an unescaped quote belongs to it.
    fn string(&mut self) -> Result<&[u8], ScanError> {
        self.expect(b'"')?;
        let start = self.at;
        loop {
            match self.peek() {
                None => return Err(ScanError::Truncated),
                Some(b'\\') => self.at += 2,
                Some(b'"') => {
                    self.at += 1;
                    return Ok(&self.body[start..self.at - 1]);
                }
                Some(_) => self.at += 1,
            }
        }
    }

    /// An object's members; `member` is called with each key, positioned before its value, and must consume it.
    fn object(&mut self, mut member: impl FnMut(&mut Self, &[u8]) -> Result<(), ScanError>) -> Result<(), ScanError> {
        self.expect(b'{')?;
        self.skip_ws();
        if self.peek() == Some(b'}') {
            self.at += 1;
            return Ok(());
        }
        loop {
            let key = self.string()?.to_vec();
            self.expect(b':')?;
            member(self, &key)?;
            self.skip_ws();
            match self.peek() {
                Some(b',') => self.at += 1,
                Some(b'}') => {
                    self.at += 1;
                    return Ok(());
                }
                Some(b) => return Err(ScanError::Unexpected(b, self.at)),
                None => return Err(ScanError::Truncated),
            }
        }
    }

    /// The array at the cursor: its contents' range and each element's.
    fn array_elements(&mut self) -> Result<Layout, ScanError> {
        self.expect(b'[')?;
        let array_start = self.at;
        let mut elements = Vec::new();
        self.skip_ws();
        if self.peek() == Some(b']') {
            self.at += 1;
            return Ok(Layout {
                array: array_start..self.at - 1,
                elements,
            });
        }
        loop {
            self.skip_ws();
            let start = self.at;
            self.value()?;
            elements.push(start..self.at);
            self.skip_ws();
            match self.peek() {
                Some(b',') => self.at += 1,
                Some(b']') => {
                    self.at += 1;
                    return Ok(Layout {
                        array: array_start..self.at - 1,
                        elements,
                    });
                }
                Some(b) => return Err(ScanError::Unexpected(b, self.at)),
                None => return Err(ScanError::Truncated),
            }
        }
    }

    /// Skips one value of any kind.
    fn value(&mut self) -> Result<(), ScanError> {
        self.skip_ws();
        match self.peek() {
            None => Err(ScanError::Truncated),
            Some(b'"') => self.string().map(|_| ()),
            Some(b'{') => self.object(|s, _| s.value()),
            Some(b'[') => self.array_elements().map(|_| ()),
            Some(_) => {
                // A number, true, false or null: everything up to the next delimiter.
                let start = self.at;
                while let Some(b) = self.peek() {
                    if matches!(b, b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r') {
                        break;
                    }
                    self.at += 1;
                }
                if self.at == start {
                    return Err(ScanError::Unexpected(self.body[start], start));
                }
                Ok(())
            }
        }
    }
}

/// `bytes` as valid JSON text, as close to them as possible: invalid UTF-8 becomes U+FFFD, control characters
/// inside strings are escaped, and an escaped half of a surrogate pair becomes `\ufffd`. Returns the bytes
/// themselves (borrowed) when they need no repair.
pub(crate) fn repair(bytes: &[u8]) -> std::borrow::Cow<'_, str> {
    let text = String::from_utf8_lossy(bytes);
    if !needs_repair(&text) {
        return text;
    }
    let mut out = String::with_capacity(text.len() + 16);
    let mut in_string = false;
    let mut chars = text.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => {
                in_string = !in_string;
                out.push(c);
            }
            '\\' if in_string => match chars.peek().map(|(_, n)| *n) {
                Some('u') => {
                    let escape = &text[i..];
                    match surrogate(escape) {
                        Some(Surrogate::Pair) => {
                            out.push_str(&escape[..12]);
                            advance(&mut chars, 11);
                        }
                        Some(Surrogate::Lone) => {
                            out.push_str("\\ufffd");
                            advance(&mut chars, 5);
                        }
                        None => {
                            out.push('\\');
                        }
                    }
                }
                Some(next) => {
                    out.push('\\');
                    out.push(next);
                    chars.next();
                }
                None => out.push('\\'),
            },
            c if in_string && (c as u32) < 0x20 => {
                out.push_str(&format!("\\u{:04x}", c as u32));
            }
            c => out.push(c),
        }
    }
    std::borrow::Cow::Owned(out)
}

fn advance(chars: &mut impl Iterator, n: usize) {
    for _ in 0..n {
        chars.next();
    }
}

/// One pass: a control character inside a string, or an escape that may be half of a surrogate pair. Nearly every
/// element has neither, and is then not copied.
fn needs_repair(text: &str) -> bool {
    let bytes = text.as_bytes();
    let mut in_string = false;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => in_string = !in_string,
            b'\\' if in_string => {
                if bytes.get(i + 1) == Some(&b'u') && matches!(bytes.get(i + 2), Some(b'd' | b'D')) {
                    return true;
                }
                i += 1;
            }
            b if in_string && b < 0x20 => return true,
            _ => {}
        }
        i += 1;
    }
    false
}

enum Surrogate {
    /// A high surrogate followed by a low one: a valid pair, kept.
    Pair,
    /// Half of a pair: not a character.
    Lone,
}

/// Whether the `\uXXXX` escape at the start of `escape` is a surrogate, and if so whether it is paired.
fn surrogate(escape: &str) -> Option<Surrogate> {
    let unit = |s: &str| s.get(2..6).and_then(|h| u16::from_str_radix(h, 16).ok());
    let first = unit(escape)?;
    match first {
        0xD800..=0xDBFF => {
            let next = escape.get(6..).filter(|r| r.starts_with("\\u")).and_then(unit);
            match next {
                Some(0xDC00..=0xDFFF) => Some(Surrogate::Pair),
                _ => Some(Surrogate::Lone),
            }
        }
        0xDC00..=0xDFFF => Some(Surrogate::Lone),
        _ => None,
    }
}
