//! A collector's lake batch: rows buffered in Arrow (compact, grouped by event hour) while pages
//! arrive, then written as `<file>.parquet.pending` objects (invisible to readers), then published
//! by renaming them to their final names. The state store decides which buffered events a batch
//! may keep (their ids were not stored before) and records the batch's files, so a crash between
//! the steps is finished or undone by the next writer (see `orgtrail-state`).

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use ::arrow::array::BooleanArray;
use ::arrow::compute::filter_record_batch;
use ::arrow::datatypes::SchemaRef;
use ::arrow::record_batch::RecordBatch;
use jiff::Timestamp;
use object_store::path::Path;
use orgtrail_schema::Schema;

use crate::arrow::table_schema;
use crate::columns::{RowsBuilder, split_by_hour};
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

/// Rows of one hour (a slice of a built batch), with the key index of each row.
type Part = (RecordBatch, Vec<u32>);

/// The partition of an event hour (hours since the epoch, `write::hour_of`).
fn hour_name(h: i64) -> Result<String, LakeError> {
    let t = Timestamp::from_second(h.saturating_mul(3600))
        .map_err(|e| LakeError::Corrupt(format!("event hour {h}: {e}")))?;
    Ok(hour_partition(t))
}

/// Rows of one log type and classification failures, buffered for one lake batch.
pub struct BatchBuffer {
    schema: Arc<Schema>,
    arrow: SchemaRef,
    /// Event keys, in arrival order; rows and failures refer to them by index.
    keys: Vec<BufferedKey>,
    /// Rows being appended (one builder for every page of the batch), and each one's key index.
    rows: RowsBuilder,
    row_keys: Vec<u32>,
    /// Rows already built, per event hour: record batches (slices of one built batch sorted by hour)
    /// with the key index of each row.
    parts: BTreeMap<String, Vec<Part>>,
    failures: Vec<(u32, FailureRecord)>,
    /// Memory of the keys, failures and built rows (the builder's is added when asked).
    memory: usize,
}

impl std::fmt::Debug for BatchBuffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BatchBuffer")
            .field("log_type", &self.schema.name)
            .field("events", &self.keys.len())
            .field("hours", &self.parts.len())
            .field("failures", &self.failures.len())
            .finish_non_exhaustive()
    }
}

/// Memory of the rows of a record batch that may be a slice of a larger one (a built batch is
/// sliced per hour).
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

impl BatchBuffer {
    pub fn new(schema: Arc<Schema>) -> Result<Self, LakeError> {
        let arrow = table_schema(&schema);
        Ok(BatchBuffer {
            rows: RowsBuilder::new(&schema, &arrow)?,
            schema,
            arrow,
            keys: Vec::new(),
            row_keys: Vec::new(),
            parts: BTreeMap::new(),
            failures: Vec::new(),
            memory: 0,
        })
    }

    /// Where a page's rows go: append them (a [`orgtrail_schema::Sink`]), then hand their keys to
    /// [`BatchBuffer::push_page`].
    pub fn rows(&mut self) -> &mut RowsBuilder {
        &mut self.rows
    }

    /// Records the keys of the rows appended to [`BatchBuffer::rows`] since the last call
    /// (`keys[i]` is the key of the `i`-th of them), and the page's classification failures.
    pub fn push_page(
        &mut self,
        keys: Vec<BufferedKey>,
        failures: Vec<(BufferedKey, FailureRecord)>,
    ) -> Result<(), LakeError> {
        if self.rows.len() != self.row_keys.len() + keys.len() {
            return Err(LakeError::Io(format!(
                "internal error: {} new rows came with {} keys",
                self.rows.len() - self.row_keys.len(),
                keys.len()
            )));
        }
        self.index(self.keys.len() + keys.len())?;
        for key in keys {
            self.row_keys.push(self.keys.len() as u32);
            self.memory += key_memory(&key);
            self.keys.push(key);
        }
        for (key, failure) in failures {
            let idx = self.index(self.keys.len())?;
            self.memory += key_memory(&key) + failure_memory(&failure);
            self.keys.push(key);
            self.failures.push((idx, failure));
        }
        Ok(())
    }

    /// Builds the appended rows and files them by event hour (one sort of the whole batch, then
    /// one slice per hour).
    fn seal(&mut self) -> Result<(), LakeError> {
        if self.rows.is_empty() {
            return Ok(());
        }
        let rows = std::mem::replace(&mut self.rows, RowsBuilder::new(&self.schema, &self.arrow)?);
        let row_keys = std::mem::take(&mut self.row_keys);
        let (batch, hours) = rows.finish()?;
        let parts = split_by_hour(batch, &hours)?;
        // The slices share the batch's buffers.
        self.memory += parts
            .first()
            .map_or(0, |(_, b, _)| b.get_array_memory_size());
        for (h, slice, idx) in parts {
            let idx = idx.into_iter().map(|i| row_keys[i as usize]).collect();
            self.parts
                .entry(hour_name(h)?)
                .or_default()
                .push((slice, idx));
        }
        Ok(())
    }

