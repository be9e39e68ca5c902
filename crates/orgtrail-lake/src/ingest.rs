//! Streaming ingest of normalized rows (the output of `orgtrail parse`) into the lake.
//!
//! A pipeline over all cores, with bounded queues between the stages:
//!
//! 1. a reader thread cuts the input into chunks of whole lines (a few MB each);
//! 2. parser threads turn each chunk into rows that borrow from the chunk (no per-row copies),
//!    sort them by event hour and build one Arrow record batch per chunk, sliced per hour;
//! 3. the calling thread collects the slices in input order and, once a batch is full (rows or
//!    Arrow bytes), encodes one Parquet file per hour on all cores and stores the files.
//!
//! The rows of a chunk are dropped as soon as its Arrow batch exists, so memory is the Arrow data of
//! the pending batch plus a few chunks in flight.

use std::collections::BTreeMap;
use std::io::Read;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use bytes::Bytes;
use jiff::Timestamp;
use object_store::path::Path;
use orgtrail_schema::{Failure, RowReader, Schema, Verdict};

use crate::arrow::table_schema;
use crate::columns::{RowsBuilder, SizeHint, split_by_hour};
use crate::write::{self, WrittenFile, check_batch_id, hour_partition};
use crate::{Lake, LakeError};

/// Limits of one ingest run.
#[derive(Debug, Clone)]
pub struct IngestOptions {
    /// At most this many rows per batch (one file per event hour per batch).
    pub batch_rows: usize,
    /// At most about this many bytes of Arrow data per batch (bounds memory).
    pub batch_bytes: usize,
    /// Input bytes per parse chunk.
    pub chunk_bytes: usize,
}

impl Default for IngestOptions {
    fn default() -> Self {
        IngestOptions {
            batch_rows: 1_000_000,
            batch_bytes: 2 << 30,
            chunk_bytes: 8 << 20,
        }
    }
}

/// A line that is not a row of the log type.
#[derive(Debug)]
pub struct BadLine {
    /// Index of the input (in the order given).
    pub input: usize,
    /// 1-based line number in that input.
    pub line: usize,
    /// The line mentions `p_row_id` (otherwise it is probably a raw, not normalized, event).
    pub looks_like_row: bool,
    pub failure: Failure,
}

/// What an ingest run did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct IngestReport {
    pub rows: usize,
    pub bad_lines: usize,
    pub files: Vec<WrittenFile>,
}

/// A chunk of whole lines of one input.
struct Chunk {
    seq: usize,
    input: usize,
    bytes: Vec<u8>,
}

/// A parsed chunk: its rows as one batch, sorted by hour, with the slice of each hour.
struct Parsed {
    seq: usize,
    input: usize,
    /// Lines in the chunk (bad lines are numbered within it until the collector sees it).
    lines: usize,
    rows: usize,
    arrow_bytes: usize,
    hours: Vec<(i64, RecordBatch)>,
    bad: Vec<BadLine>,
}

type Work = Result<Parsed, LakeError>;

/// Reads every input, cutting it into chunks of whole lines.
fn read_chunks(
    inputs: Vec<Box<dyn Read + Send + '_>>,
    chunk_bytes: usize,
    tx: &SyncSender<Result<Chunk, LakeError>>,
    names: &[String],
    spare: &Receiver<Vec<u8>>,
) {
    let mut seq = 0;
    for (input, mut r) in inputs.into_iter().enumerate() {
        let mut carry: Vec<u8> = Vec::new();
        let mut eof = false;
        while !eof {
            // Reuse a parsed chunk's buffer: no fresh pages (and page faults) per chunk.
            let mut buf = spare.try_recv().unwrap_or_default();
            buf.clear();
            buf.append(&mut carry);
            // A line longer than a chunk makes the chunk grow until it holds the whole line.
            let mut want = chunk_bytes.max(buf.len() + chunk_bytes / 2);
            loop {
                buf.reserve(want.saturating_sub(buf.len()));
                if buf.len() < want {
                    // read_to_end fills the spare capacity without zeroing it first.
                    let limit = (want - buf.len()) as u64;
                    match (&mut r).take(limit).read_to_end(&mut buf) {
                        Ok(n) => eof = (n as u64) < limit,
                        Err(e) => {
                            let _ = tx.send(Err(LakeError::Io(format!(
                                "cannot read {}: {e}",
                                names[input]
                            ))));
                            return;
                        }
                    }
                }
                if eof {
                    break;
                }
                // Keep the partial last line for the next chunk.
                if let Some(nl) = buf.iter().rposition(|&b| b == b'\n') {
                    carry = buf.split_off(nl + 1);
                    break;
                }
                want = buf.len() * 2;
            }
            if buf.is_empty() {
                continue;
            }
            let chunk = Chunk {
                seq,
                input,
                bytes: buf,
            };
            seq += 1;
            if tx.send(Ok(chunk)).is_err() {
                return;
            }
        }
    }
}

