//! `orgtrail schema ...`: show, check and test log schemas.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use orgtrail_schema::{Schema, SchemaError, Type, schematest};

#[derive(Debug, clap::Subcommand)]
pub enum SchemaCommand {
    /// List the built-in log types
    List,
    /// Print a schema's YAML (a built-in, or one loaded with --schema)
    Show {
        /// Log type, e.g. Atlassian.Audit
        log_type: String,
        /// Also load these schema files
        #[arg(long = "schema", value_name = "FILE")]
        schemas: Vec<PathBuf>,
    },
    /// Check schema files; every problem is listed with its field path and YAML line
    #[command(after_help = "Exit status: 0 when every file is a valid schema, 2 otherwise.")]
    Check {
        /// Schema files (Panther schema YAML)
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Run Panther schema tests (`*_tests.yml`: name, logType, input, result)
    #[command(
        after_help = "Without test files, runs every *_tests.yml beside the --schema files.\n\
Exit status: 0 when every test passes, 1 when any fails, 2 for malformed files.\n\n\
Example:\n  orgtrail schema test --schema my_schema.yml my_schema_tests.yml"
    )]
    Test {
        /// Load these schema files (the built-in schemas are always available)
        #[arg(long = "schema", value_name = "FILE")]
        schemas: Vec<PathBuf>,
        /// Test files
        tests: Vec<PathBuf>,
    },
}

pub fn run(cmd: SchemaCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        SchemaCommand::List => {
            let (reg, _) = crate::registry(&[])?;
            for name in reg.names() {
                let s = reg.get(&name)?;
                println!("{name}\t{}", s.description.as_deref().unwrap_or(""));
            }
            Ok(ExitCode::SUCCESS)
        }
        SchemaCommand::Show { log_type, schemas } => {
            let (reg, _) = crate::registry(&schemas)?;
            print!("{}", reg.get(&log_type)?.source);
            Ok(ExitCode::SUCCESS)
        }
        SchemaCommand::Check { files } => check(&files),
        SchemaCommand::Test { schemas, tests } => test(&schemas, tests),
    }
}

fn check(files: &[PathBuf]) -> anyhow::Result<ExitCode> {
    let mut ok = true;
    for f in files {
        let text = crate::read_text(f)?;
        match orgtrail_schema::compile(&text, &f.display().to_string()) {
            Ok(schema) => {
                println!("{}: ok: {}", f.display(), summary(&schema));
                for w in &schema.warnings {
                    println!("  warning: {w}");
                }
                if !schema.name.starts_with("Custom.") {
                    println!(
                        "  note: Panther requires custom log types to be named `Custom.*`; `{}` would be rejected there",
                        schema.name
                    );
                }
            }
            Err(e @ (SchemaError::Yaml { .. } | SchemaError::Invalid { .. })) => {
                ok = false;
                eprintln!("{e}");
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    })
}

fn summary(s: &Schema) -> String {
    fn count(fields: &[orgtrail_schema::Field]) -> usize {
        fields
            .iter()
            .map(|f| {
                1 + match &f.ty {
                    Type::Object { fields, .. } => count(fields),
                    Type::Array { element, .. } => match &**element {
                        Type::Object { fields, .. } => count(fields),
                        _ => 0,
                    },
                    _ => 0,
                }
            })
            .sum()
    }
    let indicators: Vec<&str> = s.indicator_fields.iter().map(|f| f.column()).collect();
    format!(
        "{} ({} fields; table {}; indicators: {})",
        s.name,
        count(&s.fields),
        s.table_name(),
        if indicators.is_empty() {
            "none".to_owned()
        } else {
            indicators.join(", ")
        }
    )
}

fn test(schemas: &[PathBuf], mut tests: Vec<PathBuf>) -> anyhow::Result<ExitCode> {
    let (reg, _) = crate::registry(schemas)?;
    if tests.is_empty() {
        for s in schemas {
            tests.extend(sibling_tests(s)?);
        }
        if tests.is_empty() {
            anyhow::bail!(
                "no test files: name them, or put *_tests.yml files beside the --schema files"
            );
        }
    }
    let (mut passed, mut failed) = (0u32, 0u32);
    for file in &tests {
        let text = crate::read_text(file)?;
        for case in schematest::parse(&text, &file.display().to_string())? {
            let verdict = schematest::run(&case, &reg)?;
            if verdict.passed() {
                passed += 1;
                println!("PASS {}: {}", file.display(), verdict.name);
            } else {
                failed += 1;
                println!("FAIL {}: {}", file.display(), verdict.name);
                for d in &verdict.differences {
                    println!("  {d}");
                }
                if let Some(actual) = &verdict.actual {
                    println!("  actual row:");
                    for line in actual.lines() {
                        println!("    {line}");
                    }
                }
            }
        }
    }
    println!("{passed} passed, {failed} failed");
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn sibling_tests(schema: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let dir = schema
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| anyhow::anyhow!("cannot list {}: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.ends_with("_tests.yml"))
        })
        .collect();
    found.sort();
    Ok(found)
}
