//! Compaction: each closed hour's files become one, de-duplicated by `p_row_id`, sorted by time.
//!
//! Readers never see missing or doubled rows. The steps, each one atomic:
//! 1. write the manifest `compact-<id>.parquet.replaces` (the names of the input files);
//! 2. write `compact-<id>.parquet`: from now on listings through [`crate::store::LakeView`] hide the
//!    inputs the manifest names;
//! 3. delete the inputs; 4. delete the manifest.
//!
//! A crash between steps is finished (or redone, to the same names) by the next run.

use std::collections::{BTreeMap, HashSet};

use arrow::array::{Array, BooleanArray, RecordBatch, StringArray};
use arrow::compute::{concat_batches, filter_record_batch};
use arrow::datatypes::SchemaRef;
use bytes::Bytes;
use datafusion::prelude::{ParquetReadOptions, SessionContext, col};
use futures::TryStreamExt;
use jiff::{SignedDuration, Timestamp};
use object_store::path::Path;
use object_store::{ObjectMeta, ObjectStoreExt};
use sha2::{Digest, Sha256};

use crate::LakeError;
use crate::store::{LakeView, Location, MANIFEST_SUFFIX, parent, visible};
use crate::write::encode;

/// What a compaction run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CompactReport {
    pub hours_compacted: usize,
    pub files_in: usize,
    pub rows_in: usize,
    pub rows_out: usize,
    /// Interrupted compactions that this run finished.
    pub resumed: usize,
}

/// One table to compact: its name, Arrow schema and time column.
pub struct CompactTable {
    pub table: String,
    pub schema: SchemaRef,
    pub time_col: &'static str,
    pub log_type: String,
}

pub async fn compact(
    location: &Location,
    tables: &[CompactTable],
    older_than: SignedDuration,
) -> Result<CompactReport, LakeError> {
    let mut report = CompactReport::default();
    let cutoff = Timestamp::now() - older_than;
    for t in tables {
        let prefix = location.root.clone().join(t.table.as_str());
        let all: Vec<ObjectMeta> = location.store.list(Some(&prefix)).try_collect().await?;
        let mut by_dir: BTreeMap<Path, Vec<ObjectMeta>> = BTreeMap::new();
        for o in all {
            by_dir.entry(parent(&o.location)).or_default().push(o);
        }
        for (dir, objects) in by_dir {
            let Some(hour_end) = hour_end(&dir) else {
                continue;
            };
            if hour_end > cutoff {
                continue; // the hour is still open
            }
            let finished = finish_interrupted(location, &objects).await?;
            let objects = if finished > 0 {
                report.resumed += finished;
                location.store.list(Some(&dir)).try_collect().await?
            } else {
                objects
            };
            let shown = visible(location.store.as_ref(), objects).await?;
            let files: Vec<ObjectMeta> = shown
                .into_iter()
                .filter(|o| o.location.as_ref().ends_with(".parquet"))
                .collect();
            if files.len() < 2 {
                continue;
            }
            let (rows_in, rows_out) = compact_hour(location, t, &dir, &files).await?;
            report.hours_compacted += 1;
            report.files_in += files.len();
            report.rows_in += rows_in;
            report.rows_out += rows_out;
        }
    }
    Ok(report)
}

/// The end of the hour a `.../year=YYYY/month=MM/day=DD/hour=HH` directory holds.
fn hour_end(dir: &Path) -> Option<Timestamp> {
    let mut v = [0i32; 4];
    let parts: Vec<_> = dir.parts().collect();
    let tail = parts.get(parts.len().checked_sub(4)?..)?;
    for (slot, (part, key)) in v
        .iter_mut()
        .zip(tail.iter().zip(["year=", "month=", "day=", "hour="]))
    {
        *slot = part.as_ref().strip_prefix(key)?.parse().ok()?;
    }
    let dt = jiff::civil::DateTime::new(v[0] as i16, v[1] as i8, v[2] as i8, v[3] as i8, 0, 0, 0)
        .ok()?;
    jiff::tz::Offset::UTC
        .to_timestamp(dt)
        .ok()
        .map(|t| t + SignedDuration::from_hours(1))
}

