//! Arrow columns built straight from the decoder: [`RowsBuilder`] is an `orgtrail-schema`
//! [`Sink`], so a row's values are appended to the table's columns as they are read, with no value
//! tree in between. A line that turns out not to be a row is cut off again (every column can be
//! truncated to a row count).

use std::sync::Arc;

use arrow::array::{
    ArrayRef, ArrowPrimitiveType, BooleanArray, ListArray, PrimitiveArray, RecordBatch,
    StringArray, StructArray, UInt32Array,
};
use arrow::buffer::{BooleanBuffer, Buffer, NullBuffer, OffsetBuffer, ScalarBuffer};
use arrow::compute::take;
use arrow::datatypes::{
    DataType, Float64Type, Int16Type, Int32Type, Int64Type, SchemaRef, TimeUnit,
    TimestampNanosecondType,
};
use jiff::Timestamp;
use orgtrail_schema::{IndicatorField, Row, Schema, Sink, Standard, Value};

use crate::LakeError;
use crate::arrow::nanos;
use crate::write::hour_of;

/// One column being built: whether each value is present, and the values. Every kind keeps its
/// presence flags in the same place, so the column's length (asked for every value a row gives)
/// is read without first telling the kinds apart.
struct Col {
    valid: Vec<bool>,
    values: Values,
}

/// A column's values by kind (an absent value holds a default, or repeats the last offset).
enum Values {
    Utf8 {
        offsets: Vec<i32>,
        data: Vec<u8>,
    },
    Int16(Vec<i16>),
    Int32(Vec<i32>),
    Int64(Vec<i64>),
    Float64(Vec<f64>),
    Boolean(Vec<bool>),
    /// Nanoseconds, UTC.
    Timestamp(Vec<i64>),
    Struct(Vec<Col>),
    List {
        offsets: Vec<i32>,
        child: Box<Col>,
    },
}

/// A column of numbers or times as Arrow, with its presence flags.
fn primitive<A: ArrowPrimitiveType>(values: Vec<A::Native>, valid: Vec<bool>) -> PrimitiveArray<A> {
    PrimitiveArray::new(ScalarBuffer::from(exact(values)), nulls(valid))
}

/// The vector without much spare room: the batch keeps it in memory until it is written. Up to a
/// quarter more than its length is kept: a builder reserves an eighth more than its size hint, and
/// shrinking a vector by a little may move it (the allocator cannot always give the end back).
fn exact<T>(mut v: Vec<T>) -> Vec<T> {
    if v.capacity() - v.len() > v.len() / 4 {
        v.shrink_to_fit();
    }
    v
}

/// The validity bitmap, or none when every value is present. Packed 64 flags at a time: Arrow's
/// `From<Vec<bool>>` sets one bit after the other.
fn nulls(valid: Vec<bool>) -> Option<NullBuffer> {
    if !valid.contains(&false) {
        return None;
    }
    Some(NullBuffer::new(BooleanBuffer::collect_bool(
        valid.len(),
        |i| valid[i],
    )))
}

fn offset(n: usize) -> Option<i32> {
    i32::try_from(n).ok()
}

/// Ends a list (or string) whose items now end at `end`: false past Arrow's 32-bit offsets.
fn close(offsets: &mut Vec<i32>, valid: &mut Vec<bool>, end: usize, present: bool) -> bool {
    valid.push(present);
    offset(end).is_some_and(|end| {
        offsets.push(end);
        true
    })
}

/// Keeps the offsets of the first `n` lists (or strings); returns where their items end.
fn cut(offsets: &mut Vec<i32>, n: usize) -> Option<usize> {
    let end = *offsets.get(n)? as usize;
    offsets.truncate(n + 1);
    Some(end)
}

impl Col {
    fn new(dt: &DataType) -> Result<Col, LakeError> {
        let values = match dt {
            DataType::Utf8 => Values::Utf8 {
                offsets: vec![0],
                data: Vec::new(),
            },
            DataType::Int16 => Values::Int16(Vec::new()),
            DataType::Int32 => Values::Int32(Vec::new()),
            DataType::Int64 => Values::Int64(Vec::new()),
            DataType::Float64 => Values::Float64(Vec::new()),
            DataType::Boolean => Values::Boolean(Vec::new()),
            DataType::Timestamp(TimeUnit::Nanosecond, _) => Values::Timestamp(Vec::new()),
            DataType::Struct(fields) => Values::Struct(
                fields
                    .iter()
                    .map(|f| Col::new(f.data_type()))
                    .collect::<Result<_, _>>()?,
            ),
            DataType::List(item) => Values::List {
                offsets: vec![0],
                child: Box::new(Col::new(item.data_type())?),
            },
            other => {
                return Err(LakeError::Io(format!(
                    "internal error: no column builder for the Arrow type {other}"
                )));
            }
        };
        Ok(Col {
            valid: Vec::new(),
            values,
        })
    }

