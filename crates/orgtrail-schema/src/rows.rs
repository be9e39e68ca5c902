//! Reading normalized rows back: the JSON that [`crate::Normalizer::write_json`] writes (either time
//! layout) becomes a [`Row`] again, so rows can travel through files and pipes (`orgtrail parse |
//! orgtrail lake ingest`) without being normalized twice.

use std::sync::Arc;

use jiff::Timestamp;

use crate::indicators::{IndicatorField, Indicators};
use crate::normalize::{Failure, Outcome, Row, Value, decode_with};
use crate::schema::{Field, Schema, StringType, TimestampType, Type};
use crate::time::TimeFormat;

/// Reads rows of one log type.
#[derive(Debug, Clone)]
pub struct RowReader {
    fields: Vec<Field>,
    events: usize,
    indicator_fields: Vec<IndicatorField>,
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
            let ty = if matches!(name, "p_event_time" | "p_parse_time") {
                timestamp()
            } else {
                Type::String(StringType::default())
            };
            fields.push(Field {
                name: name.to_owned(),
                required,
                description: None,
                ty,
            });
        }
        let indicator_fields: Vec<IndicatorField> =
            schema.indicator_fields.iter().copied().collect();
        for f in &indicator_fields {
            fields.push(Field {
                name: f.column().to_owned(),
                required: false,
                description: None,
                ty: Type::Array {
                    element: Box::new(Type::String(StringType::default())),
                    embedded_json: false,
                },
            });
        }
        RowReader {
            fields,
            events,
            indicator_fields,
            log_type: schema.name.clone(),
        }
    }

    /// Parses one row line.
    pub fn read<'a>(&self, line: &'a [u8]) -> Outcome<'a> {
        let (mut slots, raw) = match decode_with(&self.fields, line) {
            Ok(decoded) => decoded,
            Err(outcome) => return *outcome,
        };
        let mut p = slots.split_off(self.events).into_iter();
        let mut next = || p.next().flatten();
        let text = |v: Option<Value<'_>>| match v {
            Some(Value::String(s)) => Some(s.into_owned()),
            _ => None,
        };
        let time = |v: Option<Value<'_>>| match v {
            Some(Value::Timestamp(t)) => t,
            _ => Timestamp::UNIX_EPOCH, // unreachable: required and typed
        };
        let log_type = text(next());
        let row_id = text(next()).unwrap_or_default();
        let event_time = time(next());
        let parse_time = time(next());
        let source_id = text(next()).map(Arc::from);
        let source_label = text(next()).map(Arc::from);
        let mut columns = Vec::new();
        for field in &self.indicator_fields {
            if let Some(Value::Array(items)) = next() {
                let values = items
                    .into_iter()
                    .filter_map(|v| match v {
                        Value::String(s) => Some(s.into_owned()),
                        _ => None,
                    })
                    .collect();
                columns.push((*field, values));
            }
        }
        if let Some(t) = log_type.filter(|t| *t != self.log_type) {
            return Outcome::Failure(Failure {
                errors: vec![crate::FieldError {
                    path: "$.p_log_type".into(),
                    message: format!("this row is a {t}, not a {}", self.log_type),
                }],
                payload: raw.to_owned(),
                payload_base64: None,
            });
        }
        Outcome::Row(Row {
            fields: slots,
            row_id,
            event_time,
            parse_time,
            source_id,
            source_label,
            indicators: Indicators::from_columns(columns),
            event_time_unparsed: false,
        })
    }
}

fn timestamp() -> Type {
    Type::Timestamp(TimestampType {
        formats: vec![TimeFormat::Lake, TimeFormat::Rfc3339],
        event_time: None,
    })
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
    Field {
        name: f.name.clone(),
        required: f.required,
        description: None,
        ty: ty(&f.ty),
    }
}
