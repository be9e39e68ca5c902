//! A collector's lake batch: rows buffered in Arrow (compact, grouped by event hour) while pages
//! arrive, then encoded as Parquet, then written as `<file>.parquet.pending` objects (invisible to
//! readers), then published by renaming them to their final names. The state store decides which
//! buffered events a batch may keep (their ids were not stored before) and records the batch's
//! files, so a crash between the steps is finished or undone by the next writer (see
//! `orgtrail-state`). The encoding comes before that decision, so it does not wait for it; the rare
//! file that holds events stored before is read back, filtered and encoded again.

use std::collections::BTreeMap;
use std::sync::Arc;

use ::arrow::array::{BooleanArray, UInt32Array};
use ::arrow::compute::filter_record_batch;
use ::arrow::datatypes::SchemaRef;
use ::arrow::record_batch::RecordBatch;
use bytes::Bytes;
use jiff::Timestamp;
use object_store::path::Path;
use orgtrail_schema::Schema;

use crate::arrow::table_schema;
use crate::columns::{HourRows, RowsBuilder, SizeHint, split_by_hour};
use crate::store::Location;
use crate::write::{
    self, Encoded, FAILURES_TABLE, FailureRecord, WrittenFile, check_batch_id, encode_batches,
    file_path, hour_partition, parallel_map,
};
use crate::{Lake, LakeError};

/// Suffix of a batch file written but not yet published.
pub const PENDING_SUFFIX: &str = ".pending";

/// One buffered event's key: its id, `processedAt` (epoch ms) and the caller's number for where it
/// arrived (the collector numbers its pages), kept so a caller knows how far back the events still
/// buffered reach.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BufferedKey {
    pub event_id: String,
    pub processed_at_ms: Option<i64>,
    pub arrival: u64,
}

/// One page's rows of one hour, with the key index of each row.
#[derive(Debug)]
struct Part {
    batch: RecordBatch,
    idx: Vec<u32>,
    /// This slice's share of the memory of the page's batch it shares buffers with.
    memory: usize,
}

/// Rows of one log type and classification failures, buffered for one lake batch.
#[derive(Debug)]
pub struct BatchBuffer {
    schema: Arc<Schema>,
    arrow: SchemaRef,
    /// Event keys, in arrival order; rows and failures refer to them by index.
    keys: Vec<BufferedKey>,
    /// Per event hour: record batches (one slice of each page's batch) with the key index of each row.
    rows: BTreeMap<String, Vec<Part>>,
    failures: Vec<(u32, FailureRecord)>,
    memory: usize,
    /// The sizes of the last page's columns, for the next page's builder.
    page_size: SizeHint,
}

/// Memory of the rows of a record batch that may be a slice of a larger one.
fn slice_memory(batch: &RecordBatch) -> usize {
    batch
        .columns()
        .iter()
        .map(|c| c.to_data().get_slice_memory_size().unwrap_or(0))
        .sum()
}

/// What [`Lake::write_pending`] wrote.
#[derive(Debug, Clone, Default)]
pub struct PendingWrite {
    pub rows: u64,
    pub failures: u64,
    pub files: Vec<WrittenFile>,
}

/// One page's rows, finished into Arrow and split per event hour, with their keys (`keys[i]` is
/// the key of row `i`) and the page's classification failures: the CPU work of adding a page,
/// done apart from the buffer so that pages can be finished side by side, then pushed in order.
#[derive(Debug)]
pub struct FinishedPage {
    parts: Vec<HourRows>,
    /// The memory of the page's record batch (its slices share its buffers).
    memory: usize,
    size: Option<SizeHint>,
    keys: Vec<BufferedKey>,
    failures: Vec<(BufferedKey, FailureRecord)>,
}

