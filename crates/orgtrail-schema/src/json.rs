//! The JSON reader the normalizer walks a line with: the grammar of RFC 8259, checked as the
//! normalizer goes, over text that is already UTF-8.
//!
//! The normalizer reads a line once, into the schema's shape, and needs little from a JSON
//! library: the raw text of each scalar (Panther's coercions read the literal), whether a string
//! has escapes, and a key to match against the schema's field names. serde_json, which it used
//! before, costs several visitor calls per value and a second scan of every raw string; this
//! reader is a cursor with a few methods. Anything the schema does not know is skipped, but still
//! checked, so a line is a row only when all of it is JSON.

use std::fmt;

/// Objects and arrays nested this deep are refused (serde_json's limit), so that a hostile line
/// cannot exhaust the stack.
const MAX_DEPTH: u32 = 128;

/// Why the text is not JSON, and where. Boxed: the reader's results are then small enough to
/// come back in registers (a larger error made every result go through memory, and reading it
/// back stalled the normalizer's loops).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct JsonError(Box<ErrorAt>);

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ErrorAt {
    what: &'static str,
    line: usize,
    column: usize,
}

impl std::ops::Deref for JsonError {
    type Target = ErrorAt;

    fn deref(&self) -> &ErrorAt {
        &self.0
    }
}

impl fmt::Display for JsonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} at line {} column {}",
            self.what, self.line, self.column
        )
    }
}

/// A value's text as written, and whether it is a string with escapes (its content is not the
/// text between its quotes).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Raw<'t> {
    pub(crate) text: &'t str,
    pub(crate) escaped: bool,
}

/// An object key read by [`Reader::next_key`].
#[derive(Debug, Clone, Copy)]
pub(crate) enum Key<'t> {
    /// The key expected.
    Expected,
    /// Another key, as written.
    Raw(Raw<'t>),
}

/// A cursor over JSON text.
pub(crate) struct Reader<'t> {
    text: &'t str,
    i: usize,
    depth: u32,
}

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = ONES << 7;

/// The bytes of `w` (little-endian) that end a run of plain string content: `"`, `\` or a control
/// character, each marked by its high bit. A byte after a marked one may be marked wrongly (a
/// borrow), so only the lowest mark is to be trusted.
fn specials(w: u64) -> u64 {
    let control = w.wrapping_sub(ONES * 0x20) & !w;
    let q = w ^ (ONES * u64::from(b'"'));
    let quote = q.wrapping_sub(ONES) & !q;
    let b = w ^ (ONES * u64::from(b'\\'));
    let backslash = b.wrapping_sub(ONES) & !b;
    (control | quote | backslash) & HIGHS
}

impl<'t> Reader<'t> {
    pub(crate) fn new(text: &'t str) -> Self {
        Reader {
            text,
            i: 0,
            depth: 0,
        }
    }

