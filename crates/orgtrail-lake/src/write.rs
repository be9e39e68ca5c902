//! Writing rows and classification failures as Parquet, one file per (table, event hour, batch).
//!
//! Layout: `<lake>/<table>/year=YYYY/month=MM/day=DD/hour=HH/<batch id>.parquet`, hour of
//! `p_event_time` in UTC (of `p_parse_time` for `classification_failures`). The file name comes from
//! the caller's batch id, so writing the same batch again replaces the same files: a replay after a
//! crash creates no duplicates.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, ListArray, RecordBatch, StringArray, StructArray,
    TimestampNanosecondArray,
};
use arrow::buffer::OffsetBuffer;
use arrow::datatypes::{
    DataType, Field, Fields, Int64Type, Schema as ArrowSchema, SchemaRef, TimeUnit,
    TimestampNanosecondType,
};
use bytes::Bytes;
use jiff::Timestamp;
use jiff::tz::Offset;
use object_store::path::Path;
use orgtrail_schema::{Failure, Row, Schema};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::arrow_writer::ArrowWriterOptions;
use parquet::arrow::{
    ARROW_SCHEMA_META_KEY, ArrowSchemaConverter, ArrowWriter, encode_arrow_schema,
};
use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::file::properties::{
    DEFAULT_DATA_PAGE_ROW_COUNT_LIMIT, DEFAULT_PAGE_SIZE, EnabledStatistics, WriterProperties,
};
use parquet::schema::types::{ColumnPath, SchemaDescriptor};

use crate::LakeError;
use crate::arrow::{rows_to_batch, table_schema};
use crate::store::Location;

/// The table holding classification failures.
pub const FAILURES_TABLE: &str = "classification_failures";

/// One file written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrittenFile {
    pub path: String,
    pub rows: usize,
    pub bytes: usize,
}

/// A classification failure with where it came from.
#[derive(Debug, Clone)]
pub struct FailureRecord {
    pub parse_time: Timestamp,
    pub source_id: Option<String>,
    pub source_label: Option<String>,
    pub log_type: String,
    pub failure: Failure,
}

/// A batch id becomes a file name: keep it to `[A-Za-z0-9_.-]`.
pub fn check_batch_id(id: &str) -> Result<(), LakeError> {
    if id.is_empty()
        || id.starts_with('.')
        || !id
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
    {
        return Err(LakeError::Config(format!(
            "batch id {id:?} must be non-empty and use only letters, digits, '-', '_' and '.'"
        )));
    }
    Ok(())
}

/// A new batch id: `YYYYMMDDTHHMMSSZ-<uuid>`, as Panther names its files.
pub fn new_batch_id() -> String {
    let now = Offset::UTC.to_datetime(Timestamp::now());
    format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}Z-{}",
        now.year(),
        now.month(),
        now.day(),
        now.hour(),
        now.minute(),
        now.second(),
        uuid::Uuid::new_v4().simple()
    )
}

/// The hour of a time (hours since the Unix epoch): rows group by it, and [`hour_partition`] of any
/// time in the group names the group's partition.
pub(crate) fn hour_of(t: Timestamp) -> i64 {
    t.as_second().div_euclid(3600)
}

/// `year=YYYY/month=MM/day=DD/hour=HH` of a time, in UTC.
pub fn hour_partition(t: Timestamp) -> String {
    let dt = Offset::UTC.to_datetime(t);
    format!(
        "year={:04}/month={:02}/day={:02}/hour={:02}",
        dt.year(),
        dt.month(),
        dt.day(),
        dt.hour()
    )
}

const ZSTD_LEVEL: i32 = 1;

/// Column chunks with fewer bytes of values are stored uncompressed. Every compressed chunk costs a
/// zstd compression and a decompression context (about 200 KB, and two CPUID instructions, slow in
/// a virtual machine), which on a small chunk outweighs the few kilobytes zstd saves. A collector
/// writes many small chunks: files of late events (a few rows per older hour), and in every file the
/// columns of sparse schemas such as Atlassian's that hold few or no values.
/// `lake compact` merges an hour's files, so its chunks are compressed once they grow past this.
const COMPRESS_FROM_BYTES: usize = 32 << 10;

/// Files of fewer rows (late events of an older hour, mostly) are written with the same choices
/// for every column: uncompressed (see [`COMPRESS_FROM_BYTES`]), without dictionaries, with
/// statistics. Per-column choices are kept in a map that the writer looks each column up in,
/// several times, hashing its path: on a few rows that costs more than any choice saves (in the
/// benchmark's collection of 1,000,000 events, half of the files hold fewer than 50 rows).
const FEW_ROWS: usize = 64;