impl FinishedPage {
    /// A page of rows a builder from [`BatchBuffer::page_builder`] holds (a page of mostly one
    /// hour plus a few late events gives one slice per hour, not a set of Arrow arrays per late
    /// event).
    pub fn new(
        rows: RowsBuilder,
        keys: Vec<BufferedKey>,
        failures: Vec<(BufferedKey, FailureRecord)>,
    ) -> Result<Self, LakeError> {
        if rows.len() != keys.len() {
            return Err(LakeError::Io(format!(
                "internal error: a page of {} rows came with {} keys",
                rows.len(),
                keys.len()
            )));
        }
        let (parts, memory, size) = if rows.is_empty() {
            (Vec::new(), 0, None)
        } else {
            let size = rows.size_hint();
            let (batch, hours) = rows.finish()?;
            let parts = split_by_hour(batch, &hours)?;
            // The slices share the page's buffers (allocated size, not only what is used): each
            // counts for its share of the rows.
            let memory = parts
                .first()
                .map_or(0, |(_, b, _)| b.get_array_memory_size());
            (parts, memory, Some(size))
        };
        Ok(FinishedPage {
            parts,
            memory,
            size,
            keys,
            failures,
        })
    }
}

impl BatchBuffer {
    pub fn new(schema: Arc<Schema>) -> Self {
        let arrow = table_schema(&schema);
        BatchBuffer::with_arrow(schema, arrow)
    }

    /// An empty buffer for the same log type, sharing this one's Arrow schema: its record batches
    /// and this one's then have the same field objects, so Arrow and Parquet, which check that the
    /// batches they concatenate or write have the same types, compare pointers instead of every
    /// field's name, type and metadata (a collector's walk holds late events over from one batch to
    /// the next).
    pub fn empty_like(&self) -> Self {
        BatchBuffer::with_arrow(self.schema.clone(), self.arrow.clone())
    }

    fn with_arrow(schema: Arc<Schema>, arrow: SchemaRef) -> Self {
        BatchBuffer {
            schema,
            arrow,
            keys: Vec::new(),
            rows: BTreeMap::new(),
            failures: Vec::new(),
            memory: 0,
            page_size: SizeHint::default(),
        }
    }

    /// Adds one finished page's rows, keys and classification failures.
    pub fn push_page(&mut self, page: FinishedPage) -> Result<(), LakeError> {
        let FinishedPage {
            parts,
            memory: page_memory,
            size,
            keys,
            failures,
        } = page;
        let base = self.keys.len();
        self.index(base + keys.len())?;
        if let Some(size) = size {
            self.page_size = size;
        }
        self.memory += page_memory;
        let page_rows = keys.len().max(1);
        for (h, slice, idx) in parts {
            let memory = page_memory * slice.num_rows() / page_rows;
            let hour = hour_partition(
                Timestamp::from_second(h * 3600)
                    .map_err(|e| LakeError::Corrupt(format!("event hour {h}: {e}")))?,
            );
            // In range: checked above.
            let idx = idx.into_iter().map(|i| base as u32 + i).collect();
            self.rows.entry(hour).or_default().push(Part {
                batch: slice,
                idx,
                memory,
            });
        }
        for key in &keys {
            self.memory += key_memory(key);
        }
        self.keys.extend(keys);
        for (key, failure) in failures {
            let idx = self.index(self.keys.len())?;
            self.memory += key_memory(&key) + failure_memory(&failure);
            self.keys.push(key);
            self.failures.push((idx, failure));
        }
        Ok(())
    }

    fn index(&self, i: usize) -> Result<u32, LakeError> {
        u32::try_from(i)
            .map_err(|_| LakeError::Io("a lake batch cannot hold more than 2^32 events".into()))
    }

    /// A builder for the next page's rows (sized like the last page's).
    pub fn page_builder(&self) -> Result<RowsBuilder, LakeError> {
        Ok(RowsBuilder::new(&self.schema, &self.arrow)?.with_size_hint(&self.page_size))
    }

    /// Every buffered event (rows and failures), in arrival order.
    pub fn keys(&self) -> &[BufferedKey] {
        &self.keys
    }

    /// Buffered events.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Approximate memory held, in bytes.
    pub fn memory_size(&self) -> usize {
        self.memory
    }

