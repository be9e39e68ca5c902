//! `orgtrail`: collect the Atlassian Cloud organization audit log into a data lake you own,
//! normalized as Panther does it.

mod collect_cmd;
mod collector;
mod http;
mod lake_cmd;
mod monitor_cmd;
mod parse;
mod schema_cmd;
mod web;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "orgtrail", version, about, long_about = None)]
struct Cli {
    #[command(flatten)]
    globals: Globals,
    #[command(subcommand)]
    command: Command,
}

/// Options every command shares.
#[derive(Debug, clap::Args)]
struct Globals {
    /// Where orgtrail keeps its state [default: $XDG_DATA_HOME/orgtrail, else ~/.local/share/orgtrail]
    #[arg(long, global = true, env = "ORGTRAIL_DATA_DIR", value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// The data lake: a local path or s3://bucket/prefix [default: <data-dir>/lake]
    #[arg(long, global = true, env = "ORGTRAIL_LAKE", value_name = "URL")]
    lake: Option<String>,
    /// A TOML configuration file (sources, alarms) [default: <data-dir>/orgtrail.toml]
    #[arg(long, global = true, env = "ORGTRAIL_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
}

impl Globals {
    fn data_dir(&self) -> anyhow::Result<PathBuf> {
        if let Some(d) = &self.data_dir {
            return Ok(d.clone());
        }
        let env = |k: &str| {
            std::env::var_os(k)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        if let Some(x) = env("XDG_DATA_HOME") {
            return Ok(x.join("orgtrail"));
        }
        match env("HOME") {
            Some(home) => Ok(home.join(".local/share/orgtrail")),
            None => anyhow::bail!(
                "cannot find a data directory: set --data-dir or ORGTRAIL_DATA_DIR (HOME is not set)"
            ),
        }
    }

    fn lake(&self) -> anyhow::Result<String> {
        match &self.lake {
            Some(l) => Ok(l.clone()),
            None => Ok(self.data_dir()?.join("lake").display().to_string()),
        }
    }

    fn ctx(&self) -> anyhow::Result<collect_cmd::Ctx> {
        Ok(collect_cmd::Ctx {
            data_dir: self.data_dir()?,
            lake: self.lake()?,
            config: self.config()?,
        })
    }

    fn config(&self) -> anyhow::Result<PathBuf> {
        match &self.config {
            Some(c) => Ok(c.clone()),
            None => Ok(self.data_dir()?.join("orgtrail.toml")),
        }
    }
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Show, check and test log schemas (Panther's schema language)
    #[command(subcommand)]
    Schema(schema_cmd::SchemaCommand),
    /// Normalize JSON lines with a log schema: one row per line on stdout, failures apart
    Parse(parse::ParseArgs),
    /// Onboard and manage Atlassian log sources
    #[command(subcommand)]
    Source(collect_cmd::SourceCommand),
    /// Collect what is missing since a date for one source (no duplicates; the daemon may keep running)
    Backfill(collect_cmd::BackfillArgs),
    /// The collector daemon: polls every source; Ctrl-C or SIGTERM stops it cleanly
    Run(collect_cmd::RunArgs),
    /// Every alarm of every source with its state, and the recent transitions (exit 1 while one fires)
    Alarms(monitor_cmd::AlarmsArgs),
    /// Start the simulator, onboard a source, collect into a local lake, show a report
    Demo(collect_cmd::DemoArgs),
    /// Store rows in the data lake, compact it
    #[command(subcommand)]
    Lake(lake_cmd::LakeCommand),
    /// Run SQL over the data lake (DataFusion)
    Query(lake_cmd::QueryArgs),
    /// The web console's admin password and API tokens
    #[command(subcommand)]
    Console(web::cli::ConsoleCommand),
    /// Run the Atlassian Organizations API simulator (for tests, benchmarks and demos)
    Sim(Box<orgtrail_sim::SimArgs>),
    /// Print the data directory, lake and configuration file orgtrail would use
    Paths,
}

/// The allocator of every command: jemalloc, for Rust and C code (SQLite, zstd) alike.
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's options, read when the process first allocates (`MALLOC_CONF` in the environment
/// overrides them): one arena, thread caches only for sizes up to 1 KiB. With glibc's malloc (two
/// arenas, buffers from 256 KiB up mapped on their own) the collector spent about 30 % more CPU
/// for 1,000,000 events (26-28 vs 20-22 CPU-s, 17.7-19.6 vs 13.1-14.5 s, both at 84-89 MB): arena
/// lock waits and page faults. jemalloc's defaults (8 arenas, caches up to 32 KiB) were up to 10 %
/// faster at 173 MB (124-135 MB with two arenas); on top of these options, a second arena or
/// larger caches gained nothing measurable and cost 5-15 MB.
// The one unsafe item of the project (the workspace denies unsafe code).
// SAFETY: jemalloc reads this C string (`const char *malloc_conf`) once; it is NUL-terminated and
// never changes.
#[cfg(not(target_env = "msvc"))]
#[allow(unsafe_code)]
#[unsafe(no_mangle)]
pub static malloc_conf: &[u8; 26] = b"narenas:1,tcache_max:1024\0";

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("ORGTRAIL_LOG").unwrap_or_else(|_| {
                tracing_subscriber::EnvFilter::new("warn,orgtrail_alarms=info")
            }),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Schema(cmd) => schema_cmd::run(cmd),
        Command::Parse(args) => parse::run(args),
        Command::Source(cmd) => cli
            .globals
            .ctx()
            .and_then(|ctx| collect_cmd::source(cmd, &ctx)),
        Command::Backfill(args) => cli
            .globals
            .ctx()
            .and_then(|ctx| collect_cmd::backfill(args, &ctx)),
        Command::Run(args) => cli
            .globals
            .ctx()
            .and_then(|ctx| collect_cmd::run(args, &ctx)),
        Command::Alarms(args) => cli
            .globals
            .ctx()
            .and_then(|ctx| monitor_cmd::alarms(args, &ctx)),
        Command::Demo(args) => cli
            .globals
            .ctx()
            .and_then(|ctx| collect_cmd::demo(args, &ctx)),
        Command::Lake(cmd) => cli
            .globals
            .lake()
            .and_then(|lake| lake_cmd::run(cmd, &lake)),
        Command::Query(args) => cli
            .globals
            .lake()
            .and_then(|lake| lake_cmd::query(args, &lake)),
        Command::Console(cmd) => cli
            .globals
            .data_dir()
            .and_then(|dir| web::cli::run(cmd, &dir)),
        Command::Sim(args) => sim(*args),
        Command::Paths => paths(&cli.globals),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn sim(args: orgtrail_sim::SimArgs) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(orgtrail_sim::run(args))?;
    Ok(ExitCode::SUCCESS)
}

fn paths(g: &Globals) -> anyhow::Result<ExitCode> {
    println!("data dir: {}", g.data_dir()?.display());
    println!("lake:     {}", g.lake()?);
    println!("config:   {}", g.config()?.display());
    Ok(ExitCode::SUCCESS)
}

/// Loads the built-in schemas plus schema files given on the command line; also returns the log
/// types of those files.
fn registry(files: &[PathBuf]) -> anyhow::Result<(orgtrail_schema::Registry, Vec<String>)> {
    let mut reg = orgtrail_schema::Registry::with_builtins()?;
    let mut loaded = Vec::new();
    for f in files {
        let text = read_text(f)?;
        let schema = reg.load(&text, &f.display().to_string())?;
        for w in &schema.warnings {
            eprintln!("warning: {}: {w}", f.display());
        }
        loaded.push(schema.name.clone());
    }
    Ok((reg, loaded))
}

fn read_text(path: &std::path::Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))
}