fn writer_properties(
    log_type: &str,
    schema: &FileSchema,
    batches: &[RecordBatch],
) -> WriterProperties {
    let props = WriterProperties::builder()
        .set_max_row_group_row_count(Some(128 * 1024))
        .set_created_by(format!("orgtrail {}", env!("CARGO_PKG_VERSION")))
        .set_key_value_metadata(Some(vec![
            parquet::file::metadata::KeyValue::new(
                "orgtrail.log_type".to_owned(),
                log_type.to_owned(),
            ),
            // What the Arrow writer would add: readers get back the exact Arrow types.
            parquet::file::metadata::KeyValue::new(
                ARROW_SCHEMA_META_KEY.to_owned(),
                schema.arrow_encoded.clone(),
            ),
        ]));
    if batches.iter().map(RecordBatch::num_rows).sum::<usize>() < FEW_ROWS {
        // The same for every column, so the writer finds them without looking a column up.
        return props
            .set_compression(Compression::UNCOMPRESSED)
            .set_dictionary_enabled(false)
            .set_statistics_enabled(EnabledStatistics::Chunk)
            .build();
    }
    let choices = ColumnChoices::of(&schema.parquet, batches);
    // A page index (min/max per page) only helps a reader skip pages when a column chunk has
    // several; below Parquet's page limits every chunk is one page, and the chunk's statistics
    // say the same.
    let statistics = if choices.one_page_per_chunk {
        EnabledStatistics::Chunk
    } else {
        EnabledStatistics::Page
    };
    // Level 1: zstd's fastest standard level; the files are barely bigger than at the default
    // level 3, and writing them costs much less CPU. It always exists: the constructor cannot fail.
    let zstd = Compression::ZSTD(ZstdLevel::try_new(ZSTD_LEVEL).unwrap_or_default());
    let mut props = props
        .set_compression(zstd)
        .set_statistics_enabled(statistics);
    for path in choices.uncompressed {
        props = props.set_column_compression(path, Compression::UNCOMPRESSED);
    }
    for path in choices.no_dictionary {
        props = props.set_column_dictionary_enabled(path, false);
    }
    for path in choices.prefix_encoded {
        props = props.set_column_encoding(path, Encoding::DELTA_BYTE_ARRAY);
    }
    for path in choices.no_statistics {
        props = props.set_column_statistics_enabled(path, EnabledStatistics::None);
    }
    props.build()
}

/// Encoding choices per leaf column of a file, from its data.
#[derive(Debug, Default)]
struct ColumnChoices {
    /// Fewer than [`COMPRESS_FROM_BYTES`] bytes of values.
    uncompressed: Vec<ColumnPath>,
    /// Values that look unique (ids, URLs with ids, times): a dictionary would hold every value once
    /// more and hash each one, for nothing.
    no_dictionary: Vec<ColumnPath>,
    /// Unique strings that mostly repeat the one before them (URLs with ids, times as text): stored
    /// as the length shared with the previous value and the rest (`DELTA_BYTE_ARRAY`), so zstd
    /// compresses a fraction of their bytes.
    prefix_encoded: Vec<ColumnPath>,
    /// Strings that are not all the same (ids, URLs, actions, names, addresses): a file holds an
    /// hour of events, so their minimum and maximum span about the whole range of values and would
    /// let a reader skip nothing, and finding them compares every value twice. Constant ones (the
    /// source, the log type) keep theirs, which can skip files of other sources.
    no_statistics: Vec<ColumnPath>,
    /// Every column's values fit in one data page (fewer rows and bytes than Parquet's page limits).
    one_page_per_chunk: bool,
}

/// Distinct sampled values needed to call a column unique.
const UNIQUE_SAMPLE: usize = 64;