struct Parser<'s> {
    schema: &'s Schema,
    arrow: SchemaRef,
    reader: RowReader,
}

impl Parser<'_> {
    /// Parses a chunk (with columns sized like the last chunk's); its buffer is handed back for
    /// reuse.
    fn parse(&self, chunk: Chunk, size: &mut SizeHint) -> (Work, Vec<u8>) {
        let work = self.parse_lines(&chunk, size);
        (work, chunk.bytes)
    }

    fn parse_lines(&self, chunk: &Chunk, size: &mut SizeHint) -> Work {
        let text = &chunk.bytes[..];
        let body = text.strip_suffix(b"\n").unwrap_or(text);
        let mut rows = RowsBuilder::new(self.schema, &self.arrow)?.with_size_hint(size);
        let mut bad = Vec::new();
        let mut lines = 0;
        for (i, line) in body.split(|&b| b == b'\n').enumerate() {
            lines = i + 1;
            if let Verdict::Failure(failure) = self.reader.read_into(line, &mut rows) {
                bad.push(BadLine {
                    input: chunk.input,
                    line: i + 1,
                    looks_like_row: line.windows(10).any(|w| w == b"p_row_id\":"),
                    failure,
                });
            }
        }
        let n = rows.len();
        *size = rows.size_hint();
        let (batch, hours) = rows.finish()?;
        Ok(Parsed {
            seq: chunk.seq,
            input: chunk.input,
            lines,
            rows: n,
            arrow_bytes: batch.get_array_memory_size(),
            hours: split_by_hour(batch, &hours)?
                .into_iter()
                .map(|(h, slice, _)| (h, slice))
                .collect(),
            bad,
        })
    }
}

/// Rows waiting to be written: per hour, slices of parsed chunks in input order.
#[derive(Default)]
struct Pending {
    hours: BTreeMap<i64, Vec<RecordBatch>>,
    rows: usize,
    arrow_bytes: usize,
}

