//! Rows as JSON: event fields in schema order, then `p_log_type`, `p_row_id`, `p_event_time`,
//! `p_parse_time`, `p_source_id`, `p_source_label`, then the `p_any_*` lists in alphabetical order.

use crate::normalize::{Normalizer, Row, Value};
use crate::schema::{Field, Type};
use crate::time::TimeLayout;

impl Normalizer {
    /// Appends the row as one JSON object (no newline) to `out`.
    pub fn write_json(&self, row: &Row<'_>, layout: TimeLayout, out: &mut Vec<u8>) {
        out.push(b'{');
        let mut first = true;
        write_fields(&self.schema().fields, &row.fields, layout, out, &mut first);
        let mut key = |out: &mut Vec<u8>, k: &str| {
            if !first {
                out.push(b',');
            }
            first = false;
            write_str(out, k);
            out.push(b':');
        };
        key(out, "p_log_type");
        write_str(out, &self.schema().name);
        key(out, "p_row_id");
        write_str(out, &row.row_id);
        let mut buf = String::with_capacity(30);
        for (name, t) in [
            ("p_event_time", row.event_time),
            ("p_parse_time", row.parse_time),
        ] {
            key(out, name);
            buf.clear();
            layout.write(t, &mut buf);
            write_str(out, &buf);
        }
        if let Some(id) = &row.source_id {
            key(out, "p_source_id");
            write_str(out, id);
        }
        if let Some(label) = &row.source_label {
            key(out, "p_source_label");
            write_str(out, label);
        }
        for (field, values) in row.indicators.columns() {
            key(out, field.column());
            out.push(b'[');
            for (i, v) in values.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_str(out, v);
            }
            out.push(b']');
        }
        out.push(b'}');
    }

    /// The row as a JSON string.
    pub fn to_json(&self, row: &Row<'_>, layout: TimeLayout) -> String {
        let mut out = Vec::with_capacity(1024);
        self.write_json(row, layout, &mut out);
        // Every byte written is valid UTF-8: input strings are UTF-8 and escapes are ASCII.
        String::from_utf8(out)
            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
    }
}

fn write_fields(
    fields: &[Field],
    slots: &[Option<Value<'_>>],
    layout: TimeLayout,
    out: &mut Vec<u8>,
    first: &mut bool,
) {
    for (field, slot) in fields.iter().zip(slots) {
        let Some(value) = slot else { continue };
        if !*first {
            out.push(b',');
        }
        *first = false;
        write_str(out, &field.name);
        out.push(b':');
        write_value(&field.ty, value, layout, out);
    }
}

fn write_value(ty: &Type, value: &Value<'_>, layout: TimeLayout, out: &mut Vec<u8>) {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::String(s) => write_str(out, s),
        Value::Int(i) => out.extend_from_slice(itoa::Buffer::new().format(*i).as_bytes()),
        Value::Float(f) => out.extend_from_slice(ryu::Buffer::new().format_finite(*f).as_bytes()),
        Value::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        Value::Timestamp(t) => {
            let mut buf = String::with_capacity(30);
            layout.write(*t, &mut buf);
            write_str(out, &buf);
        }
        Value::Json(raw) => out.extend_from_slice(raw.as_bytes()),
        Value::Object(slots) => {
            let fields = match ty {
                Type::Object { fields, .. } => &fields[..],
                _ => &[],
            };
            out.push(b'{');
            write_fields(fields, slots, layout, out, &mut true);
            out.push(b'}');
        }
        Value::Array(items) => {
            let element = match ty {
                Type::Array { element, .. } => element,
                other => other,
            };
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_value(element, item, layout, out);
            }
            out.push(b']');
        }
    }
}

/// Writes a JSON string literal; plain strings are copied without going through the escaper.
pub(crate) fn write_str(out: &mut Vec<u8>, s: &str) {
    if !needs_escape(s.as_bytes()) {
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    } else {
        // Serializing a str into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *out, s);
    }
}

/// Whether a string has a byte JSON must escape (`"`, `\\`, or a control character below 0x20).
/// Checks eight bytes at a time (SWAR); most strings need no escaping.
fn needs_escape(b: &[u8]) -> bool {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    let has_zero = |x: u64| x.wrapping_sub(LO) & !x & HI;
    let mut chunks = b.chunks_exact(8);
    for c in &mut chunks {
        let mut a = [0u8; 8];
        a.copy_from_slice(c);
        let x = u64::from_le_bytes(a);
        // Bytes below 0x20: subtracting 0x20 borrows into the high bit, unless it was already set.
        let control = x.wrapping_sub(LO * 0x20) & !x & HI;
        if control | has_zero(x ^ (LO * u64::from(b'"'))) | has_zero(x ^ (LO * u64::from(b'\\')))
            != 0
        {
            return true;
        }
    }
    chunks
        .remainder()
        .iter()
        .any(|&c| c < 0x20 || c == b'"' || c == b'\\')
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn write_str_is_json(s in "\\PC*|[\\x00-\\x7f]{0,40}") {
            let mut out = Vec::new();
            write_str(&mut out, &s);
            let back: String = serde_json::from_slice(&out).unwrap();
            prop_assert_eq!(back, s.clone());
            let slow = s.bytes().any(|c| c < 0x20 || c == b'"' || c == b'\\');
            prop_assert_eq!(needs_escape(s.as_bytes()), slow);
        }
    }
}