impl ColumnChoices {
    fn of(descr: &SchemaDescriptor, batches: &[RecordBatch]) -> ColumnChoices {
        let mut bytes = vec![0usize; descr.num_columns()];
        // Per leaf, from the first batch: (looks unique, strings not all the same, unique strings
        // mostly repeating the one before).
        let mut sampled = Vec::new();
        for (i, batch) in batches.iter().enumerate() {
            let mut leaves = Vec::with_capacity(descr.num_columns());
            let known = batch.columns().iter().all(|c| leaf_arrays(c, &mut leaves));
            if !known || leaves.len() != bytes.len() {
                // A shape this walk does not know: Parquet's defaults for every column.
                return ColumnChoices::default();
            }
            for (acc, leaf) in bytes.iter_mut().zip(&leaves) {
                *acc += value_bytes(leaf.as_ref());
            }
            if i == 0 {
                sampled = leaves
                    .iter()
                    .map(|l| {
                        let l = l.as_ref();
                        let string = l.data_type() == &DataType::Utf8;
                        let unique = looks_unique(l);
                        (
                            unique,
                            string && !looks_constant(l),
                            unique && string && shares_prefixes(l),
                        )
                    })
                    .collect();
            }
        }
        let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
        let mut choices = ColumnChoices {
            one_page_per_chunk: rows <= DEFAULT_DATA_PAGE_ROW_COUNT_LIMIT
                && bytes.iter().all(|&n| n <= DEFAULT_PAGE_SIZE),
            ..ColumnChoices::default()
        };
        let paths = descr.columns().iter().map(|c| c.path());
        for ((path, n), (unique, varied_strings, shared)) in paths.zip(bytes).zip(sampled) {
            if n < COMPRESS_FROM_BYTES {
                choices.uncompressed.push(path.clone());
            }
            if unique {
                choices.no_dictionary.push(path.clone());
            }
            if shared {
                choices.prefix_encoded.push(path.clone());
            }
            if varied_strings {
                choices.no_statistics.push(path.clone());
            }
        }
        choices
    }
}

/// Appends the leaf arrays under `array` (depth first, Parquet's column order), each cut to this
/// slice of `array`. `false` for a nested type lake schemas do not use.
fn leaf_arrays(array: &ArrayRef, out: &mut Vec<ArrayRef>) -> bool {
    match array.data_type() {
        DataType::Struct(_) => array
            .as_struct()
            .columns()
            .iter()
            .all(|child| leaf_arrays(child, out)),
        DataType::List(_) => {
            // A slice of a list shares the whole child array: keep the items of the slice only.
            let list = array.as_list::<i32>();
            let (start, end) = span(list.value_offsets());
            leaf_arrays(&list.values().slice(start, end - start), out)
        }
        DataType::LargeList(_) => {
            let list = array.as_list::<i64>();
            let (start, end) = span(list.value_offsets());
            leaf_arrays(&list.values().slice(start, end - start), out)
        }
        DataType::Map(..) | DataType::FixedSizeList(..) | DataType::Union(..) => false,
        _ => {
            out.push(array.clone());
            true
        }
    }
}

/// The bytes of a leaf array's values.
fn value_bytes(array: &dyn Array) -> usize {
    match array.data_type() {
        DataType::Utf8 => {
            let (start, end) = span(array.as_string::<i32>().value_offsets());
            end - start
        }
        DataType::LargeUtf8 => {
            let (start, end) = span(array.as_string::<i64>().value_offsets());
            end - start
        }
        dt => (array.len() - array.null_count()) * dt.primitive_width().unwrap_or(1),
    }
}

/// Whether the first [`UNIQUE_SAMPLE`] values of a string or 64-bit leaf are all different.
fn looks_unique(array: &dyn Array) -> bool {
    fn distinct<T: std::hash::Hash + Eq>(values: impl Iterator<Item = T>) -> bool {
        let mut seen =
            foldhash::HashSet::with_capacity_and_hasher(UNIQUE_SAMPLE, Default::default());
        values.take(UNIQUE_SAMPLE).all(|v| seen.insert(v)) && seen.len() == UNIQUE_SAMPLE
    }
    match array.data_type() {
        DataType::Utf8 => distinct(array.as_string::<i32>().iter().flatten()),
        DataType::Int64 => distinct(array.as_primitive::<Int64Type>().iter().flatten()),
        DataType::Timestamp(TimeUnit::Nanosecond, _) => distinct(
            array
                .as_primitive::<TimestampNanosecondType>()
                .iter()
                .flatten(),
        ),
        _ => false,
    }
}

/// Whether the first [`UNIQUE_SAMPLE`] values of a string leaf share at least half of their bytes
/// with the value before them.
fn shares_prefixes(array: &dyn Array) -> bool {
    let values = array
        .as_string::<i32>()
        .iter()
        .flatten()
        .take(UNIQUE_SAMPLE);
    let (mut shared, mut total) = (0, 0);
    let mut previous: &str = "";
    for v in values {
        shared += v
            .bytes()
            .zip(previous.bytes())
            .take_while(|(a, b)| a == b)
            .count();
        total += v.len();
        previous = v;
    }
    total > 0 && shared * 2 >= total
}

