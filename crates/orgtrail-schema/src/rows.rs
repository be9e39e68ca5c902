//! Reading normalized rows back: the JSON that [`crate::Normalizer::write_json`] writes (either time
//! layout) goes into a [`Sink`] again, the `p_*` fields as fields, so rows can travel through files
//! and pipes (`orgtrail parse | orgtrail lake ingest`) without being normalized twice. Stored values
//! are kept as they are (the `p_any_*` lists are not sorted again).

use jiff::Timestamp;

use crate::normalize::{Failure, Value, Verdict, decode};
use crate::schema::{EventTime, Field, Schema, StringType, TimestampType, Type};
use crate::sink::{Sink, Standard};
use crate::time::TimeFormat;

/// Reads rows of one log type.
#[derive(Debug, Clone)]
pub struct RowReader {
    fields: Vec<Field>,
    events: usize,
    log_type: String,
}

/// The `p_*` columns after the event fields, in output order.
const P_FIELDS: [&str; 6] = [
    "p_log_type",
    "p_row_id",
    "p_event_time",
    "p_parse_time",
    "p_source_id",
    "p_source_label",
];

impl RowReader {
    pub fn new(schema: &Schema) -> Self {
        let mut fields: Vec<Field> = schema.fields.iter().map(plain).collect();
        let events = fields.len();
        for name in P_FIELDS {
            let required = matches!(name, "p_row_id" | "p_event_time" | "p_parse_time");
            let ty = if name == "p_event_time" {
                // What the reader reports as the row's event time.
                Type::Timestamp(TimestampType {
                    event_time: Some(EventTime {
                        priority: 0,
                        formats: Vec::new(),
                    }),
                    ..timestamp_type()
                })
            } else if name == "p_parse_time" {
                timestamp()
            } else {
                Type::String(StringType::default())
            };
            fields.push(Field::new(name.to_owned(), required, None, ty));
        }
        for f in &schema.indicator_fields {
            fields.push(Field::new(
                f.column().to_owned(),
                false,
                None,
                Type::Array {
                    element: Box::new(Type::String(StringType::default())),
                    embedded_json: false,
                },
            ));
        }
        RowReader {
            fields,
            events,
            log_type: schema.name.clone(),
        }
    }

    /// Reads one row line into `sink` (its columns: the log type's fields, the `p_*` fields, then
    /// the `p_any_*` lists, as in the lake's table).
    pub fn read_into<'a, S: Sink<'a>>(&self, line: &'a [u8], sink: &mut S) -> Verdict {
        let mut check = LogTypeCheck {
            sink,
            depth: 0,
            field: usize::MAX,
            log_type_field: self.events,
            log_type: &self.log_type,
            found: None,
        };
        let (ctx, raw) = match decode(&self.fields, None, line, &mut check) {
            Ok(decoded) => decoded,
            Err(verdict) => return verdict,
        };
        let sink = check.sink;
        if let Some(t) = check.found {
            sink.abort_row();
            return Verdict::Failure(Failure {
                errors: vec![crate::FieldError {
                    path: "$.p_log_type".into(),
                    message: format!("this row is a {t}, not a {}", self.log_type),
                }],
                payload: raw.to_owned(),
                payload_base64: None,
            });
        }
        // p_event_time is required: a row without one is a failure above.
        sink.end_row(
            ctx.event_time.map_or(Timestamp::UNIX_EPOCH, |(_, t)| t),
            None,
        );
        ctx.recycle();
        Verdict::Row
    }
}

/// Passes a row on, noting a top-level `p_log_type` that is not the reader's.
struct LogTypeCheck<'r, S> {
    sink: &'r mut S,
    depth: usize,
    field: usize,
    log_type_field: usize,
    log_type: &'r str,
    found: Option<String>,
}

impl<'de, S: Sink<'de>> Sink<'de> for LogTypeCheck<'_, S> {
    fn begin_object(&mut self, fields: usize) {
        self.depth += 1;
        self.sink.begin_object(fields);
    }
    fn field(&mut self, i: usize) {
        if self.depth == 1 {
            self.field = i;
        }
        self.sink.field(i);
    }
    fn end_object(&mut self) {
        self.depth -= 1;
        self.sink.end_object();
    }
    fn begin_array(&mut self) {
        self.depth += 1;
        self.sink.begin_array();
    }
    fn end_array(&mut self) {
        self.depth -= 1;
        self.sink.end_array();
    }
    fn scalar(&mut self, value: Value<'de>) {
        if self.depth == 1
            && self.field == self.log_type_field
            && let Value::String(t) = &value
            && t != self.log_type
        {
            self.found = Some(t.to_string());
        }
        self.sink.scalar(value);
    }
    fn null(&mut self) {
        self.sink.null();
    }
    fn end_row(&mut self, event_time: Timestamp, standard: Option<&Standard>) {
        self.sink.end_row(event_time, standard);
    }
    fn abort_row(&mut self) {
        self.sink.abort_row();
    }
}

fn timestamp_type() -> TimestampType {
    TimestampType {
        formats: vec![TimeFormat::Lake, TimeFormat::Rfc3339],
        event_time: None,
    }
}

fn timestamp() -> Type {
    Type::Timestamp(timestamp_type())
}

/// The field as stored: no indicators, event time or rules (they were applied when the row was
/// made), and timestamps in the output layouts.
fn plain(f: &Field) -> Field {
    fn ty(t: &Type) -> Type {
        match t {
            Type::String(_) => Type::String(StringType::default()),
            Type::Timestamp(_) => timestamp(),
            Type::Object { fields, .. } => Type::Object {
                fields: fields.iter().map(plain).collect(),
                embedded_json: false,
            },
            Type::Array { element, .. } => Type::Array {
                element: Box::new(ty(element)),
                embedded_json: false,
            },
            Type::Json { .. } => Type::Json {
                embedded_json: false,
            },
            other => other.clone(),
        }
    }
    Field::new(f.name.clone(), f.required, None, ty(&f.ty))
}
