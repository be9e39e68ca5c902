//! The compiled form of a log schema: checked, with `ref`s resolved and indicators pushed down to the
//! string fields they apply to. The normalizer and the lake's Arrow mapping read this.

use std::collections::BTreeSet;
use std::fmt;

use crate::indicators::{Indicator, IndicatorField};
use crate::time::TimeFormat;

/// A checked log schema, ready to normalize events.
#[derive(Debug, Clone)]
pub struct Schema {
    /// Log type name, e.g. `Atlassian.Audit`.
    pub name: String,
    pub description: Option<String>,
    pub reference_url: Option<String>,
    /// Top-level fields in schema order.
    pub fields: Vec<Field>,
    /// Path (field indices from the top) of the field marked `isEventId`, if any.
    pub event_id: Option<Vec<usize>>,
    /// The `p_any_*` columns this schema can produce (from its declared indicators).
    pub indicator_fields: BTreeSet<IndicatorField>,
    /// Non-fatal findings (unknown keys, Panther incompatibilities).
    pub warnings: Vec<Problem>,
    /// The YAML this schema was compiled from.
    pub source: String,
}

/// A named field of an object (or of the top level).
#[derive(Debug, Clone)]
pub struct Field {
    pub name: String,
    pub required: bool,
    pub description: Option<String>,
    pub ty: Type,
    /// The name is written in JSON as it is, between quotes (no character to escape), so a key
    /// can be matched against it byte for byte.
    pub(crate) plain_name: bool,
}

impl Field {
    pub fn new(name: String, required: bool, description: Option<String>, ty: Type) -> Field {
        let plain_name = !name.bytes().any(|c| c < 0x20 || c == b'"' || c == b'\\');
        Field {
            name,
            required,
            description,
            ty,
            plain_name,
        }
    }
}

/// The value type of a field or array element.
#[derive(Debug, Clone)]
pub enum Type {
    String(StringType),
    /// `smallint` (16 bit), `int` (32 bit) or `bigint` (64 bit).
    Int(IntWidth),
    Float,
    Boolean,
    Timestamp(TimestampType),
    Object {
        fields: Vec<Field>,
        embedded_json: bool,
    },
    Array {
        element: Box<Type>,
        embedded_json: bool,
    },
    /// Any JSON value, kept verbatim.
    Json {
        embedded_json: bool,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IntWidth {
    Small,
    Int,
    Big,
}

impl IntWidth {
    pub(crate) fn range(self) -> (i64, i64) {
        match self {
            IntWidth::Small => (i16::MIN.into(), i16::MAX.into()),
            IntWidth::Int => (i32::MIN.into(), i32::MAX.into()),
            IntWidth::Big => (i64::MIN, i64::MAX),
        }
    }

    pub fn type_name(self) -> &'static str {
        match self {
            IntWidth::Small => "smallint",
            IntWidth::Int => "int",
            IntWidth::Big => "bigint",
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct StringType {
    /// Scanners applied to the value (the field's own plus those inherited from enclosing objects).
    pub indicators: Vec<Indicator>,
    pub validate: Option<StringRules>,
    /// orgtrail decision (a): a string field with `isEventTime` keeps its text and is also parsed
    /// with these formats to set `p_event_time`.
    pub event_time: Option<EventTime>,
    /// `isEventId`: the value identifies the event (feeds `p_row_id`).
    pub is_event_id: bool,
}

#[derive(Debug, Clone)]
pub struct TimestampType {
    /// Tried in order; the first that parses wins.
    pub formats: Vec<TimeFormat>,
    pub event_time: Option<EventTime>,
}

/// A field that can set `p_event_time`; the lowest `priority` (schema order) that is present wins.
#[derive(Debug, Clone)]
pub struct EventTime {
    pub priority: u32,
    pub formats: Vec<TimeFormat>,
}

/// `validate:` on a string field.
#[derive(Debug, Clone, Default)]
pub struct StringRules {
    pub allow: Option<Vec<String>>,
    pub deny: Option<Vec<String>>,
    pub ip: Option<IpVersion>,
    pub cidr: Option<IpVersion>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IpVersion {
    V4,
    V6,
    Any,
}

impl IpVersion {
    pub(crate) fn parse(s: &str) -> Option<Self> {
        match s {
            "ipv4" => Some(IpVersion::V4),
            "ipv6" => Some(IpVersion::V6),
            "any" => Some(IpVersion::Any),
            _ => None,
        }
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            IpVersion::V4 => "an IPv4 address",
            IpVersion::V6 => "an IPv6 address",
            IpVersion::Any => "an IP address",
        }
    }
}

/// A problem found in a schema: where (field path and YAML line) and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Dotted field path, e.g. `attributes.context[].links`; empty for the top level.
    pub path: String,
    /// 1-based line in the YAML, when known.
    pub line: Option<u64>,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.line, self.path.is_empty()) {
            (Some(l), false) => write!(f, "line {l}: field `{}`: {}", self.path, self.message),
            (Some(l), true) => write!(f, "line {l}: {}", self.message),
            (None, false) => write!(f, "field `{}`: {}", self.path, self.message),
            (None, true) => write!(f, "{}", self.message),
        }
    }
}

impl Schema {
    /// The lake table name: the log type lower-cased with `.` → `_` (`atlassian_audit`).
    pub fn table_name(&self) -> String {
        table_name(&self.name)
    }
}

/// The lake table name of a log type: lower-cased with `.` → `_`.
pub fn table_name(log_type: &str) -> String {
    log_type.to_ascii_lowercase().replace('.', "_")
}
