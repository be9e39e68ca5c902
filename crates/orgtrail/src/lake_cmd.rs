//! `orgtrail lake ...` and `orgtrail query`: the data lake from the command line.

use std::io::{self, Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use orgtrail_lake::{IngestOptions, Lake, new_batch_id};

#[derive(Debug, clap::Subcommand)]
pub enum LakeCommand {
    /// Store normalized rows (the output of `orgtrail parse`) in the lake
    #[command(
        after_help = "Example:\n  orgtrail parse --log-type Atlassian.Audit < events.jsonl | orgtrail lake ingest --log-type Atlassian.Audit\n\n\
Exit status: 0 when every row was stored, 1 when some lines were not rows (they are reported on stderr), 2 for errors."
    )]
    Ingest {
        /// Log type of the rows [default: Atlassian.Audit]
        #[arg(long, value_name = "TYPE", default_value = "Atlassian.Audit")]
        log_type: String,
        /// Load a schema file (repeatable)
        #[arg(long = "schema", value_name = "FILE")]
        schemas: Vec<PathBuf>,
        /// At most this many rows per batch (a batch writes one Parquet file per event hour)
        #[arg(long, value_name = "N", default_value_t = 1_000_000)]
        batch_rows: usize,
        /// At most about this many MB of in-memory (Arrow) rows per batch: bounds memory
        #[arg(long, value_name = "MB", default_value_t = 2048)]
        batch_mb: usize,
        /// Files of rows [default: stdin]
        files: Vec<PathBuf>,
    },
    /// Merge each closed hour's files into one, de-duplicated by p_row_id
    #[command(
        after_help = "Readers never see missing or doubled rows while this runs; an interrupted run is finished by the next one."
    )]
    Compact {
        /// Only hours that ended at least this long ago (e.g. 2h, 30m, 1d)
        #[arg(long, value_name = "DURATION", default_value = "2h", value_parser = parse_duration)]
        older_than: jiff::SignedDuration,
        /// Load a schema file (repeatable), so its table is compacted too
        #[arg(long = "schema", value_name = "FILE")]
        schemas: Vec<PathBuf>,
    },
}

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Tables: one per log type (atlassian_audit, ...) and classification_failures, partitioned by \
the hour of p_event_time (p_parse_time for failures); time predicates read only the matching hours.\n\
Panther's macros work: p_occurs_since('1 day'), p_occurs_between(start, end), p_occurs_after(t), p_occurs_before(t), p_occurs_around(t, window).\n\n\
Examples:\n  orgtrail query \"SELECT attributes.action, count(*) FROM atlassian_audit GROUP BY 1 ORDER BY 2 DESC\"\n  orgtrail query --format json \"SELECT * FROM classification_failures WHERE p_parse_time > now() - interval '1 day'\""
)]
pub struct QueryArgs {
    /// The SQL statement
    sql: String,
    /// Output: an aligned table, JSON lines or CSV
    #[arg(long, default_value = "table", value_parser = ["table", "json", "csv"])]
    format: String,
    /// Load a schema file (repeatable), so its table can be queried
    #[arg(long = "schema", value_name = "FILE")]
    schemas: Vec<PathBuf>,
    /// Print how long planning and running the query took (stderr)
    #[arg(long)]
    timing: bool,
}