    /// Moves the hours holding at most `max_rows_per_hour` rows (late events, scattered over many
    /// older hours) into a new buffer, with their keys, so a caller can write the dense hours now
    /// and the sparse ones with a later batch, as fewer and larger files. Nothing moves (`None`)
    /// when there is no such hour or when they hold more than `max_rows` rows together.
    /// Classification failures always stay.
    pub fn take_sparse_hours(
        &mut self,
        max_rows_per_hour: usize,
        max_rows: usize,
    ) -> Result<Option<BatchBuffer>, LakeError> {
        let hour_rows = |parts: &[Part]| parts.iter().map(|p| p.batch.num_rows()).sum::<usize>();
        let sparse: Vec<String> = self
            .rows
            .iter()
            .filter(|(_, parts)| hour_rows(parts) <= max_rows_per_hour)
            .map(|(hour, _)| hour.clone())
            .collect();
        let total: usize = sparse.iter().map(|h| hour_rows(&self.rows[h])).sum();
        if total == 0 || total > max_rows {
            return Ok(None);
        }
        let mut moved = Vec::with_capacity(sparse.len());
        for hour in sparse {
            let parts = self.rows.remove(&hour).unwrap_or_default();
            moved.push((hour, parts));
        }
        // Split the keys, in arrival order, and renumber what refers to them.
        let mut to_held = vec![false; self.keys.len()];
        for (_, parts) in &moved {
            for part in parts {
                for &i in &part.idx {
                    to_held[i as usize] = true;
                }
            }
        }
        let mut held = self.empty_like();
        let mut renumber = Vec::with_capacity(self.keys.len());
        for (key, to_held) in std::mem::take(&mut self.keys).into_iter().zip(to_held) {
            let keys = if to_held {
                &mut held.keys
            } else {
                &mut self.keys
            };
            renumber.push(keys.len() as u32);
            keys.push(key);
        }
        for parts in self.rows.values_mut() {
            for part in parts {
                part.idx.iter_mut().for_each(|i| *i = renumber[*i as usize]);
            }
        }
        for (i, _) in &mut self.failures {
            *i = renumber[*i as usize];
        }
        // One record batch for every held hour, sliced per hour: many one-row batches would cost
        // more memory than their rows, and one concatenation per hour costs more time. Rows held
        // before are copied again too (see ARCHITECTURE.md: keeping them cost memory).
        let parts: Vec<&RecordBatch> = moved
            .iter()
            .flat_map(|(_, parts)| parts.iter().map(|p| &p.batch))
            .collect();
        let batch = match parts.as_slice() {
            // Arrow's concatenation of one batch is a slice of it, which would keep all of it
            // (a whole page) for as long as the rows are held.
            [one] => ::arrow::compute::take_record_batch(
                one,
                &UInt32Array::from_iter_values(0..one.num_rows() as u32),
            )?,
            _ => ::arrow::compute::concat_batches(&self.arrow, parts)?,
        };
        let used = slice_memory(&batch);
        let all_rows = batch.num_rows().max(1);
        let mut start = 0;
        for (hour, parts) in moved {
            let rows = hour_rows(&parts);
            let idx = parts
                .iter()
                .flat_map(|p| p.idx.iter().map(|i| renumber[*i as usize]))
                .collect();
            held.rows.insert(
                hour,
                vec![Part {
                    batch: batch.slice(start, rows),
                    idx,
                    memory: used * rows / all_rows,
                }],
            );
            start += rows;
        }
        self.recount();
        held.recount();
        Ok(Some(held))
    }

    /// Recomputes the memory estimate after keys and rows moved (what `push_page` adds up, counting
    /// each slice of a page's record batch for its share of the page's rows).
    fn recount(&mut self) {
        self.memory = self.keys.iter().map(key_memory).sum::<usize>()
            + self
                .rows
                .values()
                .flatten()
                .map(|p| p.memory)
                .sum::<usize>()
            + self
                .failures
                .iter()
                .map(|(_, f)| failure_memory(f))
                .sum::<usize>();
    }

