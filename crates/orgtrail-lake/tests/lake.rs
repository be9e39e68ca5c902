//! The lake suite. Every test runs against a local directory and, when `ORGTRAIL_TEST_S3` names an
//! S3-compatible bucket URL (`s3://bucket`, set up by `scripts/test` with a local server), against
//! that bucket too: the same code path, the same assertions.

use arrow::array::{Array, Int64Array, RecordBatch, StringArray};
use jiff::{SignedDuration, Timestamp};
use orgtrail_lake::arrow::batch_to_rows;
use orgtrail_lake::{FailureRecord, Lake, expand_macros};
use orgtrail_schema::{Failure, FieldError, Normalizer, Outcome, Registry, Row};

/// The lakes to test: a fresh local directory, plus a fresh prefix in the S3 test bucket.
fn lakes() -> Vec<(String, Lake, Option<tempfile::TempDir>)> {
    let dir = tempfile::tempdir().unwrap();
    let mut out = vec![(
        "local".to_owned(),
        Lake::open(dir.path().to_str().unwrap()).unwrap(),
        Some(dir),
    )];
    match std::env::var("ORGTRAIL_TEST_S3") {
        Ok(bucket) => {
            let url = format!(
                "{}/test-{}",
                bucket.trim_end_matches('/'),
                uuid::Uuid::new_v4().simple()
            );
            out.push(("s3".to_owned(), Lake::open(&url).unwrap(), None));
        }
        Err(_) if std::env::var_os("CI").is_some() => {
            panic!("CI must run the S3 suite: scripts/test sets ORGTRAIL_TEST_S3")
        }
        Err(_) => eprintln!(
            "ORGTRAIL_TEST_S3 is not set: testing the local lake only (scripts/test sets it)"
        ),
    }
    out
}

fn registry() -> Registry {
    let mut reg = Registry::with_builtins().unwrap();
    reg.load(ALL_TYPES, "all-types.yml").unwrap();
    reg
}

const ALL_TYPES: &str = r#"
schema: Custom.AllTypes
fields:
  - name: id
    required: true
    type: string
    isEventId: true
  - name: t
    type: timestamp
    timeFormat: unix_ns
    isEventTime: true
  - name: s
    type: string
    indicators: [ip]
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
  - name: "weird@name"
    type: string
  - name: o
    type: object
    fields:
      - name: inner
        type: string
      - name: list
        type: array
        element:
          type: object
          fields:
            - name: k
              type: bigint
  - name: tags
    type: array
    element:
      type: string
"#;

fn normalize(reg: &Registry, log_type: &str, lines: &[String]) -> Vec<Row<'static>> {
    let n = Normalizer::new(reg.get(log_type).unwrap())
        .with_source(Some("src-1".into()), Some("Test source".into()));
    lines
        .iter()
        .map(|l| match n.normalize(l.as_bytes()) {
            Outcome::Row(r) => r.into_owned(),
            other => panic!("{l}: {other:?}"),
        })
        .collect()
}

fn atlassian_rows(reg: &Registry) -> Vec<Row<'static>> {
    let lines: Vec<String> = include_str!("../../../examples/atlassian-audit.jsonl")
        .lines()
        .map(str::to_owned)
        .collect();
    normalize(reg, "Atlassian.Audit", &lines)
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

