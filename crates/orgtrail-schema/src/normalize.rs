//! The normalizer: one JSON line in, one row or one classification failure out.
//!
//! It decodes the line straight into the schema's shape with a [`Reader`] (no intermediate value
//! tree): unknown keys are skipped, scalars are read from their raw JSON text so that
//! Panther's coercions see the literal (a number's text, a string's bytes), `json` fields keep their
//! bytes verbatim, and every type or rule violation is recorded with its JSON path instead of stopping
//! at the first.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use jiff::Timestamp;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::indicators::Indicators;
use crate::json::{JsonError, Key, Raw, Reader};
use crate::schema::{Field, IpVersion, Schema, StringRules, Type};
use crate::sink::{Owned, Sink, Standard, TreeSink};
use crate::time::TimeFormat;

/// A normalized value, shaped by the schema. Strings and `json` text borrow from the input line
/// when they can.
#[derive(Debug, Clone, PartialEq)]
pub enum Value<'a> {
    /// Only as an array element (`[1, null]`); absent fields are `None` in their slot.
    Null,
    String(Cow<'a, str>),
    Int(i64),
    Float(f64),
    Bool(bool),
    Timestamp(Timestamp),
    /// One slot per schema field, in schema order; `None` = absent.
    Object(Vec<Option<Value<'a>>>),
    Array(Vec<Value<'a>>),
    /// Raw JSON text, byte for byte as in the input.
    Json(Cow<'a, str>),
}

impl Value<'_> {
    /// Copies every borrowed string so the value outlives the input line.
    pub fn into_owned(self) -> Value<'static> {
        match self {
            Value::Null => Value::Null,
            Value::String(s) => Value::String(Cow::Owned(s.into_owned())),
            Value::Int(i) => Value::Int(i),
            Value::Float(f) => Value::Float(f),
            Value::Bool(b) => Value::Bool(b),
            Value::Timestamp(t) => Value::Timestamp(t),
            Value::Object(slots) => Value::Object(owned_slots(slots)),
            Value::Array(items) => Value::Array(items.into_iter().map(Value::into_owned).collect()),
            Value::Json(s) => Value::Json(Cow::Owned(s.into_owned())),
        }
    }
}

fn owned_slots(slots: Vec<Option<Value<'_>>>) -> Vec<Option<Value<'static>>> {
    slots
        .into_iter()
        .map(|v| v.map(Value::into_owned))
        .collect()
}

/// A normalized event: the schema's fields plus the `p_*` standard fields.
#[derive(Debug, Clone, PartialEq)]
pub struct Row<'a> {
    /// Top-level fields in schema order; `None` = absent.
    pub fields: Vec<Option<Value<'a>>>,
    pub row_id: String,
    pub event_time: Timestamp,
    pub parse_time: Timestamp,
    pub source_id: Option<Arc<str>>,
    pub source_label: Option<Arc<str>>,
    /// Sorted, de-duplicated `p_any_*` values.
    pub indicators: Indicators,
    /// The schema has an event-time field, it was present, but no format parsed it
    /// (`p_event_time` fell back to `p_parse_time`).
    pub event_time_unparsed: bool,
}

impl Row<'_> {
    pub fn into_owned(self) -> Row<'static> {
        Row {
            fields: owned_slots(self.fields),
            row_id: self.row_id,
            event_time: self.event_time,
            parse_time: self.parse_time,
            source_id: self.source_id,
            source_label: self.source_label,
            indicators: self.indicators,
            event_time_unparsed: self.event_time_unparsed,
        }
    }
}

/// One problem with an input line: where (a JSON path such as `$.attributes.time`) and what.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    pub path: String,
    pub message: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// A line that does not fit the schema: every problem found, and the raw line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Failure {
    pub errors: Vec<FieldError>,
    /// The raw line (invalid UTF-8 replaced by U+FFFD; see `payload_base64`).
    pub payload: String,
    /// The exact bytes, base64, only when the line is not valid UTF-8.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payload_base64: Option<String>,
}

/// The start of the error of a line whose JSON parse stopped before its end.
const INVALID_JSON: &str = "invalid JSON: ";

impl Failure {
    /// The parse stopped before the end of the line (a syntax error, or text after the value), so
    /// the rest of it was not read and the line may not be JSON at all. Any other failure comes from
    /// a parse that read the whole line as valid JSON.
    pub fn parse_stopped(&self) -> bool {
        self.errors
            .iter()
            .any(|e| e.path == "$" && e.message.starts_with(INVALID_JSON))
    }
}