    #[inline]
    fn len(&self) -> usize {
        self.valid.len()
    }

    /// Appends an absent value. False when a column grows past Arrow's 32-bit offsets.
    fn push_null(&mut self) -> bool {
        self.valid.push(false);
        match &mut self.values {
            Values::Utf8 { offsets, .. } | Values::List { offsets, .. } => {
                offsets.push(offsets.last().copied().unwrap_or(0));
            }
            Values::Int16(v) => v.push(0),
            Values::Int32(v) => v.push(0),
            Values::Int64(v) | Values::Timestamp(v) => v.push(0),
            Values::Float64(v) => v.push(0.0),
            Values::Boolean(v) => v.push(false),
            Values::Struct(children) => return children.iter_mut().all(Col::push_null),
        }
        true
    }

    fn push_str(&mut self, s: &str) -> bool {
        let Values::Utf8 { offsets, data } = &mut self.values else {
            return false;
        };
        data.extend_from_slice(s.as_bytes());
        close(offsets, &mut self.valid, data.len(), true)
    }

    /// Appends a scalar. False when it does not fit the column (a bug in the caller). Inlined
    /// into [`RowsBuilder`]'s `scalar`: the value is then not read back from memory (a stall).
    #[inline(always)]
    fn push(&mut self, v: Value<'_>) -> bool {
        let pushed = match (&mut self.values, v) {
            (Values::Utf8 { .. }, Value::String(s) | Value::Json(s)) => return self.push_str(&s),
            (Values::Int16(p), Value::Int(i)) => i16::try_from(i).map(|i| p.push(i)).is_ok(),
            (Values::Int32(p), Value::Int(i)) => i32::try_from(i).map(|i| p.push(i)).is_ok(),
            (Values::Int64(p), Value::Int(i)) => {
                p.push(i);
                true
            }
            (Values::Float64(p), Value::Float(f)) => {
                p.push(f);
                true
            }
            (Values::Boolean(p), Value::Bool(b)) => {
                p.push(b);
                true
            }
            (Values::Timestamp(p), Value::Timestamp(t)) => {
                p.push(nanos(t));
                true
            }
            _ => false,
        };
        if pushed {
            self.valid.push(true);
        }
        pushed
    }

    /// Appends (values, bytes) of this column and its children, depth first.
    fn sizes(&self, out: &mut Vec<(usize, usize)>) {
        match &self.values {
            Values::Utf8 { data, .. } => out.push((self.len(), data.len())),
            Values::Struct(children) => {
                out.push((self.len(), 0));
                for c in children {
                    c.sizes(out);
                }
            }
            Values::List { child, .. } => {
                out.push((self.len(), 0));
                child.sizes(out);
            }
            _ => out.push((self.len(), 0)),
        }
    }

    /// Reserves room for the sizes [`Col::sizes`] gave.
    fn reserve(&mut self, sizes: &mut impl Iterator<Item = (usize, usize)>) {
        let (n, bytes) = sizes.next().unwrap_or_default();
        self.valid.reserve(n);
        match &mut self.values {
            Values::Utf8 { offsets, data } => {
                offsets.reserve(n);
                data.reserve(bytes);
            }
            Values::Int16(v) => v.reserve(n),
            Values::Int32(v) => v.reserve(n),
            Values::Int64(v) | Values::Timestamp(v) => v.reserve(n),
            Values::Float64(v) => v.reserve(n),
            Values::Boolean(v) => v.reserve(n),
            Values::Struct(children) => {
                for c in children {
                    c.reserve(sizes);
                }
            }
            Values::List { offsets, child } => {
                offsets.reserve(n);
                child.reserve(sizes);
            }
        }
    }

