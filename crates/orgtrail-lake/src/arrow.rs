//! The Arrow shape of a log type, and conversion of normalized rows to and from record batches.
//!
//! Objects become structs, arrays lists, `json` fields JSON text, timestamps UTC nanoseconds, and
//! every `p_any_*` column a list of strings. Column names follow Panther's storage rules
//! ([`column_name`]).

use std::borrow::Cow;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, BooleanArray, Float64Array, Int16Array, Int32Array, Int64Array, ListArray,
    RecordBatch, StringArray, StringBuilder, StructArray, TimestampNanosecondArray,
};
use arrow::buffer::{NullBuffer, OffsetBuffer};
use arrow::datatypes::{DataType, Field, Fields, Schema as ArrowSchema, SchemaRef, TimeUnit};
use jiff::Timestamp;
use orgtrail_schema::schema::IntWidth;
use orgtrail_schema::{IndicatorField, Indicators, Row, Schema, Type, Value};

use crate::LakeError;

/// The `p_*` columns after the event fields.
pub const P_COLUMNS: [&str; 6] = [
    "p_log_type",
    "p_row_id",
    "p_event_time",
    "p_parse_time",
    "p_source_id",
    "p_source_label",
];

/// Panther's column-name rules for the data lake: `@` becomes `at_sign`, any other character outside
/// `[A-Za-z0-9_]` becomes `_`. Atlassian.Audit needs none of it.
pub fn column_name(name: &str) -> Cow<'_, str> {
    if name.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_') {
        return Cow::Borrowed(name);
    }
    let mut out = String::with_capacity(name.len() + 8);
    for c in name.chars() {
        match c {
            '@' => out.push_str("at_sign"),
            c if c.is_ascii_alphanumeric() || c == '_' => out.push(c),
            _ => out.push('_'),
        }
    }
    Cow::Owned(out)
}

fn timestamp_type() -> DataType {
    DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into()))
}

fn string_list() -> DataType {
    DataType::List(Arc::new(Field::new("item", DataType::Utf8, true)))
}

/// The Arrow type of a schema type.
pub fn data_type(ty: &Type) -> DataType {
    match ty {
        Type::String(_) | Type::Json { .. } => DataType::Utf8,
        Type::Int(IntWidth::Small) => DataType::Int16,
        Type::Int(IntWidth::Int) => DataType::Int32,
        Type::Int(IntWidth::Big) => DataType::Int64,
        Type::Float => DataType::Float64,
        Type::Boolean => DataType::Boolean,
        Type::Timestamp(_) => timestamp_type(),
        Type::Object { fields, .. } => DataType::Struct(struct_fields(fields)),
        Type::Array { element, .. } => {
            DataType::List(Arc::new(Field::new("item", data_type(element), true)))
        }
    }
}

fn struct_fields(fields: &[orgtrail_schema::Field]) -> Fields {
    fields.iter().map(arrow_field).collect()
}

fn arrow_field(f: &orgtrail_schema::Field) -> Field {
    let mut field = Field::new(column_name(&f.name), data_type(&f.ty), true);
    if let Some(d) = &f.description {
        field = field.with_metadata([("description".to_owned(), d.clone())].into());
    }
    field
}

/// The Arrow schema of a log type's table (without the hive partition columns).
pub fn table_schema(schema: &Schema) -> SchemaRef {
    let mut fields: Vec<Field> = schema.fields.iter().map(arrow_field).collect();
    for name in P_COLUMNS {
        let (ty, nullable) = match name {
            "p_event_time" | "p_parse_time" => (timestamp_type(), false),
            "p_log_type" | "p_row_id" => (DataType::Utf8, false),
            _ => (DataType::Utf8, true),
        };
        fields.push(Field::new(name, ty, nullable));
    }
    for f in &schema.indicator_fields {
        fields.push(Field::new(f.column(), string_list(), true));
    }
    Arc::new(ArrowSchema::new(fields))
}

