//! `orgtrail parse`: stream JSON lines through a schema.

use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use orgtrail_schema::{Failure, Normalizer, Outcome, TimeLayout};
use serde::Serialize;

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Exit status: 0 when every line parsed, 1 when any line failed (all lines are \
still processed), 2 for usage or schema errors.\n\nExamples:\n  orgtrail parse --log-type Atlassian.Audit < events.jsonl\n  orgtrail parse --schema my_schema.yml --log-type Custom.Foo --source-id S --source-label L --failures bad.jsonl in.jsonl"
)]
pub struct ParseArgs {
    /// Log type to parse as [default: the one --schema file's type, else Atlassian.Audit]
    #[arg(long, value_name = "TYPE")]
    log_type: Option<String>,
    /// Load a schema file (repeatable); its log type becomes available to --log-type
    #[arg(long = "schema", value_name = "FILE")]
    schemas: Vec<PathBuf>,
    /// Value of p_source_id (omitted when empty)
    #[arg(long, value_name = "ID")]
    source_id: Option<String>,
    /// Value of p_source_label (omitted when empty)
    #[arg(long, value_name = "LABEL")]
    source_label: Option<String>,
    /// Write each failure as one JSON line ({"line","errors","payload"}) to FILE [default: stderr]
    #[arg(long, value_name = "FILE")]
    failures: Option<PathBuf>,
    /// Timestamp text layout: `lake` (2025-06-02 08:42:07.000000000) or `rfc3339`
    #[arg(long, value_name = "LAYOUT", default_value = "lake", value_parser = ["lake", "rfc3339"])]
    time_format: String,
    /// Input files of JSON lines [default: stdin]; `-` is stdin
    files: Vec<PathBuf>,
}

#[derive(Serialize)]
struct FailureLine<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    file: Option<String>,
    line: u64,
    #[serde(flatten)]
    failure: &'a Failure,
}

#[derive(Default)]
struct Counts {
    rows: u64,
    failures: u64,
    skipped: u64,
}

pub fn run(args: ParseArgs) -> anyhow::Result<ExitCode> {
    let (registry, loaded) = crate::registry(&args.schemas)?;
    let log_type = match (&args.log_type, loaded.as_slice()) {
        (Some(t), _) => t.clone(),
        (None, [one]) => one.clone(),
        (None, []) => "Atlassian.Audit".to_owned(),
        (None, _) => anyhow::bail!("several --schema files given: choose one with --log-type"),
    };
    let normalizer = Normalizer::new(registry.get(&log_type)?)
        .with_source(args.source_id.clone(), args.source_label.clone());
    let layout = if args.time_format == "rfc3339" {
        TimeLayout::Rfc3339
    } else {
        TimeLayout::Lake
    };

    let mut failures: Box<dyn Write> = match &args.failures {
        Some(path) => Box::new(BufWriter::new(File::create(path).with_context(|| {
            format!("cannot create the failures file {}", path.display())
        })?)),
        None => Box::new(io::stderr().lock()),
    };
    let stdout = io::stdout().lock();
    let mut out = BufWriter::with_capacity(256 * 1024, stdout);
    let mut counts = Counts::default();
    let inputs: Vec<Option<PathBuf>> = if args.files.is_empty() {
        vec![None]
    } else {
        args.files
            .iter()
            .map(|f| (f.as_os_str() != "-").then(|| f.clone()))
            .collect()
    };
    let result = (|| -> anyhow::Result<()> {
        for input in &inputs {
            let reader: Box<dyn BufRead> = match input {
                None => Box::new(io::stdin().lock()),
                Some(path) => Box::new(BufReader::with_capacity(
                    256 * 1024,
                    File::open(path)
                        .with_context(|| format!("cannot open input {}", path.display()))?,
                )),
            };
            let name = input.as_ref().map(|p| p.display().to_string());
            parse_stream(
                reader,
                name,
                &normalizer,
                layout,
                &mut out,
                &mut failures,
                &mut counts,
            )?;
        }
        out.flush()?;
        failures.flush()?;
        Ok(())
    })();
    if let Err(e) = result {
        // `orgtrail parse ... | head` closes our stdout early: that is not an error.
        if e.downcast_ref::<io::Error>()
            .is_some_and(|io| io.kind() == io::ErrorKind::BrokenPipe)
        {
            return Ok(ExitCode::SUCCESS);
        }
        return Err(e);
    }
    if args.failures.is_some() || io::stderr().is_terminal() {
        eprintln!(
            "orgtrail parse: {} row(s), {} failure(s), {} blank line(s) skipped",
            counts.rows, counts.failures, counts.skipped
        );
    }
    Ok(if counts.failures > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn parse_stream(
    mut reader: Box<dyn BufRead + '_>,
    name: Option<String>,
    normalizer: &Normalizer,
    layout: TimeLayout,
    out: &mut impl Write,
    failures: &mut dyn Write,
    counts: &mut Counts,
) -> anyhow::Result<()> {
    let mut line = Vec::with_capacity(8 * 1024);
    let mut row_buf = Vec::with_capacity(8 * 1024);
    let mut number = 0u64;
    loop {
        line.clear();
        let n = reader
            .read_until(b'\n', &mut line)
            .with_context(|| format!("cannot read {}", name.as_deref().unwrap_or("stdin")))?;
        if n == 0 {
            return Ok(());
        }
        number += 1;
        let mut content = &line[..];
        if let Some(rest) = content.strip_suffix(b"\n") {
            content = rest.strip_suffix(b"\r").unwrap_or(rest);
        }
        match normalizer.normalize(content) {
            Outcome::Row(row) => {
                counts.rows += 1;
                row_buf.clear();
                normalizer.write_json(&row, layout, &mut row_buf);
                row_buf.push(b'\n');
                out.write_all(&row_buf)?;
            }
            Outcome::Failure(failure) => {
                counts.failures += 1;
                let record = FailureLine {
                    file: name.clone(),
                    line: number,
                    failure: &failure,
                };
                serde_json::to_writer(&mut *failures, &record)?;
                failures.write_all(b"\n")?;
            }
            Outcome::Skip => counts.skipped += 1,
        }
        // Do not keep a multi-megabyte buffer around after one huge line.
        if line.capacity() > 16 << 20 {
            line = Vec::with_capacity(8 * 1024);
        }
    }
}