    /// Keeps the first `n` values.
    fn truncate(&mut self, n: usize) {
        self.valid.truncate(n);
        match &mut self.values {
            Values::Utf8 { offsets, data } => {
                if let Some(end) = cut(offsets, n) {
                    data.truncate(end);
                }
            }
            Values::List { offsets, child } => {
                if let Some(end) = cut(offsets, n) {
                    child.truncate(end);
                }
            }
            Values::Int16(v) => v.truncate(n),
            Values::Int32(v) => v.truncate(n),
            Values::Int64(v) | Values::Timestamp(v) => v.truncate(n),
            Values::Float64(v) => v.truncate(n),
            Values::Boolean(v) => v.truncate(n),
            Values::Struct(children) => children.iter_mut().for_each(|c| c.truncate(n)),
        }
    }

    fn finish(self, dt: &DataType) -> Result<ArrayRef, LakeError> {
        let valid = self.valid;
        Ok(match (self.values, dt) {
            (Values::Utf8 { offsets, data }, _) => Arc::new(StringArray::try_new(
                OffsetBuffer::new(ScalarBuffer::from(exact(offsets))),
                Buffer::from_vec(exact(data)),
                nulls(valid),
            )?),
            (Values::Int16(v), _) => Arc::new(primitive::<Int16Type>(v, valid)),
            (Values::Int32(v), _) => Arc::new(primitive::<Int32Type>(v, valid)),
            (Values::Int64(v), _) => Arc::new(primitive::<Int64Type>(v, valid)),
            (Values::Float64(v), _) => Arc::new(primitive::<Float64Type>(v, valid)),
            (Values::Boolean(v), _) => Arc::new(BooleanArray::new(v.into(), nulls(valid))),
            (Values::Timestamp(v), _) => {
                Arc::new(primitive::<TimestampNanosecondType>(v, valid).with_timezone("UTC"))
            }
            (Values::Struct(children), DataType::Struct(fields)) => {
                let children = children
                    .into_iter()
                    .zip(fields)
                    .map(|(c, f)| c.finish(f.data_type()))
                    .collect::<Result<_, _>>()?;
                Arc::new(StructArray::try_new(
                    fields.clone(),
                    children,
                    nulls(valid),
                )?)
            }
            (Values::List { offsets, child }, DataType::List(item)) => {
                Arc::new(ListArray::try_new(
                    item.clone(),
                    OffsetBuffer::new(ScalarBuffer::from(exact(offsets))),
                    child.finish(item.data_type())?,
                    nulls(valid),
                )?)
            }
            (_, dt) => {
                return Err(LakeError::Io(format!(
                    "internal error: a column builder does not match the Arrow type {dt}"
                )));
            }
        })
    }
}

/// How many values (and bytes of text) each column of a [`RowsBuilder`] held.
#[derive(Debug, Clone, Default)]
pub struct SizeHint(Vec<(usize, usize)>);

/// An object or array of the row being read.
enum Open {
    /// `row`: the object's index in its column (the length of its fields' columns when it began).
    Object { row: usize, field: usize },
    /// `start`: the length of the elements' column when the array began.
    Array { start: usize },
}

/// A record batch of a log type's table (the columns of [`crate::arrow::table_schema`]) built from
/// normalized rows ([`orgtrail_schema::Normalizer::normalize_into`]) or stored rows
/// ([`orgtrail_schema::RowReader::read_into`]), with each row's event hour.
pub struct RowsBuilder {
    arrow: SchemaRef,
    columns: Vec<Col>,
    rows: usize,
    open: Vec<Open>,
    hours: Vec<i64>,
    /// Columns of the log type's own fields; the `p_*` columns follow, then the `p_any_*` ones.
    events: usize,
    log_type: String,
    indicators: Vec<IndicatorField>,
    /// The current row got a call that does not fit its columns (fine if the row is aborted).
    row_broken: bool,
    /// A completed row did: a bug, reported by [`RowsBuilder::finish`].
    broken: bool,
}

impl RowsBuilder {
    /// `arrow` is `table_schema(schema)`.
    pub fn new(schema: &Schema, arrow: &SchemaRef) -> Result<Self, LakeError> {
        Ok(RowsBuilder {
            arrow: arrow.clone(),
            columns: arrow
                .fields()
                .iter()
                .map(|f| Col::new(f.data_type()))
                .collect::<Result<_, _>>()?,
            rows: 0,
            open: Vec::new(),
            hours: Vec::new(),
            events: schema.fields.len(),
            log_type: schema.name.clone(),
            indicators: schema.indicator_fields.iter().copied().collect(),
            row_broken: false,
            broken: false,
        })
    }