/// Whether the first [`UNIQUE_SAMPLE`] values of a string leaf are all the same (or missing).
fn looks_constant(array: &dyn Array) -> bool {
    let mut values = array
        .as_string::<i32>()
        .iter()
        .flatten()
        .take(UNIQUE_SAMPLE);
    let first = values.next();
    values.all(|v| Some(v) == first)
}

/// The first and last offset of an offsets buffer (never empty: it holds one more than the length).
fn span<O: arrow::array::OffsetSizeTrait>(offsets: &[O]) -> (usize, usize) {
    let first = offsets.first().map_or(0, |o| o.as_usize());
    let last = offsets.last().map_or(first, |o| o.as_usize());
    (first, last)
}

/// An encoded file, without the spare capacity of its growth (a batch holds one per hour until
/// they are stored: with many small hours, the slack would dominate).
fn into_bytes(mut buf: Vec<u8>) -> Bytes {
    buf.shrink_to_fit();
    Bytes::from(buf)
}

/// Encodes one record batch as a Parquet file.
pub fn encode(batch: &RecordBatch, log_type: &str) -> Result<Bytes, LakeError> {
    encode_batches(std::slice::from_ref(batch), log_type)
}

/// Encodes record batches of one schema as one Parquet file, in order (no concatenation: the
/// writer buffers them into row groups).
pub fn encode_batches(batches: &[RecordBatch], log_type: &str) -> Result<Bytes, LakeError> {
    let Some(first) = batches.first() else {
        return Err(LakeError::Io("nothing to encode".into()));
    };
    let schema = file_schema(first.schema_ref())?;
    let props = writer_properties(log_type, &schema, batches);
    let mut buf = Vec::new();
    let mut writer = ArrowWriter::try_new_with_options(
        &mut buf,
        first.schema(),
        ArrowWriterOptions::new()
            .with_properties(props)
            .with_parquet_schema(schema.parquet.clone())
            .with_skip_arrow_metadata(true),
    )?;
    for b in batches {
        writer.write(b)?;
    }
    writer.close()?;
    Ok(into_bytes(buf))
}

/// Reads back a file [`encode_batches`] wrote (its record batches, with the Arrow schema it was
/// written with).
pub(crate) fn decode(bytes: Bytes) -> Result<Vec<RecordBatch>, LakeError> {
    ParquetRecordBatchReaderBuilder::try_new(bytes)?
        .build()?
        .map(|b| b.map_err(LakeError::from))
        .collect()
}

/// What a file needs of its Arrow schema.
struct FileSchema {
    arrow: SchemaRef,
    parquet: SchemaDescriptor,
    /// The Arrow schema as the Arrow writer stores it in the file's metadata.
    arrow_encoded: String,
}

/// The schema of a file. Every file of a table has the same: it is converted and encoded once and
/// kept (a few schemas per process).
fn file_schema(arrow: &SchemaRef) -> Result<Arc<FileSchema>, LakeError> {
    static KNOWN: std::sync::Mutex<Vec<Arc<FileSchema>>> = std::sync::Mutex::new(Vec::new());
    let mut known = KNOWN
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(schema) = known
        .iter()
        .find(|k| Arc::ptr_eq(&k.arrow, arrow) || k.arrow == *arrow)
    {
        return Ok(schema.clone());
    }
    let schema = Arc::new(FileSchema {
        arrow: arrow.clone(),
        parquet: ArrowSchemaConverter::new().convert(arrow)?,
        arrow_encoded: encode_arrow_schema(arrow),
    });
    if known.len() >= 16 {
        known.remove(0);
    }
    known.push(schema.clone());
    Ok(schema)
}

/// The files of one batch: (path, encoded file, rows), before they are stored. CPU work only.
pub type Encoded = Vec<(Path, Bytes, usize)>;