/// What became of one input line.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome<'a> {
    Row(Row<'a>),
    Failure(Failure),
    /// An empty (or whitespace-only) line: skipped, as Panther does.
    Skip,
}

/// A compiled schema plus the source it normalizes for. Cheap to clone; use one per source.
#[derive(Debug, Clone)]
pub struct Normalizer {
    schema: Arc<Schema>,
    source_id: Option<Arc<str>>,
    source_label: Option<Arc<str>>,
}

impl Normalizer {
    pub fn new(schema: Arc<Schema>) -> Self {
        Normalizer {
            schema,
            source_id: None,
            source_label: None,
        }
    }

    /// Sets `p_source_id` and `p_source_label` (empty = omitted).
    pub fn with_source(mut self, id: Option<String>, label: Option<String>) -> Self {
        self.source_id = id.filter(|s| !s.is_empty()).map(Arc::from);
        self.source_label = label.filter(|s| !s.is_empty()).map(Arc::from);
        self
    }

    pub fn schema(&self) -> &Arc<Schema> {
        &self.schema
    }

    pub fn source_id(&self) -> Option<&str> {
        self.source_id.as_deref()
    }

    pub fn source_label(&self) -> Option<&str> {
        self.source_label.as_deref()
    }

    /// Normalizes one line with the current time as `p_parse_time`.
    pub fn normalize<'a>(&self, line: &'a [u8]) -> Outcome<'a> {
        self.normalize_at(line, Timestamp::now())
    }

    /// Normalizes one line with a given `p_parse_time`.
    pub fn normalize_at<'a>(&self, line: &'a [u8], parse_time: Timestamp) -> Outcome<'a> {
        let mut tree = TreeSink::default();
        match self.normalize_into(line, parse_time, &mut tree) {
            Verdict::Row => tree.take().map_or(Outcome::Skip, Outcome::Row),
            Verdict::Failure(f) => Outcome::Failure(f),
            Verdict::Skip => Outcome::Skip,
        }
    }

    /// Normalizes one line into `sink` (a row is passed on as it is read; see [`Sink`]).
    pub fn normalize_into<'a, S: Sink<'a>>(
        &self,
        line: &'a [u8],
        parse_time: Timestamp,
        sink: &mut S,
    ) -> Verdict {
        match utf8(line) {
            Ok(text) => self.normalize_text_into(text, parse_time, sink),
            Err(failure) => Verdict::Failure(failure),
        }
    }

    /// [`Normalizer::normalize_into`] for a line already known to be text.
    pub fn normalize_text_into<'a, S: Sink<'a>>(
        &self,
        text: &'a str,
        parse_time: Timestamp,
        sink: &mut S,
    ) -> Verdict {
        let (mut ctx, trimmed) = match decode_text(
            &self.schema.fields,
            self.schema.event_id.as_deref(),
            text,
            sink,
        ) {
            Ok(decoded) => decoded,
            Err(verdict) => return verdict,
        };
        let mut indicators = std::mem::take(&mut ctx.indicators);
        indicators.finish();
        let mut id = std::mem::take(&mut ctx.row_id);
        write_row_id(
            &mut id,
            self.source_id.as_deref().unwrap_or(""),
            ctx.event_id().unwrap_or(trimmed),
        );
        let standard = Standard {
            row_id: id,
            parse_time,
            source_id: self.source_id.clone(),
            source_label: self.source_label.clone(),
            indicators,
            event_time_unparsed: ctx.event_time_unparsed,
        };
        sink.end_row(
            ctx.event_time.map_or(parse_time, |(_, t)| t),
            Some(&standard),
        );
        ctx.indicators = standard.indicators;
        ctx.row_id = standard.row_id;
        ctx.recycle();
        Verdict::Row
    }
}

/// Buffers the normalizer reuses from row to row on one thread, so that a row costs no allocation
/// of its own (they keep the capacity of the largest row read).
#[derive(Default)]
struct Scratch {
    path: Vec<Seg>,
    present: Vec<bool>,
    indicators: Indicators,
    event_id: String,
    row_id: String,
}

thread_local! {
    static SCRATCH: std::cell::RefCell<Scratch> = std::cell::RefCell::default();
}