    fn bytes(&self) -> &'t [u8] {
        self.text.as_bytes()
    }

    /// An error at the cursor.
    #[cold]
    fn error(&self, what: &'static str) -> JsonError {
        let before = &self.bytes()[..self.i.min(self.text.len())];
        let line_start = before
            .iter()
            .rposition(|&c| c == b'\n')
            .map_or(0, |p| p + 1);
        JsonError(Box::new(ErrorAt {
            what,
            line: 1 + before.iter().filter(|&&c| c == b'\n').count(),
            column: 1 + self.text[line_start..self.i.min(self.text.len())]
                .chars()
                .count(),
        }))
    }

    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.bytes().get(self.i) {
            self.i += 1;
        }
    }

    /// The first byte of the next value (after whitespace), not consumed.
    pub(crate) fn peek_value(&mut self) -> Result<u8, JsonError> {
        self.ws();
        self.bytes()
            .get(self.i)
            .copied()
            .ok_or_else(|| self.error("the text ends where a value was expected"))
    }

    /// Only whitespace is left.
    pub(crate) fn end(&mut self) -> Result<(), JsonError> {
        self.ws();
        if self.i < self.text.len() {
            return Err(self.error("trailing characters"));
        }
        Ok(())
    }

    /// Enters the object or array at the cursor (its opening bracket).
    pub(crate) fn enter(&mut self) -> Result<(), JsonError> {
        if self.depth + 1 == MAX_DEPTH {
            return Err(self.error("nested too deeply"));
        }
        self.depth += 1;
        self.i += 1;
        Ok(())
    }

    /// Consumes `c` (after whitespace) or fails with `what`.
    fn expect(&mut self, c: u8, what: &'static str) -> Result<(), JsonError> {
        self.ws();
        if self.bytes().get(self.i) != Some(&c) {
            return Err(self.error(what));
        }
        self.i += 1;
        Ok(())
    }

    /// In an object just entered: the next key, read up to its colon, or `None` at the closing
    /// brace (the object is left). `first` is true before the first key and is then cleared.
    /// `expected`: a key most likely next, written without escapes: when the key is that one, it
    /// is matched byte for byte instead of scanned ([`Key::Expected`]).
    #[inline(always)]
    pub(crate) fn next_key(
        &mut self,
        first: &mut bool,
        expected: Option<&str>,
    ) -> Result<Option<Key<'t>>, JsonError> {
        if !self.next_item(first, b'}', "expected `,` or `}` after an object member")? {
            return Ok(None);
        }
        let b = self.bytes();
        if b.get(self.i) != Some(&b'"') {
            return Err(self.error("expected a key (a string)"));
        }
        let key = match expected {
            Some(name)
                if b.get(self.i + 1..self.i + 1 + name.len()) == Some(name.as_bytes())
                    && b.get(self.i + 1 + name.len()) == Some(&b'"') =>
            {
                self.i += name.len() + 2;
                Key::Expected
            }
            _ => Key::Raw(self.string()?),
        };
        self.expect(b':', "expected `:` after an object key")?;
        Ok(Some(key))
    }

    /// In an array just entered: whether another element follows (the cursor is before it), or
    /// false at the closing bracket (the array is left).
    pub(crate) fn next_element(&mut self, first: &mut bool) -> Result<bool, JsonError> {
        self.next_item(first, b']', "expected `,` or `]` after an array element")
    }

    /// In an object or array just entered: false at its `close` bracket (it is left), else true
    /// with the comma before the next item and the whitespace after it consumed (`first`: there is
    /// none before the first item; it is then cleared).
    #[inline(always)]
    fn next_item(
        &mut self,
        first: &mut bool,
        close: u8,
        what: &'static str,
    ) -> Result<bool, JsonError> {
        self.ws();
        match self.bytes().get(self.i) {
            Some(&c) if c == close => {
                self.i += 1;
                self.depth -= 1;
                return Ok(false);
            }
            Some(b',') if !*first => {
                self.i += 1;
                self.ws();
            }
            _ if !*first => return Err(self.error(what)),
            _ => {}
        }
        *first = false;
        Ok(true)
    }

    /// Reads (and checks) the value at the cursor, whatever it is. Inlined, like the other steps
    /// the normalizer takes for every value: their results then stay in registers (returned
    /// through memory, they were copied back with loads wider than the stores that wrote them,
    /// which stall).
    #[inline(always)]
    pub(crate) fn value(&mut self) -> Result<Raw<'t>, JsonError> {
        let c = self.peek_value()?;
        match c {
            b'"' => self.string(),
            b'{' | b'[' => self.container(),
            _ => {
                let start = self.i;
                match c {
                    b't' => self.literal("true")?,
                    b'f' => self.literal("false")?,
                    b'n' => self.literal("null")?,
                    b'-' | b'0'..=b'9' => self.number()?,
                    _ => return Err(self.error("expected a value")),
                }
                Ok(Raw {
                    text: &self.text[start..self.i],
                    escaped: false,
                })
            }
        }
    }

    /// Reads (and checks) the object or array at the cursor (its opening bracket, which
    /// [`Reader::value`] has seen). Out of line: skipped containers are few, and inlining this
    /// recursion would only grow the per-value path.
    #[inline(never)]
    fn container(&mut self) -> Result<Raw<'t>, JsonError> {
        let start = self.i;
        match self.bytes()[start] {
            b'{' => {
                self.enter()?;
                let mut first = true;
                while self.next_key(&mut first, None)?.is_some() {
                    self.value()?;
                }
            }
            _ => {
                self.enter()?;
                let mut first = true;
                while self.next_element(&mut first)? {
                    self.value()?;
                }
            }
        }
        Ok(Raw {
            text: &self.text[start..self.i],
            escaped: false,
        })
    }

    fn literal(&mut self, word: &'static str) -> Result<(), JsonError> {
        if !self.text[self.i..].starts_with(word) {
            return Err(self.error("expected a value"));
        }
        self.i += word.len();
        Ok(())
    }

    fn digits(&mut self) -> usize {
        let start = self.i;
        while self.bytes().get(self.i).is_some_and(u8::is_ascii_digit) {
            self.i += 1;
        }
        self.i - start
    }

    /// `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`
    fn number(&mut self) -> Result<(), JsonError> {
        let b = self.bytes();
        if b.get(self.i) == Some(&b'-') {
            self.i += 1;
        }
        match b.get(self.i) {
            Some(b'0') => self.i += 1,
            Some(b'1'..=b'9') => {
                self.digits();
            }
            _ => return Err(self.error("invalid number")),
        }
        if b.get(self.i) == Some(&b'.') {
            self.i += 1;
            if self.digits() == 0 {
                return Err(self.error("invalid number: a digit must follow the decimal point"));
            }
        }
        if let Some(b'e' | b'E') = b.get(self.i) {
            self.i += 1;
            if let Some(b'+' | b'-') = b.get(self.i) {
                self.i += 1;
            }
            if self.digits() == 0 {
                return Err(self.error("invalid number: a digit must follow the exponent"));
            }
        }
        Ok(())
    }

    /// The string at the cursor (its opening quote), quotes included.
    #[inline(always)]
    pub(crate) fn string(&mut self) -> Result<Raw<'t>, JsonError> {
        let b = self.bytes();
        let start = self.i;
        let mut i = start + 1;
        let mut escaped = false;
        loop {
            // Eight bytes at a time up to the next quote, backslash or control character.
            while let Some(chunk) = b.get(i..i + 8) {
                let mut w = [0; 8];
                w.copy_from_slice(chunk);
                let found = specials(u64::from_le_bytes(w));
                if found != 0 {
                    i += found.trailing_zeros() as usize / 8;
                    break;
                }
                i += 8;
            }
            match b.get(i) {
                Some(b'"') => {
                    self.i = i + 1;
                    return Ok(Raw {
                        text: &self.text[start..self.i],
                        escaped,
                    });
                }
                Some(b'\\') => {
                    escaped = true;
                    i += 1;
                    match b.get(i) {
                        Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => i += 1,
                        Some(b'u') => {
                            let hex = b.get(i + 1..i + 5);
                            if !hex.is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)) {
                                self.i = i;
                                return Err(self.error("invalid \\u escape in a string"));
                            }
                            i += 5;
                        }
                        _ => {
                            self.i = i;
                            return Err(self.error("invalid escape in a string"));
                        }
                    }
                }
                Some(&c) if c < 0x20 => {
                    self.i = i;
                    return Err(self.error("a control character (U+0000 to U+001F) in a string"));
                }
                Some(_) => i += 1,
                None => {
                    self.i = i;
                    return Err(self.error("the text ends inside a string"));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Whether the reader takes `text` as one JSON value.
    fn valid(text: &str) -> Result<(), JsonError> {
        let mut r = Reader::new(text);
        r.value()?;
        r.end()
    }

    #[test]
    fn the_grammar() {
        for ok in [
            "0",
            "-0",
            "-12.5e+3",
            "1E9",
            "0.25",
            " true ",
            "false",
            "null",
            r#""""#,
            r#""a\"b\\c\/d\b\f\n\r\t\u00e9\uD83D\ude00""#,
            "\"caf\u{e9} \u{1F600}\"",
            "[]",
            "[1, [2, {}], {\"a\": [null]}]",
            "{\"a\":1,\"b\":{\"c\":\"d\"}}",
            "\n{ \"a\" : 1 }\r\n",
        ] {
            assert_eq!(valid(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            "01",
            "1.",
            ".5",
            "1e",
            "+1",
            "-",
            "tru",
            "nul",
            "True",
            "\"abc",
            "\"a\\x\"",
            "\"a\\u12g4\"",
            "\"a\\u12\"",
            "\"tab\there\"",
            "[1,]",
            "[1 2]",
            "{\"a\":1,}",
            "{\"a\" 1}",
            "{a:1}",
            "{\"a\":}",
            "{\"a\":1",
            "[",
            "{} {}",
            "1 2",
        ] {
            assert!(valid(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn depth_is_bounded() {
        let deep = |n| format!("{}{}", "[".repeat(n), "]".repeat(n));
        assert_eq!(valid(&deep(127)), Ok(()));
        assert_eq!(valid(&deep(128)).unwrap_err().what, "nested too deeply");
        // Far deeper than the stack allows when read recursively: refused, not a crash.
        assert!(valid(&deep(100_000)).is_err());
    }

    #[test]
    fn errors_say_where() {
        let e = valid("{\"a\": 1,\n \"b\": tru}").unwrap_err();
        assert_eq!(e.to_string(), "expected a value at line 2 column 7");
        let e = valid("[\"é\", x]").unwrap_err();
        assert_eq!((e.line, e.column), (1, 7));
    }

    #[test]
    fn strings_report_escapes_and_stop_at_the_quote() {
        for (text, escaped) in [
            ("\"plain text that is longer than eight bytes\"", false),
            ("\"short\"", false),
            ("\"a long string with an escape \\n at the end\"", true),
            ("\"\\u0041\"", true),
        ] {
            let mut r = Reader::new(text);
            let raw = r.string().unwrap();
            assert_eq!((raw.text, raw.escaped), (text, escaped));
        }
        // Every position of the closing quote and of a control character in a long string.
        for n in 0..40 {
            let s = format!("\"{}\",", "x".repeat(n));
            let mut r = Reader::new(&s);
            assert_eq!(r.string().unwrap().text.len(), n + 2);
            let bad = format!("\"{}\u{1}{}\"", "x".repeat(n), "y".repeat(9));
            assert!(Reader::new(&bad).string().is_err(), "{n}");
        }
    }

    /// A JSON value as text, with whitespace and escapes in places.
    fn json_text() -> impl Strategy<Value = String> {
        let leaf = prop_oneof![
            Just("null".to_owned()),
            any::<bool>().prop_map(|b| b.to_string()),
            any::<i64>().prop_map(|n| n.to_string()),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(|f| format!("{f:e}")),
            any::<String>().prop_map(|s| serde_json::to_string(&s).unwrap()),
            "[a-z\\\\\"\u{e9}\u{1F600}]{0,20}".prop_map(|s| serde_json::to_string(&s).unwrap()),
        ];
        leaf.prop_recursive(4, 40, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6)
                    .prop_map(|v| format!("[ {} ]", v.join(" ,\n"))),
                prop::collection::vec(("[a-z\"\\\\]{0,6}", inner), 0..6).prop_map(|m| {
                    let members: Vec<String> = m
                        .iter()
                        .map(|(k, v)| format!("{}:{v}", serde_json::to_string(k).unwrap()))
                        .collect();
                    format!("{{{}}}", members.join(","))
                }),
            ]
        })
    }

    proptest! {
        /// The reader takes what serde_json takes, and each scalar's raw text is the literal.
        #[test]
        fn valid_json_is_read(text in json_text()) {
            prop_assert_eq!(valid(&text), Ok(()));
            let v: serde_json::Value = serde_json::from_str(&text).unwrap();
            prop_assert_eq!(&serde_json::from_str::<serde_json::Value>(Reader::new(&text).value().unwrap().text).unwrap(), &v);
        }

        /// With a byte removed, replaced or inserted, the reader and serde_json agree on whether
        /// the text is still JSON.
        #[test]
        fn damaged_json_agrees_with_serde(
            text in json_text(),
            at in any::<prop::sample::Index>(),
            edit in 0..3u8,
            byte in prop::sample::select(b"\"\\{}[]:,0-.eE tfnu\x01a".to_vec()),
        ) {
            let mut bytes = text.into_bytes();
            let at = at.index(bytes.len() + 1);
            match edit {
                0 if at < bytes.len() => { bytes.remove(at); }
                1 if at < bytes.len() => bytes[at] = byte,
                _ => bytes.insert(at, byte),
            }
            if let Ok(text) = String::from_utf8(bytes) {
                let serde = serde_json::from_str::<serde::de::IgnoredAny>(&text).is_ok();
                prop_assert_eq!(valid(&text).is_ok(), serde, "{:?}", text);
            }
        }
    }
}
