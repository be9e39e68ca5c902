//! Helpers shared by the engine's end-to-end tests.
#![allow(dead_code)] // each test file uses its own subset

use std::collections::BTreeMap;

use arrow::array::{Array, StringArray};
use orgtrail_engine::Engine;
use orgtrail_schema::Registry;

/// Every event id in the engine's lake (rows and classification failures), with how often it
/// appears.
pub async fn lake_ids(engine: &Engine, registry: &Registry) -> BTreeMap<String, usize> {
    let q = engine.lake().query_engine(registry).unwrap();
    let mut ids = BTreeMap::new();
    for sql in [
        "SELECT id FROM atlassian_audit",
        "SELECT json_id FROM (SELECT regexp_replace(payload, '^.*?\"id\":\"([^\"]+)\".*$', '\\1') AS json_id FROM classification_failures)",
    ] {
        let (_, batches) = q.sql(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
        for b in batches {
            let col = b.column(0).as_any().downcast_ref::<StringArray>().unwrap();
            for i in 0..col.len() {
                *ids.entry(col.value(i).to_owned()).or_default() += 1;
            }
        }
    }
    ids
}