/// What became of a line normalized into a [`Sink`].
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// The row went into the sink.
    Row,
    /// Not a row (the sink was told to drop it).
    Failure(Failure),
    /// An empty (or whitespace-only) line.
    Skip,
}

/// The line as text, or the failure of a line that is not UTF-8.
fn utf8(line: &[u8]) -> Result<&str, Failure> {
    std::str::from_utf8(line).map_err(|e| {
        use base64::Engine;
        Failure {
            errors: vec![FieldError {
                path: "$".into(),
                message: format!(
                    "the line is not valid UTF-8 (first bad byte at offset {}); the exact bytes are in payload_base64",
                    e.valid_up_to()
                ),
            }],
            payload: String::from_utf8_lossy(line).into_owned(),
            payload_base64: Some(base64::engine::general_purpose::STANDARD.encode(line)),
        }
    })
}

/// Decodes one line for `fields` into `sink`: the context (indicators, event time, event id) and
/// the trimmed text, for the caller to end the row; or why it is not a row (the sink was told).
pub(crate) fn decode<'s, 'a, S: Sink<'a>>(
    fields: &'s [Field],
    event_id: Option<&'s [usize]>,
    line: &'a [u8],
    sink: &mut S,
) -> Result<(Ctx<'s>, &'a str), Verdict> {
    let text = utf8(line).map_err(Verdict::Failure)?;
    decode_text(fields, event_id, text, sink)
}

/// [`decode`] for a line already known to be text.
fn decode_text<'s, 'a, S: Sink<'a>>(
    fields: &'s [Field],
    event_id: Option<&'s [usize]>,
    text: &'a str,
    sink: &mut S,
) -> Result<(Ctx<'s>, &'a str), Verdict> {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(Verdict::Skip);
    }
    let mut ctx = Ctx::new(fields, event_id);
    let mut reader = Reader::new(trimmed);
    let parsed =
        object(&mut reader, fields, false, &mut ctx, sink).and_then(|v| reader.end().map(|()| v));
    if let Err(e) = parsed {
        ctx.path.clear();
        ctx.error(format!("{INVALID_JSON}{e}"));
    }
    if !ctx.errors.is_empty() {
        sink.abort_row();
        let errors = std::mem::take(&mut ctx.errors);
        ctx.recycle();
        return Err(Verdict::Failure(Failure {
            errors,
            payload: text.to_owned(),
            payload_base64: None,
        }));
    }
    Ok((ctx, trimmed))
}

/// `p_row_id`: the first 32 hex digits of SHA-256(`source_id:event_id`), so a replayed event gets
/// the same id. Without an event id, the trimmed raw line stands in for it.
pub fn row_id(source_id: &str, event_id: &str) -> String {
    let mut out = String::with_capacity(32);
    write_row_id(&mut out, source_id, event_id);
    out
}

/// [`row_id`] into `out` (cleared first).
fn write_row_id(out: &mut String, source_id: &str, event_id: &str) {
    let mut h = Sha256::new();
    h.update(source_id.as_bytes());
    h.update(b":");
    h.update(event_id.as_bytes());
    let digest = h.finalize();
    out.clear();
    for b in &digest[..16] {
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 15)]));
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// A step of the path being read.
enum Seg {
    /// A field of the current object, by index.
    Key(usize),
    Index(usize),
}

pub(crate) struct Ctx<'s> {
    /// The fields of the row (the path starts there).
    root: &'s [Field],
    errors: Vec<FieldError>,
    path: Vec<Seg>,
    pub(crate) indicators: Indicators,
    pub(crate) event_time: Option<(u32, Timestamp)>,
    pub(crate) event_time_unparsed: bool,
    /// Inside an array, `required` and `validate` are not checked (Panther has no `dive`).
    array_depth: u32,
    /// Whether each field of the objects being read was present (a stack, one slot per field).
    present: Vec<bool>,
    /// Field indices of the schema's `isEventId` field, and its value as last read (when
    /// `has_event_id`).
    event_id_path: Option<&'s [usize]>,
    event_id: String,
    has_event_id: bool,
    /// The buffer `p_row_id` is written into.
    row_id: String,
}

impl<'s> Ctx<'s> {
    /// A context for one row, with this thread's buffers.
    fn new(root: &'s [Field], event_id_path: Option<&'s [usize]>) -> Self {
        SCRATCH.with_borrow_mut(|s| Ctx {
            root,
            errors: Vec::new(),
            path: std::mem::take(&mut s.path),
            indicators: std::mem::take(&mut s.indicators),
            event_time: None,
            event_time_unparsed: false,
            array_depth: 0,
            present: std::mem::take(&mut s.present),
            event_id_path,
            event_id: std::mem::take(&mut s.event_id),
            has_event_id: false,
            row_id: std::mem::take(&mut s.row_id),
        })
    }