    /// The final paths of every file this batch may write (a superset: hours whose events all
    /// turn out to be duplicates write nothing).
    pub fn files(&self, location: &Location, batch_id: &str) -> Result<Vec<String>, LakeError> {
        check_batch_id(batch_id)?;
        let table = self.schema.table_name();
        let mut out: Vec<String> = self
            .rows
            .keys()
            .map(|hour| file_path(location, &table, hour, batch_id).to_string())
            .collect();
        let failure_hours: std::collections::BTreeSet<String> = self
            .failures
            .iter()
            .map(|(_, f)| hour_partition(f.parse_time))
            .collect();
        out.extend(
            failure_hours
                .iter()
                .map(|hour| file_path(location, FAILURES_TABLE, hour, batch_id).to_string()),
        );
        Ok(out)
    }

    /// Encodes every buffered row, one Parquet file per event hour named after `batch_id`, before
    /// the state store says which events the batch may keep: the encoding does not wait for the
    /// claim (the collector encodes a batch while the one before it is claimed and committed). CPU
    /// only. Classification failures stay records until [`Lake::write_pending`].
    pub fn encode(self, location: &Location, batch_id: &str) -> Result<EncodedBatch, LakeError> {
        let names = self.files(location, batch_id)?;
        let table = self.schema.table_name();
        let groups: Vec<(&String, &Vec<Part>)> = self.rows.iter().collect();
        let encode_hour = |(hour, parts): &(&String, &Vec<Part>)| {
            let batches: Vec<RecordBatch> = parts.iter().map(|p| p.batch.clone()).collect();
            Ok(EncodedFile {
                path: file_path(location, &table, hour, batch_id),
                bytes: encode_batches(&batches, &self.schema.name)?,
                idx: parts.iter().flat_map(|p| p.idx.iter().copied()).collect(),
            })
        };
        let files = parallel_map(&groups, encode_hour)?;
        Ok(EncodedBatch {
            batch_id: batch_id.to_owned(),
            log_type: self.schema.name.clone(),
            keys: self.keys,
            files,
            failures: self.failures,
            names,
        })
    }
}

/// The events of an [`EncodedBatch`] that [`Lake::write_pending`] writes.
#[derive(Debug)]
pub enum Keep {
    /// Every event: none was stored before (the usual case; no id is looked up).
    All,
    /// The events with these ids.
    Only(foldhash::HashSet<String>),
}

/// One encoded file of a batch, with the key index of each of its rows, in order.
#[derive(Debug)]
struct EncodedFile {
    path: Path,
    bytes: Bytes,
    idx: Vec<u32>,
}

/// A [`BatchBuffer`] encoded as Parquet files (every buffered row), not yet written: what
/// [`Lake::write_pending`] writes once the state store has said which events it may keep.
#[derive(Debug)]
pub struct EncodedBatch {
    batch_id: String,
    log_type: String,
    keys: Vec<BufferedKey>,
    files: Vec<EncodedFile>,
    failures: Vec<(u32, FailureRecord)>,
    /// The final paths of every file the batch may write.
    names: Vec<String>,
}

impl EncodedBatch {
    pub fn batch_id(&self) -> &str {
        &self.batch_id
    }

    /// Every event of the batch (rows and failures), in arrival order.
    pub fn keys(&self) -> &[BufferedKey] {
        &self.keys
    }

    /// The final paths of every file this batch may write (a superset: hours whose events all
    /// turn out to be stored before write nothing).
    pub fn files(&self) -> &[String] {
        &self.names
    }

