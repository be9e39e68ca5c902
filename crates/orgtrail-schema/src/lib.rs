//! Panther-compatible log schemas for orgtrail.
//!
//! - [`compile`] checks schema YAML (Panther's schema language) and builds a [`Schema`]; every
//!   problem is reported with its field path and YAML line.
//! - [`Normalizer`] turns one JSON line into a [`Row`] (with the `p_*` standard fields and the
//!   `p_any_*` indicators) or a [`Failure`] listing every problem with its JSON path; or passes the
//!   row's values to a [`Sink`] as it reads them (the lake builds Arrow columns that way).
//! - [`builtin`] holds the built-in `Atlassian.Audit` schema.
//! - [`schematest`] runs Panther's `*_tests.yml` schema tests.
//!
//! Pure and synchronous: no I/O beyond what the caller hands in.

mod compile;
pub mod indicators;
mod json;
mod model;
mod normalize;
mod output;
mod rows;
pub mod schema;
pub mod schematest;
pub mod sink;
pub mod time;

use std::sync::Arc;

pub use compile::compile;
pub use indicators::{Indicator, IndicatorField, Indicators};
pub use normalize::{Failure, FieldError, Normalizer, Outcome, Row, Value, Verdict, row_id};
pub use rows::RowReader;
pub use schema::{Field, Problem, Schema, Type, table_name};
pub use sink::{Sink, Standard, TreeSink};
pub use time::{TimeFormat, TimeLayout};

/// Errors of this crate. Each message names the input and what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    /// The text is not YAML, or a key has a value of the wrong YAML type.
    #[error("{origin}: {message}")]
    Yaml { origin: String, message: String },
    /// The YAML is a schema with problems; all of them are listed.
    #[error("{origin}: the schema has {} problem(s):\n{}", problems.len(), list(problems))]
    Invalid {
        origin: String,
        problems: Vec<Problem>,
    },
    /// No built-in or loaded schema has this name.
    #[error("unknown log type `{name}`; available: {}. Load a schema file with --schema FILE", available.join(", "))]
    UnknownLogType {
        name: String,
        available: Vec<String>,
    },
    /// A schema test file is malformed or names an unknown log type.
    #[error("{origin}: {message}")]
    Test { origin: String, message: String },
}

fn list(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(|p| format!("  - {p}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The built-in schemas: (log type, YAML).
pub const BUILTIN: &[(&str, &str)] = &[(
    "Atlassian.Audit",
    include_str!("../schemas/Atlassian.Audit.yml"),
)];

/// The YAML of a built-in schema.
pub fn builtin(name: &str) -> Option<&'static str> {
    BUILTIN.iter().find(|(n, _)| *n == name).map(|(_, y)| *y)
}

/// Compiled schemas by log type: the built-ins plus any loaded from files.
#[derive(Debug, Clone)]
pub struct Registry {
    schemas: Vec<Arc<Schema>>,
}

impl Registry {
    /// A registry with every built-in schema.
    pub fn with_builtins() -> Result<Self, SchemaError> {
        let schemas = BUILTIN
            .iter()
            .map(|(name, yaml)| compile(yaml, &format!("built-in {name}")).map(Arc::new))
            .collect::<Result<_, _>>()?;
        Ok(Registry { schemas })
    }

    /// Adds (or replaces, by name) a schema compiled from `yaml`; returns it.
    pub fn load(&mut self, yaml: &str, origin: &str) -> Result<Arc<Schema>, SchemaError> {
        let schema = Arc::new(compile(yaml, origin)?);
        self.schemas.retain(|s| s.name != schema.name);
        self.schemas.push(schema.clone());
        Ok(schema)
    }

    pub fn get(&self, name: &str) -> Result<Arc<Schema>, SchemaError> {
        self.schemas
            .iter()
            .find(|s| s.name == name)
            .cloned()
            .ok_or_else(|| SchemaError::UnknownLogType {
                name: name.to_owned(),
                available: self.names(),
            })
    }

    pub fn names(&self) -> Vec<String> {
        self.schemas.iter().map(|s| s.name.clone()).collect()
    }
}

#[cfg(test)]
mod tests;