/// Groups rows by event hour and encodes one Parquet file per hour.
pub fn encode_rows(
    location: &Location,
    schema: &Schema,
    batch_id: &str,
    rows: &[Row<'_>],
) -> Result<Encoded, LakeError> {
    check_batch_id(batch_id)?;
    let arrow = table_schema(schema);
    let table = schema.table_name();
    let mut by_hour: BTreeMap<i64, Vec<&Row<'_>>> = BTreeMap::new();
    for row in rows {
        by_hour
            .entry(hour_of(row.event_time))
            .or_default()
            .push(row);
    }
    let groups: Vec<(String, Vec<&Row<'_>>)> = by_hour
        .into_values()
        .map(|rows| (hour_partition(rows[0].event_time), rows))
        .collect();
    let encode_group =
        |(hour, rows): &(String, Vec<&Row<'_>>)| -> Result<(Path, Bytes, usize), LakeError> {
            let batch = rows_to_batch(schema, &arrow, rows)?;
            let bytes = encode(&batch, &schema.name)?;
            Ok((
                file_path(location, &table, hour, batch_id),
                bytes,
                rows.len(),
            ))
        };
    parallel_map(&groups, encode_group)
}

/// Maps the items on all cores (scoped threads taking the next item as they finish one, so
/// uneven items balance), keeping their order.
pub(crate) fn parallel_map<T: Sync, R: Send>(
    items: &[T],
    f: impl Fn(&T) -> Result<R, LakeError> + Sync,
) -> Result<Vec<R>, LakeError> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(items.len().max(1));
    if workers <= 1 {
        return items.iter().map(&f).collect();
    }
    let (f, next) = (&f, &AtomicUsize::new(0));
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                scope.spawn(move || {
                    let mut done = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(item) = items.get(i) else {
                            return Ok(done);
                        };
                        match f(item) {
                            Ok(r) => done.push((i, r)),
                            Err(e) => {
                                // Stop the others early.
                                next.store(items.len(), Ordering::Relaxed);
                                return Err(e);
                            }
                        }
                    }
                })
            })
            .collect();
        let mut out = Vec::with_capacity(items.len());
        for h in handles {
            let part: Vec<(usize, R)> = h
                .join()
                .map_err(|_| LakeError::Io("an encoding thread panicked".into()))??;
            out.extend(part);
        }
        out.sort_unstable_by_key(|(i, _)| *i);
        Ok(out.into_iter().map(|(_, r)| r).collect())
    })
}

pub(crate) fn file_path(location: &Location, table: &str, hour: &str, batch_id: &str) -> Path {
    let mut p = location.root.clone().join(table);
    for part in hour.split('/') {
        p = p.join(part);
    }
    p.join(format!("{batch_id}.parquet"))
}

/// Stores encoded files (a few at a time); each appears whole or not at all.
pub async fn store(location: &Location, files: Encoded) -> Result<Vec<WrittenFile>, LakeError> {
    store_as(location, files, false).await
}

/// [`store`] for files no reader lists (`unlisted`: a batch's `.pending` files, see
/// [`Location::put_unlisted`]).
pub(crate) async fn store_as(
    location: &Location,
    files: Encoded,
    unlisted: bool,
) -> Result<Vec<WrittenFile>, LakeError> {
    use futures::stream::{self, StreamExt, TryStreamExt};
    stream::iter(files)
        .map(|(path, bytes, rows)| async move {
            let len = bytes.len();
            if unlisted {
                location.put_unlisted(&path, bytes).await?;
            } else {
                location.put(&path, bytes).await?;
            }
            Ok::<_, LakeError>(WrittenFile {
                path: path.to_string(),
                rows,
                bytes: len,
            })
        })
        .buffered(16)
        .try_collect()
        .await
}

/// The Arrow schema of `classification_failures`.
pub fn failures_schema() -> SchemaRef {
    let error = Fields::from(vec![
        Field::new("path", DataType::Utf8, false),
        Field::new("message", DataType::Utf8, false),
    ]);
    Arc::new(ArrowSchema::new(vec![
        Field::new(
            "p_parse_time",
            DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into())),
            false,
        ),
        Field::new("p_source_id", DataType::Utf8, true),
        Field::new("p_source_label", DataType::Utf8, true),
        Field::new("p_log_type", DataType::Utf8, false),
        Field::new(
            "errors",
            DataType::List(Arc::new(Field::new("item", DataType::Struct(error), true))),
            false,
        ),
        Field::new("payload", DataType::Utf8, false),
        Field::new("payload_base64", DataType::Utf8, true),
    ]))
}

/// Encodes failures, one file per hour of `p_parse_time`.
pub fn encode_failures(
    location: &Location,
    batch_id: &str,
    failures: &[FailureRecord],
) -> Result<Encoded, LakeError> {
    check_batch_id(batch_id)?;
    let schema = failures_schema();
    let mut by_hour: BTreeMap<String, Vec<&FailureRecord>> = BTreeMap::new();
    for f in failures {
        by_hour
            .entry(hour_partition(f.parse_time))
            .or_default()
            .push(f);
    }
    by_hour
        .into_iter()
        .map(|(hour, recs)| {
            let batch = failures_batch(&schema, &recs)?;
            let bytes = encode(&batch, FAILURES_TABLE)?;
            Ok((
                file_path(location, FAILURES_TABLE, &hour, batch_id),
                bytes,
                recs.len(),
            ))
        })
        .collect()
}