/// Builds one record batch from rows of `schema`.
pub fn rows_to_batch(
    schema: &Schema,
    arrow: &SchemaRef,
    rows: &[&Row<'_>],
) -> Result<RecordBatch, LakeError> {
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(arrow.fields().len());
    // The Arrow types come from `arrow` (shared, not rebuilt per batch), so checking the columns
    // against the schema compares pointers.
    for (i, (field, column)) in schema.fields.iter().zip(arrow.fields()).enumerate() {
        let values: Vec<Option<&Value>> = rows
            .iter()
            .map(|r| r.fields.get(i).and_then(Option::as_ref))
            .collect();
        columns.push(build(&field.ty, column.data_type(), &values)?);
    }
    let log_type = schema.name.as_str();
    columns.push(Arc::new(StringArray::from_iter_values(
        rows.iter().map(|_| log_type),
    )));
    columns.push(Arc::new(StringArray::from_iter_values(
        rows.iter().map(|r| r.row_id.as_str()),
    )));
    for get in [|r: &Row<'_>| r.event_time, |r: &Row<'_>| r.parse_time] {
        let nanos = rows.iter().map(|r| nanos(get(r))).collect::<Vec<_>>();
        columns.push(Arc::new(
            TimestampNanosecondArray::from(nanos).with_timezone("UTC"),
        ));
    }
    columns.push(Arc::new(
        rows.iter()
            .map(|r| r.source_id.as_deref())
            .collect::<StringArray>(),
    ));
    columns.push(Arc::new(
        rows.iter()
            .map(|r| r.source_label.as_deref())
            .collect::<StringArray>(),
    ));
    for f in &schema.indicator_fields {
        columns.push(string_lists(rows.iter().map(|r| r.indicators.values(*f))));
    }
    Ok(RecordBatch::try_new(arrow.clone(), columns)?)
}

fn nanos(t: Timestamp) -> i64 {
    // Timestamps from RFC 3339 or unix times fit in i64 nanoseconds until the year 2262; clamp the
    // rest rather than fail a whole batch.
    i64::try_from(t.as_nanosecond()).unwrap_or(if t.as_second() < 0 {
        i64::MIN
    } else {
        i64::MAX
    })
}

fn string_lists<'r, L: Iterator<Item = &'r str>>(lists: impl Iterator<Item = L>) -> ArrayRef {
    let mut values = StringBuilder::new();
    let mut lengths = Vec::new();
    for list in lists {
        let mut n = 0;
        for v in list {
            values.append_value(v);
            n += 1;
        }
        lengths.push(n);
    }
    let nulls = NullBuffer::from_iter(lengths.iter().map(|n| *n > 0));
    Arc::new(ListArray::new(
        Arc::new(Field::new("item", DataType::Utf8, true)),
        OffsetBuffer::from_lengths(lengths),
        Arc::new(values.finish()),
        Some(nulls),
    ))
}

/// One column of `values`, of schema type `ty` and Arrow type `dt` (`data_type(ty)`).
fn build(ty: &Type, dt: &DataType, values: &[Option<&Value>]) -> Result<ArrayRef, LakeError> {
    fn text<'v>(v: &Option<&'v Value<'_>>) -> Option<&'v str> {
        match v {
            Some(Value::String(s) | Value::Json(s)) => Some(s.as_ref()),
            _ => None,
        }
    }
    Ok(match ty {
        Type::String(_) | Type::Json { .. } => {
            // Sized up front: no regrowth (and copying) of the value buffer.
            let bytes = values.iter().map(|v| text(v).map_or(0, str::len)).sum();
            let mut b = StringBuilder::with_capacity(values.len(), bytes);
            for v in values {
                b.append_option(text(v));
            }
            Arc::new(b.finish())
        }
        Type::Int(width) => {
            let ints = values.iter().map(|v| match v {
                Some(Value::Int(i)) => Some(*i),
                _ => None,
            });
            // The normalizer range-checked every value for its width.
            match width {
                IntWidth::Small => Arc::new(
                    ints.map(|i| i.and_then(|i| i16::try_from(i).ok()))
                        .collect::<Int16Array>(),
                ),
                IntWidth::Int => Arc::new(
                    ints.map(|i| i.and_then(|i| i32::try_from(i).ok()))
                        .collect::<Int32Array>(),
                ),
                IntWidth::Big => Arc::new(ints.collect::<Int64Array>()),
            }
        }
        Type::Float => Arc::new(
            values
                .iter()
                .map(|v| match v {
                    Some(Value::Float(f)) => Some(*f),
                    _ => None,
                })
                .collect::<Float64Array>(),
        ),
        Type::Boolean => Arc::new(
            values
                .iter()
                .map(|v| match v {
                    Some(Value::Bool(b)) => Some(*b),
                    _ => None,
                })
                .collect::<BooleanArray>(),
        ),
        Type::Timestamp(_) => Arc::new(
            values
                .iter()
                .map(|v| match v {
                    Some(Value::Timestamp(t)) => Some(nanos(*t)),
                    _ => None,
                })
                .collect::<TimestampNanosecondArray>()
                .with_timezone("UTC"),
        ),
        Type::Object { fields, .. } => {
            let DataType::Struct(arrow_fields) = dt else {
                return Err(mismatch(dt));
            };
            let mut children = Vec::with_capacity(fields.len());
            for (i, (f, af)) in fields.iter().zip(arrow_fields).enumerate() {
                let child: Vec<Option<&Value>> = values
                    .iter()
                    .map(|v| match v {
                        Some(Value::Object(slots)) => slots.get(i).and_then(Option::as_ref),
                        _ => None,
                    })
                    .collect();
                children.push(build(&f.ty, af.data_type(), &child)?);
            }
            let nulls = NullBuffer::from(
                values
                    .iter()
                    .map(|v| matches!(v, Some(Value::Object(_))))
                    .collect::<Vec<_>>(),
            );
            Arc::new(StructArray::try_new(
                arrow_fields.clone(),
                children,
                Some(nulls),
            )?)
        }
        Type::Array { element, .. } => {
            let DataType::List(item) = dt else {
                return Err(mismatch(dt));
            };
            let items = |v: &Option<&Value>| match v {
                Some(Value::Array(items)) => items.len(),
                _ => 0,
            };
            let offsets = OffsetBuffer::from_lengths(values.iter().map(items));
            let flat: Vec<Option<&Value>> = values
                .iter()
                .flat_map(|v| match v {
                    Some(Value::Array(items)) => items.as_slice(),
                    _ => &[],
                })
                .map(|v| {
                    if matches!(v, Value::Null) {
                        None
                    } else {
                        Some(v)
                    }
                })
                .collect();
            let child = build(element, item.data_type(), &flat)?;
            let nulls = NullBuffer::from(
                values
                    .iter()
                    .map(|v| matches!(v, Some(Value::Array(_))))
                    .collect::<Vec<_>>(),
            );
            Arc::new(ListArray::try_new(
                item.clone(),
                offsets,
                child,
                Some(nulls),
            )?)
        }
    })
}

fn mismatch(dt: &DataType) -> LakeError {
    LakeError::Io(format!(
        "internal error: the Arrow type {dt} does not match the log schema's type"
    ))
}

/// Reads rows back from a record batch with [`table_schema`]'s columns (any order; missing optional
/// columns are absent). The inverse of [`rows_to_batch`].
pub fn batch_to_rows(schema: &Schema, batch: &RecordBatch) -> Result<Vec<Row<'static>>, LakeError> {
    let n = batch.num_rows();
    let column = |name: &str| batch.column_by_name(name);
    let mut fields: Vec<Vec<Option<Value<'static>>>> =
        vec![Vec::with_capacity(schema.fields.len()); n];
    for f in &schema.fields {
        let values = match column(&column_name(&f.name)) {
            Some(array) => read(&f.ty, array.as_ref())?,
            None => vec![None; n],
        };
        for (row, v) in fields.iter_mut().zip(values) {
            row.push(v);
        }
    }
    let strings = |name: &str| -> Result<Vec<Option<String>>, LakeError> {
        Ok(match column(name) {
            Some(a) => (0..n)
                .map(|i| str_at(a.as_ref(), i).map(str::to_owned))
                .collect(),
            None => vec![None; n],
        })
    };
    let times = |name: &str| -> Result<Vec<Timestamp>, LakeError> {
        let a =
            column(name).ok_or_else(|| LakeError::Corrupt(format!("column {name} is missing")))?;
        (0..n)
            .map(|i| {
                time_at(a.as_ref(), i).ok_or_else(|| LakeError::Corrupt(format!("{name} is null")))
            })
            .collect()
    };
    let row_ids = strings("p_row_id")?;
    let (event, parse) = (times("p_event_time")?, times("p_parse_time")?);
    let (ids, labels) = (strings("p_source_id")?, strings("p_source_label")?);
    let mut indicators: Vec<Vec<(IndicatorField, Vec<String>)>> = vec![Vec::new(); n];
    for f in &schema.indicator_fields {
        if let Some(a) = column(f.column()) {
            let lists = a
                .as_any()
                .downcast_ref::<ListArray>()
                .ok_or_else(|| LakeError::Corrupt(format!("{} is not a list", f.column())))?;
            for (i, ind) in indicators.iter_mut().enumerate() {
                if lists.is_valid(i) {
                    let items = lists.value(i);
                    let values: Vec<String> = (0..items.len())
                        .filter_map(|j| str_at(items.as_ref(), j).map(str::to_owned))
                        .collect();
                    ind.push((*f, values));
                }
            }
        }
    }
    Ok(fields
        .into_iter()
        .enumerate()
        .zip(indicators)
        .map(|((i, fields), ind)| Row {
            fields,
            row_id: row_ids[i].clone().unwrap_or_default(),
            event_time: event[i],
            parse_time: parse[i],
            source_id: ids[i].as_deref().map(Arc::from),
            source_label: labels[i].as_deref().map(Arc::from),
            indicators: Indicators::from_columns(ind),
            event_time_unparsed: false,
        })
        .collect())
}