    /// Reserves room for an eighth more values than `hint` (taken from a builder of similar rows)
    /// says, so the columns do not grow (and copy) value by value, nor when the next rows are a
    /// little larger.
    pub fn with_size_hint(mut self, hint: &SizeHint) -> Self {
        let mut sizes = hint
            .0
            .iter()
            .map(|&(n, bytes)| (n + n / 8, bytes + bytes / 8));
        for c in &mut self.columns {
            c.reserve(&mut sizes);
        }
        self
    }

    /// The sizes of the columns so far.
    pub fn size_hint(&self) -> SizeHint {
        let mut sizes = Vec::new();
        for c in &self.columns {
            c.sizes(&mut sizes);
        }
        SizeHint(sizes)
    }

    /// Rows so far.
    pub fn len(&self) -> usize {
        self.rows
    }

    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// Adds a row given as a value tree.
    pub fn push_row(&mut self, row: &Row<'_>) {
        self.begin_object(row.fields.len());
        for (i, v) in row.fields.iter().enumerate() {
            if let Some(v) = v {
                self.field(i);
                self.value(v);
            }
        }
        self.end_object();
        self.end_row(
            row.event_time,
            Some(&Standard {
                row_id: row.row_id.clone(),
                parse_time: row.parse_time,
                source_id: row.source_id.clone(),
                source_label: row.source_label.clone(),
                indicators: row.indicators.clone(),
                event_time_unparsed: row.event_time_unparsed,
            }),
        );
    }

    fn value(&mut self, v: &Value<'_>) {
        match v {
            Value::Null => self.null(),
            Value::Object(slots) => {
                self.begin_object(slots.len());
                for (i, v) in slots.iter().enumerate() {
                    if let Some(v) = v {
                        self.field(i);
                        self.value(v);
                    }
                }
                self.end_object();
            }
            Value::Array(items) => {
                self.begin_array();
                for v in items {
                    self.value(v);
                }
                self.end_array();
            }
            scalar => self.scalar(scalar.clone()),
        }
    }

    /// The batch (rows in the order added) and each row's event hour (see `write::hour_of`).
    pub fn finish(self) -> Result<(RecordBatch, Vec<i64>), LakeError> {
        if self.broken {
            return Err(LakeError::Io(
                "internal error: a row did not fit the table's columns".into(),
            ));
        }
        let columns = self
            .columns
            .into_iter()
            .zip(self.arrow.fields())
            .map(|(c, f)| c.finish(f.data_type()))
            .collect::<Result<Vec<_>, _>>()?;
        Ok((RecordBatch::try_new(self.arrow, columns)?, self.hours))
    }

    /// The column the next value goes to, emptied of a value already given for the same field
    /// (a repeated key: the last value counts).
    fn slot(&mut self) -> Option<&mut Col> {
        let row = match self.open.last() {
            Some(Open::Object { row, .. }) => Some(*row),
            _ => None,
        };
        let col = self.target()?;
        if let Some(row) = row
            && col.len() > row
        {
            col.truncate(row);
        }
        Some(col)
    }

    /// The column of the innermost open object's current field or open array's elements.
    fn target(&mut self) -> Option<&mut Col> {
        let mut open = self.open.iter();
        let Some(Open::Object { field, .. }) = open.next() else {
            return None;
        };
        let mut col = self.columns.get_mut(*field)?;
        for o in open {
            col = match (o, &mut col.values) {
                (Open::Object { field, .. }, Values::Struct(children)) => {
                    children.get_mut(*field)?
                }
                (Open::Array { .. }, Values::List { child, .. }) => child,
                _ => return None,
            };
        }
        Some(col)
    }

    fn put(&mut self, f: impl FnOnce(&mut Col) -> bool) {
        let ok = self.slot().is_some_and(f);
        self.row_broken |= !ok;
    }

