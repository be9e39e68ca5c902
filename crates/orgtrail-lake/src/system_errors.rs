//! The `system_errors` table: every alarm transition (Panther's "System Errors"), partitioned by
//! the hour of `p_event_time` (the time of the transition). Written by the collector's notifier,
//! one file per transition named after its sequence number, so writing it again after a crash
//! replaces the same file.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{ArrayRef, Int64Array, RecordBatch, StringArray, TimestampNanosecondArray};
use arrow::datatypes::{DataType, Field, Schema as ArrowSchema, SchemaRef, TimeUnit};
use jiff::Timestamp;

use crate::LakeError;
use crate::store::Location;
use crate::write::{Encoded, check_batch_id, encode, file_path, hour_partition};

/// The table holding alarm transitions.
pub const SYSTEM_ERRORS_TABLE: &str = "system_errors";

/// One alarm transition as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SystemErrorRecord {
    /// When the transition happened.
    pub at: Timestamp,
    pub source_id: Option<String>,
    pub source_label: Option<String>,
    /// `SOURCE_NO_DATA`, `SOURCE_PERMISSIONS_CHECKS`, ...
    pub alarm: String,
    /// `CRITICAL`, `WARNING` or `INFO`.
    pub severity: String,
    /// The new state (`OK`, `ALARM`, `INSUFFICIENT_DATA`).
    pub state: String,
    pub previous_state: String,
    pub stage: Option<String>,
    pub message: String,
    pub remedy: Option<String>,
    /// The transition's sequence number in the state database.
    pub sequence: i64,
}

/// The Arrow schema of `system_errors`.
pub fn system_errors_schema() -> SchemaRef {
    let s = |name: &str, nullable: bool| Field::new(name, DataType::Utf8, nullable);
    Arc::new(ArrowSchema::new(vec![
        Field::new(
            "p_event_time",
            DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into())),
            false,
        ),
        s("p_source_id", true),
        s("p_source_label", true),
        s("alarm", false),
        s("severity", false),
        s("state", false),
        s("previous_state", false),
        s("stage", true),
        s("message", false),
        s("remedy", true),
        Field::new("sequence", DataType::Int64, false),
    ]))
}

/// Encodes records, one file per hour of `p_event_time`.
pub fn encode_system_errors(
    location: &Location,
    batch_id: &str,
    records: &[SystemErrorRecord],
) -> Result<Encoded, LakeError> {
    check_batch_id(batch_id)?;
    let schema = system_errors_schema();
    let mut by_hour: BTreeMap<String, Vec<&SystemErrorRecord>> = BTreeMap::new();
    for r in records {
        by_hour.entry(hour_partition(r.at)).or_default().push(r);
    }
    by_hour
        .into_iter()
        .map(|(hour, recs)| {
            let strs = |f: &dyn Fn(&SystemErrorRecord) -> Option<&str>| -> ArrayRef {
                Arc::new(recs.iter().map(|r| f(r)).collect::<StringArray>())
            };
            let columns: Vec<ArrayRef> = vec![
                Arc::new(
                    TimestampNanosecondArray::from(
                        recs.iter()
                            .map(|r| i64::try_from(r.at.as_nanosecond()).unwrap_or(i64::MAX))
                            .collect::<Vec<_>>(),
                    )
                    .with_timezone("UTC"),
                ),
                strs(&|r| r.source_id.as_deref()),
                strs(&|r| r.source_label.as_deref()),
                strs(&|r| Some(&r.alarm)),
                strs(&|r| Some(&r.severity)),
                strs(&|r| Some(&r.state)),
                strs(&|r| Some(&r.previous_state)),
                strs(&|r| r.stage.as_deref()),
                strs(&|r| Some(&r.message)),
                strs(&|r| r.remedy.as_deref()),
                Arc::new(Int64Array::from_iter_values(
                    recs.iter().map(|r| r.sequence),
                )),
            ];
            let batch = RecordBatch::try_new(schema.clone(), columns)?;
            let bytes = encode(&batch, SYSTEM_ERRORS_TABLE)?;
            Ok((
                file_path(location, SYSTEM_ERRORS_TABLE, &hour, batch_id),
                bytes,
                recs.len(),
            ))
        })
        .collect()
}
