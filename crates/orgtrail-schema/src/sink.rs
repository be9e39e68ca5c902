//! Where the decoder puts a row: a [`Sink`] receives the values as they are read, already shaped
//! and coerced by the schema, so a caller can build its own representation without an intermediate
//! tree (the lake appends straight to Arrow columns). [`TreeSink`] builds the [`Row`] value tree.

use std::sync::Arc;

use jiff::Timestamp;

use crate::indicators::Indicators;
use crate::normalize::{Row, Slots, Value};

/// Receives one row from the decoder.
///
/// The row is an object. An object is `begin_object`, then for each field read `field(i)` (its
/// index in the schema) followed by exactly one value, then `end_object`; a field read twice (a
/// repeated key) is followed by a value each time, and the last one counts. An array is
/// `begin_array`, one value per element, `end_array`; an array with no elements is absent. A value
/// is `scalar` (a string, number, boolean, timestamp or JSON text), `null` (absent, or a null array
/// element) or an object or array. Fields never announced are absent.
///
/// Then `end_row`, or `abort_row` when the line is a classification failure: the sink drops what it
/// received of the row, which may end in the middle of an object.
pub trait Sink<'de> {
    /// An object with `fields` fields in its schema starts.
    fn begin_object(&mut self, fields: usize);
    /// The next value is field `i` of the current object.
    fn field(&mut self, i: usize);
    fn end_object(&mut self);
    fn begin_array(&mut self);
    fn end_array(&mut self);
    /// A scalar: never [`Value::Null`], [`Value::Object`] or [`Value::Array`].
    fn scalar(&mut self, value: Value<'de>);
    fn null(&mut self);
    /// The row is complete, with its event time and the `p_*` fields the normalizer adds (`None`
    /// when the row's fields already held them: a stored row read back).
    fn end_row(&mut self, event_time: Timestamp, standard: Option<&Standard>);
    /// The row is not a row: forget it.
    fn abort_row(&mut self);
}

/// The standard fields the normalizer adds to a row (besides `p_event_time` and `p_log_type`).
#[derive(Debug, Clone)]
pub struct Standard {
    pub row_id: String,
    pub parse_time: Timestamp,
    pub source_id: Option<Arc<str>>,
    pub source_label: Option<Arc<str>>,
    /// Sorted and de-duplicated.
    pub indicators: Indicators,
    /// See [`Row::event_time_unparsed`].
    pub event_time_unparsed: bool,
}

/// Passes values read from text that does not live as long as the row (an embedded JSON string)
/// on to a sink as owned values.
pub(crate) struct Owned<'a, 'de>(pub(crate) &'a mut dyn Sink<'de>);

impl<'x> Sink<'x> for Owned<'_, '_> {
    fn begin_object(&mut self, fields: usize) {
        self.0.begin_object(fields);
    }
    fn field(&mut self, i: usize) {
        self.0.field(i);
    }
    fn end_object(&mut self) {
        self.0.end_object();
    }
    fn begin_array(&mut self) {
        self.0.begin_array();
    }
    fn end_array(&mut self) {
        self.0.end_array();
    }
    fn scalar(&mut self, value: Value<'x>) {
        self.0.scalar(value.into_owned());
    }
    fn null(&mut self) {
        self.0.null();
    }
    fn end_row(&mut self, event_time: Timestamp, standard: Option<&Standard>) {
        self.0.end_row(event_time, standard);
    }
    fn abort_row(&mut self) {
        self.0.abort_row();
    }
}

/// Builds the [`Row`] value tree (strings borrow from the line when they can).
#[derive(Default)]
pub struct TreeSink<'de> {
    open: Vec<Open<'de>>,
    fields: Option<Slots<'de>>,
    row: Option<Row<'de>>,
}

enum Open<'de> {
    Object(Slots<'de>, usize),
    Array(Vec<Value<'de>>),
}

impl<'de> TreeSink<'de> {
    /// The row of the last `end_row`.
    pub fn take(&mut self) -> Option<Row<'de>> {
        self.row.take()
    }

    fn put(&mut self, v: Option<Value<'de>>) {
        match self.open.last_mut() {
            Some(Open::Object(slots, i)) => {
                // Out of range only for a row that is being aborted.
                if let Some(slot) = slots.get_mut(*i) {
                    *slot = v;
                }
            }
            Some(Open::Array(items)) => items.push(v.unwrap_or(Value::Null)),
            None => {}
        }
    }
}

impl<'de> Sink<'de> for TreeSink<'de> {
    fn begin_object(&mut self, fields: usize) {
        self.open.push(Open::Object(
            (0..fields).map(|_| None).collect(),
            usize::MAX,
        ));
    }
    fn field(&mut self, i: usize) {
        if let Some(Open::Object(_, at)) = self.open.last_mut() {
            *at = i;
        }
    }
    fn end_object(&mut self) {
        if let Some(Open::Object(slots, _)) = self.open.pop() {
            if self.open.is_empty() {
                self.fields = Some(slots);
            } else {
                self.put(Some(Value::Object(slots)));
            }
        }
    }
    fn begin_array(&mut self) {
        self.open.push(Open::Array(Vec::new()));
    }
    fn end_array(&mut self) {
        if let Some(Open::Array(items)) = self.open.pop() {
            self.put((!items.is_empty()).then_some(Value::Array(items)));
        }
    }
    fn scalar(&mut self, value: Value<'de>) {
        self.put(Some(value));
    }
    fn null(&mut self) {
        self.put(None);
    }
    fn end_row(&mut self, event_time: Timestamp, standard: Option<&Standard>) {
        let fields = self.fields.take().unwrap_or_default();
        self.open.clear();
        // The normalizer always gives the standard fields.
        let s = standard.cloned().unwrap_or_else(|| Standard {
            row_id: String::new(),
            parse_time: event_time,
            source_id: None,
            source_label: None,
            indicators: Indicators::default(),
            event_time_unparsed: false,
        });
        self.row = Some(Row {
            fields,
            row_id: s.row_id,
            event_time,
            parse_time: s.parse_time,
            source_id: s.source_id,
            source_label: s.source_label,
            indicators: s.indicators,
            event_time_unparsed: s.event_time_unparsed,
        });
    }
    fn abort_row(&mut self) {
        self.open.clear();
        self.fields = None;
        self.row = None;
    }
}