    /// Hands the buffers back to this thread for the next row.
    pub(crate) fn recycle(mut self) {
        self.path.clear();
        self.present.clear();
        self.indicators.clear();
        SCRATCH.with_borrow_mut(|s| {
            s.path = self.path;
            s.present = self.present;
            s.indicators = self.indicators;
            s.event_id = self.event_id;
            s.row_id = self.row_id;
        });
    }

    /// The event id as last read.
    pub(crate) fn event_id(&self) -> Option<&str> {
        self.has_event_id.then_some(self.event_id.as_str())
    }

    fn error(&mut self, message: String) {
        use std::fmt::Write;
        let mut path = String::from("$");
        let mut fields = self.root;
        let mut ty = None;
        for seg in &self.path {
            // Writing into a String cannot fail.
            let _ = match *seg {
                Seg::Key(i) => {
                    let field = fields.get(i);
                    ty = field.map(|f| &f.ty);
                    write!(path, ".{}", field.map_or("?", |f| f.name.as_str()))
                }
                Seg::Index(i) => {
                    ty = match ty {
                        Some(Type::Array { element, .. }) => Some(&**element),
                        _ => None,
                    };
                    write!(path, "[{i}]")
                }
            };
            if let Some(Type::Object { fields: f, .. }) = ty {
                fields = f;
            }
        }
        self.errors.push(FieldError { path, message });
    }

    fn event_time(&mut self, priority: u32, t: Timestamp) {
        if self.event_time.is_none_or(|(p, _)| priority < p) {
            self.event_time = Some((priority, t));
        }
    }

    /// Whether the current path (all fields, no array) is `path` (`prefix`: or leads to it).
    fn at(&self, path: &[usize], prefix: bool) -> bool {
        (self.path.len() == path.len() || prefix && self.path.len() < path.len())
            && self
                .path
                .iter()
                .zip(path)
                .all(|(seg, i)| matches!(seg, Seg::Key(k) if k == i))
    }
}

/// The JSON kind of a raw value, from its first byte.
fn kind_of(raw: &str) -> &'static str {
    match raw.as_bytes().first() {
        Some(b'"') => "a string",
        Some(b'{') => "an object",
        Some(b'[') => "an array",
        Some(b't' | b'f') => "a boolean",
        Some(b'n') => "null",
        _ => "a number",
    }
}

/// Shows a value in an error message, shortened.
fn show(raw: &str) -> String {
    const MAX: usize = 80;
    if raw.len() <= MAX {
        return raw.to_owned();
    }
    let mut end = MAX;
    while !raw.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &raw[..end])
}

pub(crate) type Slots<'de> = Vec<Option<Value<'de>>>;

/// The content of a raw JSON string literal (`escaped`: it has escapes to decode).
#[inline(always)]
fn decode_str(raw: Raw<'_>) -> Cow<'_, str> {
    let inner = &raw.text[1..raw.text.len() - 1];
    if !raw.escaped {
        return Cow::Borrowed(inner);
    }
    decode_escaped(raw.text)
}

/// The content of a JSON string literal with escapes.
#[cold]
fn decode_escaped(text: &str) -> Cow<'_, str> {
    let inner = &text[1..text.len() - 1];
    // The literal was already checked by the reader; a `\u` escape of half a surrogate pair
    // cannot be decoded, and then the raw text is kept rather than lost.
    serde_json::from_str::<String>(text).map_or(Cow::Borrowed(inner), Cow::Owned)
}

/// The field named `key` (a raw key). The reader matched the field after the last one found
/// first: objects usually list their keys in the schema's order.
fn field_of(fields: &[Field], key: Raw<'_>) -> Option<usize> {
    let name = decode_str(key);
    fields.iter().position(|f| f.name == *name)
}