fn str_at(a: &dyn Array, i: usize) -> Option<&str> {
    let s = a.as_any().downcast_ref::<StringArray>()?;
    s.is_valid(i).then(|| s.value(i))
}

fn time_at(a: &dyn Array, i: usize) -> Option<Timestamp> {
    let t = a.as_any().downcast_ref::<TimestampNanosecondArray>()?;
    t.is_valid(i)
        .then(|| Timestamp::from_nanosecond(i128::from(t.value(i))).ok())
        .flatten()
}

fn read(ty: &Type, a: &dyn Array) -> Result<Vec<Option<Value<'static>>>, LakeError> {
    let n = a.len();
    let mismatch = || {
        LakeError::Corrupt(format!(
            "column type {} does not match the schema",
            a.data_type()
        ))
    };
    macro_rules! prim {
        ($arr:ty, $conv:expr) => {{
            let arr = a.as_any().downcast_ref::<$arr>().ok_or_else(mismatch)?;
            (0..n)
                .map(|i| arr.is_valid(i).then(|| $conv(arr.value(i))))
                .collect()
        }};
    }
    Ok(match ty {
        Type::String(_) => prim!(StringArray, |s: &str| Value::String(Cow::Owned(
            s.to_owned()
        ))),
        Type::Json { .. } => prim!(StringArray, |s: &str| Value::Json(Cow::Owned(s.to_owned()))),
        Type::Int(IntWidth::Small) => prim!(Int16Array, |v: i16| Value::Int(v.into())),
        Type::Int(IntWidth::Int) => prim!(Int32Array, |v: i32| Value::Int(v.into())),
        Type::Int(IntWidth::Big) => prim!(Int64Array, Value::Int),
        Type::Float => prim!(Float64Array, Value::Float),
        Type::Boolean => prim!(BooleanArray, Value::Bool),
        Type::Timestamp(_) => {
            let arr = a
                .as_any()
                .downcast_ref::<TimestampNanosecondArray>()
                .ok_or_else(mismatch)?;
            (0..n)
                .map(|i| {
                    arr.is_valid(i)
                        .then(|| {
                            Timestamp::from_nanosecond(i128::from(arr.value(i)))
                                .ok()
                                .map(Value::Timestamp)
                        })
                        .flatten()
                })
                .collect()
        }
        Type::Object { fields, .. } => {
            let s = a
                .as_any()
                .downcast_ref::<StructArray>()
                .ok_or_else(mismatch)?;
            let mut slots: Vec<Vec<Option<Value<'static>>>> =
                vec![Vec::with_capacity(fields.len()); n];
            for f in fields {
                let values = match s.column_by_name(&column_name(&f.name)) {
                    Some(child) => read(&f.ty, child.as_ref())?,
                    None => vec![None; n],
                };
                for (slot, v) in slots.iter_mut().zip(values) {
                    slot.push(v);
                }
            }
            slots
                .into_iter()
                .enumerate()
                .map(|(i, s2)| s.is_valid(i).then_some(Value::Object(s2)))
                .collect()
        }
        Type::Array { element, .. } => {
            let l = a
                .as_any()
                .downcast_ref::<ListArray>()
                .ok_or_else(mismatch)?;
            let mut out = Vec::with_capacity(n);
            for i in 0..n {
                if !l.is_valid(i) {
                    out.push(None);
                    continue;
                }
                let items = read(element, l.value(i).as_ref())?;
                out.push(Some(Value::Array(
                    items
                        .into_iter()
                        .map(|v| v.unwrap_or(Value::Null))
                        .collect(),
                )));
            }
            out
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use orgtrail_schema::{Normalizer, Outcome, compile};
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    use proptest::prelude::*;
    use serde_json::{Value as Json, json};

    const SCHEMA: &str = r#"
schema: Custom.Prop
fields:
  - name: id
    type: string
    isEventId: true
  - name: t
    type: timestamp
    timeFormat: unix_ns
    isEventTime: true
  - name: s
    type: string
    indicators: [email]
  - name: i
    type: int
  - name: small
    type: smallint
  - name: big
    type: bigint
  - name: f
    type: float
  - name: b
    type: boolean
  - name: j
    type: json
  - name: o
    type: object
    fields:
      - name: inner
        type: string
      - name: items
        type: array
        element:
          type: object
          fields:
            - name: k
              type: bigint
            - name: when
              type: timestamp
              timeFormat: rfc3339
  - name: tags
    type: array
    element:
      type: string
"#;

    fn opt<T: Strategy>(s: T) -> impl Strategy<Value = Option<T::Value>> {
        prop::option::weighted(0.7, s)
    }

    prop_compose! {
        fn event()(
            id in "[a-z0-9]{1,12}",
            t in opt(-2_000_000_000_000_000_000i64..4_000_000_000_000_000_000i64),
            s in opt("\\PC{0,20}"),
            i in opt(any::<i32>()),
            small in opt(any::<i16>()),
            big in opt(any::<i64>()),
            f in opt(-1e12f64..1e12),
            b in opt(any::<bool>()),
            j in opt(prop_oneof![Just(json!({"a":[1,2,{"b":null}]})), Just(json!("text")), Just(json!(42)), Just(json!([]))]),
            inner in opt(opt("[a-z ]{0,8}")),
            items in opt(prop::collection::vec((opt(any::<i64>()), opt(0i64..4_000_000_000)), 0..4)),
            tags in opt(prop::collection::vec(opt("[a-z@.]{0,6}"), 0..4)),
        ) -> Json {
            let mut m = serde_json::Map::new();
            m.insert("id".into(), json!(id));
            if let Some(t) = t { m.insert("t".into(), json!(t.to_string())); }
            if let Some(v) = s { m.insert("s".into(), json!(v)); }
            if let Some(v) = i { m.insert("i".into(), json!(v)); }
            if let Some(v) = small { m.insert("small".into(), json!(v)); }
            if let Some(v) = big { m.insert("big".into(), json!(v.to_string())); }
            if let Some(v) = f { m.insert("f".into(), json!(v)); }
            if let Some(v) = b { m.insert("b".into(), json!(v)); }
            if let Some(v) = j { m.insert("j".into(), v); }
            if let Some(inner) = inner {
                let mut o = serde_json::Map::new();
                if let Some(v) = inner { o.insert("inner".into(), json!(v)); }
                if let Some(items) = &items {
                    let list: Vec<Json> = items.iter().map(|(k, when)| {
                        let mut e = serde_json::Map::new();
                        if let Some(k) = k { e.insert("k".into(), json!(k)); }
                        if let Some(w) = when {
                            let ts = Timestamp::from_second(*w).unwrap();
                            e.insert("when".into(), json!(ts.to_string()));
                        }
                        Json::Object(e)
                    }).collect();
                    o.insert("items".into(), Json::Array(list));
                }
                m.insert("o".into(), Json::Object(o));
            }
            if let Some(tags) = tags { m.insert("tags".into(), json!(tags)); }
            Json::Object(m)
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn rows_survive_arrow_and_parquet(events in prop::collection::vec(event(), 1..12)) {
            let schema = compile(SCHEMA, "prop").unwrap();
            let arrow = table_schema(&schema);
            let n = Normalizer::new(Arc::new(schema.clone())).with_source(Some("s".into()), None);
            let lines: Vec<String> = events.iter().map(|e| e.to_string()).collect();
            let rows: Vec<Row<'static>> = lines.iter().map(|l| match n.normalize(l.as_bytes()) {
                Outcome::Row(r) => r.into_owned(),
                other => panic!("{l}: {other:?}"),
            }).collect();
            let refs: Vec<&Row<'_>> = rows.iter().collect();
            let batch = rows_to_batch(&schema, &arrow, &refs).unwrap();
            let file = crate::write::encode(&batch, "Custom.Prop").unwrap();
            let reader = ParquetRecordBatchReaderBuilder::try_new(file).unwrap().build().unwrap();
            let back: Vec<Row<'static>> = reader.flat_map(|b| batch_to_rows(&schema, &b.unwrap()).unwrap()).collect();
            let expected: Vec<Row<'static>> = rows.into_iter().map(|mut r| { r.event_time_unparsed = false; r }).collect();
            prop_assert_eq!(back, expected);
        }
    }
}