/// `--older-than`: the same duration syntax as everywhere else (`orgtrail_state::parse_duration`).
fn parse_duration(s: &str) -> Result<jiff::SignedDuration, String> {
    let d = orgtrail_state::parse_duration(s)?;
    jiff::SignedDuration::try_from(d).map_err(|e| format!("duration {s:?} is too long: {e}"))
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

pub fn run(cmd: LakeCommand, lake_url: &str) -> anyhow::Result<ExitCode> {
    match cmd {
        LakeCommand::Ingest {
            log_type,
            schemas,
            batch_rows,
            batch_mb,
            files,
        } => {
            let options = IngestOptions {
                batch_rows: batch_rows.max(1),
                batch_bytes: batch_mb.max(1).saturating_mul(1 << 20),
                ..IngestOptions::default()
            };
            ingest(lake_url, &log_type, &schemas, &options, &files)
        }
        LakeCommand::Compact {
            older_than,
            schemas,
        } => {
            let (reg, _) = crate::registry(&schemas)?;
            let lake = Lake::open(lake_url)?;
            let r = runtime()?.block_on(lake.compact(&reg, older_than))?;
            println!(
                "compacted {} hour(s): {} files, {} rows in, {} rows out ({} duplicates removed); {} interrupted run(s) finished",
                r.hours_compacted,
                r.files_in,
                r.rows_in,
                r.rows_out,
                r.rows_in - r.rows_out,
                r.resumed
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn ingest(
    lake_url: &str,
    log_type: &str,
    schemas: &[PathBuf],
    options: &IngestOptions,
    files: &[PathBuf],
) -> anyhow::Result<ExitCode> {
    let (reg, _) = crate::registry(schemas)?;
    let schema = reg.get(log_type)?;
    let lake = Lake::open(lake_url)?;
    let rt = runtime()?;
    let mut inputs: Vec<(String, Box<dyn Read + Send>)> = Vec::new();
    if files.is_empty() {
        inputs.push(("stdin".to_owned(), Box::new(io::stdin())));
    }
    for p in files {
        let f =
            std::fs::File::open(p).with_context(|| format!("cannot open input {}", p.display()))?;
        inputs.push((p.display().to_string(), Box::new(f)));
    }
    let report = lake.ingest(
        rt.handle(),
        &schema,
        inputs,
        options,
        new_batch_id,
        |name, bad| {
            let hint = if bad.looks_like_row {
                ""
            } else {
                " (this looks like a raw event: normalize it with `orgtrail parse` first)"
            };
            let errors: Vec<String> = bad.failure.errors.iter().map(ToString::to_string).collect();
            eprintln!(
                "{name}:{}: not a {log_type} row: {}{hint}",
                bad.line,
                errors.join("; ")
            );
        },
    )?;
    eprintln!(
        "stored {} row(s) in {} file(s) under {}",
        report.rows,
        report.files.len(),
        lake.location().display
    );
    Ok(if report.bad_lines > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

pub fn query(args: QueryArgs, lake_url: &str) -> anyhow::Result<ExitCode> {
    let (reg, _) = crate::registry(&args.schemas)?;
    let lake = Lake::open(lake_url)?;
    let rt = runtime()?;
    let started = std::time::Instant::now();
    let engine = lake.query_engine(&reg)?;
    let (schema, batches) = rt.block_on(engine.sql(&args.sql))?;
    if args.timing {
        let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
        eprintln!(
            "query: {rows} row(s) in {:.1} ms",
            started.elapsed().as_secs_f64() * 1e3
        );
    }
    let stdout = io::stdout();
    let mut out = io::BufWriter::new(stdout.lock());
    let result: anyhow::Result<()> = (|| {
        match args.format.as_str() {
            "json" => {
                let mut w = arrow::json::LineDelimitedWriter::new(&mut out);
                for b in &batches {
                    w.write(b)?;
                }
                w.finish()?;
            }
            "csv" => {
                if batches.is_empty() {
                    let names: Vec<&str> =
                        schema.fields().iter().map(|f| f.name().as_str()).collect();
                    writeln!(out, "{}", names.join(","))?;
                } else {
                    let mut w = arrow::csv::WriterBuilder::new()
                        .with_header(true)
                        .build(&mut out);
                    for b in &batches {
                        w.write(&flatten_nested(b)?)?;
                    }
                }
            }
            _ => {
                let table = if batches.is_empty() {
                    arrow::util::pretty::pretty_format_batches(&[
                        arrow::array::RecordBatch::new_empty(schema.clone()),
                    ])?
                } else {
                    arrow::util::pretty::pretty_format_batches(&batches)?
                };
                writeln!(out, "{table}")?;
            }
        }
        out.flush()?;
        Ok(())
    })();
    match result {
        Err(e)
            if e.downcast_ref::<io::Error>()
                .is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe) =>
        {
            Ok(ExitCode::SUCCESS)
        }
        other => other.map(|()| ExitCode::SUCCESS),
    }
}

/// CSV cannot hold structs or lists: render those columns as text (`{action: x, ...}`, `[a, b]`).
pub(crate) fn flatten_nested(
    batch: &arrow::array::RecordBatch,
) -> anyhow::Result<arrow::array::RecordBatch> {
    use std::sync::Arc;

    use arrow::array::{Array, ArrayRef, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};
    use arrow::util::display::{ArrayFormatter, FormatOptions};
    let mut fields = Vec::with_capacity(batch.num_columns());
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(batch.num_columns());
    for (field, col) in batch.schema().fields().iter().zip(batch.columns()) {
        if field.data_type().is_nested() {
            let fmt = ArrayFormatter::try_new(col.as_ref(), &FormatOptions::default())?;
            let text: StringArray = (0..col.len())
                .map(|i| col.is_valid(i).then(|| fmt.value(i).to_string()))
                .collect();
            fields.push(Field::new(field.name(), DataType::Utf8, true));
            columns.push(Arc::new(text));
        } else {
            fields.push(field.as_ref().clone());
            columns.push(col.clone());
        }
    }
    Ok(arrow::array::RecordBatch::try_new(
        Arc::new(Schema::new(fields)),
        columns,
    )?)
}
