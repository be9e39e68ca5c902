//! The Arrow shape of a log type, and conversion of normalized rows to and from record batches.
//!
//! Objects become structs, arrays lists, `json` fields JSON text, timestamps UTC nanoseconds, and
//! every `p_any_*` column a list of strings. Column names follow Panther's storage rules
//! ([`column_name`]).

use std::borrow::Cow;
use std::sync::Arc;

use arrow::array::{
    Array, BooleanArray, Float64Array, Int16Array, Int32Array, Int64Array, ListArray, RecordBatch,
    StringArray, StructArray, TimestampNanosecondArray,
};
use arrow::datatypes::{DataType, Field, Fields, Schema as ArrowSchema, SchemaRef, TimeUnit};
use jiff::Timestamp;
use orgtrail_schema::schema::IntWidth;
use orgtrail_schema::{IndicatorField, Indicators, Row, Schema, Type, Value};

use crate::LakeError;
use crate::columns::RowsBuilder;

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

/// Builds one record batch from rows of `schema` (rows given as value trees; see
/// [`RowsBuilder`] to build a batch while normalizing).
pub fn rows_to_batch(
    schema: &Schema,
    arrow: &SchemaRef,
    rows: &[&Row<'_>],
) -> Result<RecordBatch, LakeError> {
    let mut builder = RowsBuilder::new(schema, arrow)?;
    for row in rows {
        builder.push_row(row);
    }
    Ok(builder.finish()?.0)
}

pub(crate) fn nanos(t: Timestamp) -> i64 {
    // Timestamps from RFC 3339 or unix times fit in i64 nanoseconds until the year 2262; clamp the
    // rest rather than fail a whole batch.
    i64::try_from(t.as_nanosecond()).unwrap_or(if t.as_second() < 0 {
        i64::MIN
    } else {
        i64::MAX
    })
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

        /// Rows decoded straight into columns equal their value trees put into columns, also
        /// next to lines that fail part way (a bad nested value, cut JSON) or repeat keys.
        #[test]
        fn rows_built_while_normalizing_equal_their_value_trees(
            events in prop::collection::vec(event(), 1..12),
            kinds in prop::collection::vec(0usize..6, 12),
        ) {
            let schema = compile(SCHEMA, "prop").unwrap();
            let arrow = table_schema(&schema);
            let n = Normalizer::new(Arc::new(schema.clone())).with_source(Some("s".into()), Some("l".into()));
            let parse_time = Timestamp::from_second(1_700_000_000).unwrap();
            let mut builder = RowsBuilder::new(&schema, &arrow).unwrap();
            let mut rows = Vec::new();
            for (e, kind) in events.iter().zip(kinds) {
                let text = e.to_string();
                let line = match kind {
                    // A failure after values were taken: a bad element deep in `o.items`.
                    3 => text.replacen('{', r#"{"s":"first","o":{"inner":"x","items":[{"k":1},{"k":"no"}]},"#, 1),
                    // Cut JSON.
                    4 => text[..(0..=text.len() / 2).rev().find(|&i| text.is_char_boundary(i)).unwrap_or(0)].to_owned(),
                    // Repeated keys: the last value counts.
                    5 => format!(r#"{},"s":"again","o":{{"inner":"second"}},"tags":[],"i":null}}"#, &text[..text.len() - 1]),
                    _ => text,
                };
                let tree = n.normalize_at(line.as_bytes(), parse_time);
                let verdict = n.normalize_into(line.as_bytes(), parse_time, &mut builder);
                match tree {
                    Outcome::Row(r) => {
                        prop_assert_eq!(verdict, orgtrail_schema::Verdict::Row, "{}", line);
                        rows.push(r.into_owned());
                    }
                    Outcome::Failure(f) => prop_assert_eq!(verdict, orgtrail_schema::Verdict::Failure(f)),
                    Outcome::Skip => prop_assert_eq!(verdict, orgtrail_schema::Verdict::Skip),
                }
            }
            let refs: Vec<&Row<'_>> = rows.iter().collect();
            let expected = rows_to_batch(&schema, &arrow, &refs).unwrap();
            let (batch, hours) = builder.finish().unwrap();
            prop_assert_eq!(&batch, &expected);
            let event_hours: Vec<i64> = rows.iter().map(|r| crate::write::hour_of(r.event_time)).collect();
            prop_assert_eq!(hours, event_hours);
            let back = batch_to_rows(&schema, &batch).unwrap();
            let rows: Vec<Row<'static>> = rows.into_iter().map(|mut r| { r.event_time_unparsed = false; r }).collect();
            prop_assert_eq!(back, rows);
        }
    }
}