/// A value of the wrong JSON kind where `expected` was due: records the error, reads past it,
/// and yields absent (`null` is absent without an error).
fn wrong_kind<'t, S: Sink<'t>>(
    r: &mut Reader<'t>,
    expected: &str,
    ctx: &mut Ctx<'_>,
    sink: &mut S,
) -> Result<bool, JsonError> {
    let raw = r.value()?;
    let got = match raw.text.as_bytes()[0] {
        b'n' => None,
        b't' | b'f' => Some(format!("the boolean {}", raw.text)),
        b'"' => Some(format!(
            "the string {}",
            show(&format!("{:?}", decode_str(raw)))
        )),
        b'[' => Some("an array".to_owned()),
        b'{' => Some("an object".to_owned()),
        _ => Some(format!("the number {}", raw.text)),
    };
    if let Some(got) = got {
        ctx.error(format!("expected {expected}, got {got}"));
    }
    sink.null();
    Ok(false)
}

/// The string at the cursor holds `what` (`isEmbeddedJSON`): `read` reads its content, all of
/// it, into `sink` (as owned values: the content does not live as long as the row); whether it is
/// present. A content that is not `what` is an error of the row, not of the line.
fn embedded_json<'t, 's, S: Sink<'t>>(
    r: &mut Reader<'t>,
    what: &str,
    ctx: &mut Ctx<'s>,
    sink: &mut S,
    read: impl for<'x> FnOnce(
        &mut Reader<'x>,
        &mut Ctx<'s>,
        &mut Owned<'_, 't>,
    ) -> Result<bool, JsonError>,
) -> Result<bool, JsonError> {
    let content = decode_str(r.string()?);
    let mut nested = Reader::new(&content);
    let parsed = read(&mut nested, ctx, &mut Owned(sink)).and_then(|x| nested.end().map(|()| x));
    Ok(parsed.unwrap_or_else(|e| {
        // The row is a failure: what reached the sink is dropped with it.
        ctx.error(format!("isEmbeddedJSON: the string is not {what}: {e}"));
        false
    }))
}

/// Reads the object at the cursor for `fields` (`embedded`: or a string holding it) into `sink`;
/// whether it is present.
fn object<'t, 's, S: Sink<'t>>(
    r: &mut Reader<'t>,
    fields: &'s [Field],
    embedded: bool,
    ctx: &mut Ctx<'s>,
    sink: &mut S,
) -> Result<bool, JsonError> {
    match r.peek_value()? {
        b'{' => {}
        b'"' if embedded => {
            return embedded_json(r, "a JSON object", ctx, sink, |n, ctx, sink| {
                object(n, fields, false, ctx, sink)
            });
        }
        _ => return wrong_kind(r, "an object", ctx, sink),
    }
    r.enter()?;
    sink.begin_object(fields.len());
    let base = ctx.present.len();
    ctx.present.resize(base + fields.len(), false);
    let mut next = 0;
    let mut first = true;
    loop {
        let expected = fields
            .get(next)
            .filter(|f| f.plain_name)
            .map(|f| f.name.as_str());
        let i = match r.next_key(&mut first, expected)? {
            None => break,
            Some(Key::Expected) => next,
            Some(Key::Raw(key)) => match field_of(fields, key) {
                Some(i) => i,
                None => {
                    r.value()?;
                    continue;
                }
            },
        };
        next = i + 1;
        ctx.path.push(Seg::Key(i));
        if let Some(id) = ctx.event_id_path
            && ctx.array_depth == 0
            && ctx.at(id, true)
        {
            // The event id is the value of its path as last read.
            ctx.has_event_id = false;
        }
        sink.field(i);
        ctx.present[base + i] = value(r, &fields[i].ty, ctx, sink)?;
        ctx.path.pop();
    }
    if ctx.array_depth == 0 {
        for (i, field) in fields.iter().enumerate() {
            if field.required && !ctx.present[base + i] {
                ctx.path.push(Seg::Key(i));
                let what = match field.ty {
                    Type::String(_) | Type::Object { .. } | Type::Json { .. } => "missing or null",
                    Type::Array { .. } => "missing, null or empty",
                    _ => "missing, null or \"\"",
                };
                ctx.error(format!("required field is {what}"));
                ctx.path.pop();
            }
        }
    }
    ctx.present.truncate(base);
    sink.end_object();
    Ok(true)
}

