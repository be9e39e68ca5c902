//! orgtrail's data lake: normalized rows as Parquet, partitioned by event hour, on local disk or
//! S3-compatible object storage; classification failures in their own table; SQL with DataFusion;
//! compaction.
//!
//! Layout: `<lake>/<table>/year=YYYY/month=MM/day=DD/hour=HH/<batch id>.parquet`, with `<table>` the
//! log type lower-cased with `.` → `_` (`atlassian_audit`) and the hour that of `p_event_time` in UTC.

pub mod arrow;
mod batch;
mod columns;
mod compact;
mod ingest;
mod query;
mod store;
mod system_errors;
mod write;

use jiff::SignedDuration;
use orgtrail_schema::{Registry, Row, Schema, SchemaError};

pub use batch::{
    BatchBuffer, BufferedKey, EncodedBatch, FinishedPage, Keep, PENDING_SUFFIX, PendingWrite,
};
pub use columns::{HourRows, RowsBuilder, SizeHint, split_by_hour};
pub use compact::CompactReport;
pub use ingest::{BadLine, IngestOptions, IngestReport};
pub use query::{LimitedResult, PARTITION_COLUMNS, QueryEngine, expand_macros};
pub use store::Location;
pub use system_errors::{SYSTEM_ERRORS_TABLE, SystemErrorRecord, system_errors_schema};
pub use write::{
    FAILURES_TABLE, FailureRecord, WrittenFile, check_batch_id, hour_partition, new_batch_id,
};

/// Errors of the lake. Messages say what failed, with which input, and what to do.
#[derive(Debug, thiserror::Error)]
pub enum LakeError {
    #[error("{0}")]
    Config(String),
    #[error("{0}")]
    Io(String),
    #[error("query failed: {0}")]
    Query(String),
    #[error("the lake holds unexpected data: {0}")]
    Corrupt(String),
    #[error("object store: {0}")]
    Store(#[from] object_store::Error),
    #[error("arrow: {0}")]
    Arrow(#[from] ::arrow::error::ArrowError),
    #[error("parquet: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    #[error(transparent)]
    Schema(#[from] SchemaError),
}

/// A lake: where it is, plus the operations on it.
#[derive(Debug, Clone)]
pub struct Lake {
    location: Location,
}

impl Lake {
    /// Opens a local directory (created if missing) or `s3://bucket/prefix`.
    pub fn open(url: &str) -> Result<Self, LakeError> {
        Ok(Lake {
            location: Location::open(url)?,
        })
    }

    pub fn location(&self) -> &Location {
        &self.location
    }

    /// Writes rows of one log type as Parquet, one file per event hour, named after `batch_id`.
    /// Writing the same batch id again replaces the same files (no duplicates after a replay).
    pub async fn write_rows(
        &self,
        schema: &Schema,
        batch_id: &str,
        rows: &[Row<'_>],
    ) -> Result<Vec<WrittenFile>, LakeError> {
        let files = write::encode_rows(&self.location, schema, batch_id, rows)?;
        write::store(&self.location, files).await
    }

    /// Writes classification failures to the `classification_failures` table.
    pub async fn write_failures(
        &self,
        batch_id: &str,
        failures: &[FailureRecord],
    ) -> Result<Vec<WrittenFile>, LakeError> {
        let files = write::encode_failures(&self.location, batch_id, failures)?;
        write::store(&self.location, files).await
    }

    /// Writes alarm transitions to the `system_errors` table, one file per hour named after
    /// `batch_id` (writing the same batch again replaces the same files).
    pub async fn write_system_errors(
        &self,
        batch_id: &str,
        records: &[SystemErrorRecord],
    ) -> Result<Vec<WrittenFile>, LakeError> {
        let files = system_errors::encode_system_errors(&self.location, batch_id, records)?;
        write::store(&self.location, files).await
    }

    /// A SQL session over every log type of `registry`, `classification_failures` and
    /// `system_errors`.
    pub fn query_engine(&self, registry: &Registry) -> Result<QueryEngine, LakeError> {
        QueryEngine::new(&self.location, registry)
    }

    /// Merges each hour older than `older_than` into one file per table, de-duplicated by `p_row_id`.
    pub async fn compact(
        &self,
        registry: &Registry,
        older_than: SignedDuration,
    ) -> Result<CompactReport, LakeError> {
        let mut tables = Vec::new();
        for name in registry.names() {
            let schema = registry.get(&name)?;
            tables.push(compact::CompactTable {
                table: schema.table_name(),
                schema: arrow::table_schema(&schema),
                time_col: "p_event_time",
                log_type: schema.name.clone(),
            });
        }
        tables.push(compact::CompactTable {
            table: FAILURES_TABLE.to_owned(),
            schema: write::failures_schema(),
            time_col: "p_parse_time",
            log_type: FAILURES_TABLE.to_owned(),
        });
        tables.push(compact::CompactTable {
            table: SYSTEM_ERRORS_TABLE.to_owned(),
            schema: system_errors_schema(),
            time_col: "p_event_time",
            log_type: SYSTEM_ERRORS_TABLE.to_owned(),
        });
        compact::compact(&self.location, &tables, older_than).await
    }
}
