//! The Panther log-schema YAML, as written by users: deserialized with line numbers, not yet checked.
//!
//! [`crate::compile`] turns this into a [`crate::Schema`], reporting every problem with its field path
//! and YAML line.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_saphyr::Spanned;

/// A whole schema file (`schema`, `parser`, `fields`, ...).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SchemaFile {
    pub schema: Option<Spanned<String>>,
    pub parser: Option<Spanned<BTreeMap<String, IgnoredAny>>>,
    pub description: Option<String>,
    #[serde(rename = "referenceURL")]
    pub reference_url: Option<String>,
    pub version: Option<Spanned<i64>>,
    #[serde(default)]
    pub definitions: BTreeMap<String, Spanned<FieldSchema>>,
    pub fields: Option<Vec<Spanned<FieldSchema>>>,
    pub field_discovery_enabled: Option<Spanned<bool>>,
    #[serde(flatten)]
    pub unknown: BTreeMap<String, IgnoredAny>,
}

/// One node of the schema tree: an entry of a `fields` list (with `name`), an array `element` or a
/// `definitions` entry (without). One struct for all three keeps the YAML line of every nested node
/// (`serde(flatten)` of a sub-struct would lose it).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FieldSchema {
    pub name: Option<String>,
    #[serde(default)]
    pub required: bool,
    pub description: Option<String>,
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub fields: Option<Vec<Spanned<FieldSchema>>>,
    pub element: Option<Box<Spanned<FieldSchema>>>,
    pub target: Option<String>,
    pub time_format: Option<String>,
    pub time_formats: Option<Vec<String>>,
    #[serde(default)]
    pub is_event_time: bool,
    /// orgtrail extension: this string field is the event's own unique id (used for `p_row_id`).
    #[serde(default)]
    pub is_event_id: bool,
    pub indicators: Option<Vec<String>>,
    pub validate: Option<Validate>,
    #[serde(rename = "isEmbeddedJSON", default)]
    pub is_embedded_json: bool,
    #[serde(default)]
    pub is_expiration: bool,
    /// Every key that is not part of the language; reported as a warning.
    #[serde(flatten)]
    pub unknown: BTreeMap<String, IgnoredAny>,
}

/// `validate:` rules of a string field.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Validate {
    pub allow: Option<Vec<String>>,
    pub deny: Option<Vec<String>>,
    pub ip: Option<String>,
    pub cidr: Option<String>,
}