    fn index(&self, i: usize) -> Result<u32, LakeError> {
        u32::try_from(i)
            .map_err(|_| LakeError::Io("a lake batch cannot hold more than 2^32 events".into()))
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
        self.memory + self.rows.memory_size() + self.row_keys.len() * 4
    }

    /// Moves the hours holding at most `max_rows_per_hour` rows (late events, scattered over many
    /// older hours) into `held` (an empty buffer, for a later batch), with their keys, so a caller
    /// can write the dense hours now and the sparse ones with a later batch, as fewer and larger
    /// files. Nothing moves (`false`) when there is no such hour or when they hold more than
    /// `max_rows` rows together. Classification failures always stay.
    pub fn take_sparse_hours(
        &mut self,
        held: &mut BatchBuffer,
        max_rows_per_hour: usize,
        max_rows: usize,
    ) -> Result<bool, LakeError> {
        if !held.is_empty() || !held.rows.is_empty() {
            return Err(LakeError::Io(
                "internal error: sparse hours can only move into an empty buffer".into(),
            ));
        }
        self.seal()?;
        let hour_rows = |parts: &[Part]| parts.iter().map(|(b, _)| b.num_rows()).sum::<usize>();
        let sparse: Vec<String> = self
            .parts
            .iter()
            .filter(|(_, parts)| hour_rows(parts) <= max_rows_per_hour)
            .map(|(hour, _)| hour.clone())
            .collect();
        let total: usize = sparse.iter().map(|h| hour_rows(&self.parts[h])).sum();
        if total == 0 || total > max_rows {
            return Ok(false);
        }
        let mut moved = Vec::with_capacity(sparse.len());
        for hour in sparse {
            let parts = self.parts.remove(&hour).unwrap_or_default();
            moved.push((hour, parts));
        }
        // Split the keys, in arrival order, and renumber what refers to them.
        let mut to_held = vec![false; self.keys.len()];
        for (_, parts) in &moved {
            for (_, idx) in parts {
                for &i in idx {
                    to_held[i as usize] = true;
                }
            }
        }
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
        for parts in self.parts.values_mut() {
            for (_, idx) in parts {
                idx.iter_mut().for_each(|i| *i = renumber[*i as usize]);
            }
        }
        for (i, _) in &mut self.failures {
            *i = renumber[*i as usize];
        }
        // One record batch per held hour, a copy of just its rows: a slice would keep the whole
        // built batch in memory.
        for (hour, parts) in moved {
            let batches: Vec<&RecordBatch> = parts.iter().map(|(b, _)| b).collect();
            let rows: Vec<(usize, usize)> = batches
                .iter()
                .enumerate()
                .flat_map(|(p, b)| (0..b.num_rows()).map(move |r| (p, r)))
                .collect();
            let batch = ::arrow::compute::interleave_record_batch(&batches, &rows)?;
            let idx = parts
                .iter()
                .flat_map(|(_, idx)| idx.iter().map(|i| renumber[*i as usize]))
                .collect();
            held.parts.insert(hour, vec![(batch, idx)]);
        }
        self.recount();
        held.recount();
        Ok(true)
    }

    /// Recomputes the memory estimate after keys and rows moved (what `push_page` and `seal` add
    /// up, counting each slice of a built batch by its own rows).
    fn recount(&mut self) {
        self.memory = self.keys.iter().map(key_memory).sum::<usize>()
            + self
                .parts
                .values()
                .flatten()
                .map(|(b, _)| slice_memory(b))
                .sum::<usize>()
            + self
                .failures
                .iter()
                .map(|(_, f)| failure_memory(f))
                .sum::<usize>();
    }