/// Reads the array at the cursor (`embedded`: or a string holding it) into `sink`; whether it is
/// present (it has elements).
fn array<'t, 's, S: Sink<'t>>(
    r: &mut Reader<'t>,
    element: &'s Type,
    embedded: bool,
    ctx: &mut Ctx<'s>,
    sink: &mut S,
) -> Result<bool, JsonError> {
    match r.peek_value()? {
        b'[' => {}
        b'"' if embedded => {
            return embedded_json(r, "a JSON array", ctx, sink, |n, ctx, sink| {
                array(n, element, false, ctx, sink)
            });
        }
        _ => return wrong_kind(r, "an array", ctx, sink),
    }
    r.enter()?;
    ctx.array_depth += 1;
    sink.begin_array();
    let mut items = 0;
    let mut first = true;
    while r.next_element(&mut first)? {
        ctx.path.push(Seg::Index(items));
        value(r, element, ctx, sink)?;
        ctx.path.pop();
        items += 1;
    }
    sink.end_array();
    ctx.array_depth -= 1;
    Ok(items > 0)
}

/// Reads the value at the cursor as a `ty` into `sink`; whether it is present.
fn value<'t, 's, S: Sink<'t>>(
    r: &mut Reader<'t>,
    ty: &'s Type,
    ctx: &mut Ctx<'s>,
    sink: &mut S,
) -> Result<bool, JsonError> {
    match ty {
        Type::Object {
            fields,
            embedded_json,
        } => object(r, fields, *embedded_json, ctx, sink),
        Type::Array {
            element,
            embedded_json,
        } => array(r, element, *embedded_json, ctx, sink),
        ty => Ok(match scalar(ty, r.value()?, ctx) {
            Some(v) => {
                sink.scalar(v);
                true
            }
            None => {
                sink.null();
                false
            }
        }),
    }
}

/// Applies Panther's coercions for a scalar type to a raw JSON value.
#[inline(always)]
fn scalar<'de>(ty: &Type, value: Raw<'de>, ctx: &mut Ctx<'_>) -> Option<Value<'de>> {
    let raw = value.text;
    let first = raw.as_bytes().first().copied();
    if first == Some(b'n') {
        return None; // null = absent
    }
    let is_str = first == Some(b'"');
    let is_num = matches!(first, Some(b'-' | b'0'..=b'9'));
    match ty {
        Type::Json { embedded_json } => {
            if *embedded_json && is_str {
                let content = decode_str(value);
                if content.is_empty() {
                    return None;
                }
                let mut nested = Reader::new(&content);
                return match nested.value().and_then(|_| nested.end()) {
                    Ok(()) => Some(Value::Json(Cow::Owned(content.trim().to_owned()))),
                    Err(e) => {
                        ctx.error(format!("isEmbeddedJSON: the string is not JSON: {e}"));
                        None
                    }
                };
            }
            Some(Value::Json(Cow::Borrowed(raw)))
        }
        Type::String(st) => {
            let s: Cow<'de, str> = match first {
                Some(b'"') => decode_str(value),
                Some(b't') => Cow::Borrowed("true"),
                Some(b'f') => Cow::Borrowed("false"),
                _ if is_num => Cow::Borrowed(raw),
                _ => {
                    ctx.error(format!("expected a string, got {}", kind_of(raw)));
                    return None;
                }
            };
            if ctx.array_depth == 0
                && let Some(rules) = &st.validate
            {
                check_rules(rules, &s, ctx);
            }
            for ind in &st.indicators {
                ctx.indicators.scan(*ind, &s);
            }
            if st.is_event_id
                && !s.is_empty()
                && ctx.array_depth == 0
                && ctx.event_id_path.is_some_and(|p| ctx.at(p, false))
            {
                ctx.event_id.clear();
                ctx.event_id.push_str(&s);
                ctx.has_event_id = true;
            }
            if let Some(et) = &st.event_time
                && !s.is_empty()
            {
                match parse_time(&et.formats, &s, false) {
                    Some(t) => ctx.event_time(et.priority, t),
                    None => ctx.event_time_unparsed = true,
                }
            }
            Some(Value::String(s))
        }
        Type::Int(width) => {
            let text: Cow<str> = if is_str {
                decode_str(value)
            } else {
                Cow::Borrowed(raw)
            };
            if is_str && text.is_empty() {
                return None;
            }
            let parsed = if is_num || is_str {
                text.parse::<i64>().ok()
            } else {
                None
            };
            let (lo, hi) = width.range();
            match parsed {
                Some(v) if (lo..=hi).contains(&v) => Some(Value::Int(v)),
                Some(_) => {
                    ctx.error(format!(
                        "{} is out of range for {} ({lo}..={hi})",
                        show(raw),
                        width.type_name()
                    ));
                    None
                }
                None => {
                    ctx.error(format!(
                        "expected an integer ({}), got {} {}",
                        width.type_name(),
                        kind_of(raw),
                        show(raw)
                    ));
                    None
                }
            }
        }
        Type::Float => {
            let text: Cow<str> = if is_str {
                decode_str(value)
            } else {
                Cow::Borrowed(raw)
            };
            if is_str && text.is_empty() {
                return None;
            }
            match (is_num || is_str)
                .then(|| text.trim().parse::<f64>().ok())
                .flatten()
            {
                Some(v) if v.is_finite() => Some(Value::Float(v)),
                _ => {
                    ctx.error(format!(
                        "expected a float, got {} {}",
                        kind_of(raw),
                        show(raw)
                    ));
                    None
                }
            }
        }
        Type::Boolean => {
            let text: Cow<str> = if is_str {
                decode_str(value)
            } else {
                Cow::Borrowed(raw)
            };
            let v = match &*text {
                "" if is_str => return None,
                "true" | "1" | "t" | "T" | "TRUE" | "True" => true,
                "false" | "0" | "f" | "F" | "FALSE" | "False" => false,
                _ => {
                    ctx.error(format!(
                        "expected a boolean, got {} {}",
                        kind_of(raw),
                        show(raw)
                    ));
                    return None;
                }
            };
            if !is_str && is_num && !matches!(raw, "0" | "1") {
                ctx.error(format!("expected a boolean, got the number {raw}"));
                return None;
            }
            if !is_str && !is_num && first != Some(b't') && first != Some(b'f') {
                ctx.error(format!("expected a boolean, got {}", kind_of(raw)));
                return None;
            }
            Some(Value::Bool(v))
        }
        Type::Timestamp(tt) => {
            if !is_str && !is_num {
                ctx.error(format!("expected a timestamp, got {}", kind_of(raw)));
                return None;
            }
            let text: Cow<str> = if is_str {
                decode_str(value)
            } else {
                Cow::Borrowed(raw)
            };
            if text.is_empty() {
                return None;
            }
            match parse_time(&tt.formats, &text, is_num) {
                Some(t) => {
                    if let Some(et) = &tt.event_time {
                        ctx.event_time(et.priority, t);
                    }
                    Some(Value::Timestamp(t))
                }
                None => {
                    let names: Vec<&str> = tt.formats.iter().map(TimeFormat::name).collect();
                    ctx.error(format!(
                        "cannot parse {} as a timestamp with format {}",
                        show(raw),
                        names.join(" or ")
                    ));
                    None
                }
            }
        }
        Type::Object { .. } | Type::Array { .. } => None, // handled by their visitors
    }
}