    /// Appends the `p_*` columns of a normalized row.
    fn standard(&mut self, event_time: Timestamp, s: &Standard) -> bool {
        let mut ok = true;
        let p = &mut self.columns[self.events..];
        ok &= p[0].push_str(&self.log_type);
        ok &= p[1].push_str(&s.row_id);
        ok &= p[2].push(Value::Timestamp(event_time));
        ok &= p[3].push(Value::Timestamp(s.parse_time));
        for (col, v) in p[4..6].iter_mut().zip([&s.source_id, &s.source_label]) {
            ok &= match v {
                Some(v) => col.push_str(v),
                None => col.push_null(),
            };
        }
        for (col, f) in p[6..].iter_mut().zip(&self.indicators) {
            let Col {
                valid,
                values: Values::List { offsets, child },
            } = col
            else {
                return false;
            };
            let start = child.len();
            for v in s.indicators.values(*f) {
                ok &= child.push_str(v);
            }
            let end = child.len();
            ok &= close(offsets, valid, end, end > start);
        }
        ok
    }
}

impl<'de> Sink<'de> for RowsBuilder {
    fn begin_object(&mut self, _fields: usize) {
        if self.open.is_empty() {
            self.open.push(Open::Object {
                row: self.rows,
                field: usize::MAX,
            });
            return;
        }
        let row = match self.slot() {
            Some(col) if matches!(col.values, Values::Struct(_)) => col.len(),
            _ => {
                self.row_broken = true;
                usize::MAX
            }
        };
        self.open.push(Open::Object {
            row,
            field: usize::MAX,
        });
    }

    fn field(&mut self, i: usize) {
        if let Some(Open::Object { field, .. }) = self.open.last_mut() {
            *field = i;
        }
    }

    fn end_object(&mut self) {
        let Some(Open::Object { row, .. }) = self.open.pop() else {
            self.row_broken = true;
            return;
        };
        if self.open.is_empty() {
            return; // the row's own fields: completed by end_row
        }
        let ok = match self.target() {
            Some(Col {
                valid,
                values: Values::Struct(children),
            }) if valid.len() == row => {
                let filled = children
                    .iter_mut()
                    .filter(|c| c.len() == row)
                    .all(Col::push_null);
                valid.push(true);
                filled
            }
            _ => false,
        };
        self.row_broken |= !ok;
    }

    fn begin_array(&mut self) {
        let start = match self.slot() {
            Some(Col {
                values: Values::List { child, .. },
                ..
            }) => child.len(),
            _ => {
                self.row_broken = true;
                0
            }
        };
        self.open.push(Open::Array { start });
    }

    fn end_array(&mut self) {
        let Some(Open::Array { start }) = self.open.pop() else {
            self.row_broken = true;
            return;
        };
        let ok = match self.target() {
            Some(Col {
                valid,
                values: Values::List { offsets, child },
            }) => {
                let end = child.len();
                close(offsets, valid, end, end > start)
            }
            _ => false,
        };
        self.row_broken |= !ok;
    }

    #[inline]
    fn scalar(&mut self, value: Value<'de>) {
        self.put(|c| c.push(value));
    }

    fn null(&mut self) {
        self.put(Col::push_null);
    }

    fn end_row(&mut self, event_time: Timestamp, standard: Option<&Standard>) {
        let mut ok = !self.row_broken && self.open.is_empty();
        if let Some(s) = standard {
            ok &= self.standard(event_time, s);
        }
        let row = self.rows;
        for c in &mut self.columns {
            if c.len() == row {
                ok &= c.push_null();
            }
        }
        ok &= self.columns.iter().all(|c| c.len() == row + 1);
        if ok {
            self.rows += 1;
            self.hours.push(hour_of(event_time));
        } else {
            self.broken = true;
            self.abort_row();
        }
    }

    fn abort_row(&mut self) {
        for c in &mut self.columns {
            c.truncate(self.rows);
        }
        self.open.clear();
        self.row_broken = false;
    }
}

/// Rows of one event hour: the hour (`write::hour_of`), its rows and their indices in the batch.
pub type HourRows = (i64, RecordBatch, Vec<u32>);