    /// The final paths of every file this batch may write (a superset: hours whose events all
    /// turn out to be duplicates write nothing). Builds the appended rows.
    pub fn files(&mut self, location: &Location, batch_id: &str) -> Result<Vec<String>, LakeError> {
        check_batch_id(batch_id)?;
        self.seal()?;
        let table = self.schema.table_name();
        let mut out: Vec<String> = self
            .parts
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

    /// Encodes the buffered events whose ids are in `keep`, one file per table and hour. CPU only.
    fn encode(
        mut self,
        location: &Location,
        batch_id: &str,
        keep: &HashSet<String>,
    ) -> Result<(Encoded, u64, u64), LakeError> {
        self.seal()?;
        let kept = |i: &u32| {
            self.keys
                .get(*i as usize)
                .is_some_and(|k| keep.contains(&k.event_id))
        };
        let table = self.schema.table_name();
        let groups: Vec<(&String, &Vec<Part>)> = self.parts.iter().collect();
        let encode_hour = |(hour, parts): &(&String, &Vec<Part>)| {
            let mut batches = Vec::with_capacity(parts.len());
            for (batch, idx) in parts.iter() {
                if idx.iter().all(kept) {
                    batches.push(batch.clone());
                } else {
                    let mask: BooleanArray = idx.iter().map(|i| Some(kept(i))).collect();
                    let filtered = filter_record_batch(batch, &mask)?;
                    if filtered.num_rows() > 0 {
                        batches.push(filtered);
                    }
                }
            }
            let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
            if rows == 0 {
                return Ok(None);
            }
            let bytes = encode_batches(&batches, &self.schema.name)?;
            Ok(Some((
                file_path(location, &table, hour, batch_id),
                bytes,
                rows,
            )))
        };
        let mut files: Encoded = parallel_map(&groups, encode_hour)?
            .into_iter()
            .flatten()
            .collect();
        let row_count = files.iter().map(|(_, _, n)| *n as u64).sum();
        let failures: Vec<FailureRecord> = self
            .failures
            .into_iter()
            .filter(|(i, _)| kept(i))
            .map(|(_, f)| f)
            .collect();
        let failure_count = failures.len() as u64;
        if !failures.is_empty() {
            files.extend(write::encode_failures(location, batch_id, &failures)?);
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
    /// Writes the buffered events whose ids are in `keep` as `<file>.parquet.pending` objects,
    /// named after `batch_id` (the paths [`BatchBuffer::files`] listed). Readers do not see them
    /// until [`Lake::publish`].
    pub async fn write_pending(
        &self,
        buffer: BatchBuffer,
        batch_id: &str,
        keep: HashSet<String>,
    ) -> Result<PendingWrite, LakeError> {
        let location = self.location.clone();
        let id = batch_id.to_owned();
        let (files, rows, failures) =
            tokio::task::spawn_blocking(move || buffer.encode(&location, &id, &keep))
                .await
                .map_err(|e| LakeError::Io(format!("encoding task failed: {e}")))??;
        let pending: Encoded = files
            .into_iter()
            .map(|(path, bytes, n)| (pending_path(&path), bytes, n))
            .collect();
        let mut written = write::store(&self.location, pending).await?;
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
        let mut keys = Vec::new();
        let mut failures = Vec::new();
        for (id, time) in events {
            let key = BufferedKey {
                event_id: (*id).to_owned(),
                processed_at_ms: None,
                arrival,
            };
            let line = event(id, time);
            match n.normalize_into(line.as_bytes(), jiff::Timestamp::now(), buffer.rows()) {
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
        buffer.push_page(keys, failures).unwrap();
    }

    fn encoded_files(buffer: BatchBuffer, keep: &[&str]) -> Vec<(String, usize)> {
        let dir = tempfile::tempdir().unwrap();
        let location = Location::open(dir.path().to_str().unwrap()).unwrap();
        let keep = keep.iter().map(|s| (*s).to_owned()).collect();
        let (files, _, _) = buffer.encode(&location, "b1", &keep).unwrap();
        files
            .into_iter()
            .map(|(path, _, rows)| (path.to_string(), rows))
            .collect()
    }

    #[test]
    fn sparse_hours_move_to_a_new_buffer_with_their_keys() {
        let reg = Registry::with_builtins().unwrap();
        let schema = reg.get("Atlassian.Audit").unwrap();
        let n = Normalizer::new(schema.clone());
        let mut buffer = BatchBuffer::new(schema.clone()).unwrap();
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
        let mut held = BatchBuffer::new(schema.clone()).unwrap();
        assert!(!buffer.take_sparse_hours(&mut held, 1, 1).unwrap());
        assert_eq!(buffer.len(), 7);
        assert!(held.is_empty());

        let before = buffer.memory_size();
        assert!(
            buffer.take_sparse_hours(&mut held, 1, 10).unwrap(),
            "two sparse hours"
        );
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
        let dir = tempfile::tempdir().unwrap();
        let location = Location::open(dir.path().to_str().unwrap()).unwrap();
        let names = |b: &mut BatchBuffer| -> Vec<String> { b.files(&location, "b1").unwrap() };
        let kept = names(&mut buffer);
        assert_eq!(kept.len(), 2, "the dense hour and the failures: {kept:?}");
        assert!(kept[0].contains("day=02") && kept[0].contains("atlassian_audit"));
        assert!(kept[1].contains("classification_failures"));
        let held_files = names(&mut held);
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