fn parse_time(formats: &[TimeFormat], text: &str, is_number: bool) -> Option<Timestamp> {
    formats.iter().find_map(|f| {
        if is_number {
            f.parse_number(text)
        } else {
            f.parse_str(text)
        }
    })
}

fn check_rules(rules: &StringRules, s: &str, ctx: &mut Ctx<'_>) {
    if let Some(allow) = &rules.allow {
        if !allow.iter().any(|a| a == s) {
            ctx.error(format!(
                "{} is not one of the allowed values ({})",
                show(&format!("{s:?}")),
                allow.join(", ")
            ));
        }
    } else if let Some(deny) = &rules.deny
        && deny.iter().any(|d| d == s)
    {
        ctx.error(format!("{} is a denied value", show(&format!("{s:?}"))));
    }
    if let Some(v) = rules.ip
        && !ip_matches(s, v)
    {
        ctx.error(format!("{} is not {}", show(&format!("{s:?}")), v.name()));
    }
    if let Some(v) = rules.cidr {
        let ok = s.split_once('/').is_some_and(|(addr, bits)| {
            let max = if addr.contains(':') { 128 } else { 32 };
            ip_matches(addr, v)
                && !bits.is_empty()
                && bits.bytes().all(|c| c.is_ascii_digit())
                && bits.parse::<u32>().is_ok_and(|b| b <= max)
        });
        if !ok {
            ctx.error(format!(
                "{} is not a CIDR block of {}",
                show(&format!("{s:?}")),
                v.name()
            ));
        }
    }
}

fn ip_matches(s: &str, v: IpVersion) -> bool {
    match s.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(_)) => v != IpVersion::V6,
        Ok(std::net::IpAddr::V6(_)) => v != IpVersion::V4,
        Err(_) => false,
    }
}