    /// The files of the events `keep` names. A file holding only such events is taken as
    /// encoded; one holding others too (events stored before: rare) is read back, filtered and
    /// encoded again. CPU only.
    fn finish(self, location: &Location, keep: &Keep) -> Result<(Encoded, u64, u64), LakeError> {
        let kept = |i: &u32| match keep {
            Keep::All => true,
            Keep::Only(ids) => self
                .keys
                .get(*i as usize)
                .is_some_and(|k| ids.contains(&k.event_id)),
        };
        let mut files: Encoded = Vec::with_capacity(self.files.len() + 1);
        let mut row_count = 0;
        for EncodedFile { path, bytes, idx } in self.files {
            let kept_rows = idx.iter().filter(|i| kept(i)).count();
            if kept_rows == idx.len() {
                files.push((path, bytes, kept_rows));
            } else if kept_rows > 0 {
                let mut batches = Vec::new();
                let mut idx = idx.iter();
                for batch in write::decode(bytes)? {
                    let mask: BooleanArray = idx
                        .by_ref()
                        .take(batch.num_rows())
                        .map(|i| Some(kept(i)))
                        .collect();
                    batches.push(filter_record_batch(&batch, &mask)?);
                }
                files.push((path, encode_batches(&batches, &self.log_type)?, kept_rows));
            }
            row_count += kept_rows as u64;
        }
        let failures: Vec<FailureRecord> = self
            .failures
            .into_iter()
            .filter(|(i, _)| kept(i))
            .map(|(_, f)| f)
            .collect();
        let failure_count = failures.len() as u64;
        if !failures.is_empty() {
            files.extend(write::encode_failures(location, &self.batch_id, &failures)?);
        }
        Ok((files, row_count, failure_count))
    }
}

fn key_memory(key: &BufferedKey) -> usize {
    key.event_id.len() + std::mem::size_of::<BufferedKey>()
}

fn failure_memory(failure: &FailureRecord) -> usize {
    failure.failure.payload.len() + 256
}

fn pending_path(path: &Path) -> Path {
    Path::from(format!("{path}{PENDING_SUFFIX}"))
}

impl Lake {
    /// Encodes a buffer as the files of batch `batch_id` ([`BatchBuffer::encode`], off the async
    /// workers).
    pub async fn encode(
        &self,
        buffer: BatchBuffer,
        batch_id: &str,
    ) -> Result<EncodedBatch, LakeError> {
        let location = self.location.clone();
        let id = batch_id.to_owned();
        tokio::task::spawn_blocking(move || buffer.encode(&location, &id))
            .await
            .map_err(|e| LakeError::Io(format!("encoding task failed: {e}")))?
    }

    /// Writes the encoded events `keep` names as `<file>.parquet.pending` objects (the paths
    /// [`EncodedBatch::files`] listed). Readers do not see them until [`Lake::publish`].
    pub async fn write_pending(
        &self,
        batch: EncodedBatch,
        keep: Keep,
    ) -> Result<PendingWrite, LakeError> {
        let location = self.location.clone();
        let (files, rows, failures) =
            tokio::task::spawn_blocking(move || batch.finish(&location, &keep))
                .await
                .map_err(|e| LakeError::Io(format!("encoding task failed: {e}")))??;
        let pending: Encoded = files
            .into_iter()
            .map(|(path, bytes, n)| (pending_path(&path), bytes, n))
            .collect();
        let mut written = write::store_as(&self.location, pending, true).await?;
        for f in &mut written {
            f.path.truncate(f.path.len() - PENDING_SUFFIX.len());
        }
        Ok(PendingWrite {
            rows,
            failures,
            files: written,
        })
    }

    /// Renames each `<file>.pending` to `<file>` (on S3 a server-side copy, then a delete). A file
    /// without its pending object was published before (or never written): skipped. Idempotent.
    pub async fn publish(&self, files: &[String]) -> Result<(), LakeError> {
        use futures::stream::{self, StreamExt, TryStreamExt};
        // A few at a time: each local rename waits for a directory fsync. (Owned values: a closure
        // borrowing `self` makes the future's `Send` depend on a higher-ranked lifetime.)
        let location = self.location.clone();
        stream::iter(files.to_vec())
            .map(move |f| {
                let location = location.clone();
                async move {
                    let path = Path::from(f);
                    location.rename(&pending_path(&path), &path).await
                }
            })
            .buffer_unordered(16)
            .try_collect()
            .await
    }