/// Finishes compactions whose output exists: deletes the inputs still there, then the manifest.
async fn finish_interrupted(
    location: &Location,
    objects: &[ObjectMeta],
) -> Result<usize, LakeError> {
    let mut finished = 0;
    for m in objects
        .iter()
        .filter(|o| o.location.as_ref().ends_with(MANIFEST_SUFFIX))
    {
        let output = Path::from(m.location.as_ref().trim_end_matches(MANIFEST_SUFFIX));
        if !objects.iter().any(|o| o.location == output) {
            continue; // step 2 never happened: the next compaction redoes it under the same names
        }
        let names: Vec<String> =
            serde_json::from_slice(&location.store.get(&m.location).await?.bytes().await?)
                .map_err(|e| {
                    LakeError::Corrupt(format!("bad compaction manifest {}: {e}", m.location))
                })?;
        let dir = parent(&m.location);
        for n in names {
            let p = dir.clone().join(n.as_str());
            if objects.iter().any(|o| o.location == p) {
                location.store.delete(&p).await?;
            }
        }
        location.store.delete(&m.location).await?;
        finished += 1;
    }
    Ok(finished)
}

async fn compact_hour(
    location: &Location,
    t: &CompactTable,
    dir: &Path,
    files: &[ObjectMeta],
) -> Result<(usize, usize), LakeError> {
    let mut names: Vec<String> = files
        .iter()
        .filter_map(|f| f.location.filename().map(str::to_owned))
        .collect();
    names.sort();
    let id = {
        let digest = Sha256::digest(names.join("\n").as_bytes());
        digest
            .iter()
            .take(8)
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    };
    let output = dir.clone().join(format!("compact-{id}.parquet"));
    let manifest = dir
        .clone()
        .join(format!("compact-{id}.parquet{MANIFEST_SUFFIX}"));

    // Read every file with the table's current schema (older files get nulls for newer columns).
    let ctx = SessionContext::new();
    ctx.register_object_store(
        &location.store_url,
        std::sync::Arc::new(LakeView::new(location.store.clone())),
    );
    let urls: Vec<String> = files
        .iter()
        .map(|f| format!("{}{}", location.store_url, f.location))
        .collect();
    let df = ctx
        .read_parquet(urls, ParquetReadOptions::default().schema(&t.schema))
        .await
        .map_err(|e| LakeError::Query(e.to_string()))?
        .sort(vec![col(t.time_col).sort(true, false)])
        .map_err(|e| LakeError::Query(e.to_string()))?;
    let batches = df
        .collect()
        .await
        .map_err(|e| LakeError::Query(e.to_string()))?;
    let rows_in: usize = batches.iter().map(RecordBatch::num_rows).sum();
    let merged = dedupe(&t.schema, &batches)?;
    let rows_out = merged.num_rows();
    if rows_out == 0 && rows_in > 0 {
        return Err(LakeError::Corrupt(format!(
            "compacting {dir} would drop every row"
        )));
    }

    let manifest_body = serde_json::to_vec(&names).map_err(|e| LakeError::Io(e.to_string()))?;
    location.put(&manifest, Bytes::from(manifest_body)).await?;
    location.put(&output, encode(&merged, &t.log_type)?).await?;
    for f in files {
        location.store.delete(&f.location).await?;
    }
    location.store.delete(&manifest).await?;
    Ok((rows_in, rows_out))
}

/// Keeps the first row of each `p_row_id` (for failures, which have none, every row).
fn dedupe(schema: &SchemaRef, batches: &[RecordBatch]) -> Result<RecordBatch, LakeError> {
    let all = concat_batches(schema, batches)?;
    let Some(ids) = all.column_by_name("p_row_id") else {
        return Ok(all);
    };
    let ids = ids
        .as_any()
        .downcast_ref::<StringArray>()
        .ok_or_else(|| LakeError::Corrupt("p_row_id is not a string column".into()))?;
    let mut seen = HashSet::with_capacity(ids.len());
    let keep: BooleanArray = (0..ids.len())
        .map(|i| Some(seen.insert(ids.value(i))))
        .collect();
    Ok(filter_record_batch(&all, &keep)?)
}