impl Lake {
    /// Reads normalized rows of `schema` (JSON lines) from `inputs` and stores them, one file per
    /// event hour per batch of at most `options.batch_rows` rows. Batch ids come from `batch_id`
    /// (called once per batch). Lines that are not rows are passed to `on_bad` and skipped.
    pub fn ingest(
        &self,
        rt: &tokio::runtime::Handle,
        schema: &Schema,
        inputs: Vec<(String, Box<dyn Read + Send + '_>)>,
        options: &IngestOptions,
        mut batch_id: impl FnMut() -> String,
        mut on_bad: impl FnMut(&str, BadLine),
    ) -> Result<IngestReport, LakeError> {
        let parser = Parser {
            schema,
            arrow: table_schema(schema),
            reader: RowReader::new(schema),
        };
        let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
        let (names, readers): (Vec<String>, Vec<_>) = inputs.into_iter().unzip();
        std::thread::scope(|scope| {
            let (chunk_tx, chunk_rx) = sync_channel::<Result<Chunk, LakeError>>(workers);
            let (out_tx, out_rx) = sync_channel::<Work>(workers * 2);
            let names = &names;
            let chunk_bytes = options.chunk_bytes.max(1 << 10);
            let (spare_tx, spare_rx) = sync_channel::<Vec<u8>>(workers + 1);
            scope.spawn(move || read_chunks(readers, chunk_bytes, &chunk_tx, names, &spare_rx));
            let chunk_rx = Arc::new(Mutex::new(chunk_rx));
            for _ in 0..workers {
                let (rx, tx, spare, parser) =
                    (chunk_rx.clone(), out_tx.clone(), spare_tx.clone(), &parser);
                scope.spawn(move || parse_worker(parser, &rx, &tx, &spare));
            }
            drop(spare_tx);
            drop(out_tx);
            let result = self.collect(rt, schema, &out_rx, options, &mut batch_id, &mut |b| {
                on_bad(&names[b.input], b)
            });
            // On an error, this stops the other threads (their sends fail).
            drop(out_rx);
            result
        })
    }

    fn collect(
        &self,
        rt: &tokio::runtime::Handle,
        schema: &Schema,
        out_rx: &Receiver<Work>,
        options: &IngestOptions,
        batch_id: &mut dyn FnMut() -> String,
        on_bad: &mut dyn FnMut(BadLine),
    ) -> Result<IngestReport, LakeError> {
        let mut report = IngestReport::default();
        let mut pending = Pending::default();
        // Parsed chunks arrive in any order: keep input order for rows and messages.
        let mut early: BTreeMap<usize, Parsed> = BTreeMap::new();
        let mut next = 0usize;
        // Lines before the current chunk in its input.
        let (mut input, mut lines_before) = (0usize, 0usize);
        for work in out_rx {
            let parsed = work?;
            early.insert(parsed.seq, parsed);
            while let Some(p) = early.remove(&next) {
                next += 1;
                if p.input != input {
                    (input, lines_before) = (p.input, 0);
                }
                report.bad_lines += p.bad.len();
                for mut b in p.bad {
                    b.line += lines_before;
                    on_bad(b);
                }
                lines_before += p.lines;
                pending.rows += p.rows;
                pending.arrow_bytes += p.arrow_bytes;
                for (h, slice) in p.hours {
                    pending.hours.entry(h).or_default().push(slice);
                }
                if pending.rows >= options.batch_rows.max(1)
                    || pending.arrow_bytes >= options.batch_bytes
                {
                    self.flush(rt, schema, &mut pending, batch_id, &mut report)?;
                }
            }
        }
        self.flush(rt, schema, &mut pending, batch_id, &mut report)?;
        Ok(report)
    }

    fn flush(
        &self,
        rt: &tokio::runtime::Handle,
        schema: &Schema,
        pending: &mut Pending,
        batch_id: &mut dyn FnMut() -> String,
        report: &mut IngestReport,
    ) -> Result<(), LakeError> {
        let p = std::mem::take(pending);
        if p.rows == 0 {
            return Ok(());
        }
        let id = batch_id();
        check_batch_id(&id)?;
        let table = schema.table_name();
        let groups: Vec<(i64, Vec<RecordBatch>)> = p.hours.into_iter().collect();
        let encoded = write::parallel_map(
            &groups,
            |(h, slices)| -> Result<(Path, Bytes, usize), LakeError> {
                let hour = hour_partition(
                    Timestamp::from_second(h * 3600)
                        .map_err(|e| LakeError::Corrupt(format!("event hour {h}: {e}")))?,
                );
                let rows = slices.iter().map(RecordBatch::num_rows).sum();
                let bytes = write::encode_batches(slices, &schema.name)?;
                Ok((
                    write::file_path(self.location(), &table, &hour, &id),
                    bytes,
                    rows,
                ))
            },
        )?;
        let written = rt.block_on(write::store(self.location(), encoded))?;
        report.rows += p.rows;
        report.files.extend(written);
        Ok(())
    }
}

fn parse_worker(
    parser: &Parser<'_>,
    rx: &Mutex<Receiver<Result<Chunk, LakeError>>>,
    tx: &SyncSender<Work>,
    spare: &SyncSender<Vec<u8>>,
) {
    let mut size = SizeHint::default();
    loop {
        let chunk = match rx.lock() {
            Ok(rx) => rx.recv(),
            Err(_) => return,
        };
        let work = match chunk {
            Ok(Ok(chunk)) => {
                let (work, buf) = parser.parse(chunk, &mut size);
                let _ = spare.try_send(buf);
                work
            }
            Ok(Err(e)) => Err(e),
            Err(_) => return, // input finished
        };
        if tx.send(work).is_err() {
            return;
        }
    }
}