    /// Deletes each `<file>.pending` (a batch that was never committed). Idempotent.
    pub async fn discard(&self, files: &[String]) -> Result<(), LakeError> {
        for f in files {
            self.location
                .delete(&pending_path(&Path::from(f.as_str())))
                .await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use orgtrail_schema::{Normalizer, Registry, Verdict};

    /// An Atlassian event; the id `bad` lacks the required `links` (a classification failure).
    fn event(id: &str, time: &str) -> String {
        if id == "bad" {
            return format!(r#"{{"type":"events","id":"{id}","attributes":{{"time":"{time}"}}}}"#);
        }
        format!(
            r#"{{"type":"events","id":"{id}","attributes":{{"time":"{time}","action":"user_logged_in"}},"links":{{"self":"https://api.atlassian.com/x"}}}}"#
        )
    }

    /// Pushes one page of `(id, time)` events.
    fn push(buffer: &mut BatchBuffer, n: &Normalizer, arrival: u64, events: &[(&str, &str)]) {
        let mut rows = buffer.page_builder().unwrap();
        let mut keys = Vec::new();
        let mut failures = Vec::new();
        for (id, time) in events {
            let key = BufferedKey {
                event_id: (*id).to_owned(),
                processed_at_ms: None,
                arrival,
            };
            let line = event(id, time);
            match n.normalize_into(line.as_bytes(), jiff::Timestamp::now(), &mut rows) {
                Verdict::Row => keys.push(key),
                Verdict::Failure(failure) => failures.push((
                    key,
                    FailureRecord {
                        parse_time: jiff::Timestamp::now(),
                        source_id: None,
                        source_label: None,
                        log_type: "Atlassian.Audit".into(),
                        failure,
                    },
                )),
                Verdict::Skip => panic!("{id} skipped"),
            }
        }
        buffer
            .push_page(FinishedPage::new(rows, keys, failures).unwrap())
            .unwrap();
    }

    /// The built-in Atlassian schema, a normalizer and an empty buffer for it.
    fn audit() -> (Arc<Schema>, Normalizer, BatchBuffer) {
        let schema = Registry::with_builtins()
            .unwrap()
            .get("Atlassian.Audit")
            .unwrap();
        (
            schema.clone(),
            Normalizer::new(schema.clone()),
            BatchBuffer::new(schema),
        )
    }

    /// A lake location in a temporary directory (kept while the directory lives).
    fn lake_dir() -> (tempfile::TempDir, Location) {
        let dir = tempfile::tempdir().unwrap();
        let location = Location::open(dir.path().to_str().unwrap()).unwrap();
        (dir, location)
    }

    fn encoded_files(buffer: BatchBuffer, keep: &[&str]) -> Vec<(String, usize)> {
        let (_dir, location) = lake_dir();
        let keep = Keep::Only(keep.iter().map(|s| (*s).to_owned()).collect());
        let encoded = buffer.encode(&location, "b1").unwrap();
        let (files, _, _) = encoded.finish(&location, &keep).unwrap();
        files
            .into_iter()
            .map(|(path, _, rows)| (path.to_string(), rows))
            .collect()
    }

    #[test]
    fn keeping_every_event_writes_the_encoded_files_as_they_are() {
        let (_, n, mut buffer) = audit();
        let hour = "2025-06-02T10:15:00Z";
        push(&mut buffer, &n, 1, &[("a1", hour), ("bad", hour)]);
        push(&mut buffer, &n, 2, &[("a2", "2025-06-02T11:00:00Z")]);
        let (_dir, location) = lake_dir();
        let encoded = buffer.encode(&location, "b1").unwrap();
        let rows_files: Vec<Bytes> = encoded.files.iter().map(|f| f.bytes.clone()).collect();
        let (files, rows, failures) = encoded.finish(&location, &Keep::All).unwrap();
        assert_eq!((rows, failures), (2, 1));
        // The two hours' files as they were encoded, then the failures'.
        assert_eq!(files.len(), 3);
        for (written, encoded) in files.iter().zip(&rows_files) {
            assert_eq!(&written.1, encoded);
        }
    }

    #[test]
    fn a_file_holding_events_stored_before_is_encoded_again_without_them() {
        let (schema, n, mut buffer) = audit();
        let hour = "2025-06-02T10:15:00Z";
        push(
            &mut buffer,
            &n,
            1,
            &[("a1", hour), ("a2", hour), ("bad", hour)],
        );
        push(&mut buffer, &n, 2, &[("a3", hour), ("a4", hour)]);
        let (_dir, location) = lake_dir();
        let encoded = buffer.encode(&location, "b1").unwrap();
        assert_eq!(encoded.batch_id(), "b1");
        assert_eq!(encoded.keys().len(), 5);
        assert_eq!(encoded.files().len(), 2, "{:?}", encoded.files());
        // a2 and a3 (one from each page) and the failure were stored before.
        let keep = Keep::Only(["a1", "a4"].iter().map(|s| (*s).to_owned()).collect());
        let (files, rows, failures) = encoded.finish(&location, &keep).unwrap();
        assert_eq!((rows, failures), (2, 0));
        assert_eq!(files.len(), 1);
        let (path, bytes, n_rows) = &files[0];
        assert!(
            path.to_string().ends_with("day=02/hour=10/b1.parquet"),
            "{path}"
        );
        assert_eq!(*n_rows, 2);
        let batches = write::decode(bytes.clone()).unwrap();
        assert_eq!(batches[0].schema(), table_schema(&schema));
        assert_eq!(ids_in(&batches), ["a1", "a4"]);
    }

    #[test]
    fn held_hours_and_the_pages_after_them_share_one_schema_object() {
        let (_, n, mut buffer) = audit();
        let dense = "2025-06-02T10:15:00Z";
        push(
            &mut buffer,
            &n,
            1,
            &[
                ("a1", dense),
                ("a2", dense),
                ("late", "2025-06-01T03:00:00Z"),
            ],
        );
        let mut held = buffer
            .take_sparse_hours(1, 10)
            .unwrap()
            .expect("the late hour");
        // The held rows start the next batch, whose pages join them; so does a buffer made like
        // the first.
        push(&mut held, &n, 2, &[("a3", "2025-06-02T11:00:00Z")]);
        let mut next = buffer.empty_like();
        push(&mut next, &n, 3, &[("a4", dense)]);
        let schemas: Vec<SchemaRef> = [&buffer, &held, &next]
            .iter()
            .flat_map(|b| b.rows.values().flatten().map(|p| p.batch.schema()))
            .collect();
        assert_eq!(schemas.len(), 4);
        assert!(
            schemas.iter().all(|s| Arc::ptr_eq(s, &buffer.arrow)),
            "every record batch has the first buffer's schema object"
        );
    }

    /// Where the rows of each hour's parts are stored (the allocation of the first column's
    /// first buffer).
    fn held_storage(buffer: &BatchBuffer) -> BTreeMap<String, Vec<*const u8>> {
        buffer
            .rows
            .iter()
            .map(|(hour, parts)| {
                let at = parts
                    .iter()
                    .map(|p| {
                        p.batch.column(0).to_data().buffers()[0]
                            .data_ptr()
                            .as_ptr()
                            .cast_const()
                    })
                    .collect();
                (hour.clone(), at)
            })
            .collect()
    }

    /// The `id` of every row of `batches`, in order.
    fn ids_in(batches: &[RecordBatch]) -> Vec<String> {
        batches
            .iter()
            .flat_map(|b| {
                let col = b.column_by_name("id").unwrap();
                let col = col
                    .as_any()
                    .downcast_ref::<::arrow::array::StringArray>()
                    .unwrap();
                col.iter()
                    .map(|v| v.unwrap().to_owned())
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    /// The ids each file of the buffer holds, in order, once encoded.
    fn file_ids(buffer: BatchBuffer) -> Vec<Vec<String>> {
        let (_dir, location) = lake_dir();
        let encoded = buffer.encode(&location, "b1").unwrap();
        let (files, _, _) = encoded.finish(&location, &Keep::All).unwrap();
        files
            .into_iter()
            .map(|(_, bytes, _)| ids_in(&write::decode(bytes).unwrap()))
            .collect()
    }

    #[test]
    fn held_rows_are_copied_out_of_their_page_and_every_row_is_written_once() {
        let (_, n, mut buffer) = audit();
        let dense = "2025-06-02T10:15:00Z";
        let (a, b) = ("2025-06-01T03:00:00Z", "2025-06-01T04:00:00Z");
        push(
            &mut buffer,
            &n,
            1,
            &[("d1", dense), ("a1", a), ("d2", dense), ("d3", dense)],
        );
        let page = held_storage(&buffer)[&hour_of(dense)].clone();
        // One page's one late row: a copy, not a slice that would keep the whole page.
        let mut held = buffer.take_sparse_hours(2, 10).unwrap().expect("a");
        assert_ne!(held_storage(&held)[&hour_of(a)], page);
        assert_eq!(file_ids(buffer), [vec!["d1", "d2", "d3"]]);

        // Held again with the next page's late rows; the page's dense hour is written.
        push(
            &mut held,
            &n,
            2,
            &[
                ("b1", b),
                ("d4", dense),
                ("a2", a),
                ("d5", dense),
                ("b2", b),
                ("d6", dense),
            ],
        );
        let again = held.take_sparse_hours(2, 10).unwrap().expect("a and b");
        assert_eq!(file_ids(held), [vec!["d4", "d5", "d6"]]);
        assert_eq!(file_ids(again), [vec!["a1", "a2"], vec!["b1", "b2"]]);
    }

    fn hour_of(time: &str) -> String {
        hour_partition(time.parse().unwrap())
    }

    #[test]
    fn sparse_hours_move_to_a_new_buffer_with_their_keys() {
        let (_, n, mut buffer) = audit();
        let dense = "2025-06-02T10:15:00Z";
        push(
            &mut buffer,
            &n,
            1,
            &[
                ("a1", dense),
                ("late1", "2025-06-01T03:00:00Z"),
                ("a2", dense),
                ("a3", dense),
            ],
        );
        push(
            &mut buffer,
            &n,
            2,
            &[
                ("a4", dense),
                ("late2", "2025-05-30T22:59:59Z"),
                ("bad", dense),
            ],
        );
        assert_eq!(buffer.len(), 7);

        // Too many sparse rows for the limit: nothing moves.
        assert!(buffer.take_sparse_hours(1, 1).unwrap().is_none());
        assert_eq!(buffer.len(), 7);

        let before = buffer.memory_size();
        let held = buffer
            .take_sparse_hours(1, 10)
            .unwrap()
            .expect("two sparse hours");
        let ids = |b: &BatchBuffer| -> Vec<(String, u64)> {
            b.keys()
                .iter()
                .map(|k| (k.event_id.clone(), k.arrival))
                .collect()
        };
        assert_eq!(ids(&held), [("late1".into(), 1), ("late2".into(), 2)]);
        assert_eq!(
            ids(&buffer),
            [
                ("a1".into(), 1),
                ("a2".into(), 1),
                ("a3".into(), 1),
                ("a4".into(), 2),
                ("bad".into(), 2)
            ]
        );
        assert!(buffer.memory_size() < before && held.memory_size() > 0);
        let (_dir, location) = lake_dir();
        let names = |b: &BatchBuffer| -> Vec<String> { b.files(&location, "b1").unwrap() };
        let kept = names(&buffer);
        assert_eq!(kept.len(), 2, "the dense hour and the failures: {kept:?}");
        assert!(kept[0].contains("day=02") && kept[0].contains("atlassian_audit"));
        assert!(kept[1].contains("classification_failures"));
        let held_files = names(&held);
        assert_eq!(held_files.len(), 2, "{held_files:?}");
        assert!(held_files.iter().any(|f| f.contains("day=01")));
        assert!(held_files.iter().any(|f| f.contains("day=30")));

        // Each side encodes exactly its own rows, and only those the state store let it keep.
        let dense_rows = encoded_files(buffer, &["a1", "a2", "a3", "a4", "bad"]);
        assert_eq!(dense_rows.iter().map(|(_, n)| n).sum::<usize>(), 5);
        let late_rows = encoded_files(held, &["late2"]);
        assert_eq!(late_rows.len(), 1);
        assert_eq!(late_rows[0].1, 1);
        assert!(late_rows[0].0.contains("day=30/hour=22"), "{late_rows:?}");
    }
}