async fn query(lake: &Lake, reg: &Registry, sql: &str) -> Vec<RecordBatch> {
    lake.query_engine(reg)
        .unwrap()
        .sql(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .1
}

async fn count(lake: &Lake, reg: &Registry, sql: &str) -> i64 {
    let batches = query(lake, reg, sql).await;
    batches[0]
        .column(0)
        .as_any()
        .downcast_ref::<Int64Array>()
        .unwrap()
        .value(0)
}

fn by_id(mut rows: Vec<Row<'static>>) -> Vec<Row<'static>> {
    for r in &mut rows {
        r.event_time_unparsed = false;
    }
    rows.sort_by(|a, b| a.row_id.cmp(&b.row_id));
    rows
}

#[test]
fn rows_round_trip_through_parquet_and_datafusion() {
    let reg = registry();
    block_on(async {
        for (name, lake, _dir) in lakes() {
            let rows = atlassian_rows(&reg);
            let schema = reg.get("Atlassian.Audit").unwrap();
            let written = lake.write_rows(&schema, "batch-1", &rows).await.unwrap();
            assert!(
                written.iter().all(|f| f
                    .path
                    .contains("atlassian_audit/year=2025/month=06/day=02/hour=")),
                "{name}: {written:?}"
            );
            let batches = query(&lake, &reg, "SELECT * FROM atlassian_audit").await;
            let back: Vec<Row<'static>> = batches
                .iter()
                .flat_map(|b| batch_to_rows(&schema, b).unwrap())
                .collect();
            assert_eq!(by_id(back), by_id(rows), "{name}");

            // Every type, nulls, nested structs and lists, json, nanosecond timestamps.
            let lines: Vec<String> = vec![
                r#"{"id":"a","t":"1748853727123456789","s":"10.0.0.1","i":-5,"small":7,"big":9007199254740993,"f":1.25,"b":true,"j":{"z":[1,{"y":null}]},"weird@name":"w","o":{"inner":"x","list":[{"k":1},{},{"k":3}]},"tags":["a",null,"b"]}"#.into(),
                r#"{"id":"b","t":1748853727000000001}"#.into(),
                r#"{"id":"c","o":{},"tags":["only"],"j":"text","f":"1e-3","b":"F"}"#.into(),
            ];
            let typed = reg.get("Custom.AllTypes").unwrap();
            let rows = normalize(&reg, "Custom.AllTypes", &lines);
            lake.write_rows(&typed, "typed-1", &rows).await.unwrap();
            let batches = query(&lake, &reg, "SELECT * FROM custom_alltypes").await;
            assert!(
                batches[0]
                    .schema()
                    .field_with_name("weirdat_signname")
                    .is_ok(),
                "{name}: Panther column names"
            );
            let back: Vec<Row<'static>> = batches
                .iter()
                .flat_map(|b| batch_to_rows(&typed, b).unwrap())
                .collect();
            assert_eq!(by_id(back), by_id(rows), "{name}");
        }
    });
}

#[test]
fn sql_over_nested_columns_indicators_and_macros() {
    let reg = registry();
    block_on(async {
        for (name, lake, _dir) in lakes() {
            let rows = atlassian_rows(&reg);
            lake.write_rows(&reg.get("Atlassian.Audit").unwrap(), "b1", &rows)
                .await
                .unwrap();
            let batches = query(
                &lake,
                &reg,
                "SELECT attributes.action, count(*) AS n FROM atlassian_audit GROUP BY 1 ORDER BY 2 DESC, 1",
            )
            .await;
            let actions = batches[0]
                .column(0)
                .as_any()
                .downcast_ref::<StringArray>()
                .unwrap();
            assert_eq!(actions.len(), rows.len(), "{name}");
            assert_eq!(
                count(&lake, &reg, "SELECT count(*) FROM atlassian_audit WHERE array_has(p_any_emails, 'riley.admin@example.com')").await,
                4,
                "{name}"
            );
            assert_eq!(
                count(&lake, &reg, "SELECT count(*) FROM atlassian_audit WHERE p_occurs_between('2025-06-02T08:00:00', '2025-06-02T09:00:00')").await,
                3,
                "{name}"
            );
            assert_eq!(
                count(
                    &lake,
                    &reg,
                    "SELECT count(*) FROM atlassian_audit WHERE p_occurs_since('1 day')"
                )
                .await,
                0,
                "{name}"
            );
            // Bad SQL: the error names the position.
            let err = lake
                .query_engine(&reg)
                .unwrap()
                .sql("SELECT count(* FROM atlassian_audit")
                .await
                .unwrap_err();
            assert!(err.to_string().contains("Line: 1, Column"), "{name}: {err}");
            let err = lake
                .query_engine(&reg)
                .unwrap()
                .sql("SELECT nope FROM atlassian_audit")
                .await
                .unwrap_err();
            assert!(err.to_string().contains("nope"), "{name}: {err}");
        }
    });
}

#[test]
fn time_predicates_prune_hour_partitions() {
    let reg = registry();
    let schema = reg.get("Custom.AllTypes").unwrap();
    block_on(async {
        for (name, lake, _dir) in lakes() {
            // Three rows in three different hours, one batch each.
            for (i, t) in [
                "2025-06-02T08:10:00Z",
                "2025-06-02T09:10:00Z",
                "2025-06-03T10:10:00Z",
            ]
            .iter()
            .enumerate()
            {
                let ns = t.parse::<Timestamp>().unwrap().as_nanosecond();
                let rows = normalize(
                    &reg,
                    "Custom.AllTypes",
                    &[format!(r#"{{"id":"{i}","t":{ns}}}"#)],
                );
                lake.write_rows(&schema, &format!("hour-{i}"), &rows)
                    .await
                    .unwrap();
            }
            let engine = lake.query_engine(&reg).unwrap();
            let sql = "SELECT count(*) FROM custom_alltypes WHERE p_event_time >= TIMESTAMP '2025-06-02T09:00:00Z' AND p_event_time < TIMESTAMP '2025-06-02T10:00:00Z'";
            let plan = engine.explain(sql).await.unwrap();
            assert!(plan.contains("hour-1.parquet"), "{name}: {plan}");
            assert!(
                !plan.contains("hour-0.parquet") && !plan.contains("hour-2.parquet"),
                "{name}: only hour 09 is read:\n{plan}"
            );
            assert_eq!(count(&lake, &reg, sql).await, 1, "{name}");
            // Without a time predicate every hour is read.
            let plan = engine
                .explain("SELECT count(*) FROM custom_alltypes WHERE i IS NULL")
                .await
                .unwrap();
            assert!(
                plan.contains("hour-0.parquet") && plan.contains("hour-2.parquet"),
                "{name}: {plan}"
            );
            // p_occurs_between prunes the same way.
            let plan = engine
                .explain(&expand_macros("SELECT * FROM custom_alltypes WHERE p_occurs_between('2025-06-03T00:00:00Z', '2025-06-04T00:00:00Z')").unwrap())
                .await
                .unwrap();
            assert!(
                plan.contains("hour-2.parquet") && !plan.contains("hour-0.parquet"),
                "{name}: {plan}"
            );
        }
    });
}

#[test]
fn rewriting_a_batch_is_idempotent_and_schema_growth_keeps_old_files_readable() {
    let mut reg = registry();
    block_on(async {
        for (name, lake, _dir) in lakes() {
            let schema = reg.get("Atlassian.Audit").unwrap();
            let rows = atlassian_rows(&reg);
            for _ in 0..3 {
                lake.write_rows(&schema, "replayed-batch", &rows)
                    .await
                    .unwrap();
            }
            assert_eq!(
                count(&lake, &reg, "SELECT count(*) FROM atlassian_audit").await,
                rows.len() as i64,
                "{name}"
            );

            // v1 of a custom type, then v2 adds optional fields at the top and inside an object.
            reg.load("schema: Custom.Grow\nfields:\n  - name: id\n    type: string\n  - name: o\n    type: object\n    fields:\n      - name: a\n        type: string\n", "v1").unwrap();
            let v1 = normalize(
                &reg,
                "Custom.Grow",
                &[r#"{"id":"old","o":{"a":"x"}}"#.to_owned()],
            );
            lake.write_rows(&reg.get("Custom.Grow").unwrap(), "v1", &v1)
                .await
                .unwrap();
            reg.load("schema: Custom.Grow\nfields:\n  - name: id\n    type: string\n  - name: o\n    type: object\n    fields:\n      - name: a\n        type: string\n      - name: b\n        type: int\n  - name: added\n    type: string\n", "v2").unwrap();
            let v2 = normalize(
                &reg,
                "Custom.Grow",
                &[r#"{"id":"new","o":{"a":"y","b":2},"added":"z"}"#.to_owned()],
            );
            lake.write_rows(&reg.get("Custom.Grow").unwrap(), "v2", &v2)
                .await
                .unwrap();
            let batches = query(
                &lake,
                &reg,
                "SELECT id, o.a, o.b, added FROM custom_grow ORDER BY id",
            )
            .await;
            let text = arrow::util::pretty::pretty_format_batches(&batches)
                .unwrap()
                .to_string();
            assert!(
                text.contains("| new | y ") && text.contains("| 2 ") && text.contains("| z "),
                "{name}:\n{text}"
            );
            assert!(text.contains("| old | x "), "{name}:\n{text}");
        }
    });
}

#[test]
fn classification_failures_are_a_table() {
    let reg = registry();
    block_on(async {
        for (name, lake, _dir) in lakes() {
            let failure = Failure {
                errors: vec![
                    FieldError {
                        path: "$.type".into(),
                        message: "required field is missing or null".into(),
                    },
                    FieldError {
                        path: "$.links".into(),
                        message: "required field is missing or null".into(),
                    },
                ],
                payload: r#"{"id":"x"}"#.into(),
                payload_base64: None,
            };
            let rec = FailureRecord {
                parse_time: Timestamp::now(),
                source_id: Some("src-1".into()),
                source_label: Some("Test".into()),
                log_type: "Atlassian.Audit".into(),
                failure,
            };
            lake.write_failures("f1", &[rec.clone(), rec])
                .await
                .unwrap();
            let batches = query(
                &lake,
                &reg,
                "SELECT payload, errors[1]['path'] AS first_path, p_log_type FROM classification_failures WHERE p_parse_time > now() - interval '1 day'",
            )
            .await;
            let text = arrow::util::pretty::pretty_format_batches(&batches)
                .unwrap()
                .to_string();
            assert_eq!(
                batches.iter().map(RecordBatch::num_rows).sum::<usize>(),
                2,
                "{name}"
            );
            assert!(
                text.contains(r#"{"id":"x"}"#)
                    && text.contains("$.type")
                    && text.contains("Atlassian.Audit"),
                "{name}:\n{text}"
            );
        }
    });
}

#[test]
fn compaction_merges_hours_dedupes_and_survives_interruption() {
    let reg = registry();
    let schema = reg.get("Atlassian.Audit").unwrap();
    block_on(async {
        for (name, lake, _dir) in lakes() {
            let rows = atlassian_rows(&reg);
            // Three batches over the same hours; the third repeats the first two rows.
            lake.write_rows(&schema, "a", &rows[..2]).await.unwrap();
            lake.write_rows(&schema, "b", &rows[2..]).await.unwrap();
            lake.write_rows(&schema, "c", &rows[..2]).await.unwrap();
            let total = count(&lake, &reg, "SELECT count(*) FROM atlassian_audit").await;
            assert_eq!(total, rows.len() as i64 + 2, "{name}");
            let report = lake
                .compact(&reg, SignedDuration::from_hours(2))
                .await
                .unwrap();
            assert!(report.hours_compacted >= 1, "{name}: {report:?}");
            assert_eq!(report.rows_in - report.rows_out, 2, "{name}: {report:?}");
            assert_eq!(
                count(&lake, &reg, "SELECT count(*) FROM atlassian_audit").await,
                rows.len() as i64,
                "{name}"
            );
            assert_eq!(
                count(
                    &lake,
                    &reg,
                    "SELECT count(DISTINCT p_row_id) FROM atlassian_audit"
                )
                .await,
                rows.len() as i64,
                "{name}"
            );
            // Nothing left to do: a second run changes nothing.
            let again = lake
                .compact(&reg, SignedDuration::from_hours(2))
                .await
                .unwrap();
            assert_eq!(again.hours_compacted, 0, "{name}: {again:?}");
            // Open hours are left alone.
            let now_rows = normalize(
                &reg,
                "Custom.AllTypes",
                &[format!(
                    r#"{{"id":"n","t":{}}}"#,
                    Timestamp::now().as_nanosecond()
                )],
            );
            let typed = reg.get("Custom.AllTypes").unwrap();
            lake.write_rows(&typed, "n1", &now_rows).await.unwrap();
            lake.write_rows(&typed, "n2", &now_rows).await.unwrap();
            let r = lake
                .compact(&reg, SignedDuration::from_hours(2))
                .await
                .unwrap();
            assert_eq!(r.hours_compacted, 0, "{name}");
        }
    });
}

#[test]
fn an_interrupted_compaction_never_shows_doubled_rows() {
    use object_store::ObjectStoreExt;
    let reg = registry();
    let schema = reg.get("Atlassian.Audit").unwrap();
    block_on(async {
        for (name, lake, _dir) in lakes() {
            let rows = atlassian_rows(&reg);
            let one_hour: Vec<Row<'static>> = rows
                .iter()
                .filter(|r| r.event_time.to_string().starts_with("2025-06-02T08"))
                .cloned()
                .collect();
            let written_a = lake.write_rows(&schema, "a", &one_hour[..1]).await.unwrap();
            let written_b = lake.write_rows(&schema, "b", &one_hour[1..]).await.unwrap();
            // Simulate a crash after step 2: the output and its manifest exist, the inputs too.
            let loc = lake.location();
            let dir = written_a[0].path.rsplit_once('/').unwrap().0.to_owned();
            let all: Vec<Row<'static>> = one_hour.clone();
            let merged = orgtrail_lake::arrow::rows_to_batch(
                &schema,
                &orgtrail_lake::arrow::table_schema(&schema),
                &all.iter().collect::<Vec<_>>(),
            )
            .unwrap();
            let mut buf = Vec::new();
            let mut w =
                parquet::arrow::ArrowWriter::try_new(&mut buf, merged.schema(), None).unwrap();
            w.write(&merged).unwrap();
            w.close().unwrap();
            let names = vec![
                written_a[0].path.rsplit_once('/').unwrap().1.to_owned(),
                written_b[0].path.rsplit_once('/').unwrap().1.to_owned(),
            ];
            let manifest =
                object_store::path::Path::from(format!("{dir}/compact-test.parquet.replaces"));
            loc.store
                .put(&manifest, serde_json::to_vec(&names).unwrap().into())
                .await
                .unwrap();
            let n = one_hour.len() as i64;
            let before = count(&lake, &reg, "SELECT count(*) FROM atlassian_audit").await;
            // A manifest without its output changes nothing.
            assert_eq!(before, n, "{name}");
            loc.store
                .put(
                    &object_store::path::Path::from(format!("{dir}/compact-test.parquet")),
                    buf.into(),
                )
                .await
                .unwrap();
            assert_eq!(
                count(&lake, &reg, "SELECT count(*) FROM atlassian_audit").await,
                n,
                "{name}: no doubles"
            );
            // The next run finishes it: inputs and manifest deleted, same rows.
            let r = lake
                .compact(&reg, SignedDuration::from_hours(2))
                .await
                .unwrap();
            assert_eq!(r.resumed, 1, "{name}: {r:?}");
            assert_eq!(
                count(&lake, &reg, "SELECT count(*) FROM atlassian_audit").await,
                n,
                "{name}"
            );
            assert!(
                loc.store.head(&manifest).await.is_err(),
                "{name}: manifest removed"
            );
        }
    });
}

#[test]
fn bad_lake_urls_are_clear() {
    assert!(
        Lake::open("s3://")
            .unwrap_err()
            .to_string()
            .contains("has no bucket")
    );
    assert!(
        Lake::open("gs://bucket/x")
            .unwrap_err()
            .to_string()
            .contains("unsupported lake URL")
    );
    assert!(orgtrail_lake::check_batch_id("../x").is_err());
}

#[test]
fn streaming_ingest_stores_every_row_and_reports_bad_lines() {
    let reg = registry();
    let schema = reg.get("Atlassian.Audit").unwrap();
    let rows = atlassian_rows(&reg);
    let n = Normalizer::new(schema.clone());
    let mut lines: Vec<String> = rows
        .iter()
        .map(|r| n.to_json(r, orgtrail_schema::TimeLayout::Lake))
        .collect();
    // A raw event (not normalized) as line 2, a blank line and another log type's row at the end.
    lines.insert(1, r#"{"id":"raw","attributes":{}}"#.to_owned());
    lines.push(String::new());
    let other = lines[0].replace("\"Atlassian.Audit\"", "\"Custom.AllTypes\"");
    lines.push(other);
    let text = lines.join("\n");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    for (name, lake, _dir) in lakes() {
        // Tiny chunks (shorter than a line) and batches: many chunks, several batches per hour.
        let options = orgtrail_lake::IngestOptions {
            batch_rows: 2,
            batch_bytes: 1 << 30,
            chunk_bytes: 700,
        };
        let mut ids = 0;
        let mut bad = Vec::new();
        let report = lake
            .ingest(
                rt.handle(),
                &schema,
                vec![
                    ("a".to_owned(), Box::new(text.as_bytes())),
                    ("b".to_owned(), Box::new(text.as_bytes())),
                ],
                &options,
                || {
                    ids += 1;
                    format!("batch-{ids}")
                },
                |input, b| bad.push((input.to_owned(), b.line, b.looks_like_row)),
            )
            .unwrap();
        assert_eq!(report.rows, 2 * rows.len(), "{name}");
        assert_eq!(report.bad_lines, 4, "{name}");
        let last = lines.len();
        assert_eq!(
            bad,
            vec![
                ("a".to_owned(), 2, false),
                ("a".to_owned(), last, true),
                ("b".to_owned(), 2, false),
                ("b".to_owned(), last, true),
            ],
            "{name}"
        );
        assert_eq!(
            report.files.iter().map(|f| f.rows).sum::<usize>(),
            report.rows
        );
        rt.block_on(async {
            let total = count(&lake, &reg, "SELECT count(*) FROM atlassian_audit").await;
            assert_eq!(total as usize, 2 * rows.len(), "{name}");
            let batches = query(&lake, &reg, "SELECT * FROM atlassian_audit").await;
            let back: Vec<Row<'static>> = batches
                .iter()
                .flat_map(|b| batch_to_rows(&schema, b).unwrap())
                .collect();
            let expected: Vec<Row<'static>> = rows.iter().chain(&rows).cloned().collect();
            assert_eq!(by_id(back), by_id(expected), "{name}");
        });
    }
}

#[test]
fn read_only_queries_refuse_writes_and_stop_at_the_row_limit() {
    let reg = registry();
    block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let lake = Lake::open(dir.path().to_str().unwrap()).unwrap();
        let rows = atlassian_rows(&reg);
        lake.write_rows(&reg.get("Atlassian.Audit").unwrap(), "b1", &rows)
            .await
            .unwrap();
        let engine = lake.query_engine(&reg).unwrap();
        let all = engine
            .sql_read_only("SELECT id FROM atlassian_audit", 1_000_000)
            .await
            .unwrap();
        let n: usize = all.batches.iter().map(RecordBatch::num_rows).sum();
        assert_eq!(n, rows.len());
        assert!(!all.truncated);
        let cut = engine
            .sql_read_only("SELECT id FROM atlassian_audit", 2)
            .await
            .unwrap();
        let n: usize = cut.batches.iter().map(RecordBatch::num_rows).sum();
        assert_eq!(n, 2);
        assert!(cut.truncated && rows.len() > 2);
        let out = dir.path().join("copied");
        for sql in [
            format!(
                "COPY (SELECT id FROM atlassian_audit) TO '{}' STORED AS CSV",
                out.display()
            ),
            "CREATE TABLE t AS SELECT 1".to_owned(),
            "CREATE EXTERNAL TABLE x STORED AS CSV LOCATION '/etc/passwd'".to_owned(),
            "INSERT INTO atlassian_audit SELECT * FROM atlassian_audit".to_owned(),
            "SET datafusion.execution.batch_size = 1".to_owned(),
        ] {
            let err = engine.sql_read_only(&sql, 10).await.unwrap_err();
            assert!(err.to_string().contains("not supported"), "{sql}: {err}");
        }
        assert!(!out.exists(), "COPY must not have written anything");
    });
}