fn failures_batch(schema: &SchemaRef, recs: &[&FailureRecord]) -> Result<RecordBatch, LakeError> {
    let errors = recs.iter().flat_map(|r| r.failure.errors.iter());
    let paths: StringArray = errors.clone().map(|e| Some(e.path.as_str())).collect();
    let messages: StringArray = errors.map(|e| Some(e.message.as_str())).collect();
    let DataType::List(item) = schema.field(4).data_type() else {
        return Err(LakeError::Corrupt(
            "failures schema: errors is not a list".into(),
        ));
    };
    let DataType::Struct(error_fields) = item.data_type() else {
        return Err(LakeError::Corrupt(
            "failures schema: errors items are not structs".into(),
        ));
    };
    let structs = StructArray::try_new(
        error_fields.clone(),
        vec![Arc::new(paths), Arc::new(messages)],
        None,
    )?;
    let offsets = OffsetBuffer::from_lengths(recs.iter().map(|r| r.failure.errors.len()));
    let columns: Vec<ArrayRef> = vec![
        Arc::new(
            TimestampNanosecondArray::from(
                recs.iter()
                    .map(|r| i64::try_from(r.parse_time.as_nanosecond()).unwrap_or(i64::MAX))
                    .collect::<Vec<_>>(),
            )
            .with_timezone("UTC"),
        ),
        Arc::new(
            recs.iter()
                .map(|r| r.source_id.as_deref())
                .collect::<StringArray>(),
        ),
        Arc::new(
            recs.iter()
                .map(|r| r.source_label.as_deref())
                .collect::<StringArray>(),
        ),
        Arc::new(StringArray::from_iter_values(
            recs.iter().map(|r| r.log_type.as_str()),
        )),
        Arc::new(ListArray::try_new(
            item.clone(),
            offsets,
            Arc::new(structs),
            None,
        )?),
        Arc::new(StringArray::from_iter_values(
            recs.iter().map(|r| r.failure.payload.as_str()),
        )),
        Arc::new(
            recs.iter()
                .map(|r| r.failure.payload_base64.as_deref())
                .collect::<StringArray>(),
        ),
    ];
    Ok(RecordBatch::try_new(schema.clone(), columns)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, StringArray};
    use parquet::file::reader::{FileReader, SerializedFileReader};

    /// A batch of `rows` rows: `id` (7 bytes a row on average), a struct `o` with an always-null and
    /// a half-valued `Int64` child (4 bytes a row), an always-empty list `tags` and a list `words` of
    /// one 9-byte word a row (seven different words).
    fn sparse_batch(rows: usize) -> RecordBatch {
        let inner = Fields::from(vec![
            Field::new("empty", DataType::Utf8, true),
            Field::new("full", DataType::Int64, true),
        ]);
        let item = Arc::new(Field::new_list_field(DataType::Utf8, true));
        let schema = Arc::new(ArrowSchema::new(vec![
            Field::new("id", DataType::Utf8, false),
            Field::new("o", DataType::Struct(inner.clone()), true),
            Field::new("tags", DataType::List(item.clone()), true),
            Field::new("words", DataType::List(item.clone()), true),
        ]));
        let o = StructArray::new(
            inner,
            vec![
                Arc::new(StringArray::from(vec![None::<&str>; rows])) as ArrayRef,
                Arc::new(Int64Array::from_iter(
                    (0..rows as i64).map(|i| (i % 2 == 0).then_some(i)),
                )),
            ],
            None,
        );
        let tags = ListArray::new(
            item.clone(),
            OffsetBuffer::from_lengths(vec![0; rows]),
            Arc::new(StringArray::from(Vec::<Option<&str>>::new())),
            None,
        );
        let words = ListArray::new(
            item,
            OffsetBuffer::from_lengths(vec![1; rows]),
            Arc::new(StringArray::from_iter_values(
                (0..rows).map(|i| format!("word-{:04}", i % 7)),
            )),
            None,
        );
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from_iter_values(
                    (0..rows).map(|i| format!("id-{i}")),
                )),
                Arc::new(o),
                Arc::new(tags),
                Arc::new(words),
            ],
        )
        .unwrap()
    }

    /// The codec of each column chunk of an encoded file, and its batches read back.
    fn codecs_and_rows(bytes: Bytes) -> (Vec<(String, Compression)>, Vec<RecordBatch>) {
        let reader = SerializedFileReader::new(bytes.clone()).unwrap();
        let rg = reader.metadata().row_group(0);
        let codecs = rg
            .columns()
            .iter()
            .map(|c| (c.column_path().string(), c.compression()))
            .collect();
        let back = parquet::arrow::arrow_reader::ParquetRecordBatchReader::try_new(bytes, 1 << 20)
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        (codecs, back)
    }

    #[test]
    fn column_chunks_of_few_bytes_are_stored_uncompressed_and_read_back() {
        // 10,000 rows: `id` ~68 KB, `o.full` 40 KB, `words` 90 KB; `o.empty` and `tags` none.
        let batch = sparse_batch(10_000);
        let (codecs, back) = codecs_and_rows(encode(&batch, "Test.Type").unwrap());
        let zstd = Compression::ZSTD(ZstdLevel::try_new(ZSTD_LEVEL).unwrap());
        assert_eq!(
            codecs,
            [
                ("id".to_owned(), zstd),
                ("o.empty".to_owned(), Compression::UNCOMPRESSED),
                ("o.full".to_owned(), zstd),
                ("tags.list.item".to_owned(), Compression::UNCOMPRESSED),
                ("words.list.item".to_owned(), zstd),
            ]
        );
        assert_eq!(back, [batch]);
    }

    /// Each column's encodings, and the rows read back.
    fn encodings_and_rows(bytes: Bytes) -> (Vec<Vec<Encoding>>, Vec<RecordBatch>) {
        let reader = SerializedFileReader::new(bytes.clone()).unwrap();
        let encodings = reader.metadata().row_group(0).columns().iter();
        let encodings = encodings.map(|c| c.encodings().collect()).collect();
        (encodings, codecs_and_rows(bytes).1)
    }

    #[test]
    fn unique_strings_that_repeat_the_one_before_are_stored_as_prefix_and_rest() {
        // 1,000 rows: URLs that differ in their last characters only, and hex strings of the same
        // length that share nothing with their neighbour.
        let rows = 1_000u64;
        let hex = |i: u64| format!("{:016x}", i.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let schema = Arc::new(ArrowSchema::new(vec![
            Field::new("url", DataType::Utf8, false),
            Field::new("hex", DataType::Utf8, false),
        ]));
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from_iter_values((0..rows).map(|i| {
                    format!("https://api.example.com/v1/events/{}", hex(i))
                }))),
                Arc::new(StringArray::from_iter_values((0..rows).map(hex))),
            ],
        )
        .unwrap();
        let (encodings, back) = encodings_and_rows(encode(&batch, "T").unwrap());
        assert!(
            encodings[0].contains(&Encoding::DELTA_BYTE_ARRAY),
            "{encodings:?}"
        );
        assert!(
            !encodings[1].contains(&Encoding::DELTA_BYTE_ARRAY),
            "{encodings:?}"
        );
        assert_eq!(back, [batch]);
    }

    #[test]
    fn files_of_few_rows_make_one_choice_for_every_column() {
        // Unique ids and repeated words alike: uncompressed, no dictionary, statistics.
        let batch = sparse_batch(FEW_ROWS - 1);
        let bytes = encode(&batch, "T").unwrap();
        let (codecs, _) = codecs_and_rows(bytes.clone());
        assert!(
            codecs.iter().all(|(_, c)| *c == Compression::UNCOMPRESSED),
            "{codecs:?}"
        );
        let (encodings, back) = encodings_and_rows(bytes.clone());
        let dictionary = [Encoding::RLE_DICTIONARY, Encoding::PLAIN_DICTIONARY];
        assert!(
            encodings.iter().flatten().all(|e| !dictionary.contains(e)),
            "{encodings:?}"
        );
        let (stats, _) = statistics_and_page_index(bytes);
        assert_eq!(stats, [true; 5]);
        assert_eq!(back, [batch]);
        // One row more: the per-column choices (dictionaries for the seven words).
        let (encodings, _) = encodings_and_rows(encode(&sparse_batch(FEW_ROWS), "T").unwrap());
        assert!(
            encodings[4].contains(&Encoding::RLE_DICTIONARY),
            "{encodings:?}"
        );
    }

    /// Whether each column chunk of the file has statistics, and whether any has a column index
    /// (the page index's min/max per page).
    fn statistics_and_page_index(bytes: Bytes) -> (Vec<bool>, bool) {
        let reader = SerializedFileReader::new(bytes).unwrap();
        let columns = reader.metadata().row_group(0).columns();
        (
            columns.iter().map(|c| c.statistics().is_some()).collect(),
            columns.iter().any(|c| c.column_index_offset().is_some()),
        )
    }

    #[test]
    fn statistics_skip_varied_strings_and_a_page_index_is_written_only_when_a_chunk_spans_pages() {
        // Every column has statistics but `id` and `words`, strings that are not all the same
        // (`o.full`, unique numbers, keeps them: comparing numbers costs little; `o.empty` and
        // `tags` have no value).
        let expected = [false, true, true, true, false];
        // One page per column chunk: the chunk statistics say all a page index would.
        let (stats, index) = statistics_and_page_index(encode(&sparse_batch(10_000), "T").unwrap());
        assert_eq!((stats.as_slice(), index), (expected.as_slice(), false));
        // More rows than a data page holds: several pages per chunk, and their index.
        let rows = DEFAULT_DATA_PAGE_ROW_COUNT_LIMIT + 1;
        let (stats, index) = statistics_and_page_index(encode(&sparse_batch(rows), "T").unwrap());
        assert_eq!((stats.as_slice(), index), (expected.as_slice(), true));
    }

    #[test]
    fn a_string_column_of_one_value_keeps_its_statistics() {
        let schema = Arc::new(ArrowSchema::new(vec![
            Field::new("source", DataType::Utf8, false),
            Field::new("action", DataType::Utf8, false),
        ]));
        let rows = 1000;
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(vec!["source-a"; rows])),
                Arc::new(StringArray::from_iter_values(
                    (0..rows).map(|i| ["created", "deleted", "viewed"][i % 3]),
                )),
            ],
        )
        .unwrap();
        let (stats, _) = statistics_and_page_index(encode(&batch, "T").unwrap());
        assert_eq!(stats, [true, false]);
    }

    #[test]
    fn files_carry_their_arrow_schema_and_log_type() {
        let batch = sparse_batch(10);
        let bytes = encode(&batch, "Test.Type").unwrap();
        let reader = SerializedFileReader::new(bytes.clone()).unwrap();
        let kv: Vec<(String, String)> = reader
            .metadata()
            .file_metadata()
            .key_value_metadata()
            .unwrap()
            .iter()
            .map(|kv| (kv.key.clone(), kv.value.clone().unwrap_or_default()))
            .collect();
        assert_eq!(
            kv,
            [
                ("orgtrail.log_type".to_owned(), "Test.Type".to_owned()),
                (
                    ARROW_SCHEMA_META_KEY.to_owned(),
                    encode_arrow_schema(&batch.schema())
                ),
            ]
        );
        // Read back with the exact Arrow types.
        assert_eq!(codecs_and_rows(bytes).1, [batch]);
    }

    #[test]
    fn columns_of_unique_values_are_written_without_a_dictionary() {
        let batch = sparse_batch(10_000);
        let bytes = encode(&batch, "Test.Type").unwrap();
        let reader = SerializedFileReader::new(bytes.clone()).unwrap();
        let dictionary: Vec<(String, bool)> = reader
            .metadata()
            .row_group(0)
            .columns()
            .iter()
            .map(|c| {
                let path = c.column_path().string();
                (path, c.dictionary_page_offset().is_some())
            })
            .collect();
        assert_eq!(
            dictionary,
            [
                ("id".to_owned(), false),
                ("o.empty".to_owned(), true),
                ("o.full".to_owned(), false),
                ("tags.list.item".to_owned(), true),
                ("words.list.item".to_owned(), true),
            ]
        );
        assert_eq!(codecs_and_rows(bytes).1, [batch]);
    }

    #[test]
    fn small_files_are_stored_uncompressed_and_read_back() {
        let batch = sparse_batch(1_000);
        let (codecs, back) = codecs_and_rows(encode(&batch, "Test.Type").unwrap());
        assert_eq!(codecs.len(), 5);
        assert!(
            codecs.iter().all(|(_, c)| *c == Compression::UNCOMPRESSED),
            "{codecs:?}"
        );
        assert_eq!(back, [batch]);
    }

    #[test]
    fn slices_count_only_their_own_values() {
        // Slices of one big batch (as the collector's per-hour slices of a page's batch): a list
        // slice shares the whole child array, but only its own items count.
        let batch = sparse_batch(10_000);
        let slices = [batch.slice(0, 500), batch.slice(9_000, 500)];
        let (codecs, back) = codecs_and_rows(encode_batches(&slices, "Test.Type").unwrap());
        assert!(
            codecs.iter().all(|(_, c)| *c == Compression::UNCOMPRESSED),
            "{codecs:?}"
        );
        assert_eq!(
            back,
            [arrow::compute::concat_batches(&batch.schema(), &slices).unwrap()]
        );
    }
}