/// Splits a built batch by event hour, hours ascending, rows of one hour in their order.
pub fn split_by_hour(batch: RecordBatch, hours: &[i64]) -> Result<Vec<HourRows>, LakeError> {
    let mut order: Vec<u32> = (0..hours.len() as u32).collect();
    let sorted = hours.is_sorted();
    let batch = if sorted {
        batch
    } else {
        // Stable: rows of one hour keep their order. Column by column, each dropped once copied, so
        // the batch is not held twice.
        order.sort_by_key(|&i| hours[i as usize]);
        let indices = UInt32Array::from(order.clone());
        let (schema, columns, _) = batch.into_parts();
        let columns = columns
            .into_iter()
            .map(|c| take(&c, &indices, None))
            .collect::<Result<Vec<_>, _>>()?;
        RecordBatch::try_new(schema, columns)?
    };
    let mut out = Vec::new();
    let mut start = 0;
    for group in order.chunk_by(|a, b| hours[*a as usize] == hours[*b as usize]) {
        out.push((
            hours[group[0] as usize],
            batch.slice(start, group.len()),
            group.to_vec(),
        ));
        start += group.len();
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arrow::{batch_to_rows, table_schema};
    use orgtrail_schema::{Normalizer, Outcome, Registry, RowReader, TimeLayout, Verdict};

    #[test]
    fn stored_rows_read_back_equal_in_both_time_layouts() {
        let schema = Registry::with_builtins()
            .unwrap()
            .get("Atlassian.Audit")
            .unwrap();
        let arrow = table_schema(&schema);
        let n =
            Normalizer::new(schema.clone()).with_source(Some("src".into()), Some("label".into()));
        let reader = RowReader::new(&schema);
        let mut expected = Vec::new();
        let mut builder = RowsBuilder::new(&schema, &arrow).unwrap();
        for line in include_str!("../../../examples/atlassian-audit.jsonl").lines() {
            let Outcome::Row(row) = n.normalize(line.as_bytes()) else {
                panic!("{line}")
            };
            for layout in [TimeLayout::Lake, TimeLayout::Rfc3339] {
                let text = n.to_json(&row, layout);
                assert_eq!(
                    reader.read_into(text.as_bytes(), &mut builder),
                    Verdict::Row,
                    "{text}"
                );
                expected.push(row.clone().into_owned());
            }
        }
        // A row of another log type, or a line that is not a row, is a failure and leaves nothing.
        let Verdict::Failure(f) = reader.read_into(br#"{"type":"t","id":"i","attributes":{},"links":{},"p_log_type":"Custom.X","p_row_id":"r","p_event_time":"2025-06-02 08:42:07","p_parse_time":"2025-06-02 08:42:07"}"#, &mut builder) else { panic!() };
        assert_eq!(
            f.errors[0].message,
            "this row is a Custom.X, not a Atlassian.Audit"
        );
        let Verdict::Failure(f) = reader.read_into(br#"{"type":"events"}"#, &mut builder) else {
            panic!()
        };
        assert!(
            f.errors.iter().any(|e| e.path == "$.p_row_id"),
            "{:?}",
            f.errors
        );
        let (batch, hours) = builder.finish().unwrap();
        assert_eq!(hours.len(), expected.len());
        let expected: Vec<_> = expected
            .into_iter()
            .map(|mut r| {
                r.event_time_unparsed = false;
                r
            })
            .collect();
        assert_eq!(batch_to_rows(&schema, &batch).unwrap(), expected);
    }

    #[test]
    fn batches_split_by_hour_keep_the_order_within_an_hour() {
        let schema = orgtrail_schema::compile(
            "schema: Custom.H\nfields:\n  - name: n\n    type: bigint\n",
            "t",
        )
        .unwrap();
        let arrow = table_schema(&schema);
        let n = Normalizer::new(std::sync::Arc::new(schema.clone()));
        let mut b = RowsBuilder::new(&schema, &arrow).unwrap();
        let hours = [5i64, 3, 5, 4, 3];
        for (i, h) in hours.iter().enumerate() {
            let t = Timestamp::from_second(h * 3600 + i as i64).unwrap();
            assert_eq!(
                n.normalize_into(format!("{{\"n\":{i}}}").as_bytes(), t, &mut b),
                Verdict::Row
            );
        }
        let (batch, got) = b.finish().unwrap();
        assert_eq!(got, hours);
        let parts = split_by_hour(batch, &got).unwrap();
        let summary: Vec<(i64, Vec<u32>, Vec<i64>)> = parts
            .iter()
            .map(|(h, slice, idx)| {
                let n = slice
                    .column(0)
                    .as_any()
                    .downcast_ref::<arrow::array::Int64Array>()
                    .unwrap();
                (*h, idx.clone(), n.values().to_vec())
            })
            .collect();
        assert_eq!(
            summary,
            [
                (3, vec![1, 4], vec![1, 4]),
                (4, vec![3], vec![3]),
                (5, vec![0, 2], vec![0, 2])
            ]
        );
    }
}
